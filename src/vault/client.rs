//! The HTTP client.
//!
//! STUB: interface fixed; implementation pending.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::{AuthInfo, Health, LeaseInfo, SecretEnvelope, VaultError};

/// How to reach one server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Base address, e.g. `https://vault.example.com:8200`.
    pub address: String,
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
    /// Retries for transport errors and 5xx (0 = one attempt).
    pub retries: u32,
}

/// Refuses `http://` unless the host is loopback or `allow_http` is set; refuses other schemes.
pub fn check_address(address: &str, allow_http: bool) -> Result<(), VaultError> {
    let _ = (address, allow_http);
    Ok(())
}

/// A client for one server (and namespace).
#[derive(Debug, Clone)]
pub struct VaultClient {
    spec: ServerSpec,
}

#[allow(clippy::unused_async, unused_variables, missing_docs)]
impl VaultClient {
    pub fn new(spec: &ServerSpec) -> Result<Self, VaultError> {
        Ok(VaultClient { spec: spec.clone() })
    }
    pub fn address(&self) -> &str {
        &self.spec.address
    }
    pub async fn jwt_login(&self, mount: &str, role: Option<&str>, jwt: &SecretString) -> Result<AuthInfo, VaultError> {
        unimplemented!()
    }
    pub async fn read(&self, token: &SecretString, path: &str, kv2: bool) -> Result<SecretEnvelope, VaultError> {
        unimplemented!()
    }
    pub async fn write(&self, token: &SecretString, path: &str, body: &serde_json::Value) -> Result<SecretEnvelope, VaultError> {
        unimplemented!()
    }
    pub async fn renew_self(&self, token: &SecretString, increment: Option<Duration>) -> Result<AuthInfo, VaultError> {
        unimplemented!()
    }
    pub async fn renew_lease(&self, token: &SecretString, lease_id: &str, increment: Option<Duration>) -> Result<LeaseInfo, VaultError> {
        unimplemented!()
    }
    pub async fn revoke_lease(&self, token: &SecretString, lease_id: &str) -> Result<(), VaultError> {
        unimplemented!()
    }
    pub async fn revoke_self(&self, token: &SecretString) -> Result<(), VaultError> {
        unimplemented!()
    }
    pub async fn revoke_accessor(&self, token: &SecretString, accessor: &str) -> Result<(), VaultError> {
        unimplemented!()
    }
    pub async fn lookup_self(&self, token: &SecretString) -> Result<serde_json::Value, VaultError> {
        unimplemented!()
    }
    pub async fn health(&self) -> Result<Health, VaultError> {
        unimplemented!()
    }
}
