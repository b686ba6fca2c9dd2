//! Client behaviour against a mock server: the edge cases a real OpenBao will not produce on
//! demand (5xx, sealed, malformed bodies) and the invariants that matter for secrets (which
//! headers go out, what error text may contain), one file per concern of the client; the
//! helpers shared by them are here.

use std::time::Duration;

use secrecy::SecretString;
use wiremock::{MockServer, ResponseTemplate};

use super::*;

mod address;
mod api;
mod failover;
mod fault;
mod limit;
mod reply;
mod urls;

/// Planted strings that must never show up in an error.
const TOKEN: &str = "hvs.PLANTED-TOKEN-7d1f0c";
const JWT: &str = "eyJPLANTED-JWT.payload.signature";
const VALUE: &str = "PLANTED-VALUE-93ab";

fn spec(address: &str, retries: u32) -> ServerSpec {
    ServerSpec {
        address: address.to_owned(),
        nodes: Vec::new(),
        namespace: None,
        ca_file: None,
        client_cert: None,
        client_key: None,
        allow_http: false,
        timeout: Duration::from_secs(5),
        retries,
        failover_wait: Duration::ZERO,
        limit: RequestLimit::default(),
    }
}

fn fast(spec: &ServerSpec) -> VaultClient {
    VaultClient::new(spec)
        .expect("valid spec")
        .with_backoff(Duration::from_millis(1), Duration::from_millis(4))
}

fn client(server: &MockServer, retries: u32) -> VaultClient {
    fast(&spec(&server.uri(), retries))
}

fn token() -> SecretString {
    SecretString::from(TOKEN)
}

fn status(code: u16, body: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(code).set_body_json(body)
}

/// Asserts that neither Display nor Debug of an error leaks a planted string.
fn assert_clean(error: &VaultError) {
    for shown in [error.to_string(), format!("{error:?}")] {
        for planted in [TOKEN, JWT, VALUE, "PLANTED"] {
            assert!(!shown.contains(planted), "{planted} leaked into {shown}");
        }
    }
}

/// A client of one server made of the given nodes, retrying failover answers for `wait`.
fn cluster(nodes: &[String], wait: Duration) -> VaultClient {
    fast(&ServerSpec {
        nodes: nodes.to_vec(),
        failover_wait: wait,
        ..spec("http://localhost:8200", 0)
    })
}
