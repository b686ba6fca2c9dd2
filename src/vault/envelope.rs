//! Response shapes of the Vault HTTP API, decoded so that secret material lands directly in
//! `SecretString`.
//!
//! Why custom decoding: going through `serde_json::Value` (or a plain `String`) would leave
//! copies of every secret value in ordinary heap allocations that are freed without being
//! cleared. Field values are therefore decoded straight from the response bytes into
//! `SecretString`, and non-string values are re-encoded as compact JSON text into a buffer that
//! is zeroed when dropped. Copies made by hyper and by serde_json's escape scratch buffer remain
//! out of reach; this module only promises not to add its own.
//!
//! The wire structs here (`Raw*`) are private to the `vault` module: they describe exactly the
//! members leasehold reads and ignore the rest, notably `data.id` of a token lookup (which *is*
//! the token) and `wrap_info` (which holds a wrapping token).

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use secrecy::SecretString;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use zeroize::Zeroizing;

use super::error::printable;

/// The data map of a secret response. String values are kept as they are; any other JSON
/// value (number, bool, object, array) is kept as its compact JSON text, like `vault read -field`.
#[derive(Debug, Default)]
pub(crate) struct SecretFields(pub BTreeMap<String, SecretString>);

impl SecretFields {
    /// The value of one field.
    pub(crate) fn get(&self, field: &str) -> Option<&SecretString> {
        self.0.get(field)
    }
    /// The field names that exist (never values), for "field missing" messages.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

impl<'de> Deserialize<'de> for SecretFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = SecretFields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of secret fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretFields, A::Error> {
        let mut fields = BTreeMap::new();
        // Field names are not secret (they are printed in "field missing" messages).
        while let Some(name) = map.next_key::<String>()? {
            let value = map.next_value_seed(FieldValue)?;
            // A duplicate name replaces the earlier value, which is zeroed as it drops.
            fields.insert(name, value);
        }
        Ok(SecretFields(fields))
    }
}

/// Decodes one field value into a `SecretString`: strings verbatim, anything else as JSON text.
struct FieldValue;

impl<'de> DeserializeSeed<'de> for FieldValue {
    type Value = SecretString;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<SecretString, D::Error> {
        deserializer.deserialize_any(FieldValueVisitor)
    }
}

struct FieldValueVisitor;

impl FieldValueVisitor {
    /// Runs the JSON re-encoder for a non-string value and moves the text into a `SecretString`.
    fn as_json<E: de::Error>(
        write: impl FnOnce(&mut SecretBuf) -> Result<(), E>,
    ) -> Result<SecretString, E> {
        let mut buf = SecretBuf::default();
        write(&mut buf)?;
        let text = std::str::from_utf8(buf.as_slice()).map_err(E::custom)?;
        // Copies into an exactly sized allocation; `buf` is zeroed when it drops.
        Ok(SecretString::from(text))
    }
}

