//! The invocation records of `tests/fixtures/fake-driver.sh`, a custom-executor driver that
//! appends one JSON line per call (and per event) to the file named by `FAKE_DRIVER_LOG`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{RunOptions, random_hex};

/// Where the fake driver logs, and its records.
pub(crate) struct DriverLog {
    /// The log file (JSON lines).
    pub(crate) path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl DriverLog {
    /// A log in a temp dir of its own.
    pub(crate) fn new() -> DriverLog {
        let dir = tempfile::tempdir().expect("temp dir");
        DriverLog {
            path: dir.path().join("driver.jsonl"),
            _dir: Some(dir),
        }
    }

    /// A log file with a random name in `dir`.
    pub(crate) fn in_dir(dir: &Path) -> DriverLog {
        DriverLog {
            path: dir.join(format!("driver-{}.jsonl", random_hex(4))),
            _dir: None,
        }
    }

    /// Run options that point the fake driver at this log.
    pub(crate) fn options(&self) -> RunOptions {
        RunOptions::new().env("FAKE_DRIVER_LOG", self.path.display().to_string())
    }

    /// Every record: invocations and events.
    pub(crate) fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record {l:?}: {e}")))
            .collect()
    }

    /// Invocation records (not events).
    pub(crate) fn invocations(&self) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r.get("event").is_none())
            .collect()
    }

    /// The stage argument (`cmd`) of each invocation, in order.
    pub(crate) fn commands(&self) -> Vec<String> {
        self.invocations()
            .iter()
            .map(|r| r["cmd"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}
