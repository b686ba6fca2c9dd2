//! The byte strings a secret value is masked in: the value, its lines, and its encodings.
//!
//! Forms are produced here and stored sorted and deduplicated, with a form that is a prefix of
//! the next one in sorted order sharing that one's bytes (base64 without padding is a prefix of
//! base64 with it; a value's first line is a prefix of the value). Sorted order is what the
//! matcher builds on: the prefix relations between forms are visible in one pass.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::{Zeroize, Zeroizing};

/// Where a form's bytes are: `len` bytes from `start` in owned string `store`.
#[derive(Clone, Copy)]
struct Span {
    store: u32,
    start: usize,
    len: usize,
}

/// Distinct forms, sorted ascending, each at least the minimum length. Wiped when dropped.
#[derive(Default)]
pub(super) struct Forms {
    /// Owned bytes; one no form points into any more is emptied.
    store: Vec<Vec<u8>>,
    /// The forms, in sorted order.
    forms: Vec<Span>,
}

impl Forms {
    /// Sorts, drops duplicates, and shares prefixes (wiping what no form needs any more).
    fn new(mut c: Collected) -> Forms {
        let store = std::mem::take(&mut c.store);
        let mut forms = std::mem::take(&mut c.forms);
        let bytes = |s: &Span| &store[s.store as usize][s.start..s.start + s.len];
        forms.sort_unstable_by(|a, b| bytes(a).cmp(bytes(b)));
        forms.dedup_by(|later, earlier| bytes(later) == bytes(earlier));
        // Walking down, a form that is a prefix of its successor points into the successor's
        // bytes, which by then are those of the longest string of the chain.
        for i in (0..forms.len().saturating_sub(1)).rev() {
            if bytes(&forms[i + 1]).starts_with(bytes(&forms[i])) {
                forms[i] = Span {
                    len: forms[i].len,
                    ..forms[i + 1]
                };
            }
        }
        let mut used = vec![false; store.len()];
        for f in &forms {
            used[f.store as usize] = true;
        }
        let mut store = store;
        for (bytes, used) in store.iter_mut().zip(used) {
            if !used {
                bytes.zeroize();
                *bytes = Vec::new();
            }
        }
        Forms { store, forms }
    }

    /// The forms of exactly these strings (no derived forms), empty ones dropped.
    #[cfg(test)]
    pub(super) fn of(strings: Vec<Vec<u8>>) -> Forms {
        let mut c = Collected::default();
        for s in strings {
            c.add(s, 1);
        }
        c.into_forms()
    }

    pub(super) fn len(&self) -> usize {
        self.forms.len()
    }

    /// Form `i` (in sorted order).
    pub(super) fn get(&self, i: usize) -> &[u8] {
        let f = self.forms[i];
        &self.store[f.store as usize][f.start..f.start + f.len]
    }

    /// Heap bytes held.
    pub(super) fn memory_usage(&self) -> usize {
        self.store.iter().map(Vec::capacity).sum::<usize>()
            + self.store.capacity() * std::mem::size_of::<Vec<u8>>()
            + self.forms.capacity() * std::mem::size_of::<Span>()
    }
}

impl Drop for Forms {
    fn drop(&mut self) {
        for p in &mut self.store {
            p.zeroize();
        }
    }
}

/// Form bytes being collected, wiped when dropped. A form that is part of another one (a line
/// of the value, base64 without its padding) points into that one's bytes instead of copying.
#[derive(Default)]
pub(super) struct Collected {
    store: Vec<Vec<u8>>,
    forms: Vec<Span>,
}

impl Collected {
    /// Adds an owned form if it is long enough; returns where it is stored.
    fn add(&mut self, mut p: Vec<u8>, min: usize) -> Option<u32> {
        if p.len() < min {
            p.zeroize();
            return None;
        }
        // More than `u32::MAX` forms would need more memory than any host has.
        let store = u32::try_from(self.store.len()).ok()?;
        self.forms.push(Span {
            store,
            start: 0,
            len: p.len(),
        });
        self.store.push(p);
        Some(store)
    }

