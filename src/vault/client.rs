//! The HTTP client.
//!
//! One `reqwest::Client` per server, so TLS sessions and connections are reused across the
//! handful of requests a stage makes. The client decides three things the rest of leasehold
//! relies on:
//!
//! - **Whose fault a failure is.** Transport errors, 5xx and 429 are retried with jittered
//!   exponential backoff and then reported as infrastructure failures; 4xx are refusals and are
//!   never retried, because the answer will not change.
//! - **How long to wait for a cluster.** While an HA cluster elects a new active node, its
//!   nodes refuse connections, answer 503, 429, "sealed", or, as a standby that cannot reach
//!   the old leader, 500 "local node not active" or a 307 to the dead node. Those answers (and
//!   transport failures) are retried, node after node, for up to `failover_wait` (never past a
//!   request's own deadline, such as the ID token's `exp` for a login), because an election
//!   takes seconds and a failed stage costs the job a runner-level retry or a reap. Any other
//!   5xx is retried `retries` times only.
//! - **Where a token may go.** Plain http only to loopback unless the admin opted in, and
//!   redirects are followed only to an address the admin listed for the same server (its
//!   `address` or one of its `nodes`, compared by scheme, host and port), because reqwest
//!   forwards custom headers such as `X-Vault-Token` on redirect. Anything else is refused
//!   before a byte goes to the target.
//! - **What text leaves the module.** Error messages carry Vault's own `errors` (with the
//!   request's token or JWT scrubbed out, and every control character replaced, so that a
//!   server cannot write terminal escapes into a job log), paths and addresses, never a
//!   response body.
//! - **What a URL can say.** Every request URL is built segment by segment by
//!   [`api_path::request_url`], which refuses `\`, dot segments, `?`, `#`, `%` and control
//!   characters in any segment and percent-encodes the rest: no path piece, whoever supplied
//!   it, can change which endpoint is called or add a query.
//! - **How many requests at once.** A [`RequestLimit`] shared by every client of one server
//!   caps the requests in flight to it (`max_concurrent_requests`), so that a job declaring
//!   thousands of paths does not open thousands of sockets at once.
//!
//! Retrying a POST can repeat a side effect (a second `pki/issue` certificate, say). That is
//! acceptable here: every lease created by a job's token dies with that token at cleanup.

use std::error::Error as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use super::envelope::{Kv2Data, RawErrors, RawHealth, RawResponse, SecretBuf};
use super::error::printable;
use super::{AuthInfo, Health, LeaseInfo, SecretEnvelope, SecretFields, VaultError};
#[cfg(test)]
use super::{TokenLookup, envelope::RawKeys};
use crate::api_path::{self, Piece};

/// How to reach one server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Base address, e.g. `https://vault.example.com:8200`: the server's identity in messages,
    /// and where requests go when `nodes` is empty.
    pub address: String,
    /// The addresses of the server's nodes, tried in turn (for a cluster without a load
    /// balancer); empty: `address` only.
    pub nodes: Vec<String>,
    /// Sent as `X-Vault-Namespace` when set.
    pub namespace: Option<String>,
    /// PEM CA bundle replacing the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mTLS.
    pub client_cert: Option<PathBuf>,
    /// PEM key for `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Allow http:// to non-loopback hosts.
    pub allow_http: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries for 5xx (0 = one attempt); the least number of rounds over the nodes for any
    /// retryable failure.
    pub retries: u32,
    /// How long transport failures and the answers of a cluster in an election (503, 429,
    /// sealed, standby) keep being retried.
    pub failover_wait: Duration,
    /// The cap on requests in flight to this server, shared with every other client of it.
    pub limit: RequestLimit,
}

/// How many requests may be in flight to one server at once. Clones share the cap: every
/// client made for one server from one config gets a clone of the same limit.
#[derive(Debug, Clone)]
pub struct RequestLimit {
    permits: Arc<tokio::sync::Semaphore>,
    max: usize,
}

impl RequestLimit {
    /// The default of `max_concurrent_requests`.
    pub const DEFAULT: usize = 16;

    /// A new cap of `max` requests (at least 1).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        RequestLimit {
            permits: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
        }
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Whether `other` is the same cap (a clone of this one), not merely an equal number.
    #[cfg(test)]
    pub fn shares_with(&self, other: &RequestLimit) -> bool {
        Arc::ptr_eq(&self.permits, &other.permits)
    }
}

impl Default for RequestLimit {
    fn default() -> Self {
        RequestLimit::new(RequestLimit::DEFAULT)
    }
}

/// First retry delay, doubled per attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Longest delay between two attempts (±50 %): an election is over within seconds, and a
/// longer pause would add most of itself to the downtime a job sees.
const BACKOFF_CAP: Duration = Duration::from_secs(1);
/// A connection that has not been made in this long will not be made; the rest of `timeout` is
/// better spent on a retry.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Vault answers are small; anything larger is not Vault (or not sane).
const MAX_BODY: usize = 16 << 20;
/// Vault's error text is shown in the job log; keep it to a readable size.
const MAX_ERROR_TEXT: usize = 1000;
/// Every state that still answers API requests (standby, sealed, uninitialized) returns 200, so
/// the body, not the status, tells what the server is doing.
const HEALTH_PATH: &str = "sys/health";
const HEALTH_QUERY: &[(&str, &str)] = &[
    ("standbyok", "true"),
    ("sealedcode", "200"),
    ("uninitcode", "200"),
    ("perfstandbyok", "true"),
];

const X_VAULT_REQUEST: HeaderName = HeaderName::from_static("x-vault-request");
const X_VAULT_TOKEN: HeaderName = HeaderName::from_static("x-vault-token");
const X_VAULT_NAMESPACE: HeaderName = HeaderName::from_static("x-vault-namespace");

fn config(detail: impl Into<String>) -> VaultError {
    VaultError::Config {
        detail: detail.into(),
    }
}

