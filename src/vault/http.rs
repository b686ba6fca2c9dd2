//! The `reqwest::Client` of one server: its timeouts, its TLS material (CA bundle, client
//! certificate) and its redirect policy. One per server, so TLS sessions and connections are
//! reused across the handful of requests a stage makes.

use std::path::Path;
use std::time::Duration;

use super::address::{listed_origins, redirect_policy};
use super::attempt_error::error_chain;
use super::envelope::SecretBuf;
use super::error::{VaultError, config};
use super::spec::ServerSpec;

/// A connection that has not been made in this long will not be made; the rest of `timeout` is
/// better spent on a retry.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The client for `spec`, with the CA bundle and client certificate loaded.
pub(super) fn http_client(spec: &ServerSpec) -> Result<reqwest::Client, VaultError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("leasehold/", env!("CARGO_PKG_VERSION")))
        .timeout(spec.timeout)
        .connect_timeout(spec.timeout.min(MAX_CONNECT_TIMEOUT))
        .redirect(redirect_policy(listed_origins(spec)));
    if let Some(ca_file) = &spec.ca_file {
        builder = builder.tls_certs_only(load_ca_bundle(ca_file)?);
    }
    match (&spec.client_cert, &spec.client_key) {
        (Some(cert), Some(key)) => builder = builder.identity(load_identity(cert, key)?),
        (None, None) => {}
        _ => {
            return Err(config(format!(
                "Vault server {}: client_cert and client_key must be set together",
                spec.address
            )));
        }
    }
    builder.build().map_err(|e| {
        config(format!(
            "cannot set up TLS for Vault at {} ({}); check ca_file, client_cert and client_key",
            spec.address,
            error_chain(&e)
        ))
    })
}

fn load_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, VaultError> {
    let pem = std::fs::read(path).map_err(|e| {
        config(format!(
            "cannot read the CA bundle {} ({e}); set ca_file to a readable PEM file of CA certificates",
            path.display()
        ))
    })?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        _ => Err(config(format!(
            "the CA bundle {} holds no PEM certificates; ca_file must contain -----BEGIN CERTIFICATE----- blocks",
            path.display()
        ))),
    }
}

fn load_identity(cert: &Path, key: &Path) -> Result<reqwest::Identity, VaultError> {
    let read = |path: &Path, what: &str, setting: &str| {
        std::fs::read(path)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| {
                config(format!(
                    "cannot read the {what} {} ({e}); set {setting} to a readable PEM file",
                    path.display()
                ))
            })
    };
    let cert_pem = read(cert, "client certificate", "client_cert")?;
    let key_pem = read(key, "client key", "client_key")?;
    // reqwest wants certificate and key in one PEM buffer.
    let mut both = SecretBuf::with_capacity(cert_pem.len() + key_pem.len() + 1);
    both.extend(&cert_pem);
    both.extend(b"\n");
    both.extend(&key_pem);
    reqwest::Identity::from_pem(both.as_slice()).map_err(|_| {
        config(format!(
            "client_cert {} and client_key {} are not a PEM certificate and an unencrypted PEM private key \
             (PKCS#8, PKCS#1 or SEC1); fix or replace the files",
            cert.display(),
            key.display()
        ))
    })
}
