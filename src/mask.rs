//! Streaming masker for the job's output.
//!
//! The job's processes see injected secrets, and anything they print lands in the job log, which
//! is readable by everyone with access to the pipeline. This module replaces every occurrence of a
//! secret value (and of the forms a tool is likely to print it in) with the configured mask text
//! before the bytes reach the log.
//!
//! # Invariant
//!
//! **The masker never emits a byte that could still belong to a secret.** Output is a prefix of
//! what one-shot masking of the whole stream ([`MaskSet::mask_all`]) produces, whatever the
//! chunking: [`StreamMasker::push`] followed by [`StreamMasker::finish`] yields exactly
//! `mask_all` of the concatenated input.
//!
//! # Forms that are masked
//!
//! For every secret value at least `min_length` bytes long, these byte strings are registered
//! (duplicates removed; every form must itself be at least `min_length` bytes):
//!
//! - the raw value;
//! - if the value contains `\n`: every line on its own, without its trailing `\r` (PEM armor lines
//!   such as `-----BEGIN CERTIFICATE-----` excepted: they are public framing); lines shorter
//!   than `min_length` are skipped and the secret is named in [`MaskReport::short_lines`];
//! - base64 of the value **and** of the value followed by `\n` (what `echo "$X" | base64 -w0`
//!   prints), each in the standard and the URL-safe alphabet, each with and without `=` padding.
//!   Only whole encodings are registered: base64 of a value embedded in a longer encoded blob
//!   (e.g. `Basic base64(user:token)`) depends on its alignment and is *not* masked;
//! - percent-encoding: RFC 3986 (everything but `A-Za-z0-9-._~` as `%XX`, upper-case hex), the
//!   same with lower-case hex, form encoding (as RFC 3986 but space as `+`), and Python's
//!   `urllib.parse.quote()` default (as RFC 3986 but `/` left alone);
//! - JSON string escaping without the quotes, as `serde_json` writes it (`\"`, `\\`, `\n`, `\r`,
//!   `\t`, `\b`, `\f`, `\u00xx` for other control bytes, everything else verbatim), and the same
//!   with `/` escaped as `\/`.
//!
//! All forms are compiled into one leftmost-longest Aho-Corasick automaton, so when one registered
//! form is a prefix of another (`abc` and `abcdef`), the longer one is masked whole.
//!
//! # Minimum length
//!
//! A value shorter than `min_length` bytes is not masked at all (masking `1` or `true` would
//! shred the log while protecting nothing); its *name* is listed in [`MaskReport::too_short`] so
//! the job log can say so. The effective minimum is never below 1: an empty pattern would match
//! everywhere.
//!
//! # Latency
//!
//! [`StreamMasker::push`] emits everything except the longest suffix of the not-yet-emitted bytes
//! that is a *proper prefix* of some registered form; those bytes wait for the next chunk or for
//! [`StreamMasker::finish`]. A line of ordinary text therefore comes out as soon as it is pushed,
//! unless its last bytes could begin a secret. Held bytes are never flushed on a timer: that would
//! leak the start of a secret that is still being written.
//!
//! # What defeats it
//!
//! Masking works on bytes, so any transformation it does not know about defeats it: a tool that
//! inserts ANSI escape sequences or `\r` *inside* a value (colourisers, progress bars, `ls` column
//! output), splits it across lines, reverses, hashes, compresses or re-encodes it in a form not
//! listed above (hex, base32, base64 embedded at an offset, `\uXXXX` for non-ASCII), or prints it
//! one character at a time interleaved with other output. Secrets shorter than `min_length` are
//! not masked. Each output stream needs its own [`StreamMasker`]; masking stdout and stderr
//! merged byte-wise would interleave their pieces.

use std::fmt;