fn invalid(path: &str, detail: impl Into<String>) -> VaultError {
    VaultError::InvalidResponse {
        path: path.to_owned(),
        detail: detail.into(),
    }
}

/// Refuses `http://` unless the host is loopback or `allow_http` is set; refuses other schemes.
pub(crate) fn check_address(address: &str, allow_http: bool) -> Result<(), VaultError> {
    let shown = without_userinfo(address);
    let url = Url::parse(address).map_err(|e| {
        config(format!(
            "Vault address {shown:?} is not a valid URL ({e}); write it like https://vault.example.com:8200"
        ))
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(config(format!(
            "Vault address {shown} must not contain a user name or password; leasehold authenticates with tokens"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(config(format!(
            "Vault address {shown} has no host; write it like https://vault.example.com:8200"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(config(format!(
            "Vault address {shown} must not have a query or fragment; API paths are appended to it"
        )));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http || is_loopback(&url) => Ok(()),
        "http" => Err(config(format!(
            "Vault address {shown} uses plain http to a non-loopback host; use https, or set allow_http = true for \
             this server if tokens may cross the network unencrypted"
        ))),
        other => Err(config(format!(
            "Vault address {shown} has scheme {other:?}; only https (and http to loopback) is supported"
        ))),
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // IPv6 hosts come bracketed.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// The address as it may be shown: a `user:password@` part is replaced, since it is a credential.
fn without_userinfo(address: &str) -> String {
    let Some((scheme, rest)) = address.split_once("://") else {
        return address.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => address.to_owned(),
    }
}

/// Jittered exponential backoff between attempts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    pub(super) base: Duration,
    pub(super) cap: Duration,
}

impl Backoff {
    /// The delay after the `retry`-th failure (0-based): `min(base·2^retry, cap)` scaled by a
    /// random factor in [0.5, 1.5), so runners that lost the same server do not retry in step.
    pub(super) fn delay(self, retry: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX));
        exp.min(self.cap).mul_f64(0.5 + unit_random())
    }
}

/// A number in [0, 1) for jitter; it needs to be unpredictable across hosts, not secure.
fn unit_random() -> f64 {
    let mut bytes = [0u8; 4];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        bytes = nanos.to_le_bytes();
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

/// One logical request (retried as a whole).
struct Call<'a> {
    method: Method,
    /// Below `/v1/`, segments separated by `/`; checked and encoded segment by segment.
    path: &'a str,
    /// Query parameters (only leasehold's own constants).
    query: &'static [(&'static str, &'static str)],
    token: Option<&'a SecretString>,
    body: Option<SecretBuf>,
    /// `sys/health` is cluster-wide and is asked without a namespace.
    namespace: bool,
    /// A secret other than the token that the request carries (the JWT of a login), scrubbed
    /// from any error text the server echoes back.
    carried: Option<&'a SecretString>,
    /// No attempt is made after this time (the ID token's `exp` for a login).
    not_after: Option<SystemTime>,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: &'a str, token: Option<&'a SecretString>) -> Self {
        Call {
            method,
            path,
            query: &[],
            token,
            body: None,
            namespace: true,
            carried: None,
            not_after: None,
        }
    }

    fn json(mut self, body: &impl Serialize) -> Result<Self, VaultError> {
        let mut buf = SecretBuf::default();
        serde_json::to_writer(&mut buf, body)
            .map_err(|_| config(format!("cannot encode the request body for {}", self.path)))?;
        self.body = Some(buf);
        Ok(self)
    }
}

/// A response whose status is final (after retries).
struct Reply {
    status: StatusCode,
    body: SecretBuf,
}

impl Reply {
    fn is_empty(&self) -> bool {
        self.body.as_slice().iter().all(u8::is_ascii_whitespace)
    }
}

/// Why one attempt failed.
enum AttemptError {
    /// Worth retrying; the text describes the transport failure.
    Transport(String),
    /// A redirect to an address that is not listed for this server (the text says where).
    Redirect(String),
    /// Not worth retrying.
    Fatal(VaultError),
}

/// What one attempt says about the rest of the request.
enum Verdict {
    /// A final answer (success or refusal).
    Done(Reply),
    /// The node is down or the cluster is between active nodes: the next node may answer, and
    /// waiting helps.
    Failover(Failure),
    /// Another server error: retried `retries` times.
    Error(Failure),
}

/// A failed attempt, kept for the message when leasehold gives up.
enum Failure {
    Transport(String),
    Status(Reply),
}

/// Standby answers of Vault and OpenBao when the active node is gone (`http/handler.go`).
const STANDBY_TEXTS: [&str; 5] = [
    "local node not active",
    "active cluster node not found",
    "no active vault instance",
    "node is not active",
    "standby mode",
];

/// Where a node can be reached: a redirect may only go to one of the server's own.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn of(url: &Url) -> Self {
        Origin {
            scheme: url.scheme().to_ascii_lowercase(),
            host: url
                .host_str()
                .unwrap_or_default()
                .trim_end_matches('.')
                .to_ascii_lowercase(),
            port: url.port_or_known_default(),
        }
    }
}

/// The redirect refusal, carried through reqwest's error to [`classify_reqwest`].
#[derive(Debug)]
struct RedirectRefused(String);

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedirectRefused {}

/// A client for one server (and namespace).
#[derive(Debug, Clone)]
pub(crate) struct VaultClient {
    spec: ServerSpec,
    /// The nodes (`spec.nodes`, else `spec.address`), parsed: every request URL is built on one
    /// of them by [`api_path::request_url`].
    bases: Vec<Url>,
    /// The node that answered last, where the next request starts.
    preferred: Arc<AtomicUsize>,
    /// No request is retried after this time (the stage's own deadline).
    not_after: Option<SystemTime>,
    http: reqwest::Client,
    backoff: Backoff,
    /// The job these requests are for, as the audit log labels them.
    audit: Option<super::AuditTag>,
}

impl VaultClient {
    /// Builds the client: checks the address, loads the CA bundle and client certificate.
    pub(crate) fn new(spec: &ServerSpec) -> Result<Self, VaultError> {
        check_address(&spec.address, spec.allow_http)?;
        if spec.timeout.is_zero() {
            return Err(config(format!(
                "Vault server {}: the request timeout must be greater than zero",
                spec.address
            )));
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("leasehold/", env!("CARGO_PKG_VERSION")))
            .timeout(spec.timeout)
            .connect_timeout(spec.timeout.min(MAX_CONNECT_TIMEOUT))
            .redirect(redirect_policy(listed_origins(spec)));
        if let Some(ca_file) = &spec.ca_file {
            builder = builder.tls_certs_only(load_ca_bundle(ca_file)?);
        }
        match (&spec.client_cert, &spec.client_key) {
            (Some(cert), Some(key)) => builder = builder.identity(load_identity(cert, key)?),
            (None, None) => {}
            _ => {
                return Err(config(format!(
                    "Vault server {}: client_cert and client_key must be set together",
                    spec.address
                )));
            }
        }
        let http = builder.build().map_err(|e| {
            config(format!(
                "cannot set up TLS for Vault at {} ({}); check ca_file, client_cert and client_key",
                spec.address,
                error_chain(&e)
            ))
        })?;
        let nodes: Vec<&String> = if spec.nodes.is_empty() {
            vec![&spec.address]
        } else {
            spec.nodes.iter().collect()
        };
        let mut bases = Vec::with_capacity(nodes.len());
        for node in nodes {
            check_address(node, spec.allow_http)?;
            bases.push(Url::parse(node).map_err(|e| {
                config(format!(
                    "Vault address {} is not a valid URL ({e})",
                    without_userinfo(node)
                ))
            })?);
        }
        Ok(VaultClient {
            bases,
            preferred: Arc::new(AtomicUsize::new(0)),
            not_after: None,
            spec: spec.clone(),
            http,
            backoff: Backoff {
                base: BACKOFF_BASE,
                cap: BACKOFF_CAP,
            },
            audit: None,
        })
    }

    /// Labels every request with the job it is for ([`super::AuditTag`]).
    #[must_use]
    pub(crate) fn for_job(mut self, tag: Option<&super::AuditTag>) -> Self {
        self.audit = tag.cloned();
        self
    }

    /// Retries nothing after `deadline` (the stage's own deadline, unix seconds).
    #[must_use]
    pub(crate) fn until(mut self, deadline: Option<u64>) -> Self {
        self.not_after = deadline.map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        self
    }

    #[cfg(test)]
    /// Replaces the retry backoff (first delay `base`, doubling up to `cap`, ±50 % jitter); for
    /// tests and for callers with a tight deadline.
    #[must_use]
    pub(crate) fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff = Backoff { base, cap };
        self
    }

    /// Logs in with a JWT (`auth/<mount>/login`); `role` falls back to the mount's default role.
    /// No attempt is made after `expires` (the JWT's `exp`, unix seconds): Vault would refuse it.
    pub(crate) async fn jwt_login(
        &self,
        mount: &str,
        endpoint: &str,
        role: Option<&str>,
        jwt: &SecretString,
        expires: Option<i64>,
    ) -> Result<AuthInfo, VaultError> {
        #[derive(Serialize)]
        struct Login<'a> {
            jwt: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            role: Option<&'a str>,
        }
        let path = api_path::jwt_login_path(mount, endpoint);
        let mut call = Call::new(Method::POST, &path, None).json(&Login {
            jwt: jwt.expose_secret(),
            role,
        })?;
        call.carried = Some(jwt);
        call.not_after = expires
            .and_then(|exp| u64::try_from(exp).ok())
            .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        let reply = self.request(&call).await?;
        auth_of(&reply, &path)
    }

    /// Logs in with AppRole (`auth/<mount>/login`); used only by the reaper's own credential.
    pub(crate) async fn approle_login(
        &self,
        mount: &str,
        role_id: &str,
        secret_id: &SecretString,
    ) -> Result<AuthInfo, VaultError> {
        #[derive(Serialize)]
        struct Login<'a> {
            role_id: &'a str,
            secret_id: &'a str,
        }
        let path = api_path::login_path(mount);
        let mut call = Call::new(Method::POST, &path, None).json(&Login {
            role_id,
            secret_id: secret_id.expose_secret(),
        })?;
        call.carried = Some(secret_id);
        let reply = self.request(&call).await?;
        auth_of(&reply, &path)
    }

    /// Reads a secret. With `kv2`, `path` must already contain the `data/` segment and the
    /// fields are taken from `data.data`; a deleted or destroyed version is [`VaultError::NotFound`].
    pub(crate) async fn read(
        &self,
        token: &SecretString,
        path: &str,
        kv2: bool,
    ) -> Result<SecretEnvelope, VaultError> {
        let reply = self
            .request(&Call::new(Method::GET, path, Some(token)))
            .await?;
        if reply.is_empty() {
            return Err(VaultError::NotFound {
                path: path.to_owned(),
            });
        }
        if !kv2 {
            return envelope_of(&reply, path);
        }
        let raw: RawResponse<Kv2Data> = decode(&reply, path)?;
        refuse_wrapped(raw.wrap_info.is_some(), path)?;
        let data = match raw.data {
            Some(Kv2Data {
                data: Some(Some(fields)),
            }) => fields,
            Some(Kv2Data { data: Some(None) }) => {
                return Err(VaultError::NotFound {
                    path: path.to_owned(),
                });
            }
            Some(Kv2Data { data: None }) | None => {
                return Err(invalid(
                    path,
                    "the response has no data.data; is the mount really KV version 2?",
                ));
            }
        };
        Ok(SecretEnvelope {
            lease_id: printable(&raw.lease_id),
            lease_duration: raw.lease_duration,
            renewable: raw.renewable,
            data,
            warnings: raw.warnings.iter().map(|w| printable(w)).collect(),
        })
    }

    /// Writes (POSTs) to a path that answers with a secret, such as `pki/issue/<role>`. An empty
    /// (204) answer gives an empty envelope.
    pub(crate) async fn write(
        &self,
        token: &SecretString,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<SecretEnvelope, VaultError> {
        let reply = self
            .request(&Call::new(Method::POST, path, Some(token)).json(body)?)
            .await?;
        if reply.is_empty() {
            return Ok(SecretEnvelope::default());
        }
        envelope_of(&reply, path)
    }

    /// Renews the token itself; `increment` is a request, the server may grant less.
    pub(crate) async fn renew_self(
        &self,
        token: &SecretString,
        increment: Option<Duration>,
    ) -> Result<AuthInfo, VaultError> {
        #[derive(Serialize)]
        struct Renew {
            #[serde(skip_serializing_if = "Option::is_none")]
            increment: Option<String>,
        }
        let path = "auth/token/renew-self";
        let body = Renew {
            increment: increment.map(|d| format!("{}s", d.as_secs())),
        };
        let reply = self
            .request(&Call::new(Method::POST, path, Some(token)).json(&body)?)
            .await?;
        auth_of(&reply, path)
    }

    /// Creates a child token of `token` (`auth/token/create`) with the request `body` (policies,
    /// ttl…); revoking `token` revokes it and everything created with it.
    pub(crate) async fn create_child_token(
        &self,
        token: &SecretString,
        body: &serde_json::Value,
    ) -> Result<AuthInfo, VaultError> {
        let path = "auth/token/create";
        let reply = self
            .request(&Call::new(Method::POST, path, Some(token)).json(body)?)
            .await?;
        auth_of(&reply, path)
    }

    /// Renews one lease.
    pub(crate) async fn renew_lease(
        &self,
        token: &SecretString,
        lease_id: &str,
        increment: Option<Duration>,
    ) -> Result<LeaseInfo, VaultError> {
        #[derive(Serialize)]
        struct Renew<'a> {
            lease_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            increment: Option<u64>,
        }
        let path = "sys/leases/renew";
        let body = Renew {
            lease_id,
            increment: increment.map(|d| d.as_secs()),
        };
        let reply = self
            .request(&Call::new(Method::PUT, path, Some(token)).json(&body)?)
            .await?;
        let raw: RawResponse<IgnoredAny> = decode(&reply, path)?;
        Ok(LeaseInfo {
            lease_id: if raw.lease_id.is_empty() {
                lease_id.to_owned()
            } else {
                printable(&raw.lease_id)
            },
            lease_duration: raw.lease_duration,
            renewable: raw.renewable,
        })
    }

    /// Revokes one lease (immediately; Vault also revokes unknown lease ids without complaint).
    pub(crate) async fn revoke_lease(
        &self,
        token: &SecretString,
        lease_id: &str,
    ) -> Result<(), VaultError> {
        // The lease id goes into the URL rather than the body so that an admin can grant
        // revocation per mount with a path-scoped policy (`sys/leases/revoke/database/creds/app/*`).
        let plain = !lease_id.is_empty()
            && lease_id
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..")
            && lease_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'));
        if !plain {
            return Err(VaultError::InvalidResponse {
                path: "sys/leases/revoke".into(),
                detail: "refusing to revoke a malformed lease id".into(),
            });
        }
        let path = format!("sys/leases/revoke/{lease_id}");
        self.request(&Call::new(Method::PUT, &path, Some(token)))
            .await
            .map(drop)
    }

    /// Revokes the token and, with it, every lease it created.
    pub(crate) async fn revoke_self(&self, token: &SecretString) -> Result<(), VaultError> {
        self.request(&Call::new(
            Method::POST,
            "auth/token/revoke-self",
            Some(token),
        ))
        .await
        .map(drop)
    }

    /// Revokes the token with this accessor (and its leases); needs a policy on
    /// `auth/token/revoke-accessor`.
    pub(crate) async fn revoke_accessor(
        &self,
        token: &SecretString,
        accessor: &str,
    ) -> Result<(), VaultError> {
        let call = Call::new(Method::POST, "auth/token/revoke-accessor", Some(token))
            .json(&Accessor { accessor })?;
        self.request(&call).await.map(drop)
    }

    #[cfg(test)]
    /// Looks up the token itself; the token's id in the answer is never decoded.
    pub(crate) async fn lookup_self(
        &self,
        token: &SecretString,
    ) -> Result<TokenLookup, VaultError> {
        let path = "auth/token/lookup-self";
        let reply = self
            .request(&Call::new(Method::GET, path, Some(token)))
            .await?;
        lookup_of(&reply, path)
    }

    #[cfg(test)]
    /// Looks up the token with this accessor; needs a policy on `auth/token/lookup-accessor`.
    pub(crate) async fn lookup_accessor(
        &self,
        token: &SecretString,
        accessor: &str,
    ) -> Result<TokenLookup, VaultError> {
        let path = "auth/token/lookup-accessor";
        let call = Call::new(Method::POST, path, Some(token)).json(&Accessor { accessor })?;
        let reply = self.request(&call).await?;
        lookup_of(&reply, path)
    }

    #[cfg(test)]
    /// Lists lease ids (and sub-prefixes, ending in `/`) below `prefix`, e.g.
    /// `database/creds/app/`; nothing there is an empty list. Needs `sudo` on
    /// `sys/leases/lookup/*`.
    pub(crate) async fn list_leases(
        &self,
        token: &SecretString,
        prefix: &str,
    ) -> Result<Vec<String>, VaultError> {
        let path = format!("sys/leases/lookup/{}", prefix.trim_start_matches('/'));
        let list = Method::from_bytes(b"LIST")
            .map_err(|_| config("the HTTP method LIST is not accepted"))?;
        let reply = match self.request(&Call::new(list, &path, Some(token))).await {
            Err(VaultError::NotFound { .. }) => return Ok(Vec::new()),
            other => other?,
        };
        if reply.is_empty() {
            return Ok(Vec::new());
        }
        let raw: RawResponse<RawKeys> = decode(&reply, &path)?;
        Ok(raw.data.unwrap_or_default().keys)
    }

    /// Reads the `data` of a path as plain JSON (`null` when there is none). Only for
    /// configuration that is not secret (auth mount or role configuration), because the values
    /// are not protected in memory.
    pub(crate) async fn read_raw_json(
        &self,
        token: &SecretString,
        path: &str,
    ) -> Result<serde_json::Value, VaultError> {
        let reply = self
            .request(&Call::new(Method::GET, path, Some(token)))
            .await?;
        if reply.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        let raw: RawResponse<serde_json::Value> = decode(&reply, path)?;
        Ok(raw.data.unwrap_or(serde_json::Value::Null))
    }

    /// `sys/health`, asked so that sealed, standby and uninitialized servers all answer 200.
    pub(crate) async fn health(&self) -> Result<Health, VaultError> {
        let call = Call {
            namespace: false,
            query: HEALTH_QUERY,
            ..Call::new(Method::GET, HEALTH_PATH, None)
        };
        let (reply, node) = self.send(&call).await?;
        let reply = self.classify(reply, &call, node)?;
        decode::<RawHealth>(&reply, HEALTH_PATH).map(Health::from)
    }

    fn attempts(&self) -> u32 {
        self.spec.retries.saturating_add(1)
    }

    /// The server as errors name it: its address, and the node when it has several.
    fn label(&self, node: usize) -> String {
        match self.bases.get(node) {
            Some(base) if !self.spec.nodes.is_empty() => format!(
                "{} (node {})",
                self.spec.address,
                base.as_str().trim_end_matches('/')
            ),
            _ => self.spec.address.clone(),
        }
    }

    /// Sends with retries and turns the final status into a result. A 503 whose text does not
    /// say "sealed" (proxies and load balancers answer 503 too) is checked against `sys/health`.
    async fn request(&self, call: &Call<'_>) -> Result<Reply, VaultError> {
        let (reply, node) = self.send(call).await?;
        match self.classify(reply, call, node) {
            Err(VaultError::Server { status: 503, .. }) if self.is_sealed(node).await => {
                Err(VaultError::Sealed {
                    address: self.label(node),
                })
            }
            other => other,
        }
    }

    async fn is_sealed(&self, node: usize) -> bool {
        let call = Call {
            namespace: false,
            query: HEALTH_QUERY,
            ..Call::new(Method::GET, HEALTH_PATH, None)
        };
        let Some(base) = self.bases.get(node) else {
            return false;
        };
        let Ok(url) = api_path::request_url(base, call.path, call.query) else {
            return false;
        };
        let Ok(headers) = self.headers(&call) else {
            return false;
        };
        match self.attempt(&call, &url, &headers, self.spec.timeout).await {
            Ok(reply) if reply.status.is_success() => {
                decode::<RawHealth>(&reply, HEALTH_PATH).is_ok_and(|h| h.sealed)
            }
            _ => false,
        }
    }

    /// What an attempt's outcome means for the request.
    fn verdict(
        &self,
        result: Result<Reply, AttemptError>,
        call: &Call<'_>,
    ) -> Result<Verdict, VaultError> {
        let reply = match result {
            Ok(reply) => reply,
            Err(AttemptError::Fatal(error)) => return Err(error),
            Err(AttemptError::Redirect(detail)) => return Err(config(detail)),
            Err(AttemptError::Transport(detail)) => {
                return Ok(Verdict::Failover(Failure::Transport(detail)));
            }
        };
        let status = reply.status.as_u16();
        Ok(match status {
            429 | 502 | 503 | 504 => Verdict::Failover(Failure::Status(reply)),
            500..=599 => {
                let text = error_text(&reply, call)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                if STANDBY_TEXTS.iter().any(|t| text.contains(t)) {
                    Verdict::Failover(Failure::Status(reply))
                } else {
                    Verdict::Error(Failure::Status(reply))
                }
            }
            _ => Verdict::Done(reply),
        })
    }

    /// Sends the request to the nodes in turn, starting with the one that answered last, and
    /// returns the final reply (whatever its status) with the node that gave it, or
    /// [`VaultError::Unreachable`]. A round over every node counts as one attempt: at least
    /// `retries + 1` rounds are made, and while every failure of a round is a failover answer
    /// (see the module docs) further rounds follow until `failover_wait` has passed. Nothing is
    /// sent after the request's or the client's deadline, and no attempt outlasts it.
    async fn send(&self, call: &Call<'_>) -> Result<(Reply, usize), VaultError> {
        let urls = self
            .bases
            .iter()
            .map(|base| api_path::request_url(base, call.path, call.query))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                config(format!(
                    "refusing to send a request to {}: {e}",
                    self.spec.address
                ))
            })?;
        let headers = self.headers(call)?;
        let started = Instant::now();
        let hard = [call.not_after, self.not_after]
            .into_iter()
            .flatten()
            .min()
            .map(|at| started + at.duration_since(SystemTime::now()).unwrap_or_default());
        let wait_until = hard.map_or(started + self.spec.failover_wait, |h| {
            h.min(started + self.spec.failover_wait)
        });
        let count = urls.len();
        let mut node = self.preferred.load(Ordering::Relaxed) % count;
        let (mut sent, mut rounds) = (0u32, 0u32);
        let mut first_failure: Option<Instant> = None;
        loop {
            let mut failover_round = true;
            let mut last_status: Option<(Reply, usize)> = None;
            let mut last_transport: Option<(String, usize)> = None;
            for _ in 0..count {
                // The first attempt always gets the full timeout: even past the deadline one
                // answer says more (Vault's "token is expired") than none.
                let timeout = match hard {
                    Some(h) if sent > 0 => self
                        .spec
                        .timeout
                        .min(h.saturating_duration_since(Instant::now()))
                        .max(Duration::from_millis(100)),
                    _ => self.spec.timeout,
                };
                // Held for the exchange only, not across the backoff below. The semaphore is
                // never closed; if it were, the request would go out uncapped rather than never.
                let permit = self.spec.limit.permits.acquire().await.ok();
                let result = self.attempt(call, &urls[node], &headers, timeout).await;
                drop(permit);
                sent += 1;
                let failure = match self.verdict(result, call)? {
                    Verdict::Done(reply) => {
                        self.preferred.store(node, Ordering::Relaxed);
                        if let Some(at) = first_failure {
                            tracing::info!(
                                address = %self.label(node),
                                path = call.path,
                                "Vault answered after {} failed attempts, {} ms after the first failure",
                                sent - 1,
                                at.elapsed().as_millis()
                            );
                        }
                        return Ok((reply, node));
                    }
                    Verdict::Failover(failure) => failure,
                    Verdict::Error(failure) => {
                        failover_round = false;
                        failure
                    }
                };
                let reason = match failure {
                    Failure::Status(reply) => {
                        let reason = format!("status {}", reply.status.as_u16());
                        last_status = Some((reply, node));
                        reason
                    }
                    Failure::Transport(detail) => {
                        last_transport = Some((detail.clone(), node));
                        detail
                    }
                };
                first_failure.get_or_insert_with(Instant::now);
                tracing::info!(
                    address = %self.label(node),
                    path = call.path,
                    attempt = sent,
                    "Vault request failed ({reason})"
                );
                node = (node + 1) % count;
            }
            rounds += 1;
            let delay = self.backoff.delay(rounds - 1);
            let next = Instant::now() + delay;
            let more = hard.is_none_or(|h| next < h)
                && (rounds < self.attempts() || (failover_round && next < wait_until));
            if !more {
                // An answer says more than silence.
                if let Some((reply, node)) = last_status {
                    return Ok((reply, node));
                }
                let (detail, node) = last_transport.unwrap_or_default();
                let detail = if self.spec.nodes.is_empty() {
                    detail
                } else {
                    format!(
                        "last at {}: {detail}",
                        urls[node].origin().ascii_serialization()
                    )
                };
                return Err(VaultError::Unreachable {
                    address: self.spec.address.clone(),
                    attempts: sent,
                    waited: started.elapsed().as_secs(),
                    detail,
                });
            }
            tracing::warn!(
                address = %self.spec.address,
                path = call.path,
                attempt = sent,
                "Vault request failed ({}); retrying in {} ms",
                last_status
                    .as_ref()
                    .map(|(reply, _)| format!("status {}", reply.status.as_u16()))
                    .or_else(|| last_transport.as_ref().map(|(detail, _)| detail.clone()))
                    .unwrap_or_default(),
                delay.as_millis()
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        call: &Call<'_>,
        url: &Url,
        headers: &HeaderMap,
        timeout: Duration,
    ) -> Result<Reply, AttemptError> {
        let mut request = self
            .http
            .request(call.method.clone(), url.clone())
            .timeout(timeout)
            .headers(headers.clone());
        if let Some(body) = &call.body {
            // reqwest takes ownership of the bytes and frees them uncleared; each attempt gets a
            // fresh copy so that the original stays in a buffer we zero.
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.as_slice().to_vec());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| with_client_cert_hint(self.classify_reqwest(&e, url), &self.spec))?;
        let status = response.status();
        let hint = response
            .content_length()
            .map_or(0, |n| usize::try_from(n).unwrap_or(MAX_BODY).min(MAX_BODY));
        let mut body = SecretBuf::with_capacity(hint);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.classify_reqwest(&e, url))?
        {
            if body.len().saturating_add(chunk.len()) > MAX_BODY {
                return Err(AttemptError::Fatal(invalid(
                    call.path,
                    format!("the response body is larger than {} MiB", MAX_BODY >> 20),
                )));
            }
            body.extend(&chunk);
        }
        Ok(Reply { status, body })
    }

    /// Builder errors are ours and final, a refused redirect is final, everything else
    /// happened on the wire and may pass.
    fn classify_reqwest(&self, error: &reqwest::Error, url: &Url) -> AttemptError {
        if error.is_redirect() {
            let mut source = error.source();
            while let Some(cause) = source {
                if let Some(refused) = cause.downcast_ref::<RedirectRefused>() {
                    return AttemptError::Redirect(format!(
                        "Vault at {} redirected the request to {refused}, which is not an address listed for this \
                         server, so leasehold sent the token nowhere; if it is a node of this server add it to \
                         nodes, else set address to the active node or its load balancer",
                        self.label_of(url)
                    ));
                }
                source = cause.source();
            }
        }
        match classify_reqwest(error) {
            // A standby's redirect to the dead leader fails there, not at the standby.
            AttemptError::Transport(detail)
                if error
                    .url()
                    .is_some_and(|at| Origin::of(at) != Origin::of(url)) =>
            {
                let at = error
                    .url()
                    .map(|at| at.origin().ascii_serialization())
                    .unwrap_or_default();
                AttemptError::Transport(format!("redirected to {at}: {detail}"))
            }
            other => other,
        }
    }

    fn label_of(&self, url: &Url) -> String {
        let origin = Origin::of(url);
        let node = self
            .bases
            .iter()
            .position(|base| Origin::of(base) == origin)
            .unwrap_or(0);
        self.label(node)
    }
    fn headers(&self, call: &Call<'_>) -> Result<HeaderMap, VaultError> {
        let mut headers = HeaderMap::new();
        headers.insert(X_VAULT_REQUEST, HeaderValue::from_static("true"));
        if let Some(tag) = &self.audit {
            tag.insert_into(&mut headers);
        }
        if let Some(token) = call.token {
            let mut value = HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                config("the Vault token contains characters that cannot be sent in an HTTP header")
            })?;
            // Keeps it out of HTTP/2 header compression tables and out of Debug output.
            value.set_sensitive(true);
            headers.insert(X_VAULT_TOKEN, value);
        }
        if call.namespace
            && let Some(namespace) = self.spec.namespace.as_deref().filter(|ns| !ns.is_empty())
        {
            // Planning and the config check refuse a bad namespace with a message naming its
            // source; this is the last line, for a namespace that came another way.
            let namespace = api_path::check(Piece::Namespace, namespace)
                .map_err(|e| config(format!("refusing to send a request: {e}")))?;
            let value = HeaderValue::from_str(&namespace).map_err(|_| {
                config(format!("Vault namespace {namespace:?} contains characters that cannot be sent in an HTTP header"))
            })?;
            headers.insert(X_VAULT_NAMESPACE, value);
        }
        Ok(headers)
    }

    /// Maps a final status to success or the matching error.
    fn classify(&self, reply: Reply, call: &Call<'_>, node: usize) -> Result<Reply, VaultError> {
        let status = reply.status.as_u16();
        let path = call.path.to_owned();
        match status {
            200..=299 => Ok(reply),
            // A plain miss has an empty `errors` (or, for a deleted KV v2 version, only data). A
            // 404 that gives a reason ("no handler for route", "namespace not found") is a wrong
            // mount or namespace, and "nothing at <path>" would hide that.
            404 => match error_text(&reply, call) {
                None => Err(VaultError::NotFound { path }),
                Some(errors) => Err(VaultError::Denied {
                    status,
                    path,
                    errors,
                }),
            },
            300..=399 => Err(invalid(
                call.path,
                format!(
                    "redirected ({status}) without a target leasehold can follow; set address to the active node or \
                     its load balancer"
                ),
            )),
            429 | 500..=599 => {
                let errors = error_text(&reply, call).unwrap_or_else(no_message);
                if status == 503 && errors.to_ascii_lowercase().contains("sealed") {
                    Err(VaultError::Sealed {
                        address: self.label(node),
                    })
                } else {
                    Err(VaultError::Server {
                        address: self.label(node),
                        status,
                        path,
                        errors,
                    })
                }
            }
            _ => Err(VaultError::Denied {
                status,
                path,
                errors: error_text(&reply, call).unwrap_or_else(no_message),
            }),
        }
    }
}

