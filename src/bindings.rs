//! Admin bindings: secrets a runner admin grants to jobs by their verified ID-token claims.
//!
//! Why: with job-side declarations, whoever edits `.gitlab-ci.yml` decides what to ask for, and
//! only Vault's role configuration stands in the way. Bindings turn that around for the common
//! cases: the admin writes, once, "project 365 deploying to `dev` gets `aws/sts/365-dev`", and the
//! job's YAML needs nothing but `id_tokens:`.
//!
//! Rules and their order: every `[[bindings]]` entry is one rule, evaluated in file order, and
//! **every** matching rule applies (first-match-wins would make one broad rule silently shadow a
//! narrower one below it). A variable granted by two rules, or by a rule and the job's own
//! declarations, is an error naming both grants.
//!
//! Matching: all keys of a rule's `match` table must hold (AND); each key takes a value or a list
//! of values (OR). `project_path`/`namespace_path` are globs where `*` stays within one path
//! segment and `**` crosses them; every other key is compared exactly. A key whose claim is
//! absent from the token never matches. An empty `match` table matches every job with a verified
//! token.
//!
//! Templates: `{claim}` in `server`, `namespace`, `auth_mount`, `role` and in every string of a
//! secret (mount, path, field, data values) is replaced by the claim's value. Claims come only
//! from a verified token. A substituted value must be non-empty, consist of `A-Z a-z 0-9 . _ -`
//! only, and contain no `..`; otherwise the rule is refused for that job with a message naming the
//! claim. So no claim can ever add a `/`, `?`, `#`, `%` or a `..` segment to a request: a template
//! can reach exactly the paths the admin's literal text allows. Values are refused rather than
//! rewritten, because a rewrite (`/` to `_`) would let `grp/a_b` and `grp_a/b` share secrets.
//! `{{` and `}}` stand for literal braces.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::api_path;
use crate::config_file::{BindingSection, MatchRule, MatchValue};
use crate::declarations::{Declaration, DeclarationError, RawSecret, SecretOrigin};
use crate::exit::FailureKind;
use crate::identity::Claims;
use crate::patterns::Patterns;
use crate::secret_plan::{LoginTarget, Provenance};
use crate::vault::Servers;

/// Claims a template may name. `iss` and `sub` are left out: they always contain `:` or `/`.
pub(crate) const TEMPLATE_CLAIMS: &[&str] = &[
    "project_id",
    "project_path",
    "namespace_id",
    "namespace_path",
    "ref",
    "ref_type",
    "ref_protected",
    "environment",
    "environment_protected",
    "pipeline_source",
    "user_login",
    "job_id",
];

/// One `[[bindings]]` rule, compiled at config load: match globs built, every template parsed.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    /// Names the rule in the job log, in `plan` output and in duplicate-grant errors.
    pub name: String,
    keys: Vec<MatchKey>,
    server: Option<Template>,
    namespace: Option<Template>,
    auth_mount: Option<Template>,
    role: Option<Template>,
    secrets: BTreeMap<String, RawSecret>,
    /// Every template string in `secrets`, parsed, by its text.
    templates: BTreeMap<String, Template>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Glob,
    Exact,
    Bool,
}

/// One `match` key: the claim, and the values (or globs) that satisfy it.
#[derive(Debug, Clone)]
struct MatchKey {
    key: &'static str,
    kind: KeyKind,
    wanted: Vec<String>,
    globs: Patterns,
}

