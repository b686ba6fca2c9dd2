//! The pieces of a Vault API path that come from outside leasehold's own code (a job's
//! declarations and variables, a claim, the admin's config, a lease id from Vault), checked by
//! one rule, and the request URL built from them one segment at a time.
//!
//! Why one rule, and why here: a request path was once formatted as text and handed to the URL
//! parser, which (as the WHATWG URL standard asks) turns `\` into `/` and resolves `.` and `..`
//! (also spelled `%2e`). So `x\..\..\..\secret\data\ci\app` below an allowed mount read another
//! mount's secret, and `VAULT_AUTH_PATH=../../../other-app/api` sent the job's ID token outside
//! `/v1/`. Every place that takes a piece (declarations, planning, bindings, config) calls
//! [`check`], and the Vault client builds every URL with [`request_url`], which checks each
//! segment again by the same rule and percent-encodes it, so no piece can change the URL's
//! structure even if a caller forgot to check.
//!
//! The rule, for a mount, a path, a field, an auth mount and a namespace alike: `/` separates
//! segments (any `/` at either end is tolerated and removed, except in a field); no segment may
//! be empty (`a//b`) or consist of dots only (`.`, `..`, `...`, or the Unicode dots that some
//! software folds to `.`); and no `\`, `?`, `#`, `%`, whitespace, control character or invisible
//! formatting character (bidi overrides, zero-width spaces) may appear anywhere. Refusing `%`
//! outright covers every percent-encoded spelling (`%2e`, `%2E%2e`, `%2f`, `%5c`) at once.
//!
//! Values are refused, never rewritten: a rewrite would let two different inputs name one
//! secret, and the job author would not see which one was read.

use std::fmt;

use reqwest::Url;

/// What a piece is, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    /// A secrets-engine mount (`@mount`, `engine.path`).
    Mount,
    /// A secret's path below its mount.
    Path,
    /// The key picked from the response.
    Field,
    /// A JWT or AppRole auth mount (`VAULT_AUTH_PATH`, `[vault] auth_mount`).
    AuthMount,
    /// A Vault namespace (`VAULT_NAMESPACE`, sent as `X-Vault-Namespace`).
    Namespace,
    /// A whole API path below `/v1/`, as the client is about to send it.
    Request,
}

impl Piece {
    fn noun(self) -> &'static str {
        match self {
            Piece::Mount => "mount",
            Piece::Path => "path",
            Piece::Field => "field",
            Piece::AuthMount => "auth mount",
            Piece::Namespace => "namespace",
            Piece::Request => "request path",
        }
    }
}

/// What is wrong with a piece. The text says what to do instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Problem {
    /// Nothing (or only slashes) was given.
    #[error("is empty")]
    Empty,
    /// `a//b`.
    #[error("has an empty segment (\"//\"); remove the extra '/'")]
    EmptySegment,
    /// `.`, `..` or another segment of dots only.
    #[error(
        "has a \".\" or \"..\" segment, which URL parsers resolve, so the request would leave the place it belongs to; write it without such segments"
    )]
    DotSegment,
    /// `\`, which URL parsers read as `/`.
    #[error("contains '\\', which URL parsers read as '/'; separate segments with '/' only")]
    Backslash,
    /// `?` or `#`, which would end the path.
    #[error("contains '{0}', which would end the path and start a query or fragment; remove it")]
    Delimiter(char),
    /// `%`: percent-encoding.
    #[error(
        "contains '%'; percent-encoded text is not accepted (leasehold encodes the path itself), write the characters themselves"
    )]
    Percent,
    /// Whitespace.
    #[error("contains whitespace; remove it")]
    Whitespace,
    /// A control or invisible formatting character.
    #[error("contains the control or invisible character U+{:04X}; remove it", u32::from(*.0))]
    Control(char),
}

