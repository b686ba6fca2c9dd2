//! `leasehold plan`: what would this job get, and why?
//!
//! The first thing an admin should reach for when a job did not get a secret, or got one it
//! should not have. It runs prepare's own planning ([`crate::planning`]) on a saved job payload
//! (`--job response.json`) or on a claim set (`--claims claims.json`), and prints, without reading
//! any secret or calling Vault: the identity and whether it verified, every binding rule with each
//! match key that held or failed, what the policy did with the job's own declarations, and each
//! secret with its grant, server, namespace, the login and the request exactly as the client
//! would send them (method and percent-encoded path, built by the client's own URL builder),
//! role, engine, field, delivery and stages. Exit status: 0 if prepare would plan successfully,
//! 1 if it would fail.
//!
//! A payload saved from a finished job usually holds an expired token. plan then still explains,
//! from the claims read without verification, under a loud marker, and exits 1.

use std::fmt::Write as _;
use std::path::Path;

use crate::api_path::{Shown, jwt_login_path};
use crate::cli::Cli;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::identity::jwks::JWKS_PATH;
use crate::identity::{Claims, IdentityError, Verifier, utc};
use crate::job_response::JobResponse;
use crate::joblog;
use crate::planning::{ClaimsSource, Identity, Planned, Planner};
use crate::private_fs::check_private_dir;
use crate::secret_plan::{PlannedSecret, SecretPlan};
use crate::state::unix_now;

pub(crate) async fn run(cli: &Cli, job: Option<&Path>, claims: Option<&Path>) -> Result<Outcome> {
    let config_path = Config::locate(cli.config.as_deref());
    let config = Config::load(&config_path)?;
    let input = match (job, claims) {
        (Some(job), _) => Input::Job(job),
        (None, Some(claims)) => Input::Claims(claims),
        (None, None) => return Ok(Outcome::Usage),
    };
    let (text, problems) = report(&config, &config_path, input, unix_now()).await?;
    joblog::stdout(&text)
        .map_err(|source| Error::io("write the plan to", "standard output", source))?;
    Ok(Outcome::Findings { problems })
}