fn entries(rule: &MatchRule) -> Vec<(&'static str, KeyKind, &MatchValue)> {
    let all: [(&'static str, KeyKind, &Option<MatchValue>); 10] = [
        ("project_path", KeyKind::Glob, &rule.project_path),
        ("namespace_path", KeyKind::Glob, &rule.namespace_path),
        ("project_id", KeyKind::Exact, &rule.project_id),
        ("ref", KeyKind::Exact, &rule.git_ref),
        ("ref_type", KeyKind::Exact, &rule.ref_type),
        ("ref_protected", KeyKind::Bool, &rule.ref_protected),
        ("environment", KeyKind::Exact, &rule.environment),
        (
            "environment_protected",
            KeyKind::Bool,
            &rule.environment_protected,
        ),
        ("pipeline_source", KeyKind::Exact, &rule.pipeline_source),
        ("user_login", KeyKind::Exact, &rule.user_login),
    ];
    all.into_iter()
        .filter_map(|(k, kind, v)| v.as_ref().map(|v| (k, kind, v)))
        .collect()
}

fn compile_rule(rule: &MatchRule) -> Result<Vec<MatchKey>, String> {
    let mut keys = Vec::new();
    for (key, kind, value) in entries(rule) {
        let values = value.values();
        if values.is_empty() {
            return Err(format!(
                "match.{key} is an empty list, which can never match; remove the key"
            ));
        }
        for v in &values {
            match kind {
                KeyKind::Glob => {
                    Patterns::new(std::slice::from_ref(v)).map_err(|e| {
                        format!(
                            "match.{key}: invalid glob {v:?}: {}",
                            e.trim_start_matches("invalid pattern ")
                        )
                    })?;
                }
                KeyKind::Bool if v != "true" && v != "false" => {
                    return Err(format!("match.{key} must be true or false, not {v:?}"));
                }
                _ if v.is_empty() => return Err(format!("match.{key} must not be empty")),
                _ => {}
            }
        }
        let globs = match kind {
            KeyKind::Glob => Patterns::new(&values)?,
            KeyKind::Exact | KeyKind::Bool => Patterns::default(),
        };
        keys.push(MatchKey {
            key,
            kind,
            wanted: values,
            globs,
        });
    }
    Ok(keys)
}

impl MatchKey {
    fn check(&self, claims: &Claims) -> KeyCheck {
        let actual = claims.get(self.key).map(str::to_owned);
        let ok = actual.as_deref().is_some_and(|actual| match self.kind {
            KeyKind::Glob => self.globs.matches(actual),
            KeyKind::Exact | KeyKind::Bool => self.wanted.iter().any(|w| w == actual),
        });
        KeyCheck {
            key: self.key,
            wanted: self.wanted.clone(),
            glob: self.kind == KeyKind::Glob,
            actual,
            ok,
        }
    }
}

/// One `match` key checked against the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyCheck {
    /// The claim name.
    pub key: &'static str,
    /// The values the rule accepts.
    pub wanted: Vec<String>,
    /// Whether `wanted` are globs.
    pub glob: bool,
    /// The token's value (`None`: the claim is absent).
    pub actual: Option<String>,
    /// Whether it matched.
    pub ok: bool,
}