use aho_corasick::automaton::Automaton;
use aho_corasick::nfa::contiguous;
use aho_corasick::{AhoCorasick, AhoCorasickKind, Anchored, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use zeroize::{Zeroize, Zeroizing};

/// Past this many patterns aho-corasick's own choice is a contiguous NFA, which the reference probe
/// measured at about a third of a DFA's speed on log text (0.19 vs 0.54 GB/s at 1 000 patterns);
/// the DFA costs memory (about 3.4 MiB for 100 secrets' ~430 forms) but that is affordable.
const FORCE_DFA_PAST: usize = 200;

/// The set of byte strings to mask, with every derived form (lines of multi-line values, base64,
/// URL-encoded, JSON-escaped), compiled into one leftmost-longest automaton.
pub struct MaskSet {
    mask: Vec<u8>,
    state: State,
}

enum State {
    /// Nothing to mask: bytes pass through.
    Empty,
    Ready(Box<Matcher>),
    /// The automaton could not be built; fail closed by emitting nothing.
    Failed,
}

struct Matcher {
    /// Every registered form, `LeftmostLongest`, unanchored.
    ac: AhoCorasick,
    /// Trie of the proper prefixes of all forms, walked anchored to decide what to hold back.
    /// `None` when every form is one byte long and so has no non-empty proper prefix.
    prefixes: Option<contiguous::NFA>,
    /// Whether a byte can start a proper prefix: rejects most hold-back candidates without a walk.
    starts_prefix: [bool; 256],
    /// Length of the longest proper prefix (longest form minus one).
    max_prefix_len: usize,
    patterns: usize,
}

/// Outcome of building a [`MaskSet`]. Holds secret *names* only, never values.
#[derive(Debug, Default)]
pub struct MaskReport {
    /// Names of secrets too short to be masked (the job log says so, by name).
    pub too_short: Vec<String>,
    /// Names of multi-line secrets with at least one non-empty line shorter than the minimum
    /// length: that line is masked only where it appears as part of the whole value.
    pub short_lines: Vec<String>,
    /// Set when the automaton could not be built (far beyond any realistic number of secrets).
    /// The masker then fails closed: it emits nothing at all.
    pub build_error: Option<String>,
}

impl MaskSet {
    /// Builds the set from `(name, value)` pairs.
    ///
    /// Values shorter than `min_length` bytes are not masked and are named in
    /// [`MaskReport::too_short`]. Derived forms are listed in the [module docs](crate::mask).
    pub fn new<'a>(
        secrets: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        mask_text: &str,
        min_length: usize,
    ) -> (Self, MaskReport) {
        let min = min_length.max(1);
        let mut report = MaskReport::default();
        let mut patterns = Patterns::default();
        for (name, value) in secrets {
            if value.len() < min {
                push_name(&mut report.too_short, name);
                continue;
            }
            if add_forms(&mut patterns, value, min) {
                push_name(&mut report.short_lines, name);
            }
        }
        let (set, error) = Self::from_patterns(patterns, mask_text.as_bytes());
        report.build_error = error;
        (set, report)
    }

    /// Compiles exactly `patterns` (no derived forms); empty patterns are dropped.
    fn from_patterns(mut patterns: Patterns, mask: &[u8]) -> (Self, Option<String>) {
        patterns.normalize();
        let mask = mask.to_vec();
        if patterns.0.is_empty() {
            return (
                MaskSet {
                    mask,
                    state: State::Empty,
                },
                None,
            );
        }
        match Matcher::build(&patterns.0) {
            Ok(m) => (
                MaskSet {
                    mask,
                    state: State::Ready(Box::new(m)),
                },
                None,
            ),
            Err(e) => (
                MaskSet {
                    mask,
                    state: State::Failed,
                },
                Some(e.to_string()),
            ),
        }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        matches!(self.state, State::Empty)
    }

    /// Number of distinct byte strings (values and derived forms) being masked.
    pub fn pattern_count(&self) -> usize {
        match &self.state {
            State::Ready(m) => m.patterns,
            State::Empty | State::Failed => 0,
        }
    }

    /// Approximate heap bytes held by the compiled automata (they contain the secrets, so this is
    /// also how much secret-bearing memory the set keeps alive).
    pub fn memory_usage(&self) -> usize {
        match &self.state {
            State::Ready(m) => {
                m.ac.memory_usage() + m.prefixes.as_ref().map_or(0, |p| p.memory_usage())
            }
            State::Empty | State::Failed => 0,
        }
    }

    /// A fresh streaming state over this set.
    pub fn stream(&self) -> StreamMasker<'_> {
        StreamMasker {
            set: self,
            pending: Vec::new(),
        }
    }

    /// Masks a complete input in one go; equal to streaming it in any chunking.
    pub fn mask_all(&self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        match &self.state {
            State::Empty => out.extend_from_slice(input),
            State::Ready(m) => {
                self.mask_into(m, input, true, &mut out);
            }
            State::Failed => {}
        }
        out
    }

    /// Masks `buf`, appends what is final to `out`, and returns how many leading bytes of `buf`
    /// were consumed; the rest must be fed again, followed by the next chunk.
    ///
    /// With `hold = cut`, the start of the longest suffix that is a proper prefix of a pattern,
    /// every pattern occurrence starting before `cut` ends inside `buf` whatever follows (else a
    /// longer such suffix would exist). So the leftmost-longest matches starting before `cut`, and
    /// the gaps between them, are the same as in the full stream and can be emitted. A match
    /// starting before `cut` may end after it; its bytes are consumed with it. Nothing starts in
    /// `[end of last match, cut)`, or `find_iter` would have reported it.
    fn mask_into(&self, m: &Matcher, buf: &[u8], at_eof: bool, out: &mut Vec<u8>) -> usize {
        let cut = if at_eof { buf.len() } else { m.hold_from(buf) };
        out.reserve(cut);
        let mut pos = 0;
        for found in m.ac.find_iter(buf) {
            if found.start() >= cut {
                break;
            }
            out.extend_from_slice(&buf[pos..found.start()]);
            out.extend_from_slice(&self.mask);
            pos = found.end();
        }
        let keep = pos.max(cut);
        out.extend_from_slice(&buf[pos..keep]);
        keep
    }
}

