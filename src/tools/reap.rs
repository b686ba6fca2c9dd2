//! `leasehold reap`: the fallback for jobs whose own cleanup never ran or failed.

use crate::cli::Cli;
use crate::config::Config;
use crate::error::Result;
use crate::events::{JobEvent, append};
use crate::exit::Outcome;
use crate::joblog;
use crate::lease::{ReapedJob, RevocationOutcome, reap};
use crate::state::{StateDir, unix_now};

pub(crate) async fn run(cli: &Cli, dry_run: bool) -> Result<Outcome> {
    let config = Config::locate_and_load(cli.config.as_deref())?;
    let root = StateDir::open(&config.state_dir)?;
    let report = reap(&config, &root, dry_run).await?;
    for item in &report.items {
        let line = match &item.outcome {
            RevocationOutcome::Failed(why) if dry_run => {
                format!("would revoke {} ({why})", item.what)
            }
            outcome => outcome.describe(&item.what, None),
        };
        match &item.outcome {
            RevocationOutcome::Failed(_) if !dry_run => {
                joblog::info(&format!("{}: {line}", item.state_id))
            }
            _ => joblog::progress(&format!("{}: {line}", item.state_id)),
        }
    }
    for (state_id, uid) in &report.released {
        joblog::progress(&format!("{state_id}: gave back pool uid {uid}"));
    }
    for (state_id, why) in &report.unreleased {
        joblog::info(&format!(
            "{state_id}: could not give back its pool uid: {why}"
        ));
    }
    joblog::progress(&format!(
        "leasehold reap: {} job states examined, {} still running (left alone), {} reaped",
        report.examined, report.running, report.reaped
    ));
    if dry_run {
        return Ok(Outcome::Findings { problems: 0 });
    }
    // Every job the reaper had to take credentials back from is a problem to alert on: its
    // own cleanup failed or never ran.
    for job in &report.jobs {
        joblog::progress(&format!(
            "leasehold reap: job {} ({}, {}) still had {} tokens and {} leases after its cleanup {}; {} revoked now, {} still alive",
            job.job_id,
            job.state_id,
            if job.project.is_empty() {
                "unknown project"
            } else {
                &job.project
            },
            job.tokens.obtained,
            job.leases.obtained,
            if job.cleanup_failed {
                "failed"
            } else {
                "never ran"
            },
            job.tokens.revoked + job.leases.revoked,
            job.tokens.failed + job.leases.failed,
        ));
        record_event(&config, job);
    }
    let failures = report
        .items
        .iter()
        .filter(|item| matches!(item.outcome, RevocationOutcome::Failed(_)))
        .count()
        + report.unreleased.len();
    Ok(Outcome::Findings {
        problems: failures.max(report.jobs.len()),
    })
}

/// The reaped job's line in `[events] file`.
fn record_event(config: &Config, job: &ReapedJob) {
    let Some(path) = &config.events_file else {
        return;
    };
    let now = unix_now();
    let event = JobEvent {
        event: "reap",
        time: now,
        state_id: &job.state_id,
        job_id: job.job_id,
        project: &job.project,
        outcome: JobEvent::outcome_of(&job.tokens, &job.leases),
        tokens: job.tokens,
        leases: job.leases,
        job_seconds: now.saturating_sub(job.created_at),
        duration_ms: job.duration_ms,
    };
    if let Err(e) = append(path, &event) {
        joblog::info(&format!(
            "leasehold reap: cannot append to the event file {}: {e}",
            path.display()
        ));
    }
}
