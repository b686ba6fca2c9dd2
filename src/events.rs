//! One machine-readable line per job for what cleanup and `reap` took back.
//!
//! Why: a token or lease that was never revoked is what an operator alerts on, and the runner's
//! log is prose. Each line is a JSON object appended to `[events] file` with one `write` on an
//! `O_APPEND` descriptor, so concurrent cleanups on a host never interleave their lines. Events
//! hold counts, ids and outcomes, never a value or a token.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Serialize;

/// What happened to a job's tokens or leases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Tally {
    /// How many the job had.
    pub obtained: usize,
    /// Revoked now (directly or with their token).
    pub revoked: usize,
    /// Gone on their own before anyone revoked them.
    pub expired: usize,
    /// Removed from Vault but valid until they expire (AWS STS).
    pub not_revocable: usize,
    /// Still alive: left for the reaper, or for the operator.
    pub failed: usize,
}

/// One job's line.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct JobEvent<'a> {
    /// `cleanup` or `reap`.
    pub event: &'static str,
    /// Unix time of the event.
    pub time: u64,
    /// The attempt's state id.
    pub state_id: &'a str,
    /// GitLab's job id (0 when unknown).
    pub job_id: i64,
    /// The project's path (empty when unknown).
    pub project: &'a str,
    /// `clean` (everything taken back), `left_for_reaper` or `failed`.
    pub outcome: &'static str,
    /// The job's Vault tokens.
    pub tokens: Tally,
    /// The job's leases.
    pub leases: Tally,
    /// Seconds from prepare to this event.
    pub job_seconds: u64,
    /// How long this cleanup or reap took for the job, in milliseconds.
    pub duration_ms: u64,
}

impl JobEvent<'_> {
    /// The outcome for these tallies: anything still alive is a failure.
    pub(crate) fn outcome_of(tokens: &Tally, leases: &Tally) -> &'static str {
        if tokens.failed + leases.failed == 0 {
            "clean"
        } else {
            "failed"
        }
    }
}

/// Appends `event` to `path` as one line (the file is created 0640).
pub(crate) fn append(path: &Path, event: &JobEvent<'_>) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    file.write_all(&line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_json_line_each_and_appended() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("events.jsonl");
        let tokens = Tally {
            obtained: 1,
            revoked: 1,
            ..Tally::default()
        };
        let leases = Tally {
            obtained: 2,
            revoked: 1,
            failed: 1,
            ..Tally::default()
        };
        for state_id in ["j1-aa", "j2-bb"] {
            let event = JobEvent {
                event: "cleanup",
                time: 1,
                state_id,
                job_id: 1,
                project: "grp/app",
                outcome: JobEvent::outcome_of(&tokens, &leases),
                tokens,
                leases,
                job_seconds: 5,
                duration_ms: 7,
            };
            append(&path, &event).expect("append");
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["state_id"], "j2-bb");
        assert_eq!(lines[0]["outcome"], "failed");
        assert_eq!(lines[0]["leases"]["failed"], 1);
    }
}
