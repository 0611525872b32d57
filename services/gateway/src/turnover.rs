//! How fast the requests in flight turn over, for the delay an overload refusal asks a client to
//! wait: with all N permits taken and requests lasting T on average, one frees about every T / N,
//! and a client refused now is behind about as many others as were refused lately, so it is asked
//! to wait that many turns: the hint spreads a crowd out instead of sending it back at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

/// A moving mean of how long admitted requests held their permit.
#[derive(Default)]
pub struct Turnover {
    /// Nanoseconds; 0 until the first request ends.
    mean_ns: AtomicU64,
    /// Refusals lately: one more per refusal, an eighth less per request that ends.
    contenders: AtomicU64,
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
        let contenders = self.contenders.load(Ordering::Relaxed);
        self.contenders
            .store(contenders - contenders / 8, Ordering::Relaxed);
    }

    /// A refused request's delay: its turn among the recent contenders for the next of `slots`
    /// permits to free; `None` before any request has ended.
    pub fn refused(&self, slots: usize) -> Option<Duration> {
        let contenders = self.contenders.fetch_add(1, Ordering::Relaxed);
        let mean = self.mean_ns.load(Ordering::Relaxed);
        let turn = mean / slots.max(1) as u64;
        (mean > 0).then(|| Duration::from_nanos(turn.saturating_mul(contenders + 1)))
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
    fn the_delay_is_a_turn_of_the_slots_per_recent_contender() {
        let turnover = Turnover::default();
        assert_eq!(turnover.refused(4), None, "nothing measured yet");
        turnover.record(Duration::from_millis(800));
        // A turn is 800 / 4 ms; the refusal above is one contender ahead, so the next refused
        // waits two turns, the one after it three.
        assert_eq!(turnover.refused(4), Some(Duration::from_millis(400)));
        assert_eq!(turnover.refused(4), Some(Duration::from_millis(600)));
        // A request ending pulls the mean an eighth of the way and forgets an eighth of the
        // contenders (3 refused so far, rounded down: 3 - 0).
        turnover.record(Duration::ZERO);
        assert_eq!(turnover.refused(1), Some(Duration::from_millis(700 * 4)));
    }
}
