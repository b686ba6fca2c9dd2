//! What a URL can say: no path piece or lease id can change the endpoint or add a query.

use std::time::Duration;

use secrecy::SecretString;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

#[tokio::test]
async fn malformed_lease_ids_are_never_sent() {
    let client = VaultClient::new(&ServerSpec {
        timeout: Duration::from_secs(1),
        ..spec("http://127.0.0.1:9", 0)
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
