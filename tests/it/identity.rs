//! Issue 4: local ID-token verification, admin bindings, fleet policy, `plan` and `check`,
//! against a real OpenBao and a local GitLab-like issuer.

use serde_json::json;

use crate::world;
use leasehold_test_kit::issuer::DEFAULT_AUD;
use leasehold_test_kit::world::World;
use leasehold_test_kit::{JobBuilder, JobResult, free_port, random_hex, sha16};

const KV_POLICY: &str = r#"path "kv/data/app/*" { capabilities = ["read"] }
path "kv/data/envs/365-dev" { capabilities = ["read"] }"#;

const DECLARATION: &str = "DB_PASS:\n  vault: app/db/password@kv\n  file: false\n";

/// A world whose leasehold verifies tokens against the world's issuer (`[gitlab]`), with KV
/// secrets at `kv/app/db` and `kv/envs/365-{dev,prod}`. `gitlab_extra` goes into `[gitlab]`,
/// `tables` after it.
fn gitlab_world(gitlab_extra: &str, tables: &str) -> World {
    let world = world().policy(&[KV_POLICY]).start();
    world.bao.enable_kv("kv", 2);
    world.bao.kv_put(
        "kv",
        2,
        "app/db",
        json!({"password": format!("pw-{}", random_hex(12))}),
    );
    for env in ["dev", "prod"] {
        world.bao.kv_put(
            "kv",
            2,
            &format!("envs/365-{env}"),
            json!({"key": env_value(&world, env)}),
        );
    }
    configure(&world, gitlab_extra, tables);
    world
}

/// The value seeded at `kv/envs/365-<env>`: derived from the world, so tests never read it back
/// (which the audit log would count).
fn env_value(world: &World, env: &str) -> String {
    format!(
        "{env}-{}",
        sha16(world.dir.path().display().to_string().as_bytes())
    )
}

fn configure(world: &World, gitlab_extra: &str, tables: &str) {
    world.write_config(&gitlab_section(world, gitlab_extra, tables));
}

fn gitlab_section(world: &World, gitlab_extra: &str, tables: &str) -> String {
    format!(
        "[gitlab]\nurl = \"{}\"\naudiences = [\"{DEFAULT_AUD}\"]\njwks_cache_dir = \"{}\"\n{gitlab_extra}\n{tables}",
        world.issuer.url(),
        world.dir.path().join("jwks").display()
    )
}

/// A job with `token` in `VAULT_ID_TOKEN` that declares `DB_PASS`.
fn declaring(token: &str) -> JobBuilder {
    job_with_token(token).secrets_yaml(DECLARATION)
}

fn job_with_token(token: &str) -> JobBuilder {
    JobBuilder::new()
        .id_token("VAULT_ID_TOKEN", token)
        .script(["true"])
}

/// leasehold's own JWKS fetches: Vault is pointed at `/-/jwks`, leasehold uses
/// `/oauth/discovery/keys`, so the issuer's request log tells them apart.
fn leasehold_jwks_fetches(world: &World) -> usize {
    world
        .issuer
        .requests()
        .iter()
        .filter(|p| p.starts_with("/oauth/discovery/keys"))
        .count()
}

fn point_vault_at_legacy_jwks(world: &World) {
    world.bao.ok(
        "POST",
        "auth/jwt/config",
        Some(
            json!({"jwks_url": world.issuer.legacy_jwks_url(), "bound_issuer": world.issuer.url()}),
        ),
    );
}

#[test]
fn a_token_with_a_bad_signature_never_reaches_vault() {
    let world = gitlab_world("", "");
    let forged = world.issuer.mint_with_bad_signature(json!({}));
    let before = world.bao.audited_requests();
    let outcome = world.run(&declaring(&forged));
    assert_eq!(
        outcome.result,
        JobResult::BuildFailure { exit_code: 1 },
        "{}",
        outcome.raw_log
    );
    assert!(
        outcome
            .raw_log
            .contains("has an invalid signature for GitLab's key")
            && outcome.raw_log.contains("no Vault request was made"),
        "{}",
        outcome.raw_log
    );
    // Not one request of any kind reached OpenBao: the audit log did not grow.
    assert_eq!(world.bao.audited_requests(), before);
    // A verification failure is the job's: prepare is not retried.
    assert_eq!(outcome.stages_named("prepare_exec").len(), 1);
    for part in forged.split('.') {
        assert!(
            !outcome.raw_log.contains(part),
            "the job log contains part of the token"
        );
    }
}

