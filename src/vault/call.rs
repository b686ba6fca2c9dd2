//! One logical request, as the API calls describe it and the transport sends it (retried as a
//! whole).
//!
//! Every request URL is built from a call's path segment by segment by
//! [`api_path::request_url`](crate::api_path::request_url), which refuses `\`, dot segments,
//! `?`, `#`, `%` and control characters in any segment and percent-encodes the rest: no path
//! piece, whoever supplied it, can change which endpoint is called or add a query.

use std::time::SystemTime;

use reqwest::Method;
use secrecy::SecretString;
use serde::Serialize;

use super::envelope::SecretBuf;
use super::error::{VaultError, config};

pub(super) const HEALTH_PATH: &str = "sys/health";
const HEALTH_QUERY: &[(&str, &str)] = &[
    ("standbyok", "true"),
    ("sealedcode", "200"),
    ("uninitcode", "200"),
    ("perfstandbyok", "true"),
];

/// One logical request (retried as a whole).
pub(super) struct Call<'a> {
    pub(super) method: Method,
    /// Below `/v1/`, segments separated by `/`; checked and encoded segment by segment.
    pub(super) path: &'a str,
    /// Query parameters (only leasehold's own constants).
    pub(super) query: &'static [(&'static str, &'static str)],
    pub(super) token: Option<&'a SecretString>,
    pub(super) body: Option<SecretBuf>,
    /// `sys/health` is cluster-wide and is asked without a namespace.
    pub(super) namespace: bool,
    /// A secret other than the token that the request carries (the JWT of a login), scrubbed
    /// from any error text the server echoes back.
    pub(super) carried: Option<&'a SecretString>,
    /// No attempt is made after this time (the ID token's `exp` for a login).
    pub(super) not_after: Option<SystemTime>,
}

impl<'a> Call<'a> {
    pub(super) fn new(method: Method, path: &'a str, token: Option<&'a SecretString>) -> Self {
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

    /// `sys/health`, asked so that every state that still answers API requests (standby,
    /// sealed, uninitialized) returns 200: the body, not the status, tells what the server is
    /// doing. It is cluster-wide, so it is asked without a namespace.
    pub(super) fn health() -> Self {
        Call {
            namespace: false,
            query: HEALTH_QUERY,
            ..Call::new(Method::GET, HEALTH_PATH, None)
        }
    }

    pub(super) fn json(mut self, body: &impl Serialize) -> Result<Self, VaultError> {
        let mut buf = SecretBuf::default();
        serde_json::to_writer(&mut buf, body)
            .map_err(|_| config(format!("cannot encode the request body for {}", self.path)))?;
        self.body = Some(buf);
        Ok(self)
    }
}
