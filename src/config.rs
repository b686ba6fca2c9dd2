//! The executor config, checked once: what every other module reads.
//!
//! Why: the file decides which Vault servers may receive a job's ID token and which sub-stages
//! see secrets, so a typo must not silently fall back to a default, and no module may read a raw
//! value that was never checked. [`Config::load`] parses the raw schema ([`crate::config_file`]),
//! validates every value and builds the types the rest of leasehold trusts: the normalised server
//! list with its lookup, the executor as an enum, the reaper's one credential, compiled glob
//! patterns, compiled bindings and policy. Every stage builds it once at start-up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::api_path::{self, Piece};
use crate::bindings::{self, Binding, LoginDefaults};
use crate::config_file::{self, ExecutorKind, File};
use crate::patterns::Patterns;
use crate::policy::Policy;
use crate::vault::{RequestLimit, Server, ServerSpec, Servers, address_key};

pub(crate) use crate::config_file::{
    CustomDriver, GitlabSection, InjectMode, JobSection, LeasesSection, MaskSection,
};

/// Where the config is read from when neither `--config` nor `LEASEHOLD_CONFIG` is given.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "/etc/leasehold/config.toml";

/// The checked executor config.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Private per-job state lives below this directory (absolute).
    pub state_dir: PathBuf,
    /// Reported to gitlab-runner as `builds_dir`.
    pub builds_dir: PathBuf,
    /// Reported to gitlab-runner as `cache_dir`.
    pub cache_dir: PathBuf,
    /// Reported to gitlab-runner as `builds_dir_is_shared` when set.
    pub builds_dir_is_shared: Option<bool>,
    /// The servers a job's ID token may go to, the default first.
    pub servers: Servers,
    /// Login defaults and request settings.
    pub vault: VaultSettings,
    /// How jobs name their secrets and which stages see them (patterns checked).
    pub job: JobSection,
    /// How injected values are masked in the job log.
    pub mask: MaskSection,
    /// The wrapped executor.
    pub executor: ExecutorSettings,
    /// Lease renewal limits.
    pub leases: LeasesSection,
    /// The credential `leasehold reap` revokes orphaned leases with.
    pub reaper: Option<ReaperCredential>,
    /// The JSON-lines event file of cleanup and reap (absolute), if any.
    pub events_file: Option<PathBuf>,
    /// The GitLab instance whose ID tokens leasehold verifies itself (URL checked).
    pub gitlab: Option<GitlabSection>,
    /// The audiences a token's `aud` is checked against (empty without `[gitlab]`).
    pub audiences: Vec<String>,
    /// What jobs may declare themselves.
    pub policy: Policy,
    /// Admin bindings, in file order.
    pub bindings: Vec<Binding>,
}

/// `[vault]` apart from the servers: login defaults and request settings.
#[derive(Debug, Clone)]
pub(crate) struct VaultSettings {
    /// The JWT auth mount used when the job sets no `VAULT_AUTH_PATH` (no slashes at the ends).
    pub auth_mount: String,
    /// The JWT role used when the job sets no `VAULT_AUTH_ROLE`.
    pub role: Option<String>,
    /// The login endpoint below an auth mount (`login`; `cel/login` for OpenBao's CEL roles).
    pub jwt_login_path: String,
    /// How long one HTTP request may take.
    pub timeout: Duration,
    /// How many times a request is retried when Vault is unreachable or answers 5xx.
    pub retries: u32,
    /// How long a request rides out an election (unreachable, sealed, standby, 503, 429).
    pub failover_wait: Duration,
    /// The cap on requests in flight, per server (by [`address_key`]); every client made from
    /// this config for one server shares it.
    pub limits: BTreeMap<String, RequestLimit>,
    /// The cap for a server the config does not list (one a journal names).
    pub default_limit: usize,
}

