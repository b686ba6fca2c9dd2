//! Response shapes of the Vault HTTP API, decoded so that secret material lands directly in
//! `SecretString`.
//!
//! STUB: interface fixed; implementation pending.

use std::collections::BTreeMap;

use secrecy::SecretString;

/// The data map of a secret response. String values are kept as they are; any other JSON
/// value (number, bool, object, array) is kept as its compact JSON text, like `vault read -field`.
#[derive(Debug, Default)]
pub struct SecretFields(pub BTreeMap<String, SecretString>);

impl SecretFields {
    /// The value of one field.
    pub fn get(&self, field: &str) -> Option<&SecretString> {
        self.0.get(field)
    }
    /// The field names that exist (never values), for "field missing" messages.
    pub fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// A secret response with its lease metadata.
#[derive(Debug, Default)]
pub struct SecretEnvelope {
    /// Empty when the secret has no lease (KV).
    pub lease_id: String,
    /// Seconds.
    pub lease_duration: u64,
    /// Whether the lease can be renewed.
    pub renewable: bool,
    /// The data; for KV v2 this is already the inner `data.data`.
    pub data: SecretFields,
    /// Warnings Vault attached.
    pub warnings: Vec<String>,
}

/// The `auth` block of a login or token renewal.
#[derive(Debug)]
pub struct AuthInfo {
    /// The token.
    pub client_token: SecretString,
    /// Its accessor (not secret: it can only look up or revoke with a suitable policy).
    pub accessor: String,
    /// Seconds the token lives before it must be renewed.
    pub lease_duration: u64,
    /// Whether it can be renewed.
    pub renewable: bool,
    /// Policies attached to the token.
    pub policies: Vec<String>,
}

/// Result of a lease renewal.
#[derive(Debug, Clone)]
pub struct LeaseInfo {
    /// The lease id.
    pub lease_id: String,
    /// New TTL in seconds.
    pub lease_duration: u64,
    /// Whether it can be renewed again.
    pub renewable: bool,
}

/// `sys/health`.
#[derive(Debug, Clone)]
pub struct Health {
    /// Whether the server is initialized.
    pub initialized: bool,
    /// Whether it is sealed.
    pub sealed: bool,
    /// Whether it is a standby.
    pub standby: bool,
    /// Server version.
    pub version: String,
}