impl fmt::Debug for MaskSet {
    // Derived Debug would print the automaton, whose transitions spell out the secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.state {
            State::Empty => "empty",
            State::Ready(_) => "ready",
            State::Failed => "failed",
        };
        f.debug_struct("MaskSet")
            .field("state", &kind)
            .field("patterns", &self.pattern_count())
            .field("memory_usage", &self.memory_usage())
            .field("mask", &String::from_utf8_lossy(&self.mask))
            .finish_non_exhaustive()
    }
}

impl Matcher {
    fn build(patterns: &[Vec<u8>]) -> Result<Self, aho_corasick::BuildError> {
        let force_dfa = patterns.len() > FORCE_DFA_PAST;
        let mut builder = AhoCorasick::builder();
        builder.match_kind(MatchKind::LeftmostLongest);
        if force_dfa {
            builder.kind(Some(AhoCorasickKind::DFA));
        }
        let ac = match builder.build(patterns) {
            Ok(ac) => ac,
            // A forced DFA can exceed its state-ID space long before an NFA does.
            Err(_) if force_dfa => builder.kind(None).build(patterns)?,
            Err(e) => return Err(e),
        };

        let mut starts_prefix = [false; 256];
        let mut max_prefix_len = 0;
        for p in patterns {
            if let [first, _, ..] = p.as_slice() {
                starts_prefix[usize::from(*first)] = true;
                max_prefix_len = max_prefix_len.max(p.len() - 1);
            }
        }
        // A string is a proper prefix of a pattern iff it is a prefix of the pattern minus its
        // last byte, so an anchored walk of this trie that never dies answers the question.
        let prefixes = if max_prefix_len == 0 {
            None
        } else {
            let proper = patterns
                .iter()
                .filter(|p| p.len() > 1)
                .map(|p| &p[..p.len() - 1]);
            Some(
                contiguous::NFA::builder()
                    .match_kind(MatchKind::Standard)
                    .prefilter(false)
                    .build(proper)?,
            )
        };
        Ok(Matcher {
            ac,
            prefixes,
            starts_prefix,
            max_prefix_len,
            patterns: patterns.len(),
        })
    }

    /// Start of the longest suffix of `buf` that is a proper prefix of some pattern, or
    /// `buf.len()` if there is none.
    fn hold_from(&self, buf: &[u8]) -> usize {
        let Some(nfa) = &self.prefixes else {
            return buf.len();
        };
        let lo = buf.len().saturating_sub(self.max_prefix_len);
        for (i, &b) in buf[lo..].iter().enumerate() {
            if self.starts_prefix[usize::from(b)] && is_prefix(nfa, &buf[lo + i..]) {
                return lo + i;
            }
        }
        buf.len()
    }
}