/// `[executor]`, checked.
#[derive(Debug, Clone)]
pub(crate) struct ExecutorSettings {
    /// What runs the scripts.
    pub kind: Executor,
    /// How secrets reach the job.
    pub inject: InjectMode,
    /// Which local user the job's processes run as (shell executor only).
    pub run_as: RunAs,
    /// Whether the shell executor may run job scripts as root (leasehold as root, `run_as`
    /// leasehold's own user): the admin's explicit acceptance that jobs are not isolated.
    pub allow_root: bool,
    /// Where a job running as another user gets its file secrets and its copy of the script.
    pub files_dir: PathBuf,
}

/// The wrapped executor.
#[derive(Debug, Clone)]
pub(crate) enum Executor {
    /// Run each script locally with this shell (`bash`).
    Shell {
        /// The shell.
        shell: String,
    },
    /// Call an inner custom-executor driver for every stage.
    Custom(CustomDriver),
    /// Run each job in its own container of a Docker engine.
    Docker(crate::docker::DockerSettings),
}

impl Executor {
    /// What `config` reports as `builds_dir_is_shared` when the admin set nothing: the shell
    /// executor runs every job on this host, in one builds dir, so concurrent jobs of a project
    /// need their own directories (`<builds_dir>/<runner>/<concurrent id>/<project>`), as
    /// gitlab-runner's own shell executor arranges; a custom driver knows its own machines
    /// and says it in its config output (absent: gitlab-runner's default, not shared).
    pub(crate) fn builds_dir_is_shared_by_default(&self) -> Option<bool> {
        match self {
            // The docker executor bind-mounts the same host builds dir into every job's
            // containers, so it is shared exactly like the shell executor's.
            Executor::Shell { .. } | Executor::Docker(_) => Some(true),
            Executor::Custom(_) => None,
        }
    }
}

/// The local user a shell job runs as.
#[derive(Debug, Clone)]
pub(crate) enum RunAs {
    /// leasehold's own user.
    Leasehold,
    /// A fixed user (leasehold must run as root).
    User {
        /// The login name.
        name: String,
        /// The group (default: the user's primary group).
        group: Option<String>,
    },
    /// The user named by a verified ID-token claim, mapped and allow-listed.
    FromClaim {
        /// The claim (e.g. `user_login`).
        claim: String,
        /// Claim value to local user, for names that differ.
        map: BTreeMap<String, String>,
        /// The local users a job may run as.
        allowed: Patterns,
        /// The group (default: the user's primary group).
        group: Option<String>,
    },
    /// A uid of its own per job attempt, from a range no account uses.
    Pool(UidRange),
}

/// `[executor] user_pool`: the uids jobs get one each, and their group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UidRange {
    /// The first uid.
    pub first: u32,
    /// The last uid (inclusive).
    pub last: u32,
    /// The group every pool job runs with (default: a gid equal to the job's uid).
    pub group: Option<String>,
}

impl UidRange {
    /// The most uids a pool may have: allocation looks at each.
    pub(crate) const MAX_LEN: u32 = 10_000;

    /// Parses `"20000-20049"`. Refused: uids below 1000 (system accounts), `nobody` (65534),
    /// the invalid uid `u32::MAX`, and ranges longer than [`UidRange::MAX_LEN`].
    pub(crate) fn parse(text: &str, group: Option<String>) -> Result<Self, String> {
        let bad = || {
            format!(
                "[executor] user_pool {text:?} is not a uid range; write it like \"20000-20049\""
            )
        };
        let (first, last) = text.split_once('-').ok_or_else(bad)?;
        let first: u32 = first.trim().parse().map_err(|_| bad())?;
        let last: u32 = last.trim().parse().map_err(|_| bad())?;
        if first > last {
            return Err(bad());
        }
        if first < 1000 || (first..=last).contains(&65534) || last == u32::MAX {
            return Err(format!(
                "[executor] user_pool {text} includes a system uid (below 1000, 65534 or 4294967295); pick uids no account uses, like \"20000-20049\""
            ));
        }
        if last - first >= Self::MAX_LEN {
            return Err(format!(
                "[executor] user_pool {text} has more than {} uids",
                Self::MAX_LEN
            ));
        }
        Ok(UidRange { first, last, group })
    }

    /// How many uids.
    pub(crate) fn len(&self) -> u32 {
        self.last - self.first + 1
    }

