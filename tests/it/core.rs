//! Issue 2: the four stages around the local shell, with job secrets from a real OpenBao.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::world;
use crate::{job_state_of, leasehold_bin};
use leasehold_test_kit::world::{World, accessor_in};
use leasehold_test_kit::{Cancel, JobOutcome, JobResult, RunOptions, scan, sha16};

const KV_POLICY: &str = r#"path "kv/data/app/*" { capabilities = ["read"] }
path "kv1/*" { capabilities = ["read"] }"#;

/// Planted values: long, distinctive, never printed by the tests.
struct Planted {
    db_pass: String,
    db_user: String,
    legacy: String,
    api_key: String,
}

impl Planted {
    fn new() -> Planted {
        let r = leasehold_test_kit::random_hex;
        Planted {
            db_pass: format!("pw-{}-planted", r(12)),
            db_user: format!("user-{}-planted", r(12)),
            legacy: format!("legacy-{}-planted", r(12)),
            api_key: format!("key-{}-planted", r(12)),
        }
    }

    fn all(&self) -> [&str; 4] {
        [&self.db_pass, &self.db_user, &self.legacy, &self.api_key]
    }
}

/// A world with KV v2 (`kv/app/db`, `kv/app/api`) and KV v1 (`kv1/legacy`) secrets.
fn kv_world(planted: &Planted) -> World {
    let world = world().policy(&[KV_POLICY]).start();
    world.bao.enable_kv("kv", 2);
    world.bao.enable_kv("kv1", 1);
    world.bao.kv_put(
        "kv",
        2,
        "app/db",
        json!({"password": planted.db_pass, "user": planted.db_user, "port": 5432}),
    );
    world
        .bao
        .kv_put("kv", 2, "app/api", json!({"key": planted.api_key}));
    world
        .bao
        .kv_put("kv1", 1, "legacy", json!({"token": planted.legacy}));
    world
}

/// `DB_PASS` from `kv/app/db`, in the environment.
const DB_PASS_ENV: &str = "DB_PASS:\n  vault: app/db/password@kv\n  file: false\n";

const DECLARATIONS: &str = "DB_PASS:
  vault: app/db/password@kv
  file: false
DB_USER:
  vault:
    engine: {name: kv-v2, path: kv}
    path: app/db
    field: user
LEGACY:
  vault: {engine: {name: kv-v1, path: kv1}, path: legacy, field: token}
  file: false
API_KEY:
  vault: {engine: {name: kv-v1, path: kv1}, path: legacy, field: token}
  file: true
";

