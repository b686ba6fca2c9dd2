//! Self-tests of the fixtures in [`leasehold_test_kit`]: each one would fail if its fixture did not
//! really work (server not started, token not accepted, emulator out of protocol order, …).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{fixture, leasehold_bin, world};
use leasehold_test_kit::fake_driver::DriverLog;
use leasehold_test_kit::issuer::{DEFAULT_AUD, bound_role};
use leasehold_test_kit::world::POLICY;
use leasehold_test_kit::{
    Bao, Cancel, Issuer, JobBuilder, JobResult, Postgres, Runner, World, scan,
};

/// A world whose OpenBao has `password` at `kv/app/db`, its policy reading `kv/data/app/*`,
/// and the JWT role `ci` bound to the issuer's default token.
fn kv_behind_jwt(password: &str) -> World {
    let world = world()
        .policy(&[r#"path "kv/data/app/*" { capabilities = ["read"] }"#])
        .role(bound_role(&[POLICY]))
        .start();
    world.bao.enable_kv("kv", 2);
    world
        .bao
        .kv_put("kv", 2, "app/db", json!({ "password": password }));
    world
}

#[test]
fn leasehold_binary_is_built() {
    let out = std::process::Command::new(leasehold_bin())
        .arg("--version")
        .output()
        .expect("run leasehold");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("leasehold "),
        "{out:?}"
    );
}

#[test]
fn bao_accepts_issuer_tokens_and_audits_logins() {
    let world = kv_behind_jwt("hunter2-kv");
    let (issuer, bao) = (&world.issuer, &world.bao);

    // A good token logs in and its Vault token reads the KV v2 secret.
    let (status, body) = bao.jwt_login("jwt", "ci", &issuer.mint(json!({})));
    assert_eq!(status, 200, "{body}");
    let token = body["auth"]["client_token"]
        .as_str()
        .expect("client token")
        .to_owned();
    let accessor = body["auth"]["accessor"]
        .as_str()
        .expect("accessor")
        .to_owned();
    assert_eq!(body["auth"]["metadata"]["role"], "ci", "{body}");
    let (status, secret) = bao.api_as(Some(&token), "GET", "kv/data/app/db", None);
    assert_eq!(status, 200, "{secret}");
    assert_eq!(secret["data"]["data"]["password"], "hunter2-kv");
    // …but nothing outside its policy.
    let (status, _) = bao.api_as(Some(&token), "GET", "sys/mounts", None);
    assert_eq!(status, 403);
    assert!(
        issuer.jwks_fetches() >= 1,
        "OpenBao never fetched the JWKS: {:?}",
        issuer.requests()
    );

    // Exactly one login so far, and it is audited with its path and operation.
    assert_eq!(bao.count_logins("jwt"), 1, "{:?}", bao.audited_requests());
    assert_eq!(
        bao.count_requests("read", |p| p == "kv/data/app/db"),
        1,
        "{:?}",
        bao.audited_requests()
    );
    assert!(bao.token_valid(&token));
    let looked_up = bao
        .lookup_token_by_accessor(&accessor)
        .expect("token exists");
    assert_eq!(looked_up["display_name"], "jwt-alice");

    // Refused: bad signature, unknown kid, wrong audience, unbound claim, expired.
    let refused = [
        ("bad signature", issuer.mint_with_bad_signature(json!({}))),
        ("unknown kid", issuer.mint_with_unknown_kid(json!({}))),
        (
            "wrong aud",
            issuer.mint(json!({"aud": "https://elsewhere.test"})),
        ),
        (
            "unprotected ref",
            issuer.mint(json!({"ref_protected": "false"})),
        ),
        (
            "expired",
            issuer
                .token()
                .exp_in(-600)
                .iat_in(-1200)
                .nbf_in(-1200)
                .mint(),
        ),
    ];
    for (what, jwt) in &refused {
        let (status, body) = bao.jwt_login("jwt", "ci", jwt);
        assert!(
            status == 400 || status == 403,
            "{what}: HTTP {status}: {body}"
        );
        assert!(body["auth"].is_null(), "{what} logged in: {body}");
    }
    assert_eq!(bao.count_logins("jwt"), 1 + refused.len());

    // A role without bound_audiences refuses GitLab-style tokens, which always carry `aud`.
    bao.jwt_role(
        "jwt",
        "no-aud",
        json!({"bound_claims": {"project_path": "grp/app"}, "policies": [POLICY]}),
    );
    let (status, body) = bao.jwt_login("jwt", "no-aud", &issuer.mint(json!({})));
    assert_eq!(
        status, 400,
        "a token with aud logged in on a role without bound_audiences: {body}"
    );

    // Key rotation: the JWKS serves the new key only, so older tokens stop working.
    let old = issuer.mint(json!({}));
    let kid = issuer.rotate_key();
    assert_eq!(issuer.jwks()["keys"][0]["kid"], kid);
    assert_eq!(issuer.jwks()["keys"].as_array().map(Vec::len), Some(1));
    let (status, body) = bao.jwt_login("jwt", "ci", &issuer.mint(json!({})));
    assert_eq!(status, 200, "new key refused: {body}");
    let (status, _) = bao.jwt_login("jwt", "ci", &old);
    assert_eq!(status, 400, "a token of the rotated-out key still logs in");

    // Revoking the token ends it.
    bao.ok(
        "POST",
        "auth/token/revoke-accessor",
        Some(json!({"accessor": accessor})),
    );
    assert!(!bao.token_valid(&token));
    assert!(bao.lookup_token_by_accessor(&accessor).is_none());
}

#[test]
fn issuer_serves_jwks_on_both_paths_and_discovery() {
    let issuer = Issuer::start();
    let http = reqwest::blocking::Client::new();
    let get = |url: String| {
        let resp = http.get(&url).send().expect("GET");
        (
            resp.status().as_u16(),
            resp.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let (status, jwks) = get(issuer.jwks_url());
    assert_eq!(status, 200);
    assert_eq!(jwks["keys"][0]["kid"], issuer.kid());
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert_eq!(get(issuer.legacy_jwks_url()).1, jwks);
    let (_, discovery) = get(format!("{}/.well-known/openid-configuration", issuer.url()));
    assert_eq!(discovery["issuer"], issuer.url());
    assert_eq!(discovery["jwks_uri"], issuer.jwks_url());
    assert_eq!(issuer.jwks_fetches(), 2);
    assert_eq!(get(format!("{}/nope", issuer.url())).0, 404);

    // The token verifies against the served JWK, and carries GitLab's claims.
    let jwt = issuer.mint(json!({"ref": "feature/x", "environment": null}));
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).expect("jwk");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[DEFAULT_AUD]);
    validation.set_issuer(&[issuer.url()]);
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding key");
    let claims = jsonwebtoken::decode::<Value>(&jwt, &key, &validation)
        .expect("verifies")
        .claims;
    for claim in [
        "namespace_id",
        "namespace_path",
        "project_id",
        "project_path",
        "user_id",
        "user_login",
        "user_email",
        "pipeline_id",
        "pipeline_source",
        "job_id",
        "ref_type",
        "ref_path",
        "ref_protected",
        "environment_protected",
        "deployment_tier",
        "runner_id",
        "sha",
        "iat",
        "nbf",
        "exp",
        "sub",
    ] {
        assert!(
            claims.get(claim).is_some(),
            "missing claim {claim}: {claims}"
        );
    }
    assert_eq!(claims["ref"], "feature/x");
    assert!(claims.get("environment").is_none());
    assert_eq!(
        claims["project_id"], "42",
        "GitLab sends project_id as a string"
    );
    let bad = issuer.mint_with_bad_signature(json!({}));
    assert!(jsonwebtoken::decode::<Value>(&bad, &key, &validation).is_err());

    issuer.set_jwks_available(false);
    assert_eq!(get(issuer.jwks_url()).0, 503);
}

#[test]
fn postgres_database_engine_issues_working_credentials() {
    let pg = Postgres::start();
    assert_eq!(pg.psql("SELECT 1"), "1");
    let bao = Bao::start();
    bao.enable_database_postgres(&pg, "app", "5m", "1h");

    let creds = bao.ok("GET", "database/creds/app", None);
    let user = creds["data"]["username"]
        .as_str()
        .expect("username")
        .to_owned();
    let password = creds["data"]["password"]
        .as_str()
        .expect("password")
        .to_owned();
    let lease_id = creds["lease_id"].as_str().expect("lease id").to_owned();
    assert_eq!(creds["lease_duration"], 300, "{creds}");

    // The credentials really log in.
    assert!(pg.role_exists(&user));
    assert_eq!(
        pg.psql_as(&user, &password, "SELECT current_user")
            .expect("login"),
        user
    );
    assert!(pg.psql_as(&user, "wrong-password", "SELECT 1").is_err());
    assert_eq!(
        bao.list_leases("database/creds/app"),
        vec![lease_id.clone()]
    );

    // Revocation drops the role.
    bao.ok(
        "PUT",
        "sys/leases/revoke",
        Some(json!({"lease_id": lease_id})),
    );
    assert!(
        !pg.role_exists(&user),
        "role survived revocation: {:?}",
        pg.login_roles()
    );
    assert!(pg.psql_as(&user, &password, "SELECT 1").is_err());
    assert!(bao.list_leases("database/creds/app").is_empty());
}

// --- the runner emulator -----------------------------------------------------------------------

fn fake_runner() -> Runner {
    Runner::with_driver(fixture("fake-driver.sh"))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}"))
}

