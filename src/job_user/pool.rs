//! `[executor] user_pool`: a uid of its own for every job attempt, taken at prepare and given
//! back at cleanup (or by the reaper, or by a later prepare when its job is over).
//!
//! Why a uid per job: processes of one uid can read each other's `/proc/<pid>/environ` and
//! files, so jobs that share an account (root, or one static `[executor] user`) can read each
//! other's live secrets. With a uid nobody else holds while the job runs, and the job's build
//! dir and HOME owned by it (0700), a concurrent job sees none of it.
//!
//! Seats are files `<state_dir>/user-pool/<uid>` holding the state id of the attempt that holds
//! the uid. Two locks keep them consistent across processes:
//! - the pool lock `<state_dir>/user-pool/.lock` (`flock`), held while a seat file is created,
//!   taken over or deleted, so that two prepares never pick the same uid;
//! - a seat's own `flock`, held while its uid is being cleared (its processes killed, its
//!   directories removed), so that no prepare takes the uid over halfway through.
//!
//! A seat is stale, and can be taken over, when its attempt has no state directory any more,
//! or its journal is unreadable, says cleanup failed, or is past the job's timeout plus
//! `[leases] reap_grace_seconds`. Taking a uid over (or giving it back) first ends every process
//! of it and removes the directories its last attempt recorded, so nothing of one job is left to
//! the next.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Gid, Uid};

use super::JobUserError;
use super::build_dir;
use crate::config::{Config, RunAs, UidRange};
use crate::state::{JobDir, JobStatus, Journal, JournalSeat, Seat, StateDir, StateId, unix_now};
use crate::supervision::UserIds;

/// The directory of seat files below `state_dir`.
pub(crate) const POOL_DIR: &str = "user-pool";
const POOL_LOCK: &str = ".lock";

/// The pool of one config: its uids, its seat files, and where its jobs' directories live.
#[derive(Debug)]
pub(crate) struct Pool {
    range: UidRange,
    dir: PathBuf,
    state: StateDir,
    grace: u64,
    /// The only directories below which a seat's recorded directories are ever removed.
    roots: Vec<PathBuf>,
}

/// A seat taken by [`Pool::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    /// The uid.
    pub uid: Uid,
    /// Whether the seat was taken over from an attempt that is over.
    pub reclaimed: bool,
}

impl Pool {
    /// The config's pool, when it has `[executor] user_pool`.
    pub(crate) fn of(config: &Config) -> Result<Option<Pool>, JobUserError> {
        let RunAs::Pool(range) = &config.executor.run_as else {
            return Ok(None);
        };
        let state =
            StateDir::open(&config.state_dir).map_err(|e| JobUserError::Host(e.to_string()))?;
        let dir = config.state_dir.join(POOL_DIR);
        crate::private_fs::open_private_dir(&dir).map_err(|e| JobUserError::Host(e.to_string()))?;
        Ok(Some(Pool {
            range: range.clone(),
            dir,
            state,
            grace: config.leases.reap_grace_seconds,
            roots: vec![config.builds_dir.clone(), config.executor.files_dir.clone()],
        }))
    }

    /// The gid a pool uid runs with: the configured group's, else the uid's own number.
    pub(crate) fn gid_for(&self, uid: Uid) -> Result<Gid, JobUserError> {
        match &self.range.group {
            None => Ok(Gid::from_raw(uid.as_raw())),
            Some(name) => nix::unistd::Group::from_name(name)
                .map_err(|e| {
                    JobUserError::Host(format!("cannot look up the job group {name}: {e}"))
                })?
                .map(|g| g.gid)
                .ok_or_else(|| {
                    JobUserError::Host(format!(
                        "the job group {name} ([executor] group) does not exist on this host"
                    ))
                }),
        }
    }

