//! Private per-job state, kept between the stage processes of one job.
//!
//! Layout below the configured `state_dir` (checked: owned by us, mode 0700, not a symlink):
//!
//! ```text
//! <state_dir>/<state id>/            0700, one per prepare attempt
//!     journal.json                   0600  plain: lease ids, token accessors, times. No values.
//!     secrets.enc                    0600  AES-256-GCM: tokens and secret values
//!     files/<stage>-<random>/<NAME>  0600  file secrets, only while a stage that receives them runs
//! ```
//!
//! Why two files: the journal must stay readable after a crash, by `leasehold reap`, which holds
//! no key; the values must not be readable by anyone who can read the disk but not our process
//! environment. The encryption key is created by `config` and reaches the later stages through
//! gitlab-runner's `job_env`, so it never touches disk. Writes are atomic (temp file + rename)
//! because cleanup may run while a killed run stage is still writing.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The checked root below which every job's state lives.
#[derive(Debug, Clone)]
pub struct StateRoot {
    path: PathBuf,
}

impl StateRoot {
    /// Opens (creating if needed) and checks the state root: it must be a real directory, owned
    /// by leasehold's effective user, with no access for group or others.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(path)
                    .map_err(|source| StateError::Io {
                        action: "create state dir",
                        path: path.to_owned(),
                        source,
                    })?;
            }
            Err(source) => {
                return Err(StateError::Io {
                    action: "inspect state dir",
                    path: path.to_owned(),
                    source,
                });
            }
            Ok(_) => {}
        }
        check_private_dir(path)?;
        Ok(StateRoot {
            path: path.to_owned(),
        })
    }

    /// The root path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory of one job attempt (it may not exist).
    pub fn job(&self, id: &StateId) -> JobState {
        JobState {
            dir: self.path.join(&id.0),
            id: id.clone(),
        }
    }

    /// Every job directory present, for the reaper.
    pub fn jobs(&self) -> Result<Vec<JobState>, StateError> {
        let entries = fs::read_dir(&self.path).map_err(|source| StateError::Io {
            action: "list state dir",
            path: self.path.clone(),
            source,
        })?;
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

/// Refuses a directory that is a symlink or not owned by leasehold's user.
pub fn check_owner(path: &Path) -> Result<(), StateError> {
    let meta = fs::symlink_metadata(path).map_err(|source| StateError::Io {
        action: "inspect",
        path: path.to_owned(),
        source,
    })?;
    if meta.file_type().is_symlink()
        || !meta.is_dir()
        || meta.uid() != nix::unistd::geteuid().as_raw()
    {
        return Err(StateError::Unsafe {
            path: path.to_owned(),
            reason: "it must be a real directory owned by leasehold's user".into(),
        });
    }
    Ok(())
}

/// Refuses a directory that is a symlink, not ours, or open to group/others.
pub fn check_private_dir(path: &Path) -> Result<(), StateError> {
    let meta = fs::symlink_metadata(path).map_err(|source| StateError::Io {
        action: "inspect",
        path: path.to_owned(),
        source,
    })?;
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
        Some(reason) => Err(StateError::Unsafe {
            path: path.to_owned(),
            reason,
        }),
        None => Ok(()),
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
        let mut random = [0u8; 8];
        fill_random(&mut random);
        StateId(format!(
            "j{}-{}",
            if digits.is_empty() { "0" } else { &digits },
            hex(&random)
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

/// The 256-bit key that encrypts `secrets.enc`.
pub struct StateKey(SecretBox<[u8; 32]>);

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey([REDACTED])")
    }
}

impl StateKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = Box::new([0u8; 32]);
        fill_random(&mut key[..]);
        StateKey(SecretBox::new(key))
    }

    /// Hex form for `job_env`.
    pub fn to_hex(&self) -> SecretString {
        SecretString::from(hex(self.0.expose_secret()))
    }

    /// Parses the hex form.
    pub fn from_hex(text: &SecretString) -> Result<Self, StateError> {
        let text = text.expose_secret().trim();
        if text.len() != 64 {
            return Err(StateError::BadKey);
        }
        let mut key = Box::new([0u8; 32]);
        for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(chunk).map_err(|_| StateError::BadKey)?;
            key[i] = u8::from_str_radix(pair, 16).map_err(|_| StateError::BadKey)?;
        }
        Ok(StateKey(SecretBox::new(key)))
    }

    fn aead(&self) -> Result<LessSafeKey, StateError> {
        UnboundKey::new(&AES_256_GCM, self.0.expose_secret())
            .map(LessSafeKey::new)
            .map_err(|_| StateError::BadKey)
    }
}

