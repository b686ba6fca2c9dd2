//! The API calls: which endpoint each one uses, what it sends, and how it reads the answer.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

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