#[derive(Serialize)]
struct Accessor<'a> {
    accessor: &'a str,
}

/// Builder errors are ours and final; everything else happened on the wire and may pass.
fn classify_reqwest(error: &reqwest::Error) -> AttemptError {
    if error.is_builder() {
        AttemptError::Fatal(config(format!(
            "cannot build the Vault request: {}",
            error_chain(error)
        )))
    } else {
        let mut detail = error_chain(error);
        if detail.contains("certificate") {
            detail.push_str(
                " (check ca_file, and that the address names a host in the server's certificate)",
            );
        }
        AttemptError::Transport(detail)
    }
}

/// How a request fails when a TLS 1.3 server refuses the client certificate (see
/// [`with_client_cert_hint`]); which one depends on a race with sending the request.
const CLIENT_CERT_REFUSAL: [&str; 4] = [
    "received fatal alert",
    "connection closed",
    "broken pipe",
    "connection reset",
];

/// With TLS 1.3 the server checks the client certificate after the client has finished its
/// side of the handshake, so a missing or refused certificate fails the request, not the
/// connect: as the server's alert (`CertificateRequired`, `UnknownCA`, …) or, when that is lost,
/// as the connection closing under the request. Say what that may mean.
fn with_client_cert_hint(error: AttemptError, spec: &ServerSpec) -> AttemptError {
    let https = spec
        .address
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    match error {
        AttemptError::Transport(mut detail)
            if https && {
                let lower = detail.to_ascii_lowercase();
                CLIENT_CERT_REFUSAL.iter().any(|s| lower.contains(s))
            } =>
        {
            detail.push_str(if spec.client_cert.is_some() {
                " (if the server requires client certificates: check that client_cert is signed by a CA \
                 it trusts and has not expired)"
            } else {
                " (if the server requires client certificates: set client_cert and client_key)"
            });
            AttemptError::Transport(detail)
        }
        other => other,
    }
}

