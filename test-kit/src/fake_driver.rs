//! The invocation records of `tests/fixtures/fake-driver.sh`, a custom-executor driver that
//! appends one JSON line per call (and per event) to the file named by `FAKE_DRIVER_LOG`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{RunOptions, random_hex};

/// Where the fake driver logs, and its records.
pub struct DriverLog {
    /// The log file (JSON lines).
    pub path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Default for DriverLog {
    fn default() -> DriverLog {
        DriverLog::new()
    }
}

impl DriverLog {
    /// A log in a temp dir of its own.
    pub fn new() -> DriverLog {
        let dir = tempfile::tempdir().expect("temp dir");
        DriverLog {
            path: dir.path().join("driver.jsonl"),
            _dir: Some(dir),
        }
    }

    /// A log file with a random name in `dir`.
    pub fn in_dir(dir: &Path) -> DriverLog {
        DriverLog {
            path: dir.join(format!("driver-{}.jsonl", random_hex(4))),
            _dir: None,
        }
    }

    /// Run options that point the fake driver at this log.
    pub fn options(&self) -> RunOptions {
        RunOptions::new().env("FAKE_DRIVER_LOG", self.path.display().to_string())
    }

    /// Every record: invocations and events.
    pub fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record {l:?}: {e}")))
            .collect()
    }

    /// Invocation records (not events).
    pub fn invocations(&self) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r.get("event").is_none())
            .collect()
    }

    /// The stage argument (`cmd`) of each invocation, in order.
    pub fn commands(&self) -> Vec<String> {
        self.invocations()
            .iter()
            .map(|r| r["cmd"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}
