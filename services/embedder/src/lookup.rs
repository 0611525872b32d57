//! Running embedding lookups off the async workers. A lookup is cheap arithmetic but can be large
//! (8,192 rows of GPT-2 XL are 52 MB in f32, and packing them for the wire copies them again), so
//! each one runs on tokio's blocking pool, at most one per core at a time: further requests wait
//! for a slot instead of piling up threads and buffers. Searches over the whole vocabulary
//! (Nearest) and word maps (Words) share the same slots.

use std::sync::Arc;

use oneword_model::Embeddings;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::nearest::NearestIndex;
use crate::Error;

/// What lookups read: the embedding module and the similarity index over its token table.
pub struct Tables {
    pub embeddings: Embeddings,
    pub nearest: NearestIndex,
}

/// The loaded tables and the slots for running lookups on them.
pub struct Lookups {
    tables: Arc<Tables>,
    slots: Arc<Semaphore>,
}

impl Lookups {
    /// Serves `tables` with at most `concurrency` lookups running at once.
    pub fn new(tables: Tables, concurrency: usize) -> Self {
        Lookups {
            tables: Arc::new(tables),
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Runs `work` on the blocking pool once a slot is free, in the caller's tracing span.
    pub async fn run<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Tables) -> Result<T, Error> + Send + 'static,
    {
        let span = tracing::Span::current();
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .instrument(span.clone())
            .await
            .expect("the lookup semaphore is never closed, this is a bug");
        let tables = Arc::clone(&self.tables);
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            span.in_scope(|| work(&tables))
        })
        .await?
    }
}
