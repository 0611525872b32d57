//! Where time is read for the rules that depend on it (session TTLs, how long a step may wait):
//! the system's monotonic clock when serving, a clock a test moves by hand otherwise, so that
//! such rules are tested without sleeping and whatever the machine's speed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// See the module documentation. Cloning shares the clock.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// `None`: the system clock; `Some`: the time a test has set.
    manual: Option<Arc<Mutex<Instant>>>,
}

impl Clock {
    /// The system's monotonic clock.
    pub fn system() -> Self {
        Clock::default()
    }

    /// A clock that stands still until [`Clock::advance`] moves it.
    pub fn manual() -> Self {
        Clock {
            manual: Some(Arc::new(Mutex::new(Instant::now()))),
        }
    }

    /// The time now.
    pub fn now(&self) -> Instant {
        match &self.manual {
            None => Instant::now(),
            Some(at) => *at.lock().expect("the clock's lock is never poisoned"),
        }
    }

    /// Moves a manual clock forward (a system clock moves by itself; this is a bug there).
    pub fn advance(&self, by: Duration) {
        let at = self
            .manual
            .as_ref()
            .expect("only a manual clock is advanced by hand; this is a bug");
        *at.lock().expect("the clock's lock is never poisoned") += by;
    }

    /// Time since `earlier`, by this clock.
    pub fn since(&self, earlier: Instant) -> Duration {
        self.now().saturating_duration_since(earlier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = Clock::manual();
        let start = clock.now();
        assert_eq!(clock.since(start), Duration::ZERO);
        clock.advance(Duration::from_secs(3));
        assert_eq!(clock.since(start), Duration::from_secs(3));
        assert_eq!(clock.clone().now(), start + Duration::from_secs(3));
    }
}
