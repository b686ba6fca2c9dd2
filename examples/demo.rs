//! `scripts/demo.sh`: one sample job through all four stages, the way gitlab-runner runs it,
//! against a throwaway OpenBao dev server and a local GitLab-like ID-token issuer.
//!
//! It reuses the integration tests' fixtures (`tests/it/support`), so the demo exercises the
//! same gitlab-runner emulator the test suite does. Everything it starts is stopped, and every
//! temp dir removed, when it ends.

#[path = "../tests/it/support/mod.rs"]
#[allow(dead_code, unused_imports, unreachable_pub, missing_docs, clippy::all)]
mod support;

use serde_json::json;

use support::RunOptions;
use support::world::{World, accessor_in};

fn main() {
    println!("== Starting a throwaway OpenBao dev server and a local ID-token issuer");
    let world = World::start(&[
        r#"path "secret/data/ci/app" { capabilities = ["read"] }"#,
        r#"path "pki/issue/ci" { capabilities = ["update"] }"#,
        // Lets cleanup revoke the certificate's lease itself, synchronously and confirmed.
        r#"path "sys/leases/revoke/pki/issue/ci/*" { capabilities = ["update"] }"#,
    ]);
    println!(
        "   OpenBao at {}, issuer at {}",
        world.bao.addr(),
        world.issuer.url()
    );
    world.bao.kv_put(
        "secret",
        2,
        "ci/app",
        json!({"db_password": "s3cr3t-demo-password", "api_user": "deploy-bot"}),
    );
    world.bao.ok(
        "POST",
        "sys/mounts/pki",
        Some(json!({"type": "pki", "config": {"max_lease_ttl": "24h"}})),
    );
    world.bao.ok(
        "POST",
        "pki/root/generate/internal",
        Some(json!({"common_name": "demo CA", "ttl": "24h"})),
    );
    world.bao.ok(
        "POST",
        "pki/roles/ci",
        Some(json!({"allowed_domains": ["ci.example.com"], "allow_subdomains": true, "generate_lease": true, "max_ttl": "1h"})),
    );
    println!(
        "   JWT auth trusts the issuer's JWKS; role \"ci\" reads secret/ci/app, issues pki/issue/ci and may revoke those leases"
    );
    println!("   leasehold config: {}", world.config_path().display());
    println!(
        "   leasehold binary: {} (LEASEHOLD_BIN overrides it)",
        support::leasehold_bin().display()
    );
    println!();

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
        ])
        .after_script(["echo \"after_script still has API_USER=$API_USER\""]);

    println!("== The job: deploy (LEASEHOLD_SECRETS: 4 secrets from 2 requests)");
    let outcome = world.runner().run_job(&job, RunOptions::new());
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
        world.leftover_states().is_empty(),
    );
    check(
        &mut ok,
        "one login, one read per path",
        world.bao.count_logins("jwt") == 1,
    );
    drop(outcome);
    drop(world);
    println!("== Stopped OpenBao and the issuer; removed every temp dir");
    std::process::exit(if ok { 0 } else { 1 });
}
