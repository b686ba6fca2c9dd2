//! `leasehold check`: is this runner's config right, and does Vault agree with it?
//!
//! Why: a wrong `bound_issuer`, a `jwks_url` still pointing at GitLab's pre-17 path, or a role
//! without `bound_audiences` (refused by Vault 1.17+ for every GitLab token) shows up only as
//! every job failing. `check` finds those before the first job: it validates the config file,
//! fetches GitLab's signing keys, then for each Vault server reports reachability and seal
//! status and, with a token that may read them (`VAULT_TOKEN` or `--token-file`), the JWT auth
//! mount, its `jwks_url`/`bound_issuer`, and each role's `bound_audiences` and `bound_claims`.
//! One line per finding; a `problem` line makes the exit status 1.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use secrecy::SecretString;
use serde_json::Value;

use crate::bindings::FixedLogin;
use crate::cli::Cli;
use crate::config::{Config, Executor, RunAs};
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::identity::Verifier;
use crate::identity::jwks::LEGACY_JWKS_PATH;
use crate::joblog;
use crate::private_fs::check_private_dir;
use crate::state::unix_now;
use crate::vault::{Server, VaultClient, VaultError, address_key};

use super::plan::expected_jwks_url;

pub(crate) async fn run(cli: &Cli, token_file: Option<&Path>) -> Result<Outcome> {
    let path = Config::locate(cli.config.as_deref());
    let token = match read_token(token_file) {
        Ok(token) => token,
        Err(message) => {
            joblog::info(&format!("leasehold check: {message}"));
            return Ok(Outcome::Usage);
        }
    };
    let report = check(&path, token.as_ref(), unix_now()).await;
    joblog::stdout(&report.render())
        .map_err(|source| Error::io("write the report to", "standard output", source))?;
    Ok(Outcome::Findings {
        problems: report.problems(),
    })
}

fn read_token(token_file: Option<&Path>) -> std::result::Result<Option<SecretString>, String> {
    if let Some(path) = token_file {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --token-file {}: {e}", path.display()))?,
        );
        let token = text.trim();
        return if token.is_empty() {
            Err(format!("--token-file {} is empty", path.display()))
        } else {
            Ok(Some(token.into()))
        };
    }
    Ok(std::env::var("VAULT_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(|t| SecretString::from(t.trim())))
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// As it should be.
    Ok,
    /// Jobs will fail (or be less safe) until it is fixed.
    Problem,
    /// Information, or what could not be checked.
    Note,
    /// Works, but less safely than it could: jobs are not isolated from each other.
    Warning,
}

/// The findings, in order.
#[derive(Debug, Default)]
pub(crate) struct Report {
    lines: Vec<(Level, String)>,
}

impl Report {
    fn push(&mut self, level: Level, text: impl Into<String>) {
        self.lines.push((level, text.into()));
    }

    /// How many problems.
    pub(crate) fn problems(&self) -> usize {
        self.lines
            .iter()
            .filter(|(l, _)| *l == Level::Problem)
            .count()
    }

    /// One line per finding, then a summary.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for (level, text) in &self.lines {
            let tag = match level {
                Level::Ok => "ok",
                Level::Problem => "problem",
                Level::Note => "note",
                Level::Warning => "warning",
            };
            out.push_str(&format!("{tag:<8} {text}\n"));
        }
        let n = self.problems();
        out.push_str(&match n {
            0 => "no problems found\n".to_owned(),
            1 => "1 problem\n".to_owned(),
            n => format!("{n} problems\n"),
        });
        out
    }
}

/// Runs every check.
pub(crate) async fn check(path: &Path, token: Option<&SecretString>, now: u64) -> Report {
    let mut report = Report::default();
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            report.push(Level::Problem, format!("config: {e}"));
            return report;
        }
    };
    report.push(
        Level::Ok,
        format!(
            "config {}: valid; {} server{}, {} binding{}, {}, [policy] job_declarations = \"{}\"",
            path.display(),
            config.servers.iter().count(),
            if config.servers.iter().count() == 1 {
                ""
            } else {
                "s"
            },
            config.bindings.len(),
            if config.bindings.len() == 1 { "" } else { "s" },
            config.gitlab.as_ref().map_or_else(
                || "no [gitlab] (ID tokens are verified by Vault only)".to_owned(),
                |g| format!("[gitlab] {}", g.base_url())
            ),
            config.policy.job_declarations.as_str(),
        ),
    );
    check_isolation(&config, &mut report);
    check_gitlab(&config, now, &mut report).await;
    for (server, targets) in targets(&config, &mut report) {
        check_server(&config, &server, &targets, token, &mut report).await;
    }
    report
}

