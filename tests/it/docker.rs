//! Issue 10: the docker executor, end to end, against a real (private) dockerd and a real
//! OpenBao. Every job runs in its own container from a locally built image; the tests plant
//! random secret values and look for them everywhere an attacker with access to the host or
//! the engine could: `docker inspect` of every container, every argv on the host and inside the
//! container, the builds dir, the state dir, the engine's own data and exec roots, the job log.
//! Values are compared by SHA-256 in job scripts, never printed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::executors::Planted;
use crate::world;
use leasehold_test_kit::docker::{
    self, BUSYBOX_IMAGE, JOB_IMAGE, containers_of, docker_ok, executor_config, git_repo,
};
use leasehold_test_kit::world::World;
use leasehold_test_kit::{Cancel, JobOutcome, JobResult, RunOptions, random_hex, scan};

const POLICY: &str = r#"path "kv/data/app/*" { capabilities = ["read"] }"#;

/// A world whose KV holds the two planted values, with the docker executor configured.
struct Lab {
    world: World,
    planted: Planted,
    repo: PathBuf,
}

impl Lab {
    fn start(docker_extra: &str) -> Lab {
        let world = world().policy(&[POLICY]).start();
        let planted = Planted::put(&world.bao);
        let repo = world.dir.path().join("repo");
        git_repo(&repo, "cloned-in-the-helper\n");
        let lab = Lab {
            world,
            planted,
            repo,
        };
        lab.configure(docker_extra);
        lab
    }

    fn configure(&self, docker_extra: &str) {
        self.world.write_config(&executor_config(&format!(
            "volumes = [\"{0}:{0}:ro\"]\n{docker_extra}",
            self.repo.display()
        )));
    }

    /// The job: image, repo, secrets, hashes to compare with.
    fn job(&self) -> leasehold_test_kit::JobBuilder {
        self.planted.declared_in(
            self.world
                .job()
                .image(JOB_IMAGE)
                .repo_url(&self.repo.display().to_string()),
        )
    }

    fn values(&self) -> [&str; 2] {
        [&self.planted.secret, &self.planted.file_token]
    }

    /// Fails naming the places (never the value) where a planted value is found under `root`.
    fn assert_no_value_under(&self, root: &Path, what: &str) {
        for value in self.values() {
            let found = scan::files_containing(root, value);
            assert!(found.is_empty(), "a planted value is in {what}: {found:?}");
        }
    }
}

/// Checks both secrets by hash, the file's mode and owner, and echoes the env secret.
const CHECK_SECRETS: [&str; 5] = [
    r#"if [ "$(printf '%s' "$SECRET" | sha256sum | cut -d' ' -f1)" = "$EXPECTED_SECRET_SHA256" ]; then echo secret-env=ok; else echo secret-env=MISMATCH; fi"#,
    r#"if [ "$(sha256sum < "$SECRET_FILE" | cut -d' ' -f1)" = "$EXPECTED_FILE_SHA256" ]; then echo secret-file=ok; else echo secret-file=MISMATCH; fi"#,
    r#"echo "secret-file-mode=$(stat -c %a "$SECRET_FILE") dir-mode=$(stat -c %a "$(dirname "$SECRET_FILE")") owner-matches=$([ "$(stat -c %u "$SECRET_FILE")" = "$(id -u)" ] && echo yes || echo no)""#,
    r#"echo "secret-file-fs=$(df -P "$SECRET_FILE" | tail -n 1 | cut -d' ' -f1)""#,
    r#"echo "echoed: $SECRET""#,
];

/// What a non-user stage reports about the secrets (by name only).
const PROBE: [&str; 2] = [
    r#"if [ -n "${SECRET:-}${SECRET_FILE:-}" ]; then echo "probe-secrets=present"; else echo "probe-secrets=absent"; fi"#,
    r#"echo "probe-in=$(hostname)""#,
];

fn assert_revoked_and_no_container(lab: &Lab, outcome: &JobOutcome) {
    lab.world.assert_revoked_and_clean(outcome);
    assert!(
        containers_of(&lab.world.state_dir()).is_empty(),
        "containers left: {:?}\ncleanup: {}",
        containers_of(&lab.world.state_dir()),
        outcome.cleanup_output
    );
}