    /// Adds the form `len` bytes from `start` in stored form `store`, if it is long enough.
    fn add_part(&mut self, store: u32, start: usize, len: usize, min: usize) {
        if len >= min && len > 0 {
            self.forms.push(Span { store, start, len });
        }
    }

    pub(super) fn into_forms(self) -> Forms {
        Forms::new(self)
    }
}

impl Drop for Collected {
    fn drop(&mut self) {
        for p in &mut self.store {
            p.zeroize();
        }
    }
}

/// `-----BEGIN CERTIFICATE-----` and its `END` twin are public framing, not secret: masking
/// them on their own would hide which kind of PEM object a job printed and protect nothing.
fn is_pem_armor(line: &[u8]) -> bool {
    (line.starts_with(b"-----BEGIN ") || line.starts_with(b"-----END ")) && line.ends_with(b"-----")
}

/// Registers `value` and its derived forms; returns whether some non-empty line was too short.
pub(super) fn add_forms(patterns: &mut Collected, value: &[u8], min: usize) -> bool {
    let raw = patterns.add(value.to_vec(), min);

    let mut short_line = false;
    if let Some(raw) = raw
        && value.contains(&b'\n')
    {
        let mut start = 0;
        for line in value.split(|&b| b == b'\n') {
            let next = start + line.len() + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.is_empty() && !is_pem_armor(line) {
                if line.len() < min {
                    short_line = true;
                }
                patterns.add_part(raw, start, line.len(), min);
            }
            start = next;
        }
    }

    // Base64 of the value and of the value followed by `\n` share all but their last group:
    // encode once. Each comes padded and unpadded (a prefix), in the standard and the URL-safe
    // alphabet (the same bytes with `+/` as `-_`).
    let whole = value.len() / 3 * 3;
    let padded = Zeroizing::new(STANDARD.encode(value).into_bytes());
    let mut tail = Zeroizing::new(value[whole..].to_vec());
    tail.push(b'\n');
    let mut with_newline = Vec::with_capacity(padded.len() + 4);
    with_newline.extend_from_slice(&padded[..whole / 3 * 4]);
    with_newline.extend_from_slice(STANDARD.encode(&tail[..]).as_bytes());
    for standard in [padded.to_vec(), with_newline] {
        let unpadded = standard.len() - standard.iter().rev().take_while(|&&b| b == b'=').count();
        let url_safe = standard.iter().any(|&b| b == b'+' || b == b'/').then(|| {
            standard
                .iter()
                .map(|&b| match b {
                    b'+' => b'-',
                    b'/' => b'_',
                    b => b,
                })
                .collect::<Vec<u8>>()
        });
        for encoded in std::iter::once(standard).chain(url_safe) {
            if let Some(at) = patterns.add(encoded, min) {
                patterns.add_part(at, 0, unpadded, min);
            }
        }
    }

    for form in percent_forms(value) {
        patterns.add(form, min);
    }
    for form in json_forms(value) {
        patterns.add(form, min);
    }
    short_line
}

/// How one encoding writes each byte: `len[b]` bytes of `out[b]` (the byte itself when plain).
struct Table<const N: usize> {
    out: [[u8; N]; 256],
    len: [u8; 256],
    plain: [bool; 256],
}

impl<const N: usize> Table<N> {
    fn new(encode: impl Fn(u8) -> Option<([u8; N], u8)>) -> Self {
        let mut t = Table {
            out: [[0; N]; 256],
            len: [1; 256],
            plain: [true; 256],
        };
        for b in 0..=255u8 {
            let i = usize::from(b);
            t.out[i][0] = b;
            if let Some((out, len)) = encode(b) {
                (t.out[i], t.len[i], t.plain[i]) = (out, len, false);
            }
        }
        t
    }

