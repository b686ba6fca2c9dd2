//! Fleet policy: what a job may ask for by itself, in its own `LEASEHOLD_SECRETS`.
//!
//! Why: admin bindings grant secrets from verified claims, so the admin decides. Job-declared
//! secrets are decided by whoever can push to the repository, which on an unprotected branch can
//! be anyone with developer access. `[policy]` lets a fleet refuse those declarations on
//! unprotected refs (or entirely), and narrow the mounts, roles and auth mounts a job may name
//! and the policies it may put on a Vault token for its own tools. It never restricts bindings:
//! they are the admin's own grants.
//!
//! Auth mounts are closed by default (only `[vault] auth_mount`), unlike mounts and roles: the
//! job's ID token is sent to whatever auth mount the job names, and an auth method the admin
//! never meant for CI (another team's JWT mount with laxer roles) should not receive it.

use crate::config_file::PolicySection;
use crate::declarations::Declaration;
use crate::exit::FailureKind;
use crate::patterns::Patterns;

pub(crate) use crate::config_file::JobDeclarations;

/// `[policy]`, compiled.
#[derive(Debug, Clone, Default)]
pub(crate) struct Policy {
    /// When a job's own declarations are honoured.
    pub job_declarations: JobDeclarations,
    /// The secret-engine mounts a job may name (empty: any mount).
    pub allowed_mounts: Patterns,
    /// The JWT roles a job may name with `VAULT_AUTH_ROLE` (empty: any role).
    pub allowed_roles: Patterns,
    /// Further auth mounts a job may log in at with `VAULT_AUTH_PATH` (empty: none).
    pub allowed_auth_mounts: Patterns,
    /// `[vault] auth_mount`, always allowed.
    pub default_auth_mount: String,
    /// The policies a job may ask for on its own Vault token (empty: any; Vault still allows a
    /// child token only a subset of its login token's policies).
    pub allowed_token_policies: Patterns,
}

/// Whether the job's ref is protected, and who says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefProtection {
    /// The branch or tag.
    pub git_ref: String,
    /// `Some(true)`: protected; `None`: nobody said.
    pub protected: Option<bool>,
    /// Where the answer came from, for messages.
    pub source: &'static str,
}

impl Policy {
    /// Compiles the section's globs, once, at config load; `default_auth_mount` is `[vault]
    /// auth_mount`, already checked.
    pub(crate) fn compile(
        section: &PolicySection,
        default_auth_mount: &str,
    ) -> Result<Self, String> {
        let compile = |key: &str, patterns: &[String]| {
            Patterns::new(patterns).map_err(|e| format!("policy.{key}: {e}"))
        };
        Ok(Policy {
            job_declarations: section.job_declarations,
            allowed_mounts: compile("allowed_mounts", &section.allowed_mounts)?,
            allowed_roles: compile("allowed_roles", &section.allowed_roles)?,
            allowed_auth_mounts: compile("allowed_auth_mounts", &section.allowed_auth_mounts)?,
            default_auth_mount: default_auth_mount.to_owned(),
            allowed_token_policies: compile(
                "allowed_token_policies",
                &section.allowed_token_policies,
            )?,
        })
    }

    /// Checks the auth mount a job names with `VAULT_AUTH_PATH` (already checked by the path
    /// rule and normalised): the configured one, or one `allowed_auth_mounts` matches.
    pub(crate) fn check_auth_mount(&self, mount: &str) -> Result<(), PolicyError> {
        if mount == self.default_auth_mount || self.allowed_auth_mounts.matches(mount) {
            return Ok(());
        }
        Err(PolicyError::AuthMountNotAllowed {
            mount: mount.to_owned(),
            default: self.default_auth_mount.clone(),
            allowed: self.allowed_auth_mounts.texts().to_vec(),
        })
    }

    /// Decides whether the job's own declarations may be used at all.
    pub(crate) fn admit_declarations(
        &self,
        variable: &str,
        protection: &RefProtection,
    ) -> Result<(), PolicyError> {
        match self.job_declarations {
            JobDeclarations::Always => Ok(()),
            JobDeclarations::Never => Err(PolicyError::DeclarationsForbidden {
                variable: variable.to_owned(),
            }),
            JobDeclarations::ProtectedRefsOnly if protection.protected == Some(true) => Ok(()),
            JobDeclarations::ProtectedRefsOnly => Err(PolicyError::UnprotectedRef {
                variable: variable.to_owned(),
                git_ref: protection.git_ref.clone(),
                protected: protection.protected,
                said_by: protection.source,
            }),
        }
    }

