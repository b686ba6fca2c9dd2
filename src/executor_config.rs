//! The runner admin's executor config: a TOML file like gitlab-runner's own `config.toml`.
//!
//! Why TOML and why strict: the file decides which Vault servers may receive a job's ID token and
//! which sub-stages see secrets, so a typo must not silently fall back to a default. Unknown keys
//! are errors that name the key, line and column. Raw values are validated here, once, into types
//! the rest of leasehold can trust (ripgrep's "low args, then high args").

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::exit::FailureKind;

/// Where the config is read from when neither `--config` nor `LEASEHOLD_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/leasehold/config.toml";

/// The executor config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorConfig {
    /// Private per-job state lives below this directory (0700, owned by leasehold's user).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Reported to gitlab-runner as `builds_dir`.
    #[serde(default = "default_builds_dir")]
    pub builds_dir: PathBuf,
    /// Reported to gitlab-runner as `cache_dir`.
    #[serde(default = "default_cache_dir")]
    pub cache_dir: PathBuf,
    /// Reported to gitlab-runner as `builds_dir_is_shared` when set.
    #[serde(default)]
    pub builds_dir_is_shared: Option<bool>,
    /// The Vault/OpenBao servers.
    pub vault: VaultSection,
    /// How jobs name their secrets and which stages see them.
    #[serde(default)]
    pub job: JobSection,
    /// How injected values are masked in the job log.
    #[serde(default)]
    pub mask: MaskSection,
    /// The wrapped executor.
    #[serde(default)]
    pub executor: ExecutorSection,
    /// Lease renewal limits.
    #[serde(default)]
    pub leases: LeasesSection,
    /// The credential `leasehold reap` revokes orphaned leases with.
    #[serde(default)]
    pub reaper: Option<ReaperSection>,
    /// The GitLab instance whose ID tokens leasehold verifies itself, before any Vault request.
    /// Absent: no local verification (Vault's JWT auth stays the only verifier) and no bindings.
    #[serde(default)]
    pub gitlab: Option<GitlabSection>,
    /// What jobs may declare themselves.
    #[serde(default)]
    pub policy: crate::policy::PolicySection,
    /// Admin bindings: secrets granted by verified claims, evaluated in order, all matches apply.
    #[serde(default)]
    pub bindings: Vec<crate::bindings::BindingConfig>,
}

/// `[gitlab]`: where ID tokens come from and how they are checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitlabSection {
    /// The instance's URL, e.g. `https://gitlab.example.com`; its JWKS is fetched from
    /// `<url>/oauth/discovery/keys`, falling back to `<url>/-/jwks` (GitLab before 17).
    pub url: String,
    /// The `iss` tokens must carry; default: `url`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// `exact` (default): `iss` must equal `issuer`. `both`: `gitlab.example.com` and
    /// `https://gitlab.example.com` are accepted for each other (older GitLab, `CI_JOB_JWT`).
    #[serde(default)]
    pub issuer_forms: IssuerForms,
    /// A token's `aud` must contain one of these; default: the address of every configured
    /// server, `[vault] address` first.
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    /// Clock skew tolerated for `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "default_leeway_seconds")]
    pub leeway_seconds: u64,
    /// How long a fetched JWKS is trusted before it is fetched again, in seconds.
    #[serde(default = "default_jwks_cache_ttl_seconds")]
    pub jwks_cache_ttl_seconds: u64,
    /// Where the JWKS is cached; default `<state_dir>/jwks`. Same checks as `state_dir`
    /// (owned by leasehold's user, mode 0700): whoever can write it could plant signing keys.
    #[serde(default)]
    pub jwks_cache_dir: Option<PathBuf>,
    /// Accept `CI_JOB_JWT_V2` and `CI_JOB_JWT` when the job has no `[job] id_token_variable`.
    #[serde(default)]
    pub allow_legacy_token_variables: bool,
    /// PEM bundle of CAs to trust for GitLab instead of the system store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Allow `http://` to a non-loopback GitLab. Loopback is always allowed.
    #[serde(default)]
    pub allow_http: bool,
    /// Seconds before a JWKS request gives up.
    #[serde(default = "default_gitlab_timeout_seconds")]
    pub timeout_seconds: u64,
}

