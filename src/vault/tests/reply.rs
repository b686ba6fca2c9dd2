//! What text leaves the module: no token, JWT or value in any error, and no terminal escapes.

use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

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
