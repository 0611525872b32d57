//! Draining: after a shutdown signal new calls are refused while the calls already running get
//! until a deadline to finish.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Shared by everything that serves calls in one process (gRPC, HTTP).
#[derive(Clone, Default)]
pub struct Drain {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
    /// Set when the drain's time is up and the calls still running are about to be cut.
    cut: AtomicBool,
    cutting: Notify,
}

/// One running call; dropping it lets the drain finish.
pub struct InFlight {
    inner: Arc<Inner>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.inner.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

impl Drain {
    /// Counts a new call in, or `None` when draining (the call is to be refused).
    pub fn enter(&self) -> Option<InFlight> {
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight {
            inner: self.inner.clone(),
        };
        (!self.inner.draining.load(Ordering::Acquire)).then_some(guard)
    }

    /// Whether new calls are refused.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Refuses new calls from now on and waits until the running ones have finished or `limit`
    /// has passed (then [`Drain::cut_off`] completes); says whether they all finished.
    pub async fn drain(&self, limit: Duration) -> bool {
        self.inner.draining.store(true, Ordering::Release);
        let idle = async {
            loop {
                // Registered before the count is read, so a call ending in between still wakes it.
                let notified = self.inner.idle.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.inner.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let finished = tokio::time::timeout(limit, idle).await.is_ok();
        if !finished {
            self.inner.cut.store(true, Ordering::Release);
            self.inner.cutting.notify_waiters();
        }
        finished
    }

    /// Completes when the drain's time is up: long streams wait on it to end with a last
    /// UNAVAILABLE message instead of a broken connection.
    pub async fn cut_off(&self) {
        loop {
            let notified = self.inner.cutting.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.cut.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Calls running now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }
}
