//! Private per-job state, kept between the stage processes of one job.
//!
//! Layout below the configured `state_dir` (checked: owned by us, mode 0700, not a symlink):
//!
//! ```text
//! <state_dir>/<state id>/            0700, one per prepare attempt
//!     journal.json                   0600  plain: lease ids, token accessors, times. No values.
//!     secrets.enc                    0600  AES-256-GCM: tokens and secret values
//!     files/<stage>-<random>/<NAME>  0600  file secrets, only while a stage that receives them runs
//! ```
//!
//! Why two files: the journal must stay readable after a crash, by `leasehold reap`, which holds
//! no key; the values must not be readable by anyone who can read the disk but not our process
//! environment. The encryption key is created by `config` and reaches the later stages through
//! gitlab-runner's `job_env`, so it never touches disk.
//!
//! - [`dir`]: the state directory and one attempt's directory in it;
//! - [`journal`]: what the reaper needs, in the clear;
//! - [`sealed`]: the tokens, values and leases, sealed with the attempt's key.

pub mod dir;
pub mod journal;
pub mod sealed;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

pub use dir::{JobDir, StateDir, StateId};
pub use journal::{JobStatus, Journal, JournalLease, JournalSeat, JournalSession};
pub use sealed::{Lease, Sealed, Seat, Session, StateKey, StoredSecret, is_sts_lease};

use crate::private_fs::FsError;

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The per-job state is unusable. Always the host's problem.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A private file or directory could not be used.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// A state file does not parse.
    #[error("corrupt state file {path}: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The state could not be decrypted (wrong key, tampering).
    #[error(
        "cannot decrypt {path}: the state key from config's job_env does not match (was the file replaced?)"
    )]
    Crypto {
        /// The file.
        path: PathBuf,
    },
    /// `LEASEHOLD_STATE_ID` is malformed.
    #[error("LEASEHOLD_STATE_ID is malformed; it must come from leasehold's own config stage")]
    BadId,
    /// `LEASEHOLD_STATE_KEY` is malformed.
    #[error("LEASEHOLD_STATE_KEY is malformed; it must come from leasehold's own config stage")]
    BadKey,
    /// config did not run, so there is no state id or key.
    #[error(
        "{variable} is not set: leasehold's config stage did not run; set config_exec = \"leasehold\" and config_args = [\"config\"] in [runners.custom]"
    )]
    NoConfigStage {
        /// The missing variable.
        variable: &'static str,
    },
    /// The job's state directory is gone.
    #[error(
        "the job's private state {path} is missing: prepare did not complete, or cleanup already ran"
    )]
    Missing {
        /// The directory.
        path: PathBuf,
    },
}
