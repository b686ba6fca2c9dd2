//! Ending every process of a pool uid, so that none outlives its job into the next one.
//!
//! Why: a job can leave processes behind that no signal to its process group reaches (`setsid`,
//! a double fork). With `[executor] user_pool` its uid is handed to a later job, and a process
//! left running under it could read that job's `/proc/<pid>/environ` and files. Before a uid is
//! handed out and when its job ends, every process whose real or saved uid it is gets SIGKILL:
//! a child that has dropped to exactly that uid calls `kill(-1, SIGKILL)`, which reaches every
//! process the uid may signal, i.e. its own (see [`super::sys::signal_every_process_after_drop`]).

use std::os::unix::process::CommandExt as _;
use std::process::Stdio;
use std::time::Duration;

use nix::unistd::Uid;

use super::UserIds;

/// How often the sweep is repeated before the survivors are reported (a fork can race a kill).
const ROUNDS: u32 = 5;

/// SIGKILLs every process of `ids.uid` and waits until none is left (zombies aside: they hold no
/// memory). Refuses root and leasehold's own uid. Returns the pids that survived every round.
pub(crate) fn end_every_process_of(ids: &UserIds) -> std::io::Result<Vec<u32>> {
    if ids.uid.is_root() || ids.uid == nix::unistd::geteuid() || ids.gid.as_raw() == 0 {
        return Err(std::io::Error::other(format!(
            "refusing to end every process of uid {} gid {}: not a job's own ids",
            ids.uid, ids.gid
        )));
    }
    let mut left = processes_of(ids.uid);
    for round in 0..ROUNDS {
        if left.is_empty() {
            break;
        }
        signal_all_as(ids)?;
        std::thread::sleep(Duration::from_millis(10 * u64::from(round + 1)));
        left = processes_of(ids.uid);
    }
    Ok(left)
}

/// One `kill(-1, SIGKILL)` from a child that runs as `ids`. The child then execs leasehold's own
/// binary with `--version`, which ends at once: a harmless exec keeps the fork-then-exec path of
/// [`std::process::Command`] (and its error reporting) intact.
fn signal_all_as(ids: &UserIds) -> std::io::Result<()> {
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    super::sys::drop_privileges(&mut command, ids);
    super::sys::signal_every_process_after_drop(&mut command, ids.uid);
    command.spawn()?.wait()?;
    Ok(())
}

/// The live (not zombie) processes whose real, effective or saved uid is `uid`.
pub(crate) fn processes_of(uid: Uid) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let wanted = uid.as_raw().to_string();
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Some(status) = status_head(*pid) else {
                return false;
            };
            let zombie = status
                .lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'));
            let ours = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .is_some_and(|ids| ids.split_whitespace().take(3).any(|id| id == wanted));
            ours && !zombie
        })
        .collect()
}

/// The start of `/proc/<pid>/status`, which holds `State:` and `Uid:`, in one read: this runs
/// for every process on the host at every prepare and cleanup of a pool job.
fn status_head(pid: u32) -> Option<String> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(format!("/proc/{pid}/status")).ok()?;
    let mut buffer = [0u8; 1024];
    let n = file.read(&mut buffer).ok()?;
    Some(String::from_utf8_lossy(&buffer[..n]).into_owned())
}
