//! An inner custom-executor driver behind leasehold.
//!
//! leasehold calls the driver's executables exactly as gitlab-runner would: same arguments
//! (`run_exec [run_args…] <script> <stage>`), same environment (`CUSTOM_ENV_*`,
//! `JOB_RESPONSE_FILE`, `BUILD_FAILURE_EXIT_CODE`, `SYSTEM_FAILURE_EXIT_CODE`,
//! `BUILD_EXIT_CODE_FILE`, `TMPDIR`, and the driver's own `job_env`, which gitlab-runner passes
//! to leasehold's stages because `config` merged it into its own). Only leasehold's internal
//! `LEASEHOLD_*` variables and `VAULT_*`/`BAO_*` are withheld. Exit codes pass through unchanged.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::config::CustomDriver;
use crate::exit::Outcome;
use crate::protocol::{BuildStage, driver_base_env};

use super::ExecutorError;

/// The inner driver.
#[derive(Debug, Clone)]
pub struct CustomExecutor {
    driver: CustomDriver,
}

fn command(program: &str, args: &[String]) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(driver_base_env())
        .stdin(Stdio::null());
    command
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    crate::supervision::ChildExit::from(status).code
}

impl CustomExecutor {
    /// Wraps a driver definition.
    pub fn new(driver: CustomDriver) -> Self {
        CustomExecutor { driver }
    }

    /// Runs the driver's config_exec and parses its JSON (empty output: no config).
    pub fn config(&self) -> Result<Option<serde_json::Value>, ExecutorError> {
        let Some(program) = &self.driver.config_exec else {
            return Ok(None);
        };
        let output = command(program, &self.driver.config_args)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|source| ExecutorError::Spawn {
                program: program.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(ExecutorError::ConfigFailed {
                program: program.clone(),
                code: exit_code(output.status),
            });
        }
        if output.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&output.stdout)
            .map(Some)
            .map_err(|e| ExecutorError::ConfigJson {
                program: program.clone(),
                detail: e.to_string(),
            })
    }

    /// Runs the driver's prepare_exec with its output in the job log; its exit code is passed on.
    pub fn prepare(&self) -> Result<Outcome, ExecutorError> {
        self.run_simple(
            self.driver.prepare_exec.as_deref(),
            &self.driver.prepare_args,
        )
        .map(|code| Outcome::Driver { code })
    }

    /// The driver's cleanup_exec, to be run (and abandoned on SIGTERM) by the cleanup stage.
    pub fn cleanup_command(&self) -> Option<tokio::process::Command> {
        let program = self.driver.cleanup_exec.as_deref()?;
        Some(tokio::process::Command::from(command(
            program,
            &self.driver.cleanup_args,
        )))
    }

    fn run_simple(&self, program: Option<&str>, args: &[String]) -> Result<i32, ExecutorError> {
        let Some(program) = program else { return Ok(0) };
        let status = command(program, args)
            .status()
            .map_err(|source| ExecutorError::Spawn {
                program: program.to_owned(),
                source,
            })?;
        Ok(exit_code(status))
    }

    /// `run_exec [run_args…] <script> <stage>`.
    pub fn run_command(&self, script: &Path, stage: &BuildStage) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.driver.run_exec);
        command
            .args(&self.driver.run_args)
            .arg(script)
            .arg(stage.as_str().as_ref());
        command
    }
}