#[test]
fn runner_drives_a_driver_through_every_stage_in_order() {
    let log = DriverLog::new();
    let job = JobBuilder::new()
        .variable("GREETING", "hello world")
        .masked_variable("MASKED_ONE", "super-secret-value")
        .file_variable("MY_FILE", "line one\nline two")
        .script([
            "echo \"greeting=$GREETING\"",
            "cat \"$MY_FILE\"",
            "echo \"masked=$MASKED_ONE\"",
            "pwd",
        ])
        .after_script(["echo \"after status=$CI_JOB_STATUS\""])
        .cache(true)
        .artifacts(true);
    let started = Instant::now();
    let outcome = fake_runner().run_job(&job, log.options());
    assert_eq!(outcome.result, JobResult::Success, "{}", outcome.log);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        outcome.stage_names(),
        [
            "config_exec",
            "prepare_exec",
            "prepare_script",
            "get_sources",
            "restore_cache",
            "download_artifacts",
            "build_script",
            "after_script",
            "archive_cache",
            "upload_artifacts_on_success",
            "cleanup_file_variables",
            "cleanup_exec",
        ]
    );

    // What the driver saw.
    let calls = log.invocations();
    assert_eq!(calls.len(), outcome.stages.len(), "{calls:#?}");
    let tmpdir = str_of(&calls[0]["env"], "TMPDIR").to_owned();
    let driver = fixture("fake-driver.sh").display().to_string();
    assert!(
        Path::new(&tmpdir)
            .file_name()
            .expect("test invariant")
            .to_str()
            .expect("test invariant")
            .starts_with("custom-executor")
    );
    let builds = format!("{tmpdir}/builds");
    for (call, stage) in calls.iter().zip(&outcome.stages) {
        let env = &call["env"];
        assert_eq!(str_of(call, "cwd"), tmpdir, "cwd of {}", stage.name);
        assert_eq!(str_of(env, "TMPDIR"), tmpdir);
        assert_eq!(
            str_of(env, "JOB_RESPONSE_FILE"),
            format!("{tmpdir}/response.json")
        );
        assert_eq!(
            str_of(env, "BUILD_EXIT_CODE_FILE"),
            format!("{tmpdir}/build_exit_code")
        );
        assert_eq!(str_of(env, "BUILD_FAILURE_EXIT_CODE"), "1");
        assert_eq!(str_of(env, "SYSTEM_FAILURE_EXIT_CODE"), "2");
        assert_eq!(str_of(call, "response_mode"), "600");
        assert_eq!(str_of(env, "CUSTOM_ENV_CI_JOB_ID"), "1001");
        assert_eq!(str_of(env, "CUSTOM_ENV_CI_PROJECT_PATH"), "grp/app");
        assert_eq!(str_of(env, "CUSTOM_ENV_GREETING"), "hello world");
        assert_eq!(
            str_of(env, "CUSTOM_ENV_MY_FILE"),
            "line one\nline two",
            "file vars carry their content"
        );
        assert_eq!(str_of(env, "CUSTOM_ENV_MASKED_ONE"), "super-secret-value");
        // Own process group: pgid == pid.
        assert_eq!(
            call["pid"], call["pgid"],
            "{} not in its own group",
            stage.name
        );
        assert_eq!(call["pid"].as_u64(), Some(u64::from(stage.pgid)));
        // job_env reaches every exec after config.
        if stage.name == "config_exec" {
            assert!(env.get("FAKE_JOB_ENV").is_none());
            assert_eq!(
                str_of(env, "CUSTOM_ENV_CI_BUILDS_DIR"),
                "",
                "first config sees empty dirs"
            );
        } else {
            assert_eq!(str_of(env, "FAKE_JOB_ENV"), "from-config", "{}", stage.name);
            assert_eq!(str_of(env, "CUSTOM_ENV_CI_BUILDS_DIR"), builds);
            assert_eq!(
                str_of(env, "CUSTOM_ENV_CI_PROJECT_DIR"),
                format!("{builds}/grp/app")
            );
        }
        // argv: exec [args…] (<script> <stage> for run).
        let argv: Vec<&str> = call["argv"]
            .as_array()
            .expect("test invariant")
            .iter()
            .map(|a| a.as_str().expect("test invariant"))
            .collect();
        assert_eq!(argv[0], driver);
        match stage.name.as_str() {
            "config_exec" => assert_eq!(argv[1..], ["config"]),
            "prepare_exec" => assert_eq!(argv[1..], ["prepare"]),
            "cleanup_exec" => assert_eq!(argv[1..], ["cleanup"]),
            name => {
                assert_eq!(argv.len(), 4, "{argv:?}");
                assert_eq!(argv[1], "run");
                assert_eq!(argv[3], name);
                let script = Path::new(argv[2]);
                assert_eq!(script.file_name().expect("test invariant"), "script");
                assert_eq!(
                    script
                        .parent()
                        .expect("test invariant")
                        .parent()
                        .expect("test invariant"),
                    Path::new(&tmpdir)
                );
                assert!(
                    script
                        .parent()
                        .expect("test invariant")
                        .file_name()
                        .expect("test invariant")
                        .to_str()
                        .expect("test invariant")
                        .starts_with("script")
                );
                assert_eq!(stage.script.as_deref(), Some(script));
            }
        }
    }

    // The scripts exported the variables (file variables as paths) and ran in the project dir.
    let build = outcome.stage("build_script");
    assert!(
        build.output.contains("greeting=hello world"),
        "{}",
        build.output
    );
    assert!(
        build.output.contains("line one\nline two"),
        "{}",
        build.output
    );
    assert!(
        build.output.contains(&format!("{builds}/grp/app\n")),
        "{}",
        build.output
    );
    assert!(
        outcome
            .stage("after_script")
            .output
            .contains("after status=success")
    );

    // Job log: runner lines, config stderr, run output; never config stdout or cleanup output.
    assert!(
        outcome
            .log
            .contains("Using Custom executor with driver fake 1.0..."),
        "{}",
        outcome.log
    );
    assert!(outcome.log.contains("fake-driver: config on stderr"));
    assert!(
        !outcome.log.contains("\"builds_dir\""),
        "config stdout leaked into the log"
    );
    assert!(outcome.log.contains("fake-driver: preparing"));
    assert!(outcome.log.contains("Running on "));
    assert!(!outcome.log.contains("cleaning up") && !outcome.log.contains("cleanup stderr"));
    assert!(outcome.cleanup_output.contains("fake-driver: cleaning up"));
    assert!(
        outcome
            .cleanup_output
            .contains("fake-driver: cleanup stderr")
    );
    assert!(outcome.log.contains("Job succeeded"));
    // The runner masks masked variables in the log (not in raw transcripts).
    assert!(outcome.log.contains("masked=[MASKED]"), "{}", outcome.log);
    assert!(!outcome.log.contains("super-secret-value"));
    assert!(build.output.contains("masked=super-secret-value"));

    assert_eq!(
        outcome.config_json.as_ref().expect("test invariant")["driver"]["name"],
        "fake"
    );
    assert_eq!(outcome.response_json["id"], 1001);
    assert_eq!(outcome.temp_dirs, [PathBuf::from(&tmpdir)]);
    assert!(!Path::new(&tmpdir).exists(), "temp dir not removed");
}

