//! The byte strings a secret value is masked in: the value, its lines, and its encodings.
//!
//! Forms are produced here and stored sorted and deduplicated, with a form that is a prefix of
//! the next one in sorted order sharing that one's bytes (base64 without padding is a prefix of
//! base64 with it; a value's first line is a prefix of the value). Sorted order is what the
//! matcher builds on: the prefix relations between forms are visible in one pass.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use zeroize::{Zeroize, Zeroizing};

/// Distinct forms, sorted ascending, each at least the minimum length. Wiped when dropped.
#[derive(Default)]
pub(super) struct Forms {
    /// Owned bytes; an entry emptied by prefix sharing stays as an empty `Vec`.
    store: Vec<Vec<u8>>,
    /// `(store index, length)` of each form, in sorted order.
    forms: Vec<(u32, usize)>,
}

impl Forms {
    /// Sorts, drops empty strings and duplicates, and shares prefixes (wiping what it drops).
    pub(super) fn new(mut raw: Vec<Vec<u8>>) -> Forms {
        raw.retain(|p| !p.is_empty());
        raw.sort_unstable();
        raw.dedup_by(|later, earlier| {
            let dup = later == earlier;
            if dup {
                later.zeroize();
            }
            dup
        });
        let n = raw.len();
        let mut forms = vec![(0u32, 0usize); n];
        // Walking down, a form that is a prefix of its successor points at the successor's
        // storage, which by then is the longest string of the chain.
        for i in (0..n).rev() {
            let store = if i + 1 < n && raw[i + 1].starts_with(&raw[i]) {
                forms[i + 1].0
            } else {
                index(i)
            };
            forms[i] = (store, raw[i].len());
        }
        for (i, bytes) in raw.iter_mut().enumerate() {
            if forms[i].0 != index(i) {
                bytes.zeroize();
                *bytes = Vec::new();
            }
        }
        Forms { store: raw, forms }
    }

    pub(super) fn len(&self) -> usize {
        self.forms.len()
    }

    /// Form `i` (in sorted order).
    pub(super) fn get(&self, i: usize) -> &[u8] {
        let (store, len) = self.forms[i];
        &self.store[store as usize][..len]
    }

    /// Heap bytes held.
    pub(super) fn memory_usage(&self) -> usize {
        self.store.iter().map(Vec::capacity).sum::<usize>()
            + self.store.capacity() * std::mem::size_of::<Vec<u8>>()
            + self.forms.capacity() * std::mem::size_of::<(u32, usize)>()
    }
}

impl Drop for Forms {
    fn drop(&mut self) {
        for p in &mut self.store {
            p.zeroize();
        }
    }
}

/// A form index as stored; more than `u32::MAX` forms would need more memory than any host has.
fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Form bytes being collected, wiped when dropped.
#[derive(Default)]
pub(super) struct Collected(pub(super) Vec<Vec<u8>>);

impl Collected {
    fn add(&mut self, mut p: Vec<u8>, min: usize) {
        if p.len() >= min {
            self.0.push(p);
        } else {
            p.zeroize();
        }
    }

    pub(super) fn into_forms(mut self) -> Forms {
        Forms::new(std::mem::take(&mut self.0))
    }
}

impl Drop for Collected {
    fn drop(&mut self) {
        for p in &mut self.0 {
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
    patterns.add(value.to_vec(), min);

    let mut short_line = false;
    if value.contains(&b'\n') {
        for line in value.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() || is_pem_armor(line) {
                continue;
            }
            if line.len() < min {
                short_line = true;
            }
            patterns.add(line.to_vec(), min);
        }
    }

    let mut with_newline = Zeroizing::new(Vec::with_capacity(value.len() + 1));
    with_newline.extend_from_slice(value);
    with_newline.push(b'\n');
    for input in [value, with_newline.as_slice()] {
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            patterns.add(engine.encode(input).into_bytes(), min);
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

/// The four percent-encodings, in one pass: RFC 3986 with upper- and lower-case hex, form
/// encoding (space as `+`, Python's `quote_plus`), and Python's `urllib.parse.quote()` default
/// (`/` left alone). All of them leave RFC 3986's unreserved bytes alone.
fn percent_forms(value: &[u8]) -> [Vec<u8>; 4] {
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    const LOWER: &[u8; 16] = b"0123456789abcdef";
    let unreserved =
        |b: u8| matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~');
    let escaped = value.iter().filter(|&&b| !unreserved(b)).count();
    let mut out: [Vec<u8>; 4] =
        std::array::from_fn(|_| Vec::with_capacity(value.len() + 2 * escaped));
    let [upper, lower, form, quote] = &mut out;
    for &b in value {
        if unreserved(b) {
            for o in [&mut *upper, &mut *lower, &mut *form, &mut *quote] {
                o.push(b);
            }
            continue;
        }
        let (hi, lo) = (usize::from(b >> 4), usize::from(b & 0xf));
        let up = [b'%', UPPER[hi], UPPER[lo]];
        upper.extend_from_slice(&up);
        lower.extend_from_slice(&[b'%', LOWER[hi], LOWER[lo]]);
        match b {
            b' ' => form.push(b'+'),
            _ => form.extend_from_slice(&up),
        }
        match b {
            b'/' => quote.push(b'/'),
            _ => quote.extend_from_slice(&up),
        }
    }
    out
}

/// The inside of a JSON string as `serde_json` writes it, and the same with `/` as `\/` (PHP's
/// `json_encode`, some Java serialisers), in one pass.
fn json_forms(value: &[u8]) -> [Vec<u8>; 2] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut plain = Vec::with_capacity(value.len() + value.len() / 8);
    let mut slashed = Vec::with_capacity(value.len() + value.len() / 8);
    for &b in value {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'/' => {
                plain.push(b'/');
                slashed.extend_from_slice(b"\\/");
                continue;
            }
            0x00..=0x1f => {
                let u = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ];
                plain.extend_from_slice(&u);
                slashed.extend_from_slice(&u);
                continue;
            }
            _ => {
                plain.push(b);
                slashed.push(b);
                continue;
            }
        };
        plain.extend_from_slice(esc);
        slashed.extend_from_slice(esc);
    }
    [plain, slashed]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_distinct_and_prefixes_share_storage() {
        let f = Forms::new(vec![
            b"abcdef".to_vec(),
            b"abc".to_vec(),
            b"".to_vec(),
            b"abd".to_vec(),
            b"abc".to_vec(),
            b"ab".to_vec(),
        ]);
        let all: Vec<&[u8]> = (0..f.len()).map(|i| f.get(i)).collect();
        assert_eq!(all, [&b"ab"[..], b"abc", b"abcdef", b"abd"]);
        // "ab" and "abc" live inside "abcdef".
        assert_eq!(f.forms[0].0, f.forms[2].0);
        assert_eq!(f.forms[1].0, f.forms[2].0);
        assert!(f.store[0].is_empty() && f.store[1].is_empty());
    }
}
