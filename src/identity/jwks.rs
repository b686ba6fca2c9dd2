//! GitLab's signing keys (JWKS): fetched over HTTPS, cached on disk, re-fetched on rotation.
//!
//! Why a disk cache: every job is a fresh process, and asking GitLab for its keys once per job
//! would tie every prepare to GitLab's availability and add a round trip. The cache holds public
//! keys only, but whoever can write it could plant a key and forge tokens, so it lives in a
//! directory that passes the same ownership and mode checks as the state directory.
//!
//! Where: GitLab 17 serves the keys at `/oauth/discovery/keys`; older releases at `/-/jwks`.
//! leasehold asks the first and falls back to the second when GitLab answers 4xx.
//!
//! Rotation: a token whose `kid` is not in the cached set triggers exactly one re-fetch (none if
//! the set was fetched by this very process); an expired cache is never used.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use serde::{Deserialize, Serialize};

use super::IdentityError;
use crate::private_fs::{open_private_dir, write_atomic};

/// The JWKS path of GitLab 17 and later.
pub(crate) const JWKS_PATH: &str = "/oauth/discovery/keys";
/// The JWKS path of GitLab before 17.
pub(crate) const LEGACY_JWKS_PATH: &str = "/-/jwks";
/// A JWKS larger than this is refused.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// How to reach GitLab and where to cache.
#[derive(Debug, Clone)]
pub(crate) struct JwksSettings {
    /// The GitLab URL, without a trailing slash.
    pub base_url: String,
    /// PEM CA bundle replacing the system roots.
    pub ca_file: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// How long a fetched set is trusted.
    pub ttl: Duration,
    /// The cache directory (already checked), or `None` to fetch every time.
    pub cache_dir: Option<PathBuf>,
}

/// A key set and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct KeySet {
    keys: Vec<Jwk>,
    /// The URL it was fetched from.
    pub url: String,
    /// When (unix seconds).
    pub fetched_at: u64,
    /// Whether this process fetched it (rather than reading the cache).
    pub fetched_now: bool,
}

impl KeySet {
    /// The key with this id.
    pub(crate) fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid))
    }

    /// Every key id, for messages.
    pub(crate) fn kids(&self) -> Vec<String> {
        self.keys
            .iter()
            .filter_map(|k| k.common.key_id.clone())
            .collect()
    }

    /// How many keys.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    base_url: String,
    url: String,
    fetched_at: u64,
    jwks: serde_json::Value,
}

/// Fetches and caches one GitLab's JWKS.
#[derive(Debug, Clone)]
pub(crate) struct Jwks {
    settings: JwksSettings,
    client: reqwest::Client,
    /// The set this process last used, so that verifying several tokens costs one read.
    memo: Arc<Mutex<Option<KeySet>>>,
}

/// Creates (0700) and checks a JWKS cache directory like the state directory.
pub(crate) fn open_cache_dir(dir: &Path) -> Result<PathBuf, IdentityError> {
    open_private_dir(dir)
        .map(|()| dir.to_owned())
        .map_err(IdentityError::JwksCache)
}

impl Jwks {
    /// Builds the HTTPS client (custom CA, timeout; redirects only to https).
    pub(crate) fn new(settings: JwksSettings) -> Result<Self, IdentityError> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .https_only(settings.base_url.starts_with("https://"))
            .user_agent(concat!("leasehold/", env!("CARGO_PKG_VERSION")));
        if let Some(ca_file) = &settings.ca_file {
            let pem = std::fs::read(ca_file).map_err(|e| IdentityError::GitlabClient {
                detail: format!("cannot read gitlab.ca_file {}: {e}", ca_file.display()),
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                IdentityError::GitlabClient {
                    detail: format!(
                        "gitlab.ca_file {} is not a PEM bundle: {e}",
                        ca_file.display()
                    ),
                }
            })?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder.build().map_err(|e| IdentityError::GitlabClient {
            detail: e.to_string(),
        })?;
        Ok(Jwks {
            settings,
            client,
            memo: Arc::default(),
        })
    }

    /// The primary JWKS URL.
    pub(crate) fn url(&self) -> String {
        format!("{}{JWKS_PATH}", self.settings.base_url)
    }

    /// The cached set if it is younger than the TTL, else a freshly fetched one.
    pub(crate) async fn keys(&self, now: u64) -> Result<KeySet, IdentityError> {
        if let Some(memo) = self.memo().filter(|set| self.is_fresh(set.fetched_at, now)) {
            return Ok(memo);
        }
        if let Some(cached) = self.read_cache(now) {
            self.remember(&cached);
            return Ok(cached);
        }
        self.refresh(now).await
    }