/// How `iss` is compared with the configured issuer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssuerForms {
    /// Byte for byte (a trailing `/` on either side is ignored).
    #[default]
    Exact,
    /// With or without the configured issuer's scheme.
    Both,
}

impl GitlabSection {
    /// The instance URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.url.trim_end_matches('/')
    }

    /// The configured issuer (default: the URL), without a trailing slash.
    pub fn issuer(&self) -> &str {
        self.issuer
            .as_deref()
            .unwrap_or(&self.url)
            .trim_end_matches('/')
    }

    /// Every `iss` value accepted.
    pub fn accepted_issuers(&self) -> Vec<String> {
        let issuer = self.issuer().to_owned();
        match self.issuer_forms {
            IssuerForms::Exact => vec![issuer],
            IssuerForms::Both => {
                let bare = issuer
                    .split_once("://")
                    .map_or(issuer.as_str(), |(_, rest)| rest)
                    .to_owned();
                let with_scheme = if bare == issuer {
                    let scheme = self.url.split_once("://").map_or("https", |(s, _)| s);
                    format!("{scheme}://{bare}")
                } else {
                    issuer.clone()
                };
                vec![with_scheme, bare]
            }
        }
    }

    /// The JWKS cache directory.
    pub fn jwks_cache_dir(&self, state_dir: &Path) -> PathBuf {
        self.jwks_cache_dir
            .clone()
            .unwrap_or_else(|| state_dir.join("jwks"))
    }

    /// Request timeout for JWKS fetches.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.max(1))
    }
}

/// `[leases]`: how leases and the token are kept alive while the job runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeasesSection {
    /// The longest TTL or renewal increment leasehold ever asks for, in seconds. Requests are
    /// further capped by the job's remaining timeout.
    #[serde(default = "default_max_increment")]
    pub max_increment_seconds: u64,
    /// How long after its timeout a job's leftover state counts as orphaned, for `reap`.
    #[serde(default = "default_reap_grace")]
    pub reap_grace_seconds: u64,
}

impl Default for LeasesSection {
    fn default() -> Self {
        LeasesSection {
            max_increment_seconds: default_max_increment(),
            reap_grace_seconds: default_reap_grace(),
        }
    }
}

fn default_max_increment() -> u64 {
    3600
}
fn default_reap_grace() -> u64 {
    900
}

/// `[reaper]`: the reaper's own Vault credential (never a job's).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaperSection {
    /// A file holding a Vault token (e.g. a periodic token), read at each run.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Log in with AppRole instead.
    #[serde(default)]
    pub approle: Option<AppRoleSection>,
}

/// `[reaper.approle]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRoleSection {
    /// The AppRole auth mount.
    #[serde(default = "default_approle_mount")]
    pub mount: String,
    /// The role id.
    pub role_id: String,
    /// A file holding the secret id.
    pub secret_id_file: PathBuf,
}

fn default_approle_mount() -> String {
    "approle".into()
}

/// `[vault]`: the default server, and the other servers a job may name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSection {
    /// The default server's address, e.g. `https://vault.example.com:8200`.
    pub address: String,
    /// The default server's namespace (a job's `VAULT_NAMESPACE` overrides it).
    #[serde(default)]
    pub namespace: Option<String>,
    /// PEM bundle of CAs to trust for the default server instead of the system store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (with `client_key`) for mutual TLS with the default server.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key for `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Allow `http://` to a non-loopback default server. Loopback is always allowed.
    #[serde(default)]
    pub allow_http: bool,
    /// The JWT auth mount used when the job sets no `VAULT_AUTH_PATH`.
    #[serde(default = "default_auth_mount")]
    pub auth_mount: String,
    /// The JWT role used when the job sets no `VAULT_AUTH_ROLE` (absent: the mount's default role).
    #[serde(default)]
    pub role: Option<String>,
    /// Seconds before one HTTP request to Vault gives up.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// How many times a request is retried when Vault is unreachable or answers 5xx.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Further servers a job may select with `VAULT_SERVER_URL`.
    #[serde(default)]
    pub servers: Vec<ServerConfig>,
}