/// A piece that breaks the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {} {problem}", piece.noun(), shown(value))]
pub(crate) struct PieceError {
    /// What the piece is.
    pub piece: Piece,
    /// The piece as given (shown quoted and escaped, shortened).
    pub value: String,
    /// What is wrong.
    pub problem: Problem,
}

impl PieceError {
    /// The value and what is wrong with it, without the noun: `"../x" has a "." or ".." segment…`,
    /// for messages that name the piece another way (a variable).
    pub(crate) fn detail(&self) -> String {
        format!("{} {}", shown(&self.value), self.problem)
    }
}

/// The longest part of a refused value a message quotes.
const SHOWN_MAX: usize = 120;

/// A value as a message may quote it: Rust's escaping (so no control character reaches a
/// terminal), shortened.
fn shown(value: &str) -> String {
    if value.chars().count() <= SHOWN_MAX {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(SHOWN_MAX).collect();
    format!("{head:?}…")
}

/// Characters that render as nothing or reorder text: they would let a path look like another
/// in a log or a review (also used for remote text, [`crate::vault`]'s `printable`).
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}')
}

/// Characters that read as, or are folded by Unicode normalisation to, one or more `.`.
fn is_dot(c: char) -> bool {
    matches!(
        c,
        '.' | '\u{2024}' | '\u{2025}' | '\u{2026}' | '\u{FE52}' | '\u{FF0E}'
    )
}

fn check_char(c: char) -> Result<(), Problem> {
    match c {
        '\\' => Err(Problem::Backslash),
        '?' | '#' => Err(Problem::Delimiter(c)),
        '%' => Err(Problem::Percent),
        c if c.is_control() || is_invisible(c) => Err(Problem::Control(c)),
        c if c.is_whitespace() => Err(Problem::Whitespace),
        _ => Ok(()),
    }
}

/// The rule for one segment (text between two `/`).
fn check_segment(segment: &str) -> Result<(), Problem> {
    if segment.is_empty() {
        return Err(Problem::EmptySegment);
    }
    segment.chars().try_for_each(check_char)?;
    if segment.chars().all(is_dot) {
        return Err(Problem::DotSegment);
    }
    Ok(())
}

/// The rule for a `/`-separated piece; returns it normalised (for every piece but a field, one
/// or more `/` at either end removed).
pub(crate) fn check(piece: Piece, value: &str) -> Result<String, PieceError> {
    let fail = |problem| PieceError {
        piece,
        value: value.to_owned(),
        problem,
    };
    // Characters first: `a\..\b` is refused for its backslash, the actual mistake.
    value.chars().try_for_each(check_char).map_err(fail)?;
    let trimmed = match piece {
        Piece::Field => value,
        _ => value.trim_matches('/'),
    };
    if trimmed.is_empty() {
        return Err(fail(Problem::Empty));
    }
    trimmed
        .split('/')
        .try_for_each(check_segment)
        .map_err(fail)?;
    Ok(trimmed.to_owned())
}

/// The API path of a login at an auth mount: `auth/<mount>/login`.
pub(crate) fn login_path(mount: &str) -> String {
    jwt_login_path(mount, "login")
}

/// The API path of a JWT login with the configured endpoint: `auth/<mount>/<endpoint>`, where
/// the endpoint is `login` or, for OpenBao's CEL roles, `cel/login` (checked by the config).
pub(crate) fn jwt_login_path(mount: &str, endpoint: &str) -> String {
    format!(
        "auth/{}/{}",
        mount.trim_matches('/'),
        endpoint.trim_matches('/')
    )
}

/// The URL of an API request: `base` (the server's address, which may carry a path prefix),
/// then `v1`, then every segment of `path`, each checked by the rule and percent-encoded, then
/// `query`. This is the only way the Vault client forms a URL. A `/` at either end of `path` is
/// dropped (Vault appends one to every LIST path itself).
pub(crate) fn request_url(
    base: &Url,
    path: &str,
    query: &[(&str, &str)],
) -> Result<Url, PieceError> {
    let path = check(Piece::Request, path)?;
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| PieceError {
            piece: Piece::Request,
            value: base.as_str().to_owned(),
            problem: Problem::Empty,
        })?
        .pop_if_empty()
        .push("v1")
        .extend(path.split('/'));
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

