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
}