impl VaultSection {
    /// The default server as a [`ServerConfig`].
    pub fn default_server(&self) -> ServerConfig {
        ServerConfig {
            address: self.address.clone(),
            namespace: self.namespace.clone(),
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            allow_http: self.allow_http,
        }
    }

    /// Every server a job may use, the default first.
    pub fn all_servers(&self) -> Vec<ServerConfig> {
        std::iter::once(self.default_server())
            .chain(self.servers.iter().cloned())
            .collect()
    }
}

/// One Vault/OpenBao server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `https://vault.example.com:8200`.
    pub address: String,
    /// Namespace used when the job sets no `VAULT_NAMESPACE`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// PEM bundle of CAs to trust instead of the system store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (with `client_key`) for mutual TLS.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key for `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Allow `http://` to a non-loopback address. Loopback is always allowed.
    #[serde(default)]
    pub allow_http: bool,
}

/// `[job]`: the names jobs use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSection {
    /// The job variable holding the ID token (an `id_tokens:` key).
    #[serde(default = "default_id_token_variable")]
    pub id_token_variable: String,
    /// The job variable holding the YAML secret declarations.
    #[serde(default = "default_secrets_variable")]
    pub secrets_variable: String,
    /// Sub-stages whose child process receives secrets; `*` is a wildcard.
    #[serde(default = "default_secret_stages")]
    pub secret_stages: Vec<String>,
}

/// `[mask]`: masking of injected values in the job log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskSection {
    /// What replaces a secret in the job log.
    #[serde(default = "default_mask_text")]
    pub text: String,
    /// Values shorter than this many bytes are not masked (the job log says so, by name).
    #[serde(default = "default_mask_min_length")]
    pub min_length: usize,
}

/// `[executor]`: what runs the job's scripts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSection {
    /// Which wrapped executor runs the scripts.
    #[serde(default)]
    pub kind: ExecutorKind,
    /// The shell the built-in `shell` executor runs scripts with.
    #[serde(default = "default_shell")]
    pub shell: String,
    /// How secrets reach the job: its process environment, or a private wrapper script.
    #[serde(default)]
    pub inject: InjectMode,
    /// `shell` only: run the job as this local user (leasehold must run as root).
    #[serde(default)]
    pub user: Option<String>,
    /// `shell` only: the job's group (default: the user's primary group).
    #[serde(default)]
    pub group: Option<String>,
    /// `shell` only: take the job's user from this verified ID-token claim (e.g. `user_login`).
    #[serde(default)]
    pub user_from_claim: Option<String>,
    /// With `user_from_claim`: the local users a job may run as (globs). Required.
    #[serde(default)]
    pub allowed_users: Vec<String>,
    /// With `user_from_claim`: claim value to local user, for names that differ.
    #[serde(default)]
    pub user_map: std::collections::BTreeMap<String, String>,
    /// Where a job running as another user gets its file secrets and its copy of the script
    /// (0711, owned by root; each stage gets a 0700 directory owned by the job's user).
    #[serde(default = "default_files_dir")]
    pub files_dir: PathBuf,
    /// `custom` only: the inner driver, exactly as in gitlab-runner's `[runners.custom]`.
    #[serde(default)]
    pub custom: Option<CustomDriver>,
}

/// The wrapped executors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// Run each script locally with `bash <script>`.
    #[default]
    Shell,
    /// Call an existing custom-executor driver (VM, container, SSH) for every stage.
    Custom,
}

/// How secrets are handed to the job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InjectMode {
    /// In the environment of the process that runs the script (it must pass it on).
    #[default]
    Env,
    /// In a private wrapper script that exports them and runs the original script unchanged:
    /// for drivers that cross a machine or container boundary.
    Script,
}

