//! A test-only GitLab: RSA keys generated with aws-lc-rs, RS256 tokens signed by hand (so that
//! the tests exercise jsonwebtoken's verification, not its signing), and the JWKS that goes
//! with them.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::OnceLock;

use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

pub(crate) const ISSUER: &str = "https://gitlab.example.com";
pub(crate) const AUD: &str = "https://vault.example.com";

/// One signing key.
pub(crate) struct TestKey {
    pub(crate) kid: String,
    pair: RsaKeyPair,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl TestKey {
    pub(crate) fn generate(kid: &str) -> TestKey {
        TestKey {
            kid: kid.to_owned(),
            pair: RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa keygen"),
        }
    }

    /// Two keys generated once per test binary (2048-bit generation is slow-ish).
    pub(crate) fn shared(index: usize) -> &'static TestKey {
        static KEYS: OnceLock<[TestKey; 2]> = OnceLock::new();
        &KEYS.get_or_init(|| [TestKey::generate("key-1"), TestKey::generate("key-2")])[index]
    }

    /// The public key as a JWK, as GitLab publishes it.
    pub(crate) fn jwk(&self) -> Value {
        let public = self.pair.public_key();
        json!({
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "RS256",
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
        })
    }

    /// Signs `claims` with this key, under header `kid` (normally `self.kid`).
    pub(crate) fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                message.as_bytes(),
                &mut signature,
            )
            .expect("sign");
        format!("{message}.{}", b64(&signature))
    }

    pub(crate) fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }
}

/// A JWKS document with these keys.
pub(crate) fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// A GitLab stand-in that answers every GET (either JWKS path) with the JWKS of key-1.
pub(crate) async fn mock_gitlab() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks(&[TestKey::shared(0)])))
        .mount(&server)
        .await;
    server
}

/// The text of an executor config for Vault at [`AUD`] and GitLab at `gitlab` (issuer
/// [`ISSUER`]), with `extra` appended to `[gitlab]`.
pub(crate) fn gitlab_config_text(gitlab: &MockServer, extra: &str) -> String {
    format!(
        "[vault]\naddress = \"{AUD}\"\n[gitlab]\nurl = \"{}\"\nissuer = \"{ISSUER}\"\n{extra}",
        gitlab.uri()
    )
}

/// GitLab-like claims valid at `now`, with `overrides` merged in (`null` removes a claim).
pub(crate) fn claims(now: u64, overrides: Value) -> Value {
    let mut base = json!({
        "iss": ISSUER,
        "aud": AUD,
        "sub": "project_path:grp/app:ref_type:branch:ref:main",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "c3b2a1",
        "namespace_id": "7",
        "namespace_path": "grp",
        "project_id": "365",
        "project_path": "grp/app",
        "user_id": "12",
        "user_login": "alice",
        "user_email": "alice@example.com",
        "pipeline_id": "900",
        "pipeline_source": "push",
        "job_id": "1001",
        "ref": "main",
        "ref_type": "branch",
        "ref_path": "refs/heads/main",
        "ref_protected": "true",
        "environment": "dev",
        "environment_protected": "false",
        "runner_id": 1,
        "runner_environment": "self-hosted",
    });
    if let (Some(map), Value::Object(over)) = (base.as_object_mut(), overrides) {
        for (k, v) in over {
            if v.is_null() {
                map.remove(&k);
            } else {
                map.insert(k, v);
            }
        }
    }
    base
}

/// `http://127.0.0.1:<port>` where nothing listens (a port that was free a moment ago). Never a
/// dropped wiremock server: those are pooled and come back to life in other tests.
pub(crate) fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}
