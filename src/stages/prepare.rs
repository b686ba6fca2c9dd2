//! prepare_exec: read the job, log in to Vault once per identity, resolve every secret into the
//! job's private state, and prepare the wrapped executor. A failure after a login revokes what
//! was obtained before the stage exits.

use crate::cli::Cli;
use crate::config::{Config, RunAs};
use crate::error::{Error, Result};
use crate::executor::WrappedExecutor;
use crate::exit::Outcome;
use crate::identity::Verifier;
use crate::job_response::JobResponse;
use crate::joblog;
use crate::lease::revoke_all;
use crate::planning::{ClaimsSource, Identity, Planned, Planner};
use crate::protocol::StageEnv;
use crate::resolution::{self, Progress, Resolved, describe_ttl};
use crate::secret_plan::{Provenance, SecretPlan};
use crate::state::{JobDir, JobStatus, Journal, Sealed, StateDir, StateKey, unix_now};

use super::{load_config, state_handles};

pub(crate) async fn run(cli: &Cli) -> Result<Outcome> {
    let config = load_config(cli)?;
    crate::job_user::refuse_root_jobs(&config.executor)?;
    let env = StageEnv::from_env();
    let (id, key) = state_handles(&env)?;
    let root = StateDir::open(&config.state_dir)?;
    let job = JobResponse::read(env.require_job_response_file()?)?;

    mention_native_secrets(&job);
    // Before any Vault login: a job the executor cannot run (a disallowed image, an engine
    // that is down) gets no token.
    let executor = WrappedExecutor::from_config(&config);
    let checked = executor.check_job().await?;
    let (plan, identity) = plan_job(&job, &config).await?;
    let run_as = job_user_from_claims(&config, &identity)?;
    let job_dir = root.job(&id);
    job_dir.create()?;
    let tag = job.audit_tag();
    let mut journal = Journal::new(id.as_str(), &tag, unix_now(), job.timeout_secs());
    job_dir.write_journal(&journal)?;
    let seat = seat_in_pool(&config, &job_dir, &mut journal)?;
    let mut sealed = Sealed {
        deadline: journal.created_at + journal.job_timeout_secs,
        run_as,
        seat,
        audit: Some(tag),
        ..Sealed::default()
    };
    let resolved = resolve(&plan, &config, &mut sealed, &job_dir, &mut journal, &key).await?;
    journal.track(&sealed);
    job_dir.seal(&sealed, &key)?;
    journal.status = JobStatus::Active;
    job_dir.write_journal(&journal)?;
    report(&plan, &resolved, &sealed, &config);
    crate::lease::warn_short_lived(&sealed);
    verify_key_round_trip(&job_dir, &key)?;
    // The wrapped executor prepares last: a VM is not started for a job whose secrets fail.
    // If it fails, gitlab-runner runs cleanup, which revokes what was just obtained.
    let owner = crate::docker::container::Owner {
        state_id: id.as_str(),
        state_dir: &config.state_dir,
        job_id: job.id,
        project: &job.job_info.project_full_path,
    };
    Ok(executor.prepare(&config, checked, owner).await?)
}

/// Logs in and resolves the plan into `sealed`, journaling every token as it is obtained; if
/// that fails, revokes what was obtained before returning the error.
async fn resolve(
    plan: &SecretPlan,
    config: &Config,
    sealed: &mut Sealed,
    job_dir: &JobDir,
    journal: &mut Journal,
    key: &StateKey,
) -> Result<Resolved> {
    if plan.is_empty() {
        return Ok(Resolved::default());
    }
    let mut progress = JournalProgress {
        job_dir,
        journal,
        key,
    };
    match resolution::execute(plan, config, sealed, &mut progress).await {
        Ok(resolved) => Ok(resolved),
        Err(error) => {
            give_back(sealed, config, job_dir, journal).await;
            Err(error.into())
        }
    }
}

