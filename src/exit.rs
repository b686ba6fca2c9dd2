//! How a stage's result becomes the exit status gitlab-runner acts on.
//!
//! gitlab-runner distinguishes a job's own fault (`BUILD_FAILURE_EXIT_CODE`: no retry, the job
//! fails) from an infrastructure fault (`SYSTEM_FAILURE_EXIT_CODE`: prepare is retried up to three
//! times, the job is marked as a system failure), reads `BUILD_EXIT_CODE_FILE` on a build failure
//! to learn the script's own code, and treats any other status as an unknown (system) failure.
//!
//! Why a leaf module: every error type in the library says which [`FailureKind`] it is, and every
//! stage says how it ended as an [`Outcome`]; [`ExitCodes::status`] is the one table that turns
//! either into a number. Nothing else in leasehold decides an exit status.

use std::path::PathBuf;

/// Whose fault a failure is, which decides the exit code gitlab-runner sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// The job's declarations, identity or permissions are wrong: retrying cannot help.
    Build,
    /// Vault is unreachable, the host is misconfigured, leasehold itself failed: gitlab-runner's
    /// own prepare retry may help, and the job is reported as a system failure.
    System,
}

/// How a stage (or an admin tool) ended without an error of leasehold's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Everything worked.
    Success,
    /// The job's script exited with `code` (not 0): a build failure whose real code the runner
    /// reads from `BUILD_EXIT_CODE_FILE` (for `allow_failure: exit_codes`).
    ScriptFailed {
        /// The script's exit code.
        code: i32,
    },
    /// An inner custom-executor driver's exit code: already in gitlab-runner's terms (the driver
    /// wrote `BUILD_EXIT_CODE_FILE` itself if it meant to), passed through unchanged.
    Driver {
        /// The driver's exit code.
        code: i32,
    },
    /// Told to stop by `signal` before the stage's own work was done waiting for (cleanup
    /// abandoning the inner driver's cleanup): the shell convention, 128 + signal.
    Interrupted {
        /// The signal number.
        signal: i32,
    },
    /// cleanup could not take everything back; the journal stays for `leasehold reap`. A system
    /// failure, so that gitlab-runner's log shows it.
    LeftForReaper,
    /// An admin tool's verdict (`plan`, `check`, `reap`): 0 without problems, else 1.
    Findings {
        /// How many problems were found.
        problems: usize,
    },
    /// An admin tool was called in a way it cannot act on (the message is already printed): 2.
    Usage,
}

/// The exit codes gitlab-runner gave us, with its defaults when they are absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExitCodes {
    /// Exit code meaning "the job failed" (no retry).
    pub build_failure: i32,
    /// Exit code meaning "the system failed" (prepare is retried).
    pub system_failure: i32,
}

/// `BUILD_FAILURE_EXIT_CODE`.
pub(crate) const BUILD_FAILURE_EXIT_CODE: &str = "BUILD_FAILURE_EXIT_CODE";
/// `SYSTEM_FAILURE_EXIT_CODE`.
pub(crate) const SYSTEM_FAILURE_EXIT_CODE: &str = "SYSTEM_FAILURE_EXIT_CODE";
/// `BUILD_EXIT_CODE_FILE`.
pub(crate) const BUILD_EXIT_CODE_FILE: &str = "BUILD_EXIT_CODE_FILE";

impl ExitCodes {
    /// Reads the codes from the environment; the runner always sets them to 1 and 2.
    pub(crate) fn from_env() -> Self {
        fn code(name: &str, default: i32) -> i32 {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(default)
        }
        ExitCodes {
            build_failure: code(BUILD_FAILURE_EXIT_CODE, 1),
            system_failure: code(SYSTEM_FAILURE_EXIT_CODE, 2),
        }
    }

    /// The table: the process exit status for how a stage ended.
    pub(crate) fn status(self, verdict: &Result<Outcome, FailureKind>) -> i32 {
        match verdict {
            Ok(Outcome::Success) => 0,
            Ok(Outcome::ScriptFailed { .. }) | Err(FailureKind::Build) => self.build_failure,
            Ok(Outcome::Driver { code }) => *code,
            Ok(Outcome::Interrupted { signal }) => 128 + signal,
            Ok(Outcome::LeftForReaper) | Err(FailureKind::System) => self.system_failure,
            Ok(Outcome::Findings { problems }) => i32::from(*problems > 0),
            Ok(Outcome::Usage) => 2,
        }
    }
}

/// What `BUILD_EXIT_CODE_FILE` must say for this verdict, if anything.
///
/// gitlab-runner reads the file on every BUILD_FAILURE exit and never clears it, so every build
/// failure rewrites it: the script's own code, or 1 for leasehold's own refusal. Without the
/// rewrite the runner would report an earlier stage's script exit code.
pub(crate) fn build_exit_code(verdict: &Result<Outcome, FailureKind>) -> Option<i32> {
    match verdict {
        Ok(Outcome::ScriptFailed { code }) => Some(*code),
        Err(FailureKind::Build) => Some(1),
        _ => None,
    }
}

/// Where gitlab-runner looks for the script's exit code (`None` outside gitlab-runner).
pub(crate) fn build_exit_code_file() -> Option<PathBuf> {
    std::env::var_os(BUILD_EXIT_CODE_FILE)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let codes = ExitCodes {
            build_failure: 1,
            system_failure: 2,
        };
        let cases: [(Result<Outcome, FailureKind>, i32, Option<i32>); 11] = [
            (Ok(Outcome::Success), 0, None),
            (Ok(Outcome::ScriptFailed { code: 42 }), 1, Some(42)),
            (Ok(Outcome::Driver { code: 0 }), 0, None),
            (Ok(Outcome::Driver { code: 2 }), 2, None),
            (Ok(Outcome::Interrupted { signal: 15 }), 143, None),
            (Ok(Outcome::LeftForReaper), 2, None),
            (Ok(Outcome::Findings { problems: 0 }), 0, None),
            (Ok(Outcome::Findings { problems: 3 }), 1, None),
            (Ok(Outcome::Usage), 2, None),
            (Err(FailureKind::Build), 1, Some(1)),
            (Err(FailureKind::System), 2, None),
        ];
        for (verdict, status, file) in cases {
            assert_eq!(codes.status(&verdict), status, "{verdict:?}");
            assert_eq!(build_exit_code(&verdict), file, "{verdict:?}");
        }
        let custom = ExitCodes {
            build_failure: 7,
            system_failure: 9,
        };
        assert_eq!(custom.status(&Err(FailureKind::System)), 9);
        assert_eq!(custom.status(&Ok(Outcome::ScriptFailed { code: 3 })), 7);
    }
}
