//! Isolation between jobs on one runner host (issue 11.4), written as the attack: job A runs
//! with a secret and waits; meanwhile job B's script harvests everything it can read of
//! other processes (`/proc/*/environ`), of the state dir and of A's build dir, and the test
//! looks for A's state key, A's Vault token and A's secret in what B got.
//!
//! - the packaged default config (`executor-config/config.toml`: one static unprivileged job
//!   user) keeps A's state key and token from B, but not A's live secret (same uid): the
//!   trade-off docs/security.md states;
//! - `[executor] user_pool` keeps all of it from B, A's build dir included, and ends what A
//!   left running;
//! - leasehold as root without a job user refuses to run the job, before any Vault login;
//! - concurrent prepares never share a pool uid, and a full pool says so;
//! - a project dir that escapes builds_dir (`..`, a planted symlink) is refused, and nothing
//!   outside is created or chowned.
//!
//! Each test has a uid range of its own: a pool's sweep SIGKILLs every process of a uid it hands
//! out, so two tests must never share one.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::{job_state_of, leasehold_bin, world};
use leasehold_test_kit::sshd::ensure_user;
use leasehold_test_kit::world::World;
use leasehold_test_kit::{JobBuilder, JobOutcome, JobResult, RunOptions, scan, wait_for};

/// The runner's short token in the emulator: project dirs are `builds/<token>/0/<path>`.
const SHORT_TOKEN: &str = "t3stRunr";

/// What a root observer recovered from A's leasehold run process while A ran.
#[derive(Debug, Clone, Default)]
struct Recovered {
    state_key: String,
    token: String,
    project_dir: String,
}

struct Lab {
    world: World,
    secret: String,
    /// A dir every job user may write: the harvest and the jobs' markers.
    shared: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        // Job users must be able to reach builds_dir and files_dir below the temp root.
        let world = world()
            .policy(&[r#"path "secret/data/ci/app" { capabilities = ["read"] }"#])
            .dir_mode(0o755)
            .start();
        let secret = format!("isolation-secret-{}", leasehold_test_kit::random_hex(12));
        world
            .bao
            .kv_put("secret", 2, "ci/app", json!({ "password": secret }));
        let shared = world.path("shared");
        std::fs::create_dir(&shared).expect("mkdir shared");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777))
            .expect("chmod shared");
        Lab {
            world,
            secret,
            shared,
        }
    }

    fn pool_config(&self, range: &str) -> PathBuf {
        self.world.write_config_text(&format!(
            "{}[executor]\nuser_pool = \"{range}\"\nfiles_dir = {:?}\n",
            self.world.base_config(),
            self.world.path("files")
        ))
    }

    /// Job A: its secret in its environment and in a file in its project dir; it says it is
    /// ready and waits for the test's release (at most a minute).
    fn job_a(&self, id: i64, project: &str, extra: &[&str]) -> JobBuilder {
        let mut script = vec![
            r#"echo "a-uid=$(id -u)""#.to_owned(),
            r#"printf '%s' "$A_SECRET" > "$CI_PROJECT_DIR/leftover.txt""#.to_owned(),
        ];
        script.extend(extra.iter().map(|s| (*s).to_owned()));
        script.push(format!(
            "touch {0}/a-ready; for i in $(seq 600); do [ -e {0}/release ] && break; sleep 0.1; done",
            self.shared.display()
        ));
        self.world
            .job()
            .id(id)
            .project(7001, project)
            .secrets_yaml("A_SECRET:\n  vault: ci/app/password@secret\n  file: false\n")
            .script(script)
    }

    /// Job B, the attacker: copies every other process's environment, every file of the state
    /// dir and every file of A's project dir it can read into the shared harvest file.
    fn job_b(&self, a_project_dir: &str) -> JobBuilder {
        let harvest = self.shared.join("harvest");
        self.world
            .job()
            .id(7002)
            .project(7002, "grp/beta")
            .variable("A_PROJECT_DIR", a_project_dir)
            .variable("STATE_DIR", &self.world.state_dir().display().to_string())
            .variable("HARVEST", &harvest.display().to_string())
            .script([
                r#"echo "b-uid=$(id -u)""#,
                r#"for f in /proc/[0-9]*/environ; do cat "$f" 2>/dev/null | tr '\0' '\n' >> "$HARVEST" || true; done"#,
                r#"find "$STATE_DIR" "$A_PROJECT_DIR" -type f -exec cat {} + >> "$HARVEST" 2>/dev/null || true"#,
                r#"if cat "$A_PROJECT_DIR/leftover.txt" > /dev/null 2>&1; then echo a-leftover=readable; else echo a-leftover=unreadable; fi"#,
                r#"echo "harvested $(wc -c < "$HARVEST") bytes""#,
            ])
    }

    /// Runs A in a thread (recovering its state key, token and project dir as root, the way
    /// only root can, while it waits), then B, then releases A. Returns A's outcome, B's
    /// outcome, what was recovered of A, and B's harvest.
    fn attack(&self, a: JobBuilder) -> (JobOutcome, JobOutcome, Recovered, String) {
        let recovered = Arc::new(Mutex::new(None::<Recovered>));
        let sink = Arc::clone(&recovered);
        let (runner_a, state_dir) = (self.world.runner(), self.world.state_dir());
        let a_thread = std::thread::spawn(move || {
            let opts = RunOptions::new().while_stage_runs(
                "build_script",
                Duration::from_millis(300),
                move |pgid| {
                    *sink.lock().expect("lock") = Some(recover(pgid, &state_dir));
                },
            );
            runner_a.run_job(&a, opts)
        });
        let ready = self.shared.join("a-ready");
        let found = wait_for("job A to be ready", Duration::from_secs(60), || {
            let found = recovered.lock().expect("lock").clone()?;
            ready.exists().then_some(found)
        });
        let b = self
            .world
            .runner()
            .run_job(&self.job_b(&found.project_dir), RunOptions::new());
        std::fs::write(self.shared.join("release"), "").expect("release A");
        let a = a_thread.join().expect("job A's thread");
        let harvest = std::fs::read(self.shared.join("harvest")).unwrap_or_default();
        let harvest = String::from_utf8_lossy(&harvest).into_owned();
        (a, b, found, harvest)
    }
}

