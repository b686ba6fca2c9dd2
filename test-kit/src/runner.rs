//! A gitlab-runner emulator: drives any custom-executor driver through the protocol the real
//! runner follows (reference `gitlab-runner-custom-executor.md` §1, §2, §4, §5, §8).
//!
//! What it reproduces:
//! - **Order** (§1): native `secrets:` resolution (only when the job has a `secrets` block) →
//!   per attempt [new temp dir `custom-executor*` with `response.json` (0600) → `config_exec` →
//!   builds/cache dir check → `prepare_exec`], up to 3 attempts with `cleanup_exec` after each
//!   failed one (a build failure, i.e. exit 1, is not retried) → `run_exec` sub-stages
//!   `prepare_script`, `get_sources` (+ `clear_worktree` before a 2nd attempt),
//!   `restore_cache`, `download_artifacts`, `build_script`, `step_<name>`, `after_script`,
//!   `archive_cache[_on_failure]`, `upload_artifacts_on_success|_on_failure`,
//!   `cleanup_file_variables`, with the runner's skip rules (§1.2, §1.4) → `cleanup_exec` →
//!   the temp dir is removed.
//! - **argv**: `exec [args…]`; `run_exec [run_args…] <script> <stage>`.
//! - **cwd = TMPDIR = the attempt's temp dir**; every stage script in a fresh `script*/script`
//!   (0700) generated like the runner's bash shell (§5, see `shell.rs`).
//! - **Environment** (§2): the test process's environment (or only `PATH` with
//!   [`RunOptions::env_clear`]) plus [`RunOptions::extra_env`], then `TMPDIR`,
//!   `BUILD_FAILURE_EXIT_CODE=1`, `SYSTEM_FAILURE_EXIT_CODE=2`, `BUILD_EXIT_CODE_FILE`,
//!   `JOB_RESPONSE_FILE`, then `job_env` from config (not for config itself), then
//!   `CUSTOM_ENV_<key>=<expanded value>` for every variable of the job (predefined, runner-computed
//!   `CI_BUILDS_DIR`/`CI_PROJECT_DIR`/…, payload, resolved native secrets; file variables as their
//!   content) and `CUSTOM_ENV_CI_JOB_SERVICES`. The last duplicate wins.
//! - **Exit codes** (§4): 0 ok; 1 build failure (exit code from the first line of
//!   `BUILD_EXIT_CODE_FILE` when present; the file is never cleared); 2 system failure; anything
//!   else, a signal death included (-1), is an unknown (system) failure.
//! - **Process groups and kills**: each exec runs in its own process group; cancel, abort and the
//!   job timeout send SIGTERM to the group, SIGKILL after the graceful timeout (§4).
//! - **Output** (§2): the job log holds the runner's lines and prepare/run stdout+stderr (and
//!   config stderr) interleaved as they arrive; config stdout is parsed, never logged; cleanup
//!   output goes to [`JobOutcome::cleanup_output`] only. [`JobOutcome::log`] is masked like
//!   GitLab's trace (every masked variable's value, ID tokens and native secrets included, becomes
//!   `[MASKED]`); [`JobOutcome::raw_log`] and the per-stage transcripts are not masked.
//!
//! Deliberate differences, to keep tests fast and bounded:
//! - the pause between prepare attempts is [`RunOptions::prepare_retry_pause`] (default 0, the
//!   runner waits 3 s) and stage retries (`GET_SOURCES_ATTEMPTS`, …) have no backoff;
//! - the default graceful kill timeout is [`Runner::graceful_kill_timeout`] (10 s, the runner's is
//!   10 min), force kill 10 s as in the runner;
//! - every exec also has a safety timeout ([`Runner::stage_timeout`], 120 s) handled like a job
//!   timeout, and pipes still held open by a leftover grandchild are abandoned after
//!   [`Runner::pipe_drain_timeout`] (the real runner would hang) and flagged in
//!   [`StageRecord::pipes_held_open`];
//! - the stage bodies of non-user stages only echo what they would do (get_sources creates the
//!   project dir, or clones [`super::JobBuilder::repo_url`] with git when set), there is no
//!   cache or artifact transfer; there is no token-prefix masking.
//!
//! ```ignore
//! // leasehold itself, or any driver (`Runner::with_driver`, `Runner::empty().run_exec(…)`):
//! let runner = Runner::new(leasehold_bin(), &config_path);
//! let job = JobBuilder::new().script(["exit 42"]).after_script(["echo bye"]);
//! let outcome = runner.run_job(&job, RunOptions::new().env("RUST_LOG", "debug"));
//! assert_eq!(outcome.result, JobResult::BuildFailure { exit_code: 42 });
//! assert_eq!(outcome.stage("build_script").build_exit_code, Some(42));
//! assert!(outcome.stage("after_script").output.contains("bye"));
//! assert!(!outcome.log.contains(secret));          // masked by leasehold, not the runner
//!
//! // Interrupt a stage, or look at its processes while it runs:
//! let opts = RunOptions::new()
//!     .cancel(Cancel::abort("build_script", Duration::from_secs(1)))
//!     .while_stage_runs("build_script", Duration::from_millis(500), |pgid| {
//!         assert!(scan::environs_containing(secret, &[]).is_empty());
//!     });
//! ```

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Map, Value, json};

use super::job::{JobBuilder, Variable};
use super::shell::ScriptBody;

/// One executable with its fixed arguments, like `run_exec` + `run_args`.
#[derive(Clone, Debug)]
pub struct Exec {
    /// The program.
    pub program: PathBuf,
    /// Arguments before the ones the runner appends.
    pub args: Vec<String>,
}