pub(crate) fn fill_random(buf: &mut [u8]) {
    // aws-lc's DRBG only fails if the OS entropy source is broken; there is no safe fallback.
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(buf).expect("the system random number generator failed");
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// How far a job's state has come; the reaper acts on jobs that are over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// prepare is running (or crashed while running).
    Preparing,
    /// prepare finished; run stages may be using the secrets.
    Active,
    /// cleanup could not revoke everything; the reaper must finish.
    CleanupFailed,
}

/// The plain-text journal: enough to revoke after a crash, nothing that grants access.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    /// Format version.
    pub version: u32,
    /// The state id.
    pub state_id: String,
    /// `CI_JOB_ID`.
    pub job_id: i64,
    /// `group/project`, for the reaper's report.
    #[serde(default)]
    pub project_path: String,
    /// When prepare started (unix seconds).
    pub created_at: u64,
    /// The job timeout in seconds.
    pub job_timeout_secs: u64,
    /// Where the job is.
    pub status: JobStatus,
    /// One entry per Vault login.
    #[serde(default)]
    pub sessions: Vec<JournalSession>,
    /// One entry per lease.
    #[serde(default)]
    pub leases: Vec<JournalLease>,
}

/// A token, by accessor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalSession {
    /// The server.
    pub address: String,
    /// The namespace, if any.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The token's accessor.
    pub accessor: String,
}

/// A lease, by id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalLease {
    /// The server.
    pub address: String,
    /// The namespace, if any.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The lease id.
    pub lease_id: String,
    /// Whether the lease can be revoked early (AWS STS credentials cannot).
    #[serde(default = "yes")]
    pub revocable: bool,
}

fn yes() -> bool {
    true
}

/// The encrypted part of the state: tokens, values, lease bookkeeping.
#[derive(Serialize, Deserialize, Default)]
pub struct PrivateState {
    /// One per login.
    pub sessions: Vec<Session>,
    /// One per declared (or bound) secret.
    pub secrets: Vec<StoredSecret>,
    /// One per lease.
    pub leases: Vec<Lease>,
    /// When the job times out (unix seconds); renewals never ask for time past it.
    #[serde(default)]
    pub deadline: u64,
    /// The local user the job runs as, when chosen from its verified claims at prepare.
    #[serde(default)]
    pub run_as: Option<String>,
}

impl PrivateState {
    /// The masker over every value of the job (each sub-stage masks all of them, not only the
    /// ones it receives), and what could not be masked.
    pub fn mask_set(
        &self,
        mask: &crate::config::MaskSection,
    ) -> (crate::mask::MaskSet, crate::mask::MaskReport) {
        crate::mask::MaskSet::new(
            self.secrets
                .iter()
                .map(|s| (s.name.as_str(), s.value.expose_secret().as_bytes())),
            &mask.text,
            mask.min_length,
        )
    }
}

impl std::fmt::Debug for PrivateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateState")
            .field("sessions", &self.sessions.len())
            .field(
                "secrets",
                &self.secrets.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field("leases", &self.leases.len())
            .finish()
    }
}

/// A Vault token obtained by a login.
#[derive(Serialize, Deserialize)]
pub struct Session {
    /// The server (address and TLS settings), so later stages reach it the same way.
    pub server: crate::vault::Server,
    /// The namespace the token lives in.
    pub namespace: Option<String>,
    /// The token.
    #[serde(with = "secret_string")]
    pub token: SecretString,
    /// Its accessor.
    pub accessor: String,
    /// TTL at the last login or renewal, seconds.
    pub ttl: u64,
    /// Whether it can be renewed.
    pub renewable: bool,
    /// When the TTL above started (unix seconds).
    pub since: u64,
    /// Set once renewal can no longer extend it (max TTL); the job log was warned.
    #[serde(default)]
    pub exhausted: bool,
}

/// A resolved secret.
#[derive(Serialize, Deserialize)]
pub struct StoredSecret {
    /// The variable name.
    pub name: String,
    /// The value.
    #[serde(with = "secret_string")]
    pub value: SecretString,
    /// Deliver as a file.
    pub file: bool,
    /// Sub-stages that receive it (glob patterns).
    pub stages: Vec<String>,
    /// Where it came from, for messages: `ops/production/db#password`.
    pub origin: String,
}