/// A's state key, Vault token and project dir, read as root from its leasehold run process
/// (`pgid`): its environment holds the state id, the key and the job's variables.
fn recover(pgid: u32, state_dir: &Path) -> Recovered {
    use secrecy::ExposeSecret;
    let var = |name: &str| {
        scan::environ_var(pgid, name)
            .unwrap_or_else(|| panic!("{name} is not in A's leasehold environment"))
    };
    let state_key = var("LEASEHOLD_STATE_KEY");
    let sealed = job_state_of(pgid, state_dir);
    Recovered {
        state_key,
        token: sealed.sessions[0].token.expose_secret().to_owned(),
        project_dir: var("CUSTOM_ENV_CI_PROJECT_DIR"),
    }
}

/// The value after the last `key` in a job's build_script output (the first is the echoed
/// command).
fn printed<'a>(outcome: &'a JobOutcome, key: &str) -> Option<&'a str> {
    let out = &outcome.stage("build_script").output;
    let at = out.rfind(key)? + key.len();
    out[at..].split_whitespace().next()
}

/// The live processes whose real uid is `uid`.
fn processes_of(uid: u32) -> Vec<u32> {
    leasehold_test_kit::scan::pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                let live = !s
                    .lines()
                    .any(|l| l.starts_with("State:") && l.contains('Z'));
                let ours = s
                    .lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|ids| ids.split_whitespace().next())
                    == Some(uid.to_string().as_str());
                live && ours
            })
        })
        .collect()
}

/// Seat files left in the pool dir (the pool lock aside).
fn seats(lab: &Lab) -> Vec<String> {
    std::fs::read_dir(lab.world.state_dir().join("user-pool"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".lock")
                .collect()
        })
        .unwrap_or_default()
}