/// `[executor.custom]`: an inner custom-executor driver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomDriver {
    /// The driver's config_exec (optional, as in gitlab-runner).
    #[serde(default)]
    pub config_exec: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub config_args: Vec<String>,
    /// The driver's prepare_exec (optional).
    #[serde(default)]
    pub prepare_exec: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub prepare_args: Vec<String>,
    /// The driver's run_exec (required).
    pub run_exec: String,
    /// Its arguments; leasehold appends the script path and the stage name.
    #[serde(default)]
    pub run_args: Vec<String>,
    /// The driver's cleanup_exec (optional).
    #[serde(default)]
    pub cleanup_exec: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub cleanup_args: Vec<String>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/run/leasehold")
}
fn default_builds_dir() -> PathBuf {
    PathBuf::from("/var/lib/leasehold/builds")
}
fn default_cache_dir() -> PathBuf {
    PathBuf::from("/var/lib/leasehold/cache")
}
fn default_auth_mount() -> String {
    "jwt".into()
}
fn default_timeout_seconds() -> u64 {
    10
}
fn default_retries() -> u32 {
    3
}
fn default_id_token_variable() -> String {
    "VAULT_ID_TOKEN".into()
}
fn default_secrets_variable() -> String {
    "LEASEHOLD_SECRETS".into()
}
fn default_secret_stages() -> Vec<String> {
    vec![
        "build_script".into(),
        "step_*".into(),
        "after_script".into(),
    ]
}
fn default_mask_text() -> String {
    "[MASKED]".into()
}
fn default_mask_min_length() -> usize {
    8
}
fn default_shell() -> String {
    "bash".into()
}
fn default_leeway_seconds() -> u64 {
    60
}
fn default_jwks_cache_ttl_seconds() -> u64 {
    3600
}
fn default_gitlab_timeout_seconds() -> u64 {
    10
}
fn default_files_dir() -> PathBuf {
    PathBuf::from("/run/leasehold-files")
}

impl Default for JobSection {
    fn default() -> Self {
        JobSection {
            id_token_variable: default_id_token_variable(),
            secrets_variable: default_secrets_variable(),
            secret_stages: default_secret_stages(),
        }
    }
}

impl Default for MaskSection {
    fn default() -> Self {
        MaskSection {
            text: default_mask_text(),
            min_length: default_mask_min_length(),
        }
    }
}

impl Default for ExecutorSection {
    fn default() -> Self {
        ExecutorSection {
            kind: ExecutorKind::default(),
            shell: default_shell(),
            inject: InjectMode::default(),
            user: None,
            group: None,
            user_from_claim: None,
            allowed_users: Vec::new(),
            user_map: std::collections::BTreeMap::new(),
            files_dir: default_files_dir(),
            custom: None,
        }
    }
}