impl<'de> Visitor<'de> for FieldValueVisitor {
    type Value = SecretString;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretString, E> {
        Ok(SecretString::from(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<SecretString, E> {
        // `From<String>` may reallocate to shrink, freeing the old buffer uncleared; copy instead.
        let v = Zeroizing::new(v);
        Ok(SecretString::from(v.as_str()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<SecretString, E> {
        Self::as_json(|buf| JsonText(buf).visit_bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<SecretString, E> {
        Self::as_json(|buf| JsonText(buf).visit_i64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<SecretString, E> {
        Self::as_json(|buf| JsonText(buf).visit_u64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<SecretString, E> {
        Self::as_json(|buf| JsonText(buf).visit_f64(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<SecretString, E> {
        Self::as_json(|buf| JsonText(buf).visit_unit())
    }

    fn visit_none<E: de::Error>(self) -> Result<SecretString, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<SecretString, A::Error> {
        Self::as_json(|buf| JsonText(buf).visit_seq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SecretString, A::Error> {
        Self::as_json(|buf| JsonText(buf).visit_map(map))
    }
}

/// Re-encodes any JSON value as compact JSON text into a [`SecretBuf`], without building an
/// intermediate `serde_json::Value`.
struct JsonText<'a>(&'a mut SecretBuf);

impl JsonText<'_> {
    fn put<E: de::Error>(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.0.extend(bytes);
        Ok(())
    }

    /// Writes a scalar or string exactly as serde_json would (escaping, number format).
    fn put_json<T: serde::Serialize + ?Sized, E: de::Error>(&mut self, v: &T) -> Result<(), E> {
        serde_json::to_writer(&mut *self.0, v).map_err(E::custom)
    }
}

impl<'de> DeserializeSeed<'de> for JsonText<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonText<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        self.put(if v { b"true" } else { b"false" })
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        self.put_json(&v)
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        self.put_json(&v)
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        self.put_json(&v)
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        self.put_json(v)
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.put(b"null")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.put(b"[")?;
        let mut first = true;
        loop {
            // The separator must be written before the element, but only if there is one.
            let mark = self.0.len();
            if !first {
                self.put(b",")?;
            }
            if seq.next_element_seed(JsonText(&mut *self.0))?.is_none() {
                self.0.truncate(mark);
                break;
            }
            first = false;
        }
        self.put(b"]")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.put(b"{")?;
        let mut first = true;
        loop {
            let mark = self.0.len();
            if !first {
                self.put(b",")?;
            }
            if map.next_key_seed(JsonText(&mut *self.0))?.is_none() {
                self.0.truncate(mark);
                break;
            }
            self.put(b":")?;
            map.next_value_seed(JsonText(&mut *self.0))?;
            first = false;
        }
        self.put(b"}")
    }
}

/// A byte buffer that never leaves a copy of its contents behind: it is zeroed on drop, and
/// growing it zeroes the old allocation (a plain `Vec` would free it as is).
#[derive(Default)]
pub(super) struct SecretBuf(Zeroizing<Vec<u8>>);

impl SecretBuf {
    /// An empty buffer that can take `capacity` bytes without reallocating.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        SecretBuf(Zeroizing::new(Vec::with_capacity(capacity)))
    }

    /// Appends bytes.
    pub(super) fn extend(&mut self, bytes: &[u8]) {
        let needed = self.0.len().saturating_add(bytes.len());
        if needed > self.0.capacity() {
            let mut grown = Zeroizing::new(Vec::with_capacity(
                needed.max(self.0.capacity().saturating_mul(2)).max(64),
            ));
            grown.extend_from_slice(&self.0);
            // The old allocation is zeroed as it drops here.
            self.0 = grown;
        }
        self.0.extend_from_slice(bytes);
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    fn truncate(&mut self, len: usize) {
        use zeroize::Zeroize;
        if len < self.0.len() {
            self.0[len..].zeroize();
            self.0.truncate(len);
        }
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBuf([{} bytes REDACTED])", self.0.len())
    }
}

impl io::Write for SecretBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.extend(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A secret response with its lease metadata.
#[derive(Debug, Default)]
pub(crate) struct SecretEnvelope {
    /// Empty when the secret has no lease (KV).
    pub lease_id: String,
    /// Seconds.
    pub lease_duration: u64,
    /// Whether the lease can be renewed.
    pub renewable: bool,
    /// The data; for KV v2 this is already the inner `data.data`.
    pub data: SecretFields,
    /// Warnings Vault attached.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "decoded and tested; not acted on yet")
    )]
    pub warnings: Vec<String>,
}

/// The `auth` block of a login or token renewal.
#[derive(Debug)]
pub(crate) struct AuthInfo {
    /// The token.
    pub client_token: SecretString,
    /// Its accessor (not secret: it can only look up or revoke with a suitable policy).
    pub accessor: String,
    /// Seconds the token lives before it must be renewed.
    pub lease_duration: u64,
    /// Whether it can be renewed.
    pub renewable: bool,
    /// Policies attached to the token.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "decoded and tested; not acted on yet")
    )]
    pub policies: Vec<String>,
}

/// Result of a lease renewal.
#[derive(Debug, Clone)]
pub(crate) struct LeaseInfo {
    /// The lease id.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "decoded and tested; not acted on yet")
    )]
    pub lease_id: String,
    /// New TTL in seconds.
    pub lease_duration: u64,
    /// Whether it can be renewed again.
    pub renewable: bool,
}

/// `sys/health`.
#[derive(Debug, Clone)]
pub(crate) struct Health {
    /// Whether the server is initialized.
    pub initialized: bool,
    /// Whether it is sealed.
    pub sealed: bool,
    /// Whether it is a standby.
    pub standby: bool,
    /// Server version.
    pub version: String,
}

#[cfg(test)]
/// What a token lookup (`lookup-self`, `lookup-accessor`) says about a token, without the token
/// itself: lookup-self answers with the token in `data.id`, which is deliberately not decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct TokenLookup {
    /// The token's accessor.
    #[serde(default, deserialize_with = "null_as_default")]
    pub accessor: String,
    /// Seconds left before the token expires (0 for a token without expiry, such as root).
    #[serde(default, deserialize_with = "null_as_default")]
    pub ttl: u64,
    /// Whether the token can be renewed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub renewable: bool,
    /// Policies attached to the token.
    #[serde(default, deserialize_with = "null_as_default")]
    pub policies: Vec<String>,
    /// RFC 3339 expiry time, when the token has one.
    #[serde(default)]
    pub expire_time: Option<String>,
}

/// Vault sends `null` for many absent members (`warnings`, `auth`, `policies`).
pub(super) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Tells a member that is absent (`None`) from one that is `null` (`Some(None)`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The common envelope of every Vault response; `D` is the shape of `data`.
#[derive(Debug, Deserialize)]
#[serde(bound = "D: Deserialize<'de>")]
pub(super) struct RawResponse<D> {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) lease_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) lease_duration: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) renewable: bool,
    #[serde(default)]
    pub(super) data: Option<D>,
    #[serde(default)]
    pub(super) auth: Option<RawAuth>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) warnings: Vec<String>,
    /// Holds a wrapping token, so only its presence is recorded.
    #[serde(default)]
    pub(super) wrap_info: Option<IgnoredAny>,
}

/// The `data` of a KV v2 read: the fields sit one level deeper, next to `metadata`.
#[derive(Debug, Deserialize)]
pub(super) struct Kv2Data {
    /// `None`: no `data` member (not a KV v2 response); `Some(None)`: `null` (deleted version).
    #[serde(default, deserialize_with = "present")]
    pub(super) data: Option<Option<SecretFields>>,
}

/// The `auth` block.
#[derive(Debug, Deserialize)]
pub(super) struct RawAuth {
    pub(super) client_token: SecretString,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) accessor: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) lease_duration: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) renewable: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) policies: Vec<String>,
}

