//! The embedder served in-process on 127.0.0.1:0 and called through the generated client, on the
//! tiny random GPT-2 (the real vocabulary and context, width 64). Answers are checked against the
//! checkpoint's `wte` and `wpe` read independently from `model.safetensors`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use candle_core::Device;
use oneword_embedder::Config;
use oneword_proto::common::v1 as common;
use oneword_proto::embedder::v1 as pb;
use oneword_proto::embedder::v1::embedder_client::EmbedderClient;
use oneword_runtime::tensor::wire_to_f32;
use oneword_runtime::Listeners;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_types::StatusExt;

const VOCAB: usize = 50257;
const CONTEXT: usize = 1024;
const WIDTH: usize = 64;

/// The tiny random GPT-2, written once per test process.
fn tiny_model() -> &'static Path {
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
struct Reference {
    wte: Vec<Vec<f32>>,
    wpe: Vec<Vec<f32>>,
}

fn reference() -> &'static Reference {
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
struct Server {
    client: EmbedderClient<Channel>,
    channel: Channel,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Server {
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

    async fn embed(&self, ids: &[u32], positions: &[u32]) -> Result<common::Tensor, tonic::Status> {
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

    async fn token_vectors(&self, ids: &[u32]) -> Result<common::Tensor, tonic::Status> {
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

    async fn info(&self) -> pb::InfoResponse {
        self.client
            .clone()
            .info(pb::InfoRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// Polls the health check until SERVING (loading takes a moment), for at most a minute; returns
/// the connected channel.
async fn wait_serving(address: &str, task: &JoinHandle<anyhow::Result<()>>) -> Channel {
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
fn assert_rows(wire: &common::Tensor, dtype: common::Dtype, expected: &[Vec<f32>], tolerance: f32) {
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

fn embedded(ids: &[u32], positions: &[u32]) -> Vec<Vec<f32>> {
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

fn token_rows(ids: &[u32]) -> Vec<Vec<f32>> {
    ids.iter()
        .map(|&id| reference().wte[id as usize].clone())
        .collect()
}

// Includes the last id (50256, `<|endoftext|>`), the last position (1023) and repeats.
const IDS: [u32; 6] = [0, 15496, 50256, 11, 50256, 464];
const POSITIONS: [u32; 6] = [0, 1, 1023, 512, 0, 1023];

#[tokio::test]
async fn embed_is_token_plus_position_embedding() {
    let server = Server::start(|_| {}).await;
    let wire = server.embed(&IDS, &POSITIONS).await.unwrap();
    // f32 on the CPU: one addition per element, so the sums are exact.
    assert_rows(&wire, common::Dtype::F32, &embedded(&IDS, &POSITIONS), 0.0);
    server.stop().await;
}

#[tokio::test]
async fn token_vectors_are_rows_of_wte() {
    let server = Server::start(|_| {}).await;
    let wire = server.token_vectors(&IDS).await.unwrap();
    assert_rows(&wire, common::Dtype::F32, &token_rows(&IDS), 0.0);
    server.stop().await;
}

#[tokio::test]
async fn a_half_precision_model_embeds_in_f16_and_still_gives_f32_vectors() {
    let server = Server::start(|c| c.dtype = "f16".into()).await;
    assert_eq!(
        server.info().await.model.unwrap().dtype,
        common::Dtype::F16 as i32
    );
    // f16 keeps 11 significant bits: each of the two weights and their sum is rounded once.
    let wire = server.embed(&IDS, &POSITIONS).await.unwrap();
    assert_rows(&wire, common::Dtype::F16, &embedded(&IDS, &POSITIONS), 2e-3);
    let wire = server.token_vectors(&IDS).await.unwrap();
    assert_rows(&wire, common::Dtype::F32, &token_rows(&IDS), 1e-3);
    server.stop().await;
}

#[tokio::test]
async fn info_describes_the_model_and_the_batch_limit() {
    let server = Server::start(|_| {}).await;
    let info = server.info().await;
    assert_eq!(
        info.model.unwrap(),
        common::ModelInfo {
            model_id: tiny_model().to_str().unwrap().to_string(),
            model_type: "gpt2".into(),
            vocab_size: VOCAB as u32,
            context_length: CONTEXT as u32,
            hidden_size: WIDTH as u32,
            num_layers: 2,
            num_heads: 4,
            eos_token_id: 50256,
            device: "cpu".into(),
            dtype: common::Dtype::F32 as i32,
        }
    );
    assert_eq!(info.max_batch_tokens, 8192);
    server.stop().await;
}

#[tokio::test]
async fn health_is_serving_for_the_server_and_the_embedder() {
    let server = Server::start(|_| {}).await;
    let mut health = HealthClient::new(server.channel.clone());
    for service in ["", "oneword.embedder.v1.Embedder"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap();
        assert_eq!(
            response.into_inner().status,
            ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    server.stop().await;
}

/// Asserts INVALID_ARGUMENT whose message and `BadRequest` violation name `field` and contain
/// every one of `mentions`.
fn assert_invalid<T: std::fmt::Debug>(
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

#[tokio::test]
async fn every_bad_input_is_invalid_argument_naming_the_field() {
    let server = Server::start(|_| {}).await;
    assert_invalid(
        server.embed(&[0, 1, 50300], &[0, 1, 2]).await,
        "ids[2]",
        &["`ids[2]` is 50300, outside the vocabulary of 50257 tokens"],
    );
    assert_invalid(
        server.embed(&[0, 50257], &[0, 1]).await,
        "ids[1]",
        &["50257 tokens"],
    );
    assert_invalid(
        server.embed(&[0, 1, 2], &[0, 1024, 1]).await,
        "positions[1]",
        &["`positions[1]` is 1024, outside the context of 1024 positions"],
    );
    assert_invalid(
        server.embed(&[0, 1, 2], &[0, 1]).await,
        "positions",
        &["`ids`", "length 3", "length 2"],
    );
    assert_invalid(
        server.embed(&[0], &[0, 1]).await,
        "positions",
        &["length 1", "length 2"],
    );
    assert_invalid(server.embed(&[], &[]).await, "ids", &["must not be empty"]);
    assert_invalid(
        server.embed(&[0; 8193], &[0; 8193]).await,
        "ids",
        &["8193", "8192"],
    );
    assert_invalid(
        server.token_vectors(&[u32::MAX]).await,
        "ids[0]",
        &["`ids[0]` is 4294967295, outside the vocabulary of 50257 tokens"],
    );
    assert_invalid(
        server.token_vectors(&[]).await,
        "ids",
        &["must not be empty"],
    );
    assert_invalid(
        server.token_vectors(&[7; 8193]).await,
        "ids",
        &["8193", "8192"],
    );
    // The server is unharmed: the largest valid request still works.
    let wire = server.embed(&[50256; 8192], &[1023; 8192]).await.unwrap();
    assert_eq!(wire.shape, vec![8192, WIDTH as u32]);
    server.stop().await;
}

#[tokio::test]
async fn the_batch_limit_shrinks_to_what_fits_in_a_message() {
    let server = Server::start(|c| c.max_message_bytes = 64 << 10).await;
    // (64 KiB - 1 KiB of room for the rest of the message) / (64 f32 values of 4 bytes).
    let fitting = ((64 << 10) - 1024) / (WIDTH * 4);
    assert_eq!(server.info().await.max_batch_tokens as usize, fitting);
    let ids = vec![50256; fitting];
    let positions: Vec<u32> = (0..fitting as u32).collect();
    let wire = server.token_vectors(&ids).await.unwrap();
    assert_rows(&wire, common::Dtype::F32, &token_rows(&ids), 0.0);
    let wire = server.embed(&ids, &positions).await.unwrap();
    assert_rows(&wire, common::Dtype::F32, &embedded(&ids, &positions), 0.0);
    let too_many = fitting.to_string();
    assert_invalid(
        server.token_vectors(&vec![0; fitting + 1]).await,
        "ids",
        &[&too_many],
    );
    server.stop().await;
}

#[tokio::test]
async fn a_missing_model_fails_to_start() {
    let listener = Listeners::loopback(false).await.unwrap();
    let missing = tiny_model().join("no-such-model");
    let error = oneword_embedder::run(
        Config::for_model(missing.to_str().unwrap()),
        listener,
        std::future::pending(),
    )
    .await
    .expect_err("no model there");
    assert!(error.to_string().contains("no-such-model"), "{error:#}");
}
