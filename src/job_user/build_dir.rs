//! Directories handed to a pool uid (the job's project dir, its `.tmp` sibling, its HOME),
//! reached one component at a time from a trusted root without ever following a symlink.
//!
//! Why descriptors: leasehold runs as root here and `chown`s what it creates to a job's uid, and
//! removes what a job left. A path-based call would follow a symlink a job planted anywhere on
//! the way (`builds/grp -> /etc`) and hand or delete something outside the builds dir. So every
//! step is `openat(…, O_NOFOLLOW | O_DIRECTORY)` from the previous directory's descriptor, every
//! directory on the way must be a real directory owned by leasehold's user and not writable by
//! group or others (nobody else can swap a component after it was checked), and the mode and
//! owner are set through the new directory's own descriptor (`fchmod`, `fchown`).

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, unlinkat};

use super::JobUserError;

/// The components of `path` below `root`, refusing anything that is not strictly below it by
/// its plain spelling: relative paths, `.` and `..` anywhere, and `root` itself.
pub(crate) fn components_below(root: &Path, path: &Path) -> Result<Vec<OsString>, JobUserError> {
    let outside = || {
        JobUserError::Job(format!(
            "the job's project dir {} is not strictly below builds_dir {}; if the job sets GIT_CLONE_PATH, make it a plain path below $CI_BUILDS_DIR",
            path.display(),
            root.display()
        ))
    };
    let dotted = path
        .as_os_str()
        .as_bytes()
        .split(|b| *b == b'/')
        .any(|part| part == b"." || part == b"..");
    if !path.is_absolute() || dotted {
        return Err(outside());
    }
    let rest = path.strip_prefix(root).map_err(|_| outside())?;
    let parts: Vec<OsString> = rest
        .components()
        .map(|c| match c {
            Component::Normal(name) => Ok(name.to_owned()),
            _ => Err(outside()),
        })
        .collect::<Result<_, _>>()?;
    if parts.is_empty() {
        return Err(outside());
    }
    Ok(parts)
}

/// What is at the place of a directory about to be created: its owner, to decide whether it
/// may be replaced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Existing {
    /// The owner of what is there (a directory, file or symlink).
    pub uid: u32,
}

/// Creates `path` (strictly below `root`) as a fresh directory with `mode`, owned by `owner`.
/// Missing directories on the way are created 0755, owned by leasehold's user. Whatever is at
/// `path` already is removed first (never followed) if `may_replace` allows it.
pub(crate) fn create_owned(
    root: &Path,
    path: &Path,
    owner: (Uid, Gid),
    mode: u32,
    may_replace: impl FnOnce(Existing) -> Result<(), JobUserError>,
) -> Result<(), JobUserError> {
    let parts = components_below(root, path)?;
    let (name, parents) = parts
        .split_last()
        .ok_or_else(|| JobUserError::Host(format!("{} has no last component", path.display())))?;
    let parent = walk(root, parents, true)?.ok_or_else(|| {
        JobUserError::Host(format!("cannot create the parents of {}", path.display()))
    })?;
    match fstatat(
        parent.as_fd(),
        name.as_os_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(stat) => {
            may_replace(Existing { uid: stat.st_uid })?;
            remove_entry(parent.as_fd(), name).map_err(io("remove the leftover", path))?;
        }
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(io("inspect", path)(e)),
    }
    mkdirat(
        parent.as_fd(),
        name.as_os_str(),
        Mode::from_bits_truncate(0o700),
    )
    .map_err(io("create", path))?;
    let dir = open_dir_at(parent.as_fd(), name).map_err(io("open", path))?;
    fchown(&dir, Some(owner.0), Some(owner.1)).map_err(io("chown", path))?;
    fchmod(&dir, Mode::from_bits_truncate(mode)).map_err(io("chmod", path))?;
    Ok(())
}

