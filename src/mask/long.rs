//! Forms longer than the anchor length: found by their anchor (their first bytes, an element),
//! confirmed by comparing polynomial hashes.
//!
//! Why hashes and not a byte comparison: a comparison costs the length of the form each time an
//! anchor is found, and a periodic value (`xxxx…`, or any value that repeats its first bytes)
//! has its anchor everywhere in a long run of output, which made confirming quadratic. With the
//! prefix hashes of the output (computed once per byte, and only near anchors) and of the form
//! (computed once, the first time its anchor is found), "is the form at `i`" and "is the output
//! from `i` to the end a prefix of the form" each take a handful of multiplications.
//!
//! Hashes are mod 2^61 − 1 with a random base. Equal bytes always hash equal, so a collision
//! (probability about length / 2^61 per comparison) can only make the masker mask or hold back
//! bytes it need not; it can never let a form through.

use std::sync::OnceLock;

use super::forms::Forms;

const P: u64 = (1 << 61) - 1;
/// Pattern-side checkpoint stride: one `u64` per 64 bytes of a form, once its anchor was seen.
const PATTERN_STRIDE: usize = 64;
/// Output-side checkpoint stride: one `u64` per 8 bytes of output near an anchor.
const TEXT_STRIDE: u64 = 8;

fn mul(a: u64, b: u64) -> u64 {
    let x = u128::from(a) * u128::from(b);
    reduce((x as u64 & P) + (x >> 61) as u64)
}

fn reduce(x: u64) -> u64 {
    if x >= P { x - P } else { x }
}

fn step(h: u64, b: u8, base: u64) -> u64 {
    reduce(mul(h, base) + u64::from(b))
}

fn pow(mut b: u64, mut e: usize) -> u64 {
    let mut r = 1;
    while e > 0 {
        if e & 1 == 1 {
            r = mul(r, b);
        }
        b = mul(b, b);
        e >>= 1;
    }
    r
}

/// Hash of the bytes between two prefix hashes `h_from` and `h_to`, `pow` = base^(their distance).
fn window(h_from: u64, h_to: u64, pow: u64) -> u64 {
    reduce(h_to + P - mul(h_from, pow))
}

/// A random hash base in `[2^32, P)`.
pub(super) fn random_base() -> u64 {
    let mut bytes = [0u8; 8];
    crate::random::fill_random(&mut bytes);
    u64::from_le_bytes(bytes) % (P - (1 << 32)) + (1 << 32)
}

pub(super) struct LongForm {
    form: u32,
    len: usize,
    hash: OnceLock<FormHash>,
}

struct FormHash {
    full: u64,
    pow_len: u64,
    /// Prefix hash at every multiple of [`PATTERN_STRIDE`] below the length.
    checkpoints: Vec<u64>,
}

impl FormHash {
    fn new(bytes: &[u8], base: u64) -> FormHash {
        let mut checkpoints = Vec::with_capacity(bytes.len() / PATTERN_STRIDE + 1);
        let mut h = 0;
        for chunk in bytes.chunks(PATTERN_STRIDE) {
            checkpoints.push(h);
            for &b in chunk {
                h = step(h, b, base);
            }
        }
        FormHash {
            full: h,
            pow_len: pow(base, bytes.len()),
            checkpoints,
        }
    }

    /// Hash of the first `len` bytes, `len` below the form's length.
    fn prefix(&self, bytes: &[u8], len: usize, base: u64) -> u64 {
        let k = len / PATTERN_STRIDE;
        bytes[k * PATTERN_STRIDE..len]
            .iter()
            .fold(self.checkpoints[k], |h, &b| step(h, b, base))
    }
}

/// The long forms sharing one anchor, longest first.
pub(super) struct Group {
    start: u32,
    end: u32,
}

/// Every long form, grouped by anchor.
pub(super) struct LongForms {
    forms: Vec<LongForm>,
    groups: Vec<Group>,
    base: u64,
}

/// What the long forms of an anchor found at `i` say.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Resolve {
    /// The longest of them at `i` is `n` bytes long.
    Match(usize),
    /// The output from `i` on could still become one of them: hold it back.
    Undecided,
    NoMatch,
}

impl LongForms {
    pub(super) fn new(base: u64) -> LongForms {
        LongForms {
            forms: Vec::new(),
            groups: Vec::new(),
            base,
        }
    }

    /// Adds a group from `(form index, length)` pairs; returns its number.
    pub(super) fn add_group(&mut self, mut members: Vec<(u32, usize)>) -> u32 {
        members.sort_unstable_by_key(|&(_, len)| std::cmp::Reverse(len));
        let start = self.forms.len();
        self.forms
            .extend(members.into_iter().map(|(form, len)| LongForm {
                form,
                len,
                hash: OnceLock::new(),
            }));
        self.groups.push(Group {
            start: super::elements::index(start),
            end: super::elements::index(self.forms.len()),
        });
        super::elements::index(self.groups.len() - 1)
    }