#[test]
fn docker_job_gets_its_secrets_in_its_container_only_in_the_user_stages() {
    let lab = Lab::start("");
    let job = lab
        .job()
        .cache(true)
        .artifacts(true)
        .probe(PROBE)
        .script(CHECK_SECRETS.iter().map(|s| s.to_string()).chain([
            "cat README".into(),
            "echo in-container=$(cat /proc/1/cmdline | tr '\\0' ' ')".into(),
            "sleep 2".into(),
        ]))
        .after_script(
            CHECK_SECRETS
                .iter()
                .map(|s| s.to_string())
                .chain(["echo stage-dirs=$(ls /run/leasehold | wc -l)".into()]),
        );
    let secret = lab.planted.secret.clone();
    let file_token = lab.planted.file_token.clone();
    let state_dir = lab.world.state_dir();
    let mid_script = std::rc::Rc::new(std::cell::RefCell::new(None));
    let slot = mid_script.clone();
    let outcome = lab.world.runner().run_job(
        &job,
        RunOptions::new().while_stage_runs(
            "build_script",
            Duration::from_millis(1200),
            move |_| {
                let names = containers_of(&state_dir);
                let mut found = Vec::new();
                // docker inspect of every container: Env, Cmd, Args, Labels, mounts.
                for name in &names {
                    let text = docker::inspect(name).to_string();
                    for value in [&secret, &file_token] {
                        if text.contains(value.as_str()) {
                            found.push(format!("docker inspect {name}"));
                        }
                    }
                }
                // Every argv on the host.
                for value in [&secret, &file_token] {
                    for m in scan::cmdlines_containing(value) {
                        found.push(format!("host argv of pid {}", m.pid));
                    }
                }
                // Every argv inside the job container, and the engine's own view of its execs.
                let job_container = names.iter().find(|n| n.ends_with("-job")).cloned();
                let ps = job_container
                    .as_deref()
                    .map(|c| docker_ok(&["exec", c, "ps", "-o", "args"]))
                    .unwrap_or_default();
                for value in [&secret, &file_token] {
                    if ps.contains(value.as_str()) {
                        found.push("ps -o args in the job container".into());
                    }
                }
                // The engine's data and exec roots: container layers, configs, runtime state.
                if let Some(dir) = docker::daemon_dir() {
                    for value in [&secret, &file_token] {
                        for path in scan::files_containing(&dir, value) {
                            found.push(format!("engine file {}", path.display()));
                        }
                    }
                }
                *slot.borrow_mut() = Some((names, ps, found));
            },
        ),
    );
    assert!(outcome.is_success(), "{}", outcome.log);
    let (names, ps, found) = mid_script
        .borrow_mut()
        .take()
        .expect("the mid-script check ran");
    assert_eq!(names.len(), 2, "job and helper container: {names:?}");
    assert!(found.is_empty(), "planted values found: {found:?}");
    assert!(ps.contains("bash /run/leasehold/build_script-"), "{ps}");

    for stage in ["build_script", "after_script"] {
        let out = &outcome.stage(stage).output;
        for line in [
            "secret-env=ok",
            "secret-file=ok",
            "secret-file-mode=600 dir-mode=700 owner-matches=yes",
            "secret-file-fs=tmpfs",
            "echoed: [MASKED]",
        ] {
            assert!(
                out.contains(line),
                "{stage} lacks {line:?}:\n{}",
                outcome.log
            );
        }
    }
    let after = &outcome.stage("after_script").output;
    assert!(
        after.contains("stage-dirs=1"),
        "build_script's directory (its file secret) is gone by after_script: {}",
        outcome.log
    );
    let build = &outcome.stage("build_script").output;
    assert!(build.contains("cloned-in-the-helper"), "{}", outcome.log);
    assert!(
        build.contains("in-container=/sbin/docker-init"),
        "{}",
        outcome.log
    );
    for stage in [
        "get_sources",
        "restore_cache",
        "download_artifacts",
        "archive_cache",
        "upload_artifacts_on_success",
        "cleanup_file_variables",
    ] {
        let out = &outcome.stage(stage).output;
        assert!(
            out.contains("probe-secrets=absent"),
            "{stage}:\n{}",
            outcome.log
        );
        assert!(
            !out.contains("probe-secrets=present"),
            "{stage}:\n{}",
            outcome.log
        );
    }
    for value in lab.values() {
        assert!(
            !outcome.log.contains(value),
            "a planted value is in the job log"
        );
        assert!(
            !outcome.raw_log.contains(value),
            "a planted value is in the raw job log"
        );
    }
    lab.assert_no_value_under(&lab.world.dir.path().join("builds"), "the builds dir");
    lab.assert_no_value_under(&lab.world.state_dir(), "the state dir");
    assert_revoked_and_no_container(&lab, &outcome);
}

