//! From declarations to values: one login per identity, one request per credential.
//!
//! gitlab-runner logs in and reads once per *field*, so two fields of one database credential
//! come from two leases and don't match. leasehold plans first: secrets are grouped by the login
//! they need (server, namespace, auth mount, role, ID-token variable) and by the request that
//! yields them (login, engine, mount, path, request body). Each login and each request happens
//! exactly once, requests concurrently, and every field is taken from its one response.
//!
//! Execution records every token and lease in a [`Sealed`] the moment it exists, so a
//! failure halfway can still revoke what was obtained.

use std::time::Duration;

use futures_util::future::join_all;
use secrecy::SecretString;

use crate::config::Config;
use crate::declarations::{Engine, SecretSource, TOKEN_FIELD};
use crate::exit::FailureKind;
use crate::identity::{Claims, peek_claims};
use crate::secret_plan::{CompanionValue, LoginPlan, SecretPlan, token_companions};
use crate::state::{Lease, Sealed, Session, StoredSecret, unix_now};
use crate::vault::{AuthInfo, SecretEnvelope, SecretFields, VaultClient, VaultError, printable};

/// Hooks prepare uses to journal progress as it happens.
pub(crate) trait Progress {
    /// Called after every login with the sessions obtained so far.
    fn logged_in(&mut self, state: &Sealed);
}

/// What execution produced besides the sealed state: which lease each request created, so that
/// the job log can name a secret's lease without matching strings.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    /// Per request of the plan: the index of its lease in [`Sealed::leases`], if it has one.
    pub lease_of_request: Vec<Option<usize>>,
}