impl ExecutorConfig {
    /// Picks the config path: `--config`, then `LEASEHOLD_CONFIG`, then the default.
    pub fn locate(cli: Option<&Path>) -> PathBuf {
        cli.map(Path::to_path_buf)
            .or_else(|| {
                std::env::var_os("LEASEHOLD_CONFIG")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
    }

    /// Reads, parses and validates the config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ConfigError::Missing {
                path: path.to_owned(),
            },
            _ => ConfigError::Read {
                path: path.to_owned(),
                source,
            },
        })?;
        Self::parse(&text).map_err(|detail| ConfigError::Invalid {
            path: path.to_owned(),
            detail,
        })
    }

    /// Parses and validates config text; the error is one line naming key, line and column.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: ExecutorConfig =
            toml::from_str(text).map_err(|e| describe_toml_error(text, &e))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        for server in &self.vault.all_servers() {
            crate::vault::check_address(&server.address, server.allow_http)
                .map_err(|e| e.to_string())?;
            if server.client_cert.is_some() != server.client_key.is_some() {
                return Err(format!(
                    "server {}: client_cert and client_key must be set together",
                    server.address
                ));
            }
        }
        if !self.state_dir.is_absolute() {
            return Err(format!(
                "state_dir {} must be an absolute path",
                self.state_dir.display()
            ));
        }
        for pattern in &self.job.secret_stages {
            globset::Glob::new(pattern)
                .map_err(|e| format!("job.secret_stages: invalid pattern {pattern:?}: {e}"))?;
        }
        let executor = &self.executor;
        match executor.kind {
            ExecutorKind::Custom if executor.custom.is_none() => {
                return Err("[executor] kind = \"custom\" needs an [executor.custom] table with at least run_exec".into());
            }
            ExecutorKind::Custom
                if executor.user.is_some() || executor.user_from_claim.is_some() =>
            {
                return Err("[executor] user / user_from_claim apply to kind = \"shell\" only; a custom driver decides the job's user itself".into());
            }
            _ => {}
        }
        if executor.user.is_some() && executor.user_from_claim.is_some() {
            return Err("[executor] set either user or user_from_claim, not both".into());
        }
        if executor.user_from_claim.is_some() && self.gitlab.is_none() {
            return Err("[executor] user_from_claim needs [gitlab], so that the claim comes from a verified ID token".into());
        }
        if executor.user_from_claim.is_some() && executor.allowed_users.is_empty() {
            return Err("[executor] user_from_claim needs allowed_users, so that a job cannot pick any local account".into());
        }
        if !executor.files_dir.is_absolute() {
            return Err(format!(
                "[executor] files_dir {} must be an absolute path",
                executor.files_dir.display()
            ));
        }
        if let Some(reaper) = &self.reaper
            && reaper.token_file.is_some() == reaper.approle.is_some()
        {
            return Err("[reaper] needs exactly one of token_file or [reaper.approle]".into());
        }
        if self.mask.text.is_empty() {
            return Err("mask.text must not be empty".into());
        }
        if let Some(gitlab) = &self.gitlab {
            validate_gitlab(gitlab)?;
        } else if !self.bindings.is_empty() {
            return Err("bindings need [gitlab] so that claims are verified; add [gitlab] url = \"https://gitlab.example.com\"".into());
        }
        self.policy.validate()?;
        crate::bindings::validate_all(&self.bindings, self)?;
        Ok(())
    }

    /// The audiences a token's `aud` is checked against (empty without `[gitlab]`).
    pub fn audiences(&self) -> Vec<String> {
        match self.gitlab.as_ref().and_then(|g| g.audiences.clone()) {
            Some(list) => list,
            None if self.gitlab.is_some() => {
                let mut list: Vec<String> = Vec::new();
                for server in self.vault.all_servers() {
                    let address = server.address.trim_end_matches('/').to_owned();
                    if !list.contains(&address) {
                        list.push(address);
                    }
                }
                list
            }
            None => Vec::new(),
        }
    }

    /// Request timeout for Vault calls.
    pub fn vault_timeout(&self) -> Duration {
        Duration::from_secs(self.vault.timeout_seconds.max(1))
    }

    /// The server a job asked for by URL, if the admin allows it; `None` selects the default.
    pub fn server_for(&self, requested: Option<&str>) -> Result<ServerConfig, String> {
        let Some(requested) = requested else {
            return Ok(self.vault.default_server());
        };
        let wanted = normalize_address(requested);
        self.vault
            .all_servers()
            .into_iter()
            .find(|s| normalize_address(&s.address) == wanted)
            .ok_or_else(|| {
                format!(
                    "VAULT_SERVER_URL {requested} is not a server this runner trusts with ID tokens; \
                     remove the variable to use {}, or ask the runner admin to add it under [[vault.servers]]",
                    self.vault.address
                )
            })
    }
}

