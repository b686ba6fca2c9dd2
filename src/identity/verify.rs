//! Local verification of a GitLab ID token, before any Vault request.
//!
//! Order: header (RS256, a `kid`), key lookup (one JWKS re-fetch for an unknown `kid`), signature,
//! then the claims: `iss`, `aud`, `exp`, `nbf`, `iat`. Claims are only looked at after the
//! signature verified, so every claim-based message is about a genuine token. jsonwebtoken checks
//! the signature only; the claim checks are done here so that each failure gets its own message
//! with the token's values, the expectation and the fix. No message contains the token.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};

use super::jwks::{Jwks, JwksSettings, open_cache_dir};
use super::{Claims, IdentityError, LEGACY_TOKEN_VARIABLES};
use crate::config_file::{GitlabSection, IssuerForms};

/// Claims of a token whose signature and claims leasehold verified. Only [`Verifier::verify`]
/// makes one, so a function taking `&VerifiedClaims` cannot be handed unverified claims.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedClaims {
    claims: Claims,
    variable: String,
    kid: String,
    jwks_url: String,
}

impl VerifiedClaims {
    /// The claims.
    pub(crate) fn claims(&self) -> &Claims {
        &self.claims
    }
    /// The job variable the token came from.
    pub(crate) fn variable(&self) -> &str {
        &self.variable
    }
    /// The signing key's id.
    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }
    /// Where the key came from.
    pub(crate) fn jwks_url(&self) -> &str {
        &self.jwks_url
    }
}

/// Verifies ID tokens against one GitLab.
#[derive(Debug, Clone)]
pub(crate) struct Verifier {
    jwks: Jwks,
    issuers: Vec<String>,
    issuer_forms: IssuerForms,
    audiences: Vec<String>,
    leeway: u64,
}

impl Verifier {
    /// The verifier `[gitlab]` describes, accepting `audiences` and caching keys in its (checked)
    /// cache directory below `state_dir`; `None` without `[gitlab]`.
    pub(crate) fn configured(
        gitlab: Option<&GitlabSection>,
        audiences: &[String],
        state_dir: &std::path::Path,
    ) -> Result<Option<Self>, IdentityError> {
        let Some(gitlab) = gitlab else {
            return Ok(None);
        };
        let cache = open_cache_dir(&gitlab.jwks_cache_dir(state_dir))?;
        Self::new(gitlab, audiences, Some(cache)).map(Some)
    }

    /// A verifier with an explicit cache directory (`None`: no cache).
    pub(crate) fn new(
        gitlab: &GitlabSection,
        audiences: &[String],
        cache_dir: Option<std::path::PathBuf>,
    ) -> Result<Self, IdentityError> {
        let jwks = Jwks::new(JwksSettings {
            base_url: gitlab.base_url().to_owned(),
            ca_file: gitlab.ca_file.clone(),
            timeout: gitlab.timeout(),
            ttl: std::time::Duration::from_secs(gitlab.jwks_cache_ttl_seconds),
            cache_dir,
        })?;
        Ok(Verifier {
            jwks,
            issuers: gitlab.accepted_issuers(),
            issuer_forms: gitlab.issuer_forms,
            audiences: audiences.to_vec(),
            leeway: gitlab.leeway_seconds,
        })
    }

