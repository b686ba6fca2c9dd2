//! Issue 6's acceptance: leasehold wrapping real executors, end to end, against a real OpenBao.
//!
//! - an SSH driver (`tests/fixtures/ssh-driver`, written like GitLab's libvirt example) behind
//!   leasehold with `inject = "script"`, against a real sshd, running the job as another local
//!   user;
//! - a local driver (`tests/fixtures/fake-driver.sh`) with `inject = "env"`;
//! - the built-in shell executor dropping privileges to `[executor] user`;
//! - a cancel mid-script, and cleanup after a failed prepare.
//!
//! Secret values are random per test and never printed: job scripts compare SHA-256 hashes with
//! expected hashes passed as ordinary job variables, failure messages show logs with the values
//! redacted, and leak assertions name the places a value was found, never the value.

use std::cell::RefCell;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{fixture, world};
use leasehold_test_kit::fake_driver::DriverLog;
use leasehold_test_kit::issuer::bound_role;
use leasehold_test_kit::sshd::{Sshd, TestUser, ensure_group, ensure_user};
use leasehold_test_kit::world::{POLICY, accessors_in, entries};
use leasehold_test_kit::{
    Bao, Cancel, JobBuilder, JobOutcome, JobResult, RunOptions, World, random_hex, scan,
    sha256_hex, wait_for,
};

/// Two secrets from one KV v2 path: `SECRET` in the environment, `SECRET_FILE` as a file.
pub(crate) const SECRETS_YAML: &str = "SECRET:\n  vault: app/ci/password@kv\n  file: false\nSECRET_FILE:\n  vault: app/ci/tls_key@kv\n";

/// Job script lines that check both secrets by hash, describe the file secret, and echo the
/// environment secret (which the job log must show masked).
const CHECK_SECRETS: [&str; 5] = [
    r#"if [ "$(printf '%s' "$SECRET" | sha256sum | cut -d' ' -f1)" = "$EXPECTED_SECRET_SHA256" ]; then echo secret-env=ok; else echo secret-env=MISMATCH; fi"#,
    r#"if [ "$(sha256sum < "$SECRET_FILE" | cut -d' ' -f1)" = "$EXPECTED_FILE_SHA256" ]; then echo secret-file=ok; else echo secret-file=MISMATCH; fi"#,
    r#"echo "secret-file-path=$SECRET_FILE""#,
    r#"echo "secret-file-mode=$(stat -c %a "$SECRET_FILE") secret-dir-mode=$(stat -c %a "$(dirname "$SECRET_FILE")")""#,
    r#"echo "echoed: $SECRET""#,
];

/// The values of [`SECRETS_YAML`], random per test, planted in KV v2 `kv/app/ci` (`password`
/// and `tls_key`); the docker tests plant the same.
pub(crate) struct Planted {
    /// `SECRET`'s value.
    pub(crate) secret: String,
    /// `SECRET_FILE`'s content (three lines).
    pub(crate) file_secret: String,
    /// The random middle line of the file secret, what leak scans look for.
    pub(crate) file_token: String,
}

impl Planted {
    /// Enables KV v2 at `kv` and writes fresh values at `app/ci`.
    pub(crate) fn put(bao: &Bao) -> Planted {
        let secret = format!("env-secret-{}", random_hex(16));
        let file_token = format!("file-secret-{}", random_hex(16));
        let file_secret =
            format!("-----BEGIN TEST KEY-----\n{file_token}\n-----END TEST KEY-----\n");
        bao.enable_kv("kv", 2);
        bao.kv_put(
            "kv",
            2,
            "app/ci",
            json!({"password": secret, "tls_key": file_secret}),
        );
        Planted {
            secret,
            file_secret,
            file_token,
        }
    }

    /// `job` with the two secrets declared and their expected hashes as plain variables
    /// (`EXPECTED_SECRET_SHA256`, `EXPECTED_FILE_SHA256`), which job scripts compare with.
    pub(crate) fn declared_in(&self, job: JobBuilder) -> JobBuilder {
        job.secrets_yaml(SECRETS_YAML)
            .variable(
                "EXPECTED_SECRET_SHA256",
                &sha256_hex(self.secret.as_bytes()),
            )
            .variable(
                "EXPECTED_FILE_SHA256",
                &sha256_hex(self.file_secret.as_bytes()),
            )
    }
}

/// A world (its temp dir 0755, so that other local users can reach what a test puts there)
/// whose KV holds the job's secrets, with a role for the default job.
struct Lab {
    world: World,
    planted: Planted,
}

impl Lab {
    fn new() -> Lab {
        let world = world()
            .policy(&[r#"path "kv/data/app/*" { capabilities = ["read"] }"#])
            .role(bound_role(&[POLICY]))
            .vault_defaults()
            .no_dirs()
            .dir_mode(0o755)
            .dir_prefix("leasehold-executors")
            .start();
        let planted = Planted::put(&world.bao);
        world
            .bao
            .kv_put("kv", 2, "other/ci", json!({"password": "not-for-this-job"}));
        Lab { world, planted }
    }

    /// The default job with the two secrets declared and their expected hashes as plain
    /// variables.
    fn job(&self) -> JobBuilder {
        self.planted.declared_in(self.world.job())
    }

    /// `text` with the planted values replaced, safe to print.
    fn redact(&self, text: &str) -> String {
        text.replace(&self.planted.secret, "<SECRET>")
            .replace(&self.planted.file_token, "<FILE-SECRET>")
    }

    /// The job log and cleanup output, redacted, for assertion messages.
    fn show(&self, outcome: &JobOutcome) -> String {
        self.redact(&format!(
            "result: {:?}\nstages: {:?}\n--- job log (unmasked by the runner) ---\n{}\n--- cleanup output ---\n{}",
            outcome.result,
            outcome.stage_names(),
            outcome.raw_log,
            outcome.cleanup_output
        ))
    }

    /// Files below any of `roots` that hold either planted value.
    fn leaks(&self, roots: &[&Path]) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for root in roots {
            found.extend(scan::files_containing(root, &self.planted.secret));
            found.extend(scan::files_containing(root, &self.planted.file_token));
        }
        found
    }

    /// Asserts that every Vault token the job's log names is gone, and returns how many.
    fn assert_tokens_revoked(&self, outcome: &JobOutcome) -> usize {
        let accessors = accessors_in(&outcome.cleanup_output);
        assert!(
            !accessors.is_empty(),
            "cleanup named no token\n{}",
            self.show(outcome)
        );
        for accessor in &accessors {
            assert!(
                self.world.bao.lookup_token_by_accessor(accessor).is_none(),
                "token {accessor} is still valid after cleanup\n{}",
                self.show(outcome)
            );
        }
        accessors.len()
    }

    /// Asserts that no job state is left below the state dir.
    fn assert_state_removed(&self, outcome: &JobOutcome) {
        let left = self.world.leftover_states();
        assert!(
            left.is_empty(),
            "job state left behind: {left:?}\n{}",
            self.show(outcome)
        );
    }
}

/// What a stage's script printed: its output without the runner's `$ <command>` lines, which
/// quote the script itself.
fn printed(output: &str) -> String {
    output
        .lines()
        .filter(|line| !line.contains("\x1b[32;1m$ "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of the first `key=value` word in `text`.
fn value_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    text[start..].split_whitespace().next()
}

/// `leasehold-secrets.*` entries below `root`, recursively.
fn secret_dirs_under(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("leasehold-secrets.")
            {
                found.push(path.clone());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    found
}

/// `leasehold-secrets.*` entries directly in /tmp owned by `uid`.
fn secret_dirs_in_tmp(uid: u32) -> Vec<PathBuf> {
    std::fs::read_dir("/tmp")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("leasehold-secrets.")
                && e.metadata().is_ok_and(|m| m.uid() == uid)
        })
        .map(|e| e.path())
        .collect()
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// Live processes of `uid` whose command name is `comm`.
fn processes_of(uid: u32, comm: &str) -> Vec<u32> {
    scan::pids()
        .into_iter()
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == uid)
                && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == comm)
                && alive(*pid)
        })
        .collect()
}

