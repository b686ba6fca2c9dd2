//! Client behaviour against a mock server: the edge cases a real OpenBao will not produce on
//! demand (5xx, sealed, malformed bodies) and the invariants that matter for secrets (which
//! headers go out, what error text may contain).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

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

#[tokio::test]
async fn not_found_in_its_three_shapes() {
    let server = MockServer::start().await;
    // A missing path: 404 with an empty `errors`.
    Mock::given(method("GET"))
        .and(path("/v1/kv/missing"))
        .respond_with(status(404, json!({"errors": []})))
        .expect(1)
        .mount(&server)
        .await;
    // A deleted KV v2 version: Vault answers 404 with the metadata.
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/deleted"))
        .respond_with(status(
            404,
            json!({"data": {"data": null, "metadata": {"deletion_time": "2026-01-01T00:00:00Z", "version": 2}}}),
        ))
        .mount(&server)
        .await;
    // The same shape with 200 must not pass as an empty secret.
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/destroyed"))
        .respond_with(status(
            200,
            json!({"data": {"data": null, "metadata": {"destroyed": true}}}),
        ))
        .mount(&server)
        .await;
    // A wrong mount or namespace also answers 404, but with a reason worth showing.
    Mock::given(method("GET"))
        .and(path("/v1/nomount/app"))
        .respond_with(status(
            404,
            json!({"errors": ["no handler for route \"nomount/app\". route entry not found."]}),
        ))
        .mount(&server)
        .await;
    let client = client(&server, 2);
    let err = client
        .read(&token(), "nomount/app", false)
        .await
        .expect_err("no mount");
    assert!(
        matches!(&err, VaultError::Denied { status: 404, errors, .. } if errors.contains("no handler for route")),
        "{err:?}"
    );
    for (p, kv2) in [
        ("kv/missing", false),
        ("secret/data/deleted", true),
        ("secret/data/destroyed", true),
    ] {
        let err = client.read(&token(), p, kv2).await.expect_err("not found");
        assert!(
            matches!(&err, VaultError::NotFound { path } if path == p),
            "{err:?}"
        );
        assert_eq!(err.to_string(), format!("nothing at {p}"));
    }
}