/// The packaged config (`executor-config/config.toml`) pointed at this lab: its paths and Vault
/// server replaced, its job user (when it names one) replaced by the test's account.
fn packaged_config(lab: &Lab, user: &str) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("executor-config/config.toml"),
    )
    .expect("the packaged config");
    let replace = [
        ("state_dir = ", format!("{:?}", lab.world.state_dir())),
        ("builds_dir = ", format!("{:?}", lab.world.path("builds"))),
        ("cache_dir = ", format!("{:?}", lab.world.path("cache"))),
        ("address = ", format!("{:?}", lab.world.bao.addr())),
        ("role = ", "\"ci\"".to_owned()),
        ("files_dir = ", format!("{:?}", lab.world.path("files"))),
        ("user = ", format!("{user:?}")),
    ];
    let mut seen = Vec::new();
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            match replace
                .iter()
                .find(|(key, _)| line.starts_with(key) && !seen.contains(key))
            {
                Some((key, value)) => {
                    seen.push(*key);
                    format!("{key}{value}")
                }
                None => line.to_owned(),
            }
        })
        .collect();
    for key in [
        "state_dir = ",
        "builds_dir = ",
        "cache_dir = ",
        "address = ",
        "role = ",
    ] {
        assert!(seen.contains(&key), "the packaged config has no {key}…");
    }
    lines.join("\n") + "\n"
}

#[test]
fn under_the_packaged_config_a_concurrent_job_finds_no_state_key_or_token_of_another() {
    let user = ensure_user("lh-job", &[]);
    let lab = Lab::new();
    lab.world.hand_build_dirs_to(user.uid, user.gid);
    lab.world
        .write_config_text(&packaged_config(&lab, &user.name));
    let (a, b, found, harvest) = lab.attack(lab.job_a(7001, "grp/alpha", &[]));
    assert!(a.is_success(), "A: {:?}\n{}", a.result, a.raw_log);
    assert!(b.is_success(), "B: {:?}\n{}", b.result, b.raw_log);
    assert!(harvest.len() > 1000, "B harvested {} bytes", harvest.len());
    assert!(
        !harvest.contains(&found.state_key),
        "job B read job A's state key"
    );
    assert!(
        !harvest.contains(&found.token),
        "job B read job A's Vault token"
    );
    assert_eq!(printed(&a, "a-uid="), Some(user.uid.to_string().as_str()));
    // The trade-off of one static user (docs/security.md): B runs as the same uid as A's
    // script, so it can read A's live secret from A's process environment and A's files.
    assert!(
        harvest.contains(&lab.secret),
        "a static job user was expected to expose A's live secret to B (same uid); if that changed, update docs/security.md"
    );
    assert!(
        !lab.world.bao.token_valid(&found.token),
        "A's token was revoked"
    );
}

