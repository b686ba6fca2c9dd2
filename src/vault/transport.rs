//! The one place a request is sent: to the nodes of one server in turn, retried with backoff
//! until it gets a final answer, the server's failover wait is spent or the deadline passes.
//!
//! How long to wait for a cluster: while an HA cluster elects a new active node, its failover
//! answers ([`fault`](super::fault)) and transport failures are retried, node after node, for
//! up to `failover_wait` (never past a request's own deadline, such as the ID token's `exp` for
//! a login), because an election takes seconds and a failed stage costs the job a
//! runner-level retry or a reap.

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;

use super::address::{Origin, RedirectRefused, check_address, without_userinfo};
use super::attempt_error::{AttemptError, classify_reqwest, with_client_cert_hint};
use super::audit::AuditTag;
use super::backoff::{BACKOFF_BASE, BACKOFF_CAP, Backoff};
use super::call::{Call, HEALTH_PATH};
use super::envelope::{RawHealth, SecretBuf};
use super::error::{VaultError, config, invalid};
use super::fault::{Failure, Verdict, classify, verdict};
use super::http::http_client;
use super::reply::{Reply, decode};
use super::spec::ServerSpec;
use crate::api_path::{self, Piece};

/// Vault answers are small; anything larger is not Vault (or not sane).
const MAX_BODY: usize = 16 << 20;

const X_VAULT_REQUEST: HeaderName = HeaderName::from_static("x-vault-request");
const X_VAULT_TOKEN: HeaderName = HeaderName::from_static("x-vault-token");
const X_VAULT_NAMESPACE: HeaderName = HeaderName::from_static("x-vault-namespace");

/// Sends the requests of one client.
#[derive(Debug, Clone)]
pub(super) struct Transport {
    spec: ServerSpec,
    /// The nodes (`spec.nodes`, else `spec.address`), parsed: every request URL is built on one
    /// of them by [`api_path::request_url`].
    bases: Vec<Url>,
    /// The node that answered last, where the next request starts.
    preferred: Arc<AtomicUsize>,
    /// No request is retried after this time (the stage's own deadline).
    pub(super) not_after: Option<SystemTime>,
    http: reqwest::Client,
    pub(super) backoff: Backoff,
    /// The job these requests are for, as the audit log labels them.
    pub(super) audit: Option<AuditTag>,
}

impl Transport {
    /// Checks the address, loads the CA bundle and client certificate.
    pub(super) fn new(spec: &ServerSpec) -> Result<Self, VaultError> {
        check_address(&spec.address, spec.allow_http)?;
        if spec.timeout.is_zero() {
            return Err(config(format!(
                "Vault server {}: the request timeout must be greater than zero",
                spec.address
            )));
        }
        let http = http_client(spec)?;
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
        Ok(Transport {
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

    fn attempts(&self) -> u32 {
        self.spec.retries.saturating_add(1)
    }

    /// The server as errors name it: its address, and the node when it has several.
    pub(super) fn label(&self, node: usize) -> String {
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
    pub(super) async fn request(&self, call: &Call<'_>) -> Result<Reply, VaultError> {
        let (reply, node) = self.send(call).await?;
        match classify(reply, call, || self.label(node)) {
            Err(VaultError::Server { status: 503, .. }) if self.is_sealed(node).await => {
                Err(VaultError::Sealed {
                    address: self.label(node),
                })
            }
            other => other,
        }
    }

    async fn is_sealed(&self, node: usize) -> bool {
        let call = Call::health();
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

    /// returns the final reply (whatever its status) with the node that gave it, or
    /// [`VaultError::Unreachable`]. A round over every node counts as one attempt: at least
    /// `retries + 1` rounds are made, and while every failure of a round is a failover answer
    /// (see the module docs) further rounds follow until `failover_wait` has passed. Nothing is
    /// sent after the request's or the client's deadline, and no attempt outlasts it.
    pub(super) async fn send(&self, call: &Call<'_>) -> Result<(Reply, usize), VaultError> {
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
                let permit = self.spec.limit.acquire().await;
                let result = self.attempt(call, &urls[node], &headers, timeout).await;
                drop(permit);
                sent += 1;
                let failure = match verdict(result, call)? {
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
}
