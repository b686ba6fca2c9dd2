//! A client for one server (and namespace): the Vault API calls leasehold makes, each one
//! [`Call`] sent through the [`Transport`] and its final reply decoded.

use std::time::{Duration, SystemTime};

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::IgnoredAny;

use super::audit::AuditTag;
#[cfg(test)]
use super::backoff::Backoff;
use super::call::{Call, HEALTH_PATH};
use super::envelope::{
    AuthInfo, Health, Kv2Data, LeaseInfo, RawHealth, RawResponse, SecretEnvelope,
};
#[cfg(test)]
use super::envelope::{RawKeys, TokenLookup};
#[cfg(test)]
use super::error::config;
use super::error::{VaultError, invalid, printable};
use super::fault::classify;
#[cfg(test)]
use super::reply::lookup_of;
use super::reply::{auth_of, decode, envelope_of, refuse_wrapped};
use super::spec::ServerSpec;
use super::transport::Transport;
use crate::api_path;

/// A client for one server (and namespace).
#[derive(Debug, Clone)]
pub(crate) struct VaultClient {
    /// Where every call below is sent, and how.
    transport: Transport,
}

impl VaultClient {
    /// Builds the client: checks the address, loads the CA bundle and client certificate.
    pub(crate) fn new(spec: &ServerSpec) -> Result<Self, VaultError> {
        Ok(VaultClient {
            transport: Transport::new(spec)?,
        })
    }

    /// Labels every request with the job it is for ([`AuditTag`]).
    #[must_use]
    pub(crate) fn for_job(mut self, tag: Option<&AuditTag>) -> Self {
        self.transport.audit = tag.cloned();
        self
    }

    /// Retries nothing after `deadline` (the stage's own deadline, unix seconds).
    #[must_use]
    pub(crate) fn until(mut self, deadline: Option<u64>) -> Self {
        self.transport.not_after =
            deadline.map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        self
    }

