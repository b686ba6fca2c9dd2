//! Issue 11.2: no job-supplied path piece can leave its mount, and the job's ID token goes to
//! `auth/<mount>/login` and nowhere else. Each test is the attack, against a real OpenBao whose
//! audit log records every request that reached it.

use serde_json::json;

use crate::world;
use leasehold_test_kit::front::{Front, OtherApp};
use leasehold_test_kit::world::World;
use leasehold_test_kit::{JobResult, random_hex};

/// The role may read both the allowed mount and the victim's: only leasehold's policy stands
/// between the job and `victim/`, which is what the attacks must not get past.
const POLICY: &str = r#"path "kv-ci/data/*" { capabilities = ["read"] }
path "kv-ci/*" { capabilities = ["read"] }
path "victim/data/*" { capabilities = ["read"] }
path "sys/*" { capabilities = ["read", "list"] }"#;

const BUILD: JobResult = JobResult::BuildFailure { exit_code: 1 };

/// A world with a secret of the victim's (`planted`) beside the mount the policy allows.
fn planted_world(planted: &str) -> World {
    let world = world()
        .policy(&[POLICY])
        .config("[policy]\nallowed_mounts = [\"kv-ci\"]\n")
        .start();
    world.bao.enable_kv("kv-ci", 2);
    world.bao.enable_kv("victim", 2);
    world
        .bao
        .kv_put("kv-ci", 2, "app", json!({"password": "not-the-target"}));
    world
        .bao
        .kv_put("victim", 2, "ci/app", json!({"password": planted}));
    world
}

/// Requests that reached OpenBao since `mark` (an index into the audited requests).
fn requests_since(world: &World, mark: usize) -> Vec<(String, String)> {
    world.bao.audited_requests().split_off(mark)
}

#[test]
fn a_path_cannot_climb_out_of_an_allowed_mount() {
    let planted = format!("victim-{}-planted", random_hex(12));
    let world = planted_world(&planted);
    let cases = [
        (
            "backslashes",
            "X:\n  vault: 'x\\..\\..\\..\\victim\\data\\ci\\app/password@kv-ci'\n  file: false\n"
                .to_owned(),
            "contains '\\', which URL parsers read as '/'",
        ),
        (
            "backslashes to sys",
            "X:\n  vault: {engine: {name: kv-v1, path: kv-ci}, path: 'x\\..\\..\\sys\\mounts', field: data}\n  file: false\n"
                .to_owned(),
            "contains '\\'",
        ),
        (
            "backslashes to the token itself",
            "X:\n  vault: {engine: {name: kv-v1, path: kv-ci}, path: 'x\\..\\..\\auth\\token\\lookup-self', field: id}\n  file: false\n"
                .to_owned(),
            "contains '\\'",
        ),
        (
            "dot segments",
            "X:\n  vault: 'x/../../../victim/data/ci/app/password@kv-ci'\n  file: false\n"
                .to_owned(),
            "has a \".\" or \"..\" segment",
        ),
        (
            "percent-encoded dots",
            "X:\n  vault: 'x/%2e%2e/%2E%2e/%2e./victim/data/ci/app/password@kv-ci'\n  file: false\n"
                .to_owned(),
            "contains '%'",
        ),
        (
            "dots in the mount",
            "X:\n  vault: {engine: {name: kv-v1, path: 'kv-ci/..'}, path: 'victim/data/ci/app', field: password}\n  file: false\n"
                .to_owned(),
            "has a \".\" or \"..\" segment",
        ),
        (
            "a query in the path",
            "X:\n  vault: 'app?x=/password@kv-ci'\n  file: false\n".to_owned(),
            "contains '?'",
        ),
        (
            "a fullwidth dot segment",
            "X:\n  vault: 'x/\u{FF0E}\u{FF0E}/\u{FF0E}\u{FF0E}/victim/data/ci/app/password@kv-ci'\n  file: false\n"
                .to_owned(),
            "segment",
        ),
    ];
    for (what, yaml, message) in cases {
        let mark = world.bao.audited_requests().len();
        let outcome = world.run(&world.job().secrets_yaml(&yaml).script(["echo \"got $X\""]));
        assert_eq!(outcome.result, BUILD, "{what}:\n{}", outcome.raw_log);
        assert!(
            outcome.raw_log.contains(message),
            "{what}: expected {message:?} in:\n{}",
            outcome.raw_log
        );
        assert!(
            outcome.raw_log.contains("ERROR: leasehold: secret X:"),
            "{what}: the message names the declaration:\n{}",
            outcome.raw_log
        );
        assert!(!outcome.raw_log.contains(&planted), "{what}: leaked");
        for (op, path) in requests_since(&world, mark) {
            assert!(
                path.starts_with("kv-ci/") || path == "auth/jwt/login",
                "{what}: a request outside the declared mount reached OpenBao: {op} {path}"
            );
        }
    }
}