#[test]
fn a_disallowed_image_or_service_fails_the_job_before_any_vault_login() {
    let lab = Lab::start("allowed_images = [\"leasehold-test/job:*\"]");
    let outcome = lab.world.run(&lab.job().image("evil/miner:latest"));
    assert!(
        matches!(outcome.result, JobResult::BuildFailure { .. }),
        "{:?}\n{}",
        outcome.result,
        outcome.log
    );
    assert!(
        outcome.log.contains(
            "image evil/miner:latest is not allowed by [executor.docker] allowed_images (leasehold-test/job:*); use an image that matches, or ask the runner's admin to allow it"
        ),
        "{}",
        outcome.log
    );
    assert_eq!(
        outcome.stages_named("prepare_exec").len(),
        1,
        "a build failure is not retried"
    );

    let outcome = lab.world.run(
        &lab.job()
            .service(json!({"name": BUSYBOX_IMAGE, "alias": "web"})),
    );
    assert!(
        matches!(outcome.result, JobResult::BuildFailure { .. }),
        "{}",
        outcome.log
    );
    assert!(
        outcome.log.contains(&format!(
            "image {BUSYBOX_IMAGE} is not allowed by [executor.docker] allowed_services (leasehold-test/job:*)"
        )),
        "{}",
        outcome.log
    );
    assert_eq!(
        lab.world.bao.count_logins("jwt"),
        0,
        "no Vault login for a refused job"
    );
    assert!(containers_of(&lab.world.state_dir()).is_empty());
    assert!(lab.world.leftover_states().is_empty());
}

#[test]
fn an_engine_that_is_down_is_a_system_failure_naming_its_socket() {
    let lab = Lab::start("");
    // A socket file nobody listens on (a stopped dockerd leaves one), and no socket at all.
    let dead = lab.world.dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).expect("bind"));
    let missing = lab.world.dir.path().join("missing.sock");
    for (socket, why) in [(&dead, "connection refused"), (&missing, "no socket at")] {
        let config = executor_config("").replace(
            &format!("host = \"{}\"", docker::host()),
            &format!("host = \"unix://{}\"", socket.display()),
        );
        lab.world.write_config(&config);
        let outcome = lab.world.run(&lab.job());
        let JobResult::SystemFailure { .. } = &outcome.result else {
            panic!("{:?}\n{}", outcome.result, outcome.log);
        };
        let line = outcome
            .log
            .lines()
            .find(|l| l.contains("is not reachable"))
            .unwrap_or_else(|| panic!("no message:\n{}", outcome.log));
        assert!(
            line.contains(&format!(
                "leasehold: the Docker engine at unix://{} is not reachable (",
                socket.display()
            )) && line.contains(why)
                && line.contains(
                    "start dockerd, or point [executor.docker] host (or DOCKER_HOST) at its socket"
                ),
            "{line}"
        );
        assert_eq!(
            outcome.stages_named("prepare_exec").len(),
            3,
            "a system failure is retried"
        );
    }
    assert_eq!(
        lab.world.bao.count_logins("jwt"),
        0,
        "no Vault login without an engine"
    );
}

