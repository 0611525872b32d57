//! Text embeddings for similarity search, through the real services: the gateway's Embed equals
//! sentence-transformers, OpenAI's /v1/embeddings (and OpenAI's own Python client) equals the
//! gRPC answer, bad input is refused naming the field, and the real all-MiniLM-L6-v2 ranks
//! paraphrases above unrelated sentences.

use oneword_e2e::cli::oneword;
use oneword_e2e::{
    minilm, refused, repo, start, test_python, tiny_model, tiny_text_model, until, Cluster,
};
use oneword_proto::embedder::v1 as emb;
use oneword_proto::gateway::v1 as pb;
use oneword_proto::tensor::wire_to_f32;
use serde_json::{json, Value};
use tonic::Code;

#[derive(serde::Deserialize)]
struct Reference {
    texts: Vec<String>,
    max_tokens: usize,
    ids: Vec<Vec<u32>>,
    vectors: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let path = tiny_text_model().join("reference_vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn texts(texts: &[&str]) -> pb::EmbedRequest {
    pb::EmbedRequest {
        texts: texts.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

fn rows(response: &pb::EmbedResponse) -> Vec<Vec<f32>> {
    let tensor = response.embeddings.as_ref().unwrap();
    let width = tensor.shape[1] as usize;
    wire_to_f32(tensor)
        .unwrap()
        .chunks(width)
        .map(<[f32]>::to_vec)
        .collect()
}

fn assert_close(ours: &[f32], theirs: &[f32], what: &str) {
    let max_diff = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert_eq!(ours.len(), theirs.len(), "{what}");
    assert!(max_diff <= 1e-4, "{what}: max |diff| {max_diff}");
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[tokio::test]
async fn embed_through_the_gateway_equals_sentence_transformers() {
    let cluster = Cluster::start(tiny_model()).await;
    let r = reference();
    let response = cluster
        .gateway()
        .await
        .embed(pb::EmbedRequest {
            texts: r.texts.clone(),
            truncate: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.model, tiny_text_model().display().to_string());
    assert_eq!(
        response.embeddings.as_ref().unwrap().shape,
        [r.texts.len() as u32, 16]
    );
    for (i, (ours, theirs)) in rows(&response).iter().zip(&r.vectors).enumerate() {
        assert_close(ours, theirs, &format!("text {i} {:?}", r.texts[i]));
    }
    let counts: Vec<u32> = r.ids.iter().map(|ids| ids.len() as u32).collect();
    assert_eq!(response.token_counts, counts);
    assert_eq!(
        response.total_tokens,
        counts.iter().map(|&c| u64::from(c)).sum::<u64>()
    );
    // Only the 30-sentence text is over the tiny model's 128 tokens.
    let cut: Vec<bool> = r.ids.iter().map(|ids| ids.len() == r.max_tokens).collect();
    assert_eq!(response.truncated, cut);
    assert_eq!(cut.iter().filter(|&&c| c).count(), 1);

    // Unnormalised on request: the same direction, not length 1.
    let raw = cluster
        .gateway()
        .await
        .embed(pb::EmbedRequest {
            normalize: Some(false),
            ..texts(&["The cat sat on the mat."])
        })
        .await
        .unwrap()
        .into_inner();
    let raw = &rows(&raw)[0];
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() > 1e-3, "norm {norm}");
    assert!(cosine(raw, &r.vectors[3]) > 0.9999);

    // Token ids in (without the special tokens) give what their text gives.
    let by_ids = cluster
        .gateway()
        .await
        .embed(pb::EmbedRequest {
            tokens: vec![pb::TextTokenIds {
                ids: r.ids[2][1..r.ids[2].len() - 1].to_vec(),
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_close(&rows(&by_ids)[0], &r.vectors[2], "by ids");

    let info = cluster
        .gateway()
        .await
        .info(pb::InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let model = &info.embedding_models[0];
    assert_eq!((model.dimensions, model.max_tokens), (16, 128));
    assert_eq!(model.pooling, "mean");
}

#[tokio::test]
async fn bad_embedding_requests_name_the_field() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut gateway = cluster.gateway().await;
    let invalid = Code::InvalidArgument;
    refused(
        gateway.embed(texts(&[])).await,
        invalid,
        "`texts` must not be empty",
    );
    refused(
        gateway.embed(texts(&["a", ""])).await,
        invalid,
        "`texts[1]` is empty",
    );
    let long = "word ".repeat(200);
    refused(
        gateway.embed(texts(&["fine", &long])).await,
        invalid,
        "`texts[1]` is 202 tokens long, over the model's limit of 128",
    );
    let too_many = vec!["a"; 513];
    refused(
        gateway.embed(texts(&too_many)).await,
        invalid,
        "`texts` holds 513 inputs, more than the 512",
    );
    let both = pb::EmbedRequest {
        tokens: vec![pb::TextTokenIds { ids: vec![7] }],
        ..texts(&["a"])
    };
    refused(gateway.embed(both).await, invalid, "not both");
    let outside = pb::EmbedRequest {
        tokens: vec![pb::TextTokenIds {
            ids: vec![7, 30522],
        }],
        ..Default::default()
    };
    refused(
        gateway.embed(outside).await,
        invalid,
        "`tokens[0].ids[1]` is 30522, outside the text model's vocabulary of 30522",
    );
    let other = pb::EmbedRequest {
        model: "text-embedding-3-small".into(),
        ..texts(&["a"])
    };
    refused(gateway.embed(other).await, invalid, "tiny-bert-st");
}

#[tokio::test]
async fn an_embedder_without_a_text_model_says_so() {
    let config = oneword_embedder::Config::for_model(tiny_model().display().to_string());
    let embedder = start(false, |l, s| oneword_embedder::run(config, l, until(s))).await;
    let mut client = emb::embedder_client::EmbedderClient::connect(embedder.address.clone())
        .await
        .unwrap();
    refused(
        client
            .embed_text(emb::EmbedTextRequest {
                texts: vec!["a".into()],
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "serves no text model",
    );
    let info = client.info(emb::InfoRequest {}).await.unwrap().into_inner();
    assert!(info.text_model.is_none());
}

async fn post(cluster: &Cluster, body: Value) -> (u16, Value) {
    let url = format!("{}/v1/embeddings", cluster.gateway.http.as_ref().unwrap());
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn openai_embeddings_equal_the_grpc_answer() {
    let cluster = Cluster::start(tiny_model()).await;
    let inputs = ["The cat sat on the mat.", "Love thy neighbour as thyself."];
    let grpc = cluster.gateway().await.embed(texts(&inputs)).await.unwrap();
    let grpc = rows(grpc.get_ref());
    let name = tiny_text_model().display().to_string();

    let (status, body) = post(&cluster, json!({"model": name, "input": inputs})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], name.as_str());
    for (i, row) in grpc.iter().enumerate() {
        assert_eq!(body["data"][i]["index"], i);
        let values: Vec<f32> =
            serde_json::from_value(body["data"][i]["embedding"].clone()).unwrap();
        assert_eq!(&values, row);
    }
    let tokens = body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(body["usage"]["total_tokens"].as_u64(), Some(tokens));
    assert!(tokens > 10);

    // One string, base64: little-endian f32 bytes. (A batch pads its texts to one length, which
    // changes the order of float sums, so a text alone is compared with a text alone.)
    let alone = cluster
        .gateway()
        .await
        .embed(texts(&inputs[..1]))
        .await
        .unwrap();
    let alone = rows(alone.get_ref());
    let (status, body) = post(
        &cluster,
        json!({"input": inputs[0], "encoding_format": "base64", "dimensions": 16}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let values: Vec<f32> = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(values, alone[0]);

    let (status, body) = post(&cluster, json!({"input": inputs, "dimensions": 8})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "dimensions");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("tiny-bert-st"));
    let (status, body) = post(&cluster, json!({"input": []})).await;
    assert_eq!((status, &body["error"]["param"]), (400, &json!("input")));
    let (status, body) = post(&cluster, json!({"input": "a", "encoding_format": "int8"})).await;
    assert_eq!(
        (status, &body["error"]["param"]),
        (400, &json!("encoding_format"))
    );

    let models: Value = reqwest::get(format!(
        "{}/v1/models",
        cluster.gateway.http.as_ref().unwrap()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let listed = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == name.as_str())
        .expect("the text model is listed");
    assert_eq!(listed["dimensions"], 16);

    // OpenAI's own Python client: by default it asks for base64 and decodes it itself.
    let script = r#"
import json, sys
import openai
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused")
inputs = json.loads(sys.argv[2])
default = client.embeddings.create(model=sys.argv[3], input=inputs)
floats = client.embeddings.create(model=sys.argv[3], input=inputs, encoding_format="float")
print(json.dumps({
    "default": [d.embedding for d in default.data],
    "float": [d.embedding for d in floats.data],
    "tokens": default.usage.prompt_tokens,
}))
"#;
    let mut python = std::process::Command::new(test_python());
    python
        .args(["-c", script])
        .arg(cluster.gateway.http.as_ref().unwrap())
        .arg(serde_json::to_string(&inputs).unwrap())
        .arg(&name);
    let output = tokio::task::spawn_blocking(move || python.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    for format in ["default", "float"] {
        let vectors: Vec<Vec<f32>> = serde_json::from_value(answer[format].clone()).unwrap();
        assert_eq!(vectors, grpc, "{format}");
    }
    assert_eq!(answer["tokens"].as_u64(), Some(tokens));
}

#[tokio::test]
async fn minilm_ranks_paraphrases_above_unrelated_sentences() {
    let mut config = oneword_embedder::Config::for_model(tiny_model().display().to_string());
    config.text_model = minilm().display().to_string();
    let embedder = start(false, |l, s| oneword_embedder::run(config, l, until(s))).await;
    let mut client = emb::embedder_client::EmbedderClient::connect(embedder.address.clone())
        .await
        .unwrap();
    let set: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/paraphrases.json")).unwrap(),
    )
    .unwrap();
    let triples: Vec<[String; 3]> = serde_json::from_value(set["triples"].clone()).unwrap();
    let response = client
        .embed_text(emb::EmbedTextRequest {
            texts: triples.iter().flatten().cloned().collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let tensor = response.embeddings.unwrap();
    assert_eq!(tensor.shape, [3 * triples.len() as u32, 384]);
    let values = wire_to_f32(&tensor).unwrap();
    let vectors: Vec<&[f32]> = values.chunks(384).collect();
    for (i, t) in triples.iter().enumerate() {
        let [anchor, paraphrase, other] = [0, 1, 2].map(|k| vectors[3 * i + k]);
        let (near, far) = (cosine(anchor, paraphrase), cosine(anchor, other));
        assert!(near > far, "{t:?}: paraphrase {near:.3}, other {far:.3}");
    }
}

#[tokio::test]
async fn the_cli_embeds_and_ranks_texts_by_similarity() {
    let cluster = Cluster::start(tiny_model()).await;
    let gateway = cluster.gateway.address.as_str();
    let (out, _) = oneword(gateway, &["embed", "The cat sat on the mat.", "a"])
        .await
        .ok();
    assert!(out.contains("(16 dimensions)"), "{out}");
    assert!(
        out.contains("[0] \"The cat sat on the mat.\": 9 tokens, norm 1.000"),
        "{out}"
    );
    assert!(out.contains("[1] \"a\": 3 tokens"), "{out}");

    let json = oneword(gateway, &["--json", "embed", "--raw", "a"])
        .await
        .json_lines();
    assert_eq!(json[0]["token_counts"], json!([3]));
    assert_eq!(json[0]["embeddings"]["shape"], json!([1, 16]));

    // The ranking the CLI prints is the cosine of the gateway's vectors.
    let others_text = [
        "Love thy neighbour as thyself.",
        "The cat sat on the mat.",
        "3.14159 is pi",
    ];
    let grpc = cluster
        .gateway()
        .await
        .embed(texts(&["A feline rested upon the rug."]))
        .await
        .unwrap();
    let source = rows(grpc.get_ref()).remove(0);
    let json = oneword(
        gateway,
        &[
            "--json",
            "similarity",
            "A feline rested upon the rug.",
            others_text[0],
            others_text[1],
            others_text[2],
        ],
    )
    .await
    .json_lines();
    let scores: Vec<f32> = serde_json::from_value(json[0]["scores"].clone()).unwrap();
    let others = cluster
        .gateway()
        .await
        .embed(texts(&others_text))
        .await
        .unwrap();
    for (score, other) in scores.iter().zip(rows(others.get_ref())) {
        assert!((score - cosine(&source, &other)).abs() < 1e-4, "{scores:?}");
    }
    let (out, _) = oneword(
        gateway,
        &[
            "similarity",
            "A feline rested upon the rug.",
            others_text[0],
            others_text[1],
        ],
    )
    .await
    .ok();
    let first = out.lines().nth(1).unwrap();
    let best = if scores[0] >= scores[1] {
        others_text[0]
    } else {
        others_text[1]
    };
    assert!(first.contains(best), "{out}");

    let err = oneword(gateway, &["embed", ""]).await.failed();
    assert!(err.to_string().contains("`texts[0]` is empty"), "{err}");
}

/// Mean, last and position-weighted pooling of GPT-2's hidden states, from the decoder, equal
/// the same pooling of transformers' `output_hidden_states` (computed here from the committed
/// reference), at the last layer and at a chosen one.
#[tokio::test]
async fn gpt2_embeddings_pool_transformers_hidden_states() {
    use candle_core::Device;
    let cluster = Cluster::start(&oneword_e2e::hf_model()).await;
    let refs = candle_core::safetensors::load(
        oneword_e2e::hf_model().join("reference_internals.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let model = oneword_e2e::hf_model().display().to_string();
    let text = "The best thing about AI is its ability to";
    let states = |layer: usize| -> Vec<Vec<f32>> {
        refs[&format!("prompt_0_hidden_{layer}")]
            .to_vec2::<f32>()
            .unwrap()
    };
    let mean = |rows: &[Vec<f32>], weighted: bool| -> Vec<f32> {
        let mut sum = vec![0f32; rows[0].len()];
        let mut total = 0f32;
        for (t, row) in rows.iter().enumerate() {
            let w = if weighted { (t + 1) as f32 } else { 1.0 };
            total += w;
            sum.iter_mut().zip(row).for_each(|(s, x)| *s += w * x);
        }
        sum.iter().map(|s| s / total).collect()
    };
    let cases = [
        (pb::EmbedPooling::Unspecified, None, mean(&states(2), false)),
        (
            pb::EmbedPooling::Last,
            None,
            states(2).last().unwrap().clone(),
        ),
        (pb::EmbedPooling::WeightedMean, None, mean(&states(2), true)),
        (pb::EmbedPooling::Mean, Some(1), mean(&states(1), false)),
    ];
    for (pooling, layer, expected) in cases {
        let answer = cluster
            .gateway()
            .await
            .embed(pb::EmbedRequest {
                model: model.clone(),
                pooling: pooling as i32,
                layer,
                normalize: Some(false),
                ..texts(&[text])
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.model, model);
        assert_eq!(answer.token_counts, [9]);
        assert_close(
            &rows(&answer)[0],
            &expected,
            &format!("{pooling:?} at {layer:?}"),
        );
    }
    // Normalised by default; a layer past the last is named.
    let answer = cluster
        .gateway()
        .await
        .embed(pb::EmbedRequest {
            model: model.clone(),
            ..texts(&[text, "hello"])
        })
        .await
        .unwrap()
        .into_inner();
    for row in rows(&answer) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    let mut gateway = cluster.gateway().await;
    refused(
        gateway
            .embed(pb::EmbedRequest {
                model: model.clone(),
                layer: Some(3),
                ..texts(&[text])
            })
            .await,
        Code::InvalidArgument,
        "`layer` is 3, but the hidden states are 0..=2",
    );
    refused(
        gateway
            .embed(pb::EmbedRequest {
                layer: Some(1),
                ..texts(&[text])
            })
            .await,
        Code::InvalidArgument,
        "`layer` applies to GPT-2's embeddings only",
    );
    // OpenAI's `dimensions` is checked against GPT-2's width when `model` names GPT-2.
    let width = rows(&answer)[0].len();
    let (status, body) = post(
        &cluster,
        json!({"input": text, "model": model, "dimensions": width}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &cluster,
        json!({"input": text, "model": model, "dimensions": width + 1}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["param"]),
        (400, &json!("dimensions"))
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&format!("{width}-dimensional")));
}
