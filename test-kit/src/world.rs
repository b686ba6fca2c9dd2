//! The one fixture an end-to-end test starts: a leasehold installation private to the test.
//!
//! A [`World`] is a real OpenBao with JWT auth trusting a local [`Issuer`], the JWT role
//! [`ROLE`] with the policy [`POLICY`], a temp dir holding leasehold's config, state, builds and
//! cache dirs, and the leasehold binary that a [`Runner`] drives through every stage. A
//! [`WorldBuilder`] adds what a test needs beyond that: the policy's rules, more role fields, a
//! server started elsewhere (a cluster node) or one with https listeners, a PostgreSQL for the
//! database engine, config tables, and how private the temp dir is.
//!
//! ```ignore
//! let world = World::builder(leasehold_bin)
//!     .policy(&[r#"path "kv/data/*" { capabilities = ["read"] }"#])
//!     .start();
//! world.bao.enable_kv("kv", 2);
//! let job = world.job().secrets_yaml("A:\n  vault: app/a@kv\n").script(["echo $A"]);
//! let outcome = world.run(&job);
//! world.assert_revoked_and_clean(&outcome);
//! ```
//!
//! What a test plants (secret values, users, repositories) stays in the test: a small struct
//! holding a `World` and that data, or plain locals.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::bao::TlsListeners;
use super::issuer::DEFAULT_AUD;
use super::pki::Pki;
use super::{Bao, Issuer, JobBuilder, JobOutcome, Postgres, RunOptions, Runner, allowing_root};

/// The JWT auth role every [`World`] creates (on the mount `jwt`) and its config names.
pub const ROLE: &str = "ci";

/// The policy holding [`WorldBuilder::policy`]'s rules, which the role grants by default.
pub const POLICY: &str = "ci";

/// The `[vault]` keys a world's config has unless [`WorldBuilder::vault_defaults`]: tests that
/// stop a server want the failure now, not after retries and an election.
const FAST_FAILURE: &str = "retries = 1\ntimeout_seconds = 5\n";

/// OpenBao + issuer + leasehold config, all private to one test. Dropping it stops the servers
/// (OpenBao first: its database plugin holds connections to the PostgreSQL) and removes the dir.
pub struct World {
    // Fields drop in declaration order.
    /// The server.
    pub bao: Bao,
    pg: Option<Postgres>,
    /// The ID-token issuer.
    pub issuer: Issuer,
    // After `bao`, so that the certificate files outlive the server.
    tls: Option<TlsServer>,
    /// Temp root: config, state, builds, cache.
    pub dir: tempfile::TempDir,
    leasehold: PathBuf,
    vault_defaults: bool,
    auth_mount: String,
    role_name: String,
}

/// What [`WorldBuilder::tls`] adds: the server's https addresses and the certificates.
pub struct TlsServer {
    /// The https listeners (mutual TLS and server-only).
    pub listeners: TlsListeners,
    /// The CA, server and client certificates.
    pub pki: Pki,
}

/// How a [`World`] is set up; [`World::builder`] starts one, [`WorldBuilder::start`] ends it.
pub struct WorldBuilder {
    leasehold: PathBuf,
    policy_rules: Vec<String>,
    role_extra: Value,
    bao: Option<Bao>,
    tls: bool,
    postgres: bool,
    config: String,
    vault_defaults: bool,
    make_dirs: bool,
    dir_mode: Option<u32>,
    dir_prefix: Option<String>,
    auth_mount: String,
    role_name: String,
}

impl WorldBuilder {
    /// The JWT auth mount and the role's name (by default `jwt` and [`ROLE`]), for a config
    /// that names others (the installed one names `gitlab-ci`).
    pub fn auth(mut self, mount: &str, role: &str) -> Self {
        self.auth_mount = mount.to_owned();
        self.role_name = role.to_owned();
        self
    }

