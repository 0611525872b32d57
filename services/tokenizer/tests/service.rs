//! The tokenizer served in-process on 127.0.0.1:0 and called through the generated client, with
//! the real GPT-2 vocabulary committed under `tests/fixtures/gpt2-tokenizer` (tokenizer files
//! only, no config.json or weights).

use std::path::PathBuf;

use oneword_proto::tokenizer::v1 as pb;
use oneword_proto::tokenizer::v1::tokenizer_client::TokenizerClient;
use oneword_runtime::Listeners;
use oneword_tokenizer::Config;
use serde::Deserialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_types::StatusExt;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// A tokenizer server running on this test's runtime.
struct Server {
    client: TokenizerClient<Channel>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(model: &str, tweak: impl FnOnce(&mut Config)) -> Server {
        let listener = Listeners::loopback(false).await.unwrap();
        let addr = listener.grpc.local_addr().unwrap();
        let mut config = Config::for_model(model);
        tweak(&mut config);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(oneword_tokenizer::run(config, listener, async {
            let _ = stopped.await;
        }));
        // The listener is already bound, so connecting cannot race the start; the health check
        // says when the tokenizer has loaded (a failed load ends the task instead).
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = HealthClient::new(channel.clone());
        for _ in 0..600 {
            let request = HealthCheckRequest {
                service: String::new(),
            };
            match health.check(request).await {
                Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => break,
                _ if task.is_finished() => break,
                _ => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
        Server {
            client: TokenizerClient::new(channel),
            stop,
            task,
        }
    }

    async fn gpt2() -> Server {
        Server::start(fixture("gpt2-tokenizer").to_str().unwrap(), |_| {}).await
    }

    async fn encode(
        &self,
        texts: &[&[u8]],
        allow_special: bool,
    ) -> Result<Vec<pb::Encoding>, tonic::Status> {
        let request = pb::EncodeRequest {
            texts: texts.iter().map(|t| t.to_vec()).collect(),
            allow_special,
        };
        Ok(self
            .client
            .clone()
            .encode(request)
            .await?
            .into_inner()
            .encodings)
    }

    async fn decode(
        &self,
        ids: &[u32],
        skip_special_tokens: bool,
    ) -> Result<pb::DecodeResponse, tonic::Status> {
        let request = pb::DecodeRequest {
            ids: ids.to_vec(),
            skip_special_tokens,
        };
        Ok(self.client.clone().decode(request).await?.into_inner())
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

/// The pieces spell the text exactly, and each token's offsets are the smallest whole-character
/// span of the text that holds its piece.
fn assert_consistent(text: &str, e: &pb::Encoding) {
    let n = e.ids.len();
    assert_eq!(
        [
            e.tokens.len(),
            e.pieces.len(),
            e.starts.len(),
            e.ends.len(),
            e.special.len()
        ],
        [n; 5],
        "{text:?}"
    );
    assert_eq!(e.pieces.concat(), text.as_bytes(), "{text:?}");
    let mut at = 0;
    for i in 0..n {
        let piece = &e.pieces[i];
        let (start, end) = (e.starts[i] as usize, e.ends[i] as usize);
        assert_eq!(start, floor_boundary(text, at), "{text:?} token {i}");
        assert_eq!(
            end,
            ceil_boundary(text, at + piece.len()),
            "{text:?} token {i}"
        );
        assert_eq!(
            e.tokens[i],
            String::from_utf8_lossy(piece),
            "{text:?} token {i}"
        );
        assert_eq!(e.special[i], e.ids[i] == 50256, "{text:?} token {i}");
        at += piece.len();
    }
}

#[derive(Deserialize)]
struct Cases {
    source: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    allow_special: bool,
    ids: Vec<u32>,
}

#[tokio::test]
async fn matches_the_reference_ids_and_round_trips() {
    let server = Server::gpt2().await;
    let hello = server.encode(&[b"Hello world"], false).await.unwrap();
    assert_eq!(hello[0].ids, [15496, 995]);

    let json = std::fs::read_to_string(fixture("tokenizer-cases.json")).unwrap();
    let cases: Cases = serde_json::from_str(&json).unwrap();
    assert!(cases.cases.len() > 40, "{}", cases.source);
    // One batch per flag; together they are big enough to be encoded off the async workers.
    for allow_special in [false, true] {
        let chosen: Vec<&Case> = cases
            .cases
            .iter()
            .filter(|c| c.allow_special == allow_special)
            .collect();
        let texts: Vec<&[u8]> = chosen.iter().map(|c| c.text.as_bytes()).collect();
        let encodings = server.encode(&texts, allow_special).await.unwrap();
        assert_eq!(encodings.len(), chosen.len());
        for (case, encoding) in chosen.iter().zip(&encodings) {
            assert_eq!(
                encoding.ids, case.ids,
                "{:?} allow_special={allow_special}",
                case.text
            );
            assert_consistent(&case.text, encoding);
            let decoded = server.decode(&case.ids, false).await.unwrap();
            assert_eq!(decoded.raw, case.text.as_bytes());
            assert_eq!(decoded.text, case.text);
        }
    }
    // Each text alone, small enough to be encoded on the spot, gives the same ids.
    for case in &cases.cases {
        let alone = server
            .encode(&[case.text.as_bytes()], case.allow_special)
            .await
            .unwrap();
        assert_eq!(alone[0].ids, case.ids, "{:?}", case.text);
    }
    server.stop().await;
}

#[tokio::test]
async fn pieces_are_exact_bytes_and_offsets_cover_whole_characters() {
    let server = Server::gpt2().await;
    let e = &server.encode(&["a🦀b".as_bytes()], false).await.unwrap()[0];
    assert_eq!(e.ids, [64, 8582, 99, 222, 65]);
    let pieces: [&[u8]; 5] = [b"a", b"\xf0\x9f", b"\xa6", b"\x80", b"b"];
    assert_eq!(e.pieces, pieces);
    assert_eq!(e.tokens, ["a", "\u{fffd}", "\u{fffd}", "\u{fffd}", "b"]);
    // The three tokens of the crab all point at its four bytes.
    assert_eq!(e.starts, [0, 1, 1, 1, 5]);
    assert_eq!(e.ends, [1, 5, 5, 5, 6]);
    assert_eq!(e.special, [false; 5]);
    assert_consistent("a🦀b", e);

    // Decoding part of a character keeps the exact bytes and repairs only the text.
    let partial = server.decode(&[64, 8582], false).await.unwrap();
    assert_eq!(partial.raw, b"a\xf0\x9f");
    assert_eq!(partial.text, "a\u{fffd}");

    let empty = server.encode(&[b"", b" "], false).await.unwrap();
    assert!(empty[0].ids.is_empty());
    assert_eq!(empty[1].ids, [220]);
    server.stop().await;
}

#[tokio::test]
async fn special_tokens_only_when_allowed() {
    let server = Server::gpt2().await;
    let text = b"Hello<|endoftext|>world";
    let allowed = &server.encode(&[text], true).await.unwrap()[0];
    assert_eq!(allowed.ids, [15496, 50256, 6894]);
    assert_eq!(allowed.special, [false, true, false]);
    assert_eq!((allowed.starts[1], allowed.ends[1]), (5, 18));
    let plain = &server.encode(&[text], false).await.unwrap()[0];
    assert!(!plain.ids.contains(&50256));
    assert!(plain.special.iter().all(|s| !s));

    let kept = server.decode(&allowed.ids, false).await.unwrap();
    assert_eq!(kept.text, "Hello<|endoftext|>world");
    let skipped = server.decode(&allowed.ids, true).await.unwrap();
    assert_eq!(skipped.text, "Helloworld");
    assert_eq!(skipped.raw, b"Helloworld");
    server.stop().await;
}

fn assert_invalid(status: tonic::Status, field: &str, message: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), message);
    let bad_request = status
        .get_details_bad_request()
        .expect("a BadRequest detail");
    assert_eq!(bad_request.field_violations[0].field, field);
}

#[tokio::test]
async fn bad_inputs_are_invalid_argument_naming_the_field() {
    let server = Server::start(fixture("gpt2-tokenizer").to_str().unwrap(), |c| {
        c.max_batch_texts = 3;
        c.max_text_bytes = 16;
    })
    .await;
    assert_invalid(
        server
            .encode(&[b"fine", b"caf\xc3"], false)
            .await
            .unwrap_err(),
        "texts[1]",
        "`texts[1]` must be UTF-8, but the byte 0xc3 at offset 3 is not valid UTF-8",
    );
    assert_invalid(
        server.encode(&[b"ok", b"\xffx"], false).await.unwrap_err(),
        "texts[1]",
        "`texts[1]` must be UTF-8, but the byte 0xff at offset 0 is not valid UTF-8",
    );
    assert_invalid(
        server.encode(&[], false).await.unwrap_err(),
        "texts",
        "`texts` must hold at least one text, got none",
    );
    assert_invalid(
        server
            .encode(&[b"a".as_slice(); 4], false)
            .await
            .unwrap_err(),
        "texts",
        "`texts` holds 4 texts, over the limit of 3 per call",
    );
    assert_invalid(
        server
            .encode(&[b"0123456789abcdefg"], false)
            .await
            .unwrap_err(),
        "texts[0]",
        "`texts[0]` is 17 bytes, over the limit of 16 bytes",
    );
    assert_invalid(
        server
            .decode(&[15496, 995, 50256, 50300], false)
            .await
            .unwrap_err(),
        "ids[3]",
        "`ids[3]` = 50300 is outside the vocabulary of 50257 tokens",
    );
    assert_invalid(
        server.decode(&[50257], true).await.unwrap_err(),
        "ids[0]",
        "`ids[0]` = 50257 is outside the vocabulary of 50257 tokens",
    );
    // Long id lists are decoded off the async workers, with the same checks.
    let mut long = vec![15496u32; 20_000];
    assert_eq!(
        server.decode(&long, false).await.unwrap().raw,
        b"Hello".repeat(20_000)
    );
    long.push(60_000);
    assert_invalid(
        server.decode(&long, false).await.unwrap_err(),
        "ids[20000]",
        "`ids[20000]` = 60000 is outside the vocabulary of 50257 tokens",
    );
    // The limits are the ones reported.
    let info = server
        .client
        .clone()
        .info(pb::InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.max_batch_texts, 3);
    server.stop().await;
}

#[tokio::test]
async fn exports_the_vocabulary_as_bytes() {
    let server = Server::gpt2().await;
    let v = server
        .client
        .clone()
        .vocabulary(pb::VocabularyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.pieces.len(), 50257);
    assert_eq!(v.vocab_size, 50257);
    assert_eq!(
        (v.eos_token_id, v.special_ids.as_slice()),
        (50256, &[50256][..])
    );
    assert_eq!(v.pieces[15496], b"Hello");
    assert_eq!(v.pieces[995], b" world");
    assert_eq!(v.pieces[8582], b"\xf0\x9f");
    assert_eq!(v.pieces[50256], b"<|endoftext|>");
    // The pieces are what Encode returns, so a client can detokenize locally.
    let e = &server
        .encode(&["I love Rust 🦀".as_bytes()], false)
        .await
        .unwrap()[0];
    let local: Vec<u8> = e
        .ids
        .iter()
        .flat_map(|&id| v.pieces[id as usize].clone())
        .collect();
    assert_eq!(local, "I love Rust 🦀".as_bytes());

    let info = server
        .client
        .clone()
        .info(pb::InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let model = info.model.unwrap();
    assert_eq!(model.model_id, fixture("gpt2-tokenizer").to_str().unwrap());
    assert_eq!(
        (
            model.model_type.as_str(),
            model.vocab_size,
            model.eos_token_id
        ),
        ("gpt2", 50257, 50256)
    );
    // No config.json: the model's shape is unknown.
    assert_eq!(
        (
            model.context_length,
            model.hidden_size,
            model.num_layers,
            model.num_heads
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(model.device, "cpu");
    assert_eq!(info.max_batch_texts, 1024);
    server.stop().await;
}

#[tokio::test]
async fn reports_the_model_from_config_json_when_present() {
    let server = Server::start(fixture("tiny-gpt2-hf").to_str().unwrap(), |_| {}).await;
    let model = server
        .client
        .clone()
        .info(pb::InfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    assert_eq!(
        (model.vocab_size, model.context_length, model.eos_token_id),
        (50257, 1024, 50256)
    );
    assert_eq!(
        (model.hidden_size, model.num_layers, model.num_heads),
        (32, 2, 4)
    );
    let e = &server.encode(&[b"Hello world"], false).await.unwrap()[0];
    assert_eq!(e.ids, [15496, 995]);
    server.stop().await;
}

#[tokio::test]
async fn a_directory_without_tokenizer_files_fails_to_start() {
    let empty = tempfile::tempdir().unwrap();
    let listener = Listeners::loopback(false).await.unwrap();
    let config = Config::for_model(empty.path().to_str().unwrap());
    let error = oneword_tokenizer::run(config, listener, std::future::pending())
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("neither tokenizer.json nor vocab.json + merges.txt"),
        "{message}"
    );
}