#[test]
fn each_verification_failure_has_its_own_message() {
    let world = gitlab_world("", "");
    let issuer = &world.issuer;
    let cases: [(&str, String, &str); 5] = [
        (
            "wrong aud",
            issuer.mint(json!({"aud": "https://elsewhere.example"})),
            "has aud \"https://elsewhere.example\", but this runner expects \"https://bao.leasehold.test\"; set it in the job:  id_tokens: { VAULT_ID_TOKEN: { aud: \"https://bao.leasehold.test\" } }",
        ),
        (
            "expired",
            issuer.token().exp_in(-600).mint(),
            "s ago by this runner's clock",
        ),
        (
            "not yet valid",
            issuer.token().nbf_in(900).mint(),
            "is not valid yet: nbf=",
        ),
        (
            "wrong issuer",
            issuer.mint(json!({"iss": "https://other.example"})),
            "was issued by \"https://other.example\", but this runner expects",
        ),
        (
            "unknown kid",
            issuer.mint_with_unknown_kid(json!({})),
            "which is not among the signing keys GitLab publishes",
        ),
    ];
    for (name, token, message) in cases {
        let outcome = world.run(&declaring(&token));
        assert_eq!(
            outcome.result,
            JobResult::BuildFailure { exit_code: 1 },
            "{name}: {}",
            outcome.raw_log
        );
        assert!(
            outcome.raw_log.contains(message),
            "{name}: {}",
            outcome.raw_log
        );
        assert!(
            !outcome.raw_log.contains(&token),
            "{name}: token in the log"
        );
    }
    assert_eq!(
        world.bao.count_logins("jwt"),
        0,
        "{:?}",
        world.bao.audited_requests()
    );
    // Within the leeway (60 s) is fine.
    let outcome = world.run(&declaring(&issuer.token().nbf_in(30).mint()));
    assert!(
        outcome.is_success(),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
}

#[test]
fn key_rotation_costs_exactly_one_jwks_refetch() {
    let world = gitlab_world("", "");
    point_vault_at_legacy_jwks(&world);
    // OpenBao fetched /oauth/discovery/keys itself when World::start wrote its first config.
    let base = leasehold_jwks_fetches(&world);
    let fetches = || leasehold_jwks_fetches(&world) - base;

    let outcome = world.run(&declaring(&world.issuer.mint(json!({}))));
    assert!(
        outcome.is_success(),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    assert_eq!(fetches(), 1, "first job fetches once");
    let outcome = world.run(&declaring(&world.issuer.mint(json!({}))));
    assert!(outcome.is_success(), "{}", outcome.raw_log);
    assert_eq!(fetches(), 1, "second job uses the disk cache");

    let new_kid = world.issuer.rotate_key();
    let outcome = world.run(&declaring(&world.issuer.mint(json!({}))));
    assert!(
        outcome.is_success(),
        "after rotation: {:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    assert!(
        outcome.raw_log.contains(&format!("GitLab key {new_kid}")),
        "{}",
        outcome.raw_log
    );
    assert_eq!(fetches(), 2, "one re-fetch for the new kid");
    let outcome = world.run(&declaring(&world.issuer.mint(json!({}))));
    assert!(outcome.is_success(), "{}", outcome.raw_log);
    assert_eq!(fetches(), 2, "then the cache again");
}

const ENV_BINDING: &str = r#"
[[bindings]]
name = "per-env"
match = { project_id = 365, environment = "dev" }
[bindings.secrets.ENV_KEY]
vault = { engine = { name = "kv-v2", path = "kv" }, path = "envs/{project_id}-{environment}", field = "key" }
file = false
"#;

#[test]
fn a_binding_grants_the_project_environment_secret_without_declarations() {
    let world = gitlab_world("", ENV_BINDING);
    let dev_value = env_value(&world, "dev");
    let token = world
        .issuer
        .mint(json!({"project_id": "365", "environment": "dev"}));
    let job = job_with_token(&token).script(["printf %s \"$ENV_KEY\" | sha256sum | cut -c1-16"]);
    let outcome = world.run(&job);
    assert!(
        outcome.is_success(),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    assert!(
        outcome.raw_log.contains(&sha16(dev_value.as_bytes())),
        "{}",
        outcome.raw_log
    );
    assert!(
        outcome.raw_log.contains("binding per-env applies: ENV_KEY"),
        "{}",
        outcome.raw_log
    );
    assert_eq!(
        world
            .bao
            .count_requests("read", |p| p == "kv/data/envs/365-dev"),
        1
    );
    assert_eq!(
        world.bao.count_requests("read", |p| p.starts_with("kv/")
            && p != "kv/data/envs/365-dev"),
        0
    );

    // The same project in prod: no rule matches, so no secret and no Vault request at all.
    let logins = world.bao.count_logins("jwt");
    let token = world
        .issuer
        .mint(json!({"project_id": "365", "environment": "prod"}));
    let outcome = world.run(&job_with_token(&token).script(["test -z \"${ENV_KEY:-}\""]));
    assert!(
        outcome.is_success(),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    assert!(
        outcome.raw_log.contains("no secrets for this job"),
        "{}",
        outcome.raw_log
    );
    assert_eq!(world.bao.count_logins("jwt"), logins);
    assert_eq!(
        world
            .bao
            .count_requests("read", |p| p == "kv/data/envs/365-prod"),
        0
    );
}

#[test]
fn a_claim_with_dot_dot_cannot_reach_another_path() {
    let tables = r#"
[[bindings]]
name = "any-env"
match = { project_id = 365 }
[bindings.secrets.ENV_KEY]
vault = { engine = { name = "kv-v2", path = "kv" }, path = "envs/{project_id}-{environment}", field = "key" }
"#;
    let world = gitlab_world("", tables);
    for evil in ["../x", "dev/../../app/db", "..", "dev%2f.."] {
        let token = world
            .issuer
            .mint(json!({"project_id": "365", "environment": evil}));
        let outcome = world.run(&job_with_token(&token));
        assert_eq!(
            outcome.result,
            JobResult::BuildFailure { exit_code: 1 },
            "{evil}: {}",
            outcome.raw_log
        );
        assert!(
            outcome
                .raw_log
                .contains("binding any-env matches this job but cannot be applied")
                && outcome.raw_log.contains("claim environment"),
            "{evil}: {}",
            outcome.raw_log
        );
    }
    assert_eq!(world.bao.count_logins("jwt"), 0);
    assert_eq!(
        world.bao.count_requests("read", |p| p.starts_with("kv/")),
        0
    );
}

#[test]
fn declarations_on_unprotected_refs_are_refused_when_the_policy_says_so() {
    let world = gitlab_world("", "[policy]\njob_declarations = \"protected_refs_only\"\n");
    // The payload claims a protected ref; the verified claim says otherwise and wins.
    let token = world
        .issuer
        .mint(json!({"ref": "feature", "ref_protected": "false"}));
    let job = job_with_token(&token)
        .git_ref("feature", true)
        .secrets_yaml(DECLARATION);
    let outcome = world.run(&job);
    assert_eq!(
        outcome.result,
        JobResult::BuildFailure { exit_code: 1 },
        "{}",
        outcome.raw_log
    );
    assert!(
        outcome
            .raw_log
            .contains("only on protected branches and tags")
            && outcome.raw_log.contains(
                "ref \"feature\" is not protected according to the verified ref_protected claim"
            ),
        "{}",
        outcome.raw_log
    );
    assert_eq!(world.bao.count_logins("jwt"), 0);
    let outcome = world.run(&declaring(&world.issuer.mint(json!({}))));
    assert!(
        outcome.is_success(),
        "protected ref: {:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
}

#[test]
fn legacy_token_variables_when_allowed() {
    let world = gitlab_world("allow_legacy_token_variables = true", "");
    let job = JobBuilder::new()
        .masked_variable("CI_JOB_JWT_V2", &world.issuer.mint(json!({})))
        .secrets_yaml(DECLARATION)
        .script(["test -n \"$DB_PASS\""]);
    let outcome = world.run(&job);
    assert!(
        outcome.is_success(),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    assert!(
        outcome
            .raw_log
            .contains("verified the ID token in $CI_JOB_JWT_V2"),
        "{}",
        outcome.raw_log
    );
    configure(&world, "", "");
    let outcome = world.run(&job);
    assert_eq!(
        outcome.result,
        JobResult::BuildFailure { exit_code: 1 },
        "{}",
        outcome.raw_log
    );
    assert!(
        outcome
            .raw_log
            .contains("the job has no ID token in $VAULT_ID_TOKEN"),
        "{}",
        outcome.raw_log
    );
}

#[test]
fn no_token_and_no_declarations_is_not_an_error() {
    let world = gitlab_world("", ENV_BINDING);
    let outcome = world.run(&JobBuilder::new().script(["true"]));
    assert!(
        outcome.is_success(),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    assert!(
        outcome
            .raw_log
            .contains("the job has no ID token in $VAULT_ID_TOKEN, so no binding can apply"),
        "{}",
        outcome.raw_log
    );
}

#[test]
fn plan_explains_a_saved_job_payload() {
    let world = gitlab_world("", ENV_BINDING);
    let token = world
        .issuer
        .mint(json!({"project_id": "365", "environment": "dev"}));
    let job = declaring(&token);
    let path = world.dir.path().join("response.json");
    std::fs::write(&path, job.payload(None).to_string()).expect("write payload");
    let before = world.bao.audited_requests();
    let output = world
        .command()
        .args(["plan", "--job"])
        .arg(&path)
        .output()
        .expect("leasehold plan");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "verified  yes: RS256 signature",
        "[1] per-env                  MATCH",
        "granted by  binding per-env",
        "login       POST /v1/auth/jwt/login  role ",
        "request     GET /v1/kv/data/envs/365-dev  (read, engine kv-v2, mount kv)",
        "granted by  LEASEHOLD_SECRETS",
        "RESULT  prepare would succeed: 1 login, 2 requests",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(!stdout.contains(&token));
    assert_eq!(
        world.bao.audited_requests(),
        before,
        "plan made a Vault request"
    );
}

fn check(world: &World) -> (bool, String) {
    let output = world
        .command()
        .arg("check")
        .env("VAULT_TOKEN", world.bao.root_token())
        .output()
        .expect("leasehold check");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn problems(report: &str) -> Vec<&str> {
    report
        .lines()
        .filter(|l| l.starts_with("problem"))
        .collect()
}

#[test]
fn check_reports_missing_mount_wrong_issuer_and_unreachable_server() {
    let world = gitlab_world("", "");
    let (ok, report) = check(&world);
    assert!(ok, "{report}");
    assert!(report.contains("auth/jwt: bound_issuer is"), "{report}");
    assert!(
        report
            .contains("auth/jwt/role/ci: bound_audiences [\"https://bao.leasehold.test\"] include"),
        "{report}"
    );

    // A JWT mount that does not exist.
    world.write_config_with_vault(
        world.bao.addr(),
        "auth_mount = \"gitlab\"",
        &gitlab_section(&world, "", ""),
    );
    let (ok, report) = check(&world);
    assert!(!ok, "{report}");
    assert_eq!(problems(&report).len(), 1, "{report}");
    assert!(
        problems(&report)[0].contains("auth/gitlab: no auth method is mounted there"),
        "{report}"
    );

    // A bound_issuer that is not GitLab's.
    configure(&world, "", "");
    world.bao.ok(
        "POST",
        "auth/jwt/config",
        Some(json!({"jwks_url": world.issuer.jwks_url(), "bound_issuer": "https://wrong.example"})),
    );
    let (ok, report) = check(&world);
    assert!(!ok, "{report}");
    assert_eq!(problems(&report).len(), 1, "{report}");
    assert!(
        problems(&report)[0]
            .contains("bound_issuer is \"https://wrong.example\", but [gitlab] issuer is"),
        "{report}"
    );

    // An unreachable server.
    let dead = format!("http://127.0.0.1:{}", free_port());
    world.write_config_with_vault(&dead, "", &gitlab_section(&world, "", ""));
    let (ok, report) = check(&world);
    assert!(!ok, "{report}");
    assert!(
        problems(&report)
            .iter()
            .any(|p| p.contains(&dead) && p.contains("unreachable")),
        "{report}"
    );
}

/// Issue 11.5: `config`, `plan` and `check` writing to a full disk end with one error line and
/// the system-failure code, never a panic ("internal error at …stdio.rs").
#[test]
fn output_to_a_full_device_is_an_error_not_a_panic() {
    let world = gitlab_world("", ENV_BINDING);
    let claims = world.dir.path().join("claims.json");
    std::fs::write(&claims, r#"{"project_id": "365", "environment": "dev"}"#).expect("claims");
    for args in [
        vec!["config"],
        vec!["plan", "--claims", claims.to_str().expect("utf-8")],
        vec!["check"],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        let output = world
            .command()
            .args(&args)
            .env("VAULT_TOKEN", world.bao.root_token())
            .env("SYSTEM_FAILURE_EXIT_CODE", "77")
            .stdout(full)
            .output()
            .expect("run leasehold");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(77), "{args:?}: {stderr}");
        assert!(!stderr.contains("internal error"), "{args:?}: {stderr}");
        assert!(
            stderr.contains("to standard output: No space left on device"),
            "{args:?}: {stderr}"
        );
    }
}