    /// Takes a free uid for the attempt `id`: the first without a seat, else the first whose
    /// seat is stale. Every uid in use by a running job: a system failure, so that the runner
    /// tries again later.
    pub(crate) fn take(&self, id: &StateId) -> Result<Taken, JobUserError> {
        let _pool = self.lock_pool()?;
        for uid in self.range.first..=self.range.last {
            let path = self.seat_path(uid);
            match File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&path)
            {
                Ok(mut file) => {
                    write_holder(&mut file, id, &path)?;
                    let uid = Uid::from_raw(uid);
                    // A uid never handed out by this pool may still run something (a process
                    // left from another state_dir, or an account that uses it): end it.
                    self.end_processes(uid)?;
                    return Ok(Taken {
                        uid,
                        reclaimed: false,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(JobUserError::Host(format!(
                        "cannot create the seat {}: {e}",
                        path.display()
                    )));
                }
            }
            if let Some(taken) = self.take_over(uid, id)? {
                return Ok(taken);
            }
        }
        Err(JobUserError::Host(format!(
            "every uid of [executor] user_pool {} ({} uids) is held by a running job; the runner will retry this job; widen user_pool or lower gitlab-runner's concurrent",
            self.range,
            self.range.len()
        )))
    }

    /// Takes over the seat of `uid` if it is stale and no one is clearing it.
    fn take_over(&self, uid: u32, id: &StateId) -> Result<Option<Taken>, JobUserError> {
        let path = self.seat_path(uid);
        let Ok(file) = open_seat(&path) else {
            return Ok(None);
        };
        let mut seat = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(seat) => seat,
            Err(_) => return Ok(None),
        };
        let holder = read_holder(&mut seat);
        let Some(dirs) = self.stale(&holder) else {
            return Ok(None);
        };
        let uid = Uid::from_raw(uid);
        self.clear(uid, &dirs)?;
        write_holder(&mut seat, id, &path)?;
        Ok(Some(Taken {
            uid,
            reclaimed: true,
        }))
    }

    /// `Some(recorded dirs)` when the attempt named `holder` is over, `None` while it may run.
    fn stale(&self, holder: &str) -> Option<Vec<PathBuf>> {
        let Ok(id) = StateId::parse(holder.trim()) else {
            return Some(Vec::new());
        };
        let job = self.state.job(&id);
        if !job.exists() {
            return Some(Vec::new());
        }
        match job.read_journal() {
            Err(_) => Some(Vec::new()),
            Ok(journal)
                if journal.status == JobStatus::CleanupFailed
                    || journal.is_over(unix_now(), self.grace) =>
            {
                Some(journal.seat.map(|s| s.dirs).unwrap_or_default())
            }
            Ok(_) => None,
        }
    }

    /// Whether `uid` is held by an attempt that may still run (and is not `except`).
    pub(crate) fn held_by_other(&self, uid: u32, except: &StateId) -> bool {
        if !self.range.contains(uid) {
            return false;
        }
        let Ok(mut file) = open_seat(&self.seat_path(uid)) else {
            return false;
        };
        let holder = read_holder(&mut file);
        holder.trim() != except.as_str() && self.stale(&holder).is_none()
    }

    /// Gives `uid` back if the attempt `id` holds it: ends its processes, removes `dirs` (those
    /// still owned by it), then deletes the seat. Returns whether it was held by `id`.
    pub(crate) fn give_back(
        &self,
        uid: Uid,
        id: &StateId,
        dirs: &[PathBuf],
    ) -> Result<bool, JobUserError> {
        let path = self.seat_path(uid.as_raw());
        let Ok(file) = open_seat(&path) else {
            return Ok(false);
        };
        let mut seat = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| JobUserError::Host(format!("cannot lock {}: {e}", path.display())))?;
        if read_holder(&mut seat).trim() != id.as_str() {
            return Ok(false);
        }
        self.clear(uid, dirs)?;
        let _pool = self.lock_pool()?;
        std::fs::remove_file(&path).map_err(|e| {
            JobUserError::Host(format!("cannot delete the seat {}: {e}", path.display()))
        })?;
        Ok(true)
    }

    /// The uid the attempt `id` holds, found by its seat file (for an attempt whose journal
    /// does not say: prepare died between taking the seat and recording it).
    pub(crate) fn seat_of(&self, id: &StateId) -> Option<Uid> {
        (self.range.first..=self.range.last)
            .find(|uid| {
                open_seat(&self.seat_path(*uid))
                    .is_ok_and(|mut file| read_holder(&mut file).trim() == id.as_str())
            })
            .map(Uid::from_raw)
    }

    /// Ends every process of `uid` and removes `dirs` (below the pool's roots, owned by `uid`).
    fn clear(&self, uid: Uid, dirs: &[PathBuf]) -> Result<(), JobUserError> {
        self.end_processes(uid)?;
        for dir in dirs {
            let Some(root) = self.roots.iter().find(|r| dir.starts_with(r) && dir != *r) else {
                continue;
            };
            build_dir::remove_owned(root, dir, Some(uid))?;
        }
        Ok(())
    }

    fn end_processes(&self, uid: Uid) -> Result<(), JobUserError> {
        let ids = UserIds {
            uid,
            gid: self.gid_for(uid)?,
            groups: Vec::new(),
        };
        let ids = UserIds {
            groups: vec![ids.gid],
            ..ids
        };
        match crate::supervision::sweep::end_every_process_of(&ids) {
            Ok(left) if left.is_empty() => Ok(()),
            Ok(left) => Err(JobUserError::Host(format!(
                "processes {left:?} of pool uid {uid} survived SIGKILL; the uid is not handed to another job"
            ))),
            Err(e) => Err(JobUserError::Host(format!(
                "cannot end the processes of pool uid {uid}: {e}"
            ))),
        }
    }

    fn seat_path(&self, uid: u32) -> PathBuf {
        self.dir.join(uid.to_string())
    }

    fn lock_pool(&self) -> Result<Flock<File>, JobUserError> {
        let path = self.dir.join(POOL_LOCK);
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| JobUserError::Host(format!("cannot open {}: {e}", path.display())))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| JobUserError::Host(format!("cannot lock {}: {e}", path.display())))
    }
}

