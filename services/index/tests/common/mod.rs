//! What the index's integration tests share: an index started in-process on free loopback
//! ports, and helpers to build requests and compute the expected answers by brute force.

#![allow(dead_code)] // each test binary uses its own share of these

pub mod pg;

use std::time::Duration;

use oneword_index::Config;
use oneword_proto::index::v1 as pb;
use oneword_runtime::Listeners;
use pb::collections_client::CollectionsClient;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

pub type Client = CollectionsClient<Channel>;

/// An index served in-process; stopped when dropped.
pub struct Index {
    pub client: Client,
    pub address: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for Index {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Index {
    /// Starts an index with `config` and waits until its health check says SERVING.
    pub async fn start(config: Config) -> Index {
        let index = Index::spawn(config).await;
        wait_serving(index.channel(), &index.task).await;
        index
    }

    /// Starts an index with `config`, without waiting for it to be ready.
    pub async fn spawn(mut config: Config) -> Index {
        config.server.drain_secs = 0;
        let listeners = Listeners::loopback(false)
            .await
            .expect("free loopback ports");
        let address = format!("http://{}", listeners.grpc.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(oneword_index::run(config, listeners, async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(address.clone())
            .unwrap()
            .connect_lazy();
        Index {
            client: CollectionsClient::new(channel).max_decoding_message_size(64 << 20),
            address,
            stop: Some(stop),
            task,
        }
    }

    fn channel(&self) -> Channel {
        Channel::from_shared(self.address.clone())
            .unwrap()
            .connect_lazy()
    }

    /// What its health check says now.
    pub async fn health(&self) -> ServingStatus {
        let status = HealthClient::new(self.channel())
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("the health service answers")
            .into_inner()
            .status;
        ServingStatus::try_from(status).expect("a known status")
    }

    /// Waits until its health check says SERVING.
    pub async fn serving(&self) {
        wait_serving(self.channel(), &self.task).await;
    }

    /// Stops the index and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .expect("the index task does not panic")
            .expect("the index stops cleanly");
    }
}

/// Polls the health check until SERVING (start-up is quick, but CI machines are shared).
pub async fn wait_serving(channel: Channel, task: &tokio::task::JoinHandle<anyhow::Result<()>>) {
    let mut health = HealthClient::new(channel);
    for _ in 0..600 {
        assert!(!task.is_finished(), "the index exited while starting");
        let status = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        if status.is_ok_and(|s| s.into_inner().status == ServingStatus::Serving as i32) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the index did not become SERVING within 6 s");
}

/// A vector point with a JSON payload.
pub fn point(id: impl Into<String>, vector: &[f32], payload: serde_json::Value) -> pb::Point {
    pb::Point {
        id: id.into(),
        content: Some(pb::point::Content::Vector(pb::Vector {
            values: vector.to_vec(),
        })),
        payload: payload.to_string(),
    }
}

/// A search by vector with `top_k`, payloads included.
pub fn by_vector(collection: &str, vector: &[f32], top_k: u32) -> pb::SearchRequest {
    pb::SearchRequest {
        collection: collection.into(),
        query: Some(pb::search_request::Query::Vector(pb::Vector {
            values: vector.to_vec(),
        })),
        top_k: Some(top_k),
        with_payload: true,
        ..Default::default()
    }
}

/// The ids of the hits, in order.
/// A Delete of the points `ids`.
pub fn delete_ids(
    collection: &str,
    ids: impl IntoIterator<Item = impl Into<String>>,
) -> pb::DeleteRequest {
    pb::DeleteRequest {
        collection: collection.into(),
        selector: Some(pb::delete_request::Selector::Ids(pb::PointIds {
            ids: ids.into_iter().map(Into::into).collect(),
        })),
    }
}

pub fn ids(hits: &[pb::Record]) -> Vec<String> {
    hits.iter().map(|h| h.id.clone()).collect()
}

/// `n` vectors of `dim` values drawn around `clusters` Gaussian centres (all from `seed`), as
/// one row-major matrix.
pub fn clustered(n: usize, dim: usize, clusters: usize, spread: f32, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..clusters * dim).map(|_| gaussian(&mut rng)).collect();
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = rng.random_range(0..clusters);
        for j in 0..dim {
            out.push(centres[c * dim + j] + spread * gaussian(&mut rng));
        }
    }
    out
}

/// A standard normal draw (Box–Muller).
pub fn gaussian(rng: &mut impl Rng) -> f32 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

/// How a brute-force answer scores: cosine, dot or L2, computed in f64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Cosine,
    Dot,
    L2,
}

impl Metric {
    pub fn pb(self) -> i32 {
        let metric = match self {
            Metric::Cosine => pb::Metric::Cosine,
            Metric::Dot => pb::Metric::Dot,
            Metric::L2 => pb::Metric::L2,
        };
        metric as i32
    }

    pub fn score(self, a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        match self {
            Metric::Cosine => dot / (norm(a) * norm(b)),
            Metric::Dot => dot,
            Metric::L2 => a
                .iter()
                .zip(b)
                .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
                .sum::<f64>()
                .sqrt(),
        }
    }

    /// The best `k` of `(id, vector)` for `query`, best first, equal scores by id.
    pub fn brute_force<'a>(
        self,
        points: impl IntoIterator<Item = (&'a str, &'a [f32])>,
        query: &[f32],
        k: usize,
    ) -> Vec<(String, f64)> {
        let mut scored: Vec<(String, f64)> = points
            .into_iter()
            .map(|(id, v)| (id.to_string(), self.score(query, v)))
            .collect();
        scored.sort_by(|a, b| {
            let by_score = if self == Metric::L2 {
                a.1.total_cmp(&b.1)
            } else {
                b.1.total_cmp(&a.1)
            };
            by_score.then_with(|| a.0.cmp(&b.0))
        });
        scored.truncate(k);
        scored
    }
}
