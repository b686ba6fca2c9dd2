//! Job-side secret declarations: GitLab's own `secrets:` schema, read from `LEASEHOLD_SECRETS`.
//!
//! Why a variable and not GitLab's `secrets:` keyword: gitlab-runner resolves `secrets:` itself,
//! before any executor runs, on Premium only, and then exports the values into every stage script.
//! Putting the same YAML into a variable keeps GitLab's documented syntax while leaving resolution,
//! exposure and revocation to leasehold.
//!
//! Accepted forms, per target variable name:
//! - short: `vault: path/to/secret/field@mount` (mount defaults to `kv-v2`, as in GitLab);
//! - long: `vault: {engine: {name: kv-v2|kv-v1|generic, path: mount}, path, field}`;
//! - `file:` (default true, as in GitLab), `token: $VAR` (the ID-token variable);
//! - leasehold extensions: `vault.data` (a request body; turns the read into a write),
//!   `vault.ttl` (the lease lifetime to ask for) and `stages:` (which sub-stages receive it);
//! - leasehold extension `vault: {token: {policies, ttl, no_default_policy}}`: not a secret at a
//!   path but a Vault token for the job's own tools, a child of the job's login token. Spelled
//!   inside `vault:` because it comes from Vault like any source; the entry-level `token:` keeps
//!   GitLab's meaning (which ID token to log in with), and each refuses the other's shape with a
//!   message pointing at the right one.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::api_path::{self, Piece};
use crate::exit::FailureKind;

/// GitLab's default engine path for the short form.
pub(crate) const DEFAULT_SHORT_FORM_MOUNT: &str = "kv-v2";

/// One declared secret, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Declaration {
    /// The environment variable the job sees.
    pub name: String,
    /// Where the value comes from.
    pub source: SecretSource,
    /// Deliver as a 0600 file whose path is the variable's value.
    pub file: bool,
    /// The ID-token variable named by `token: $VAR`, if any.
    pub token_variable: Option<String>,
    /// Sub-stage patterns overriding the executor config's `secret_stages`.
    pub stages: Option<Vec<String>>,
    /// `vault: {token: …}`: a child token rather than a value; `source` is then the
    /// `auth/token/create` request that makes it.
    pub vault_token: Option<TokenRequest>,
}

/// A Vault token for the job's own tools (`vault: {token: {…}}`), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenRequest {
    /// The policies, lowercased (as Vault stores them), in the order written, without repeats.
    pub policies: Vec<String>,
    /// Leave Vault's `default` policy off the token.
    pub no_default_policy: bool,
}

/// The variables a job receives next to its Vault token, so that `vault` and `bao` work
/// unchanged: the token under both CLIs' names, the server's address, namespace and CA bundle.
pub(crate) const TOKEN_COMPANIONS: &[&str] = &[
    "VAULT_TOKEN",
    "BAO_TOKEN",
    "VAULT_ADDR",
    "BAO_ADDR",
    "VAULT_NAMESPACE",
    "BAO_NAMESPACE",
    "VAULT_CACERT",
    "BAO_CACERT",
];

/// The companions that carry the token itself (masked like it).
pub(crate) const TOKEN_VARIABLES: &[&str] = &["VAULT_TOKEN", "BAO_TOKEN"];

/// Where a secret's value is read from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SecretSource {
    /// How the request path and the response are shaped.
    pub engine: Engine,
    /// The engine's mount path, without slashes at either end, checked by [`api_path::check`].
    pub mount: String,
    /// The secret's path below the mount, without slashes at either end, checked likewise.
    pub path: String,
    /// The key picked from the response data, checked likewise.
    pub field: String,
    /// Request body for write-style endpoints (`pki/issue/<role>`); `None` means a plain read.
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
    /// The lease lifetime to ask for.
    pub ttl: Option<Duration>,
}

/// The secret engines GitLab's schema names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Engine {
    /// KV version 2: `GET <mount>/data/<path>`, fields under `data.data`.
    KvV2,
    /// KV version 1: `GET <mount>/<path>`, fields under `data`.
    KvV1,
    /// Any other engine (database, aws, pki…): `GET <mount>/<path>` (or a write when `data` is
    /// set), fields under `data`.
    Generic,
    /// Not one of GitLab's: a child token of the job's login (`POST auth/token/create`, the
    /// token taken from the response's `auth`). Only `vault: {token: …}` makes it; no
    /// `engine.name` names it.
    Token,
}

