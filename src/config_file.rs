//! The executor config file as written: plain serde data, nothing checked yet.
//!
//! Why a separate schema: the file is TOML an admin edits by hand, so every table denies unknown
//! keys (a typo must not fall back to a default) and every default is written down here, next
//! to its key. [`crate::config::Config::load`] turns this into the checked config the rest of
//! leasehold uses (ripgrep's "low args, then high args"). docs/configuration.md documents every
//! key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::declarations::RawSecret;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
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
    /// Where cleanup and reap record what they took back, one JSON line per job.
    #[serde(default)]
    pub events: EventsSection,
    /// The GitLab instance whose ID tokens leasehold verifies itself, before any Vault request.
    /// Absent: no local verification (Vault's JWT auth stays the only verifier) and no bindings.
    #[serde(default)]
    pub gitlab: Option<GitlabSection>,
    /// What jobs may declare themselves.
    #[serde(default)]
    pub policy: PolicySection,
    /// Admin bindings: secrets granted by verified claims, evaluated in order, all matches apply.
    #[serde(default)]
    pub bindings: Vec<BindingSection>,
}

/// `[gitlab]`: where ID tokens come from and how they are checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GitlabSection {
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
pub(crate) enum IssuerForms {
    /// Byte for byte (a trailing `/` on either side is ignored).
    #[default]
    Exact,
    /// With or without the configured issuer's scheme.
    Both,
}

impl GitlabSection {
    /// The instance URL without a trailing slash.
    pub(crate) fn base_url(&self) -> &str {
        self.url.trim_end_matches('/')
    }

    /// The configured issuer (default: the URL), without a trailing slash.
    pub(crate) fn issuer(&self) -> &str {
        self.issuer
            .as_deref()
            .unwrap_or(&self.url)
            .trim_end_matches('/')
    }

    /// Every `iss` value accepted.
    pub(crate) fn accepted_issuers(&self) -> Vec<String> {
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
    pub(crate) fn jwks_cache_dir(&self, state_dir: &Path) -> PathBuf {
        self.jwks_cache_dir
            .clone()
            .unwrap_or_else(|| state_dir.join("jwks"))
    }

    /// Request timeout for JWKS fetches.
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.max(1))
    }
}

/// `[events]`: one machine-readable line per job for operators to alert on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsSection {
    /// A JSON-lines file cleanup and reap append to (absent: no events).
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// `[leases]`: how leases and the token are kept alive while the job runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LeasesSection {
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
pub(crate) struct ReaperSection {
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
pub(crate) struct AppRoleSection {
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
pub(crate) struct VaultSection {
    /// The default server's address, e.g. `https://vault.example.com:8200`.
    pub address: String,
    /// The default server's node addresses, tried in turn (a cluster without a load balancer).
    #[serde(default)]
    pub nodes: Vec<String>,
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
    /// The login endpoint below the mount: `login`, or `cel/login` for OpenBao's CEL roles.
    #[serde(default = "default_jwt_login_path")]
    pub jwt_login_path: String,
    /// The JWT role used when the job sets no `VAULT_AUTH_ROLE` (absent: the mount's default role).
    #[serde(default)]
    pub role: Option<String>,
    /// Seconds before one HTTP request to Vault gives up.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// How many times a request is retried when Vault is unreachable or answers 5xx.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// How long a request keeps being retried while the server is unreachable, sealed, a
    /// standby without an active node, or answers 503/429 (an HA election), in seconds.
    #[serde(default = "default_failover_wait_seconds")]
    pub failover_wait_seconds: u64,
    /// How many requests one leasehold process sends to one server at a time (for the default
    /// server, and for every `[[vault.servers]]` entry that sets none itself).
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Further servers a job may select with `VAULT_SERVER_URL`.
    #[serde(default)]
    pub servers: Vec<ServerSection>,
}

/// `[[vault.servers]]`: one further Vault/OpenBao server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerSection {
    /// `https://vault.example.com:8200`.
    pub address: String,
    /// The server's node addresses, tried in turn (a cluster without a load balancer).
    #[serde(default)]
    pub nodes: Vec<String>,
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
    /// Requests in flight to this server at a time; default `[vault] max_concurrent_requests`.
    #[serde(default)]
    pub max_concurrent_requests: Option<usize>,
}

/// `[job]`: the names jobs use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobSection {
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
pub(crate) struct ExecutorSection {
    /// Which wrapped executor runs the scripts.
    #[serde(default)]
    pub kind: ExecutorKind,
    /// The shell the built-in `shell` executor runs scripts with.
    #[serde(default = "default_shell")]
    pub shell: String,
    /// How secrets reach the job: its process environment, or a private wrapper script.
    /// Unset: `env` for the shell executor, `script` for a custom driver.
    #[serde(default)]
    pub inject: Option<InjectMode>,
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
    /// `shell` only: run each job as a uid of its own from this range (`"20000-20049"`); the
    /// uids need no account and must be used by nothing else on the host.
    #[serde(default)]
    pub user_pool: Option<String>,
    /// `shell` only: let leasehold, running as root without `user`, `user_from_claim` or
    /// `user_pool`, run job scripts as root, where every job can read every other job's secrets.
    #[serde(default)]
    pub allow_root: bool,
    /// Where a job running as another user gets its file secrets and its copy of the script
    /// (0711, owned by root; each stage gets a 0700 directory owned by the job's user).
    #[serde(default = "default_files_dir")]
    pub files_dir: PathBuf,
    /// `custom` only: the inner driver, exactly as in gitlab-runner's `[runners.custom]`.
    #[serde(default)]
    pub custom: Option<CustomDriver>,
    /// `docker` only: the engine, the images and what the job's container may do.
    #[serde(default)]
    pub docker: Option<DockerSection>,
}

/// The wrapped executors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ExecutorKind {
    /// Run each script locally with `bash <script>`.
    #[default]
    Shell,
    /// Call an existing custom-executor driver (VM, container, SSH) for every stage.
    Custom,
    /// Run each job in its own container of a Docker engine.
    Docker,
}