/// Executes the plan: logins first (concurrently), then every request concurrently. Tokens and
/// leases are pushed into `state` as soon as they exist, and the secrets in plan order; on
/// error, `state` holds what must be revoked.
pub(crate) async fn execute(
    plan: &SecretPlan,
    config: &Config,
    state: &mut Sealed,
    progress: &mut dyn Progress,
) -> Result<Resolved, ResolutionError> {
    let clients = plan
        .logins
        .iter()
        .map(|login| {
            VaultClient::new(&config.server_spec(&login.server, login.namespace.clone()))
                .map(|client| {
                    client
                        .for_job(state.audit.as_ref())
                        .until((state.deadline > 0).then_some(state.deadline))
                })
                .map_err(|source| ResolutionError::Vault {
                    context: format!("configuring the client for {}", login.server.address),
                    source: Box::new(source),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut tokens = Vec::with_capacity(plan.logins.len());
    for login in &plan.logins {
        let Some(token) = login.token.clone() else {
            return Err(ResolutionError::MissingIdToken {
                variable: login.token_variable.clone(),
                audience: login.server.address.clone(),
            });
        };
        tokens.push(token);
    }

    let logins = join_all(plan.logins.iter().zip(&clients).zip(&tokens).map(
        |((login, client), jwt)| async move {
            // Past its exp the ID token is refused: waiting out an election longer is useless.
            let expires = peek_claims(jwt).ok().and_then(|claims| claims.exp);
            client
                .jwt_login(
                    &login.auth_mount,
                    &config.vault.jwt_login_path,
                    login.role.as_deref(),
                    jwt,
                    expires,
                )
                .await
        },
    ))
    .await;
    let now = unix_now();
    let mut first_error = None;
    let mut session_of_login = Vec::with_capacity(logins.len());
    for ((login, result), jwt) in plan.logins.iter().zip(logins).zip(&tokens) {
        match result {
            Ok(auth) => {
                state.sessions.push(Session {
                    server: login.server.clone(),
                    namespace: login.namespace.clone(),
                    token: auth.client_token,
                    accessor: auth.accessor,
                    ttl: auth.lease_duration,
                    renewable: auth.renewable,
                    since: now,
                    exhausted: false,
                    parent: None,
                    delivered_as: None,
                });
                session_of_login.push(state.sessions.len() - 1);
            }
            Err(source) => {
                session_of_login.push(usize::MAX);
                first_error.get_or_insert_with(|| login_error(login, jwt, source));
            }
        }
    }
    progress.logged_in(state);
    if let Some(error) = first_error {
        return Err(error);
    }

    let ttl_cap = plan.ttl_cap;
    let responses = join_all(plan.requests.iter().map(|request| {
        let client = &clients[request.login];
        let session = &state.sessions[session_of_login[request.login]];
        async move {
            let path = request.source.api_path();
            match &request.source.data {
                Some(data) if request.source.engine == Engine::Token => {
                    // Without a ttl the token lives as long as a lease may: the same cap.
                    let mut body = data.clone();
                    let ttl = request
                        .source
                        .ttl
                        .map_or(ttl_cap, |t| t.as_secs().min(ttl_cap))
                        .max(1);
                    body.insert("ttl".into(), format!("{ttl}s").into());
                    client
                        .create_child_token(&session.token, &serde_json::Value::Object(body))
                        .await
                        .map(Answer::Token)
                }
                Some(data) => {
                    let mut body = data.clone();
                    if let Some(ttl) = request.source.ttl {
                        let ttl = ttl.as_secs().min(ttl_cap).max(1);
                        body.entry("ttl")
                            .or_insert_with(|| format!("{ttl}s").into());
                    }
                    client
                        .write(&session.token, &path, &serde_json::Value::Object(body))
                        .await
                        .map(Answer::Secret)
                }
                None => client
                    .read(&session.token, &path, request.source.engine == Engine::KvV2)
                    .await
                    .map(Answer::Secret),
            }
        }
    }))
    .await;

    let now = unix_now();
    let mut envelopes = Vec::with_capacity(responses.len());
    let mut resolved = Resolved::default();
    let mut created_tokens = false;
    for (index, (request, response)) in plan.requests.iter().zip(responses).enumerate() {
        let mut lease = None;
        let name = || {
            plan.secrets_of(index)
                .next()
                .map(|s| s.declaration.name.clone())
                .unwrap_or_default()
        };
        match response {
            Ok(Answer::Token(auth)) => {
                let parent = session_of_login[request.login];
                let login = &state.sessions[parent];
                let child = Session {
                    server: login.server.clone(),
                    namespace: login.namespace.clone(),
                    token: auth.client_token.clone(),
                    accessor: auth.accessor,
                    ttl: auth.lease_duration,
                    renewable: auth.renewable,
                    since: now,
                    exhausted: false,
                    parent: Some(parent),
                    delivered_as: Some(name()),
                };
                state.sessions.push(child);
                created_tokens = true;
                let mut data = std::collections::BTreeMap::new();
                data.insert(TOKEN_FIELD.to_owned(), auth.client_token);
                envelopes.push(Some(SecretEnvelope {
                    data: SecretFields(data),
                    ..SecretEnvelope::default()
                }));
            }
            Ok(Answer::Secret(envelope)) => {
                if !envelope.lease_id.is_empty() {
                    lease = Some(state.leases.len());
                    state.leases.push(Lease {
                        session: session_of_login[request.login],
                        lease_id: envelope.lease_id.clone(),
                        ttl: envelope.lease_duration,
                        renewable: envelope.renewable,
                        since: now,
                        origin: request.source.display_path(),
                        exhausted: false,
                    });
                }
                envelopes.push(Some(envelope));
            }
            Err(source) => {
                envelopes.push(None);
                let name = name();
                first_error.get_or_insert_with(|| {
                    request_error(&name, &request.source, &plan.logins[request.login], source)
                });
            }
        }
        resolved.lease_of_request.push(lease);
    }
    if created_tokens {
        // Journaled (and sealed) now, so that cleanup or the reaper can name it even if
        // prepare dies before the end; its login token, journaled already, takes it along anyway.
        progress.logged_in(state);
    }
    if let Some(error) = first_error {
        return Err(error);
    }

    for secret in &plan.secrets {
        let Some(envelope) = &envelopes[secret.request] else {
            continue;
        };
        let source = &secret.declaration.source;
        let Some(value) = envelope.data.get(&source.field) else {
            return Err(ResolutionError::FieldMissing {
                name: secret.declaration.name.clone(),
                path: source.display_path(),
                field: source.field.clone(),
                // Field names are the server's text, and the message reaches the job log.
                available: envelope.data.names().into_iter().map(printable).collect(),
            });
        };
        if !secret.declaration.file {
            check_fits_a_variable(&secret.declaration.name, value)?;
        }
        state.secrets.push(StoredSecret {
            name: secret.declaration.name.clone(),
            value: value.clone(),
            file: secret.declaration.file,
            stages: secret.stages.clone(),
            origin: match &secret.declaration.vault_token {
                Some(token) => format!("a Vault token ({})", token.policies.join(", ")),
                None => format!("{}#{}", source.display_path(), source.field),
            },
            plain: false,
        });
    }
    // After every planned secret, so that `secrets` starts in plan order.
    if let Some(token) = plan.token_secret()
        && let Some(value) = state
            .secrets
            .iter()
            .find(|s| s.name == token.declaration.name)
            .map(|s| s.value.clone())
    {
        let login = &plan.logins[plan.requests[token.request].login];
        let companions = token_companions(
            &token.declaration.name,
            &login.server,
            login.namespace.as_deref(),
        );
        for (name, companion) in companions {
            let (value, plain) = match companion {
                CompanionValue::Token => (value.clone(), false),
                CompanionValue::Plain(text) => (SecretString::from(text), true),
            };
            state.secrets.push(StoredSecret {
                name: name.to_owned(),
                value,
                file: false,
                stages: token.stages.clone(),
                origin: format!("beside {}", token.declaration.name),
                plain,
            });
        }
    }
    Ok(resolved)
}

/// A request's answer: a secret's envelope, or (for `auth/token/create`) a token.
enum Answer {
    Secret(SecretEnvelope),
    Token(AuthInfo),
}

/// Linux's limit on one `NAME=value` string of a process environment (`MAX_ARG_STRLEN`, with its
/// terminating NUL): a longer one makes `execve` fail with E2BIG.
pub(crate) const MAX_VARIABLE_BYTES: usize = 128 * 1024;

/// A value delivered as a variable (in the environment or exported by the script) can hold
/// neither a NUL byte nor more than the kernel passes through `execve`; caught here, it is the
/// job's input at fault (and named), not a host failure when the child cannot start.
fn check_fits_a_variable(name: &str, value: &SecretString) -> Result<(), ResolutionError> {
    let value = secrecy::ExposeSecret::expose_secret(value);
    let problem = if value.contains('\0') {
        VariableProblem::NulByte
    } else if name.len() + 1 + value.len() + 1 > MAX_VARIABLE_BYTES {
        VariableProblem::TooLong { bytes: value.len() }
    } else {
        return Ok(());
    };
    Err(ResolutionError::UnfitForVariable {
        name: name.to_owned(),
        problem,
    })
}

/// Why a value cannot be a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VariableProblem {
    /// It holds a NUL byte.
    NulByte,
    /// `NAME=value` is over [`MAX_VARIABLE_BYTES`].
    TooLong {
        /// The value's length.
        bytes: usize,
    },
}

impl std::fmt::Display for VariableProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VariableProblem::NulByte => {
                f.write_str("its value contains a NUL byte, which no variable can hold")
            }
            VariableProblem::TooLong { bytes } => write!(
                f,
                "its value is {bytes} bytes, over the {MAX_VARIABLE_BYTES}-byte limit Linux sets on one environment variable"
            ),
        }
    }
}