    /// The rules (HCL snippets) of the policy [`POLICY`]; none by default.
    pub fn policy(mut self, rules: &[impl AsRef<str>]) -> Self {
        self.policy_rules = rules.iter().map(|r| r.as_ref().to_owned()).collect();
        self
    }

    /// Fields set on the role [`ROLE`] over the default ones (`bound_audiences` = the issuer's
    /// default audience, `user_claim = "user_login"`, `policies = [POLICY]`, `token_ttl = "10m"`),
    /// e.g. `bound_claims` or other `policies`.
    pub fn role(mut self, fields: Value) -> Self {
        if let (Some(role), Some(fields)) = (self.role_extra.as_object_mut(), fields.as_object()) {
            role.extend(fields.clone());
        }
        self
    }

    /// Serves the world from a server the caller started (a [`super::cluster::Cluster`] node).
    pub fn on(mut self, bao: Bao) -> Self {
        self.bao = Some(bao);
        self
    }

    /// Starts the server with two https listeners ([`Bao::start_tls`]) and keeps their
    /// addresses and certificates in [`World::tls`]. The config still names the plain-http
    /// listener; a test points leasehold at an https one itself.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Starts a PostgreSQL too ([`World::pg`]), for the database secrets engine.
    pub fn postgres(mut self) -> Self {
        self.postgres = true;
        self
    }

    /// TOML tables appended to the first config ([`World::write_config`]).
    pub fn config(mut self, tables: &str) -> Self {
        self.config = tables.to_owned();
        self
    }

    /// Leaves `[vault] retries`, `timeout_seconds` and `failover_wait_seconds` at leasehold's
    /// defaults instead of failing fast (1 retry, 5 s, no failover wait).
    pub fn vault_defaults(mut self) -> Self {
        self.vault_defaults = true;
        self
    }

    /// Leaves the state, builds and cache dirs for leasehold (or the test) to create: by
    /// default they exist, the state dir 0700.
    pub fn no_dirs(mut self) -> Self {
        self.make_dirs = false;
        self
    }

    /// The temp root's mode (e.g. 0755, so that job users can reach what is below it); 0700
    /// by default.
    pub fn dir_mode(mut self, mode: u32) -> Self {
        self.dir_mode = Some(mode);
        self
    }

    /// The temp root's name prefix (e.g. `leasehold-leases`), to tell the worlds of a run apart.
    pub fn dir_prefix(mut self, prefix: &str) -> Self {
        self.dir_prefix = Some(prefix.to_owned());
        self
    }

    /// Starts the servers, writes the policy, the JWT auth mount and role, the dirs and the
    /// first config.
    pub fn start(self) -> World {
        let issuer = Issuer::start();
        let (bao, tls) = match self.bao {
            Some(bao) => (bao, None),
            None if self.tls => {
                let pki = Pki::generate();
                let (bao, listeners) = Bao::start_tls(&pki);
                (bao, Some(TlsServer { listeners, pki }))
            }
            None => (Bao::start(), None),
        };
        let pg = self.postgres.then(Postgres::start);
        bao.write_policy(POLICY, &self.policy_rules.join("\n"));
        bao.enable_jwt(&self.auth_mount, &issuer.jwks_url(), &issuer.url());
        let mut role = json!({
            "bound_audiences": [DEFAULT_AUD],
            "user_claim": "user_login",
            "policies": [POLICY],
            "token_ttl": "10m",
        });
        if let (Some(role), Some(extra)) = (role.as_object_mut(), self.role_extra.as_object()) {
            role.extend(extra.clone());
        }
        bao.jwt_role(&self.auth_mount, &self.role_name, role);
        let mut dir = tempfile::Builder::new();
        if let Some(prefix) = &self.dir_prefix {
            dir.prefix(prefix);
        }
        let dir = dir.tempdir().expect("temp dir");
        if let Some(mode) = self.dir_mode {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode))
                .expect("chmod temp dir");
        }
        if self.make_dirs {
            for sub in ["state", "builds", "cache"] {
                std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
            }
            std::fs::set_permissions(
                dir.path().join("state"),
                std::fs::Permissions::from_mode(0o700),
            )
            .expect("chmod state");
        }
        let world = World {
            bao,
            pg,
            issuer,
            tls,
            dir,
            leasehold: self.leasehold,
            vault_defaults: self.vault_defaults,
            auth_mount: self.auth_mount,
            role_name: self.role_name,
        };
        world.write_config(&self.config);
        world
    }
}

