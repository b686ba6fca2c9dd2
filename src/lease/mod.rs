//! The life of a job's credentials after prepare: kept alive while the job runs, taken back
//! when it ends, and taken back by the reaper if the job's own cleanup never happened.
//!
//! gitlab-runner's native resolver does none of this: its tokens and leases live until their
//! TTL. Here every lease id and token accessor is journaled the moment it exists.

mod reap;
mod renew;
mod revoke;

pub(crate) use reap::{ReapedJob, reap};
pub(crate) use renew::{Renewer, warn_short_lived};
pub(crate) use revoke::{RevocationOutcome, RevocationReport, revoke_all};
