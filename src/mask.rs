//! Streaming masker for the job's output.
//!
//! STUB: interface fixed; implementation pending.

/// The set of byte strings to mask, with every derived form (lines of multi-line values, base64,
/// URL-encoded, JSON-escaped), compiled into one leftmost-longest automaton.
#[derive(Debug)]
pub struct MaskSet {
    mask: Vec<u8>,
}

/// Outcome of building a [`MaskSet`].
#[derive(Debug, Default)]
pub struct MaskReport {
    /// Names of secrets too short to be masked (the job log says so, by name).
    pub too_short: Vec<String>,
}

impl MaskSet {
    /// Builds the set from `(name, value)` pairs.
    pub fn new<'a>(
        secrets: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        mask_text: &str,
        min_length: usize,
    ) -> (Self, MaskReport) {
        let _ = (secrets.into_iter().count(), min_length);
        (MaskSet { mask: mask_text.as_bytes().to_vec() }, MaskReport::default())
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.mask.is_empty()
    }

    /// A fresh streaming state over this set.
    pub fn stream(&self) -> StreamMasker<'_> {
        StreamMasker { set: self }
    }
}

/// Masks one output stream; bytes are held back only while they could still be part of a secret.
#[derive(Debug)]
pub struct StreamMasker<'a> {
    set: &'a MaskSet,
}

impl StreamMasker<'_> {
    /// Feeds a chunk, appending what can be emitted now to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let _ = self.set;
        out.extend_from_slice(chunk);
    }

    /// Flushes everything held back (end of stream).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let _ = out;
    }
}