/// The error and its causes on one line, without the request URL (the caller names the server).
fn error_chain(error: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // hyper and hyper-util repeat their cause in their own message; keep the innermost words.
        if parts.last().is_none_or(|last| last != &text) {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() {
        let kind = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "connection failed"
        } else {
            "request failed"
        };
        parts.push(kind.to_owned());
    }
    if error.is_timeout() && !parts.iter().any(|p| p.contains("timed out")) {
        parts.insert(0, "timed out".to_owned());
    }
    parts.join(": ")
}

/// Every address of the server (`address` and `nodes`) as a redirect target may match it.
fn listed_origins(spec: &ServerSpec) -> Vec<Origin> {
    std::iter::once(&spec.address)
        .chain(&spec.nodes)
        .filter_map(|address| Url::parse(address).ok())
        .map(|url| Origin::of(&url))
        .collect()
}

/// Follows a redirect only to an address the admin listed for this server (scheme, host and
/// port), because reqwest carries `X-Vault-Token` along (it only strips the standard credential
/// headers). The listed addresses passed [`check_address`], so this never downgrades to plain
/// http unless the admin listed it. A refusal is an error, so the target receives nothing.
fn redirect_policy(listed: Vec<Origin>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let target = attempt.url();
        let shown = target.origin().ascii_serialization();
        if attempt.previous().len() > 3 {
            attempt.error(RedirectRefused(format!("{shown} after 3 redirects")))
        } else if listed.contains(&Origin::of(target)) {
            attempt.follow()
        } else {
            attempt.error(RedirectRefused(shown))
        }
    })
}

