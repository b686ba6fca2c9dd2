//! Fleet policy: what a job may ask for by itself, in its own `LEASEHOLD_SECRETS`.
//!
//! Why: admin bindings grant secrets from verified claims, so the admin decides. Job-declared
//! secrets are decided by whoever can push to the repository, which on an unprotected branch can
//! be anyone with developer access. `[policy]` lets a fleet refuse those declarations on
//! unprotected refs (or entirely), and narrow the mounts and roles a job may name. It never
//! restricts bindings: they are the admin's own grants.

use serde::Deserialize;

use crate::declarations::Declaration;
use crate::exit::FailureKind;

/// `[policy]` in the executor config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// When a job's own declarations are honoured.
    #[serde(default)]
    pub job_declarations: JobDeclarations,
    /// Globs of the secret-engine mounts a job may name (empty: any mount).
    #[serde(default)]
    pub allowed_mounts: Vec<String>,
    /// Globs of the JWT roles a job may name with `VAULT_AUTH_ROLE` (empty: any role).
    #[serde(default)]
    pub allowed_roles: Vec<String>,
}

/// `job_declarations`: when `LEASEHOLD_SECRETS` is honoured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobDeclarations {
    /// On every ref.
    #[default]
    Always,
    /// Only when the job runs for a protected branch or tag.
    ProtectedRefsOnly,
    /// Never: jobs get only what bindings grant.
    Never,
}

impl JobDeclarations {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            JobDeclarations::Always => "always",
            JobDeclarations::ProtectedRefsOnly => "protected_refs_only",
            JobDeclarations::Never => "never",
        }
    }
}

/// Whether the job's ref is protected, and who says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefProtection {
    /// The branch or tag.
    pub git_ref: String,
    /// `Some(true)`: protected; `None`: nobody said.
    pub protected: Option<bool>,
    /// Where the answer came from, for messages.
    pub source: &'static str,
}

impl PolicySection {
    /// Checks the globs once, at config load.
    pub fn validate(&self) -> Result<(), String> {
        for (key, patterns) in [
            ("allowed_mounts", &self.allowed_mounts),
            ("allowed_roles", &self.allowed_roles),
        ] {
            for pattern in patterns {
                glob(pattern)
                    .map_err(|e| format!("policy.{key}: invalid pattern {pattern:?}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Decides whether the job's own declarations may be used at all.
    pub fn admit_declarations(
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
    pub fn check_names(
        &self,
        declarations: &[Declaration],
        job_role: Option<&str>,
    ) -> Result<(), PolicyError> {
        if let Some(role) = job_role
            && !matches_any(&self.allowed_roles, role)
        {
            return Err(PolicyError::RoleNotAllowed {
                role: role.to_owned(),
                allowed: self.allowed_roles.clone(),
            });
        }
        for declaration in declarations {
            let mount = &declaration.source.mount;
            if !matches_any(&self.allowed_mounts, mount) {
                return Err(PolicyError::MountNotAllowed {
                    name: declaration.name.clone(),
                    mount: mount.clone(),
                    allowed: self.allowed_mounts.clone(),
                });
            }
        }
        Ok(())
    }
}

fn glob(pattern: &str) -> Result<globset::GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()?
        .compile_matcher())
}

/// Whether `value` matches one of `patterns`; an empty list allows everything.
fn matches_any(patterns: &[String], value: &str) -> bool {
    patterns.is_empty()
        || patterns
            .iter()
            .any(|p| glob(p).is_ok_and(|g| g.is_match(value)))
}

/// A job asked for something the fleet policy does not allow. Always the job's fault.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
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
    pub fn failure_kind(&self) -> FailureKind {
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
        let mut policy = PolicySection::default();
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
        let mut policy = PolicySection::default();
        assert!(
            policy
                .check_names(&[decl("anything")], Some("any-role"))
                .is_ok()
        );
        policy.allowed_mounts = vec!["kv-ci".into(), "teams/*".into()];
        policy.allowed_roles = vec!["ci-*".into()];
        policy.validate().expect("valid globs");
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
        policy.allowed_roles = vec!["[".into()];
        assert!(
            policy
                .validate()
                .expect_err("refused")
                .contains("allowed_roles")
        );
    }
}
