//! How to reach one server: the settings a [`VaultClient`](super::VaultClient) is built from.

use std::path::PathBuf;
use std::time::Duration;

use super::limit::RequestLimit;

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
