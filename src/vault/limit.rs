//! How many requests at once.
//!
//! A [`RequestLimit`] shared by every client of one server caps the requests in flight to it
//! (`max_concurrent_requests`), so that a job declaring thousands of paths does not open
//! thousands of sockets at once.

use std::sync::Arc;

/// How many requests may be in flight to one server at once. Clones share the cap: every
/// client made for one server from one config gets a clone of the same limit.
#[derive(Debug, Clone)]
pub struct RequestLimit {
    permits: Arc<tokio::sync::Semaphore>,
    max: usize,
}

impl RequestLimit {
    /// The default of `max_concurrent_requests`.
    pub const DEFAULT: usize = 16;

    /// A new cap of `max` requests (at least 1).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        RequestLimit {
            permits: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
        }
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A place among the requests in flight, held until dropped; `None` only if the semaphore
    /// were closed, which it never is.
    pub(super) async fn acquire(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.permits.acquire().await.ok()
    }

    /// Whether `other` is the same cap (a clone of this one), not merely an equal number.
    #[cfg(test)]
    pub fn shares_with(&self, other: &RequestLimit) -> bool {
        Arc::ptr_eq(&self.permits, &other.permits)
    }
}

impl Default for RequestLimit {
    fn default() -> Self {
        RequestLimit::new(RequestLimit::DEFAULT)
    }
}