    /// The key source, for `check`.
    pub(crate) fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// Verifies the token found in job variable `variable` at time `now` (unix seconds).
    pub(crate) async fn verify(
        &self,
        variable: &str,
        token: &SecretString,
        now: u64,
    ) -> Result<VerifiedClaims, IdentityError> {
        let malformed = |detail: &str| IdentityError::Malformed {
            variable: variable.to_owned(),
            detail: detail.to_owned(),
        };
        let jwt = token.expose_secret().trim();
        if jwt.split('.').count() != 3 {
            return Err(malformed("expected three dot-separated parts"));
        }
        let header = jsonwebtoken::decode_header(jwt)
            .map_err(|_| malformed("its header is not base64url-encoded JSON"))?;
        if header.alg != Algorithm::RS256 {
            return Err(IdentityError::UnsupportedAlgorithm {
                variable: variable.to_owned(),
                alg: format!("{:?}", header.alg),
            });
        }
        let kid = header
            .kid
            .filter(|k| !k.is_empty())
            .ok_or_else(|| IdentityError::NoKeyId {
                variable: variable.to_owned(),
            })?;

        let mut keys = self.jwks.keys(now).await?;
        let mut refetched = false;
        if keys.find(&kid).is_none() && !keys.fetched_now {
            keys = self.jwks.refresh(now).await?;
            refetched = true;
        }
        let Some(jwk) = keys.find(&kid) else {
            return Err(IdentityError::UnknownKey {
                variable: variable.to_owned(),
                kid,
                url: keys.url.clone(),
                known: keys.kids(),
                refetched,
            });
        };
        let unusable = |detail: String| IdentityError::KeyUnusable {
            variable: variable.to_owned(),
            kid: kid.clone(),
            url: keys.url.clone(),
            detail,
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| unusable(e.to_string()))?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &validation).map_err(
            |e| match e.kind() {
                ErrorKind::InvalidSignature => IdentityError::BadSignature {
                    variable: variable.to_owned(),
                    kid: kid.clone(),
                    url: keys.url.clone(),
                },
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidKeyFormat => unusable("it is not an RSA key for RS256".into()),
                _ => malformed("its payload is not base64url-encoded JSON"),
            },
        )?;
        let claims: Claims = serde_json::from_value(data.claims)
            .map_err(|_| malformed("its claims do not have the types GitLab uses"))?;
        self.check_claims(variable, claims, now)
            .map(|claims| VerifiedClaims {
                claims,
                variable: variable.to_owned(),
                kid,
                jwks_url: keys.url.clone(),
            })
    }

    fn check_claims(
        &self,
        variable: &str,
        claims: Claims,
        now: u64,
    ) -> Result<Claims, IdentityError> {
        let variable_owned = || variable.to_owned();
        let iss = claims.iss.trim_end_matches('/');
        if !self.issuers.iter().any(|accepted| accepted == iss) {
            return Err(IdentityError::WrongIssuer {
                variable: variable_owned(),
                iss: claims.iss.clone(),
                expected: self.issuers.clone(),
                hint: self.issuer_hint(iss),
            });
        }
        let legacy = LEGACY_TOKEN_VARIABLES.contains(&variable);
        let aud_ok = if claims.aud.is_empty() {
            legacy
        } else {
            claims.aud.iter().any(|a| self.audiences.contains(a))
        };
        if !aud_ok {
            return Err(IdentityError::WrongAudience {
                variable: variable_owned(),
                aud: claims.aud.clone(),
                expected: self.audiences.clone(),
            });
        }
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let leeway = i64::try_from(self.leeway).unwrap_or(i64::MAX);
        let exp = claims.exp.ok_or(IdentityError::MissingClaim {
            variable: variable_owned(),
            claim: "exp",
        })?;
        if exp.saturating_add(leeway) < now {
            return Err(IdentityError::Expired {
                variable: variable_owned(),
                exp,
                now,
                leeway: self.leeway,
            });
        }
        for (claim, at) in [("nbf", claims.nbf), ("iat", claims.iat)] {
            if let Some(at) = at
                && at > now.saturating_add(leeway)
            {
                return Err(IdentityError::NotYetValid {
                    variable: variable_owned(),
                    claim,
                    at,
                    now,
                    leeway: self.leeway,
                });
            }
        }
        Ok(claims)
    }

    fn issuer_hint(&self, iss: &str) -> String {
        let bare = |s: &str| s.split_once("://").map_or(s, |(_, rest)| rest).to_owned();
        let same_host = self.issuers.iter().any(|a| bare(a) == bare(iss));
        if same_host && self.issuer_forms == IssuerForms::Exact {
            format!(
                "this GitLab writes its issuer as {iss:?}: set [gitlab] issuer = {iss:?}, or issuer_forms = \"both\" to accept either form"
            )
        } else {
            format!(
                "set [gitlab] issuer to the issuer this GitLab writes into its tokens (Vault's bound_issuer must be the same), or run the job on {}",
                self.issuers[0]
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_file::File;
    use crate::identity::test_issuer::{self, AUD, TestKey, claims, gitlab_config_text, jwks};
    use serde_json::json;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const NOW: u64 = 1_800_000_000;

    /// The raw config's `[gitlab]`, and the audiences the checked config would derive (the
    /// Vault address unless `audiences` is set).
    type Config = (GitlabSection, Vec<String>);

    fn gitlab_config(server: &MockServer, extra: &str) -> Config {
        parse(&gitlab_config_text(server, extra))
    }

    fn parse(text: &str) -> Config {
        let file: File = toml::from_str(text).expect("valid config");
        let gitlab = file.gitlab.expect("gitlab");
        let audiences = gitlab
            .audiences
            .clone()
            .unwrap_or_else(|| vec![file.vault.address.clone()]);
        (gitlab, audiences)
    }

    fn verifier(config: &Config, cache: Option<&std::path::Path>) -> Verifier {
        Verifier::new(
            &config.0,
            &config.1,
            cache.map(std::path::Path::to_path_buf),
        )
        .expect("verifier")
    }

    async fn serve(server: &MockServer, at: &str, keys: &[&TestKey], times: u64) {
        Mock::given(method("GET"))
            .and(path(at))
            .respond_with(ResponseTemplate::new(200).set_body_json(jwks(keys)))
            .expect(times)
            .mount(server)
            .await;
    }

    /// A mock GitLab publishing key-1, fetched exactly `times` times, and a config for it with
    /// `extra` in `[gitlab]`.
    async fn gitlab(times: u64, extra: &str) -> (MockServer, Config) {
        let server = MockServer::start().await;
        serve(
            &server,
            "/oauth/discovery/keys",
            &[TestKey::shared(0)],
            times,
        )
        .await;
        let config = gitlab_config(&server, extra);
        (server, config)
    }

    fn secret(token: String) -> SecretString {
        SecretString::from(token)
    }

    /// A token from shared key `key` with the default claims, issued at `iat`.
    fn signed(key: usize, iat: u64) -> SecretString {
        secret(TestKey::shared(key).sign(&claims(iat, json!({}))))
    }

    #[tokio::test]
    async fn verifies_a_real_token_and_caches_the_keys() {
        let (_server, config) = gitlab(1, "").await;
        let cache = tempfile::tempdir().expect("tempdir");
        let token = TestKey::shared(0).sign(&claims(NOW, json!({})));
        let verified = verifier(&config, Some(cache.path()))
            .verify("VAULT_ID_TOKEN", &secret(token.clone()), NOW)
            .await
            .expect("valid");
        assert_eq!(verified.claims().project_id.as_deref(), Some("365"));
        assert_eq!(verified.kid(), "key-1");
        assert!(verified.jwks_url().ends_with("/oauth/discovery/keys"));
        // A second job (a new process) reads the cache: the mock's expect(1) checks no re-fetch.
        verifier(&config, Some(cache.path()))
            .verify("VAULT_ID_TOKEN", &secret(token), NOW + 10)
            .await
            .expect("cached");
    }

    #[tokio::test]
    async fn expired_cache_is_fetched_again() {
        let (_server, config) = gitlab(2, "jwks_cache_ttl_seconds = 60").await;
        let cache = tempfile::tempdir().expect("tempdir");
        let v = verifier(&config, Some(cache.path()));
        v.verify("T", &signed(0, NOW), NOW).await.expect("ok");
        let later = NOW + 61;
        v.verify("T", &signed(0, later), later).await.expect("ok");
    }

    #[tokio::test]
    async fn falls_back_to_legacy_jwks_path() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/oauth/discovery/keys"))
            .respond_with(ResponseTemplate::new(404))
            .mount(&server)
            .await;
        serve(&server, "/-/jwks", &[TestKey::shared(0)], 1).await;
        let config = gitlab_config(&server, "");
        let verified = verifier(&config, None)
            .verify("T", &signed(0, NOW), NOW)
            .await
            .expect("valid");
        assert!(verified.jwks_url().ends_with("/-/jwks"));
    }

    #[tokio::test]
    async fn key_rotation_needs_exactly_one_refetch() {
        let server = MockServer::start().await;
        let cache = tempfile::tempdir().expect("tempdir");
        let config = gitlab_config(&server, "");
        // Job 1 caches {key-1}.
        let first = Mock::given(method("GET"))
            .and(path("/oauth/discovery/keys"))
            .respond_with(ResponseTemplate::new(200).set_body_json(jwks(&[TestKey::shared(0)])))
            .expect(1)
            .mount_as_scoped(&server)
            .await;
        verifier(&config, Some(cache.path()))
            .verify("T", &signed(0, NOW), NOW)
            .await
            .expect("job 1");
        drop(first);
        // GitLab rotates to key-2; job 2's token names key-2: one re-fetch, then it verifies.
        serve(&server, "/oauth/discovery/keys", &[TestKey::shared(1)], 1).await;
        verifier(&config, Some(cache.path()))
            .verify("T", &signed(1, NOW), NOW + 5)
            .await
            .expect("job 2 after one re-fetch");
        // Job 3 uses the refreshed cache.
        verifier(&config, Some(cache.path()))
            .verify("T", &signed(1, NOW), NOW + 6)
            .await
            .expect("job 3 from cache");
    }

    #[tokio::test]
    async fn unknown_kid_after_refetch_is_reported() {
        let (_server, config) = gitlab(2, "").await;
        let cache = tempfile::tempdir().expect("tempdir");
        verifier(&config, Some(cache.path()))
            .verify("T", &signed(0, NOW), NOW)
            .await
            .expect("primes cache");
        // The next job's process reads the cache, misses the kid, fetches once more.
        let v = verifier(&config, Some(cache.path()));
        let token = TestKey::shared(1).sign_as("nobody", &claims(NOW, json!({})));
        let err = v
            .verify("VAULT_ID_TOKEN", &secret(token.clone()), NOW)
            .await
            .expect_err("unknown kid");
        assert!(
            matches!(
                err,
                IdentityError::UnknownKey {
                    refetched: true,
                    ..
                }
            ),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("key \"nobody\""), "{text}");
        assert!(text.contains("(key-1, fetched again just now)"), "{text}");
        // Within one process, a set fetched by it is not fetched again (the mock's expect(2)).
        let again = v
            .verify("VAULT_ID_TOKEN", &secret(token), NOW)
            .await
            .expect_err("still unknown");
        assert!(
            matches!(
                again,
                IdentityError::UnknownKey {
                    refetched: false,
                    ..
                }
            ),
            "{again}"
        );
    }

    #[tokio::test]
    async fn bad_signature_is_rejected() {
        let (_server, config) = gitlab(1, "").await;
        // Signed by key-2 but claiming key-1: a valid structure with a wrong signature.
        let token = TestKey::shared(1).sign_as("key-1", &claims(NOW, json!({})));
        let err = verifier(&config, None)
            .verify("VAULT_ID_TOKEN", &secret(token), NOW)
            .await
            .expect_err("bad sig");
        assert!(matches!(err, IdentityError::BadSignature { .. }), "{err}");
        assert_eq!(err.failure_kind(), crate::exit::FailureKind::Build);
    }

    #[tokio::test]
    async fn tampered_payload_is_rejected() {
        let (_server, config) = gitlab(1, "").await;
        let token = TestKey::shared(0).sign(&claims(NOW, json!({})));
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            claims(NOW, json!({"project_id": "1"})).to_string(),
        );
        let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        let err = verifier(&config, None)
            .verify("T", &secret(forged), NOW)
            .await
            .expect_err("forged");
        assert!(matches!(err, IdentityError::BadSignature { .. }), "{err}");
    }

    async fn claim_error(
        overrides: serde_json::Value,
        extra: &str,
        variable: &str,
    ) -> IdentityError {
        let (_server, config) = gitlab(1, extra).await;
        let token = TestKey::shared(0).sign(&claims(NOW, overrides));
        verifier(&config, None)
            .verify(variable, &secret(token), NOW)
            .await
            .expect_err("must fail")
    }

    #[tokio::test]
    async fn wrong_audience_shows_both_and_the_yaml_fix() {
        let err = claim_error(
            json!({"aud": "https://other.example.com"}),
            "",
            "VAULT_ID_TOKEN",
        )
        .await
        .to_string();
        assert_eq!(
            err,
            "the ID token in $VAULT_ID_TOKEN has aud \"https://other.example.com\", but this runner expects \"https://vault.example.com\"; set it in the job:  id_tokens: { VAULT_ID_TOKEN: { aud: \"https://vault.example.com\" } }"
        );
        let err = claim_error(json!({"aud": null}), "", "VAULT_ID_TOKEN")
            .await
            .to_string();
        assert!(err.contains("has no aud"), "{err}");
    }

    #[tokio::test]
    async fn legacy_tokens_may_lack_aud() {
        let (_server, config) = gitlab(
            1,
            "allow_legacy_token_variables = true\nissuer_forms = \"both\"",
        )
        .await;
        let token = TestKey::shared(0).sign(&claims(
            NOW,
            json!({"aud": null, "iss": "gitlab.example.com"}),
        ));
        verifier(&config, None)
            .verify("CI_JOB_JWT", &secret(token), NOW)
            .await
            .expect("legacy v1 token");
    }

    #[tokio::test]
    async fn expired_shows_times_clock_and_skew() {
        let err = claim_error(json!({"exp": NOW - 300}), "", "VAULT_ID_TOKEN").await;
        assert!(matches!(err, IdentityError::Expired { .. }));
        let text = err.to_string();
        assert!(
            text.contains("expired at 2027-01-15T07:55:00Z (exp=1799999700), 300s ago"),
            "{text}"
        );
        assert!(
            text.contains("now 2027-01-15T08:00:00Z, 1800000000; leeway 60s"),
            "{text}"
        );
        // Within the leeway: accepted.
        let (_server, config) = gitlab(1, "leeway_seconds = 120").await;
        let token = TestKey::shared(0).sign(&claims(NOW, json!({"exp": NOW - 100})));
        verifier(&config, None)
            .verify("T", &secret(token), NOW)
            .await
            .expect("within leeway");
    }

    #[tokio::test]
    async fn not_yet_valid_beyond_leeway() {
        let err = claim_error(json!({"nbf": NOW + 600, "iat": NOW}), "", "T")
            .await
            .to_string();
        assert!(
            err.contains("nbf=1800000600 (2027-01-15T08:10:00Z) is 600s ahead"),
            "{err}"
        );
        assert!(err.contains("behind GitLab's by at least 540s"), "{err}");
        let err = claim_error(json!({"nbf": null, "iat": NOW + 90}), "", "T")
            .await
            .to_string();
        assert!(err.contains("iat=1800000090"), "{err}");
        let err = claim_error(json!({"exp": null}), "", "T").await.to_string();
        assert!(err.contains("has no exp claim"), "{err}");
    }

    #[tokio::test]
    async fn wrong_issuer_shows_both_and_a_hint() {
        let err = claim_error(json!({"iss": "gitlab.example.com"}), "", "T")
            .await
            .to_string();
        assert!(err.contains("issued by \"gitlab.example.com\", but this runner expects \"https://gitlab.example.com\""), "{err}");
        assert!(err.contains("issuer_forms = \"both\""), "{err}");
        let err = claim_error(json!({"iss": "https://elsewhere.example.com"}), "", "T")
            .await
            .to_string();
        assert!(err.contains("set [gitlab] issuer"), "{err}");
    }

    #[tokio::test]
    async fn jwks_unreachable_is_a_system_failure() {
        let uri = test_issuer::dead_url();
        let dead = parse(&format!(
            "[vault]\naddress = \"{AUD}\"\n[gitlab]\nurl = \"{uri}\"\ntimeout_seconds = 2\n"
        ));
        let token = TestKey::shared(0).sign(&claims(NOW, json!({})));
        let err = verifier(&dead, None)
            .verify("T", &secret(token), NOW)
            .await
            .expect_err("unreachable");
        assert!(
            matches!(err, IdentityError::JwksUnreachable { .. }),
            "{err}"
        );
        assert_eq!(err.failure_kind(), crate::exit::FailureKind::System);
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(404))
            .mount(&server)
            .await;
        let config = gitlab_config(&server, "");
        let token = TestKey::shared(0).sign(&claims(NOW, json!({})));
        let err = verifier(&config, None)
            .verify("T", &secret(token), NOW)
            .await
            .expect_err("404 twice")
            .to_string();
        assert!(
            err.contains("/oauth/discovery/keys answered 404")
                && err.contains("/-/jwks answered 404"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn malformed_tokens() {
        let server = MockServer::start().await;
        let config = gitlab_config(&server, "");
        let v = verifier(&config, None);
        for (token, want) in [
            ("not-a-jwt", "three dot-separated parts"),
            ("a.b.c", "header"),
        ] {
            let err = v
                .verify("T", &secret(token.to_owned()), NOW)
                .await
                .expect_err(token)
                .to_string();
            assert!(err.contains(want), "{token}: {err}");
        }
        let hs = format!(
            "{}.e30.sig",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                r#"{"alg":"HS256","kid":"k"}"#
            )
        );
        assert!(matches!(
            v.verify("T", &secret(hs), NOW).await,
            Err(IdentityError::UnsupportedAlgorithm { .. })
        ));
        let nokid = format!(
            "{}.e30.sig",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                r#"{"alg":"RS256"}"#
            )
        );
        assert!(matches!(
            v.verify("T", &secret(nokid), NOW).await,
            Err(IdentityError::NoKeyId { .. })
        ));
    }

    /// Plants distinctive tokens into every failure path and checks that no message contains
    /// the token, its signature or its payload.
    #[tokio::test]
    async fn no_error_message_contains_the_token() {
        let (_server, config) = gitlab(1, "").await;
        let v = verifier(&config, None);
        let key = TestKey::shared(0);
        let marker = json!({"user_email": "PLANTED-MARKER@example.com"});
        let with = |extra: serde_json::Value| {
            let mut c = claims(NOW, marker.clone());
            if let (Some(m), serde_json::Value::Object(e)) = (c.as_object_mut(), extra) {
                m.extend(e);
            }
            c
        };
        let tokens = [
            key.sign(&with(json!({"aud": "wrong"}))),
            key.sign(&with(json!({"iss": "wrong"}))),
            key.sign(&with(json!({"exp": NOW - 1000}))),
            key.sign(&with(json!({"nbf": NOW + 1000}))),
            key.sign_as("unknown-kid", &with(json!({}))),
            TestKey::shared(1).sign_as("key-1", &with(json!({}))),
            format!(
                "{}.!!!.sig",
                key.sign(&with(json!({})))
                    .split('.')
                    .next()
                    .unwrap_or_default()
            ),
        ];
        let mut errors = Vec::new();
        for token in &tokens {
            let err = v
                .verify("VAULT_ID_TOKEN", &secret(token.clone()), NOW)
                .await
                .expect_err("fails");
            errors.push(err.to_string());
            errors.push(format!("{err:?}"));
        }
        for (token, text) in tokens
            .iter()
            .flat_map(|t| errors.iter().map(move |e| (t, e)))
        {
            assert!(!text.contains(token.as_str()), "{text}");
            for part in token.split('.').filter(|p| p.len() > 8) {
                assert!(
                    !text.contains(part),
                    "message contains a token part: {text}"
                );
            }
            assert!(!text.contains("PLANTED-MARKER"), "{text}");
        }
    }
}