impl Engine {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "kv-v2" => Some(Engine::KvV2),
            "kv-v1" => Some(Engine::KvV1),
            "generic" => Some(Engine::Generic),
            _ => None,
        }
    }

    /// The name as GitLab's schema spells it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Engine::KvV2 => "kv-v2",
            Engine::KvV1 => "kv-v1",
            Engine::Generic => "generic",
            Engine::Token => "token",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SecretSource {
    /// The API path (below `/v1/`) this source is requested at; the client sends it segment by
    /// segment ([`api_path::request_url`]).
    pub(crate) fn api_path(&self) -> String {
        match self.engine {
            Engine::KvV2 => format!("{}/data/{}", self.mount, self.path),
            Engine::KvV1 | Engine::Generic | Engine::Token => {
                format!("{}/{}", self.mount, self.path)
            }
        }
    }

    /// How a human refers to it in the job log: `ops/production/db` plus the field.
    pub(crate) fn display_path(&self) -> String {
        format!("{}/{}", self.mount, self.path)
    }
}

/// Context a declaration is validated against.
pub(crate) struct DeclarationContext<'a> {
    /// The job variable the YAML came from (for messages).
    pub source_variable: &'a str,
    /// Looks up a job variable by name: `(value, expandable)`; masked and file variables are not
    /// expandable, so an ID token can never be spliced into a request path or the job log.
    pub lookup: &'a dyn Fn(&str) -> Option<(String, bool)>,
}

/// Parses and validates the YAML of `LEASEHOLD_SECRETS`.
pub(crate) fn parse(
    yaml: &str,
    ctx: &DeclarationContext<'_>,
) -> Result<Vec<Declaration>, DeclarationError> {
    if yaml.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: BTreeMap<String, RawSecret> = serde_saphyr::from_str(yaml).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        DeclarationError::Malformed {
            variable: ctx.source_variable.to_owned(),
            line,
            column,
            message: one_line(&e.without_snippet().to_string()),
        }
    })?;
    let expand = |text: &str| expand_variables(text, ctx);
    raw.into_iter()
        .map(|(name, secret)| secret.validate(&name, &expand, SecretOrigin::Job))
        .collect()
}

fn one_line(text: &str) -> String {
    let mut out = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    // saphyr prefixes positions itself in some messages; ours come separately.
    if out.len() > 300 {
        out.truncate(300);
    }
    out
}

/// Who wrote a declaration, which decides what it may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretOrigin {
    /// The job's `LEASEHOLD_SECRETS`: `$VAR` expansion from plain job variables, `token:` allowed.
    Job,
    /// A runner admin's `[[bindings]]` rule: `{claim}` templates, and no `token:` (a binding always
    /// logs in with the job's verified ID token, the one its rule matched).
    Binding,
}

/// One secret as written, before validation: the schema shared by a job's YAML declarations and
/// the `[bindings.secrets.NAME]` tables of the executor config (TOML), so that both are checked
/// by the one [`RawSecret::validate`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecret {
    #[serde(default)]
    vault: Option<RawVault>,
    #[serde(default)]
    file: Option<bool>,
    #[serde(default, deserialize_with = "id_token_variable")]
    token: Option<String>,
    #[serde(default)]
    stages: Option<Vec<String>>,
    #[serde(default)]
    gcp_secret_manager: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    azure_key_vault: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    aws_secrets_manager: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    gitlab_secrets_manager: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Clone)]
enum RawVault {
    Short(String),
    Long(RawVaultLong),
    Token(RawTokenRequest),
}