fn load_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, VaultError> {
    let pem = std::fs::read(path).map_err(|e| {
        config(format!(
            "cannot read the CA bundle {} ({e}); set ca_file to a readable PEM file of CA certificates",
            path.display()
        ))
    })?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        _ => Err(config(format!(
            "the CA bundle {} holds no PEM certificates; ca_file must contain -----BEGIN CERTIFICATE----- blocks",
            path.display()
        ))),
    }
}

fn load_identity(cert: &Path, key: &Path) -> Result<reqwest::Identity, VaultError> {
    let read = |path: &Path, what: &str, setting: &str| {
        std::fs::read(path)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| {
                config(format!(
                    "cannot read the {what} {} ({e}); set {setting} to a readable PEM file",
                    path.display()
                ))
            })
    };
    let cert_pem = read(cert, "client certificate", "client_cert")?;
    let key_pem = read(key, "client key", "client_key")?;
    // reqwest wants certificate and key in one PEM buffer.
    let mut both = SecretBuf::with_capacity(cert_pem.len() + key_pem.len() + 1);
    both.extend(&cert_pem);
    both.extend(b"\n");
    both.extend(&key_pem);
    reqwest::Identity::from_pem(both.as_slice()).map_err(|_| {
        config(format!(
            "client_cert {} and client_key {} are not a PEM certificate and an unencrypted PEM private key \
             (PKCS#8, PKCS#1 or SEC1); fix or replace the files",
            cert.display(),
            key.display()
        ))
    })
}