/// prepare's part with `[executor] user_pool`: takes a uid for the attempt of `job_dir`, records
/// it (and the directories about to be made for it) in the journal, and gives it a fresh HOME
/// and the job's project dir with its `.tmp` sibling, each 0700 and owned by the uid. `None`
/// without a pool. The project dir is checked before a uid is taken.
pub(crate) fn seat_attempt(
    config: &Config,
    job_dir: &JobDir,
    journal: &mut Journal,
    project_dir: Option<&Path>,
) -> Result<Option<(Seat, Taken)>, JobUserError> {
    let Some(pool) = Pool::of(config)? else {
        return Ok(None);
    };
    if !nix::unistd::geteuid().is_root() {
        return Err(JobUserError::Host(format!(
            "[executor] user_pool needs leasehold to run as root (it runs as uid {})",
            nix::unistd::geteuid()
        )));
    }
    let id = job_dir.id();
    let project = project_dir.filter(|p| !p.as_os_str().is_empty()).ok_or_else(|| {
        JobUserError::Host(
            "CUSTOM_ENV_CI_PROJECT_DIR is not set, so the job's project dir cannot be given to its pool uid; leasehold prepare must be called by gitlab-runner".into(),
        )
    })?;
    build_dir::components_below(&config.builds_dir, project)?;
    let mut tmp = project.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let home = home_of(&config.executor.files_dir, id);

    let taken = pool.take(id)?;
    let gid = pool.gid_for(taken.uid)?;
    let owner = (taken.uid, gid);
    journal.seat = Some(JournalSeat {
        uid: taken.uid.as_raw(),
        gid: gid.as_raw(),
        dirs: vec![project.to_owned(), tmp.clone(), home.clone()],
    });
    job_dir
        .write_journal(journal)
        .map_err(|e| JobUserError::Host(e.to_string()))?;

    ensure_files_dir(&config.executor.files_dir)?;
    create_builds_dir(&config.builds_dir)?;
    build_dir::create_owned(&config.executor.files_dir, &home, owner, 0o700, |_| Ok(()))?;
    for dir in [project, tmp.as_path()] {
        build_dir::create_owned(&config.builds_dir, dir, owner, 0o700, |existing| {
            if pool.held_by_other(existing.uid, id) {
                Err(JobUserError::Host(format!(
                    "the job's dir {} belongs to pool uid {}, held by another running job; set builds_dir_is_shared = true so that concurrent jobs of one project get dirs of their own",
                    dir.display(),
                    existing.uid
                )))
            } else {
                Ok(())
            }
        })?;
    }
    Ok(Some((
        Seat {
            uid: taken.uid.as_raw(),
            gid: gid.as_raw(),
        },
        taken,
    )))
}

/// cleanup's and the reaper's part: gives back the uid the attempt `id` holds (from its journal's
/// `seat`, else found by its seat file), after ending its processes and removing the
/// directories made for it. `Ok(None)`: no pool, or the attempt holds no uid.
pub(crate) fn release_attempt(
    config: &Config,
    id: &StateId,
    seat: Option<&JournalSeat>,
) -> Result<Option<u32>, JobUserError> {
    let Some(pool) = Pool::of(config)? else {
        return Ok(None);
    };
    let (uid, dirs) = match seat {
        Some(seat) => (Uid::from_raw(seat.uid), seat.dirs.clone()),
        None => match pool.seat_of(id) {
            Some(uid) => (uid, Vec::new()),
            None => return Ok(None),
        },
    };
    Ok(pool.give_back(uid, id, &dirs)?.then_some(uid.as_raw()))
}

/// builds_dir as gitlab-runner's shell executor makes it (0755); an existing one is checked on
/// the way down by [`build_dir::create_owned`].
fn create_builds_dir(dir: &Path) -> Result<(), JobUserError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| JobUserError::Host(format!("cannot create builds_dir {}: {e}", dir.display())))
}

/// `files_dir` as [`crate::inject`] makes it: 0711, owned by leasehold's user.
fn ensure_files_dir(dir: &Path) -> Result<(), JobUserError> {
    use std::os::unix::fs::DirBuilderExt;
    let host = |e: &dyn std::fmt::Display| JobUserError::Host(e.to_string());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)
        .map_err(|e| JobUserError::Host(format!("cannot create {}: {e}", dir.display())))?;
    crate::private_fs::check_owner(dir).map_err(|e| host(&e))?;
    crate::private_fs::set_dir_mode_and_owner(dir, 0o711, None).map_err(|e| host(&e))
}

