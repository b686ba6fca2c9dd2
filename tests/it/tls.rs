//! TLS to a real OpenBao: a `ca_file` bundle, mutual TLS with `client_cert`/`client_key`, and
//! what the job log says when either is missing or wrong.
//!
//! Every test starts an OpenBao with two https listeners ([`Bao::start_tls`]): one that requires
//! a client certificate signed by the test CA and one that does not. leasehold is pointed at one
//! of them only; the fixture itself keeps using the plain-http dev listener.

use std::path::Path;

use serde_json::json;

use crate::world;
use leasehold_test_kit::{JobOutcome, JobResult, RunOptions, World, random_hex, sha256_hex};

const POLICY: &str = r#"path "kv/data/app/*" { capabilities = ["read"] }"#;

const SECRETS_YAML: &str = "DB_PASS:\n  vault: app/db/password@kv\n  file: false\n";

/// A TLS-serving world with one planted KV v2 secret at `kv/app/db` (field `password`).
struct TlsWorld {
    world: World,
    /// The planted value: never printed.
    secret: String,
}

fn tls_world() -> TlsWorld {
    let world = world().tls().policy(&[POLICY]).start();
    world.bao.enable_kv("kv", 2);
    let secret = format!("tls-{}-planted", random_hex(12));
    world
        .bao
        .kv_put("kv", 2, "app/db", json!({ "password": secret }));
    TlsWorld { world, secret }
}

/// `[vault]` keys naming files (TOML basic strings; the temp paths need no escaping).
fn tls_keys(ca_file: Option<&Path>, client: Option<(&Path, &Path)>) -> String {
    let mut keys = String::new();
    if let Some(ca) = ca_file {
        keys += &format!("ca_file = \"{}\"\n", ca.display());
    }
    if let Some((cert, key)) = client {
        keys += &format!(
            "client_cert = \"{}\"\nclient_key = \"{}\"\n",
            cert.display(),
            key.display()
        );
    }
    keys
}

impl TlsWorld {
    /// Runs a job reading the planted secret; its script compares the secret by hash.
    fn run(&self) -> JobOutcome {
        let check = format!(
            r#"if [ "$(printf '%s' "$DB_PASS" | sha256sum | cut -d' ' -f1)" = "{}" ]; then echo secret-env=ok; else echo secret-env=MISMATCH; fi"#,
            sha256_hex(self.secret.as_bytes())
        );
        let job = self.world.job().secrets_yaml(SECRETS_YAML).script([check]);
        self.world.runner().run_job(&job, RunOptions::new())
    }

    /// The planted value appears nowhere the runner or GitLab would show.
    fn assert_no_leak(&self, outcome: &JobOutcome) {
        let mut shown = vec![
            ("job log", outcome.raw_log.as_str()),
            ("cleanup output", outcome.cleanup_output.as_str()),
        ];
        shown.extend(
            outcome
                .stages
                .iter()
                .map(|s| (s.name.as_str(), s.output.as_str())),
        );
        for (what, text) in shown {
            assert!(
                !text.contains(&self.secret),
                "the secret value appears in the {what}"
            );
        }
    }

    /// The job succeeded, its script saw the secret, cleanup revoked the job's token.
    fn assert_resolved_and_revoked(&self, outcome: &JobOutcome) {
        assert!(
            outcome.is_success(),
            "{:?}\n{}",
            outcome.result,
            outcome.raw_log
        );
        assert!(
            outcome.raw_log.contains("secret-env=ok"),
            "{}",
            outcome.raw_log
        );
        assert_eq!(self.world.bao.count_logins("jwt"), 1);
        assert_eq!(
            self.world
                .bao
                .count_requests("read", |p| p == "kv/data/app/db"),
            1
        );
        self.world.assert_revoked_and_clean(outcome);
        self.assert_no_leak(outcome);
    }

    /// Prepare failed as a system failure on each of gitlab-runner's 3 attempts, never logged in,
    /// and left nothing behind. Returns prepare's one `ERROR:` line (also in the job log).
    fn assert_system_failure(&self, outcome: &JobOutcome) -> String {
        assert!(
            matches!(outcome.result, JobResult::SystemFailure { .. }),
            "{:?}\n{}",
            outcome.result,
            outcome.raw_log
        );
        assert_eq!(
            outcome.stages_named("prepare_exec").len(),
            3,
            "gitlab-runner retries prepare 3 times:\n{}",
            outcome.raw_log
        );
        assert!(
            outcome.run_stage_names().is_empty(),
            "no script ran: {:?}",
            outcome.stage_names()
        );
        assert_eq!(self.world.bao.count_logins("jwt"), 0);
        assert!(self.world.leftover_states().is_empty());
        self.assert_no_leak(outcome);
        let stage = outcome.stage("prepare_exec");
        eprintln!("prepare's output:\n{}", stage.output);
        let errors: Vec<&str> = stage
            .output
            .lines()
            .filter(|l| l.contains("ERROR: leasehold: "))
            .collect();
        assert_eq!(errors.len(), 1, "one error line:\n{}", stage.output);
        let line = errors[0].to_owned();
        assert!(outcome.log.contains(&line), "the job log shows it");
        line
    }
}

