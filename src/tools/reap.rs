//! `leasehold reap`: the fallback for jobs whose own cleanup never ran or failed.

use crate::cli::Cli;
use crate::config::Config;
use crate::error::Result;
use crate::exit::Outcome;
use crate::joblog;
use crate::lease::{RevocationOutcome, reap};
use crate::state::StateDir;

pub(crate) async fn run(cli: &Cli, dry_run: bool) -> Result<Outcome> {
    let config = Config::locate_and_load(cli.config.as_deref())?;
    let root = StateDir::open(&config.state_dir)?;
    let report = reap(&config, &root, dry_run).await?;
    for item in &report.items {
        match &item.outcome {
            RevocationOutcome::Revoked | RevocationOutcome::RevokedWithToken => {
                joblog::progress(&format!("{}: revoked {}", item.state_id, item.what))
            }
            RevocationOutcome::NotRevocable => joblog::progress(&format!(
                "{}: {} is not revocable (expires on its own)",
                item.state_id, item.what
            )),
            RevocationOutcome::Failed(why) if dry_run => joblog::progress(&format!(
                "{}: would revoke {} ({why})",
                item.state_id, item.what
            )),
            RevocationOutcome::Failed(why) => joblog::info(&format!(
                "{}: could not revoke {}: {why}",
                item.state_id, item.what
            )),
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
    let failures = report
        .items
        .iter()
        .filter(|item| matches!(item.outcome, RevocationOutcome::Failed(_)))
        .count()
        + report.unreleased.len();
    Ok(Outcome::Findings {
        problems: if dry_run { 0 } else { failures },
    })
}
