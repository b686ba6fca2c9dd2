//! Issue 12: running leasehold on a fleet: concurrent jobs on one host.

use serde_json::Value;

use crate::world;
use leasehold_test_kit::RunOptions;
use leasehold_test_kit::world::World;

/// A world whose role reads `kv/*`, with `data` at `kv/<path>` (KV v2).
fn kv_world(path: &str, data: Value) -> World {
    let world = world()
        .policy(&[r#"path "kv/*" { capabilities = ["read"] }"#])
        .start();
    world.bao.enable_kv("kv", 2);
    world.bao.kv_put("kv", 2, path, data);
    world
}

/// `config`'s JSON for the world's executor config.
fn config_json(world: &World) -> Value {
    let output = world
        .command()
        .arg("config")
        .output()
        .expect("leasehold config");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("config JSON")
}

#[test]
fn the_shell_executor_reports_a_shared_builds_dir_unless_the_admin_says_otherwise() {
    let world = world()
        .policy(&[r#"path "kv/*" { capabilities = ["read"] }"#])
        .start();
    assert_eq!(config_json(&world)["builds_dir_is_shared"], true);
    let text = std::fs::read_to_string(world.config_path()).expect("config");
    std::fs::write(
        world.config_path(),
        format!("builds_dir_is_shared = false\n{text}"),
    )
    .expect("config");
    assert_eq!(config_json(&world)["builds_dir_is_shared"], false);
}

/// The failure this prevents: two concurrent jobs of one project in one checkout, where one
/// job's files vanish or change under the other.
#[test]
fn concurrent_jobs_of_one_project_get_their_own_build_directories() {
    let world = world()
        .policy(&[r#"path "kv/*" { capabilities = ["read"] }"#])
        .start();
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|slot| {
                let world = &world;
                scope.spawn(move || {
                    let job = world.job().script([
                        format!("echo job-{slot} > \"$CI_PROJECT_DIR/owner\""),
                        "sleep 1".to_owned(),
                        "echo \"owner=$(cat \"$CI_PROJECT_DIR/owner\")\"".to_owned(),
                        "echo \"dir=$CI_PROJECT_DIR\"".to_owned(),
                    ]);
                    world
                        .runner()
                        .run_job(&job, RunOptions::new().concurrent_id(slot))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("job thread"))
            .collect()
    });
    let mut dirs = Vec::new();
    for (slot, outcome) in outcomes.iter().enumerate() {
        assert!(outcome.is_success(), "{}", outcome.raw_log);
        let build = &outcome.stage("build_script").output;
        let printed = |key: &str| {
            build
                .lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} line in:\n{build}"))
                .to_owned()
        };
        assert_eq!(printed("owner="), format!("job-{slot}"), "{build}");
        let dir = printed("dir=");
        assert!(dir.contains(&format!("/{slot}/")), "{dir}");
        dirs.push(dir);
    }
    assert_ne!(dirs[0], dirs[1]);
}

/// Issue 12.6: gitlab-runner resolves the job's own `secrets:` block; the job log says which
/// variables came from it, and flags one whose provider this runner does not know (it skips
/// it with a line in its own log, and the variable is simply missing).
#[test]
fn the_job_log_names_natively_resolved_secrets_and_flags_the_ones_that_arrived_empty() {
    let world = kv_world("app/api", serde_json::json!({"key": "native-value-1"}));
    let job = world.job().native_secrets(serde_json::json!({
        "NATIVE_KEY": {"vault": {
            "server": {"url": world.bao.addr(), "auth": {"name": "jwt", "path": "jwt", "data": {"jwt": "$VAULT_ID_TOKEN", "role": leasehold_test_kit::world::ROLE}}},
            "engine": {"name": "kv-v2", "path": "kv"}, "path": "app/api", "field": "key"}, "file": false},
        "AWS_KEY": {"aws_secrets_manager": {"secret_id": "app/key", "server": {"region": "eu-west-1"}}, "file": false},
    }));
    let outcome = world.run(&job);
    assert!(outcome.is_success(), "{}", outcome.raw_log);
    let prepare = &outcome.stage("prepare_exec").output;
    assert!(
        prepare.contains("NATIVE_KEY: resolved by gitlab-runner (vault), in every stage script"),
        "{prepare}"
    );
    assert!(
        prepare.contains(
            "AWS_KEY (aws_secrets_manager) arrived empty: gitlab-runner did not resolve it"
        ),
        "{prepare}"
    );
    assert!(!outcome.raw_log.contains("native-value-1"));
}

/// Issue 12.4: with the headers enabled for auditing, OpenBao's audit log attributes every
/// request leasehold made for a job (login, read, revocation) to that job.
#[test]
fn every_request_of_a_job_carries_its_job_id_into_the_audit_log() {
    let world = kv_world("app/db", serde_json::json!({"password": "audited-1"}));
    for header in ["X-Correlation-ID", "X-Leasehold-Job"] {
        world.bao.ok(
            "POST",
            &format!("sys/config/auditing/request-headers/{header}"),
            Some(serde_json::json!({"hmac": false})),
        );
    }
    let job = world
        .job()
        .id(424_242)
        .secrets_yaml("DB_PASS:\n  vault: app/db/password@kv\n  file: false\n");
    let outcome = world.run(&job);
    assert!(outcome.is_success(), "{}", outcome.raw_log);
    let leasehold_paths = ["auth/jwt/login", "kv/data/app/db", "auth/token/revoke-self"];
    let records: Vec<_> = world
        .bao
        .audit_records()
        .into_iter()
        .filter(|r| r["type"] == "request")
        // The test's own set-up (the root token) is not the job's.
        .filter(|r| {
            !r["auth"]["policies"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p == "root"))
        })
        .filter(|r| {
            leasehold_paths
                .iter()
                .any(|p| r["request"]["path"].as_str() == Some(p))
        })
        .collect();
    for path in leasehold_paths {
        assert!(
            records.iter().any(|r| r["request"]["path"] == path),
            "no {path} request audited"
        );
    }
    for record in &records {
        let headers = &record["request"]["headers"];
        assert_eq!(
            headers["x-correlation-id"],
            serde_json::json!(["424242"]),
            "{record}"
        );
        let job_header = headers["x-leasehold-job"][0].as_str().unwrap_or_default();
        assert!(
            job_header.starts_with(&format!("project={}; pipeline=", job.project_path))
                && job_header.ends_with("; job=424242"),
            "{record}"
        );
    }
}

/// Issue 12.7: with `jwt_login_path = "cel/login"`, jobs log in through an OpenBao CEL role
/// (the claims are checked by the role's CEL program) and everything else works as before.
#[test]
fn jobs_log_in_through_an_openbao_cel_role_with_the_cel_login_path() {
    let world = kv_world("app/db", serde_json::json!({"password": "cel-read-1"}));
    world.bao.ok(
        "POST",
        "auth/jwt/cel/role/ci",
        Some(serde_json::json!({
            "bound_audiences": [leasehold_test_kit::issuer::DEFAULT_AUD],
            "cel_program": {
                "expression": "claims.project_path == 'grp/app' ? pb.Auth{display_name: 'cel-' + claims.project_path, policies: ['ci']} : 'project not allowed'"
            }
        })),
    );
    let text = std::fs::read_to_string(world.config_path()).expect("config");
    std::fs::write(
        world.config_path(),
        text.replace("[vault]\n", "[vault]\njwt_login_path = \"cel/login\"\n"),
    )
    .expect("config");
    let job = world
        .job()
        .secrets_yaml("DB_PASS:\n  vault: app/db/password@kv\n  file: false\n")
        .script(["test \"$DB_PASS\" = cel-read-1 && echo cel-ok"]);
    let outcome = world.run(&job);
    assert!(outcome.is_success(), "{}", outcome.raw_log);
    assert!(outcome.stage("build_script").output.contains("cel-ok"));
    assert_eq!(
        world
            .bao
            .count_requests("update", |p| p == "auth/jwt/cel/login"),
        1
    );
    assert_eq!(world.bao.count_logins("jwt"), 0);
    world.assert_revoked_and_clean(&outcome);
}

/// Issue 12.7, namespaces on OpenBao: a job logs in and reads inside namespace `ns1`; its
/// runner crashes, and the reaper (whose token lives in the root namespace) revokes the job's
/// token in the token's own namespace, which is the only place OpenBao accepts it.
#[test]
fn a_job_in_an_openbao_namespace_is_served_and_its_token_reaped_in_that_namespace() {
    let world = world()
        .policy(&[r#"path "kv/*" { capabilities = ["read"] }"#])
        .start();
    let bao = &world.bao;
    bao.ok("POST", "sys/namespaces/ns1", None);
    bao.ok(
        "POST",
        "ns1/sys/auth/jwt",
        Some(serde_json::json!({"type": "jwt"})),
    );
    bao.ok(
        "POST",
        "ns1/auth/jwt/config",
        Some(serde_json::json!({"jwks_url": world.issuer.jwks_url(), "bound_issuer": world.issuer.url()})),
    );
    bao.ok(
        "PUT",
        "ns1/sys/policies/acl/ci-ns",
        Some(serde_json::json!({"policy": "path \"kv/data/app/*\" { capabilities = [\"read\"] }"})),
    );
    bao.ok(
        "POST",
        &format!("ns1/auth/jwt/role/{}", leasehold_test_kit::world::ROLE),
        Some(serde_json::json!({"role_type": "jwt", "user_claim": "user_login",
            "bound_audiences": [leasehold_test_kit::issuer::DEFAULT_AUD], "policies": ["ci-ns"], "token_ttl": "10m"})),
    );
    bao.ok(
        "POST",
        "ns1/sys/mounts/kv",
        Some(serde_json::json!({"type": "kv", "options": {"version": "2"}})),
    );
    let mut written = false;
    for _ in 0..50 {
        let (status, _) = bao.api(
            "POST",
            "ns1/kv/data/app/db",
            Some(serde_json::json!({"data": {"password": "in-ns1"}})),
        );
        if status == 200 {
            written = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(written, "kv in ns1 never became writable");
    let token_file = world.dir.path().join("reaper-token");
    std::fs::write(&token_file, bao.root_token()).expect("reaper token");
    world.write_config(&format!(
        "[leases]\nreap_grace_seconds = 0\n\n[reaper]\ntoken_file = \"{}\"\n",
        token_file.display()
    ));
    let job = world
        .job()
        .variable("VAULT_NAMESPACE", "ns1")
        .timeout(3)
        .secrets_yaml("DB_PASS:\n  vault: app/db/password@kv\n  file: false\n")
        .script(["test \"$DB_PASS\" = in-ns1 && echo ns-ok", "sleep 30"]);
    let outcome = world.runner().run_job(
        &job,
        RunOptions::new()
            .kill_without_cleanup("build_script", std::time::Duration::from_millis(1500)),
    );
    assert!(
        outcome.stage("build_script").output.contains("ns-ok"),
        "{}",
        outcome.raw_log
    );
    let accessors: Vec<String> = world
        .state_dir()
        .read_dir()
        .expect("state")
        .flatten()
        .filter_map(|d| std::fs::read_to_string(d.path().join("journal.json")).ok())
        .filter_map(|j| serde_json::from_str::<Value>(&j).ok())
        .flat_map(|j| {
            j["sessions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|s| s["accessor"].as_str().map(str::to_owned))
        })
        .collect();
    assert_eq!(accessors.len(), 1, "{accessors:?}");
    let alive_in_ns1 = |accessor: &str| {
        bao.api(
            "POST",
            "ns1/auth/token/lookup-accessor",
            Some(serde_json::json!({"accessor": accessor})),
        )
        .0 == 200
    };
    assert!(alive_in_ns1(&accessors[0]), "the job's token lives in ns1");
    // Past the job's timeout (3 s) and the grace (0): over, for the reaper.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let reap = world.command().arg("reap").output().expect("reap");
    let stdout = String::from_utf8_lossy(&reap.stdout);
    assert!(
        stdout.contains("1 reaped"),
        "{stdout}{}",
        String::from_utf8_lossy(&reap.stderr)
    );
    assert!(
        !alive_in_ns1(&accessors[0]),
        "the reaper left the token alive: {stdout}"
    );
}
