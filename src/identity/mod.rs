//! The job's identity: its GitLab ID token and the claims in it.
//!
//! Vault's JWT auth method is the authority that verifies the token; leasehold reads the claims
//! to explain a refusal ("the role binds ref_protected=true, this token says false"). Claims read
//! by [`peek_claims`] are unverified and used for messages only.

mod claims;

pub use claims::{Claims, peek_claims};

use crate::error::FailureKind;

/// Why the job's identity could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The ID-token variable is not in the job.
    #[error(
        "the job has no ID token in ${variable}; add to the job:  id_tokens: {{ {variable}: {{ aud: \"{audience}\" }} }}"
    )]
    MissingToken {
        /// The variable leasehold looked for.
        variable: String,
        /// The audience to put into `aud`.
        audience: String,
    },
    /// The token is not a JWT.
    #[error("${variable} does not hold a JWT ({detail}); it must come from the job's id_tokens: keyword")]
    Malformed {
        /// The variable.
        variable: String,
        /// What is wrong (never the token).
        detail: String,
    },
}

impl IdentityError {
    /// A missing or broken token is the job's configuration.
    pub fn failure_kind(&self) -> FailureKind {
        FailureKind::Build
    }
}
