//! The local account a job runs as when leasehold (as root) drops privileges for it.
//!
//! The order is fixed by POSIX semantics: supplementary groups first (only root may set them),
//! then the group, then the user, in the forked child before exec (see `supervision`).
//! The group list is computed here, in the parent, because NSS lookups are not safe after fork.

use std::path::PathBuf;

use nix::unistd::{Gid, Group, Uid, User};

use crate::config::RunAs;
use crate::exit::FailureKind;
use crate::supervision::UserIds;

/// A resolved local user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobUser {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: Uid,
    /// Primary group id (or the configured group).
    pub gid: Gid,
    /// Supplementary groups, from the group database.
    pub groups: Vec<Gid>,
    /// Home directory.
    pub home: PathBuf,
}

impl JobUser {
    /// The ids a child drops to.
    pub(crate) fn ids(&self) -> UserIds {
        UserIds {
            uid: self.uid,
            gid: self.gid,
            groups: self.groups.clone(),
        }
    }

    /// Looks the user (and optional group) up in the system databases.
    pub(crate) fn lookup(name: &str, group: Option<&str>) -> Result<Self, JobUserError> {
        let user = User::from_name(name)
            .map_err(|e| JobUserError::Host(format!("cannot look up the job user {name}: {e}")))?
            .ok_or_else(|| JobUserError::Host(format!("the job user {name} does not exist on this host; create it or fix [executor] user")))?;
        let gid = match group {
            Some(group) => {
                Group::from_name(group)
                    .map_err(|e| {
                        JobUserError::Host(format!("cannot look up the job group {group}: {e}"))
                    })?
                    .ok_or_else(|| {
                        JobUserError::Host(format!(
                            "the job group {group} does not exist on this host"
                        ))
                    })?
                    .gid
            }
            None => user.gid,
        };
        let cname = std::ffi::CString::new(name)
            .map_err(|_| JobUserError::Host(format!("invalid user name {name:?}")))?;
        let mut groups = nix::unistd::getgrouplist(&cname, gid)
            .map_err(|e| JobUserError::Host(format!("cannot list the groups of {name}: {e}")))?;
        if !groups.contains(&gid) {
            groups.push(gid);
        }
        if user.uid.is_root() {
            return Err(JobUserError::Host(
                "refusing to run jobs as root through [executor] user".into(),
            ));
        }
        Ok(JobUser {
            name: user.name,
            uid: user.uid,
            gid,
            groups,
            home: user.dir,
        })
    }
}

/// Picks the job's user from a verified claim value, through `user_map` and the allow-list.
pub(crate) fn user_from_claim(
    claim: &str,
    value: Option<&str>,
    map: &std::collections::BTreeMap<String, String>,
    allowed: &crate::patterns::Patterns,
) -> Result<String, JobUserError> {
    let value = value.filter(|v| !v.is_empty()).ok_or_else(|| {
        JobUserError::Job(format!(
            "the job's verified ID token has no {claim} claim to pick its local user from"
        ))
    })?;
    let user = map.get(value).map_or(value, String::as_str);
    if !allowed.matches(user) {
        return Err(JobUserError::Job(format!(
            "{claim}={value} maps to local user {user}, which [executor] allowed_users does not list; ask the runner admin to allow it"
        )));
    }
    Ok(user.to_owned())
}

impl JobUser {
    /// The user this job's processes run as: the one chosen from its verified claims at
    /// prepare (`chosen`), else the configured `[executor] user`; `None`: leasehold's own user.
    pub(crate) fn for_job(
        run_as: &RunAs,
        chosen: Option<&str>,
    ) -> Result<Option<Self>, JobUserError> {
        let fixed = match run_as {
            RunAs::User { name, .. } => Some(name.as_str()),
            _ => None,
        };
        let Some(name) = chosen.or(fixed) else {
            return Ok(None);
        };
        if !nix::unistd::geteuid().is_root() {
            return Err(JobUserError::Host(format!(
                "[executor] user {name} needs leasehold to run as root (it runs as uid {})",
                nix::unistd::geteuid()
            )));
        }
        JobUser::lookup(name, run_as.group()).map(Some)
    }
}

/// The job's local user cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JobUserError {
    /// The job may not run as the user it asks for (from its claims): the job's problem.
    #[error("{0}")]
    Job(String),
    /// The configured job user cannot be used on this host: the admin's problem.
    #[error("{0}")]
    Host(String),
}

impl JobUserError {
    /// A user outside the allow-list is the job's fault; the rest is the host's.
    pub(crate) fn failure_kind(&self) -> FailureKind {
        match self {
            JobUserError::Job(_) => FailureKind::Build,
            JobUserError::Host(_) => FailureKind::System,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_mapping_goes_through_map_and_allow_list() {
        let map = [("alice".to_owned(), "ci-alice".to_owned())]
            .into_iter()
            .collect();
        let allowed = crate::patterns::Patterns::new(&["ci-*"]).expect("valid");
        assert_eq!(
            user_from_claim("user_login", Some("alice"), &map, &allowed).expect("mapped"),
            "ci-alice"
        );
        assert!(user_from_claim("user_login", Some("root"), &map, &allowed).is_err());
        assert!(user_from_claim("user_login", None, &map, &allowed).is_err());
    }

    #[test]
    fn root_is_refused_and_unknown_users_are_named() {
        assert!(JobUser::lookup("root", None).is_err());
        let err = JobUser::lookup("no-such-user-leasehold", None).expect_err("unknown");
        assert!(err.to_string().contains("no-such-user-leasehold"));
    }
}