/// By hand rather than `#[serde(untagged)]`: an untagged enum swallows the inner error, so a
/// typo in the long form would only say "did not match any variant" instead of naming the key.
impl<'de> Deserialize<'de> for RawVault {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Form;
        impl<'de> serde::de::Visitor<'de> for Form {
            type Value = RawVault;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "`path/to/secret/field@mount`, or a mapping with engine, path and field",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawVault, E> {
                Ok(RawVault::Short(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawVault, A::Error> {
                RawVaultMap::deserialize(serde::de::value::MapAccessDeserializer::new(map))?
                    .into_form()
            }
        }
        deserializer.deserialize_any(Form)
    }
}

/// Every key a `vault:` mapping may have, sorted into the long form or the token form by
/// [`RawVaultMap::into_form`] while the deserializer can still place an error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVaultMap {
    #[serde(default)]
    engine: Option<RawEngine>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    data: Option<BTreeMap<String, RawData>>,
    #[serde(default)]
    ttl: Option<RawTtl>,
    #[serde(default)]
    token: Option<RawTokenRequest>,
}

impl RawVaultMap {
    fn into_form<E: serde::de::Error>(self) -> Result<RawVault, E> {
        let RawVaultMap {
            engine,
            path,
            field,
            data,
            ttl,
            token,
        } = self;
        if let Some(token) = token {
            let others = [
                ("engine", engine.is_some()),
                ("path", path.is_some()),
                ("field", field.is_some()),
                ("data", data.is_some()),
                ("ttl", ttl.is_some()),
            ];
            if let Some((key, _)) = others.iter().find(|(_, present)| *present) {
                return Err(E::custom(format!(
                    "`vault: {{token: …}}` asks for a Vault token and takes no `{key}:` beside it (a token's ttl goes inside token:)"
                )));
            }
            return Ok(RawVault::Token(token));
        }
        Ok(RawVault::Long(RawVaultLong {
            engine: engine.ok_or_else(|| E::missing_field("engine"))?,
            path: path.ok_or_else(|| E::missing_field("path"))?,
            field: field.ok_or_else(|| E::missing_field("field"))?,
            data,
            ttl,
        }))
    }
}

#[derive(Debug, Clone)]
struct RawVaultLong {
    engine: RawEngine,
    path: String,
    field: String,
    data: Option<BTreeMap<String, RawData>>,
    ttl: Option<RawTtl>,
}

/// `vault: {token: {policies, ttl, no_default_policy}}`.
#[derive(Debug, Clone)]
struct RawTokenRequest {
    policies: Vec<String>,
    ttl: Option<RawTtl>,
    no_default_policy: bool,
}

/// By hand, so that a string here (the entry-level `token:`'s shape) gets a message saying which
/// key is which instead of "invalid type".
impl<'de> Deserialize<'de> for RawTokenRequest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            policies: Vec<String>,
            #[serde(default)]
            ttl: Option<RawTtl>,
            #[serde(default)]
            no_default_policy: bool,
        }
        struct Form;
        impl<'de> serde::de::Visitor<'de> for Form {
            type Value = RawTokenRequest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping like {policies: [app-read], ttl: 15m}")
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<RawTokenRequest, E> {
                Err(E::custom(
                    "`vault: {token: …}` asks for a Vault token and takes a mapping like {policies: [app-read], ttl: 15m}; the ID token to log in with is the entry-level `token: $VAULT_ID_TOKEN`, beside `vault:`",
                ))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawTokenRequest, A::Error> {
                let fields =
                    Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawTokenRequest {
                    policies: fields.policies,
                    ttl: fields.ttl,
                    no_default_policy: fields.no_default_policy,
                })
            }
        }
        deserializer.deserialize_any(Form)
    }
}

