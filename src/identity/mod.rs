//! The job's identity: its GitLab ID token, the claims in it, and their verification.
//!
//! Why verify locally when Vault verifies too: leasehold itself acts on claims. Admin bindings
//! decide which secrets a job gets from `project_id`, `environment` or `ref_protected`, and the
//! fleet policy refuses job declarations on unprotected refs. Those decisions must rest on a
//! token whose signature leasehold checked itself, against the JWKS of the GitLab the admin
//! configured, before any Vault request: a forged token then never reaches Vault at all, and a
//! broken one fails with a message that says exactly what is wrong (audience, clock, key, issuer)
//! instead of Vault's generic refusal.
//!
//! - [`jwks`]: GitLab's signing keys: fetched from `/oauth/discovery/keys` (falling back to
//!   `/-/jwks`), cached on disk with a TTL, re-fetched once for an unknown `kid`;
//! - [`verify`]: signature, `iss`, `aud`, `exp`/`nbf`/`iat`, yielding [`VerifiedClaims`];
//! - `claims`: the claim set; [`peek_claims`] reads it *unverified*, for messages only.
//!
//! Without `[gitlab]` in the executor config nothing is verified locally and Vault's JWT auth is
//! the only verifier; bindings then cannot be configured.

mod claims;
pub(crate) mod jwks;
#[cfg(test)]
pub(crate) mod test_issuer;
pub(crate) mod verify;

pub(crate) use claims::{Claims, peek_claims};
pub(crate) use verify::{VerifiedClaims, Verifier};

use crate::exit::FailureKind;

/// The ID-token variables of GitLab before 16 (`CI_JOB_JWT_V2`) and 15 (`CI_JOB_JWT`), accepted
/// only with `[gitlab] allow_legacy_token_variables = true`, in this order.
pub(crate) const LEGACY_TOKEN_VARIABLES: &[&str] = &["CI_JOB_JWT_V2", "CI_JOB_JWT"];

