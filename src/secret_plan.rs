//! The plan of a job's secrets: which logins, which requests, which secret comes from which.
//!
//! gitlab-runner logs in and reads once per *field*, so two fields of one database credential
//! come from two leases and don't match. leasehold plans first: secrets are grouped by the login
//! they need (server, namespace, auth mount, role, ID-token variable) and by the request that
//! yields them (login, engine, mount, path, request body). Planning ([`crate::planning`]) builds
//! this; resolution ([`crate::resolution`]) executes it, each login and each request exactly once.

use std::fmt;

use secrecy::SecretString;

use crate::api_path::PieceError;
use crate::declarations::{Declaration, SecretSource, TOKEN_COMPANIONS};
use crate::exit::FailureKind;
use crate::vault::Server;

/// Everything needed to log in once.
#[derive(Debug, Clone)]
pub(crate) struct LoginPlan {
    /// The server (already checked against the admin's allow-list).
    pub server: Server,
    /// The namespace (job's `VAULT_NAMESPACE`, else the server's).
    pub namespace: Option<String>,
    /// The JWT auth mount.
    pub auth_mount: String,
    /// The role (absent: the mount's default role).
    pub role: Option<String>,
    /// The job variable holding the ID token.
    pub token_variable: String,
    /// The ID token itself, attached once planning is done ([`SecretPlan::attach_tokens`]).
    pub token: Option<SecretString>,
}

/// Two logins are the same login when they go to the same place with the same token variable;
/// the token is whatever that variable holds.
impl PartialEq for LoginPlan {
    fn eq(&self, other: &Self) -> bool {
        self.server == other.server
            && self.namespace == other.namespace
            && self.auth_mount == other.auth_mount
            && self.role == other.role
            && self.token_variable == other.token_variable
    }
}

/// Who granted a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Provenance {
    /// The job's own declarations, in this variable (`LEASEHOLD_SECRETS`).
    Job {
        /// The declarations variable.
        variable: String,
    },
    /// An admin binding.
    Binding {
        /// The rule's name.
        name: String,
    },
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provenance::Job { variable } => f.write_str(variable),
            Provenance::Binding { name } => write!(f, "binding {name}"),
        }
    }
}

/// One request to Vault.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RequestPlan {
    /// Index into [`SecretPlan::logins`].
    pub login: usize,
    /// What to request.
    pub source: SecretSource,
}

/// One secret and where its value comes from.
#[derive(Debug, Clone)]
pub(crate) struct PlannedSecret {
    /// The declaration.
    pub declaration: Declaration,
    /// Index into [`SecretPlan::requests`].
    pub request: usize,
    /// Sub-stages that receive it.
    pub stages: Vec<String>,
    /// Who granted it.
    pub declared_by: Provenance,
}

/// The logins and requests a job needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct SecretPlan {
    /// Unique logins.
    pub logins: Vec<LoginPlan>,
    /// Unique requests.
    pub requests: Vec<RequestPlan>,
    /// Every secret.
    pub secrets: Vec<PlannedSecret>,
    /// The longest TTL any credential is asked for: the admin's cap, never past the job's
    /// timeout.
    pub ttl_cap: u64,
}

/// Where a group of secrets logs in, before the ID-token variable is known.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoginTarget {
    /// The server (already checked against the admin's allow-list).
    pub server: Server,
    /// The namespace.
    pub namespace: Option<String>,
    /// The JWT auth mount, without slashes at either end.
    pub auth_mount: String,
    /// The role (absent: the mount's default role).
    pub role: Option<String>,
}

