//! The stop signals a stage listens for, and who sent them.
//!
//! gitlab-runner stops a stage by signalling its whole process group (SIGTERM, later SIGKILL);
//! anyone else may signal leasehold alone. Both the run stage (which forwards a signal to its
//! child unless the runner already signalled the whole group) and cleanup (which stops waiting
//! for an inner driver so that revocation still happens) listen through [`StopSignals`].

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};

use super::sys;

/// SIGTERM, SIGINT, SIGHUP and SIGQUIT, caught from the moment [`StopSignals::listen`] returns:
/// none of them ends leasehold any more, each is reported by [`StopSignals::recv`].
pub(crate) struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Starts catching the stop signals (and recording their senders).
    pub(crate) fn listen() -> std::io::Result<Self> {
        sys::record_senders(&[
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGQUIT,
        ]);
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// The next stop signal. SIGTERM wins over the others when several are pending.
    pub(crate) async fn recv(&mut self) -> Signal {
        tokio::select! {
            biased;
            _ = self.term.recv() => Signal::SIGTERM,
            _ = self.int.recv() => Signal::SIGINT,
            _ = self.hup.recv() => Signal::SIGHUP,
            _ = self.quit.recv() => Signal::SIGQUIT,
        }
    }
}

/// Whether the last stop signal came from leasehold's parent (gitlab-runner, which always
/// signals the whole process group, so the child already has it) or from leasehold's own
/// forward.
pub(crate) fn came_from_runner_or_self() -> bool {
    sys::came_from_runner_or_self()
}
