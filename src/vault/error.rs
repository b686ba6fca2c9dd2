//! Vault failures, classified by whose fault they are.
//!
//! STUB: interface fixed; implementation pending.

use crate::error::FailureKind;

/// A failed Vault request. Never carries a token or a secret value.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Connection refused, DNS failure, TLS failure or timeout, after all retries.
    #[error("Vault at {address} is unreachable after {attempts} attempts: {detail}")]
    Unreachable {
        /// The server.
        address: String,
        /// How many attempts were made.
        attempts: u32,
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
    /// 400, 401 or 403: the request was refused.
    #[error("Vault refused {path} with {status}: {errors}")]
    Denied {
        /// HTTP status.
        status: u16,
        /// API path below /v1/.
        path: String,
        /// Vault's `errors`, joined.
        errors: String,
    },
    /// 404 with no data.
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
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            VaultError::Denied { .. } | VaultError::NotFound { .. } => FailureKind::Build,
            _ => FailureKind::System,
        }
    }
}
