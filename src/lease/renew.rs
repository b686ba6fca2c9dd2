//! Keeping the token and renewable leases alive while the job runs, without restarting it.
//!
//! Every run sub-stage process renews whatever is due: an item is due at two thirds of its
//! TTL. The increment asked for is capped by `[leases] max_increment_seconds` and by the time
//! left until the job's timeout, so a credential never outlives its job by design. When Vault
//! grants less than asked (the max TTL is reached) and the credential will expire before the
//! job's timeout, the job log gets one warning with the expiry time. Renewed TTLs are written
//! back to the private state so that the next sub-stage continues the schedule.

use std::time::Duration;

use crate::config::Config;
use crate::joblog;
use crate::state::{JobDir, Sealed, StateKey, unix_now};
use crate::vault::{VaultClient, VaultError};

/// Renews a job's token and leases on schedule.
pub(crate) struct Renewer {
    config: Config,
    job_dir: JobDir,
    key: StateKey,
    state: Sealed,
    clients: Vec<Option<VaultClient>>,
    /// After a failed renewal: not before this time (a short Vault outage must not end renewal
    /// for the rest of the job, nor turn into a tight retry loop).
    retry_at: std::collections::HashMap<Item, u64>,
}

/// What is being renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Item {
    Token(usize),
    Lease(usize),
}

impl Renewer {
    /// A renewer over the job's state; nothing happens until [`Renewer::run`] is polled.
    pub(crate) fn new(config: Config, job_dir: JobDir, key: StateKey, state: Sealed) -> Self {
        let clients = state.sessions.iter().map(|_| None).collect();
        Renewer {
            config,
            job_dir,
            key,
            state,
            clients,
            retry_at: std::collections::HashMap::new(),
        }
    }

    fn deadline(&self) -> u64 {
        if self.state.deadline == 0 {
            u64::MAX
        } else {
            self.state.deadline
        }
    }

    /// When an item needs renewing, or `None` if it never does.
    fn due(&self, item: Item) -> Option<u64> {
        let (since, ttl, renewable, exhausted) = match item {
            Item::Token(i) => {
                let s = &self.state.sessions[i];
                (s.since, s.ttl, s.renewable, s.exhausted)
            }
            Item::Lease(i) => {
                let l = &self.state.leases[i];
                (l.since, l.ttl, l.renewable, l.exhausted)
            }
        };
        if !renewable || exhausted || ttl == 0 {
            return None;
        }
        let expires = since.saturating_add(ttl);
        if expires >= self.deadline() {
            return None;
        }
        let due = since.saturating_add(ttl * 2 / 3);
        Some(
            self.retry_at
                .get(&item)
                .map_or(due, |retry| due.max(*retry)),
        )
    }

    fn items(&self) -> impl Iterator<Item = Item> + use<> {
        let tokens = (0..self.state.sessions.len()).map(Item::Token);
        let leases = (0..self.state.leases.len()).map(Item::Lease);
        tokens.chain(leases).collect::<Vec<_>>().into_iter()
    }

    fn next_due(&self) -> Option<u64> {
        self.items().filter_map(|i| self.due(i)).min()
    }

    fn increment(&self, now: u64) -> Duration {
        let left = self.deadline().saturating_sub(now).max(1);
        Duration::from_secs(left.min(self.config.leases.max_increment_seconds.max(1)))
    }

    fn client(&mut self, session: usize) -> Option<&VaultClient> {
        if self.clients.get(session)?.is_none() {
            let session_state = &self.state.sessions[session];
            let spec = self
                .config
                .server_spec(&session_state.server, session_state.namespace.clone());
            match VaultClient::new(&spec) {
                Ok(client) => {
                    self.clients[session] = Some(client.for_job(self.state.audit.as_ref()));
                }
                Err(e) => {
                    tracing::warn!("cannot build a Vault client for renewal: {e}");
                    return None;
                }
            }
        }
        self.clients.get(session)?.as_ref()
    }

    /// Renews on schedule forever; the caller drops this future when the child exits.
    pub(crate) async fn run(mut self) {
        loop {
            let Some(due) = self.next_due() else {
                std::future::pending::<()>().await;
                return;
            };
            let now = unix_now();
            if due > now {
                tokio::time::sleep(Duration::from_secs(due - now)).await;
            }
            self.renew_due().await;
        }
    }

