//! vLLM's stop rules: `stop_token_ids` end a completion at a token, and
//! `include_stop_str_in_output` keeps what stopped it at the end of the text.

use oneword_e2e::{greedy, refused, tiny_model, Cluster};
use oneword_proto::gateway::v1 as pb;
use serde_json::json;
use tonic::Code;

const PROMPT: &str = "The best thing about AI is its ability to";

fn request(stop_token_ids: Vec<u32>, stop: Vec<String>, include: bool) -> pb::GenerateRequest {
    pb::GenerateRequest {
        stop_token_ids,
        stop,
        include_stop_str_in_output: include,
        ignore_eos: true,
        ..greedy(PROMPT, 16)
    }
}

async fn one(cluster: &Cluster, r: pb::GenerateRequest) -> pb::Completion {
    let answer = cluster.gateway().await.generate(r).await.unwrap();
    answer.into_inner().completions.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_token_ends_the_completion_and_its_text_is_kept_only_when_asked() {
    let cluster = Cluster::start(tiny_model()).await;
    let free = one(&cluster, request(vec![], vec![], false)).await;
    // The first token that has not come before it: the completion must stop there, not sooner.
    let at = (1..free.token_ids.len())
        .find(|&i| !free.token_ids[..i].contains(&free.token_ids[i]))
        .expect("a token that is new at its place");
    let stop_id = free.token_ids[at];

    let stopped = one(&cluster, request(vec![stop_id], vec![], false)).await;
    assert_eq!(stopped.token_ids, free.token_ids[..=at]);
    assert_eq!(stopped.finish_reason, pb::FinishReason::StopToken as i32);
    assert_eq!(stopped.stop_token_id, Some(stop_id));
    assert!(free.text.starts_with(&stopped.text), "{stopped:?}");

    let kept = one(
        &cluster,
        pb::GenerateRequest {
            logprobs: Some(0),
            ..request(vec![stop_id], vec![], true)
        },
    )
    .await;
    assert_eq!(kept.token_ids, stopped.token_ids);
    let piece = &kept.details.as_ref().unwrap().pieces[at];
    let piece = String::from_utf8_lossy(piece);
    assert_eq!(kept.text, format!("{}{piece}", stopped.text));

    // A stop sequence, kept: the text runs to its end and no further.
    let stop = free.text[stopped.text.len()..]
        .chars()
        .take(3)
        .collect::<String>();
    let cut = one(&cluster, request(vec![], vec![stop.clone()], false)).await;
    let with = one(&cluster, request(vec![], vec![stop.clone()], true)).await;
    assert_eq!(with.finish_reason, pb::FinishReason::StopSequence as i32);
    assert_eq!(with.text, format!("{}{stop}", cut.text));

    // The same through OpenAI's API, as vLLM's extensions.
    let url = format!("{}/v1/completions", cluster.gateway.http.as_ref().unwrap());
    let body = json!({"prompt": PROMPT, "max_tokens": 16, "temperature": 0, "ignore_eos": true,
        "stop_token_ids": [stop_id], "include_stop_str_in_output": true});
    let answer: serde_json::Value = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["choices"][0]["text"], json!(kept.text));
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    cluster.decoder_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_token_ids_are_checked() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut gateway = cluster.gateway().await;
    refused(
        gateway
            .generate(request(vec![5, 50257], vec![], false))
            .await,
        Code::InvalidArgument,
        "`stop_token_ids[1]` is 50257, outside the vocabulary of 50257 tokens",
    );
    refused(
        gateway.generate(request(vec![1; 65], vec![], false)).await,
        Code::InvalidArgument,
        "`stop_token_ids` has 65 ids, over the limit of 64",
    );
}
