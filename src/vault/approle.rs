//! AppRole login, used only by the reaper's own credential.
//!
//! STUB until the client lands: replaced by a real request in client.rs.

use secrecy::SecretString;

use super::{AuthInfo, VaultClient, VaultError};

impl VaultClient {
    /// `POST auth/<mount>/login {role_id, secret_id}`.
    pub async fn approle_login(&self, mount: &str, role_id: &str, secret_id: &SecretString) -> Result<AuthInfo, VaultError> {
        let _ = (mount, role_id, secret_id);
        Err(VaultError::Config { detail: "AppRole login not implemented yet".into() })
    }
}
