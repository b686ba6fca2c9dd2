//! Why one attempt failed, in words: reqwest's error and its causes on one line, with a hint
//! where the cause is likely the admin's TLS setup.

use std::error::Error as _;

use super::error::{VaultError, config};
use super::spec::ServerSpec;

/// Why one attempt failed.
pub(super) enum AttemptError {
    /// Worth retrying; the text describes the transport failure.
    Transport(String),
    /// A redirect to an address that is not listed for this server (the text says where).
    Redirect(String),
    /// Not worth retrying.
    Fatal(VaultError),
}

/// Builder errors are ours and final; everything else happened on the wire and may pass.
pub(super) fn classify_reqwest(error: &reqwest::Error) -> AttemptError {
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
pub(super) fn with_client_cert_hint(error: AttemptError, spec: &ServerSpec) -> AttemptError {
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
pub(super) fn error_chain(error: &reqwest::Error) -> String {
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
