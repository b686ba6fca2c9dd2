//! Every child process leasehold starts: the job's scripts, and an inner driver's steps.
//!
//! [`Child`] is the one way to start one, with builder-style hooks: stdin from /dev/null always;
//! [`Child::die_with_parent`] (the kernel SIGKILLs the child if leasehold dies first, so no job
//! process outlives its supervisor holding secrets); [`Child::run_as`] (privilege drop).
//!
//! The child stays in leasehold's process group, which gitlab-runner created: the runner's
//! SIGTERM and SIGKILL to the group reach the child and all its descendants directly, exactly as
//! without leasehold. Signals sent to leasehold alone (SIGTERM, SIGINT, SIGHUP, SIGQUIT, by anyone
//! but its parent) are forwarded to the child; the runner's own, which always target the group,
//! are not forwarded again, so the child's handlers run once ([`signals`]). leasehold never exits
//! before a supervised child, so the output is drained and the real exit status is reported.
//!
//! When the job has secrets long enough to mask, the child's stdout and stderr are one pipe
//! (gitlab-runner merges both into the job log anyway, and one pipe keeps their relative order
//! exactly) read by a thread that passes everything through the masker before it reaches our
//! stdout.

pub(crate) mod signals;
pub(crate) mod sweep;
pub(crate) mod sys;

use std::future::Future;
use std::io::{Read, Write};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid};

use crate::mask::MaskSet;

pub(crate) use signals::StopSignals;

/// How long output is still drained after the child exited, when a background process it left
/// behind keeps the pipe open.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChildExit {
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

/// The ids a child drops to before exec (supplementary groups computed by the caller, before
/// fork: NSS lookups are not safe in the child).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserIds {
    /// User id.
    pub uid: Uid,
    /// Group id.
    pub gid: Gid,
    /// Supplementary groups.
    pub groups: Vec<Gid>,
}

/// How [`Child::wait_unless_stopped`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// The child exited.
    Exited(ChildExit),
    /// A stop signal arrived first; the child was left running.
    Stopped(Signal),
}

/// A child process of leasehold: the command, and the hooks it is started with. Every child
/// goes through here, so none misses its stdin from /dev/null or, when asked, its parent-death
/// signal and privilege drop.
pub(crate) struct Child {
    command: tokio::process::Command,
}

impl Child {
    /// A child with stdin from /dev/null.
    pub(crate) fn new(mut command: tokio::process::Command) -> Self {
        command.stdin(Stdio::null());
        Child { command }
    }

    /// The kernel sends SIGKILL to the child if leasehold dies first, so no job process outlives
    /// its supervisor holding secrets.
    pub(crate) fn die_with_parent(mut self) -> Self {
        sys::kill_child_when_parent_dies(self.command.as_std_mut());
        self
    }

    /// Drops to `ids` before exec: supplementary groups, then group, then user.
    pub(crate) fn run_as(mut self, ids: &UserIds) -> Self {
        sys::drop_privileges(self.command.as_std_mut(), ids);
        self
    }

    /// The program, for messages.
    pub(crate) fn program(&self) -> String {
        self.command
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned()
    }

    /// Runs the child to its end with its output inherited, forwarding stop signals as
    /// [`Child::supervise`] does.
    pub(crate) async fn run(self) -> std::io::Result<ChildExit> {
        self.supervise(None, std::future::pending()).await
    }

    /// Runs the child to its end with its stdout captured (stderr inherited).
    pub(crate) async fn output(mut self) -> std::io::Result<(ChildExit, Vec<u8>)> {
        self.command.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let output = self.command.output().await?;
        Ok((ChildExit::from(output.status), output.stdout))
    }

    /// Waits for the child unless a stop signal arrives first, in which case the child is left
    /// running (it is in leasehold's process group, so the runner's signal reached it too).
    pub(crate) async fn wait_unless_stopped(
        mut self,
        signals: &mut StopSignals,
    ) -> std::io::Result<Waited> {
        let mut child = self.command.spawn()?;
        // `biased`, signals first: when the runner's group SIGTERM also ended the child, both are
        // ready, and the stop is what matters.
        tokio::select! {
            biased;
            signal = signals.recv() => Ok(Waited::Stopped(signal)),
            status = child.wait() => Ok(Waited::Exited(ChildExit::from(status?))),
        }
    }

    /// Spawns the child and supervises it until it exits, masking its output with `mask` when
    /// given, while `background` (lease renewal) runs alongside. `background` is dropped when the
    /// child ends.
    pub(crate) async fn supervise(
        self,
        mask: Option<Arc<MaskSet>>,
        background: impl Future<Output = ()>,
    ) -> std::io::Result<ChildExit> {
        let mut command = self.command;
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

        let mut signals = StopSignals::listen()?;
        tokio::pin!(background);
        let mut background_done = false;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status?,
                signal = signals.recv() => forward_unless_group(pid, signal),
                () = &mut background, if !background_done => background_done = true,
            }
        };

        if let Some(done) = drained {
            let _ = tokio::time::timeout(DRAIN_GRACE, done).await;
        }
        Ok(ChildExit::from(status))
    }
}

/// gitlab-runner signals the whole process group, so the child already has the signal: sending
/// it again would run its handlers twice. Anything else sent to leasehold alone is passed on to
/// the group, once (leasehold ignores the echo of its own forward).
fn forward_unless_group(pid: Option<u32>, signal: Signal) {
    if signals::came_from_runner_or_self() {
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