/// Removes `path` (strictly below `root`) and everything in it, when it is there and, with
/// `owner`, owned by that uid (a directory someone else holds now is left alone). The directory
/// is first given to leasehold's user with mode 0700, so that nothing in it stays reachable for
/// its former owner even if the removal stops halfway (that is then only a warning). A path
/// whose way down is not safe to walk (a symlink, a directory someone else may write) leads to
/// nothing [`create_owned`] made, which never walks such a way: there is nothing to remove.
/// Returns whether something was removed.
pub(crate) fn remove_owned(
    root: &Path,
    path: &Path,
    owner: Option<Uid>,
) -> Result<bool, JobUserError> {
    let Ok(parts) = components_below(root, path) else {
        return Ok(false);
    };
    let Some((name, parents)) = parts.split_last() else {
        return Ok(false);
    };
    let Ok(Some(parent)) = walk(root, parents, false) else {
        return Ok(false);
    };
    let stat = match fstatat(
        parent.as_fd(),
        name.as_os_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(stat) => stat,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(io("inspect", path)(e)),
    };
    if owner.is_some_and(|uid| uid.as_raw() != stat.st_uid) {
        return Ok(false);
    }
    if SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR {
        let dir = open_dir_at(parent.as_fd(), name).map_err(io("open", path))?;
        fchown(
            &dir,
            Some(nix::unistd::geteuid()),
            Some(nix::unistd::getegid()),
        )
        .map_err(io("chown", path))?;
        fchmod(&dir, Mode::from_bits_truncate(0o700)).map_err(io("chmod", path))?;
    }
    if let Err(e) = remove_entry(parent.as_fd(), name) {
        crate::joblog::warning(&format!(
            "could not remove all of {} ({e}); what is left belongs to root (0700) now",
            path.display()
        ));
    }
    Ok(true)
}

/// Opens `root` and then each of `parents` below it, creating missing ones when `create`
/// (0755, owned by us). Each must be a real directory owned by leasehold's user that group and
/// others cannot write. `None`: one is missing and `create` is false.
fn walk(root: &Path, parents: &[OsString], create: bool) -> Result<Option<OwnedFd>, JobUserError> {
    let mut dir = nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ENOENT if !create => {
            JobUserError::Host(format!("{} does not exist", root.display()))
        }
        Errno::ELOOP | Errno::ENOTDIR => unsafe_dir(root, "it is a symlink or not a directory"),
        e => io("open", root)(e),
    })?;
    trusted(&dir, root)?;
    let mut at = root.to_path_buf();
    for name in parents {
        at.push(name);
        let next = match open_dir_at(dir.as_fd(), name) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if !create => return Ok(None),
            Err(Errno::ENOENT) => {
                match mkdirat(
                    dir.as_fd(),
                    name.as_os_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io("create", &at)(e)),
                }
                let fd = open_dir_at(dir.as_fd(), name).map_err(|e| opened(e, &at))?;
                fchmod(&fd, Mode::from_bits_truncate(0o755)).map_err(io("chmod", &at))?;
                fd
            }
            Err(e) => return Err(opened(e, &at)),
        };
        trusted(&next, &at)?;
        dir = next;
    }
    Ok(Some(dir))
}

fn opened(e: Errno, path: &Path) -> JobUserError {
    match e {
        Errno::ELOOP | Errno::ENOTDIR => unsafe_dir(path, "it is a symlink or not a directory"),
        e => io("open", path)(e),
    }
}

/// A directory on the way must be ours and closed to writers other than us.
fn trusted(dir: &OwnedFd, path: &Path) -> Result<(), JobUserError> {
    let stat = fstat(dir).map_err(io("inspect", path))?;
    if stat.st_uid != nix::unistd::geteuid().as_raw() {
        return Err(unsafe_dir(
            path,
            &format!("it is owned by uid {}, not by leasehold's", stat.st_uid),
        ));
    }
    if stat.st_mode & 0o022 != 0 {
        return Err(unsafe_dir(
            path,
            &format!(
                "group or others may write it (mode {:o})",
                stat.st_mode & 0o7777
            ),
        ));
    }
    Ok(())
}

fn unsafe_dir(path: &Path, reason: &str) -> JobUserError {
    JobUserError::Host(format!(
        "refusing to hand a directory below {} to a job: {reason}; with [executor] user_pool, builds_dir and every directory in it above the project dirs must be owned by root and not writable by others (chown root: {0} && chmod 0755 {0})",
        path.display()
    ))
}

fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY
            | OFlag::O_DIRECTORY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Removes the entry `name` of `parent`: a directory with everything in it, anything else
