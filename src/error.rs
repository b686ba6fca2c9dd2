//! Every error a stage can end with, gathered at the edge.
//!
//! Each module has its own error type that knows whose fault it is ([`FailureKind`]); this module
//! only collects them, so that the stage edge (`entry::exit_status`) can print one line for the
//! job log and look the exit status up in [`crate::exit`]'s table.
//!
//! Invariant: no `Display` implementation reachable from [`Error`] ever formats a secret value, a
//! Vault token or an ID token. Those live in `secrecy` types whose `Debug` redacts, and no error
//! variant carries one.

use std::path::PathBuf;

use crate::exit::FailureKind;

/// Every error leasehold reports at the edge of a stage.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The executor config could not be loaded.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The runner protocol was not followed (missing environment, unreadable job file).
    #[error(transparent)]
    Protocol(#[from] crate::protocol::ProtocolError),
    /// The job's secret declarations are malformed or not allowed.
    #[error(transparent)]
    Declaration(#[from] crate::declarations::DeclarationError),
    /// The job's identity could not be established.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The fleet policy refuses what the job declared.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// A matching admin binding cannot be applied to the job.
    #[error(transparent)]
    Binding(#[from] crate::bindings::BindingError),
    /// The job's secrets cannot be planned (untrusted server, a name granted twice).
    #[error(transparent)]
    Plan(#[from] crate::secret_plan::PlanError),
    /// Resolving secrets from Vault failed.
    #[error(transparent)]
    Resolution(#[from] crate::resolution::ResolutionError),
    /// The private per-job state is unusable.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The job's local user cannot be used.
    #[error(transparent)]
    JobUser(#[from] crate::job_user::JobUserError),
    /// Running the wrapped executor failed.
    #[error(transparent)]
    Executor(#[from] crate::executor::ExecutorError),
    /// Reading or writing a file leasehold owns failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What leasehold was doing.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// Which exit code this failure maps to.
    pub(crate) fn failure_kind(&self) -> FailureKind {
        match self {
            Error::Config(_) | Error::Protocol(_) | Error::State(_) | Error::Io { .. } => {
                FailureKind::System
            }
            Error::Declaration(e) => e.failure_kind(),
            Error::Identity(e) => e.failure_kind(),
            Error::Policy(e) => e.failure_kind(),
            Error::Binding(e) => e.failure_kind(),
            Error::Plan(e) => e.failure_kind(),
            Error::Resolution(e) => e.failure_kind(),
            Error::Executor(e) => e.failure_kind(),
            Error::JobUser(e) => e.failure_kind(),
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The result type of stage entry points.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;
