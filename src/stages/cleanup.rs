//! cleanup_exec: revoke every lease and token of this attempt and remove its private state.
//!
//! Idempotent, and safe when prepare never ran or failed, and while a killed run stage is still
//! dying. Values and tokens are always deleted; the journal (ids only) stays behind only when
//! something could not be revoked, for `leasehold reap`. gitlab-runner sends cleanup's stdout
//! to its debug log and stderr to its warning log, never to the job log.

use crate::cli::Cli;
use crate::error::Result;
use crate::executor::WrappedExecutor;
use crate::exit::Outcome;
use crate::joblog;
use crate::lease::{RevocationOutcome, RevocationReport, revoke_all};
use crate::protocol::StageEnv;
use crate::state::{JobStatus, StateDir, StateId, StateKey};
use crate::supervision::{StopSignals, Waited};

use super::load_config;

pub(crate) async fn run(cli: &Cli) -> Result<Outcome> {
    let config = load_config(cli)?;
    let env = StageEnv::from_env();
    let inner = inner_cleanup(&WrappedExecutor::from_config(&config), &config, &env).await;
    match &inner {
        Ok(Outcome::Success | Outcome::Driver { code: 0 }) => {}
        Ok(Outcome::Driver { code }) => {
            joblog::warning(&format!("the inner driver's cleanup exited with {code}"));
        }
        Ok(_) => {}
        Err(e) => joblog::warning(&e.to_string()),
    }
    let revoked = revoke_and_remove(&config, &env).await?;
    // Our own failure to take everything back matters most; else the inner driver's verdict.
    Ok(match inner {
        Ok(Outcome::Driver { code: 0 }) | Err(_) => revoked,
        Ok(inner) if revoked == Outcome::Success => inner,
        Ok(_) => revoked,
    })
}

/// Runs the inner driver's cleanup first (it tears the environment down, even when our own
/// state is gone), but never lets it stand between the job and revocation: on a stop signal
/// (gitlab-runner's `cleanup_exec_timeout` sends SIGTERM) the wait is abandoned, and the driver,
/// in the same process group, got the signal too.
async fn inner_cleanup(
    executor: &WrappedExecutor,
    config: &crate::config::Config,
    env: &StageEnv,
) -> std::result::Result<Outcome, crate::executor::ExecutorError> {
    let spawn_error = |source| crate::executor::ExecutorError::Spawn {
        program: "the inner driver's cleanup_exec".into(),
        source,
    };
    // From here on no stop signal ends leasehold before it has revoked, driver or not.
    let mut signals = StopSignals::listen().map_err(spawn_error)?;
    if let (WrappedExecutor::Docker(docker), Some(id)) = (executor, env.state_id.as_deref()) {
        // The job's containers go first (with them their tmpfs and anonymous volumes): a
        // stage that outlived its `leasehold run` stops here, before its secrets are revoked.
        return tokio::select! {
            biased;
            signal = signals.recv() => {
                joblog::warning("cleanup was told to stop: revoking now; `leasehold reap` removes the job's containers");
                Ok(Outcome::Interrupted { signal: signal as i32 })
            }
            removed = docker.cleanup(&config.state_dir, id) => {
                let removed = removed?;
                if !removed.is_empty() {
                    println!("leasehold: removed containers {}", removed.join(", "));
                }
                Ok(Outcome::Success)
            }
        };
    }
    let Some(child) = executor.cleanup_child() else {
        return Ok(Outcome::Success);
    };
    match child
        .wait_unless_stopped(&mut signals)
        .await
        .map_err(spawn_error)?
    {
        Waited::Exited(exit) => Ok(Outcome::Driver { code: exit.code }),
        Waited::Stopped(signal) => {
            joblog::warning(
                "cleanup was told to stop: revoking now instead of waiting for the inner driver's cleanup",
            );
            Ok(Outcome::Interrupted {
                signal: signal as i32,
            })
        }
    }
}