/// How secrets are handed to the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum InjectMode {
    /// In the environment of the process that runs the script: the job's shell gets each
    /// secret under its name, a custom driver as `CUSTOM_ENV_<NAME>` (it must pass them on).
    Env,
    /// In a private wrapper script that exports them and runs the original script unchanged:
    /// for drivers that cross a machine or container boundary.
    Script,
}

/// `[executor.custom]`: an inner custom-executor driver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CustomDriver {
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

/// `[executor.docker]`: the docker executor's engine, images and container settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DockerSection {
    /// The engine's address, `unix:///path` or `tcp://host:port` (default: `DOCKER_HOST`, else
    /// `unix:///var/run/docker.sock`).
    #[serde(default)]
    pub host: Option<String>,
    /// The image of a job that names none.
    #[serde(default)]
    pub default_image: Option<String>,
    /// The image the non-user stages run in (git, the runner's helper commands, bash). Required.
    #[serde(default)]
    pub helper_image: Option<String>,
    /// `never`, `if-not-present` (the default) or `always`.
    #[serde(default)]
    pub pull_policy: PullPolicy,
    /// The images a job may name (globs; empty: any).
    #[serde(default)]
    pub allowed_images: Vec<String>,
    /// The images a job's services may use (globs; default: `allowed_images`).
    #[serde(default)]
    pub allowed_services: Option<Vec<String>>,
    /// The job container's network (`none`, `host`, `bridge`, a network name); the helper and
    /// the services share it. Default: the engine's own default.
    #[serde(default)]
    pub network_mode: Option<String>,
    /// Run the job container privileged (it can then escape to the host).
    #[serde(default)]
    pub privileged: bool,
    /// Capabilities removed from the job container (`ALL`, `NET_RAW`, …).
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// Capabilities added to the job container.
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// Memory limit of the job container (`512m`, `2g`, bytes).
    #[serde(default)]
    pub memory: Option<String>,
    /// CPU limit of the job container, in CPUs (`1.5`).
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Process limit of the job container.
    #[serde(default)]
    pub pids_limit: Option<i64>,
    /// Extra mounts of the job and helper containers, as `docker run -v` takes them.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// The user the job's stages run as in its container (default: the image's).
    #[serde(default)]
    pub user: Option<String>,
}

/// When the docker executor pulls an image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PullPolicy {
    /// Never: the image must be on the engine already.
    Never,
    /// Only when the engine does not have it.
    #[default]
    IfNotPresent,
    /// Before every job.
    Always,
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
fn default_jwt_login_path() -> String {
    "login".into()
}
fn default_timeout_seconds() -> u64 {
    10
}
fn default_retries() -> u32 {
    3
}
fn default_failover_wait_seconds() -> u64 {
    30
}
fn default_max_concurrent_requests() -> usize {
    16
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
            inject: None,
            user: None,
            group: None,
            user_from_claim: None,
            allowed_users: Vec::new(),
            user_map: std::collections::BTreeMap::new(),
            user_pool: None,
            allow_root: false,
            files_dir: default_files_dir(),
            custom: None,
            docker: None,
        }
    }
}

/// `[policy]` in the executor config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicySection {
    /// When a job's own declarations are honoured.
    #[serde(default)]
    pub job_declarations: JobDeclarations,
    /// Globs of the secret-engine mounts a job may name (empty: any mount).
    #[serde(default)]
    pub allowed_mounts: Vec<String>,
    /// Globs of the JWT roles a job may name with `VAULT_AUTH_ROLE` (empty: any role).
    #[serde(default)]
    pub allowed_roles: Vec<String>,
    /// Globs of further auth mounts a job may log in at with `VAULT_AUTH_PATH`; `[vault]
    /// auth_mount` is always allowed. Absent or empty: that one only.
    #[serde(default)]
    pub allowed_auth_mounts: Vec<String>,
    /// Globs of the policies a job may put on its own Vault token (empty: any policy its login
    /// token has, which Vault enforces).
    #[serde(default)]
    pub allowed_token_policies: Vec<String>,
}

/// `job_declarations`: when `LEASEHOLD_SECRETS` is honoured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum JobDeclarations {
    /// On every ref.
    #[default]
    Always,
    /// Only when the job runs for a protected branch or tag.
    ProtectedRefsOnly,
    /// Never: jobs get only what bindings grant.
    Never,
}

impl JobDeclarations {
    /// The name as written in the config.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            JobDeclarations::Always => "always",
            JobDeclarations::ProtectedRefsOnly => "protected_refs_only",
            JobDeclarations::Never => "never",
        }
    }
}

/// One `[[bindings]]` rule as written in the executor config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BindingSection {
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
pub(crate) struct MatchRule {
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
pub(crate) enum MatchValue {
    /// One value.
    One(Scalar),
    /// Any of these.
    Many(Vec<Scalar>),
}

/// A TOML scalar, compared as GitLab's claims are encoded: as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Scalar {
    /// `true`/`false`.
    Bool(bool),
    /// A number, e.g. a project id.
    Int(i64),
    /// Text.
    Text(String),
}

impl MatchValue {
    /// The values as claim text.
    pub(crate) fn values(&self) -> Vec<String> {
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