#[test]
fn a_service_is_reachable_on_loopback_and_gets_no_secret() {
    let lab = Lab::start("");
    let job = lab
        .job()
        .service(json!({
            "name": BUSYBOX_IMAGE, "alias": "web",
            "command": ["httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www"],
            "variables": [{"key": "SERVICE_MODE", "value": "test"}],
        }))
        .script([
            "for i in $(seq 1 50); do wget -q -O - http://127.0.0.1:8080/ 2>/dev/null && break; sleep 0.1; done",
            "wget -q -O - http://web:8080/ | sed 's/^/by-alias: /'",
            "sleep 2",
        ]);
    let values = [lab.planted.secret.clone(), lab.planted.file_token.clone()];
    let state_dir = lab.world.state_dir();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(None));
    let slot = seen.clone();
    let outcome = lab.world.runner().run_job(
        &job,
        RunOptions::new().while_stage_runs(
            "build_script",
            Duration::from_millis(1000),
            move |_| {
                let service = containers_of(&state_dir)
                    .into_iter()
                    .find(|n| n.ends_with("-svc0"))
                    .expect("the service container runs");
                let inspected = docker::inspect(&service);
                let environ = docker_ok(&[
                    "exec",
                    &service,
                    "sh",
                    "-c",
                    "cat /proc/[0-9]*/environ | tr '\\0' '\\n'",
                ]);
                let leaked = values.iter().any(|v| {
                    inspected.to_string().contains(v.as_str()) || environ.contains(v.as_str())
                });
                *slot.borrow_mut() = Some((inspected, environ, leaked));
            },
        ),
    );
    assert!(outcome.is_success(), "{}", outcome.log);
    let build = &outcome.stage("build_script").output;
    assert!(build.contains("leasehold test service"), "{}", outcome.log);
    assert!(
        build.contains("by-alias: leasehold test service"),
        "{}",
        outcome.log
    );
    let (inspected, environ, leaked) = seen.borrow_mut().take().expect("checked mid-script");
    assert!(!leaked, "a planted value reached the service");
    assert!(
        environ.contains("SERVICE_MODE=test"),
        "its own variables: {environ}"
    );
    assert!(
        !environ.contains("SECRET"),
        "no secret by name either: {environ}"
    );
    assert_eq!(
        inspected["HostConfig"]["NetworkMode"]
            .as_str()
            .map(|m| m.starts_with("container:")),
        Some(true),
        "{inspected}"
    );
    assert_revoked_and_no_container(&lab, &outcome);
}

#[test]
fn sigterm_mid_script_stops_the_process_in_the_container_and_cleanup_removes_it() {
    let lab = Lab::start("");
    let job = lab
        .job()
        .script(["echo started", "sleep 300", "echo not-reached"]);
    let started = Instant::now();
    let outcome = lab.world.runner().run_job(
        &job,
        RunOptions::new().cancel(Cancel::abort("build_script", Duration::from_secs(2))),
    );
    assert_eq!(outcome.result, JobResult::Canceled, "{}", outcome.log);
    let build = outcome.stage("build_script");
    assert!(
        build.sent_sigterm && !build.sent_sigkill,
        "stopped by SIGTERM alone: {build:?}"
    );
    assert!(
        build.duration < Duration::from_secs(8),
        "{:?}",
        build.duration
    );
    assert!(!build.output.contains("not-reached"), "{}", outcome.log);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_revoked_and_no_container(&lab, &outcome);

    // A GitLab cancel ends the step only: after_script runs in the same container, and the
    // step's sleep is gone from it.
    let job = lab.job().script(["sleep 300"]).after_script([
        "echo sleepers=$(ps -o args | grep -c '^[s]leep 300')",
        CHECK_SECRETS[0],
    ]);
    let outcome = lab.world.runner().run_job(
        &job,
        RunOptions::new().cancel(Cancel::from_ui("build_script", Duration::from_secs(2))),
    );
    assert_eq!(outcome.result, JobResult::Canceled, "{}", outcome.log);
    let after = &outcome.stage("after_script").output;
    assert!(after.contains("sleepers=0"), "{}", outcome.log);
    assert!(after.contains("secret-env=ok"), "{}", outcome.log);
    assert_revoked_and_no_container(&lab, &outcome);
}

