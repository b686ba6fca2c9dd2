//! `leasehold reap`: the fallback for jobs whose own cleanup never ran or failed.

use crate::cli::Cli;
use crate::config::{Config, Executor};
use crate::error::Result;
use crate::executor::docker::DockerExecutor;
use crate::exit::Outcome;
use crate::lease::{RevocationOutcome, is_over, reap};
use crate::state::{StateDir, StateId, unix_now};

pub(crate) async fn run(cli: &Cli, dry_run: bool) -> Result<Outcome> {
    let config = Config::locate_and_load(cli.config.as_deref())?;
    let root = StateDir::open(&config.state_dir)?;
    let report = reap(&config, &root, dry_run).await?;
    let container_problems = reap_containers(&config, &root, dry_run).await;
    for item in &report.items {
        match &item.outcome {
            RevocationOutcome::Revoked | RevocationOutcome::RevokedWithToken => {
                println!("{}: revoked {}", item.state_id, item.what)
            }
            RevocationOutcome::NotRevocable => println!(
                "{}: {} is not revocable (expires on its own)",
                item.state_id, item.what
            ),
            RevocationOutcome::Failed(why) if dry_run => {
                println!("{}: would revoke {} ({why})", item.state_id, item.what)
            }
            RevocationOutcome::Failed(why) => {
                eprintln!("{}: could not revoke {}: {why}", item.state_id, item.what)
            }
        }
    }
    println!(
        "leasehold reap: {} job states examined, {} still running (left alone), {} reaped",
        report.examined, report.running, report.reaped
    );
    let failures = report
        .items
        .iter()
        .filter(|item| matches!(item.outcome, RevocationOutcome::Failed(_)))
        .count();
    Ok(Outcome::Findings {
        problems: if dry_run {
            0
        } else {
            failures + container_problems
        },
    })
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
                println!("{state_id}: {verb} container {name}");
            }
            0
        }
        Err(e) => {
            eprintln!("leasehold reap: {e}");
            1
        }
    }
}