impl Exec {
    /// An exec with its arguments.
    pub fn new<S: Into<String>>(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = S>,
    ) -> Exec {
        Exec {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

/// The emulated runner: `[runners.custom]` plus the `[[runners]]` settings that matter.
#[derive(Clone, Debug)]
pub struct Runner {
    /// `config_exec` + `config_args` (`None`: not run).
    pub config_exec: Option<Exec>,
    /// `prepare_exec` + `prepare_args` (`None`: not run).
    pub prepare_exec: Option<Exec>,
    /// `run_exec` + `run_args` (mandatory: `None` fails the job like the runner does).
    pub run_exec: Option<Exec>,
    /// `cleanup_exec` + `cleanup_args` (`None`: not run).
    pub cleanup_exec: Option<Exec>,
    /// `[[runners]] builds_dir` (config_exec's `builds_dir` replaces it).
    pub builds_dir: Option<String>,
    /// `[[runners]] cache_dir` (config_exec's `cache_dir` replaces it).
    pub cache_dir: Option<String>,
    /// `[[runners]] environment` (`KEY=VALUE`), part of every job's variables.
    pub environment: Vec<(String, String)>,
    /// `CI_RUNNER_SHORT_TOKEN`.
    pub short_token: String,
    /// `[[runners]] url` (upload_artifacts stages are skipped when empty).
    pub url: String,
    /// Wait after SIGTERM before SIGKILL on timeout/abort (10 s here; the runner's default is 10 min).
    pub graceful_kill_timeout: Duration,
    /// Wait after SIGKILL before giving up on a process (10 s, as the runner).
    pub force_kill_timeout: Duration,
    /// Safety net: an exec running longer is treated like a job timeout (default 120 s).
    pub stage_timeout: Duration,
    /// How long to wait for stdout/stderr EOF after an exec exits (default 5 s).
    pub pipe_drain_timeout: Duration,
}

impl Runner {
    /// No execs configured (set them with the builder methods).
    pub fn empty() -> Runner {
        Runner {
            config_exec: None,
            prepare_exec: None,
            run_exec: None,
            cleanup_exec: None,
            builds_dir: None,
            cache_dir: None,
            environment: Vec::new(),
            short_token: "t3stRunr".into(),
            url: "https://gitlab.example.com".into(),
            graceful_kill_timeout: Duration::from_secs(10),
            force_kill_timeout: Duration::from_secs(10),
            stage_timeout: Duration::from_secs(120),
            pipe_drain_timeout: Duration::from_secs(5),
        }
    }

    /// leasehold as gitlab-runner is configured to run it:
    /// `<bin> --config <config> config|prepare|run|cleanup`.
    pub fn new(leasehold_bin: impl AsRef<Path>, config_path: impl AsRef<Path>) -> Runner {
        let bin = leasehold_bin.as_ref();
        let cfg = config_path.as_ref().display().to_string();
        let exec = |stage: &str| {
            Some(Exec::new(
                bin,
                ["--config".to_owned(), cfg.clone(), stage.to_owned()],
            ))
        };
        Runner {
            config_exec: exec("config"),
            prepare_exec: exec("prepare"),
            run_exec: exec("run"),
            cleanup_exec: exec("cleanup"),
            ..Runner::empty()
        }
    }

    /// A driver taking the stage as its first argument: `<driver> config|prepare|run|cleanup`.
    pub fn with_driver(driver: impl Into<PathBuf>) -> Runner {
        let driver = driver.into();
        Runner {
            config_exec: Some(Exec::new(&driver, ["config"])),
            prepare_exec: Some(Exec::new(&driver, ["prepare"])),
            run_exec: Some(Exec::new(&driver, ["run"])),
            cleanup_exec: Some(Exec::new(&driver, ["cleanup"])),
            ..Runner::empty()
        }
    }

    /// Sets `config_exec`/`config_args` (`None` to disable).
    pub fn config_exec(mut self, exec: Option<Exec>) -> Self {
        self.config_exec = exec;
        self
    }

    /// Sets `prepare_exec`/`prepare_args` (`None` to disable).
    pub fn prepare_exec(mut self, exec: Option<Exec>) -> Self {
        self.prepare_exec = exec;
        self
    }

    /// Sets `run_exec`/`run_args`.
    pub fn run_exec(mut self, exec: Option<Exec>) -> Self {
        self.run_exec = exec;
        self
    }

    /// Sets `cleanup_exec`/`cleanup_args` (`None` to disable).
    pub fn cleanup_exec(mut self, exec: Option<Exec>) -> Self {
        self.cleanup_exec = exec;
        self
    }

    /// Sets `[[runners]] builds_dir` and `cache_dir`.
    pub fn dirs(mut self, builds_dir: &str, cache_dir: &str) -> Self {
        self.builds_dir = Some(builds_dir.into());
        self.cache_dir = Some(cache_dir.into());
        self
    }

    /// Adds a `[[runners]] environment` entry.
    pub fn environment(mut self, key: &str, value: &str) -> Self {
        self.environment.push((key.into(), value.into()));
        self
    }

    /// Sets the graceful kill timeout for timeouts/aborts without their own.
    pub fn graceful_kill_timeout(mut self, timeout: Duration) -> Self {
        self.graceful_kill_timeout = timeout;
        self
    }

    /// Runs one job; see the module docs.
    pub fn run_job(&self, job: &JobBuilder, opts: RunOptions) -> JobOutcome {
        JobRun::new(self, job, opts).run()
    }
}

/// A test callback called with the stage's process-group id while the stage runs.
pub type StageCallback = Box<dyn FnMut(u32)>;

/// How a job is interrupted; see [`Cancel`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CancelMode {
    /// The job context ends (GitLab "cancel" before user scripts, "abort", runner shutdown):
    /// the running exec is killed, every later run stage is skipped (even
    /// `cleanup_file_variables`), then `cleanup_exec` runs.
    #[default]
    Abort,
    /// GitLab "cancel" while a user step (`build_script`, `step_*`) runs: only that step is
    /// killed; `after_script`, `*_on_failure` and `cleanup_file_variables` still run, then
    /// `cleanup_exec`. For any other stage it behaves like [`CancelMode::Abort`].
    Ui,
}

/// Interrupt the job `after` the stage `during_stage` started: SIGTERM to the stage's process
/// group, SIGKILL `graceful_kill_timeout` later if still alive. Stage names are run sub-stage
/// names or `config_exec` / `prepare_exec`.
#[derive(Clone, Debug)]
pub struct Cancel {
    /// The stage to interrupt (first time it runs).
    pub during_stage: String,
    /// Delay after the stage process started.
    pub after: Duration,
    /// SIGTERM → SIGKILL delay.
    pub graceful_kill_timeout: Duration,
    /// Abort (default) or UI cancel.
    pub mode: CancelMode,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel::abort("build_script", Duration::from_millis(500))
    }
}

impl Cancel {
    /// An abort (job context cancelled) during `stage`, with a 10 s graceful kill timeout.
    pub fn abort(stage: &str, after: Duration) -> Cancel {
        Cancel {
            during_stage: stage.into(),
            after,
            graceful_kill_timeout: Duration::from_secs(10),
            mode: CancelMode::Abort,
        }
    }

    /// A GitLab UI/API cancel during `stage`.
    pub fn from_ui(stage: &str, after: Duration) -> Cancel {
        Cancel {
            mode: CancelMode::Ui,
            ..Cancel::abort(stage, after)
        }
    }

    /// Sets the SIGTERM → SIGKILL delay.
    pub fn graceful_kill_timeout(mut self, timeout: Duration) -> Cancel {
        self.graceful_kill_timeout = timeout;
        self
    }
}

/// Per-job options of [`Runner::run_job`].
#[derive(Default)]
pub struct RunOptions {
    /// Cancel or abort the job during a stage.
    pub cancel: Option<Cancel>,
    /// `(stage, after)`: SIGKILL the stage's group and stop there, with no cleanup and no temp
    /// dir removal (a crashed runner host). The result is [`JobResult::Crashed`]; the temp dir is
    /// removed when the [`JobOutcome`] is dropped.
    pub kill_without_cleanup: Option<(String, Duration)>,
    /// `(stage, delay, callback)`: called once, on the test thread, `delay` after the stage
    /// process started, if it is still running, with its process-group id.
    pub while_stage_runs: Option<(String, Duration, StageCallback)>,
    /// Added to the runner's own environment (before the runner-defined variables).
    pub extra_env: Vec<(String, String)>,
    /// Start every exec from an empty environment plus `PATH` instead of the test's environment.
    pub env_clear: bool,
    /// Pause between prepare attempts (default 0; gitlab-runner waits 3 s).
    pub prepare_retry_pause: Duration,
    /// Overrides the job timeout (`runner_info.timeout`) the emulator enforces.
    pub job_timeout: Option<Duration>,
    /// The job's slot among the concurrently running jobs of its project on this runner (the
    /// `<concurrent id>` of a shared builds dir; gitlab-runner's `ProjectUniqueDir`).
    pub concurrent_id: usize,
}

impl RunOptions {
    /// Default options.
    pub fn new() -> RunOptions {
        RunOptions::default()
    }

    /// Sets [`RunOptions::cancel`].
    pub fn cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// Sets [`RunOptions::concurrent_id`].
    pub fn concurrent_id(mut self, id: usize) -> Self {
        self.concurrent_id = id;
        self
    }

    /// Sets [`RunOptions::kill_without_cleanup`].
    pub fn kill_without_cleanup(mut self, stage: &str, after: Duration) -> Self {
        self.kill_without_cleanup = Some((stage.into(), after));
        self
    }

    /// Sets [`RunOptions::while_stage_runs`].
    pub fn while_stage_runs(
        mut self,
        stage: &str,
        delay: Duration,
        callback: impl FnMut(u32) + 'static,
    ) -> Self {
        self.while_stage_runs = Some((stage.into(), delay, Box::new(callback)));
        self
    }