    async fn renew_due(&mut self) {
        let now = unix_now();
        let increment = self.increment(now);
        let due: Vec<Item> = self
            .items()
            .filter(|i| self.due(*i).is_some_and(|d| d <= now))
            .collect();
        for item in due {
            match item {
                Item::Token(i) => self.renew_token(i, increment).await,
                Item::Lease(i) => self.renew_lease(i, increment).await,
            }
        }
        if let Err(e) = self.job_dir.seal(&self.state, &self.key) {
            // cleanup may already have removed the state of a stage being killed.
            tracing::info!("renewed TTLs not persisted: {e}");
        }
    }

    async fn renew_token(&mut self, i: usize, increment: Duration) {
        let now = unix_now();
        let token = self.state.sessions[i].token.clone();
        let Some(client) = self.client(i) else { return };
        let renewed = client
            .renew_self(&token, Some(increment))
            .await
            .map(|auth| (auth.lease_duration, auth.renewable));
        self.record_renewal(Item::Token(i), now, increment, renewed);
    }

    async fn renew_lease(&mut self, i: usize, increment: Duration) {
        let now = unix_now();
        let session = self.state.leases[i].session;
        let Some(token) = self.state.sessions.get(session).map(|s| s.token.clone()) else {
            return;
        };
        let lease_id = self.state.leases[i].lease_id.clone();
        let Some(client) = self.client(session) else {
            return;
        };
        let renewed = client
            .renew_lease(&token, &lease_id, Some(increment))
            .await
            .map(|info| (info.lease_duration, info.renewable));
        self.record_renewal(Item::Lease(i), now, increment, renewed);
    }

    /// Writes a renewal's outcome (the granted TTL and whether it is renewable again) back to
    /// the item, warning once when Vault granted less than asked and the credential expires
    /// before the job's timeout; after a failure, schedules the retry.
    fn record_renewal(
        &mut self,
        item: Item,
        now: u64,
        increment: Duration,
        renewed: Result<(u64, bool), VaultError>,
    ) {
        match renewed {
            Ok((ttl, renewable)) => {
                let deadline = self.deadline();
                let (since_field, ttl_field, renewable_field, exhausted_field) =
                    self.timing_mut(item);
                *ttl_field = ttl;
                *since_field = now;
                *renewable_field = renewable;
                // Vault rounds a TTL it caps to the second, and the request takes time: a lease
                // capped at the job's timeout comes back a second short, which is not news.
                if ttl + TTL_SLACK_SECONDS < increment.as_secs()
                    && now + ttl + TTL_SLACK_SECONDS < deadline
                {
                    *exhausted_field = true;
                    let expires_at = format_time(now + ttl);
                    joblog::warning(&match item {
                        Item::Token(i) => format!(
                            "{} reached its max TTL and expires at {expires_at}, before the job's timeout; its leases end with it",
                            token_name(&self.state.sessions[i])
                        ),
                        Item::Lease(i) => format!(
                            "lease of {} reached its max TTL and expires at {expires_at}, before the job's timeout",
                            self.state.leases[i].origin
                        ),
                    });
                }
            }
            // The job's own token without the default policy may not renew itself; retrying
            // cannot change that, so say once when it ends and how to avoid it.
            Err(VaultError::Denied { status: 403, .. }) if matches!(item, Item::Token(i) if self.state.sessions[i].parent.is_some()) =>
            {
                let Item::Token(i) = item else { return };
                let session = &mut self.state.sessions[i];
                session.exhausted = true;
                joblog::warning(&format!(
                    "the Vault token in {} may not renew itself and expires at {}, before the job's timeout; leave no_default_policy off, or add  path \"auth/token/renew-self\" {{ capabilities = [\"update\"] }}  to one of its policies",
                    session.delivered_as.as_deref().unwrap_or("the job's token"),
                    format_time(session.since + session.ttl)
                ));
            }
            Err(e) => {
                let (since, ttl, _, _) = self.timing_mut(item);
                let (ttl, expires) = (*ttl, *since + *ttl);
                match item {
                    Item::Token(i) => joblog::warning(&format!(
                        "could not renew {}: {e}; retrying, it expires at {}",
                        token_name(&self.state.sessions[i]),
                        format_time(expires)
                    )),
                    Item::Lease(i) => joblog::warning(&format!(
                        "could not renew the lease of {}: {e}; retrying, it expires at {}",
                        self.state.leases[i].origin,
                        format_time(expires)
                    )),
                }
                self.after_failure(item, now, ttl, expires);
            }
        }
    }