fn login_error(login: &LoginPlan, jwt: &SecretString, source: VaultError) -> ResolutionError {
    // A bare 404 on a login path: nothing is mounted there (the job's auth mount choice or the
    // admin's), which no retry fixes.
    let source = match source {
        VaultError::NotFound { path } => VaultError::Denied {
            status: 404,
            path,
            errors: "(no reason given)".into(),
        },
        other => other,
    };
    let VaultError::Denied { errors, status, .. } = &source else {
        return ResolutionError::Vault {
            context: format!(
                "logging in to {} (auth/{})",
                login.server.address, login.auth_mount
            ),
            source: Box::new(source),
        };
    };
    // A JWT refusal always says why; a bare "permission denied" on a login path is what Vault and
    // OpenBao answer for a path where no auth method is mounted (before any role is looked at).
    let no_route = *status == 404
        || errors.to_ascii_lowercase().contains("no handler for route")
        || errors.trim().eq_ignore_ascii_case("permission denied");
    let claims = peek_claims(jwt).unwrap_or_default();
    let lower = errors.to_ascii_lowercase();
    let role = login
        .role
        .clone()
        .unwrap_or_else(|| "(the mount's default role)".into());
    let kind = if no_route {
        LoginRefusal::UnknownMount
    } else if lower.contains("audience") || lower.contains("aud)") {
        LoginRefusal::Audience
    } else if lower.contains("expir")
        || lower.contains("(exp)")
        || lower.contains("(nbf)")
        || lower.contains("not yet valid")
        || lower.contains("(iat)")
    {
        LoginRefusal::Time
    } else if lower.contains("bound claim")
        || lower.contains("claim \"")
        || lower.contains("bound_claims")
    {
        LoginRefusal::BoundClaims
    } else if lower.contains("role")
        && (lower.contains("not found") || lower.contains("could not be found"))
    {
        LoginRefusal::UnknownRole
    } else {
        LoginRefusal::Other
    };
    ResolutionError::LoginDenied(Box::new(LoginDenial {
        kind,
        address: login.server.address.clone(),
        mount: login.auth_mount.clone(),
        role,
        vault_says: errors.clone(),
        claims,
        token_variable: login.token_variable.clone(),
    }))
}