    /// Adds a variable to the runner process's environment.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.extra_env.push((key.into(), value.into()));
        self
    }

    /// Sets [`RunOptions::env_clear`].
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self
    }

    /// Sets [`RunOptions::job_timeout`].
    pub fn job_timeout(mut self, timeout: Duration) -> Self {
        self.job_timeout = Some(timeout);
        self
    }
}

/// How the job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobResult {
    /// `Job succeeded`.
    Success,
    /// `Job failed: exit code N` (script failure; no prepare retry).
    BuildFailure {
        /// The build exit code (from `BUILD_EXIT_CODE_FILE`, else 1).
        exit_code: i32,
    },
    /// `Job failed (system failure): …`.
    SystemFailure {
        /// The runner's error text.
        reason: String,
    },
    /// Native `secrets:` resolution failed: no exec ran at all.
    SecretsFailure {
        /// The runner's error text (`resolving secrets: …`).
        reason: String,
    },
    /// Cancelled or aborted ([`RunOptions::cancel`]).
    Canceled,
    /// The job timeout (or the emulator's stage safety timeout) expired.
    TimedOut,
    /// [`RunOptions::kill_without_cleanup`] fired: no cleanup ran.
    Crashed,
}

impl JobResult {
    /// Whether the job succeeded.
    pub fn is_success(&self) -> bool {
        *self == JobResult::Success
    }
}

/// One exec as it ran.
#[derive(Clone, Debug)]
pub struct StageRecord {
    /// `config_exec`, `prepare_exec`, `cleanup_exec`, or the run sub-stage name.
    pub name: String,
    /// The executor attempt (1–3) it belongs to.
    pub attempt: u32,
    /// Full argv (program first).
    pub argv: Vec<String>,
    /// The exit code; -1 when killed by a signal (like Go) or abandoned.
    pub exit_code: i32,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// For exit 1: the code read from `BUILD_EXIT_CODE_FILE`, when it held a number.
    pub build_exit_code: Option<i32>,
    /// stdout and stderr interleaved as they arrived (not masked).
    pub output: String,
    /// stdout only.
    pub stdout: String,
    /// stderr only.
    pub stderr: String,
    /// The stage script (run stages only).
    pub script: Option<PathBuf>,
    /// The process (and process-group) id.
    pub pgid: u32,
    /// Wall time.
    pub duration: Duration,
    /// Whether SIGTERM was sent to its group.
    pub sent_sigterm: bool,
    /// Whether SIGKILL was sent to its group.
    pub sent_sigkill: bool,
    /// stdout/stderr stayed open after the process exited (a grandchild kept them).
    pub pipes_held_open: bool,
    /// The runner's classification of a failure, if it failed.
    pub error: Option<String>,
}

/// Everything a test can assert on after [`Runner::run_job`].
#[derive(Debug)]
pub struct JobOutcome {
    /// The job log as GitLab shows it (masked variables replaced by `[MASKED]`).
    pub log: String,
    /// The job log before masking.
    pub raw_log: String,
    /// stdout+stderr of every cleanup_exec (never part of the job log).
    pub cleanup_output: String,
    /// Every exec in order.
    pub stages: Vec<StageRecord>,
    /// How the job ended.
    pub result: JobResult,
    /// The last parsed config_exec output.
    pub config_json: Option<Value>,
    /// Every attempt's temp dir (removed unless the job crashed).
    pub temp_dirs: Vec<PathBuf>,
    /// The last `response.json` written.
    pub response_json: Value,
    /// Variables resolved from the native `secrets:` block.
    pub native_secrets: Vec<Variable>,
}

impl JobOutcome {
    /// The last exec of that name; panics (listing what ran) when there is none.
    pub fn stage(&self, name: &str) -> &StageRecord {
        self.try_stage(name).unwrap_or_else(|| {
            panic!(
                "stage {name} did not run; ran: {:?}\nlog:\n{}",
                self.stage_names(),
                self.log
            )
        })
    }

    /// The last exec of that name.
    pub fn try_stage(&self, name: &str) -> Option<&StageRecord> {
        self.stages.iter().rev().find(|s| s.name == name)
    }

    /// Every exec of that name, in order.
    pub fn stages_named(&self, name: &str) -> Vec<&StageRecord> {
        self.stages.iter().filter(|s| s.name == name).collect()
    }

    /// The names of every exec, in order.
    pub fn stage_names(&self) -> Vec<&str> {
        self.stages.iter().map(|s| s.name.as_str()).collect()
    }

    /// The names of the run_exec sub-stages, in order.
    pub fn run_stage_names(&self) -> Vec<&str> {
        self.stage_names()
            .into_iter()
            .filter(|n| !matches!(*n, "config_exec" | "prepare_exec" | "cleanup_exec"))
            .collect()
    }

    /// Whether the job succeeded.
    pub fn is_success(&self) -> bool {
        self.result.is_success()
    }
}

impl Drop for JobOutcome {
    fn drop(&mut self) {
        for dir in &self.temp_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// Why an exec or stage failed, in the runner's terms.
#[derive(Clone, Debug)]
enum Failure {
    /// A `BuildError` (no prepare retry): exit 1, missing builds_dir, …
    Build { exit_code: i32, message: String },
    /// Any other error (prepare is retried).
    System(String),
    /// The job context is done: the stage was not run.
    ContextDone,
}

impl Failure {
    fn message(&self) -> String {
        match self {
            Failure::Build { message, .. } => message.clone(),
            Failure::System(message) => message.clone(),
            Failure::ContextDone => "context canceled".into(),
        }
    }
}

/// Why the job context ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Done {
    Canceled,
    TimedOut,
    Crashed,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    /// stdout captured (parsed), stderr to the job log.
    Config,
    /// stdout and stderr to the job log.
    Log,
    /// Neither in the job log.
    Cleanup,
}

#[derive(Default)]
struct Transcript {
    combined: Vec<u8>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

struct JobRun<'a> {
    runner: &'a Runner,
    job: &'a JobBuilder,
    opts: RunOptions,
    log: Arc<Mutex<Vec<u8>>>,
    stages: Vec<StageRecord>,
    cleanup_output: String,
    temp_dirs: Vec<PathBuf>,
    temp_dir: PathBuf,
    attempt: u32,
    secret_vars: Vec<Variable>,
    builds_dir: String,
    cache_dir: String,
    builds_dir_is_shared: bool,
    hostname: Option<String>,
    job_env: Vec<(String, String)>,
    config_json: Option<Value>,
    response_json: Value,
    job_status: &'static str,
    done: Option<Done>,
    user_canceled: bool,
    cancel_fired: bool,
    kill_fired: bool,
    deadline: Instant,
}

impl<'a> JobRun<'a> {
    fn new(runner: &'a Runner, job: &'a JobBuilder, opts: RunOptions) -> JobRun<'a> {
        JobRun {
            runner,
            job,
            opts,
            log: Arc::new(Mutex::new(Vec::new())),
            stages: Vec::new(),
            cleanup_output: String::new(),
            temp_dirs: Vec::new(),
            temp_dir: PathBuf::new(),
            attempt: 0,
            secret_vars: Vec::new(),
            builds_dir: String::new(),
            cache_dir: String::new(),
            builds_dir_is_shared: false,
            hostname: None,
            job_env: Vec::new(),
            config_json: None,
            response_json: Value::Null,
            job_status: "running",
            done: None,
            user_canceled: false,
            cancel_fired: false,
            kill_fired: false,
            deadline: Instant::now() + Duration::from_secs(365 * 24 * 3600),
        }
    }

    fn say(&self, line: &str) {
        let mut log = self.log.lock().expect("log");
        log.extend_from_slice(line.as_bytes());
        log.push(b'\n');
    }

