//! The essay's instruments through the real services: what the gateway's Score, Inspect and
//! Weights return, against transformers' references, the checkpoint file itself, and what
//! generation reports for the same tokens.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use oneword_e2e::{hf_model, refused, Cluster};
use oneword_proto::common::v1 as common;
use oneword_proto::gateway::v1 as pb;
use tonic::Code;

const TOLERANCE: f32 = 1e-4;

fn values(t: Option<&common::Tensor>) -> (Vec<usize>, Vec<f32>) {
    let t = t.expect("a tensor");
    assert_eq!(t.dtype, common::Dtype::F32 as i32);
    let values: Vec<f32> = t
        .data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape.iter().map(|&d| d as usize).collect(), values)
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn load(file: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(hf_model().join(file), &Device::Cpu).unwrap()
}

fn inspect(prompt: &str) -> pb::InspectRequest {
    pb::InspectRequest {
        prompt: prompt.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_matches_transformers_attention_and_hidden_states() {
    let cluster = Cluster::start(&hf_model()).await;
    let refs = load("reference_internals.safetensors");
    let texts = [
        "The best thing about AI is its ability to".to_string(),
        [["hello"; 16].join(" "), ["bye"; 6].join(" ")].join(" "),
    ];
    for (i, text) in texts.iter().enumerate() {
        let seen = cluster
            .gateway()
            .await
            .inspect(pb::InspectRequest {
                attention_layers: vec![1, 0],
                hidden_states: true,
                ..inspect(text)
            })
            .await
            .unwrap()
            .into_inner();
        let ids: Vec<u32> = refs[&format!("prompt_{i}_ids")]
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|id| id as u32)
            .collect();
        assert_eq!(seen.ids, ids);
        assert_eq!(seen.pieces.len(), ids.len());
        let layers: Vec<u32> = seen.attentions.iter().map(|a| a.layer).collect();
        assert_eq!(layers, [1, 0], "in the order asked");
        for attention in &seen.attentions {
            let (shape, got) = values(attention.weights.as_ref());
            assert_eq!(shape, [4, ids.len(), ids.len()]);
            let expected = flat(&refs[&format!("prompt_{i}_attention_{}", attention.layer)]);
            let diff = max_diff(&got, &expected);
            assert!(
                diff <= TOLERANCE,
                "prompt {i} layer {}: {diff}",
                attention.layer
            );
        }
        let (shape, hidden) = values(seen.hidden_states.as_ref());
        assert_eq!(shape, [3, ids.len(), 32]);
        let expected: Vec<f32> = (0..3)
            .flat_map(|l| flat(&refs[&format!("prompt_{i}_hidden_{l}")]))
            .collect();
        let diff = max_diff(&hidden, &expected);
        assert!(diff <= TOLERANCE, "prompt {i} hidden states: {diff}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_parts_are_the_rows_of_wte_and_wpe() {
    let cluster = Cluster::start(&hf_model()).await;
    let file = load("model.safetensors");
    let (wte, wpe) = (
        &file["transformer.wte.weight"],
        &file["transformer.wpe.weight"],
    );
    let seen = cluster
        .gateway()
        .await
        .inspect(pb::InspectRequest {
            embedding_parts: true,
            hidden_states: true,
            ..inspect("hello hello hello bye bye")
        })
        .await
        .unwrap()
        .into_inner();
    let parts = seen.embedding_parts.as_ref().unwrap();
    let (shape, token) = values(parts.token.as_ref());
    let (_, position) = values(parts.position.as_ref());
    assert_eq!(shape, [5, 32]);
    let rows = |table: &Tensor, ids: &[u32]| -> Vec<f32> {
        ids.iter()
            .flat_map(|&id| flat(&table.get(id as usize).unwrap()))
            .collect()
    };
    assert_eq!(token, rows(wte, &seen.ids));
    assert_eq!(position, rows(wpe, &[0, 1, 2, 3, 4]));
    // Their sum is what the blocks get: the first hidden state.
    let (_, hidden) = values(seen.hidden_states.as_ref());
    let sum: Vec<f32> = token.iter().zip(&position).map(|(a, b)| a + b).collect();
    assert!(max_diff(&sum, &hidden[..5 * 32]) <= 1e-6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_score_equals_the_logprobs_generation_reported() {
    let cluster = Cluster::start(&hf_model()).await;
    let mut gateway = cluster.gateway().await;
    let prompt = "The best thing about AI is its ability to";
    let generated = gateway
        .generate(pb::GenerateRequest {
            prompt: prompt.into(),
            max_new_tokens: Some(12),
            temperature: Some(0.8),
            top_k: Some(50),
            seed: Some(7),
            logprobs: Some(0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let completion = &generated.completions[0];
    let details = completion.details.as_ref().unwrap();
    let prompt_ids = cluster.token_ids(prompt).await;
    let mut ids = prompt_ids.clone();
    ids.extend(&completion.token_ids);
    let scored = gateway
        .score(pb::ScoreRequest {
            token_ids: ids.clone(),
            temperature: Some(0.8),
            top_k: Some(50),
            top_n: Some(3),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scored.ids, ids);
    assert_eq!(scored.first_scored, 1);
    assert_eq!(scored.logprobs.len(), ids.len() - 1);
    assert_eq!(scored.top.len(), ids.len() - 1);
    // The generated tokens are the last ones scored.
    let tail = scored.logprobs.len() - completion.token_ids.len();
    for (k, (&expected, &shaped)) in details
        .logprobs
        .iter()
        .zip(&details.shaped_logprobs)
        .enumerate()
    {
        let got = scored.logprobs[tail + k];
        assert!(
            (got - expected).abs() <= 2e-4,
            "token {k}: {got} vs {expected}"
        );
        let got = scored.shaped_logprobs[tail + k];
        assert!(
            (got - shaped).abs() <= 2e-4,
            "shaped {k}: {got} vs {shaped}"
        );
        assert_eq!(scored.ranks[tail + k], details.ranks[k]);
    }
    let sum_generated: f32 = details.logprobs.iter().sum();
    let sum_scored: f32 = scored.logprobs[tail..].iter().sum();
    assert!((sum_generated - sum_scored).abs() <= 1e-3);
    let total: f64 = scored.logprobs.iter().map(|&l| l as f64).sum();
    assert!((scored.total_logprob - total).abs() < 1e-6);
    let mean = total / scored.logprobs.len() as f64;
    assert!((scored.perplexity - (-mean).exp()).abs() < 1e-6 * scored.perplexity);

    // From the start, the first token is scored too: as if the text followed <|endoftext|>.
    let from_start = gateway
        .score(pb::ScoreRequest {
            text: prompt.into(),
            from_start: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(from_start.first_scored, 0);
    assert_eq!(from_start.ids, prompt_ids);
    assert_eq!(from_start.logprobs.len(), prompt_ids.len());
    let after_eos = gateway
        .score(pb::ScoreRequest {
            token_ids: [&[50256], prompt_ids.as_slice()].concat(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(max_diff(&from_start.logprobs, &after_eos.logprobs) <= 1e-6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lens_ends_with_the_next_token_table() {
    let cluster = Cluster::start(&hf_model()).await;
    let mut gateway = cluster.gateway().await;
    let prompt = "The best thing about AI is its ability to";
    let seen = gateway
        .inspect(pb::InspectRequest {
            lens_top_n: Some(5),
            ..inspect(prompt)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.lens.len(), 3, "embeddings, after block 0, output");
    let table = gateway
        .next_tokens(pb::NextTokensRequest {
            prompt: prompt.into(),
            top_n: Some(5),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .raw
        .unwrap();
    let last = seen.lens.last().unwrap();
    assert_eq!(last.ids, table.ids);
    assert_eq!(last.pieces, table.pieces);
    assert!(max_diff(&last.probabilities, &table.probabilities) <= 1e-5);
    // Earlier layers read differently.
    assert_ne!(seen.lens[0].ids, last.ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_are_the_checkpoints_and_histograms_count_them_all() {
    let cluster = Cluster::start(&hf_model()).await;
    let mut gateway = cluster.gateway().await;
    let file = load("model.safetensors");
    for name in ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"] {
        let read = gateway
            .weights(pb::WeightsRequest {
                layer: Some(1),
                matrix: name.into(),
                histogram_bins: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let stored = &file[&format!("transformer.h.1.{name}.weight")];
        let (shape, got) = values(read.matrix.as_ref());
        assert_eq!(shape, stored.dims());
        assert_eq!(got, flat(stored), "{name}");
        assert!(read.histograms.is_empty());
    }
    let read = gateway
        .weights(pb::WeightsRequest {
            histogram_bins: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(read.matrix.is_none());
    assert_eq!(read.histograms.len(), 2);
    let per_block = 32 * 96 + 32 * 32 + 32 * 128 + 128 * 32;
    for (layer, h) in read.histograms.iter().enumerate() {
        assert_eq!(h.layer, layer as u32);
        assert_eq!((h.edges.len(), h.counts.len()), (51, 50));
        assert!(h.edges.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(h.counts.iter().sum::<u64>(), per_block);
    }
    assert_eq!(
        read.histograms[0].edges, read.histograms[1].edges,
        "one shared range"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_instrument_requests_name_the_field() {
    let cluster = Cluster::start_with(&hf_model(), |decoder| {
        decoder.max_inspect_bytes = 4096;
    })
    .await;
    let mut g = cluster.gateway().await;
    let invalid = Code::InvalidArgument;
    let layers = |l: Vec<u32>| pb::InspectRequest {
        attention_layers: l,
        ..inspect("hello")
    };
    refused(
        g.inspect(layers(vec![2])).await,
        invalid,
        "`attention_layers[0]` is 2",
    );
    refused(g.inspect(layers(vec![0, 0])).await, invalid, "listed twice");
    let lens = pb::InspectRequest {
        lens_top_n: Some(0),
        ..inspect("hello")
    };
    refused(g.inspect(lens).await, invalid, "`lens_top_n`");
    refused(g.inspect(inspect("")).await, invalid, "`prompt`");
    // Past the decoder's cap (4 KiB here): 3 hidden states of 40 tokens × 32 floats are 15 KiB.
    let big = pb::InspectRequest {
        hidden_states: true,
        ..inspect(&["hello"; 40].join(" "))
    };
    refused(g.inspect(big).await, invalid, "--max-inspect-bytes");

    let weights = |layer: Option<u32>, matrix: &str, bins: u32| pb::WeightsRequest {
        layer,
        matrix: matrix.into(),
        histogram_bins: bins,
    };
    refused(
        g.weights(weights(Some(2), "mlp.c_fc", 0)).await,
        invalid,
        "`layer` is 2",
    );
    refused(
        g.weights(weights(Some(0), "attn.bias", 0)).await,
        invalid,
        "`matrix`",
    );
    refused(
        g.weights(weights(None, "mlp.c_fc", 0)).await,
        invalid,
        "`layer` is required",
    );
    refused(
        g.weights(weights(None, "", 1001)).await,
        invalid,
        "`histogram_bins`",
    );
    // A block matrix of the tiny model is 16 KiB: past the cap too.
    refused(
        g.weights(weights(Some(0), "mlp.c_fc", 0)).await,
        invalid,
        "--max-inspect-bytes",
    );

    let score = |text: &str, ids: Vec<u32>| pb::ScoreRequest {
        text: text.into(),
        token_ids: ids,
        ..Default::default()
    };
    refused(
        g.score(score("hello", vec![])).await,
        invalid,
        "`text` has one token",
    );
    refused(g.score(score("", vec![])).await, invalid, "`text`");
    refused(g.score(score("a b", vec![1, 2])).await, invalid, "not both");
    refused(
        g.score(score("", vec![1, 60000])).await,
        invalid,
        "`token_ids[1]` is 60000",
    );
    let shaped = pb::ScoreRequest {
        temperature: Some(-1.0),
        ..score("a b c", vec![])
    };
    refused(g.score(shaped).await, invalid, "`temperature`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_forks_one_prefill_into_every_temperature() {
    let cluster = Cluster::start(&hf_model()).await;
    let mut gateway = cluster.gateway().await;
    let mut decoder = cluster.decoder().await;
    let info = oneword_proto::decoder::v1::InfoRequest {};
    let before = decoder.info(info).await.unwrap().into_inner().forward_rows;
    let prompt = "The best thing about AI is its ability to";
    let compared = gateway
        .compare(pb::CompareRequest {
            prompt: prompt.into(),
            temperatures: vec![0.0, 0.8],
            samples: Some(3),
            max_new_tokens: Some(8),
            seed: Some(11),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let temperatures: Vec<f32> = compared.groups.iter().map(|g| g.temperature).collect();
    assert_eq!(temperatures, [0.0, 0.8]);
    let sizes: Vec<usize> = compared
        .groups
        .iter()
        .map(|g| g.completions.len())
        .collect();
    assert_eq!(sizes, [1, 3]);
    // One prefill of all but the last prompt token, then 8 steps for each of the 4 continuations.
    // Every fork is released (in the background, so this waits for it).
    let after = cluster.decoder_idle().await;
    assert_eq!(after.forward_rows - before, (9 - 1) + 4 * 8);

    // The greedy one is Generate's greedy text; the samples are Generate's completions 1..=3 at
    // 0.8 with the same seed (draws are keyed by seed, completion and step).
    let greedy = gateway
        .generate(oneword_e2e::greedy(prompt, 8))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        compared.groups[0].completions[0].text,
        greedy.completions[0].text
    );
    let sampled = gateway
        .generate(pb::GenerateRequest {
            prompt: prompt.into(),
            max_new_tokens: Some(8),
            temperature: Some(0.8),
            seed: Some(11),
            n: Some(4),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for (c, expected) in compared.groups[1]
        .completions
        .iter()
        .zip(&sampled.completions[1..])
    {
        assert_eq!(c.index, expected.index);
        assert_eq!(c.token_ids, expected.token_ids);
    }

    let negative = pb::CompareRequest {
        prompt: prompt.into(),
        temperatures: vec![0.0, -1.0],
        ..Default::default()
    };
    refused(
        gateway.compare(negative).await,
        Code::InvalidArgument,
        "`temperatures[1]`",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn words_and_nearest_read_words_as_inside_a_sentence() {
    let cluster = Cluster::start(&hf_model()).await;
    let mut gateway = cluster.gateway().await;
    let file = load("model.safetensors");
    let wte = &file["transformer.wte.weight"];
    let words = vec!["cat".to_string(), "dog".into(), " cat".into()];
    let seen = gateway
        .words(pb::WordsRequest {
            words: words.clone(),
            project: true,
            token_ids: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.tokens[0].pieces, vec![b" cat".to_vec()]);
    assert_eq!(
        seen.tokens[0].ids, seen.tokens[2].ids,
        "a leading space is added once"
    );
    let (shape, vectors) = values(seen.vectors.as_ref());
    assert_eq!(shape, [3, 32]);
    assert_eq!(
        vectors[..32],
        flat(&wte.get(seen.tokens[0].ids[0] as usize).unwrap())[..]
    );
    assert!((seen.cosine[0] - 1.0).abs() < 1e-6 && (seen.cosine[2] - 1.0).abs() < 1e-6);
    assert_eq!(seen.projection.len(), 6);
    let found = gateway
        .nearest(pb::NearestRequest {
            word: "cat".into(),
            top: Some(5),
            include_query: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        found.ids[0], seen.tokens[0].ids[0],
        "a word is nearest itself"
    );
    assert!((found.similarities[0] - 1.0).abs() < 1e-5);
    assert_eq!(found.pieces[0], b" cat".to_vec());
    assert!(found.similarities.windows(2).all(|w| w[0] >= w[1]));

    let invalid = Code::InvalidArgument;
    let empty = pb::WordsRequest {
        words: vec!["cat".into(), " ".into()],
        ..Default::default()
    };
    refused(gateway.words(empty).await, invalid, "`words[1]` is empty");
    let none = pb::WordsRequest::default();
    refused(
        gateway.words(none).await,
        invalid,
        "give `words` or `token_ids`",
    );

    // Tokens by id: " cat" by its id is the word "cat"; an id past the vocabulary is named.
    let cat = seen.tokens[0].ids[0];
    let by_id = gateway
        .words(pb::WordsRequest {
            words: vec!["dog".into()],
            token_ids: vec![cat],
            project: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.tokens[1].pieces, vec![b" cat".to_vec()]);
    let (_, by_id_vectors) = values(by_id.vectors.as_ref());
    assert_eq!(by_id_vectors[32..], vectors[..32]);
    let found_by_id = gateway
        .nearest(pb::NearestRequest {
            token_id: Some(cat),
            top: Some(5),
            include_query: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found_by_id.ids, found.ids);
    let past = pb::WordsRequest {
        token_ids: vec![1, 50257],
        ..Default::default()
    };
    refused(
        gateway.words(past).await,
        invalid,
        "`token_ids[1]` is 50257",
    );
    let top = pb::NearestRequest {
        word: "cat".into(),
        top: Some(0),
        ..Default::default()
    };
    refused(
        gateway.nearest(top).await,
        invalid,
        "`top` must be in 1..=1000",
    );
}