impl KeyCheck {
    /// `environment: "prod" is not "dev"`, `project_path: "grp/app" matches "grp/*"`.
    pub(crate) fn describe(&self) -> String {
        let wanted = if self.wanted.len() == 1 {
            format!("{:?}", self.wanted[0])
        } else {
            format!(
                "one of [{}]",
                self.wanted
                    .iter()
                    .map(|w| format!("{w:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let verb = match (self.ok, self.glob) {
            (true, true) => "matches",
            (true, false) => "is",
            (false, true) => "does not match",
            (false, false) => "is not",
        };
        match &self.actual {
            Some(actual) => format!("{}: {actual:?} {verb} {wanted}", self.key),
            None => format!("{}: claim absent from the token, wanted {wanted}", self.key),
        }
    }
}

/// What one rule did for one job.
#[derive(Debug, Clone)]
pub(crate) struct RuleOutcome {
    /// 1-based position in the config.
    pub index: usize,
    /// The rule's name.
    pub name: String,
    /// Each `match` key.
    pub checks: Vec<KeyCheck>,
}

impl RuleOutcome {
    /// Whether every key matched.
    pub(crate) fn matched(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// A matched rule, rendered for one job.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// The rule's name.
    pub binding: String,
    /// Where its secrets log in.
    pub target: LoginTarget,
    /// Its secrets, templates substituted.
    pub declarations: Vec<Declaration>,
}

impl Grant {
    /// Who its secrets are declared by.
    pub(crate) fn declared_by(&self) -> Provenance {
        Provenance::Binding {
            name: self.binding.clone(),
        }
    }
}

/// Where a binding logs in unless it says otherwise: the trusted servers and `[vault]`'s
/// auth mount and role.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoginDefaults<'a> {
    /// The servers a binding may name.
    pub servers: &'a Servers,
    /// `[vault] auth_mount`.
    pub auth_mount: &'a str,
    /// `[vault] role`.
    pub role: Option<&'a str>,
}

/// Evaluates every rule against verified claims, in order.
pub(crate) fn evaluate(bindings: &[Binding], claims: &Claims) -> Vec<RuleOutcome> {
    bindings
        .iter()
        .enumerate()
        .map(|(i, b)| RuleOutcome {
            index: i + 1,
            name: b.name.clone(),
            checks: b.keys.iter().map(|k| k.check(claims)).collect(),
        })
        .collect()
}

impl Binding {
    /// Renders a matched rule for a job: templates filled from verified claims, the server
    /// checked against the allow-list, each secret validated like a job declaration.
    pub(crate) fn grant(
        &self,
        claims: &Claims,
        defaults: &LoginDefaults<'_>,
    ) -> Result<Grant, BindingError> {
        let fail = |detail: String| BindingError::Render {
            binding: self.name.clone(),
            detail,
        };
        let render_opt = |what: &str, template: &Option<Template>| {
            template
                .as_ref()
                .map(|t| t.render(claims).map_err(|e| fail(format!("{what}: {e}"))))
                .transpose()
        };
        let server_address = render_opt("server", &self.server)?;
        let server = defaults
            .servers
            .get(server_address.as_deref())
            .map_err(|_| BindingError::ServerNotAllowed {
                binding: self.name.clone(),
                server: server_address.clone().unwrap_or_default(),
            })?
            .clone();
        // Claims are already restricted to `A-Z a-z 0-9 . _ -`; the admin's literal text around
        // them follows the one path rule like every other piece.
        let checked = |what: &str, piece, value: String| {
            api_path::check(piece, &value).map_err(|e| fail(format!("{what}: {e}")))
        };
        let namespace = render_opt("namespace", &self.namespace)?
            .filter(|n| !n.is_empty())
            .map(|n| checked("namespace", api_path::Piece::Namespace, n))
            .transpose()?
            .or_else(|| server.namespace.clone())
            .filter(|n| !n.is_empty());
        let auth_mount = match render_opt("auth_mount", &self.auth_mount)? {
            Some(mount) => checked("auth_mount", api_path::Piece::AuthMount, mount)?,
            None => defaults.auth_mount.to_owned(),
        };
        let role = render_opt("role", &self.role)?.or_else(|| defaults.role.map(str::to_owned));
        let expand = |text: &str| match self.templates.get(text) {
            Some(template) => template.render(claims),
            None => Template::parse(text)?.render(claims),
        };
        let declarations = self
            .secrets
            .iter()
            .map(|(name, raw)| raw.validate(name, &expand, SecretOrigin::Binding))
            .collect::<Result<Vec<_>, DeclarationError>>()
            .map_err(|e| fail(e.to_string()))?;
        Ok(Grant {
            binding: self.name.clone(),
            target: LoginTarget {
                server,
                namespace,
                auth_mount,
                role,
            },
            declarations,
        })
    }
}

/// Where a binding logs in, as far as it is known without a job's claims (for `check`).
#[derive(Debug, Clone)]
pub(crate) enum FixedLogin {
    /// Nothing is templated: every job matched logs in here.
    Known(LoginTarget),
    /// These keys are templated from claims: known only per job.
    Templated(Vec<&'static str>),
}

impl Binding {
    /// The login every matching job uses, when no login key is templated; `None` when the
    /// literal server is not listed (config load refuses that, so never in practice).
    pub(crate) fn fixed_login(&self, defaults: &LoginDefaults<'_>) -> Option<FixedLogin> {
        let keys = [
            ("server", &self.server),
            ("namespace", &self.namespace),
            ("auth_mount", &self.auth_mount),
            ("role", &self.role),
        ];
        let templated: Vec<&'static str> = keys
            .iter()
            .filter(|(_, t)| t.as_ref().is_some_and(|t| !t.is_literal()))
            .map(|(k, _)| *k)
            .collect();
        if !templated.is_empty() {
            return Some(FixedLogin::Templated(templated));
        }
        let text = |t: &Option<Template>| t.as_ref().map(|t| t.probe());
        let server = defaults
            .servers
            .get(text(&self.server).as_deref())
            .ok()?
            .clone();
        let namespace = text(&self.namespace).or_else(|| server.namespace.clone());
        Some(FixedLogin::Known(LoginTarget {
            namespace,
            auth_mount: text(&self.auth_mount)
                .unwrap_or_else(|| defaults.auth_mount.to_owned())
                .trim_matches('/')
                .to_owned(),
            role: text(&self.role).or_else(|| defaults.role.map(str::to_owned)),
            server,
        }))
    }
}

/// Compiles every rule at config load: names, match keys, template syntax, allow-listed
/// servers, and each secret rendered with placeholder claims.
pub(crate) fn compile_all(
    sections: &[BindingSection],
    servers: &Servers,
) -> Result<Vec<Binding>, String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut bindings = Vec::with_capacity(sections.len());
    for (i, section) in sections.iter().enumerate() {
        let at = format!("bindings[{}] {:?}", i + 1, section.name);
        if section.name.trim().is_empty() || section.name.chars().any(char::is_control) {
            return Err(format!("bindings[{}]: name must be non-empty text", i + 1));
        }
        if !seen.insert(section.name.as_str()) {
            return Err(format!(
                "{at}: another binding has the same name; names must be unique"
            ));
        }
        if section.secrets.is_empty() {
            return Err(format!(
                "{at}: grants no secrets; add [bindings.secrets.NAME] tables"
            ));
        }
        let keys = compile_rule(&section.rule).map_err(|e| format!("{at}: {e}"))?;
        let parse = |what: &str, text: &Option<String>| -> Result<Option<Template>, String> {
            let Some(text) = text else { return Ok(None) };
            let template = Template::parse(text).map_err(|e| format!("{at}: {what}: {e}"))?;
            if what == "server" && template.is_literal() {
                servers.get(Some(text)).map_err(|_| {
                    format!(
                        "{at}: server {text} is not listed under [vault] or [[vault.servers]]; bindings may only use allow-listed servers"
                    )
                })?;
            }
            Ok(Some(template))
        };
        let server = parse("server", &section.server)?;
        let namespace = parse("namespace", &section.namespace)?;
        let auth_mount = parse("auth_mount", &section.auth_mount)?;
        let role = parse("role", &section.role)?;
        // Each secret is validated once with placeholder claims; every string it renders is a
        // template, kept parsed for the jobs it will be rendered for.
        let templates = RefCell::new(BTreeMap::new());
        let probe = |text: &str| {
            let template = Template::parse(text)?;
            let probed = template.probe();
            templates.borrow_mut().insert(text.to_owned(), template);
            Ok(probed)
        };
        for (name, raw) in &section.secrets {
            if let Some(reason) = crate::protocol::reserved_name(name) {
                return Err(format!("{at}: secret {name}: {reason}"));
            }
            raw.validate(name, &probe, SecretOrigin::Binding)
                .map_err(|e| format!("{at}: {e}"))?;
        }
        bindings.push(Binding {
            name: section.name.clone(),
            keys,
            server,
            namespace,
            auth_mount,
            role,
            secrets: section.secrets.clone(),
            templates: templates.into_inner(),
        });
    }
    Ok(bindings)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Claim(String),
}

/// A string with `{claim}` placeholders, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    text: String,
    pieces: Vec<Piece>,
}

impl Template {
    fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(ch) => name.push(ch),
                            None => {
                                return Err(format!(
                                    "unterminated {{ in {text:?}; write {{{{ for a literal brace"
                                ));
                            }
                        }
                    }
                    if !TEMPLATE_CLAIMS.contains(&name.as_str()) {
                        return Err(format!(
                            "{{{name}}} in {text:?} is not a claim a template may use; use one of {}",
                            TEMPLATE_CLAIMS.join(", ")
                        ));
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Claim(name));
                }
                '}' => {
                    return Err(format!(
                        "unmatched }} in {text:?}; write }}}} for a literal brace"
                    ));
                }
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template {
            text: text.to_owned(),
            pieces,
        })
    }

    fn is_literal(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Literal(_)))
    }

    /// Substitutes `{claim}` from verified claims, refusing any value that could change the
    /// structure of a path (see the module docs for the rule).
    fn render(&self, claims: &Claims) -> Result<String, String> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Claim(name) => {
                    let value = claims.get(name).ok_or_else(|| {
                        format!(
                            "the template {:?} needs claim {name}, which this job's ID token does not carry",
                            self.text
                        )
                    })?;
                    check_claim_value(name, value)?;
                    out.push_str(value);
                }
            }
        }
        Ok(out)
    }

    /// The template with a safe placeholder for every claim, for checks at config load.
    fn probe(&self) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(text) => text.as_str(),
                Piece::Claim(_) => "x",
            })
            .collect()
    }
}

