//! What a job gets, decided before any Vault request: its identity, the admin's bindings, the
//! fleet policy and the job's own declarations, combined into one [`SecretPlan`]
//! ([`crate::secret_plan`]).
//!
//! Why one module for `prepare` and `leasehold plan`: an admin debugging a job must see exactly
//! what prepare would do, so both run this code; `plan` only asks it to keep going after a
//! failure (lenient mode) and to explain every rule.
//!
//! Order, and why:
//! 1. find the ID token (`[job] id_token_variable`, then `CI_JOB_JWT_V2`/`CI_JOB_JWT` if allowed);
//! 2. with `[gitlab]`, verify it: everything below that looks at claims sees verified claims only;
//! 3. bindings, in config order, every matching rule (`declared_by` = `binding <name>`);
//! 4. the job's declarations, if the policy admits them on this ref, with allow-listed mounts and
//!    role; a name already granted by a binding is an error naming both;
//! 5. every login's token must exist, and with `[gitlab]` every further token is verified too.

use secrecy::ExposeSecret;

use crate::api_path::{self, Piece};
use crate::bindings::{self, RuleOutcome};
use crate::config::{Config, RunAs};
use crate::declarations::{self, DeclarationContext, DeclarationError};
use crate::error::Error;
use crate::identity::{
    Claims, IdentityError, LEGACY_TOKEN_VARIABLES, VerifiedClaims, Verifier, peek_claims,
};
use crate::job_response::JobResponse;
use crate::policy::RefProtection;
use crate::secret_plan::{
    CompanionValue, LoginTarget, PlanError, Provenance, SecretPlan, token_companions,
};
use crate::vault::address_key;

/// Where the claims leasehold acts on came from.
#[derive(Debug, Clone)]
pub(crate) enum ClaimsSource {
    /// The job has no ID token.
    NoToken,
    /// No `[gitlab]`: the token is not verified locally and its claims are not used.
    NotVerified,
    /// Nothing needs the token: no binding is configured and the job declares no secrets. It is
    /// left alone, so that a job leasehold has nothing to do for never fails on its token.
    NotNeeded,
    /// Verified: signature, issuer, audience and times.
    Verified(VerifiedClaims),
    /// `leasehold plan --claims`: taken as given, as if verified.
    ClaimsFile(Claims),
    /// `leasehold plan --job` when verification failed: read without verification, for the
    /// explanation only. prepare never produces this.
    Unverified {
        /// The claims, unverified.
        claims: Claims,
        /// Why verification failed.
        error: String,
    },
}

/// The job's ID token and its claims.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// The variable holding the token (`None`: the job has none).
    pub token_variable: Option<String>,
    /// The claims and their provenance.
    pub source: ClaimsSource,
}

impl Identity {
    /// The claims bindings and the policy may use.
    pub(crate) fn claims(&self) -> Option<&Claims> {
        match &self.source {
            ClaimsSource::Verified(v) => Some(v.claims()),
            ClaimsSource::ClaimsFile(c) | ClaimsSource::Unverified { claims: c, .. } => Some(c),
            ClaimsSource::NoToken | ClaimsSource::NotVerified | ClaimsSource::NotNeeded => None,
        }
    }

    /// The `--claims` identity of `leasehold plan`.
    pub(crate) fn from_claims_file(claims: Claims, config: &Config) -> Self {
        Identity {
            token_variable: Some(config.job.id_token_variable.clone()),
            source: ClaimsSource::ClaimsFile(claims),
        }
    }
}

/// Decides what a job gets.
pub(crate) struct Planner<'a> {
    /// The executor config.
    pub config: &'a Config,
    /// The verifier (`None` without `[gitlab]`).
    pub verifier: Option<&'a Verifier>,
    /// The clock, unix seconds.
    pub now: u64,
    /// `leasehold plan`: record failures and keep explaining instead of stopping.
    pub lenient: bool,
}

/// The outcome, with everything `plan` shows.
#[derive(Debug)]
pub(crate) struct Planned {
    /// What would be resolved (as far as planning got, when `error` is set).
    pub plan: SecretPlan,
    /// Every binding rule, in order (empty when they were not evaluated).
    pub rules: Vec<RuleOutcome>,
    /// Why bindings were not evaluated, if they were not.
    pub bindings_note: Option<String>,
    /// What happened to the job's own declarations.
    pub declarations_note: Option<String>,
    /// Further remarks (tokens that failed verification in lenient mode).
    pub notes: Vec<String>,
    /// Why prepare would fail.
    pub error: Option<Error>,
}

/// The job variable holding its ID token: `[job] id_token_variable`, else (if allowed) the legacy
/// variables. Empty values count as absent.
pub(crate) fn find_token_variable(job: &JobResponse, config: &Config) -> Option<String> {
    let present = |name: &str| {
        job.variable(name)
            .is_some_and(|v| !v.value.expose_secret().trim().is_empty())
    };
    let primary = &config.job.id_token_variable;
    if present(primary) {
        return Some(primary.clone());
    }
    let legacy = config
        .gitlab
        .as_ref()
        .is_some_and(|g| g.allow_legacy_token_variables);
    LEGACY_TOKEN_VARIABLES
        .iter()
        .find(|v| legacy && present(v))
        .map(|v| (*v).to_owned())
}

