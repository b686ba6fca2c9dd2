//! Bash quoting for values that go into a script leasehold writes (the wrapper of
//! `inject = "script"`, the docker executor's stage file): one rule in one place, so that both
//! carry every byte but NUL unchanged and neither can be broken out of.

use std::fmt::Write as _;

/// Quotes bytes for bash as `$'…'`, which carries any byte except NUL unchanged.
pub(crate) fn ansi_c_quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 3);
    out.push_str("$'");
    for &b in bytes {
        match b {
            b'\'' => out.push_str("\\'"),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('\'');
    out
}
