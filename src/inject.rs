//! What a sub-stage's job process receives, and how.
//!
//! **Environment delivery** (`inject = "env"`, the default for the shell executor). The child's
//! environment is leasehold's own environment (which gitlab-runner built) minus every
//! `CUSTOM_ENV_*`, every `LEASEHOLD_*`, `VAULT_*` and `BAO_*` variable, `JOB_RESPONSE_FILE` and
//! `BUILD_EXIT_CODE_FILE`, plus the secrets this sub-stage is entitled to, under their own names:
//! the child is the job's own shell. A `file: true` secret is written to a 0600 file in a 0700
//! directory private to this stage, and the variable holds its path.
//!
//! A wrapped custom driver is an executor, not the job: it keeps `CUSTOM_ENV_*` and the runner's
//! variables, and usually runs as root on the host. It gets each secret as `CUSTOM_ENV_<NAME>`
//! ([`Recipient::Driver`]), gitlab-runner's namespace for job data reaching a driver, and hands
//! them to the job's process under their own names. A job-chosen name thus never sets or replaces
//! a variable the driver itself acts on (`BUILD_EXIT_CODE_FILE`, `LD_AUDIT`, `PS4`, its own
//! settings). Names the runner, leasehold and the shell own are refused at plan time for every
//! executor ([`crate::protocol::reserved_name`]).
//!
//! **Script delivery** (`inject = "script"`, the default for custom drivers, whose environment
//! need not reach the job: SSH, VMs, containers): leasehold hands the driver a private wrapper
//! script instead of the runner's. It exports the secrets, materialises file secrets in a private
//! `mktemp -d` directory on the far side (removed when the wrapper exits), and then runs the
//! runner's script content unchanged. No value is in the driver's environment at all.
//!
//! Either way the stage directory (file secrets, wrapper, the job user's copy of the script) is
//! deleted when the stage ends, and nothing is ever added to the runner's on-disk script.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};
use secrecy::ExposeSecret;

use crate::config::InjectMode;
use crate::executor::WrappedExecutor;
use crate::job_user::JobUser;
use crate::patterns::Patterns;
use crate::private_fs::{FsError, write_secret_file};
use crate::protocol::{BuildStage, env::CUSTOM_ENV_PREFIX};
use crate::state::{JobDir, Sealed, StateError, StoredSecret};
use crate::supervision::Child;

/// Whether `stage` matches any of the patterns (`*` wildcards, e.g. `step_*`). The patterns were
/// checked when the declaration was parsed; an unparsable list matches nothing.
pub(crate) fn stage_matches(patterns: &[String], stage: &BuildStage) -> bool {
    Patterns::new(patterns).is_ok_and(|p| p.matches(&stage.as_str()))
}

/// The secrets a stage receives. Unknown stage names never receive any.
pub(crate) fn exposed_secrets<'a>(state: &'a Sealed, stage: &BuildStage) -> Vec<&'a StoredSecret> {
    if matches!(stage, BuildStage::Other(_)) {
        return Vec::new();
    }
    state
        .secrets
        .iter()
        .filter(|s| stage_matches(&s.stages, stage))
        .collect()
}

/// A directory private to one stage, deleted when dropped.
#[derive(Debug)]
pub(crate) struct StageDir {
    path: PathBuf,
    owner: Option<(Uid, Gid)>,
}

impl StageDir {
    /// A 0700 directory inside the job's own state (the job runs as leasehold's user).
    pub(crate) fn in_state(job: &JobDir, stage: &BuildStage) -> Result<Self, StateError> {
        Ok(StageDir {
            path: job.stage_files_dir(&stage.as_str())?,
            owner: None,
        })
    }