/// Establishes the job's identity (with `[gitlab]`: verifies its ID token) and plans its
/// secrets from the admin's bindings and, as the policy allows, the job's own declarations.
/// Runs before any Vault request, so a forged or broken token never reaches Vault.
pub(crate) async fn plan_job(job: &JobResponse, config: &Config) -> Result<(SecretPlan, Identity)> {
    let verifier =
        Verifier::configured(config.gitlab.as_ref(), &config.audiences, &config.state_dir)?;
    let planner = Planner {
        config,
        verifier: verifier.as_ref(),
        now: unix_now(),
        lenient: false,
    };
    let identity = planner.identity(job).await?;
    let planned = planner.plan(job, &identity).await;
    if let Some(error) = planned.error {
        return Err(error);
    }
    report_identity(&identity, &planned);
    Ok((planned.plan, identity))
}

/// With `[executor] user_pool`: a uid of the job's own, with its project dir (gitlab-runner's
/// `CI_PROJECT_DIR`) and HOME given to it. Before any Vault request: a full pool costs no login.
fn seat_in_pool(
    config: &Config,
    job_dir: &JobDir,
    journal: &mut Journal,
) -> Result<Option<crate::state::Seat>> {
    let project = std::env::var_os("CUSTOM_ENV_CI_PROJECT_DIR").map(std::path::PathBuf::from);
    let Some((seat, taken)) =
        crate::job_user::pool::seat_attempt(config, job_dir, journal, project.as_deref())?
    else {
        return Ok(None);
    };
    joblog::info(&format!(
        "leasehold: the job runs as uid {} of the user pool{}; its project dir and HOME are its own (0700)",
        seat.uid,
        if taken.reclaimed {
            ", taken back from a job that is over"
        } else {
            ""
        }
    ));
    Ok(Some(seat))
}

/// With `[executor] user_from_claim`: the local user this job runs as, from its VERIFIED claims
/// only, through `user_map` and the `allowed_users` allow-list.
fn job_user_from_claims(config: &Config, identity: &Identity) -> Result<Option<String>> {
    let RunAs::FromClaim {
        claim,
        map,
        allowed,
        ..
    } = &config.executor.run_as
    else {
        return Ok(None);
    };
    let ClaimsSource::Verified(verified) = &identity.source else {
        return Err(crate::job_user::JobUserError::Job(format!(
            "[executor] user_from_claim = \"{claim}\" needs the job's ID token verified by [gitlab]; add id_tokens: to the job (and [gitlab] to the executor config)"
        ))
        .into());
    };
    let user = crate::job_user::user_from_claim(claim, verified.claims().get(claim), map, allowed)?;
    joblog::info(&format!(
        "leasehold: the job runs as local user {user} ({claim} of the verified ID token)"
    ));
    Ok(Some(user))
}

/// One line on the verified identity and one per binding that applied.
fn report_identity(identity: &Identity, planned: &Planned) {
    if let ClaimsSource::Verified(verified) = &identity.source {
        let claims = verified.claims();
        joblog::info(&format!(
            "leasehold: verified the ID token in ${} (GitLab key {}; project {} {}, ref {}{}{})",
            verified.variable(),
            verified.kid(),
            claims.project_id.as_deref().unwrap_or("?"),
            claims.project_path.as_deref().unwrap_or("?"),
            claims.git_ref.as_deref().unwrap_or("?"),
            if claims.ref_protected.as_deref() == Some("true") {
                " (protected)"
            } else {
                ""
            },
            claims
                .environment
                .as_deref()
                .map(|e| format!(", environment {e}"))
                .unwrap_or_default(),
        ));
    }
    for rule in planned.rules.iter().filter(|r| r.matched()) {
        let granted: Vec<&str> = planned
            .plan
            .secrets
            .iter()
            .filter(
                |s| matches!(&s.declared_by, Provenance::Binding { name } if *name == rule.name),
            )
            .map(|s| s.declaration.name.as_str())
            .collect();
        joblog::info(&format!(
            "leasehold: binding {} applies: {}",
            rule.name,
            granted.join(", ")
        ));
    }
    if let (Some(note), ClaimsSource::NoToken) = (&planned.bindings_note, &identity.source)
        && note.starts_with("not evaluated")
    {
        joblog::info(&format!("leasehold: bindings {note}"));
    }
}

/// The providers of GitLab's `secrets:` keyword that gitlab-runner resolves itself.
const NATIVE_PROVIDERS: &[&str] = &[
    "vault",
    "gitlab_secrets_manager",
    "aws_secrets_manager",
    "gcp_secret_manager",
    "azure_key_vault",
    "akeyless",
];

