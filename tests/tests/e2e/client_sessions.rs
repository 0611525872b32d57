//! Client sessions through the gateway: a prompt prefilled once and continued, forked, appended
//! to and released; a branch from a kept session equals the same request made from scratch
//! with the same seed, and runs no prefill of the session again.

use oneword_e2e::{refused, tiny_model, Cluster};
use oneword_proto::decoder::v1 as dec;
use oneword_proto::gateway::v1 as pb;
use oneword_proto::gateway::v1::gateway_client::GatewayClient;
use tonic::transport::Channel;
use tonic::Code;

const PROMPT: &str = "The best thing about AI is its ability to";

async fn create(gateway: &mut GatewayClient<Channel>, prompt: &str) -> pb::Session {
    let r = pb::CreateSessionRequest {
        prompt: prompt.into(),
        ..Default::default()
    };
    gateway
        .create_session(r)
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap()
}

async fn token_ids(gateway: &mut GatewayClient<Channel>, r: pb::GenerateRequest) -> Vec<Vec<u32>> {
    let answer = gateway.generate(r).await.unwrap().into_inner();
    answer
        .completions
        .into_iter()
        .map(|c| c.token_ids)
        .collect()
}

/// Rows the decoder has run in forward passes so far.
async fn rows(cluster: &Cluster) -> u64 {
    let info = cluster.decoder().await.info(dec::InfoRequest {}).await;
    info.unwrap().into_inner().forward_rows
}