    fn run(mut self) -> JobOutcome {
        self.say("Running with gitlab-runner 17.11.0 (leasehold test emulator)");
        // 1. Native secrets, before anything else and outside the job timeout.
        let result = match self.resolve_native_secrets() {
            Err(reason) => {
                self.say(&format!("ERROR: Job failed: {reason}"));
                JobResult::SecretsFailure { reason }
            }
            Ok(()) => {
                let timeout = self
                    .opts
                    .job_timeout
                    .unwrap_or(Duration::from_secs(self.job.timeout));
                self.deadline = Instant::now() + timeout;
                self.run_executor()
            }
        };
        self.finish(result)
    }

    fn finish(mut self, result: JobResult) -> JobOutcome {
        match &result {
            JobResult::Success => self.say("Job succeeded"),
            JobResult::BuildFailure { exit_code } => {
                self.say(&format!("ERROR: Job failed: exit code {exit_code}"))
            }
            JobResult::SystemFailure { reason } => {
                self.say(&format!("ERROR: Job failed (system failure): {reason}"))
            }
            JobResult::Canceled => self.say("ERROR: Job failed: canceled"),
            JobResult::TimedOut => {
                self.say("ERROR: Job failed: execution took longer than the timeout")
            }
            JobResult::SecretsFailure { .. } | JobResult::Crashed => {}
        }
        let raw = String::from_utf8_lossy(&self.log.lock().expect("log")).into_owned();
        let log = mask(&raw, &self.mask_phrases());
        JobOutcome {
            log,
            raw_log: raw,
            cleanup_output: std::mem::take(&mut self.cleanup_output),
            stages: std::mem::take(&mut self.stages),
            result,
            config_json: self.config_json.take(),
            temp_dirs: std::mem::take(&mut self.temp_dirs),
            response_json: std::mem::take(&mut self.response_json),
            native_secrets: std::mem::take(&mut self.secret_vars),
        }
    }

    fn mask_phrases(&self) -> Vec<String> {
        let mut phrases: Vec<String> = self
            .all_variables()
            .into_iter()
            .filter(|v| v.masked)
            .map(|v| v.value.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        phrases.sort_by_key(|p| std::cmp::Reverse(p.len()));
        phrases.dedup();
        phrases
    }

    // --- variables -----------------------------------------------------------------------------

    fn project_dir(&self) -> String {
        if self.builds_dir.is_empty() {
            return String::new();
        }
        if self.builds_dir_is_shared {
            format!(
                "{}/{}/{}/{}",
                self.builds_dir,
                self.runner.short_token,
                self.opts.concurrent_id,
                self.job.project_path
            )
        } else {
            format!("{}/{}", self.builds_dir, self.job.project_path)
        }
    }

    fn tmp_project_dir(&self) -> String {
        format!("{}.tmp", self.project_dir())
    }

    /// `Build.GetAllVariables()`: in lookup order (later wins), values expanded.
    fn all_variables(&self) -> Vec<Variable> {
        let p = |k: &str, v: &str| Variable::public(k, v);
        let mut vars = vec![
            p("FF_SECRET_RESOLVING_FAILS_IF_MISSING", "true"),
            p("FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY", "true"),
            p("FF_MASK_ALL_DEFAULT_TOKENS", "true"),
            p("FF_ENABLE_JOB_CLEANUP", "false"),
            p("FF_NETWORK_PER_BUILD", "false"),
            p("CI_RUNNER_SHORT_TOKEN", &self.runner.short_token),
        ];
        vars.extend(self.runner.environment.iter().map(|(k, v)| p(k, v)));
        let project_dir = self.project_dir();
        vars.extend([
            p("CI_BUILDS_DIR", &self.builds_dir),
            p("CI_PROJECT_DIR", &project_dir),
            p("CI_CONCURRENT_ID", "0"),
            p("CI_CONCURRENT_PROJECT_ID", "0"),
            p("CI_SERVER", "yes"),
            p("CI_JOB_STATUS", self.job_status),
            p("CI_JOB_TIMEOUT", &self.job.timeout.to_string()),
        ]);
        vars.extend(self.job.all_variables());
        vars.extend([
            p("CI_SHARED_ENVIRONMENT", "true"),
            p("CI_RUNNER_VERSION", "17.11.0"),
            p("CI_RUNNER_REVISION", "emulated"),
            p("CI_RUNNER_EXECUTABLE_ARCH", "linux/amd64"),
        ]);
        vars.extend(self.secret_vars.iter().cloned());
        vars.push(p("RUNNER_TEMP_PROJECT_DIR", &self.tmp_project_dir()));
        let lookup = Lookup::new(&vars, &self.tmp_project_dir());
        vars.into_iter()
            .map(|mut v| {
                if !v.raw {
                    v.value = expand(&v.value, |k| lookup.get(k));
                }
                v
            })
            .collect()
    }

    fn base_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = if self.opts.env_clear {
            std::env::var("PATH")
                .map(|p| vec![("PATH".to_owned(), p)])
                .unwrap_or_default()
        } else {
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect()
        };
        env.extend(self.opts.extra_env.iter().cloned());
        env
    }

    /// The environment of one exec (§2), in order; the last duplicate wins.
    fn exec_env(&self, with_job_env: bool) -> Vec<(String, String)> {
        let dir = self.temp_dir.display().to_string();
        let mut env = self.base_env();
        env.extend([
            ("TMPDIR".to_owned(), dir.clone()),
            ("BUILD_FAILURE_EXIT_CODE".to_owned(), "1".to_owned()),
            ("SYSTEM_FAILURE_EXIT_CODE".to_owned(), "2".to_owned()),
            (
                "BUILD_EXIT_CODE_FILE".to_owned(),
                format!("{dir}/build_exit_code"),
            ),
            (
                "JOB_RESPONSE_FILE".to_owned(),
                format!("{dir}/response.json"),
            ),
        ]);
        if with_job_env {
            env.extend(self.job_env.iter().cloned());
        }
        for var in self.all_variables() {
            env.push((format!("CUSTOM_ENV_{}", var.key), var.value));
        }
        let services = if self.job.services.is_empty() {
            String::new()
        } else {
            Value::Array(self.job.services.clone()).to_string()
        };
        env.push(("CUSTOM_ENV_CI_JOB_SERVICES".to_owned(), services));
        env
    }

    // --- native secrets ------------------------------------------------------------------------

    fn resolve_native_secrets(&mut self) -> Result<(), String> {
        let Some(secrets) = self.job.native_secrets.clone() else {
            return Ok(());
        };
        let Some(secrets) = secrets.as_object().cloned() else {
            return Err("resolving secrets: secrets must be an object".into());
        };
        self.say("Resolving secrets");
        let vars = self.all_variables();
        let lookup = Lookup::new(&vars, &self.tmp_project_dir());
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let mut resolved = Vec::new();
        for (key, secret) in &secrets {
            self.say(&format!("Resolving secret \"{key}\"..."));
            let Some(vault) = secret.get("vault") else {
                self.say("WARNING: Not resolved: no resolver that can handle the secret");
                continue;
            };
            self.say("Using \"vault\" secret resolver...");
            let vault = expand_json(vault, &lookup);
            let value = resolve_vault_secret(&http, &vault)
                .map_err(|e| format!("resolving secrets: {e}"))?
                .ok_or_else(|| format!("resolving secrets: secret not found: {key}"))?;
            let file = secret.get("file").and_then(Value::as_bool).unwrap_or(true);
            resolved.push(Variable {
                key: key.clone(),
                value,
                public: false,
                file,
                masked: true,
                raw: true,
            });
        }
        self.secret_vars = resolved;
        Ok(())
    }

