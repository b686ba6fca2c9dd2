//! Running a job's child process: spawning, output, signals, exit status.
//!
//! The child stays in leasehold's process group, which gitlab-runner created: the runner's
//! SIGTERM and SIGKILL to the group reach the child and all its descendants directly, exactly as
//! without leasehold. Signals sent to leasehold alone (SIGTERM, SIGINT, SIGHUP, SIGQUIT, by anyone
//! but its parent) are forwarded to the child; the runner's own, which always target the group,
//! are not forwarded again, so the child's handlers run once. leasehold never exits before the child, so the output is drained and
//! the real exit status is reported. If leasehold itself is killed, the kernel sends SIGKILL to
//! the child (PR_SET_PDEATHSIG), so no job process outlives its supervisor holding secrets.
//!
//! When the job has secrets long enough to mask, the child's stdout and stderr are one pipe (gitlab-runner merges
//! both into the job log anyway, and one pipe keeps their relative order exactly) read by a
//! thread that passes everything through the masker before it reaches our stdout.

pub(crate) mod sys;

use std::future::Future;
use std::io::{Read, Write};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};

use crate::mask::MaskSet;

/// How long output is still drained after the child exited, when a background process it left
/// behind keeps the pipe open.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildExit {
    /// The exit code, or 128 + signal number when it was killed by a signal.
    pub code: i32,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
}

impl From<ExitStatus> for ChildExit {
    fn from(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ChildExit { code, signal: None },
            (None, Some(sig)) => ChildExit {
                code: 128 + sig,
                signal: Some(sig),
            },
            (None, None) => ChildExit {
                code: 1,
                signal: None,
            },
        }
    }
}

/// Spawns `command` and supervises it until it exits, masking its output with `mask` when given,
/// while `background` (lease renewal) runs alongside. `background` is dropped when the child ends.
pub async fn supervise(
    mut command: tokio::process::Command,
    mask: Option<Arc<MaskSet>>,
    background: impl Future<Output = ()>,
) -> std::io::Result<ChildExit> {
    command.stdin(Stdio::null());
    sys::kill_child_when_parent_dies(command.as_std_mut());

    let pump = match mask {
        Some(mask) => {
            let (reader, writer) = std::io::pipe()?;
            command.stdout(writer.try_clone()?);
            command.stderr(writer);
            Some((reader, mask))
        }
        None => None,
    };

    let mut child = command.spawn()?;
    // Our copies of the pipe's write end live in `command`; drop them now or EOF never comes.
    drop(command);
    let pid = child.id();

    let drained = pump.map(|(reader, mask)| {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            pump_masked(reader, &mask);
            let _ = done_tx.send(());
        });
        done_rx
    });

    sys::record_senders(&[
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ]);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut quit = signal(SignalKind::quit())?;
    tokio::pin!(background);
    let mut background_done = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = term.recv() => forward_unless_group(pid, Signal::SIGTERM),
            _ = int.recv() => forward_unless_group(pid, Signal::SIGINT),
            _ = hup.recv() => forward_unless_group(pid, Signal::SIGHUP),
            _ = quit.recv() => forward_unless_group(pid, Signal::SIGQUIT),
            () = &mut background, if !background_done => background_done = true,
        }
    };

    if let Some(done) = drained {
        let _ = tokio::time::timeout(DRAIN_GRACE, done).await;
    }
    Ok(ChildExit::from(status))
}

/// gitlab-runner signals the whole process group, so the child already has the signal: sending
/// it again would run its handlers twice. Anything else sent to leasehold alone is passed on to
/// the group, once (leasehold ignores the echo of its own forward).
fn forward_unless_group(pid: Option<u32>, signal: Signal) {
    if sys::came_from_runner_or_self() {
        tracing::debug!("{signal} came from gitlab-runner to the whole group; not forwarding");
        return;
    }
    sys::forward(pid, signal);
}

fn pump_masked(mut reader: std::io::PipeReader, mask: &MaskSet) {
    let mut stream = mask.stream();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    let stdout = std::io::stdout();
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        out.clear();
        stream.push(&chunk[..n], &mut out);
        if !out.is_empty() {
            let mut lock = stdout.lock();
            let _ = lock.write_all(&out).and_then(|()| lock.flush());
        }
    }
    out.clear();
    stream.finish(&mut out);
    let mut lock = stdout.lock();
    let _ = lock.write_all(&out).and_then(|()| lock.flush());
}