/// The entry-level `token:`: GitLab's name for the ID-token variable to log in with.
fn id_token_variable<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    struct Form;
    impl<'de> serde::de::Visitor<'de> for Form {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("the ID-token variable to log in with, like $VAULT_ID_TOKEN")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<String>, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Option<String>, A::Error> {
            Err(serde::de::Error::custom(
                "the entry-level `token:` names the ID-token variable to log in with (token: $VAULT_ID_TOKEN); to ask for a Vault token for the job's tools, write it inside vault: as `vault: {token: {policies: [...]}}`",
            ))
        }
    }
    deserializer.deserialize_any(Form)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    name: String,
    path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawData {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    List(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawTtl {
    Seconds(u64),
    Text(String),
}

impl RawSecret {
    /// Validates one secret into a [`Declaration`]. `expand` rewrites every string that ends up in
    /// a request (short form, mount, path, field, data values): `$VAR` expansion for job
    /// declarations, `{claim}` templates for bindings; its error is the reason, without the name.
    pub(crate) fn validate(
        &self,
        name: &str,
        expand: &dyn Fn(&str) -> Result<String, String>,
        origin: SecretOrigin,
    ) -> Result<Declaration, DeclarationError> {
        let invalid = |reason: String| DeclarationError::Invalid {
            name: name.to_owned(),
            reason,
        };
        // Which names are taken (by the runner, leasehold, the shell) is protocol's list,
        // checked by planning for every secret; here only the form.
        validate_env_name(name).map_err(&invalid)?;
        let other_provider = [
            ("gcp_secret_manager", self.gcp_secret_manager.is_some()),
            ("azure_key_vault", self.azure_key_vault.is_some()),
            ("aws_secrets_manager", self.aws_secrets_manager.is_some()),
            (
                "gitlab_secrets_manager",
                self.gitlab_secrets_manager.is_some(),
            ),
        ]
        .into_iter()
        .find(|(_, present)| *present);
        if let Some((provider, _)) = other_provider {
            return Err(invalid(format!(
                "{provider} is not supported by leasehold; declare a `vault:` source instead"
            )));
        }
        if origin == SecretOrigin::Binding && self.token.is_some() {
            return Err(invalid(
                "`token:` is not allowed in a binding: a binding always logs in with the ID token its rule matched".into(),
            ));
        }
        let vault = self
            .vault
            .as_ref()
            .ok_or_else(|| invalid("has no `vault:` source".into()))?;
        let expand = |text: &str| expand(text).map_err(&invalid);
        let mut vault_token = None;
        let source = match vault {
            RawVault::Token(request) => {
                let (source, token) = token_source(request, &expand).map_err(&invalid)?;
                if self.file == Some(true) {
                    return Err(invalid(
                        "a Vault token is delivered in the environment (VAULT_TOKEN and BAO_TOKEN must hold the token itself); remove `file: true`".into(),
                    ));
                }
                if TOKEN_COMPANIONS.contains(&name) && !TOKEN_VARIABLES.contains(&name) {
                    return Err(invalid(format!(
                        "leasehold sets {name} itself next to a Vault token; name the token VAULT_TOKEN"
                    )));
                }
                vault_token = Some(token);
                source
            }
            RawVault::Short(short) => parse_short_form(&expand(short)?).map_err(&invalid)?,
            RawVault::Long(long) => {
                let engine = Engine::parse(&long.engine.name).ok_or_else(|| {
                    invalid(format!(
                        "engine name {:?} is not one of kv-v2, kv-v1, generic",
                        long.engine.name
                    ))
                })?;
                let data = long
                    .data
                    .as_ref()
                    .map(|data| {
                        data.iter()
                            .map(|(k, v)| Ok((k.clone(), v.to_json(&expand)?)))
                            .collect::<Result<serde_json::Map<_, _>, DeclarationError>>()
                    })
                    .transpose()?;
                let ttl = long
                    .ttl
                    .as_ref()
                    .map(RawTtl::parse)
                    .transpose()
                    .map_err(&invalid)?;
                SecretSource {
                    engine,
                    mount: checked(Piece::Mount, &expand(&long.engine.path)?).map_err(&invalid)?,
                    path: checked(Piece::Path, &expand(&long.path)?).map_err(&invalid)?,
                    field: checked(Piece::Field, &expand(&long.field)?).map_err(&invalid)?,
                    data,
                    ttl,
                }
            }
        };
        let token_variable = self
            .token
            .as_ref()
            .map(|t| {
                let bare = t
                    .trim()
                    .trim_start_matches('$')
                    .trim_start_matches('{')
                    .trim_end_matches('}');
                validate_env_name(bare)
                    .map(|()| bare.to_owned())
                    .map_err(|_| {
                        invalid(format!(
                            "token must name an ID-token variable like $VAULT_ID_TOKEN, got {t:?}"
                        ))
                    })
            })
            .transpose()?;
        if let Some(stages) = &self.stages {
            crate::patterns::Patterns::new(stages).map_err(|e| invalid(format!("stages: {e}")))?;
        }
        Ok(Declaration {
            name: name.to_owned(),
            source,
            // A token is never a file (see above); everything else defaults to a file, as in GitLab.
            file: vault_token.is_none() && self.file.unwrap_or(true),
            token_variable,
            stages: self.stages.clone(),
            vault_token,
        })
    }
}

/// The policy names a job's token may never ask for.
const FORBIDDEN_TOKEN_POLICIES: &[&str] = &["root"];

/// Validates a token request into the `auth/token/create` request that makes it. `expand` applies
/// to policy names, like every other string a request carries.
fn token_source(
    request: &RawTokenRequest,
    expand: &dyn Fn(&str) -> Result<String, DeclarationError>,
) -> Result<(SecretSource, TokenRequest), String> {
    let mut policies: Vec<String> = Vec::with_capacity(request.policies.len());
    for written in &request.policies {
        let policy = expand(written)
            .map_err(|e| match e {
                DeclarationError::Invalid { reason, .. } => reason,
                other => other.to_string(),
            })?
            .trim()
            .to_ascii_lowercase();
        if policy.is_empty()
            || !policy
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(format!(
                "vault.token.policies: {written:?} is not a policy name (letters, digits, '.', '_' and '-')"
            ));
        }
        if FORBIDDEN_TOKEN_POLICIES.contains(&policy.as_str()) {
            return Err(format!(
                "vault.token.policies: a job's token cannot have the {policy} policy; list the policies it needs"
            ));
        }
        if !policies.contains(&policy) {
            policies.push(policy);
        }
    }
    if policies.is_empty() {
        return Err(
            "vault.token.policies is empty; list the Vault policies the token should have, like [app-read]".into(),
        );
    }
    let ttl = request.ttl.as_ref().map(RawTtl::parse).transpose()?;
    if ttl.is_some_and(|t| t.is_zero()) {
        return Err("vault.token.ttl must be at least 1s".into());
    }
    let mut body = serde_json::Map::new();
    body.insert("policies".into(), policies.clone().into());
    body.insert("no_default_policy".into(), request.no_default_policy.into());
    // leasehold renews it while the job runs; the parent's revocation ends it at cleanup.
    body.insert("renewable".into(), true.into());
    let source = SecretSource {
        engine: Engine::Token,
        mount: "auth/token".into(),
        path: "create".into(),
        field: TOKEN_FIELD.into(),
        data: Some(body),
        ttl,
    };
    Ok((
        source,
        TokenRequest {
            policies,
            no_default_policy: request.no_default_policy,
        },
    ))
}

/// The field a token's value is stored under, as in the `auth` block of Vault's answer.
pub(crate) const TOKEN_FIELD: &str = "client_token";

impl RawData {
    fn to_json(
        &self,
        expand: &dyn Fn(&str) -> Result<String, DeclarationError>,
    ) -> Result<serde_json::Value, DeclarationError> {
        Ok(match self {
            RawData::Bool(b) => (*b).into(),
            RawData::Int(i) => (*i).into(),
            RawData::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            RawData::Text(s) => expand(s)?.into(),
            RawData::List(items) => items
                .iter()
                .map(|s| expand(s))
                .collect::<Result<Vec<_>, _>>()?
                .into(),
        })
    }
}

impl RawTtl {
    fn parse(&self) -> Result<Duration, String> {
        match self {
            RawTtl::Seconds(s) => Ok(Duration::from_secs(*s)),
            RawTtl::Text(text) => parse_duration(text),
        }
    }
}

/// Parses `90`, `90s`, `15m`, `1h`, `1h30m`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => {
                return Err(format!(
                    "ttl {text:?} is not a duration like 90s, 15m or 1h"
                ));
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("ttl {text:?} is not a duration like 90s, 15m or 1h"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        digits.clear();
    }
    if !digits.is_empty() || text.is_empty() {
        return Err(format!(
            "ttl {text:?} is not a duration like 90s, 15m or 1h"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// `path/to/secret/field@mount`.
fn parse_short_form(short: &str) -> Result<SecretSource, String> {
    let (location, mount) = match short.rsplit_once('@') {
        Some((location, mount)) => (location, mount),
        None => (short, DEFAULT_SHORT_FORM_MOUNT),
    };
    let (path, field) = location
        .trim_end_matches('/')
        .rsplit_once('/')
        .ok_or_else(|| {
            format!(
                "short form {short:?} needs at least path/field, like production/db/password@ops"
            )
        })?;
    Ok(SecretSource {
        engine: Engine::KvV2,
        mount: checked(Piece::Mount, mount)?,
        path: checked(Piece::Path, path)?,
        field: checked(Piece::Field, field)?,
        data: None,
        ttl: None,
    })
}

/// A piece checked by the one rule for everything that goes into a request path (no `\`, no
/// dot segments, no `?`, `#`, `%`, whitespace or control characters, no empty segments); see
/// [`api_path`]. Checked after `$VAR` expansion and `{claim}` substitution, so neither can
/// splice in a way out of the mount.
fn checked(piece: Piece, value: &str) -> Result<String, String> {
    api_path::check(piece, value).map_err(|e| e.to_string())
}

/// Expands `$NAME` and `${NAME}` from non-secret job variables, as gitlab-runner does in its
/// `secrets:` block. Masked and file variables are refused rather than expanded.
fn expand_variables(text: &str, ctx: &DeclarationContext<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => return Err(format!("unterminated ${{ in {text:?}")),
            }
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..len], len)
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        match (ctx.lookup)(name) {
            Some((value, true)) => out.push_str(&value),
            Some((_, false)) => {
                return Err(format!(
                    "${name} is a masked or file variable and cannot be used in a secret path"
                ));
            }
            None => {}
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

fn validate_env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid environment variable name"))
    }
}

/// Why a job's declarations cannot be used. Always the job's fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeclarationError {
    /// The YAML does not parse or does not follow the schema.
    #[error(
        "{variable} is malformed at line {line} column {column}: {message}; see declarations.md in /usr/share/doc/leasehold/docs/"
    )]
    Malformed {
        /// The job variable holding the YAML.
        variable: String,
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
        /// The parser's message.
        message: String,
    },
    /// One declaration is invalid.
    #[error("secret {name}: {reason}")]
    Invalid {
        /// The target variable.
        name: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A declared secret has the name of an existing job variable.
    #[error(
        "secret {name} has the same name as a CI/CD variable of this job; the job script would export the variable over the secret, so rename the secret or remove the variable"
    )]
    Collision {
        /// The name.
        name: String,
    },
}