impl SecretPlan {
    /// Adds declarations that log in at `target` with the ID token in `token_variable` (unless a
    /// declaration names its own), deduplicating logins and requests; a declaration without
    /// `stages:` gets `default_stages`. A name granted twice is an error naming both grants.
    pub(crate) fn add_with(
        &mut self,
        declarations: Vec<Declaration>,
        declared_by: &Provenance,
        target: &LoginTarget,
        token_variable: &str,
        default_stages: &[String],
    ) -> Result<(), PlanError> {
        for declaration in declarations {
            if let Some(first) = self
                .secrets
                .iter()
                .find(|s| s.declaration.name == declaration.name)
            {
                return Err(PlanError::DuplicateName {
                    name: declaration.name,
                    first: first.declared_by.to_string(),
                    second: declared_by.to_string(),
                });
            }
            self.check_token_names(&declaration, declared_by)?;
            let login = LoginPlan {
                server: target.server.clone(),
                namespace: target.namespace.clone(),
                auth_mount: target.auth_mount.clone(),
                role: target.role.clone(),
                token_variable: declaration
                    .token_variable
                    .clone()
                    .unwrap_or_else(|| token_variable.to_owned()),
                token: None,
            };
            let login = index_of_or_push(&mut self.logins, login);
            let request = RequestPlan {
                login,
                source: SecretSource {
                    field: String::new(),
                    ..declaration.source.clone()
                },
            };
            let request = index_of_or_push(&mut self.requests, request);
            let stages = declaration
                .stages
                .clone()
                .unwrap_or_else(|| default_stages.to_vec());
            self.secrets.push(PlannedSecret {
                declaration,
                request,
                stages,
                declared_by: declared_by.clone(),
            });
        }
        Ok(())
    }

    /// The job's Vault token, if it asks for one (a job gets at most one).
    pub(crate) fn token_secret(&self) -> Option<&PlannedSecret> {
        self.secrets
            .iter()
            .find(|s| s.declaration.vault_token.is_some())
    }

    /// A job gets one Vault token (so that `VAULT_ADDR` and the rest have one meaning), and no
    /// other secret may take a name leasehold sets next to it.
    fn check_token_names(
        &self,
        declaration: &Declaration,
        declared_by: &Provenance,
    ) -> Result<(), PlanError> {
        let token = self.token_secret();
        if declaration.vault_token.is_some() {
            if let Some(first) = token {
                return Err(PlanError::SecondToken {
                    name: declaration.name.clone(),
                    first: first.declaration.name.clone(),
                    first_by: first.declared_by.to_string(),
                });
            }
            let clash = self.secrets.iter().find(|s| {
                s.declaration.name != declaration.name
                    && TOKEN_COMPANIONS.contains(&s.declaration.name.as_str())
            });
            if let Some(clash) = clash {
                return Err(PlanError::CompanionName {
                    name: clash.declaration.name.clone(),
                    by: clash.declared_by.to_string(),
                    token: declaration.name.clone(),
                });
            }
        } else if let Some(token) = token
            && TOKEN_COMPANIONS.contains(&declaration.name.as_str())
        {
            return Err(PlanError::CompanionName {
                name: declaration.name.clone(),
                by: declared_by.to_string(),
                token: token.declaration.name.clone(),
            });
        }
        Ok(())
    }

    /// Whether there is nothing to resolve.
    pub(crate) fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Gives every login the ID token its variable holds (`lookup`); the first variable that
    /// holds none is returned.
    pub(crate) fn attach_tokens(
        &mut self,
        lookup: impl Fn(&str) -> Option<SecretString>,
    ) -> Result<(), String> {
        for login in &mut self.logins {
            login.token =
                Some(lookup(&login.token_variable).ok_or_else(|| login.token_variable.clone())?);
        }
        Ok(())
    }

    /// The secrets of one request.
    pub(crate) fn secrets_of(&self, request: usize) -> impl Iterator<Item = &PlannedSecret> {
        self.secrets.iter().filter(move |s| s.request == request)
    }
}

/// What a variable set next to the job's Vault token holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CompanionValue {
    /// The token itself (masked like it).
    Token,
    /// Something that is not secret: the server's address, namespace or CA bundle path.
    Plain(String),
}