#[test]
fn build_failure_keeps_its_exit_code_and_runs_failure_stages() {
    let log = DriverLog::new();
    let job = JobBuilder::new()
        .script(["echo before", "exit 42", "echo never"])
        .after_script(["echo \"after status=$CI_JOB_STATUS\""])
        .cache(true)
        .artifacts(true);
    let outcome = fake_runner().run_job(&job, log.options());
    assert_eq!(
        outcome.result,
        JobResult::BuildFailure { exit_code: 42 },
        "{}",
        outcome.log
    );
    let build = outcome.stage("build_script");
    assert_eq!(build.exit_code, 1);
    assert_eq!(build.build_exit_code, Some(42));
    assert!(
        build.output.contains("before") && !build.output.contains("never"),
        "{}",
        build.output
    );
    assert_eq!(
        outcome.run_stage_names(),
        [
            "prepare_script",
            "get_sources",
            "restore_cache",
            "download_artifacts",
            "build_script",
            "after_script",
            "archive_cache_on_failure",
            "upload_artifacts_on_failure",
            "cleanup_file_variables",
        ]
    );
    assert!(
        outcome
            .stage("after_script")
            .output
            .contains("after status=failed")
    );
    assert_eq!(outcome.stages_named("cleanup_exec").len(), 1);
    assert!(outcome.log.contains("ERROR: Job failed: exit code 42"));
}

