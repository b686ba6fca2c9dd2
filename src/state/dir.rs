//! The state directory, and the directory of one prepare attempt in it.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::StateError;
use super::journal::Journal;
use super::sealed::{Sealed, StateKey};
use crate::private_fs::{self, FsError};
use crate::random::random_hex;

/// The checked root below which every job's state lives.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Opens (creating if needed) and checks the state directory: it must be a real directory,
    /// owned by leasehold's effective user, with no access for group or others.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        private_fs::open_private_dir(path)?;
        Ok(StateDir {
            path: path.to_owned(),
        })
    }

    /// The root path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory of one job attempt (it may not exist).
    pub fn job(&self, id: &StateId) -> JobDir {
        JobDir {
            dir: self.path.join(&id.0),
            id: id.clone(),
        }
    }

    /// Every job directory present, for the reaper.
    pub fn jobs(&self) -> Result<Vec<JobDir>, StateError> {
        let entries =
            fs::read_dir(&self.path).map_err(FsError::io("list state dir", &self.path))?;
        let mut jobs = Vec::new();
        for entry in entries.flatten() {
            if let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| StateId::parse(n).ok())
            {
                jobs.push(self.job(&id));
            }
        }
        Ok(jobs)
    }
}

/// Names one prepare attempt's state: `j<job id>-<random hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateId(String);

impl StateId {
    /// A fresh id for a job.
    pub fn generate(job_id: &str) -> Self {
        let digits: String = job_id
            .chars()
            .filter(char::is_ascii_digit)
            .take(20)
            .collect();
        StateId(format!(
            "j{}-{}",
            if digits.is_empty() { "0" } else { &digits },
            random_hex::<8>()
        ))
    }

    /// Parses an id from `job_env`, refusing anything that could escape the state root. Only the
    /// shape [`StateId::generate`] makes (`j<digits>-<hex>`) is accepted, so that other entries of
    /// the state dir (the JWKS cache in `jwks/`) are never taken for a job.
    pub fn parse(text: &str) -> Result<Self, StateError> {
        let shaped = text
            .strip_prefix('j')
            .and_then(|rest| rest.split_once('-'))
            .is_some_and(|(digits, hex)| {
                !digits.is_empty()
                    && digits.chars().all(|c| c.is_ascii_digit())
                    && !hex.is_empty()
                    && hex.chars().all(|c| c.is_ascii_hexdigit())
            });
        if text.len() <= 64 && shaped {
            Ok(StateId(text.to_owned()))
        } else {
            Err(StateError::BadId)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One job attempt's state directory.
#[derive(Debug, Clone)]
pub struct JobDir {
    dir: PathBuf,
    id: StateId,
}

const JOURNAL: &str = "journal.json";
const SEALED: &str = "secrets.enc";
const FILES: &str = "files";

impl JobDir {
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The id.
    pub fn id(&self) -> &StateId {
        &self.id
    }

    /// Whether the directory exists (a symlink in its place does not count: it is refused).
    pub fn exists(&self) -> bool {
        fs::symlink_metadata(&self.dir).is_ok()
    }

    /// The directory, checked like the state dir before anything in it is used: a job that runs
    /// as leasehold's user can write the state dir, so a symlink planted in place of the job dir
    /// or its `files/` would otherwise be followed. A missing directory passes (nothing to
    /// follow; the caller finds it missing).
    fn checked(&self, path: &Path) -> Result<(), StateError> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            _ => Ok(private_fs::check_private_dir(path)?),
        }
    }

    /// Creates the directory (0700). A leftover directory of the same id is an error.
    pub fn create(&self) -> Result<(), StateError> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&self.dir)
            .map_err(FsError::io("create job state dir", &self.dir))?;
        Ok(())
    }

    /// Writes the journal atomically.
    pub fn write_journal(&self, journal: &Journal) -> Result<(), StateError> {
        self.checked(&self.dir)?;
        let bytes = serde_json::to_vec_pretty(journal).map_err(|e| StateError::Corrupt {
            path: self.dir.join(JOURNAL),
            detail: e.to_string(),
        })?;
        Ok(private_fs::write_atomic(&self.dir.join(JOURNAL), &bytes)?)
    }

    /// Reads the journal.
    pub fn read_journal(&self) -> Result<Journal, StateError> {
        self.checked(&self.dir)?;
        let path = self.dir.join(JOURNAL);
        let bytes = fs::read(&path).map_err(FsError::io("read", &path))?;
        serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            path,
            detail: e.to_string(),
        })
    }

    /// Seals the tokens, values and leases with `key` and writes them atomically.
    pub fn seal(&self, sealed: &Sealed, key: &StateKey) -> Result<(), StateError> {
        self.checked(&self.dir)?;
        let path = self.dir.join(SEALED);
        let bytes = sealed.seal(key, self.id.as_str(), &path)?;
        Ok(private_fs::write_atomic(&path, &bytes)?)
    }

    /// Reads and opens the sealed state; `None` when prepare never wrote it.
    pub fn unseal(&self, key: &StateKey) -> Result<Option<Sealed>, StateError> {
        self.checked(&self.dir)?;
        let path = self.dir.join(SEALED);
        match fs::read(&path) {
            Ok(bytes) => Sealed::unseal(&bytes, key, self.id.as_str(), &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(FsError::Io {
                action: "read",
                path,
                source,
            }
            .into()),
        }
    }

    /// Deletes the sealed part (values and tokens) and the file secrets, but keeps the journal.
    pub fn remove_secrets(&self) -> Result<(), StateError> {
        let sealed = self.dir.join(SEALED);
        match fs::remove_file(&sealed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(FsError::Io {
                    action: "remove",
                    path: sealed,
                    source,
                }
                .into());
            }
        }
        remove_dir_all_if_present(&self.dir.join(FILES))
    }

    /// Deletes the whole directory; missing is fine (cleanup is idempotent).
    pub fn remove(&self) -> Result<(), StateError> {
        remove_dir_all_if_present(&self.dir)
    }

    /// Creates a fresh private directory for one stage's file secrets.
    pub fn stage_files_dir(&self, stage: &str) -> Result<PathBuf, StateError> {
        self.checked(&self.dir)?;
        let files = self.dir.join(FILES);
        match fs::DirBuilder::new().mode(0o700).create(&files) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(FsError::Io {
                    action: "create",
                    path: files,
                    source,
                }
                .into());
            }
        }
        self.checked(&files)?;
        let dir = files.join(crate::random::unguessable_name(stage));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(FsError::io("create", &dir))?;
        Ok(dir)
    }
}