    /// Whether `uid` is one of them.
    pub(crate) fn contains(&self, uid: u32) -> bool {
        (self.first..=self.last).contains(&uid)
    }
}

impl std::fmt::Display for UidRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl RunAs {
    /// The configured group, if any.
    pub(crate) fn group(&self) -> Option<&str> {
        match self {
            RunAs::Leasehold => None,
            RunAs::User { group, .. } | RunAs::FromClaim { group, .. } => group.as_deref(),
            RunAs::Pool(range) => range.group.as_deref(),
        }
    }
}

/// The reaper's own Vault credential (never a job's).
#[derive(Debug, Clone)]
pub(crate) enum ReaperCredential {
    /// A file holding a Vault token (e.g. a periodic token), read at each run.
    TokenFile(PathBuf),
    /// Log in with AppRole.
    AppRole {
        /// The AppRole auth mount.
        mount: String,
        /// The role id.
        role_id: String,
        /// A file holding the secret id.
        secret_id_file: PathBuf,
    },
}

impl Config {
    /// Picks the config path: `--config`, then `LEASEHOLD_CONFIG`, then the default.
    pub(crate) fn locate(cli: Option<&Path>) -> PathBuf {
        cli.map(Path::to_path_buf)
            .or_else(|| {
                std::env::var_os("LEASEHOLD_CONFIG")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
    }

    /// Loads the config named by `--config`, `LEASEHOLD_CONFIG` or the default path.
    pub(crate) fn locate_and_load(cli: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load(&Self::locate(cli))
    }

    /// Reads, parses and checks the config file.
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
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

    /// Parses and checks config text; the error is one line naming key, line and column.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| describe_toml_error(text, &e))?;
        Self::check(file)
    }

    fn check(file: File) -> Result<Self, String> {
        let (servers, limits) = check_servers(&file.vault)?;
        let auth_mount = api_path::check(Piece::AuthMount, &file.vault.auth_mount)
            .map_err(|e| format!("[vault] auth_mount: {e}"))?;
        let jwt_login_path = match file.vault.jwt_login_path.trim_matches('/') {
            path @ ("login" | "cel/login") => path.to_owned(),
            other => {
                return Err(format!(
                    "[vault] jwt_login_path {other:?} is not \"login\" (a JWT role) or \"cel/login\" (an OpenBao CEL role)"
                ));
            }
        };
        if !file.state_dir.is_absolute() {
            return Err(format!(
                "state_dir {} must be an absolute path",
                file.state_dir.display()
            ));
        }
        Patterns::new(&file.job.secret_stages).map_err(|e| format!("job.secret_stages: {e}"))?;
        let executor = check_executor(file.executor, file.gitlab.is_some())?;
        let reaper = file.reaper.map(check_reaper).transpose()?;
        if let Some(path) = &file.events.file
            && !path.is_absolute()
        {
            return Err(format!(
                "[events] file {} must be an absolute path",
                path.display()
            ));
        }
        if file.mask.text.is_empty() {
            return Err("mask.text must not be empty".into());
        }
        if let Some(gitlab) = &file.gitlab {
            validate_gitlab(gitlab)?;
        } else if !file.bindings.is_empty() {
            return Err("bindings need [gitlab] so that claims are verified; add [gitlab] url = \"https://gitlab.example.com\"".into());
        }
        let pool = matches!(executor.run_as, RunAs::Pool(_));
        if pool && !file.builds_dir.is_absolute() {
            return Err(format!(
                "builds_dir {} must be an absolute path with [executor] user_pool",
                file.builds_dir.display()
            ));
        }
        let policy = Policy::compile(&file.policy, &auth_mount)?;
        let bindings = bindings::compile_all(&file.bindings, &servers)?;
        let audiences = match (
            &file.gitlab,
            file.gitlab.as_ref().and_then(|g| g.audiences.clone()),
        ) {
            (_, Some(list)) => list,
            (Some(_), None) => servers.addresses(),
            (None, None) => Vec::new(),
        };
        Ok(Config {
            state_dir: file.state_dir,
            builds_dir: file.builds_dir,
            cache_dir: file.cache_dir,
            builds_dir_is_shared: file.builds_dir_is_shared,
            servers,
            vault: VaultSettings {
                auth_mount,
                role: file.vault.role,
                jwt_login_path,
                timeout: Duration::from_secs(file.vault.timeout_seconds.max(1)),
                retries: file.vault.retries,
                failover_wait: Duration::from_secs(file.vault.failover_wait_seconds),
                limits,
                default_limit: file.vault.max_concurrent_requests,
            },
            job: file.job,
            mask: file.mask,
            executor,
            leases: file.leases,
            reaper,
            events_file: file.events.file,
            gitlab: file.gitlab,
            audiences,
            policy,
            bindings,
        })
    }

    /// How to reach `server` in `namespace` with this config's request settings; clients of one
    /// listed server share its request cap.
    pub(crate) fn server_spec(&self, server: &Server, namespace: Option<String>) -> ServerSpec {
        let limit = self
            .vault
            .limits
            .get(&address_key(&server.address))
            .cloned()
            .unwrap_or_else(|| RequestLimit::new(self.vault.default_limit));
        server.spec(
            namespace,
            self.vault.timeout,
            self.vault.retries,
            self.vault.failover_wait,
            limit,
        )
    }

    /// Where logins go unless a job or binding says otherwise.
    pub(crate) fn login_defaults(&self) -> LoginDefaults<'_> {
        LoginDefaults {
            servers: &self.servers,
            auth_mount: &self.vault.auth_mount,
            role: self.vault.role.as_deref(),
        }
    }
}