async fn revoke_and_remove(config: &crate::config::Config, env: &StageEnv) -> Result<Outcome> {
    let started = std::time::Instant::now();
    let Some(id) = env.state_id.as_deref() else {
        joblog::progress(
            "leasehold: no state for this attempt (config did not run); nothing to clean up",
        );
        return Ok(Outcome::Success);
    };
    let id = StateId::parse(id)?;
    // The stage dirs of a job user's stages that were SIGKILLed (file secrets, script copy).
    if let Err(e) = crate::inject::remove_user_stage_dirs(&config.executor.files_dir, &id) {
        joblog::warning(&format!(
            "could not remove the job's stage directories: {e}"
        ));
    }
    let root = StateDir::open(&config.state_dir)?;
    let job_dir = root.job(&id);
    if !job_dir.exists() {
        joblog::progress(&format!("leasehold: {} already cleaned up", id.as_str()));
        return Ok(Outcome::Success);
    }
    let mut journal = job_dir.read_journal()?;
    give_back_seat(config, &id, journal.seat.as_ref());
    let sealed = match env.state_key.as_ref().map(StateKey::from_hex).transpose()? {
        Some(key) => job_dir.unseal(&key)?,
        None => None,
    };

    let report = match &sealed {
        Some(sealed) => revoke_all(sealed, config).await,
        None => RevocationReport::default(),
    };
    drop(sealed);
    job_dir.remove_secrets()?;

    for item in &report.items {
        let line = item.outcome.describe(&item.what, Some(&item.origin));
        match &item.outcome {
            RevocationOutcome::Failed(_) => joblog::warning(&line),
            _ => joblog::progress(&format!("leasehold: {line}")),
        }
    }
    // Without the tokens (prepare crashed before storing them) only the reaper can revoke.
    let orphaned = private_missing_but_journaled(&journal, report.items.is_empty());
    if report.has_failures() || orphaned {
        journal.status = JobStatus::CleanupFailed;
        job_dir.write_journal(&journal)?;
        joblog::warning(&format!(
            "leases of {} are left for `leasehold reap` (journal {})",
            id.as_str(),
            job_dir.dir().display()
        ));
        record_event(config, &journal, &report, orphaned, started);
        return Ok(Outcome::LeftForReaper);
    }
    job_dir.remove()?;
    let (tokens, leases) = report.tally();
    joblog::progress(&format!(
        "leasehold: cleaned up {} ({} tokens, {} leases)",
        id.as_str(),
        tokens.obtained,
        leases.obtained
    ));
    record_event(config, &journal, &report, false, started);
    Ok(Outcome::Success)
}

/// With `[executor] user_pool`: the attempt's uid, once its processes are ended and its
/// project dir and HOME removed, so that nothing of this job reaches the uid's next job.
/// Revocation never waits for this: a failure is a warning.
fn give_back_seat(
    config: &crate::config::Config,
    id: &StateId,
    seat: Option<&crate::state::JournalSeat>,
) {
    match crate::job_user::pool::release_attempt(config, id, seat) {
        Ok(Some(uid)) => joblog::progress(&format!(
            "leasehold: gave back pool uid {uid} (its processes ended, its dirs removed)"
        )),
        Ok(None) => {}
        Err(e) => joblog::warning(&format!(
            "could not give back the job's pool uid: {e}; a later prepare or `leasehold reap` takes it back"
        )),
    }
}

/// The job's line in `[events] file`; failing to write it is a warning, never a lost
/// revocation.
fn record_event(
    config: &crate::config::Config,
    journal: &crate::state::Journal,
    report: &RevocationReport,
    orphaned: bool,
    started: std::time::Instant,
) {
    let Some(path) = &config.events_file else {
        return;
    };
    let (mut tokens, mut leases) = report.tally();
    if orphaned {
        // prepare crashed before storing the tokens: what the journal lists is still alive.
        tokens.obtained = journal.sessions.len();
        tokens.failed = journal.sessions.len();
        leases.obtained = journal.leases.len();
        leases.failed = journal.leases.len();
    }
    let now = crate::state::unix_now();
    let outcome = match crate::events::JobEvent::outcome_of(&tokens, &leases) {
        "clean" => "clean",
        _ => "left_for_reaper",
    };
    let event = crate::events::JobEvent {
        event: "cleanup",
        time: now,
        state_id: &journal.state_id,
        job_id: journal.job_id,
        project: &journal.project_path,
        outcome,
        tokens,
        leases,
        job_seconds: now.saturating_sub(journal.created_at),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    if let Err(e) = crate::events::append(path, &event) {
        joblog::warning(&format!(
            "cannot append to the event file {}: {e}",
            path.display()
        ));
    }
}

fn private_missing_but_journaled(journal: &crate::state::Journal, nothing_revoked: bool) -> bool {
    nothing_revoked && (!journal.sessions.is_empty() || !journal.leases.is_empty())
}