#[test]
fn variable_expansion_cannot_splice_in_a_way_out() {
    let planted = format!("victim-{}-planted", random_hex(12));
    let world = planted_world(&planted);
    for (what, value) in [
        ("backslashes", "x\\..\\..\\..\\victim\\data\\ci\\app"),
        ("dots", "x/../../../victim/data/ci/app"),
        ("sys", "x\\..\\..\\..\\sys\\mounts"),
    ] {
        let mark = world.bao.audited_requests().len();
        let job = world
            .job()
            .variable("TARGET", value)
            .secrets_yaml("X:\n  vault: $TARGET/password@kv-ci\n  file: false\n")
            .script(["echo \"got $X\""]);
        let outcome = world.run(&job);
        assert_eq!(outcome.result, BUILD, "{what}:\n{}", outcome.raw_log);
        assert!(
            outcome.raw_log.contains("ERROR: leasehold: secret X: path"),
            "{what}:\n{}",
            outcome.raw_log
        );
        assert!(!outcome.raw_log.contains(&planted), "{what}: leaked");
        for (op, path) in requests_since(&world, mark) {
            assert!(
                path.starts_with("kv-ci/") || path == "auth/jwt/login",
                "{what}: {op} {path} reached OpenBao"
            );
        }
    }
}

#[test]
fn vault_auth_path_cannot_send_the_id_token_to_another_application() {
    let world = world().policy(&[POLICY]).start();
    world.bao.enable_kv("kv-ci", 2);
    world
        .bao
        .kv_put("kv-ci", 2, "app", json!({"password": "p"}));
    let other = OtherApp::start();
    let front = Front::start(world.bao.addr(), other.addr());
    world.write_config_with_vault(&front.url(), "", "");
    let yaml = "X:\n  vault: app/password@kv-ci\n  file: false\n";
    let cases = [
        "../../../other-app/api",
        "jwt/../../../other-app/api",
        "..\\..\\..\\other-app\\api",
        "%2e%2e/%2e%2e/%2e%2e/other-app/api",
        "x/../../../other-app/api?",
        "jwt?next=",
        "jwt#",
        "jwt/login?x=1&",
        "\u{FF0E}\u{FF0E}/\u{FF0E}\u{FF0E}/other-app",
    ];
    for auth_path in cases {
        let mark = world.bao.audited_requests().len();
        let job = world
            .job()
            .variable("VAULT_AUTH_PATH", auth_path)
            .secrets_yaml(yaml);
        let outcome = world.run(&job);
        assert_eq!(outcome.result, BUILD, "{auth_path}:\n{}", outcome.raw_log);
        assert!(
            outcome
                .raw_log
                .contains("ERROR: leasehold: VAULT_AUTH_PATH"),
            "{auth_path}: the message names the variable:\n{}",
            outcome.raw_log
        );
        for (op, path) in requests_since(&world, mark) {
            assert!(
                !path.starts_with("auth/") || path == "auth/jwt/login",
                "{auth_path}: a login outside auth/jwt/login: {op} {path}"
            );
        }
    }
    assert_eq!(
        other.connections(),
        0,
        "the other application received: {}",
        String::from_utf8_lossy(&other.received())
    );
    for target in front.targets() {
        assert!(target.starts_with("/v1/"), "a request left /v1/: {target}");
    }
}

#[test]
fn auth_mounts_are_restricted_by_the_policy() {
    let world = world().policy(&[POLICY]).start();
    world.bao.enable_kv("kv-ci", 2);
    world
        .bao
        .kv_put("kv-ci", 2, "app", json!({"password": "p"}));
    // A second, legitimate JWT mount the job names itself.
    world
        .bao
        .enable_jwt("jwt2", &world.issuer.jwks_url(), &world.issuer.url());
    world.bao.jwt_role(
        "jwt2",
        leasehold_test_kit::world::ROLE,
        json!({"bound_audiences": [leasehold_test_kit::issuer::DEFAULT_AUD], "user_claim": "user_login",
               "policies": ["ci"], "token_ttl": "10m"}),
    );
    let job = world
        .job()
        .variable("VAULT_AUTH_PATH", "jwt2")
        .secrets_yaml("X:\n  vault: app/password@kv-ci\n  file: false\n")
        .script(["test -n \"$X\""]);

    // Default: only the configured auth mount.
    let outcome = world.run(&job);
    assert_eq!(outcome.result, BUILD, "{}", outcome.raw_log);
    assert!(
        outcome.raw_log.contains(
            "VAULT_AUTH_PATH \"jwt2\" is not an auth mount this runner lets jobs log in at ([policy] allowed_auth_mounts"
        ),
        "{}",
        outcome.raw_log
    );
    assert_eq!(world.bao.count_logins("jwt2"), 0);

    world.write_config("[policy]\nallowed_auth_mounts = [\"jwt*\"]\n");
    let outcome = world.run(&job);
    assert!(outcome.result.is_success(), "{}", outcome.raw_log);
    assert_eq!(world.bao.count_logins("jwt2"), 1);
    world.assert_revoked_and_clean(&outcome);
}