/// The escaping rule: a claim value may be substituted only if it is non-empty, made of
/// `A-Z a-z 0-9 . _ -`, and free of `..`.
pub(crate) fn check_claim_value(claim: &str, value: &str) -> Result<(), String> {
    let shown = || {
        let mut v: String = value.chars().take(64).collect();
        if value.chars().count() > 64 {
            v.push('…');
        }
        format!("{v:?}")
    };
    if value.is_empty() {
        return Err(format!(
            "claim {claim} is empty, and an empty value cannot be substituted into a path"
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "claim {claim} = {} contains {bad:?}; a template substitutes only values made of A-Z a-z 0-9 . _ - (so that no claim can change a path's structure), so this rule cannot be used for this job",
            shown()
        ));
    }
    if value.contains("..") || value == "." {
        return Err(format!(
            "claim {claim} = {} contains a dot segment; a template never substitutes '.' or '..', so this rule cannot be used for this job",
            shown()
        ));
    }
    Ok(())
}

/// A matched rule could not be applied to this job.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BindingError {
    /// A template or secret could not be rendered from this job's claims.
    #[error("binding {binding} matches this job but cannot be applied: {detail}")]
    Render {
        /// The rule.
        binding: String,
        /// What went wrong.
        detail: String,
    },
    /// A templated server is not allow-listed.
    #[error(
        "binding {binding} matches this job but its server {server} is not listed under [vault] or [[vault.servers]]; add it there or fix the binding's server template"
    )]
    ServerNotAllowed {
        /// The rule.
        binding: String,
        /// The rendered server.
        server: String,
    },
}