impl World {
    /// A builder for a world whose runner drives the `leasehold` binary (see
    /// [`super::leasehold_bin_or`] and [`super::leasehold_bin`]).
    pub fn builder(leasehold: impl Into<PathBuf>) -> WorldBuilder {
        WorldBuilder {
            leasehold: leasehold.into(),
            policy_rules: Vec::new(),
            role_extra: json!({}),
            bao: None,
            tls: false,
            postgres: false,
            config: String::new(),
            vault_defaults: false,
            make_dirs: true,
            dir_mode: None,
            dir_prefix: None,
            auth_mount: "jwt".to_owned(),
            role_name: ROLE.to_owned(),
        }
    }

    /// A world with the policy `rules` and nothing else added, driving [`super::leasehold_bin`]:
    /// the shortcut for programs cargo built beside leasehold (the examples). Tests build
    /// theirs with the binary cargo built for them.
    pub fn start(rules: &[&str]) -> World {
        World::builder(super::leasehold_bin()).policy(rules).start()
    }

    /// The leasehold binary this world drives.
    pub fn leasehold(&self) -> &Path {
        &self.leasehold
    }

    /// The PostgreSQL of a world built with [`WorldBuilder::postgres`].
    pub fn pg(&self) -> &Postgres {
        self.pg
            .as_ref()
            .expect("this world has no PostgreSQL: build it with .postgres()")
    }

    /// The https listeners and certificates of a world built with [`WorldBuilder::tls`].
    pub fn tls(&self) -> &TlsServer {
        self.tls
            .as_ref()
            .expect("this world has no https listener: build it with .tls()")
    }

    /// `name` below the temp root.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The leasehold config path.
    pub fn config_path(&self) -> PathBuf {
        self.path("config.toml")
    }

    /// The state dir.
    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    /// The config's top-level keys and its `[vault]` table (this server, the role, the
    /// fail-fast keys unless [`WorldBuilder::vault_defaults`]), without `[executor]`: for a
    /// test that writes the rest itself ([`World::write_config_text`]).
    pub fn base_config(&self) -> String {
        self.base_config_with_vault(self.bao.addr(), "")
    }

    fn base_config_with_vault(&self, address: &str, vault_extra: &str) -> String {
        let mut vault_keys = String::new();
        if !self.vault_defaults {
            vault_keys.push_str(FAST_FAILURE);
            // The failover tests set their own wait.
            if !vault_extra.contains("failover_wait_seconds") {
                vault_keys.push_str("failover_wait_seconds = 0\n");
            }
        }
        format!(
            "state_dir = \"{state}\"\nbuilds_dir = \"{builds}\"\ncache_dir = \"{cache}\"\n\n[vault]\naddress = \"{address}\"\n{mount}role = \"{role}\"\n{vault_keys}{vault_extra}\n",
            // leasehold's default mount is the world's default; a test may set its own.
            mount = if self.auth_mount == "jwt" {
                String::new()
            } else {
                format!("auth_mount = \"{}\"\n", self.auth_mount)
            },
            role = self.role_name,
            state = self.state_dir().display(),
            builds = self.path("builds").display(),
            cache = self.path("cache").display(),
        )
    }

    /// Rewrites the config: [`World::base_config`] plus `tables` (further TOML tables, with
    /// `[executor] allow_root = true`: see [`allowing_root`]). Returns its path.
    pub fn write_config(&self, tables: &str) -> PathBuf {
        self.write_config_with_vault(self.bao.addr(), "", tables)
    }

