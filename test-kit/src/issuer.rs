//! A GitLab-like OIDC issuer on loopback that mints RS256 ID tokens.
//!
//! `Issuer::start()` generates an RSA-2048 key (aws-lc-rs) with a random `kid` and serves, on
//! `http://127.0.0.1:<port>`:
//! - the JWKS at `/oauth/discovery/keys` (GitLab ≥ 17) **and** `/-/jwks` (older GitLab);
//! - `/.well-known/openid-configuration` (for `oidc_discovery_url`).
//!
//! Tokens carry the claims of a GitLab ID token (see [`Issuer::default_claims`]); override any of
//! them with a JSON object (a `null` value removes the claim) or with the [`TokenBuilder`]:
//!
//! ```ignore
//! let issuer = Issuer::start();
//! let jwt = issuer.mint(json!({"ref": "feature", "ref_protected": "false"}));
//! let expired = issuer.token().exp_in(-120).mint();
//! let no_aud = issuer.token().remove("aud").mint();
//! issuer.rotate_key();                      // the JWKS now serves the new key only
//! assert!(issuer.jwks_fetches() >= 1);
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::random_hex;

/// The default `aud` of minted tokens (bind it with `bound_audiences`).
pub const DEFAULT_AUD: &str = "https://bao.leasehold.test";
/// Default `project_path` (and `CI_PROJECT_PATH` of [`super::JobBuilder`]).
pub const DEFAULT_PROJECT_PATH: &str = "grp/app";
/// Default `project_id` claim (a string, as GitLab sends it).
pub const DEFAULT_PROJECT_ID: &str = "42";
/// Default `ref`.
pub const DEFAULT_REF: &str = "main";
/// Default `job_id`.
pub const DEFAULT_JOB_ID: &str = "1001";

/// A JWT role (for [`super::Bao::jwt_role`]) that accepts the issuer's default token: bound to
/// its audience, project and protected ref, with `policies` and a 10-minute token TTL.
pub fn bound_role(policies: &[&str]) -> Value {
    json!({
        "bound_audiences": [DEFAULT_AUD],
        "bound_claims": {"project_path": DEFAULT_PROJECT_PATH, "ref_protected": "true"},
        "user_claim": "user_login",
        "policies": policies,
        "token_ttl": "10m",
    })
}

/// One signing key: the PKCS#1 DER jsonwebtoken signs with and the JWK parts.
struct SigningKey {
    kid: String,
    pkcs1_der: Vec<u8>,
    n: String,
    e: String,
}

impl SigningKey {
    fn generate() -> SigningKey {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA-2048 key generation");
        let pkcs8 = pair.as_der().expect("PKCS#8 export");
        let pkcs1_der = pkcs1_from_pkcs8(pkcs8.as_ref()).to_vec();
        let public = pair.public_key();
        SigningKey {
            kid: random_hex(8),
            pkcs1_der,
            n: URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            e: URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        }
    }

    fn jwk(&self) -> Value {
        json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid, "n": self.n, "e": self.e})
    }

    fn sign(&self, kid: &str, claims: &Map<String, Value>) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(&self.pkcs1_der))
            .expect("sign JWT")
    }
}

/// Reads one DER TLV at the start of `input`: returns (tag, content, rest).
fn der_tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let (len, header) = match input[1] {
        l if l < 0x80 => (usize::from(l), 2),
        l => {
            let n = usize::from(l & 0x7f);
            let len = input[2..2 + n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, 2 + n)
        }
    };
    (tag, &input[header..header + len], &input[header + len..])
}

/// The RFC 8017 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo`
/// (SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey, … }).
/// aws-lc-rs exports PKCS#8 only, while jsonwebtoken's `EncodingKey::from_rsa_der` wants PKCS#1.
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> &[u8] {
    let (tag, info, _) = der_tlv(pkcs8);
    assert_eq!(tag, 0x30, "PKCS#8: SEQUENCE");
    let (tag, _version, rest) = der_tlv(info);
    assert_eq!(tag, 0x02, "PKCS#8: version INTEGER");
    let (tag, _algorithm, rest) = der_tlv(rest);
    assert_eq!(tag, 0x30, "PKCS#8: AlgorithmIdentifier");
    let (tag, key, _) = der_tlv(rest);
    assert_eq!(tag, 0x04, "PKCS#8: privateKey OCTET STRING");
    key
}

/// What the HTTP thread serves.
struct State {
    key: SigningKey,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    jwks_available: AtomicBool,
    requests: Mutex<Vec<String>>,
}

