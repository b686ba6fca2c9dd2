//! Vault failures, classified by whose fault they are.
//!
//! The variants follow what the operator or the job author has to do next: an unreachable or
//! sealed server, or a 5xx, is an infrastructure problem (gitlab-runner may retry the stage); a
//! refusal or a missing secret is the job's problem and retrying cannot help.
//!
//! Invariant: no variant ever holds a token, an ID token or a secret value. Paths, addresses,
//! accessors and Vault's own `errors` strings (with any token the request carried scrubbed out,
//! and made [`printable`]) are the only text that reaches `Display`.

use crate::api_path::is_invisible;
use crate::exit::FailureKind;

/// Remote text as it may be printed: whitespace of any kind becomes a space, and control and
/// invisible formatting characters are dropped, so that a server (or anything between it and
/// leasehold) cannot move the cursor, retitle the terminal, clear the job log's screen or
/// reorder what a reader sees. Every text from a response that can reach a log or an error
/// message passes through here: Vault's `errors`, the field names of a response, accessors.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .filter_map(|c| {
            if c.is_whitespace() {
                Some(' ')
            } else if c.is_control() || is_invisible(c) {
                None
            } else {
                Some(c)
            }
        })
        .collect()
}

/// A failed Vault request. Never carries a token or a secret value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VaultError {
    /// Connection refused, DNS failure, TLS failure or timeout, after all retries.
    #[error("Vault at {address} is unreachable after {attempts} attempts in {waited} s: {detail}")]
    Unreachable {
        /// The server.
        address: String,
        /// How many attempts were made.
        attempts: u32,
        /// Seconds spent trying.
        waited: u64,
        /// The last transport error.
        detail: String,
    },
    /// The server is sealed.
    #[error("Vault at {address} is sealed")]
    Sealed {
        /// The server.
        address: String,
    },
    /// 5xx after all retries.
    #[error("Vault at {address} answered {status} for {path}: {errors}")]
    Server {
        /// The server.
        address: String,
        /// HTTP status.
        status: u16,
        /// API path below /v1/.
        path: String,
        /// Vault's `errors`, joined.
        errors: String,
    },
    /// 400, 401, 403 or another 4xx: the request was refused. This includes a 404 that gives a
    /// reason (a missing mount or namespace), as opposed to a plain miss.
    #[error("Vault refused {path} with {status}: {errors}")]
    Denied {
        /// HTTP status.
        status: u16,
        /// API path below /v1/.
        path: String,
        /// Vault's `errors`, joined.
        errors: String,
    },
    /// 404 without a reason: nothing is stored at the path (or a KV v2 version was deleted).
    #[error("nothing at {path}")]
    NotFound {
        /// API path below /v1/.
        path: String,
    },
    /// The response did not have the expected shape.
    #[error("unexpected response from Vault for {path}: {detail}")]
    InvalidResponse {
        /// API path below /v1/.
        path: String,
        /// What was wrong (never the body).
        detail: String,
    },
    /// The client could not be configured (bad address, CA file, certificate).
    #[error("{detail}")]
    Config {
        /// What is wrong and how to fix it.
        detail: String,
    },
}

impl VaultError {
    /// Transport failures and 5xx are the system's fault; refusals are the job's.
    pub(crate) fn failure_kind(&self) -> FailureKind {
        match self {
            VaultError::Denied { .. } | VaultError::NotFound { .. } => FailureKind::Build,
            _ => FailureKind::System,
        }
    }
}

/// A setting (or something leasehold was asked to send) that cannot work; the text says the fix.
pub(super) fn config(detail: impl Into<String>) -> VaultError {
    VaultError::Config {
        detail: detail.into(),
    }
}

/// An answer from `path` that is not what the endpoint gives.
pub(super) fn invalid(path: &str, detail: impl Into<String>) -> VaultError {
    VaultError::InvalidResponse {
        path: path.to_owned(),
        detail: detail.into(),
    }
}