impl Planner<'_> {
    /// Finds and (with `[gitlab]`) verifies the job's ID token. In lenient mode a verification
    /// failure yields the claims read without verification, marked as such; a JWKS that cannot
    /// be fetched is an error in both modes.
    pub(crate) async fn identity(&self, job: &JobResponse) -> Result<Identity, IdentityError> {
        let Some(variable) = find_token_variable(job, self.config) else {
            return Ok(Identity {
                token_variable: None,
                source: ClaimsSource::NoToken,
            });
        };
        let Some(verifier) = self.verifier else {
            return Ok(Identity {
                token_variable: Some(variable),
                source: ClaimsSource::NotVerified,
            });
        };
        let Some(token) = job.variable(&variable).map(|v| &v.value) else {
            return Ok(Identity {
                token_variable: None,
                source: ClaimsSource::NoToken,
            });
        };
        let declares = job
            .variable(&self.config.job.secrets_variable)
            .is_some_and(|v| !v.value.expose_secret().trim().is_empty());
        // The job's local user may come from a claim: then the token always matters.
        let maps_user = matches!(self.config.executor.run_as, RunAs::FromClaim { .. });
        if self.config.bindings.is_empty() && !declares && !maps_user {
            return Ok(Identity {
                token_variable: Some(variable),
                source: ClaimsSource::NotNeeded,
            });
        }
        match verifier.verify(&variable, token, self.now).await {
            Ok(verified) => Ok(Identity {
                token_variable: Some(variable),
                source: ClaimsSource::Verified(verified),
            }),
            Err(error)
                if self.lenient && error.failure_kind() == crate::exit::FailureKind::Build =>
            {
                let claims = peek_claims(token).map_err(|detail| IdentityError::Malformed {
                    variable: variable.clone(),
                    detail,
                })?;
                Ok(Identity {
                    token_variable: Some(variable),
                    source: ClaimsSource::Unverified {
                        claims,
                        error: error.to_string(),
                    },
                })
            }
            Err(error) => Err(error),
        }
    }

    /// Plans the job's secrets.
    pub(crate) async fn plan(&self, job: &JobResponse, identity: &Identity) -> Planned {
        let mut planned = Planned {
            plan: SecretPlan::default(),
            rules: Vec::new(),
            bindings_note: None,
            declarations_note: None,
            notes: Vec::new(),
            error: None,
        };
        if let Err(error) = self.plan_into(job, identity, &mut planned).await {
            planned.error = Some(error);
        }
        planned
    }

    async fn plan_into(
        &self,
        job: &JobResponse,
        identity: &Identity,
        out: &mut Planned,
    ) -> Result<(), Error> {
        let config = self.config;
        let token_variable = identity
            .token_variable
            .clone()
            .unwrap_or_else(|| config.job.id_token_variable.clone());

        // Bindings: verified claims only.
        if config.bindings.is_empty() {
            out.bindings_note = Some("none configured".into());
        } else if let Some(claims) = identity.claims() {
            out.rules = bindings::evaluate(&config.bindings, claims);
            for (binding, outcome) in config.bindings.iter().zip(&out.rules) {
                if !outcome.matched() {
                    continue;
                }
                let grant = binding.grant(claims, &config.login_defaults())?;
                let declared_by = grant.declared_by();
                for declaration in &grant.declarations {
                    check_name(job, &declaration.name, Some(&declared_by.to_string()))?;
                }
                out.plan.add_with(
                    grant.declarations.clone(),
                    &declared_by,
                    &grant.target,
                    &token_variable,
                    &config.job.secret_stages,
                )?;
            }
        } else {
            out.bindings_note = Some(match identity.source {
                ClaimsSource::NoToken => format!(
                    "not evaluated: the job has no ID token in ${token_variable}, so no binding can apply; a job that needs secrets from a binding must set  id_tokens: {{ {token_variable}: {{ aud: \"{}\" }} }}",
                    suggested_audience(config)
                ),
                _ => "not evaluated: no verified claims".into(),
            });
        }

        // The job's own declarations, subject to the policy.
        let variable = &config.job.secrets_variable;
        match job
            .variable(variable)
            .filter(|v| !v.value.expose_secret().trim().is_empty())
        {
            None => out.declarations_note = Some(format!("{variable} is not set")),
            Some(yaml) => {
                let lookup = |name: &str| {
                    job.variable(name)
                        .map(|v| (v.value.expose_secret().to_owned(), !v.masked && !v.file))
                };
                let declarations = declarations::parse(
                    yaml.value.expose_secret(),
                    &DeclarationContext {
                        source_variable: variable,
                        lookup: &lookup,
                    },
                )?;
                let protection = ref_protection(job, config, identity);
                let policy = &config.policy;
                let refused = policy
                    .admit_declarations(variable, &protection)
                    .and_then(|()| {
                        policy.check_names(&declarations, job.plain_variable("VAULT_AUTH_ROLE"))
                    });
                if let Err(refusal) = refused {
                    out.declarations_note = Some(format!(
                        "{} declared, refused by [policy]",
                        count(declarations.len())
                    ));
                    return Err(refusal.into());
                }
                out.declarations_note = Some(format!(
                    "{} declared, admitted ([policy] job_declarations = \"{}\"{})",
                    count(declarations.len()),
                    policy.job_declarations.as_str(),
                    match protection.protected {
                        Some(p) => format!(
                            ", ref {:?} {} per the {}",
                            protection.git_ref,
                            if p { "protected" } else { "unprotected" },
                            protection.source
                        ),
                        None => String::new(),
                    }
                ));
                for declaration in &declarations {
                    check_name(job, &declaration.name, None)?;
                }
                let target = login_target_for_job(job, config)?;
                out.plan.add_with(
                    declarations,
                    &Provenance::Job {
                        variable: variable.clone(),
                    },
                    &target,
                    &token_variable,
                    &config.job.secret_stages,
                )?;
            }
        }

        check_token_companions(job, &out.plan)?;
        label_token_request(job, &mut out.plan);

        // Every login needs its token; with [gitlab], every further token is verified too.
        if !matches!(identity.source, ClaimsSource::ClaimsFile(_)) {
            self.check_login_tokens(job, identity, out).await?;
            out.plan
                .attach_tokens(|variable| {
                    job.variable(variable)
                        .map(|v| v.value.clone())
                        .filter(|v| !v.expose_secret().trim().is_empty())
                })
                .map_err(|variable| IdentityError::MissingToken {
                    variable,
                    audience: suggested_audience(config),
                    needed_for: "a login".into(),
                })?;
        }
        // A credential never needs to outlive its job, nor exceed the admin's cap.
        out.plan.ttl_cap = config.leases.max_increment_seconds.min(job.timeout_secs());
        Ok(())
    }

    async fn check_login_tokens(
        &self,
        job: &JobResponse,
        identity: &Identity,
        out: &mut Planned,
    ) -> Result<(), Error> {
        let mut variables: Vec<&str> = out
            .plan
            .logins
            .iter()
            .map(|l| l.token_variable.as_str())
            .collect();
        variables.dedup();
        variables.sort_unstable();
        variables.dedup();
        for variable in variables {
            let token = job
                .variable(variable)
                .map(|v| &v.value)
                .filter(|v| !v.expose_secret().trim().is_empty());
            let Some(token) = token else {
                let needed_for: Vec<&str> = out
                    .plan
                    .secrets
                    .iter()
                    .filter(|s| {
                        out.plan.logins[out.plan.requests[s.request].login].token_variable
                            == variable
                    })
                    .map(|s| s.declaration.name.as_str())
                    .collect();
                return Err(IdentityError::MissingToken {
                    variable: variable.to_owned(),
                    audience: suggested_audience(self.config),
                    needed_for: format!(
                        "secret{} {}",
                        if needed_for.len() == 1 { "" } else { "s" },
                        needed_for.join(", ")
                    ),
                }
                .into());
            };
            let already = identity.token_variable.as_deref() == Some(variable);
            if let (Some(verifier), false) = (self.verifier, already) {
                match verifier.verify(variable, token, self.now).await {
                    Ok(_) => {}
                    Err(e)
                        if self.lenient && e.failure_kind() == crate::exit::FailureKind::Build =>
                    {
                        out.notes
                            .push(format!("token ${variable} would be refused: {e}"));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}

fn count(n: usize) -> String {
    format!("{n} secret{}", if n == 1 { "" } else { "s" })
}

/// The `aud` to suggest in a missing-token message.
fn suggested_audience(config: &Config) -> String {
    config
        .audiences
        .first()
        .cloned()
        .unwrap_or_else(|| config.servers.default_server().address.clone())
}

/// The login a job's own declarations use: the job's `VAULT_SERVER_URL`, `VAULT_NAMESPACE`,
/// `VAULT_AUTH_PATH` and `VAULT_AUTH_ROLE` over the admin's defaults. The namespace and the
/// auth mount follow the one path rule ([`crate::api_path`]), and the auth mount must be one
/// the policy allows: the job's ID token is sent there.
pub(crate) fn login_target_for_job(
    job: &JobResponse,
    config: &Config,
) -> Result<LoginTarget, Error> {
    let server = config
        .servers
        .get(job.plain_variable("VAULT_SERVER_URL"))
        .map_err(|reason| PlanError::ServerNotAllowed { reason })?
        .clone();
    let namespace = match job.plain_variable("VAULT_NAMESPACE").filter(|n| !n.is_empty()) {
        Some(namespace) => Some(api_path::check(Piece::Namespace, namespace).map_err(|problem| {
            PlanError::BadVariable {
                variable: "VAULT_NAMESPACE",
                problem,
                fix: format!(
                    "set it to the Vault namespace of the job's secrets, like team-a or team-a/ci, or remove it to use {}",
                    server.namespace.as_deref().map_or_else(
                        || "the root namespace".to_owned(),
                        |n| format!("the server's namespace {n:?}")
                    )
                ),
            }
        })?),
        None => server.namespace.clone().filter(|n| !n.is_empty()),
    };
    let auth_mount = match job.plain_variable("VAULT_AUTH_PATH") {
        Some(requested) => {
            let mount = api_path::check(Piece::AuthMount, requested).map_err(|problem| {
                PlanError::BadVariable {
                    variable: "VAULT_AUTH_PATH",
                    problem,
                    fix: format!(
                        "set it to the path the JWT auth method is mounted at, like jwt, or remove it to log in at the runner's {:?}",
                        config.vault.auth_mount
                    ),
                }
            })?;
            config.policy.check_auth_mount(&mount)?;
            mount
        }
        None => config.vault.auth_mount.clone(),
    };
    let role = job
        .plain_variable("VAULT_AUTH_ROLE")
        .map(str::to_owned)
        .or_else(|| config.vault.role.clone());
    Ok(LoginTarget {
        server,
        namespace,
        auth_mount,
        role,
    })
}

/// A secret may not take a name the runner, leasehold or the shell own (whatever the executor:
/// the one list in [`crate::protocol::reserved_name`]), nor shadow a CI/CD variable or a GitLab
/// `secrets:` entry of the job. A binding's grant is named in the message; the job's own
/// declarations need no such hint.
fn check_name(
    job: &JobResponse,
    name: &str,
    binding: Option<&str>,
) -> Result<(), DeclarationError> {
    let named = || match binding {
        Some(granted_by) => format!("{name} (granted by {granted_by})"),
        None => name.to_owned(),
    };
    if let Some(reason) = crate::protocol::reserved_name(name) {
        return Err(DeclarationError::Invalid {
            name: named(),
            reason,
        });
    }
    let native = job.secrets.as_ref().is_some_and(|s| s.contains_key(name));
    if job.has_variable(name) || native {
        return Err(DeclarationError::Collision { name: named() });
    }
    Ok(())
}

/// The variables set next to the job's Vault token must survive the job script's `export` lines:
/// a CI/CD variable of the same name may only repeat the value (a group-wide `VAULT_ADDR` for the
/// same server is common and harmless), never replace the token.
fn check_token_companions(job: &JobResponse, plan: &SecretPlan) -> Result<(), PlanError> {
    let Some(token) = plan.token_secret() else {
        return Ok(());
    };
    let login = &plan.logins[plan.requests[token.request].login];
    let companions = token_companions(
        &token.declaration.name,
        &login.server,
        login.namespace.as_deref(),
    );
    for (variable, value) in companions {
        let native = job
            .secrets
            .as_ref()
            .is_some_and(|s| s.contains_key(variable));
        let existing = job.variable(variable);
        if !native && existing.is_none() {
            continue;
        }
        let same = !native
            && existing.is_some_and(|existing| match &value {
                CompanionValue::Token => false,
                CompanionValue::Plain(ours) => {
                    let theirs = existing.value.expose_secret();
                    match variable {
                        "VAULT_ADDR" | "BAO_ADDR" => address_key(theirs) == address_key(ours),
                        "VAULT_NAMESPACE" | "BAO_NAMESPACE" => {
                            theirs.trim_matches('/') == ours.trim_matches('/')
                        }
                        _ => theirs == ours,
                    }
                }
            });
        if !same {
            return Err(companion_variable(token, variable, &value));
        }
    }
    Ok(())
}

fn companion_variable(
    token: &crate::secret_plan::PlannedSecret,
    variable: &str,
    value: &CompanionValue,
) -> PlanError {
    PlanError::CompanionVariable {
        token: token.declaration.name.clone(),
        variable: variable.to_owned(),
        token_itself: *value == CompanionValue::Token,
    }
}

/// Names the job on its Vault token (`display_name` `token-leasehold-job-<id>` and metadata),
/// so that Vault's audit log and token lookups say whose it is.
fn label_token_request(job: &JobResponse, plan: &mut SecretPlan) {
    let Some(token) = plan.token_secret() else {
        return;
    };
    let (request, variable) = (token.request, token.declaration.name.clone());
    let Some(body) = plan.requests[request].source.data.as_mut() else {
        return;
    };
    body.insert(
        "display_name".into(),
        format!("leasehold-job-{}", job.id).into(),
    );
    let mut meta = serde_json::Map::new();
    meta.insert("ci_job_id".into(), job.id.to_string().into());
    meta.insert(
        "ci_project_path".into(),
        job.job_info.project_full_path.clone().into(),
    );
    if let Some(pipeline) = job.plain_variable("CI_PIPELINE_ID") {
        meta.insert("ci_pipeline_id".into(), pipeline.into());
    }
    meta.insert("leasehold_variable".into(), variable.into());
    body.insert("meta".into(), meta.into());
}

/// Whether the job's ref is protected: from the verified `ref_protected` claim with `[gitlab]`,
/// else from the job payload's `git_info.protected`.
pub(crate) fn ref_protection(
    job: &JobResponse,
    config: &Config,
    identity: &Identity,
) -> RefProtection {
    if config.gitlab.is_none() {
        return RefProtection {
            git_ref: job.git_info.git_ref.clone(),
            protected: job.git_info.protected,
            source: "job payload's git_info.protected",
        };
    }
    let source = match identity.source {
        ClaimsSource::Verified(_) => "verified ref_protected claim",
        ClaimsSource::ClaimsFile(_) => "ref_protected claim of the --claims file",
        ClaimsSource::Unverified { .. } => "UNVERIFIED ref_protected claim",
        ClaimsSource::NoToken | ClaimsSource::NotVerified | ClaimsSource::NotNeeded => {
            "job's ID token, which is missing"
        }
    };
    let claims = identity.claims();
    RefProtection {
        git_ref: claims
            .and_then(|c| c.git_ref.clone())
            .unwrap_or_else(|| job.git_info.git_ref.clone()),
        protected: claims
            .and_then(|c| c.ref_protected.as_deref())
            .and_then(|v| match v {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            }),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_issuer::{AUD, TestKey, claims, gitlab_config_text, mock_gitlab};

    fn gitlab_config(server: &wiremock::MockServer, extra: &str) -> Config {
        Config::parse(&gitlab_config_text(server, extra)).expect("valid config")
    }
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    pub(crate) const BINDINGS: &str = r#"
[[bindings]]
name = "deploy-env"
match = { project_path = "grp/*", environment = "dev" }
role = "{project_id}-deploy"
[bindings.secrets.AWS_ACCESS_KEY_ID]
vault = { engine = { name = "generic", path = "aws" }, path = "sts/{project_id}-{environment}", field = "access_key" }
file = false

[[bindings]]
name = "any-env"
match = { project_id = 365 }
[bindings.secrets.APP_CONFIG]
vault = "apps/{project_id}/{environment}/config@kv"
"#;

    fn job(token: Option<&str>, extra_vars: serde_json::Value, protected: bool) -> JobResponse {
        let mut variables = vec![json!({"key": "CI_JOB_ID", "value": "1001", "public": true})];
        if let Some(token) = token {
            variables.push(json!({"key": "VAULT_ID_TOKEN", "value": token, "masked": true}));
        }
        if let serde_json::Value::Array(extra) = extra_vars {
            variables.extend(extra);
        }
        let payload = json!({"id": 1001, "git_info": {"ref": "feature", "protected": protected}, "variables": variables});
        JobResponse::parse(payload.to_string().as_bytes()).expect("payload")
    }

    async fn run(
        config: &Config,
        job: &JobResponse,
        lenient: bool,
    ) -> (Result<Identity, IdentityError>, Option<Planned>) {
        let verifier = config
            .gitlab
            .as_ref()
            .map(|g| Verifier::new(g, &config.audiences, None).expect("verifier"));
        let planner = Planner {
            config,
            verifier: verifier.as_ref(),
            now: NOW,
            lenient,
        };
        let identity = planner.identity(job).await;
        let planned = match &identity {
            Ok(identity) => Some(planner.plan(job, identity).await),
            Err(_) => None,
        };
        (identity, planned)
    }

    fn api_paths(planned: &Planned) -> Vec<(String, String, String)> {
        planned
            .plan
            .secrets
            .iter()
            .map(|s| {
                (
                    s.declaration.name.clone(),
                    s.declaration.source.api_path(),
                    s.declared_by.to_string(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn binding_grants_without_any_declaration() {
        let server = mock_gitlab().await;
        let config = gitlab_config(&server, BINDINGS);
        let token = TestKey::shared(0).sign(&claims(NOW, json!({})));
        let (identity, planned) = run(&config, &job(Some(&token), json!([]), true), false).await;
        assert!(matches!(
            identity.expect("verified").source,
            ClaimsSource::Verified(_)
        ));
        let planned = planned.expect("planned");
        assert!(planned.error.is_none(), "{:?}", planned.error);
        assert_eq!(
            api_paths(&planned),
            [
                (
                    "AWS_ACCESS_KEY_ID".into(),
                    "aws/sts/365-dev".into(),
                    "binding deploy-env".into()
                ),
                (
                    "APP_CONFIG".into(),
                    "kv/data/apps/365/dev".into(),
                    "binding any-env".into()
                ),
            ]
        );
        assert_eq!(planned.plan.logins.len(), 2, "two roles, two logins");
        assert_eq!(planned.plan.logins[0].role.as_deref(), Some("365-deploy"));
        assert_eq!(planned.plan.logins[0].token_variable, "VAULT_ID_TOKEN");
    }

    #[tokio::test]
    async fn prod_without_a_rule_gets_nothing_from_that_rule() {
        let server = mock_gitlab().await;
        let config = gitlab_config(&server, BINDINGS);
        let token = TestKey::shared(0).sign(&claims(
            NOW,
            json!({"environment": "prod", "project_id": "999"}),
        ));
        let (_, planned) = run(&config, &job(Some(&token), json!([]), true), false).await;
        let planned = planned.expect("planned");
        assert!(planned.error.is_none());
        assert!(planned.plan.is_empty());
        assert_eq!(planned.rules.iter().filter(|r| r.matched()).count(), 0);
    }

    #[tokio::test]
    async fn dot_dot_in_a_claim_cannot_reach_another_path() {
        let server = mock_gitlab().await;
        let config = gitlab_config(&server, BINDINGS);
        let token = TestKey::shared(0).sign(&claims(NOW, json!({"environment": "../x"})));
        let (_, planned) = run(&config, &job(Some(&token), json!([]), true), false).await;
        let planned = planned.expect("planned");
        let err = planned.error.expect("refused").to_string();
        assert!(
            err.contains("binding any-env matches this job but cannot be applied"),
            "{err}"
        );
        assert!(
            err.contains("claim environment = \"../x\" contains '/'"),
            "{err}"
        );
        assert!(
            planned
                .plan
                .secrets
                .iter()
                .all(|s| !s.declaration.source.api_path().contains("x"))
        );
    }

    #[tokio::test]
    async fn binding_and_declaration_granting_one_name_is_an_error() {
        let server = mock_gitlab().await;
        let config = gitlab_config(&server, BINDINGS);
        let token = TestKey::shared(0).sign(&claims(NOW, json!({})));
        let vars = json!([{"key": "LEASEHOLD_SECRETS", "value": "APP_CONFIG:\n  vault: x/y@kv\n"}]);
        let (_, planned) = run(&config, &job(Some(&token), vars, true), false).await;
        let err = planned
            .expect("planned")
            .error
            .expect("duplicate")
            .to_string();
        assert_eq!(
            err,
            "secret APP_CONFIG is granted twice (by binding any-env and by LEASEHOLD_SECRETS); remove one of them"
        );
    }

    #[tokio::test]
    async fn a_secret_named_like_a_runner_leasehold_or_shell_variable_is_refused() {
        let config = Config::parse(&format!("[vault]\naddress = \"{AUD}\"\n")).expect("config");
        for (name, reason) in [
            (
                "BUILD_EXIT_CODE_FILE",
                "one of gitlab-runner's custom-executor variables",
            ),
            (
                "JOB_RESPONSE_FILE",
                "one of gitlab-runner's custom-executor variables",
            ),
            (
                "SYSTEM_FAILURE_EXIT_CODE",
                "one of gitlab-runner's custom-executor variables",
            ),
            (
                "LEASEHOLD_STATE_KEY",
                "names starting with LEASEHOLD_ belong to leasehold",
            ),
            (
                "CUSTOM_ENV_X",
                "names starting with CUSTOM_ENV_ belong to the job data",
            ),
            ("CI_JOB_TOKEN", "GitLab's predefined variables"),
            ("SHELLOPTS", "the shell, the runner or the dynamic loader"),
            ("BASH_ENV", "the shell, the runner or the dynamic loader"),
            ("PATH", "the shell, the runner or the dynamic loader"),
        ] {
            let yaml = format!("{name}:\n  vault: x/y@kv\n");
            let vars = json!([{"key": "LEASEHOLD_SECRETS", "value": yaml}]);
            let (_, planned) = run(&config, &job(None, vars, true), false).await;
            let planned = planned.expect("planned");
            let err = planned.error.expect("refused");
            assert_eq!(
                err.failure_kind(),
                crate::exit::FailureKind::Build,
                "{name}"
            );
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("secret {name}: the name is reserved: ")),
                "{text}"
            );
            assert!(
                text.contains(reason) && text.ends_with("; choose another name"),
                "{text}"
            );
            assert!(planned.plan.is_empty(), "{name}");
        }
    }

    #[tokio::test]
    async fn unprotected_ref_declarations_refused_by_policy() {
        let server = mock_gitlab().await;
        let config = gitlab_config(
            &server,
            "[policy]\njob_declarations = \"protected_refs_only\"\n",
        );
        let vars = json!([{"key": "LEASEHOLD_SECRETS", "value": "A:\n  vault: x/y@kv\n"}]);
        // The payload says protected, but the verified claim says not: the claim wins.
        let token = TestKey::shared(0).sign(&claims(
            NOW,
            json!({"ref": "feature", "ref_protected": "false"}),
        ));
        let (_, planned) = run(&config, &job(Some(&token), vars.clone(), true), false).await;
        let err = planned.expect("planned").error.expect("refused");
        assert_eq!(err.failure_kind(), crate::exit::FailureKind::Build);
        assert!(
            err.to_string().contains(
                "ref \"feature\" is not protected according to the verified ref_protected claim"
            ),
            "{err}"
        );
        let token = TestKey::shared(0).sign(&claims(NOW, json!({"ref_protected": "true"})));
        let (_, planned) = run(&config, &job(Some(&token), vars, false), false).await;
        let planned = planned.expect("planned");
        assert!(planned.error.is_none(), "{:?}", planned.error);
        assert_eq!(planned.plan.secrets.len(), 1);
    }

    /// Plans `yaml` (plus `extra_vars`) without `[gitlab]`.
    async fn plan_plain(yaml: &str, extra_vars: serde_json::Value) -> Planned {
        let config = Config::parse(&format!(
            "[vault]\naddress = \"{AUD}\"\nrole = \"ci\"\n[leases]\nmax_increment_seconds = 600\n"
        ))
        .expect("valid");
        let mut vars = vec![json!({"key": "LEASEHOLD_SECRETS", "value": yaml})];
        if let serde_json::Value::Array(extra) = extra_vars {
            vars.extend(extra);
        }
        let (_, planned) = run(&config, &job(Some("t.t.t"), json!(vars), true), false).await;
        planned.expect("planned")
    }

    const TOKEN: &str = "VAULT_TOKEN:\n  vault: {token: {policies: [app-read]}}\n";

    #[tokio::test]
    async fn a_job_token_is_labelled_with_the_job_and_capped() {
        let planned = plan_plain(TOKEN, json!([{"key": "CI_PIPELINE_ID", "value": "77"}])).await;
        assert!(planned.error.is_none(), "{:?}", planned.error);
        let plan = &planned.plan;
        let token = plan.token_secret().expect("a token");
        let body = plan.requests[token.request]
            .source
            .data
            .as_ref()
            .expect("body");
        assert_eq!(body["display_name"], "leasehold-job-1001");
        assert_eq!(
            body["meta"],
            json!({"ci_job_id": "1001", "ci_project_path": "", "ci_pipeline_id": "77", "leasehold_variable": "VAULT_TOKEN"})
        );
        assert_eq!(body["policies"], json!(["app-read"]));
        assert_eq!(plan.ttl_cap, 600);
    }

    #[tokio::test]
    async fn a_job_gets_one_token_and_its_companions_keep_their_meaning() {
        let second = format!("{TOKEN}OTHER:\n  vault: {{token: {{policies: [x]}}}}\n");
        let err = plan_plain(&second, json!([])).await.error.expect("refused");
        assert_eq!(
            err.to_string(),
            "secret VAULT_TOKEN asks for a second Vault token, but OTHER (from LEASEHOLD_SECRETS) is one already; a job gets one token: ask for one with every policy it needs"
        );
        assert_eq!(err.failure_kind(), crate::exit::FailureKind::Build);
        let clash = format!("{TOKEN}BAO_TOKEN:\n  vault: a/b@kv\n  file: false\n");
        let err = plan_plain(&clash, json!([]))
            .await
            .error
            .expect("refused")
            .to_string();
        assert!(
            err.starts_with("secret BAO_TOKEN (from LEASEHOLD_SECRETS) has a name leasehold sets itself next to the Vault token in VAULT_TOKEN"),
            "{err}"
        );
        // A CI/CD variable naming the same server is harmless; another server, or a token, is not.
        let same = json!([{"key": "VAULT_ADDR", "value": format!("{AUD}/")}]);
        assert!(plan_plain(TOKEN, same).await.error.is_none());
        let other = json!([{"key": "BAO_ADDR", "value": "https://elsewhere.example.com"}]);
        let err = plan_plain(TOKEN, other).await.error.expect("refused");
        assert_eq!(
            err.to_string(),
            "the Vault token in VAULT_TOKEN comes with BAO_ADDR set by leasehold to the token's server, but the job has a CI/CD variable BAO_ADDR with another value, which the job script would export over it; remove the variable"
        );
        let token = json!([{"key": "BAO_TOKEN", "value": "s.mine"}]);
        let err = plan_plain(TOKEN, token).await.error.expect("refused");
        assert_eq!(
            err.to_string(),
            "the Vault token in VAULT_TOKEN comes with BAO_TOKEN set by leasehold, but the job has a CI/CD variable BAO_TOKEN, which the job script would export over it; remove the variable"
        );
        assert!(!err.to_string().contains("s.mine"));
    }

    #[tokio::test]
    async fn without_gitlab_the_payload_decides_protection() {
        let config = Config::parse(&format!(
            "[vault]\naddress = \"{AUD}\"\n[policy]\njob_declarations = \"protected_refs_only\"\nallowed_mounts = [\"kv\"]\n"
        ))
        .expect("valid");
        let vars = json!([{"key": "LEASEHOLD_SECRETS", "value": "A:\n  vault: x/y@kv\n"}]);
        let (identity, planned) = run(
            &config,
            &job(Some("not.verified.here"), vars.clone(), false),
            false,
        )
        .await;
        assert!(matches!(
            identity.expect("ok").source,
            ClaimsSource::NotVerified
        ));
        let err = planned
            .expect("planned")
            .error
            .expect("refused")
            .to_string();
        assert!(err.contains("job payload's git_info.protected"), "{err}");
        let (_, planned) = run(&config, &job(Some("not.verified.here"), vars, true), false).await;
        assert!(planned.expect("planned").error.is_none());
        let vars = json!([{"key": "LEASEHOLD_SECRETS", "value": "A:\n  vault: x/y@other\n"}]);
        let (_, planned) = run(&config, &job(Some("t.t.t"), vars, true), false).await;
        assert!(
            planned
                .expect("planned")
                .error
                .expect("mount")
                .to_string()
                .contains("allowed_mounts")
        );
    }

    #[tokio::test]
    async fn auth_path_and_namespace_are_checked_before_any_token_goes_out() {
        let config = Config::parse(&format!(
            "[vault]\naddress = \"{AUD}\"\n[policy]\nallowed_auth_mounts = [\"gitlab-*\"]\n"
        ))
        .expect("valid");
        let declare = json!({"key": "LEASEHOLD_SECRETS", "value": "A:\n  vault: x/y@kv\n"});
        let cases = [
            (
                "VAULT_AUTH_PATH",
                "../../../other-app/api",
                "VAULT_AUTH_PATH \"../../../other-app/api\" has a \".\" or \"..\" segment, which URL parsers resolve, so the request would leave the place it belongs to; write it without such segments; set it to the path the JWT auth method is mounted at, like jwt, or remove it to log in at the runner's \"jwt\"",
            ),
            (
                "VAULT_AUTH_PATH",
                "jwt?x=",
                "VAULT_AUTH_PATH \"jwt?x=\" contains '?'",
            ),
            (
                "VAULT_AUTH_PATH",
                "..\\x",
                "VAULT_AUTH_PATH \"..\\\\x\" contains '\\'",
            ),
            (
                "VAULT_AUTH_PATH",
                "other",
                "VAULT_AUTH_PATH \"other\" is not an auth mount this runner lets jobs log in at",
            ),
            (
                "VAULT_NAMESPACE",
                "../../x",
                "VAULT_NAMESPACE \"../../x\" has a \".\" or \"..\" segment",
            ),
            (
                "VAULT_NAMESPACE",
                "a\r\nb",
                "VAULT_NAMESPACE \"a\\r\\nb\" contains the control or invisible character U+000D",
            ),
        ];
        for (variable, value, message) in cases {
            let vars = json!([declare, {"key": variable, "value": value}]);
            let (_, planned) = run(&config, &job(Some("t.t.t"), vars, true), false).await;
            let planned = planned.expect("planned");
            let err = planned.error.expect("refused");
            assert_eq!(
                err.failure_kind(),
                crate::exit::FailureKind::Build,
                "{value}"
            );
            assert!(err.to_string().starts_with(message), "{value}: {err}");
            assert!(planned.plan.logins.is_empty(), "{value}: no login planned");
        }
        for (variable, value, expected) in [
            ("VAULT_AUTH_PATH", "/gitlab-ci/", "gitlab-ci"),
            ("VAULT_AUTH_PATH", "jwt", "jwt"),
        ] {
            let vars = json!([declare, {"key": variable, "value": value}]);
            let (_, planned) = run(&config, &job(Some("t.t.t"), vars, true), false).await;
            let planned = planned.expect("planned");
            assert!(planned.error.is_none(), "{value}: {:?}", planned.error);
            assert_eq!(planned.plan.logins[0].auth_mount, expected);
        }
    }

    #[tokio::test]
    async fn no_token_no_declarations_means_nothing_and_no_error() {
        let server = mock_gitlab().await;
        let config = gitlab_config(&server, BINDINGS);
        let (identity, planned) = run(&config, &job(None, json!([]), true), false).await;
        assert!(matches!(
            identity.expect("ok").source,
            ClaimsSource::NoToken
        ));
        let planned = planned.expect("planned");
        assert!(planned.error.is_none());
        assert!(planned.plan.is_empty());
        assert!(
            planned
                .bindings_note
                .expect("note")
                .contains("no ID token in $VAULT_ID_TOKEN")
        );
    }

    #[tokio::test]
    async fn declarations_without_a_token_get_the_missing_token_message() {
        let server = mock_gitlab().await;
        let config = gitlab_config(&server, "");
        let vars = json!([{"key": "LEASEHOLD_SECRETS", "value": "DB:\n  vault: x/y@kv\n"}]);
        let (_, planned) = run(&config, &job(None, vars, true), false).await;
        let err = planned
            .expect("planned")
            .error
            .expect("missing")
            .to_string();
        assert_eq!(
            err,
            "the job has no ID token in $VAULT_ID_TOKEN; add to the job:  id_tokens: { VAULT_ID_TOKEN: { aud: \"https://vault.example.com\" } }  (it is needed for secret DB)"
        );
    }

    #[tokio::test]
    async fn a_bad_token_stops_prepare_before_anything_else() {
        let server = mock_gitlab().await;
        let config = gitlab_config(&server, BINDINGS);
        let forged = TestKey::shared(1).sign_as("key-1", &claims(NOW, json!({})));
        let (identity, _) = run(&config, &job(Some(&forged), json!([]), true), false).await;
        assert!(matches!(identity, Err(IdentityError::BadSignature { .. })));
        // plan (lenient) explains with the unverified claims, marked.
        let (identity, planned) = run(&config, &job(Some(&forged), json!([]), true), true).await;
        let identity = identity.expect("lenient");
        assert!(matches!(identity.source, ClaimsSource::Unverified { .. }));
        assert_eq!(planned.expect("planned").plan.secrets.len(), 2);
    }

    #[tokio::test]
    async fn a_job_that_needs_nothing_is_not_verified() {
        let server = mock_gitlab().await;
        let plain = gitlab_config(&server, "");
        let expired = TestKey::shared(0).sign(&claims(NOW - 7200, json!({})));
        let (identity, planned) = run(&plain, &job(Some(&expired), json!([]), true), false).await;
        assert!(matches!(
            identity.expect("not verified").source,
            ClaimsSource::NotNeeded
        ));
        let planned = planned.expect("planned");
        assert!(planned.error.is_none() && planned.plan.is_empty());
        // With a binding configured, the same token is verified (and refused).
        let with_bindings = gitlab_config(&server, BINDINGS);
        let (identity, _) = run(&with_bindings, &job(Some(&expired), json!([]), true), false).await;
        assert!(matches!(identity, Err(IdentityError::Expired { .. })));
    }

    #[tokio::test]
    async fn legacy_token_variables_only_when_allowed() {
        let server = mock_gitlab().await;
        let legacy = TestKey::shared(0).sign(&claims(
            NOW,
            json!({"aud": null, "iss": "gitlab.example.com"}),
        ));
        let vars = json!([{"key": "CI_JOB_JWT", "value": legacy, "masked": true},
                          {"key": "LEASEHOLD_SECRETS", "value": "A:\n  vault: x/y@kv\n"}]);
        let config_off = gitlab_config(&server, "issuer_forms = \"both\"");
        let (identity, planned) = run(&config_off, &job(None, vars.clone(), true), false).await;
        assert!(matches!(
            identity.expect("ok").source,
            ClaimsSource::NoToken
        ));
        assert!(
            planned
                .expect("planned")
                .error
                .expect("missing")
                .to_string()
                .contains("$VAULT_ID_TOKEN")
        );
        let config_on = gitlab_config(
            &server,
            "issuer_forms = \"both\"\nallow_legacy_token_variables = true",
        );
        let (identity, planned) = run(&config_on, &job(None, vars, true), false).await;
        assert_eq!(
            identity.expect("ok").token_variable.as_deref(),
            Some("CI_JOB_JWT")
        );
        let planned = planned.expect("planned");
        assert!(planned.error.is_none(), "{:?}", planned.error);
        assert_eq!(planned.plan.logins[0].token_variable, "CI_JOB_JWT");
    }

    #[tokio::test]
    async fn per_declaration_tokens_are_verified_too() {
        let server = mock_gitlab().await;
        let config = gitlab_config(&server, "");
        let good = TestKey::shared(0).sign(&claims(NOW, json!({})));
        let wrong_aud = TestKey::shared(0).sign(&claims(NOW, json!({"aud": "elsewhere"})));
        let vars = json!([{"key": "OTHER_TOKEN", "value": wrong_aud, "masked": true},
                          {"key": "LEASEHOLD_SECRETS", "value": "A:\n  vault: x/y@kv\n  token: $OTHER_TOKEN\n"}]);
        let (_, planned) = run(&config, &job(Some(&good), vars, true), false).await;
        let err = planned
            .expect("planned")
            .error
            .expect("refused")
            .to_string();
        assert!(
            err.contains("the ID token in $OTHER_TOKEN has aud \"elsewhere\""),
            "{err}"
        );
    }

    #[tokio::test]
    async fn binding_secret_may_not_shadow_a_job_variable() {
        let server = mock_gitlab().await;
        let config = gitlab_config(&server, BINDINGS);
        let token = TestKey::shared(0).sign(&claims(NOW, json!({})));
        let vars = json!([{"key": "APP_CONFIG", "value": "x"}]);
        let (_, planned) = run(&config, &job(Some(&token), vars, true), false).await;
        let err = planned
            .expect("planned")
            .error
            .expect("collision")
            .to_string();
        assert!(
            err.contains("APP_CONFIG (granted by binding any-env)"),
            "{err}"
        );
    }
}
