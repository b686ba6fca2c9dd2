//! Taking credentials back: revocation at cleanup (and after a failed prepare).
//!
//! This is the job's own revocation, with the job's own tokens; `reap` is the fallback that
//! uses the reaper's credential when those tokens are gone.
//!
//! Order matters. Each lease is revoked explicitly with `sys/leases/revoke` so that cleanup can
//! report it by id; a role policy that does not grant that path gets 403, which is fine because
//! `auth/token/revoke-self` (allowed by Vault's default policy) then revokes the token *and every
//! lease created with it*. A lease counts as revoked when either request succeeded.

use futures_util::future::join_all;

use crate::config::Config;
use crate::events::Tally;
use crate::state::{Sealed, is_sts_lease, unix_now};
use crate::vault::{VaultClient, VaultError};

/// What happened to one token or lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RevocationOutcome {
    /// Gone: Vault confirmed this lease's revocation.
    Revoked,
    /// Revoked together with the token that created it (the role's policy does not grant
    /// `sys/leases/revoke/<lease>`). Vault guarantees it, but finishes it in the background,
    /// typically within a few hundred milliseconds.
    RevokedWithToken,
    /// Vault removed the lease, but the credential stays valid until it expires (AWS STS).
    NotRevocable,
    /// It had expired before cleanup came to it: nothing was left to revoke.
    Expired,
    /// Still alive; the journal keeps it for `leasehold reap`.
    Failed(String),
}

impl Tally {
    /// Counts one credential with its outcome.
    pub(crate) fn count(&mut self, outcome: &RevocationOutcome) {
        self.obtained += 1;
        match outcome {
            RevocationOutcome::Revoked | RevocationOutcome::RevokedWithToken => self.revoked += 1,
            RevocationOutcome::Expired => self.expired += 1,
            RevocationOutcome::NotRevocable => self.not_revocable += 1,
            RevocationOutcome::Failed(_) => self.failed += 1,
        }
    }
}

/// One line of the revocation report.
#[derive(Debug, Clone)]
pub(crate) struct Revocation {
    /// `lease <id>` or `token <accessor>`.
    pub what: String,
    /// Where it came from.
    pub origin: String,
    /// What happened.
    pub outcome: RevocationOutcome,
}

/// The revocation report of a job.
#[derive(Debug, Clone, Default)]
pub(crate) struct RevocationReport {
    /// Every token and lease.
    pub items: Vec<Revocation>,
}

impl RevocationReport {
    /// The report as event counts: `(tokens, leases)`.
    pub(crate) fn tally(&self) -> (Tally, Tally) {
        let mut tokens = Tally::default();
        let mut leases = Tally::default();
        for item in &self.items {
            let tally = if item.what.starts_with("token ") {
                &mut tokens
            } else {
                &mut leases
            };
            tally.count(&item.outcome);
        }
        (tokens, leases)
    }

    /// Whether anything is still alive.
    pub(crate) fn has_failures(&self) -> bool {
        self.items
            .iter()
            .any(|r| matches!(r.outcome, RevocationOutcome::Failed(_)))
    }
}

/// Revokes every lease, then every token, of the job.
pub(crate) async fn revoke_all(state: &Sealed, config: &Config) -> RevocationReport {
    let clients: Vec<Result<VaultClient, VaultError>> = state
        .sessions
        .iter()
        .map(|s| {
            VaultClient::new(&config.server_spec(&s.server, s.namespace.clone()))
                .map(|client| client.for_job(state.audit.as_ref()))
        })
        .collect();

    let lease_results = join_all(state.leases.iter().map(|lease| {
        let session = state.sessions.get(lease.session);
        let client = clients.get(lease.session);
        async move {
            match (session, client) {
                (Some(session), Some(Ok(client))) => {
                    client.revoke_lease(&session.token, &lease.lease_id).await
                }
                _ => Err(VaultError::Config {
                    detail: "no token for this lease".into(),
                }),
            }
        }
    }))
    .await;

    let token_results = join_all(state.sessions.iter().zip(&clients).map(
        |(session, client)| async move {
            match client {
                Ok(client) => client.revoke_self(&session.token).await,
                Err(e) => Err(VaultError::Config {
                    detail: e.to_string(),
                }),
            }
        },
    ))
    .await;

    let now = unix_now();
    let expired = |since: u64, ttl: u64| ttl > 0 && since + ttl <= now;
    let mut report = RevocationReport::default();
    for (lease, result) in state.leases.iter().zip(lease_results) {
        let token_revoked = matches!(token_results.get(lease.session), Some(Ok(())));
        let outcome = match result {
            _ if is_sts_lease(&lease.lease_id) => RevocationOutcome::NotRevocable,
            _ if expired(lease.since, lease.ttl) => RevocationOutcome::Expired,
            Ok(()) => RevocationOutcome::Revoked,
            Err(_) if token_revoked => RevocationOutcome::RevokedWithToken,
            Err(e) => RevocationOutcome::Failed(e.to_string()),
        };
        report.items.push(Revocation {
            what: format!("lease {}", lease.lease_id),
            origin: lease.origin.clone(),
            outcome,
        });
    }
    for (session, result) in state.sessions.iter().zip(token_results) {
        let outcome = match result {
            Ok(()) => RevocationOutcome::Revoked,
            // An expired or already revoked token is refused with 403; its leases died with it.
            Err(VaultError::Denied { status: 403, .. }) if expired(session.since, session.ttl) => {
                RevocationOutcome::Expired
            }
            Err(VaultError::Denied { status: 403, .. }) => RevocationOutcome::Revoked,
            Err(e) => RevocationOutcome::Failed(e.to_string()),
        };
        report.items.push(Revocation {
            what: format!("token {}", session.accessor),
            origin: session.server.address.clone(),
            outcome,
        });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_leases_are_recognised() {
        assert!(is_sts_lease("aws/sts/deploy/abc"));
        assert!(!is_sts_lease("database/creds/app/abc"));
        assert!(!is_sts_lease("aws/creds/deploy/abc"));
    }
}