/// Waits until `uid` runs a `sleep`, i.e. the job's script reached it. Called from a
/// `while_stage_runs` probe, it also holds the emulator's cancel back until then, so that slow
/// machines do not cancel the script before it gets there.
fn wait_for_sleep_of(uid: u32) -> Vec<u32> {
    wait_for("the job's sleep", Duration::from_secs(20), || {
        let sleeping = processes_of(uid, "sleep");
        (!sleeping.is_empty()).then_some(sleeping)
    })
}

/// Where each marker first appears in `text` (`None`: absent), for ordering assertions.
fn positions(text: &str, markers: &[&str]) -> Vec<Option<usize>> {
    markers.iter().map(|m| text.find(m)).collect()
}

// --- the SSH driver, inject = "script" ------------------------------------------------------

/// `[executor]` for the reference SSH driver.
fn ssh_driver_tables(inject: &str, secret_stages: Option<&[&str]>) -> String {
    let script = |name: &str| fixture(&format!("ssh-driver/{name}.sh"));
    let mut tables = String::new();
    if let Some(stages) = secret_stages {
        tables.push_str(&format!("[job]\nsecret_stages = {stages:?}\n\n"));
    }
    tables.push_str(&format!(
        "[executor]\nkind = \"custom\"\ninject = \"{inject}\"\n\n[executor.custom]\n\
         config_exec = {:?}\nprepare_exec = {:?}\nrun_exec = {:?}\ncleanup_exec = {:?}\n",
        script("config"),
        script("prepare"),
        script("run"),
        script("cleanup"),
    ));
    tables
}

fn ssh_options(sshd: &Sshd) -> RunOptions {
    sshd.driver_env()
        .into_iter()
        .fold(RunOptions::new(), |opts, (k, v)| opts.env(&k, v))
}

/// Logs in once through the fixture, so that a broken sshd fails here and not in a stage.
fn assert_ssh_login(sshd: &Sshd) {
    let who = sshd.ssh("id -un");
    assert!(
        who.status.success(),
        "ssh login failed: {who:?}\nsshd log:\n{}",
        sshd.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&who.stdout).trim(),
        sshd.user().name
    );
}

/// The remote directory the SSH driver made for this job (named in its job_env).
fn remote_job_dir(outcome: &JobOutcome, user: &TestUser) -> PathBuf {
    let job = outcome
        .config_json
        .as_ref()
        .and_then(|c| c["job_env"]["SSH_DRIVER_JOB"].as_str())
        .expect("the SSH driver's job_env reached the merged config");
    user.home.join("ssh-driver").join(job)
}

