//! What a final reply says, and what of it may leave the module.
//!
//! Error messages carry Vault's own `errors` (with the request's token or JWT scrubbed out, and
//! every control character replaced, so that a server cannot write terminal escapes into a job
//! log), paths and addresses, never a response body: decoding errors describe where the JSON is
//! wrong without quoting it.

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::de::{DeserializeOwned, IgnoredAny};

use super::call::Call;
#[cfg(test)]
use super::envelope::TokenLookup;
use super::envelope::{AuthInfo, RawErrors, RawResponse, SecretBuf, SecretEnvelope, SecretFields};
use super::error::{VaultError, invalid, printable};

/// Vault's error text is shown in the job log; keep it to a readable size.
const MAX_ERROR_TEXT: usize = 1000;

/// A response whose status is final (after retries).
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: SecretBuf,
}

impl Reply {
    pub(super) fn is_empty(&self) -> bool {
        self.body.as_slice().iter().all(u8::is_ascii_whitespace)
    }
}

/// Vault's `errors` (`None` when there are none), tidied to one line, with any secret the request carried scrubbed out.
pub(super) fn error_text(reply: &Reply, call: &Call<'_>) -> Option<String> {
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

pub(super) fn no_message() -> String {
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

pub(super) fn decode<T: DeserializeOwned>(reply: &Reply, path: &str) -> Result<T, VaultError> {
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

pub(super) fn refuse_wrapped(wrapped: bool, path: &str) -> Result<(), VaultError> {
    if wrapped {
        return Err(invalid(
            path,
            "the response is wrapped (wrap_info is set), which leasehold does not unwrap; remove the wrapping policy \
             for this path",
        ));
    }
    Ok(())
}

pub(super) fn envelope_of(reply: &Reply, path: &str) -> Result<SecretEnvelope, VaultError> {
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

pub(super) fn auth_of(reply: &Reply, path: &str) -> Result<AuthInfo, VaultError> {
    let raw: RawResponse<IgnoredAny> = decode(reply, path)?;
    raw.auth
        .map(AuthInfo::from)
        .ok_or_else(|| invalid(path, "the response has no auth block"))
}

#[cfg(test)]
pub(super) fn lookup_of(reply: &Reply, path: &str) -> Result<TokenLookup, VaultError> {
    let raw: RawResponse<TokenLookup> = decode(reply, path)?;
    raw.data
        .ok_or_else(|| invalid(path, "the response has no data"))
}
