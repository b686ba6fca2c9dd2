//! run_exec: run one sub-stage script through the wrapped executor, with the secrets this
//! sub-stage is entitled to in the child's environment (or in 0600 files), its output masked,
//! signals forwarded, and the script's real exit code reported.

use std::path::Path;
use std::sync::Arc;

use secrecy::ExposeSecret;

use crate::cli::Cli;
use crate::error::Result;
use crate::executor::{ExecutorError, WrappedExecutor};
use crate::inject;
use crate::lease::Renewer;
use crate::mask::MaskSet;
use crate::protocol::{BuildStage, StageEnv};
use crate::state::{StateError, StateRoot};

use super::{load_config, runtime, state_handles};

pub(super) fn run(cli: &Cli, script: &Path, stage_name: &str) -> Result<i32> {
    let config = load_config(cli)?;
    let env = StageEnv::from_env();
    let stage = BuildStage::parse(stage_name);
    let (id, key) = state_handles(&env)?;
    let root = StateRoot::open(&config.state_dir)?;
    let job_state = root.job(&id);
    let private = job_state
        .read_vault(&key)?
        .ok_or_else(|| StateError::Missing { path: job_state.dir().to_owned() })?;

    let injection = inject::prepare(&private, &job_state, &stage)?;
    // Every stage of a job with secrets is masked, not only the exposed ones: a value written to
    // a file in build_script can still be printed by a later stage.
    let mask = if private.secrets.is_empty() {
        None
    } else {
        let (set, _) = MaskSet::new(
            private.secrets.iter().map(|s| (s.name.as_str(), s.value.expose_secret().as_bytes())),
            &config.mask.text,
            config.mask.min_length,
        );
        (!set.is_empty()).then(|| Arc::new(set))
    };
    let renewer = Renewer::new(config.clone(), job_state, key, private);

    let executor = WrappedExecutor::from_config(&config);
    let mut command = executor.run_command(script, &stage);
    command.env_clear().envs(injection.child_env());
    let program = command.as_std().get_program().to_string_lossy().into_owned();

    let rt = runtime()?;
    let exit = rt
        .block_on(crate::supervision::supervise(command, mask, renewer.run()))
        .map_err(|source| ExecutorError::Spawn { program, source })?;
    drop(injection);

    if exit.code == 0 {
        return Ok(0);
    }
    env.write_build_exit_code(exit.code)?;
    Ok(env.exit_codes.build_failure)
}
