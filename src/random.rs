//! Randomness: state ids, keys, nonces and the unguessable names of private directories.
//!
//! One source (aws-lc's DRBG, seeded from the kernel; see docs/performance.md on why not its
//! CPU-jitter source), so that nothing in leasehold rolls its own.

/// Fills `buf` with random bytes.
pub(crate) fn fill_random(buf: &mut [u8]) {
    // aws-lc's DRBG only fails if the OS entropy source is broken; there is no safe fallback.
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(buf).expect("the system random number generator failed");
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `N` random bytes as hex: an unguessable name part.
pub(crate) fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    fill_random(&mut bytes);
    hex(&bytes)
}

/// `label` made safe for a file name (anything but ASCII letters, digits and `_` becomes `_`),
/// then `-` and 16 random hex digits: the name of a stage's private directory, readable in a
/// listing and never guessable by a job that knows the stage.
pub(crate) fn unguessable_name(label: &str) -> String {
    let safe: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}-{}", random_hex::<8>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_random_names() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        let a = random_hex::<8>();
        assert_eq!(a.len(), 16);
        assert_ne!(a, random_hex::<8>());
        let name = unguessable_name("step_a/../b c");
        let (label, random) = name.rsplit_once('-').expect("a dash");
        assert_eq!(label, "step_a____b_c");
        assert_eq!(random.len(), 16);
        assert_ne!(name, unguessable_name("step_a/../b c"));
    }
}
