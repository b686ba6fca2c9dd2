//! The Vault/OpenBao servers the admin trusts with a job's ID token, normalised once.
//!
//! A job may pick a server (`VAULT_SERVER_URL`), a binding may name one, the reaper finds one by
//! the address a journal recorded: every lookup goes through [`Servers`], which compares
//! addresses the way an admin means them (scheme and host case-insensitive, trailing slashes
//! ignored). An address not listed is never contacted with a job's token.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::limit::RequestLimit;
use super::spec::ServerSpec;

/// One trusted server, as configured (address without a trailing slash). The sealed job state
/// keeps a copy, so that later stages reach the server of a login exactly as prepare did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    /// `https://vault.example.com:8200`, without a trailing slash: the server's identity.
    pub address: String,
    /// The addresses of its nodes, tried in turn (empty: `address` only); a redirect may go to
    /// any of them or to `address`.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Namespace used when the job sets no `VAULT_NAMESPACE`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// PEM bundle of CAs to trust instead of the system store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (with `client_key`) for mutual TLS.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key for `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Allow `http://` to a non-loopback address.
    #[serde(default)]
    pub allow_http: bool,
}

impl Server {
    /// How to reach this server in `namespace`, capped by `limit`.
    pub fn spec(
        &self,
        namespace: Option<String>,
        timeout: Duration,
        retries: u32,
        failover_wait: Duration,
        limit: RequestLimit,
    ) -> ServerSpec {
        ServerSpec {
            address: self.address.clone(),
            nodes: self.nodes.clone(),
            namespace,
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            allow_http: self.allow_http,
            timeout,
            retries,
            failover_wait,
            limit,
        }
    }

    /// A server known only by its address (plain TLS settings), e.g. one a journal names that
    /// the config no longer lists.
    pub fn bare(address: &str) -> Self {
        Server {
            address: address.trim().trim_end_matches('/').to_owned(),
            nodes: Vec::new(),
            namespace: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            allow_http: false,
        }
    }
}

/// Compares server addresses the way an admin means them: scheme and host case-insensitive,
/// trailing slashes ignored.
pub(crate) fn address_key(address: &str) -> String {
    address.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The trusted servers, the default (`[vault] address`) first.
#[derive(Debug, Clone)]
pub(crate) struct Servers {
    list: Vec<Server>,
}

impl Servers {
    /// The default server first, then the others; addresses are trimmed of trailing slashes.
    pub(crate) fn new(default: Server, others: Vec<Server>) -> Self {
        let list = std::iter::once(default)
            .chain(others)
            .map(|mut s| {
                s.address = s.address.trim().trim_end_matches('/').to_owned();
                s
            })
            .collect();
        Servers { list }
    }

    /// `[vault] address`.
    pub(crate) fn default_server(&self) -> &Server {
        &self.list[0]
    }

    /// Every server, the default first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Server> {
        self.list.iter()
    }

    /// The listed server with this address.
    pub(crate) fn find(&self, address: &str) -> Option<&Server> {
        let wanted = address_key(address);
        self.list.iter().find(|s| address_key(&s.address) == wanted)
    }

    /// The server a job or binding asked for by URL, if the admin lists it; `None` selects the
    /// default.
    pub(crate) fn get(&self, requested: Option<&str>) -> Result<&Server, String> {
        let Some(requested) = requested else {
            return Ok(self.default_server());
        };
        self.find(requested).ok_or_else(|| {
            format!(
                "VAULT_SERVER_URL {requested} is not a server this runner trusts with ID tokens; \
                 remove the variable to use {}, or ask the runner admin to add it under [[vault.servers]]",
                self.default_server().address
            )
        })
    }

    /// Every distinct address, the default first.
    pub(crate) fn addresses(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for server in &self.list {
            if !out.contains(&server.address) {
                out.push(server.address.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_may_only_name_listed_servers() {
        let servers = Servers::new(
            Server::bare("https://a.example.com"),
            vec![Server::bare("https://b.example.com/")],
        );
        assert_eq!(
            servers.get(None).expect("default").address,
            "https://a.example.com"
        );
        assert_eq!(
            servers
                .get(Some("https://B.example.com"))
                .expect("listed")
                .address,
            "https://b.example.com"
        );
        let err = servers
            .get(Some("https://evil.example.com"))
            .expect_err("not listed");
        assert!(err.contains("[[vault.servers]]"), "{err}");
        assert_eq!(
            servers.addresses(),
            ["https://a.example.com", "https://b.example.com"]
        );
    }
}
