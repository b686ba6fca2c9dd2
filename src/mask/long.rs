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
    reduce128(u128::from(a) * u128::from(b))
}

fn reduce128(x: u128) -> u64 {
    let y = (x as u64 & P) as u128 + (x >> 61);
    reduce((y as u64 & P) + (y >> 61) as u64)
}

fn reduce(x: u64) -> u64 {
    if x >= P { x - P } else { x }
}

/// Hash of the bytes between two prefix hashes `h_from` and `h_to`, `pow` = base^(their distance).
fn window(h_from: u64, h_to: u64, pow: u64) -> u64 {
    reduce(h_to + P - mul(h_from, pow))
}

/// A hash base and its first powers.
pub(super) struct Hasher {
    pw: [u64; 5],
}

impl Hasher {
    pub(super) fn new(base: u64) -> Hasher {
        let mut pw = [1; 5];
        for k in 1..5 {
            pw[k] = mul(pw[k - 1], base % P);
        }
        Hasher { pw }
    }

    /// The prefix hash `h` extended by `bytes` (`h * B^n + bytes as base-B digits`). Four bytes
    /// per step: the multiplications by constant powers do not wait for each other, which makes
    /// this about four times faster than a byte-at-a-time Horner loop.
    fn extend(&self, mut h: u64, bytes: &[u8]) -> u64 {
        let [_, b1, b2, b3, b4] = self.pw.map(u128::from);
        let mut blocks = bytes.chunks_exact(4);
        for w in &mut blocks {
            let [x0, x1, x2, x3] = [w[0], w[1], w[2], w[3]].map(u128::from);
            h = reduce128(u128::from(h) * b4 + x0 * b3 + x1 * b2 + x2 * b1 + x3);
        }
        for &b in blocks.remainder() {
            h = reduce(mul(h, self.pw[1]) + u64::from(b));
        }
        h
    }

    fn pow(&self, mut e: usize) -> u64 {
        let (mut b, mut r) = (self.pw[1], 1);
        while e > 0 {
            if e & 1 == 1 {
                r = mul(r, b);
            }
            b = mul(b, b);
            e >>= 1;
        }
        r
    }
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
    /// For a periodic anchor: how long the form keeps the anchor's period.
    periodic: OnceLock<usize>,
}

struct FormHash {
    full: u64,
    pow_len: u64,
    /// Prefix hash at every multiple of [`PATTERN_STRIDE`] below the length.
    checkpoints: Vec<u64>,
}

impl FormHash {
    fn new(bytes: &[u8], hasher: &Hasher) -> FormHash {
        let mut checkpoints = Vec::with_capacity(bytes.len() / PATTERN_STRIDE + 1);
        let mut h = 0;
        for chunk in bytes.chunks(PATTERN_STRIDE) {
            checkpoints.push(h);
            h = hasher.extend(h, chunk);
        }
        FormHash {
            full: h,
            pow_len: hasher.pow(bytes.len()),
            checkpoints,
        }
    }

    /// Hash of the first `len` bytes, `len` below the form's length.
    fn prefix(&self, bytes: &[u8], len: usize, hasher: &Hasher) -> u64 {
        let k = len / PATTERN_STRIDE;
        hasher.extend(self.checkpoints[k], &bytes[k * PATTERN_STRIDE..len])
    }
}

/// The long forms sharing one anchor, longest first.
pub(super) struct Group {
    start: u32,
    end: u32,
    /// The anchor's smallest period if it is at most half the anchor, else 0.
    period: u32,
}