    /// response.json: the payload with the `secrets` block expanded and `token` keys dropped.
    fn response(&self) -> Value {
        let vars = self.all_variables();
        let lookup = Lookup::new(&vars, &self.tmp_project_dir());
        let secrets = self
            .job
            .native_secrets
            .as_ref()
            .and_then(Value::as_object)
            .map(|secrets| {
                let mut out = Map::new();
                for (key, secret) in secrets {
                    let mut secret = secret.clone();
                    if let Some(obj) = secret.as_object_mut() {
                        obj.remove("token");
                        if let Some(vault) = obj.get("vault").cloned() {
                            obj.insert("vault".into(), expand_json(&vault, &lookup));
                        }
                    }
                    out.insert(key.clone(), secret);
                }
                Value::Object(out)
            });
        self.job.payload(secrets)
    }

    // --- executor ------------------------------------------------------------------------------

    fn run_executor(&mut self) -> JobResult {
        let mut prepared = false;
        let mut last = Failure::System("no attempt".into());
        for attempt in 1..=3 {
            self.attempt = attempt;
            if let Err(e) = self.new_temp_dir() {
                return JobResult::SystemFailure { reason: e };
            }
            match self.prepare_executor() {
                Ok(()) => {
                    prepared = true;
                    break;
                }
                Err(failure) => {
                    if self.done == Some(Done::Crashed) {
                        return JobResult::Crashed;
                    }
                    self.cleanup();
                    last = failure;
                    if matches!(last, Failure::Build { .. }) || self.done.is_some() {
                        break;
                    }
                    self.say(&format!("WARNING: Preparation failed: {}", last.message()));
                    if attempt < 3 {
                        self.say("Will be retried in 3s ...");
                        std::thread::sleep(self.opts.prepare_retry_pause);
                    }
                }
            }
        }
        if !prepared {
            return self.result_of(Err(last));
        }
        let result = self.execute_script();
        if self.done == Some(Done::Crashed) {
            return JobResult::Crashed;
        }
        self.cleanup();
        self.result_of(result)
    }

    fn result_of(&self, result: Result<(), Failure>) -> JobResult {
        match self.done {
            Some(Done::Crashed) => return JobResult::Crashed,
            Some(Done::TimedOut) => return JobResult::TimedOut,
            Some(Done::Canceled) => return JobResult::Canceled,
            None if self.user_canceled => return JobResult::Canceled,
            None => {}
        }
        match result {
            Ok(()) => JobResult::Success,
            Err(Failure::Build { exit_code, .. }) => JobResult::BuildFailure { exit_code },
            Err(Failure::System(reason)) => JobResult::SystemFailure { reason },
            Err(Failure::ContextDone) => JobResult::Canceled,
        }
    }