/// The longest `failover_wait_seconds`: gitlab-runner's stage timeouts are the real bound.
const MAX_FAILOVER_WAIT_SECONDS: u64 = 600;

/// The most requests a config may allow in flight to one server.
const MAX_CONCURRENT_REQUESTS: usize = 1024;

fn check_servers(
    vault: &config_file::VaultSection,
) -> Result<(Servers, BTreeMap<String, RequestLimit>), String> {
    if vault.failover_wait_seconds > MAX_FAILOVER_WAIT_SECONDS {
        return Err(format!(
            "[vault] failover_wait_seconds must be at most {MAX_FAILOVER_WAIT_SECONDS} (an election takes seconds), not {}",
            vault.failover_wait_seconds
        ));
    }
    let default = config_file::ServerSection {
        address: vault.address.clone(),
        nodes: vault.nodes.clone(),
        namespace: vault.namespace.clone(),
        ca_file: vault.ca_file.clone(),
        client_cert: vault.client_cert.clone(),
        client_key: vault.client_key.clone(),
        allow_http: vault.allow_http,
        max_concurrent_requests: None,
    };
    let mut checked = Vec::with_capacity(vault.servers.len() + 1);
    let mut limits = BTreeMap::new();
    for server in std::iter::once(&default).chain(&vault.servers) {
        crate::vault::check_address(&server.address, server.allow_http)
            .map_err(|e| e.to_string())?;
        let mut nodes: Vec<String> = Vec::with_capacity(server.nodes.len());
        for node in &server.nodes {
            crate::vault::check_address(node, server.allow_http)
                .map_err(|e| format!("server {} nodes: {e}", server.address))?;
            let node = node.trim().trim_end_matches('/').to_owned();
            if nodes.iter().any(|n| address_key(n) == address_key(&node)) {
                return Err(format!(
                    "server {} lists node {node} twice in nodes",
                    server.address
                ));
            }
            nodes.push(node);
        }
        if server.client_cert.is_some() != server.client_key.is_some() {
            return Err(format!(
                "server {}: client_cert and client_key must be set together",
                server.address
            ));
        }
        let namespace = server
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .map(|n| api_path::check(Piece::Namespace, n))
            .transpose()
            .map_err(|e| format!("server {}: {e}", server.address))?;
        let max = server
            .max_concurrent_requests
            .unwrap_or(vault.max_concurrent_requests);
        if !(1..=MAX_CONCURRENT_REQUESTS).contains(&max) {
            return Err(format!(
                "server {}: max_concurrent_requests must be between 1 and {MAX_CONCURRENT_REQUESTS}, not {max}",
                server.address
            ));
        }
        limits
            .entry(address_key(&server.address))
            .or_insert_with(|| RequestLimit::new(max));
        checked.push(Server {
            address: server.address.clone(),
            nodes,
            namespace,
            ca_file: server.ca_file.clone(),
            client_cert: server.client_cert.clone(),
            client_key: server.client_key.clone(),
            allow_http: server.allow_http,
        });
    }
    let default = checked.remove(0);
    Ok((Servers::new(default, checked), limits))
}

