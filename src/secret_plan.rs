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
use crate::declarations::{Declaration, SecretSource};
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
}

impl PlanError {
    /// The job's declarations or claims do not fit the config.
    pub(crate) fn failure_kind(&self) -> FailureKind {
        FailureKind::Build
    }
}
