//! A ready-to-use leasehold installation for end-to-end tests: a real OpenBao with JWT auth
//! trusting a local [`Issuer`], a role and policy, a private state dir, and a leasehold config
//! file, plus a [`Runner`] pointed at the leasehold binary.
//!
//! ```ignore
//! let world = World::start(&[r#"path "kv/data/*" { capabilities = ["read"] }"#]);
//! world.bao.enable_kv("kv", 2);
//! let job = world.job().secrets_yaml("A:\n  vault: app/a@kv\n").script(["echo $A"]);
//! let outcome = world.runner().run_job(&job, RunOptions::new());
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::issuer::DEFAULT_AUD;
use super::{Bao, Issuer, JobBuilder, JobOutcome, RunOptions, Runner, leasehold_bin};

/// The JWT auth mount and role every [`World`] creates.
pub(crate) const ROLE: &str = "ci";

/// OpenBao + issuer + leasehold config, all private to one test.
pub(crate) struct World {
    /// The server.
    pub(crate) bao: Bao,
    /// The ID-token issuer.
    pub(crate) issuer: Issuer,
    /// Temp root: config, state, builds, cache.
    pub(crate) dir: tempfile::TempDir,
}

impl World {
    /// Starts everything; `policy_rules` become the role's policy (HCL snippets).
    pub(crate) fn start(policy_rules: &[&str]) -> World {
        World::start_with_role(policy_rules, json!({}))
    }

    /// Like [`World::start`], with extra role fields (e.g. `bound_claims`).
    pub(crate) fn start_with_role(policy_rules: &[&str], role_extra: Value) -> World {
        World::start_on(Bao::start(), policy_rules, role_extra)
    }

    /// Like [`World::start_with_role`], on a server the caller started (e.g. [`Bao::start_tls`]).
    pub(crate) fn start_on(bao: Bao, policy_rules: &[&str], role_extra: Value) -> World {
        let issuer = Issuer::start();
        bao.write_policy("ci", &policy_rules.join("\n"));
        bao.enable_jwt("jwt", &issuer.jwks_url(), &issuer.url());
        let mut role = json!({
            "bound_audiences": [DEFAULT_AUD],
            "user_claim": "user_login",
            "policies": ["ci"],
            "token_ttl": "10m",
        });
        if let (Some(role), Some(extra)) = (role.as_object_mut(), role_extra.as_object()) {
            for (k, v) in extra {
                role.insert(k.clone(), v.clone());
            }
        }
        bao.jwt_role("jwt", ROLE, role);
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["state", "builds", "cache"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        std::fs::set_permissions(
            dir.path().join("state"),
            std::fs::Permissions::from_mode(0o700),
        )
        .expect("chmod state");
        let world = World { bao, issuer, dir };
        world.write_config("");
        world
    }

    /// The leasehold config path.
    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// The state dir.
    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Rewrites the config: the base (state, dirs, `[vault]` with this server and role) plus
    /// `extra` TOML appended verbatim (further tables).
    pub(crate) fn write_config(&self, extra: &str) {
        self.write_config_with_vault(self.bao.addr(), "", extra);
    }

    /// Like [`World::write_config`], with another Vault address and extra `[vault]` keys.
    pub(crate) fn write_config_with_vault(&self, address: &str, vault_extra: &str, extra: &str) {
        let root = self.dir.path();
        // Tests that stop a server want the failure now, not after riding out an election;
        // the failover tests set their own wait.
        let wait = if vault_extra.contains("failover_wait_seconds") {
            ""
        } else {
            "failover_wait_seconds = 0\n"
        };
        let text = format!(
            "state_dir = \"{state}\"\nbuilds_dir = \"{builds}\"\ncache_dir = \"{cache}\"\n\n[vault]\naddress = \"{address}\"\nrole = \"{ROLE}\"\nretries = 1\ntimeout_seconds = 5\n{wait}{vault_extra}\n{extra}\n",
            state = root.join("state").display(),
            builds = root.join("builds").display(),
            cache = root.join("cache").display(),
            extra = super::allowing_root(extra),
        );
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// A job carrying a fresh default ID token in `VAULT_ID_TOKEN`.
    pub(crate) fn job(&self) -> JobBuilder {
        JobBuilder::new().id_token("VAULT_ID_TOKEN", &self.issuer.mint(json!({})))
    }

    /// The emulated runner driving leasehold with this world's config.
    pub(crate) fn runner(&self) -> Runner {
        Runner::new(leasehold_bin(), self.config_path())
    }

    /// Runs `job` through every stage with the emulated runner's default options.
    pub(crate) fn run(&self, job: &JobBuilder) -> JobOutcome {
        self.runner().run_job(job, RunOptions::new())
    }

    /// The job's Vault token (found through the accessor cleanup named) no longer exists, the
    /// public job log does not show its accessor, and no job state is left: what every cleanup
    /// must achieve.
    pub(crate) fn assert_revoked_and_clean(&self, outcome: &super::JobOutcome) {
        self.assert_revoked_by_and_clean(outcome, &outcome.cleanup_output);
    }

    /// [`World::assert_revoked_and_clean`] for a cleanup that ran outside the emulated runner
    /// and printed `cleanup_output`.
    pub(crate) fn assert_revoked_by_and_clean(
        &self,
        outcome: &super::JobOutcome,
        cleanup_output: &str,
    ) {
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
    pub(crate) fn leftover_states(&self) -> Vec<PathBuf> {
        list(&self.state_dir())
    }
}

fn list(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The first token accessor cleanup named (see [`accessors_in`]).
pub(crate) fn accessor_in(cleanup_output: &str) -> Option<String> {
    accessors_in(cleanup_output).into_iter().next()
}

/// The token accessors cleanup names in the runner's log ("revoked token <a> (…)", or "could
/// not revoke token <a> (…)"). The public job log does not show them (docs/security.md).
pub(crate) fn accessors_in(cleanup_output: &str) -> Vec<String> {
    cleanup_output
        .match_indices("revoked token ")
        .chain(cleanup_output.match_indices("revoke token "))
        .filter_map(|(i, m)| cleanup_output[i + m.len()..].split([' ', ':']).next())
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}
