//! Process helpers shared by the server fixtures: spawning a server tied to the test, and
//! stopping it by PID.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Spawns `cmd` so that the kernel sends it SIGKILL when the spawning thread dies
/// (`PR_SET_PDEATHSIG`). A test process killed by a timeout therefore leaves no server behind.
/// The server must be spawned on the thread that owns it (the test's own thread).
#[allow(unsafe_code)]
pub(crate) fn spawn_tied_to_thread(cmd: &mut Command) -> std::io::Result<Child> {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only makes two
    // async-signal-safe system calls (prctl, getppid) through nix, without allocating.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The parent may have died between fork and prctl: then nobody would kill us.
            if nix::unistd::getppid().as_raw() as u32 != parent {
                return Err(std::io::Error::other(
                    "parent exited before the server started",
                ));
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Sends `signal` to the process `pid` (not its group), ignoring "no such process".
pub(crate) fn signal_pid(pid: u32, signal: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), signal);
}

/// Waits up to `timeout` for `child` to exit.
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// Stops `child` by its PID: `first` signal, up to `grace` to exit, then SIGKILL and reap.
pub(crate) fn stop_child(child: &mut Child, first: Signal, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal_pid(child.id(), first);
    if wait_timeout(child, grace).is_none() {
        signal_pid(child.id(), Signal::SIGKILL);
        let _ = child.wait();
    }
}
