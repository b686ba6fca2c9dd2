//! Taking credentials back: revocation at cleanup (and after a failed prepare).
//!
//! This is the job's own revocation, with the job's own tokens; `reap` is the fallback that
//! uses the reaper's credential when those tokens are gone.
//!
//! Order matters. Each lease is revoked explicitly with `sys/leases/revoke` so that cleanup can
//! report it by id; a role policy that does not grant that path gets 403, which is fine because
//! `auth/token/revoke-self` (allowed by Vault's default policy) then revokes the token *and every
//! lease created with it*. A lease counts as revoked when either request succeeded.
//!
//! The job's own token (`vault: {token: …}`) is a child of a login token: it revokes itself
//! first (the `default` policy allows that) so that cleanup can confirm it by accessor, and the
//! login token's revocation takes it, and every lease the job created through it, along when it
//! cannot (a token with `no_default_policy`).

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
    /// The job's own token, which could not revoke itself, revoked by revoking the login token
    /// it is a child of (Vault revokes a token's children with it).
    RevokedWithParent,
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
            RevocationOutcome::Revoked
            | RevocationOutcome::RevokedWithToken
            | RevocationOutcome::RevokedWithParent => self.revoked += 1,
            RevocationOutcome::Expired => self.expired += 1,
            RevocationOutcome::NotRevocable => self.not_revocable += 1,
            RevocationOutcome::Failed(_) => self.failed += 1,
        }
    }
}

