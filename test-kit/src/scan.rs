//! Leak scanners: where on this machine does a secret value appear?
//!
//! ```ignore
//! assert!(scan::files_containing(&builds_dir, secret).is_empty());
//! assert!(scan::cmdlines_containing(secret).is_empty());
//! assert!(scan::environs_containing(secret, &[]).is_empty());
//! ```

use std::path::{Path, PathBuf};

use memchr::memmem;

/// Every regular file under `root` (recursively, symlinks not followed) whose bytes contain
/// `needle`. Unreadable files and dirs are skipped. `root` may itself be a file.
pub fn files_containing(root: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if needle.is_empty() {
        return found;
    }
    let finder = memmem::Finder::new(needle.as_bytes());
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            stack.extend(entries.flatten().map(|e| e.path()));
        } else if meta.is_file()
            && let Ok(bytes) = std::fs::read(&path)
            && finder.find(&bytes).is_some()
        {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// A process whose `/proc/<pid>/…` contained the needle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcMatch {
    /// The PID.
    pub pid: u32,
    /// Its command line, NULs shown as spaces (for messages).
    pub cmdline: String,
}

/// Every PID in /proc right now.
pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

fn cmdline(pid: u32) -> String {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .replace('\0', " ")
        .trim_end()
        .to_owned()
}

fn scan_proc(file: &str, needle: &str, except: &[u32]) -> Vec<ProcMatch> {
    if needle.is_empty() {
        return Vec::new();
    }
    let me = std::process::id();
    let finder = memmem::Finder::new(needle.as_bytes());
    pids()
        .into_iter()
        .filter(|pid| *pid != me && !except.contains(pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/{file}")).is_ok_and(|b| finder.find(&b).is_some())
        })
        .map(|pid| ProcMatch {
            pid,
            cmdline: cmdline(pid),
        })
        .collect()
}

/// Processes (other than this test process) whose command line contains `needle`. The
/// arguments are NUL-separated in `/proc/<pid>/cmdline`: a needle spanning two arguments must
/// say `\0` where the space would be.
pub fn cmdlines_containing(needle: &str) -> Vec<ProcMatch> {
    scan_proc("cmdline", needle, &[])
}

/// Processes (other than this test process and `except_pids`) whose initial environment
/// (`/proc/<pid>/environ`) contains `needle`. Processes we may not read (e.g. non-dumpable
/// ones of another user) are skipped.
pub fn environs_containing(needle: &str, except_pids: &[u32]) -> Vec<ProcMatch> {
    scan_proc("environ", needle, except_pids)
}

/// The initial environment of process `pid` (`/proc/<pid>/environ`) as `(name, value)` pairs
/// in order; empty when it cannot be read. Entries that are not UTF-8 or have no `=` are left
/// out.
pub fn environ_of(pid: u32) -> Vec<(String, String)> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    environ
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let (k, v) = std::str::from_utf8(kv).ok()?.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// The variable `name` of [`environ_of`]`(pid)`.
pub fn environ_var(pid: u32, name: &str) -> Option<String> {
    environ_of(pid)
        .into_iter()
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// The live (non-zombie) members of process group `pgid` (from `/proc/<pid>/stat`).
pub fn group_members(pgid: u32) -> Vec<u32> {
    pids()
        .into_iter()
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command (which may contain spaces) start after the last ')':
            // state, ppid, pgrp, …
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
        })
        .collect()
}

/// Waits up to `timeout` for process group `pgid` to have no live member; returns the members
/// still alive then (empty on success). Processes signalled together die asynchronously.
pub fn wait_group_gone(pgid: u32, timeout: std::time::Duration) -> Vec<u32> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let members = group_members(pgid);
        if members.is_empty() || std::time::Instant::now() >= deadline {
            return members;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
