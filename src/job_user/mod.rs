//! The local account a job runs as when leasehold (as root) drops privileges for it.
//!
//! The order is fixed by POSIX semantics: supplementary groups first (only root may set them),
//! then the group, then the user, in the forked child before exec (see `supervision`).
//! The group list is computed here, in the parent, because NSS lookups are not safe after fork.
//!
//! - [`pool`]: `[executor] user_pool`, a uid of its own per job attempt;
//! - [`build_dir`]: the directories handed to a pool uid, reached without following symlinks.

pub(crate) mod build_dir;
pub(crate) mod pool;

use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

use crate::config::{Executor, ExecutorSettings, RunAs};
use crate::exit::FailureKind;
use crate::state::{Seat, StateId};
use crate::supervision::UserIds;

/// Refuses to run job scripts as root unless the admin opted in: with the shell executor, no
/// job user and leasehold running as root, every job could read every other job's state key
/// (in its leasehold's environment), its secrets and its files. Checked by prepare before any
/// Vault request, and by run; cleanup and reap never depend on it.
pub(crate) fn refuse_root_jobs(executor: &ExecutorSettings) -> Result<(), JobUserError> {
    let jobs_as_root = matches!(executor.kind, Executor::Shell { .. })
        && matches!(executor.run_as, RunAs::Leasehold)
        && nix::unistd::geteuid().is_root();
    if jobs_as_root && !executor.allow_root {
        return Err(JobUserError::Host(
            "refusing to run the job as root: leasehold runs as root and [executor] names no job user, so every job could read every other job's secrets; set [executor] user (e.g. \"gitlab-runner\") or user_pool, or allow_root = true to accept that".into(),
        ));
    }
    Ok(())
}

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

/// What prepare decided about the job's user, as its sealed state recorded it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chosen<'a> {
    /// The user picked from the verified claims (`user_from_claim`).
    pub from_claim: Option<&'a str>,
    /// The pool uid the attempt holds (`user_pool`).
    pub seat: Option<Seat>,
    /// The attempt.
    pub id: &'a StateId,
    /// `[executor] files_dir`, where a pool uid's HOME is.
    pub files_dir: &'a Path,
}

impl JobUser {
    /// The user this job's processes run as: its pool uid, the one chosen from its verified
    /// claims at prepare, else the configured `[executor] user`; `None`: leasehold's own user
    /// (also when `[executor] user` names leasehold's own user and leasehold is not root).
    pub(crate) fn for_job(
        run_as: &RunAs,
        chosen: Chosen<'_>,
    ) -> Result<Option<Self>, JobUserError> {
        if let RunAs::Pool(range) = run_as {
            let seat = chosen.seat.ok_or_else(|| {
                JobUserError::Host(format!(
                    "the job's state holds no uid of [executor] user_pool {range}: was the config changed after prepare?"
                ))
            })?;
            return JobUser::for_seat(seat, pool::home_of(chosen.files_dir, chosen.id)).map(Some);
        }
        let fixed = match run_as {
            RunAs::User { name, .. } => Some(name.as_str()),
            _ => None,
        };
        let Some(name) = chosen.from_claim.or(fixed) else {
            return Ok(None);
        };
        let euid = nix::unistd::geteuid();
        if !euid.is_root() {
            if User::from_name(name)
                .ok()
                .flatten()
                .is_some_and(|u| u.uid == euid)
            {
                return Ok(None);
            }
            return Err(JobUserError::Host(format!(
                "[executor] user {name} needs leasehold to run as root (it runs as uid {euid})"
            )));
        }
        JobUser::lookup(name, run_as.group()).map(Some)
    }

    /// A pool uid: no account needed. Its only group is its gid; its name is the account's
    /// when one exists, else the uid's number; its HOME is the attempt's own.
    pub(crate) fn for_seat(seat: Seat, home: PathBuf) -> Result<Self, JobUserError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(JobUserError::Host(format!(
                "[executor] user_pool needs leasehold to run as root (it runs as uid {})",
                nix::unistd::geteuid()
            )));
        }
        if seat.uid == 0 || seat.gid == 0 {
            return Err(JobUserError::Host(
                "refusing to run a pool job as root's uid or gid".into(),
            ));
        }
        let uid = Uid::from_raw(seat.uid);
        let gid = Gid::from_raw(seat.gid);
        let name = User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| seat.uid.to_string(), |u| u.name);
        Ok(JobUser {
            name,
            uid,
            gid,
            groups: vec![gid],
            home,
        })
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
