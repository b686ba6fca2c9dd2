//! How long to wait for a cluster: requests move from node to node while a cluster elects a
//! new active node, for up to `failover_wait` and never past a request's deadline.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use super::*;

fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    address
}

#[tokio::test]
async fn a_dead_node_or_a_standby_without_leader_moves_the_request_to_the_next_node() {
    let dead = closed_port();
    let standby = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(status(
            500,
            json!({"errors": ["local node not active but active cluster node not found"]}),
        ))
        .expect(1)
        .mount(&standby)
        .await;
    let active = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/kv/app"))
        .respond_with(status(200, json!({"data": {"k": "v"}})))
        .expect(2)
        .mount(&active)
        .await;
    let client = cluster(&[dead, standby.uri(), active.uri()], Duration::ZERO);
    let secret = client
        .read(&token(), "kv/app", false)
        .await
        .expect("the third node answers");
    assert_eq!(secret.data.get("k").expect("k").expose_secret(), "v");
    // The next request starts at the node that answered.
    client.read(&token(), "kv/app", false).await.expect("again");
}

#[tokio::test]
async fn every_node_failing_reports_the_server_and_the_last_answer() {
    let sealed = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(status(503, json!({"errors": ["Vault is sealed"]})))
        .mount(&sealed)
        .await;
    let nodes = [closed_port(), sealed.uri()];
    let err = cluster(&nodes, Duration::ZERO)
        .read(&token(), "kv/app", false)
        .await
        .expect_err("nothing answers");
    let shown = err.to_string();
    assert_eq!(
        shown,
        format!(
            "Vault at http://localhost:8200 (node {}) is sealed",
            sealed.uri()
        ),
    );
    let err = cluster(&[closed_port(), closed_port()], Duration::ZERO)
        .read(&token(), "kv/app", false)
        .await
        .expect_err("nothing answers");
    assert!(
        matches!(&err, VaultError::Unreachable { address, attempts: 2, .. } if address == "http://localhost:8200"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("last at http://127.0.0.1:"),
        "{err}"
    );
}

#[tokio::test]
async fn failover_answers_are_retried_until_the_wait_is_spent() {
    // Stands in for an election: 503 and standby answers, then the new active node.
    let node = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(status(
            503,
            json!({"errors": ["no active Vault instance found"]}),
        ))
        .up_to_n_times(6)
        .mount(&node)
        .await;
    Mock::given(method("GET"))
        .respond_with(status(200, json!({"data": {"k": "v"}})))
        .mount(&node)
        .await;
    let secret = cluster(&[node.uri()], Duration::from_secs(5))
        .read(&token(), "kv/app", false)
        .await
        .expect("rides out the election");
    assert_eq!(secret.data.get("k").expect("k").expose_secret(), "v");

    // Without an end, the wait is the bound; a plain 500 is not an election and is not waited out.
    let down = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(status(
            503,
            json!({"errors": ["no active Vault instance found"]}),
        ))
        .mount(&down)
        .await;
    let client = VaultClient::new(&ServerSpec {
        nodes: vec![down.uri()],
        failover_wait: Duration::from_millis(400),
        ..spec("http://localhost:8200", 0)
    })
    .expect("client")
    .with_backoff(Duration::from_millis(50), Duration::from_millis(50));
    let started = std::time::Instant::now();
    let err = client
        .read(&token(), "kv/app", false)
        .await
        .expect_err("no leader");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(
        matches!(&err, VaultError::Server { status: 503, .. }),
        "{err:?}"
    );
    let broken = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(status(500, json!({"errors": ["database unreachable"]})))
        .expect(1)
        .mount(&broken)
        .await;
    cluster(&[broken.uri()], Duration::from_secs(30))
        .read(&token(), "kv/app", false)
        .await
        .expect_err("500");
}

#[tokio::test]
async fn a_login_is_not_retried_past_the_id_tokens_exp() {
    let node = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(status(
            503,
            json!({"errors": ["no active Vault instance found"]}),
        ))
        .mount(&node)
        .await;
    let client = VaultClient::new(&ServerSpec {
        nodes: vec![node.uri()],
        failover_wait: Duration::from_secs(30),
        ..spec("http://localhost:8200", 0)
    })
    .expect("client")
    .with_backoff(Duration::from_millis(50), Duration::from_millis(50));
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 1;
    let started = std::time::Instant::now();
    let err = client
        .jwt_login(
            "jwt",
            "login",
            None,
            &SecretString::from(JWT),
            Some(exp as i64),
        )
        .await
        .expect_err("no leader");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(&err, VaultError::Server { status: 503, .. }),
        "{err:?}"
    );
    assert_clean(&err);
}