    /// A 0700 directory owned by the job's user below `root` (0711, owned by us), for a job that
    /// runs as another user and must not see leasehold's state.
    pub(crate) fn for_user(
        root: &Path,
        job: &JobDir,
        stage: &BuildStage,
        uid: Uid,
        gid: Gid,
    ) -> Result<Self, StateError> {
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
        {
            Ok(()) => {}
            Err(e) => return Err(FsError::io("create", root)(e).into()),
        }
        crate::private_fs::check_owner(root)?;
        crate::private_fs::set_dir_mode_and_owner(root, 0o711, None)?;
        let name = format!(
            "{}-{}",
            job.id().as_str(),
            crate::random::unguessable_name(&stage.as_str())
        );
        let path = root.join(name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(FsError::io("create", &path))?;
        let dir = StageDir {
            path,
            owner: Some((uid, gid)),
        };
        crate::private_fs::set_dir_mode_and_owner(&dir.path, 0o700, Some((uid, gid)))?;
        Ok(dir)
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a private file (0600, or `mode`) owned by the stage's user.
    pub(crate) fn write(&self, name: &str, bytes: &[u8], mode: u32) -> Result<PathBuf, StateError> {
        let path = self.path.join(name);
        write_secret_file(&path, bytes, mode, self.owner)?;
        Ok(path)
    }
}

impl Drop for StageDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes the directories [`StageDir::for_user`] made below `root` for the job attempt `id`.
/// A stage whose leasehold was SIGKILLed (the runner's kill after `graceful_kill_timeout`)
/// could not delete its own, and it holds the job user's copy of the script and its file
/// secrets; cleanup calls this so that they do not outlive the job. A `root` that is missing
/// or not ours holds none of ours. Returns how many were removed.
pub(crate) fn remove_user_stage_dirs(
    root: &Path,
    id: &crate::state::StateId,
) -> Result<usize, StateError> {
    if crate::private_fs::check_owner(root).is_err() {
        return Ok(0);
    }
    let entries = std::fs::read_dir(root).map_err(FsError::io("list", root))?;
    let prefix = format!("{}-", id.as_str());
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(&prefix))
        {
            continue;
        }
        let path = entry.path();
        std::fs::remove_dir_all(&path).map_err(FsError::io("remove", &path))?;
        removed += 1;
    }
    Ok(removed)
}

/// Everything one stage's child receives, decided once: the script it runs, the secrets in its
/// environment or as files, and, for a job user, its identity and private directory. Dropping
/// it deletes the stage directory (file secrets, wrapper, the job user's copy of the script).
#[derive(Debug)]
pub(crate) struct Delivery {
    script: PathBuf,
    secret_env: Vec<(OsString, OsString)>,
    user: Option<JobUser>,
    stage_dir: Option<StageDir>,
}

/// Who the stage's child is, which decides the names its secrets take in its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recipient {
    /// The job's own shell (the built-in shell executor): each secret under its own name. The
    /// job owns that process, so what a name does to its bash is the job's business.
    Job,
    /// An inner custom-executor driver: each secret as `CUSTOM_ENV_<NAME>`, so that no
    /// job-chosen name can reach the driver's own environment; the driver passes them on.
    Driver,
}

impl Recipient {
    /// Who `executor`'s run command is.
    pub(crate) fn of(executor: &WrappedExecutor) -> Self {
        match executor {
            // The docker executor does not use a Delivery (its stages are execs); its job's
            // shell is the recipient all the same.
            WrappedExecutor::Shell(_) | WrappedExecutor::Docker(_) => Recipient::Job,
            WrappedExecutor::Custom(_) => Recipient::Driver,
        }
    }

    /// The variable that carries the secret `name` in this recipient's environment.
    fn env_name(self, name: &str) -> OsString {
        match self {
            Recipient::Job => OsString::from(name),
            Recipient::Driver => OsString::from(format!("{CUSTOM_ENV_PREFIX}{name}")),
        }
    }
}

/// Where a stage's delivery happens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stage<'a> {
    /// The sub-stage.
    pub stage: &'a BuildStage,
    /// The runner's script for it.
    pub script: &'a Path,
    /// The job attempt's state directory.
    pub job_dir: &'a JobDir,
    /// `[executor] files_dir`, for a job user's stage directories.
    pub files_dir: &'a Path,
    /// Who the child is.
    pub recipient: Recipient,
}

