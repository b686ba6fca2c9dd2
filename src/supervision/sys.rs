//! The only code in leasehold that needs `unsafe`: hooks that run in the forked child before
//! `exec`, and process-wide hardening.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Makes the kernel SIGKILL the child if leasehold dies first.
pub(super) fn kill_child_when_parent_dies(command: &mut std::process::Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs between fork and exec in the child. It only calls prctl(2) and
    // getppid(2), both async-signal-safe, allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The parent may have died between fork and prctl; then nobody would kill us.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("parent exited before exec"));
            }
            Ok(())
        });
    }
}

/// Passes `signal` on the way gitlab-runner would have sent it: to the whole process group when
/// leasehold leads it (as under gitlab-runner, which starts every stage in its own group), so that
/// the script's subshells get it too; else to the child alone. leasehold receives its own group
/// signal as well and recognises it by the sender (see [`came_from_runner_or_self`]).
pub(super) fn forward(pid: Option<u32>, signal: Signal) {
    let me = nix::unistd::getpid();
    if nix::unistd::getpgrp() == me {
        let _ = nix::sys::signal::killpg(me, signal);
    } else if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
    }
}

/// Drops to the job's user in the child: supplementary groups, then group, then user.
pub(super) fn drop_privileges(command: &mut std::process::Command, ids: &super::UserIds) {
    let groups = ids.groups.clone();
    let (uid, gid) = (ids.uid, ids.gid);
    // SAFETY: runs between fork and exec. setgroups(2), setresgid(2) and setresuid(2) are
    // async-signal-safe system calls; the group list was computed (and allocated) before fork,
    // so the closure allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setgroups(&groups).map_err(std::io::Error::from)?;
            nix::unistd::setresgid(gid, gid, gid).map_err(std::io::Error::from)?;
            nix::unistd::setresuid(uid, uid, uid).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}

/// After [`drop_privileges`] (registered first, so it runs first): `kill(-1, SIGKILL)`, which
/// ends every process `uid` may signal, i.e. its own, and never the caller.
pub(super) fn signal_every_process_after_drop(
    command: &mut std::process::Command,
    uid: nix::unistd::Uid,
) {
    // SAFETY: runs between fork and exec. getuid(2), geteuid(2) and kill(2) are async-signal-safe
    // system calls; the closure allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            // Only once the drop took: as root, kill(-1) would end every process on the host.
            let (real, effective) = (nix::unistd::getuid(), nix::unistd::geteuid());
            if real.is_root() || real != uid || effective != uid {
                return Err(std::io::Error::other("the privilege drop did not take"));
            }
            match nix::sys::signal::kill(Pid::from_raw(-1), Signal::SIGKILL) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
                Err(e) => Err(e.into()),
            }
        });
    }
}

static LAST_SENDER: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

fn remember_sender(info: &nix::libc::siginfo_t) {
    // SAFETY: reading si_pid of a kernel-filled siginfo; for kill(2) senders (SI_USER) it is set.
    let pid = unsafe { info.si_pid() };
    LAST_SENDER.store(pid, std::sync::atomic::Ordering::SeqCst);
}

/// Records the sender of every `signal` delivered to this process, so that the supervisor can
/// tell the runner's group-wide signal (which the child already received) from a signal sent to
/// leasehold alone (which must be forwarded).
pub(super) fn record_senders(signals: &[Signal]) {
    for signal in signals {
        // SAFETY: the action only reads `si_pid` from the kernel-provided siginfo and stores it
        // in an atomic: async-signal-safe, no allocation, no lock. It is registered through
        // signal-hook-registry, which chains it with tokio's own handler for the same signal.
        let _ =
            unsafe { signal_hook_registry::register_sigaction(*signal as i32, remember_sender) };
    }
}

/// Whether the last recorded signal came from leasehold's parent (gitlab-runner, which always
/// signals the whole process group, so the child already has it) or from leasehold's own forward.
pub(super) fn came_from_runner_or_self() -> bool {
    let sender = LAST_SENDER.load(std::sync::atomic::Ordering::SeqCst);
    sender != 0
        && (sender == nix::unistd::getppid().as_raw() || sender == nix::unistd::getpid().as_raw())
}