    /// Checks the mounts the declarations name and the role the job names (`None`: the job named
    /// none, so the admin's default applies and is always allowed).
    pub(crate) fn check_names(
        &self,
        declarations: &[Declaration],
        job_role: Option<&str>,
    ) -> Result<(), PolicyError> {
        if let Some(role) = job_role
            && !self.allowed_roles.allows(role)
        {
            return Err(PolicyError::RoleNotAllowed {
                role: role.to_owned(),
                allowed: self.allowed_roles.texts().to_vec(),
            });
        }
        for declaration in declarations {
            // A token names no mount: the policies on it are what the admin narrows.
            if let Some(token) = &declaration.vault_token {
                if let Some(policy) = token
                    .policies
                    .iter()
                    .find(|p| !self.allowed_token_policies.allows(p))
                {
                    return Err(PolicyError::TokenPolicyNotAllowed {
                        name: declaration.name.clone(),
                        policy: policy.clone(),
                        allowed: self.allowed_token_policies.texts().to_vec(),
                    });
                }
                continue;
            }
            let mount = &declaration.source.mount;
            if !self.allowed_mounts.allows(mount) {
                return Err(PolicyError::MountNotAllowed {
                    name: declaration.name.clone(),
                    mount: mount.clone(),
                    allowed: self.allowed_mounts.texts().to_vec(),
                });
            }
        }
        Ok(())
    }
}

/// A job asked for something the fleet policy does not allow. Always the job's fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PolicyError {
    /// `job_declarations = "never"`.
    #[error(
        "this runner does not accept secrets declared by the job ([policy] job_declarations = \"never\"): remove {variable} and ask the runner admin for a binding that grants what the job needs"
    )]
    DeclarationsForbidden {
        /// The declarations variable.
        variable: String,
    },
    /// `job_declarations = "protected_refs_only"` on an unprotected ref.
    #[error(
        "this runner accepts secrets declared in {variable} only on protected branches and tags ([policy] job_declarations = \"protected_refs_only\"), and ref {git_ref:?} is {} according to the {said_by}; run the job on a protected ref, or ask the runner admin for a binding",
        match protected { Some(false) => "not protected", _ => "of unknown protection" }
    )]
    UnprotectedRef {
        /// The declarations variable.
        variable: String,
        /// The ref.
        git_ref: String,
        /// What the source said.
        protected: Option<bool>,
        /// Where that came from.
        said_by: &'static str,
    },
    /// A declaration names a mount outside `allowed_mounts`.
    #[error(
        "secret {name}: mount {mount:?} is not one this runner lets jobs name ([policy] allowed_mounts = {allowed:?}); use an allowed mount or ask the runner admin for a binding"
    )]
    MountNotAllowed {
        /// The variable.
        name: String,
        /// The mount.
        mount: String,
        /// The allow-list.
        allowed: Vec<String>,
    },
    /// `VAULT_AUTH_PATH` names an auth mount other than `[vault] auth_mount` that
    /// `allowed_auth_mounts` does not list.
    #[error(
        "VAULT_AUTH_PATH {mount:?} is not an auth mount this runner lets jobs log in at ([policy] allowed_auth_mounts = {allowed:?}, besides [vault] auth_mount {default:?}); remove the variable to log in at {default:?}, or ask the runner admin to add the mount to allowed_auth_mounts"
    )]
    AuthMountNotAllowed {
        /// The auth mount.
        mount: String,
        /// `[vault] auth_mount`.
        default: String,
        /// The allow-list.
        allowed: Vec<String>,
    },
    /// A job's token asks for a policy outside `allowed_token_policies`.
    #[error(
        "secret {name}: policy {policy:?} is not one this runner lets jobs put on their Vault token ([policy] allowed_token_policies = {allowed:?}); remove it from vault.token.policies or ask the runner admin to allow it"
    )]
    TokenPolicyNotAllowed {
        /// The variable.
        name: String,
        /// The first policy refused.
        policy: String,
        /// The allow-list.
        allowed: Vec<String>,
    },
    /// `VAULT_AUTH_ROLE` names a role outside `allowed_roles`.
    #[error(
        "VAULT_AUTH_ROLE {role:?} is not a role this runner lets jobs name ([policy] allowed_roles = {allowed:?}); remove the variable to use the runner's default role, or use an allowed one"
    )]
    RoleNotAllowed {
        /// The role.
        role: String,
        /// The allow-list.
        allowed: Vec<String>,
    },
}