impl DeclarationError {
    /// Declarations are written by the job's author.
    pub(crate) fn failure_kind(&self) -> FailureKind {
        FailureKind::Build
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_with(
        vars: &'static [(&'static str, &'static str, bool)],
    ) -> impl Fn(&str) -> Option<(String, bool)> {
        move |name| {
            vars.iter()
                .find(|(k, _, _)| *k == name)
                .map(|(_, v, e)| ((*v).to_owned(), *e))
        }
    }

    fn parse_ok(yaml: &str) -> Vec<Declaration> {
        let lookup = ctx_with(&[
            ("CI_ENVIRONMENT_NAME", "staging", true),
            ("VAULT_ID_TOKEN", "eyJ", false),
        ]);
        parse(
            yaml,
            &DeclarationContext {
                source_variable: "LEASEHOLD_SECRETS",
                lookup: &lookup,
            },
        )
        .expect("valid")
    }

    fn parse_err(yaml: &str) -> String {
        let lookup = ctx_with(&[("VAULT_ID_TOKEN", "eyJ.secret", false)]);
        parse(
            yaml,
            &DeclarationContext {
                source_variable: "LEASEHOLD_SECRETS",
                lookup: &lookup,
            },
        )
        .expect_err("invalid")
        .to_string()
    }

    #[test]
    fn gitlab_documentation_examples() {
        let decls = parse_ok(
            "DATABASE_PASSWORD:\n  vault: production/db/password@ops\n  file: false\n  token: $VAULT_ID_TOKEN\n\
             DB:\n  vault:\n    engine:\n      name: kv-v2\n      path: ops\n    path: production/db\n    field: password\n\
             SIMPLE:\n  vault: production/s3/secret-key\n",
        );
        let by_name = |n: &str| decls.iter().find(|d| d.name == n).expect(n).clone();
        let short = by_name("DATABASE_PASSWORD");
        assert_eq!(short.source.api_path(), "ops/data/production/db");
        assert_eq!(short.source.field, "password");
        assert!(!short.file);
        assert_eq!(short.token_variable.as_deref(), Some("VAULT_ID_TOKEN"));
        assert_eq!(by_name("DB").source, short.source);
        assert!(by_name("DB").file, "file defaults to true as in GitLab");
        assert_eq!(
            by_name("SIMPLE").source.api_path(),
            "kv-v2/data/production/s3"
        );
    }

    #[test]
    fn kv_v1_generic_data_and_ttl() {
        let decls = parse_ok(
            "CERT:\n  vault:\n    engine: {name: generic, path: pki}\n    path: issue/web\n    field: certificate\n    \
             data: {common_name: \"$CI_ENVIRONMENT_NAME.example.com\", ttl: \"10m\"}\n    ttl: 15m\n\
             OLD:\n  vault: {engine: {name: kv-v1, path: kv}, path: /team/app/, field: key}\n  stages: [build_script]\n",
        );
        let cert = &decls[0];
        assert_eq!(cert.source.engine, Engine::Generic);
        assert_eq!(cert.source.api_path(), "pki/issue/web");
        assert_eq!(cert.source.ttl, Some(Duration::from_secs(900)));
        let data = cert.source.data.as_ref().expect("data");
        assert_eq!(data["common_name"], "staging.example.com");
        assert_eq!(decls[1].source.api_path(), "kv/team/app");
        assert_eq!(
            decls[1].stages.as_deref(),
            Some(&["build_script".to_owned()][..])
        );
    }

    #[test]
    fn malformed_yaml_names_line_and_column() {
        let err = parse_err("A:\n  vault: x/y@z\nB:\n  vault: [unclosed\n");
        assert!(err.contains("line 4"), "{err}");
        assert!(err.starts_with("LEASEHOLD_SECRETS is malformed"), "{err}");
    }

    #[test]
    fn unknown_long_form_key_is_named() {
        let err = parse_err(
            "A:\n  vault:\n    engine: {name: kv-v2, path: kv}\n    path: a\n    feild: b\n",
        );
        assert!(err.contains("feild"), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn unknown_key_is_rejected_with_position() {
        let err = parse_err("A:\n  vault: x/y@z\n  flie: false\n");
        assert!(err.contains("flie"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn bad_declarations() {
        assert!(parse_err("A:\n  vault: nofield\n").contains("path/field"));
        assert!(parse_err("1A:\n  vault: a/b\n").contains("valid environment variable"));
        assert!(parse_err("A:\n  vault: ../../sys/b@kv\n").contains("\"..\" segment"));
        assert!(parse_err("A:\n  vault: a?x=1/b@kv\n").contains("'?'"));
        assert!(
            parse_err("A:\n  vault: {engine: {name: kv-v2, path: kv}, path: a, field: ''}\n")
                .contains("field \"\" is empty")
        );
        assert!(
            parse_err("A:\n  vault: {engine: {name: kv-v3, path: kv}, path: a, field: b}\n")
                .contains("kv-v3")
        );
        assert!(parse_err("A:\n  gcp_secret_manager: {name: x}\n").contains("not supported"));
        assert!(parse_err("A:\n  file: true\n").contains("no `vault:`"));
    }

    #[test]
    fn every_piece_follows_the_one_path_rule() {
        let cases = [
            (
                "A:\n  vault: 'x\\..\\..\\..\\secret\\data\\ci\\app/password@kv-ci'\n",
                "secret A: path \"x\\\\..\\\\..\\\\..\\\\secret\\\\data\\\\ci\\\\app\" contains '\\', which URL parsers read as '/'; separate segments with '/' only",
            ),
            (
                "A:\n  vault: 'a/%2e%2e/b/f@kv'\n",
                "secret A: path \"a/%2e%2e/b\" contains '%'",
            ),
            (
                "A:\n  vault: 'a//b/f@kv'\n",
                "secret A: path \"a//b\" has an empty segment",
            ),
            (
                "A:\n  vault: 'a/./b/f@kv'\n",
                "secret A: path \"a/./b\" has a \".\" or \"..\" segment",
            ),
            (
                "A:\n  vault: 'a/b/f@kv/..'\n",
                "secret A: mount \"kv/..\" has a \".\" or \"..\" segment",
            ),
            (
                "A:\n  vault: 'a/b/..@kv'\n",
                "secret A: field \"..\" has a \".\" or \"..\" segment",
            ),
            (
                "A:\n  vault: 'a/b/f\\x@kv'\n",
                "secret A: field \"f\\\\x\" contains '\\'",
            ),
            (
                "A:\n  vault: 'a/b#/f@kv'\n",
                "secret A: path \"a/b#\" contains '#'",
            ),
            (
                "A:\n  vault: \"a/b\\e[2J/f@kv\"\n",
                "contains the control or invisible character U+001B",
            ),
            (
                "A:\n  vault: \"a/\\u202Eb/f@kv\"\n",
                "contains the control or invisible character U+202E",
            ),
            (
                "A:\n  vault: {engine: {name: kv-v1, path: 'kv\\..'}, path: a, field: b}\n",
                "secret A: mount \"kv\\\\..\" contains '\\'",
            ),
            (
                "A:\n  vault: {engine: {name: kv-v1, path: kv}, path: a, field: 'b/../c'}\n",
                "secret A: field \"b/../c\" has a \".\" or \"..\" segment",
            ),
        ];
        for (yaml, message) in cases {
            let err = parse_err(yaml);
            assert!(err.contains(message), "{yaml}: {err}");
            assert!(
                !err.contains('\u{1b}') && !err.contains('\u{202E}'),
                "{err:?}"
            );
        }
    }

    #[test]
    fn expanded_variables_follow_the_rule_too() {
        let lookup = ctx_with(&[("TARGET", "x\\..\\..\\sys\\mounts", true)]);
        let err = parse(
            "A:\n  vault: $TARGET/password@kv-ci\n",
            &DeclarationContext {
                source_variable: "LEASEHOLD_SECRETS",
                lookup: &lookup,
            },
        )
        .expect_err("refused")
        .to_string();
        assert!(
            err.starts_with("secret A: path \"x\\\\..\\\\..\\\\sys\\\\mounts\" contains '\\'"),
            "{err}"
        );
    }

    #[test]
    fn masked_variables_are_never_expanded() {
        let err = parse_err("A:\n  vault: $VAULT_ID_TOKEN/x@kv\n");
        assert!(err.contains("masked"), "{err}");
        assert!(!err.contains("eyJ.secret"), "{err}");
    }

    #[test]
    fn a_token_for_the_jobs_tools() {
        let decls = parse_ok(
            "VAULT_TOKEN:\n  vault:\n    token:\n      policies: [App-Read, pki-issue, app-read, \"$CI_ENVIRONMENT_NAME-deploy\"]\n      ttl: 15m\n      no_default_policy: true\n  token: $VAULT_ID_TOKEN\n  stages: [build_script]\n",
        );
        let token = &decls[0];
        let request = token.vault_token.as_ref().expect("a token request");
        assert_eq!(
            request.policies,
            ["app-read", "pki-issue", "staging-deploy"],
            "lowercased as Vault stores them, repeats dropped, $VAR expanded"
        );
        assert!(request.no_default_policy);
        assert!(!token.file, "a token is never a file");
        assert_eq!(token.token_variable.as_deref(), Some("VAULT_ID_TOKEN"));
        assert_eq!(token.source.engine, Engine::Token);
        assert_eq!(token.source.api_path(), "auth/token/create");
        assert_eq!(token.source.field, TOKEN_FIELD);
        assert_eq!(token.source.ttl, Some(Duration::from_secs(900)));
        let body = token.source.data.as_ref().expect("body");
        assert_eq!(
            body["policies"],
            serde_json::json!(["app-read", "pki-issue", "staging-deploy"])
        );
        assert_eq!(body["no_default_policy"], true);
        assert_eq!(body["renewable"], true);
        let plain = &parse_ok("T:\n  vault: {token: {policies: [a]}}\n")[0];
        assert!(!plain.vault_token.as_ref().expect("token").no_default_policy);
        assert_eq!(plain.source.ttl, None);
    }

    #[test]
    fn a_token_request_and_the_id_token_key_are_told_apart() {
        let err = parse_err("T:\n  vault:\n    token: $VAULT_ID_TOKEN\n");
        assert!(
            err.contains("asks for a Vault token and takes a mapping")
                && err.contains("entry-level `token: $VAULT_ID_TOKEN`"),
            "{err}"
        );
        assert!(err.contains("line 3"), "{err}");
        let err = parse_err("T:\n  vault: a/b@kv\n  token:\n    policies: [x]\n");
        assert!(
            err.contains("names the ID-token variable") && err.contains("vault: {token:"),
            "{err}"
        );
        let err = parse_err(
            "T:\n  vault:\n    engine: {name: generic, path: x}\n    token: {policies: [a]}\n",
        );
        assert!(err.contains("takes no `engine:`"), "{err}");
        let err = parse_err("T:\n  vault: {token: {policies: [a], polices: [b]}}\n");
        assert!(err.contains("polices"), "{err}");
        let err = parse_err("T:\n  vault: {path: a, field: b}\n");
        assert!(
            err.contains("engine"),
            "the long form still names what is missing: {err}"
        );
    }

    #[test]
    fn bad_token_requests() {
        for (yaml, wanted) in [
            (
                "T:\n  vault: {token: {policies: []}}\n",
                "policies is empty",
            ),
            (
                "T:\n  vault: {token: {policies: [root]}}\n",
                "cannot have the root policy",
            ),
            (
                "T:\n  vault: {token: {policies: [\"a b\"]}}\n",
                "is not a policy name",
            ),
            (
                "T:\n  vault: {token: {policies: [\"a/b\"]}}\n",
                "is not a policy name",
            ),
            (
                "T:\n  vault: {token: {policies: [a], ttl: 5x}}\n",
                "not a duration",
            ),
            (
                "T:\n  vault: {token: {policies: [a], ttl: 0}}\n",
                "at least 1s",
            ),
            (
                "T:\n  vault: {token: {policies: [a]}}\n  file: true\n",
                "remove `file: true`",
            ),
            (
                "VAULT_ADDR:\n  vault: {token: {policies: [a]}}\n",
                "name the token VAULT_TOKEN",
            ),
            (
                "T:\n  vault: {token: {policies: [\"$VAULT_ID_TOKEN\"]}}\n",
                "masked",
            ),
        ] {
            let err = parse_err(yaml);
            assert!(err.contains(wanted), "{yaml}: {err}");
            assert!(!err.contains("eyJ.secret"), "{err}");
        }
        assert!(
            parse_ok("BAO_TOKEN:\n  vault: {token: {policies: [a]}}\n")[0]
                .vault_token
                .is_some()
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").expect("ok"), Duration::from_secs(90));
        assert_eq!(
            parse_duration("1h30m").expect("ok"),
            Duration::from_secs(5400)
        );
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn no_lookup(_: &str) -> Option<(String, bool)> {
        None
    }

    fn yaml_fragment() -> impl Strategy<Value = String> {
        let atoms = prop_oneof![
            Just("A:\n".to_owned()),
            Just("  vault: ".to_owned()),
            Just("a/b/c@kv".to_owned()),
            Just("  file: false\n".to_owned()),
            Just("  token: $VAULT_ID_TOKEN\n".to_owned()),
            Just(
                "  vault:\n    engine: {name: kv-v2, path: kv}\n    path: x\n    field: y\n"
                    .to_owned()
            ),
            Just("    data: {a: 1, b: [x, y]}\n".to_owned()),
            Just("    ttl: 1h\n".to_owned()),
            Just("  vault:\n    token: {policies: [a, b], ttl: 15m}\n".to_owned()),
            Just("    token:\n      policies: [x]\n".to_owned()),
            Just("  stages: [build_script, 'step_*']\n".to_owned()),
            Just("&a ".to_owned()),
            Just("*a".to_owned()),
            Just("<<: *a\n".to_owned()),
            Just("[".to_owned()),
            Just("{".to_owned()),
            Just("- ".to_owned()),
            Just("\n".to_owned()),
            Just("\t".to_owned()),
            Just("'".to_owned()),
            Just("\"\\u00".to_owned()),
            Just("..".to_owned()),
            Just("${".to_owned()),
            "[ -~]{0,12}",
        ];
        prop::collection::vec(atoms, 0..24).prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Any text, however broken, yields declarations or a one-line error; never a panic.
        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
            let ctx = DeclarationContext { source_variable: "LEASEHOLD_SECRETS", lookup: &no_lookup };
            if let Err(e) = parse(&text, &ctx) {
                prop_assert!(!e.to_string().contains('\n'));
            }
        }

        #[test]
        fn never_panics_on_yaml_shaped_text(text in yaml_fragment()) {
            let ctx = DeclarationContext { source_variable: "LEASEHOLD_SECRETS", lookup: &no_lookup };
            match parse(&text, &ctx) {
                Ok(decls) => for d in decls {
                    prop_assert!(!d.source.path.split('/').any(|s| s == ".."));
                    prop_assert!(!d.source.mount.is_empty() && !d.source.path.is_empty());
                },
                Err(e) => prop_assert!(!e.to_string().contains('\n')),
            }
        }
    }
}
