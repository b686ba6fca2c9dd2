//! run_exec: run one sub-stage script through the wrapped executor, with the secrets this
//! sub-stage is entitled to in the child's environment (or 0600 files, or a private wrapper
//! script), its output masked, leases renewed, signals forwarded, and the exit code reported.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

use crate::cli::Cli;
use crate::config::{InjectMode, RunAs};
use crate::error::Result;
use crate::executor::{ExecutorError, JobUser, WrappedExecutor};
use crate::exit::Outcome;
use crate::inject::{self, Injection, StageDir};
use crate::lease::Renewer;
use crate::protocol::{BuildStage, StageEnv};
use crate::state::{StateDir, StateError};

use super::{load_config, runtime, state_handles};

pub(super) fn run(cli: &Cli, script: &Path, stage_name: &str) -> Result<Outcome> {
    let config = load_config(cli)?;
    let env = StageEnv::from_env();
    let stage = BuildStage::parse(stage_name);
    let (id, key) = state_handles(&env)?;
    let root = StateDir::open(&config.state_dir)?;
    let job_dir = root.job(&id);
    let sealed = job_dir.unseal(&key)?.ok_or_else(|| StateError::Missing {
        path: job_dir.dir().to_owned(),
    })?;
    let executor = WrappedExecutor::from_config(&config);

    let fixed_user = match &config.executor.run_as {
        RunAs::User { name, .. } => Some(name.as_str()),
        _ => None,
    };
    let job_user = match sealed.run_as.as_deref().or(fixed_user) {
        Some(name) => {
            if !nix::unistd::geteuid().is_root() {
                return Err(ExecutorError::HostUser(format!(
                    "[executor] user {name} needs leasehold to run as root (it runs as uid {})",
                    nix::unistd::geteuid()
                ))
                .into());
            }
            Some(JobUser::lookup(name, config.executor.run_as.group())?)
        }
        None => None,
    };

    let exposed = inject::exposed_secrets(&sealed, &stage);
    let script_delivery = config.executor.inject == InjectMode::Script;
    let stage_dir = match &job_user {
        Some(user) => Some(StageDir::for_user(
            &config.executor.files_dir,
            &job_dir,
            &stage,
            user.uid,
            user.gid,
        )?),
        None if inject::needs_stage_dir(&exposed, script_delivery) => {
            Some(StageDir::in_state(&job_dir, &stage)?)
        }
        None => None,
    };
    let mut injection = match (exposed.is_empty(), script_delivery, &stage_dir) {
        (true, _, _) => Injection::default(),
        (false, true, Some(dir)) => inject::for_script(&exposed, script, &stage, dir)?,
        (false, _, dir) => inject::for_env(&exposed, dir.as_ref())?,
    };
    // A job user cannot read the runner's script (it lives in the runner's private temp dir).
    if let (Some(_), None, Some(dir)) = (&job_user, &injection.script, &stage_dir) {
        let body = std::fs::read(script).map_err(|source| {
            StateError::from(crate::private_fs::FsError::Io {
                action: "read the stage script",
                path: script.to_owned(),
                source,
            })
        })?;
        injection.script = Some(dir.write("script", &body, 0o500)?);
    }
    let script_to_run = injection
        .script
        .clone()
        .unwrap_or_else(|| script.to_owned());

    // Every stage of a job with secrets is masked, not only the exposed ones: a value written to
    // a file in build_script can still be printed by a later stage.
    let mask = if sealed.secrets.is_empty() {
        None
    } else {
        let (set, _) = crate::mask::MaskSet::for_job(sealed.values(), &config.mask);
        (!set.is_empty()).then(|| Arc::new(set))
    };
    drop(exposed);
    let renewer = Renewer::new(config.clone(), job_dir, key, sealed);

    let mut command = executor.run_command(&script_to_run, &stage);
    let mut child_env = inject::child_env(executor.base_env(), &injection);
    if let (Some(user), Some(dir)) = (&job_user, &stage_dir) {
        child_env
            .retain(|(k, _)| !matches!(k.to_str(), Some("HOME" | "USER" | "LOGNAME" | "TMPDIR")));
        child_env.push(("HOME".into(), user.home.clone().into_os_string()));
        child_env.push(("USER".into(), OsString::from(&user.name)));
        child_env.push(("LOGNAME".into(), OsString::from(&user.name)));
        child_env.push(("TMPDIR".into(), dir.path().as_os_str().to_owned()));
        command.current_dir(dir.path());
        crate::supervision::sys::drop_privileges(command.as_std_mut(), user);
    }
    command.env_clear().envs(child_env);
    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();

    let rt = runtime()?;
    let exit = rt
        .block_on(crate::supervision::supervise(command, mask, renewer.run()))
        .map_err(|source| ExecutorError::Spawn { program, source })?;
    drop(stage_dir);

    Ok(if executor.passes_exit_codes_through() {
        Outcome::Driver { code: exit.code }
    } else if exit.code == 0 {
        Outcome::Success
    } else {
        Outcome::ScriptFailed { code: exit.code }
    })
}