    /// Like [`World::write_config`], with another Vault address and extra `[vault]` keys.
    pub fn write_config_with_vault(
        &self,
        address: &str,
        vault_extra: &str,
        tables: &str,
    ) -> PathBuf {
        let text = format!(
            "{}\n{}\n",
            self.base_config_with_vault(address, vault_extra),
            allowing_root(tables)
        );
        self.write_config_text(&text)
    }

    /// Writes `text` as the whole config (0644: job users may read it); returns its path.
    pub fn write_config_text(&self, text: &str) -> PathBuf {
        let path = self.config_path();
        std::fs::write(&path, text).expect("write config");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .expect("chmod config");
        path
    }

    /// Creates the builds and cache dirs (when missing) owned by a job user, the admin's part
    /// of `[executor] user`: the user's stages write there.
    pub fn hand_build_dirs_to(&self, uid: u32, gid: u32) {
        for sub in ["builds", "cache"] {
            let path = self.path(sub);
            std::fs::create_dir_all(&path).expect("mkdir");
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
    }

    /// A job carrying a fresh default ID token in `VAULT_ID_TOKEN`.
    pub fn job(&self) -> JobBuilder {
        JobBuilder::new().id_token("VAULT_ID_TOKEN", &self.issuer.mint(json!({})))
    }

    /// The emulated runner driving leasehold with this world's config.
    pub fn runner(&self) -> Runner {
        Runner::new(&self.leasehold, self.config_path())
    }

    /// Runs `job` through every stage with the emulated runner's default options.
    pub fn run(&self, job: &JobBuilder) -> JobOutcome {
        self.runner().run_job(job, RunOptions::new())
    }

    /// `leasehold --config <this world's config>`, for a subcommand (`reap`, `check`, …).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.leasehold);
        cmd.arg("--config").arg(self.config_path());
        cmd
    }

    /// The job's Vault token (found through the accessor cleanup named) no longer exists, the
    /// public job log does not show its accessor, and no job state is left: what every cleanup
    /// must achieve.
    pub fn assert_revoked_and_clean(&self, outcome: &JobOutcome) {
        self.assert_revoked_by_and_clean(outcome, &outcome.cleanup_output);
    }

    /// [`World::assert_revoked_and_clean`] for a cleanup that ran outside the emulated runner
    /// and printed `cleanup_output`.
    pub fn assert_revoked_by_and_clean(&self, outcome: &JobOutcome, cleanup_output: &str) {
        let accessor = accessor_in(cleanup_output).expect("cleanup named the token it revoked");
        assert!(
            !outcome.raw_log.contains(&accessor),
            "the token accessor is in the public job log"
        );
        assert!(
            self.bao.lookup_token_by_accessor(&accessor).is_none(),
            "cleanup revoked the job token"
        );
        assert!(
            self.leftover_states().is_empty(),
            "state left: {:?}",
            self.leftover_states()
        );
    }

    /// Job states left in the state dir.
    pub fn leftover_states(&self) -> Vec<PathBuf> {
        entries(&self.state_dir())
    }
}

/// The entries of `dir` (none when it does not exist).
pub fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The first token accessor cleanup named (see [`accessors_in`]).
pub fn accessor_in(cleanup_output: &str) -> Option<String> {
    accessors_in(cleanup_output).into_iter().next()
}

/// The token accessors cleanup names in the runner's log ("revoked token `<a>` (…)", or "could
/// not revoke token `<a>` (…)"). The public job log does not show them (docs/security.md).
pub fn accessors_in(cleanup_output: &str) -> Vec<String> {
    cleanup_output
        .match_indices("revoked token ")
        .chain(cleanup_output.match_indices("revoke token "))
        .filter_map(|(i, m)| cleanup_output[i + m.len()..].split([' ', ':']).next())
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}
