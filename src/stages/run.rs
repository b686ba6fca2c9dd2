//! run_exec: run one sub-stage script through the wrapped executor, with the secrets this
//! sub-stage is entitled to in the child's environment (or 0600 files, or a private wrapper
//! script), its output masked, leases renewed, signals forwarded, and the exit code reported.
//! With the docker executor the stage is an exec in the job's (or the helper) container, and
//! the secrets travel with the script over its stdin instead ([`crate::executor::docker`]).

use std::path::Path;
use std::sync::Arc;

use crate::cli::Cli;
use crate::error::Result;
use crate::executor::{ExecutorError, WrappedExecutor};
use crate::exit::Outcome;
use crate::inject::{Delivery, Recipient, Stage, exposed_secrets};
use crate::job_user::{Chosen, JobUser};
use crate::lease::Renewer;
use crate::mask::MaskSet;
use crate::protocol::{BuildStage, StageEnv};
use crate::state::{StateDir, StateError};

use super::{load_config, state_handles};

pub(crate) async fn run(cli: &Cli, script: &Path, stage_name: &str) -> Result<Outcome> {
    let config = load_config(cli)?;
    crate::job_user::refuse_root_jobs(&config.executor)?;
    let stage = BuildStage::parse(stage_name);
    let (id, key) = state_handles(&StageEnv::from_env())?;
    let job_dir = StateDir::open(&config.state_dir)?.job(&id);
    let sealed = job_dir.unseal(&key)?.ok_or_else(|| StateError::Missing {
        path: job_dir.dir().to_owned(),
    })?;
    let executor = WrappedExecutor::from_config(&config);
    if let WrappedExecutor::Docker(docker) = &executor {
        let exposed = exposed_secrets(&sealed, &stage);
        let prepared = docker.prepare_stage(id.as_str(), &stage, script, &exposed)?;
        drop(exposed);
        let mask = stage_mask(&sealed, &config.mask);
        let renewer = Renewer::new(config.clone(), job_dir, key, sealed);
        let code = docker.run_stage(prepared, mask, renewer.run()).await?;
        return Ok(script_outcome(code));
    }
    let user = JobUser::for_job(
        &config.executor.run_as,
        Chosen {
            from_claim: sealed.run_as.as_deref(),
            seat: sealed.seat,
            id: &id,
            files_dir: &config.executor.files_dir,
        },
    )?;
    let at = Stage {
        stage: &stage,
        script,
        job_dir: &job_dir,
        files_dir: &config.executor.files_dir,
        recipient: Recipient::of(&executor),
    };
    let delivery = Delivery::for_stage(&sealed, at, config.executor.inject, user)?;
    let mask = stage_mask(&sealed, &config.mask);
    let command = executor
        .run_command(delivery.script(), &stage)
        .ok_or_else(|| ExecutorError::Spawn {
            program: "the wrapped executor".into(),
            source: std::io::Error::other("it has no run command"),
        })?;
    let child = delivery.apply(command, executor.base_env());
    let program = child.program();
    let renewer = Renewer::new(config.clone(), job_dir, key, sealed);
    let exit = child
        .supervise(mask, renewer.run())
        .await
        .map_err(|source| ExecutorError::Spawn { program, source })?;
    drop(delivery);

    Ok(if executor.passes_exit_codes_through() {
        Outcome::Driver { code: exit.code }
    } else {
        script_outcome(exit.code)
    })
}

/// A script's own exit code, as the job's verdict.
fn script_outcome(code: i32) -> Outcome {
    if code == 0 {
        Outcome::Success
    } else {
        Outcome::ScriptFailed { code }
    }
}

/// Every stage of a job with secrets is masked, not only the exposed ones: a value written to a
/// file in build_script can still be printed by a later stage.
fn stage_mask(
    sealed: &crate::state::Sealed,
    settings: &crate::config::MaskSection,
) -> Option<Arc<MaskSet>> {
    if sealed.secrets.is_empty() {
        return None;
    }
    let (set, _) = MaskSet::for_job(sealed.values(), settings);
    (!set.is_empty()).then(|| Arc::new(set))
}
