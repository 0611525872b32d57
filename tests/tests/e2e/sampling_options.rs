//! min_p and typical_p through the gateway, shaped in the decoder next to the logits (their
//! parity with transformers' warpers is the sampling crate's test): a cut that keeps one token
//! samples what greedy picks, reported as a shaped log-probability of 0.

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
