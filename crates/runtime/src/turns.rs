//! A bounded turn for heavy work beside a service's main path: at most `concurrent` jobs run at
//! once on the blocking pool, at most `max_waiting` wait for a turn, and any more are refused at
//! once (RESOURCE_EXHAUSTED), so a burst of expensive calls can neither pile up memory nor crowd
//! out the work that matters more.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

/// Why a job did not run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TurnError {
    /// Too many jobs are already waiting; the message says how many and what for.
    #[error("{0}")]
    Full(String),
    /// The service is shutting down (the runtime is going away).
    #[error("the service is shutting down")]
    Closed,
}

/// See the module documentation. Cloning shares the turns.
#[derive(Clone)]
pub struct Turns {
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    /// What the jobs are, for the refusal: "instrument requests", "n-gram steps".
    what: &'static str,
}

impl Turns {
    pub fn new(concurrent: usize, max_waiting: usize, what: &'static str) -> Self {
        Turns {
            permits: Arc::new(Semaphore::new(concurrent.max(1))),
            waiting: Arc::default(),
            max_waiting,
            what,
        }
    }

    /// Runs `work` on the blocking pool when a turn is free. It runs to the end even if the
    /// caller goes away, holding its turn, so that what it changes is never left half done.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, TurnError> {
        /// Counts a caller waiting for its turn until it has it or goes away.
        struct InLine<'a>(&'a AtomicUsize);
        impl Drop for InLine<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let in_line = InLine(&self.waiting);
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            return Err(TurnError::Full(format!(
                "{} {} are already waiting (the limit); retry with backoff",
                self.max_waiting, self.what
            )));
        }
        let turn = self.permits.clone().acquire_owned().await;
        drop(in_line);
        let turn = turn.map_err(|_| TurnError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            work()
        })
        .await
        .map_err(|_| TurnError::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_past_the_waiting_bound_and_runs_the_rest() {
        let turns = Turns::new(1, 1, "test jobs");
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let (started, is_started) = tokio::sync::oneshot::channel();
        // The first job takes the only turn and holds it until told to finish.
        let first = tokio::spawn({
            let turns = turns.clone();
            async move {
                turns
                    .run(move || {
                        let _ = started.send(());
                        held.recv().ok();
                        1
                    })
                    .await
            }
        });
        is_started.await.unwrap();
        // The second waits for the turn; the third finds the waiting room full.
        let second = tokio::spawn({
            let turns = turns.clone();
            async move { turns.run(|| 2).await }
        });
        while turns.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            turns.run(|| 3).await,
            Err(TurnError::Full(
                "1 test jobs are already waiting (the limit); retry with backoff".into()
            ))
        );
        hold.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(1));
        assert_eq!(second.await.unwrap(), Ok(2));
    }
}