impl Delivery {
    /// Decides what `stage` delivers of `sealed`'s secrets, in `mode`, to a child running as
    /// `user` (`None`: leasehold's own user), and writes what must be written (file secrets, the
    /// wrapper, the job user's copy of the script) into a fresh private stage directory.
    pub(crate) fn for_stage(
        sealed: &Sealed,
        at: Stage<'_>,
        mode: InjectMode,
        user: Option<JobUser>,
    ) -> Result<Self, StateError> {
        let exposed = exposed_secrets(sealed, at.stage);
        let script_delivery = mode == InjectMode::Script;
        let stage_dir = match &user {
            Some(user) => Some(StageDir::for_user(
                at.files_dir,
                at.job_dir,
                at.stage,
                user.uid,
                user.gid,
            )?),
            None if needs_stage_dir(&exposed, script_delivery) => {
                Some(StageDir::in_state(at.job_dir, at.stage)?)
            }
            None => None,
        };
        let mut secret_env = Vec::new();
        let mut script = None;
        if !exposed.is_empty() {
            match (&stage_dir, script_delivery) {
                (Some(dir), true) => script = Some(wrapper(&exposed, at.script, at.stage, dir)?),
                (dir, _) => secret_env = env_values(&exposed, dir.as_ref(), at.recipient)?,
            }
        }
        // A job user cannot read the runner's script (it lives in the runner's private temp dir).
        if let (Some(_), None, Some(dir)) = (&user, &script, &stage_dir) {
            let body = std::fs::read(at.script)
                .map_err(FsError::io("read the stage script", at.script))?;
            script = Some(dir.write("script", &body, 0o500)?);
        }
        Ok(Delivery {
            script: script.unwrap_or_else(|| at.script.to_owned()),
            secret_env,
            user,
            stage_dir,
        })
    }

    /// The script the child runs: the runner's, a wrapper, or the job user's copy.
    pub(crate) fn script(&self) -> &Path {
        &self.script
    }

    /// The child for `command`: its environment is `base` with this stage's secrets added under
    /// the recipient's names (replacing same names: for a driver only `CUSTOM_ENV_*`); for a job
    /// user, also its `HOME`, `USER`, `LOGNAME`, `TMPDIR` and working directory, and the
    /// privilege drop.
    pub(crate) fn apply(
        &self,
        mut command: tokio::process::Command,
        mut env: Vec<(OsString, OsString)>,
    ) -> Child {
        env.retain(|(k, _)| !self.secret_env.iter().any(|(s, _)| s == k));
        env.extend(self.secret_env.iter().cloned());
        let user = match (&self.user, &self.stage_dir) {
            (Some(user), Some(dir)) => {
                env.retain(|(k, _)| {
                    !matches!(k.to_str(), Some("HOME" | "USER" | "LOGNAME" | "TMPDIR"))
                });
                env.push(("HOME".into(), user.home.clone().into_os_string()));
                env.push(("USER".into(), OsString::from(&user.name)));
                env.push(("LOGNAME".into(), OsString::from(&user.name)));
                env.push(("TMPDIR".into(), dir.path().as_os_str().to_owned()));
                command.current_dir(dir.path());
                Some(user.ids())
            }
            _ => None,
        };
        command.env_clear().envs(env);
        let child = Child::new(command).die_with_parent();
        match user {
            Some(ids) => child.run_as(&ids),
            None => child,
        }
    }
}

/// Whether a stage needs a private directory for these secrets in this delivery mode.
fn needs_stage_dir(secrets: &[&StoredSecret], script_delivery: bool) -> bool {
    !secrets.is_empty() && (script_delivery || secrets.iter().any(|s| s.file))
}

