//! The Engine API client: bollard over the daemon's unix socket (or `tcp://`), with the API
//! version negotiated, so that both Debian's dockerd 20.10 and current engines answer.
//!
//! Every failure becomes a [`DockerError`] naming the address: a daemon that is down is the
//! host's problem (a system failure, which gitlab-runner retries), never a job's.

use bollard::Docker;

use crate::exit::FailureKind;

use super::DockerError;

/// How long one API request may take before the engine counts as unreachable (image pulls and
/// exec streams are not bounded by it: it ends when the response starts).
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// A connected engine.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    client: Docker,
    host: String,
}

impl Engine {
    /// Connects to `host` (`unix:///path` or `tcp://…`) and negotiates the API version; a daemon
    /// that does not answer is [`DockerError::Unreachable`].
    pub(crate) async fn connect(host: &str) -> Result<Engine, DockerError> {
        let unreachable = |detail: String| DockerError::Unreachable {
            host: host.to_owned(),
            detail,
        };
        let client = if host.starts_with("unix://") {
            Docker::connect_with_unix(host, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        } else {
            Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        }
        .map_err(|e| unreachable(describe(&e)))?;
        let client = client
            .negotiate_version()
            .await
            .map_err(|e| unreachable(describe(&e)))?;
        Ok(Engine {
            client,
            host: host.to_owned(),
        })
    }

    /// The client.
    pub(crate) fn client(&self) -> &Docker {
        &self.client
    }

    /// The address, for messages.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The error for a failed API call: unreachable when the connection failed, else what
    /// the engine said (a 404 is `not_found`'s fault, everything else the host's).
    pub(crate) fn error(
        &self,
        action: impl Into<String>,
        not_found: FailureKind,
    ) -> impl FnOnce(bollard::errors::Error) -> DockerError + '_ {
        let action = action.into();
        move |e| match &e {
            bollard::errors::Error::DockerResponseServerError {
                status_code,
                message,
            } => DockerError::Api {
                host: self.host.clone(),
                action,
                detail: one_line(message),
                kind: if *status_code == 404 {
                    not_found
                } else {
                    FailureKind::System
                },
            },
            _ => DockerError::Unreachable {
                host: self.host.clone(),
                detail: format!("{action}: {}", describe(&e)),
            },
        }
    }
}

/// Whether the error is the engine's "no such …" answer.
pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn describe(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::SocketNotFoundError(path) => format!("no socket at {path}"),
        other => {
            // hyper's errors hide the cause (ECONNREFUSED, ENOENT) at the end of their source
            // chain; that is the part an admin can act on.
            let mut cause: &dyn std::error::Error = other;
            while let Some(next) = cause.source() {
                cause = next;
            }
            let text = match cause
                .downcast_ref::<std::io::Error>()
                .map(std::io::Error::kind)
            {
                Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".to_owned(),
                Some(std::io::ErrorKind::NotFound) => "no such socket".to_owned(),
                Some(std::io::ErrorKind::PermissionDenied) => {
                    "permission denied (is leasehold's user in the docker group?)".to_owned()
                }
                _ => cause.to_string(),
            };
            one_line(&text)
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