#[test]
fn with_the_user_pool_a_concurrent_job_reads_nothing_of_another_and_nothing_outlives_a_job() {
    let lab = Lab::new();
    lab.pool_config("61000-61003");
    // A also leaves a process behind that escapes its process group.
    let a = lab.job_a(
        7001,
        "grp/alpha",
        &["setsid sleep 300 < /dev/null > /dev/null 2>&1 &"],
    );
    let (a, b, found, harvest) = lab.attack(a);
    assert!(a.is_success(), "A: {:?}\n{}", a.result, a.raw_log);
    assert!(b.is_success(), "B: {:?}\n{}", b.result, b.raw_log);
    assert!(harvest.len() > 100, "B harvested {} bytes", harvest.len());
    for (what, needle) in [
        ("state key", &found.state_key),
        ("Vault token", &found.token),
        ("secret", &lab.secret),
    ] {
        assert!(
            !harvest.contains(needle.as_str()),
            "job B read job A's {what}"
        );
    }
    assert!(
        b.stage("build_script")
            .output
            .contains("a-leftover=unreadable"),
        "{}",
        b.raw_log
    );
    let uid_a: u32 = printed(&a, "a-uid=")
        .expect("A's uid")
        .parse()
        .expect("uid");
    let uid_b: u32 = printed(&b, "b-uid=")
        .expect("B's uid")
        .parse()
        .expect("uid");
    assert_ne!(uid_a, uid_b, "the two jobs got the same uid");
    for uid in [uid_a, uid_b] {
        assert!((61000..=61003).contains(&uid), "{uid}");
    }
    assert!(a.raw_log.contains(&format!(
        "leasehold: the job runs as uid {uid_a} of the user pool"
    )));
    let project = PathBuf::from(&found.project_dir);
    assert_eq!(
        project,
        lab.world
            .path("builds")
            .join(SHORT_TOKEN)
            .join("0/grp/alpha")
    );
    // After cleanup: A's project dir, its .tmp and every HOME are gone, its background process
    // is dead, every uid is free again, its token revoked.
    assert!(!project.exists(), "A's project dir is left");
    assert!(!PathBuf::from(format!("{}.tmp", found.project_dir)).exists());
    let files: Vec<_> = std::fs::read_dir(lab.world.path("files"))
        .expect("files_dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(files.is_empty(), "left in files_dir: {files:?}");
    assert_eq!(processes_of(uid_a), Vec::<u32>::new(), "A left a process");
    assert_eq!(seats(&lab), Vec::<String>::new());
    assert!(
        a.cleanup_output
            .contains(&format!("gave back pool uid {uid_a}"))
    );
    assert!(
        !lab.world.bao.token_valid(&found.token),
        "A's token was revoked"
    );
    assert!(
        lab.world
            .leftover_states()
            .iter()
            .all(|p| p.ends_with("user-pool"))
    );
}

#[test]
fn as_root_without_a_job_user_the_job_is_refused_before_any_vault_login() {
    let lab = Lab::new();
    // The quick start's config: only [vault].
    let config = lab.world.write_config_text(&lab.world.base_config());
    let job = lab
        .world
        .job()
        .secrets_yaml("A_SECRET:\n  vault: ci/app/password@secret\n  file: false\n")
        .script(["id -u"]);
    let outcome = lab.world.runner().run_job(&job, RunOptions::new());
    let refusal = "refusing to run the job as root: leasehold runs as root and [executor] names no job user, so every job could read every other job's secrets; set [executor] user (e.g. \"gitlab-runner\") or user_pool, or allow_root = true to accept that";
    assert!(
        matches!(outcome.result, JobResult::SystemFailure { .. }),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    assert!(outcome.raw_log.contains(refusal), "{}", outcome.raw_log);
    assert!(outcome.try_stage("build_script").is_none());
    assert_eq!(lab.world.bao.count_logins("jwt"), 0, "prepare logged in");
    // run refuses too (a job whose prepare ran under another config).
    let run = std::process::Command::new(leasehold_bin())
        .args(["--config".as_ref(), config.as_os_str(), "run".as_ref()])
        .args(["/dev/null", "build_script"])
        .env("SYSTEM_FAILURE_EXIT_CODE", "2")
        .output()
        .expect("run");
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(
        String::from_utf8_lossy(&run.stderr).contains(refusal),
        "{run:?}"
    );
    // With the opt-in, it runs as root.
    lab.world.write_config_text(&format!(
        "{}[executor]\nallow_root = true\n",
        lab.world.base_config()
    ));
    let outcome = lab.world.runner().run_job(&job, RunOptions::new());
    assert!(outcome.is_success(), "{}", outcome.raw_log);
    assert!(
        outcome
            .stage("build_script")
            .output
            .lines()
            .any(|l| l.trim() == "0"),
        "{}",
        outcome.raw_log
    );
}

#[test]
fn concurrent_prepares_never_share_a_pool_uid_and_a_full_pool_is_a_system_failure() {
    let lab = Lab::new();
    lab.pool_config("61010-61013");
    let release = lab.shared.join("release");
    let holders: Vec<_> = (0..4)
        .map(|n| {
            let job = lab
                .world
                .job()
                .id(7100 + n)
                .project(7100 + n, &format!("grp/p{n}"))
                .secrets_yaml("A_SECRET:\n  vault: ci/app/password@secret\n  file: false\n")
                .script([
                    format!("id -u > {}/uid-{n}", lab.shared.display()),
                    format!(
                        "for i in $(seq 600); do [ -e {} ] && break; sleep 0.1; done",
                        release.display()
                    ),
                ]);
            let runner = lab.world.runner();
            std::thread::spawn(move || runner.run_job(&job, RunOptions::new()))
        })
        .collect();
    let uid_files: Vec<PathBuf> = (0..4)
        .map(|n| lab.shared.join(format!("uid-{n}")))
        .collect();
    wait_for(
        "four jobs holding a uid each",
        Duration::from_secs(90),
        || {
            uid_files
                .iter()
                .all(|f| std::fs::read_to_string(f).is_ok_and(|t| t.ends_with('\n')))
                .then_some(())
        },
    );
    let logins = lab.world.bao.count_logins("jwt");
    let fifth = lab
        .world
        .job()
        .id(7199)
        .project(7199, "grp/p9")
        .secrets_yaml("A_SECRET:\n  vault: ci/app/password@secret\n  file: false\n");
    let full = lab.world.runner().run_job(&fifth, RunOptions::new());
    std::fs::write(&release, "").expect("release");
    let outcomes: Vec<JobOutcome> = holders
        .into_iter()
        .map(|h| h.join().expect("job thread"))
        .collect();

    assert!(
        matches!(full.result, JobResult::SystemFailure { .. }),
        "{:?}\n{}",
        full.result,
        full.raw_log
    );
    assert!(full.raw_log.contains("every uid of [executor] user_pool 61010-61013 (4 uids) is held by a running job; the runner will retry this job; widen user_pool or lower gitlab-runner's concurrent"), "{}", full.raw_log);
    assert_eq!(
        lab.world.bao.count_logins("jwt"),
        logins,
        "the refused job logged in"
    );
    for outcome in &outcomes {
        assert!(outcome.is_success(), "{}", outcome.raw_log);
    }
    let mut uids: Vec<u32> = uid_files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .expect("uid")
                .trim()
                .parse()
                .expect("number")
        })
        .collect();
    uids.sort_unstable();
    assert_eq!(uids, [61010, 61011, 61012, 61013], "uids were shared");
    assert_eq!(seats(&lab), Vec::<String>::new());
    // Every uid is free again.
    let again = lab.world.runner().run_job(&fifth, RunOptions::new());
    assert!(again.is_success(), "{}", again.raw_log);
}