/// A local OIDC issuer; the server thread stops on drop.
pub struct Issuer {
    url: String,
    state: Arc<Mutex<Arc<State>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Issuer {
    /// Generates a key and starts serving on a free loopback port.
    pub fn start() -> Issuer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind issuer");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(Arc::new(State {
            key: SigningKey::generate(),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            jwks_available: AtomicBool::new(true),
            requests: Mutex::new(Vec::new()),
        })));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop, url) = (state.clone(), stop.clone(), url.clone());
            std::thread::Builder::new()
                .name("issuer".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let current = state.lock().expect("issuer state").clone();
                        let url = url.clone();
                        // One thread per connection: a client holding a connection open must
                        // not block the next one.
                        std::thread::spawn(move || serve(conn, &current, &url));
                    }
                })
                .expect("spawn issuer thread")
        };
        Issuer {
            url,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn current(&self) -> Arc<State> {
        self.state.lock().expect("issuer state").clone()
    }

    /// `http://127.0.0.1:<port>`: the `iss` claim and the value to bind with `bound_issuer`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The JWKS URL of GitLab ≥ 17: `<url>/oauth/discovery/keys`.
    pub fn jwks_url(&self) -> String {
        format!("{}/oauth/discovery/keys", self.url)
    }

    /// The JWKS URL of GitLab < 17: `<url>/-/jwks`.
    pub fn legacy_jwks_url(&self) -> String {
        format!("{}/-/jwks", self.url)
    }

    /// The OIDC discovery base URL (for `oidc_discovery_url`): same as [`Issuer::url`].
    pub fn discovery_url(&self) -> String {
        self.url.clone()
    }

    /// The `kid` of the key now in use.
    pub fn kid(&self) -> String {
        self.current().key.kid.clone()
    }

    /// The JWKS document served now.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.current().key.jwk()] })
    }

    /// How many times either JWKS path has been fetched (never reset, not even by
    /// [`Issuer::rotate_key`]).
    pub fn jwks_fetches(&self) -> usize {
        self.current().jwks_fetches.load(Ordering::SeqCst)
    }

    /// How many times the OIDC discovery document has been fetched.
    pub fn discovery_fetches(&self) -> usize {
        self.current().discovery_fetches.load(Ordering::SeqCst)
    }

    /// Every request path served so far (in order).
    pub fn requests(&self) -> Vec<String> {
        self.current().requests.lock().expect("requests").clone()
    }

    /// While `false`, both JWKS paths answer 503 (simulates a GitLab outage).
    pub fn set_jwks_available(&self, available: bool) {
        self.current()
            .jwks_available
            .store(available, Ordering::SeqCst);
    }

    /// Replaces the signing key with a new one (new `kid`); from now on the JWKS serves the new
    /// key only, so tokens minted before fail verification. Returns the new `kid`.
    pub fn rotate_key(&self) -> String {
        let mut guard = self.state.lock().expect("issuer state");
        let old = guard.clone();
        let next = State {
            key: SigningKey::generate(),
            jwks_fetches: AtomicUsize::new(old.jwks_fetches.load(Ordering::SeqCst)),
            discovery_fetches: AtomicUsize::new(old.discovery_fetches.load(Ordering::SeqCst)),
            jwks_available: AtomicBool::new(old.jwks_available.load(Ordering::SeqCst)),
            requests: Mutex::new(old.requests.lock().expect("requests").clone()),
        };
        let kid = next.key.kid.clone();
        *guard = Arc::new(next);
        kid
    }

    /// The claims of a GitLab ID token for a job on `grp/app` at `main` (protected), issued now,
    /// valid for one hour, with `aud` = [`DEFAULT_AUD`].
    pub fn default_claims(&self) -> Map<String, Value> {
        let now = now();
        let claims = json!({
            "iss": self.url,
            "aud": DEFAULT_AUD,
            "sub": format!("project_path:{DEFAULT_PROJECT_PATH}:ref_type:branch:ref:{DEFAULT_REF}"),
            "iat": now,
            "nbf": now - 5,
            "exp": now + 3600,
            "jti": random_hex(16),
            "namespace_id": "7",
            "namespace_path": "grp",
            "project_id": DEFAULT_PROJECT_ID,
            "project_path": DEFAULT_PROJECT_PATH,
            "user_id": "5",
            "user_login": "alice",
            "user_email": "alice@example.test",
            "user_access_level": "developer",
            "pipeline_id": "900",
            "pipeline_source": "push",
            "job_id": DEFAULT_JOB_ID,
            "ref": DEFAULT_REF,
            "ref_type": "branch",
            "ref_path": format!("refs/heads/{DEFAULT_REF}"),
            "ref_protected": "true",
            "environment": "production",
            "environment_protected": "true",
            "deployment_tier": "production",
            "environment_action": "start",
            "runner_id": 12,
            "runner_environment": "self-hosted",
            "sha": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
            "project_visibility": "private",
            "ci_config_ref_uri": format!("gitlab.example.com/{DEFAULT_PROJECT_PATH}//.gitlab-ci.yml@refs/heads/{DEFAULT_REF}"),
            "ci_config_sha": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
        });
        match claims {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    /// Mints a token: [`Issuer::default_claims`] with `overrides` (a JSON object) merged over
    /// them; a `null` override removes the claim.
    pub fn mint(&self, overrides: Value) -> String {
        self.token().merge(overrides).mint()
    }

    /// Like [`Issuer::mint`], signed by the current key but with a `kid` the JWKS does not serve.
    pub fn mint_with_unknown_kid(&self, overrides: Value) -> String {
        self.token()
            .merge(overrides)
            .kid(&format!("unknown-{}", random_hex(4)))
            .mint()
    }

    /// Like [`Issuer::mint`], with the current `kid` but signed by another key.
    pub fn mint_with_bad_signature(&self, overrides: Value) -> String {
        self.token().merge(overrides).bad_signature().mint()
    }

    /// A builder over the default claims.
    pub fn token(&self) -> TokenBuilder<'_> {
        TokenBuilder {
            issuer: self,
            claims: self.default_claims(),
            kid: None,
            bad_signature: false,
        }
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop up so that it sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Builds one token; see [`Issuer::token`].
pub struct TokenBuilder<'a> {
    issuer: &'a Issuer,
    claims: Map<String, Value>,
    kid: Option<String>,
    bad_signature: bool,
}

impl TokenBuilder<'_> {
    /// Sets a claim.
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.to_owned(), value.into());
        self
    }

    /// Removes a claim.
    pub fn remove(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Merges a JSON object of overrides (`null` removes).
    pub fn merge(mut self, overrides: Value) -> Self {
        match overrides {
            Value::Null => {}
            Value::Object(map) => {
                for (k, v) in map {
                    if v.is_null() {
                        self.claims.remove(&k);
                    } else {
                        self.claims.insert(k, v);
                    }
                }
            }
            other => panic!("claim overrides must be a JSON object, got {other}"),
        }
        self
    }

    /// Sets `aud` (a string or an array).
    pub fn aud(self, aud: impl Into<Value>) -> Self {
        self.claim("aud", aud)
    }

    /// Sets `sub`.
    // The JWT claim, not subtraction.
    #[allow(clippy::should_implement_trait)]
    pub fn sub(self, sub: &str) -> Self {
        self.claim("sub", sub)
    }

    /// `exp` = now + `secs` (negative: already expired).
    pub fn exp_in(self, secs: i64) -> Self {
        self.claim("exp", now() + secs)
    }

    /// `nbf` = now + `secs` (positive: not yet valid).
    pub fn nbf_in(self, secs: i64) -> Self {
        self.claim("nbf", now() + secs)
    }

    /// `iat` = now + `secs`.
    pub fn iat_in(self, secs: i64) -> Self {
        self.claim("iat", now() + secs)
    }

    /// Uses this `kid` in the header instead of the current key's.
    pub fn kid(mut self, kid: &str) -> Self {
        self.kid = Some(kid.to_owned());
        self
    }

    /// Signs with a freshly generated key that the JWKS does not serve (the header keeps the
    /// current `kid` unless [`TokenBuilder::kid`] is set).
    pub fn bad_signature(mut self) -> Self {
        self.bad_signature = true;
        self
    }

    /// The claims as they would be signed.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// Signs the token (RS256).
    pub fn mint(self) -> String {
        let state = self.issuer.current();
        let kid = self.kid.unwrap_or_else(|| state.key.kid.clone());
        if self.bad_signature {
            SigningKey::generate().sign(&kid, &self.claims)
        } else {
            state.key.sign(&kid, &self.claims)
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Serves one HTTP/1.1 request and closes the connection.
fn serve(conn: TcpStream, state: &State, url: &str) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return;
    }
    // Skip the headers (and any body: GETs have none).
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    content_length = v.trim().parse().unwrap_or(0);
                }
            }
        }
    }
    let mut body = vec![0u8; content_length.min(1 << 20)];
    let _ = reader.read_exact(&mut body);

    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_owned();
    state.requests.lock().expect("requests").push(path.clone());

    let (status, reply) = match (method.as_str(), path.as_str()) {
        ("GET", "/oauth/discovery/keys" | "/-/jwks") => {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            if state.jwks_available.load(Ordering::SeqCst) {
                ("200 OK", json!({ "keys": [state.key.jwk()] }))
            } else {
                ("503 Service Unavailable", json!({"message": "unavailable"}))
            }
        }
        ("GET", "/.well-known/openid-configuration") => {
            state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
            (
                "200 OK",
                json!({
                    "issuer": url,
                    "authorization_endpoint": format!("{url}/oauth/authorize"),
                    "token_endpoint": format!("{url}/oauth/token"),
                    "userinfo_endpoint": format!("{url}/oauth/userinfo"),
                    "jwks_uri": format!("{url}/oauth/discovery/keys"),
                    "response_types_supported": ["code", "id_token"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "scopes_supported": ["openid"],
                    "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf"],
                }),
            )
        }
        _ => ("404 Not Found", json!({"error": "404 Not Found"})),
    };
    let body = reply.to_string();
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.flush();
}
