//! The executor leasehold wraps: what actually runs the job's scripts.
//!
//! leasehold adds secrets around an executor; it does not decide where a job runs. The built-in
//! [`shell`] executor runs each script locally with `bash <script>`, like gitlab-runner's own
//! shell executor.

pub mod shell;

use std::path::Path;

use crate::error::FailureKind;
use crate::executor_config::{ExecutorConfig, ExecutorKind};
use crate::protocol::BuildStage;

/// The configured wrapped executor.
#[derive(Debug, Clone)]
pub enum WrappedExecutor {
    /// The built-in local shell.
    Shell(shell::ShellExecutor),
}

impl WrappedExecutor {
    /// Builds the executor the config selects.
    pub fn from_config(config: &ExecutorConfig) -> Self {
        match config.executor.kind {
            ExecutorKind::Shell => WrappedExecutor::Shell(shell::ShellExecutor::new(&config.executor.shell)),
        }
    }

    /// The driver name reported to gitlab-runner.
    pub fn driver_name(&self) -> String {
        match self {
            WrappedExecutor::Shell(_) => "leasehold (shell)".to_owned(),
        }
    }

    /// Prepares the execution environment (prepare_exec of the wrapped executor).
    pub fn prepare(&self, config: &ExecutorConfig) -> Result<(), ExecutorError> {
        match self {
            WrappedExecutor::Shell(shell) => shell.prepare(config),
        }
    }

    /// The command that runs one sub-stage script.
    pub fn run_command(&self, script: &Path, stage: &BuildStage) -> tokio::process::Command {
        match self {
            WrappedExecutor::Shell(shell) => shell.run_command(script, stage),
        }
    }
}

/// The wrapped executor failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The child could not be started.
    #[error("cannot start {program}: {source}; check [executor] shell in the executor config")]
    Spawn {
        /// The program.
        program: String,
        /// The error.
        source: std::io::Error,
    },
    /// A directory the executor needs could not be created.
    #[error("cannot create {path}: {source}")]
    Directory {
        /// The directory.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl ExecutorError {
    /// Failing to run the executor is the host's problem.
    pub fn failure_kind(&self) -> FailureKind {
        FailureKind::System
    }
}