/// gitlab-runner resolved the job's own `secrets:` block before any executor ran and passes
/// each result as `CUSTOM_ENV_<NAME>`: say which variables those are (they are in every stage
/// script and never revoked), and flag the ones that arrived empty, because a runner that does
/// not know a provider skips the secret with only a line in its own log.
fn mention_native_secrets(job: &JobResponse) {
    let Some(secrets) = job.secrets.as_ref().filter(|s| !s.is_empty()) else {
        return;
    };
    let names: Vec<&str> = secrets.keys().map(String::as_str).collect();
    joblog::warning(&format!(
        "this job also has a GitLab secrets: block ({}); gitlab-runner resolved it itself before leasehold ran, so those values are in every stage script and are never revoked. leasehold does not resolve them again; move them into LEASEHOLD_SECRETS to get job-scoped, revoked secrets",
        names.join(", ")
    ));
    for (name, secret) in secrets {
        let provider = NATIVE_PROVIDERS
            .iter()
            .find(|p| secret.get(**p).is_some())
            .copied()
            .unwrap_or("an unknown provider");
        let arrived = std::env::var_os(format!("CUSTOM_ENV_{name}")).is_some_and(|v| !v.is_empty());
        if arrived {
            joblog::info(&format!(
                "leasehold:   {name}: resolved by gitlab-runner ({provider}), in every stage script"
            ));
        } else {
            joblog::warning(&format!(
                "{name} ({provider}) arrived empty: gitlab-runner did not resolve it (a runner that does not support {provider} skips it silently); upgrade the runner or declare it in LEASEHOLD_SECRETS"
            ));
        }
    }
}

struct JournalProgress<'a> {
    job_dir: &'a JobDir,
    journal: &'a mut Journal,
    key: &'a StateKey,
}

impl Progress for JournalProgress<'_> {
    fn logged_in(&mut self, state: &Sealed) {
        self.journal.track(state);
        if let Err(e) = self.job_dir.write_journal(self.journal) {
            tracing::warn!("cannot journal the Vault login: {e}");
        }
        // The tokens too, so that cleanup can revoke them (and every lease created with them,
        // including one whose response never arrived) if prepare is killed, e.g. by a cancel.
        if !state.sessions.is_empty()
            && let Err(e) = self.job_dir.seal(state, self.key)
        {
            tracing::warn!("cannot store the Vault token for cleanup: {e}");
        }
    }
}

/// Revokes what a failed prepare obtained, and leaves the journal for the reaper if that fails.
async fn give_back(sealed: &Sealed, config: &Config, job_dir: &JobDir, journal: &mut Journal) {
    if sealed.sessions.is_empty() {
        return;
    }
    let report = revoke_all(sealed, config).await;
    journal.track(sealed);
    if report.has_failures() {
        journal.status = JobStatus::CleanupFailed;
        let _ = job_dir.write_journal(journal);
        joblog::warning(
            "could not revoke everything this failed prepare obtained; `leasehold reap` will retry",
        );
    } else {
        journal.sessions.clear();
        journal.leases.clear();
        let _ = job_dir.write_journal(journal);
        // Nothing left for cleanup to revoke with the tokens stored at login.
        let _ = job_dir.remove_secrets();
    }
}