    #[cfg(test)]
    /// Replaces the retry backoff (first delay `base`, doubling up to `cap`, ±50 % jitter); for
    /// tests and for callers with a tight deadline.
    #[must_use]
    pub(crate) fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.transport.backoff = Backoff { base, cap };
        self
    }

    /// Logs in with a JWT (`auth/<mount>/login`); `role` falls back to the mount's default role.
    /// No attempt is made after `expires` (the JWT's `exp`, unix seconds): Vault would refuse it.
    pub(crate) async fn jwt_login(
        &self,
        mount: &str,
        endpoint: &str,
        role: Option<&str>,
        jwt: &SecretString,
        expires: Option<i64>,
    ) -> Result<AuthInfo, VaultError> {
        #[derive(Serialize)]
        struct Login<'a> {
            jwt: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            role: Option<&'a str>,
        }
        let path = api_path::jwt_login_path(mount, endpoint);
        let mut call = Call::new(Method::POST, &path, None).json(&Login {
            jwt: jwt.expose_secret(),
            role,
        })?;
        call.carried = Some(jwt);
        call.not_after = expires
            .and_then(|exp| u64::try_from(exp).ok())
            .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        let reply = self.transport.request(&call).await?;
        auth_of(&reply, &path)
    }

    /// Logs in with AppRole (`auth/<mount>/login`); used only by the reaper's own credential.
    pub(crate) async fn approle_login(
        &self,
        mount: &str,
        role_id: &str,
        secret_id: &SecretString,
    ) -> Result<AuthInfo, VaultError> {
        #[derive(Serialize)]
        struct Login<'a> {
            role_id: &'a str,
            secret_id: &'a str,
        }
        let path = api_path::login_path(mount);
        let mut call = Call::new(Method::POST, &path, None).json(&Login {
            role_id,
            secret_id: secret_id.expose_secret(),
        })?;
        call.carried = Some(secret_id);
        let reply = self.transport.request(&call).await?;
        auth_of(&reply, &path)
    }

    /// Reads a secret. With `kv2`, `path` must already contain the `data/` segment and the
    /// fields are taken from `data.data`; a deleted or destroyed version is [`VaultError::NotFound`].
    pub(crate) async fn read(
        &self,
        token: &SecretString,
        path: &str,
        kv2: bool,
    ) -> Result<SecretEnvelope, VaultError> {
        let reply = self
            .transport
            .request(&Call::new(Method::GET, path, Some(token)))
            .await?;
        if reply.is_empty() {
            return Err(VaultError::NotFound {
                path: path.to_owned(),
            });
        }
        if !kv2 {
            return envelope_of(&reply, path);
        }
        let raw: RawResponse<Kv2Data> = decode(&reply, path)?;
        refuse_wrapped(raw.wrap_info.is_some(), path)?;
        let data = match raw.data {
            Some(Kv2Data {
                data: Some(Some(fields)),
            }) => fields,
            Some(Kv2Data { data: Some(None) }) => {
                return Err(VaultError::NotFound {
                    path: path.to_owned(),
                });
            }
            Some(Kv2Data { data: None }) | None => {
                return Err(invalid(
                    path,
                    "the response has no data.data; is the mount really KV version 2?",
                ));
            }
        };
        Ok(SecretEnvelope {
            lease_id: printable(&raw.lease_id),
            lease_duration: raw.lease_duration,
            renewable: raw.renewable,
            data,
            warnings: raw.warnings.iter().map(|w| printable(w)).collect(),
        })
    }

    /// Writes (POSTs) to a path that answers with a secret, such as `pki/issue/<role>`. An empty
    /// (204) answer gives an empty envelope.
    pub(crate) async fn write(
        &self,
        token: &SecretString,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<SecretEnvelope, VaultError> {
        let reply = self
            .transport
            .request(&Call::new(Method::POST, path, Some(token)).json(body)?)
            .await?;
        if reply.is_empty() {
            return Ok(SecretEnvelope::default());
        }
        envelope_of(&reply, path)
    }

    /// Renews the token itself; `increment` is a request, the server may grant less.
    pub(crate) async fn renew_self(
        &self,
        token: &SecretString,
        increment: Option<Duration>,
    ) -> Result<AuthInfo, VaultError> {
        #[derive(Serialize)]
        struct Renew {
            #[serde(skip_serializing_if = "Option::is_none")]
            increment: Option<String>,
        }
        let path = "auth/token/renew-self";
        let body = Renew {
            increment: increment.map(|d| format!("{}s", d.as_secs())),
        };
        let reply = self
            .transport
            .request(&Call::new(Method::POST, path, Some(token)).json(&body)?)
            .await?;
        auth_of(&reply, path)
    }

    /// Creates a child token of `token` (`auth/token/create`) with the request `body` (policies,
    /// ttl…); revoking `token` revokes it and everything created with it.
    pub(crate) async fn create_child_token(
        &self,
        token: &SecretString,
        body: &serde_json::Value,
    ) -> Result<AuthInfo, VaultError> {
        let path = "auth/token/create";
        let reply = self
            .transport
            .request(&Call::new(Method::POST, path, Some(token)).json(body)?)
            .await?;
        auth_of(&reply, path)
    }

    /// Renews one lease.
    pub(crate) async fn renew_lease(
        &self,
        token: &SecretString,
        lease_id: &str,
        increment: Option<Duration>,
    ) -> Result<LeaseInfo, VaultError> {
        #[derive(Serialize)]
        struct Renew<'a> {
            lease_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            increment: Option<u64>,
        }
        let path = "sys/leases/renew";
        let body = Renew {
            lease_id,
            increment: increment.map(|d| d.as_secs()),
        };
        let reply = self
            .transport
            .request(&Call::new(Method::PUT, path, Some(token)).json(&body)?)
            .await?;
        let raw: RawResponse<IgnoredAny> = decode(&reply, path)?;
        Ok(LeaseInfo {
            lease_id: if raw.lease_id.is_empty() {
                lease_id.to_owned()
            } else {
                printable(&raw.lease_id)
            },
            lease_duration: raw.lease_duration,
            renewable: raw.renewable,
        })
    }

    /// Revokes one lease (immediately; Vault also revokes unknown lease ids without complaint).
    pub(crate) async fn revoke_lease(
        &self,
        token: &SecretString,
        lease_id: &str,
    ) -> Result<(), VaultError> {
        // The lease id goes into the URL rather than the body so that an admin can grant
        // revocation per mount with a path-scoped policy (`sys/leases/revoke/database/creds/app/*`).
        let plain = !lease_id.is_empty()
            && lease_id
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..")
            && lease_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'));
        if !plain {
            return Err(VaultError::InvalidResponse {
                path: "sys/leases/revoke".into(),
                detail: "refusing to revoke a malformed lease id".into(),
            });
        }
        let path = format!("sys/leases/revoke/{lease_id}");
        self.transport
            .request(&Call::new(Method::PUT, &path, Some(token)))
            .await
            .map(drop)
    }

    /// Revokes the token and, with it, every lease it created.
    pub(crate) async fn revoke_self(&self, token: &SecretString) -> Result<(), VaultError> {
        self.transport
            .request(&Call::new(
                Method::POST,
                "auth/token/revoke-self",
                Some(token),
            ))
            .await
            .map(drop)
    }

    /// Revokes the token with this accessor (and its leases); needs a policy on
    /// `auth/token/revoke-accessor`.
    pub(crate) async fn revoke_accessor(
        &self,
        token: &SecretString,
        accessor: &str,
    ) -> Result<(), VaultError> {
        let call = Call::new(Method::POST, "auth/token/revoke-accessor", Some(token))
            .json(&Accessor { accessor })?;
        self.transport.request(&call).await.map(drop)
    }

    #[cfg(test)]
    /// Looks up the token itself; the token's id in the answer is never decoded.
    pub(crate) async fn lookup_self(
        &self,
        token: &SecretString,
    ) -> Result<TokenLookup, VaultError> {
        let path = "auth/token/lookup-self";
        let reply = self
            .transport
            .request(&Call::new(Method::GET, path, Some(token)))
            .await?;
        lookup_of(&reply, path)
    }

    #[cfg(test)]
    /// Looks up the token with this accessor; needs a policy on `auth/token/lookup-accessor`.
    pub(crate) async fn lookup_accessor(
        &self,
        token: &SecretString,
        accessor: &str,
    ) -> Result<TokenLookup, VaultError> {
        let path = "auth/token/lookup-accessor";
        let call = Call::new(Method::POST, path, Some(token)).json(&Accessor { accessor })?;
        let reply = self.transport.request(&call).await?;
        lookup_of(&reply, path)
    }

    #[cfg(test)]
    /// Lists lease ids (and sub-prefixes, ending in `/`) below `prefix`, e.g.
    /// `database/creds/app/`; nothing there is an empty list. Needs `sudo` on
    /// `sys/leases/lookup/*`.
    pub(crate) async fn list_leases(
        &self,
        token: &SecretString,
        prefix: &str,
    ) -> Result<Vec<String>, VaultError> {
        let path = format!("sys/leases/lookup/{}", prefix.trim_start_matches('/'));
        let list = Method::from_bytes(b"LIST")
            .map_err(|_| config("the HTTP method LIST is not accepted"))?;
        let reply = match self
            .transport
            .request(&Call::new(list, &path, Some(token)))
            .await
        {
            Err(VaultError::NotFound { .. }) => return Ok(Vec::new()),
            other => other?,
        };
        if reply.is_empty() {
            return Ok(Vec::new());
        }
        let raw: RawResponse<RawKeys> = decode(&reply, &path)?;
        Ok(raw.data.unwrap_or_default().keys)
    }

    /// Reads the `data` of a path as plain JSON (`null` when there is none). Only for
    /// configuration that is not secret (auth mount or role configuration), because the values
    /// are not protected in memory.
    pub(crate) async fn read_raw_json(
        &self,
        token: &SecretString,
        path: &str,
    ) -> Result<serde_json::Value, VaultError> {
        let reply = self
            .transport
            .request(&Call::new(Method::GET, path, Some(token)))
            .await?;
        if reply.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        let raw: RawResponse<serde_json::Value> = decode(&reply, path)?;
        Ok(raw.data.unwrap_or(serde_json::Value::Null))
    }

    /// `sys/health`, asked so that sealed, standby and uninitialized servers all answer 200.
    pub(crate) async fn health(&self) -> Result<Health, VaultError> {
        let call = Call::health();
        let (reply, node) = self.transport.send(&call).await?;
        let reply = classify(reply, &call, || self.transport.label(node))?;
        decode::<RawHealth>(&reply, HEALTH_PATH).map(Health::from)
    }
}

#[derive(Serialize)]
struct Accessor<'a> {
    accessor: &'a str,
}