#[test]
fn prepare_system_failure_is_retried_three_times_with_cleanup_after_each() {
    let log = DriverLog::new();
    let outcome = fake_runner().run_job(
        &JobBuilder::new(),
        log.options().env("FAKE_DRIVER_FAIL_PREPARE", "2"),
    );
    assert!(
        matches!(outcome.result, JobResult::SystemFailure { .. }),
        "{:?}",
        outcome.result
    );
    let triple = ["config_exec", "prepare_exec", "cleanup_exec"];
    assert_eq!(outcome.stage_names(), [triple, triple, triple].concat());
    assert_eq!(
        outcome.stages.iter().map(|s| s.attempt).collect::<Vec<_>>(),
        [1, 1, 1, 2, 2, 2, 3, 3, 3]
    );
    // A fresh temp dir (and response.json) per attempt, each removed.
    let tmpdirs: Vec<String> = log
        .invocations()
        .iter()
        .map(|c| str_of(&c["env"], "TMPDIR").to_owned())
        .collect();
    assert_eq!(tmpdirs[0], tmpdirs[2]);
    assert_ne!(tmpdirs[0], tmpdirs[3]);
    assert_ne!(tmpdirs[3], tmpdirs[6]);
    // config_exec sees the dirs of the previous attempt's StartBuild (none on the first).
    let calls = log.invocations();
    assert_eq!(str_of(&calls[0]["env"], "CUSTOM_ENV_CI_BUILDS_DIR"), "");
    assert_eq!(
        str_of(&calls[3]["env"], "CUSTOM_ENV_CI_BUILDS_DIR"),
        format!("{}/builds", tmpdirs[0])
    );
    assert_eq!(
        str_of(&calls[4]["env"], "CUSTOM_ENV_CI_BUILDS_DIR"),
        format!("{}/builds", tmpdirs[3])
    );
    assert_eq!(outcome.temp_dirs.len(), 3);
    assert!(outcome.temp_dirs.iter().all(|d| !d.exists()));
    assert_eq!(
        outcome
            .log
            .matches("Preparation failed: exit status 2")
            .count(),
        3,
        "{}",
        outcome.log
    );
    assert_eq!(outcome.log.matches("Will be retried in 3s").count(), 2);

    // Exit 1 is a build failure: no retry, one cleanup.
    let outcome = fake_runner().run_job(
        &JobBuilder::new(),
        log.options().env("FAKE_DRIVER_FAIL_PREPARE", "1"),
    );
    assert_eq!(outcome.result, JobResult::BuildFailure { exit_code: 1 });
    assert_eq!(outcome.stage_names(), triple);

    // Invalid config JSON is a system failure: retried.
    let outcome = fake_runner().run_job(
        &JobBuilder::new(),
        log.options().env("FAKE_DRIVER_CONFIG_OUTPUT", "not json"),
    );
    assert_eq!(
        outcome.stage_names(),
        ["config_exec", "cleanup_exec"].repeat(3)
    );
    assert!(
        outcome.log.contains("error while parsing JSON output"),
        "{}",
        outcome.log
    );
}

