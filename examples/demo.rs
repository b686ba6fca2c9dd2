//! `scripts/demo.sh`: one sample job through all four stages, the way gitlab-runner runs it,
//! against a throwaway OpenBao dev server and a local GitLab-like ID-token issuer.
//!
//! It reuses the integration tests' fixtures (the `leasehold-test-kit` crate), so the demo
//! exercises the same gitlab-runner emulator the test suite does. Everything it starts is
//! stopped, and every temp dir removed, when it ends.
//!
//! `demo --installed` runs the same job the way a host with the package runs it: leasehold is
//! invoked exactly as `gitlab-runner-config.toml` shows (`leasehold config|prepare|run|cleanup`,
//! no `--config`), so it reads the installed `/etc/leasehold/config.toml`, keeps its state in that
//! config's `state_dir` (`/run/leasehold`) and runs the job as that config's `[executor] user`.
//! The one edit an admin makes, pointing `[vault] address` at their server, the demo makes
//! itself (at its throwaway OpenBao); it creates the JWT role the config names. Needs root, and
//! the job user's account (the packaged config: `gitlab-runner`). scripts/package-test.sh runs it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use leasehold_test_kit as support;
use serde_json::json;

use support::world::{World, accessor_in};
use support::{RunOptions, Runner};

/// The config an installed leasehold reads when gitlab-runner passes no `--config`.
const INSTALLED_CONFIG: &str = "/etc/leasehold/config.toml";

/// What the job needs to know of the config leasehold reads.
struct Target {
    /// The config file.
    config: PathBuf,
    /// Its `state_dir`.
    state_dir: PathBuf,
    /// Its `[vault] auth_mount` and `role`.
    auth_mount: String,
    role: String,
    /// Its `[executor] user`, when jobs run as another user.
    job_user: Option<String>,
}

impl Target {
    /// The installed config, read as leasehold reads it.
    fn installed() -> Result<Target, String> {
        let config = PathBuf::from(INSTALLED_CONFIG);
        let text = std::fs::read_to_string(&config).map_err(|e| {
            format!("cannot read {INSTALLED_CONFIG} ({e}): is the package installed?")
        })?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| format!("{INSTALLED_CONFIG} is not TOML: {e}"))?;
        let string = |section: Option<&str>, key: &str| {
            let value = match section {
                Some(name) => table.get(name).and_then(|t| t.get(key)),
                None => table.get(key),
            };
            value.and_then(toml::Value::as_str).map(str::to_owned)
        };
        Ok(Target {
            config,
            state_dir: string(None, "state_dir")
                .ok_or_else(|| format!("{INSTALLED_CONFIG} has no state_dir"))?
                .into(),
            auth_mount: string(Some("vault"), "auth_mount").unwrap_or_else(|| "jwt".into()),
            role: string(Some("vault"), "role")
                .ok_or_else(|| format!("{INSTALLED_CONFIG} has no [vault] role"))?,
            job_user: string(Some("executor"), "user"),
        })
    }

    /// The admin's one edit to the installed config: `[vault] address`.
    fn point_at(&self, address: &str) -> Result<(), String> {
        let text = std::fs::read_to_string(&self.config)
            .map_err(|e| format!("cannot read {INSTALLED_CONFIG}: {e}"))?;
        let edited = with_vault_address(&text, address)
            .ok_or_else(|| format!("{INSTALLED_CONFIG} has no `address = ` line in [vault]"))?;
        std::fs::write(&self.config, edited)
            .map_err(|e| format!("cannot write {INSTALLED_CONFIG}: {e}"))
    }

    /// The fixture's own config (state in its temp dir, jobs as the invoking user).
    fn private(world: &World) -> Target {
        Target {
            config: world.config_path(),
            state_dir: world.state_dir(),
            auth_mount: "jwt".into(),
            role: support::world::ROLE.into(),
            job_user: None,
        }
    }
}