/// Whether `tail` is a prefix of some pattern in `nfa` (anchored walk that never dies).
fn is_prefix(nfa: &contiguous::NFA, tail: &[u8]) -> bool {
    // A contiguous NFA always supports anchored starts; should that ever change, holding back
    // is the direction that cannot leak.
    let Ok(mut sid) = nfa.start_state(Anchored::Yes) else {
        return true;
    };
    for &b in tail {
        sid = nfa.next_state(Anchored::Yes, sid, b);
        if nfa.is_dead(sid) {
            return false;
        }
    }
    true
}

/// Masks one output stream; bytes are held back only while they could still be part of a secret.
///
/// Call [`finish`](Self::finish) at end of stream: dropping the masker discards (and wipes) any
/// held bytes. After `finish` the masker can be reused for a new stream.
pub struct StreamMasker<'a> {
    set: &'a MaskSet,
    /// Bytes received but not yet emitted: at most the longest pattern minus one between calls.
    pending: Vec<u8>,
}

impl StreamMasker<'_> {
    /// Feeds a chunk, appending what can be emitted now to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let m = match &self.set.state {
            State::Empty => {
                out.extend_from_slice(chunk);
                return;
            }
            State::Failed => return,
            State::Ready(m) => m,
        };
        if self.pending.is_empty() {
            // Common case for large reads: mask the chunk in place and keep only its tail.
            let keep = self.set.mask_into(m, chunk, false, out);
            self.pending.extend_from_slice(&chunk[keep..]);
        } else {
            self.pending.extend_from_slice(chunk);
            let keep = self.set.mask_into(m, &self.pending, false, out);
            self.pending.drain(..keep);
        }
    }

    /// Flushes everything held back (end of stream).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if let State::Ready(m) = &self.set.state {
            self.set.mask_into(m, &self.pending, true, out);
        }
        self.pending.zeroize();
    }

    /// Number of bytes currently held back because they could be the start of a secret.
    pub fn held_len(&self) -> usize {
        self.pending.len()
    }
}

impl Drop for StreamMasker<'_> {
    // Held bytes may be the first part of a secret; `zeroize` also clears the spare capacity
    // that `drain` left copies in.
    fn drop(&mut self) {
        self.pending.zeroize();
    }
}

impl fmt::Debug for StreamMasker<'_> {
    // Held bytes may be the start of a secret: show only how many there are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamMasker")
            .field("set", self.set)
            .field("held", &self.pending.len())
            .finish()
    }
}

fn push_name(names: &mut Vec<String>, name: &str) {
    if !names.iter().any(|n| n == name) {
        names.push(name.to_owned());
    }
}

/// Pattern bytes, wiped when dropped (the automaton keeps its own copy, which we cannot reach).
#[derive(Default)]
struct Patterns(Vec<Vec<u8>>);

impl Patterns {
    fn add(&mut self, p: Vec<u8>, min: usize) {
        if p.len() >= min {
            self.0.push(p);
        } else {
            let mut p = p;
            p.zeroize();
        }
    }

    /// Sorts, removes empty patterns and duplicates, wiping what it removes.
    fn normalize(&mut self) {
        self.0.retain(|p| !p.is_empty());
        self.0.sort_unstable();
        self.0.dedup_by(|later, earlier| {
            let dup = later == earlier;
            if dup {
                later.zeroize();
            }
            dup
        });
    }
}