#[test]
fn cancel_sends_sigterm_to_the_stage_group_and_cleanup_still_runs() {
    let log = DriverLog::new();
    let job = JobBuilder::new()
        .script(["echo started", "sleep 30", "echo finished"])
        .after_script(["echo after"]);
    let members = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = members.clone();
    let opts = log
        .options()
        .cancel(Cancel::abort("build_script", Duration::from_millis(1500)))
        .while_stage_runs("build_script", Duration::from_millis(700), move |pgid| {
            seen.borrow_mut()
                .extend(scan::group_members(pgid).into_iter().map(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                }));
        });
    let started = Instant::now();
    let outcome = fake_runner().run_job(&job, opts);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(outcome.result, JobResult::Canceled, "{}", outcome.log);
    assert!(
        members.borrow().iter().any(|c| c == "sleep"),
        "sleep not in the stage's group: {:?}",
        members.borrow()
    );

    let build = outcome.stage("build_script");
    assert!(build.sent_sigterm && !build.sent_sigkill);
    assert!(build.output.contains("started") && !build.output.contains("finished"));
    let terms: Vec<Value> = log
        .records()
        .into_iter()
        .filter(|r| r["event"] == "TERM")
        .collect();
    assert_eq!(terms.len(), 1, "{terms:?}");
    assert_eq!(terms[0]["cmd"], "run");
    assert!(
        scan::wait_group_gone(build.pgid, Duration::from_secs(3)).is_empty(),
        "the group outlived the cancel"
    );
    // Abort: no more run stages (not even after_script or cleanup_file_variables), but cleanup.
    assert_eq!(
        outcome.stage_names(),
        [
            "config_exec",
            "prepare_exec",
            "prepare_script",
            "get_sources",
            "build_script",
            "cleanup_exec"
        ]
    );
    assert!(outcome.temp_dirs.iter().all(|d| !d.exists()));
}