/// The variables a job gets beside its token in `declared`: `VAULT_TOKEN` and `BAO_TOKEN` (the
/// one that is `declared` already holds it), `VAULT_ADDR`/`BAO_ADDR`, and, when the login has
/// them, `VAULT_NAMESPACE`/`BAO_NAMESPACE` and `VAULT_CACERT`/`BAO_CACERT`. The client
/// certificate and key of an mTLS server are the runner's own credential and never go along.
pub(crate) fn token_companions(
    declared: &str,
    server: &Server,
    namespace: Option<&str>,
) -> Vec<(&'static str, CompanionValue)> {
    let mut out = vec![
        ("VAULT_TOKEN", CompanionValue::Token),
        ("BAO_TOKEN", CompanionValue::Token),
    ];
    let mut both = |vault: &'static str, bao: &'static str, value: String| {
        out.push((vault, CompanionValue::Plain(value.clone())));
        out.push((bao, CompanionValue::Plain(value)));
    };
    both("VAULT_ADDR", "BAO_ADDR", server.address.clone());
    if let Some(namespace) = namespace.filter(|n| !n.is_empty()) {
        both("VAULT_NAMESPACE", "BAO_NAMESPACE", namespace.to_owned());
    }
    if let Some(ca_file) = &server.ca_file {
        both(
            "VAULT_CACERT",
            "BAO_CACERT",
            ca_file.to_string_lossy().into_owned(),
        );
    }
    out.retain(|(name, _)| *name != declared);
    out
}

fn index_of_or_push<T: PartialEq>(items: &mut Vec<T>, item: T) -> usize {
    if let Some(i) = items.iter().position(|x| *x == item) {
        i
    } else {
        items.push(item);
        items.len() - 1
    }
}

/// What a job asked for cannot be planned. Always the job's (or its binding's) fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlanError {
    /// The job named a server the admin does not trust.
    #[error("{reason}")]
    ServerNotAllowed {
        /// The full message.
        reason: String,
    },
    /// A job variable that goes into a request (`VAULT_AUTH_PATH`, `VAULT_NAMESPACE`) breaks the
    /// path rule.
    #[error("{variable} {}; {fix}", problem.detail())]
    BadVariable {
        /// The variable.
        variable: &'static str,
        /// What is wrong with its value (the value quoted, escaped).
        problem: PieceError,
        /// What to set instead.
        fix: String,
    },
    /// Two declarations (or a declaration and a binding) target one variable.
    #[error("secret {name} is granted twice (by {first} and by {second}); remove one of them")]
    DuplicateName {
        /// The variable.
        name: String,
        /// The first grant.
        first: String,
        /// The second grant.
        second: String,
    },
    /// A second Vault token for the job.
    #[error(
        "secret {name} asks for a second Vault token, but {first} (from {first_by}) is one already; a job gets one token: ask for one with every policy it needs"
    )]
    SecondToken {
        /// The second token's variable.
        name: String,
        /// The first token's variable.
        first: String,
        /// Who granted the first.
        first_by: String,
    },
    /// A secret named like a variable leasehold sets next to the job's Vault token.
    #[error(
        "secret {name} (from {by}) has a name leasehold sets itself next to the Vault token in {token} (VAULT_TOKEN, BAO_TOKEN, VAULT_ADDR, BAO_ADDR, VAULT_NAMESPACE, BAO_NAMESPACE, VAULT_CACERT, BAO_CACERT); rename the secret"
    )]
    CompanionName {
        /// The clashing secret.
        name: String,
        /// Who granted it.
        by: String,
        /// The token's variable.
        token: String,
    },
    /// The job has a CI/CD variable that would replace a variable set next to its Vault token.
    #[error(
        "the Vault token in {token} comes with {variable} set by leasehold{}, but the job has a CI/CD variable {variable}{}, which the job script would export over it; remove the variable",
        if *token_itself { "" } else { " to the token's server" },
        if *token_itself { "" } else { " with another value" }
    )]
    CompanionVariable {
        /// The token's variable.
        token: String,
        /// The job variable.
        variable: String,
        /// Whether the variable would carry the token itself (any value replaces it).
        token_itself: bool,
    },
}

impl PlanError {
    /// The job's declarations or claims do not fit the config.
    pub(crate) fn failure_kind(&self) -> FailureKind {
        FailureKind::Build
    }
}