/// What `plan` explains.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input<'a> {
    /// A job payload.
    Job(&'a Path),
    /// A claim set.
    Claims(&'a Path),
}

/// Builds the report and whether prepare would fail (1) or not (0).
pub(crate) async fn report(
    config: &Config,
    config_path: &Path,
    input: Input<'_>,
    now: u64,
) -> Result<(String, usize)> {
    let mut notes = Vec::new();
    let verifier = match (&config.gitlab, input) {
        (Some(gitlab), Input::Job(_)) => {
            // Use the JWKS cache only if it already exists and is ours: plan must never create
            // it (as root, say) and so make it unusable for prepare.
            let dir = gitlab.jwks_cache_dir(&config.state_dir);
            let cache = if !dir.exists() {
                notes.push(format!(
                    "the JWKS cache {} does not exist yet, so GitLab's keys were fetched directly",
                    dir.display()
                ));
                None
            } else if let Err(e) = check_private_dir(&dir) {
                notes.push(format!(
                    "the JWKS cache was not used ({e}), so GitLab's keys were fetched directly"
                ));
                None
            } else {
                Some(dir)
            };
            Some(Verifier::new(gitlab, &config.audiences, cache)?)
        }
        // --claims: nothing to verify, so no GitLab client either.
        _ => None,
    };
    let planner = Planner {
        config,
        verifier: verifier.as_ref(),
        now,
        lenient: true,
    };
    let (job, header, identity) = match input {
        Input::Job(path) => {
            let job = JobResponse::read(path)?;
            let header = format!(
                "leasehold plan for job {} ({}, ref {}) from {}",
                job.id,
                if job.job_info.project_full_path.is_empty() {
                    "project ?"
                } else {
                    &job.job_info.project_full_path
                },
                if job.git_info.git_ref.is_empty() {
                    "?"
                } else {
                    &job.git_info.git_ref
                },
                path.display()
            );
            let identity = planner.identity(&job).await;
            (job, header, identity)
        }
        Input::Claims(path) => {
            let claims = read_claims(path)?;
            let job = JobResponse::parse(b"{}").map_err(|detail| Error::Io {
                action: "build an empty job for",
                path: path.to_owned(),
                source: std::io::Error::other(detail),
            })?;
            let header = format!("leasehold plan for the claims in {}", path.display());
            (job, header, Ok(Identity::from_claims_file(claims, config)))
        }
    };
    let planned = match &identity {
        Ok(identity) => Some(planner.plan(&job, identity).await),
        Err(_) => None,
    };
    Ok(render(
        config,
        config_path,
        &header,
        &identity,
        planned.as_ref(),
        &notes,
        now,
    ))
}

fn read_claims(path: &Path) -> Result<Claims> {
    let text = std::fs::read(path).map_err(|source| Error::Io {
        action: "read the claims file",
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|e| Error::Io {
        action: "parse the claims file (a JSON object of ID-token claims)",
        path: path.to_owned(),
        source: std::io::Error::other(format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        )),
    })
}

const CLAIM_ROWS: &[&[&str]] = &[
    &[
        "project_id",
        "project_path",
        "namespace_id",
        "namespace_path",
    ],
    &["ref", "ref_type", "ref_protected"],
    &["environment", "environment_protected"],
    &["pipeline_source", "user_login", "job_id"],
];

/// Renders the report; returns it and whether prepare would fail (1) or not (0).
fn render(
    config: &Config,
    config_path: &Path,
    header: &str,
    identity: &Result<Identity, IdentityError>,
    planned: Option<&Planned>,
    notes: &[String],
    now: u64,
) -> (String, usize) {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_owned());
    line(format!(
        "config {}; nothing was read from Vault: this is what prepare would request",
        config_path.display()
    ));
    line(String::new());

    // Identity.
    line("IDENTITY".into());
    let mut failure: Option<String> = None;
    match identity {
        Err(error) => {
            line(format!("  token     ${}", config.job.id_token_variable));
            line(format!("  verified  could not be checked: {error}"));
            failure = Some(error.to_string());
        }
        Ok(identity) => {
            let variable = identity
                .token_variable
                .as_deref()
                .unwrap_or(&config.job.id_token_variable);
            match &identity.source {
                ClaimsSource::NoToken => {
                    line(format!(
                        "  token     none: the job has no ${variable}{}",
                        legacy_hint(config)
                    ));
                }
                ClaimsSource::NotNeeded => {
                    line(format!("  token     ${variable}"));
                    line(
                        "  verified  not needed: no binding is configured and the job declares no secrets, so prepare leaves the token alone"
                            .into(),
                    );
                }
                ClaimsSource::NotVerified => {
                    line(format!("  token     ${variable}"));
                    line(
                        "  verified  not locally: [gitlab] is not configured, so Vault's JWT auth is the only verifier and bindings are off"
                            .into(),
                    );
                }
                ClaimsSource::Verified(v) => {
                    line(format!("  token     ${variable}"));
                    line(format!(
                        "  verified  yes: RS256 signature by GitLab key {:?} ({}), iss, aud, exp, nbf, iat",
                        v.kid(),
                        v.jwks_url()
                    ));
                }
                ClaimsSource::ClaimsFile(_) => {
                    line(format!("  token     ${variable} (assumed)"));
                    line("  verified  not checked: the claims come from --claims and are taken as if verified".into());
                }
                ClaimsSource::Unverified { error, .. } => {
                    line(format!("  token     ${variable}"));
                    line(format!("  verified  NO: {error}"));
                    line("  !!!!!!!!  THE CLAIMS BELOW ARE UNVERIFIED. They are shown to explain the job; prepare would stop at the error above.".into());
                    failure = Some(error.clone());
                }
            }
            if let Some(claims) = identity.claims() {
                for (i, row) in claim_rows(claims, now).into_iter().enumerate() {
                    line(format!(
                        "  {}  {row}",
                        if i == 0 { "claims  " } else { "        " }
                    ));
                }
            }
        }
    }
    line(String::new());

    let Some(planned) = planned else {
        line(format!(
            "RESULT  prepare would FAIL: {}",
            failure.unwrap_or_default()
        ));
        return (out, 1);
    };

    // Bindings.
    if let Some(note) = &planned.bindings_note {
        line(format!("BINDINGS  {note}"));
    } else {
        let unverified = matches!(
            identity,
            Ok(Identity {
                source: ClaimsSource::Unverified { .. },
                ..
            })
        );
        line(format!(
            "BINDINGS  ({} rule{} in config order; every matching rule applies{})",
            planned.rules.len(),
            if planned.rules.len() == 1 { "" } else { "s" },
            if unverified {
                "; evaluated on the UNVERIFIED claims above"
            } else {
                ""
            }
        ));
        let failed_binding = match &planned.error {
            Some(Error::Binding(e)) => Some(e.binding()),
            _ => None,
        };
        for rule in &planned.rules {
            let verdict = match (rule.matched(), failed_binding == Some(rule.name.as_str())) {
                (true, true) => "MATCH, but cannot be applied (see RESULT)",
                (true, false) => "MATCH",
                (false, _) => "no match",
            };
            line(format!("  [{}] {:<24} {verdict}", rule.index, rule.name));
            if rule.checks.is_empty() {
                line("        (no match keys: applies to every verified token)".into());
            }
            for check in &rule.checks {
                line(format!(
                    "        {} {}",
                    if check.ok { "ok  " } else { "FAIL" },
                    check.describe()
                ));
            }
        }
    }
    line(String::new());

    // The job's own declarations.
    line(format!(
        "JOB DECLARATIONS  ({})",
        config.job.secrets_variable
    ));
    line(format!(
        "  {}",
        planned
            .declarations_note
            .as_deref()
            .unwrap_or("not evaluated: planning stopped at the error in RESULT")
    ));
    line(String::new());

    // Secrets.
    let plan = &planned.plan;
    line(format!(
        "SECRETS  ({} from {} login{} and {} request{})",
        plan.secrets.len(),
        plan.logins.len(),
        if plan.logins.len() == 1 { "" } else { "s" },
        plan.requests.len(),
        if plan.requests.len() == 1 { "" } else { "s" },
    ));
    if plan.secrets.is_empty() {
        line("  none".into());
    }
    for secret in &plan.secrets {
        for row in secret_rows(plan, secret, &config.vault.jwt_login_path) {
            line(row);
        }
    }
    line(String::new());

    // The cache notes matter only when GitLab's keys were needed.
    let keys_used = matches!(
        identity,
        Ok(Identity {
            source: ClaimsSource::Verified(_) | ClaimsSource::Unverified { .. },
            ..
        })
    );
    let all_notes: Vec<&String> = notes
        .iter()
        .filter(|_| keys_used)
        .chain(&planned.notes)
        .collect();
    if !all_notes.is_empty() {
        line("NOTES".into());
        for note in all_notes {
            line(format!("  - {note}"));
        }
        line(String::new());
    }

    if let Some(error) = &planned.error {
        failure = Some(error.to_string());
    }
    match failure {
        Some(failure) => {
            line(format!("RESULT  prepare would FAIL: {failure}"));
            (out, 1)
        }
        None if plan.is_empty() => {
            line("RESULT  prepare would succeed and give this job no secrets".into());
            (out, 0)
        }
        None => {
            line(format!(
                "RESULT  prepare would succeed: {} login{}, {} request{}",
                plan.logins.len(),
                if plan.logins.len() == 1 { "" } else { "s" },
                plan.requests.len(),
                if plan.requests.len() == 1 { "" } else { "s" },
            ));
            (out, 0)
        }
    }
}

