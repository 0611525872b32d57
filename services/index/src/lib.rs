//! The index service: collections of embedded points and searching them, in one of two
//! backends. By default SQLite is the store of record (one file in `--data-dir`, every write one
//! transaction, answered after its commit) and the search structures, an exact flat scan and an
//! HNSW graph, live in memory, rebuilt from the rows at start-up: one stateful replica. With
//! `--postgres`, PostgreSQL + pgvector stores and searches everything and the index keeps only
//! connections, so any number of replicas can share the database. Texts are embedded by the
//! embedder with the collection's model, so points and queries are always embedded alike.
//!
//! Layers, top down: `service` (gRPC, thin) → `convert` (validation into `types`) →
//! [`backend::Backend`] → either `embedded` (SQLite + `indexes` → the search structures,
//! `search::Exact` and `hnsw::Hnsw`, over `rows`) or `pgvector` (SQL).

#![forbid(unsafe_code)]

pub mod backend;
pub mod config;
mod convert;
pub mod embedded;
mod embedder;
mod error;
pub mod filter;
pub mod hnsw;
pub mod indexes;
pub mod kernels;
pub mod pgvector;
pub mod rows;
pub mod search;
mod service;
pub mod types;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use oneword_proto::index::v1::collections_server::CollectionsServer;
use oneword_runtime::{Listeners, Metrics, Server, Turns};
use tonic::codec::CompressionEncoding;

pub use config::Config;
/// Validation's properties, for the fuzz targets (`make fuzz`); not an API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub use convert::checks as fuzzing;
pub use error::Error;

/// Serves the index on `listeners` until `shutdown` completes; health says NOT_SERVING until
/// every collection's rows are loaded and its search structures built, or, with `--postgres`,
/// until the database answers (it is retried meanwhile; a refusal that retrying cannot mend,
/// such as a wrong password or no pgvector, stops the index with the reason).
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    let metrics = Metrics::new("index");
    let settings = config.server.settings();
    let embedder = embedder::Embedder::new(
        &config.embedder,
        Duration::from_secs(config.connect_timeout_secs),
        &settings.service_token,
    )?;
    let load = {
        let (config, metrics) = (config.clone(), metrics.clone());
        async move {
            let backend: Arc<dyn backend::Backend> = match config.postgres.config() {
                Some(postgres) => Arc::new(connect(postgres.clone(), config.workers).await?),
                None => {
                    let dir = config.data_dir.clone();
                    let policy = indexes::Policy {
                        hnsw_threshold: config.hnsw_threshold,
                    };
                    let backend =
                        tokio::task::spawn_blocking(move || embedded::Embedded::open(&dir, policy))
                            .await
                            .context("the loading thread failed")??;
                    let backend = Arc::new(backend);
                    watch(&metrics, backend.clone());
                    backend
                }
            };
            let service = service::IndexService {
                backend,
                embedder,
                turns: Turns::new(config.workers, config.queue_capacity, "index calls"),
                limits: convert::Limits {
                    max_points: config.max_points,
                    max_payload_bytes: config.max_payload_bytes,
                    max_top_k: config.max_top_k,
                    max_search_batch: config.max_search_batch,
                },
            };
            Ok(CollectionsServer::new(service)
                .max_decoding_message_size(config.max_message_bytes)
                .max_encoding_message_size(config.max_message_bytes)
                .accept_compressed(CompressionEncoding::Gzip))
        }
    };
    let server = Server {
        listeners,
        settings,
        metrics,
        drain: Default::default(),
    };
    server.serve(load, None, shutdown).await?;
    Ok(())
}

/// Connects to PostgreSQL with a pool of `connections` (one per worker, so that a call never
/// waits for one) and creates the layout, retrying while the server cannot be reached.
async fn connect(
    postgres: ::postgres::Config,
    connections: usize,
) -> anyhow::Result<pgvector::Pgvector> {
    let at = config::redacted(&postgres);
    let mut delay = Duration::from_millis(100);
    loop {
        let config = postgres.clone();
        let opened =
            tokio::task::spawn_blocking(move || pgvector::Pgvector::open(config, connections))
                .await
                .context("the connecting thread failed")?;
        match opened {
            Ok(backend) => {
                tracing::info!(postgres = %at, "connected to PostgreSQL");
                return Ok(backend);
            }
            Err(Error::Postgres(why)) => {
                tracing::warn!(postgres = %at, "PostgreSQL cannot be reached yet, retrying in {delay:?}: {why}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => anyhow::bail!("PostgreSQL at {at} cannot be used: {e}"),
        }
    }
}

/// Gauges of what the embedded index holds, read at each scrape. With `--postgres` there are
/// none: the replicas share the database, whose size is PostgreSQL's to report
/// (`pg_stat_user_tables`), and a scrape must not wait on it.
fn watch(metrics: &Metrics, backend: Arc<embedded::Embedded>) {
    let points = metrics.int_gauge("index_points", "Points stored, in every collection.");
    let collections = metrics.int_gauge("index_collections", "Collections.");
    metrics.on_scrape(move || {
        use backend::Backend as _;
        points.set(backend.total_points() as i64);
        collections.set(backend.list().map_or(0, |l| l.len() as i64));
    });
}