fn sampled(session_id: &str, prompt: &str) -> pb::GenerateRequest {
    pb::GenerateRequest {
        prompt: prompt.into(),
        session_id: session_id.into(),
        temperature: Some(0.8),
        seed: Some(5),
        n: Some(3),
        max_new_tokens: Some(8),
        ignore_eos: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_from_a_kept_session_equals_the_request_from_scratch_without_its_prefill() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut gateway = cluster.gateway().await;
    let session = create(&mut gateway, PROMPT).await;
    assert_eq!(session.token_ids.len(), 9);
    assert!(session.session_id.starts_with("sess-") && session.ttl_seconds > 0);

    let before = rows(&cluster).await;
    let branched = token_ids(&mut gateway, sampled(&session.session_id, "")).await;
    // Each of the 3 branches feeds the prompt's last token and then 7 of its own: nothing of
    // the kept prompt is run again.
    assert_eq!(rows(&cluster).await - before, 3 * 8);
    let scratch = token_ids(&mut gateway, sampled("", PROMPT)).await;
    assert_eq!(branched, scratch);

    // A prompt after the session continues it; the next-token table too.
    let more = token_ids(&mut gateway, sampled(&session.session_id, " learn")).await;
    let whole = token_ids(&mut gateway, sampled("", &format!("{PROMPT} learn"))).await;
    assert_eq!(more, whole);
    let next = |session_id: &str, prompt: &str| pb::NextTokensRequest {
        prompt: prompt.into(),
        session_id: session_id.into(),
        top_n: Some(5),
        ..Default::default()
    };
    let kept = gateway.next_tokens(next(&session.session_id, "")).await;
    let fresh = gateway.next_tokens(next("", PROMPT)).await;
    let (kept, fresh) = (kept.unwrap().into_inner(), fresh.unwrap().into_inner());
    assert_eq!(
        kept.raw.as_ref().unwrap().ids,
        fresh.raw.as_ref().unwrap().ids
    );
    assert_eq!(kept.prompt_tokens, 9);

    // A fork holds the same; either may go without the other.
    let r = pb::ForkSessionRequest {
        session_id: session.session_id.clone(),
    };
    let fork = gateway
        .fork_session(r)
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_ne!(fork.session_id, session.session_id);
    assert_eq!(fork.token_ids, session.token_ids);
    let release = |session_id: &str| pb::ReleaseSessionRequest {
        session_id: session_id.into(),
    };
    gateway
        .release_session(release(&session.session_id))
        .await
        .unwrap();
    assert_eq!(
        token_ids(&mut gateway, sampled(&fork.session_id, "")).await,
        scratch
    );
    let gone = "no client session has `session_id`";
    let generated = gateway.generate(sampled(&session.session_id, "")).await;
    refused(generated, Code::NotFound, gone);
    let released = gateway.release_session(release(&session.session_id)).await;
    refused(released, Code::NotFound, gone);
    gateway
        .release_session(release(&fork.session_id))
        .await
        .unwrap();
    cluster.decoder_idle().await;
}

/// append_to_session moves the session on by the prompt and the completion, so a conversation
/// continues without prefilling what came before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appending_moves_the_session_on() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut gateway = cluster.gateway().await;
    let session = create(&mut gateway, "Hello").await;
    let greedy = |session_id: &str, prompt: &str, append: bool| pb::GenerateRequest {
        prompt: prompt.into(),
        session_id: session_id.into(),
        temperature: Some(0.0),
        max_new_tokens: Some(4),
        ignore_eos: true,
        append_to_session: append,
        ..Default::default()
    };
    let first = token_ids(&mut gateway, greedy(&session.session_id, " world", true)).await;
    let second = token_ids(&mut gateway, greedy(&session.session_id, "", true)).await;
    let whole = token_ids(
        &mut gateway,
        pb::GenerateRequest {
            max_new_tokens: Some(8),
            ..greedy("", "Hello world", false)
        },
    )
    .await;
    assert_eq!([first[0].clone(), second[0].clone()].concat(), whole[0]);
    // What was appended is prompt now: the penalties over the completion do not count it, as
    // from scratch. A bias makes an appended token the pick unless it is (wrongly) penalized.
    let appended = whole[0][0];
    let penalized = |r: pb::GenerateRequest| pb::GenerateRequest {
        presence_penalty: Some(2.0),
        frequency_penalty: Some(1.0),
        logit_bias: [(appended, 5.0)].into(),
        ..r
    };
    let kept = token_ids(
        &mut gateway,
        penalized(greedy(&session.session_id, "", false)),
    )
    .await;
    let tokens = cluster.token_ids("Hello world").await;
    let all = [tokens, whole[0].clone()].concat();
    let scratch = pb::GenerateRequest {
        prompt_token_ids: all,
        ..greedy("", "", false)
    };
    assert_eq!(kept, token_ids(&mut gateway, penalized(scratch)).await);

    refused(
        gateway
            .generate(pb::GenerateRequest {
                n: Some(2),
                ..greedy(&session.session_id, "", true)
            })
            .await,
        Code::InvalidArgument,
        "`append_to_session` needs a `session_id` and `n` = 1",
    );
    refused(
        gateway
            .generate(pb::GenerateRequest {
                model: "tokens-2".into(),
                ..greedy(&session.session_id, "", false)
            })
            .await,
        Code::InvalidArgument,
        "`model` is \"tokens-2\" with `session_id`",
    );

    // An n-gram session continues through the same loop; Score is the transformer's.
    let ngram = gateway
        .create_session(pb::CreateSessionRequest {
            prompt: "Hello world".into(),
            model: "tokens-2".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(ngram.model, "tokens-2");
    let continued = token_ids(&mut gateway, greedy(&ngram.session_id, "", false)).await;
    assert_eq!(continued[0].len(), 4);
    let scored = gateway
        .score(pb::ScoreRequest {
            text: " again".into(),
            session_id: ngram.session_id.clone(),
            ..Default::default()
        })
        .await;
    refused(
        scored,
        Code::InvalidArgument,
        "n-gram model tokens-2; Score runs the transformer",
    );
}

/// The caps refuse more sessions with RESOURCE_EXHAUSTED naming the flag; a session whose
/// decoder session is gone (here the decoder's TTL dropped it) is prefilled again on its next
/// use, and gives the same text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_capped_and_outlive_their_decoder_session() {
    let cluster = Cluster::start_configured(
        tiny_model(),
        |decoder| decoder.session_ttl_secs = 1,
        |gateway| gateway.max_sessions_per_client = 2,
    )
    .await;
    let mut gateway = cluster.gateway().await;
    let first = create(&mut gateway, PROMPT).await;
    create(&mut gateway, "Hello").await;
    let third = gateway
        .create_session(pb::CreateSessionRequest {
            prompt: "Hi there".into(),
            ..Default::default()
        })
        .await;
    refused(third, Code::ResourceExhausted, "--max-sessions-per-client");

    // The decoder drops both idle sessions after its TTL of 1 s.
    oneword_e2e::decoder_idle_within(&cluster.decoder.address, std::time::Duration::from_secs(10))
        .await;
    let again = token_ids(&mut gateway, sampled(&first.session_id, "")).await;
    assert_eq!(again, token_ids(&mut gateway, sampled("", PROMPT)).await);
}

/// Score with a session judges the text as it continues the session, running only the text's
/// rows: the numbers Score gives the same tokens in the whole text from scratch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_scored_after_a_session_scores_as_in_the_whole_text() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut gateway = cluster.gateway().await;
    let session = create(&mut gateway, PROMPT).await;
    let score = |text: &str, session_id: &str| pb::ScoreRequest {
        text: text.into(),
        session_id: session_id.into(),
        temperature: Some(0.7),
        top_n: Some(3),
        ..Default::default()
    };
    let before = rows(&cluster).await;
    let after = gateway
        .score(score(" learn from experience", &session.session_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rows(&cluster).await - before, after.ids.len() as u64);
    let whole = gateway
        .score(score(&format!("{PROMPT} learn from experience"), ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.first_scored, 0);
    let tail = whole.ids.len() - after.ids.len();
    assert_eq!(&whole.ids[tail..], after.ids.as_slice());
    // Whole-text logprobs start at its second token.
    let from = tail - 1;
    assert_eq!(&whole.ranks[from..], after.ranks.as_slice());
    for (a, b) in [
        (&whole.logprobs[from..], &after.logprobs),
        (&whole.shaped_logprobs[from..], &after.shaped_logprobs),
    ] {
        for (x, y) in a.iter().zip(b.iter()) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }
    assert_eq!(after.top.len(), after.ids.len());
    assert_eq!(after.top[0].ids, whole.top[from].ids);
    refused(
        gateway
            .score(pb::ScoreRequest {
                from_start: true,
                ..score(" learn", &session.session_id)
            })
            .await,
        Code::InvalidArgument,
        "`from_start` does not apply with `session_id`",
    );
}