fn report(plan: &SecretPlan, resolved: &Resolved, sealed: &Sealed, config: &Config) {
    if plan.is_empty() {
        joblog::info(&format!(
            "leasehold: no secrets for this job (no binding applies and {} is not set)",
            config.job.secrets_variable
        ));
        return;
    }
    let _section = joblog::Section::start("leasehold_secrets", "Resolving secrets with leasehold");
    for (login, session) in plan.logins.iter().zip(&sealed.sessions) {
        joblog::info(&format!(
            "Logged in to {}{} via auth/{} role {} (TTL {}{})",
            session.server.address,
            session
                .namespace
                .as_deref()
                .map(|n| format!(" namespace {n}"))
                .unwrap_or_default(),
            login.auth_mount,
            login.role.as_deref().unwrap_or("(default)"),
            describe_ttl(session.ttl),
            if session.renewable { ", renewable" } else { "" },
        ));
    }
    // Resolution stored one secret per planned secret, in plan order.
    for (planned, secret) in plan.secrets.iter().zip(&sealed.secrets) {
        let lease = resolved
            .lease_of_request
            .get(planned.request)
            .copied()
            .flatten()
            .and_then(|i| sealed.leases.get(i));
        let child = sealed
            .sessions
            .iter()
            .find(|s| s.delivered_as.as_deref() == Some(secret.name.as_str()));
        let lease_text = match (child, lease) {
            (Some(token), _) => format!(
                "child of the login, TTL {}{}",
                describe_ttl(token.ttl),
                if token.renewable { " renewable" } else { "" }
            ),
            (None, Some(l)) => format!(
                "lease TTL {}{}",
                describe_ttl(l.ttl),
                if l.renewable { " renewable" } else { "" }
            ),
            (None, None) => "no lease".to_owned(),
        };
        joblog::info(&format!(
            "  {:<24} <- {} ({}, {}, {}; stages: {}; from {})",
            secret.name,
            secret.origin,
            planned.declaration.source.engine.as_str(),
            lease_text,
            if secret.file { "file" } else { "env" },
            secret.stages.join(" "),
            planned.declared_by,
        ));
        if child.is_some() {
            let beside: Vec<&str> = sealed
                .secrets
                .iter()
                .skip(plan.secrets.len())
                .map(|s| s.name.as_str())
                .collect();
            joblog::info(&format!(
                "  {:<24}    with {} in the same stages",
                "",
                beside.join(", ")
            ));
        }
    }
    joblog::info(&format!(
        "{} secrets from {} requests and {} login{}",
        plan.secrets.len(),
        plan.requests.len(),
        plan.logins.len(),
        if plan.logins.len() == 1 { "" } else { "s" }
    ));
    let (_, mask_report) = crate::mask::MaskSet::for_job(sealed.values(), &config.mask);
    for name in mask_report.too_short {
        joblog::warning(&format!(
            "secret {name} is shorter than {} bytes and will not be masked in the job log",
            config.mask.min_length
        ));
    }
    for name in mask_report.short_lines {
        joblog::warning(&format!(
            "secret {name} has a line shorter than {} bytes: that line is masked only where the whole value is printed",
            config.mask.min_length
        ));
    }
    if let Some(error) = mask_report.build_error {
        joblog::warning(&format!(
            "the masker could not be built ({error}); job output will be withheld"
        ));
    }
}

/// Fails prepare (rather than every later stage) if the state cannot be read back.
fn verify_key_round_trip(job_dir: &JobDir, key: &StateKey) -> Result<()> {
    job_dir.unseal(key).map(|_| ()).map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Session, StateId};
    use secrecy::{ExposeSecret, SecretString};

    #[test]
    fn tokens_are_stored_for_cleanup_as_soon_as_logged_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = StateDir::open(&dir.path().join("state")).expect("root");
        let job_dir = root.job(&StateId::generate("1"));
        job_dir.create().expect("create");
        let key = StateKey::generate();
        let mut journal = Journal {
            version: 1,
            state_id: job_dir.id().as_str().to_owned(),
            job_id: 1,
            project_path: String::new(),
            pipeline_id: 0,
            created_at: 0,
            job_timeout_secs: 60,
            status: JobStatus::Preparing,
            sessions: Vec::new(),
            leases: Vec::new(),
            seat: None,
        };
        let state = Sealed {
            sessions: vec![Session {
                server: Config::parse("[vault]\naddress = \"http://127.0.0.1:1\"\n")
                    .expect("config")
                    .servers
                    .default_server()
                    .clone(),
                namespace: None,
                token: SecretString::from("t"),
                accessor: "acc".into(),
                ttl: 60,
                renewable: true,
                since: 0,
                exhausted: false,
                parent: None,
                delivered_as: None,
            }],
            ..Sealed::default()
        };
        JournalProgress {
            job_dir: &job_dir,
            journal: &mut journal,
            key: &key,
        }
        .logged_in(&state);
        assert_eq!(
            job_dir.read_journal().expect("journal").sessions[0].accessor,
            "acc"
        );
        let stored = job_dir
            .unseal(&key)
            .expect("readable")
            .expect("written at login");
        assert_eq!(stored.sessions.len(), 1);
        assert_eq!(stored.sessions[0].token.expose_secret(), "t");
    }
}