    fn new_temp_dir(&mut self) -> Result<(), String> {
        let dir = tempfile::Builder::new()
            .prefix("custom-executor")
            .tempdir()
            .map_err(|e| format!("creating temp dir: {e}"))?
            .keep();
        self.temp_dirs.push(dir.clone());
        self.temp_dir = dir;
        self.job_env.clear();
        self.response_json = self.response();
        let mut text = serde_json::to_string(&self.response_json).map_err(|e| e.to_string())?;
        text.push('\n');
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.temp_dir.join("response.json"))
            .map_err(|e| format!("writing response.json: {e}"))?;
        file.write_all(text.as_bytes()).map_err(|e| e.to_string())
    }

    fn prepare_executor(&mut self) -> Result<(), Failure> {
        self.say("Preparing the \"custom\" executor");
        if self.runner.run_exec.is_none() {
            return Err(Failure::Build {
                exit_code: 1,
                message: "custom executor is missing RunExec".into(),
            });
        }
        // The variables keep the dirs of the previous StartBuild until this attempt's StartBuild:
        // config_exec of the first attempt sees empty CI_BUILDS_DIR/CI_PROJECT_DIR.
        let mut driver = None;
        let mut builds_dir = self.runner.builds_dir.clone().unwrap_or_default();
        let mut cache_dir = self.runner.cache_dir.clone().unwrap_or_default();
        let mut shared = false;
        if let Some(config) = self.runner.config_exec.clone() {
            let stdout = self.exec("config_exec", &config, &[], Route::Config)?;
            let text = String::from_utf8_lossy(&stdout).into_owned();
            if !text.trim().is_empty() {
                let value: Value = serde_json::from_str(&text).map_err(|e| {
                    Failure::System(format!("error while parsing JSON output: {e}"))
                })?;
                let str_of = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
                if let Some(dir) = str_of("builds_dir") {
                    builds_dir = dir;
                }
                if let Some(dir) = str_of("cache_dir") {
                    cache_dir = dir;
                }
                if let Some(is_shared) = value.get("builds_dir_is_shared").and_then(Value::as_bool)
                {
                    shared = is_shared;
                }
                self.hostname = str_of("hostname");
                if let Some(env) = value.get("job_env").and_then(Value::as_object) {
                    self.job_env = env
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                            )
                        })
                        .collect();
                }
                driver = value.get("driver").cloned();
                self.config_json = Some(value);
            }
        }
        // StartBuild.
        if builds_dir.is_empty() {
            return Err(Failure::Build {
                exit_code: 1,
                message: "the builds_dir is not configured".into(),
            });
        }
        if cache_dir.is_empty() {
            return Err(Failure::Build {
                exit_code: 1,
                message: "the cache_dir is not configured".into(),
            });
        }
        self.builds_dir = builds_dir;
        self.cache_dir = cache_dir;
        self.builds_dir_is_shared = shared;
        let name = driver
            .as_ref()
            .and_then(|d| d["name"].as_str())
            .unwrap_or_default();
        let version = driver
            .as_ref()
            .and_then(|d| d["version"].as_str())
            .unwrap_or_default();
        match (name, version) {
            ("", _) => self.say("Using Custom executor..."),
            (name, "") => self.say(&format!("Using Custom executor with driver {name}...")),
            (name, version) => self.say(&format!(
                "Using Custom executor with driver {name} {version}..."
            )),
        }
        if let Some(prepare) = self.runner.prepare_exec.clone() {
            self.exec("prepare_exec", &prepare, &[], Route::Log)?;
        }
        Ok(())
    }

    fn cleanup(&mut self) {
        if let Some(cleanup) = self.runner.cleanup_exec.clone()
            && let Err(e) = self.exec("cleanup_exec", &cleanup, &[], Route::Cleanup)
        {
            self.say(&format!("WARNING: Cleanup script failed: {}", e.message()));
        }
        let _ = std::fs::remove_dir_all(&self.temp_dir);
    }

    // --- run stages ----------------------------------------------------------------------------

    fn execute_script(&mut self) -> Result<(), Failure> {
        self.say("Preparing environment");
        let body = self.prepare_script_body();
        if let Err(e) = self.run_stage("prepare_script", &body) {
            return Err(match e {
                Failure::Build { exit_code, message } => Failure::Build {
                    exit_code,
                    message: format!("prepare environment: {message}"),
                },
                Failure::System(m) => Failure::System(format!("prepare environment: {m}")),
                Failure::ContextDone => Failure::ContextDone,
            });
        }
        self.say("Getting source from Git repository");
        let mut err = self.attempt_stage("get_sources", "GET_SOURCES_ATTEMPTS");
        if err.is_ok() && self.job.cache.is_some() {
            self.say("Restoring cache");
            err = self.attempt_stage("restore_cache", "RESTORE_CACHE_ATTEMPTS");
        }
        if err.is_ok() && self.job.dependency_artifacts {
            self.say("Downloading artifacts");
            err = self.attempt_stage("download_artifacts", "ARTIFACT_DOWNLOAD_ATTEMPTS");
        }
        if err.is_ok() {
            err = self.execute_user_scripts();
        }
        let failed = err.is_err() || self.user_canceled;
        let when_applies = |when: &str| when == "always" || (when == "on_failure") == failed;
        let mut archive_err = Ok(());
        if self.job.cache.as_deref().is_some_and(when_applies) {
            self.say("Saving cache");
            let stage = if failed {
                "archive_cache_on_failure"
            } else {
                "archive_cache"
            };
            archive_err = self.run_named_stage(stage);
        }
        let mut upload_err = Ok(());
        if !self.runner.url.is_empty() && self.job.artifacts.as_deref().is_some_and(when_applies) {
            self.say("Uploading artifacts");
            let stage = if failed {
                "upload_artifacts_on_failure"
            } else {
                "upload_artifacts_on_success"
            };
            upload_err = self.run_named_stage(stage);
        }
        self.say("Cleaning up project directory and file based variables");
        if let Err(e) = self.run_named_stage("cleanup_file_variables")
            && !matches!(e, Failure::ContextDone)
        {
            self.say(&format!(
                "WARNING: Error while executing file based variables removal script: {}",
                e.message()
            ));
        }
        err.and(archive_err).and(upload_err)
    }

    fn attempt_stage(&mut self, stage: &str, attempts_var: &str) -> Result<(), Failure> {
        let attempts = self
            .all_variables()
            .iter()
            .rev()
            .find(|v| v.key == attempts_var)
            .and_then(|v| v.value.parse::<u32>().ok())
            .unwrap_or(1)
            .clamp(1, 10);
        let mut result = Ok(());
        for attempt in 0..attempts {
            if attempt == 1 && stage == "get_sources" {
                self.run_named_stage("clear_worktree")?;
            }
            result = self.run_named_stage(stage);
            if result.is_ok() || self.done.is_some() {
                break;
            }
        }
        result
    }

    fn execute_user_scripts(&mut self) -> Result<(), Failure> {
        let mut steps = vec![("build_script".to_owned(), self.job.script.clone())];
        steps.extend(
            self.job
                .extra_steps
                .iter()
                .map(|(n, l)| (format!("step_{}", n.to_lowercase()), l.clone())),
        );
        let mut err = Ok(());
        for (stage, lines) in steps {
            let shown = if stage == "build_script" {
                "step_script"
            } else {
                stage.as_str()
            };
            self.say(&format!("Executing \"{shown}\" stage of the job script"));
            if stage == "build_script" {
                self.say("WARNING: Starting with version 17.0 the 'build_script' stage will be replaced with 'step_script': https://gitlab.com/groups/gitlab-org/-/epics/6112");
            }
            let body = self.user_body(&lines);
            err = self.run_stage(&stage, &body);
            if err.is_err() || self.user_canceled {
                break;
            }
        }
        if !self.job.after_script.is_empty() {
            self.job_status = if self.user_canceled {
                "canceled"
            } else if err.is_err() {
                "failed"
            } else {
                "success"
            };
            self.say("Running after_script");
            let body = self.user_body(&self.job.after_script.clone());
            if let Err(e) = self.run_stage("after_script", &body)
                && !matches!(e, Failure::ContextDone)
            {
                self.say(&format!(
                    "WARNING: after_script failed, but job will continue unaffected: {}",
                    e.message()
                ));
            }
        }
        err
    }

    fn run_named_stage(&mut self, stage: &str) -> Result<(), Failure> {
        let body = self.stage_body(stage);
        self.run_stage(stage, &body)
    }

    fn trace(&self) -> bool {
        self.all_variables()
            .iter()
            .rev()
            .find(|v| v.key == "CI_DEBUG_TRACE")
            .is_some_and(|v| v.value == "true")
    }

    fn prepare_script_body(&self) -> ScriptBody {
        let mut body = ScriptBody::default();
        match &self.hostname {
            Some(h) => body.line(format!("echo \"Running on $(hostname) via {h}...\"")),
            None => body.line("echo \"Running on $(hostname)...\""),
        };
        let tmp = self.tmp_project_dir();
        body.line(format!(
            "rm -f \"{tmp}/gitlab_runner_env\" \"{tmp}/masking.db\""
        ));
        body
    }

    fn user_body(&self, lines: &[String]) -> ScriptBody {
        let vars = self.all_variables();
        let mut body = ScriptBody::default();
        body.exports(&vars, &self.tmp_project_dir())
            .cd(&self.project_dir())
            .user_commands(lines);
        body
    }

    fn stage_body(&self, stage: &str) -> ScriptBody {
        let vars = self.all_variables();
        let tmp = self.tmp_project_dir();
        let project = self.project_dir();
        let mut body = ScriptBody::default();
        if stage == "cleanup_file_variables" {
            body.env_exports(&vars, &tmp);
            body.line(format!(
                "rm -f \"{tmp}/gitlab_runner_env\" \"{tmp}/masking.db\" \"{tmp}/.gitlab-runner.ext.conf\" \"{tmp}/.glr.gconf\""
            ));
            for var in vars.iter().filter(|v| v.file) {
                body.line(format!("rm -f \"{tmp}/{}\"", var.key));
            }
            body.line(format!(
                "rm -f \"{}/.gitlab-build-uid-gid\"",
                self.builds_dir
            ));
            for line in &self.job.probe {
                body.line(line.clone());
            }
            return body;
        }
        body.exports(&vars, &tmp);
        match stage {
            "get_sources" => {
                body.notice("Fetching changes with git depth set to 20...");
                if let Some(url) = &self.job.repo_url {
                    let project = super::shell::shell_escape(&project);
                    body.line(format!("rm -rf {project}"));
                    body.line(format!(
                        "git clone -q {} {project}",
                        super::shell::shell_escape(url)
                    ));
                } else {
                    body.line(format!("mkdir -p {}", super::shell::shell_escape(&project)));
                }
                body.cd(&project);
                body.line("echo \"Checking out a1b2c3d4 as detached HEAD (ref is main)...\"");
            }
            "clear_worktree" => {
                body.notice("Deleting tracked and untracked files...");
                body.line(format!("rm -rf {}", super::shell::shell_escape(&project)));
            }
            "restore_cache" => {
                body.cd(&project)
                    .notice("Checking cache for default-protected...");
            }
            "download_artifacts" => {
                body.cd(&project)
                    .notice("Downloading artifacts for build (99)...");
            }
            "archive_cache" | "archive_cache_on_failure" => {
                body.cd(&project)
                    .notice("Creating cache default-protected...");
            }
            "upload_artifacts_on_success" | "upload_artifacts_on_failure" => {
                body.cd(&project).notice("Uploading artifacts for job...");
            }
            _ => {
                body.line(format!("echo {}", super::shell::shell_escape(stage)));
            }
        }
        for line in &self.job.probe {
            body.line(line.clone());
        }
        body
    }

    /// Writes the stage script and calls run_exec, unless the job context is done.
    fn run_stage(&mut self, stage: &str, body: &ScriptBody) -> Result<(), Failure> {
        if self.done.is_some() {
            return Err(Failure::ContextDone);
        }
        let Some(run) = self.runner.run_exec.clone() else {
            return Err(Failure::Build {
                exit_code: 1,
                message: "custom executor is missing RunExec".into(),
            });
        };
        let script_dir = tempfile::Builder::new()
            .prefix("script")
            .tempdir_in(&self.temp_dir)
            .map_err(|e| Failure::System(format!("creating script dir: {e}")))?
            .keep();
        let script = script_dir.join("script");
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&script)
            .map_err(|e| Failure::System(format!("writing script: {e}")))?;
        file.write_all(body.finish(self.trace()).as_bytes())
            .map_err(|e| Failure::System(format!("writing script: {e}")))?;
        drop(file);
        let args = [script.display().to_string(), stage.to_owned()];
        let result = self.exec(stage, &run, &args, Route::Log);
        if let Some(record) = self.stages.last_mut() {
            record.script = Some(script);
        }
        result.map(|_| ())
    }

    // --- one exec ------------------------------------------------------------------------------

    /// Runs one exec in its own process group, streaming its output, handling cancel/kill
    /// options, and classifies its exit (§4). Returns stdout on success.
    fn exec(
        &mut self,
        name: &str,
        exec: &Exec,
        extra: &[String],
        route: Route,
    ) -> Result<Vec<u8>, Failure> {
        let mut argv = vec![exec.program.display().to_string()];
        argv.extend(exec.args.iter().cloned());
        argv.extend(extra.iter().cloned());
        let env = self.exec_env(route != Route::Config);
        let mut cmd = Command::new(&exec.program);
        cmd.args(&argv[1..])
            .current_dir(&self.temp_dir)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let started = Instant::now();
        let mut record = StageRecord {
            name: name.to_owned(),
            attempt: self.attempt,
            argv,
            exit_code: -1,
            signal: None,
            build_exit_code: None,
            output: String::new(),
            stdout: String::new(),
            stderr: String::new(),
            script: None,
            pgid: 0,
            duration: Duration::ZERO,
            sent_sigterm: false,
            sent_sigkill: false,
            pipes_held_open: false,
            error: None,
        };
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                let message = format!("failed to start command: {e}");
                record.error = Some(message.clone());
                self.stages.push(record);
                return Err(Failure::System(message));
            }
        };
        let pgid = child.id();
        record.pgid = pgid;

        let transcript = Arc::new(Mutex::new(Transcript::default()));
        let (done_tx, done_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let to_log_out = route == Route::Log;
        let to_log_err = route != Route::Cleanup;
        for (reader, is_stdout, to_log) in [
            (Box::new(stdout) as Box<dyn Read + Send>, true, to_log_out),
            (Box::new(stderr) as Box<dyn Read + Send>, false, to_log_err),
        ] {
            let (transcript, log, done_tx) =
                (transcript.clone(), self.log.clone(), done_tx.clone());
            std::thread::spawn(move || {
                pump(
                    reader,
                    is_stdout,
                    to_log.then_some(log),
                    &transcript,
                    &done_tx,
                )
            });
        }
        drop(done_tx);

        let status = self.supervise(name, &mut child, pgid, started, route, &mut record);

        // Both pipes at EOF, or give up on a grandchild that keeps them open.
        let drain_deadline = Instant::now() + self.runner.pipe_drain_timeout;
        for _ in 0..2 {
            let left = drain_deadline.saturating_duration_since(Instant::now());
            if done_rx.recv_timeout(left).is_err() {
                record.pipes_held_open = true;
                break;
            }
        }
        record.duration = started.elapsed();
        let stdout_bytes = {
            let t = transcript.lock().expect("transcript");
            record.output = String::from_utf8_lossy(&t.combined).into_owned();
            record.stdout = String::from_utf8_lossy(&t.stdout).into_owned();
            record.stderr = String::from_utf8_lossy(&t.stderr).into_owned();
            t.stdout.clone()
        };
        if route == Route::Cleanup {
            self.cleanup_output.push_str(&record.output);
        }
        let outcome = match status {
            None => Err(Failure::System(format!(
                "failed to kill process PID={pgid}, likely process is dormant"
            ))),
            Some(status) => self.classify(status, &mut record),
        };
        if let Err(e) = &outcome {
            record.error = Some(e.message());
        }
        self.stages.push(record);
        outcome.map(|()| stdout_bytes)
    }

    /// Waits for the exec, firing the test's cancel/kill/callback options and the timeouts.
    /// Returns `None` when the process survived SIGKILL for `force_kill_timeout`.
    fn supervise(
        &mut self,
        name: &str,
        child: &mut std::process::Child,
        pgid: u32,
        started: Instant,
        route: Route,
        record: &mut StageRecord,
    ) -> Option<ExitStatus> {
        let group = Pid::from_raw(pgid as i32);
        let mut term_at: Option<(Instant, Duration)> = None;
        let mut kill_at: Option<Instant> = None;
        let mut callback_done = false;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(_) => return None,
            }
            let now = Instant::now();
            let elapsed = now - started;

            // The test's cancel.
            let cancel = self.opts.cancel.clone();
            if let Some(cancel) = cancel
                .filter(|c| !self.cancel_fired && c.during_stage == name && elapsed >= c.after)
            {
                self.cancel_fired = true;
                let user_step = name == "build_script" || name.starts_with("step_");
                if cancel.mode == CancelMode::Ui && user_step {
                    self.user_canceled = true;
                } else {
                    self.done.get_or_insert(Done::Canceled);
                }
                self.say("ERROR: Job canceled (emulated)");
                let _ = killpg(group, Signal::SIGTERM);
                record.sent_sigterm = true;
                term_at = Some((now, cancel.graceful_kill_timeout));
            }
            // The test's crash.
            if let Some((stage, after)) = &self.opts.kill_without_cleanup
                && !self.kill_fired
                && stage == name
                && elapsed >= *after
            {
                self.kill_fired = true;
                self.done = Some(Done::Crashed);
                let _ = killpg(group, Signal::SIGKILL);
                record.sent_sigkill = true;
                kill_at.get_or_insert(now);
            }
            // Job timeout (not for cleanup, which runs on its own context) and the safety net.
            if term_at.is_none() && kill_at.is_none() {
                let job_timeout = route != Route::Cleanup && now >= self.deadline;
                if job_timeout || elapsed >= self.runner.stage_timeout {
                    self.done.get_or_insert(Done::TimedOut);
                    self.say(&format!("ERROR: {name} timed out (emulated job timeout)"));
                    let _ = killpg(group, Signal::SIGTERM);
                    record.sent_sigterm = true;
                    term_at = Some((now, self.runner.graceful_kill_timeout));
                }
            }
            // Escalation.
            if let Some((at, grace)) = term_at
                && kill_at.is_none()
                && now - at >= grace
            {
                let _ = killpg(group, Signal::SIGKILL);
                record.sent_sigkill = true;
                kill_at = Some(now);
            }
            if let Some(at) = kill_at
                && now - at >= self.runner.force_kill_timeout
            {
                return None;
            }
            // The test's sampling callback.
            if !callback_done
                && let Some((stage, delay, callback)) = self.opts.while_stage_runs.as_mut()
                && stage == name
                && elapsed >= *delay
            {
                callback_done = true;
                callback(pgid);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Exit classification (command.go `waitForCommand`).
    fn classify(&self, status: ExitStatus, record: &mut StageRecord) -> Result<(), Failure> {
        record.signal = status.signal();
        match status.code() {
            Some(0) => {
                record.exit_code = 0;
                Ok(())
            }
            Some(1) => {
                record.exit_code = 1;
                match std::fs::read_to_string(self.temp_dir.join("build_exit_code")) {
                    Err(_) => Err(Failure::Build {
                        exit_code: 1,
                        message: "exit status 1".into(),
                    }),
                    Ok(text) => {
                        let first = text.lines().next().unwrap_or_default().trim();
                        match first.parse::<i32>() {
                            Ok(code) => {
                                record.build_exit_code = Some(code);
                                Err(Failure::Build {
                                    exit_code: code,
                                    message: format!("exit status {code}"),
                                })
                            }
                            Err(e) => Err(Failure::System(format!(
                                "unknown Custom executor executable exit code 2; executable execution terminated with: \
                                 parsing build exit code {first:?}: {e}"
                            ))),
                        }
                    }
                }
            }
            Some(2) => {
                record.exit_code = 2;
                Err(Failure::System("exit status 2".into()))
            }
            Some(code) => {
                record.exit_code = code;
                Err(Failure::System(format!(
                    "unknown Custom executor executable exit code {code}; executable execution terminated with: exit status {code}"
                )))
            }
            None => {
                record.exit_code = -1;
                let signal = status.signal().unwrap_or_default();
                Err(Failure::System(format!(
                    "unknown Custom executor executable exit code -1; executable execution terminated with: signal: {signal}"
                )))
            }
        }
    }
}

