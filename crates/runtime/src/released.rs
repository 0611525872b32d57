//! Session ids released before any session had them, remembered for a while, by the backends
//! that keep sessions (the decoder and the n-gram baseline).
//!
//! A caller that gives up drops its call and releases the sessions the call would have created.
//! The two travel as separate gRPC calls whose handlers run concurrently, so the release can
//! reach the sessions first; the step or fork that follows would then create a session that
//! nobody will ever release (it would hold its memory until its TTL). Remembering such ids lets
//! the late call be refused instead. Callers name sessions afresh for each attempt (the gateway
//! adds a nonce to every generation's names), so a remembered id is never one a caller means to
//! create again.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a released id is remembered: far longer than a call takes to reach the model
/// thread once its handler has run.
const REMEMBERED_FOR: Duration = Duration::from_secs(10);
/// Most ids remembered at once: a bound on what a caller releasing made-up ids can cost.
const MOST: usize = 4096;

#[derive(Default)]
pub struct Released {
    /// In the order noted; an entry whose id was taken (or noted again later) is stale.
    order: VecDeque<(String, Instant)>,
    /// Each remembered id and when it was noted.
    ids: HashMap<String, Instant>,
}

impl Released {
    /// Remembers `id`, released at `now` while no session had it.
    pub fn note(&mut self, id: &str, now: Instant) {
        self.forget_before(now);
        self.ids.insert(id.to_string(), now);
        self.order.push_back((id.to_string(), now));
        while self.order.len() > MOST {
            self.forget_oldest();
        }
    }

    /// Whether `id` was released lately before it existed; a call creating it is stale. The id
    /// is forgotten then: the stale call was the one creation it was held against.
    pub fn take(&mut self, id: &str, now: Instant) -> bool {
        self.forget_before(now);
        self.ids.remove(id).is_some()
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some((_, at)) = self.order.front() {
            if now.saturating_duration_since(*at) < REMEMBERED_FOR {
                return;
            }
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((id, at)) = self.order.pop_front() {
            // Only the entry that noted it last forgets it.
            if self.ids.get(&id) == Some(&at) {
                self.ids.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_held_once_and_for_a_while() {
        let start = Instant::now();
        let mut released = Released::default();
        released.note("a", start);
        released.note("b", start);
        assert!(released.take("a", start + Duration::from_secs(1)));
        assert!(
            !released.take("a", start + Duration::from_secs(1)),
            "taken once"
        );
        assert!(!released.take("b", start + REMEMBERED_FOR), "forgotten");
    }

    #[test]
    fn an_id_noted_again_is_held_from_its_last_note() {
        let start = Instant::now();
        let mut released = Released::default();
        released.note("a", start);
        assert!(released.take("a", start));
        let later = start + Duration::from_secs(5);
        released.note("a", later);
        // The first note's time is up, the second's is not.
        assert!(released.take("a", start + REMEMBERED_FOR));
    }

    #[test]
    fn at_most_a_bounded_number_of_ids_is_held() {
        let now = Instant::now();
        let mut released = Released::default();
        for i in 0..MOST + 10 {
            released.note(&i.to_string(), now);
        }
        assert_eq!(released.order.len(), MOST);
        assert!(!released.take("0", now), "the oldest went first");
        assert!(released.take(&(MOST + 9).to_string(), now));
    }
}