/// The accessor and policy names are shown in the job log; a real server never sends control
/// characters in them, so making them printable changes nothing but a forged answer.
impl From<RawAuth> for AuthInfo {
    fn from(raw: RawAuth) -> Self {
        AuthInfo {
            client_token: raw.client_token,
            accessor: printable(&raw.accessor),
            lease_duration: raw.lease_duration,
            renewable: raw.renewable,
            policies: raw.policies.iter().map(|p| printable(p)).collect(),
        }
    }
}

#[cfg(test)]
/// The `data` of a LIST.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawKeys {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) keys: Vec<String>,
}

/// `sys/health` (not enveloped).
#[derive(Debug, Deserialize)]
pub(super) struct RawHealth {
    #[serde(default)]
    pub(super) initialized: bool,
    #[serde(default)]
    pub(super) sealed: bool,
    #[serde(default)]
    pub(super) standby: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) version: String,
}

impl From<RawHealth> for Health {
    fn from(raw: RawHealth) -> Self {
        Health {
            initialized: raw.initialized,
            sealed: raw.sealed,
            standby: raw.standby,
            version: raw.version,
        }
    }
}

/// The body of an error response.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawErrors {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) errors: Vec<String>,
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn fields(json: &str) -> SecretFields {
        serde_json::from_str(json).expect("valid fields")
    }

    #[test]
    fn strings_are_kept_verbatim_and_other_values_become_compact_json() {
        let f = fields(
            r#"{"s":"p\"a\u00e9\nss","n":42,"neg":-7,"f":1.5,"t":true,"z":null,
                "a":[1, "x", {"k": [ ]}, null],"o":{"b": {"c":"d\n"}, "e": []},"empty":{}}"#,
        );
        let get = |k: &str| f.get(k).expect("field").expose_secret().to_owned();
        assert_eq!(get("s"), "p\"a\u{e9}\nss");
        assert_eq!(get("n"), "42");
        assert_eq!(get("neg"), "-7");
        assert_eq!(get("f"), "1.5");
        assert_eq!(get("t"), "true");
        assert_eq!(get("z"), "null");
        assert_eq!(get("a"), r#"[1,"x",{"k":[]},null]"#);
        assert_eq!(get("o"), r#"{"b":{"c":"d\n"},"e":[]}"#);
        assert_eq!(get("empty"), "{}");
        assert_eq!(
            f.names(),
            ["a", "empty", "f", "n", "neg", "o", "s", "t", "z"]
        );
    }

    #[test]
    fn re_encoding_matches_serde_json_compact_output() {
        let json = r#"{"deep":[[[{"x":[1e3,2.25,-0.0,18446744073709551615,"\u0001"]}]]],"u":"\ud83d\ude00"}"#;
        let f = fields(json);
        let expected: serde_json::Value = serde_json::from_str(json).expect("valid");
        assert_eq!(
            f.get("deep").expect("deep").expose_secret(),
            expected["deep"].to_string()
        );
        assert_eq!(f.get("u").expect("u").expose_secret(), "\u{1f600}");
    }

    #[test]
    fn fields_must_be_an_object() {
        assert!(serde_json::from_str::<SecretFields>(r#"["a"]"#).is_err());
        assert!(serde_json::from_str::<SecretFields>(r#""a""#).is_err());
    }

    #[test]
    fn debug_never_shows_values() {
        let f = fields(r#"{"password":"hunter2-planted","n":{"deep":"hunter3-planted"}}"#);
        let shown = format!("{f:?}");
        assert!(
            !shown.contains("hunter2-planted") && !shown.contains("hunter3-planted"),
            "{shown}"
        );
        let mut buf = SecretBuf::default();
        buf.extend(b"hunter4-planted");
        assert!(!format!("{buf:?}").contains("hunter4"));
    }

    #[test]
    fn secret_buf_grows_and_truncates() {
        let mut buf = SecretBuf::with_capacity(1);
        for i in 0..200u8 {
            buf.extend(&[i]);
        }
        assert_eq!(buf.len(), 200);
        buf.truncate(3);
        assert_eq!(buf.as_slice(), [0, 1, 2]);
    }

    #[test]
    fn token_lookup_never_keeps_the_id() {
        let lookup: TokenLookup = serde_json::from_str(
            r#"{"id":"hvs.planted","accessor":"acc","ttl":30,"renewable":true,"policies":null,"expire_time":null}"#,
        )
        .expect("valid");
        assert_eq!(lookup.accessor, "acc");
        assert!(lookup.policies.is_empty());
        assert!(!format!("{lookup:?}").contains("planted"));
    }
}