fn legacy_hint(config: &Config) -> String {
    match &config.gitlab {
        Some(g) if g.allow_legacy_token_variables => " (nor CI_JOB_JWT_V2 / CI_JOB_JWT)".into(),
        _ => String::new(),
    }
}

fn claim_rows(claims: &Claims, now: u64) -> Vec<String> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let mut rows = vec![format!(
        "iss={} aud={} exp={}",
        if claims.iss.is_empty() {
            "(none)"
        } else {
            &claims.iss
        },
        if claims.aud.is_empty() {
            "(none)".to_owned()
        } else {
            claims.aud.join(",")
        },
        claims.exp.map_or_else(
            || "(none)".to_owned(),
            |exp| format!(
                "{} ({})",
                utc(exp),
                if exp >= now {
                    format!("in {}s", exp - now)
                } else {
                    format!("{}s ago", now - exp)
                }
            )
        ),
    )];
    for row in CLAIM_ROWS {
        rows.push(
            row.iter()
                .map(|k| format!("{k}={}", claims.get(k).unwrap_or("(none)")))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    rows
}

fn secret_rows(plan: &SecretPlan, secret: &PlannedSecret, login_endpoint: &str) -> Vec<String> {
    let request = &plan.requests[secret.request];
    let login = &plan.logins[request.login];
    let source = &request.source;
    let declared = &secret.declaration;
    let shared: Vec<&str> = plan
        .secrets
        .iter()
        .filter(|s| s.request == secret.request && s.declaration.name != declared.name)
        .map(|s| s.declaration.name.as_str())
        .collect();
    // Exactly what the client sends: the same path functions, the same URL builder.
    let (method, path) = match source.data {
        Some(_) => ("POST", source.api_path()),
        None => ("GET", source.api_path()),
    };
    let shown = |method, path: &str| {
        Shown::new(method, &login.server.address, path)
            .map_or_else(|e| format!("REFUSED: {e}"), |s| s.to_string())
    };
    let mut request_text = match &declared.vault_token {
        Some(token) => format!(
            "{}  (a child token of this login; policies {}{}",
            shown(method, &path),
            token.policies.join(", "),
            if token.no_default_policy {
                ", no default policy"
            } else {
                " and default"
            }
        ),
        None => format!(
            "{}  ({}, engine {}, mount {}",
            shown(method, &path),
            if source.data.is_some() {
                "write"
            } else {
                "read"
            },
            source.engine,
            source.mount
        ),
    };
    if let (Some(data), None) = (&source.data, &declared.vault_token) {
        let _ = write!(
            request_text,
            "; data keys: {}",
            data.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(ttl) = source.ttl {
        let _ = write!(
            request_text,
            "; ttl {}",
            crate::resolution::describe_ttl(ttl.as_secs())
        );
    }
    if !shared.is_empty() {
        let _ = write!(
            request_text,
            "; shared with {}: one request, one lease",
            shared.join(", ")
        );
    }
    request_text.push(')');
    vec![
        format!("  {}", declared.name),
        format!("    granted by  {}", secret.declared_by),
        format!(
            "    server      {}  (namespace: {})",
            login.server.address,
            login.namespace.as_deref().unwrap_or("none")
        ),
        format!(
            "    login       {}  role {}  token ${}",
            shown("POST", &jwt_login_path(&login.auth_mount, login_endpoint)),
            login
                .role
                .as_deref()
                .unwrap_or("(the mount's default role)"),
            login.token_variable
        ),
        format!("    request     {request_text}"),
        format!("    field       {}", declared.source.field),
        format!(
            "    delivery    {}, in stages {}",
            if declared.vault_token.is_some() {
                "environment variable, with VAULT_TOKEN, BAO_TOKEN, VAULT_ADDR, BAO_ADDR (and the namespace and CA bundle, when set)"
            } else if declared.file {
                "file (the variable holds the path of a 0600 file)"
            } else {
                "environment variable"
            },
            secret.stages.join(" ")
        ),
    ]
}

/// The JWKS path `check` expects in Vault's auth config.
pub(crate) fn expected_jwks_url(config: &Config) -> Option<String> {
    config
        .gitlab
        .as_ref()
        .map(|g| format!("{}{JWKS_PATH}", g.base_url()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_issuer::{AUD, ISSUER, TestKey, claims, mock_gitlab};
    use serde_json::json;
    use wiremock::MockServer;

    const NOW: u64 = 1_800_000_000;

    const CONFIG: &str = r#"
[policy]
job_declarations = "protected_refs_only"

[[bindings]]
name = "deploy-env"
match = { project_path = "grp/*", environment = "dev" }
role = "{project_id}-deploy"
[bindings.secrets.AWS_ACCESS_KEY_ID]
vault = { engine = { name = "generic", path = "aws" }, path = "sts/{project_id}-{environment}", field = "access_key" }
file = false
[bindings.secrets.AWS_SECRET_ACCESS_KEY]
vault = { engine = { name = "generic", path = "aws" }, path = "sts/{project_id}-{environment}", field = "secret_key" }
file = false

[[bindings]]
name = "prod-db"
match = { project_id = 365, environment = "prod", ref_protected = true }
[bindings.secrets.DB_PASSWORD]
vault = "db/{environment}/password@kv"

[[bindings]]
name = "review-apps"
match = { namespace_path = "grp", pipeline_source = "merge_request_event" }
[bindings.secrets.REVIEW_DB_URL]
vault = "review/{environment}/url@kv"
"#;

    struct Fixture {
        server: MockServer,
        dir: tempfile::TempDir,
        config: Config,
    }

    impl Fixture {
        async fn new() -> Fixture {
            let server = mock_gitlab().await;
            let dir = tempfile::tempdir().expect("tempdir");
            let config = Config::parse(&format!(
                "state_dir = \"{}\"\n[vault]\naddress = \"{AUD}\"\n[gitlab]\nurl = \"{}\"\nissuer = \"{ISSUER}\"\n{CONFIG}",
                dir.path().join("state").display(),
                server.uri()
            ))
            .expect("valid config");
            Fixture {
                server,
                dir,
                config,
            }
        }

        fn write(&self, name: &str, value: &serde_json::Value) -> std::path::PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, value.to_string()).expect("write");
            path
        }

        fn job(
            &self,
            token_claims: Option<serde_json::Value>,
            declarations: Option<&str>,
        ) -> std::path::PathBuf {
            let mut variables = vec![json!({"key": "CI_JOB_ID", "value": "1001", "public": true})];
            if let Some(c) = token_claims {
                variables.push(json!({"key": "VAULT_ID_TOKEN", "value": TestKey::shared(0).sign(&c), "masked": true}));
            }
            if let Some(d) = declarations {
                variables.push(json!({"key": "LEASEHOLD_SECRETS", "value": d}));
            }
            self.write(
                "response.json",
                &json!({"id": 1001, "job_info": {"project_full_path": "grp/app"}, "git_info": {"ref": "main", "protected": true}, "variables": variables}),
            )
        }

        async fn plan(&self, input: Input<'_>) -> (String, usize) {
            report(
                &self.config,
                Path::new("/etc/leasehold/config.toml"),
                input,
                NOW,
            )
            .await
            .expect("report")
        }

        fn settings(&self) -> insta::Settings {
            let mut settings = insta::Settings::clone_current();
            settings.add_filter(
                &regex_escape(&self.server.uri()),
                "https://gitlab.example.com",
            );
            settings.add_filter(
                &regex_escape(&self.dir.path().display().to_string()),
                "[TMP]",
            );
            settings.set_prepend_module_to_snapshot(false);
            settings
        }
    }

    fn regex_escape(text: &str) -> String {
        text.chars().fold(String::new(), |mut out, c| {
            if !c.is_ascii_alphanumeric() {
                out.push('\\');
            }
            out.push(c);
            out
        })
    }

    #[tokio::test]
    async fn plan_job_with_binding_and_declaration() {
        let fx = Fixture::new().await;
        let job = fx.job(
            Some(claims(NOW, json!({}))),
            Some("NPM_TOKEN:\n  vault: ci/npm/token@kv\n  stages: [build_script]\n"),
        );
        let (text, code) = fx.plan(Input::Job(&job)).await;
        assert_eq!(code, 0, "{text}");
        fx.settings()
            .bind(|| insta::assert_snapshot!("plan_job_with_binding_and_declaration", text));
    }

    #[tokio::test]
    async fn plan_claims_prod_without_matching_rule() {
        let fx = Fixture::new().await;
        let claims_file = fx.write(
            "claims.json",
            &claims(
                NOW,
                json!({"environment": "prod", "ref_protected": "false"}),
            ),
        );
        let (text, code) = fx.plan(Input::Claims(&claims_file)).await;
        assert_eq!(code, 0, "{text}");
        assert!(
            text.contains("SECRETS  (0 from 0 logins and 0 requests)"),
            "{text}"
        );
        fx.settings()
            .bind(|| insta::assert_snapshot!("plan_claims_prod_without_matching_rule", text));
    }

    #[tokio::test]
    async fn plan_expired_token_marks_claims_unverified() {
        let fx = Fixture::new().await;
        let job = fx.job(Some(claims(NOW - 3600, json!({}))), None);
        let (text, code) = fx.plan(Input::Job(&job)).await;
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("THE CLAIMS BELOW ARE UNVERIFIED"), "{text}");
        fx.settings()
            .bind(|| insta::assert_snapshot!("plan_expired_token_marks_claims_unverified", text));
    }

    #[tokio::test]
    async fn plan_policy_refuses_declarations_on_unprotected_ref() {
        let fx = Fixture::new().await;
        let job = fx.job(
            Some(claims(
                NOW,
                json!({"ref": "feature", "ref_protected": "false"}),
            )),
            Some("NPM_TOKEN:\n  vault: ci/npm/token@kv\n"),
        );
        let (text, code) = fx.plan(Input::Job(&job)).await;
        assert_eq!(code, 1, "{text}");
        fx.settings().bind(|| {
            insta::assert_snapshot!("plan_policy_refuses_declarations_on_unprotected_ref", text)
        });
    }

    #[tokio::test]
    async fn plan_claim_with_dot_dot_is_refused() {
        let fx = Fixture::new().await;
        let claims_file = fx.write("claims.json", &claims(NOW, json!({"environment": "review/../../prod", "pipeline_source": "merge_request_event"})));
        let (text, code) = fx.plan(Input::Claims(&claims_file)).await;
        assert_eq!(code, 1, "{text}");
        fx.settings()
            .bind(|| insta::assert_snapshot!("plan_claim_with_dot_dot_is_refused", text));
    }

    #[tokio::test]
    async fn plan_job_without_token() {
        let fx = Fixture::new().await;
        let job = fx.job(None, None);
        let (text, code) = fx.plan(Input::Job(&job)).await;
        assert_eq!(code, 0, "{text}");
        fx.settings()
            .bind(|| insta::assert_snapshot!("plan_job_without_token", text));
    }

    #[tokio::test]
    async fn plan_shows_a_jobs_own_token() {
        let fx = Fixture::new().await;
        let job = fx.job(
            Some(claims(NOW, json!({}))),
            Some("VAULT_TOKEN:\n  vault: {token: {policies: [app-read, pki-issue], ttl: 15m}}\n"),
        );
        let (text, code) = fx.plan(Input::Job(&job)).await;
        assert_eq!(code, 0, "{text}");
        for wanted in [
            "    request     POST /v1/auth/token/create  (a child token of this login; policies app-read, pki-issue and default; ttl 15m)",
            "    field       client_token",
            "    delivery    environment variable, with VAULT_TOKEN, BAO_TOKEN, VAULT_ADDR, BAO_ADDR (and the namespace and CA bundle, when set), in stages build_script step_* after_script",
        ] {
            assert!(text.contains(wanted), "{wanted}\n{text}");
        }
    }

    #[tokio::test]
    async fn plan_never_prints_the_token() {
        let fx = Fixture::new().await;
        for c in [
            claims(NOW, json!({})),
            claims(NOW - 3600, json!({})),
            claims(NOW, json!({"aud": "x"})),
        ] {
            let token = TestKey::shared(0).sign(&c);
            let job = fx.job(Some(c), Some("A:\n  vault: a/b@kv\n"));
            let (text, _) = fx.plan(Input::Job(&job)).await;
            for part in token.split('.') {
                assert!(
                    !text.contains(part),
                    "plan output contains part of the token:\n{text}"
                );
            }
        }
    }
}
