//! How fast the requests in flight turn over, for the delay an overload refusal asks a client to
//! wait: with all N permits taken and requests lasting T on average, one frees about every T / N.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

/// A moving mean of how long admitted requests held their permit.
#[derive(Default)]
pub struct Turnover {
    /// Nanoseconds; 0 until the first request ends.
    mean_ns: AtomicU64,
}

/// An admitted request's permit; dropping it (the request ended) frees it and records how long
/// it was held.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    started: Instant,
    turnover: Arc<Turnover>,
}

impl Turnover {
    /// Holds `permit` for a request starting now.
    pub fn admitted(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Admitted {
        Admitted {
            _permit: permit,
            started: Instant::now(),
            turnover: self.clone(),
        }
    }

    /// Mixes one request's time into the mean, at a weight of 1/8: a few dozen requests make up
    /// the estimate, so it follows a change of load within seconds. Updates that race may lose
    /// one sample, which an estimate can afford.
    fn record(&self, held: Duration) {
        let held = held.as_nanos().min(u128::from(u64::MAX)) as u64;
        let mean = self.mean_ns.load(Ordering::Relaxed);
        let next = if mean == 0 {
            held
        } else {
            mean - mean / 8 + held / 8
        };
        self.mean_ns.store(next.max(1), Ordering::Relaxed);
    }

    /// When one of `slots` permits is likely free again; `None` before any request has ended.
    pub fn retry_after(&self, slots: usize) -> Option<Duration> {
        let mean = self.mean_ns.load(Ordering::Relaxed);
        (mean > 0).then(|| Duration::from_nanos(mean / slots.max(1) as u64))
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.turnover.record(self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_is_the_mean_hold_shared_among_the_slots() {
        let turnover = Turnover::default();
        assert_eq!(turnover.retry_after(4), None, "nothing measured yet");
        turnover.record(Duration::from_millis(800));
        assert_eq!(turnover.retry_after(4), Some(Duration::from_millis(200)));
        // Faster requests pull the mean down an eighth of the way each.
        turnover.record(Duration::ZERO);
        assert_eq!(turnover.retry_after(1), Some(Duration::from_millis(700)));
    }
}
