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

/// Sends `signal` to the child (not to the group: the group includes leasehold itself).
pub(super) fn forward(pid: Option<u32>, signal: Signal) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
    }
}

/// Drops to the job's user in the child: supplementary groups, then group, then user.
pub(crate) fn drop_privileges(command: &mut std::process::Command, user: &crate::executor::JobUser) {
    let groups = user.groups.clone();
    let (uid, gid) = (user.uid, user.gid);
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
