//! The Docker engine behind the docker executor: one container per job, from the job's image.
//!
//! Why its own module: every other executor starts a local process, whose environment and
//! files leasehold controls directly. Here the job runs behind the Engine API, so what crosses
//! that boundary (and what stays out of `docker inspect`, the container's image layers and the
//! host's disk) is decided in one place. The pieces, each used by [`crate::executor`]'s docker
//! executor:
//!
//! - [`engine`]: the client (bollard over the unix socket, `DOCKER_HOST` honoured) and what a
//!   daemon that is down or refuses becomes;
//! - [`settings`]: `[executor.docker]`, checked with the rest of the config;
//! - [`image`]: which image a job gets, whether it is allowed, pulling it with registry auth
//!   from `DOCKER_AUTH_CONFIG`;
//! - [`container`]: the job, helper and service containers, their labels, and removal;
//! - [`services`]: the job's `services:` as the runner passes them;
//! - [`stage`]: one sub-stage as a `docker exec` whose script (and secrets) arrive over stdin.

pub(crate) mod container;
pub(crate) mod engine;
pub(crate) mod image;
pub(crate) mod services;
pub(crate) mod settings;
pub(crate) mod stage;

pub(crate) use container::{Containers, Role};
pub(crate) use engine::Engine;
pub(crate) use settings::DockerSettings;

use crate::exit::FailureKind;

/// What can go wrong between leasehold and the engine. No variant holds a secret: stage
/// payloads and registry passwords never reach an error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DockerError {
    /// The daemon is down, the socket is missing, or it refused the connection.
    #[error(
        "the Docker engine at {host} is not reachable ({detail}); start dockerd, or point [executor.docker] host (or DOCKER_HOST) at its socket"
    )]
    Unreachable {
        /// The address tried.
        host: String,
        /// Why.
        detail: String,
    },
    /// The engine answered an API call with an error.
    #[error("the Docker engine at {host} refused to {action}: {detail}")]
    Api {
        /// The address.
        host: String,
        /// What leasehold asked for.
        action: String,
        /// The engine's message.
        detail: String,
        /// Whose fault: a missing image is the job's, anything else the host's.
        kind: FailureKind,
    },
    /// The job names no image and there is no default.
    #[error(
        "the job names no image: and [executor.docker] default_image is not set; add image: to the job"
    )]
    NoImage,
    /// The job's (or a service's) image is not allowed.
    #[error(
        "image {image} is not allowed by [executor.docker] {setting} ({patterns}); use an image that matches, or ask the runner's admin to allow it"
    )]
    NotAllowed {
        /// The image.
        image: String,
        /// `allowed_images` or `allowed_services`.
        setting: &'static str,
        /// The patterns, as written.
        patterns: String,
    },
    /// The image is not on the engine and may not be pulled.
    #[error(
        "image {image} is not on the Docker engine and [executor.docker] pull_policy = \"never\"; load it on the runner host, or change pull_policy"
    )]
    NotPresent {
        /// The image.
        image: String,
    },
    /// `CUSTOM_ENV_CI_JOB_SERVICES` or `DOCKER_AUTH_CONFIG` is malformed.
    #[error("{what} is not valid: {detail}")]
    Invalid {
        /// Which input.
        what: &'static str,
        /// Why (never the content).
        detail: String,
    },
    /// A container of the job is gone (removed by someone, or prepare never made it).
    #[error(
        "the job's container {name} does not exist any more; was it removed by hand, or did prepare fail?"
    )]
    Gone {
        /// The container name.
        name: String,
    },
}

impl DockerError {
    /// Whose fault it is.
    pub(crate) fn failure_kind(&self) -> FailureKind {
        match self {
            DockerError::Unreachable { .. } | DockerError::Gone { .. } => FailureKind::System,
            DockerError::Api { kind, .. } => *kind,
            DockerError::NoImage
            | DockerError::NotAllowed { .. }
            | DockerError::NotPresent { .. }
            | DockerError::Invalid { .. } => FailureKind::Build,
        }
    }
}