/// A shell that records, per stage script, what its process received (hashes, never values),
/// then runs the script with bash.
pub(crate) fn recording_shell(dir: &Path, names: &[&str]) -> PathBuf {
    let record_dir = dir.join("records");
    std::fs::create_dir_all(&record_dir).expect("mkdir");
    let shell = dir.join("record-shell.sh");
    let script = format!(
        r#"#!/bin/bash
out="{records}/$(basename "$(dirname "$1")").txt"
for v in {names}; do
  if [ -n "${{!v+x}}" ]; then
    val="${{!v}}"
    if [ -f "$val" ]; then
      echo "$v file $(sha256sum < "$val" | cut -c1-16) $(stat -c %a "$val")"
    else
      echo "$v env $(printf %s "$val" | sha256sum | cut -c1-16) -"
    fi
  else
    echo "$v absent"
  fi
done > "$out"
exec bash "$@"
"#,
        records = record_dir.display(),
        names = names.join(" ")
    );
    std::fs::write(&shell, script).expect("write shell");
    std::fs::set_permissions(&shell, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    shell
}

/// What each run stage received: stage name -> variable -> record line.
pub(crate) fn stage_records(
    outcome: &JobOutcome,
    dir: &Path,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for stage in &outcome.stages {
        let Some(script) = &stage.script else {
            continue;
        };
        let key = script
            .parent()
            .and_then(Path::file_name)
            .expect("script dir")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(dir.join("records").join(format!("{key}.txt")))
            .unwrap_or_default();
        let vars = text
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        map.insert(stage.name.clone(), vars);
    }
    map
}

#[test]
fn secrets_reach_exactly_the_exposed_stages_and_leak_nowhere() {
    let planted = Planted::new();
    let world = kv_world(&planted);
    let shell = recording_shell(
        world.dir.path(),
        &["DB_PASS", "DB_USER", "LEGACY", "API_KEY"],
    );
    world.write_config(&format!("[executor]\nshell = \"{}\"\n", shell.display()));
    let job = world
        .job()
        .secrets_yaml(DECLARATIONS)
        .cache(true)
        .artifacts(true)
        .dependency_artifacts(true)
        .script([
            "echo \"the password is $DB_PASS\"",
            "cat \"$DB_USER\"; echo",
            "sleep 1",
        ])
        .after_script(["echo \"after: $LEGACY\""]);

    // While build_script runs: no value in any process's argv, nor in the runner's stage scripts.
    let sampled = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&sampled);
    let values: Vec<String> = planted.all().iter().map(|s| (*s).to_owned()).collect();
    let opts = RunOptions::new()
        .env("LEASEHOLD_LOG", "debug")
        .while_stage_runs("build_script", Duration::from_millis(400), move |_pgid| {
            let mut found = seen.lock().expect("lock");
            for value in &values {
                for hit in scan::cmdlines_containing(value) {
                    found.push(format!("argv of pid {}", hit.pid));
                }
                for entry in std::fs::read_dir(std::env::temp_dir())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    if entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with("custom-executor")
                    {
                        for path in scan::files_containing(&entry.path(), value) {
                            found.push(format!("runner file {}", path.display()));
                        }
                    }
                }
            }
        });
    let outcome = world.runner().run_job(&job, opts);
    assert!(
        outcome.is_success(),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );

    // Exactly the exposed stages received exactly the declared values, in the declared form.
    let records = stage_records(&outcome, world.dir.path());
    let expect = |kind: &str, value: &str| {
        format!(
            "{kind} {} {}",
            sha16(value.as_bytes()),
            if kind == "file" { "600" } else { "-" }
        )
    };
    for stage in ["build_script", "after_script"] {
        let got = &records[stage];
        assert_eq!(got["DB_PASS"], expect("env", &planted.db_pass), "{stage}");
        assert_eq!(got["DB_USER"], expect("file", &planted.db_user), "{stage}");
        assert_eq!(got["LEGACY"], expect("env", &planted.legacy), "{stage}");
        assert_eq!(got["API_KEY"], expect("file", &planted.legacy), "{stage}");
    }
    for stage in [
        "prepare_script",
        "get_sources",
        "restore_cache",
        "download_artifacts",
        "archive_cache",
        "upload_artifacts_on_success",
        "cleanup_file_variables",
    ] {
        let got = records
            .get(stage)
            .unwrap_or_else(|| panic!("{stage} did not run: {:?}", outcome.run_stage_names()));
        assert!(
            got.values().all(|v| v == "absent"),
            "{stage} received secrets: {got:?}"
        );
    }

    // Nowhere else: job log (masked by leasehold, not the emulator), cleanup output, leasehold's
    // own debug log lines, any file left behind, any argv.
    assert!(
        outcome.raw_log.contains("the password is [MASKED]"),
        "{}",
        outcome.raw_log
    );
    for value in planted.all() {
        assert_nowhere(&outcome, &world, "a value", value);
        for dir in &outcome.temp_dirs {
            assert!(
                scan::files_containing(dir, value).is_empty(),
                "a value is in the runner temp dir"
            );
        }
    }
    assert!(
        outcome.raw_log.contains("DEBUG")
            || outcome.stages.iter().any(|s| s.stderr.contains("DEBUG")),
        "LEASEHOLD_LOG=debug had no effect"
    );
    assert_eq!(*sampled.lock().expect("lock"), Vec::<String>::new());
    assert!(
        world.leftover_states().is_empty(),
        "state left: {:?}",
        world.leftover_states()
    );
}

