//! `leasehold reap`: revoke what crashed or failed jobs left behind.
//!
//! A job is over when its cleanup failed, or when its state is older than the job's timeout
//! plus `[leases] reap_grace_seconds` (gitlab-runner would have ended it by then). Jobs that may
//! still run are never touched, so the reaper is safe to run from a timer on a busy runner.
//! It works from the plain journal only (lease ids and token accessors), with its own
//! credential from `[reaper]`: `auth/token/revoke-accessor` revokes a job's token and with it
//! every lease the token created; `sys/leases/revoke` covers leases explicitly.

use std::collections::BTreeMap;

use secrecy::SecretString;

use crate::config::{Config, ReaperCredential};
use crate::state::{JobDir, JobStatus, Journal, JournalLease, JournalSession, StateDir, unix_now};
use crate::vault::{Server, address_key};
use crate::vault::{VaultClient, VaultError};

use super::RevocationOutcome;

/// One thing the reaper did or would do.
#[derive(Debug, Clone)]
pub(crate) struct ReapItem {
    /// The job's state id.
    pub state_id: String,
    /// What: `token <accessor>`, `lease <id>`, or `state`.
    pub what: String,
    /// What happened.
    pub outcome: RevocationOutcome,
}

/// The reaper's report.
#[derive(Debug, Default)]
pub(crate) struct ReapReport {
    /// Job states examined.
    pub examined: usize,
    /// States left alone because their job may still be running.
    pub running: usize,
    /// States reaped (fully revoked and removed).
    pub reaped: usize,
    /// Every revocation attempted.
    pub items: Vec<ReapItem>,
    /// Pool uids given back: (state id, uid).
    pub released: Vec<(String, u32)>,
    /// Pool uids that could not be given back: (state id, why).
    pub unreleased: Vec<(String, String)>,
    /// Every job the reaper took credentials back from (or tried to), for the event file and
    /// the exit status.
    pub jobs: Vec<ReapedJob>,
}

/// One job whose credentials outlived it and the reaper had to take back.
#[derive(Debug, Clone)]
pub(crate) struct ReapedJob {
    /// The attempt's state id.
    pub state_id: String,
    /// GitLab's job id.
    pub job_id: i64,
    /// The project's path.
    pub project: String,
    /// When prepare created the state.
    pub created_at: u64,
    /// Whether its cleanup ran and failed (otherwise it never ran: a crash).
    pub cleanup_failed: bool,
    /// Its tokens.
    pub tokens: crate::events::Tally,
    /// Its leases.
    pub leases: crate::events::Tally,
    /// How long the reaper spent on it, in milliseconds.
    pub duration_ms: u64,
}

/// Whether a job's state is over and may be reaped.
pub(crate) fn is_over(journal: &Journal, now: u64, grace: u64) -> bool {
    journal.is_over(now, grace)
}

/// A reaper client and token for one (server, namespace), or why there is none.
type Credential = Result<(VaultClient, SecretString), String>;

struct Credentials<'a> {
    config: &'a Config,
    clients: BTreeMap<(String, Option<String>), Credential>,
}

impl Credentials<'_> {
    async fn for_server(
        &mut self,
        address: &str,
        namespace: Option<&String>,
    ) -> Result<&(VaultClient, SecretString), String> {
        let key = (address_key(address), namespace.cloned());
        if !self.clients.contains_key(&key) {
            let result = self.login(address, namespace).await;
            self.clients.insert(key.clone(), result);
        }
        match self.clients.get(&key) {
            Some(Ok(pair)) => Ok(pair),
            Some(Err(e)) => Err(e.clone()),
            None => Err("internal: credential cache".into()),
        }
    }

    async fn login(
        &self,
        address: &str,
        namespace: Option<&String>,
    ) -> Result<(VaultClient, SecretString), String> {
        let reaper = self.config.reaper.as_ref().ok_or_else(|| {
            "no [reaper] credential in the executor config; add token_file or [reaper.approle] (see /usr/share/doc/leasehold/docs/leases.md)".to_owned()
        })?;
        let server = self
            .config
            .servers
            .find(address)
            .cloned()
            .unwrap_or_else(|| Server::bare(address));
        let client = VaultClient::new(&self.config.server_spec(&server, namespace.cloned()))
            .map_err(|e| e.to_string())?;
        let token = match reaper {
            ReaperCredential::TokenFile(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!("cannot read reaper token_file {}: {e}", path.display())
                })?;
                SecretString::from(text.trim().to_owned())
            }
            ReaperCredential::AppRole {
                mount,
                role_id,
                secret_id_file,
            } => {
                let secret_id = std::fs::read_to_string(secret_id_file).map_err(|e| {
                    format!(
                        "cannot read reaper secret_id_file {}: {e}",
                        secret_id_file.display()
                    )
                })?;
                let secret_id = SecretString::from(secret_id.trim().to_owned());
                client
                    .approle_login(mount, role_id, &secret_id)
                    .await
                    .map_err(|e| format!("reaper AppRole login failed: {e}"))?
                    .client_token
            }
        };
        Ok((client, token))
    }
}