fn check_executor(
    section: config_file::ExecutorSection,
    has_gitlab: bool,
) -> Result<ExecutorSettings, String> {
    if section.kind != ExecutorKind::Docker && section.docker.is_some() {
        return Err("[executor.docker] applies to kind = \"docker\" only".into());
    }
    let kind = match (section.kind, section.custom) {
        (ExecutorKind::Docker, _)
            if section.user.is_some()
                || section.user_from_claim.is_some()
                || section.user_pool.is_some() =>
        {
            return Err("[executor] user / user_from_claim / user_pool apply to kind = \"shell\" only; set the container's user in [executor.docker] user".into());
        }
        (ExecutorKind::Docker, _) if section.inject.is_some_and(|i| i != InjectMode::Env) => {
            return Err("[executor] inject applies to kind = \"shell\" and \"custom\"; the docker executor always hands secrets over the exec's stdin".into());
        }
        (ExecutorKind::Docker, _) => match section.docker {
            Some(docker) => Executor::Docker(crate::docker::settings::check(docker)?),
            None => {
                return Err("[executor] kind = \"docker\" needs an [executor.docker] table with at least helper_image".into());
            }
        },
        (ExecutorKind::Custom, None) => {
            return Err("[executor] kind = \"custom\" needs an [executor.custom] table with at least run_exec".into());
        }
        (ExecutorKind::Custom, Some(_))
            if section.user.is_some()
                || section.user_from_claim.is_some()
                || section.user_pool.is_some() =>
        {
            return Err("[executor] user / user_from_claim / user_pool apply to kind = \"shell\" only; a custom driver decides the job's user itself".into());
        }
        (ExecutorKind::Custom, Some(driver)) => Executor::Custom(driver),
        (ExecutorKind::Shell, _) => Executor::Shell {
            shell: section.shell,
        },
    };
    let chosen = [
        section.user.is_some(),
        section.user_from_claim.is_some(),
        section.user_pool.is_some(),
    ];
    if chosen.iter().filter(|set| **set).count() > 1 {
        return Err("[executor] set one of user, user_from_claim or user_pool, not several".into());
    }
    if let Some(pool) = section.user_pool {
        return finish_executor(
            kind,
            section.inject,
            RunAs::Pool(UidRange::parse(&pool, section.group)?),
            section.allow_root,
            section.files_dir,
        );
    }
    let run_as = match (section.user, section.user_from_claim) {
        (Some(_), Some(_)) => {
            return Err("[executor] set either user or user_from_claim, not both".into());
        }
        (Some(name), None) => RunAs::User {
            name,
            group: section.group,
        },
        (None, Some(_)) if !has_gitlab => {
            return Err("[executor] user_from_claim needs [gitlab], so that the claim comes from a verified ID token".into());
        }
        (None, Some(_)) if section.allowed_users.is_empty() => {
            return Err("[executor] user_from_claim needs allowed_users, so that a job cannot pick any local account".into());
        }
        (None, Some(claim)) => RunAs::FromClaim {
            claim,
            map: section.user_map,
            allowed: Patterns::new(&section.allowed_users)
                .map_err(|e| format!("[executor] allowed_users: {e}"))?,
            group: section.group,
        },
        (None, None) => RunAs::Leasehold,
    };
    finish_executor(
        kind,
        section.inject,
        run_as,
        section.allow_root,
        section.files_dir,
    )
}