fn request_error(
    name: &str,
    source: &SecretSource,
    login: &LoginPlan,
    error: VaultError,
) -> ResolutionError {
    match error {
        // Vault answers 400 when the policies asked for are not a subset of the login token's.
        VaultError::Denied {
            status: 400,
            errors,
            ..
        } if source.engine == Engine::Token => ResolutionError::TokenRefused {
            name: name.to_owned(),
            role: login
                .role
                .clone()
                .unwrap_or_else(|| "(the mount's default role)".into()),
            vault_says: errors,
        },
        VaultError::NotFound { .. } => ResolutionError::NotFound {
            name: name.to_owned(),
            address: login.server.address.clone(),
            api_path: source.api_path(),
            engine: source.engine,
        },
        VaultError::Denied {
            status: 404,
            errors,
            ..
        } => ResolutionError::NoSuchMount {
            name: name.to_owned(),
            address: login.server.address.clone(),
            mount: source.mount.clone(),
            vault_says: errors,
        },
        VaultError::Denied { status, errors, .. } => ResolutionError::ReadDenied {
            name: name.to_owned(),
            api_path: source.api_path(),
            status,
            vault_says: errors,
            write: source.data.is_some(),
        },
        other => ResolutionError::Vault {
            context: format!("requesting {} for {name}", source.api_path()),
            source: Box::new(other),
        },
    }
}

/// The ways Vault refuses a JWT login, each with its own advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginRefusal {
    /// `aud` not in the role's `bound_audiences`.
    Audience,
    /// Expired, not yet valid, or issued in the future: clocks.
    Time,
    /// A `bound_claims` entry did not match.
    BoundClaims,
    /// The role does not exist.
    UnknownRole,
    /// No auth method is mounted at that path (404, "no handler for route").
    UnknownMount,
    /// Anything else.
    Other,
}

