//! Generation through the real services: streaming, determinism, seeds, `n`, stop sequences,
//! UTF-8 safety, the next-token table against transformers, and sessions released afterwards.

use std::time::Duration;

use futures::StreamExt;
use oneword_e2e::{hf_model, tiny_model, Cluster};
use oneword_proto::decoder::v1 as dec;
use oneword_proto::gateway::v1 as pb;

fn request(prompt: &str, max_new_tokens: u32) -> pb::GenerateRequest {
    pb::GenerateRequest {
        prompt: prompt.into(),
        max_new_tokens: Some(max_new_tokens),
        ..Default::default()
    }
}

fn greedy(prompt: &str, max_new_tokens: u32) -> pb::GenerateRequest {
    pb::GenerateRequest {
        temperature: Some(0.0),
        ..request(prompt, max_new_tokens)
    }
}

fn seeded(prompt: &str, max_new_tokens: u32, seed: u64) -> pb::GenerateRequest {
    pb::GenerateRequest {
        temperature: Some(0.8),
        seed: Some(seed),
        ..request(prompt, max_new_tokens)
    }
}

async fn text(cluster: &Cluster, r: pb::GenerateRequest) -> pb::GenerateResponse {
    cluster
        .gateway()
        .await
        .generate(r)
        .await
        .expect("generate")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_delivers_what_the_unary_call_returns() {
    let cluster = Cluster::start(tiny_model()).await;
    let r = pb::GenerateRequest {
        ignore_eos: true,
        ..greedy("The best thing about AI is its ability to", 24)
    };
    let mut stream = cluster
        .gateway()
        .await
        .generate_stream(r.clone())
        .await
        .unwrap()
        .into_inner();
    let (mut streamed, mut ids, mut chunks, mut last) = (String::new(), Vec::new(), 0, None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        streamed.push_str(&chunk.text);
        ids.extend(chunk.token_ids.iter().copied());
        chunks += 1;
        last = Some(chunk);
    }
    let last = last.unwrap();
    assert_eq!(chunks, 24, "one chunk per token");
    assert_eq!(last.finish_reason, pb::FinishReason::Length as i32);
    assert_eq!(last.generated_tokens, 24);
    let usage = last.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (9, 24));
    assert!(last.timings.unwrap().total_ns > 0);

    let unary = text(&cluster, r).await;
    let completion = &unary.completions[0];
    assert_eq!(completion.text, streamed);
    assert_eq!(completion.token_ids, ids);
    cluster.decoder_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_is_deterministic_and_seeds_reproduce() {
    let cluster = Cluster::start(tiny_model()).await;
    let prompt = "Once upon a time";
    let a = text(&cluster, greedy(prompt, 20))
        .await
        .completions
        .remove(0);
    let b = text(&cluster, greedy(prompt, 20))
        .await
        .completions
        .remove(0);
    assert_eq!(a.token_ids, b.token_ids);
    assert!(!a.token_ids.is_empty());

    let one = text(&cluster, seeded(prompt, 40, 1)).await;
    let again = text(&cluster, seeded(prompt, 40, 1)).await;
    let other = text(&cluster, seeded(prompt, 40, 2)).await;
    assert_eq!(one.seed, 1);
    assert_eq!(one.completions[0].token_ids, again.completions[0].token_ids);
    assert_ne!(one.completions[0].token_ids, other.completions[0].token_ids);

    // Without a seed the gateway picks one and reports it; replaying it gives the same text.
    let unseeded = text(
        &cluster,
        pb::GenerateRequest {
            seed: None,
            ..seeded(prompt, 20, 0)
        },
    )
    .await;
    let replay = text(&cluster, seeded(prompt, 20, unseeded.seed)).await;
    assert_eq!(
        unseeded.completions[0].token_ids,
        replay.completions[0].token_ids
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_samples_share_one_prefill_and_keep_their_own_seeds() {
    let cluster = Cluster::start(tiny_model()).await;
    let prompt = "The quick brown fox jumps over the lazy dog";
    let r = pb::GenerateRequest {
        n: Some(4),
        ignore_eos: true,
        ..seeded(prompt, 12, 7)
    };
    let response = text(&cluster, r).await;
    assert_eq!(response.completions.len(), 4);
    for (i, c) in response.completions.iter().enumerate() {
        assert_eq!(c.index, i as u32);
        assert_eq!(c.token_ids.len(), 12);
        assert_eq!(c.finish_reason, pb::FinishReason::Length as i32);
    }
    let distinct: std::collections::HashSet<_> = response
        .completions
        .iter()
        .map(|c| c.token_ids.clone())
        .collect();
    assert!(
        distinct.len() > 1,
        "four samples at temperature 0.8 should not all agree"
    );
    assert_eq!(response.usage.unwrap().completion_tokens, 48);

    // Sample 0 of a forked batch draws what a lone request with the same seed draws.
    let alone = text(
        &cluster,
        pb::GenerateRequest {
            ignore_eos: true,
            ..seeded(prompt, 12, 7)
        },
    )
    .await;
    assert_eq!(
        alone.completions[0].token_ids,
        response.completions[0].token_ids
    );
    cluster.decoder_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_sequence_spanning_two_tokens_ends_the_text_before_it() {
    let cluster = Cluster::start(tiny_model()).await;
    let prompt = "Hello there";
    let base = pb::GenerateRequest {
        ignore_eos: true,
        logprobs: Some(0),
        ..greedy(prompt, 30)
    };
    let full = text(&cluster, base.clone()).await.completions.remove(0);
    let pieces = full.details.unwrap().pieces;
    // Find two neighbouring tokens with text on both sides, and make a stop sequence of the
    // last character of one and the first of the next.
    let (k, stop) = pieces
        .windows(2)
        .enumerate()
        .find_map(|(k, w)| {
            let (a, b) = (
                std::str::from_utf8(&w[0]).ok()?,
                std::str::from_utf8(&w[1]).ok()?,
            );
            let stop = format!("{}{}", a.chars().last()?, b.chars().next()?);
            Some((k, stop))
        })
        .expect("some neighbouring tokens are whole characters");
    let spans_two = String::from_utf8_lossy(&pieces[..=k].concat()).len();
    let expected = full
        .text
        .find(&stop)
        .map(|i| full.text[..i].to_string())
        .unwrap();
    assert!(
        expected.len() < spans_two,
        "the stop sequence starts inside token {k}"
    );

    let r = pb::GenerateRequest {
        stop: vec![stop.clone()],
        ..base
    };
    let stopped = text(&cluster, r.clone()).await.completions.remove(0);
    assert_eq!(stopped.finish_reason, pb::FinishReason::StopSequence as i32);
    assert_eq!(stopped.stop_sequence, stop);
    assert_eq!(stopped.text, expected);
    assert!(!stopped.text.contains(&stop));

    // Streamed, no chunk ever shows a piece of the stop sequence.
    let mut stream = cluster
        .gateway()
        .await
        .generate_stream(r)
        .await
        .unwrap()
        .into_inner();
    let mut streamed = String::new();
    while let Some(chunk) = stream.next().await {
        streamed.push_str(&chunk.unwrap().text);
    }
    assert_eq!(streamed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn characters_split_across_tokens_stream_whole() {
    let cluster = Cluster::start(tiny_model()).await;
    // "🦀" is F0 9F A6 80, three GPT-2 tokens. Biasing the sampler to only those tokens makes the
    // model emit characters split across tokens (and broken sequences, which become U+FFFD).
    let mut tokenizer = cluster.tokenizer().await;
    let encoded = tokenizer
        .encode(oneword_proto::tokenizer::v1::EncodeRequest {
            texts: vec!["🦀".as_bytes().to_vec()],
            allow_special: false,
        })
        .await
        .unwrap()
        .into_inner()
        .encodings
        .remove(0);
    assert!(
        encoded.ids.len() >= 3,
        "the characters span several tokens: {:?}",
        encoded.ids
    );
    let logit_bias = encoded.ids.iter().map(|&id| (id, 100.0)).collect();
    let r = pb::GenerateRequest {
        logit_bias,
        ignore_eos: true,
        temperature: Some(1.0),
        seed: Some(3),
        ..request("x", 60)
    };
    let mut stream = cluster
        .gateway()
        .await
        .generate_stream(r)
        .await
        .unwrap()
        .into_inner();
    let (mut streamed, mut bytes) = (String::new(), Vec::new());
    let mut held = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        for id in &chunk.token_ids {
            let piece = &encoded.pieces[encoded
                .ids
                .iter()
                .position(|x| x == id)
                .expect("only biased tokens")];
            bytes.extend_from_slice(piece);
        }
        if chunk.text.is_empty() {
            held += 1;
        }
        streamed.push_str(&chunk.text);
    }
    // Per-token decoding would turn every partial byte into U+FFFD; the stream equals decoding
    // all the bytes at once.
    assert_eq!(streamed, String::from_utf8_lossy(&bytes));
    assert!(held > 0, "bytes of an unfinished character were held back");
    assert!(
        streamed.contains('🦀'),
        "a crab was completed from three tokens: {streamed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_token_table_is_the_softmax_transformers_computes() {
    let cluster = Cluster::start(&hf_model()).await;
    let refs = candle_core::safetensors::load(
        hf_model().join("reference_logits.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let logits: Vec<f32> = refs["prompt_1_logits"].to_vec1().unwrap();
    let max = logits.iter().copied().fold(f32::MIN, f32::max);
    let z: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let mut expected: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, ((l - max) as f64).exp() / z))
        .collect();
    expected.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());

    let r = pb::NextTokensRequest {
        prompt: "The best thing about AI is its ability to".into(),
        top_n: Some(5),
        full_row: true,
        ..Default::default()
    };
    let table = cluster
        .gateway()
        .await
        .next_tokens(r)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(table.prompt_tokens, 9);
    let raw = table.raw.unwrap();
    assert_eq!(raw.ids.len(), 5);
    for (i, (id, p)) in expected.iter().take(5).enumerate() {
        assert_eq!(raw.ids[i], *id);
        assert!(
            (raw.probabilities[i] as f64 - p).abs() < 1e-5,
            "{} vs {p}",
            raw.probabilities[i]
        );
        assert_eq!(raw.texts[i], String::from_utf8_lossy(&raw.pieces[i]));
    }
    assert!(table.shaped.is_none());
    let row = oneword_proto::tensor::wire_to_f32(&table.full_row.unwrap()).unwrap();
    assert_eq!(row.len(), 50257);
    let diff = row
        .iter()
        .zip(&logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff <= 1e-4, "full row differs from transformers by {diff}");

    // With a temperature, the shaped table is the softmax of logits / T.
    let r = pb::NextTokensRequest {
        prompt: "The best thing about AI is its ability to".into(),
        temperature: Some(2.0),
        ..Default::default()
    };
    let table = cluster
        .gateway()
        .await
        .next_tokens(r)
        .await
        .unwrap()
        .into_inner();
    let shaped = table.shaped.unwrap();
    let raw = table.raw.unwrap();
    assert_eq!(shaped.ids, raw.ids);
    assert!(
        shaped.probabilities[0] < raw.probabilities[0],
        "a higher temperature flattens the distribution"
    );
    cluster.decoder_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_frees_its_session() {
    let cluster = Cluster::start(tiny_model()).await;
    let r = pb::GenerateRequest {
        ignore_eos: true,
        ..seeded("A long story:", 500, 1)
    };
    let mut stream = cluster
        .gateway()
        .await
        .generate_stream(r)
        .await
        .unwrap()
        .into_inner();
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    let info = cluster
        .decoder()
        .await
        .info(dec::InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.sessions, 1, "the running stream holds one session");
    drop(stream);
    cluster.decoder_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_token_details_report_both_distributions() {
    let cluster = Cluster::start(tiny_model()).await;
    let r = pb::GenerateRequest {
        logprobs: Some(3),
        top_k: Some(5),
        ignore_eos: true,
        ..seeded("Numbers: 1, 2, 3,", 6, 11)
    };
    let c = text(&cluster, r).await.completions.remove(0);
    let d = c.details.unwrap();
    assert_eq!(d.ids, c.token_ids);
    assert_eq!(
        (d.logprobs.len(), d.ranks.len(), d.top.len(), d.pieces.len()),
        (6, 6, 6, 6)
    );
    for i in 0..6 {
        assert!(
            d.ranks[i] >= 1 && d.ranks[i] <= 5,
            "top_k 5 keeps ranks 1..=5"
        );
        assert!(d.logprobs[i] <= 0.0 && d.shaped_logprobs[i] <= 0.0);
        assert!(
            d.shaped_logprobs[i] >= d.logprobs[i],
            "cutting the tail raises the kept tokens' probability"
        );
        assert_eq!(d.top[i].ids.len(), 3);
        assert!(d.top[i].logprobs.windows(2).all(|w| w[0] >= w[1]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_deadline_ends_the_request_and_frees_its_session() {
    // The decoder is gated: a session of the harness's holds its whole KV budget, so the
    // generation's first step waits for room (up to a minute) and the deadline passes first,
    // however fast the machine.
    let cluster = Cluster::start_with(tiny_model(), oneword_e2e::KvGate::decoder).await;
    let gate = oneword_e2e::KvGate::close(&cluster).await;
    let r = pb::GenerateRequest {
        ignore_eos: true,
        ..seeded("Tell me everything:", 1000, 5)
    };
    let mut request = tonic::Request::new(r);
    request.set_timeout(Duration::from_millis(300));
    let status = cluster.gateway().await.generate(request).await.unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::DeadlineExceeded,
        "{}",
        status.message()
    );
    gate.open().await;
    cluster.decoder_idle().await;
}

/// Decoders started with `--dtype q8_0` or `bf16` on the CPU convert the same checkpoint's
/// linear layers at load and serve it: greedy runs are deterministic and start with one of the
/// f32 decoder's five likeliest tokens (the random model's distributions are flat, and on CPUs
/// with dot-product instructions the activations are rounded too; the model's own parity tests
/// measure how far the logits move).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrow_weight_decoders_serve_the_same_checkpoint() {
    let prompt = "The best thing about AI is its ability to";
    let r = pb::GenerateRequest {
        ignore_eos: true,
        ..greedy(prompt, 16)
    };
    let exact = Cluster::start(tiny_model()).await;
    let table = pb::NextTokensRequest {
        prompt: prompt.into(),
        top_n: Some(5),
        ..Default::default()
    };
    let table = exact.gateway().await.next_tokens(table).await.unwrap();
    let f32_top = table.into_inner().raw.unwrap().ids;
    drop(exact);
    for dtype in ["q8_0", "bf16"] {
        let narrow = Cluster::start_with(tiny_model(), |c| c.dtype = dtype.into()).await;
        let a = text(&narrow, r.clone()).await.completions.remove(0);
        let b = text(&narrow, r.clone()).await.completions.remove(0);
        assert_eq!(a.token_ids.len(), 16);
        assert_eq!(a.token_ids, b.token_ids, "{dtype}");
        // The first pick follows the prompt alone; later ones follow each run's own earlier picks.
        assert!(
            f32_top.contains(&a.token_ids[0]),
            "{dtype} {:?}, f32's top five {f32_top:?}",
            a.token_ids
        );
    }
}