/// Why the job's identity could not be used. No variant carries the token or any part of it:
/// only claim values (which are not secret), the key id and the configured expectations.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IdentityError {
    /// The ID-token variable is not in the job.
    #[error(
        "the job has no ID token in ${variable}; add to the job:  id_tokens: {{ {variable}: {{ aud: \"{audience}\" }} }}  (it is needed for {needed_for})"
    )]
    MissingToken {
        /// The variable leasehold looked for.
        variable: String,
        /// The audience to put into `aud`.
        audience: String,
        /// What the token is needed for (`the secrets in LEASEHOLD_SECRETS`).
        needed_for: String,
    },
    /// The token is not a JWT.
    #[error(
        "${variable} does not hold a JWT ({detail}); it must come from the job's id_tokens: keyword"
    )]
    Malformed {
        /// The variable.
        variable: String,
        /// What is wrong (never the token).
        detail: String,
    },
    /// Signed with something other than RS256.
    #[error(
        "the ID token in ${variable} is signed with {alg}, but GitLab signs ID tokens with RS256; it was not issued by GitLab"
    )]
    UnsupportedAlgorithm {
        /// The variable.
        variable: String,
        /// The header's `alg`.
        alg: String,
    },
    /// The header names no key.
    #[error(
        "the ID token in ${variable} names no signing key (no kid in its header); GitLab always sets one, so it was not issued by GitLab"
    )]
    NoKeyId {
        /// The variable.
        variable: String,
    },
    /// The `kid` is not in GitLab's JWKS, even after a re-fetch.
    #[error(
        "the ID token in ${variable} is signed with key {kid:?}, which is not among the signing keys GitLab publishes at {url} ({}{}); the token was not issued by this GitLab ([gitlab] url), or was issued before a key was retired",
        if known.is_empty() { "none".to_owned() } else { known.join(", ") },
        if *refetched { ", fetched again just now" } else { ", fetched just now" }
    )]
    UnknownKey {
        /// The variable.
        variable: String,
        /// The header's `kid`.
        kid: String,
        /// The JWKS URL.
        url: String,
        /// The key ids GitLab publishes.
        known: Vec<String>,
        /// Whether the JWKS was fetched again because of this token.
        refetched: bool,
    },
    /// The signature does not verify.
    #[error(
        "the ID token in ${variable} has an invalid signature for GitLab's key {kid:?} ({url}): it was altered or not issued by this GitLab; no Vault request was made"
    )]
    BadSignature {
        /// The variable.
        variable: String,
        /// The key it claims.
        kid: String,
        /// The JWKS URL.
        url: String,
    },
    /// GitLab's key cannot verify RS256 signatures.
    #[error(
        "GitLab's signing key {kid:?} from {url} cannot verify the ID token in ${variable}: {detail}"
    )]
    KeyUnusable {
        /// The variable.
        variable: String,
        /// The key id.
        kid: String,
        /// The JWKS URL.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// `iss` is not the configured issuer.
    #[error(
        "the ID token in ${variable} was issued by {iss:?}, but this runner expects {}; {hint}",
        quote_list(expected)
    )]
    WrongIssuer {
        /// The variable.
        variable: String,
        /// The token's `iss`.
        iss: String,
        /// The accepted issuers.
        expected: Vec<String>,
        /// How to fix it.
        hint: String,
    },
    /// `aud` does not contain a configured audience.
    #[error(
        "the ID token in ${variable} has {}, but this runner expects {}; set it in the job:  id_tokens: {{ {variable}: {{ aud: \"{}\" }} }}",
        if aud.is_empty() { "no aud".to_owned() } else { format!("aud {}", quote_list(aud)) },
        quote_list(expected),
        expected.first().map_or("", String::as_str)
    )]
    WrongAudience {
        /// The variable.
        variable: String,
        /// The token's `aud`.
        aud: Vec<String>,
        /// The configured audiences.
        expected: Vec<String>,
    },
    /// A claim every GitLab ID token carries is missing.
    #[error(
        "the ID token in ${variable} has no {claim} claim; GitLab always sets it, so the token was not issued by GitLab"
    )]
    MissingClaim {
        /// The variable.
        variable: String,
        /// The claim.
        claim: &'static str,
    },
    /// `exp` is past, beyond the leeway.
    #[error(
        "the ID token in ${variable} expired at {} (exp={exp}), {}s ago by this runner's clock (now {}, {now}; leeway {leeway}s); ID tokens live as long as the job timeout (5 minutes without one): retry the job, and if this repeats check the runner host's clock (NTP) against GitLab's",
        utc(*exp), now - exp, utc(*now)
    )]
    Expired {
        /// The variable.
        variable: String,
        /// The token's `exp`.
        exp: i64,
        /// The local clock.
        now: i64,
        /// The leeway.
        leeway: u64,
    },
    /// `nbf` or `iat` is in the future, beyond the leeway.
    #[error(
        "the ID token in ${variable} is not valid yet: {claim}={at} ({}) is {}s ahead of this runner's clock (now {}, {now}; leeway {leeway}s), so this host's clock is behind GitLab's by at least {}s; fix the clock (NTP)",
        utc(*at), at - now, utc(*now), (at - now).saturating_sub(i64::try_from(*leeway).unwrap_or(i64::MAX))
    )]
    NotYetValid {
        /// The variable.
        variable: String,
        /// `nbf` or `iat`.
        claim: &'static str,
        /// Its value.
        at: i64,
        /// The local clock.
        now: i64,
        /// The leeway.
        leeway: u64,
    },
    /// GitLab's JWKS could not be fetched.
    #[error(
        "cannot fetch GitLab's signing keys to verify the job's ID token: {detail}; check that [gitlab] url is right and GitLab is reachable from the runner host"
    )]
    JwksUnreachable {
        /// What was tried and what failed.
        detail: String,
    },
    /// GitLab's JWKS is not a usable key set.
    #[error("GitLab's signing keys at {url} are unusable: {detail}")]
    JwksInvalid {
        /// The URL.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// The JWKS cache directory is unusable.
    #[error("JWKS cache: {0}")]
    JwksCache(#[source] crate::private_fs::FsError),
    /// The HTTP client for GitLab could not be configured.
    #[error("cannot configure the HTTPS client for GitLab: {detail}")]
    GitlabClient {
        /// What is wrong.
        detail: String,
    },
}

fn quote_list(items: &[String]) -> String {
    match items {
        [one] => format!("{one:?}"),
        many => format!(
            "one of [{}]",
            many.iter()
                .map(|i| format!("{i:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `2026-11-21T10:00:00Z` for unix seconds (proleptic Gregorian, UTC).
pub(crate) fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl IdentityError {
    /// A token that fails verification is the job's (or its GitLab's) problem; not reaching
    /// GitLab's keys, or an unusable cache, is the runner host's.
    pub(crate) fn failure_kind(&self) -> FailureKind {
        match self {
            IdentityError::JwksUnreachable { .. }
            | IdentityError::JwksInvalid { .. }
            | IdentityError::JwksCache(_)
            | IdentityError::GitlabClient { .. }
            | IdentityError::KeyUnusable { .. } => FailureKind::System,
            _ => FailureKind::Build,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_798_761_599), "2026-12-31T23:59:59Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59Z");
    }
}
