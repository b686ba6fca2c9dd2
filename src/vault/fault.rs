//! Whose fault a failure is.
//!
//! Transport errors, 5xx and 429 are retried with jittered exponential backoff and then
//! reported as infrastructure failures; 4xx are refusals and are never retried, because the
//! answer will not change. While an HA cluster elects a new active node, its nodes refuse
//! connections, answer 503, 429, "sealed", or, as a standby that cannot reach the old leader,
//! 500 "local node not active" or a 307 to the dead node: those answers (and transport
//! failures) are failover answers, retried node after node for up to `failover_wait` (see
//! [`transport`](super::transport)). Any other 5xx is retried `retries` times only.
//!
//! Retrying a POST can repeat a side effect (a second `pki/issue` certificate, say). That is
//! acceptable here: every lease created by a job's token dies with that token at cleanup.

use super::attempt_error::AttemptError;
use super::call::Call;
use super::error::{VaultError, config, invalid};
use super::reply::{Reply, error_text, no_message};

/// What one attempt says about the rest of the request.
pub(super) enum Verdict {
    /// A final answer (success or refusal).
    Done(Reply),
    /// The node is down or the cluster is between active nodes: the next node may answer, and
    /// waiting helps.
    Failover(Failure),
    /// Another server error: retried `retries` times.
    Error(Failure),
}

/// A failed attempt, kept for the message when leasehold gives up.
pub(super) enum Failure {
    Transport(String),
    Status(Reply),
}

/// Standby answers of Vault and OpenBao when the active node is gone (`http/handler.go`).
const STANDBY_TEXTS: [&str; 5] = [
    "local node not active",
    "active cluster node not found",
    "no active vault instance",
    "node is not active",
    "standby mode",
];

/// What an attempt's outcome means for the request.
pub(super) fn verdict(
    result: Result<Reply, AttemptError>,
    call: &Call<'_>,
) -> Result<Verdict, VaultError> {
    let reply = match result {
        Ok(reply) => reply,
        Err(AttemptError::Fatal(error)) => return Err(error),
        Err(AttemptError::Redirect(detail)) => return Err(config(detail)),
        Err(AttemptError::Transport(detail)) => {
            return Ok(Verdict::Failover(Failure::Transport(detail)));
        }
    };
    let status = reply.status.as_u16();
    Ok(match status {
        429 | 502 | 503 | 504 => Verdict::Failover(Failure::Status(reply)),
        500..=599 => {
            let text = error_text(&reply, call)
                .unwrap_or_default()
                .to_ascii_lowercase();
            if STANDBY_TEXTS.iter().any(|t| text.contains(t)) {
                Verdict::Failover(Failure::Status(reply))
            } else {
                Verdict::Error(Failure::Status(reply))
            }
        }
        _ => Verdict::Done(reply),
    })
}

/// Maps a final status to success or the matching error; `label` names the server (and node)
/// that answered.
pub(super) fn classify(
    reply: Reply,
    call: &Call<'_>,
    label: impl Fn() -> String,
) -> Result<Reply, VaultError> {
    let status = reply.status.as_u16();
    let path = call.path.to_owned();
    match status {
        200..=299 => Ok(reply),
        // A plain miss has an empty `errors` (or, for a deleted KV v2 version, only data). A
        // 404 that gives a reason ("no handler for route", "namespace not found") is a wrong
        // mount or namespace, and "nothing at <path>" would hide that.
        404 => match error_text(&reply, call) {
            None => Err(VaultError::NotFound { path }),
            Some(errors) => Err(VaultError::Denied {
                status,
                path,
                errors,
            }),
        },
        300..=399 => Err(invalid(
            call.path,
            format!(
                "redirected ({status}) without a target leasehold can follow; set address to the active node or \
                 its load balancer"
            ),
        )),
        429 | 500..=599 => {
            let errors = error_text(&reply, call).unwrap_or_else(no_message);
            if status == 503 && errors.to_ascii_lowercase().contains("sealed") {
                Err(VaultError::Sealed { address: label() })
            } else {
                Err(VaultError::Server {
                    address: label(),
                    status,
                    path,
                    errors,
                })
            }
        }
        _ => Err(VaultError::Denied {
            status,
            path,
            errors: error_text(&reply, call).unwrap_or_else(no_message),
        }),
    }
}
