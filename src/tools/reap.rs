//! `leasehold reap`: the fallback for jobs whose own cleanup never ran or failed.

use crate::cli::Cli;
use crate::config::{Config, Executor};
use crate::error::Result;
use crate::events::{JobEvent, append};
use crate::executor::docker::DockerExecutor;
use crate::exit::Outcome;
use crate::joblog;
use crate::lease::{ReapedJob, RevocationOutcome, is_over, reap};
use crate::state::{StateDir, StateId, unix_now};

pub(crate) async fn run(cli: &Cli, dry_run: bool) -> Result<Outcome> {
    let config = Config::locate_and_load(cli.config.as_deref())?;
    let root = StateDir::open(&config.state_dir)?;
    let report = reap(&config, &root, dry_run).await?;
    let container_problems = reap_containers(&config, &root, dry_run).await;
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
        problems: failures.max(report.jobs.len()) + container_problems,
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

/// With the docker executor: removes this installation's containers whose job state is gone
/// (cleaned up, or reaped just now) or over, so that a crashed runner leaves no container.
/// Returns the number of problems (0 or 1).
async fn reap_containers(config: &Config, root: &StateDir, dry_run: bool) -> usize {
    let Executor::Docker(settings) = &config.executor.kind else {
        return 0;
    };
    let now = unix_now();
    let over = |state_id: &str| {
        let Ok(id) = StateId::parse(state_id) else {
            return true;
        };
        let job = root.job(&id);
        !job.exists()
            || job
                .read_journal()
                .is_ok_and(|j| is_over(&j, now, config.leases.reap_grace_seconds))
    };
    let docker = DockerExecutor::new(settings.clone());
    match docker.reap(&config.state_dir, over, dry_run).await {
        Ok(containers) => {
            for (state_id, name) in containers {
                let verb = if dry_run { "would remove" } else { "removed" };
                joblog::progress(&format!("{state_id}: {verb} container {name}"));
            }
            0
        }
        Err(e) => {
            joblog::info(&format!("leasehold reap: {e}"));
            1
        }
    }
}
