//! Item 6: the real index service in this process (`oneword_index::run` on 127.0.0.1:0, a
//! temporary `--data-dir`, no embedder), driven by a gRPC client: vector upserts in batches,
//! each answered after its SQLite commit, then the time a restart takes to say SERVING again
//! with every point loaded: for an EXACT collection, and for an AUTO one past the HNSW
//! threshold, which rebuilds its graph while starting.

use std::time::{Duration, Instant};

use oneword_index::Config;
use oneword_proto::index::v1 as pb;
use oneword_runtime::Listeners;
use pb::collections_client::CollectionsClient;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::data::Matrix;

pub struct Options {
    pub points: usize,
    pub batch: usize,
    /// Also measure an AUTO collection's restart (a graph build of `points`).
    pub hnsw_restart: bool,
}

/// An index served in this process.
pub(crate) struct Running {
    address: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Starts an index on `config` and returns once its health check says SERVING, with the
    /// time that took.
    pub(crate) async fn start(mut config: Config) -> anyhow::Result<(Running, Duration)> {
        config.server.drain_secs = 0;
        let listeners = Listeners::loopback(false).await?;
        let address = format!("http://{}", listeners.grpc.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let started = Instant::now();
        let task = tokio::spawn(oneword_index::run(config, listeners, async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(address.clone())?.connect_lazy();
        let mut health = HealthClient::new(channel);
        loop {
            anyhow::ensure!(!task.is_finished(), "the index exited while starting");
            let status = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if status.is_ok_and(|s| s.into_inner().status == ServingStatus::Serving as i32) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ready = started.elapsed();
        Ok((
            Running {
                address,
                stop,
                task,
            },
            ready,
        ))
    }

    pub(crate) async fn client(&self) -> anyhow::Result<CollectionsClient<Channel>> {
        Ok(CollectionsClient::connect(self.address.clone())
            .await?
            .max_decoding_message_size(64 << 20))
    }

    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

fn config(dir: &std::path::Path, hnsw_threshold: usize) -> Config {
    let mut config = Config::for_data_dir(dir);
    config.hnsw_threshold = hnsw_threshold;
    config
}

/// Creates `name` (with `hnsw`'s parameters, or the defaults) and upserts the first `o.points`
/// rows of `base` into it in batches; returns the points per second and each batch's latency.
pub(crate) async fn fill(
    index: &Running,
    name: &str,
    kind: pb::IndexKind,
    hnsw: Option<pb::HnswParams>,
    base: &Matrix,
    o: &Options,
) -> anyhow::Result<Value> {
    let mut client = index.client().await?;
    client
        .create(pb::CreateRequest {
            name: name.into(),
            dimension: Some(base.dim as u32),
            metric: pb::Metric::Cosine as i32,
            index: kind as i32,
            hnsw,
            ..Default::default()
        })
        .await?;
    let n = o.points.min(base.rows);
    let mut batch_ms = Vec::new();
    let started = Instant::now();
    for first in (0..n).step_by(o.batch) {
        let points = (first..(first + o.batch).min(n))
            .map(|r| pb::Point {
                id: format!("{r:06}"),
                content: Some(pb::point::Content::Vector(pb::Vector {
                    values: base.row(r).to_vec(),
                })),
                payload: format!("{{\"bucket\":{}}}", r % crate::graph::BUCKETS),
            })
            .collect();
        let start = Instant::now();
        client
            .upsert(pb::UpsertRequest {
                collection: name.into(),
                points,
            })
            .await?;
        batch_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let wall = started.elapsed().as_secs_f64();
    Ok(json!({
        "collection": name,
        "kind": kind.as_str_name(),
        "points": n,
        "batch": o.batch,
        "points_per_s": n as f64 / wall,
        "batch_ms_p50": crate::data::percentile(&batch_ms, 0.5),
        "batch_ms_p99": crate::data::percentile(&batch_ms, 0.99),
    }))
}

/// Restarts the index on `dir` and checks the collection came back whole.
async fn restart(
    dir: &std::path::Path,
    hnsw_threshold: usize,
    name: &str,
    points: usize,
) -> anyhow::Result<Value> {
    let (index, ready) = Running::start(config(dir, hnsw_threshold)).await?;
    let info = index
        .client()
        .await?
        .get(pb::CollectionRef { name: name.into() })
        .await?
        .into_inner();
    index.stop().await?;
    anyhow::ensure!(
        info.points as usize == points,
        "`{name}` came back with {} points, not {points}",
        info.points
    );
    let searched_with = pb::IndexKind::try_from(info.searched_with)
        .map_or("?", |k| k.as_str_name())
        .to_string();
    eprintln!(
        "search bench: restart with {points} points in `{name}` ({searched_with}): {:.2} s",
        ready.as_secs_f64()
    );
    Ok(json!({
        "collection": name,
        "points": info.points,
        "searched_with": searched_with,
        "seconds": ready.as_secs_f64(),
    }))
}

pub async fn run(base: &Matrix, o: &Options) -> anyhow::Result<Value> {
    let n = o.points.min(base.rows);
    // An EXACT collection: upserts, then a restart.
    let dir = tempfile::tempdir()?;
    let (index, first_start) = Running::start(config(dir.path(), 50_000)).await?;
    let exact = fill(&index, "exact", pb::IndexKind::Exact, None, base, o).await?;
    eprintln!(
        "search bench: upserts into an EXACT collection: {:.0} points/s",
        crate::data::num(&exact["points_per_s"])
    );
    index.stop().await?;
    let exact_restart = restart(dir.path(), 50_000, "exact", n).await?;

    // An AUTO collection, filled while the threshold is above it (so the upserts do not build
    // the graph), then restarted with the default threshold: it builds its graph while starting.
    let mut auto = Value::Null;
    let mut auto_restart = Value::Null;
    if o.hnsw_restart {
        let dir = tempfile::tempdir()?;
        let (index, _) = Running::start(config(dir.path(), usize::MAX / 2)).await?;
        auto = fill(&index, "auto", pb::IndexKind::Auto, None, base, o).await?;
        index.stop().await?;
        auto_restart = restart(dir.path(), 50_000, "auto", n).await?;
    }
    Ok(json!({
        "system": "oneword index service (SQLite, in-process, gRPC on 127.0.0.1)",
        "first_start_s": first_start.as_secs_f64(),
        "upsert_exact": exact,
        "restart_exact": exact_restart,
        "upsert_auto": auto,
        "restart_auto": auto_restart,
        "notes": [
            "upserts: one client, one request at a time, each answered after its COMMIT (synchronous=FULL)",
            "restart: from calling oneword_index::run to the health check saying SERVING (rows loaded, structures built); the process itself is not restarted",
            "the AUTO collection is filled with --hnsw-threshold above its size, then restarted with the default 50,000, so that the restart builds its graph",
        ],
    }))
}
