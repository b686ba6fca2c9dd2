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

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::declarations::{Declaration, DeclarationError, RawSecret, SecretOrigin};
use crate::executor_config::ExecutorConfig;
use crate::exit::FailureKind;
use crate::identity::Claims;
use crate::resolution::LoginTarget;

/// Claims a template may name. `iss` and `sub` are left out: they always contain `:` or `/`.
pub const TEMPLATE_CLAIMS: &[&str] = &[
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

/// One `[[bindings]]` rule as written in the executor config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingConfig {
    /// Names the rule in the job log, in `plan` output and in duplicate-grant errors.
    pub name: String,
    /// Which jobs the rule applies to.
    #[serde(rename = "match", default)]
    pub rule: MatchRule,
    /// The server to log in to (must be allow-listed under `[vault]`); default: `[vault] address`.
    #[serde(default)]
    pub server: Option<String>,
    /// The namespace; default: the server's.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The JWT auth mount; default: `[vault] auth_mount`.
    #[serde(default)]
    pub auth_mount: Option<String>,
    /// The JWT role; default: `[vault] role`.
    #[serde(default)]
    pub role: Option<String>,
    /// The secrets granted, in the schema of a job declaration, keyed by variable name.
    pub secrets: BTreeMap<String, RawSecret>,
}

/// A rule's `match` table. Job variables never take part: only verified claims.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRule {
    /// Glob(s) over `project_path`, e.g. `"grp/**"`.
    #[serde(default)]
    pub project_path: Option<MatchValue>,
    /// Glob(s) over `namespace_path`.
    #[serde(default)]
    pub namespace_path: Option<MatchValue>,
    /// Project id(s), as a number or a string.
    #[serde(default)]
    pub project_id: Option<MatchValue>,
    /// Branch or tag name(s).
    #[serde(rename = "ref", default)]
    pub git_ref: Option<MatchValue>,
    /// `branch` or `tag`.
    #[serde(default)]
    pub ref_type: Option<MatchValue>,
    /// `true`/`false` (bool or string).
    #[serde(default)]
    pub ref_protected: Option<MatchValue>,
    /// Environment name(s).
    #[serde(default)]
    pub environment: Option<MatchValue>,
    /// `true`/`false` (bool or string).
    #[serde(default)]
    pub environment_protected: Option<MatchValue>,
    /// `push`, `schedule`, `web`, `merge_request_event`…
    #[serde(default)]
    pub pipeline_source: Option<MatchValue>,
    /// GitLab user name(s).
    #[serde(default)]
    pub user_login: Option<MatchValue>,
}

/// A match value: one scalar or a list of them (any of which may match).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MatchValue {
    /// One value.
    One(Scalar),
    /// Any of these.
    Many(Vec<Scalar>),
}

/// A TOML scalar, compared as GitLab's claims are encoded: as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// `true`/`false`.
    Bool(bool),
    /// A number, e.g. a project id.
    Int(i64),
    /// Text.
    Text(String),
}