/// Why secrets could not be resolved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolutionError {
    /// The job lacks its ID token.
    #[error(
        "the job has no ID token in ${variable}; add to the job:  id_tokens: {{ {variable}: {{ aud: \"{audience}\" }} }}  (use the audience your Vault role's bound_audiences expects)"
    )]
    MissingIdToken {
        /// The variable looked for.
        variable: String,
        /// A sensible `aud` suggestion.
        audience: String,
    },
    /// Vault refused the login.
    #[error("{}", describe_login_refusal(.0))]
    LoginDenied(Box<LoginDenial>),
    /// Nothing at the path.
    #[error(
        "secret {name}: nothing at {address}/v1/{api_path} (engine {engine}); check the path and mount in the declaration{}",
        if *engine == Engine::KvV2 { " (for kv-v2, give the path without /data/, and engine kv-v1 or generic for a KV version 1 mount)" } else { "" }
    )]
    NotFound {
        /// The variable.
        name: String,
        /// The server.
        address: String,
        /// The API path requested.
        api_path: String,
        /// The engine.
        engine: Engine,
    },
    /// Nothing is mounted at the declared mount (Vault: 404 "no handler for route").
    #[error(
        "secret {name}: no secrets engine is mounted at {mount}/ on {address}; fix the mount in the declaration (`@mount` in the short form, engine.path in the long form) (Vault says: {vault_says})"
    )]
    NoSuchMount {
        /// The variable.
        name: String,
        /// The server.
        address: String,
        /// The mount declared.
        mount: String,
        /// Vault's own words.
        vault_says: String,
    },
    /// The response lacks the field.
    #[error("secret {name}: {path} has no field {field:?}; it has: {}", if available.is_empty() { "no fields".to_owned() } else { available.join(", ") })]
    FieldMissing {
        /// The variable.
        name: String,
        /// mount/path.
        path: String,
        /// The missing field.
        field: String,
        /// Field names that exist.
        available: Vec<String>,
    },
    /// The token may not read the path.
    #[error(
        "secret {name}: permission denied ({status}) on {api_path}: the role's policy does not grant it; add  path \"{api_path}\" {{ capabilities = [\"{}\"] }}  to the policy of the role the job logs in with (Vault says: {vault_says})",
        if *write { "update" } else { "read" }
    )]
    ReadDenied {
        /// The variable.
        name: String,
        /// The API path.
        api_path: String,
        /// HTTP status.
        status: u16,
        /// Vault's own words.
        vault_says: String,
        /// Whether this was a write-style request.
        write: bool,
    },
    /// Vault would not create the job's token with the policies asked for.
    #[error(
        "secret {name}: Vault refused to create the job's token (Vault says: {vault_says}); a job's token can have only policies its login token has, so ask for policies that role {role} grants, or ask the Vault admin to add them to the role's token_policies"
    )]
    TokenRefused {
        /// The variable.
        name: String,
        /// The role the job logged in with.
        role: String,
        /// Vault's own words.
        vault_says: String,
    },
    /// A value that cannot be delivered as a variable.
    #[error(
        "secret {name}: {problem}; deliver it as a file instead (file: true in the declaration)"
    )]
    UnfitForVariable {
        /// The variable.
        name: String,
        /// What is wrong with the value.
        problem: VariableProblem,
    },
    /// Vault could not be reached or failed.
    #[error(
        "{context}: {source}{}",
        if source.failure_kind() == FailureKind::System { "; gitlab-runner retries prepare up to 3 times, check the server and the network if this persists" } else { "" }
    )]
    Vault {
        /// What leasehold was doing.
        context: String,
        /// The error.
        source: Box<VaultError>,
    },
}

/// The details of a refused login.
#[derive(Debug)]
pub(crate) struct LoginDenial {
    /// Which refusal.
    pub kind: LoginRefusal,
    /// The server.
    pub address: String,
    /// The auth mount.
    pub mount: String,
    /// The role.
    pub role: String,
    /// Vault's own words.
    pub vault_says: String,
    /// The (unverified) claims the token carries.
    pub claims: Claims,
    /// The ID-token variable.
    pub token_variable: String,
}

