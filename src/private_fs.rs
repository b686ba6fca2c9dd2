//! Files and directories that hold secrets, or decide who can read them.
//!
//! Why one module: the state directory, the JWKS cache, a job user's stage directories and every
//! file secret need the same care: a directory is used only if it is a real directory (not a
//! symlink) owned by leasehold's user and closed to others; a secret file is created
//! exclusively, 0600, never through a symlink; a file other stages read is replaced atomically
//! (temp file + rename), because cleanup may run while a killed run stage is still writing.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A private file or directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The directory could be read or replaced by someone else.
    #[error(
        "refusing to use {path} for secrets: {reason}; fix it with: chown $(id -u) {path} && chmod 0700 {path}, or set state_dir"
    )]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl FsError {
    /// An I/O failure while doing `action` on `path`.
    pub fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FsError {
        let path = path.to_owned();
        move |source| FsError::Io {
            action,
            path,
            source,
        }
    }
}

/// Opens (creating it 0700 if needed, with its parents) and checks a private directory: a real
/// directory, owned by leasehold's effective user, with no access for group or others.
pub(crate) fn open_private_dir(path: &Path) -> Result<(), FsError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(FsError::io("create state dir", path))?;
        }
        Err(source) => {
            return Err(FsError::Io {
                action: "inspect state dir",
                path: path.to_owned(),
                source,
            });
        }
        Ok(_) => {}
    }
    check_private_dir(path)
}

/// Refuses a directory that is a symlink or not owned by leasehold's user.
pub(crate) fn check_owner(path: &Path) -> Result<(), FsError> {
    let meta = fs::symlink_metadata(path).map_err(FsError::io("inspect", path))?;
    if meta.file_type().is_symlink()
        || !meta.is_dir()
        || meta.uid() != nix::unistd::geteuid().as_raw()
    {
        return Err(FsError::Unsafe {
            path: path.to_owned(),
            reason: "it must be a real directory owned by leasehold's user".into(),
        });
    }
    Ok(())
}

/// Refuses a directory that is a symlink, not ours, or open to group/others.
pub(crate) fn check_private_dir(path: &Path) -> Result<(), FsError> {
    let meta = fs::symlink_metadata(path).map_err(FsError::io("inspect", path))?;
    let unsafe_because = if meta.file_type().is_symlink() {
        Some("it is a symlink".to_owned())
    } else if !meta.is_dir() {
        Some("it is not a directory".to_owned())
    } else if meta.uid() != nix::unistd::geteuid().as_raw() {
        Some(format!(
            "it is owned by uid {}, not by leasehold's uid {}",
            meta.uid(),
            nix::unistd::geteuid()
        ))
    } else if meta.mode() & 0o077 != 0 {
        Some(format!("its mode is {:o}, not 0700", meta.mode() & 0o7777))
    } else {
        None
    };
    match unsafe_because {
        Some(reason) => Err(FsError::Unsafe {
            path: path.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Writes a 0600 file through a temp file and a rename, so readers see old or new, never half.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(FsError::io("create temp file in", dir))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_data())
        .map_err(FsError::io("write", tmp.path()))?;
    tmp.persist(path).map_err(|e| FsError::Io {
        action: "rename into",
        path: path.to_owned(),
        source: e.error,
    })?;
    Ok(())
}

/// Who a file or directory is handed to: a job user's uid and gid.
pub(crate) type Owner = (nix::unistd::Uid, nix::unistd::Gid);

/// Writes one file secret: created exclusively, never following a symlink, then given `mode`
/// and `owner` through its open descriptor. Path-based chmod/chown would follow a symlink that
/// a job user swapped in after the create, inside a directory that user can write.
pub(crate) fn write_secret_file(
    path: &Path,
    value: &[u8],
    mode: u32,
    owner: Option<Owner>,
) -> Result<(), FsError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(FsError::io("create", path))?;
    hand_over(&file, path, mode, owner)?;
    file.write_all(value).map_err(FsError::io("write", path))
}

/// Opens a directory without following a symlink at its last component, gives it `mode` and
/// `owner` through the descriptor, and returns nothing else: the descriptor closes here.
pub(crate) fn set_dir_mode_and_owner(
    path: &Path,
    mode: u32,
    owner: Option<Owner>,
) -> Result<(), FsError> {
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(FsError::io("open directory", path))?;
    hand_over(&dir, path, mode, owner)
}

fn hand_over(file: &fs::File, path: &Path, mode: u32, owner: Option<Owner>) -> Result<(), FsError> {
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(FsError::io("chmod", path))?;
    if let Some((uid, gid)) = owner {
        nix::unistd::fchown(file, Some(uid), Some(gid))
            .map_err(|e| FsError::io("chown", path)(e.into()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_must_be_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = open_private_dir(dir.path()).expect_err("0755 refused");
        assert!(err.to_string().contains("0700"), "{err}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/tmp", &link).expect("symlink");
        assert!(
            open_private_dir(&link)
                .expect_err("symlink refused")
                .to_string()
                .contains("symlink")
        );
        let fresh = dir.path().join("new");
        open_private_dir(&fresh).expect("created");
        assert_eq!(fs::metadata(&fresh).expect("meta").mode() & 0o777, 0o700);
    }

    #[test]
    fn secret_files_never_follow_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        fs::write(&victim, "untouched").expect("write");
        let link = dir.path().join("SECRET");
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");
        assert!(write_secret_file(&link, b"value", 0o600, None).is_err());
        assert_eq!(fs::read_to_string(&victim).expect("read"), "untouched");
        assert_eq!(fs::metadata(&victim).expect("meta").mode() & 0o777, 0o644);
        let file = dir.path().join("NEW");
        write_secret_file(&file, b"value", 0o600, None).expect("write");
        assert_eq!(fs::metadata(&file).expect("meta").mode() & 0o777, 0o600);
        let script = dir.path().join("SCRIPT");
        write_secret_file(&script, b"echo", 0o700, None).expect("write");
        assert_eq!(fs::metadata(&script).expect("meta").mode() & 0o777, 0o700);
    }

    #[test]
    fn a_directory_handed_over_is_never_reached_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        fs::create_dir(&victim).expect("mkdir");
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o755)).expect("chmod");
        let link = dir.path().join("stage");
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");
        assert!(set_dir_mode_and_owner(&link, 0o700, None).is_err());
        assert_eq!(fs::metadata(&victim).expect("meta").mode() & 0o777, 0o755);
        set_dir_mode_and_owner(&victim, 0o711, None).expect("real dir");
        assert_eq!(fs::metadata(&victim).expect("meta").mode() & 0o777, 0o711);
    }
}
