//! The plain-text journal: enough to revoke after a crash, nothing that grants access.
//!
//! `leasehold reap` holds no job's key, so everything it needs to take credentials back (token
//! accessors, lease ids, where they live, when the job is over) is kept here in the clear, and
//! updated from the sealed state as it changes.

use crate::vault::AuditTag;
use serde::{Deserialize, Serialize};

use super::sealed::{Sealed, is_sts_lease};

/// How far a job's state has come; the reaper acts on jobs that are over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// prepare is running (or crashed while running).
    Preparing,
    /// prepare finished; run stages may be using the secrets.
    Active,
    /// cleanup could not revoke everything; the reaper must finish.
    CleanupFailed,
}

/// The journal of one job attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    /// Format version.
    pub version: u32,
    /// The state id.
    pub state_id: String,
    /// `CI_JOB_ID`.
    pub job_id: i64,
    /// `group/project`, for the reaper's report.
    #[serde(default)]
    pub project_path: String,
    /// The pipeline id, for the audit headers of the reaper's requests.
    #[serde(default)]
    pub pipeline_id: i64,
    /// When prepare started (unix seconds).
    pub created_at: u64,
    /// The job timeout in seconds.
    pub job_timeout_secs: u64,
    /// Where the job is.
    pub status: JobStatus,
    /// One entry per Vault login.
    #[serde(default)]
    pub sessions: Vec<JournalSession>,
    /// One entry per lease.
    #[serde(default)]
    pub leases: Vec<JournalLease>,
    /// With `[executor] user_pool`: the uid this attempt holds and the directories given to it,
    /// so that cleanup, the reaper or a later prepare can take them back.
    #[serde(default)]
    pub seat: Option<JournalSeat>,
}

/// A pool uid held by a job attempt, and what was handed to it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalSeat {
    /// The uid.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// The directories created for it (project dir, its `.tmp` sibling, its HOME).
    #[serde(default)]
    pub dirs: Vec<std::path::PathBuf>,
}

/// A token, by accessor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalSession {
    /// The server.
    pub address: String,
    /// The namespace, if any.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The token's accessor.
    pub accessor: String,
    /// For the job's own token (a child of a login token): the variable it was delivered in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_as: Option<String>,
}

/// A lease, by id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalLease {
    /// The server.
    pub address: String,
    /// The namespace, if any.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The lease id.
    pub lease_id: String,
    /// Whether the lease can be revoked early (AWS STS credentials cannot).
    #[serde(default = "yes")]
    pub revocable: bool,
}

fn yes() -> bool {
    true
}

impl Journal {
    /// A fresh journal for a job attempt that is preparing.
    pub fn new(state_id: &str, job: &AuditTag, created_at: u64, job_timeout_secs: u64) -> Self {
        Journal {
            version: 1,
            state_id: state_id.to_owned(),
            job_id: job.job_id,
            project_path: job.project.clone(),
            pipeline_id: job.pipeline_id,
            created_at,
            job_timeout_secs,
            status: JobStatus::Preparing,
            sessions: Vec::new(),
            leases: Vec::new(),
            seat: None,
        }
    }

    /// Whether the job is over: its cleanup failed, or its state is older than the job's
    /// timeout plus `grace` (gitlab-runner would have ended it by then).
    pub fn is_over(&self, now: u64, grace: u64) -> bool {
        self.status == JobStatus::CleanupFailed
            || now
                > self
                    .created_at
                    .saturating_add(self.job_timeout_secs)
                    .saturating_add(grace)
    }

    /// The labels of the job's requests, for the reaper.
    pub fn audit_tag(&self) -> AuditTag {
        AuditTag {
            job_id: self.job_id,
            project: self.project_path.clone(),
            pipeline_id: self.pipeline_id,
        }
    }

    /// Records the tokens and leases `sealed` holds now (by accessor and id only).
    pub fn track(&mut self, sealed: &Sealed) {
        self.sessions = sealed
            .sessions
            .iter()
            .map(|s| JournalSession {
                address: s.server.address.clone(),
                namespace: s.namespace.clone(),
                accessor: s.accessor.clone(),
                delivered_as: s.delivered_as.clone(),
            })
            .collect();
        self.leases = sealed
            .leases
            .iter()
            .filter_map(|lease| {
                let session = sealed.sessions.get(lease.session)?;
                Some(JournalLease {
                    address: session.server.address.clone(),
                    namespace: session.namespace.clone(),
                    lease_id: lease.lease_id.clone(),
                    revocable: !is_sts_lease(&lease.lease_id),
                })
            })
            .collect();
    }
}
