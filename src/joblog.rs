//! What the job log shows, in GitLab's own formatting.
//!
//! prepare's and run's stdout and stderr both land in the job log; cleanup's go to the runner's
//! own log. leasehold writes its user-facing lines to stderr so that `config`'s stdout stays pure
//! JSON. Collapsible sections use GitLab's `section_start`/`section_end` markers.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

const RESET: &str = "\x1b[0;m";
const BOLD_GREEN: &str = "\x1b[32;1m";
const YELLOW: &str = "\x1b[0;33m";
const BOLD_RED: &str = "\x1b[31;1m";
const ERASE_LINE: &str = "\x1b[0K";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn emit(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
}

/// Writes a tool's or `config`'s output to stdout. A full disk or a closed pipe is an ordinary
/// error for the caller to report, never a panic (as `print!` would make it).
pub(crate) fn stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// An informational line on stdout (cleanup's and reap's progress): best effort, because a
/// reader that went away must not stop a revocation.
pub(crate) fn progress(message: &str) {
    let _ = stdout(&format!("{message}\n"));
}

/// A plain informational line.
pub(crate) fn info(message: &str) {
    emit(message);
}

/// A warning the job author should read.
pub(crate) fn warning(message: &str) {
    emit(&format!("{YELLOW}WARNING: leasehold: {message}{RESET}"));
}

/// The one-line error a failing stage ends with.
pub(crate) fn error(message: &str) {
    emit(&format!("{BOLD_RED}ERROR: leasehold: {message}{RESET}"));
}

/// A collapsible section of the job log; ends when dropped.
pub(crate) struct Section {
    name: &'static str,
}

impl Section {
    /// Starts a section, collapsed by default.
    pub(crate) fn start(name: &'static str, header: &str) -> Self {
        emit(&format!(
            "{ERASE_LINE}section_start:{}:{name}[collapsed=true]\r{ERASE_LINE}{BOLD_GREEN}{header}{RESET}",
            now()
        ));
        Section { name }
    }
}

impl Drop for Section {
    fn drop(&mut self) {
        emit(&format!(
            "{ERASE_LINE}section_end:{}:{}\r{ERASE_LINE}",
            now(),
            self.name
        ));
    }
}
