//! A thin Vault/OpenBao HTTP client that keeps what matters to leasehold: lease ids, TTLs,
//! token accessors, and the difference between "denied", "not found" and "unreachable".
//!
//! Why not `vaultrs`: it drops `lease_id` from dynamic reads and has no `sys/leases/*`, and lease
//! revocation is leasehold's core job. Secret material (tokens, field values) is decoded straight
//! into `SecretString` and never appears in an error.
//!
//! The API calls ([`client`]) describe each request as a [`call`] and hand it to the one place
//! that sends requests ([`transport`]); what each answer means for retrying and for whose fault
//! a failure is lives in [`fault`], what a final reply says (and what of it may be shown) in
//! [`reply`], and where a token may go in [`address`].

mod address;
mod attempt_error;
mod audit;
mod backoff;
mod call;
mod client;
mod envelope;
mod error;
mod fault;
mod http;
mod limit;
mod reply;
mod servers;
mod spec;
#[cfg(test)]
mod tests;
mod transport;

pub(crate) use address::check_address;
pub(crate) use audit::AuditTag;
pub(crate) use client::VaultClient;
#[cfg(test)]
pub(crate) use envelope::TokenLookup;
pub(crate) use envelope::{AuthInfo, SecretEnvelope, SecretFields};
pub(crate) use error::{VaultError, printable};
pub(crate) use limit::RequestLimit;
pub(crate) use servers::{Server, Servers, address_key};
pub(crate) use spec::ServerSpec;