    /// `(since, ttl, renewable, exhausted)` of a token or a lease, to update after a renewal.
    fn timing_mut(&mut self, item: Item) -> (&mut u64, &mut u64, &mut bool, &mut bool) {
        match item {
            Item::Token(i) => {
                let s = &mut self.state.sessions[i];
                (&mut s.since, &mut s.ttl, &mut s.renewable, &mut s.exhausted)
            }
            Item::Lease(i) => {
                let l = &mut self.state.leases[i];
                (&mut l.since, &mut l.ttl, &mut l.renewable, &mut l.exhausted)
            }
        }
    }

    /// Schedules another attempt a little later, or gives up once the credential has expired.
    fn after_failure(&mut self, item: Item, now: u64, ttl: u64, expires: u64) {
        if now >= expires {
            match item {
                Item::Token(i) => self.state.sessions[i].renewable = false,
                Item::Lease(i) => self.state.leases[i].renewable = false,
            }
            self.retry_at.remove(&item);
            return;
        }
        let backoff = (ttl / 6).clamp(1, 30);
        self.retry_at.insert(
            item,
            (now + backoff).min(expires.saturating_sub(1)).max(now + 1),
        );
    }
}

/// At prepare: warns about credentials that cannot live until the job's timeout.
pub(crate) fn warn_short_lived(state: &Sealed) {
    if state.deadline == 0 {
        return;
    }
    // The expiry of a credential that cannot be renewed and ends before the job's timeout.
    let short_lived = |since: u64, ttl: u64, renewable: bool| {
        let expires = since + ttl;
        (!renewable && ttl > 0 && expires < state.deadline).then(|| format_time(expires))
    };
    for lease in &state.leases {
        if let Some(at) = short_lived(lease.since, lease.ttl, lease.renewable) {
            joblog::warning(&format!(
                "the lease of {} is not renewable and expires at {at}, before the job's timeout",
                lease.origin
            ));
        }
    }
    for session in &state.sessions {
        if let Some(at) = short_lived(session.since, session.ttl, session.renewable) {
            joblog::warning(&format!(
                "{} is not renewable and expires at {at}, before the job's timeout; its leases end with it",
                token_name(session)
            ));
        }
    }
}

/// How much shorter than asked a renewed TTL may be before it counts as capped.
const TTL_SLACK_SECONDS: u64 = 2;

/// A Vault token as the public job log names it: the job's own by the variable it is in, a
/// login token by its server (and namespace); never by accessor (docs/security.md).
fn token_name(session: &crate::state::Session) -> String {
    if let Some(name) = &session.delivered_as {
        return format!("the job's Vault token in {name}");
    }
    format!(
        "the Vault token for {}{}",
        session.server.address,
        session
            .namespace
            .as_deref()
            .map(|n| format!(" namespace {n}"))
            .unwrap_or_default()
    )
}