    /// Fetches the set from GitLab and caches it.
    pub(crate) async fn refresh(&self, now: u64) -> Result<KeySet, IdentityError> {
        let (url, jwks) = self.fetch().await?;
        let set = parse_set(&url, &jwks, now)?;
        self.write_cache(&url, now, jwks);
        self.remember(&set);
        Ok(set)
    }

    fn memo(&self) -> Option<KeySet> {
        self.memo.lock().ok().and_then(|m| m.clone())
    }

    fn remember(&self, set: &KeySet) {
        if let Ok(mut memo) = self.memo.lock() {
            *memo = Some(set.clone());
        }
    }

    fn is_fresh(&self, fetched_at: u64, now: u64) -> bool {
        now.checked_sub(fetched_at)
            .is_some_and(|age| age < self.settings.ttl.as_secs())
    }

    fn cache_file(&self) -> Option<PathBuf> {
        let dir = self.settings.cache_dir.as_ref()?;
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            self.settings.base_url.as_bytes(),
        );
        let name: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Some(dir.join(format!("jwks-{name}.json")))
    }

    fn read_cache(&self, now: u64) -> Option<KeySet> {
        let path = self.cache_file()?;
        let bytes = std::fs::read(&path).ok()?;
        let file: CacheFile = match serde_json::from_slice(&bytes) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!("ignoring unreadable JWKS cache {}: {e}", path.display());
                return None;
            }
        };
        if file.base_url != self.settings.base_url || !self.is_fresh(file.fetched_at, now) {
            return None;
        }
        let mut set = parse_set(&file.url, &file.jwks, file.fetched_at).ok()?;
        set.fetched_now = false;
        Some(set)
    }

    fn write_cache(&self, url: &str, now: u64, jwks: serde_json::Value) {
        let Some(path) = self.cache_file() else {
            return;
        };
        let file = CacheFile {
            base_url: self.settings.base_url.clone(),
            url: url.to_owned(),
            fetched_at: now,
            jwks,
        };
        let written = serde_json::to_vec(&file)
            .map_err(|e| e.to_string())
            .and_then(|bytes| write_atomic(&path, &bytes).map_err(|e| e.to_string()));
        if let Err(e) = written {
            tracing::warn!("cannot cache GitLab's JWKS in {}: {e}", path.display());
        }
    }

    /// GETs the primary URL, then the legacy one if GitLab answered 4xx.
    async fn fetch(&self) -> Result<(String, serde_json::Value), IdentityError> {
        let primary = self.url();
        match self.get(&primary).await? {
            Fetched::Body(json) => Ok((primary, json)),
            Fetched::Status(status) if (400..500).contains(&status) => {
                let legacy = format!("{}{LEGACY_JWKS_PATH}", self.settings.base_url);
                match self.get(&legacy).await? {
                    Fetched::Body(json) => Ok((legacy, json)),
                    Fetched::Status(second) => Err(IdentityError::JwksUnreachable {
                        detail: format!(
                            "{primary} answered {status} and {legacy} answered {second}"
                        ),
                    }),
                }
            }
            Fetched::Status(status) => Err(IdentityError::JwksUnreachable {
                detail: format!("{primary} answered {status}"),
            }),
        }
    }

    async fn get(&self, url: &str) -> Result<Fetched, IdentityError> {
        let unreachable = |e: reqwest::Error| IdentityError::JwksUnreachable {
            detail: format!(
                "{url}: {}",
                describe(&e).replace(&format!(" for url ({url})"), "")
            ),
        };
        let mut response = self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            return Ok(Fetched::Status(status.as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(IdentityError::JwksInvalid {
                    url: url.to_owned(),
                    detail: "larger than 1 MiB".into(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body)
            .map(Fetched::Body)
            .map_err(|e| IdentityError::JwksInvalid {
                url: url.to_owned(),
                detail: format!(
                    "not JSON ({:?} at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            })
    }
}

enum Fetched {
    Body(serde_json::Value),
    Status(u16),
}

/// A transport error with its causes (reqwest's own Display hides the interesting part).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Keeps the keys jsonwebtoken understands; a key of an unknown type does not spoil the set.
fn parse_set(
    url: &str,
    jwks: &serde_json::Value,
    fetched_at: u64,
) -> Result<KeySet, IdentityError> {
    let invalid = |detail: &str| IdentityError::JwksInvalid {
        url: url.to_owned(),
        detail: detail.to_owned(),
    };
    let list = jwks
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| invalid("no \"keys\" array"))?;
    let keys: Vec<Jwk> = list
        .iter()
        .filter_map(|k| serde_json::from_value(k.clone()).ok())
        .collect();
    if keys.is_empty() {
        return Err(invalid("it holds no usable key"));
    }
    Ok(KeySet {
        keys,
        url: url.to_owned(),
        fetched_at,
        fetched_now: true,
    })
}