/// Vault's `errors` (`None` when there are none), tidied to one line, with any secret the request carried scrubbed out.
fn error_text(reply: &Reply, call: &Call<'_>) -> Option<String> {
    let raw: RawErrors = serde_json::from_slice(reply.body.as_slice()).unwrap_or_default();
    let mut text = raw
        .errors
        .iter()
        .flat_map(|e| tidy(&printable(e)))
        .collect::<Vec<_>>()
        .join("; ");
    for secret in [call.token, call.carried].into_iter().flatten() {
        let secret = secret.expose_secret();
        if !secret.is_empty() && text.contains(secret) {
            text = text.replace(secret, "[REDACTED]");
        }
    }
    if text.is_empty() {
        return None;
    }
    if text.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    Some(text)
}

fn no_message() -> String {
    "no error message".to_owned()
}

/// Collapses whitespace and unpacks go-multierror's "N errors occurred: * a * b" layout.
fn tidy(message: &str) -> Vec<String> {
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let listed = line.split_once(" occurred: ").filter(|(head, _)| {
        let mut words = head.split(' ');
        words
            .next()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            && matches!(words.next(), Some("error" | "errors"))
            && words.next().is_none()
    });
    match listed {
        Some((_, rest)) => rest
            .split("* ")
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(str::to_owned)
            .collect(),
        None if line.is_empty() => Vec::new(),
        None => vec![line],
    }
}