#[test]
fn cancel_escalates_to_sigkill_when_sigterm_is_ignored() {
    let log = DriverLog::new();
    let job = JobBuilder::new().script(["sleep 30"]);
    let cancel = Cancel::abort("build_script", Duration::from_millis(300))
        .graceful_kill_timeout(Duration::from_millis(700));
    let opts = log
        .options()
        .env("FAKE_DRIVER_IGNORE_TERM", "1")
        .cancel(cancel);
    let outcome = fake_runner().run_job(&job, opts);
    assert_eq!(outcome.result, JobResult::Canceled);
    let build = outcome.stage("build_script");
    assert!(build.sent_sigterm && build.sent_sigkill, "{build:?}");
    assert_eq!(build.signal, Some(9));
    assert!(
        build.duration >= Duration::from_millis(1000),
        "{:?}",
        build.duration
    );
    assert!(scan::wait_group_gone(build.pgid, Duration::from_secs(3)).is_empty());
    assert_eq!(outcome.stage_names().last(), Some(&"cleanup_exec"));
}

#[test]
fn ui_cancel_kills_only_the_step_and_after_script_still_runs() {
    let log = DriverLog::new();
    let job = JobBuilder::new()
        .script(["sleep 30"])
        .after_script(["echo \"after status=$CI_JOB_STATUS\""]);
    let opts = log
        .options()
        .cancel(Cancel::from_ui("build_script", Duration::from_millis(500)));
    let outcome = fake_runner().run_job(&job, opts);
    assert_eq!(outcome.result, JobResult::Canceled);
    assert!(
        outcome
            .stage("after_script")
            .output
            .contains("after status=canceled")
    );
    assert_eq!(
        outcome.run_stage_names()[2..],
        ["build_script", "after_script", "cleanup_file_variables"]
    );
    assert_eq!(outcome.stages_named("cleanup_exec").len(), 1);
}

#[test]
fn kill_without_cleanup_leaves_the_job_where_it_crashed() {
    let log = DriverLog::new();
    let job = JobBuilder::new().script(["sleep 30"]);
    let opts = log
        .options()
        .kill_without_cleanup("build_script", Duration::from_millis(300));
    let outcome = fake_runner().run_job(&job, opts);
    assert_eq!(outcome.result, JobResult::Crashed);
    assert_eq!(outcome.stage_names().last(), Some(&"build_script"));
    assert!(outcome.try_stage("cleanup_exec").is_none());
    assert_eq!(outcome.stage("build_script").signal, Some(9));
    let dir = outcome.temp_dirs[0].clone();
    assert!(
        dir.join("response.json").exists(),
        "a crashed runner leaves its temp dir"
    );
    drop(outcome);
    assert!(!dir.exists(), "JobOutcome's drop removes it");
}