fn describe_login_refusal(denial: &LoginDenial) -> String {
    let LoginDenial {
        kind,
        address,
        mount,
        role,
        vault_says,
        claims,
        token_variable,
    } = denial;
    let kind = *kind;
    let head = format!("Vault at {address} refused the JWT login (auth/{mount}, role {role})");
    let carries = claims.binding_summary();
    match kind {
        LoginRefusal::Audience => format!(
            "{head}: wrong audience: the token has aud={}, which the role's bound_audiences does not list; set  id_tokens: {{ {token_variable}: {{ aud: \"<an audience the role lists>\" }} }}  in the job, or add it to bound_audiences (Vault says: {vault_says})",
            if claims.aud.is_empty() {
                "(none)".to_owned()
            } else {
                claims.aud.join(",")
            }
        ),
        LoginRefusal::Time => {
            let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
            let show = |t: Option<i64>| {
                t.map_or_else(
                    || "(none)".to_owned(),
                    |t| format!("{t} ({:+}s from now)", t - now),
                )
            };
            format!(
                "{head}: the token is expired or not yet valid: exp={} nbf={} iat={}, local clock {now}; check the clocks of the runner host and Vault (NTP), and that the job did not wait longer than the token's lifetime (Vault says: {vault_says})",
                show(claims.exp),
                show(claims.nbf),
                show(claims.iat)
            )
        }
        LoginRefusal::BoundClaims => format!(
            "{head}: the role's bound claims don't match this job's token, which carries {carries}; run the job where the role's bound_claims hold (e.g. a protected branch) or ask the Vault admin to adjust the role (Vault says: {vault_says})"
        ),
        LoginRefusal::UnknownRole => format!(
            "{head}: the role does not exist on auth/{mount}; set VAULT_AUTH_ROLE (or [vault] role) to an existing role (Vault says: {vault_says})"
        ),
        LoginRefusal::UnknownMount => format!(
            "{head}: no auth method is mounted at auth/{mount} on that server (Vault refuses unknown login paths); set VAULT_AUTH_PATH (or [vault] auth_mount) to the JWT auth mount's path (Vault says: {vault_says})"
        ),
        LoginRefusal::Other => format!("{head}: {vault_says}; the token carries {carries}"),
    }
}

impl ResolutionError {
    /// Refusals are the job's fault; transport and server failures are the system's.
    pub(crate) fn failure_kind(&self) -> FailureKind {
        match self {
            ResolutionError::Vault { source, .. } => source.failure_kind(),
            _ => FailureKind::Build,
        }
    }
}

