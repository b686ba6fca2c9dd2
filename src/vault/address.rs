//! Where a token may go.
//!
//! Plain http only to loopback unless the admin opted in, and redirects are followed only to an
//! address the admin listed for the same server (its `address` or one of its `nodes`, compared
//! by scheme, host and port), because reqwest forwards custom headers such as `X-Vault-Token`
//! on redirect. Anything else is refused before a byte goes to the target.

use std::net::IpAddr;

use reqwest::Url;

use super::error::{VaultError, config};
use super::spec::ServerSpec;

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
pub(super) fn without_userinfo(address: &str) -> String {
    let Some((scheme, rest)) = address.split_once("://") else {
        return address.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => address.to_owned(),
    }
}

/// Where a node can be reached: a redirect may only go to one of the server's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    pub(super) fn of(url: &Url) -> Self {
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

/// The redirect refusal, carried through reqwest's error to the transport, which tells it from
/// a failure on the wire.
#[derive(Debug)]
pub(super) struct RedirectRefused(String);

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedirectRefused {}

/// Every address of the server (`address` and `nodes`) as a redirect target may match it.
pub(super) fn listed_origins(spec: &ServerSpec) -> Vec<Origin> {
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
pub(super) fn redirect_policy(listed: Vec<Origin>) -> reqwest::redirect::Policy {
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