fn finish_executor(
    kind: Executor,
    inject: Option<InjectMode>,
    run_as: RunAs,
    allow_root: bool,
    files_dir: PathBuf,
) -> Result<ExecutorSettings, String> {
    if !files_dir.is_absolute() {
        return Err(format!(
            "[executor] files_dir {} must be an absolute path",
            files_dir.display()
        ));
    }
    // A driver's environment is the driver's, and need not reach the job at all (VMs, ssh,
    // containers): the wrapper script is the delivery that works with any driver and puts no
    // value in it.
    let inject = inject.unwrap_or(match kind {
        // Unused by the docker executor, whose stage file carries the secrets over stdin.
        Executor::Shell { .. } | Executor::Docker(_) => InjectMode::Env,
        Executor::Custom(_) => InjectMode::Script,
    });
    Ok(ExecutorSettings {
        kind,
        inject,
        run_as,
        allow_root,
        files_dir,
    })
}

fn check_reaper(section: config_file::ReaperSection) -> Result<ReaperCredential, String> {
    match (section.token_file, section.approle) {
        (Some(path), None) => Ok(ReaperCredential::TokenFile(path)),
        (None, Some(approle)) => Ok(ReaperCredential::AppRole {
            mount: api_path::check(Piece::AuthMount, &approle.mount)
                .map_err(|e| format!("[reaper.approle] mount: {e}"))?,
            role_id: approle.role_id,
            secret_id_file: approle.secret_id_file,
        }),
        _ => Err("[reaper] needs exactly one of token_file or [reaper.approle]".into()),
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
pub(crate) fn check_gitlab_url(url: &str, allow_http: bool) -> Result<(), String> {
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
pub(crate) enum ConfigError {
    /// The file does not exist.
    #[error(
        "executor config {path} not found: create it (the packages install one; an annotated example is /usr/share/doc/leasehold/executor-config/config.toml) or point --config / LEASEHOLD_CONFIG at it"
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

impl ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[vault]\naddress = \"https://vault.example.com\"\n";

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = Config::parse(MINIMAL).expect("valid");
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
    fn path_pieces_in_the_config_follow_the_one_rule() {
        for (extra, message) in [
            (
                "auth_mount = \"../other\"\n",
                "[vault] auth_mount: auth mount \"../other\" has a \".\" or \"..\" segment",
            ),
            (
                "auth_mount = \"jwt?x\"\n",
                "[vault] auth_mount: auth mount \"jwt?x\" contains '?'",
            ),
            (
                "namespace = \"team\\\\a\"\n",
                "server https://vault.example.com: namespace \"team\\\\a\" contains '\\'",
            ),
        ] {
            let err = Config::parse(&format!("{MINIMAL}{extra}")).expect_err(extra);
            assert!(err.contains(message), "{extra}: {err}");
        }
        let c = Config::parse(&format!(
            "{MINIMAL}auth_mount = \"/gitlab/jwt/\"\nnamespace = \"team/\"\n"
        ))
        .expect("valid");
        assert_eq!(c.vault.auth_mount, "gitlab/jwt");
        assert_eq!(
            c.servers.default_server().namespace.as_deref(),
            Some("team")
        );
    }

    #[test]
    fn every_client_of_one_server_shares_its_request_cap() {
        let c = Config::parse(MINIMAL).expect("valid");
        let server = c.servers.default_server();
        assert_eq!(c.server_spec(server, None).limit.max(), 16);
        let c = Config::parse(&format!(
            "{MINIMAL}max_concurrent_requests = 4\n[[vault.servers]]\naddress = \"https://b.example.com\"\nmax_concurrent_requests = 2\n[[vault.servers]]\naddress = \"https://c.example.com\"\n"
        ))
        .expect("valid");
        let caps: Vec<usize> = c
            .servers
            .iter()
            .map(|s| c.server_spec(s, None).limit.max())
            .collect();
        assert_eq!(caps, [4, 2, 4]);
        let server = c.servers.default_server();
        let (one, two) = (
            c.server_spec(server, None),
            c.server_spec(server, Some("ns".into())),
        );
        assert!(
            one.limit.shares_with(&two.limit),
            "one cap per server, whatever the namespace"
        );
        for bad in ["0", "100000"] {
            let err = Config::parse(&format!("{MINIMAL}max_concurrent_requests = {bad}\n"))
                .expect_err(bad);
            assert!(
                err.contains("max_concurrent_requests must be between 1 and 1024"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_server_may_list_its_nodes_and_keeps_its_address_as_identity() {
        let c = Config::parse(&format!(
            "{MINIMAL}nodes = [\"https://vault-1.example.com:8200/\", \"https://vault-2.example.com:8200\"]\n\
             [[vault.servers]]\naddress = \"https://b.example.com\"\nnodes = [\"https://b-1.example.com\"]\n"
        ))
        .expect("valid");
        let spec = c.server_spec(c.servers.default_server(), None);
        assert_eq!(spec.address, "https://vault.example.com");
        assert_eq!(
            spec.nodes,
            [
                "https://vault-1.example.com:8200",
                "https://vault-2.example.com:8200"
            ]
        );
        assert_eq!(spec.failover_wait, Duration::from_secs(30));
        assert!(c.servers.find("https://b.example.com").is_some());
        assert!(c.servers.find("https://b-1.example.com").is_none());
        let c = Config::parse(&format!("{MINIMAL}failover_wait_seconds = 0\n")).expect("valid");
        assert_eq!(c.vault.failover_wait, Duration::ZERO);
        for (extra, message) in [
            (
                "nodes = [\"http://10.0.0.1:8200\"]\n",
                "server https://vault.example.com nodes: Vault address http://10.0.0.1:8200 uses plain http",
            ),
            (
                "nodes = [\"https://a:1\", \"https://A:1/\"]\n",
                "lists node https://A:1 twice",
            ),
            (
                "failover_wait_seconds = 3600\n",
                "failover_wait_seconds must be at most 600",
            ),
        ] {
            let err = Config::parse(&format!("{MINIMAL}{extra}")).expect_err(extra);
            assert!(err.contains(message), "{extra}: {err}");
        }
    }

    #[test]
    fn unknown_key_is_named_with_position() {
        let err = Config::parse("[vault]\naddress = \"https://v\"\nrole_name = \"x\"\n")
            .expect_err("invalid");
        assert!(err.contains("role_name"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn plain_http_only_on_loopback_unless_allowed() {
        assert!(Config::parse("[vault]\naddress = \"http://127.0.0.1:8200\"\n").is_ok());
        let err = Config::parse("[vault]\naddress = \"http://vault.example.com\"\n")
            .expect_err("invalid");
        assert!(err.contains("allow_http"), "{err}");
        assert!(
            Config::parse("[vault]\naddress = \"http://vault.example.com\"\nallow_http = true\n")
                .is_ok()
        );
    }

    #[test]
    fn gitlab_section_defaults() {
        let c = Config::parse(
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
            c.audiences,
            ["https://a.example.com", "https://b.example.com"]
        );
        assert_eq!(
            c.policy.job_declarations,
            crate::policy::JobDeclarations::Always
        );
        assert!(Config::parse(MINIMAL).expect("valid").audiences.is_empty());
    }

    #[test]
    fn issuer_forms_both_accepts_bare_host() {
        let c = Config::parse(
            "[vault]\naddress = \"https://v\"\n[gitlab]\nurl = \"https://gitlab.example.com\"\nissuer_forms = \"both\"\naudiences = [\"x\"]\n",
        )
        .expect("valid");
        let g = c.gitlab.as_ref().expect("gitlab");
        assert_eq!(
            g.accepted_issuers(),
            ["https://gitlab.example.com", "gitlab.example.com"]
        );
        assert_eq!(c.audiences, ["x"]);
        let c = Config::parse(
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
            Config::parse(&format!(
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
        let c = Config::parse(
            "[vault]\naddress = \"https://a.example.com\"\n[[vault.servers]]\naddress = \"https://b.example.com/\"\n",
        )
        .expect("valid");
        assert_eq!(
            c.servers.get(None).expect("default").address,
            "https://a.example.com"
        );
        assert_eq!(
            c.servers
                .get(Some("https://B.example.com"))
                .expect("listed")
                .address,
            "https://b.example.com"
        );
        let err = c
            .servers
            .get(Some("https://evil.example.com"))
            .expect_err("invalid");
        assert!(err.contains("[[vault.servers]]"), "{err}");
    }

    #[test]
    fn user_pool_is_a_range_of_unused_uids_and_excludes_the_other_job_users() {
        let parse = |executor: &str| {
            Config::parse(&format!(
                "[vault]\naddress = \"https://v\"\n[executor]\n{executor}\n"
            ))
        };
        let c = parse("user_pool = \"20000-20049\"\ngroup = \"ci-pool\"").expect("valid");
        let RunAs::Pool(range) = &c.executor.run_as else {
            panic!("not a pool: {:?}", c.executor.run_as)
        };
        assert_eq!((range.first, range.last, range.len()), (20000, 20049, 50));
        assert_eq!(c.executor.run_as.group(), Some("ci-pool"));
        for (bad, says) in [
            ("user_pool = \"20000\"", "write it like"),
            ("user_pool = \"20049-20000\"", "write it like"),
            ("user_pool = \"0-10\"", "system uid"),
            ("user_pool = \"65000-65535\"", "system uid"),
            ("user_pool = \"20000-40000\"", "more than 10000 uids"),
            ("user_pool = \"20000-20001\"\nuser = \"ci\"", "not several"),
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
        let err = Config::parse(
            "[vault]\naddress = \"https://v\"\n[executor]\nkind = \"custom\"\nuser_pool = \"20000-20001\"\n[executor.custom]\nrun_exec = \"/bin/true\"\n",
        )
        .expect_err("custom");
        assert!(err.contains("shell\" only"), "{err}");
        assert!(!parse("").expect("valid").executor.allow_root);
        assert!(
            parse("allow_root = true")
                .expect("valid")
                .executor
                .allow_root
        );
    }

    #[test]
    fn the_executor_is_an_enum_and_the_reaper_has_one_credential() {
        let c = Config::parse(
            "[vault]\naddress = \"https://v\"\n[executor]\nkind = \"custom\"\n[executor.custom]\nrun_exec = \"/bin/true\"\n[reaper]\ntoken_file = \"/etc/leasehold/reaper-token\"\n",
        )
        .expect("valid");
        assert!(matches!(c.executor.kind, Executor::Custom(ref d) if d.run_exec == "/bin/true"));
        assert_eq!(
            c.executor.inject,
            InjectMode::Script,
            "the default for a driver"
        );
        assert!(matches!(c.reaper, Some(ReaperCredential::TokenFile(_))));
        let err =
            Config::parse("[vault]\naddress = \"https://v\"\n[executor]\nkind = \"custom\"\n")
                .expect_err("no driver");
        assert!(err.contains("[executor.custom]"), "{err}");
        let err = Config::parse(
            "[vault]\naddress = \"https://v\"\n[gitlab]\nurl = \"https://g\"\n[executor]\nuser_from_claim = \"user_login\"\nallowed_users = [\"ci-[\"]\n",
        )
        .expect_err("bad glob");
        assert!(err.contains("allowed_users"), "{err}");
    }

    #[test]
    fn inject_defaults_to_env_for_the_shell_and_script_for_a_driver() {
        let parse = |executor: &str| {
            Config::parse(&format!("[vault]\naddress = \"https://v\"\n{executor}"))
                .expect("valid")
                .executor
                .inject
        };
        let custom = "[executor]\nkind = \"custom\"\n[executor.custom]\nrun_exec = \"/bin/true\"\n";
        assert_eq!(parse(""), InjectMode::Env);
        assert_eq!(
            parse("[executor]\ninject = \"script\"\n"),
            InjectMode::Script
        );
        assert_eq!(parse(custom), InjectMode::Script);
        assert_eq!(
            parse(&custom.replace("kind", "inject = \"env\"\nkind")),
            InjectMode::Env
        );
    }
}