    /// Decides the long forms of `group` at `buf[i..]`, whose anchor is there; `buf` starts at
    /// stream offset `buf_abs` and ends at `end` (the end of the stream if `eof`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn resolve(
        &self,
        forms: &Forms,
        group: u32,
        text: &mut TextHash,
        buf: &[u8],
        buf_abs: u64,
        i: usize,
        eof: bool,
    ) -> Resolve {
        let base = self.base;
        let end = buf.len();
        let g = &self.groups[group as usize];
        let at = |x: usize| buf_abs + x as u64;
        let h_i = text.at(base, buf, buf_abs, at(i));
        let mut rest: Option<u64> = None;
        for f in &self.forms[g.start as usize..g.end as usize] {
            let bytes = &forms.get(f.form as usize)[..f.len];
            let fh = f.hash.get_or_init(|| FormHash::new(bytes, base));
            if i + f.len <= end {
                let h = window(h_i, text.at(base, buf, buf_abs, at(i + f.len)), fh.pow_len);
                if h == fh.full {
                    return Resolve::Match(f.len);
                }
            } else if !eof {
                let len = end - i;
                let h = *rest.get_or_insert_with(|| {
                    window(h_i, text.at(base, buf, buf_abs, at(end)), pow(base, len))
                });
                if h == fh.prefix(bytes, len, base) {
                    return Resolve::Undecided;
                }
            }
        }
        Resolve::NoMatch
    }

    pub(super) fn memory_usage(&self) -> usize {
        self.forms.capacity() * std::mem::size_of::<LongForm>()
            + self.groups.capacity() * std::mem::size_of::<Group>()
            + self
                .forms
                .iter()
                .filter_map(|f| f.hash.get())
                .map(|h| h.checkpoints.capacity() * 8)
                .sum::<usize>()
    }
}

/// Prefix hashes of one output stream, from the first anchor that needed them on: a checkpoint
/// every [`TEXT_STRIDE`] bytes, filled in as far as a question reaches.
#[derive(Default)]
pub(super) struct TextHash {
    /// Stream offset of the first checkpoint (hash 0); meaningless while `checkpoints` is empty.
    origin: u64,
    checkpoints: Vec<u64>,
}

impl TextHash {
    /// The prefix hash at stream offset `x`, hashing from `origin`; `buf` holds the stream
    /// from `buf_abs` to at least `x`.
    fn at(&mut self, base: u64, buf: &[u8], buf_abs: u64, x: u64) -> u64 {
        if self.checkpoints.is_empty() || x < self.origin || self.origin < buf_abs {
            self.origin = x;
            self.checkpoints.clear();
            self.checkpoints.push(0);
        }
        let rel = |abs: u64| (abs - buf_abs) as usize;
        let k = ((x - self.origin) / TEXT_STRIDE) as usize;
        while self.checkpoints.len() <= k {
            let c = self.checkpoints.len() - 1;
            let from = rel(self.origin + c as u64 * TEXT_STRIDE);
            let h = buf[from..from + TEXT_STRIDE as usize]
                .iter()
                .fold(self.checkpoints[c], |h, &b| step(h, b, base));
            self.checkpoints.push(h);
        }
        let from = rel(self.origin + k as u64 * TEXT_STRIDE);
        buf[from..rel(x)]
            .iter()
            .fold(self.checkpoints[k], |h, &b| step(h, b, base))
    }

    /// Where the caller must keep the stream from when it keeps `keep` on (both relative to
    /// `buf_abs`), so that the checkpoints stay usable: the checkpoint just before `keep` when
    /// there is one close by, else `keep` itself (and the checkpoints are dropped).
    pub(super) fn retain_from(&mut self, buf_abs: u64, keep: usize) -> usize {
        let keep_abs = buf_abs + keep as u64;
        if self.checkpoints.is_empty() || self.origin > keep_abs {
            return keep;
        }
        let k = ((keep_abs - self.origin) / TEXT_STRIDE) as usize;
        if k >= self.checkpoints.len() {
            self.clear();
            return keep;
        }
        self.checkpoints.drain(..k);
        self.origin += k as u64 * TEXT_STRIDE;
        (self.origin - buf_abs) as usize
    }

    pub(super) fn clear(&mut self) {
        self.checkpoints.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(bytes: &[u8], base: u64) -> u64 {
        bytes.iter().fold(0, |h, &b| step(h, b, base))
    }

    #[test]
    fn windows_and_prefixes_agree_with_direct_hashing() {
        let base = random_base();
        let text: Vec<u8> = (0..500u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut th = TextHash::default();
        for (i, j) in [(3, 3), (3, 4), (3, 200), (17, 499), (100, 500)] {
            let hi = th.at(base, &text, 0, i as u64);
            let hj = th.at(base, &text, 0, j as u64);
            assert_eq!(
                window(hi, hj, pow(base, j - i)),
                naive(&text[i..j], base),
                "{i}..{j}"
            );
        }
        let f = &text[10..300];
        let fh = FormHash::new(f, base);
        assert_eq!(fh.full, naive(f, base));
        for len in [0, 1, 63, 64, 65, 128, 289] {
            assert_eq!(fh.prefix(f, len, base), naive(&f[..len], base), "{len}");
        }
    }

    #[test]
    fn checkpoints_survive_dropping_the_front_of_the_buffer() {
        let base = random_base();
        let text: Vec<u8> = (0..300u32).map(|i| (i * 13 % 256) as u8).collect();
        let mut th = TextHash::default();
        th.at(base, &text, 0, 50);
        th.at(base, &text, 0, 290);
        let from = th.retain_from(0, 123);
        assert!(from <= 123 && 123 - from < TEXT_STRIDE as usize);
        let rest = &text[from..];
        let (hi, hj) = (
            th.at(base, rest, from as u64, 130),
            th.at(base, rest, from as u64, 280),
        );
        assert_eq!(window(hi, hj, pow(base, 150)), naive(&text[130..280], base));
    }
}