    /// `value` encoded. Mostly plain bytes (a PEM, a password): copy runs of them whole. Mostly
    /// escaped ones (random binary): write `N` bytes for every byte and advance by its length,
    /// which has no branch to mispredict.
    fn encode(&self, value: &[u8], escaped: usize) -> Vec<u8> {
        let total: usize = value
            .iter()
            .map(|&b| usize::from(self.len[usize::from(b)]))
            .sum();
        if escaped * 16 < value.len() {
            let mut out = Vec::with_capacity(total);
            let mut i = 0;
            while i < value.len() {
                let run = value[i..]
                    .iter()
                    .position(|&b| !self.plain[usize::from(b)])
                    .unwrap_or(value.len() - i);
                out.extend_from_slice(&value[i..i + run]);
                i += run;
                if let Some(&b) = value.get(i) {
                    let b = usize::from(b);
                    out.extend_from_slice(&self.out[b][..usize::from(self.len[b])]);
                    i += 1;
                }
            }
            out
        } else {
            let mut out = vec![0u8; total + N];
            let mut w = 0;
            for &b in value {
                let b = usize::from(b);
                out[w..w + N].copy_from_slice(&self.out[b]);
                w += usize::from(self.len[b]);
            }
            out.truncate(w);
            out
        }
    }
}

/// The percent-encodings that differ from the value and from each other: RFC 3986 with upper-
/// and lower-case hex, form encoding (space as `+`, Python's `quote_plus`), and Python's
/// `urllib.parse.quote()` default (`/` left alone). All of them leave RFC 3986's unreserved
/// bytes alone.
fn percent_forms(value: &[u8]) -> Vec<Vec<u8>> {
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    const LOWER: &[u8; 16] = b"0123456789abcdef";
    let reserved =
        |b: u8| !matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~');
    let escaped = value.iter().filter(|&&b| reserved(b)).count();
    let has = |f: fn(u8) -> bool| value.iter().any(|&b| reserved(b) && f(b));
    // Upper-case RFC 3986, then each variant only if it differs from it. Keeping `/` differs
    // from the value itself only when something else is escaped (`a/b` stays `a/b`).
    let variants = [
        escaped > 0,
        has(|b| b >> 4 >= 10 || b & 0xf >= 10),
        has(|b| b == b' '),
        has(|b| b == b'/') && has(|b| b != b'/'),
    ];
    (0..4)
        .filter(|&v| variants[v])
        .map(|variant| {
            Table::<3>::new(|b| {
                let (hi, lo) = (usize::from(b >> 4), usize::from(b & 0xf));
                match (variant, b) {
                    _ if !reserved(b) => None,
                    (1, _) => Some(([b'%', LOWER[hi], LOWER[lo]], 3)),
                    (2, b' ') => Some(([b'+', 0, 0], 1)),
                    (3, b'/') => None,
                    _ => Some(([b'%', UPPER[hi], UPPER[lo]], 3)),
                }
            })
            .encode(value, escaped)
        })
        .collect()
}

