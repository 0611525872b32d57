//! The gateway's OpenAI-compatible HTTP API, called with a real HTTP client: completions (whole
//! and streamed as server-sent events), models, and errors in OpenAI's shape and codes.

use oneword_e2e::{tiny_model, Cluster};
use oneword_proto::gateway::v1 as pb;
use serde_json::{json, Value};

async fn post(cluster: &Cluster, body: Value) -> (u16, Value) {
    let url = format!("{}/v1/completions", cluster.gateway.http.as_ref().unwrap());
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The `data:` payloads of a server-sent event stream, up to and without `[DONE]`.
async fn stream(cluster: &Cluster, body: Value) -> Vec<Value> {
    let url = format!("{}/v1/completions", cluster.gateway.http.as_ref().unwrap());
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let data: Vec<&str> = text
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .collect();
    assert_eq!(
        data.last(),
        Some(&"[DONE]"),
        "the stream ends with [DONE]: {text}"
    );
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn a_completion_equals_the_grpc_generation_whole_and_streamed() {
    let cluster = Cluster::start(tiny_model()).await;
    let grpc = cluster
        .gateway()
        .await
        .generate(pb::GenerateRequest {
            prompt: "The best thing about AI is".into(),
            max_new_tokens: Some(12),
            temperature: Some(0.0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let expected = &grpc.completions[0].text;

    let request =
        json!({"prompt": "The best thing about AI is", "max_tokens": 12, "temperature": 0});
    let (status, whole) = post(&cluster, request.clone()).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["object"], "text_completion");
    assert_eq!(&whole["choices"][0]["text"], expected);
    assert_eq!(whole["choices"][0]["finish_reason"], "length");
    assert_eq!(whole["usage"]["completion_tokens"], 12);
    assert_eq!(
        whole["usage"]["total_tokens"],
        whole["usage"]["prompt_tokens"].as_u64().unwrap() + 12
    );

    let mut streamed = request;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let events = stream(&cluster, streamed).await;
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"].get(0))
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(&text, expected);
    let finishes: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("length")]);
    let usage = &events.last().unwrap()["usage"];
    assert_eq!(
        usage["completion_tokens"], 12,
        "the last event carries the usage"
    );
}

#[tokio::test]
async fn samples_and_logprobs_follow_openai() {
    let cluster = Cluster::start(tiny_model()).await;
    let (status, body) = post(
        &cluster,
        json!({"prompt": ["Hello"], "max_tokens": 5, "n": 3, "seed": 7, "logprobs": 2, "temperature": 0.8}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
        let logprobs = &choice["logprobs"];
        assert_eq!(logprobs["tokens"].as_array().unwrap().len(), 5);
        assert_eq!(logprobs["token_logprobs"].as_array().unwrap().len(), 5);
        let top = logprobs["top_logprobs"][0].as_object().unwrap();
        assert!(!top.is_empty() && top.len() <= 2, "{top:?}");
    }
    let (_, again) = post(
        &cluster,
        json!({"prompt": "Hello", "max_tokens": 5, "n": 3, "seed": 7, "logprobs": 2, "temperature": 0.8}),
    )
    .await;
    assert_eq!(body["choices"], again["choices"], "a seed reproduces");
}

/// OpenAI's frequency and presence penalties and vLLM's repetition_penalty reach the sampler
/// as on gRPC: the same text, and each out of range refused by name.
#[tokio::test]
async fn penalties_are_those_of_grpc() {
    let cluster = Cluster::start(tiny_model()).await;
    let grpc = cluster
        .gateway()
        .await
        .generate(pb::GenerateRequest {
            prompt: "Hello".into(),
            max_new_tokens: Some(8),
            temperature: Some(0.7),
            seed: Some(3),
            frequency_penalty: Some(1.5),
            presence_penalty: Some(-0.5),
            repetition_penalty: Some(1.3),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let request = json!({"prompt": "Hello", "max_tokens": 8, "temperature": 0.7, "seed": 3,
        "frequency_penalty": 1.5, "presence_penalty": -0.5, "repetition_penalty": 1.3});
    let (status, body) = post(&cluster, request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["text"], grpc.completions[0].text);
    let (status, body) = post(&cluster, json!({"prompt": "Hi", "frequency_penalty": 3})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "frequency_penalty", "{body}");
}

#[tokio::test]
async fn models_lists_the_served_model_and_the_ngram_baselines() {
    let cluster = Cluster::start(tiny_model()).await;
    let body = models(&cluster).await;
    assert_eq!(body["object"], "list");
    let model = &body["data"][0];
    assert_eq!(model["object"], "model");
    assert_eq!(model["max_model_len"], 1024, "the tiny model's context");
    let name = model["id"].as_str().unwrap().to_string();
    let (status, _) = post(
        &cluster,
        json!({"model": name, "prompt": "Hi", "max_tokens": 1}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = post(&cluster, json!({"model": "gpt-4", "prompt": "Hi"})).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");

    // The n-gram baselines are listed after it and complete through the same API, then the
    // text-embedding model.
    let listed = models(&cluster).await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 14);
    assert_eq!(ids[1..3], ["letters-1", "letters-2"]);
    assert!(ids[13].ends_with("tiny-bert-st"), "{ids:?}");
    let (status, body) = post(
        &cluster,
        json!({"model": "letters-2", "prompt": "the q", "max_tokens": 1, "temperature": 0}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["text"], "u");
}

async fn models(cluster: &Cluster) -> Value {
    let url = format!("{}/v1/models", cluster.gateway.http.as_ref().unwrap());
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn bad_requests_get_openai_errors_with_the_right_codes() {
    let cluster = Cluster::start(tiny_model()).await;
    let long = "hello ".repeat(1020);
    let (status, body) = post(&cluster, json!({"prompt": long, "max_tokens": 10})).await;
    assert_eq!(status, 400, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], "context_length_exceeded");
    assert_eq!(error["type"], "invalid_request_error");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "This model's maximum context length is 1024 tokens. However, you requested"
        ),
        "{message}"
    );

    let (status, body) = post(&cluster, json!({"prompt": "Hi", "temperature": -1})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "temperature");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("-1"),
        "{body}"
    );

    let (status, body) = post(&cluster, json!({"prompt": "Hi", "top_p": 1.5})).await;
    assert_eq!((status, &body["error"]["param"]), (400, &json!("top_p")));

    let (status, body) = post(&cluster, json!({"max_tokens": 3})).await;
    assert_eq!(status, 400, "a missing prompt: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("prompt"),
        "{body}"
    );

    let url = format!("{}/v1/completions", cluster.gateway.http.as_ref().unwrap());
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn an_overloaded_gateway_answers_429() {
    let cluster =
        Cluster::start_configured(tiny_model(), |_| {}, |g| g.max_concurrent_requests = 0).await;
    let (status, body) = post(&cluster, json!({"prompt": "Hi"})).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "overloaded");
}

#[tokio::test]
async fn a_stopped_decoder_is_503() {
    let mut cluster = Cluster::start(tiny_model()).await;
    cluster.decoder.stop().await;
    let (status, body) = post(&cluster, json!({"prompt": "Hi"})).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("decoder"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_array_prompt_continues_as_its_text_does() {
    let cluster = Cluster::start(tiny_model()).await;
    let text = "The best thing about AI is its ability to";
    let ids = cluster.token_ids(text).await;
    let body = |prompt: Value| json!({"prompt": prompt, "max_tokens": 6, "temperature": 0});
    let (status, by_text) = post(&cluster, body(json!(text))).await;
    assert_eq!(status, 200, "{by_text}");
    for prompt in [json!(ids), json!([ids])] {
        let (status, by_ids) = post(&cluster, body(prompt)).await;
        assert_eq!(status, 200, "{by_ids}");
        assert_eq!(by_ids["choices"][0]["text"], by_text["choices"][0]["text"]);
        assert_eq!(by_ids["usage"], by_text["usage"]);
    }
    let (status, two) = post(&cluster, body(json!([ids, ids]))).await;
    assert_eq!((status, &two["error"]["param"]), (400, &json!("prompt")));
}