fn validate_gitlab(gitlab: &GitlabSection) -> Result<(), String> {
    check_gitlab_url(&gitlab.url, gitlab.allow_http)?;
    if gitlab.issuer().is_empty() {
        return Err("gitlab.issuer must not be empty".into());
    }
    if let Some(audiences) = &gitlab.audiences
        && (audiences.is_empty() || audiences.iter().any(|a| a.trim().is_empty()))
    {
        return Err(
            "gitlab.audiences must list at least one non-empty audience (or be left out)".into(),
        );
    }
    if let Some(dir) = &gitlab.jwks_cache_dir
        && !dir.is_absolute()
    {
        return Err(format!(
            "gitlab.jwks_cache_dir {} must be an absolute path",
            dir.display()
        ));
    }
    Ok(())
}

/// The GitLab URL must be https (http only to loopback or with `allow_http`): the JWKS fetched
/// from it decides which tokens are genuine.
pub fn check_gitlab_url(url: &str, allow_http: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        format!("gitlab.url {url:?} is not a URL ({e}); write it like https://gitlab.example.com")
    })?;
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
        return Err(format!("gitlab.url {url} has no host"));
    };
    if !parsed.username().is_empty()
        || parsed.password().is_some()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
    {
        return Err(format!(
            "gitlab.url {url} must not carry credentials, a query or a fragment"
        ));
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_http || loopback => Ok(()),
        "http" => Err(format!(
            "gitlab.url {url} uses plain http to a non-loopback host, so its signing keys could be forged in transit; use https, or set gitlab.allow_http = true"
        )),
        other => Err(format!("gitlab.url {url} has scheme {other:?}; use https")),
    }
}

/// Compares server addresses the way an admin means them: scheme and host case-insensitive,
/// trailing slashes ignored.
pub fn normalize_address(address: &str) -> String {
    address.trim().trim_end_matches('/').to_ascii_lowercase()
}

fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().replace('\n', " ");
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line} column {column}: {message}")
        }
        None => message,
    }
}

/// Why the config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file does not exist.
    #[error(
        "executor config {path} not found: create it (example: executor-config/config.toml) or point --config / LEASEHOLD_CONFIG at it"
    )]
    Missing {
        /// The path tried.
        path: PathBuf,
    },
    /// The file exists but cannot be read.
    #[error("cannot read executor config {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("invalid executor config {path}: {detail}")]
    Invalid {
        /// The path.
        path: PathBuf,
        /// Key, line, column and what is wrong.
        detail: String,
    },
}

impl ConfigError {
    /// A broken runner config is never the job's fault.
    pub fn failure_kind(&self) -> FailureKind {
        FailureKind::System
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[vault]\naddress = \"https://vault.example.com\"\n";

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = ExecutorConfig::parse(MINIMAL).expect("valid");
        assert_eq!(c.state_dir, PathBuf::from("/run/leasehold"));
        assert_eq!(c.vault.auth_mount, "jwt");
        assert_eq!(c.job.id_token_variable, "VAULT_ID_TOKEN");
        assert_eq!(
            c.job.secret_stages,
            ["build_script", "step_*", "after_script"]
        );
        assert_eq!(c.mask.text, "[MASKED]");
    }