/// Whether one job can read another's processes (`/proc/<pid>/environ`: live secrets; the
/// state key in its leasehold's environment) or files, in this executor setup. docs/security.md
/// has the same table.
fn check_isolation(config: &Config, report: &mut Report) {
    let executor = &config.executor;
    if !matches!(executor.kind, Executor::Shell { .. }) {
        report.push(
            Level::Note,
            "executor: the custom driver decides where jobs run and how they are isolated from each other",
        );
        return;
    }
    let euid = nix::unistd::geteuid();
    match &executor.run_as {
        RunAs::Pool(range) => report.push(
            Level::Ok,
            format!(
                "executor: every job runs as a uid of its own from user_pool {range} ({} uids), its project dir and HOME 0700; concurrent jobs cannot read each other's processes or files",
                range.len()
            ),
        ),
        RunAs::User { name, .. } => report.push(
            Level::Warning,
            format!(
                "executor: every job runs as {name}: concurrent jobs of that one user can read each other's /proc/<pid>/environ (their secrets) and files; use [executor] user_pool to give each job a uid of its own"
            ),
        ),
        RunAs::FromClaim { claim, .. } => report.push(
            Level::Warning,
            format!(
                "executor: jobs run as the local user their {claim} claim maps to: concurrent jobs mapped to one user can read each other's /proc/<pid>/environ (their secrets) and files; use [executor] user_pool for a uid per job"
            ),
        ),
        RunAs::Leasehold if executor.allow_root => report.push(
            Level::Warning,
            "executor: allow_root = true: when leasehold runs as root (gitlab-runner's service), jobs run as root and every job can read every other job's state key, secrets and files; set [executor] user or user_pool",
        ),
        RunAs::Leasehold if euid.is_root() => report.push(
            Level::Problem,
            "executor: [executor] names no job user and leasehold runs as root here: prepare refuses every job; set [executor] user (e.g. \"gitlab-runner\") or user_pool, or allow_root = true to accept that jobs run as root",
        ),
        RunAs::Leasehold => report.push(
            Level::Warning,
            format!(
                "executor: jobs run as leasehold's own user (uid {euid} here): concurrent jobs can read each other's /proc/<pid>/environ (their secrets) and files, and the state dir; run gitlab-runner as root with [executor] user_pool to isolate them"
            ),
        ),
    }
}

async fn check_gitlab(config: &Config, now: u64, report: &mut Report) {
    let Some(gitlab) = &config.gitlab else { return };
    let dir = gitlab.jwks_cache_dir(&config.state_dir);
    match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => report.push(
            Level::Note,
            format!("gitlab: JWKS cache {} does not exist yet; the first prepare creates it (0700)", dir.display()),
        ),
        _ => match check_private_dir(&dir) {
            Ok(()) => report.push(Level::Ok, format!("gitlab: JWKS cache {} is private", dir.display())),
            Err(e) => report.push(
                Level::Note,
                format!("gitlab: JWKS cache {}: {e} (this is a problem if check runs as leasehold's own user)", dir.display()),
            ),
        },
    }
    let fetched = match Verifier::new(gitlab, &config.audiences, None) {
        Ok(verifier) => verifier.jwks().refresh(now).await,
        Err(e) => Err(e),
    };
    match fetched {
        Ok(keys) => report.push(
            Level::Ok,
            format!(
                "gitlab: {} signing key{} at {} ({})",
                keys.len(),
                if keys.len() == 1 { "" } else { "s" },
                keys.url,
                keys.kids().join(", ")
            ),
        ),
        Err(e) => report.push(Level::Problem, format!("gitlab: {e}")),
    }
}