impl Drop for Patterns {
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
fn add_forms(patterns: &mut Patterns, value: &[u8], min: usize) -> bool {
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

impl MaskSet {
    /// The masker of a job: every value it holds (each sub-stage masks all of them, not only the
    /// ones it receives: a value written to a file in `build_script` can still be printed by a
    /// later stage), with the admin's `[mask]` settings.
    pub fn for_job<'a>(
        values: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        settings: &crate::config_file::MaskSection,
    ) -> (Self, MaskReport) {
        Self::new(values, &settings.text, settings.min_length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MASK: &str = "[MASKED]";

    fn set(secrets: &[(&str, &str)]) -> MaskSet {
        let (set, report) = MaskSet::new(secrets.iter().map(|(n, v)| (*n, v.as_bytes())), MASK, 8);
        assert!(report.too_short.is_empty(), "{report:?}");
        set
    }

    fn raw_set(patterns: &[&[u8]], mask: &str) -> MaskSet {
        let (set, err) = MaskSet::from_patterns(
            Patterns(patterns.iter().map(|p| p.to_vec()).collect()),
            mask.as_bytes(),
        );
        assert!(err.is_none());
        set
    }

    fn all(set: &MaskSet, input: &str) -> String {
        String::from_utf8(set.mask_all(input.as_bytes())).expect("utf8")
    }

    fn stream_chunks(set: &MaskSet, chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = set.stream();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    /// Every way of cutting `input` in two, plus byte-at-a-time, must agree with one-shot.
    fn assert_split_invariant(set: &MaskSet, input: &[u8]) {
        let expected = set.mask_all(input);
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(stream_chunks(set, &[a, b]), expected, "split at {i}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(stream_chunks(set, &bytes), expected, "byte at a time");
    }

    /// Leftmost-longest by definition: at each position take the longest pattern starting there.
    fn oracle(patterns: &[Vec<u8>], mask: &[u8], input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < input.len() {
            let longest = patterns
                .iter()
                .filter(|p| !p.is_empty() && input[i..].starts_with(p))
                .map(Vec::len)
                .max();
            match longest {
                Some(n) => {
                    out.extend_from_slice(mask);
                    i += n;
                }
                None => {
                    out.push(input[i]);
                    i += 1;
                }
            }
        }
        out
    }

    fn derived(value: &[u8], min: usize) -> Vec<Vec<u8>> {
        let mut p = Patterns::default();
        add_forms(&mut p, value, min);
        p.normalize();
        std::mem::take(&mut p.0)
    }

    #[test]
    fn plain_value_alone_and_inside_text() {
        let s = set(&[("TOKEN", "hunter2-hunter2")]);
        assert_eq!(all(&s, "hunter2-hunter2"), MASK);
        assert_eq!(all(&s, "token=hunter2-hunter2;next"), "token=[MASKED];next");
        assert_eq!(
            all(&s, "hunter2-hunter2hunter2-hunter2"),
            "[MASKED][MASKED]"
        );
        assert_split_invariant(&s, b"a hunter2-hunter2 b hunter2-hunter2\n");
    }

    #[test]
    fn split_across_pushes_is_masked() {
        let s = set(&[("TOKEN", "s3cr3t-value")]);
        let out = stream_chunks(&s, &[b"x s3c", b"r3t-v", b"alue y"]);
        assert_eq!(out, b"x [MASKED] y");
    }

    #[test]
    fn base64_w0_of_value_and_value_with_newline() {
        let v = "p4ss?w0rd>>~";
        let s = set(&[("P", v)]);
        for input in [v.to_owned(), format!("{v}\n")] {
            for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
                let enc = engine.encode(input.as_bytes());
                assert_eq!(
                    all(&s, &format!("b64: {enc}\n")),
                    "b64: [MASKED]\n",
                    "{enc}"
                );
                assert_split_invariant(&s, format!("<{enc}>").as_bytes());
            }
        }
        // `echo "$X" | base64 -w0` for a value whose length is a multiple of 3 differs from the
        // no-newline encoding in its tail only.
        let s = set(&[("P", "abcdefghi")]);
        assert_eq!(all(&s, &STANDARD.encode("abcdefghi\n")), MASK);
        assert_eq!(all(&s, &STANDARD.encode("abcdefghi")), MASK);
    }

    #[test]
    fn url_encoded_forms() {
        let v = "p@ss w/rd:!é";
        let s = set(&[("P", v)]);
        for enc in [
            "p%40ss%20w%2Frd%3A%21%C3%A9",
            "p%40ss%20w%2frd%3a%21%c3%a9",
            "p%40ss+w%2Frd%3A%21%C3%A9",
            "p%40ss%20w/rd%3A%21%C3%A9",
        ] {
            assert_eq!(
                all(&s, &format!("?q={enc}&x=1")),
                "?q=[MASKED]&x=1",
                "{enc}"
            );
        }
        // Nothing to encode: the encoded forms equal the raw value and are not registered twice.
        let s = set(&[("P", "plain_value-123")]);
        assert_eq!(s.pattern_count(), derived(b"plain_value-123", 8).len());
        assert!(
            derived(b"plain_value-123", 8)
                .iter()
                .filter(|p| p.as_slice() == b"plain_value-123")
                .count()
                == 1
        );
    }

    #[test]
    fn json_escaped_forms() {
        let v = "a\"b\\c\nd\te/f\u{1}g\u{8}h";
        let s = set(&[("P", v)]);
        let serde = serde_json::to_string(v).expect("json");
        let inner = &serde[1..serde.len() - 1];
        assert_eq!(
            all(&s, &format!("{{\"k\":{serde}}}")),
            "{\"k\":\"[MASKED]\"}"
        );
        assert_eq!(all(&s, inner), MASK);
        let slashed = inner.replace('/', "\\/");
        assert_eq!(all(&s, &slashed), MASK);
        assert_split_invariant(&s, format!("x{slashed}x").as_bytes());
    }

    #[test]
    fn pem_armor_lines_are_not_masked_alone() {
        let pem = b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----";
        let (s, _) = MaskSet::new([("K", &pem[..])], MASK, 8);
        let printed = b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n";
        assert_eq!(
            s.mask_all(printed),
            b"-----BEGIN PRIVATE KEY-----\n[MASKED]\n".to_vec()
        );
    }

    #[test]
    fn pem_printed_line_by_line() {
        let pem = "-----BEGIN PRIVATE KEY-----\r\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\r\nBKcwggSjAgEAAoIBAQC7\r\nab\r\n-----END PRIVATE KEY-----\r\n";
        let (s, report) = MaskSet::new([("KEY", pem.as_bytes())], MASK, 8);
        assert_eq!(
            report.short_lines,
            ["KEY"],
            "the line `ab` cannot be masked alone"
        );
        let printed = "$ cat key\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\nab\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            all(&s, printed),
            "$ cat key\n-----BEGIN PRIVATE KEY-----\n[MASKED]\n[MASKED]\nab\n-----END PRIVATE KEY-----\n"
        );
        assert_eq!(all(&s, pem), MASK, "the whole value wins over its lines");
        assert_split_invariant(&s, printed.as_bytes());
        let json = serde_json::to_string(pem).expect("json");
        assert_eq!(all(&s, &json), "\"[MASKED]\"");
    }

    #[test]
    fn longer_overlapping_pattern_is_masked_whole() {
        let s = raw_set(&[b"abc", b"abcdef"], "*");
        assert_eq!(s.mask_all(b"abcdef"), b"*");
        assert_eq!(s.mask_all(b"abcde"), b"*de");
        assert_eq!(stream_chunks(&s, &[b"abc", b"def"]), b"*");
        assert_split_invariant(&s, b"xxabcdefabcabcde");
        // Through `new`, with realistic lengths.
        let s = set(&[("SHORT", "abcdefgh"), ("LONG", "abcdefghijkl")]);
        assert_eq!(all(&s, "abcdefghijkl"), MASK);
        assert_eq!(stream_chunks(&s, &[b"abcdefgh", b"ijkl"]), MASK.as_bytes());
    }

    #[test]
    fn match_crossing_the_hold_point() {
        // After "abc", "c" could start "cd": the hold point is at "c", but "abc" starts before it
        // and is final, so it is emitted now and swallows the "c".
        let s = raw_set(&[b"abc", b"cd"], "*");
        let mut st = s.stream();
        let mut out = Vec::new();
        st.push(b"abc", &mut out);
        assert_eq!(out, b"*");
        assert_eq!(st.held_len(), 0);
        st.push(b"d", &mut out);
        st.finish(&mut out);
        assert_eq!(out, b"*d");
        assert_eq!(s.mask_all(b"abcd"), b"*d");
    }

    #[test]
    fn too_short_values_are_reported_by_name_and_not_masked() {
        let (s, report) = MaskSet::new(
            [
                ("PIN", b"1234".as_slice()),
                ("TOKEN", b"long-enough".as_slice()),
                ("PIN", b"5678"),
            ],
            MASK,
            8,
        );
        assert_eq!(report.too_short, ["PIN"]);
        assert_eq!(all(&s, "1234 long-enough"), "1234 [MASKED]");
        assert!(!format!("{report:?}").contains("1234"));
        // A zero minimum still never registers the empty string.
        let (s, report) = MaskSet::new([("EMPTY", b"".as_slice())], MASK, 0);
        assert_eq!(report.too_short, ["EMPTY"]);
        assert!(s.is_empty());
    }

    #[test]
    fn empty_set_passes_through() {
        let (s, report) = MaskSet::new(std::iter::empty(), MASK, 8);
        assert!(s.is_empty() && report.too_short.is_empty());
        assert_eq!(s.pattern_count(), 0);
        let input = b"anything \x00\xff at all\n";
        assert_eq!(s.mask_all(input), input);
        let mut st = s.stream();
        let mut out = Vec::new();
        st.push(input, &mut out);
        assert_eq!(out, input, "emitted at once");
        st.finish(&mut out);
        assert_eq!(out, input);
    }

    #[test]
    fn ordinary_line_is_emitted_at_once() {
        let s = set(&[("A", "zq-secret-1"), ("B", "Xy0-secret-2")]);
        let mut st = s.stream();
        let mut out = Vec::new();
        st.push(b"hello\n", &mut out);
        assert_eq!(out, b"hello\n");
        assert_eq!(st.held_len(), 0);
    }

    #[test]
    fn only_a_possible_secret_prefix_is_held() {
        let s = set(&[("A", "zq-secret-1")]);
        let mut st = s.stream();
        let mut out = Vec::new();
        st.push(b"line one\nthen zq-sec", &mut out);
        assert_eq!(out, b"line one\nthen ");
        assert_eq!(st.held_len(), 6);
        // Not the secret after all: released as soon as that is known, not on a timer.
        st.push(b"ond\n", &mut out);
        assert_eq!(out, b"line one\nthen zq-second\n");
        st.push(b"zq-secret-1", &mut out);
        assert_eq!(
            out, b"line one\nthen zq-second\n[MASKED]",
            "a complete secret is final"
        );
        st.push(b"zq", &mut out);
        st.finish(&mut out);
        assert_eq!(
            out, b"line one\nthen zq-second\n[MASKED]zq",
            "finish flushes held bytes"
        );
        assert_eq!(st.held_len(), 0);
    }

    #[test]
    fn debug_output_does_not_contain_secrets() {
        let s = set(&[("A", "zq-secret-1")]);
        let mut st = s.stream();
        st.push(b"zq-sec", &mut Vec::new());
        let dbg = format!("{s:?} {st:?}");
        assert!(!dbg.contains("secret") && !dbg.contains("zq-"), "{dbg}");
    }

    #[test]
    fn many_secrets_use_a_dfa_and_still_mask() {
        let secrets: Vec<(String, String)> = (0..60)
            .map(|i| {
                (
                    format!("S{i}"),
                    format!("value-{i:03}-{}", "x".repeat(i % 7)),
                )
            })
            .collect();
        let (s, report) = MaskSet::new(
            secrets.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
            MASK,
            8,
        );
        assert!(report.build_error.is_none());
        assert!(s.pattern_count() > FORCE_DFA_PAST);
        let State::Ready(m) = &s.state else {
            panic!("not ready")
        };
        assert_eq!(m.ac.kind(), AhoCorasickKind::DFA);
        let text = format!("a {} b {} c", secrets[3].1, STANDARD.encode(&secrets[39].1));
        assert_eq!(all(&s, &text), "a [MASKED] b [MASKED] c");
        assert_split_invariant(&s, text.as_bytes());
    }

    /// Inputs over a tiny alphabet so that overlaps and prefixes are common.
    fn small_word(
        alphabet: &'static [u8],
        len: std::ops::RangeInclusive<usize>,
    ) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(proptest::sample::select(alphabet), len)
    }

    /// Cut points for a chunking: mostly 1–7 bytes, sometimes larger.
    fn chunking() -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(prop_oneof![4 => 1usize..=7, 1 => 8usize..=64], 1..40)
    }

    /// Longest suffix of `seen` that is a proper prefix of some pattern, by brute force.
    fn naive_hold(seen: &[u8], patterns: &[Vec<u8>]) -> usize {
        (0..=seen.len())
            .rev()
            .find(|&k| {
                let suffix = &seen[seen.len() - k..];
                patterns
                    .iter()
                    .any(|p| p.len() > k && p.starts_with(suffix))
            })
            .unwrap_or(0)
    }

    /// Streams `input` in chunks of the given sizes (cycled), checking after every push that
    /// the output so far is final (a prefix of one-shot output) and that no more is held back
    /// than the longest suffix that could still begin a pattern.
    fn stream_with(set: &MaskSet, patterns: &[Vec<u8>], input: &[u8], sizes: &[usize]) -> Vec<u8> {
        let one_shot = set.mask_all(input);
        let mut st = set.stream();
        let mut out = Vec::new();
        let mut seen = 0;
        let mut i = 0;
        while seen < input.len() {
            let n = sizes[i % sizes.len()].min(input.len() - seen);
            st.push(&input[seen..seen + n], &mut out);
            seen += n;
            i += 1;
            assert!(one_shot.starts_with(&out), "emitted bytes were not final");
            assert!(
                st.held_len() <= naive_hold(&input[..seen], patterns),
                "held {} bytes of {:?}",
                st.held_len(),
                String::from_utf8_lossy(&input[..seen])
            );
        }
        st.finish(&mut out);
        assert_eq!(st.held_len(), 0);
        out
    }

    fn derived_all(secrets: &[Vec<u8>], min: usize) -> Vec<Vec<u8>> {
        secrets.iter().flat_map(|v| derived(v, min)).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// (a) Streaming in any chunking equals one-shot, with overlapping and prefix patterns.
        #[test]
        fn prop_streaming_equals_mask_all(
            patterns in proptest::collection::vec(small_word(b"ab", 1..=5), 1..5),
            input in small_word(b"abc", 0..=120),
            sizes in chunking(),
        ) {
            let refs: Vec<&[u8]> = patterns.iter().map(Vec::as_slice).collect();
            let s = raw_set(&refs, "#");
            prop_assert_eq!(stream_with(&s, &patterns, &input, &sizes), s.mask_all(&input));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]

        /// `mask_all` is leftmost-longest replacement as defined, not just self-consistent.
        #[test]
        fn prop_mask_all_matches_oracle(
            patterns in proptest::collection::vec(small_word(b"abc", 1..=6), 1..6),
            input in small_word(b"abc", 0..=120),
        ) {
            let refs: Vec<&[u8]> = patterns.iter().map(Vec::as_slice).collect();
            let s = raw_set(&refs, "#");
            prop_assert_eq!(s.mask_all(&input), oracle(&patterns, b"#", &input));
        }

        /// (a) again through `new`, so derived forms (base64 and friends) are in the automaton.
        #[test]
        fn prop_streaming_equals_mask_all_with_derived_forms(
            secrets in proptest::collection::vec(small_word(b"ab/\n", 2..=9), 1..4),
            input in small_word(b"ab/\nYWJ=%", 0..=150),
            sizes in chunking(),
        ) {
            let (s, _) = MaskSet::new(secrets.iter().map(|v| ("S", v.as_slice())), "#", 2);
            let patterns = derived_all(&secrets, 2);
            prop_assert_eq!(stream_with(&s, &patterns, &input, &sizes), s.mask_all(&input));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        /// (b) Text sharing no byte with any pattern comes out byte-identical.
        #[test]
        fn prop_text_without_patterns_passes_through(
            secrets in proptest::collection::vec(small_word(b"abcxyz", 4..=12), 1..4),
            input in small_word(b" \n\t.,;:!#&()[]{}<>\xc3\xa9", 0..=300),
            sizes in chunking(),
        ) {
            let (s, _) = MaskSet::new(secrets.iter().map(|v| ("S", v.as_slice())), MASK, 4);
            let patterns = derived_all(&secrets, 4);
            prop_assert_eq!(stream_with(&s, &patterns, &input, &sizes), input);
        }

        /// (c) With patterns disjoint from the mask text, no pattern survives in the output.
        #[test]
        fn prop_no_pattern_survives(
            secrets in proptest::collection::vec(small_word(b"abc", 2..=6), 1..4),
            filler in proptest::collection::vec(small_word(b"abc\n", 0..=8), 0..12),
            sizes in chunking(),
        ) {
            let min = 2;
            let (s, _) = MaskSet::new(secrets.iter().map(|v| ("S", v.as_slice())), "**", min);
            let mut input = Vec::new();
            for (i, f) in filler.iter().enumerate() {
                input.extend_from_slice(f);
                input.extend_from_slice(&secrets[i % secrets.len()]);
            }
            let out = stream_with(&s, &derived_all(&secrets, min), &input, &sizes);
            for v in &secrets {
                for p in derived(v, min) {
                    prop_assert!(
                        !out.windows(p.len()).any(|w| w == p.as_slice()),
                        "{:?} survives in {:?}", String::from_utf8_lossy(&p), String::from_utf8_lossy(&out)
                    );
                }
            }
        }
    }
}