impl BindingError {
    /// The rule's name.
    pub(crate) fn binding(&self) -> &str {
        match self {
            BindingError::Render { binding, .. }
            | BindingError::ServerNotAllowed { binding, .. } => binding,
        }
    }

    /// The claims come from the job (an environment name, a ref); the binding exists, so the job
    /// is what does not fit it.
    pub(crate) fn failure_kind(&self) -> FailureKind {
        FailureKind::Build
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(pairs: &[(&str, &str)]) -> Claims {
        let mut map = serde_json::Map::new();
        for (k, v) in pairs {
            map.insert((*k).to_owned(), (*v).into());
        }
        serde_json::from_value(serde_json::Value::Object(map)).expect("claims")
    }

    fn config(extra: &str) -> crate::config::Config {
        let text = format!(
            "[vault]\naddress = \"https://vault.example.com\"\nrole = \"default-role\"\n[[vault.servers]]\naddress = \"https://dev.vault.example.com\"\n[gitlab]\nurl = \"https://gitlab.example.com\"\n{extra}"
        );
        crate::config::Config::parse(&text).expect("valid config")
    }

    const ENV_BINDING: &str = r#"
[[bindings]]
name = "deploy-env"
match = { project_path = "grp/*", ref_protected = true }
role = "{project_id}-deploy"
[bindings.secrets.AWS_ACCESS_KEY_ID]
vault = { engine = { name = "generic", path = "aws" }, path = "sts/{project_id}-{environment}", field = "access_key" }
file = false
"#;

    #[test]
    fn project_and_environment_template_the_path_and_role() {
        let config = config(ENV_BINDING);
        let c = claims(&[
            ("project_id", "365"),
            ("project_path", "grp/app"),
            ("ref_protected", "true"),
            ("environment", "dev"),
        ]);
        let outcomes = evaluate(&config.bindings, &c);
        assert!(outcomes[0].matched(), "{outcomes:?}");
        let grant = config.bindings[0]
            .grant(&c, &config.login_defaults())
            .expect("renders");
        assert_eq!(grant.target.role.as_deref(), Some("365-deploy"));
        assert_eq!(grant.target.auth_mount, "jwt");
        assert_eq!(grant.declarations[0].source.api_path(), "aws/sts/365-dev");
        assert!(!grant.declarations[0].file);
        assert_eq!(grant.declared_by().to_string(), "binding deploy-env");
    }

    #[test]
    fn a_binding_grants_a_token_with_templated_policies() {
        let config = config(
            r#"
[[bindings]]
name = "tools"
match = { project_path = "grp/*" }
[bindings.secrets.VAULT_TOKEN]
vault = { token = { policies = ["{project_id}-read", "pki-issue"], ttl = "15m" } }
"#,
        );
        let c = claims(&[("project_id", "365"), ("project_path", "grp/app")]);
        let grant = config.bindings[0]
            .grant(&c, &config.login_defaults())
            .expect("renders");
        let token = grant.declarations[0].vault_token.as_ref().expect("token");
        assert_eq!(token.policies, ["365-read", "pki-issue"]);
        assert!(!grant.declarations[0].file);
    }

    #[test]
    fn claim_values_can_never_change_a_path() {
        let config = config(ENV_BINDING);
        for evil in [
            "../x", "..", ".", "a/b", "x?y=1", "x#y", "x%2e%2e", "a b", "", "é",
        ] {
            let c = claims(&[
                ("project_id", "365"),
                ("project_path", "grp/app"),
                ("ref_protected", "true"),
                ("environment", evil),
            ]);
            let err = config.bindings[0]
                .grant(&c, &config.login_defaults())
                .expect_err(evil)
                .to_string();
            assert!(err.contains("claim environment"), "{evil}: {err}");
            assert!(
                err.starts_with("binding deploy-env matches this job but cannot be applied"),
                "{err}"
            );
        }
        let c = claims(&[
            ("project_id", "365"),
            ("project_path", "grp/app"),
            ("ref_protected", "true"),
        ]);
        let err = config.bindings[0]
            .grant(&c, &config.login_defaults())
            .expect_err("missing")
            .to_string();
        assert!(err.contains("needs claim environment"), "{err}");
    }

    #[test]
    fn safe_values_pass() {
        for ok in ["365", "dev", "review-app_1.2", "A-Z"] {
            check_claim_value("environment", ok).expect(ok);
        }
    }

    #[test]
    fn rules_report_each_failed_key() {
        let config = config(
            r#"
[[bindings]]
name = "prod"
match = { project_id = 365, environment = ["prod", "production"], ref_protected = "true", namespace_path = "grp/**" }
[bindings.secrets.DB]
vault = "db/{environment}/password@kv"
"#,
        );
        let c = claims(&[
            ("project_id", "365"),
            ("environment", "dev"),
            ("ref_protected", "false"),
            ("namespace_path", "grp/sub"),
        ]);
        let outcome = &evaluate(&config.bindings, &c)[0];
        assert!(!outcome.matched());
        let described: Vec<String> = outcome.checks.iter().map(KeyCheck::describe).collect();
        assert_eq!(
            described,
            [
                "namespace_path: \"grp/sub\" matches \"grp/**\"",
                "project_id: \"365\" is \"365\"",
                "ref_protected: \"false\" is not \"true\"",
                "environment: \"dev\" is not one of [\"prod\", \"production\"]",
            ]
        );
        let absent = &evaluate(&config.bindings, &claims(&[("project_id", "365")]))[0];
        assert!(
            absent.checks[0].describe().contains("claim absent"),
            "{:?}",
            absent.checks[0]
        );
    }

    #[test]
    fn globs_keep_star_within_a_segment() {
        let config = config(ENV_BINDING);
        let c = claims(&[
            ("project_id", "1"),
            ("project_path", "grp/sub/app"),
            ("ref_protected", "true"),
            ("environment", "dev"),
        ]);
        assert!(!evaluate(&config.bindings, &c)[0].matched());
    }

    #[test]
    fn config_errors() {
        let bad = |extra: &str| {
            let text = format!(
                "[vault]\naddress = \"https://vault.example.com\"\n[gitlab]\nurl = \"https://gitlab.example.com\"\n{extra}"
            );
            crate::config::Config::parse(&text).expect_err(extra)
        };
        let secret = "[bindings.secrets.A]\nvault = \"p/f@kv\"\n";
        assert!(
            bad(&format!(
                "[[bindings]]\nname = \"b\"\nrole = \"{{project}}\"\n{secret}"
            ))
            .contains("{project} in")
        );
        assert!(
            bad(&format!(
                "[[bindings]]\nname = \"b\"\nrole = \"{{project_id\"\n{secret}"
            ))
            .contains("unterminated")
        );
        assert!(
            bad(&format!(
                "[[bindings]]\nname = \"b\"\nmatch = {{ ref_protected = \"yes\" }}\n{secret}"
            ))
            .contains("true or false")
        );
        assert!(
            bad(&format!(
                "[[bindings]]\nname = \"b\"\nmatch = {{ project_path = \"[\" }}\n{secret}"
            ))
            .contains("invalid glob")
        );
        assert!(
            bad(&format!(
                "[[bindings]]\nname = \"b\"\nmatch = {{ colour = \"x\" }}\n{secret}"
            ))
            .contains("colour")
        );
        assert!(
            bad(&format!(
                "[[bindings]]\nname = \"b\"\nserver = \"https://evil.example.com\"\n{secret}"
            ))
            .contains("allow-listed")
        );
        assert!(bad("[[bindings]]\nname = \"b\"\n[bindings.secrets.A]\nvault = \"../{project_id}/f@kv\"\n").contains(".."));
        assert!(bad("[[bindings]]\nname = \"b\"\n[bindings.secrets.A]\nvault = \"p/f@kv\"\ntoken = \"$X\"\n").contains("token"));
        assert!(
            bad("[[bindings]]\nname = \"b\"\n[bindings.secrets.PATH]\nvault = \"p/f@kv\"\n")
                .contains("secret PATH: the name is reserved")
        );
        assert!(
            bad("[[bindings]]\nname = \"b\"\n[bindings.secrets.BUILD_EXIT_CODE_FILE]\nvault = \"p/f@kv\"\n")
                .contains("secret BUILD_EXIT_CODE_FILE: the name is reserved")
        );
        assert!(
            bad(&format!(
                "[[bindings]]\nname = \"b\"\n{secret}[[bindings]]\nname = \"b\"\n{secret}"
            ))
            .contains("same name")
        );
        let err = crate::config::Config::parse(&format!(
            "[vault]\naddress = \"https://v.example.com\"\n[[bindings]]\nname = \"b\"\n{secret}"
        ))
        .expect_err("no gitlab");
        assert!(
            err.contains("bindings need [gitlab] so that claims are verified"),
            "{err}"
        );
    }

    #[test]
    fn templated_server_must_be_allow_listed_at_job_time() {
        let config = config(
            "[[bindings]]\nname = \"per-env\"\nserver = \"https://{environment}.vault.example.com\"\n[bindings.secrets.A]\nvault = \"p/f@kv\"\n",
        );
        let ok = config.bindings[0]
            .grant(&claims(&[("environment", "dev")]), &config.login_defaults())
            .expect("dev is listed");
        assert_eq!(ok.target.server.address, "https://dev.vault.example.com");
        let err = config.bindings[0]
            .grant(
                &claims(&[("environment", "prod")]),
                &config.login_defaults(),
            )
            .expect_err("prod is not");
        assert!(
            matches!(err, BindingError::ServerNotAllowed { .. }),
            "{err}"
        );
    }

    #[test]
    fn literal_braces() {
        assert_eq!(
            Template::parse("a{{b}}{project_id}")
                .and_then(|t| t.render(&claims(&[("project_id", "7")])))
                .expect("ok"),
            "a{b}7"
        );
        assert!(Template::parse("a}b").is_err());
    }
}