/// A lease held by the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    /// Index into `sessions` of the token that created it.
    pub session: usize,
    /// The lease id.
    pub lease_id: String,
    /// TTL at creation or last renewal, seconds.
    pub ttl: u64,
    /// Whether it can be renewed.
    pub renewable: bool,
    /// When the TTL above started (unix seconds).
    pub since: u64,
    /// Where it came from (mount/path), for messages.
    pub origin: String,
    /// Set once renewal can no longer extend it (max TTL); the job log was warned.
    #[serde(default)]
    pub exhausted: bool,
}

mod secret_string {
    use secrecy::{ExposeSecret, SecretString};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &SecretString, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.expose_secret())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
        SecretString::deserialize(d)
    }
}

/// One job attempt's state directory.
#[derive(Debug, Clone)]
pub struct JobState {
    dir: PathBuf,
    id: StateId,
}

const JOURNAL: &str = "journal.json";
const SECRETS: &str = "secrets.enc";
const FILES: &str = "files";

impl JobState {
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The id.
    pub fn id(&self) -> &StateId {
        &self.id
    }

    /// Whether the directory exists.
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// Creates the directory (0700). A leftover directory of the same id is an error.
    pub fn create(&self) -> Result<(), StateError> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| StateError::Io {
                action: "create job state dir",
                path: self.dir.clone(),
                source,
            })
    }

    /// Writes the journal atomically.
    pub fn write_journal(&self, journal: &Journal) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(journal).map_err(|e| StateError::Corrupt {
            path: self.dir.join(JOURNAL),
            detail: e.to_string(),
        })?;
        write_atomic(&self.dir.join(JOURNAL), &bytes)
    }

    /// Reads the journal.
    pub fn read_journal(&self) -> Result<Journal, StateError> {
        let path = self.dir.join(JOURNAL);
        let bytes = fs::read(&path).map_err(|source| StateError::Io {
            action: "read",
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            path,
            detail: e.to_string(),
        })
    }

    /// Encrypts and writes the secret part atomically.
    pub fn write_vault(&self, state: &PrivateState, key: &StateKey) -> Result<(), StateError> {
        let path = self.dir.join(SECRETS);
        let mut buffer =
            Zeroizing::new(serde_json::to_vec(state).map_err(|e| StateError::Corrupt {
                path: path.clone(),
                detail: e.to_string(),
            })?);
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        key.aead()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.id.0.as_bytes()),
                &mut *buffer,
            )
            .map_err(|_| StateError::Crypto { path: path.clone() })?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + buffer.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&buffer);
        write_atomic(&path, &sealed)
    }

    /// Reads and decrypts the secret part; `None` when prepare never wrote it.
    pub fn read_vault(&self, key: &StateKey) -> Result<Option<PrivateState>, StateError> {
        let path = self.dir.join(SECRETS);
        let sealed = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        if sealed.len() < NONCE_LEN {
            return Err(StateError::Crypto { path });
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| StateError::Crypto { path: path.clone() })?;
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        let plain = key
            .aead()?
            .open_in_place(nonce, Aad::from(self.id.0.as_bytes()), &mut buffer)
            .map_err(|_| StateError::Crypto { path: path.clone() })?;
        serde_json::from_slice(plain)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path,
                detail: e.to_string(),
            })
    }

    /// Deletes the secret part (values and tokens) but keeps the journal.
    pub fn remove_secrets(&self) -> Result<(), StateError> {
        for path in [self.dir.join(SECRETS)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StateError::Io {
                        action: "remove",
                        path,
                        source,
                    });
                }
            }
        }
        match fs::remove_dir_all(self.dir.join(FILES)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io {
                action: "remove",
                path: self.dir.join(FILES),
                source,
            }),
        }
    }

    /// Deletes the whole directory; missing is fine (cleanup is idempotent).
    pub fn remove(&self) -> Result<(), StateError> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io {
                action: "remove",
                path: self.dir.clone(),
                source,
            }),
        }
    }

    /// Creates a fresh private directory for one stage's file secrets.
    pub fn stage_files_dir(&self, stage: &str) -> Result<PathBuf, StateError> {
        let files = self.dir.join(FILES);
        match fs::DirBuilder::new().mode(0o700).create(&files) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(StateError::Io {
                    action: "create",
                    path: files,
                    source,
                });
            }
        }
        let mut random = [0u8; 6];
        fill_random(&mut random);
        let safe_stage: String = stage
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let dir = files.join(format!("{safe_stage}-{}", hex(&random)));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|source| StateError::Io {
                action: "create",
                path: dir.clone(),
                source,
            })?;
        Ok(dir)
    }
}