#[tokio::test]
async fn kv2_fields_are_unwrapped_and_non_strings_become_json() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/app"))
        .and(header("X-Vault-Token", TOKEN))
        .and(header("X-Vault-Request", "true"))
        .respond_with(status(
            200,
            json!({
                "request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
                "data": {
                    "data": {"password": VALUE, "port": 5432, "tls": true, "hosts": ["a", "b"], "opts": {"x": 1.5}},
                    "metadata": {"version": 3, "custom_metadata": null}
                },
                "wrap_info": null, "warnings": ["mind the gap"], "auth": null, "mount_type": "kv"
            }),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let secret = client(&server, 0)
        .read(&token(), "secret/data/app", true)
        .await
        .expect("read");
    let get = |k: &str| secret.data.get(k).expect(k).expose_secret().to_owned();
    assert_eq!(get("password"), VALUE);
    assert_eq!(get("port"), "5432");
    assert_eq!(get("tls"), "true");
    assert_eq!(get("hosts"), r#"["a","b"]"#);
    assert_eq!(get("opts"), r#"{"x":1.5}"#);
    assert_eq!(
        secret.data.names(),
        ["hosts", "opts", "password", "port", "tls"]
    );
    assert_eq!(secret.warnings, ["mind the gap"]);
    assert!(secret.lease_id.is_empty());
    assert!(!format!("{secret:?}").contains(VALUE));
}

#[tokio::test]
async fn dynamic_reads_keep_the_lease() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/database/creds/app"))
        .respond_with(status(
            200,
            json!({"lease_id": "database/creds/app/XyZ", "lease_duration": 3600, "renewable": true,
                   "data": {"username": "v-app", "password": VALUE}, "warnings": null}),
        ))
        .mount(&server)
        .await;
    let secret = client(&server, 0)
        .read(&token(), "database/creds/app", false)
        .await
        .expect("read");
    assert_eq!(
        (
            secret.lease_id.as_str(),
            secret.lease_duration,
            secret.renewable
        ),
        ("database/creds/app/XyZ", 3600, true)
    );
    assert_eq!(
        secret
            .data
            .get("password")
            .expect("password")
            .expose_secret(),
        VALUE
    );
    assert!(secret.warnings.is_empty());
}

#[tokio::test]
async fn namespace_header_only_when_set() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(status(200, json!({"data": {}})))
        .mount(&server)
        .await;
    for namespace in [None, Some(""), Some("team-a/ci")] {
        let spec = ServerSpec {
            namespace: namespace.map(str::to_owned),
            ..spec(&server.uri(), 0)
        };
        fast(&spec)
            .read(&token(), "kv/app", false)
            .await
            .expect("read");
    }
    let requests = server.received_requests().await.expect("recording");
    let sent: Vec<Option<&str>> = requests
        .iter()
        .map(|r| {
            r.headers
                .get("x-vault-namespace")
                .map(|v| v.to_str().expect("ascii"))
        })
        .collect();
    assert_eq!(sent, [None, None, Some("team-a/ci")]);
    assert!(
        requests
            .iter()
            .all(|r| r.headers.get("x-vault-token").is_some_and(|v| v == TOKEN))
    );
}

#[tokio::test]
async fn health_goes_without_token_or_namespace() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/sys/health"))
        .respond_with(status(
            200,
            json!({"initialized": true, "sealed": false, "standby": true, "version": "2.4.1", "cluster_name": "c"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let spec = ServerSpec {
        namespace: Some("team-a".into()),
        ..spec(&server.uri(), 0)
    };
    let health = fast(&spec).health().await.expect("health");
    assert!(health.initialized && !health.sealed && health.standby);
    assert_eq!(health.version, "2.4.1");
    let requests = server.received_requests().await.expect("recording");
    let request = requests.first().expect("one request");
    assert!(
        request.headers.get("x-vault-token").is_none()
            && request.headers.get("x-vault-namespace").is_none()
    );
    let query = request.url.query().expect("query");
    for part in [
        "standbyok=true",
        "sealedcode=200",
        "uninitcode=200",
        "perfstandbyok=true",
    ] {
        assert!(query.contains(part), "{query}");
    }
}

#[tokio::test]
async fn jwt_login_sends_role_only_when_given() {
    let server = MockServer::start().await;
    let auth = json!({"auth": {"client_token": TOKEN, "accessor": "acc1", "lease_duration": 600,
                               "renewable": true, "policies": ["default", "ci"], "metadata": {"role": "ci"}},
                      "data": null, "lease_id": ""});
    Mock::given(method("POST"))
        .and(path("/v1/auth/jwt/login"))
        .and(body_json(json!({"jwt": JWT, "role": "ci"})))
        .respond_with(status(200, auth.clone()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/gitlab/login"))
        .and(body_json(json!({"jwt": JWT})))
        .respond_with(status(200, auth))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server, 0);
    let jwt = SecretString::from(JWT);
    let info = client
        .jwt_login("jwt", "login", Some("ci"), &jwt, None)
        .await
        .expect("login");
    assert_eq!(info.client_token.expose_secret(), TOKEN);
    assert_eq!(
        (info.accessor.as_str(), info.lease_duration, info.renewable),
        ("acc1", 600, true)
    );
    assert_eq!(info.policies, ["default", "ci"]);
    client
        .jwt_login("/gitlab/", "login", None, &jwt, None)
        .await
        .expect("login without role");
    let requests = server.received_requests().await.expect("recording");
    assert!(
        requests
            .iter()
            .all(|r| r.headers.get("x-vault-token").is_none())
    );
}

#[tokio::test]
async fn login_without_auth_block_is_invalid() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(status(
            200,
            json!({"auth": null, "data": {"secret": VALUE}}),
        ))
        .mount(&server)
        .await;
    let err = client(&server, 0)
        .jwt_login("jwt", "login", None, &SecretString::from(JWT), None)
        .await
        .expect_err("no auth");
    assert!(
        matches!(&err, VaultError::InvalidResponse { path, .. } if path == "auth/jwt/login"),
        "{err:?}"
    );
    assert_clean(&err);
}

#[tokio::test]
async fn echoed_credentials_are_scrubbed_from_vault_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/jwt/login"))
        .respond_with(status(
            400,
            json!({"errors": [format!("error validating token {JWT}: expired")]}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/token/renew-self"))
        .respond_with(status(
            403,
            json!({"errors": [format!("bad token {TOKEN}")]}),
        ))
        .mount(&server)
        .await;
    let client = client(&server, 0);
    let err = client
        .jwt_login("jwt", "login", None, &SecretString::from(JWT), None)
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("error validating token [REDACTED]: expired"),
        "{err}"
    );
    assert_clean(&err);
    let err = client
        .renew_self(&token(), None)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("bad token [REDACTED]"), "{err}");
    assert_clean(&err);
}

#[tokio::test]
async fn malformed_bodies_are_invalid_responses_that_never_quote_the_body() {
    let server = MockServer::start().await;
    let bodies = [
        format!(r#"{{"data": {{"password": "{VALUE}"#),
        format!(r#"{{"data": "{VALUE}"}}"#),
        format!(r#"{{"data": {{"data": ["{VALUE}"]}}}}"#),
        format!("<html>{VALUE}</html>"),
        format!(r#"{{"lease_duration": "{VALUE}"}}"#),
        String::new(),
    ];
    for (i, body) in bodies.iter().enumerate() {
        Mock::given(method("GET"))
            .and(path(format!("/v1/secret/data/b{i}")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_raw(body.clone().into_bytes(), "application/json"),
            )
            .mount(&server)
            .await;
    }
    let client = client(&server, 0);
    for i in 0..bodies.len() {
        let p = format!("secret/data/b{i}");
        let err = client.read(&token(), &p, true).await.map(drop);
        let err = match (i, err) {
            // An empty body on a read is treated as "nothing there".
            (5, Err(VaultError::NotFound { .. })) => continue,
            (_, Err(err)) => err,
            (_, Ok(())) => panic!("body {i} was accepted"),
        };
        assert!(
            matches!(&err, VaultError::InvalidResponse { path, .. } if path == &p),
            "{err:?}"
        );
        assert_clean(&err);
    }
}

#[tokio::test]
async fn renew_revoke_and_list_use_the_documented_endpoints() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/token/renew-self"))
        .and(body_json(json!({"increment": "900s"})))
        .respond_with(status(
            200,
            json!({"auth": {"client_token": TOKEN, "accessor": "a", "lease_duration": 900, "renewable": true,
                            "policies": null}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v1/sys/leases/renew"))
        .and(body_json(
            json!({"lease_id": "db/creds/r/1", "increment": 60}),
        ))
        .respond_with(status(
            200,
            json!({"lease_id": "db/creds/r/1", "lease_duration": 60, "renewable": true}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v1/sys/leases/revoke/db/creds/r/1"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/token/revoke-self"))
        .and(header("X-Vault-Token", TOKEN))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/token/revoke-accessor"))
        .and(body_json(json!({"accessor": "acc9"})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("LIST"))
        .and(path("/v1/sys/leases/lookup/db/creds/r"))
        .respond_with(status(200, json!({"data": {"keys": ["1", "2"]}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("LIST"))
        .and(path("/v1/sys/leases/lookup/none"))
        .respond_with(status(404, json!({"errors": []})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/pki/revoke"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server, 0);
    let t = token();
    let auth = client
        .renew_self(&t, Some(Duration::from_secs(900)))
        .await
        .expect("renew-self");
    assert_eq!((auth.lease_duration, auth.policies.len()), (900, 0));
    let lease = client
        .renew_lease(&t, "db/creds/r/1", Some(Duration::from_secs(60)))
        .await
        .expect("renew");
    assert_eq!(
        (
            lease.lease_id.as_str(),
            lease.lease_duration,
            lease.renewable
        ),
        ("db/creds/r/1", 60, true)
    );
    client
        .revoke_lease(&t, "db/creds/r/1")
        .await
        .expect("revoke");
    client.revoke_self(&t).await.expect("revoke-self");
    client
        .revoke_accessor(&t, "acc9")
        .await
        .expect("revoke-accessor");
    assert_eq!(
        client.list_leases(&t, "db/creds/r/").await.expect("list"),
        ["1", "2"]
    );
    assert!(
        client
            .list_leases(&t, "/none/")
            .await
            .expect("empty list")
            .is_empty()
    );
    let written = client
        .write(&t, "pki/revoke", &json!({"serial_number": "01"}))
        .await
        .expect("204");
    assert!(written.data.0.is_empty() && written.lease_id.is_empty());
}

#[tokio::test]
async fn lookups_never_keep_the_token_id() {
    let server = MockServer::start().await;
    let data = json!({"data": {"id": TOKEN, "accessor": "acc1", "ttl": 120, "renewable": true,
                               "policies": ["default"], "expire_time": "2026-11-21T10:00:00Z", "meta": null}});
    Mock::given(method("GET"))
        .and(path("/v1/auth/token/lookup-self"))
        .respond_with(status(200, data.clone()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/auth/token/lookup-accessor"))
        .and(body_json(json!({"accessor": "acc1"})))
        .respond_with(status(200, data))
        .mount(&server)
        .await;
    let client = client(&server, 0);
    for lookup in [
        client.lookup_self(&token()).await.expect("lookup-self"),
        client
            .lookup_accessor(&token(), "acc1")
            .await
            .expect("lookup-accessor"),
    ] {
        assert_eq!(
            lookup,
            TokenLookup {
                accessor: "acc1".into(),
                ttl: 120,
                renewable: true,
                policies: vec!["default".into()],
                expire_time: Some("2026-11-21T10:00:00Z".into()),
            }
        );
    }
}

#[tokio::test]
async fn read_raw_json_returns_data() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/auth/jwt/role/ci"))
        .respond_with(status(
            200,
            json!({"data": {"bound_audiences": ["https://vault"], "token_ttl": 600}}),
        ))
        .mount(&server)
        .await;
    let value = client(&server, 0)
        .read_raw_json(&token(), "auth/jwt/role/ci")
        .await
        .expect("read");
    assert_eq!(value["token_ttl"], 600);
}

#[tokio::test]
async fn write_posts_the_body_and_decodes_the_envelope() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/pki/issue/web"))
        .and(body_json(json!({"common_name": "a.example.com", "ttl": "1h"})))
        .respond_with(status(
            200,
            json!({"lease_id": "pki/issue/web/L", "lease_duration": 3599, "renewable": false,
                   "data": {"certificate": "CERT", "private_key": VALUE, "ca_chain": ["C1", "C2"], "expiration": 1700000000}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let secret = client(&server, 0)
        .write(
            &token(),
            "pki/issue/web",
            &json!({"common_name": "a.example.com", "ttl": "1h"}),
        )
        .await
        .expect("issue");
    assert_eq!(secret.lease_id, "pki/issue/web/L");
    assert_eq!(
        secret.data.get("private_key").expect("key").expose_secret(),
        VALUE
    );
    assert_eq!(
        secret.data.get("ca_chain").expect("chain").expose_secret(),
        r#"["C1","C2"]"#
    );
    assert_eq!(
        secret.data.get("expiration").expect("exp").expose_secret(),
        "1700000000"
    );
}

#[tokio::test]
async fn redirects_to_another_host_are_not_followed() {
    let target = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(status(200, json!({"data": {"k": VALUE}})))
        .expect(0)
        .mount(&target)
        .await;
    let server = MockServer::start().await;
    // wiremock listens on 127.0.0.1; "localhost" is another host name for the same machine.
    let elsewhere = target.uri().replace("127.0.0.1", "localhost");
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(307).insert_header("Location", format!("{elsewhere}/v1/kv/app")),
        )
        .mount(&server)
        .await;
    let err = client(&server, 0)
        .read(&token(), "kv/app", false)
        .await
        .expect_err("redirect refused");
    assert!(
        matches!(&err, VaultError::Config { detail } if detail.contains("which is not an address listed for this server")),
        "{err:?}"
    );
    assert_eq!(err.failure_kind(), crate::exit::FailureKind::System);
}

/// A client of one server made of the given nodes, retrying failover answers for `wait`.
fn cluster(nodes: &[String], wait: Duration) -> VaultClient {
    fast(&ServerSpec {
        nodes: nodes.to_vec(),
        failover_wait: wait,
        ..spec("http://localhost:8200", 0)
    })
}

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

#[tokio::test]
async fn a_redirect_is_followed_only_to_an_address_listed_for_the_server() {
    let active = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/kv/app"))
        .and(header("x-vault-token", TOKEN))
        .respond_with(status(200, json!({"data": {"k": "v"}})))
        .expect(1)
        .mount(&active)
        .await;
    let standby = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("Location", format!("{}/v1/kv/app", active.uri())),
        )
        .mount(&standby)
        .await;
    // Listed: the standby forwards to the active node, and the token follows.
    cluster(&[standby.uri(), active.uri()], Duration::ZERO)
        .read(&token(), "kv/app", false)
        .await
        .expect("redirect to a listed node");

    // Not listed: refused, one line, and the target's listener receives nothing at all.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let elsewhere = format!("http://{}", listener.local_addr().expect("address"));
    let rogue = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(307).insert_header("Location", format!("{elsewhere}/v1/kv/app")),
        )
        .expect(2)
        .mount(&rogue)
        .await;
    let err = cluster(&[rogue.uri(), active.uri()], Duration::from_secs(5))
        .read(&token(), "kv/app", false)
        .await
        .expect_err("unlisted redirect");
    let shown = err.to_string();
    assert_eq!(
        shown,
        format!(
            "Vault at http://localhost:8200 (node {}) redirected the request to {elsewhere}, which is not an \
             address listed for this server, so leasehold sent the token nowhere; if it is a node of this server add \
             it to nodes, else set address to the active node or its load balancer",
            rogue.uri()
        )
    );
    assert!(!shown.contains('\n'));
    assert_clean(&err);
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the unlisted target was contacted"
    );
    // The same rule holds for a server without nodes: only its address.
    let err = client(&rogue, 0)
        .read(&token(), "kv/app", false)
        .await
        .expect_err("unlisted redirect");
    assert!(err.to_string().contains("not an address listed"), "{err}");
    assert!(matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
}

#[test]
fn plain_http_only_to_loopback_unless_allowed() {
    for ok in [
        "https://vault.example.com:8200",
        "https://vault.example.com/",
        "http://127.0.0.1:8200",
        "http://127.8.9.10",
        "http://[::1]:8200/",
        "http://localhost:8200",
        "http://LOCALHOST",
    ] {
        check_address(ok, false).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    let err = check_address("http://vault.example.com", false).expect_err("non-loopback http");
    assert!(
        err.to_string().contains("allow_http")
            && err.to_string().contains("http://vault.example.com"),
        "{err}"
    );
    check_address("http://vault.example.com", true).expect("allowed");
    for bad in [
        "http://10.0.0.1:8200",
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io",
        "ftp://vault.example.com",
        "unix:///run/vault.sock",
        "vault.example.com:8200",
        "",
        "https://vault.example.com/?x=1",
    ] {
        let err = check_address(bad, false).expect_err(bad);
        assert!(matches!(err, VaultError::Config { .. }), "{bad}: {err:?}");
    }
    // Even with allow_http, a scheme that is not http(s) is refused.
    check_address("ftp://vault.example.com", true).expect_err("ftp");
    assert!(VaultClient::new(&spec("http://vault.example.com", 0)).is_err());
}

#[test]
fn credentials_in_the_address_are_refused_without_being_echoed() {
    let err = check_address(&format!("https://user:{VALUE}@vault.example.com"), false)
        .expect_err("userinfo");
    assert!(err.to_string().contains("***@vault.example.com"), "{err}");
    assert_clean(&err);
    let err = check_address(&format!("https://user:{VALUE}@"), false).expect_err("userinfo");
    assert_clean(&err);
}

#[test]
fn tls_files_are_checked_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, format!("not a certificate {VALUE}\n")).expect("write");
    let with = |ca: Option<&std::path::Path>,
                cert: Option<&std::path::Path>,
                key: Option<&std::path::Path>| {
        let spec = ServerSpec {
            ca_file: ca.map(Into::into),
            client_cert: cert.map(Into::into),
            client_key: key.map(Into::into),
            ..spec("https://vault.example.com", 0)
        };
        VaultClient::new(&spec).expect_err("invalid TLS files")
    };
    for (err, named, setting) in [
        (with(Some(&missing), None, None), &missing, "ca_file"),
        (with(Some(&garbage), None, None), &garbage, "ca_file"),
        (
            with(None, Some(&missing), Some(&garbage)),
            &missing,
            "client_cert",
        ),
        (
            with(None, Some(&garbage), Some(&missing)),
            &missing,
            "client_key",
        ),
        (
            with(None, Some(&garbage), Some(&garbage)),
            &garbage,
            "client_key",
        ),
    ] {
        let shown = err.to_string();
        assert!(matches!(err, VaultError::Config { .. }), "{err:?}");
        assert!(
            shown.contains(&named.display().to_string()) && shown.contains(setting),
            "{shown}"
        );
        assert!(!shown.contains('\n'), "{shown}");
        assert_clean(&err);
    }
    let err = with(None, Some(&garbage), None);
    assert!(err.to_string().contains("set together"), "{err}");
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

/// Every error kind, built the way the client builds it, with planted secrets nearby.
#[tokio::test]
async fn no_error_display_contains_a_token_or_value() {
    let server = MockServer::start().await;
    let routes: [(&str, ResponseTemplate); 6] = [
        (
            "denied",
            status(
                403,
                json!({"errors": [format!("permission denied for {TOKEN}")], "data": {"v": VALUE}}),
            ),
        ),
        (
            "server",
            status(
                500,
                json!({"errors": [format!("boom {TOKEN}")], "data": {"v": VALUE}}),
            ),
        ),
        (
            "proxy",
            ResponseTemplate::new(502).set_body_string(format!("<html>{VALUE}</html>")),
        ),
        (
            "sealed",
            status(
                503,
                json!({"errors": ["Vault is sealed"], "data": {"v": VALUE}}),
            ),
        ),
        (
            "missing",
            status(404, json!({"errors": [], "data": {"v": VALUE}})),
        ),
        (
            "invalid",
            ResponseTemplate::new(200).set_body_string(format!(r#"{{"data": {{"v": {VALUE}}}}}"#)),
        ),
    ];
    for (p, response) in routes {
        Mock::given(method("GET"))
            .and(path(format!("/v1/{p}")))
            .respond_with(response)
            .mount(&server)
            .await;
    }
    let client = client(&server, 0);
    let mut seen = Vec::new();
    for p in ["denied", "server", "proxy", "sealed", "missing", "invalid"] {
        seen.push(client.read(&token(), p, false).await.expect_err(p));
    }
    let refused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!("http://{}", refused.local_addr().expect("address"));
    drop(refused);
    seen.push(
        fast(&spec(&address, 0))
            .revoke_self(&token())
            .await
            .expect_err("unreachable"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, format!("-----BEGIN CERTIFICATE-----\n{VALUE}\n")).expect("write");
    let bad_ca = ServerSpec {
        ca_file: Some(ca_file),
        ..spec("https://vault.example.com", 0)
    };
    seen.push(VaultClient::new(&bad_ca).expect_err("config"));
    let kinds: Vec<&str> = seen
        .iter()
        .map(|e| match e {
            VaultError::Denied { .. } => "denied",
            VaultError::Server { .. } => "server",
            VaultError::Sealed { .. } => "sealed",
            VaultError::NotFound { .. } => "missing",
            VaultError::InvalidResponse { .. } => "invalid",
            VaultError::Unreachable { .. } => "unreachable",
            VaultError::Config { .. } => "config",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "denied",
            "server",
            "server",
            "sealed",
            "missing",
            "invalid",
            "unreachable",
            "config"
        ]
    );
    for err in &seen {
        assert_clean(err);
    }
}

#[tokio::test]
async fn malformed_lease_ids_are_never_sent() {
    let client = VaultClient::new(&ServerSpec {
        address: "http://127.0.0.1:9".into(),
        nodes: Vec::new(),
        namespace: None,
        ca_file: None,
        client_cert: None,
        client_key: None,
        allow_http: false,
        timeout: std::time::Duration::from_secs(1),
        retries: 0,
        failover_wait: Duration::ZERO,
        limit: RequestLimit::default(),
    })
    .expect("client");
    let t = secrecy::SecretString::from("t");
    for bad in ["", "../sys/seal", "a/../../b", "a?x=1", "a b", "a//b"] {
        let err = client.revoke_lease(&t, bad).await.expect_err(bad);
        assert!(
            err.to_string().contains("malformed lease id"),
            "{bad}: {err}"
        );
    }
}

/// A server that counts the requests it is handling at once (and the connections it got),
/// answering each after a short pause so that concurrent requests overlap.
struct CountingServer {
    address: String,
    in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    max_in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingServer {
    fn start() -> CountingServer {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering::SeqCst;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("addr"));
        let server = CountingServer {
            address,
            in_flight: Default::default(),
            max_in_flight: Default::default(),
            connections: Default::default(),
        };
        let (in_flight, max_in_flight, connections) = (
            server.in_flight.clone(),
            server.max_in_flight.clone(),
            server.connections.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                connections.fetch_add(1, SeqCst);
                let (in_flight, max_in_flight) = (in_flight.clone(), max_in_flight.clone());
                std::thread::spawn(move || {
                    let mut pending: Vec<u8> = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        while !pending.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => pending.extend(&buf[..n]),
                            }
                        }
                        let end = pending
                            .windows(4)
                            .position(|w| w == b"\r\n\r\n")
                            .map_or(0, |i| i + 4);
                        pending.drain(..end);
                        let now = in_flight.fetch_add(1, SeqCst) + 1;
                        max_in_flight.fetch_max(now, SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        in_flight.fetch_sub(1, SeqCst);
                        let body = br#"{"data": {"v": "x"}}"#;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        if conn.write_all(head.as_bytes()).is_err() || conn.write_all(body).is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        server
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn requests_to_one_server_are_capped_across_its_clients() {
    let server = CountingServer::start();
    let spec = ServerSpec {
        limit: RequestLimit::new(4),
        ..spec(&server.address, 0)
    };
    // Two clients of one server (two logins, say) share its cap.
    let (a, b) = (fast(&spec), fast(&spec));
    let t = token();
    let reads = (0..64).map(|i| {
        let client = if i % 2 == 0 { &a } else { &b };
        let path = format!("kv/p{i}");
        let t = &t;
        async move { client.read(t, &path, false).await }
    });
    let results = futures_util::future::join_all(reads).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(
        (2..=4).contains(&server.max_in_flight()),
        "{} requests were in flight at once",
        server.max_in_flight()
    );
    assert!(
        server.connections() <= 8,
        "{} connections for a cap of 4 on two clients",
        server.connections()
    );
}

#[tokio::test]
async fn no_path_piece_can_change_the_url() {
    let server = MockServer::start().await;
    // Anything that reaches the server fails the test.
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let client = client(&server, 0);
    let t = token();
    for bad in [
        "kv-ci/data/x\\..\\..\\..\\secret\\data\\ci\\app",
        "kv-ci/data/x/../../../sys/mounts",
        "kv-ci/data/%2e%2e/%2E%2e/sys/mounts",
        "kv-ci/data/x?list=true",
        "kv-ci/data/x#frag",
        "kv-ci//data",
        "kv-ci/data/\u{1b}[2J",
    ] {
        let err = client.read(&t, bad, true).await.expect_err(bad).to_string();
        assert!(
            err.starts_with("refusing to send a request to"),
            "{bad}: {err}"
        );
        assert!(!err.contains('\u{1b}'), "{err:?}");
    }
    for mount in [
        "../../../other-app/api",
        "jwt/../../x",
        "jwt?x=",
        "..\\..\\x",
    ] {
        let err = client
            .jwt_login(mount, "login", None, &SecretString::from(JWT), None)
            .await
            .expect_err(mount)
            .to_string();
        assert!(err.contains("refusing to send a request"), "{mount}: {err}");
        assert!(!err.contains(JWT), "{err}");
    }
    let with_namespace = fast(&ServerSpec {
        namespace: Some("team\r\nX-Injected: 1".into()),
        ..spec(&server.uri(), 0)
    });
    let err = with_namespace
        .read(&t, "kv/data/app", true)
        .await
        .expect_err("bad namespace")
        .to_string();
    assert!(err.contains("U+000D"), "{err}");
}

#[tokio::test]
async fn terminal_escapes_in_vault_errors_are_stripped() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/kv/app"))
        .respond_with(status(
            403,
            json!({"errors": ["permission \u{1b}]0;pwned\u{7}denied\u{1b}[2J\u{202E}\u{0}\r\nERROR: fake line"]}),
        ))
        .mount(&server)
        .await;
    let err = client(&server, 0)
        .read(&token(), "kv/app", false)
        .await
        .expect_err("denied")
        .to_string();
    assert!(
        !err.chars().any(|c| c.is_control() || c == '\u{202E}'),
        "{err:?}"
    );
    assert!(
        err.contains("permission ]0;pwneddenied[2J ERROR: fake line"),
        "{err:?}"
    );
    assert_eq!(printable("a\tb\nc\u{1b}[0m\u{200B}d"), "a b c[0md");
}
