//! The embedder served in-process on 127.0.0.1:0 and called through the generated client, on the
//! tiny random GPT-2 (the real vocabulary and context, width 64). Answers are checked against the
//! checkpoint's `wte` and `wpe` read independently from `model.safetensors`.

use crate::harness::*;
use oneword_embedder::Config;
use oneword_proto::common::v1 as common;
use oneword_proto::tensor::wire_to_f32;
use oneword_runtime::Listeners;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

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
    // The parts are f32 too, each rounded once; their sum is Embed's up to its f16 rounding.
    let parts = server.embed_parts(&IDS, &POSITIONS).await.unwrap();
    let (token, position) = (parts.token.unwrap(), parts.position.unwrap());
    assert_rows(&token, common::Dtype::F32, &token_rows(&IDS), 1e-3);
    assert_rows(
        &position,
        common::Dtype::F32,
        &position_rows(&POSITIONS),
        1e-3,
    );
    let embed = wire_to_f32(&server.embed(&IDS, &POSITIONS).await.unwrap()).unwrap();
    for (s, e) in sum(&token, &position).iter().zip(&embed) {
        assert!((s - e).abs() <= 1e-3 * s.abs().max(1.0), "{s} vs {e}");
    }
    server.stop().await;
}

fn position_rows(positions: &[u32]) -> Vec<Vec<f32>> {
    positions
        .iter()
        .map(|&p| reference().wpe[p as usize].clone())
        .collect()
}

/// The elementwise sum of two f32 wire tensors, flat.
fn sum(a: &common::Tensor, b: &common::Tensor) -> Vec<f32> {
    let (a, b) = (wire_to_f32(a).unwrap(), wire_to_f32(b).unwrap());
    a.iter().zip(&b).map(|(x, y)| x + y).collect()
}

#[tokio::test]
async fn embed_parts_are_rows_of_wte_and_wpe_that_add_up_to_embed() {
    let server = Server::start(|_| {}).await;
    let parts = server.embed_parts(&IDS, &POSITIONS).await.unwrap();
    let (token, position) = (parts.token.unwrap(), parts.position.unwrap());
    assert_rows(&token, common::Dtype::F32, &token_rows(&IDS), 0.0);
    assert_rows(
        &position,
        common::Dtype::F32,
        &position_rows(&POSITIONS),
        0.0,
    );
    let embed = wire_to_f32(&server.embed(&IDS, &POSITIONS).await.unwrap()).unwrap();
    let summed = sum(&token, &position);
    assert_eq!(summed.len(), embed.len());
    for (i, (s, e)) in summed.iter().zip(&embed).enumerate() {
        assert!(
            (s - e).abs() <= 1e-6,
            "element {i}: parts add to {s}, Embed gives {e}"
        );
    }
    // Validated as Embed.
    assert_invalid(
        server.embed_parts(&[0, 50257], &[0, 1]).await,
        "ids[1]",
        &["`ids[1]` is 50257, outside the vocabulary of 50257 tokens"],
    );
    assert_invalid(
        server.embed_parts(&[0, 1], &[0, 1024]).await,
        "positions[1]",
        &["`positions[1]` is 1024, outside the context of 1024 positions"],
    );
    assert_invalid(
        server.embed_parts(&[0, 1], &[0]).await,
        "positions",
        &["length 2", "length 1"],
    );
    assert_invalid(
        server.embed_parts(&[], &[]).await,
        "ids",
        &["must not be empty"],
    );
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
    // Two f32 rows of 64 per id in 16 MiB less 1 KiB; words up to the built-in 512.
    assert_eq!(info.max_parts_tokens, 8192);
    assert_eq!(info.max_words, 512);
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
    let info = server.info().await;
    assert_eq!(info.max_batch_tokens as usize, fitting);
    assert_eq!(info.max_parts_tokens as usize, fitting / 2);
    // n f32 vectors, two n × n f32 matrices and n × 2 f32 coordinates: 8n² + 264n <= 64,512.
    assert_eq!(info.max_words, 74);
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
    // The largest EmbedParts and Words answers leave the server; one more is refused.
    let half = fitting / 2;
    let parts = server.embed_parts(&ids[..half], &positions[..half]).await;
    assert_eq!(parts.unwrap().token.unwrap().shape, vec![half as u32, 64]);
    assert_invalid(
        server
            .embed_parts(&ids[..half + 1], &positions[..half + 1])
            .await,
        "ids",
        &[&(half + 1).to_string(), &half.to_string()],
    );
    let words: Vec<[u32; 1]> = (0..75).map(|i| [i * 7]).collect();
    let words: Vec<&[u32]> = words.iter().map(|w| &w[..]).collect();
    let answer = server.words(&words[..74], true).await.unwrap();
    assert_eq!(answer.cosine.len(), 74 * 74);
    assert_invalid(
        server.words(&words, true).await,
        "words",
        &["`words` holds 75 words, more than the 74 one request may carry"],
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
