//! The decoder's sessions over gRPC: create, fork, release, the limits, and the errors that
//! protect a cache from a caller that lost track.

use oneword_e2e::{tiny_model, Cluster};
use oneword_proto::decoder::v1 as dec;
use oneword_proto::decoder::v1::decoder_client::DecoderClient;
use oneword_proto::gateway::v1 as pb;
use oneword_proto::tensor::f32_to_wire;
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

/// A step of `n` zero embeddings (width 64, the tiny model's) for `session` at `start`.
fn step(session: &str, create: bool, start: u32, n: usize, sample: bool) -> dec::SessionStep {
    dec::SessionStep {
        session_id: session.into(),
        create,
        start_position: start,
        input: Some(dec::session_step::Input::Embeddings(f32_to_wire(
            &vec![0.1; n * 64],
            &[n as u32, 64],
        ))),
        sampling: sample.then(|| dec::Sampling {
            shaping: Some(dec::Shaping {
                temperature: Some(0.0),
                ..Default::default()
            }),
            u: 0.5,
            report: Some(dec::Report {
                top_n: 3,
                full_row: dec::FullRow::F16 as i32,
            }),
        }),
        release_after: false,
        ..Default::default()
    }
}

fn steps(list: Vec<dec::SessionStep>) -> dec::StepRequest {
    dec::StepRequest { steps: list }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_fork_release_and_guard_their_positions() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut decoder = cluster.decoder().await;

    let r = decoder
        .step(steps(vec![step("a", true, 0, 5, true)]))
        .await
        .unwrap()
        .into_inner();
    let pick = r.results[0].pick.clone().unwrap();
    assert_eq!(r.results[0].length, 5);
    assert_eq!(pick.raw_top.unwrap().ids.len(), 3);
    let row = pick.full_row.unwrap();
    assert_eq!(
        (row.shape.clone(), row.data.len()),
        (vec![50257], 50257 * 2),
        "the row packed as f16"
    );

    // Creating twice, continuing at the wrong position, unknown sessions.
    let status = decoder
        .step(steps(vec![step("a", true, 0, 1, false)]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    let status = decoder
        .step(steps(vec![step("a", false, 4, 1, false)]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("5 positions"),
        "{}",
        status.message()
    );
    let status = decoder
        .step(steps(vec![step("nope", false, 0, 1, false)]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // A failed batch changes nothing, not even its valid parts.
    let status = decoder
        .step(steps(vec![
            step("a", false, 5, 1, false),
            step("nope", false, 0, 1, false),
        ]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // Forks continue from the same cache; both then step together in one call.
    decoder
        .fork(dec::ForkRequest {
            source_session_id: "a".into(),
            new_session_ids: vec!["b".into()],
            seen_as_prompt: false,
        })
        .await
        .unwrap();
    let status = decoder
        .fork(dec::ForkRequest {
            source_session_id: "a".into(),
            new_session_ids: vec!["b".into()],
            seen_as_prompt: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    let status = decoder
        .fork(dec::ForkRequest {
            source_session_id: "zzz".into(),
            new_session_ids: vec!["c".into()],
            seen_as_prompt: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let r = decoder
        .step(steps(vec![
            step("a", false, 5, 1, true),
            step("b", false, 5, 1, true),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.results[0].pick.as_ref().unwrap().token_id,
        r.results[1].pick.as_ref().unwrap().token_id
    );
    assert_eq!((r.results[0].length, r.results[1].length), (6, 6));

    let info = decoder
        .info(dec::InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((info.sessions, info.cached_tokens), (2, 12));
    assert!(info.cached_bytes > 0);
    let released = decoder
        .release(dec::ReleaseRequest {
            session_ids: vec!["a".into(), "b".into(), "never".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(released.released, 2);
    assert_eq!(
        decoder
            .info(dec::InfoRequest {})
            .await
            .unwrap()
            .into_inner()
            .sessions,
        0
    );

    // The context window bounds a session.
    let status = decoder
        .step(steps(vec![step("long", true, 0, 1025, false)]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("1024"), "{}", status.message());
}

// The TTL itself is checked with a clock moved by hand, in the scheduler's unit tests
// (`idle_sessions_expire_at_their_ttl_and_sessions_in_a_step_do_not`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cap_is_resource_exhausted_until_sessions_go() {
    let cluster = Cluster::start_with(tiny_model(), |c| {
        c.max_sessions = 2;
        c.max_queue_wait_ms = 100;
    })
    .await;
    let mut decoder = cluster.decoder().await;
    decoder
        .step(steps(vec![
            step("x", true, 0, 2, false),
            step("y", true, 0, 2, false),
        ]))
        .await
        .unwrap();
    // A third session waits for room, and is refused when none comes within the wait.
    let status = decoder
        .step(steps(vec![step("z", true, 0, 2, false)]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("2 of 2 sessions"),
        "{}",
        status.message()
    );
    // More sessions than the limit in one step can never fit: refused at once.
    let status = decoder
        .step(steps(vec![
            step("p", true, 0, 1, false),
            step("q", true, 0, 1, false),
            step("r", true, 0, 1, false),
        ]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("2 sessions"),
        "{}",
        status.message()
    );

    let released = decoder
        .release(dec::ReleaseRequest {
            session_ids: vec!["x".into(), "y".into()],
        })
        .await
        .unwrap();
    assert_eq!(released.into_inner().released, 2);
    assert_eq!(info(&mut decoder).await.sessions, 0);
    decoder
        .step(steps(vec![step("z", true, 0, 2, false)]))
        .await
        .unwrap();
}

async fn info(decoder: &mut DecoderClient<Channel>) -> dec::InfoResponse {
    decoder
        .info(dec::InfoRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// `--kv-cache-dtype f16` admits twice the positions in the same bytes, and serves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_f16_kv_cache_holds_twice_the_positions_in_the_same_bytes() {
    let bytes = 64 * 2 * 2 * 64 * 4;
    let cluster = Cluster::start_with(tiny_model(), |c| {
        c.kv_cache_bytes = Some(bytes);
        c.kv_cache_dtype = "f16".into();
    })
    .await;
    let mut decoder = cluster.decoder().await;
    let budget = info(&mut decoder).await;
    assert_eq!(
        budget.kv_budget_tokens, 128,
        "positions × K,V × layers × width × f16"
    );
    assert_eq!(budget.kv_budget_bytes, bytes);
    let answer = decoder
        .step(steps(vec![step("long", true, 0, 100, false)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.results[0].length, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_wait_in_order_for_room_in_the_kv_budget() {
    // Host caches grow in blocks of 16 positions: 64 positions hold four blocks.
    let cluster = Cluster::start_with(tiny_model(), |c| {
        c.kv_cache_tokens = Some(64);
        c.max_queue_wait_ms = 30_000;
        c.queue_capacity = 1;
    })
    .await;
    let mut decoder = cluster.decoder().await;
    let budget = info(&mut decoder).await;
    assert_eq!(budget.kv_budget_tokens, 64);
    assert_eq!(
        budget.kv_budget_bytes,
        64 * 2 * 2 * 64 * 4,
        "positions × K,V × layers × width × f32"
    );

    // More than the whole budget: refused at once as FAILED_PRECONDITION (no wait can help,
    // unlike RESOURCE_EXHAUSTED), naming the limit; through the gateway too, details kept.
    let status = decoder
        .step(steps(vec![step("huge", true, 0, 65, false)]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("64 positions"),
        "{}",
        status.message()
    );
    let long_prompt = pb::GenerateRequest {
        prompt: "hello ".repeat(80),
        max_new_tokens: Some(2),
        ..Default::default()
    };
    let status = cluster
        .gateway()
        .await
        .generate(long_prompt)
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("64 positions"),
        "{}",
        status.message()
    );
    let reason = status.get_details_error_info().map(|i| i.reason);
    assert_eq!(reason.as_deref(), Some("EXCEEDS_CAPACITY"));
    assert!(
        status.get_details_retry_info().is_none(),
        "waiting cannot help"
    );

    // `a` holds 48 positions; `b` needs 32 more than the 16 left, so it waits…
    decoder
        .step(steps(vec![step("a", true, 0, 40, false)]))
        .await
        .unwrap();
    let mut waiter = cluster.decoder().await;
    let b =
        tokio::spawn(async move { waiter.step(steps(vec![step("b", true, 0, 30, true)])).await });
    // `b` cannot run before `a` goes (its wait is 30 s), so this only waits for it to arrive.
    while info(&mut decoder).await.requests_waiting != 1 {
        assert!(!b.is_finished(), "`b` should wait for room");
        tokio::task::yield_now().await;
    }
    assert!(!b.is_finished());
    // The waiting line is bounded: with `b` in it, the next step is refused at once.
    let status = decoder
        .step(steps(vec![step("c", true, 0, 1, false)]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("already waiting"),
        "{}",
        status.message()
    );
    // …until `a` is released; then it runs.
    decoder
        .release(dec::ReleaseRequest {
            session_ids: vec!["a".into()],
        })
        .await
        .unwrap();
    let result = b.await.unwrap().unwrap().into_inner();
    assert_eq!(result.results[0].length, 30);
    let after = info(&mut decoder).await;
    assert_eq!(
        (
            after.sessions,
            after.requests_waiting,
            after.requests_running
        ),
        (1, 0, 0)
    );
    assert_eq!(
        after.cached_bytes,
        32 * 2 * 2 * 64 * 4,
        "two blocks of 16 positions"
    );
}

/// A session keeps the shaping it was last sent, and a fork starts with its source's, so that
/// a caller sends a completion's shaping (up to 300 biased tokens) once, not with every step.
/// A session never sent one samples the plain softmax.
#[tokio::test]
async fn a_session_keeps_its_shaping_for_steps_that_send_none() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut decoder = cluster.decoder().await;
    let unshaped = |session: &str, create: bool, start: u32| {
        let mut s = step(session, create, start, 1, true);
        if let Some(sampling) = &mut s.sampling {
            sampling.shaping = None;
        }
        s
    };
    // `step` sends temperature 0 (greedy): a greedy pick's shaped log-probability is 0.
    let shaped_logprob = |r: dec::StepResponse| {
        let pick = r.results[0].pick.clone().unwrap();
        (pick.shaped_logprob, pick.logprob)
    };
    decoder
        .step(steps(vec![step("kept", true, 0, 3, true)]))
        .await
        .unwrap();
    let (shaped, _) = shaped_logprob(
        decoder
            .step(steps(vec![unshaped("kept", false, 3)]))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(shaped, 0.0, "the kept shaping is greedy");

    decoder
        .fork(dec::ForkRequest {
            source_session_id: "kept".into(),
            new_session_ids: vec!["forked".into()],
            seen_as_prompt: false,
        })
        .await
        .unwrap();
    let (shaped, _) = shaped_logprob(
        decoder
            .step(steps(vec![unshaped("forked", false, 4)]))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(shaped, 0.0, "a fork keeps its source's shaping");

    let (shaped, raw) = shaped_logprob(
        decoder
            .step(steps(vec![unshaped("never", true, 0)]))
            .await
            .unwrap()
            .into_inner(),
    );
    assert!(
        shaped < 0.0 && shaped == raw,
        "{shaped} vs {raw}: the plain softmax"
    );
}

/// A step's history names one token per row, each in the vocabulary; else it is refused by
/// its path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_names_one_token_per_row() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut decoder = cluster.decoder().await;
    let with = |prompt_ids: Vec<u32>, generated_ids: Vec<u32>| {
        let mut s = step("h", true, 0, 2, true);
        s.history = Some(dec::History {
            prompt_ids,
            generated_ids,
        });
        steps(vec![s])
    };
    for (request, says) in [
        (
            with(vec![1], vec![]),
            "`steps[0].history` names 1 token ids for a step of 2 rows",
        ),
        (
            with(vec![1], vec![50257]),
            "`steps[0].history` names token 50257, outside the vocabulary",
        ),
    ] {
        oneword_e2e::refused(decoder.step(request).await, Code::InvalidArgument, says);
    }
    decoder.step(with(vec![1], vec![2])).await.unwrap();
}
