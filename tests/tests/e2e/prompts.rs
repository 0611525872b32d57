//! Prompts given as token ids: the same continuation, table and comparison as the text they
//! spell, checked against the vocabulary and the context, and refused when given beside a text.

use oneword_e2e::{greedy, refused, tiny_model, Cluster};
use oneword_proto::gateway::v1 as pb;
use tonic::Code;

const PROMPT: &str = "The best thing about AI is its ability to";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_ids_continue_exactly_as_the_text_they_spell() {
    let cluster = Cluster::start(tiny_model()).await;
    let ids = cluster.token_ids(PROMPT).await;
    let mut gateway = cluster.gateway().await;
    let sampled = |prompt: &str, prompt_token_ids: Vec<u32>| pb::GenerateRequest {
        prompt: prompt.into(),
        prompt_token_ids,
        temperature: Some(0.8),
        seed: Some(11),
        n: Some(2),
        ignore_eos: true,
        ..greedy("", 12)
    };
    let from_text = gateway.generate(sampled(PROMPT, vec![])).await.unwrap();
    let from_ids = gateway.generate(sampled("", ids.clone())).await.unwrap();
    let (a, b) = (from_text.into_inner(), from_ids.into_inner());
    for (x, y) in a.completions.iter().zip(&b.completions) {
        assert_eq!((&x.token_ids, &x.text), (&y.token_ids, &y.text));
    }
    assert_eq!(b.usage.unwrap().prompt_tokens as usize, ids.len());

    let table = |prompt: &str, prompt_token_ids: Vec<u32>| pb::NextTokensRequest {
        prompt: prompt.into(),
        prompt_token_ids,
        top_n: Some(5),
        ..Default::default()
    };
    let a = gateway.next_tokens(table(PROMPT, vec![])).await.unwrap();
    let b = gateway.next_tokens(table("", ids.clone())).await.unwrap();
    assert_eq!(a.into_inner().raw, b.into_inner().raw);

    let compare = |prompt: &str, prompt_token_ids: Vec<u32>| pb::CompareRequest {
        prompt: prompt.into(),
        prompt_token_ids,
        seed: Some(3),
        samples: Some(2),
        max_new_tokens: Some(6),
        ..Default::default()
    };
    let a = gateway.compare(compare(PROMPT, vec![])).await.unwrap();
    let b = gateway.compare(compare("", ids)).await.unwrap();
    assert_eq!(a.into_inner().groups, b.into_inner().groups);
    cluster.decoder_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_ids_are_checked_against_the_vocabulary_and_the_context() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut gateway = cluster.gateway().await;
    let with_ids = |prompt: &str, ids: Vec<u32>, max_new_tokens: u32| pb::GenerateRequest {
        prompt: prompt.into(),
        prompt_token_ids: ids,
        ..greedy("", max_new_tokens)
    };
    refused(
        gateway.generate(with_ids("", vec![464, 50257], 4)).await,
        Code::InvalidArgument,
        "`prompt_token_ids[1]` is 50257, outside the vocabulary of 50257 tokens",
    );
    refused(
        gateway.generate(with_ids("Hello", vec![464], 4)).await,
        Code::InvalidArgument,
        "give `prompt` or `prompt_token_ids`, not both",
    );
    refused(
        gateway.generate(with_ids("", vec![], 4)).await,
        Code::InvalidArgument,
        "`prompt_token_ids`",
    );
    refused(
        gateway.generate(with_ids("", vec![464; 1020], 8)).await,
        Code::InvalidArgument,
        "`prompt_token_ids` has 1020 tokens and `max_new_tokens` is 8",
    );
    let table = pb::NextTokensRequest {
        prompt_token_ids: vec![70_000],
        ..Default::default()
    };
    refused(
        gateway.next_tokens(table).await,
        Code::InvalidArgument,
        "`prompt_token_ids[0]` is 70000",
    );
}