#[test]
fn reap_removes_the_containers_of_a_crashed_job_and_revokes_its_token() {
    let lab = Lab::start("");
    let token_file = lab.world.dir.path().join("reaper-token");
    std::fs::write(
        &token_file,
        lab.world.bao.reaper_token(json!({"period": "1h"})),
    )
    .expect("token file");
    lab.world.write_config(&format!(
        "[leases]\nreap_grace_seconds = 0\n\n[reaper]\ntoken_file = \"{}\"\n\n{}",
        token_file.display(),
        executor_config(&format!("volumes = [\"{0}:{0}:ro\"]", lab.repo.display()))
    ));
    // Its timeout is 1 s as far as leasehold knows; its run stage is SIGKILLed, no cleanup.
    let job = lab.job().timeout(1).script(["sleep 60"]);
    let outcome = lab.world.runner().run_job(
        &job,
        RunOptions::new()
            .job_timeout(Duration::from_secs(60))
            .kill_without_cleanup("build_script", Duration::from_millis(2000)),
    );
    assert_eq!(outcome.result, JobResult::Crashed, "{}", outcome.log);
    let left = containers_of(&lab.world.state_dir());
    assert_eq!(left.len(), 2, "the crash left its containers: {left:?}");
    let states = lab.world.leftover_states();
    assert_eq!(states.len(), 1, "{states:?}");
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(states[0].join("journal.json")).expect("journal"))
            .expect("journal JSON");
    let accessor = journal["sessions"][0]["accessor"]
        .as_str()
        .expect("accessor journaled")
        .to_owned();
    std::thread::sleep(Duration::from_secs(2));
    let out = lab.world.command().arg("reap").output().expect("reap");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Exit 1: reap names every job whose credentials it had to take back.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in &left {
        assert!(
            stdout.contains(&format!("removed container {name}")),
            "{stdout}"
        );
    }
    assert!(containers_of(&lab.world.state_dir()).is_empty(), "{stdout}");
    assert!(
        lab.world.bao.lookup_token_by_accessor(&accessor).is_none(),
        "{stdout}"
    );
    assert!(lab.world.leftover_states().is_empty(), "{stdout}");
}

#[test]
fn two_concurrent_jobs_cannot_read_each_others_secrets() {
    let lab = Lab::start("");
    let other = format!("other-secret-{}", random_hex(16));
    lab.world.bao.kv_put(
        "kv",
        2,
        "app/other",
        json!({"password": other, "tls_key": other}),
    );
    // Each job looks for the other's variable names in every process it can see, and for any
    // file named like the other's file secret anywhere in its container.
    let look_for = |name: &str, own: &str| {
        vec![
            format!(
                "echo {name}-in-environ=$(cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c '^{name}=')"
            ),
            format!("echo {name}-as-file=$(find / -name {name} 2>/dev/null | grep -vc '^/proc/')"),
            format!(
                "echo own-environ=$(cat /proc/self/environ | tr '\\0' '\\n' | grep -cE '^{own}(_FILE)?=')"
            ),
            "sleep 3".to_owned(),
        ]
    };
    let job_a = lab.job().id(4001).script(look_for("OTHER_FILE", "SECRET"));
    let job_b = lab
        .job()
        .id(4002)
        .project(43, "grp/other")
        .secrets_yaml("OTHER:\n  vault: app/other/password@kv\n  file: false\nOTHER_FILE:\n  vault: app/other/tls_key@kv\n")
        .script(look_for("SECRET_FILE", "OTHER"));
    let runner = lab.world.runner();
    let (a, b) = std::thread::scope(|scope| {
        let runner_b = runner.clone();
        let b = scope.spawn(move || runner_b.run_job(&job_b, RunOptions::new()));
        let a = runner.run_job(&job_a, RunOptions::new());
        (a, b.join().expect("job B"))
    });
    for (outcome, other_name) in [(&a, "OTHER_FILE"), (&b, "SECRET_FILE")] {
        assert!(outcome.is_success(), "{}", outcome.log);
        let out = &outcome.stage("build_script").output;
        assert!(
            out.contains(&format!("{other_name}-in-environ=0")),
            "{}",
            outcome.log
        );
        assert!(
            out.contains(&format!("{other_name}-as-file=0")),
            "{}",
            outcome.log
        );
        assert!(
            out.contains("own-environ=2"),
            "its own secrets are there: {}",
            outcome.log
        );
        assert!(!outcome.raw_log.contains(&other), "B's value in a job log");
        assert!(
            !outcome.raw_log.contains(&lab.planted.secret),
            "A's value in a job log"
        );
    }
    assert!(containers_of(&lab.world.state_dir()).is_empty());
}
