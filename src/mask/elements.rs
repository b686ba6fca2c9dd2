//! The searched strings ("elements"): every form of at most the anchor length, and the first
//! anchor-length bytes of every longer form, sorted, with the prefix relations between them.
//!
//! Why sorted strings and not a trie: an automaton costs tens of bytes and about a microsecond of
//! build time per pattern byte (aho-corasick measured 58 bytes and 0.6–1.8 µs per byte for half a
//! million bytes of patterns), which is what made large secrets expensive. A sorted array costs
//! nothing beyond the forms themselves, answers the two questions the masker asks with a binary
//! search, and is built in one pass. Finding where to ask is the job of [`Scanner`].

use super::forms::Forms;

/// No element.
pub(super) const NONE: u32 = u32::MAX;

/// What finding an element means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// The element is a whole form.
    Short,
    /// The element is the first anchor-length bytes of the longer forms of `group`; `fallback` is
    /// the length of the longest whole form that is a prefix of it (the element itself when it
    /// is also a whole form), 0 if none.
    Anchor { group: u32, fallback: u32 },
}

pub(super) struct Elements {
    /// `(form, length)`: element `i` is the first `length` bytes of form `form`.
    refs: Vec<(u32, u32)>,
    pub(super) kind: Vec<Kind>,
    /// The longest other element that is a prefix of element `i`, or [`NONE`].
    parent: Vec<u32>,
    /// Whether a longer element starts with element `i`.
    extended: Vec<bool>,
    /// First bytes and first byte pairs of elements: most bytes of ordinary text start neither,
    /// which settles the hold-back question without a search.
    first: [bool; 256],
    pairs: Box<[u64; 1024]>,
    pub(super) min_len: usize,
    pub(super) max_len: usize,
}

impl Elements {
    /// `refs` and `kind` in sorted order of the element bytes, which must be distinct.
    pub(super) fn new(forms: &Forms, refs: Vec<(u32, u32)>, kind: Vec<Kind>) -> Elements {
        let mut e = Elements {
            parent: vec![NONE; refs.len()],
            extended: vec![false; refs.len()],
            refs,
            kind,
            first: [false; 256],
            pairs: Box::new([0; 1024]),
            min_len: usize::MAX,
            max_len: 0,
        };
        // In sorted order, every element that is a prefix of x comes before x, and everything
        // between such a prefix and x starts with it: so a stack of the chain of prefixes of the
        // latest element holds, after popping what x does not start with, x's longest prefix.
        let mut stack: Vec<usize> = Vec::new();
        for x in 0..e.refs.len() {
            let bytes = e.bytes(forms, x);
            while let Some(&top) = stack.last() {
                if bytes.starts_with(e.bytes(forms, top)) {
                    break;
                }
                stack.pop();
            }
            e.parent[x] = stack.last().map_or(NONE, |&p| index(p));
            stack.push(x);
            if x > 0 {
                let prev = x - 1;
                e.extended[prev] = bytes.starts_with(e.bytes(forms, prev));
            }
            e.min_len = e.min_len.min(bytes.len());
            e.max_len = e.max_len.max(bytes.len());
            e.first[usize::from(bytes[0])] = true;
            if let [a, b, ..] = bytes {
                let pair = usize::from(*a) << 8 | usize::from(*b);
                e.pairs[pair / 64] |= 1 << (pair % 64);
            }
        }
        e
    }

    pub(super) fn len(&self) -> usize {
        self.refs.len()
    }