fn decode<T: DeserializeOwned>(reply: &Reply, path: &str) -> Result<T, VaultError> {
    if reply.is_empty() {
        return Err(invalid(path, "the response body is empty"));
    }
    serde_json::from_slice(reply.body.as_slice())
        .map_err(|e| invalid(path, describe_json_error(&e)))
}

/// A description of a decoding error that never quotes the body: serde's own messages do
/// (`invalid type: string "…"`), and the body may be a secret.
fn describe_json_error(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("line {}, column {}", error.line(), error.column());
    match error.classify() {
        Category::Syntax => format!("the body is not valid JSON ({at})"),
        Category::Eof => "the body ends in the middle of a JSON value".to_owned(),
        Category::Io => "the body could not be read".to_owned(),
        Category::Data => {
            // "missing field `x`" names a member of our own schema, nothing from the body.
            let message = error.to_string();
            match message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split_once('`'))
            {
                Some((field, _)) => format!("the JSON lacks the member {field:?}"),
                None => format!("the JSON does not have the expected shape ({at})"),
            }
        }
    }
}

fn refuse_wrapped(wrapped: bool, path: &str) -> Result<(), VaultError> {
    if wrapped {
        return Err(invalid(
            path,
            "the response is wrapped (wrap_info is set), which leasehold does not unwrap; remove the wrapping policy \
             for this path",
        ));
    }
    Ok(())
}

fn envelope_of(reply: &Reply, path: &str) -> Result<SecretEnvelope, VaultError> {
    let raw: RawResponse<SecretFields> = decode(reply, path)?;
    refuse_wrapped(raw.wrap_info.is_some(), path)?;
    Ok(SecretEnvelope {
        lease_id: printable(&raw.lease_id),
        lease_duration: raw.lease_duration,
        renewable: raw.renewable,
        data: raw.data.unwrap_or_default(),
        warnings: raw.warnings.iter().map(|w| printable(w)).collect(),
    })
}

fn auth_of(reply: &Reply, path: &str) -> Result<AuthInfo, VaultError> {
    let raw: RawResponse<IgnoredAny> = decode(reply, path)?;
    raw.auth
        .map(AuthInfo::from)
        .ok_or_else(|| invalid(path, "the response has no auth block"))
}

#[cfg(test)]
fn lookup_of(reply: &Reply, path: &str) -> Result<TokenLookup, VaultError> {
    let raw: RawResponse<TokenLookup> = decode(reply, path)?;
    raw.data
        .ok_or_else(|| invalid(path, "the response has no data"))
}