fn remove_dir_all_if_present(path: &Path) -> Result<(), StateError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(FsError::Io {
            action: "remove",
            path: path.to_owned(),
            source,
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StoredSecret;
    use secrecy::{ExposeSecret, SecretString};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn round_trip_sealed_state_and_reject_wrong_key() {
        let root_dir = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(root_dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        let root = StateDir::open(root_dir.path()).expect("private tempdir");
        let job = root.job(&StateId::generate("77"));
        job.create().expect("create");
        let key = StateKey::generate();
        let sealed = Sealed {
            secrets: vec![StoredSecret {
                name: "A".into(),
                value: SecretString::from("planted-value-123"),
                file: false,
                stages: vec!["build_script".into()],
                origin: "kv/a#b".into(),
                plain: false,
            }],
            ..Sealed::default()
        };
        job.seal(&sealed, &key).expect("write");
        let on_disk = fs::read(job.dir().join(SEALED)).expect("read");
        assert!(
            !on_disk.windows(17).any(|w| w == b"planted-value-123"),
            "value stored in clear"
        );
        let mode = fs::metadata(job.dir().join(SEALED)).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = job.unseal(&key).expect("read").expect("present");
        assert_eq!(back.secrets[0].value.expose_secret(), "planted-value-123");
        let key2 = StateKey::from_hex(&key.to_hex()).expect("hex round trip");
        assert!(job.unseal(&key2).is_ok());
        assert!(matches!(
            job.unseal(&StateKey::generate()),
            Err(StateError::Crypto { .. })
        ));
    }

    #[test]
    fn planted_symlinks_in_place_of_a_job_dir_or_its_files_dir_are_refused() {
        let root_dir = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(root_dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        let root = StateDir::open(&root_dir.path().join("state")).expect("root");
        let victim = root_dir.path().join("victim");
        fs::create_dir(&victim).expect("victim");
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o700)).expect("chmod");

        let planted = root.job(&StateId::generate("1"));
        std::os::unix::fs::symlink(&victim, planted.dir()).expect("plant job dir");
        let key = StateKey::generate();
        for refused in [
            planted.seal(&Sealed::default(), &key).map(|_| ()),
            planted.unseal(&key).map(|_| ()),
            planted.read_journal().map(|_| ()),
            planted.stage_files_dir("build_script").map(|_| ()),
        ] {
            let error = refused.expect_err("symlinked job dir");
            assert!(error.to_string().contains("it is a symlink"), "{error}");
        }

        let job = root.job(&StateId::generate("2"));
        job.create().expect("create");
        std::os::unix::fs::symlink(&victim, job.dir().join(FILES)).expect("plant files");
        let error = job
            .stage_files_dir("build_script")
            .expect_err("symlinked files");
        assert!(error.to_string().contains("it is a symlink"), "{error}");
        assert_eq!(fs::read_dir(&victim).expect("list").count(), 0);
    }

    #[test]
    fn state_dir_must_be_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = StateDir::open(dir.path()).expect_err("0755 refused");
        assert!(err.to_string().contains("0700"), "{err}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/tmp", &link).expect("symlink");
        assert!(
            StateDir::open(&link)
                .expect_err("symlink refused")
                .to_string()
                .contains("symlink")
        );
        let fresh = dir.path().join("new");
        StateDir::open(&fresh).expect("created");
        assert_eq!(fs::metadata(&fresh).expect("meta").mode() & 0o777, 0o700);
    }

    #[test]
    fn state_ids_cannot_escape() {
        assert!(StateId::parse("j12-abcdef").is_ok());
        assert!(
            StateId::parse("jwks").is_err(),
            "the JWKS cache dir is not a job"
        );
        for bad in ["../x", "j1/../../etc", "", "x1-aa", "j1 2"] {
            assert!(StateId::parse(bad).is_err(), "{bad}");
        }
        assert!(StateId::generate("12; rm").as_str().starts_with("j12-"));
    }
}