impl PolicyError {
    /// The job asked for something it may not have.
    pub(crate) fn failure_kind(&self) -> FailureKind {
        FailureKind::Build
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declarations::{Engine, SecretSource};

    fn decl(mount: &str) -> Declaration {
        Declaration {
            name: "A".into(),
            source: SecretSource {
                engine: Engine::KvV2,
                mount: mount.into(),
                path: "p".into(),
                field: "f".into(),
                data: None,
                ttl: None,
            },
            file: false,
            token_variable: None,
            stages: None,
            vault_token: None,
        }
    }

    fn protection(protected: Option<bool>) -> RefProtection {
        RefProtection {
            git_ref: "feature".into(),
            protected,
            source: "verified ref_protected claim",
        }
    }

    #[test]
    fn job_declarations_switch() {
        let mut policy = Policy::default();
        assert!(
            policy
                .admit_declarations("LEASEHOLD_SECRETS", &protection(Some(false)))
                .is_ok()
        );
        policy.job_declarations = JobDeclarations::ProtectedRefsOnly;
        assert!(
            policy
                .admit_declarations("LEASEHOLD_SECRETS", &protection(Some(true)))
                .is_ok()
        );
        let err = policy
            .admit_declarations("LEASEHOLD_SECRETS", &protection(Some(false)))
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains(
                "\"feature\" is not protected according to the verified ref_protected claim"
            ),
            "{err}"
        );
        let err = policy
            .admit_declarations("LEASEHOLD_SECRETS", &protection(None))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("unknown protection"), "{err}");
        policy.job_declarations = JobDeclarations::Never;
        let err = policy
            .admit_declarations("LEASEHOLD_SECRETS", &protection(Some(true)))
            .expect_err("refused");
        assert!(matches!(err, PolicyError::DeclarationsForbidden { .. }));
        assert_eq!(err.failure_kind(), FailureKind::Build);
    }

    #[test]
    fn allow_lists_are_globs_and_empty_means_any() {
        let mut section = PolicySection::default();
        let policy = Policy::compile(&section, "jwt").expect("valid");
        assert!(
            policy
                .check_names(&[decl("anything")], Some("any-role"))
                .is_ok()
        );
        section.allowed_mounts = vec!["kv-ci".into(), "teams/*".into()];
        section.allowed_roles = vec!["ci-*".into()];
        let policy = Policy::compile(&section, "jwt").expect("valid globs");
        assert!(
            policy
                .check_names(&[decl("kv-ci"), decl("teams/a")], None)
                .is_ok()
        );
        let err = policy
            .check_names(&[decl("teams/a/b")], None)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("mount \"teams/a/b\""), "{err}");
        assert!(policy.check_names(&[], Some("ci-deploy")).is_ok());
        let err = policy
            .check_names(&[], Some("admin"))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("VAULT_AUTH_ROLE \"admin\""), "{err}");
        // Auth mounts: the configured one always, others only when listed.
        assert!(policy.check_auth_mount("jwt").is_ok());
        let err = policy
            .check_auth_mount("jwt2")
            .expect_err("closed by default");
        assert_eq!(err.failure_kind(), FailureKind::Build);
        assert_eq!(
            err.to_string(),
            "VAULT_AUTH_PATH \"jwt2\" is not an auth mount this runner lets jobs log in at ([policy] allowed_auth_mounts = [], besides [vault] auth_mount \"jwt\"); remove the variable to log in at \"jwt\", or ask the runner admin to add the mount to allowed_auth_mounts"
        );
        section.allowed_auth_mounts = vec!["jwt-*".into(), "teams/**".into()];
        let policy = Policy::compile(&section, "jwt").expect("valid globs");
        for ok in ["jwt", "jwt-ci", "teams/a/jwt"] {
            assert!(policy.check_auth_mount(ok).is_ok(), "{ok}");
        }
        assert!(policy.check_auth_mount("other").is_err());
        let mut token = decl("auth/token");
        token.vault_token = Some(crate::declarations::TokenRequest {
            policies: vec!["app-read".into(), "pki-issue".into()],
            no_default_policy: false,
        });
        section.allowed_mounts = vec!["kv-ci".into()];
        let policy = Policy::compile(&section, "jwt").expect("valid globs");
        assert!(
            policy
                .check_names(std::slice::from_ref(&token), None)
                .is_ok(),
            "an empty allowed_token_policies allows any policy, and a token names no mount"
        );
        section.allowed_token_policies = vec!["app-*".into()];
        let policy = Policy::compile(&section, "jwt").expect("valid globs");
        let err = policy
            .check_names(&[token], None)
            .expect_err("refused")
            .to_string();
        assert_eq!(
            err,
            "secret A: policy \"pki-issue\" is not one this runner lets jobs put on their Vault token ([policy] allowed_token_policies = [\"app-*\"]); remove it from vault.token.policies or ask the runner admin to allow it"
        );
        section.allowed_roles = vec!["[".into()];
        assert!(
            Policy::compile(&section, "jwt")
                .expect_err("refused")
                .contains("allowed_roles")
        );
    }
}