#[test]
fn native_secrets_are_resolved_before_any_exec() {
    let world = kv_behind_jwt("native-kv-secret");
    let (issuer, bao) = (&world.issuer, &world.bao);
    let secret = |field: &str, file: bool| {
        json!({"vault": {"server": {"url": bao.addr(), "auth": {"name": "jwt", "path": "jwt",
                         "data": {"jwt": "$VAULT_ID_TOKEN", "role": "ci"}}},
                         "engine": {"name": "kv-v2", "path": "kv"}, "path": "app/db", "field": field},
               "file": file, "token": "$VAULT_ID_TOKEN"})
    };
    let jwt = issuer.mint(json!({}));
    let job = JobBuilder::new()
        .id_token("VAULT_ID_TOKEN", &jwt)
        .native_secrets(json!({"DB_PASSWORD": secret("password", false)}))
        .script(["echo \"pw=$DB_PASSWORD\""]);
    let log = DriverLog::new();
    let outcome = fake_runner().run_job(&job, log.options());
    assert!(outcome.is_success(), "{}", outcome.log);
    // One login and one read per secret, values masked in the log but present everywhere else.
    assert_eq!(bao.count_logins("jwt"), 1);
    assert_eq!(bao.count_requests("read", |p| p == "kv/data/app/db"), 1);
    assert!(outcome.log.contains("pw=[MASKED]"), "{}", outcome.log);
    assert!(
        outcome
            .stage("build_script")
            .output
            .contains("pw=native-kv-secret")
    );
    assert_eq!(
        str_of(&log.invocations()[0]["env"], "CUSTOM_ENV_DB_PASSWORD"),
        "native-kv-secret"
    );
    // response.json: expanded, without `token`.
    let written = &outcome.response_json["secrets"]["DB_PASSWORD"];
    assert_eq!(
        written["vault"]["server"]["auth"]["data"]["jwt"],
        jwt.as_str()
    );
    assert!(written.get("token").is_none());

    // A failing secret: no exec at all.
    let job = JobBuilder::new()
        .id_token("VAULT_ID_TOKEN", &jwt)
        .native_secrets(json!({"MISSING": secret("nope", true)}));
    let outcome = fake_runner().run_job(&job, log.options());
    assert_eq!(
        outcome.result,
        JobResult::SecretsFailure {
            reason: "resolving secrets: secret not found: MISSING".into()
        }
    );
    assert!(outcome.stages.is_empty());
}

/// Waits until `pid` has exec'd `program`: before that, /proc shows the parent's image.
fn wait_exec(pid: u32, program: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.starts_with(program.as_bytes()) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("process {pid} did not exec {program}");
}

#[test]
fn scanners_find_needles_in_files_and_processes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let needle = format!("needle-{}", leasehold_test_kit::random_hex(8));
    std::fs::create_dir_all(dir.path().join("a/b")).expect("test invariant");
    std::fs::write(dir.path().join("a/b/hit.txt"), format!("x{needle}y")).expect("test invariant");
    std::fs::write(dir.path().join("a/miss.txt"), "nothing").expect("test invariant");
    assert_eq!(
        scan::files_containing(dir.path(), &needle),
        [dir.path().join("a/b/hit.txt")]
    );

    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .env("SCAN_TEST", &needle)
        .spawn()
        .expect("spawn sleep");
    let pid = child.id();
    wait_exec(pid, "sleep");
    let env_hits = scan::environs_containing(&needle, &[]);
    let none_hits = scan::environs_containing(&needle, &[pid]);
    // Arguments are NUL-separated in /proc/<pid>/cmdline.
    let seconds = format!(
        "30.{}",
        u64::from_str_radix(&leasehold_test_kit::random_hex(4), 16).expect("test invariant")
    );
    let mut by_cmdline = std::process::Command::new("sleep")
        .arg(&seconds)
        .spawn()
        .expect("spawn");
    wait_exec(by_cmdline.id(), "sleep");
    let cmd_hits = scan::cmdlines_containing(&format!("sleep\0{seconds}"));
    let _ = child.kill();
    let _ = child.wait();
    let _ = by_cmdline.kill();
    let _ = by_cmdline.wait();
    assert_eq!(env_hits.iter().map(|m| m.pid).collect::<Vec<_>>(), [pid]);
    assert!(none_hits.is_empty());
    assert!(
        cmd_hits.iter().any(|m| m.pid == by_cmdline.id()),
        "{cmd_hits:?}"
    );
}
