//! Whose fault a failure is: refusals are final, server errors and transport failures are
//! retried with backoff and then reported as the host's.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

#[tokio::test]
async fn denied_joins_vault_errors_and_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/app"))
        .respond_with(status(
            403,
            json!({"errors": ["1 error occurred:\n\t* permission denied\n\n", "  second\tproblem "]}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server, 3)
        .read(&token(), "secret/data/app", true)
        .await
        .expect_err("denied");
    match &err {
        VaultError::Denied {
            status,
            path,
            errors,
        } => {
            assert_eq!((*status, path.as_str()), (403, "secret/data/app"));
            assert_eq!(errors, "permission denied; second problem");
        }
        other => panic!("expected Denied, got {other:?}"),
    }
    assert_eq!(err.failure_kind(), crate::exit::FailureKind::Build);
}

#[tokio::test]
async fn other_client_errors_are_refusals_too() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/v1/sys/leases/renew"))
        .respond_with(status(400, json!({"errors": ["lease is not renewable"]})))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server, 2)
        .renew_lease(&token(), "db/creds/r/abc", None)
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, VaultError::Denied { status: 400, errors, .. } if errors == "lease is not renewable"),
        "{err:?}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/kv/app"))
        .respond_with(status(500, json!({"errors": ["internal error"]})))
        .expect(3)
        .mount(&server)
        .await;
    let err = client(&server, 2)
        .read(&token(), "kv/app", false)
        .await
        .expect_err("5xx");
    match &err {
        VaultError::Server {
            status,
            path,
            errors,
            address,
        } => {
            assert_eq!(
                (*status, path.as_str(), errors.as_str()),
                (500, "kv/app", "internal error")
            );
            assert_eq!(address, &server.uri());
        }
        other => panic!("expected Server, got {other:?}"),
    }
    assert_eq!(err.failure_kind(), crate::exit::FailureKind::System);
}

#[tokio::test]
async fn rate_limiting_is_retried_and_can_recover() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/kv/app"))
        .respond_with(status(
            429,
            json!({"errors": ["request path kv/app: rate limit quota exceeded"]}),
        ))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/kv/app"))
        .respond_with(status(200, json!({"data": {"k": "v"}})))
        .expect(1)
        .mount(&server)
        .await;
    let secret = client(&server, 2)
        .read(&token(), "kv/app", false)
        .await
        .expect("third attempt succeeds");
    assert_eq!(secret.data.get("k").expect("k").expose_secret(), "v");
}

#[tokio::test]
async fn sealed_server_is_reported_as_sealed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/kv/app"))
        .respond_with(status(503, json!({"errors": ["Vault is sealed"]})))
        .expect(2)
        .mount(&server)
        .await;
    let err = client(&server, 1)
        .read(&token(), "kv/app", false)
        .await
        .expect_err("sealed");
    assert!(
        matches!(&err, VaultError::Sealed { address } if address == &server.uri()),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_bare_503_is_sealed_only_if_health_says_so() {
    for sealed in [true, false] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v1/kv/app"))
            .respond_with(ResponseTemplate::new(503).set_body_string("<html>busy</html>"))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/sys/health"))
            .respond_with(status(
                200,
                json!({"initialized": true, "sealed": sealed, "standby": false, "version": "2.4.1"}),
            ))
            .expect(1)
            .mount(&server)
            .await;
        let err = client(&server, 0)
            .read(&token(), "kv/app", false)
            .await
            .expect_err("503");
        if sealed {
            assert!(matches!(err, VaultError::Sealed { .. }), "{err:?}");
        } else {
            assert!(
                matches!(&err, VaultError::Server { status: 503, errors, .. } if errors == "no error message"),
                "{err:?}"
            );
        }
    }
}

#[tokio::test]
async fn connection_refused_is_unreachable_after_every_attempt() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let err = fast(&spec(&address, 2))
        .read(&token(), "kv/app", false)
        .await
        .expect_err("refused");
    match &err {
        VaultError::Unreachable {
            address: a,
            attempts,
            detail,
            ..
        } => {
            assert_eq!((a, *attempts), (&address, 3));
            assert!(detail.to_ascii_lowercase().contains("refused"), "{detail}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert_clean(&err);
}

#[tokio::test]
async fn timeouts_are_unreachable() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(status(200, json!({"data": {}})).set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;
    let spec = ServerSpec {
        timeout: Duration::from_millis(100),
        ..spec(&server.uri(), 1)
    };
    let err = fast(&spec)
        .read(&token(), "kv/app", false)
        .await
        .expect_err("timeout");
    assert!(
        matches!(&err, VaultError::Unreachable { attempts: 2, detail, .. } if detail.contains("timed out")),
        "{err:?}"
    );
}

#[test]
fn backoff_doubles_caps_and_jitters() {
    let backoff = backoff::Backoff {
        base: Duration::from_millis(200),
        cap: Duration::from_secs(2),
    };
    for (retry, nominal) in [
        (0, 200),
        (1, 400),
        (2, 800),
        (3, 1600),
        (4, 2000),
        (40, 2000),
    ] {
        for _ in 0..20 {
            let d = backoff.delay(retry).as_millis();
            assert!(
                d >= nominal / 2 && d < nominal * 3 / 2 + 1,
                "retry {retry}: {d} ms"
            );
        }
    }
}
