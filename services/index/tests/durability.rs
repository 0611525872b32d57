//! Durability: the real `oneword-index` binary is sent a stream of upserts from several
//! clients and killed with SIGKILL at a random moment, 20 times over one data directory. After
//! every restart, every acknowledged point is there with its vector and payload, every batch is
//! there whole or not at all, and nothing else is.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::{point, Client};
use oneword_proto::index::v1 as pb;
use pb::collections_client::CollectionsClient;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const TRIALS: usize = 20;
const WRITERS: usize = 4;
const BATCH: usize = 8;
const DIM: usize = 8;

/// One running `oneword-index` process.
struct Process {
    child: Child,
    client: Client,
}

impl Process {
    /// Starts the binary on free ports over `dir` and waits until it serves.
    async fn start(dir: &std::path::Path) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_oneword-index"))
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--embedder", "", "--log-format", "json"])
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the oneword-index binary starts");
        // The port comes from the log line saying where it listens; the rest of the log is
        // drained, so that a full pipe never blocks the server.
        let stderr = child.stderr.take().unwrap();
        let (found, address) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if event["fields"]["message"] == "listening; loading" {
                    let _ = found.send(event["fields"]["addr"].as_str().unwrap_or("").to_string());
                }
            }
        });
        let address = address
            .recv_timeout(Duration::from_secs(30))
            .expect("the index logs the address it listens on");
        let channel = Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect_lazy();
        let mut health = HealthClient::new(channel.clone());
        for _ in 0..1000 {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the index exited while starting"
            );
            let status = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if status.is_ok_and(|s| s.into_inner().status == ServingStatus::Serving as i32) {
                return Process {
                    child,
                    client: CollectionsClient::new(channel),
                };
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the index did not become SERVING within 10 s");
    }

    /// SIGKILL, and waits until the process is gone.
    fn kill(self) {
        drop(self);
    }
}

/// A process is killed whenever it is let go, also when a failed assertion unwinds the test.
impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A batch of points, all of whose fields follow from its coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Batch {
    trial: usize,
    writer: usize,
    number: usize,
}

impl Batch {
    fn ids(self) -> Vec<String> {
        (0..BATCH)
            .map(|j| format!("t{}-w{}-b{}-{j}", self.trial, self.writer, self.number))
            .collect()
    }

    fn vector(self, j: usize) -> Vec<f32> {
        (0..DIM)
            .map(|d| {
                (self.trial * 1000 + self.writer * 100 + self.number + j * 7 + d) as f32 * 0.25
            })
            .collect()
    }

    fn payload(self, j: usize) -> serde_json::Value {
        json!({"trial": self.trial, "writer": self.writer, "batch": self.number, "j": j})
    }

    fn points(self) -> Vec<pb::Point> {
        let ids = self.ids();
        (0..BATCH)
            .map(|j| point(ids[j].clone(), &self.vector(j), self.payload(j)))
            .collect()
    }
}

/// What the writers sent: batches acknowledged, and batches whose answer never came.
#[derive(Default)]
struct Sent {
    acknowledged: Vec<Batch>,
    unknown: Vec<Batch>,
}

/// Streams batches from `WRITERS` clients until `kill_after` are acknowledged, then kills the
/// process while the others are still in flight.
async fn write_until_killed(process: Process, trial: usize, kill_after: usize) -> Sent {
    let sent = Arc::new(Mutex::new(Sent::default()));
    let acked = Arc::new(AtomicUsize::new(0));
    let (enough, mut reached) = tokio::sync::mpsc::channel::<()>(1);
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (mut client, sent, acked, enough) = (
                process.client.clone(),
                sent.clone(),
                acked.clone(),
                enough.clone(),
            );
            tokio::spawn(async move {
                for number in 0.. {
                    let batch = Batch {
                        trial,
                        writer,
                        number,
                    };
                    let request = pb::UpsertRequest {
                        collection: "d".into(),
                        points: batch.points(),
                    };
                    match client.upsert(request).await {
                        Ok(_) => {
                            sent.lock().unwrap().acknowledged.push(batch);
                            if acked.fetch_add(1, Ordering::SeqCst) + 1 >= kill_after {
                                let _ = enough.try_send(());
                            }
                        }
                        Err(_) => {
                            sent.lock().unwrap().unknown.push(batch);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    reached.recv().await;
    process.kill();
    for writer in writers {
        writer.await.unwrap();
    }
    Arc::try_unwrap(sent).ok().unwrap().into_inner().unwrap()
}

/// Which of `batch`'s points are stored, checking each one's vector and payload.
async fn stored(client: &mut Client, batch: Batch) -> usize {
    let points = client
        .retrieve(pb::RetrieveRequest {
            collection: "d".into(),
            ids: batch.ids(),
            with_payload: true,
            with_vector: true,
        })
        .await
        .unwrap()
        .into_inner()
        .points;
    for p in &points {
        let j = batch.ids().iter().position(|id| *id == p.id).unwrap();
        assert_eq!(p.vector, batch.vector(j), "{} has its vector", p.id);
        let payload: serde_json::Value = serde_json::from_str(&p.payload).unwrap();
        assert_eq!(payload, batch.payload(j), "{} has its payload", p.id);
    }
    points.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_point_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = Process::start(dir.path()).await;
    process
        .client
        .create(pb::CreateRequest {
            name: "d".into(),
            dimension: Some(DIM as u32),
            metric: pb::Metric::L2 as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let (mut acknowledged, mut unknown) = (Vec::new(), Vec::new());
    let mut expected_points = 0;
    for trial in 0..TRIALS {
        let sent = write_until_killed(process, trial, rng.random_range(1..40)).await;
        acknowledged.extend(sent.acknowledged);
        unknown.extend(sent.unknown);
        process = Process::start(dir.path()).await;
        let client = &mut process.client;
        let mut present = 0;
        for &batch in &acknowledged {
            assert_eq!(
                stored(client, batch).await,
                BATCH,
                "trial {trial}: {batch:?} was acknowledged"
            );
            present += BATCH;
        }
        // A batch whose answer was lost may or may not have committed, but never in part.
        for &batch in &unknown {
            let n = stored(client, batch).await;
            assert!(
                n == 0 || n == BATCH,
                "trial {trial}: {batch:?} is half-written ({n} points)"
            );
            present += n;
        }
        let points = client
            .get(pb::CollectionRef { name: "d".into() })
            .await
            .unwrap()
            .into_inner()
            .points;
        assert_eq!(
            points, present as u64,
            "trial {trial}: nothing but what was sent"
        );
        expected_points = present;
    }
    let lost_answers = unknown.len();
    println!(
        "{} batches acknowledged, {lost_answers} in flight at a kill, {expected_points} points stored",
        acknowledged.len()
    );
    assert!(
        expected_points >= TRIALS * BATCH,
        "the trials wrote something"
    );
    process.kill();
}