/// Shortest remaining lifetime of the job's credentials, for the job-log summary.
pub(crate) fn describe_ttl(seconds: u64) -> String {
    let d = Duration::from_secs(seconds);
    match d.as_secs() {
        0 => "no expiry".into(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::Server;

    fn login() -> LoginPlan {
        LoginPlan {
            server: Server::bare("https://vault.example"),
            namespace: None,
            auth_mount: "jwt".into(),
            role: Some("ci".into()),
            token_variable: "VAULT_ID_TOKEN".into(),
            token: None,
        }
    }

    fn kv(path: &str) -> SecretSource {
        SecretSource {
            engine: Engine::KvV2,
            mount: "kv".into(),
            path: path.into(),
            field: "password".into(),
            data: None,
            ttl: None,
        }
    }

    fn jwt() -> SecretString {
        SecretString::from("e30.e30.sig")
    }

    #[test]
    fn a_variable_holds_no_nul_and_no_more_than_the_kernel_passes() {
        let fits = "x".repeat(MAX_VARIABLE_BYTES - "NAME=".len() - 1);
        assert!(check_fits_a_variable("NAME", &SecretString::from(fits.clone())).is_ok());
        let over = format!("{fits}x");
        let error =
            check_fits_a_variable("NAME", &SecretString::from(over)).expect_err("one byte over");
        assert!(matches!(
            error,
            ResolutionError::UnfitForVariable {
                problem: VariableProblem::TooLong { .. },
                ..
            }
        ));
        assert_eq!(error.failure_kind(), FailureKind::Build);
        let error = check_fits_a_variable("NAME", &SecretString::from("a\0b")).expect_err("NUL");
        assert_eq!(
            error.to_string(),
            "secret NAME: its value contains a NUL byte, which no variable can hold; deliver it as a file instead (file: true in the declaration)"
        );
        assert!(!error.to_string().contains("a\0b"));
    }

    #[test]
    fn a_login_on_a_path_without_an_auth_method_is_the_jobs_failure_without_a_retry_promise() {
        for source in [
            VaultError::NotFound {
                path: "auth/jwt/login".into(),
            },
            VaultError::Denied {
                status: 400,
                path: "auth/jwt/login".into(),
                errors: "no handler for route \"auth/jwt/login\"".into(),
            },
        ] {
            let error = login_error(&login(), &jwt(), source);
            let ResolutionError::LoginDenied(denial) = &error else {
                panic!("{error:?}");
            };
            assert_eq!(denial.kind, LoginRefusal::UnknownMount);
            assert_eq!(error.failure_kind(), FailureKind::Build);
            assert!(!error.to_string().contains("retries"), "{error}");
        }
    }

    #[test]
    fn login_refusals_are_told_apart_by_vaults_words() {
        for (errors, kind) in [
            (
                "error validating token: invalid audience (aud) claim",
                LoginRefusal::Audience,
            ),
            ("token is expired (exp)", LoginRefusal::Time),
            (
                "error validating claims: claim \"ref\" does not match any associated bound claim values",
                LoginRefusal::BoundClaims,
            ),
            (
                "role \"nope\" could not be found",
                LoginRefusal::UnknownRole,
            ),
            ("something new", LoginRefusal::Other),
        ] {
            let error = login_error(
                &login(),
                &jwt(),
                VaultError::Denied {
                    status: 400,
                    path: "auth/jwt/login".into(),
                    errors: errors.into(),
                },
            );
            let ResolutionError::LoginDenied(denial) = error else {
                panic!("{errors}");
            };
            assert_eq!(denial.kind, kind, "{errors}");
        }
    }

    #[test]
    fn only_a_host_failure_promises_the_runners_retry() {
        let unreachable = login_error(
            &login(),
            &jwt(),
            VaultError::Unreachable {
                address: "https://vault.example".into(),
                attempts: 3,
                waited: 1,
                detail: "connection refused".into(),
            },
        );
        assert_eq!(unreachable.failure_kind(), FailureKind::System);
        assert!(
            unreachable
                .to_string()
                .contains("gitlab-runner retries prepare")
        );
        let invalid = request_error(
            "X",
            &kv("app/db"),
            &login(),
            VaultError::InvalidResponse {
                path: "kv/data/app/db".into(),
                detail: "not JSON".into(),
            },
        );
        assert_eq!(invalid.failure_kind(), FailureKind::System);
    }

    #[test]
    fn request_failures_name_the_secret_and_what_to_fix() {
        let source = kv("app/db");
        let not_found = request_error(
            "X",
            &source,
            &login(),
            VaultError::NotFound {
                path: source.api_path(),
            },
        );
        assert!(matches!(not_found, ResolutionError::NotFound { .. }));
        assert!(
            not_found
                .to_string()
                .starts_with("secret X: nothing at https://vault.example/v1/kv/data/app/db"),
            "{not_found}"
        );
        let no_mount = request_error(
            "X",
            &source,
            &login(),
            VaultError::Denied {
                status: 404,
                path: source.api_path(),
                errors: "no handler for route".into(),
            },
        );
        assert!(matches!(no_mount, ResolutionError::NoSuchMount { .. }));
        let denied = request_error(
            "X",
            &source,
            &login(),
            VaultError::Denied {
                status: 403,
                path: source.api_path(),
                errors: "permission denied".into(),
            },
        );
        assert!(
            denied
                .to_string()
                .contains("add  path \"kv/data/app/db\" { capabilities = [\"read\"] }"),
            "{denied}"
        );
        for error in [not_found, no_mount, denied] {
            assert_eq!(error.failure_kind(), FailureKind::Build);
        }
    }

    #[test]
    fn ttl_summaries_use_the_largest_whole_unit() {
        assert_eq!(describe_ttl(0), "no expiry");
        assert_eq!(describe_ttl(7200), "2h");
        assert_eq!(describe_ttl(900), "15m");
        assert_eq!(describe_ttl(61), "61s");
    }
}