#[test]
fn a_bad_namespace_is_the_jobs_fault_and_sends_nothing() {
    let world = world().policy(&[POLICY]).start();
    world.bao.enable_kv("kv-ci", 2);
    let yaml = "X:\n  vault: app/password@kv-ci\n";
    for (namespace, message) in [
        ("../../x", "has a \".\" or \"..\" segment"),
        (
            "team\r\nX-Injected: 1",
            "control or invisible character U+000D",
        ),
        ("team?x", "contains '?'"),
    ] {
        let before = world.bao.audited_requests().len();
        let job = world
            .job()
            .variable("VAULT_NAMESPACE", namespace)
            .secrets_yaml(yaml);
        let outcome = world.run(&job);
        assert_eq!(outcome.result, BUILD, "{namespace:?}:\n{}", outcome.raw_log);
        assert!(
            outcome
                .raw_log
                .contains("ERROR: leasehold: VAULT_NAMESPACE")
                && outcome.raw_log.contains(message),
            "{namespace:?}: expected {message:?} in:\n{}",
            outcome.raw_log
        );
        assert_eq!(
            world.bao.audited_requests().len(),
            before,
            "{namespace:?}: nothing may be sent"
        );
    }
}

#[test]
fn terminal_escapes_from_vault_never_reach_the_job_log() {
    let world = world().policy(&[POLICY]).start();
    world.bao.enable_kv("kv-ci", 2);
    // A field name is text from Vault that the job log quotes when a field is missing.
    world.bao.kv_put(
        "kv-ci",
        2,
        "app",
        json!({"\u{1b}]0;pwned\u{7}\u{1b}[2Jkey": "v"}),
    );
    let outcome = world.run(&world.job().secrets_yaml("X:\n  vault: app/nope@kv-ci\n"));
    assert_eq!(outcome.result, BUILD, "{}", outcome.raw_log);
    assert!(
        outcome.raw_log.contains("has no field \"nope\""),
        "{}",
        outcome.raw_log
    );
    assert!(
        !outcome.raw_log.contains("\u{1b}]0;pwned") && !outcome.raw_log.contains("\u{1b}[2J"),
        "a terminal escape from Vault reached the job log: {:?}",
        outcome.raw_log
    );
}

/// Issue 11.5: a job declaring many distinct paths does not open a socket per path at once.
#[test]
fn requests_to_one_server_are_capped() {
    let world = world().policy(&[POLICY]).start();
    world.bao.enable_kv("kv-ci", 2);
    let paths = 120;
    let mut yaml = String::new();
    for i in 0..paths {
        world.bao.kv_put(
            "kv-ci",
            2,
            &format!("p{i}"),
            json!({"v": format!("value-{i}")}),
        );
        yaml.push_str(&format!("S{i}:\n  vault: p{i}/v@kv-ci\n  file: false\n"));
    }
    let other = OtherApp::start();
    for (cap, config) in [(16, ""), (3, "max_concurrent_requests = 3")] {
        let front = Front::start(world.bao.addr(), other.addr());
        world.write_config_with_vault(&front.url(), config, "");
        let mark = world.bao.audited_requests().len();
        let outcome = world.run(&world.job().secrets_yaml(&yaml).script(["test -n \"$S7\""]));
        assert!(
            outcome.result.is_success(),
            "cap {cap}:\n{}",
            outcome.raw_log
        );
        let reads = requests_since(&world, mark)
            .iter()
            .filter(|(op, p)| op == "read" && p.starts_with("kv-ci/data/p"))
            .count();
        assert_eq!(reads, paths, "cap {cap}: one read per path");
        assert!(
            front.max_in_flight() <= cap,
            "cap {cap}: {} requests were in flight at once ({} connections open)",
            front.max_in_flight(),
            front.max_open()
        );
    }
}
