//! An inner custom-executor driver behind leasehold.
//!
//! leasehold calls the driver's executables exactly as gitlab-runner would: same arguments
//! (`run_exec [run_args…] <script> <stage>`), same environment (`CUSTOM_ENV_*`,
//! `JOB_RESPONSE_FILE`, `BUILD_FAILURE_EXIT_CODE`, `SYSTEM_FAILURE_EXIT_CODE`,
//! `BUILD_EXIT_CODE_FILE`, `TMPDIR`, and the driver's own `job_env`, which gitlab-runner passes
//! to leasehold's stages because `config` merged it into its own). Only leasehold's internal
//! `LEASEHOLD_*` variables and `VAULT_*`/`BAO_*` are withheld. Exit codes pass through unchanged.
//!
//! The job's secrets never arrive under names of the job's choosing: in the wrapper script the
//! driver runs (`inject = "script"`, the default), or as `CUSTOM_ENV_<NAME>` (`inject = "env"`),
//! see [`crate::inject::Recipient::Driver`].

use std::path::Path;

use crate::config::CustomDriver;
use crate::exit::Outcome;
use crate::protocol::{BuildStage, driver_base_env};
use crate::supervision::Child;

use super::ExecutorError;

/// The inner driver.
#[derive(Debug, Clone)]
pub(crate) struct CustomExecutor {
    driver: CustomDriver,
}

fn command(program: &str, args: &[String]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command.args(args).env_clear().envs(driver_base_env());
    command
}

fn spawn_error(program: &str) -> impl FnOnce(std::io::Error) -> ExecutorError {
    let program = program.to_owned();
    move |source| ExecutorError::Spawn { program, source }
}

impl CustomExecutor {
    /// Wraps a driver definition.
    pub(crate) fn new(driver: CustomDriver) -> Self {
        CustomExecutor { driver }
    }

    /// Runs the driver's config_exec and parses its JSON (empty output: no config).
    pub(crate) async fn config(&self) -> Result<Option<serde_json::Value>, ExecutorError> {
        let Some(program) = &self.driver.config_exec else {
            return Ok(None);
        };
        let (exit, stdout) = Child::new(command(program, &self.driver.config_args))
            .die_with_parent()
            .output()
            .await
            .map_err(spawn_error(program))?;
        if exit.code != 0 {
            return Err(ExecutorError::ConfigFailed {
                program: program.clone(),
                code: exit.code,
            });
        }
        if stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&stdout)
            .map(Some)
            .map_err(|e| ExecutorError::ConfigJson {
                program: program.clone(),
                detail: e.to_string(),
            })
    }

    /// Runs the driver's prepare_exec with its output in the job log; its exit code is passed on.
    pub(crate) async fn prepare(&self) -> Result<Outcome, ExecutorError> {
        let Some(program) = &self.driver.prepare_exec else {
            return Ok(Outcome::Driver { code: 0 });
        };
        let exit = Child::new(command(program, &self.driver.prepare_args))
            .die_with_parent()
            .run()
            .await
            .map_err(spawn_error(program))?;
        Ok(Outcome::Driver { code: exit.code })
    }

    /// The driver's cleanup_exec. It does not die with leasehold: cleanup stops waiting for it on
    /// the runner's SIGTERM (to revoke in time), and it must still finish tearing down.
    pub(crate) fn cleanup_child(&self) -> Option<Child> {
        let program = self.driver.cleanup_exec.as_deref()?;
        Some(Child::new(command(program, &self.driver.cleanup_args)))
    }

    /// `run_exec [run_args…] <script> <stage>`.
    pub(crate) fn run_command(&self, script: &Path, stage: &BuildStage) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.driver.run_exec);
        command
            .args(&self.driver.run_args)
            .arg(script)
            .arg(stage.as_str().as_ref());
        command
    }
}