/// Writes a 0600 file through a temp file and a rename, so readers see old or new, never half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(|source| StateError::Io {
            action: "create temp file in",
            path: dir.to_owned(),
            source,
        })?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_data())
        .map_err(|source| StateError::Io {
            action: "write",
            path: tmp.path().to_owned(),
            source,
        })?;
    tmp.persist(path).map_err(|e| StateError::Io {
        action: "rename into",
        path: path.to_owned(),
        source: e.error,
    })?;
    Ok(())
}

/// Writes one file secret: 0600, created exclusively, never following a symlink.
pub fn write_secret_file(path: &Path, value: &[u8]) -> Result<(), StateError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| StateError::Io {
            action: "create",
            path: path.to_owned(),
            source,
        })?;
    file.write_all(value).map_err(|source| StateError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    })
}

/// The per-job state is unusable. Always the host's problem.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
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
    /// The state directory could be read by someone else.
    #[error(
        "refusing to use {path} for secrets: {reason}; fix it with: chown $(id -u) {path} && chmod 0700 {path}, or set state_dir"
    )]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A state file does not parse.
    #[error("corrupt state file {path}: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The state could not be decrypted (wrong key, tampering).
    #[error(
        "cannot decrypt {path}: the state key from config's job_env does not match (was the file replaced?)"
    )]
    Crypto {
        /// The file.
        path: PathBuf,
    },
    /// `LEASEHOLD_STATE_ID` is malformed.
    #[error("LEASEHOLD_STATE_ID is malformed; it must come from leasehold's own config stage")]
    BadId,
    /// `LEASEHOLD_STATE_KEY` is malformed.
    #[error("LEASEHOLD_STATE_KEY is malformed; it must come from leasehold's own config stage")]
    BadKey,
    /// config did not run, so there is no state id or key.
    #[error(
        "{variable} is not set: leasehold's config stage did not run; set config_exec = \"leasehold\" and config_args = [\"config\"] in [runners.custom]"
    )]
    NoConfigStage {
        /// The missing variable.
        variable: &'static str,
    },
    /// The job's state directory is gone.
    #[error(
        "the job's private state {path} is missing: prepare did not complete, or cleanup already ran"
    )]
    Missing {
        /// The directory.
        path: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_encrypted_state_and_reject_wrong_key() {
        let root_dir = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(root_dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        let root = StateRoot::open(root_dir.path()).expect("private tempdir");
        let job = root.job(&StateId::generate("77"));
        job.create().expect("create");
        let key = StateKey::generate();
        let vault = PrivateState {
            secrets: vec![StoredSecret {
                name: "A".into(),
                value: SecretString::from("planted-value-123"),
                file: false,
                stages: vec!["build_script".into()],
                origin: "kv/a#b".into(),
            }],
            ..PrivateState::default()
        };
        job.write_vault(&vault, &key).expect("write");
        let on_disk = fs::read(job.dir().join(SECRETS)).expect("read");
        assert!(
            !on_disk.windows(17).any(|w| w == b"planted-value-123"),
            "value stored in clear"
        );
        let mode = fs::metadata(job.dir().join(SECRETS)).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = job.read_vault(&key).expect("read").expect("present");
        assert_eq!(back.secrets[0].value.expose_secret(), "planted-value-123");
        let key2 = StateKey::from_hex(&key.to_hex()).expect("hex round trip");
        assert!(job.read_vault(&key2).is_ok());
        assert!(matches!(
            job.read_vault(&StateKey::generate()),
            Err(StateError::Crypto { .. })
        ));
    }

    #[test]
    fn state_root_must_be_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = StateRoot::open(dir.path()).expect_err("0755 refused");
        assert!(err.to_string().contains("0700"), "{err}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/tmp", &link).expect("symlink");
        assert!(
            StateRoot::open(&link)
                .expect_err("symlink refused")
                .to_string()
                .contains("symlink")
        );
        let fresh = dir.path().join("new");
        StateRoot::open(&fresh).expect("created");
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