/// The inside of a JSON string as `serde_json` writes it (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`,
/// `\f`, `\u00xx` for other control bytes), and the same with `/` as `\/` (PHP's `json_encode`,
/// some Java serialisers), each only if it differs from the value and from the other.
fn json_forms(value: &[u8]) -> Vec<Vec<u8>> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let special = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    let escaped = value.iter().filter(|&&b| special(b)).count();
    let slashes = value.iter().filter(|&&b| b == b'/').count();
    [(escaped > 0, false), (slashes > 0, true)]
        .into_iter()
        .filter(|&(wanted, _)| wanted)
        .map(|(_, slash)| {
            Table::<6>::new(|b| {
                let two = |c: u8| Some(([b'\\', c, 0, 0, 0, 0], 2));
                match b {
                    b'"' => two(b'"'),
                    b'\\' => two(b'\\'),
                    b'\n' => two(b'n'),
                    b'\r' => two(b'r'),
                    b'\t' => two(b't'),
                    0x08 => two(b'b'),
                    0x0c => two(b'f'),
                    b'/' if slash => two(b'/'),
                    0..0x20 => Some((
                        [
                            b'\\',
                            b'u',
                            b'0',
                            b'0',
                            HEX[usize::from(b >> 4)],
                            HEX[usize::from(b & 0xf)],
                        ],
                        6,
                    )),
                    _ => None,
                }
            })
            .encode(value, escaped + if slash { slashes } else { 0 })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_distinct_and_prefixes_share_storage() {
        let f = Forms::of(vec![
            b"abcdef".to_vec(),
            b"abc".to_vec(),
            b"".to_vec(),
            b"abd".to_vec(),
            b"abc".to_vec(),
            b"ab".to_vec(),
        ]);
        let all: Vec<&[u8]> = (0..f.len()).map(|i| f.get(i)).collect();
        assert_eq!(all, [&b"ab"[..], b"abc", b"abcdef", b"abd"]);
        // "ab" and "abc" live inside "abcdef"; the duplicate "abc" and the empty string are gone.
        assert_eq!(f.forms[0].store, f.forms[2].store);
        assert_eq!(f.forms[1].store, f.forms[2].store);
        assert_eq!(f.store.iter().filter(|s| !s.is_empty()).count(), 2);
    }

    /// Byte-at-a-time reference encoders, as simple as possible.
    fn reference_forms(value: &[u8]) -> std::collections::BTreeSet<Vec<u8>> {
        let mut out = std::collections::BTreeSet::from([value.to_vec()]);
        for (upper, plus, slash) in [
            (true, false, false),
            (false, false, false),
            (true, true, false),
            (true, false, true),
        ] {
            let mut o = Vec::new();
            for &b in value {
                match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        o.push(b)
                    }
                    b' ' if plus => o.push(b'+'),
                    b'/' if slash => o.push(b'/'),
                    _ if upper => o.extend_from_slice(format!("%{b:02X}").as_bytes()),
                    _ => o.extend_from_slice(format!("%{b:02x}").as_bytes()),
                }
            }
            out.insert(o);
        }
        for slash in [false, true] {
            let mut o = Vec::new();
            for &b in value {
                match b {
                    b'"' => o.extend_from_slice(b"\\\""),
                    b'\\' => o.extend_from_slice(b"\\\\"),
                    b'\n' => o.extend_from_slice(b"\\n"),
                    b'\r' => o.extend_from_slice(b"\\r"),
                    b'\t' => o.extend_from_slice(b"\\t"),
                    0x08 => o.extend_from_slice(b"\\b"),
                    0x0c => o.extend_from_slice(b"\\f"),
                    b'/' if slash => o.extend_from_slice(b"\\/"),
                    0..0x20 => o.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
                    _ => o.push(b),
                }
            }
            out.insert(o);
        }
        out
    }

    proptest::proptest! {
        /// Only forms that differ are produced, and together they are exactly the reference ones.
        #[test]
        fn percent_and_json_forms_match_the_reference(
            value in proptest::collection::vec(proptest::prop_oneof![
                1 => proptest::sample::select(b" /\"\\\n\r\t\x08\x0c\x01\x1fAz09-._~%+=\xc3\xa9".to_vec()),
                1 => proptest::num::u8::ANY,
                // Mostly plain bytes, so that runs are copied whole.
                8 => proptest::sample::select(b"abcXYZ0189-._~".to_vec()),
            ], 0..300),
        ) {
            let mut got = std::collections::BTreeSet::from([value.clone()]);
            // Each family produces only forms that differ from the value and from each other.
            for family in [percent_forms(&value), json_forms(&value)] {
                let distinct: std::collections::BTreeSet<&Vec<u8>> = family.iter().collect();
                proptest::prop_assert_eq!(distinct.len(), family.len());
                proptest::prop_assert!(!distinct.contains(&value));
                got.extend(family);
            }
            proptest::prop_assert_eq!(got, reference_forms(&value));
            // Both ways of encoding give the same bytes.
            let t = Table::<6>::new(|b| (b % 3 == 0).then_some(([b'%', b, b, b, b, b], b % 7)));
            proptest::prop_assert_eq!(t.encode(&value, 0), t.encode(&value, value.len()));
        }
    }
}
