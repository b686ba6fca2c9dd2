//! The executor leasehold wraps: what actually runs the job's scripts.
//!
//! leasehold adds secrets around an executor; it does not decide where a job runs. The built-in
//! [`shell`] executor runs each script locally with `bash <script>`, optionally as another user;
//! [`custom`] calls an existing custom-executor driver (libvirt, LXD, docker, SSH…) for every
//! stage with gitlab-runner's own protocol, and passes its exit codes through unchanged;
//! [`docker`] runs each job in its own container on a Docker engine.

pub(crate) mod custom;
pub(crate) mod docker;
pub(crate) mod shell;

use std::ffi::OsString;
use std::path::Path;

use crate::config::{Config, Executor};
use crate::exit::{FailureKind, Outcome};
use crate::protocol::BuildStage;

/// The configured wrapped executor.
#[derive(Debug, Clone)]
pub(crate) enum WrappedExecutor {
    /// The built-in local shell.
    Shell(shell::ShellExecutor),
    /// An inner custom-executor driver.
    Custom(custom::CustomExecutor),
    /// A container per job on a Docker engine.
    Docker(docker::DockerExecutor),
}

/// What prepare checked about the job before any Vault login (the docker executor: its image
/// and services are allowed, the engine answers).
#[derive(Debug)]
pub(crate) struct Checked(Option<docker::CheckedJob>);

impl WrappedExecutor {
    /// Builds the executor the config selects.
    pub(crate) fn from_config(config: &Config) -> Self {
        match &config.executor.kind {
            Executor::Custom(driver) => {
                WrappedExecutor::Custom(custom::CustomExecutor::new(driver.clone()))
            }
            Executor::Shell { shell } => WrappedExecutor::Shell(shell::ShellExecutor::new(shell)),
            Executor::Docker(settings) => {
                WrappedExecutor::Docker(docker::DockerExecutor::new(settings.clone()))
            }
        }
    }

    /// Checks what can be checked before the job gets any secret (the docker executor: the
    /// job's image and services, and the engine).
    pub(crate) async fn check_job(&self) -> Result<Checked, ExecutorError> {
        match self {
            WrappedExecutor::Docker(docker) => Ok(Checked(Some(docker.check_job().await?))),
            _ => Ok(Checked(None)),
        }
    }

    /// The inner driver's config JSON, if it has a config stage.
    pub(crate) async fn config_json(&self) -> Result<Option<serde_json::Value>, ExecutorError> {
        match self {
            WrappedExecutor::Shell(_) | WrappedExecutor::Docker(_) => Ok(None),
            WrappedExecutor::Custom(custom) => custom.config().await,
        }
    }

    /// The driver name reported to gitlab-runner.
    pub(crate) fn driver_name(&self, inner: Option<&serde_json::Value>) -> String {
        match self {
            WrappedExecutor::Shell(_) => "leasehold (shell)".to_owned(),
            WrappedExecutor::Docker(_) => "leasehold (docker)".to_owned(),
            WrappedExecutor::Custom(_) => {
                let name = inner
                    .and_then(|j| j.pointer("/driver/name"))
                    .and_then(|v| v.as_str())
                    .unwrap_or("custom driver");
                format!("leasehold + {name}")
            }
        }
    }

    /// Prepares the execution environment for the job `owner` names, with what
    /// [`WrappedExecutor::check_job`] found.
    pub(crate) async fn prepare(
        &self,
        config: &Config,
        checked: Checked,
        owner: crate::docker::container::Owner<'_>,
    ) -> Result<Outcome, ExecutorError> {
        match (self, checked.0) {
            (WrappedExecutor::Shell(shell), _) => shell.prepare(config).map(|()| Outcome::Success),
            (WrappedExecutor::Custom(custom), _) => custom.prepare().await,
            (WrappedExecutor::Docker(docker), Some(job)) => docker
                .prepare(job, owner, &config.builds_dir, &config.cache_dir)
                .await
                .map(|()| Outcome::Success),
            (WrappedExecutor::Docker(docker), None) => {
                let job = docker.check_job().await?;
                docker
                    .prepare(job, owner, &config.builds_dir, &config.cache_dir)
                    .await
                    .map(|()| Outcome::Success)
            }
        }
    }

    /// The command that runs one sub-stage script (`None` for the docker executor, whose
    /// stages are execs in a container: [`docker::DockerExecutor::run_stage`]).
    pub(crate) fn run_command(
        &self,
        script: &Path,
        stage: &BuildStage,
    ) -> Option<tokio::process::Command> {
        match self {
            WrappedExecutor::Shell(shell) => Some(shell.run_command(script)),
            WrappedExecutor::Custom(custom) => Some(custom.run_command(script, stage)),
            WrappedExecutor::Docker(_) => None,
        }
    }

    /// The environment the run command starts from, before secrets are added.
    pub(crate) fn base_env(&self) -> Vec<(OsString, OsString)> {
        match self {
            WrappedExecutor::Shell(_) => crate::protocol::child_base_env(),
            WrappedExecutor::Custom(_) => crate::protocol::driver_base_env(),
            WrappedExecutor::Docker(_) => Vec::new(),
        }
    }

    /// Whether the run command's exit code is already in gitlab-runner's terms (a driver's), or
    /// is a script's exit code that leasehold must map.
    pub(crate) fn passes_exit_codes_through(&self) -> bool {
        matches!(self, WrappedExecutor::Custom(_))
    }

    /// The child that tears the execution environment down, if the executor has one.
    pub(crate) fn cleanup_child(&self) -> Option<crate::supervision::Child> {
        match self {
            WrappedExecutor::Shell(_) | WrappedExecutor::Docker(_) => None,
            WrappedExecutor::Custom(custom) => custom.cleanup_child(),
        }
    }
}

/// The wrapped executor failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExecutorError {
    /// The child could not be started.
    #[error(
        "cannot start {program}: {source}; check the [executor] section of the executor config"
    )]
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
    /// The inner driver's config stage printed something that is not JSON.
    #[error("the inner driver's config_exec ({program}) printed invalid JSON: {detail}")]
    ConfigJson {
        /// The program.
        program: String,
        /// The parser's message.
        detail: String,
    },
    /// The runner's stage script could not be read.
    #[error("cannot read the stage script {path}: {source}")]
    Script {
        /// The script.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The Docker engine failed, or refused the job.
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
    /// The inner driver's config stage failed.
    #[error("the inner driver's config_exec ({program}) exited with {code}")]
    ConfigFailed {
        /// The program.
        program: String,
        /// Its exit code.
        code: i32,
    },
}

impl ExecutorError {
    /// The wrapped executor failing is the host's problem, except a job the docker executor
    /// refuses (its image, its services).
    pub(crate) fn failure_kind(&self) -> FailureKind {
        match self {
            ExecutorError::Docker(e) => e.failure_kind(),
            _ => FailureKind::System,
        }
    }
}