    pub(super) fn bytes<'f>(&self, forms: &'f Forms, i: usize) -> &'f [u8] {
        let (form, len) = self.refs[i];
        &forms.get(form as usize)[..len as usize]
    }

    pub(super) fn parent(&self, i: usize) -> Option<usize> {
        (self.parent[i] != NONE).then_some(self.parent[i] as usize)
    }

    /// The longest element that is a prefix of `text`, as `(element, length)`.
    pub(super) fn longest_at(&self, forms: &Forms, text: &[u8]) -> Option<(usize, usize)> {
        let text = &text[..text.len().min(self.max_len)];
        // The longest prefix of `text` is a prefix of the greatest element <= `text` (everything
        // between a prefix of `text` and `text` starts with that prefix), so it is on that
        // element's parent chain.
        let n = self.upper_bound(forms, text);
        let mut y = n.checked_sub(1)?;
        loop {
            let e = self.bytes(forms, y);
            if text.starts_with(e) {
                return Some((y, e.len()));
            }
            y = self.parent(y)?;
        }
    }

    /// Number of elements `<= text`.
    fn upper_bound(&self, forms: &Forms, text: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.refs.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.bytes(forms, mid) <= text {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Whether `w` (non-empty) is a proper prefix of some element.
    pub(super) fn is_proper_prefix(&self, forms: &Forms, w: &[u8]) -> bool {
        if !self.first[usize::from(w[0])] {
            return false;
        }
        if let [a, b, ..] = w {
            let pair = usize::from(*a) << 8 | usize::from(*b);
            if self.pairs[pair / 64] & (1 << (pair % 64)) == 0 {
                return false;
            }
        }
        // The first element >= w starts with w if any does.
        let (mut lo, mut hi) = (0, self.refs.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.bytes(forms, mid) < w {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == self.refs.len() {
            return false;
        }
        let e = self.bytes(forms, lo);
        e.starts_with(w) && (e.len() > w.len() || self.extended[lo])
    }

    pub(super) fn memory_usage(&self) -> usize {
        self.refs.capacity() * 8
            + self.kind.capacity() * std::mem::size_of::<Kind>()
            + self.parent.capacity() * 4
            + self.extended.capacity()
            + 256
            + 8 * 1024
    }
}

/// An element index; see [`super::forms`] on why `u32` is enough.
pub(super) fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(NONE)
}

/// A skip-ahead scanner for many elements (Wu–Manber): looks at the `q`-gram ending each window
/// of `m` bytes (`m` the shortest element length, at most 16) and jumps as far as no element's
/// first `m` bytes can be overlapped. Only where no jump is possible, and a hash of the window is
/// among those of the elements' first `m` bytes, does it ask the sorted elements.
///
/// Why not aho-corasick here: with more than a few dozen elements its prefilters give up and the
/// automaton steps through every byte (0.63 GB/s for 100 secrets on the reference box); with
/// thousands it is also slow to build. Random secrets' `q`-grams are rare in log text, so most
/// windows jump `m - q + 1` bytes.
pub(super) struct Scanner {
    m: usize,
    q: usize,
    /// Index bits of the shift table.
    bits: u32,
    shift: Vec<u8>,
    /// Bit set of [`window_hash`] over every element's first `m` bytes.
    filter: Vec<u64>,
    filter_mask: u64,
}

impl Scanner {
    pub(super) fn new(forms: &Forms, elems: &Elements) -> Scanner {
        let m = elems.min_len.min(16);
        // Grams of four bytes once there are enough elements to crowd a table of three-byte
        // ones; the table grows with the elements so that most of its entries still allow a
        // long jump (a CA bundle has tens of thousands of lines).
        let q = if m >= 8 && elems.len() * (m - 2) > 1 << 14 {
            4
        } else {
            m.min(3)
        };
        let entries = (elems.len() * (m - q + 1) * 8).next_power_of_two();
        let bits = entries.clamp(1 << 16, 1 << 22).trailing_zeros();
        let default = u8::try_from(m - q + 1).unwrap_or(1);
        let mut shift = vec![default; 1 << bits];
        let filter_bits = (elems.len() * 16)
            .next_power_of_two()
            .clamp(1 << 12, 1 << 24);
        let mut filter = vec![0u64; filter_bits / 64];
        let filter_mask = (filter_bits - 1) as u64;
        for i in 0..elems.len() {
            let head = &elems.bytes(forms, i)[..m];
            for t in q - 1..m {
                let g = gram(head, t, q, bits);
                let s = u8::try_from(m - 1 - t).unwrap_or(0);
                if shift[g] > s {
                    shift[g] = s;
                }
            }
            let h = window_hash(head) & filter_mask;
            filter[(h / 64) as usize] |= 1 << (h % 64);
        }
        Scanner {
            m,
            q,
            bits,
            shift,
            filter,
            filter_mask,
        }
    }

    /// The leftmost element occurrence inside `buf[from..end]`, longest there: `(start,
    /// element, length)`.
    pub(super) fn find(
        &self,
        forms: &Forms,
        elems: &Elements,
        buf: &[u8],
        from: usize,
        end: usize,
    ) -> Option<(usize, usize, usize)> {
        let (m, q, bits) = (self.m, self.q, self.bits);
        if end < from + m {
            return None;
        }
        let mut j = from + m - 1;
        while j < end {
            let s = self.shift[gram(buf, j, q, bits)];
            if s != 0 {
                j += usize::from(s);
                continue;
            }
            let start = j + 1 - m;
            let h = window_hash(&buf[start..=j]) & self.filter_mask;
            if self.filter[(h / 64) as usize] & (1 << (h % 64)) != 0
                && let Some((e, len)) = elems.longest_at(forms, &buf[start..end])
            {
                return Some((start, e, len));
            }
            j += 1;
        }
        None
    }

    pub(super) fn memory_usage(&self) -> usize {
        self.shift.capacity() + self.filter.capacity() * 8
    }
}

/// The `q`-gram (`q` <= 4) of `b` ending at `t`, hashed to `bits` bits.
#[inline]
fn gram(b: &[u8], t: usize, q: usize, bits: u32) -> usize {
    let x = match q {
        4 => u32::from_le_bytes([b[t - 3], b[t - 2], b[t - 1], b[t]]),
        3 => u32::from(b[t - 2]) | u32::from(b[t - 1]) << 8 | u32::from(b[t]) << 16,
        2 => u32::from(b[t - 1]) | u32::from(b[t]) << 8,
        _ => u32::from(b[t]),
    };
    (x.wrapping_mul(0x9e37_79b1) >> (32 - bits)) as usize
}

/// A hash of up to 16 bytes (a scanner window).
#[inline]
fn window_hash(w: &[u8]) -> u64 {
    let load = |s: &[u8]| {
        let mut x = [0u8; 8];
        x[..s.len()].copy_from_slice(s);
        u64::from_le_bytes(x)
    };
    let (a, b) = if w.len() > 8 {
        (load(&w[..8]), load(&w[w.len() - 8..]))
    } else {
        (load(w), 0)
    };
    let x = (a ^ b.rotate_left(31) ^ (w.len() as u64) << 59).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ x >> 29
}