/// One request as the client sends it, for `leasehold plan`: the method and the path exactly
/// as they go on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shown {
    /// `GET`, `POST`, …
    pub method: &'static str,
    /// `/v1/kv/data/app/db`, percent-encoded as sent.
    pub path: String,
}

impl Shown {
    /// The request `method` to `path` on the server at `base` (an address that does not parse,
    /// which the config check prevents, shows the path below a bare `/`).
    pub(crate) fn new(method: &'static str, base: &str, path: &str) -> Result<Self, PieceError> {
        let url = match Url::parse(base).or_else(|_| Url::parse("http://vault.invalid/")) {
            Ok(base) => request_url(&base, path, &[])?,
            Err(_) => {
                return Err(PieceError {
                    piece: Piece::Request,
                    value: base.to_owned(),
                    problem: Problem::Empty,
                });
            }
        };
        Ok(Shown {
            method,
            path: url.path().to_owned(),
        })
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(piece: Piece, value: &str) -> Option<Problem> {
        check(piece, value).err().map(|e| e.problem)
    }

    #[test]
    fn the_rule() {
        use Problem::*;
        let refused: &[(&str, Problem)] = &[
            ("", Empty),
            ("/", Empty),
            ("a//b", EmptySegment),
            (".", DotSegment),
            ("..", DotSegment),
            ("a/../b", DotSegment),
            ("a/./b", DotSegment),
            ("a/...", DotSegment),
            ("a/\u{FF0E}\u{FF0E}/b", DotSegment),
            ("a/\u{2025}/b", DotSegment),
            ("a\\b", Backslash),
            ("x\\..\\..\\secret", Backslash),
            ("a?b", Delimiter('?')),
            ("a#b", Delimiter('#')),
            ("a/%2e%2e/b", Percent),
            ("a/%2E%2e/b", Percent),
            ("a%2fb", Percent),
            ("a%5cb", Percent),
            ("a b", Whitespace),
            ("a\u{00A0}b", Whitespace),
            ("a\nb", Control('\n')),
            ("a\rb", Control('\r')),
            ("a\u{1b}[2Jb", Control('\u{1b}')),
            ("a\u{0}b", Control('\u{0}')),
            ("a\u{7f}b", Control('\u{7f}')),
            ("a\u{202E}b", Control('\u{202E}')),
            ("a\u{200B}b", Control('\u{200B}')),
        ];
        for (value, expected) in refused {
            for piece in [
                Piece::Mount,
                Piece::Path,
                Piece::AuthMount,
                Piece::Namespace,
            ] {
                assert_eq!(
                    problem(piece, value),
                    Some(*expected),
                    "{piece:?} {value:?}"
                );
            }
        }
        for (value, normalised) in [
            ("kv", "kv"),
            ("/kv/", "kv"),
            ("teams/a", "teams/a"),
            ("a.b/c..d/.e/f.", "a.b/c..d/.e/f."),
            ("db-creds_1/x:y@z", "db-creds_1/x:y@z"),
            ("ünïcode/名前", "ünïcode/名前"),
        ] {
            assert_eq!(
                check(Piece::Path, value).as_deref(),
                Ok(normalised),
                "{value:?}"
            );
        }
        // A field is taken as written: no slash is trimmed off it.
        assert_eq!(problem(Piece::Field, "/password"), Some(EmptySegment));
        assert_eq!(check(Piece::Field, "pass.word").as_deref(), Ok("pass.word"));
    }

    #[test]
    fn messages_quote_the_value_escaped_and_short() {
        let err = check(Piece::Path, "x\\..\\secret").expect_err("refused");
        assert_eq!(
            err.to_string(),
            "path \"x\\\\..\\\\secret\" contains '\\', which URL parsers read as '/'; separate segments with '/' only"
        );
        let err = check(Piece::Namespace, "team\r\nX-Injected: 1").expect_err("refused");
        assert_eq!(
            err.detail(),
            "\"team\\r\\nX-Injected: 1\" contains the control or invisible character U+000D; remove it"
        );
        let long = format!("{}?", "a".repeat(500));
        let err = check(Piece::Mount, &long).expect_err("refused").to_string();
        assert!(err.len() < 300 && err.contains("…"), "{err}");
    }

    #[test]
    fn request_urls_are_built_segment_by_segment() {
        let base = Url::parse("https://vault.example.com:8200").expect("url");
        let url = request_url(&base, "kv/data/a\"b<c>/d", &[]).expect("url");
        assert_eq!(
            url.as_str(),
            "https://vault.example.com:8200/v1/kv/data/a%22b%3Cc%3E/d"
        );
        let prefixed = Url::parse("https://proxy.example.com/vault/").expect("url");
        let url = request_url(&prefixed, "sys/health", &[("standbyok", "true")]).expect("url");
        assert_eq!(
            url.as_str(),
            "https://proxy.example.com/vault/v1/sys/health?standbyok=true"
        );
        for bad in [
            "auth/../../../other-app/api/login",
            "kv/data/x\\..\\..\\secret",
            "kv/data/%2e%2e/x",
            "auth/jwt/login?x=1",
            "auth/jwt#/login",
            "kv//x",
        ] {
            assert!(request_url(&base, bad, &[]).is_err(), "{bad}");
        }
        assert_eq!(login_path("/gitlab/jwt/"), "auth/gitlab/jwt/login");
        let shown = Shown::new("POST", "http://127.0.0.1:8200", &login_path("jwt")).expect("shown");
        assert_eq!(shown.to_string(), "POST /v1/auth/jwt/login");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::declarations::{self, DeclarationContext};
    use proptest::prelude::*;

    /// Text built from the pieces attacks are made of, and ordinary ones.
    fn piece() -> impl Strategy<Value = String> {
        let atom = prop_oneof![
            12 => "[a-z0-9._-]{1,6}",
            4 => Just("/".to_owned()),
            2 => Just(".".to_owned()),
            2 => Just("..".to_owned()),
            1 => Just("\\".to_owned()),
            1 => Just("%2e".to_owned()),
            1 => Just("%2E%2e".to_owned()),
            1 => Just("%2f".to_owned()),
            1 => Just("%5c".to_owned()),
            1 => Just("?".to_owned()),
            1 => Just("#".to_owned()),
            1 => Just("@".to_owned()),
            1 => Just(" ".to_owned()),
            1 => Just("\t".to_owned()),
            1 => Just("\u{1b}".to_owned()),
            1 => Just("\u{0}".to_owned()),
            1 => Just("\u{FF0E}".to_owned()),
            1 => Just("\u{2024}".to_owned()),
            1 => Just("\u{202E}".to_owned()),
            2 => Just("$V".to_owned()),
            1 => Just("${V}".to_owned()),
            1 => Just("sys".to_owned()),
            1 => Just("auth".to_owned()),
            1 => Just("data".to_owned()),
            2 => "\\PC{1,3}",
        ];
        prop::collection::vec(atom, 1..6).prop_map(|parts| parts.concat())
    }

    /// Percent-decodes a path segment (what the server sees).
    fn decode(segment: &str) -> String {
        let bytes = segment.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len()
                && let Some(b) = segment
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The URL is well-formed below `prefix`: no dot segment, no query or fragment, and every
    /// segment, decoded as a server decodes it, free of separators.
    fn assert_contained(url: &Url, prefix: &str) -> Result<(), TestCaseError> {
        prop_assert_eq!(url.host_str(), Some("vault.example.com"));
        prop_assert!(url.query().is_none() && url.fragment().is_none(), "{}", url);
        prop_assert!(
            url.path().starts_with(prefix),
            "{} does not start with {}",
            url.path(),
            prefix
        );
        let reparsed = Url::parse(url.as_str()).expect("reparses");
        prop_assert_eq!(
            reparsed.path(),
            url.path(),
            "the URL changes when parsed again"
        );
        for segment in url.path().trim_start_matches('/').split('/') {
            let decoded = decode(segment);
            prop_assert!(!decoded.is_empty(), "empty segment in {}", url);
            prop_assert!(
                !decoded
                    .chars()
                    .all(|c| c == '.' || c == '\u{FF0E}' || c == '\u{2024}'),
                "dot segment {:?} in {}",
                segment,
                url
            );
            prop_assert!(
                !decoded.contains(['/', '\\', '?', '#']),
                "separator in {:?} of {}",
                segment,
                url
            );
        }
        Ok(())
    }

    fn encoded(piece: &str) -> String {
        let mut url = Url::parse("http://x/").expect("url");
        url.path_segments_mut()
            .expect("base")
            .extend(piece.split('/'));
        url.path().trim_start_matches('/').to_owned()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever a job writes (short form, long form, through `$VAR`), a declaration that is
        /// accepted is requested below `/v1/<declared mount>/`, with no dot segment.
        #[test]
        fn a_declared_secret_is_requested_below_its_mount(
            mount in piece(), path in piece(), field in piece(), var in piece(), long in any::<bool>(),
        ) {
            let lookup = |name: &str| (name == "V").then(|| (var.clone(), true));
            let yaml = if long {
                format!(
                    "A:\n  vault:\n    engine: {{name: kv-v1, path: {}}}\n    path: {}\n    field: {}\n",
                    serde_json::json!(mount), serde_json::json!(path), serde_json::json!(field)
                )
            } else {
                format!("A:\n  vault: {}\n", serde_json::json!(format!("{path}/{field}@{mount}")))
            };
            let ctx = DeclarationContext { source_variable: "LEASEHOLD_SECRETS", lookup: &lookup };
            let base = Url::parse("https://vault.example.com").expect("url");
            match declarations::parse(&yaml, &ctx) {
                Ok(decls) => {
                    for d in decls {
                        let url = request_url(&base, &d.source.api_path(), &[]).expect("an accepted declaration is sent");
                        assert_contained(&url, &format!("/v1/{}/", encoded(&d.source.mount)))?;
                        // The mount the policy checks is the one the URL starts with.
                        prop_assert!(!d.source.mount.contains(['\\', '?', '#', '%']));
                    }
                }
                Err(e) => {
                    let unprintable = e.to_string().chars().any(char::is_control);
                    prop_assert!(!unprintable, "{:?}", e.to_string());
                }
            }
        }

        /// Whatever `VAULT_AUTH_PATH` holds, a login that passes the rule goes to
        /// `/v1/auth/<mount>/login`, and nothing else reaches the URL builder.
        #[test]
        fn a_login_goes_to_its_auth_mount(mount in piece()) {
            let base = Url::parse("https://vault.example.com").expect("url");
            match check(Piece::AuthMount, &mount) {
                Ok(mount) => {
                    let url = request_url(&base, &login_path(&mount), &[]).expect("sent");
                    assert_contained(&url, &format!("/v1/auth/{}/", encoded(&mount)))?;
                    prop_assert!(url.path().ends_with("/login"));
                }
                // Even unchecked, the client's builder refuses it rather than send it elsewhere.
                Err(_) => {
                    if let Ok(url) = request_url(&base, &login_path(&mount), &[]) {
                        assert_contained(&url, "/v1/auth/")?;
                    }
                }
            }
        }

        /// The builder alone, on any text at all: either an error or a URL below `/v1/`.
        #[test]
        fn the_builder_never_leaves_v1(path in "\\PC{0,40}") {
            let base = Url::parse("https://vault.example.com/").expect("url");
            if let Ok(url) = request_url(&base, &path, &[]) {
                assert_contained(&url, "/v1/")?;
            }
        }
    }
}