/// What to check on one server (and namespace).
#[derive(Debug, Default)]
struct Targets {
    namespace: Option<String>,
    /// Mount → roles (`None`: the mount's default role, not checked).
    mounts: BTreeMap<String, BTreeSet<String>>,
}

fn targets(config: &Config, report: &mut Report) -> Vec<(Server, Targets)> {
    let mut out: Vec<(Server, Targets)> = Vec::new();
    let mut add = |server: Server, namespace: Option<String>, mount: &str, role: Option<&str>| {
        let key = (address_key(&server.address), namespace.clone());
        let index = match out
            .iter()
            .position(|(s, t)| (address_key(&s.address), t.namespace.clone()) == key)
        {
            Some(i) => i,
            None => {
                out.push((
                    server,
                    Targets {
                        namespace,
                        mounts: BTreeMap::new(),
                    },
                ));
                out.len() - 1
            }
        };
        let roles = out[index]
            .1
            .mounts
            .entry(mount.trim_matches('/').to_owned())
            .or_default();
        if let Some(role) = role {
            roles.insert(role.to_owned());
        }
    };
    for server in config.servers.iter() {
        let namespace = server.namespace.clone();
        add(
            server.clone(),
            namespace,
            &config.vault.auth_mount,
            config.vault.role.as_deref(),
        );
    }
    for binding in &config.bindings {
        match binding.fixed_login(&config.login_defaults()) {
            Some(FixedLogin::Known(target)) => add(
                target.server,
                target.namespace,
                &target.auth_mount,
                target.role.as_deref(),
            ),
            Some(FixedLogin::Templated(templated)) => report.push(
                Level::Note,
                format!(
                    "binding {}: its {} {} templated from claims, so it is checked per job: run `leasehold plan --claims` with a job's claims",
                    binding.name,
                    templated.join(", "),
                    if templated.len() == 1 { "is" } else { "are" }
                ),
            ),
            None => {}
        }
    }
    out
}

