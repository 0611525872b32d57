//! The embedder served in-process on 127.0.0.1:0 and called through the generated client, on the
//! tiny random GPT-2 (the real vocabulary and context, width 64), with the checkpoint's `wte` and
//! `wpe` read independently from `model.safetensors` to check answers against.

// Each test binary uses its own part of the harness.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use candle_core::Device;
use oneword_embedder::Config;
use oneword_proto::common::v1 as common;
use oneword_proto::embedder::v1 as pb;
use oneword_proto::embedder::v1::embedder_client::EmbedderClient;
use oneword_proto::tensor::wire_to_f32;
use oneword_runtime::Listeners;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_types::StatusExt;

pub const VOCAB: usize = 50257;
pub const CONTEXT: usize = 1024;
pub const WIDTH: usize = 64;

/// The tiny random GPT-2, written once per test process.
pub fn tiny_model() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        oneword_model::tiny::RandomCheckpoint::tiny()
            .write(dir.path(), &repo.join("tests/fixtures/gpt2-tokenizer"))
            .expect("writing the tiny model");
        dir
    })
    .path()
}

/// `wte` and `wpe` of the tiny model as rows of f32, read without the model crate's loader.
pub struct Reference {
    pub wte: Vec<Vec<f32>>,
    pub wpe: Vec<Vec<f32>>,
}

pub fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let tensors: HashMap<String, candle_core::Tensor> =
            candle_core::safetensors::load(tiny_model().join("model.safetensors"), &Device::Cpu)
                .unwrap();
        let rows = |name: &str| tensors[name].to_vec2::<f32>().unwrap();
        Reference {
            wte: rows("wte.weight"),
            wpe: rows("wpe.weight"),
        }
    })
}

/// An embedder running on this test's runtime.
pub struct Server {
    pub client: EmbedderClient<Channel>,
    pub channel: Channel,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Server {
        let listener = Listeners::loopback(false).await.unwrap();
        let address = format!("http://{}", listener.grpc.local_addr().unwrap());
        let mut config = Config::for_model(tiny_model().to_str().unwrap());
        tweak(&mut config);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(oneword_embedder::run(config, listener, async {
            let _ = stopped.await;
        }));
        let channel = wait_serving(&address, &task).await;
        let client = EmbedderClient::new(channel.clone()).max_decoding_message_size(64 << 20);
        Server {
            client,
            channel,
            stop,
            task,
        }
    }

    pub async fn embed(
        &self,
        ids: &[u32],
        positions: &[u32],
    ) -> Result<common::Tensor, tonic::Status> {
        let request = pb::EmbedRequest {
            ids: ids.to_vec(),
            positions: positions.to_vec(),
        };
        Ok(self
            .client
            .clone()
            .embed(request)
            .await?
            .into_inner()
            .embeddings
            .expect("a tensor"))
    }

    pub async fn token_vectors(&self, ids: &[u32]) -> Result<common::Tensor, tonic::Status> {
        let request = pb::TokenVectorsRequest { ids: ids.to_vec() };
        Ok(self
            .client
            .clone()
            .token_vectors(request)
            .await?
            .into_inner()
            .vectors
            .expect("a tensor"))
    }

    pub async fn embed_parts(
        &self,
        ids: &[u32],
        positions: &[u32],
    ) -> Result<pb::EmbedPartsResponse, tonic::Status> {
        let request = pb::EmbedRequest {
            ids: ids.to_vec(),
            positions: positions.to_vec(),
        };
        Ok(self.client.clone().embed_parts(request).await?.into_inner())
    }

    pub async fn words(
        &self,
        words: &[&[u32]],
        project: bool,
    ) -> Result<pb::WordsResponse, tonic::Status> {
        let words = words
            .iter()
            .map(|ids| pb::TokenGroup { ids: ids.to_vec() })
            .collect();
        let request = pb::WordsRequest { words, project };
        Ok(self.client.clone().words(request).await?.into_inner())
    }

    pub async fn nearest(
        &self,
        ids: &[u32],
        top: Option<u32>,
        include_query: bool,
    ) -> Result<pb::NearestResponse, tonic::Status> {
        let request = pb::NearestRequest {
            query: Some(pb::TokenGroup { ids: ids.to_vec() }),
            top,
            include_query,
        };
        Ok(self.client.clone().nearest(request).await?.into_inner())
    }

    pub async fn info(&self) -> pb::InfoResponse {
        self.client
            .clone()
            .info(pb::InfoRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// Polls the health check until SERVING (loading takes a moment), for at most a minute; returns
/// the connected channel.
pub async fn wait_serving(address: &str, task: &JoinHandle<anyhow::Result<()>>) -> Channel {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut backoff = Duration::from_millis(5);
    loop {
        assert!(
            !task.is_finished(),
            "the embedder at {address} exited while starting"
        );
        if let Ok(channel) = Channel::from_shared(address.to_string())
            .unwrap()
            .connect()
            .await
        {
            let request = HealthCheckRequest {
                service: String::new(),
            };
            if let Ok(response) = HealthClient::new(channel.clone()).check(request).await {
                if response.into_inner().status == ServingStatus::Serving as i32 {
                    return channel;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the embedder at {address} did not become healthy"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}

/// Asserts `wire` is an `[expected.len(), WIDTH]` tensor of `dtype` whose values are within
/// `tolerance` of `expected` (relative to the value's size, at least 1).
pub fn assert_rows(
    wire: &common::Tensor,
    dtype: common::Dtype,
    expected: &[Vec<f32>],
    tolerance: f32,
) {
    assert_eq!(wire.dtype, dtype as i32);
    assert_eq!(wire.shape, vec![expected.len() as u32, WIDTH as u32]);
    let got = wire_to_f32(wire).unwrap();
    for (row, (got, want)) in got.chunks(WIDTH).zip(expected).enumerate() {
        for (col, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tolerance * w.abs().max(1.0),
                "row {row}, column {col}: got {g}, want {w}"
            );
        }
    }
}

pub fn embedded(ids: &[u32], positions: &[u32]) -> Vec<Vec<f32>> {
    let r = reference();
    ids.iter()
        .zip(positions)
        .map(|(&id, &p)| {
            r.wte[id as usize]
                .iter()
                .zip(&r.wpe[p as usize])
                .map(|(t, p)| t + p)
                .collect()
        })
        .collect()
}

pub fn token_rows(ids: &[u32]) -> Vec<Vec<f32>> {
    ids.iter()
        .map(|&id| reference().wte[id as usize].clone())
        .collect()
}

// Includes the last id (50256, `<|endoftext|>`), the last position (1023) and repeats.
pub const IDS: [u32; 6] = [0, 15496, 50256, 11, 50256, 464];
pub const POSITIONS: [u32; 6] = [0, 1, 1023, 512, 0, 1023];

/// Asserts INVALID_ARGUMENT whose message and `BadRequest` violation name `field` and contain
/// every one of `mentions`.
pub fn assert_invalid<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    field: &str,
    mentions: &[&str],
) {
    let status = result.expect_err("an invalid request");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(&format!("`{field}`")),
        "{:?} does not name `{field}`",
        status.message()
    );
    for m in mentions {
        assert!(
            status.message().contains(m),
            "{:?} does not mention {m:?}",
            status.message()
        );
    }
    let violations = status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations;
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].field, field);
    assert_eq!(violations[0].description, status.message());
}