/// `text` with the `address = …` line of its `[vault]` table set to `address`: the admin's one
/// edit, made as a line edit so every other line (and comment) stays as installed.
fn with_vault_address(text: &str, address: &str) -> Option<String> {
    let mut table = String::new();
    let mut replaced = false;
    let mut out = String::with_capacity(text.len() + address.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            table = trimmed.trim_end().to_owned();
        }
        let is_address = table == "[vault]"
            && trimmed
                .strip_prefix("address")
                .is_some_and(|rest| rest.trim_start().starts_with('='));
        if is_address && !replaced {
            out.push_str(&format!(
                "address = \"{address}\"  # demo --installed: its throwaway OpenBao\n"
            ));
            replaced = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    replaced.then_some(out)
}

/// The entries of a state dir, in any order.
fn state_entries(dir: &Path) -> BTreeSet<PathBuf> {
    support::world::entries(dir).into_iter().collect()
}

fn exit_with(message: &str) -> ! {
    eprintln!("demo: {message}");
    std::process::exit(1);
}

fn main() {
    let installed = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--installed") => true,
        Some(other) => {
            eprintln!("demo: unknown argument {other:?} (the only one is --installed)");
            std::process::exit(2);
        }
    };
    // The installed config names the role to create; the private one is the fixture's own.
    let installed_target = installed.then(|| Target::installed().unwrap_or_else(|e| exit_with(&e)));
    println!("== Starting a throwaway OpenBao dev server and a local ID-token issuer");
    let mut builder = World::builder(support::leasehold_bin()).policy(&[
        r#"path "secret/data/ci/app" { capabilities = ["read"] }"#,
        r#"path "pki/issue/ci" { capabilities = ["update"] }"#,
        // Lets cleanup revoke the certificate's lease itself, synchronously and confirmed.
        r#"path "sys/leases/revoke/pki/issue/ci/*" { capabilities = ["update"] }"#,
    ]);
    if let Some(target) = &installed_target {
        builder = builder.auth(&target.auth_mount, &target.role);
    }
    let world = builder.start();
    println!(
        "   OpenBao at {}, issuer at {}",
        world.bao.addr(),
        world.issuer.url()
    );
    let target = match installed_target {
        Some(target) => {
            target
                .point_at(world.bao.addr())
                .unwrap_or_else(|e| exit_with(&e));
            target
        }
        None => Target::private(&world),
    };
    world.bao.kv_put(
        "secret",
        2,
        "ci/app",
        json!({"db_password": "s3cr3t-demo-password", "api_user": "deploy-bot"}),
    );
    world.bao.enable_pki_ca("demo CA", "24h");
    world.bao.ok(
        "POST",
        "pki/roles/ci",
        Some(json!({"allowed_domains": ["ci.example.com"], "allow_subdomains": true, "generate_lease": true, "max_ttl": "1h"})),
    );
    println!(
        "   JWT auth at {} trusts the issuer's JWKS; role \"{}\" reads secret/ci/app, issues pki/issue/ci and may revoke those leases",
        target.auth_mount, target.role
    );
    if installed {
        println!(
            "   leasehold config: {} (installed; [vault] address now {}), state in {}",
            target.config.display(),
            world.bao.addr(),
            target.state_dir.display()
        );
    } else {
        println!("   leasehold config: {}", target.config.display());
    }
    println!(
        "   leasehold binary: {} (LEASEHOLD_BIN overrides it)",
        support::leasehold_bin().display()
    );
    if let Some(user) = &target.job_user {
        println!("   the job runs as {user} ([executor] user)");
    }
    println!();
    let states_before = state_entries(&target.state_dir);

    let secrets = "DB_PASSWORD:
  vault: ci/app/db_password@secret
  file: false
API_USER:
  vault: {engine: {name: kv-v2, path: secret}, path: ci/app, field: api_user}
  file: false
TLS_CERT:
  vault:
    engine: {name: generic, path: pki}
    path: issue/ci
    field: certificate
    data: {common_name: demo.ci.example.com}
    ttl: 10m
TLS_KEY:
  vault:
    engine: {name: generic, path: pki}
    path: issue/ci
    field: private_key
    data: {common_name: demo.ci.example.com}
    ttl: 10m
";
    let job = world
        .job()
        .name("deploy")
        .secrets_yaml(secrets)
        .script([
            "echo \"DB_PASSWORD has ${#DB_PASSWORD} characters; printing it anyway: $DB_PASSWORD\"",
            "echo \"API_USER=$API_USER\"",
            "echo \"TLS_CERT is a file: $TLS_CERT ($(stat -c %a \"$TLS_CERT\"))\"",
            "head -n 1 \"$TLS_CERT\"",
            "echo \"$DB_PASSWORD\" | base64 -w0; echo",
            "echo \"the job runs as $(id -un)\"",
        ])
        .after_script(["echo \"after_script still has API_USER=$API_USER\""]);

    println!("== The job: deploy (LEASEHOLD_SECRETS: 4 secrets from 2 requests)");
    let runner = if installed {
        // As gitlab-runner-config.toml has it: no --config, so leasehold reads the installed one.
        Runner::with_driver(support::leasehold_bin())
    } else {
        world.runner()
    };
    let outcome = runner.run_job(&job, RunOptions::new());
    println!("== Job log (what GitLab would show; leasehold masked the values itself)");
    println!("{}", outcome.raw_log.trim_end());
    println!();
    println!("== cleanup_exec output (gitlab-runner's own log, not the job log)");
    println!("{}", outcome.cleanup_output.trim_end());
    println!();

    let mut ok = outcome.is_success();
    println!("== Checks");
    let check = |ok: &mut bool, what: &str, passed: bool| {
        println!("   [{}] {what}", if passed { "ok" } else { "FAIL" });
        *ok &= passed;
    };
    check(&mut ok, "job succeeded", outcome.is_success());
    check(
        &mut ok,
        "the password never reached the job log",
        !outcome.raw_log.contains("s3cr3t-demo-password"),
    );
    let accessor = accessor_in(&outcome.cleanup_output);
    check(
        &mut ok,
        "the job's Vault token is revoked",
        accessor.is_some_and(|a| world.bao.lookup_token_by_accessor(&a).is_none()),
    );
    check(
        &mut ok,
        "no PKI lease is left",
        world.bao.list_leases("pki/").is_empty(),
    );
    check(
        &mut ok,
        "no job state is left",
        state_entries(&target.state_dir) == states_before,
    );
    check(
        &mut ok,
        "one login, one read per path",
        world.bao.count_logins(&target.auth_mount) == 1,
    );
    if let Some(user) = &target.job_user {
        check(
            &mut ok,
            &format!("the job ran as {user}"),
            outcome.raw_log.contains(&format!("the job runs as {user}")),
        );
    }
    drop(outcome);
    drop(world);
    println!("== Stopped OpenBao and the issuer; removed every temp dir");
    std::process::exit(if ok { 0 } else { 1 });
}
