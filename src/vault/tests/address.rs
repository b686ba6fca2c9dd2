//! Where a token may go: which addresses are accepted, which redirects are followed, and how
//! the TLS files are checked.

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

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