/// `HH:MM:SS UTC` for a unix time (the job log's readers compare it with their own clocks).
pub(crate) fn format_time(unix: u64) -> String {
    let day = unix % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        day / 3600,
        (day % 3600) / 60,
        day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Lease, Session};
    use secrecy::SecretString;

    fn renewer(ttl: u64, deadline: u64, renewable: bool) -> Renewer {
        let config = Config::parse("[vault]\naddress = \"http://127.0.0.1:1\"\n").expect("config");
        let dir = tempfile::tempdir().expect("tmp");
        let root = crate::state::StateDir::open(&dir.path().join("s")).expect("root");
        let job_dir = root.job(&crate::state::StateId::generate("1"));
        let state = Sealed {
            sessions: vec![Session {
                server: config.servers.default_server().clone(),
                namespace: None,
                token: SecretString::from("t"),
                accessor: "a".into(),
                ttl: 3600,
                renewable: true,
                since: 1000,
                exhausted: false,
                parent: None,
                delivered_as: None,
            }],
            leases: vec![Lease {
                session: 0,
                lease_id: "database/creds/x/1".into(),
                ttl,
                renewable,
                since: 1000,
                origin: "database/creds/x".into(),
                exhausted: false,
            }],
            secrets: Vec::new(),
            deadline,
            run_as: None,
            seat: None,
            audit: None,
        };
        Renewer::new(config, job_dir, StateKey::generate(), state)
    }

    #[test]
    fn due_at_two_thirds_of_ttl_and_only_before_the_deadline() {
        let r = renewer(30, 1000 + 3600, true);
        assert_eq!(r.due(Item::Lease(0)), Some(1020));
        assert_eq!(r.next_due(), Some(1020));
        // The token lives past the deadline: no renewal needed.
        assert_eq!(r.due(Item::Token(0)), None);
        let r = renewer(30, 1010, true);
        assert_eq!(r.due(Item::Lease(0)), None, "lease outlives the job");
        let r = renewer(30, 5000, false);
        assert_eq!(r.due(Item::Lease(0)), None, "not renewable");
    }

    #[test]
    fn a_failed_renewal_is_retried_later_until_expiry() {
        let mut r = renewer(30, 1000 + 3600, true);
        r.after_failure(Item::Lease(0), 1020, 30, 1030);
        assert_eq!(r.due(Item::Lease(0)), Some(1025), "retried after ttl/6");
        r.after_failure(Item::Lease(0), 1031, 30, 1030);
        assert_eq!(
            r.due(Item::Lease(0)),
            None,
            "expired: nothing left to renew"
        );
    }

    #[test]
    fn increments_capped_by_config_and_deadline() {
        let r = renewer(30, 1000 + 120, true);
        assert_eq!(r.increment(1000), Duration::from_secs(120));
        let r = renewer(30, 1000 + 100_000, true);
        assert_eq!(r.increment(1000), Duration::from_secs(3600));
    }

    #[test]
    fn a_lease_capped_at_the_jobs_timeout_and_granted_a_second_less_is_not_exhausted() {
        let deadline = 1000 + 120;
        let mut r = renewer(30, deadline, true);
        // Asked for 120 s (up to the deadline), granted 119 s: Vault's rounding, not a cap.
        r.record_renewal(
            Item::Lease(0),
            1000,
            Duration::from_secs(120),
            Ok((119, true)),
        );
        assert!(!r.state.leases[0].exhausted);
        assert_eq!(
            (r.state.leases[0].ttl, r.state.leases[0].since),
            (119, 1000)
        );
        // Granted 60 s of the 120 asked: the role's max TTL, which ends before the job.
        r.record_renewal(
            Item::Lease(0),
            1000,
            Duration::from_secs(120),
            Ok((60, true)),
        );
        assert!(r.state.leases[0].exhausted);
    }

    #[test]
    fn a_failed_token_renewal_is_retried_like_a_lease() {
        let mut r = renewer(30, 1000 + 7200, true);
        r.record_renewal(
            Item::Token(0),
            2000,
            Duration::from_secs(3600),
            Err(VaultError::Sealed {
                address: "http://127.0.0.1:1".into(),
            }),
        );
        assert!(
            r.due(Item::Token(0))
                .is_some_and(|at| at > 2000 && at < 1000 + 3600)
        );
        assert_eq!(
            token_name(&r.state.sessions[0]),
            "the Vault token for http://127.0.0.1:1"
        );
    }

    /// An election during the job: the renewal waits for the new active node instead of
    /// failing and leaving the lease to expire before its next try.
    #[tokio::test]
    async fn a_renewal_rides_out_an_election_across_the_nodes() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let dead = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", listener.local_addr().expect("addr"))
        };
        let standby = MockServer::start().await;
        Mock::given(method("PUT"))
            .and(path("/v1/sys/leases/renew"))
            .respond_with(
                ResponseTemplate::new(503).set_body_json(
                    serde_json::json!({"errors": ["no active Vault instance found"]}),
                ),
            )
            .up_to_n_times(3)
            .expect(3)
            .mount(&standby)
            .await;
        Mock::given(method("PUT"))
            .and(path("/v1/sys/leases/renew"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!(
                {"lease_id": "database/creds/x/1", "lease_duration": 120, "renewable": true}
            )))
            .expect(1)
            .mount(&standby)
            .await;
        let mut r = renewer(30, 1000 + 3600, true);
        r.config = Config::parse(&format!(
            "[vault]\naddress = \"http://127.0.0.1:1\"\nnodes = [\"{dead}\", \"{}\"]\nretries = 0\nfailover_wait_seconds = 20\n",
            standby.uri()
        ))
        .expect("config");
        r.state.sessions[0].server = r.config.servers.default_server().clone();
        r.renew_lease(0, Duration::from_secs(120)).await;
        assert_eq!(
            r.state.leases[0].ttl, 120,
            "renewed once the election was over"
        );
        assert!(r.retry_at.is_empty(), "no failure recorded");
    }

    #[test]
    fn formats_time() {
        assert_eq!(format_time(86_400 + 3661), "01:01:01 UTC");
    }
}