impl RevocationOutcome {
    /// The report's sentence for `what` (`token <accessor>`, `lease <id>`) and where it came
    /// from, as cleanup and `reap` print it.
    pub(crate) fn describe(&self, what: &str, origin: Option<&str>) -> String {
        let what = match origin {
            Some(origin) => format!("{what} ({origin})"),
            None => what.to_owned(),
        };
        match self {
            RevocationOutcome::Revoked => format!("revoked {what}"),
            RevocationOutcome::RevokedWithToken => format!(
                "revoked {what} with its token; Vault completes it in the background (grant sys/leases/revoke/<mount>/* for confirmed revocation)"
            ),
            RevocationOutcome::RevokedWithParent => {
                format!("revoked {what} together with the login token it was created from")
            }
            RevocationOutcome::NotRevocable => format!(
                "{what} is not revocable (AWS STS credentials stay valid until they expire)"
            ),
            RevocationOutcome::Expired => format!("{what} had already expired; nothing to revoke"),
            RevocationOutcome::Failed(why) => format!("could not revoke {what}: {why}"),
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

    let is_child = |i: usize| state.sessions[i].parent.is_some();
    let lease_revocations = join_all(state.leases.iter().map(|lease| {
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
    }));
    let revoke_token = |i: usize| {
        let (session, client) = (&state.sessions[i], &clients[i]);
        async move {
            match client {
                Ok(client) => client.revoke_self(&session.token).await,
                Err(e) => Err(VaultError::Config {
                    detail: e.to_string(),
                }),
            }
        }
    };
    let children: Vec<usize> = (0..state.sessions.len()).filter(|i| is_child(*i)).collect();
    let (lease_results, child_results) = futures_util::future::join(
        lease_revocations,
        join_all(children.iter().map(|i| revoke_token(*i))),
    )
    .await;
    let logins: Vec<usize> = (0..state.sessions.len())
        .filter(|i| !is_child(*i))
        .collect();
    let login_results = join_all(logins.iter().map(|i| revoke_token(*i))).await;
    let mut token_results: Vec<Option<Result<(), VaultError>>> =
        state.sessions.iter().map(|_| None).collect();
    for (i, result) in children.iter().zip(child_results) {
        token_results[*i] = Some(result);
    }
    for (i, result) in logins.iter().zip(login_results) {
        token_results[*i] = Some(result);
    }
    let revoked: Vec<bool> = token_results
        .iter()
        .map(|r| matches!(r, Some(Ok(()))))
        .collect();
    let login_revoked = |i: usize| revoked.get(i).copied().unwrap_or(false);
    // A login token refused with 403 is expired or revoked already, and its children with it.
    let gone: Vec<bool> = token_results
        .iter()
        .map(|r| {
            matches!(
                r,
                Some(Ok(()) | Err(VaultError::Denied { status: 403, .. }))
            )
        })
        .collect();
    let parent_gone = |i: usize| gone.get(i).copied().unwrap_or(false);

    let now = unix_now();
    let expired = |since: u64, ttl: u64| ttl > 0 && since + ttl <= now;
    let mut report = RevocationReport::default();
    for (lease, result) in state.leases.iter().zip(lease_results) {
        let token_revoked = login_revoked(lease.session);
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
        let result = result.unwrap_or(Err(VaultError::Config {
            detail: "not revoked".into(),
        }));
        let outcome = match (session.parent, result) {
            (_, Ok(())) => RevocationOutcome::Revoked,
            // Refused (no default policy, or already gone) or failed: its parent takes it along.
            (Some(parent), Err(_)) if parent_gone(parent) => RevocationOutcome::RevokedWithParent,
            (Some(_), Err(e)) => RevocationOutcome::Failed(format!(
                "{e}; and the login token it is a child of could not be revoked either"
            )),
            // An expired or already revoked token is refused with 403; its leases died with it.
            (None, Err(VaultError::Denied { status: 403, .. }))
                if expired(session.since, session.ttl) =>
            {
                RevocationOutcome::Expired
            }
            (None, Err(VaultError::Denied { status: 403, .. })) => RevocationOutcome::Revoked,
            (None, Err(e)) => RevocationOutcome::Failed(e.to_string()),
        };
        report.items.push(Revocation {
            what: format!("token {}", session.accessor),
            origin: session.describe(),
            outcome,
        });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Session;
    use secrecy::SecretString;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn session(config: &Config, token: &str, parent: Option<usize>) -> Session {
        Session {
            server: config.servers.default_server().clone(),
            namespace: None,
            token: SecretString::from(token),
            accessor: format!("acc-{token}"),
            ttl: 60,
            renewable: true,
            since: 0,
            exhausted: false,
            parent,
            delivered_as: parent.map(|_| "VAULT_TOKEN".to_owned()),
        }
    }

    #[tokio::test]
    async fn the_jobs_token_is_revoked_before_its_parent_or_with_it() {
        let server = MockServer::start().await;
        let config = Config::parse(&format!(
            "[vault]\naddress = \"{}\"\nretries = 0\n",
            server.uri()
        ))
        .expect("config");
        let revoke = |token: &str, status: u16| {
            Mock::given(method("POST"))
                .and(path("/v1/auth/token/revoke-self"))
                .and(header("x-vault-token", token))
                .respond_with(ResponseTemplate::new(status).set_body_json(
                    serde_json::json!({"errors": if status == 403 { vec!["permission denied"] } else { vec![] }}),
                ))
        };
        revoke("login", 204).mount(&server).await;
        revoke("child-default", 204).mount(&server).await;
        revoke("child-nodefault", 403).mount(&server).await;
        for child in ["child-default", "child-nodefault"] {
            let state = Sealed {
                sessions: vec![
                    session(&config, "login", None),
                    session(&config, child, Some(0)),
                ],
                ..Sealed::default()
            };
            let report = revoke_all(&state, &config).await;
            let outcomes: Vec<_> = report.items.iter().map(|i| i.outcome.clone()).collect();
            let expected = if child == "child-default" {
                RevocationOutcome::Revoked
            } else {
                RevocationOutcome::RevokedWithParent
            };
            assert_eq!(outcomes, [RevocationOutcome::Revoked, expected], "{child}");
            assert_eq!(
                report.items[1].origin,
                "job token for VAULT_TOKEN; with the leases created through it"
            );
            assert!(!report.has_failures());
        }
        // The child asked first: once its parent is gone it could not confirm anything.
        let order: Vec<String> = server
            .received_requests()
            .await
            .expect("recorded")
            .iter()
            .filter_map(|r| {
                r.headers
                    .get("x-vault-token")?
                    .to_str()
                    .ok()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(
            order,
            ["child-default", "login", "child-nodefault", "login"]
        );
    }

    #[tokio::test]
    async fn a_child_whose_parent_survives_is_a_failure_for_the_reaper() {
        let server = MockServer::start().await;
        let config = Config::parse(&format!(
            "[vault]\naddress = \"{}\"\nretries = 0\n",
            server.uri()
        ))
        .expect("config");
        Mock::given(method("POST"))
            .and(path("/v1/auth/token/revoke-self"))
            .respond_with(
                ResponseTemplate::new(403)
                    .set_body_json(serde_json::json!({"errors": ["permission denied"]})),
            )
            .mount(&server)
            .await;
        let state = Sealed {
            sessions: vec![
                session(&config, "login", None),
                session(&config, "child", Some(0)),
            ],
            ..Sealed::default()
        };
        // A login token refused with 403 is taken as already gone (expired); its child with it.
        let report = revoke_all(&state, &config).await;
        assert!(!report.has_failures(), "{:?}", report.items);
        // But a login token that could not be reached keeps the child alive: both are reported.
        let unreachable = Config::parse(
            "[vault]\naddress = \"http://127.0.0.1:1\"\nretries = 0\ntimeout_seconds = 1\n",
        )
        .expect("config");
        let state = Sealed {
            sessions: vec![
                session(&unreachable, "login", None),
                session(&unreachable, "child", Some(0)),
            ],
            ..Sealed::default()
        };
        let report = revoke_all(&state, &unreachable).await;
        assert!(matches!(
            report.items[0].outcome,
            RevocationOutcome::Failed(_)
        ));
        let RevocationOutcome::Failed(why) = &report.items[1].outcome else {
            panic!("{:?}", report.items[1]);
        };
        assert!(
            why.contains("the login token it is a child of could not be revoked either"),
            "{why}"
        );
    }

    #[test]
    fn sts_leases_are_recognised() {
        assert!(is_sts_lease("aws/sts/deploy/abc"));
        assert!(!is_sts_lease("database/creds/app/abc"));
        assert!(!is_sts_lease("aws/creds/deploy/abc"));
    }
}