/// Environment delivery: values in the environment under `recipient`'s names, file secrets as
/// files in `dir`.
fn env_values(
    secrets: &[&StoredSecret],
    dir: Option<&StageDir>,
    recipient: Recipient,
) -> Result<Vec<(OsString, OsString)>, StateError> {
    let mut env = Vec::new();
    for secret in secrets {
        let value = if secret.file {
            let dir = dir.ok_or_else(|| StateError::Missing {
                path: PathBuf::from("(stage directory)"),
            })?;
            dir.write(&secret.name, secret.value.expose_secret().as_bytes(), 0o600)?
                .into_os_string()
        } else {
            OsString::from(secret.value.expose_secret())
        };
        env.push((recipient.env_name(&secret.name), value));
    }
    Ok(env)
}

/// Script delivery: a wrapper in `dir` that exports the secrets and runs `original` unchanged.
fn wrapper(
    secrets: &[&StoredSecret],
    original: &Path,
    stage: &BuildStage,
    dir: &StageDir,
) -> Result<PathBuf, StateError> {
    let body = std::fs::read(original).map_err(FsError::io("read the stage script", original))?;
    let wrapper = zeroize::Zeroizing::new(wrapper_script(secrets, &body, stage));
    dir.write("wrapper.sh", wrapper.as_bytes(), 0o600)
}