#[test]
fn ssh_driver_gets_secrets_through_a_wrapper_script_and_leaves_nothing_behind() {
    let sshd = Sshd::start("lh-ssh-job");
    assert_ssh_login(&sshd);
    let remote = sshd.user().clone();
    let w = Lab::new();
    // after_script gets no secrets, so that it runs while nothing should be left anywhere.
    w.world
        .write_config(&ssh_driver_tables("script", Some(&["build_script"])));
    let mut script = CHECK_SECRETS.to_vec();
    script.push(r#"echo "remote-user=$(id -un)""#);
    let job = w.job().script(script).after_script([
        r#"echo "leftover-secret-dirs=$(find "$TMPDIR" -name 'leasehold-secrets.*' | wc -l)""#,
        "sleep 1",
    ]);

    // While after_script runs: the runner side (state dir, the runner's temp dir) and the far
    // side (the remote user's home, its /tmp entries) hold neither value and no secrets dir.
    let between = Rc::new(RefCell::new(None::<Vec<PathBuf>>));
    let seen = between.clone();
    let (state_dir, home, secret, token) = (
        w.world.state_dir(),
        remote.home.clone(),
        w.planted.secret.clone(),
        w.planted.file_token.clone(),
    );
    let opts = ssh_options(&sshd).while_stage_runs(
        "after_script",
        Duration::from_millis(100),
        move |pgid| {
            wait_for_sleep_of(remote.uid);
            let mut roots = vec![state_dir.clone(), home.clone()];
            roots.extend(std::fs::read_link(format!("/proc/{pgid}/cwd")));
            let mut found = Vec::new();
            for root in &roots {
                found.extend(scan::files_containing(root, &secret));
                found.extend(scan::files_containing(root, &token));
            }
            found.extend(secret_dirs_under(&home));
            found.extend(secret_dirs_in_tmp(remote.uid));
            *seen.borrow_mut() = Some(found);
        },
    );
    let started = Instant::now();
    let outcome = w.world.runner().run_job(&job, opts);
    let remote = sshd.user();
    assert_eq!(
        outcome.result,
        JobResult::Success,
        "{}\nsshd log:\n{}",
        w.show(&outcome),
        sshd.log()
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    // The merged config: the driver's dirs and job_env, leasehold's name around the driver's.
    let config_json = outcome.config_json.as_ref().expect("config JSON");
    assert_eq!(config_json["driver"]["name"], "leasehold + ssh-driver");
    let job_dir = remote_job_dir(&outcome, remote);
    assert_eq!(
        config_json["builds_dir"].as_str(),
        Some(job_dir.join("builds").to_str().expect("utf-8"))
    );

    // The secrets reached the remote script, run as the remote user, the file secret in a
    // private dir under the far side's TMPDIR.
    let build = outcome.stage("build_script");
    let output = printed(&w.redact(&build.output));
    for expected in [
        "secret-env=ok",
        "secret-file=ok",
        "secret-file-mode=600 secret-dir-mode=700",
        &format!("remote-user={}", remote.name),
    ] {
        assert!(output.contains(expected), "no {expected} in:\n{output}");
    }
    let file_path = PathBuf::from(value_after(&output, "secret-file-path=").expect("path"));
    assert!(
        file_path.starts_with(job_dir.join("tmp"))
            && file_path
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|n| n.to_string_lossy().starts_with("leasehold-secrets.")),
        "{file_path:?}"
    );
    assert!(
        !file_path.exists(),
        "the far side's file secret outlived the stage"
    );

    // The echoed value came back masked, and no output of any stage holds a value.
    assert!(
        outcome.raw_log.contains("echoed: [MASKED]"),
        "{}",
        w.show(&outcome)
    );
    for stage in &outcome.stages {
        assert!(
            !stage.output.contains(&w.planted.secret)
                && !stage.output.contains(&w.planted.file_token),
            "{} printed a value unmasked",
            stage.name
        );
    }
    assert!(
        !outcome.raw_log.contains(&w.planted.secret)
            && !outcome.raw_log.contains(&w.planted.file_token)
    );

    // Nothing was left after build_script, on either side.
    assert!(
        printed(&outcome.stage("after_script").output).contains("leftover-secret-dirs=0"),
        "{}",
        w.show(&outcome)
    );
    let between = between
        .borrow_mut()
        .take()
        .expect("the after_script probe ran");
    assert!(
        between.is_empty(),
        "values or secrets dirs left after the stage: {between:?}"
    );

    // After cleanup: the driver's cleanup ran (and removed its remote dir), the token is
    // revoked, no state, no value anywhere.
    assert!(
        outcome
            .cleanup_output
            .contains("ssh-driver: cleaned up job-"),
        "{}",
        w.show(&outcome)
    );
    assert!(!job_dir.exists(), "the remote job dir survived cleanup");
    w.assert_tokens_revoked(&outcome);
    w.assert_state_removed(&outcome);
    let mut roots: Vec<&Path> = vec![w.world.dir.path(), &remote.home];
    roots.extend(outcome.temp_dirs.iter().map(PathBuf::as_path));
    assert!(w.leaks(&roots).is_empty(), "{:?}", w.leaks(&roots));
    assert!(secret_dirs_under(&remote.home).is_empty());
    assert!(secret_dirs_in_tmp(remote.uid).is_empty());
}

#[test]
fn cancelling_an_ssh_job_ends_the_remote_processes_then_cleanup_runs_and_revokes() {
    let sshd = Sshd::start("lh-ssh-cancel");
    assert_ssh_login(&sshd);
    let remote = sshd.user().clone();
    let w = Lab::new();
    w.world.write_config(&ssh_driver_tables("script", None));
    let mut script = CHECK_SECRETS.to_vec();
    script.extend([
        r#"sleep 30 & echo "remote-sleep-pid=$!"; wait $!"#,
        "echo finished",
    ]);
    let job = w.job().script(script).after_script(["echo after"]);

    // While the remote script sleeps: its processes run as the remote user, the file secret
    // exists on the far side, and no command line holds a value.
    type Probe = (Vec<u32>, Vec<PathBuf>, Vec<scan::ProcMatch>);
    let probe = Rc::new(RefCell::new(None::<Probe>));
    let seen = probe.clone();
    let (home, uid, secret, token) = (
        remote.home.clone(),
        remote.uid,
        w.planted.secret.clone(),
        w.planted.file_token.clone(),
    );
    let opts = ssh_options(&sshd)
        .cancel(Cancel::abort("build_script", Duration::from_millis(1500)))
        .while_stage_runs("build_script", Duration::from_millis(500), move |_| {
            let sleeping = wait_for_sleep_of(uid);
            let mut argv = scan::cmdlines_containing(&secret);
            argv.extend(scan::cmdlines_containing(&token));
            *seen.borrow_mut() = Some((sleeping, secret_dirs_under(&home), argv));
        });
    let started = Instant::now();
    let outcome = w.world.runner().run_job(&job, opts);
    assert_eq!(
        outcome.result,
        JobResult::Canceled,
        "{}\nsshd log:\n{}",
        w.show(&outcome),
        sshd.log()
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let (sleepers, secret_dirs, argv) = probe.borrow_mut().take().expect("the probe ran");
    assert!(argv.is_empty(), "a command line holds a value: {argv:?}");
    assert_eq!(
        secret_dirs.len(),
        1,
        "the far side's secrets dir while the stage runs: {secret_dirs:?}"
    );

    let build = outcome.stage("build_script");
    let output = printed(&w.redact(&build.output));
    assert!(
        output.contains("secret-env=ok") && output.contains("secret-file=ok"),
        "{output}"
    );
    assert!(!output.contains("finished"), "{output}");
    assert!(build.sent_sigterm && !build.sent_sigkill, "{build:?}");
    let sleep_pid: u32 = value_after(&output, "remote-sleep-pid=")
        .and_then(|p| p.parse().ok())
        .expect("remote sleep pid");
    assert!(
        sleepers.contains(&sleep_pid),
        "the remote sleep {sleep_pid} did not run as {}: {sleepers:?}",
        remote.name
    );
    // The remote processes are gone, and so are the local ones (leasehold, run.sh, ssh).
    wait_for("the remote sleep to end", Duration::from_secs(5), || {
        (!alive(sleep_pid)).then_some(())
    });
    assert!(
        processes_of(remote.uid, "sleep").is_empty(),
        "{:?}",
        processes_of(remote.uid, "sleep")
    );
    assert!(scan::wait_group_gone(build.pgid, Duration::from_secs(3)).is_empty());
    assert!(!Path::new(&secret_dirs[0]).exists());

    // Abort: no later run stage, but cleanup ran the driver's cleanup first, then revoked.
    assert_eq!(
        outcome.stage_names()[outcome.stages.len() - 2..],
        ["build_script", "cleanup_exec"]
    );
    let order = positions(
        &outcome.cleanup_output,
        &["ssh-driver: cleaned up job-", "leasehold: revoked token"],
    );
    assert!(
        matches!(order[..], [Some(a), Some(b)] if a < b),
        "{}",
        w.show(&outcome)
    );
    assert!(!remote_job_dir(&outcome, &remote).exists());
    w.assert_tokens_revoked(&outcome);
    w.assert_state_removed(&outcome);
    assert!(w.leaks(&[w.world.dir.path(), &remote.home]).is_empty());
    assert!(secret_dirs_in_tmp(remote.uid).is_empty());
}

// --- a local driver, inject = "env" ---------------------------------------------------------

/// `[executor]` for `tests/fixtures/fake-driver.sh`, which takes the stage as its first argument.
fn fake_driver_tables(inject: &str) -> String {
    let driver = fixture("fake-driver.sh");
    format!(
        "[executor]\nkind = \"custom\"\ninject = \"{inject}\"\n\n[executor.custom]\n\
         config_exec = {driver:?}\nconfig_args = [\"config\"]\n\
         prepare_exec = {driver:?}\nprepare_args = [\"prepare\"]\n\
         run_exec = {driver:?}\nrun_args = [\"run\"]\n\
         cleanup_exec = {driver:?}\ncleanup_args = [\"cleanup\"]\n"
    )
}

#[test]
fn local_driver_gets_secrets_in_its_environment_and_its_exit_codes_pass_through() {
    let w = Lab::new();
    w.world.write_config(&fake_driver_tables("env"));
    let runner = w.world.runner();
    let driver = fixture("fake-driver.sh").display().to_string();

    // Outside the world's dir, whose leak scans must not find the values the driver records.
    let log = DriverLog::new();
    let mut script = CHECK_SECRETS.to_vec();
    script.push(
        r#"echo "driver-job-env=${FAKE_JOB_ENV:-unset} state-key=${LEASEHOLD_STATE_KEY:-unset} vault-token=${VAULT_TOKEN:-unset}""#,
    );
    let job = w.job().script(script).after_script([
        r#"if [ "$(printf '%s' "$SECRET" | sha256sum | cut -d' ' -f1)" = "$EXPECTED_SECRET_SHA256" ]; then echo after-secret=ok; fi"#,
    ]);
    let outcome = runner.run_job(&job, log.options());
    assert_eq!(outcome.result, JobResult::Success, "{}", w.show(&outcome));

    let build = printed(&w.redact(&outcome.stage("build_script").output));
    for expected in [
        "secret-env=ok",
        "secret-file=ok",
        "secret-file-mode=600 secret-dir-mode=700",
        "driver-job-env=from-config state-key=unset vault-token=unset",
    ] {
        assert!(build.contains(expected), "no {expected} in:\n{build}");
    }
    let file_path = PathBuf::from(value_after(&build, "secret-file-path=").expect("path"));
    assert!(file_path.starts_with(w.world.state_dir()), "{file_path:?}");
    assert!(!file_path.exists(), "the file secret outlived its stage");
    assert!(printed(&outcome.stage("after_script").output).contains("after-secret=ok"));
    assert!(
        outcome.raw_log.contains("echoed: [MASKED]"),
        "{}",
        w.show(&outcome)
    );
    assert!(
        !outcome.raw_log.contains(&w.planted.secret)
            && !outcome.raw_log.contains(&w.planted.file_token)
    );

    // The merged config.
    let config_json = outcome.config_json.as_ref().expect("config JSON");
    assert_eq!(config_json["driver"]["name"], "leasehold + fake");
    assert_eq!(config_json["job_env"]["FAKE_JOB_ENV"], "from-config");
    assert!(config_json["job_env"]["LEASEHOLD_STATE_ID"].is_string());
    let tmpdir = outcome.temp_dirs[0].display().to_string();
    assert_eq!(
        config_json["builds_dir"].as_str(),
        Some(format!("{tmpdir}/builds").as_str())
    );

    // The driver was called for every stage with gitlab-runner's protocol: CUSTOM_ENV_*, its
    // own job_env, the runner's variables, the runner's script (env delivery needs no
    // wrapper), and in leasehold's process group.
    let calls = log.invocations();
    let mut expected = vec!["config", "prepare"];
    expected.extend(outcome.run_stage_names().iter().map(|_| "run"));
    expected.push("cleanup");
    assert_eq!(log.commands(), expected);
    let execs: Vec<_> = outcome.stages.iter().collect();
    for (call, stage) in calls.iter().zip(&execs) {
        let env = &call["env"];
        assert_eq!(env["CUSTOM_ENV_CI_JOB_ID"], "1001", "{}", stage.name);
        assert!(env["CUSTOM_ENV_EXPECTED_SECRET_SHA256"].is_string());
        assert_eq!(env["TMPDIR"], tmpdir.as_str());
        assert_eq!(
            env["JOB_RESPONSE_FILE"],
            format!("{tmpdir}/response.json").as_str()
        );
        assert_eq!(
            env["BUILD_EXIT_CODE_FILE"],
            format!("{tmpdir}/build_exit_code").as_str()
        );
        assert_eq!(call["pgid"].as_u64(), Some(u64::from(stage.pgid)));
        if stage.name == "config_exec" {
            assert!(env.get("FAKE_JOB_ENV").is_none());
        } else {
            assert_eq!(env["FAKE_JOB_ENV"], "from-config", "{}", stage.name);
        }
        if let Some(script) = &stage.script {
            assert_eq!(
                call["argv"],
                json!([driver, "run", script.display().to_string(), stage.name]),
            );
        }
    }
    // The secrets reached the driver as CUSTOM_ENV_<NAME> (the fake driver records every
    // CUSTOM_ENV_ variable), in the stages they are for and nowhere else.
    for (call, stage) in calls.iter().zip(&execs) {
        let exposed = matches!(stage.name.as_str(), "build_script" | "after_script");
        let value = call["env"]["CUSTOM_ENV_SECRET"].as_str();
        assert_eq!(
            value == Some(w.planted.secret.as_str()),
            exposed,
            "{}",
            stage.name
        );
        assert_eq!(call["env"]["CUSTOM_ENV_SECRET_FILE"].is_string(), exposed);
        for (name, v) in call["env"].as_object().expect("env") {
            assert!(
                name == "CUSTOM_ENV_SECRET" || v.as_str() != Some(w.planted.secret.as_str()),
                "{}: the secret in {name}",
                stage.name
            );
        }
    }
    w.assert_tokens_revoked(&outcome);
    w.assert_state_removed(&outcome);

    // The driver's exit 1 with BUILD_EXIT_CODE_FILE: a build failure with the script's code.
    let job = w
        .job()
        .script(["echo before", "exit 42"])
        .after_script(["echo after"]);
    let outcome = runner.run_job(&job, log.options());
    assert_eq!(
        outcome.result,
        JobResult::BuildFailure { exit_code: 42 },
        "{}",
        w.show(&outcome)
    );
    let build = outcome.stage("build_script");
    assert_eq!((build.exit_code, build.build_exit_code), (1, Some(42)));
    assert!(outcome.stage("after_script").output.contains("after"));
    w.assert_tokens_revoked(&outcome);

    // The driver's exit 2: a system failure.
    let opts = log
        .options()
        .env("FAKE_DRIVER_FAIL_RUN", "2")
        .env("FAKE_DRIVER_FAIL_RUN_STAGE", "build_script");
    let outcome = runner.run_job(&w.job(), opts);
    assert!(
        matches!(&outcome.result, JobResult::SystemFailure { reason } if reason == "exit status 2"),
        "{}",
        w.show(&outcome)
    );
    assert_eq!(outcome.stage("build_script").exit_code, 2);
    w.assert_tokens_revoked(&outcome);
    w.assert_state_removed(&outcome);
}

#[test]
fn cancelling_a_local_driver_job_ends_its_processes_then_cleanup_runs_and_revokes() {
    let w = Lab::new();
    w.world.write_config(&fake_driver_tables("env"));
    // Outside the world's dir: the driver records its CUSTOM_ENV_ variables, the secrets too.
    let log = DriverLog::new();
    let pid_file = w.world.dir.path().join("sleep.pid");
    let job = w
        .job()
        .variable("SLEEP_PID_FILE", &pid_file.display().to_string())
        .script([
            r#"if [ "$(printf '%s' "$SECRET" | sha256sum | cut -d' ' -f1)" = "$EXPECTED_SECRET_SHA256" ]; then echo secret-env=ok; fi"#,
            r#"sleep 30 & echo $! > "$SLEEP_PID_FILE"; wait $!"#,
            "echo finished",
        ])
        .after_script(["echo after"]);
    let probe_file = pid_file.clone();
    let opts = log
        .options()
        .cancel(Cancel::abort("build_script", Duration::from_millis(1500)))
        .while_stage_runs("build_script", Duration::from_millis(300), move |_| {
            // Holds the cancel back until the script has started its sleep.
            wait_for("the sleep's PID file", Duration::from_secs(20), || {
                std::fs::read_to_string(&probe_file)
                    .is_ok_and(|p| p.ends_with('\n'))
                    .then_some(())
            });
        });
    let started = Instant::now();
    let outcome = w.world.runner().run_job(&job, opts);
    assert_eq!(outcome.result, JobResult::Canceled, "{}", w.show(&outcome));
    assert!(started.elapsed() < Duration::from_secs(15));

    let build = outcome.stage("build_script");
    assert!(
        printed(&build.output).contains("secret-env=ok"),
        "{}",
        w.show(&outcome)
    );
    assert!(!printed(&build.output).contains("finished"));
    assert!(build.sent_sigterm && !build.sent_sigkill, "{build:?}");
    // The driver saw the SIGTERM; its script's sleep is gone with the whole group.
    let terms: Vec<Value> = log
        .records()
        .into_iter()
        .filter(|r| r["event"] == "TERM")
        .collect();
    // Exactly once: the runner's group kill. leasehold sees that it came from its parent (which
    // always signals the group) and does not forward it again.
    assert!(
        terms.len() == 1 && terms.iter().all(|t| t["cmd"] == "run"),
        "{terms:?}"
    );
    let sleep_pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("the script wrote its sleep's PID")
        .trim()
        .parse()
        .expect("pid");
    assert!(scan::wait_group_gone(build.pgid, Duration::from_secs(3)).is_empty());
    assert!(!alive(sleep_pid), "the job's sleep survived the cancel");

    // Abort: cleanup next, the driver's cleanup first, then the revocation.
    assert_eq!(
        outcome.stage_names()[outcome.stages.len() - 2..],
        ["build_script", "cleanup_exec"]
    );
    assert_eq!(log.commands().last().map(String::as_str), Some("cleanup"));
    let order = positions(
        &outcome.cleanup_output,
        &["fake-driver: cleaning up", "leasehold: revoked token"],
    );
    assert!(
        matches!(order[..], [Some(a), Some(b)] if a < b),
        "{}",
        w.show(&outcome)
    );
    w.assert_tokens_revoked(&outcome);
    w.assert_state_removed(&outcome);
    assert!(w.leaks(&[w.world.dir.path()]).is_empty());
}

#[test]
fn cleanup_runs_the_inner_cleanup_and_revokes_when_prepare_fails() {
    let w = Lab::new();
    w.world.write_config(&fake_driver_tables("env"));
    let runner = w.world.runner();
    let before = w.world.bao.token_accessors();

    // A secret the role may not read: leasehold's prepare fails before the driver's prepare
    // (no environment is started for a job whose secrets fail); cleanup still calls the
    // driver's cleanup, and no token of the job survives.
    let log = DriverLog::in_dir(w.world.dir.path());
    let job = JobBuilder::new()
        .id_token("VAULT_ID_TOKEN", &w.world.issuer.mint(json!({})))
        .secrets_yaml(
            "SECRET:\n  vault: app/ci/password@kv\n  file: false\nFORBIDDEN:\n  vault: other/ci/password@kv\n  file: false\n",
        );
    let outcome = runner.run_job(&job, log.options());
    assert_eq!(
        outcome.result,
        JobResult::BuildFailure { exit_code: 1 },
        "{}",
        w.show(&outcome)
    );
    assert!(
        outcome.log.contains("permission denied"),
        "{}",
        w.show(&outcome)
    );
    assert_eq!(
        outcome.stage_names(),
        ["config_exec", "prepare_exec", "cleanup_exec"]
    );
    assert_eq!(log.commands(), ["config", "cleanup"]);
    assert_eq!(w.world.bao.count_logins("jwt"), 1);
    assert_eq!(
        w.world.bao.token_accessors(),
        before,
        "a token of the job survived"
    );
    w.assert_state_removed(&outcome);

    // The driver's own prepare fails with a system failure: gitlab-runner retries the whole
    // preparation three times, and every attempt's cleanup calls the driver's cleanup, then
    // revokes that attempt's token.
    let log = DriverLog::in_dir(w.world.dir.path());
    let outcome = runner.run_job(&w.job(), log.options().env("FAKE_DRIVER_FAIL_PREPARE", "2"));
    assert!(
        matches!(&outcome.result, JobResult::SystemFailure { reason } if reason == "exit status 2"),
        "{}",
        w.show(&outcome)
    );
    let triple = ["config_exec", "prepare_exec", "cleanup_exec"];
    assert_eq!(outcome.stage_names(), [triple, triple, triple].concat());
    assert_eq!(
        log.commands(),
        ["config", "prepare", "cleanup"].repeat(3),
        "{}",
        w.show(&outcome)
    );
    assert_eq!(w.world.bao.count_logins("jwt"), 1 + 3);
    assert_eq!(w.assert_tokens_revoked(&outcome), 3);
    for cleanup in outcome.stages_named("cleanup_exec") {
        let order = positions(
            &cleanup.output,
            &["fake-driver: cleaning up", "leasehold: revoked token"],
        );
        assert!(
            matches!(order[..], [Some(a), Some(b)] if a < b),
            "{}",
            w.redact(&cleanup.output)
        );
    }
    assert_eq!(
        w.world.bao.token_accessors(),
        before,
        "a token of the job survived"
    );
    w.assert_state_removed(&outcome);
}

// --- the shell executor as another user ------------------------------------------------------

/// The admin's part of `[executor] user`: build and cache dirs the job user can write, and the
/// config; returns `files_dir`.
fn job_user_config(w: &Lab, user: &TestUser) -> PathBuf {
    w.world.hand_build_dirs_to(user.uid, user.gid);
    let files_dir = w.world.path("files");
    w.world.write_config(&format!(
        "[executor]\nuser = {:?}\nfiles_dir = {files_dir:?}\n",
        user.name
    ));
    files_dir
}

#[test]
fn shell_executor_runs_the_job_as_the_configured_user() {
    let user = ensure_user("lh-job", &["lh-job-extra"]);
    let extra_gid = ensure_group("lh-job-extra");
    let w = Lab::new();
    let files_dir = job_user_config(&w, &user);
    let mut script = CHECK_SECRETS.to_vec();
    script.extend([
        r#"echo "ids uid=$(id -u) gid=$(id -g) groups=$(id -G | tr ' ' ,)""#,
        r#"echo "env user=$USER logname=$LOGNAME home=$HOME""#,
        r#"echo "secret-file-owner=$(stat -c %U "$SECRET_FILE")""#,
        r#"ls "$STATE_DIR_PATH" || echo state-dir=unreadable"#,
        r#"if cat "/proc/$PPID/environ" > /dev/null 2>&1; then echo leasehold-environ=readable; else echo leasehold-environ=unreadable; fi"#,
    ]);
    let job = w
        .job()
        .variable("STATE_DIR_PATH", &w.world.state_dir().display().to_string())
        .script(script);
    let outcome = w.world.runner().run_job(&job, RunOptions::new());
    assert_eq!(outcome.result, JobResult::Success, "{}", w.show(&outcome));

    let build = printed(&w.redact(&outcome.stage("build_script").output));
    // uid, gid and every supplementary group, nothing of root's.
    let mut groups: Vec<u32> = value_after(&build, "groups=")
        .expect("groups")
        .split(',')
        .map(|g| g.parse().expect("gid"))
        .collect();
    groups.sort_unstable();
    let mut expected_groups = vec![user.gid, extra_gid];
    expected_groups.sort_unstable();
    assert_eq!(groups, expected_groups, "{build}");
    assert_eq!(
        value_after(&build, "ids uid="),
        Some(user.uid.to_string().as_str())
    );
    assert_eq!(
        value_after(&build, " gid="),
        Some(user.gid.to_string().as_str())
    );
    assert!(
        build.contains(&format!(
            "env user={0} logname={0} home={1}",
            user.name,
            user.home.display()
        )),
        "{build}"
    );
    // It reads its own file secret, in its private dir under files_dir…
    for expected in [
        "secret-env=ok",
        "secret-file=ok",
        "secret-file-mode=600 secret-dir-mode=700",
        &format!("secret-file-owner={}", user.name),
    ] {
        assert!(build.contains(expected), "no {expected} in:\n{build}");
    }
    let file_path = PathBuf::from(value_after(&build, "secret-file-path=").expect("path"));
    assert!(file_path.starts_with(&files_dir), "{file_path:?}");
    // …but neither leasehold's state nor its process environment.
    assert!(
        build.contains("Permission denied") && build.contains("state-dir=unreadable"),
        "{build}"
    );
    assert!(build.contains("leasehold-environ=unreadable"), "{build}");
    assert!(
        outcome.raw_log.contains("echoed: [MASKED]"),
        "{}",
        w.show(&outcome)
    );
    assert!(!outcome.raw_log.contains(&w.planted.secret));

    // Every stage directory is gone, and so is the job's state and token.
    let left = entries(&files_dir);
    assert!(left.is_empty(), "stage dirs left in files_dir: {left:?}");
    assert_eq!(
        std::fs::metadata(&files_dir)
            .expect("files_dir")
            .permissions()
            .mode()
            & 0o7777,
        0o711
    );
    w.assert_tokens_revoked(&outcome);
    w.assert_state_removed(&outcome);
    assert!(w.leaks(&[w.world.dir.path()]).is_empty());
}

#[test]
fn cleanup_removes_the_stage_dirs_of_a_job_user_stage_that_was_killed() {
    let user = ensure_user("lh-job", &["lh-job-extra"]);
    let w = Lab::new();
    let files_dir = job_user_config(&w, &user);
    // The script ignores SIGTERM, so the runner's SIGKILL ends the stage, leasehold included:
    // its stage dir (script copy, file secret) is not removed when the stage ends.
    let job = w.job().script([
        r#"if [ "$(sha256sum < "$SECRET_FILE" | cut -d' ' -f1)" = "$EXPECTED_FILE_SHA256" ]; then echo secret-file=ok; fi"#,
        "trap '' TERM; sleep 30",
    ]);
    let dirs_during = Rc::new(RefCell::new(Vec::new()));
    let seen = dirs_during.clone();
    let (probe_dir, uid) = (files_dir.clone(), user.uid);
    let opts = RunOptions::new()
        .cancel(
            Cancel::abort("build_script", Duration::from_millis(1000))
                .graceful_kill_timeout(Duration::from_millis(500)),
        )
        .while_stage_runs("build_script", Duration::from_millis(300), move |_| {
            wait_for_sleep_of(uid);
            *seen.borrow_mut() = entries(&probe_dir);
        });
    let outcome = w.world.runner().run_job(&job, opts);
    assert_eq!(outcome.result, JobResult::Canceled, "{}", w.show(&outcome));
    let build = outcome.stage("build_script");
    assert!(build.sent_sigkill, "{build:?}");
    assert!(
        printed(&build.output).contains("secret-file=ok"),
        "{}",
        w.show(&outcome)
    );
    assert_eq!(
        dirs_during.borrow().len(),
        1,
        "the stage's dir while it runs: {:?}",
        dirs_during.borrow()
    );
    assert!(scan::wait_group_gone(build.pgid, Duration::from_secs(3)).is_empty());

    let left = entries(&files_dir);
    assert!(
        left.is_empty(),
        "cleanup left the killed stage's dir (with its file secret) in files_dir: {left:?}"
    );
    w.assert_tokens_revoked(&outcome);
    w.assert_state_removed(&outcome);
    assert!(w.leaks(&[w.world.dir.path()]).is_empty());
}

// --- job-chosen names and the driver's environment --------------------------------------------

/// What a job could try to steer a driver with, one KV field each (`kv/app/steer`).
struct Steering {
    /// A file the driver may write (stands in for a root-owned one), and its content.
    victim: PathBuf,
    victim_content: String,
    /// The file `BASH_ENV`'s script would create.
    bash_env_marker: PathBuf,
    /// The file a `PS4` command substitution would create.
    ps4_marker: PathBuf,
    /// `PS4`, `LD_AUDIT` and `APP_TOKEN`'s values.
    ps4: String,
    ld_audit: String,
    app_token: String,
}

impl Steering {
    fn plant(w: &Lab) -> Steering {
        let victim = w.world.dir.path().join("victim");
        let victim_content = format!("victim-{}\n", random_hex(8));
        std::fs::write(&victim, &victim_content).expect("victim");
        let bash_env_marker = w.world.dir.path().join("bash-env-ran");
        let bash_env = w.world.dir.path().join("bash-env.sh");
        std::fs::write(
            &bash_env,
            format!("echo sourced >> {}\n", bash_env_marker.display()),
        )
        .expect("BASH_ENV script");
        let ps4_marker = w.world.dir.path().join("ps4-ran");
        let steering = Steering {
            ps4: format!("$(echo pwned >> {})+ ", ps4_marker.display()),
            ld_audit: format!("/nonexistent/leasehold-audit-{}.so", random_hex(8)),
            app_token: format!("app-token-{}", random_hex(16)),
            victim,
            victim_content,
            bash_env_marker,
            ps4_marker,
        };
        w.world.bao.kv_put(
            "kv",
            2,
            "app/steer",
            json!({
                "victim": steering.victim.display().to_string(),
                "response": steering.victim.display().to_string(),
                "code": "0",
                "shellopts": "xtrace",
                "bash_env": bash_env.display().to_string(),
                "ps4": steering.ps4,
                "ld_audit": steering.ld_audit,
                "app_token": steering.app_token,
            }),
        );
        steering
    }

    /// The values a job may have under names of its own: name, KV field, value.
    fn allowed(&self) -> Vec<(&'static str, &'static str, String)> {
        vec![
            ("PS4", "ps4", self.ps4.clone()),
            ("LD_AUDIT", "ld_audit", self.ld_audit.clone()),
            // The fake driver's own knob: where it appends its records.
            (
                "FAKE_DRIVER_LOG",
                "victim",
                self.victim.display().to_string(),
            ),
            ("APP_TOKEN", "app_token", self.app_token.clone()),
        ]
    }

    /// Asserts that nothing the job chose acted on the host.
    fn assert_untouched(&self, w: &Lab, outcome: &JobOutcome) {
        // Compared, not printed: a driver writing there may have written anything.
        let now = std::fs::read_to_string(&self.victim).expect("victim");
        assert!(
            now == self.victim_content,
            "the victim file was written ({} bytes now)\n{}",
            now.len(),
            w.show(outcome)
        );
        assert!(
            !self.bash_env_marker.exists(),
            "a BASH_ENV script ran\n{}",
            w.show(outcome)
        );
        assert!(
            !self.ps4_marker.exists(),
            "a PS4 command ran\n{}",
            w.show(outcome)
        );
        // SHELLOPTS=xtrace in a bash driver's environment traces the driver into the job log.
        assert!(
            !outcome.raw_log.lines().any(|l| l.starts_with("+ ")),
            "xtrace output in the job log\n{}",
            w.show(outcome)
        );
    }
}

/// A steering job declaring every allowed name ([`Steering::allowed`]), run through the fake
/// driver under the config `tables`, with each driver invocation's environment dumped to
/// `dumps`: what the tests of the driver's environment inspect.
struct SteeringRun {
    w: Lab,
    steering: Steering,
    secrets: Vec<(&'static str, &'static str, String)>,
    log: DriverLog,
    dumps: tempfile::TempDir,
    outcome: JobOutcome,
}

fn steering_run(tables: &str) -> SteeringRun {
    let w = Lab::new();
    let steering = Steering::plant(&w);
    w.world.write_config(tables);
    let log = DriverLog::new();
    let dumps = tempfile::tempdir().expect("dump dir");
    let secrets = steering.allowed();
    let job = steering_job(&w, &secrets, 0);
    let opts = log
        .options()
        .env("FAKE_DRIVER_ENV_DUMP", dumps.path().display().to_string());
    let outcome = w.world.runner().run_job(&job, opts);
    SteeringRun {
        w,
        steering,
        secrets,
        log,
        dumps,
        outcome,
    }
}

/// The job's script saw each secret that reaches a root job under its own name (it printed
/// `<NAME>=ok`).
#[track_caller]
fn assert_script_saw_each(secrets: &[(&str, &str, String)], outcome: &JobOutcome) {
    let build = printed(&outcome.stage("build_script").output);
    for (name, _, _) in secrets
        .iter()
        .filter(|(name, _, _)| reaches_a_root_job(name))
    {
        assert!(build.contains(&format!("{name}=ok")), "{name}: {build}");
    }
}

/// Whether a job running as root sees the environment variable `name`: bash does not import
/// `PS4` from its environment when it runs as root (the tests do), whoever passes it.
fn reaches_a_root_job(name: &str) -> bool {
    name != "PS4" || !nix::unistd::geteuid().is_root()
}

/// Each environment a driver invocation received (`FAKE_DRIVER_ENV_DUMP`): file name, entries.
fn driver_environments(dir: &Path) -> Vec<(String, Vec<(String, String)>)> {
    let mut dumps: Vec<_> = std::fs::read_dir(dir)
        .expect("env dumps")
        .flatten()
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("dump");
            let entries = bytes
                .split(|b| *b == 0)
                .filter(|e| !e.is_empty())
                .map(|e| {
                    let text = String::from_utf8_lossy(e);
                    let (k, v) = text.split_once('=').unwrap_or((&text, ""));
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            (e.file_name().to_string_lossy().into_owned(), entries)
        })
        .collect();
    dumps.sort();
    dumps
}

/// A job declaring `secrets` (name, KV field of `app/steer`) as environment secrets, whose
/// build_script prints `<name>=ok` for each one whose value it sees, then `exit_code`.
fn steering_job(w: &Lab, secrets: &[(&str, &str, String)], exit_code: i32) -> JobBuilder {
    let mut yaml = String::new();
    let mut job = JobBuilder::new().id_token("VAULT_ID_TOKEN", &w.world.issuer.mint(json!({})));
    let mut script = Vec::new();
    for (name, field, value) in secrets {
        yaml.push_str(&format!(
            "{name}:\n  vault: app/steer/{field}@kv\n  file: false\n"
        ));
        job = job.variable(
            &format!("EXPECTED_{name}_SHA256"),
            &sha256_hex(value.as_bytes()),
        );
        script.push(format!(
            r#"if [ "$(printf '%s' "${name}" | sha256sum | cut -d' ' -f1)" = "$EXPECTED_{name}_SHA256" ]; then echo {name}=ok; else echo {name}=MISSING; fi"#
        ));
    }
    script.push(format!("exit {exit_code}"));
    job.secrets_yaml(&yaml).script(script)
}

/// `[executor]` for the fake driver with `inject` left at its default.
fn fake_driver_default_tables() -> String {
    fake_driver_tables("env").replace("inject = \"env\"\n", "")
}

#[test]
fn a_secret_may_not_take_a_name_the_runner_leasehold_or_bash_act_on() {
    let w = Lab::new();
    let steering = Steering::plant(&w);
    w.world.write_config(&fake_driver_tables("env"));
    let custom_runner = w.world.runner();
    for (name, field) in [
        ("BUILD_EXIT_CODE_FILE", "victim"),
        ("JOB_RESPONSE_FILE", "response"),
        ("BUILD_FAILURE_EXIT_CODE", "code"),
        ("SYSTEM_FAILURE_EXIT_CODE", "code"),
        ("SHELLOPTS", "shellopts"),
        ("BASH_ENV", "bash_env"),
        ("LEASEHOLD_STATE_KEY", "app_token"),
    ] {
        let log = DriverLog::new();
        let job = steering_job(&w, &[(name, field, String::new())], 3);
        let outcome = custom_runner.run_job(&job, log.options());
        steering.assert_untouched(&w, &outcome);
        assert_eq!(
            outcome.result,
            JobResult::BuildFailure { exit_code: 1 },
            "{name}\n{}",
            w.show(&outcome)
        );
        let refusal = format!("secret {name}: ");
        let line = outcome
            .log
            .lines()
            .find(|l| l.contains(&refusal))
            .unwrap_or_else(|| panic!("no refusal of {name}\n{}", w.show(&outcome)));
        assert!(line.contains("choose another name"), "{line}");
        // Refused before the driver prepared anything, let alone ran a script.
        assert_eq!(log.commands(), ["config", "cleanup"], "{name}");
    }

    // The same names are refused whatever the executor: the built-in shell too.
    w.world.write_config("");
    let outcome = w.world.runner().run_job(
        &steering_job(&w, &[("BUILD_EXIT_CODE_FILE", "victim", String::new())], 3),
        RunOptions::new(),
    );
    assert_eq!(
        outcome.result,
        JobResult::BuildFailure { exit_code: 1 },
        "{}",
        w.show(&outcome)
    );
    assert!(
        outcome.log.contains("secret BUILD_EXIT_CODE_FILE: "),
        "{}",
        w.show(&outcome)
    );
    steering.assert_untouched(&w, &outcome);
}

#[test]
fn with_inject_env_a_driver_gets_job_chosen_names_only_as_custom_env() {
    let SteeringRun {
        w,
        steering,
        secrets,
        log,
        dumps,
        outcome,
    } = steering_run(&fake_driver_tables("env"));
    assert_eq!(outcome.result, JobResult::Success, "{}", w.show(&outcome));
    steering.assert_untouched(&w, &outcome);

    // The job's script saw every secret under its own name: the driver passed CUSTOM_ENV_<NAME>
    // on to it.
    assert_script_saw_each(&secrets, &outcome);

    // The driver's own environment: every run invocation's, apart from CUSTOM_ENV_*, is the
    // same as prepare_script's (which gets no secrets); no job-chosen name replaced or added a
    // variable; the secrets are there only as CUSTOM_ENV_<NAME> in the stages they are for.
    let environments = driver_environments(dumps.path());
    let runs: Vec<_> = environments
        .iter()
        .filter(|(file, _)| file.starts_with("run-"))
        .collect();
    assert_eq!(runs.len(), outcome.run_stage_names().len());
    let own = |entries: &[(String, String)]| -> Vec<(String, String)> {
        let mut own: Vec<_> = entries
            .iter()
            .filter(|(k, _)| !k.starts_with("CUSTOM_ENV_"))
            .cloned()
            .collect();
        own.sort();
        own
    };
    let (_, reference) = runs
        .iter()
        .find(|(file, _)| file.starts_with("run-prepare_script-"))
        .expect("prepare_script's environment");
    for (file, entries) in &environments {
        if file.starts_with("run-") {
            let (mine, theirs) = (own(entries), own(reference));
            let differ: Vec<&str> = mine
                .iter()
                .filter(|e| !theirs.contains(e))
                .chain(theirs.iter().filter(|e| !mine.contains(e)))
                .map(|(k, _)| k.as_str())
                .collect();
            assert!(
                differ.is_empty(),
                "{file}: {differ:?} differ from prepare_script's"
            );
        }
        let get = |name: &str| entries.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        assert!(
            get("FAKE_DRIVER_LOG") == Some(&log.path.display().to_string()),
            "{file}: the driver's own FAKE_DRIVER_LOG was replaced"
        );
        for (name, _, value) in &secrets {
            if *name != "FAKE_DRIVER_LOG" {
                assert!(get(name).is_none(), "{file}: {name} is set");
            }
            for (k, v) in entries {
                if v == value {
                    assert!(
                        k == &format!("CUSTOM_ENV_{name}") && file.starts_with("run-build_script-"),
                        "{file}: {name}'s value in {k}"
                    );
                }
            }
        }
        if file.starts_with("run-build_script-") {
            for (name, _, value) in &secrets {
                assert!(
                    get(&format!("CUSTOM_ENV_{name}")) == Some(value),
                    "{file}: no CUSTOM_ENV_{name}"
                );
            }
        }
    }
    w.assert_tokens_revoked(&outcome);
    w.assert_state_removed(&outcome);
}

#[test]
fn a_custom_driver_gets_secrets_through_the_script_by_default() {
    let SteeringRun {
        w,
        steering,
        secrets,
        log,
        dumps,
        outcome,
    } = steering_run(&fake_driver_default_tables());
    assert_eq!(outcome.result, JobResult::Success, "{}", w.show(&outcome));
    steering.assert_untouched(&w, &outcome);
    assert_script_saw_each(&secrets, &outcome);

    // No value is in any environment the driver got, under any name: the driver was handed a
    // wrapper script (not the runner's) that exports them.
    for (file, entries) in driver_environments(dumps.path()) {
        for (name, _, value) in &secrets {
            assert!(
                !entries.iter().any(|(_, v)| v == value),
                "{file}: {name}'s value in the driver's environment"
            );
        }
    }
    let stage = outcome.stage("build_script");
    let call = log
        .invocations()
        .into_iter()
        .find(|c| c["argv"].as_array().and_then(|a| a.last()) == Some(&json!("build_script")))
        .expect("build_script's run");
    let script = call["argv"][2].as_str().expect("script").to_owned();
    assert_ne!(Some(Path::new(&script)), stage.script.as_deref());
    assert!(script.ends_with("/wrapper.sh"), "{script}");
    assert!(
        !Path::new(&script).exists(),
        "the wrapper outlived its stage"
    );
    w.assert_tokens_revoked(&outcome);
    w.assert_state_removed(&outcome);
}