/// The HOME of the attempt `id`'s pool uid: below `files_dir`, named so that cleanup's removal
/// of the attempt's stage directories (`<id>-…`) takes it too.
pub(crate) fn home_of(files_dir: &Path, id: &StateId) -> PathBuf {
    files_dir.join(format!("{}-home", id.as_str()))
}

fn open_seat(path: &Path) -> std::io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    text
}

/// Not synced: a seat whose content a crash lost names no attempt, so it counts as stale.
fn write_holder(file: &mut File, id: &StateId, path: &Path) -> Result<(), JobUserError> {
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(format!("{}\n", id.as_str()).as_bytes()))
        .map_err(|e| JobUserError::Host(format!("cannot write the seat {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::FailureKind;
    use crate::state::Journal;

    fn config(dir: &Path, range: &str) -> Config {
        Config::parse(&format!(
            "state_dir = \"{0}/state\"\nbuilds_dir = \"{0}/builds\"\n[vault]\naddress = \"https://v\"\n[executor]\nuser_pool = \"{range}\"\nfiles_dir = \"{0}/files\"\n",
            dir.display()
        ))
        .expect("config")
    }

    /// A live attempt: its state dir and a fresh journal, as prepare writes them before taking
    /// a seat.
    fn attempt(config: &Config) -> (StateId, crate::state::JobDir) {
        let root = StateDir::open(&config.state_dir).expect("state");
        let id = StateId::generate("7");
        let job = root.job(&id);
        job.create().expect("create");
        let tag = crate::vault::AuditTag {
            job_id: 7,
            project: "g/p".into(),
            pipeline_id: 0,
        };
        job.write_journal(&Journal::new(id.as_str(), &tag, unix_now(), 3600))
            .expect("journal");
        (id, job)
    }

    #[test]
    fn concurrent_takes_get_distinct_uids_and_a_full_pool_says_so() {
        let dir = tempfile::tempdir().expect("tmp");
        let config = config(dir.path(), "63000-63007");
        let attempts: Vec<_> = (0..8).map(|_| attempt(&config)).collect();
        let barrier = std::sync::Barrier::new(attempts.len());
        let mut uids: Vec<u32> = std::thread::scope(|s| {
            let handles: Vec<_> = attempts
                .iter()
                .map(|(id, _)| {
                    let (config, barrier) = (&config, &barrier);
                    s.spawn(move || {
                        let pool = Pool::of(config).expect("pool").expect("configured");
                        barrier.wait();
                        pool.take(id).expect("a free uid").uid.as_raw()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        uids.sort_unstable();
        assert_eq!(uids, (63000..=63007).collect::<Vec<_>>());

        let pool = Pool::of(&config).expect("pool").expect("configured");
        let (late, _) = attempt(&config);
        let err = pool.take(&late).expect_err("full");
        assert_eq!(
            err.to_string(),
            "every uid of [executor] user_pool 63000-63007 (8 uids) is held by a running job; the runner will retry this job; widen user_pool or lower gitlab-runner's concurrent"
        );
        assert_eq!(err.failure_kind(), FailureKind::System);

        // An attempt whose cleanup failed is over: its uid can be taken over, once.
        let (over, over_dir) = &attempts[3];
        let uid = pool.seat_of(over).expect("held");
        let mut journal = over_dir.read_journal().expect("journal");
        journal.status = JobStatus::CleanupFailed;
        over_dir.write_journal(&journal).expect("write");
        assert!(!pool.held_by_other(uid.as_raw(), &late));
        let taken = pool.take(&late).expect("taken over");
        assert_eq!(
            taken,
            Taken {
                uid,
                reclaimed: true
            }
        );
        assert_eq!(pool.seat_of(&late), Some(uid));
        assert!(pool.held_by_other(uid.as_raw(), over));
        assert!(!pool.give_back(uid, over, &[]).expect("not its any more"));

        // A seat whose attempt left no state behind is stale too; giving back frees it.
        std::fs::remove_dir_all(attempts[5].1.dir()).expect("rm");
        let (next, _) = attempt(&config);
        let taken = pool.take(&next).expect("taken over");
        assert!(taken.reclaimed);
        assert!(pool.give_back(taken.uid, &next, &[]).expect("given back"));
        assert_eq!(pool.seat_of(&next), None);
        let (again, _) = attempt(&config);
        assert_eq!(
            pool.take(&again).expect("free again"),
            Taken {
                uid: taken.uid,
                reclaimed: false
            }
        );
    }
}