#[test]
fn a_project_dir_outside_builds_dir_is_refused_and_nothing_outside_is_touched() {
    let lab = Lab::new();
    lab.pool_config("61020-61021");
    let slot = lab.world.path("builds").join(SHORT_TOKEN).join("0");
    std::fs::create_dir_all(&slot).expect("mkdir slot");
    let victim = lab.world.path("victim");
    std::fs::create_dir(&victim).expect("victim");
    std::fs::write(victim.join("keep"), "untouched").expect("write");
    let victim_state = |v: &Path| {
        let meta = std::fs::metadata(v).expect("victim");
        (meta.uid(), meta.gid(), meta.mode() & 0o7777)
    };
    let before = victim_state(&victim);
    let job = |project: &str| {
        lab.world
            .job()
            .project(7300, project)
            .secrets_yaml("A_SECRET:\n  vault: ci/app/password@secret\n  file: false\n")
            .script(["id -u"])
    };
    let run = |project: &str| lab.world.runner().run_job(&job(project), RunOptions::new());

    // `..` out of builds_dir: the job's own input, a build failure.
    let outcome = run("grp/../../../../victim");
    assert!(
        matches!(outcome.result, JobResult::BuildFailure { .. }),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    assert!(
        outcome.raw_log.contains("is not strictly below builds_dir"),
        "{}",
        outcome.raw_log
    );

    // A symlink planted on the way: the host's builds dir is unsafe, a system failure.
    std::os::unix::fs::symlink(&victim, slot.join("grp")).expect("plant");
    let outcome = run("grp/proj");
    assert!(
        matches!(outcome.result, JobResult::SystemFailure { .. }),
        "{:?}\n{}",
        outcome.result,
        outcome.raw_log
    );
    assert!(
        outcome
            .raw_log
            .contains("it is a symlink or not a directory"),
        "{}",
        outcome.raw_log
    );
    assert_eq!(
        lab.world.bao.count_logins("jwt"),
        0,
        "a refused job logged in"
    );

    // A symlink planted in place of the project dir is a leftover: removed, never followed.
    std::fs::create_dir(slot.join("grp3")).expect("mkdir");
    std::os::unix::fs::symlink(&victim, slot.join("grp3/proj")).expect("plant");
    let outcome = run("grp3/proj");
    assert!(outcome.is_success(), "{}", outcome.raw_log);

    let entries: Vec<_> = std::fs::read_dir(&victim)
        .expect("victim")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(entries, ["keep"], "something was created in the victim dir");
    assert_eq!(
        std::fs::read_to_string(victim.join("keep")).expect("keep"),
        "untouched"
    );
    assert_eq!(
        victim_state(&victim),
        before,
        "the victim dir was chowned or chmodded"
    );
    let keep = std::fs::metadata(victim.join("keep")).expect("keep");
    assert_eq!((keep.uid(), keep.gid()), (0, 0));
    assert_eq!(seats(&lab), Vec::<String>::new());
}

#[test]
fn the_uid_of_a_crashed_job_comes_back_through_reap_or_a_later_prepare_with_nothing_of_it_left() {
    let lab = Lab::new();
    let token_file = lab.world.path("reaper-token");
    std::fs::write(&token_file, lab.world.bao.root_token()).expect("token file");
    // One uid only; a job is over one second after its (1 s) timeout.
    let config = lab.world.write_config_text(&format!(
        "{}[executor]\nuser_pool = \"61030-61030\"\nfiles_dir = {:?}\n\n[leases]\nreap_grace_seconds = 0\n\n[reaper]\ntoken_file = {token_file:?}\n",
        lab.world.base_config(),
        lab.world.path("files")
    ));
    let crash = |id: i64, project: &str| {
        let job = lab
            .world
            .job()
            .id(id)
            .project(id, project)
            .timeout(1)
            .secrets_yaml("A_SECRET:\n  vault: ci/app/password@secret\n  file: false\n")
            .script([
                r#"printf '%s' "$A_SECRET" > "$CI_PROJECT_DIR/leftover.txt""#,
                "setsid sleep 300 < /dev/null > /dev/null 2>&1 &",
                "sleep 60",
            ]);
        let outcome = lab.world.runner().run_job(
            &job,
            RunOptions::new()
                .job_timeout(Duration::from_secs(60))
                .kill_without_cleanup("build_script", Duration::from_millis(1500)),
        );
        assert_eq!(outcome.result, JobResult::Crashed, "{}", outcome.raw_log);
        let project = lab
            .world
            .path("builds")
            .join(SHORT_TOKEN)
            .join("0")
            .join(project);
        assert!(project.join("leftover.txt").exists(), "{}", outcome.raw_log);
        assert_eq!(processes_of(61030).len(), 1, "the background process runs");
        assert_eq!(seats(&lab), ["61030"]);
        project
    };
    // Each reap finds a job whose cleanup never ran: a finding, exit status 1.
    let reap = || {
        let out = std::process::Command::new(leasehold_bin())
            .args(["--config".as_ref(), config.as_os_str(), "reap".as_ref()])
            .output()
            .expect("reap");
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // The reaper gives the uid of a job that is over back: processes ended, dirs removed.
    let project = crash(7401, "grp/crashed");
    std::thread::sleep(Duration::from_millis(2100));
    let report = reap();
    assert!(report.contains("gave back pool uid 61030"), "{report}");
    assert!(report.contains("1 reaped"), "{report}");
    assert!(!project.exists(), "the crashed job's project dir is left");
    assert_eq!(processes_of(61030), Vec::<u32>::new());
    assert_eq!(seats(&lab), Vec::<String>::new());

    // A later prepare takes over the uid of a crashed job that is over, the same way.
    let project = crash(7402, "grp/crashed-again");
    std::thread::sleep(Duration::from_millis(2100));
    let next = lab
        .world
        .job()
        .id(7403)
        .project(7403, "grp/next")
        .script(["id -u", "ls ~ | wc -l"]);
    let outcome = lab.world.runner().run_job(&next, RunOptions::new());
    assert!(outcome.is_success(), "{}", outcome.raw_log);
    assert!(
        outcome.raw_log.contains(
            "the job runs as uid 61030 of the user pool, taken back from a job that is over"
        ),
        "{}",
        outcome.raw_log
    );
    assert!(!project.exists(), "the crashed job's project dir is left");
    assert_eq!(processes_of(61030), Vec::<u32>::new());
    // The crashed job's state is still there for the reaper, which revokes its token.
    let report = reap();
    assert!(report.contains("1 reaped"), "{report}");
    assert!(!report.contains("gave back"), "{report}");
    assert_eq!(seats(&lab), Vec::<String>::new());
}