async fn check_server(
    config: &Config,
    server: &Server,
    targets: &Targets,
    token: Option<&SecretString>,
    report: &mut Report,
) {
    let address = server.address.trim_end_matches('/');
    let at = match &targets.namespace {
        Some(ns) => format!("vault {address} (namespace {ns})"),
        None => format!("vault {address}"),
    };
    let mut spec = config.server_spec(server, targets.namespace.clone());
    spec.retries = 0;
    spec.failover_wait = std::time::Duration::ZERO;
    let client = match VaultClient::new(&spec) {
        Ok(client) => client,
        Err(e) => {
            report.push(Level::Problem, format!("{at}: {e}"));
            return;
        }
    };
    match client.health().await {
        Err(e) => {
            report.push(Level::Problem, format!("{at}: {e}"));
            return;
        }
        Ok(health) if !health.initialized => {
            report.push(
                Level::Problem,
                format!("{at}: reachable but not initialized"),
            );
            return;
        }
        Ok(health) if health.sealed => {
            report.push(
                Level::Problem,
                format!("{at}: reachable but sealed; every job will fail until it is unsealed"),
            );
            return;
        }
        Ok(health) => report.push(
            Level::Ok,
            format!(
                "{at}: reachable, initialized, unsealed, {} (version {})",
                if health.standby { "standby" } else { "active" },
                if health.version.is_empty() {
                    "?"
                } else {
                    &health.version
                }
            ),
        ),
    }
    let Some(token) = token else {
        report.push(
            Level::Note,
            format!(
                "{at}: no Vault token (set VAULT_TOKEN or --token-file), so auth mounts {} and their roles were not checked",
                targets.mounts.keys().map(|m| format!("auth/{m}")).collect::<Vec<_>>().join(", ")
            ),
        );
        return;
    };
    let auth = match client.read_raw_json(token, "sys/auth").await {
        Ok(auth) => Some(auth),
        Err(e) => {
            report.push(Level::Note, format!("{at}: cannot list auth mounts with this token ({}); checking each mount directly", short(&e)));
            None
        }
    };
    for (mount, roles) in &targets.mounts {
        check_mount(
            config,
            &client,
            token,
            &at,
            mount,
            roles,
            auth.as_ref(),
            report,
        )
        .await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn check_mount(
    config: &Config,
    client: &VaultClient,
    token: &SecretString,
    at: &str,
    mount: &str,
    roles: &BTreeSet<String>,
    auth: Option<&Value>,
    report: &mut Report,
) {
    let here = format!("{at} auth/{mount}");
    if let Some(auth) = auth {
        match auth
            .get(format!("{mount}/"))
            .and_then(|m| m.get("type"))
            .and_then(Value::as_str)
        {
            None => {
                report.push(
                    Level::Problem,
                    format!("{here}: no auth method is mounted there; enable it with  bao auth enable -path={mount} jwt"),
                );
                return;
            }
            Some("jwt" | "oidc") => report.push(Level::Ok, format!("{here}: JWT auth is enabled")),
            Some(other) => {
                report.push(Level::Problem, format!("{here}: the auth method there is {other:?}, not jwt; point [vault] auth_mount at the JWT mount"));
                return;
            }
        }
    }
    match client
        .read_raw_json(token, &format!("auth/{mount}/config"))
        .await
    {
        Ok(auth_config) => check_auth_config(config, &here, &auth_config, report),
        Err(VaultError::NotFound { .. }) => {
            report.push(Level::Problem, format!("{here}: the JWT auth method has no config; write jwks_url and bound_issuer to auth/{mount}/config"));
        }
        Err(e) if auth.is_none() && matches!(e, VaultError::Denied { status: 404, .. }) => {
            report.push(
                Level::Problem,
                format!("{here}: no auth method is mounted there ({})", short(&e)),
            );
            return;
        }
        Err(e) => report.push(
            Level::Note,
            format!(
                "{here}: cannot read auth/{mount}/config with this token ({}); not checked",
                short(&e)
            ),
        ),
    }
    for role in roles {
        let here = format!("{at} auth/{mount}/role/{role}");
        match client
            .read_raw_json(token, &format!("auth/{mount}/role/{role}"))
            .await
        {
            Ok(role_config) => check_role(config, &here, &role_config, report),
            Err(VaultError::NotFound { .. }) => {
                report.push(
                    Level::Problem,
                    format!("{here}: the role does not exist; every login with it will be refused"),
                );
            }
            Err(e) => report.push(
                Level::Note,
                format!(
                    "{here}: cannot read the role with this token ({}); not checked",
                    short(&e)
                ),
            ),
        }
    }
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

fn check_auth_config(config: &Config, here: &str, auth: &Value, report: &mut Report) {
    let jwks_url = text(auth, "jwks_url").trim_end_matches('/');
    let discovery = text(auth, "oidc_discovery_url").trim_end_matches('/');
    let bound_issuer = text(auth, "bound_issuer");
    let static_keys = auth
        .get("jwt_validation_pubkeys")
        .and_then(Value::as_array)
        .is_some_and(|k| !k.is_empty());
    let Some(gitlab) = &config.gitlab else {
        report.push(
            Level::Note,
            format!(
                "{here}: jwks_url {:?}, oidc_discovery_url {:?}, bound_issuer {:?} (no [gitlab] to compare with)",
                jwks_url, discovery, bound_issuer
            ),
        );
        if bound_issuer.is_empty() {
            report.push(Level::Problem, format!("{here}: bound_issuer is empty, so Vault does not check which GitLab issued a token"));
        }
        return;
    };
    let expected = expected_jwks_url(config).unwrap_or_default();
    if !jwks_url.is_empty() {
        if jwks_url == expected {
            report.push(Level::Ok, format!("{here}: jwks_url is {jwks_url}"));
        } else if jwks_url == format!("{}{LEGACY_JWKS_PATH}", gitlab.base_url()) {
            report.push(
                Level::Problem,
                format!("{here}: jwks_url is {jwks_url}, GitLab's pre-17 path; GitLab 17 serves its keys at {expected} (set jwks_url={expected})"),
            );
        } else {
            report.push(Level::Problem, format!("{here}: jwks_url is {jwks_url}, but [gitlab] url says the keys are at {expected}"));
        }
    } else if !discovery.is_empty() {
        if discovery == gitlab.base_url() || discovery == gitlab.issuer() {
            report.push(
                Level::Ok,
                format!("{here}: keys found via OIDC discovery at {discovery}"),
            );
        } else {
            report.push(
                Level::Problem,
                format!(
                    "{here}: oidc_discovery_url is {discovery}, but [gitlab] url is {}",
                    gitlab.base_url()
                ),
            );
        }
    } else if static_keys {
        report.push(
            Level::Problem,
            format!("{here}: uses static jwt_validation_pubkeys, which break when GitLab rotates its key; set jwks_url={expected}"),
        );
    } else {
        report.push(
            Level::Problem,
            format!(
                "{here}: neither jwks_url nor oidc_discovery_url is set; set jwks_url={expected}"
            ),
        );
    }
    let accepted = gitlab.accepted_issuers();
    if bound_issuer.is_empty() {
        report.push(
            Level::Problem,
            format!("{here}: bound_issuer is empty, so Vault does not check which GitLab issued a token; set bound_issuer={:?}", gitlab.issuer()),
        );
    } else if accepted
        .iter()
        .any(|a| a == bound_issuer.trim_end_matches('/'))
    {
        report.push(
            Level::Ok,
            format!("{here}: bound_issuer is {bound_issuer:?}"),
        );
    } else {
        report.push(
            Level::Problem,
            format!(
                "{here}: bound_issuer is {bound_issuer:?}, but [gitlab] issuer is {:?}; one of them is wrong, and Vault will refuse every token leasehold accepts",
                gitlab.issuer()
            ),
        );
    }
}

fn check_role(config: &Config, here: &str, role: &Value, report: &mut Report) {
    let role_type = text(role, "role_type");
    if role_type == "oidc" {
        report.push(
            Level::Problem,
            format!("{here}: role_type is \"oidc\"; a CI login needs role_type=\"jwt\""),
        );
    }
    let bound: Vec<String> = role
        .get("bound_audiences")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let audiences = &config.audiences;
    if bound.is_empty() {
        report.push(
            Level::Problem,
            format!("{here}: bound_audiences is empty; Vault 1.17+ and OpenBao refuse every token that carries aud (GitLab's always do) unless the role lists it"),
        );
    } else if audiences.is_empty() {
        report.push(
            Level::Note,
            format!("{here}: bound_audiences {bound:?}; jobs must set one of them as aud"),
        );
    } else if let Some(matching) = audiences.iter().find(|a| bound.contains(a)) {
        report.push(
            Level::Ok,
            format!("{here}: bound_audiences {bound:?} include {matching:?}"),
        );
    } else {
        report.push(
            Level::Problem,
            format!("{here}: bound_audiences {bound:?} include none of the audiences leasehold accepts ({audiences:?}); every verified token will be refused"),
        );
    }
    match role.get("bound_claims") {
        Some(Value::Object(claims)) if !claims.is_empty() => {
            report.push(Level::Note, format!("{here}: bound_claims {}", Value::Object(claims.clone())));
        }
        _ if !bound.is_empty() => report.push(
            Level::Note,
            format!("{here}: no bound_claims: any job whose token has the right aud may log in with this role"),
        ),
        _ => {}
    }
}

/// A Vault error in a few words (Vault's own errors can be long).
fn short(e: &VaultError) -> String {
    match e {
        VaultError::Denied { status, errors, .. } => {
            format!(
                "{status}{}",
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(": {errors}")
                }
            )
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_issuer::{TestKey, jwks};
    use serde_json::json;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    async fn gitlab() -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/oauth/discovery/keys"))
            .respond_with(ResponseTemplate::new(200).set_body_json(jwks(&[TestKey::shared(0)])))
            .mount(&server)
            .await;
        server
    }

    async fn vault(
        auth_mounts: Value,
        auth_config: Option<Value>,
        role: Option<Value>,
    ) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v1/sys/health"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"initialized": true, "sealed": false, "standby": false, "version": "2.1.0"}),
            ))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/sys/auth"))
            .and(header("x-vault-token", "admin-token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": auth_mounts})))
            .mount(&server)
            .await;
        let respond = |body: Option<Value>| match body {
            Some(data) => ResponseTemplate::new(200).set_body_json(json!({"data": data})),
            None => ResponseTemplate::new(404).set_body_json(json!({"errors": []})),
        };
        Mock::given(method("GET"))
            .and(path("/v1/auth/jwt/config"))
            .respond_with(respond(auth_config))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/auth/jwt/role/ci"))
            .respond_with(respond(role))
            .mount(&server)
            .await;
        server
    }

    fn write_config(dir: &Path, vault: &str, gitlab: &str) -> std::path::PathBuf {
        let path = dir.join("config.toml");
        std::fs::write(
            &path,
            format!(
                "state_dir = \"{}\"\n[vault]\naddress = \"{vault}\"\nrole = \"ci\"\nretries = 0\ntimeout_seconds = 2\n[gitlab]\nurl = \"{gitlab}\"\naudiences = [\"https://bao.example.com\"]\n[executor]\nuser_pool = \"20000-20049\"\n",
                dir.join("state").display()
            ),
        )
        .expect("write config");
        path
    }

    /// `check` (at a fixed time) of a config for `vault` and `gitlab`, written to a fresh temp
    /// dir, with `token` as the Vault token.
    async fn check_against(vault: &str, gitlab: &MockServer, token: Option<&str>) -> Report {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write_config(dir.path(), vault, &gitlab.uri());
        check(
            &config,
            token.map(SecretString::from).as_ref(),
            1_800_000_000,
        )
        .await
    }

    /// Vault's JWT auth config as it should be for the mock GitLab.
    fn auth_config_for(gitlab: &MockServer) -> Value {
        json!({"jwks_url": format!("{}/oauth/discovery/keys", gitlab.uri()), "bound_issuer": gitlab.uri()})
    }

    fn good_role() -> Value {
        json!({"role_type": "jwt", "bound_audiences": ["https://bao.example.com"], "bound_claims": {"project_path": "grp/*"}})
    }

    fn problems(report: &Report) -> Vec<String> {
        report
            .lines
            .iter()
            .filter(|(l, _)| *l == Level::Problem)
            .map(|(_, t)| t.clone())
            .collect()
    }

    #[tokio::test]
    async fn all_good() {
        let gitlab = gitlab().await;
        let auth_config = auth_config_for(&gitlab);
        let vault = vault(
            json!({"jwt/": {"type": "jwt"}}),
            Some(auth_config),
            Some(good_role()),
        )
        .await;
        let report = check_against(&vault.uri(), &gitlab, Some("admin-token")).await;
        assert_eq!(report.problems(), 0, "{}", report.render());
        let text = report.render();
        assert!(
            text.contains("auth/jwt/role/ci: bound_claims {\"project_path\":\"grp/*\"}"),
            "{text}"
        );
        assert!(text.contains("1 signing key at"), "{text}");
        assert!(text.ends_with("no problems found\n"), "{text}");
    }

    #[tokio::test]
    async fn missing_jwt_mount() {
        let gitlab = gitlab().await;
        let vault = vault(json!({"token/": {"type": "token"}}), None, None).await;
        let report = check_against(&vault.uri(), &gitlab, Some("admin-token")).await;
        let found = problems(&report);
        assert_eq!(found.len(), 1, "{}", report.render());
        assert!(found[0].ends_with("auth/jwt: no auth method is mounted there; enable it with  bao auth enable -path=jwt jwt"), "{}", found[0]);
    }

    #[tokio::test]
    async fn wrong_bound_issuer_legacy_jwks_and_empty_audiences() {
        let gitlab = gitlab().await;
        let auth_config = json!({"jwks_url": format!("{}/-/jwks", gitlab.uri()), "bound_issuer": "https://other.example.com"});
        let role = json!({"role_type": "jwt", "bound_audiences": []});
        let vault = vault(
            json!({"jwt/": {"type": "jwt"}}),
            Some(auth_config),
            Some(role),
        )
        .await;
        let report = check_against(&vault.uri(), &gitlab, Some("admin-token")).await;
        let found = problems(&report);
        assert_eq!(found.len(), 3, "{}", report.render());
        assert!(found[0].contains("GitLab's pre-17 path"), "{}", found[0]);
        assert!(
            found[1]
                .contains("bound_issuer is \"https://other.example.com\", but [gitlab] issuer is"),
            "{}",
            found[1]
        );
        assert!(
            found[2].contains("bound_audiences is empty"),
            "{}",
            found[2]
        );
    }

    #[tokio::test]
    async fn unreachable_server_and_missing_role() {
        let gitlab = gitlab().await;
        let dead_uri = crate::identity::test_issuer::dead_url();
        let report = check_against(&dead_uri, &gitlab, None).await;
        let found = problems(&report);
        assert_eq!(found.len(), 1, "{}", report.render());
        assert!(found[0].contains("unreachable"), "{}", found[0]);

        let auth_config = auth_config_for(&gitlab);
        let vault = vault(json!({"jwt/": {"type": "jwt"}}), Some(auth_config), None).await;
        let report = check_against(&vault.uri(), &gitlab, Some("admin-token")).await;
        assert_eq!(
            problems(&report),
            [format!(
                "vault {} auth/jwt/role/ci: the role does not exist; every login with it will be refused",
                vault.uri()
            )]
        );
    }

    #[tokio::test]
    async fn without_a_token_says_what_was_not_checked() {
        let gitlab = gitlab().await;
        let vault = vault(json!({}), None, None).await;
        let report = check_against(&vault.uri(), &gitlab, None).await;
        assert_eq!(report.problems(), 0, "{}", report.render());
        assert!(report.render().contains("no Vault token (set VAULT_TOKEN or --token-file), so auth mounts auth/jwt and their roles were not checked"));
    }

    #[test]
    fn every_setup_in_which_jobs_can_read_each_other_is_named() {
        let findings = |executor: &str| {
            let config = Config::parse(&format!(
                "[vault]\naddress = \"https://v.example.com\"\n[gitlab]\nurl = \"https://g.example.com\"\n[executor]\n{executor}\n"
            ))
            .expect("valid");
            let mut report = Report::default();
            check_isolation(&config, &mut report);
            report.lines
        };
        let one = |executor: &str| {
            let lines = findings(executor);
            assert_eq!(lines.len(), 1, "{lines:?}");
            lines[0].clone()
        };
        let (level, text) = one("user_pool = \"20000-20049\"");
        assert_eq!(level, Level::Ok, "{text}");
        assert!(text.contains("50 uids"), "{text}");
        let (level, text) = one("user = \"gitlab-runner\"");
        assert_eq!(level, Level::Warning, "{text}");
        assert!(text.contains("every job runs as gitlab-runner: concurrent jobs of that one user can read each other's /proc/<pid>/environ"), "{text}");
        let (level, text) = one("user_from_claim = \"user_login\"\nallowed_users = [\"ci-*\"]");
        assert_eq!(level, Level::Warning, "{text}");
        let (level, text) = one("allow_root = true");
        assert_eq!(level, Level::Warning, "{text}");
        assert!(
            text.contains("every job can read every other job's state key"),
            "{text}"
        );
        let (level, text) = one("shell = \"bash\"");
        if nix::unistd::geteuid().is_root() {
            assert_eq!(level, Level::Problem, "{text}");
            assert!(text.contains("prepare refuses every job"), "{text}");
        } else {
            assert_eq!(level, Level::Warning, "{text}");
            assert!(text.contains("jobs run as leasehold's own user"), "{text}");
        }
        let (level, _) = one("kind = \"custom\"\n[executor.custom]\nrun_exec = \"/bin/true\"");
        assert_eq!(level, Level::Note);
    }

    #[tokio::test]
    async fn invalid_config_is_one_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[vault]\naddress = \"https://v.example.com\"\n[[bindings]]\nname = \"b\"\n[bindings.secrets.A]\nvault = \"a/b@kv\"\n").expect("write");
        let report = check(&path, None, 0).await;
        assert_eq!(report.problems(), 1);
        assert!(
            report
                .render()
                .contains("bindings need [gitlab] so that claims are verified"),
            "{}",
            report.render()
        );
    }
}
