//! The sealed part of a job's state: its tokens, secret values and leases, encrypted with the
//! attempt's key (AES-256-GCM, the state id as associated data, so a file cannot be moved to
//! another attempt's directory).

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::StateError;
use crate::random::{fill_random, hex};

/// The 256-bit key that encrypts the sealed state.
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

/// Tokens, values and lease bookkeeping of one job attempt.
#[derive(Serialize, Deserialize, Default)]
pub struct Sealed {
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
    /// The pool uid (and gid) the job runs as, with `[executor] user_pool`.
    #[serde(default)]
    pub seat: Option<Seat>,
    /// The job, as every request made for it is labelled in Vault's audit log.
    #[serde(default)]
    pub audit: Option<crate::vault::AuditTag>,
}

/// A uid and gid from `[executor] user_pool`, held by one job attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seat {
    /// The uid.
    pub uid: u32,
    /// The gid.
    pub gid: u32,
}

impl Sealed {
    /// Every secret's name and value, for the masker.
    pub fn values(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.secrets
            .iter()
            .filter(|s| !s.plain)
            .map(|s| (s.name.as_str(), s.value.expose_secret().as_bytes()))
    }

    /// Serialises and encrypts: nonce, then ciphertext and tag. `path` only names the file in
    /// errors.
    pub(super) fn seal(
        &self,
        key: &StateKey,
        aad: &str,
        path: &Path,
    ) -> Result<Vec<u8>, StateError> {
        let mut buffer =
            Zeroizing::new(serde_json::to_vec(self).map_err(|e| StateError::Corrupt {
                path: path.to_owned(),
                detail: e.to_string(),
            })?);
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        key.aead()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut *buffer,
            )
            .map_err(|_| StateError::Crypto {
                path: path.to_owned(),
            })?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + buffer.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&buffer);
        Ok(bytes)
    }

    /// Decrypts and parses what [`Sealed::seal`] wrote.
    pub(super) fn unseal(
        bytes: &[u8],
        key: &StateKey,
        aad: &str,
        path: &Path,
    ) -> Result<Self, StateError> {
        let crypto = || StateError::Crypto {
            path: path.to_owned(),
        };
        if bytes.len() < NONCE_LEN {
            return Err(crypto());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| crypto())?;
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        let plain = key
            .aead()?
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buffer)
            .map_err(|_| crypto())?;
        serde_json::from_slice(plain).map_err(|e| StateError::Corrupt {
            path: path.to_owned(),
            detail: e.to_string(),
        })
    }
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("sessions", &self.sessions.len())
            .field(
                "secrets",
                &self.secrets.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field("leases", &self.leases.len())
            .finish()
    }
}

/// A Vault token: one obtained by a login, or the job's own token, a child of one.
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
    /// For the job's own token (`vault: {token: …}`): the index in `sessions` of the login token
    /// it is a child of, so that revoking that one takes it along.
    #[serde(default)]
    pub parent: Option<usize>,
    /// For the job's own token: the variable it is delivered in.
    #[serde(default)]
    pub delivered_as: Option<String>,
}

impl Session {
    /// How cleanup, reap and the job log name it besides its accessor.
    pub fn describe(&self) -> String {
        match &self.delivered_as {
            Some(name) => format!("job token for {name}; with the leases created through it"),
            None => self.server.address.clone(),
        }
    }
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
    /// Not a secret (the address set next to the job's Vault token): delivered like one, never
    /// masked, so the job log keeps showing the server's URL.
    #[serde(default)]
    pub plain: bool,
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

/// Whether a lease belongs to credentials Vault cannot take back (AWS STS sessions).
pub fn is_sts_lease(lease_id: &str) -> bool {
    let mut parts = lease_id.split('/');
    let _mount = parts.next();
    matches!(parts.next(), Some("sts"))
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