    #[test]
    fn unknown_key_is_named_with_position() {
        let err = ExecutorConfig::parse("[vault]\naddress = \"https://v\"\nrole_name = \"x\"\n")
            .expect_err("invalid");
        assert!(err.contains("role_name"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn plain_http_only_on_loopback_unless_allowed() {
        assert!(ExecutorConfig::parse("[vault]\naddress = \"http://127.0.0.1:8200\"\n").is_ok());
        let err = ExecutorConfig::parse("[vault]\naddress = \"http://vault.example.com\"\n")
            .expect_err("invalid");
        assert!(err.contains("allow_http"), "{err}");
        assert!(
            ExecutorConfig::parse(
                "[vault]\naddress = \"http://vault.example.com\"\nallow_http = true\n"
            )
            .is_ok()
        );
    }

    #[test]
    fn gitlab_section_defaults() {
        let c = ExecutorConfig::parse(
            "state_dir = \"/run/lh\"\n[vault]\naddress = \"https://a.example.com/\"\n[[vault.servers]]\naddress = \"https://b.example.com\"\n[gitlab]\nurl = \"https://gitlab.example.com/\"\n",
        )
        .expect("valid");
        let g = c.gitlab.as_ref().expect("gitlab");
        assert_eq!(g.issuer(), "https://gitlab.example.com");
        assert_eq!(g.accepted_issuers(), ["https://gitlab.example.com"]);
        assert_eq!(g.leeway_seconds, 60);
        assert_eq!(g.jwks_cache_ttl_seconds, 3600);
        assert_eq!(
            g.jwks_cache_dir(&c.state_dir),
            PathBuf::from("/run/lh/jwks")
        );
        assert!(!g.allow_legacy_token_variables);
        assert_eq!(
            c.audiences(),
            ["https://a.example.com", "https://b.example.com"]
        );
        assert_eq!(
            c.policy.job_declarations,
            crate::policy::JobDeclarations::Always
        );
        assert!(
            ExecutorConfig::parse(MINIMAL)
                .expect("valid")
                .audiences()
                .is_empty()
        );
    }

    #[test]
    fn issuer_forms_both_accepts_bare_host() {
        let c = ExecutorConfig::parse(
            "[vault]\naddress = \"https://v\"\n[gitlab]\nurl = \"https://gitlab.example.com\"\nissuer_forms = \"both\"\naudiences = [\"x\"]\n",
        )
        .expect("valid");
        let g = c.gitlab.as_ref().expect("gitlab");
        assert_eq!(
            g.accepted_issuers(),
            ["https://gitlab.example.com", "gitlab.example.com"]
        );
        assert_eq!(c.audiences(), ["x"]);
        let c = ExecutorConfig::parse(
            "[vault]\naddress = \"https://v\"\n[gitlab]\nurl = \"https://gitlab.example.com\"\nissuer = \"gitlab.example.com\"\nissuer_forms = \"both\"\n",
        )
        .expect("valid");
        assert_eq!(
            c.gitlab.as_ref().expect("gitlab").accepted_issuers(),
            ["https://gitlab.example.com", "gitlab.example.com"]
        );
    }

    #[test]
    fn gitlab_url_must_be_https_unless_loopback() {
        let parse = |url: &str, extra: &str| {
            ExecutorConfig::parse(&format!(
                "[vault]\naddress = \"https://v\"\n[gitlab]\nurl = \"{url}\"\n{extra}"
            ))
        };
        assert!(parse("http://127.0.0.1:8080", "").is_ok());
        assert!(
            parse("http://gitlab.example.com", "")
                .expect_err("http")
                .contains("allow_http")
        );
        assert!(parse("http://gitlab.example.com", "allow_http = true").is_ok());
        assert!(
            parse("gitlab.example.com", "")
                .expect_err("no scheme")
                .contains("not a URL")
        );
        assert!(
            parse("https://g", "audiences = []")
                .expect_err("empty")
                .contains("audiences")
        );
        assert!(
            parse("https://g", "jwks_cache_dir = \"rel\"")
                .expect_err("relative")
                .contains("absolute")
        );
        assert!(
            parse("https://g", "issuer_forms = \"loose\"")
                .expect_err("bad form")
                .contains("loose")
        );
    }

    #[test]
    fn job_may_only_name_listed_servers() {
        let c = ExecutorConfig::parse(
            "[vault]\naddress = \"https://a.example.com\"\n[[vault.servers]]\naddress = \"https://b.example.com/\"\n",
        )
        .expect("valid");
        assert_eq!(
            c.server_for(None).expect("default").address,
            "https://a.example.com"
        );
        assert_eq!(
            c.server_for(Some("https://B.example.com"))
                .expect("listed")
                .address,
            "https://b.example.com/"
        );
        let err = c
            .server_for(Some("https://evil.example.com"))
            .expect_err("invalid");
        assert!(err.contains("[[vault.servers]]"), "{err}");
    }
}