impl MatchValue {
    /// The values as claim text.
    pub fn values(&self) -> Vec<String> {
        let text = |s: &Scalar| match s {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Text(t) => t.clone(),
        };
        match self {
            MatchValue::One(s) => vec![text(s)],
            MatchValue::Many(list) => list.iter().map(text).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Glob,
    Exact,
    Bool,
}

impl MatchRule {
    fn entries(&self) -> Vec<(&'static str, KeyKind, &MatchValue)> {
        let all: [(&'static str, KeyKind, &Option<MatchValue>); 10] = [
            ("project_path", KeyKind::Glob, &self.project_path),
            ("namespace_path", KeyKind::Glob, &self.namespace_path),
            ("project_id", KeyKind::Exact, &self.project_id),
            ("ref", KeyKind::Exact, &self.git_ref),
            ("ref_type", KeyKind::Exact, &self.ref_type),
            ("ref_protected", KeyKind::Bool, &self.ref_protected),
            ("environment", KeyKind::Exact, &self.environment),
            (
                "environment_protected",
                KeyKind::Bool,
                &self.environment_protected,
            ),
            ("pipeline_source", KeyKind::Exact, &self.pipeline_source),
            ("user_login", KeyKind::Exact, &self.user_login),
        ];
        all.into_iter()
            .filter_map(|(k, kind, v)| v.as_ref().map(|v| (k, kind, v)))
            .collect()
    }

    fn validate(&self) -> Result<(), String> {
        for (key, kind, value) in self.entries() {
            let values = value.values();
            if values.is_empty() {
                return Err(format!(
                    "match.{key} is an empty list, which can never match; remove the key"
                ));
            }
            for v in &values {
                match kind {
                    KeyKind::Glob => {
                        glob(v).map_err(|e| format!("match.{key}: invalid glob {v:?}: {e}"))?;
                    }
                    KeyKind::Bool if v != "true" && v != "false" => {
                        return Err(format!("match.{key} must be true or false, not {v:?}"));
                    }
                    _ if v.is_empty() => return Err(format!("match.{key} must not be empty")),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Checks every key against the claims (all of them, so that `plan` can show each failure).
    pub fn evaluate(&self, claims: &Claims) -> Vec<KeyCheck> {
        self.entries()
            .into_iter()
            .map(|(key, kind, value)| {
                let wanted = value.values();
                let actual = claims.get(key).map(str::to_owned);
                let ok = actual.as_deref().is_some_and(|actual| {
                    wanted.iter().any(|w| match kind {
                        KeyKind::Glob => glob(w).is_ok_and(|g| g.is_match(actual)),
                        KeyKind::Exact | KeyKind::Bool => w == actual,
                    })
                });
                KeyCheck {
                    key,
                    wanted,
                    glob: kind == KeyKind::Glob,
                    actual,
                    ok,
                }
            })
            .collect()
    }
}

fn glob(pattern: &str) -> Result<globset::GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()?
        .compile_matcher())
}

/// One `match` key checked against the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCheck {
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
    pub fn describe(&self) -> String {
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
pub struct RuleOutcome {
    /// 1-based position in the config.
    pub index: usize,
    /// The rule's name.
    pub name: String,
    /// Each `match` key.
    pub checks: Vec<KeyCheck>,
}

impl RuleOutcome {
    /// Whether every key matched.
    pub fn matched(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// A matched rule, rendered for one job.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The rule's name.
    pub binding: String,
    /// Where its secrets log in.
    pub target: LoginTarget,
    /// Its secrets, templates substituted.
    pub declarations: Vec<Declaration>,
}

impl Grant {
    /// The `declared_by` text of its secrets.
    pub fn declared_by(&self) -> String {
        format!("binding {}", self.binding)
    }
}

/// Evaluates every rule against verified claims, in order.
pub fn evaluate(bindings: &[BindingConfig], claims: &Claims) -> Vec<RuleOutcome> {
    bindings
        .iter()
        .enumerate()
        .map(|(i, b)| RuleOutcome {
            index: i + 1,
            name: b.name.clone(),
            checks: b.rule.evaluate(claims),
        })
        .collect()
}

/// Renders a matched rule for a job: templates filled from verified claims, the server checked
/// against the allow-list, each secret validated like a job declaration.
pub fn grant(
    binding: &BindingConfig,
    claims: &Claims,
    config: &ExecutorConfig,
) -> Result<Grant, BindingError> {
    let fail = |detail: String| BindingError::Render {
        binding: binding.name.clone(),
        detail,
    };
    let render_opt = |what: &str, text: &Option<String>| {
        text.as_deref()
            .map(|t| render(t, claims).map_err(|e| fail(format!("{what}: {e}"))))
            .transpose()
    };
    let server_address = render_opt("server", &binding.server)?;
    let server = config.server_for(server_address.as_deref()).map_err(|_| {
        BindingError::ServerNotAllowed {
            binding: binding.name.clone(),
            server: server_address.clone().unwrap_or_default(),
        }
    })?;
    let namespace = render_opt("namespace", &binding.namespace)?
        .or_else(|| server.namespace.clone())
        .filter(|n| !n.is_empty());
    let auth_mount = render_opt("auth_mount", &binding.auth_mount)?
        .unwrap_or_else(|| config.vault.auth_mount.clone())
        .trim_matches('/')
        .to_owned();
    let role = render_opt("role", &binding.role)?.or_else(|| config.vault.role.clone());
    let expand = |text: &str| render(text, claims);
    let declarations = binding
        .secrets
        .iter()
        .map(|(name, raw)| raw.validate(name, &expand, SecretOrigin::Binding))
        .collect::<Result<Vec<_>, DeclarationError>>()
        .map_err(|e| fail(e.to_string()))?;
    Ok(Grant {
        binding: binding.name.clone(),
        target: LoginTarget {
            server,
            namespace,
            auth_mount,
            role,
        },
        declarations,
    })
}

/// Validates every rule at config load: names, match keys, template syntax, allow-listed
/// servers, and each secret rendered with placeholder claims.
pub fn validate_all(bindings: &[BindingConfig], config: &ExecutorConfig) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, binding) in bindings.iter().enumerate() {
        let at = format!("bindings[{}] {:?}", i + 1, binding.name);
        if binding.name.trim().is_empty() || binding.name.chars().any(char::is_control) {
            return Err(format!("bindings[{}]: name must be non-empty text", i + 1));
        }
        if !seen.insert(binding.name.as_str()) {
            return Err(format!(
                "{at}: another binding has the same name; names must be unique"
            ));
        }
        if binding.secrets.is_empty() {
            return Err(format!(
                "{at}: grants no secrets; add [bindings.secrets.NAME] tables"
            ));
        }
        binding.rule.validate().map_err(|e| format!("{at}: {e}"))?;
        for (what, text) in [
            ("server", &binding.server),
            ("namespace", &binding.namespace),
            ("auth_mount", &binding.auth_mount),
            ("role", &binding.role),
        ] {
            if let Some(text) = text {
                let pieces = parse_template(text).map_err(|e| format!("{at}: {what}: {e}"))?;
                if what == "server" && pieces.iter().all(|p| matches!(p, Piece::Literal(_))) {
                    config.server_for(Some(text)).map_err(|_| {
                        format!(
                            "{at}: server {text} is not listed under [vault] or [[vault.servers]]; bindings may only use allow-listed servers"
                        )
                    })?;
                }
            }
        }
        for (name, raw) in &binding.secrets {
            raw.validate(name, &probe, SecretOrigin::Binding)
                .map_err(|e| format!("{at}: {e}"))?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Claim(String),
}

fn parse_template(text: &str) -> Result<Vec<Piece>, String> {
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
    Ok(pieces)
}

/// Substitutes `{claim}` from verified claims, refusing any value that could change the
/// structure of a path (see the module docs for the rule).
pub fn render(template: &str, claims: &Claims) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    for piece in parse_template(template)? {
        match piece {
            Piece::Literal(text) => out.push_str(&text),
            Piece::Claim(name) => {
                let value = claims.get(&name).ok_or_else(|| {
                    format!("the template {template:?} needs claim {name}, which this job's ID token does not carry")
                })?;
                check_claim_value(&name, value)?;
                out.push_str(value);
            }
        }
    }
    Ok(out)
}

/// The escaping rule: a claim value may be substituted only if it is non-empty, made of
/// `A-Z a-z 0-9 . _ -`, and free of `..`.
pub fn check_claim_value(claim: &str, value: &str) -> Result<(), String> {
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

/// Template check at config load: syntax and claim names, with a safe placeholder value.
fn probe(template: &str) -> Result<String, String> {
    let mut out = String::new();
    for piece in parse_template(template)? {
        match piece {
            Piece::Literal(text) => out.push_str(&text),
            Piece::Claim(_) => out.push('x'),
        }
    }
    Ok(out)
}

/// A matched rule could not be applied to this job.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
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
    pub fn binding(&self) -> &str {
        match self {
            BindingError::Render { binding, .. }
            | BindingError::ServerNotAllowed { binding, .. } => binding,
        }
    }

    /// The claims come from the job (an environment name, a ref); the binding exists, so the job
    /// is what does not fit it.
    pub fn failure_kind(&self) -> FailureKind {
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

    fn config(extra: &str) -> ExecutorConfig {
        let text = format!(
            "[vault]\naddress = \"https://vault.example.com\"\nrole = \"default-role\"\n[[vault.servers]]\naddress = \"https://dev.vault.example.com\"\n[gitlab]\nurl = \"https://gitlab.example.com\"\n{extra}"
        );
        ExecutorConfig::parse(&text).expect("valid config")
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
        let grant = grant(&config.bindings[0], &c, &config).expect("renders");
        assert_eq!(grant.target.role.as_deref(), Some("365-deploy"));
        assert_eq!(grant.target.auth_mount, "jwt");
        assert_eq!(grant.declarations[0].source.api_path(), "aws/sts/365-dev");
        assert!(!grant.declarations[0].file);
        assert_eq!(grant.declared_by(), "binding deploy-env");
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
            let err = grant(&config.bindings[0], &c, &config)
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
        let err = grant(&config.bindings[0], &c, &config)
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
            ExecutorConfig::parse(&text).expect_err(extra)
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
                .contains("reserved")
        );
        assert!(
            bad(&format!(
                "[[bindings]]\nname = \"b\"\n{secret}[[bindings]]\nname = \"b\"\n{secret}"
            ))
            .contains("same name")
        );
        let err = ExecutorConfig::parse(&format!(
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
        let ok = grant(
            &config.bindings[0],
            &claims(&[("environment", "dev")]),
            &config,
        )
        .expect("dev is listed");
        assert_eq!(ok.target.server.address, "https://dev.vault.example.com");
        let err = grant(
            &config.bindings[0],
            &claims(&[("environment", "prod")]),
            &config,
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
            render("a{{b}}{project_id}", &claims(&[("project_id", "7")])).expect("ok"),
            "a{b}7"
        );
        assert!(parse_template("a}b").is_err());
    }
}