/// Copies one pipe into the transcript (and the job log), then reports EOF.
fn pump(
    mut reader: Box<dyn Read + Send>,
    is_stdout: bool,
    log: Option<Arc<Mutex<Vec<u8>>>>,
    transcript: &Mutex<Transcript>,
    done: &mpsc::Sender<()>,
) {
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let chunk = &buf[..n];
                {
                    let mut t = transcript.lock().expect("transcript");
                    t.combined.extend_from_slice(chunk);
                    if is_stdout {
                        t.stdout.extend_from_slice(chunk);
                    } else {
                        t.stderr.extend_from_slice(chunk);
                    }
                }
                if let Some(log) = &log {
                    log.lock().expect("log").extend_from_slice(chunk);
                }
            }
        }
    }
    let _ = done.send(());
}

/// Replaces every phrase by `[MASKED]` (phrases sorted longest first).
fn mask(text: &str, phrases: &[String]) -> String {
    let mut out = text.to_owned();
    for phrase in phrases {
        out = out.replace(phrase.as_str(), "[MASKED]");
    }
    out
}

/// `Variables.Get` for expansion: the last value of a key; file variables give their path.
struct Lookup {
    values: BTreeMap<String, String>,
}

impl Lookup {
    fn new(vars: &[Variable], tmp_dir: &str) -> Lookup {
        let mut values = BTreeMap::new();
        for v in vars {
            let value = if v.file {
                format!("{tmp_dir}/{}", v.key)
            } else {
                v.value.clone()
            };
            values.insert(v.key.clone(), value);
        }
        Lookup { values }
    }