/// Every long form, grouped by anchor.
pub(super) struct LongForms {
    forms: Vec<LongForm>,
    groups: Vec<Group>,
    hasher: Hasher,
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
            hasher: Hasher::new(base),
        }
    }

    /// Adds a group from its anchor and `(form index, length)` pairs; returns its number.
    pub(super) fn add_group(&mut self, anchor: &[u8], mut members: Vec<(u32, usize)>) -> u32 {
        members.sort_unstable_by_key(|&(_, len)| std::cmp::Reverse(len));
        let start = self.forms.len();
        self.forms
            .extend(members.into_iter().map(|(form, len)| LongForm {
                form,
                len,
                hash: OnceLock::new(),
                periodic: OnceLock::new(),
            }));
        let period = smallest_period(anchor);
        self.groups.push(Group {
            start: super::elements::index(start),
            end: super::elements::index(self.forms.len()),
            period: if 2 * period <= anchor.len() {
                super::elements::index(period)
            } else {
                0
            },
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
        let hs = &self.hasher;
        let end = buf.len();
        let g = &self.groups[group as usize];
        let at = |x: usize| buf_abs + x as u64;
        let h_i = text.at(hs, buf, buf_abs, at(i));
        let mut rest: Option<u64> = None;
        for f in &self.forms[g.start as usize..g.end as usize] {
            let bytes = &forms.get(f.form as usize)[..f.len];
            let fh = f.hash.get_or_init(|| FormHash::new(bytes, hs));
            if i + f.len <= end {
                let h = window(h_i, text.at(hs, buf, buf_abs, at(i + f.len)), fh.pow_len);
                if h == fh.full {
                    return Resolve::Match(f.len);
                }
            } else if !eof {
                let len = end - i;
                let h = *rest.get_or_insert_with(|| {
                    window(h_i, text.at(hs, buf, buf_abs, at(end)), hs.pow(len))
                });
                if h == fh.prefix(bytes, len, hs) {
                    return Resolve::Undecided;
                }
            }
        }
        Resolve::NoMatch
    }

    /// The anchor's period if it is short (see [`Group::period`]), else 0.
    pub(super) fn period(&self, group: u32) -> usize {
        self.groups[group as usize].period as usize
    }

    /// After none of `group`'s forms was at `i`, where the first of them could be, given that
    /// `buf[i..e]` keeps the anchor's period `q` (and `buf[e]` breaks it, unless `e` is the end).
    ///
    /// In that stretch the anchor recurs every `q` bytes (never in between: that would give it
    /// a smaller period). A form keeping the period for `r_f` bytes matches the stretch from
    /// `i + d` only up to `r_f` bytes, so it can only be there where its own break lines up with
    /// the stretch's (`d = e - i - r_f`), or, when the stretch runs to the end of the buffer,
    /// still be coming from the first `d` at which the rest fits into `r_f`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn next_candidate(
        &self,
        forms: &Forms,
        group: u32,
        q: usize,
        buf: &[u8],
        i: usize,
        e: usize,
        eof: bool,
    ) -> Option<usize> {
        let g = &self.groups[group as usize];
        let r = e - i;
        let mut best: Option<usize> = None;
        for f in &self.forms[g.start as usize..g.end as usize] {
            let bytes = &forms.get(f.form as usize)[..f.len];
            let rf = *f
                .periodic
                .get_or_init(|| q + common_prefix(&bytes[q..], bytes));
            let d = if e == buf.len() {
                if eof {
                    continue;
                }
                r.saturating_sub(rf).div_ceil(q).max(1) * q
            } else {
                if rf >= f.len || r <= rf || !(r - rf).is_multiple_of(q) {
                    continue;
                }
                r - rf
            };
            best = Some(best.map_or(i + d, |b| b.min(i + d)));
        }
        best
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

/// Length of the common prefix of `a` and `b`, eight bytes at a time.
pub(super) fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().unwrap_or_default())
            ^ u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        if x != 0 {
            return i + (x.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + a[i..n]
        .iter()
        .zip(&b[i..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// The smallest period of `s` (non-empty), from its longest proper border (KMP).
fn smallest_period(s: &[u8]) -> usize {
    let mut border = vec![0usize; s.len()];
    let mut k = 0;
    for i in 1..s.len() {
        while k > 0 && s[i] != s[k] {
            k = border[k - 1];
        }
        if s[i] == s[k] {
            k += 1;
        }
        border[i] = k;
    }
    s.len() - border.last().copied().unwrap_or(0)
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
    fn at(&mut self, hs: &Hasher, buf: &[u8], buf_abs: u64, x: u64) -> u64 {
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
            let h = hs.extend(self.checkpoints[c], &buf[from..from + TEXT_STRIDE as usize]);
            self.checkpoints.push(h);
        }
        let from = rel(self.origin + k as u64 * TEXT_STRIDE);
        hs.extend(self.checkpoints[k], &buf[from..rel(x)])
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
        bytes
            .iter()
            .fold(0, |h, &b| reduce(mul(h, base) + u64::from(b)))
    }

    #[test]
    fn windows_and_prefixes_agree_with_direct_hashing() {
        let base = random_base();
        let hs = Hasher::new(base);
        let text: Vec<u8> = (0..500u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut th = TextHash::default();
        for (i, j) in [(3, 3), (3, 4), (3, 200), (17, 499), (100, 500)] {
            let hi = th.at(&hs, &text, 0, i as u64);
            let hj = th.at(&hs, &text, 0, j as u64);
            assert_eq!(
                window(hi, hj, hs.pow(j - i)),
                naive(&text[i..j], base),
                "{i}..{j}"
            );
        }
        let f = &text[10..300];
        let fh = FormHash::new(f, &hs);
        assert_eq!(fh.full, naive(f, base));
        for len in [0, 1, 2, 3, 4, 5, 63, 64, 65, 128, 289] {
            assert_eq!(fh.prefix(f, len, &hs), naive(&f[..len], base), "{len}");
        }
        // Worst-case digits: every reduction path.
        let max = vec![0xffu8; 77];
        assert_eq!(hs.extend(P - 1, &max), {
            max.iter()
                .fold(P - 1, |h, &b| reduce(mul(h, base) + u64::from(b)))
        });
    }

    #[test]
    fn periods_and_common_prefixes() {
        assert_eq!(smallest_period(b"xxxx"), 1);
        assert_eq!(smallest_period(b"abcabcab"), 3);
        assert_eq!(smallest_period(b"abcd"), 4);
        assert_eq!(smallest_period(b"a"), 1);
        for n in 0..40 {
            let a: Vec<u8> = (0..40).collect();
            let mut b = a.clone();
            if n < 40 {
                b[n] ^= 1;
            }
            assert_eq!(common_prefix(&a, &b), n);
            assert_eq!(common_prefix(&a[..n], &a), n);
        }
    }

    #[test]
    fn checkpoints_survive_dropping_the_front_of_the_buffer() {
        let hs = Hasher::new(random_base());
        let base = hs.pw[1];
        let text: Vec<u8> = (0..300u32).map(|i| (i * 13 % 256) as u8).collect();
        let mut th = TextHash::default();
        th.at(&hs, &text, 0, 50);
        th.at(&hs, &text, 0, 290);
        let from = th.retain_from(0, 123);
        assert!(from <= 123 && 123 - from < TEXT_STRIDE as usize);
        let rest = &text[from..];
        let (hi, hj) = (
            th.at(&hs, rest, from as u64, 130),
            th.at(&hs, rest, from as u64, 280),
        );
        assert_eq!(window(hi, hj, hs.pow(150)), naive(&text[130..280], base));
    }
}
