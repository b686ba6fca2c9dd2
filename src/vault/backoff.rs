//! How long to pause between two attempts: jittered exponential backoff, short enough that an
//! HA election (seconds) does not turn into minutes of downtime for a job.

use std::time::Duration;

/// First retry delay, doubled per attempt.
pub(super) const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Longest delay between two attempts (±50 %): an election is over within seconds, and a
/// longer pause would add most of itself to the downtime a job sees.
pub(super) const BACKOFF_CAP: Duration = Duration::from_secs(1);

/// Jittered exponential backoff between attempts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    pub(super) base: Duration,
    pub(super) cap: Duration,
}

impl Backoff {
    /// The delay after the `retry`-th failure (0-based): `min(base·2^retry, cap)` scaled by a
    /// random factor in [0.5, 1.5), so runners that lost the same server do not retry in step.
    pub(super) fn delay(self, retry: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX));
        exp.min(self.cap).mul_f64(0.5 + unit_random())
    }
}

/// A number in [0, 1) for jitter; it needs to be unpredictable across hosts, not secure.
fn unit_random() -> f64 {
    let mut bytes = [0u8; 4];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        bytes = nanos.to_le_bytes();
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}