/// (symlinks included, never followed) by unlinking it.
fn remove_entry(parent: BorrowedFd<'_>, name: &OsStr) -> nix::Result<()> {
    match open_dir_at(parent, name) {
        Ok(dir) => {
            empty(dir)?;
            unlinkat(parent, name, UnlinkatFlags::RemoveDir)
        }
        Err(Errno::ENOTDIR | Errno::ELOOP) => unlinkat(parent, name, UnlinkatFlags::NoRemoveDir),
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

fn empty(dir: OwnedFd) -> nix::Result<()> {
    let names: Vec<OsString> = {
        let listed = nix::dir::Dir::from_fd(dir.try_clone().map_err(|_| Errno::EMFILE)?)?;
        listed
            .into_iter()
            .filter_map(Result::ok)
            .map(|entry| OsStr::from_bytes(entry.file_name().to_bytes()).to_owned())
            .filter(|name| name != "." && name != "..")
            .collect()
    };
    for name in names {
        remove_entry(dir.as_fd(), &name)?;
    }
    Ok(())
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(Errno) -> JobUserError {
    let path = path.display().to_string();
    move |e| JobUserError::Host(format!("cannot {action} {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn me() -> (Uid, Gid) {
        (nix::unistd::geteuid(), nix::unistd::getegid())
    }

    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        dir
    }

    #[test]
    fn only_plain_paths_strictly_below_the_root_pass() {
        let root = Path::new("/b");
        assert_eq!(
            components_below(root, Path::new("/b/grp/p")).expect("below"),
            ["grp", "p"]
        );
        for bad in [
            "/b",
            "/b/",
            "/b/../etc",
            "/b/grp/../../etc",
            "/b/./p",
            "b/p",
            "/c/p",
            "/bb/p",
        ] {
            let err = components_below(root, Path::new(bad)).expect_err(bad);
            assert!(
                err.to_string().contains("not strictly below builds_dir"),
                "{err}"
            );
        }
    }

    #[test]
    fn creates_parents_and_replaces_a_leftover_without_following_it() {
        let root = root();
        let victim = root.path().join("victim");
        std::fs::create_dir(&victim).expect("victim");
        std::fs::write(victim.join("keep"), "x").expect("write");
        let project = root.path().join("grp/sub/proj");
        create_owned(root.path(), &project, me(), 0o700, |_| Ok(())).expect("create");
        assert_eq!(
            std::fs::metadata(&project).expect("meta").mode() & 0o7777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(root.path().join("grp"))
                .expect("meta")
                .mode()
                & 0o7777,
            0o755
        );
        // A symlink at the project dir's place is removed, not followed.
        std::fs::remove_dir(&project).expect("rmdir");
        std::os::unix::fs::symlink(&victim, &project).expect("plant");
        create_owned(root.path(), &project, me(), 0o700, |_| Ok(())).expect("replace");
        assert!(std::fs::symlink_metadata(&project).expect("meta").is_dir());
        assert!(victim.join("keep").exists());
        // …and a refusal stops before anything is touched.
        let err = create_owned(root.path(), &project, me(), 0o700, |_| {
            Err(JobUserError::Host("busy".into()))
        })
        .expect_err("refused");
        assert_eq!(err.to_string(), "busy");
        assert!(project.is_dir());
    }

    #[test]
    fn a_symlink_or_a_writable_directory_on_the_way_is_refused() {
        let root = root();
        let victim = root.path().join("victim");
        std::fs::create_dir(&victim).expect("victim");
        std::os::unix::fs::symlink(&victim, root.path().join("grp")).expect("plant");
        let err = create_owned(
            root.path(),
            &root.path().join("grp/proj"),
            me(),
            0o700,
            |_| Ok(()),
        )
        .expect_err("symlink");
        assert!(err.to_string().contains("it is a symlink"), "{err}");
        assert_eq!(std::fs::read_dir(&victim).expect("ls").count(), 0);

        let open = root.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = create_owned(root.path(), &open.join("proj"), me(), 0o700, |_| Ok(()))
            .expect_err("writable");
        assert!(
            err.to_string().contains("group or others may write it"),
            "{err}"
        );
        assert!(!open.join("proj").exists());
    }

    #[test]
    fn removal_takes_the_whole_tree_and_only_its_owners() {
        let root = root();
        let project = root.path().join("grp/proj");
        create_owned(root.path(), &project, me(), 0o700, |_| Ok(())).expect("create");
        std::fs::create_dir_all(project.join("a/b")).expect("mkdir");
        std::fs::write(project.join("a/b/f"), "x").expect("write");
        std::os::unix::fs::symlink("/etc", project.join("a/etc")).expect("symlink");
        let other = Uid::from_raw(nix::unistd::geteuid().as_raw().wrapping_add(1));
        assert!(!remove_owned(root.path(), &project, Some(other)).expect("not theirs"));
        assert!(project.exists());
        assert!(remove_owned(root.path(), &project, Some(me().0)).expect("remove"));
        assert!(!project.exists());
        assert!(Path::new("/etc/passwd").exists());
        assert!(!remove_owned(root.path(), &project, None).expect("gone"));
        assert!(!remove_owned(root.path(), &root.path().join("nope/proj"), None).expect("none"));
    }
}
