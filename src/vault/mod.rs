//! A thin Vault/OpenBao HTTP client that keeps what matters to leasehold: lease ids, TTLs,
//! token accessors, and the difference between "denied", "not found" and "unreachable".
//!
//! Why not `vaultrs`: it drops `lease_id` from dynamic reads and has no `sys/leases/*`, and lease
//! revocation is leasehold's core job. Secret material (tokens, field values) is decoded straight
//! into `SecretString` and never appears in an error.

mod audit;
mod client;
mod envelope;
mod error;
mod servers;
#[cfg(test)]
mod tests;

pub(crate) use audit::AuditTag;
pub(crate) use client::{RequestLimit, ServerSpec, VaultClient, check_address};
#[cfg(test)]
pub(crate) use envelope::TokenLookup;
pub(crate) use envelope::{AuthInfo, Health, LeaseInfo, SecretEnvelope, SecretFields};
pub(crate) use error::{VaultError, printable};
pub(crate) use servers::{Server, Servers, address_key};
