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

    for style in [
        Percent {
            upper: true,
            space_plus: false,
            keep_slash: false,
        },
        Percent {
            upper: false,
            space_plus: false,
            keep_slash: false,
        },
        Percent {
            upper: true,
            space_plus: true,
            keep_slash: false,
        },
        Percent {
            upper: true,
            space_plus: false,
            keep_slash: true,
        },
    ] {
        patterns.add(style.encode(value), min);
    }

    patterns.add(json_escape(value, false), min);
    patterns.add(json_escape(value, true), min);
    short_line
}

/// One flavour of percent-encoding; all of them leave RFC 3986's unreserved bytes alone.
#[derive(Clone, Copy)]
struct Percent {
    upper: bool,
    /// Form encoding (`application/x-www-form-urlencoded`, Python's `quote_plus`).
    space_plus: bool,
    /// Python's `urllib.parse.quote()` default `safe='/'`.
    keep_slash: bool,
}

impl Percent {
    fn encode(self, value: &[u8]) -> Vec<u8> {
        let digits: &[u8; 16] = if self.upper {
            b"0123456789ABCDEF"
        } else {
            b"0123456789abcdef"
        };
        let mut out = Vec::with_capacity(value.len() * 3);
        for &b in value {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b),
                b' ' if self.space_plus => out.push(b'+'),
                b'/' if self.keep_slash => out.push(b'/'),
                _ => out.extend_from_slice(&[
                    b'%',
                    digits[usize::from(b >> 4)],
                    digits[usize::from(b & 0xf)],
                ]),
            }
        }
        out
    }
}

/// The inside of a JSON string as `serde_json` writes it, optionally with `/` as `\/` (PHP's
/// `json_encode`, some Java serialisers).
fn json_escape(value: &[u8], escape_slash: bool) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(value.len() + value.len() / 4);
    for &b in value {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'/' if escape_slash => out.extend_from_slice(b"\\/"),
            0x00..=0x1f => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
            _ => out.push(b),
        }
    }
    out
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