fn wrapper_script(secrets: &[&StoredSecret], body: &[u8], stage: &BuildStage) -> String {
    let mut delimiter = String::from("LEASEHOLD_SCRIPT_");
    delimiter.push_str(&crate::random::random_hex::<8>());
    let mut w = String::new();
    let _ = writeln!(w, "#!/usr/bin/env bash");
    let _ = writeln!(
        w,
        "# Written by leasehold for {stage}: exports this stage's secrets, then runs the runner's script"
    );
    let _ = writeln!(
        w,
        "# unchanged. Private (0600) and deleted when the stage ends."
    );
    let _ = writeln!(w, "__leasehold_dir=");
    let _ = writeln!(
        w,
        "__leasehold_cleanup() {{ [ -z \"$__leasehold_dir\" ] || rm -rf -- \"$__leasehold_dir\"; }}"
    );
    let _ = writeln!(w, "trap __leasehold_cleanup EXIT");
    let _ = writeln!(w, "trap 'exit 143' TERM");
    let _ = writeln!(w, "trap 'exit 129' HUP");
    let _ = writeln!(w, "trap 'exit 130' INT");
    if secrets.iter().any(|s| s.file) {
        let _ = writeln!(
            w,
            "__leasehold_dir=$(umask 077 && mktemp -d \"${{TMPDIR:-/tmp}}/leasehold-secrets.XXXXXXXX\") || exit 1"
        );
    }
    for secret in secrets {
        let value = crate::shell_quote::ansi_c_quote(secret.value.expose_secret().as_bytes());
        if secret.file {
            let _ = writeln!(
                w,
                "(umask 077 && printf '%s' {value} > \"$__leasehold_dir/{}\") || exit 1",
                secret.name
            );
            let _ = writeln!(
                w,
                "export {}=\"$__leasehold_dir/{}\"",
                secret.name, secret.name
            );
        } else {
            let _ = writeln!(w, "export {}={value}", secret.name);
        }
    }
    let _ = writeln!(w, "bash -s <<'{delimiter}'");
    w.push_str(&String::from_utf8_lossy(body));
    if !body.ends_with(b"\n") {
        w.push('\n');
    }
    let _ = writeln!(w, "{delimiter}");
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn default_exposure_patterns() {
        let defaults: Vec<String> = vec![
            "build_script".into(),
            "step_*".into(),
            "after_script".into(),
        ];
        for yes in ["build_script", "step_release", "after_script"] {
            assert!(stage_matches(&defaults, &BuildStage::parse(yes)), "{yes}");
        }
        for no in [
            "prepare_script",
            "get_sources",
            "restore_cache",
            "archive_cache",
            "upload_artifacts_on_success",
            "cleanup_file_variables",
        ] {
            assert!(!stage_matches(&defaults, &BuildStage::parse(no)), "{no}");
        }
    }

    #[test]
    fn wrapper_exports_then_runs_original_unchanged() {
        let dir = tempfile::tempdir().expect("tmp");
        let original = dir.path().join("script");
        std::fs::write(
            &original,
            "echo \"A=$A\"\ncat \"$F\"\necho 'LEASEHOLD_SCRIPT_x'\nexit 7\n",
        )
        .expect("write");
        let secrets = [
            StoredSecret {
                name: "A".into(),
                value: SecretString::from("it's \"q\"\n$x\\y"),
                file: false,
                stages: vec![],
                origin: String::new(),
                plain: false,
            },
            StoredSecret {
                name: "F".into(),
                value: SecretString::from("file-content\nline2"),
                file: true,
                stages: vec![],
                origin: String::new(),
                plain: false,
            },
        ];
        let refs: Vec<&StoredSecret> = secrets.iter().collect();
        let text = wrapper_script(
            &refs,
            &std::fs::read(&original).expect("read"),
            &BuildStage::BuildScript,
        );
        let wrapper = dir.path().join("wrapper.sh");
        std::fs::write(&wrapper, &text).expect("write");
        let out = std::process::Command::new("bash")
            .arg(&wrapper)
            .env("TMPDIR", dir.path())
            .output()
            .expect("bash");
        assert_eq!(out.status.code(), Some(7));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout,
            "A=it's \"q\"\n$x\\y\nfile-content\nline2LEASEHOLD_SCRIPT_x\n"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("leasehold-secrets")
            })
            .collect();
        assert!(
            leftovers.is_empty(),
            "far-side file secrets were not removed"
        );
    }

    #[test]
    fn removes_only_this_attempts_user_stage_dirs() {
        let root = tempfile::tempdir().expect("tmp");
        let id = crate::state::StateId::parse("j1001-0123456789abcdef").expect("id");
        for name in [
            "j1001-0123456789abcdef-build_script-aa",
            "j1001-0123456789abcdef-after_script-bb",
            "j1001-0123456789abcdee-build_script-cc",
        ] {
            std::fs::create_dir(root.path().join(name)).expect("mkdir");
            std::fs::write(root.path().join(name).join("F"), "value").expect("write");
        }
        assert_eq!(remove_user_stage_dirs(root.path(), &id).expect("remove"), 2);
        let left: Vec<_> = std::fs::read_dir(root.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["j1001-0123456789abcdee-build_script-cc"]);
        assert_eq!(
            remove_user_stage_dirs(&root.path().join("missing"), &id).expect("missing root"),
            0
        );
    }

    fn secret(name: &str, value: &str, file: bool) -> StoredSecret {
        StoredSecret {
            name: name.into(),
            value: SecretString::from(value),
            file,
            stages: vec!["build_script".into()],
            origin: String::new(),
            plain: false,
        }
    }

    /// The environment the child of `recipient` gets for build_script, from `base`, with the
    /// secrets `secrets` delivered by `mode`; and the script it runs.
    async fn delivered(
        recipient: Recipient,
        mode: InjectMode,
        secrets: Vec<StoredSecret>,
        base: &[(&str, &str)],
    ) -> (Vec<(String, String)>, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = crate::state::StateDir::open(&tmp.path().join("state")).expect("state dir");
        let job = root.job(&crate::state::StateId::generate("1"));
        job.create().expect("job dir");
        let script = tmp.path().join("script");
        std::fs::write(&script, "true\n").expect("script");
        let sealed = Sealed {
            secrets,
            ..Sealed::default()
        };
        let at = Stage {
            stage: &BuildStage::BuildScript,
            script: &script,
            job_dir: &job,
            files_dir: tmp.path(),
            recipient,
        };
        let delivery = Delivery::for_stage(&sealed, at, mode, None).expect("delivery");
        let base = base
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect();
        let mut command = tokio::process::Command::new("/usr/bin/env");
        command.arg("-0");
        let (exit, out) = delivery.apply(command, base).output().await.expect("env");
        assert_eq!(exit.code, 0);
        let env = out
            .split(|b| *b == 0)
            .filter(|e| !e.is_empty())
            .map(|e| {
                let e = String::from_utf8_lossy(e);
                let (k, v) = e.split_once('=').expect("k=v");
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let used = delivery.script().to_owned();
        drop(delivery);
        (env, used, script)
    }

    /// What a driver's own environment holds before any secret: the runner's protocol variables,
    /// a job variable, and variables of the driver's own.
    const DRIVER_BASE: [(&str, &str); 6] = [
        ("BUILD_EXIT_CODE_FILE", "/tmp/runner/build_exit_code"),
        ("JOB_RESPONSE_FILE", "/tmp/runner/response.json"),
        ("CUSTOM_ENV_CI_JOB_ID", "1001"),
        ("PS4", "+ "),
        ("DOCKER_HOST", "unix:///run/docker.sock"),
        ("PATH", "/usr/bin:/bin"),
    ];

    #[tokio::test]
    async fn a_driver_gets_env_secrets_only_as_custom_env() {
        let secrets = vec![
            secret("PS4", "$(touch /tmp/pwned)", false),
            secret("LD_AUDIT", "/tmp/evil.so", false),
            secret("DOCKER_HOST", "tcp://attacker:2375", false),
            secret("BUILD_EXIT_CODE_FILE", "/etc/shadow", false),
            secret("CERT", "file-content", true),
        ];
        let (env, script, original) =
            delivered(Recipient::Driver, InjectMode::Env, secrets, &DRIVER_BASE).await;
        assert_eq!(script, original, "env delivery runs the runner's script");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        // The driver's own variables are as they were; none was added.
        for (k, v) in DRIVER_BASE {
            assert_eq!(get(k), Some(v), "{k}");
        }
        assert_eq!(get("LD_AUDIT"), None);
        assert_eq!(get("CERT"), None);
        // The secrets are there, each under CUSTOM_ENV_<NAME>.
        assert_eq!(get("CUSTOM_ENV_PS4"), Some("$(touch /tmp/pwned)"));
        assert_eq!(get("CUSTOM_ENV_LD_AUDIT"), Some("/tmp/evil.so"));
        assert_eq!(get("CUSTOM_ENV_DOCKER_HOST"), Some("tcp://attacker:2375"));
        assert_eq!(get("CUSTOM_ENV_BUILD_EXIT_CODE_FILE"), Some("/etc/shadow"));
        let cert = get("CUSTOM_ENV_CERT").expect("file secret's path");
        assert!(cert.ends_with("/CERT"), "{cert}");
        assert_eq!(
            env.len(),
            DRIVER_BASE.len() + 5,
            "{:?}",
            env.iter().map(|(k, _)| k).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn the_jobs_own_shell_gets_env_secrets_under_their_names() {
        let (env, _, _) = delivered(
            Recipient::Job,
            InjectMode::Env,
            vec![
                secret("PS4", "> ", false),
                secret("APP_TOKEN", "t0ken", false),
            ],
            &[("PATH", "/usr/bin:/bin"), ("PS4", "+ ")],
        )
        .await;
        let mut env = env;
        env.sort();
        assert_eq!(
            env,
            [
                ("APP_TOKEN", "t0ken"),
                ("PATH", "/usr/bin:/bin"),
                ("PS4", "> ")
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[tokio::test]
    async fn script_delivery_puts_no_value_in_the_drivers_environment() {
        let (env, script, original) = delivered(
            Recipient::Driver,
            InjectMode::Script,
            vec![
                secret("LD_AUDIT", "/tmp/evil.so", false),
                secret("CERT", "pem", true),
            ],
            &DRIVER_BASE,
        )
        .await;
        assert_ne!(script, original);
        assert!(script.ends_with("wrapper.sh"), "{script:?}");
        let mut expected: Vec<_> = DRIVER_BASE
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        expected.sort();
        let mut env = env;
        env.sort();
        assert_eq!(env, expected);
    }

    #[test]
    fn quoting_round_trips_every_byte() {
        let bytes: Vec<u8> = (1u8..=255).collect();
        let script = format!("printf '%s' {}", crate::shell_quote::ansi_c_quote(&bytes));
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("bash");
        assert_eq!(out.stdout, bytes);
    }
}
