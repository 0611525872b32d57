//! min_p, typical_p, min_new_tokens and the penalties through the gateway, shaped in the
//! decoder next to the logits (their parity with transformers is the sampling crate's test): a
//! cut that keeps one token samples what greedy picks, reported as a shaped log-probability of
//! 0; the penalties count the prompt and the completion so far, across forks.

use oneword_e2e::{greedy, refused, tiny_model, Cluster};
use oneword_proto::gateway::v1 as pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_to_one_token_samples_what_greedy_picks() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut gateway = cluster.gateway().await;
    let prompt = "The best thing about AI is its ability to";
    let greedy_ids = gateway
        .generate(pb::GenerateRequest {
            ignore_eos: true,
            ..greedy(prompt, 8)
        })
        .await
        .unwrap()
        .into_inner()
        .completions
        .remove(0)
        .token_ids;
    let sampled = |min_p: Option<f32>, typical_p: Option<f32>| pb::GenerateRequest {
        temperature: Some(1.0),
        seed: Some(4),
        min_p,
        typical_p,
        logprobs: Some(0),
        ignore_eos: true,
        ..greedy(prompt, 8)
    };
    let cut = gateway.generate(sampled(Some(1.0), None)).await.unwrap();
    let c = cut.into_inner().completions.remove(0);
    assert_eq!(c.token_ids, greedy_ids);
    assert!(c.details.unwrap().shaped_logprobs.iter().all(|&l| l == 0.0));

    // A loose cut changes the shaped log-probabilities, not the raw ones.
    let loose = gateway
        .generate(sampled(Some(0.01), Some(0.9)))
        .await
        .unwrap();
    let free = gateway.generate(sampled(None, None)).await.unwrap();
    let (loose, free) = (
        loose.into_inner().completions.remove(0).details.unwrap(),
        free.into_inner().completions.remove(0).details.unwrap(),
    );
    if loose.ids[0] == free.ids[0] {
        assert_eq!(loose.logprobs[0], free.logprobs[0]);
        assert!(loose.shaped_logprobs[0] > free.shaped_logprobs[0]);
    }

    for (r, field) in [
        (
            sampled(Some(1.5), None),
            "`min_p` must be in [0, 1], got 1.5",
        ),
        (
            sampled(None, Some(0.0)),
            "`typical_p` must be in (0, 1], got 0",
        ),
    ] {
        refused(gateway.generate(r).await, Code::InvalidArgument, field);
    }
    cluster.decoder_idle().await;
}

/// min_new_tokens holds back the end-of-text and the stop tokens until that many tokens are
/// out, as transformers' MinNewTokensLengthLogitsProcessor bans them (here they are made almost
/// certain with a bias, so the hold is all that keeps them back), and lifts the hold after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_new_tokens_holds_back_the_end_until_then() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut gateway = cluster.gateway().await;
    let eos = 50256;
    let forced = |id: u32, min_new_tokens: Option<u32>, stop: Vec<u32>| pb::GenerateRequest {
        logit_bias: [(id, 100.0)].into(),
        min_new_tokens,
        stop_token_ids: stop,
        n: Some(2),
        ..greedy("Hello", 16)
    };
    for (id, stop, reason) in [
        (eos, vec![], pb::FinishReason::EosToken),
        (464, vec![464], pb::FinishReason::StopToken),
    ] {
        let at_once = gateway
            .generate(forced(id, None, stop.clone()))
            .await
            .unwrap();
        let held = gateway.generate(forced(id, Some(5), stop)).await.unwrap();
        for (a, h) in at_once
            .into_inner()
            .completions
            .iter()
            .zip(&held.into_inner().completions)
        {
            assert_eq!(
                (a.token_ids.as_slice(), a.finish_reason),
                (&[id][..], reason as i32)
            );
            assert_eq!(h.token_ids.len(), 6, "{h:?}");
            assert!(!h.token_ids[..5].contains(&id));
            assert_eq!((h.token_ids[5], h.finish_reason), (id, reason as i32));
        }
    }
    refused(
        gateway
            .generate(pb::GenerateRequest {
                min_new_tokens: Some(9),
                ..greedy("Hello", 8)
            })
            .await,
        Code::InvalidArgument,
        "`min_new_tokens` must be at most `max_new_tokens` (8), got 9",
    );
    cluster.decoder_idle().await;
}

/// The repetition penalty counts the prompt and the completion (through the shared prefill and
/// the forks of n = 2); the presence penalty counts only the completion. The tiny model's
/// greedy text loops, so without a penalty the checks below would fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn penalties_count_the_prompt_and_the_completion_so_far() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut gateway = cluster.gateway().await;
    let generated = |r: pb::GenerateRequest| {
        let mut gateway = gateway.clone();
        async move {
            let answer = gateway.generate(r).await.unwrap().into_inner();
            let ids: Vec<Vec<u32>> = answer
                .completions
                .into_iter()
                .map(|c| c.token_ids)
                .collect();
            ids
        }
    };
    let looping = generated(pb::GenerateRequest {
        ignore_eos: true,
        ..greedy("Hello", 12)
    })
    .await
    .remove(0);
    let repeats = |ids: &[u32]| (1..ids.len()).any(|i| ids[..i].contains(&ids[i]));
    assert!(
        repeats(&looping),
        "the plain greedy text repeats: {looping:?}"
    );

    // The prompt is the looping text itself: its next greedy token is one of the prompt's.
    let prompt: Vec<u32> = [15496].into_iter().chain(looping.iter().copied()).collect();
    let penalized =
        |repetition_penalty: Option<f32>, presence_penalty: Option<f32>| pb::GenerateRequest {
            prompt: String::new(),
            prompt_token_ids: prompt.clone(),
            n: Some(2),
            ignore_eos: true,
            repetition_penalty,
            presence_penalty,
            ..greedy("", 10)
        };
    for ids in generated(penalized(Some(10.0), None)).await {
        let new = |(i, id): (usize, &u32)| !prompt.contains(id) && !ids[..i].contains(id);
        assert!(
            ids.iter().enumerate().all(new),
            "{ids:?} repeats {prompt:?}"
        );
    }
    for ids in generated(penalized(None, Some(2.0))).await {
        assert!(!repeats(&ids), "{ids:?} repeats itself");
    }
    for (r, says) in [
        (
            penalized(Some(0.0), None),
            "`repetition_penalty` must be in (0, 10], got 0",
        ),
        (
            penalized(None, Some(-2.5)),
            "`presence_penalty` must be in [-2, 2], got -2.5",
        ),
    ] {
        refused(gateway.generate(r).await, Code::InvalidArgument, says);
    }
    cluster.decoder_idle().await;
}