fn already_gone(error: &VaultError) -> bool {
    match error {
        VaultError::Denied {
            status: 400,
            errors,
            ..
        } => {
            let e = errors.to_ascii_lowercase();
            e.contains("invalid lease")
                || e.contains("invalid accessor")
                || e.contains("not found")
                || e.contains("invalid token")
        }
        VaultError::NotFound { .. } => true,
        _ => false,
    }
}

/// A periodic reaper token lives only as long as it is renewed within its period; renewing it on
/// every run (not only when something needs reaping) keeps it alive on a quiet runner too.
async fn keep_token_file_alive(config: &Config) {
    let Some(ReaperCredential::TokenFile(path)) = &config.reaper else {
        return;
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let token = SecretString::from(text.trim().to_owned());
    let default = config.servers.default_server();
    let spec = config.server_spec(default, default.namespace.clone());
    if let Ok(client) = VaultClient::new(&spec)
        && let Err(e) = client.renew_self(&token, None).await
    {
        tracing::info!("the reaper token was not renewed: {e}");
    }
}

/// Reaps every job state under `root` that is over. With `dry_run`, only reports.
pub(crate) async fn reap(
    config: &Config,
    root: &StateDir,
    dry_run: bool,
) -> Result<ReapReport, crate::state::StateError> {
    let now = unix_now();
    let mut report = ReapReport::default();
    if !dry_run {
        keep_token_file_alive(config).await;
    }
    let mut credentials = Credentials {
        config,
        clients: BTreeMap::new(),
    };
    for job in root.jobs()? {
        report.examined += 1;
        let journal = match job.read_journal() {
            Ok(journal) => journal,
            Err(e) => {
                report.items.push(ReapItem {
                    state_id: job.id().as_str().to_owned(),
                    what: "journal".into(),
                    outcome: RevocationOutcome::Failed(e.to_string()),
                });
                continue;
            }
        };
        if !is_over(&journal, now, config.leases.reap_grace_seconds) {
            report.running += 1;
            continue;
        }
        if dry_run {
            let leases = journal.leases.iter().map(Journaled::what);
            let tokens = journal.sessions.iter().map(Journaled::what);
            for what in leases.chain(tokens) {
                report.items.push(ReapItem {
                    state_id: journal.state_id.clone(),
                    what,
                    outcome: RevocationOutcome::Failed("dry run".into()),
                });
            }
            continue;
        }
        if reap_one(&job, journal, &mut credentials, &mut report).await {
            report.reaped += 1;
        }
    }
    for ((_, _), creds) in credentials.clients {
        // An AppRole token is the reaper's own; don't leave it behind either.
        if let (Ok((client, token)), Some(reaper)) = (creds, &config.reaper)
            && matches!(reaper, ReaperCredential::AppRole { .. })
        {
            let _ = client.revoke_self(&token).await;
        }
    }
    Ok(report)
}

/// A journaled token or lease, as the reaper revokes it.
trait Journaled: Clone {
    /// The server and namespace it belongs to.
    fn server(&self) -> (&str, Option<&String>);
    /// How the report names it: `token <accessor>` or `lease <id>`.
    fn what(&self) -> String;
    /// Revokes it with the reaper's client and token.
    async fn revoke(&self, client: &VaultClient, token: &SecretString) -> RevocationOutcome;
}

impl Journaled for JournalSession {
    fn server(&self) -> (&str, Option<&String>) {
        (&self.address, self.namespace.as_ref())
    }

    fn what(&self) -> String {
        match &self.delivered_as {
            Some(name) => format!("token {} (job token for {name})", self.accessor),
            None => format!("token {}", self.accessor),
        }
    }

    async fn revoke(&self, client: &VaultClient, token: &SecretString) -> RevocationOutcome {
        match client.revoke_accessor(token, &self.accessor).await {
            Ok(()) => RevocationOutcome::Revoked,
            Err(e) => failed_unless_gone(e),
        }
    }
}

impl Journaled for JournalLease {
    fn server(&self) -> (&str, Option<&String>) {
        (&self.address, self.namespace.as_ref())
    }

    fn what(&self) -> String {
        format!("lease {}", self.lease_id)
    }

    async fn revoke(&self, client: &VaultClient, token: &SecretString) -> RevocationOutcome {
        match client.revoke_lease(token, &self.lease_id).await {
            Ok(()) if !self.revocable => RevocationOutcome::NotRevocable,
            Ok(()) => RevocationOutcome::Revoked,
            Err(e) => failed_unless_gone(e),
        }
    }
}

fn failed_unless_gone(error: VaultError) -> RevocationOutcome {
    if already_gone(&error) {
        RevocationOutcome::Revoked
    } else {
        RevocationOutcome::Failed(error.to_string())
    }
}

/// Revokes each of `entries` and reports it; returns those that could not be revoked.
async fn revoke_each<T: Journaled>(
    entries: &[T],
    journal: &Journal,
    credentials: &mut Credentials<'_>,
    report: &mut ReapReport,
) -> Vec<T> {
    let state_id = journal.state_id.as_str();
    // The reaper's client is shared by every job on a server; each job's requests still carry
    // that job's labels in the audit log.
    let tag = journal.audit_tag();
    let mut remaining = Vec::new();
    for entry in entries {
        let (address, namespace) = entry.server();
        let outcome = match credentials.for_server(address, namespace).await {
            Ok((client, token)) => {
                let client = client.clone().for_job(Some(&tag));
                entry.revoke(&client, token).await
            }
            Err(e) => RevocationOutcome::Failed(e),
        };
        if matches!(outcome, RevocationOutcome::Failed(_)) {
            remaining.push(entry.clone());
        }
        report.items.push(ReapItem {
            state_id: state_id.to_owned(),
            what: entry.what(),
            outcome,
        });
    }
    remaining
}

async fn reap_one(
    job: &JobDir,
    mut journal: Journal,
    credentials: &mut Credentials<'_>,
    report: &mut ReapReport,
) -> bool {
    // The job is over: its pool uid (processes ended, dirs removed) goes back whatever Vault says.
    match crate::job_user::pool::release_attempt(
        credentials.config,
        job.id(),
        journal.seat.as_ref(),
    ) {
        Ok(Some(uid)) => report.released.push((journal.state_id.clone(), uid)),
        Ok(None) => {}
        Err(e) => report
            .unreleased
            .push((journal.state_id.clone(), e.to_string())),
    }
    let started = std::time::Instant::now();
    let first_item = report.items.len();
    let reaped = revoke_and_remove(job, &mut journal, credentials, report).await;
    let mut tokens = crate::events::Tally::default();
    let mut leases = crate::events::Tally::default();
    for item in &report.items[first_item..] {
        if item.what.starts_with("token ") {
            tokens.count(&item.outcome);
        } else if item.what.starts_with("lease ") {
            leases.count(&item.outcome);
        }
    }
    if tokens.obtained + leases.obtained > 0 {
        report.jobs.push(ReapedJob {
            state_id: journal.state_id.clone(),
            job_id: journal.job_id,
            project: journal.project_path.clone(),
            created_at: journal.created_at,
            cleanup_failed: journal.status == JobStatus::CleanupFailed,
            tokens,
            leases,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
    }
    reaped
}

async fn revoke_and_remove(
    job: &JobDir,
    journal: &mut Journal,
    credentials: &mut Credentials<'_>,
    report: &mut ReapReport,
) -> bool {
    let remaining_sessions = revoke_each(&journal.sessions, journal, credentials, report).await;
    let remaining_leases = revoke_each(&journal.leases, journal, credentials, report).await;
    let all_ok = remaining_sessions.is_empty() && remaining_leases.is_empty();
    if all_ok {
        // A job running as its own user may have left stage directories (its script copy and
        // file secrets) under files_dir when it was killed.
        let _ =
            crate::inject::remove_user_stage_dirs(&credentials.config.executor.files_dir, job.id());
        if let Err(e) = job.remove() {
            report.items.push(ReapItem {
                state_id: journal.state_id.clone(),
                what: "state".into(),
                outcome: RevocationOutcome::Failed(e.to_string()),
            });
            return false;
        }
        return true;
    }
    let _ = job.remove_secrets();
    journal.sessions = remaining_sessions;
    journal.leases = remaining_leases;
    let _ = job.write_journal(&Journal {
        status: JobStatus::CleanupFailed,
        ..journal.clone()
    });
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(status: JobStatus, created_at: u64) -> Journal {
        Journal {
            version: 1,
            state_id: "j1-aa".into(),
            job_id: 1,
            project_path: String::new(),
            pipeline_id: 0,
            created_at,
            job_timeout_secs: 600,
            status,
            sessions: Vec::new(),
            leases: Vec::new(),
            seat: None,
        }
    }

    #[test]
    fn running_jobs_are_left_alone() {
        assert!(!is_over(
            &journal(JobStatus::Active, 1000),
            1000 + 600 + 900,
            900
        ));
        assert!(is_over(
            &journal(JobStatus::Active, 1000),
            1000 + 600 + 901,
            900
        ));
        assert!(is_over(&journal(JobStatus::CleanupFailed, 1000), 1001, 900));
        assert!(!is_over(&journal(JobStatus::Preparing, 1000), 1500, 900));
    }
}