#[test]
fn ca_file_alone_reaches_a_tls_listener_end_to_end() {
    let t = tls_world();
    t.world.write_config_with_vault(
        &t.world.tls().listeners.tls,
        &tls_keys(Some(&t.world.tls().pki.ca()), None),
        "",
    );
    let outcome = t.run();
    t.assert_resolved_and_revoked(&outcome);
}

#[test]
fn ca_file_and_client_certificate_reach_an_mtls_listener_end_to_end() {
    let t = tls_world();
    let client = (
        t.world.tls().pki.client_cert(),
        t.world.tls().pki.client_key(),
    );
    t.world.write_config_with_vault(
        &t.world.tls().listeners.mtls,
        &tls_keys(Some(&t.world.tls().pki.ca()), Some((&client.0, &client.1))),
        "",
    );
    let outcome = t.run();
    t.assert_resolved_and_revoked(&outcome);
}

#[test]
fn an_mtls_listener_without_client_cert_is_a_system_failure_naming_the_server() {
    let t = tls_world();
    t.world.write_config_with_vault(
        &t.world.tls().listeners.mtls,
        &tls_keys(Some(&t.world.tls().pki.ca()), None),
        "",
    );
    let outcome = t.run();
    let line = t.assert_system_failure(&outcome);
    assert!(
        line.contains(&format!(
            "Vault at {} is unreachable",
            t.world.tls().listeners.mtls
        )),
        "{line}"
    );
    // The server's alert reaches the request, or is lost and the connection just closes
    // (which of the three is a race).
    assert!(
        ["received fatal alert", "connection closed", "broken pipe"]
            .iter()
            .any(|s| line.contains(s)),
        "{line}"
    );
    assert!(
        line.contains("if the server requires client certificates: set client_cert and client_key"),
        "{line}"
    );
}

#[test]
fn an_unrelated_ca_file_is_a_system_failure_naming_the_certificate_problem() {
    let t = tls_world();
    let client = (
        t.world.tls().pki.client_cert(),
        t.world.tls().pki.client_key(),
    );
    t.world.write_config_with_vault(
        &t.world.tls().listeners.tls,
        &tls_keys(
            Some(&t.world.tls().pki.other_ca()),
            Some((&client.0, &client.1)),
        ),
        "",
    );
    let outcome = t.run();
    let line = t.assert_system_failure(&outcome);
    assert!(
        line.contains(&format!(
            "Vault at {} is unreachable",
            t.world.tls().listeners.tls
        )),
        "{line}"
    );
    assert!(line.contains("certificate"), "{line}");
    assert!(line.contains("check ca_file"), "{line}");
}

#[test]
fn a_missing_ca_file_fails_prepare_naming_the_file_and_the_fix() {
    let t = tls_world();
    let missing = t.world.tls().pki.dir().join("no-such-ca.pem");
    t.world.write_config_with_vault(
        &t.world.tls().listeners.tls,
        &tls_keys(Some(&missing), None),
        "",
    );
    let outcome = t.run();
    // The config loads: config_exec succeeds, the file is read when prepare builds the client.
    assert_eq!(
        outcome.stage("config_exec").exit_code,
        0,
        "{}",
        outcome.raw_log
    );
    let line = t.assert_system_failure(&outcome);
    assert!(
        line.contains(&format!(
            "configuring the client for {}",
            t.world.tls().listeners.tls
        )),
        "{line}"
    );
    assert!(
        line.contains(&format!("cannot read the CA bundle {}", missing.display())),
        "{line}"
    );
    assert!(
        line.contains("set ca_file to a readable PEM file"),
        "{line}"
    );
}

#[test]
fn an_mtls_listener_refusing_the_client_cert_is_a_system_failure_naming_the_server() {
    let t = tls_world();
    let client = (
        t.world.tls().pki.other_client_cert(),
        t.world.tls().pki.other_client_key(),
    );
    t.world.write_config_with_vault(
        &t.world.tls().listeners.mtls,
        &tls_keys(Some(&t.world.tls().pki.ca()), Some((&client.0, &client.1))),
        "",
    );
    let outcome = t.run();
    let line = t.assert_system_failure(&outcome);
    assert!(
        line.contains(&format!(
            "Vault at {} is unreachable",
            t.world.tls().listeners.mtls
        )),
        "{line}"
    );
    // The server's alert reaches the request, or is lost and the connection just closes
    // (which of the three is a race).
    assert!(
        ["received fatal alert", "connection closed", "broken pipe"]
            .iter()
            .any(|s| line.contains(s)),
        "{line}"
    );
    assert!(
        line.contains(
            "if the server requires client certificates: check that client_cert is signed by a CA it trusts"
        ),
        "{line}"
    );
}