    fn get(&self, key: &str) -> String {
        if key == "$" {
            return "$".into();
        }
        self.values.get(key).cloned().unwrap_or_default()
    }
}

/// Go's `os.Expand`: `$NAME`, `${NAME}`, `$$` (kept as `$` by the runner's lookup), special
/// one-character names; a `$` followed by anything else stays.
fn expand(s: &str, get: impl Fn(&str) -> String) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            out.push_str(&s[copied..i]);
            let rest = &s[i + 1..];
            let (name, width) = shell_name(rest);
            if name.is_empty() && width > 0 {
                // Bad syntax (`${}` or unterminated): eaten, like os.Expand.
            } else if name.is_empty() {
                out.push('$');
            } else {
                out.push_str(&get(name));
            }
            i += 1 + width;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&s[copied..]);
    out
}

fn shell_name(s: &str) -> (&str, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_special(b[1]) && b[2] == b'}' {
            return (&s[1..2], 3);
        }
        for (i, &c) in b.iter().enumerate().skip(1) {
            if c == b'}' {
                return if i == 1 { ("", 2) } else { (&s[1..i], i + 1) };
            }
        }
        return ("", 1);
    }
    if is_special(b[0]) {
        return (&s[0..1], 1);
    }
    let n = b
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    (&s[..n], n)
}

fn is_special(c: u8) -> bool {
    matches!(c, b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-') || c.is_ascii_digit()
}

/// Expands `$VAR` in every string of a JSON value.
fn expand_json(value: &Value, lookup: &Lookup) -> Value {
    match value {
        Value::String(s) => Value::String(expand(s, |k| lookup.get(k))),
        Value::Array(items) => Value::Array(items.iter().map(|v| expand_json(v, lookup)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), expand_json(v, lookup)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Go's `path.Join` (cleaned, no trailing slash).
fn path_join(parts: &[&str]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in parts.iter().flat_map(|p| p.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    out.join("/")
}

/// One native Vault secret: JWT login, then one read (§7). `Ok(None)` = not found.
fn resolve_vault_secret(
    http: &reqwest::blocking::Client,
    vault: &Value,
) -> Result<Option<String>, String> {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let url = s(&vault["server"]["url"]).trim_end_matches('/').to_owned();
    let namespace = s(&vault["server"]["namespace"]);
    let auth = &vault["server"]["auth"];
    let auth_name = s(&auth["name"]);
    if auth_name != "jwt" {
        return Err(format!(
            "initializing Vault service: preparing authenticated client: initializing auth method factory: \
             factory for auth method \"{auth_name}\" is not registered"
        ));
    }
    let data = &auth["data"];
    let Some(jwt) = data
        .get("jwt")
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
    else {
        return Err("initializing Vault service: preparing authenticated client: initializing auth method adapter: \
                    filtering auth method configuration: missing required auth method configuration key \"jwt\""
            .into());
    };
    let mut login = json!({ "jwt": jwt });
    if let Some(role) = data.get("role") {
        login["role"] = role.clone();
    }
    let auth_path = s(&auth["path"]);
    let send = |method: reqwest::Method, path: &str, token: Option<&str>, body: Option<&Value>| {
        let mut req = http.request(method, format!("{url}/v1/{path}"));
        if !namespace.is_empty() {
            req = req.header("X-Vault-Namespace", &namespace);
        }
        if let Some(token) = token {
            req = req.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().unwrap_or(Value::Null);
        Ok::<_, String>((status, body))
    };
    let api_error = |status: u16, body: &Value| {
        let errors: Vec<String> = body["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().map(str::to_owned))
            .collect();
        format!("api error: status code {status}: {}", errors.join(", "))
    };
    let (status, body) = send(
        reqwest::Method::PUT,
        &format!("auth/{auth_path}/login"),
        None,
        Some(&login),
    )?;
    if status >= 400 {
        return Err(format!(
            "initializing Vault service: preparing authenticated client: authenticating Vault client: writing to Vault: {}",
            api_error(status, &body)
        ));
    }
    let Some(token) = body["auth"]["client_token"].as_str().map(str::to_owned) else {
        return Err("initializing Vault service: preparing authenticated client: authenticating Vault client: \
                    getting token from the authentication response: no result from Vault"
            .into());
    };
    let engine = s(&vault["engine"]["name"]);
    let engine_path = s(&vault["engine"]["path"]);
    let path = s(&vault["path"]);
    let read_path = match engine.as_str() {
        "kv-v2" => path_join(&[&engine_path, "data", &path]),
        "kv-v1" | "generic" => path_join(&[&engine_path, &path]),
        other => {
            return Err(format!(
                "reading secret: requesting SecretEngine factory: factory for secret engine \"{other}\" is not registered"
            ));
        }
    };
    let (status, body) = send(reqwest::Method::GET, &read_path, Some(&token), None)?;
    if status == 404 && body["data"].is_null() {
        return Ok(None);
    }
    if status >= 400 {
        return Err(format!(
            "reading secret: reading from Vault: {}",
            api_error(status, &body)
        ));
    }
    let data = if engine == "kv-v2" {
        &body["data"]["data"]
    } else {
        &body["data"]
    };
    let field = s(&vault["field"]);
    Ok(data.get(&field).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::{expand, path_join};

    #[test]
    fn expands_like_os_expand() {
        let get = |k: &str| match k {
            "A" => "1".to_owned(),
            "$" => "$".to_owned(),
            _ => String::new(),
        };
        assert_eq!(expand("x$A-${A}y$$ $MISSING.", get), "x1-1y$ .");
        assert_eq!(expand("cost $ 5 and $", get), "cost $ 5 and $");
        assert_eq!(expand("${}", get), "");
    }

    #[test]
    fn joins_like_go_path_join() {
        assert_eq!(
            path_join(&["secret/", "data", "/app//db/"]),
            "secret/data/app/db"
        );
        assert_eq!(path_join(&["database", "creds/x"]), "database/creds/x");
    }
}