#[test]
fn one_login_and_one_read_per_path() {
    let planted = Planted::new();
    let world = kv_world(&planted);
    // 7 secrets over 3 paths: kv/app/db (3 fields), kv/app/api (1 field, 2 names), kv1/legacy (2).
    let yaml = "A:\n  vault: app/db/password@kv\nB:\n  vault: app/db/user@kv\nC:\n  vault: app/db/port@kv\n  file: false\n\
                D:\n  vault: app/api/key@kv\nE:\n  vault: app/api/key@kv\n  file: false\n\
                F:\n  vault: {engine: {name: kv-v1, path: kv1}, path: legacy, field: token}\n\
                G:\n  vault: {engine: {name: kv-v1, path: kv1}, path: legacy, field: token}\n  file: false\n";
    let job = world
        .job()
        .secrets_yaml(yaml)
        .script(["test \"$C\" = 5432"]);
    let outcome = world.run(&job);
    assert!(
        outcome.is_success(),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    assert_eq!(
        world.bao.count_logins("jwt"),
        1,
        "{:?}",
        world.bao.audited_requests()
    );
    for path in ["kv/data/app/db", "kv/data/app/api", "kv1/legacy"] {
        assert_eq!(
            world.bao.count_requests("read", |p| p == path),
            1,
            "{path}: {:?}",
            world.bao.audited_requests()
        );
    }
    assert!(
        outcome
            .raw_log
            .contains("7 secrets from 3 requests and 1 login"),
        "{}",
        outcome.raw_log
    );
}

#[test]
fn the_token_is_revoked_after_success_failure_and_cancel() {
    let planted = Planted::new();
    let world = kv_world(&planted);
    type Case = (&'static str, RunOptions, fn(&JobResult) -> bool);
    let cases: [Case; 3] = [
        ("true", RunOptions::new(), |r| r.is_success()),
        ("exit 7", RunOptions::new(), |r| {
            *r == JobResult::BuildFailure { exit_code: 7 }
        }),
        (
            "sleep 30",
            RunOptions::new().cancel(Cancel::abort("build_script", Duration::from_millis(700))),
            |r| *r == JobResult::Canceled,
        ),
    ];
    for (script, opts, expected) in cases {
        let job = world.job().secrets_yaml(DB_PASS_ENV).script([script]);
        let outcome = world.runner().run_job(&job, opts);
        assert!(
            expected(&outcome.result),
            "{script}: {:?}\n{}",
            outcome.result,
            outcome.raw_log
        );
        let accessor =
            accessor_in(&outcome.cleanup_output).expect("cleanup named the token it revoked");
        assert!(
            world.bao.lookup_token_by_accessor(&accessor).is_none(),
            "{script}: token still valid after cleanup"
        );
        assert!(
            outcome.cleanup_output.contains("revoked token"),
            "{script}: {}",
            outcome.cleanup_output
        );
        assert!(world.leftover_states().is_empty(), "{script}: state left");
    }
}

/// Runs a job expected to fail at prepare; returns the job log and result.
fn failing_prepare(world: &World, job: leasehold_test_kit::JobBuilder) -> (String, JobResult) {
    let outcome = world.run(&job);
    assert!(
        world.leftover_states().is_empty(),
        "state left after a failed prepare: {:?}",
        world.leftover_states()
    );
    (outcome.raw_log.clone(), outcome.result.clone())
}

#[test]
fn each_failure_has_its_own_message_and_exit_code() {
    let planted = Planted::new();
    let world = world()
        .policy(&[KV_POLICY])
        .role(json!({"bound_claims": {"ref_protected": "true"}}))
        .start();
    world.bao.enable_kv("kv", 2);
    world.bao.kv_put(
        "kv",
        2,
        "app/db",
        json!({"password": planted.db_pass, "user": planted.db_user}),
    );
    // The job may name another auth mount (here one that does not exist), to see Vault's refusal.
    world.write_config("[policy]\nallowed_auth_mounts = [\"nojwt\"]\n");
    let yaml = "DB_PASS:\n  vault: app/db/password@kv\n";
    let build = JobResult::BuildFailure { exit_code: 1 };
    let token = |claims: serde_json::Value| world.issuer.mint(claims);

    let cases = [
        (
            "unprotected ref",
            world
                .job()
                .id_token("VAULT_ID_TOKEN", &token(json!({"ref_protected": "false"})))
                .secrets_yaml(yaml),
            "the role's bound claims don't match this job's token, which carries project_path=grp/app ref=main ref_type=branch ref_protected=false",
        ),
        (
            "wrong aud",
            world
                .job()
                .id_token(
                    "VAULT_ID_TOKEN",
                    &token(json!({"aud": "https://elsewhere.example"})),
                )
                .secrets_yaml(yaml),
            "wrong audience: the token has aud=https://elsewhere.example",
        ),
        (
            "expired",
            world
                .job()
                .id_token(
                    "VAULT_ID_TOKEN",
                    &world
                        .issuer
                        .token()
                        .exp_in(-600)
                        .iat_in(-1200)
                        .nbf_in(-1200)
                        .mint(),
                )
                .secrets_yaml(yaml),
            "the token is expired or not yet valid",
        ),
        (
            "unknown path",
            world
                .job()
                .secrets_yaml("X:\n  vault: app/nope/password@kv\n"),
            "secret X: nothing at",
        ),
        (
            "unknown field",
            world.job().secrets_yaml("X:\n  vault: app/db/pasword@kv\n"),
            "secret X: kv/app/db has no field \"pasword\"; it has: password, user",
        ),
        (
            "forbidden path",
            world
                .job()
                .secrets_yaml("X:\n  vault: other/db/password@kv\n"),
            "secret X: permission denied (403) on kv/data/other/db",
        ),
        (
            "no id token",
            leasehold_test_kit::JobBuilder::new().secrets_yaml(yaml),
            "the job has no ID token in $VAULT_ID_TOKEN; add to the job:  id_tokens:",
        ),
        (
            "malformed yaml",
            world.job().secrets_yaml("X:\n  vault: [unclosed\n"),
            "LEASEHOLD_SECRETS is malformed at line 2 column",
        ),
        (
            "collision",
            world.job().variable("DB_PASS", "x").secrets_yaml(yaml),
            "secret DB_PASS has the same name as a CI/CD variable of this job",
        ),
        (
            "unknown mount",
            world.job().secrets_yaml(
                "X:\n  vault: {engine: {name: kv-v1, path: kv1}, path: legacy, field: token}\n",
            ),
            "secret X: no secrets engine is mounted at kv1/ on",
        ),
        (
            "unknown auth mount",
            world
                .job()
                .variable("VAULT_AUTH_PATH", "nojwt")
                .secrets_yaml(yaml),
            "no auth method is mounted at auth/nojwt on that server",
        ),
    ];
    for (what, job, message) in cases {
        let (log, result) = failing_prepare(&world, job);
        assert_eq!(result, build, "{what}: {log}");
        assert!(
            log.contains(message),
            "{what}: expected {message:?} in:\n{log}"
        );
        let error_lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("ERROR: leasehold:"))
            .collect();
        assert_eq!(
            error_lines.len(),
            1,
            "{what}: one error line expected:\n{log}"
        );
        for value in [&planted.db_pass, &planted.db_user] {
            assert!(!log.contains(value.as_str()), "{what}: value in the log");
        }
        assert!(!log.contains("eyJ"), "{what}: a JWT is in the log");
    }
    // Each refused request was a login or a read, nothing else, and no secret was handed out.
    assert_eq!(
        world
            .bao
            .count_requests("*", |p| p.starts_with("sys/leases")),
        0
    );
}

#[test]
fn an_unreachable_vault_is_a_system_failure_retried_by_the_runner() {
    let world = world().policy(&[KV_POLICY]).start();
    let closed = format!("http://127.0.0.1:{}", leasehold_test_kit::free_port());
    world.write_config_with_vault(&closed, "", "");
    let job = world
        .job()
        .secrets_yaml("X:\n  vault: app/db/password@kv\n");
    let outcome = world.run(&job);
    assert!(
        matches!(outcome.result, JobResult::SystemFailure { .. }),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    assert_eq!(
        outcome.stages_named("prepare_exec").len(),
        3,
        "gitlab-runner retries prepare 3 times"
    );
    assert_eq!(
        outcome.stages_named("cleanup_exec").len(),
        3,
        "cleanup after each attempt"
    );
    assert!(
        outcome.raw_log.contains(&format!(
            "Vault at {closed} is unreachable after 2 attempts"
        )),
        "{}",
        outcome.raw_log
    );
    assert!(
        outcome
            .raw_log
            .contains("gitlab-runner retries prepare up to 3 times"),
        "{}",
        outcome.raw_log
    );
    assert!(world.leftover_states().is_empty());
}

#[test]
fn cleanup_while_a_killed_run_stage_is_still_alive() {
    let planted = Planted::new();
    let world = kv_world(&planted);
    let job = world.job().secrets_yaml(DB_PASS_ENV).script([
        "trap '' TERM",
        "sleep 3",
        "echo still-here",
    ]);
    // As on a cancel where the script ignores SIGTERM: cleanup starts (with the same stage
    // environment gitlab-runner gives it) while the run stage is still alive.
    let early_cleanup = Arc::new(Mutex::new(None));
    let result = Arc::clone(&early_cleanup);
    let config = world.config_path();
    let opts = RunOptions::new().while_stage_runs(
        "build_script",
        Duration::from_millis(500),
        move |pgid| {
            let vars = scan::environ_of(pgid);
            assert!(!vars.is_empty(), "leasehold run environ");
            let output = std::process::Command::new(leasehold_bin())
                .args(["--config".as_ref(), config.as_os_str(), "cleanup".as_ref()])
                .env_clear()
                .envs(vars)
                .output()
                .expect("cleanup");
            *result.lock().expect("lock") = Some(output);
        },
    );
    let outcome = world.runner().run_job(&job, opts);
    let early = early_cleanup
        .lock()
        .expect("lock")
        .take()
        .expect("early cleanup ran");
    assert!(early.status.success(), "{early:?}");
    assert!(
        String::from_utf8_lossy(&early.stdout).contains("revoked token"),
        "{early:?}"
    );
    // The stage still finished normally, the regular cleanup found nothing left, nothing leaked.
    assert!(
        outcome.is_success(),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    assert!(outcome.raw_log.contains("still-here"));
    assert!(
        outcome.cleanup_output.contains("already cleaned up"),
        "{}",
        outcome.cleanup_output
    );
    world.assert_revoked_by_and_clean(&outcome, &String::from_utf8_lossy(&early.stdout));
}

#[test]
fn gitlab_native_secrets_are_mentioned_not_resolved_again() {
    let planted = Planted::new();
    let world = kv_world(&planted);
    let job = world
        .job()
        .secrets_yaml(DB_PASS_ENV)
        .native_secrets(json!({"NATIVE_KEY": {"vault": {
            "server": {"url": world.bao.addr(), "auth": {"name": "jwt", "path": "jwt", "data": {"jwt": "$VAULT_ID_TOKEN", "role": leasehold_test_kit::world::ROLE}}},
            "engine": {"name": "kv-v2", "path": "kv"}, "path": "app/api", "field": "key"}, "file": false}}));
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
            .contains("this job also has a GitLab secrets: block (NATIVE_KEY)"),
        "{}",
        outcome.raw_log
    );
    // The runner's own resolver read it once; leasehold did not read it again.
    assert_eq!(
        world.bao.count_requests("read", |p| p == "kv/data/app/api"),
        1
    );
}

#[test]
fn every_runner_stage_name_is_accepted() {
    let planted = Planted::new();
    let world = kv_world(&planted);
    let job = world
        .job()
        .secrets_yaml(DB_PASS_ENV)
        .step("release", ["test -n \"$DB_PASS\""])
        .after_script(["test -n \"$DB_PASS\""]);
    let outcome = world.run(&job);
    assert!(
        outcome.is_success(),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    assert!(
        outcome.run_stage_names().contains(&"step_release"),
        "{:?}",
        outcome.run_stage_names()
    );
}

#[test]
fn a_signal_sent_to_leasehold_alone_is_forwarded_to_the_script() {
    let planted = Planted::new();
    let world = kv_world(&planted);
    let job = world.job().secrets_yaml(DB_PASS_ENV).script([
        "trap 'echo got-term; exit 5' TERM",
        "sleep 20 & wait",
        "echo not-reached",
    ]);
    // Someone other than gitlab-runner (an admin, a wrapper) signals only leasehold's PID: the
    // group did not get it, so leasehold must pass it on. (The emulator runs in this test process,
    // leasehold's parent, so the signal must come from another process to count as an outsider.)
    let opts =
        RunOptions::new().while_stage_runs("build_script", Duration::from_millis(600), |pgid| {
            // bash's builtin kill: no dependency on procps' /usr/bin/kill.
            let status = std::process::Command::new("bash")
                .args(["-c", &format!("kill -TERM {pgid}")])
                .status()
                .expect("kill");
            assert!(status.success());
        });
    let outcome = world.runner().run_job(&job, opts);
    // 1, not 5: gitlab-runner's generated outer script itself traps TERM with `exit 1`.
    assert_eq!(
        outcome.result,
        JobResult::BuildFailure { exit_code: 1 },
        "{}",
        outcome.raw_log
    );
    let build = outcome.stage("build_script");
    assert_eq!(
        build
            .output
            .lines()
            .filter(|l| l.trim() == "got-term")
            .count(),
        1,
        "{}",
        build.output
    );
    assert!(!build.output.lines().any(|l| l.trim() == "not-reached"));
}

#[test]
fn a_hung_inner_cleanup_never_stands_between_the_job_and_revocation() {
    let planted = Planted::new();
    let world = kv_world(&planted);
    let driver = world.dir.path().join("hanging-driver.sh");
    std::fs::write(
        &driver,
        "#!/bin/bash\ncase \"$1\" in\n  config) echo '{}';;\n  prepare) exit 0;;\n  run) exec bash \"$2\";;\n  cleanup) trap '' TERM; sleep 8;;\nesac\n",
    )
    .expect("driver");
    std::fs::set_permissions(&driver, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let d = driver.display();
    world.write_config(&format!(
        "[executor]\nkind = \"custom\"\n[executor.custom]\nconfig_exec = \"{d}\"\nconfig_args = [\"config\"]\nprepare_exec = \"{d}\"\nprepare_args = [\"prepare\"]\nrun_exec = \"{d}\"\nrun_args = [\"run\"]\ncleanup_exec = \"{d}\"\ncleanup_args = [\"cleanup\"]\n"
    ));
    let job = world
        .job()
        .secrets_yaml(DB_PASS_ENV)
        .script(["test -n \"$DB_PASS\""]);
    // gitlab-runner's cleanup_exec_timeout: SIGTERM to cleanup's group, SIGKILL 10 s later.
    let mut runner = world.runner();
    runner.stage_timeout = Duration::from_secs(3);
    let outcome = runner.run_job(&job, RunOptions::new());
    let cleanup = outcome.stage("cleanup_exec");
    assert!(cleanup.sent_sigterm && !cleanup.sent_sigkill, "{cleanup:?}");
    assert!(
        outcome.cleanup_output.contains("revoking now"),
        "{}",
        outcome.cleanup_output
    );
    assert!(
        outcome.cleanup_output.contains("revoked token"),
        "{}",
        outcome.cleanup_output
    );
    world.assert_revoked_and_clean(&outcome);
}

#[test]
fn reap_keeps_a_periodic_reaper_token_alive_even_with_nothing_to_reap() {
    let world = world().policy(&[KV_POLICY]).start();
    let token = world
        .bao
        .reaper_token(json!({"period": "30s", "no_default_policy": false}));
    let token_file = world.dir.path().join("reaper-token");
    std::fs::write(&token_file, &token).expect("token file");
    world.write_config(&format!(
        "[reaper]\ntoken_file = \"{}\"\n",
        token_file.display()
    ));
    std::thread::sleep(Duration::from_secs(3));
    let ttl = |bao: &leasehold_test_kit::Bao| {
        let (_, body) = bao.api_as(Some(&token), "GET", "auth/token/lookup-self", None);
        body["data"]["ttl"].as_u64().expect("ttl")
    };
    assert!(ttl(&world.bao) <= 27, "the token aged");
    let out = world.command().arg("reap").output().expect("reap");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 job states examined"),
        "{out:?}"
    );
    assert!(ttl(&world.bao) >= 29, "reap renewed its periodic token");
}

#[test]
fn the_vault_token_and_the_id_token_appear_nowhere_they_should_not() {
    use secrecy::ExposeSecret;

    let planted = Planted::new();
    let world = kv_world(&planted);
    let id_token = world.issuer.mint(json!({}));
    let job = leasehold_test_kit::JobBuilder::new()
        .id_token("VAULT_ID_TOKEN", &id_token)
        .secrets_yaml("DB_PASS:\n  vault: app/db/password@kv\n  file: false\n")
        .script(["sleep 1.5"]);
    // Mid-script, recover the job's real Vault token the way only root could: the stage
    // process's environment holds the state key; decrypt the job's state with it. Then look for
    // the token in every process's argv and environment.
    let found = Arc::new(Mutex::new((None::<String>, Vec::<String>::new())));
    let sink = Arc::clone(&found);
    let state_dir = world.state_dir();
    let opts = RunOptions::new()
        .env("LEASEHOLD_LOG", "debug")
        .while_stage_runs("build_script", Duration::from_millis(500), move |pgid| {
            let private = job_state_of(pgid, &state_dir);
            let token = private.sessions[0].token.expose_secret().to_owned();
            let mut found = sink.lock().expect("lock");
            for hit in scan::cmdlines_containing(&token) {
                found.1.push(format!("token in argv of {}", hit.pid));
            }
            for hit in scan::environs_containing(&token, &[]) {
                found.1.push(format!("token in environ of {}", hit.pid));
            }
            for hit in scan::cmdlines_containing(&id_token_prefix(
                &scan::environ_var(pgid, "CUSTOM_ENV_VAULT_ID_TOKEN").expect("ID token"),
            )) {
                found.1.push(format!("ID token in argv of {}", hit.pid));
            }
            found.0 = Some(token);
        });
    let outcome = world.runner().run_job(&job, opts);
    assert!(
        outcome.is_success(),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    let (token, hits) = std::mem::take(&mut *found.lock().expect("lock"));
    let token = token.expect("the test recovered the job's Vault token");
    assert!(token.len() > 10, "a real token was recovered");
    assert_eq!(hits, Vec::<String>::new());
    for (what, needle) in [
        ("Vault token", token.as_str()),
        ("ID token", id_token.as_str()),
    ] {
        assert_nowhere(&outcome, &world, what, needle);
    }
    assert!(!world.bao.token_valid(&token), "the token was revoked");
}

/// `needle` is in no part of the job log, no cleanup output, no stage's stderr (leasehold's own
/// log lines) and no file left under the test root.
pub(crate) fn assert_nowhere(outcome: &JobOutcome, world: &World, what: &str, needle: &str) {
    assert!(!outcome.raw_log.contains(needle), "{what} in the job log");
    assert!(
        !outcome.cleanup_output.contains(needle),
        "{what} in cleanup's output"
    );
    for stage in &outcome.stages {
        assert!(
            !stage.stderr.contains(needle),
            "{what} in {}'s stderr (leasehold's own log lines)",
            stage.name
        );
    }
    assert!(
        scan::files_containing(world.dir.path(), needle).is_empty(),
        "{what} in a file left behind"
    );
}

/// The ID token's header and payload: enough to recognise it, for argv scans.
fn id_token_prefix(jwt: &str) -> String {
    jwt.rsplit_once('.')
        .map_or(jwt, |(head, _)| head)
        .to_owned()
}
