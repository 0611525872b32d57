//! Request ids: the client's or a minted one in every answer and in `x-request-id`, unique among
//! running requests, and Cancel from another connection ending a running generation.

use futures::StreamExt;
use oneword_e2e::{greedy, tiny_model, Cluster};
use oneword_proto::gateway::v1 as pb;
use tonic::Code;

fn named(id: &str, max_new_tokens: u32) -> pb::GenerateRequest {
    pb::GenerateRequest {
        request_id: id.into(),
        ignore_eos: true,
        ..greedy("The best thing about AI is its ability to", max_new_tokens)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_names_its_request_the_clients_id_or_a_minted_one() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut gateway = cluster.gateway().await;
    let answer = gateway.generate(named("job-7", 3)).await.unwrap();
    assert_eq!(answer.metadata().get("x-request-id").unwrap(), "job-7");
    assert_eq!(answer.get_ref().request_id, "job-7");

    let stream = gateway.generate_stream(named("job:8", 4)).await.unwrap();
    assert_eq!(stream.metadata().get("x-request-id").unwrap(), "job:8");
    let chunks: Vec<_> = stream.into_inner().collect().await;
    assert_eq!(chunks.len(), 4);
    for chunk in chunks {
        let chunk = chunk.unwrap();
        // Every chunk, the first included, says which request and how long its prompt was.
        assert_eq!(
            (chunk.request_id.as_str(), chunk.prompt_tokens),
            ("job:8", 9)
        );
    }

    let minted: Vec<String> = futures::future::join_all((0..2).map(|_| async {
        let mut gateway = cluster.gateway().await;
        gateway
            .generate(named("", 2))
            .await
            .unwrap()
            .into_inner()
            .request_id
    }))
    .await;
    assert!(minted.iter().all(|id| id.len() >= 16), "{minted:?}");
    assert_ne!(minted[0], minted[1]);

    let compared = gateway
        .compare(pb::CompareRequest {
            prompt: "Hello".into(),
            max_new_tokens: Some(2),
            request_id: "cmp-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(compared.get_ref().request_id, "cmp-1");

    let bad = gateway.generate(named("has space", 2)).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("`request_id`"), "{}", bad.message());
    cluster.decoder_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_another_connection_ends_a_running_generation_with_what_it_had() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut stream = cluster
        .gateway()
        .await
        .generate_stream(named("long-1", 900))
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.finish_reason, pb::FinishReason::Unspecified as i32);

    // The id is taken while the generation runs.
    let again = cluster
        .gateway()
        .await
        .generate(named("long-1", 2))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists, "{}", again.message());

    // Cancelled from a connection of its own.
    let mut other = cluster.gateway().await;
    other
        .cancel(pb::CancelRequest {
            request_id: "long-1".into(),
        })
        .await
        .unwrap();
    let mut last = first;
    let mut generated = 1;
    while let Some(chunk) = stream.next().await {
        last = chunk.unwrap();
        generated += last.token_ids.len();
    }
    assert_eq!(last.finish_reason, pb::FinishReason::Cancelled as i32);
    assert!(generated < 900, "the generation ran to its end");
    let usage = last.usage.unwrap();
    assert_eq!(
        (usage.prompt_tokens, usage.completion_tokens as usize),
        (9, generated)
    );
    assert_eq!(last.generated_tokens as usize, generated);
    assert_eq!(last.request_id, "long-1");
    // Nothing is left behind, and the id is free again.
    cluster.decoder_idle().await;
    let unknown = other
        .cancel(pb::CancelRequest {
            request_id: "long-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(
        unknown.message().contains("long-1"),
        "{}",
        unknown.message()
    );
    let malformed = other
        .cancel(pb::CancelRequest {
            request_id: "has space".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(
        malformed.message().contains("`request_id`"),
        "{}",
        malformed.message()
    );
    let reused = other
        .generate(named("long-1", 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reused.completions[0].token_ids.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_unary_generate_answers_with_its_partial_completions() {
    let cluster = Cluster::start(tiny_model()).await;
    let gateway = cluster.gateway().await;
    let running = tokio::spawn({
        let mut gateway = gateway.clone();
        async move {
            gateway
                .generate(pb::GenerateRequest {
                    n: Some(2),
                    ..named("unary-1", 900)
                })
                .await
        }
    });
    let mut other = cluster.gateway().await;
    // Cancel as soon as the request is running (NOT_FOUND until it is).
    loop {
        let cancel = pb::CancelRequest {
            request_id: "unary-1".into(),
        };
        match other.cancel(cancel).await {
            Ok(_) => break,
            Err(e) if e.code() == Code::NotFound => tokio::task::yield_now().await,
            Err(e) => panic!("cancel failed: {e}"),
        }
    }
    let answer = running.await.unwrap().unwrap().into_inner();
    assert_eq!(answer.request_id, "unary-1");
    assert_eq!(answer.completions.len(), 2);
    for c in &answer.completions {
        assert_eq!(c.finish_reason, pb::FinishReason::Cancelled as i32);
        assert!(c.token_ids.len() < 900);
    }
    cluster.decoder_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_spent_waiting_for_the_decoder_is_queue_time_not_prefill() {
    // The decoder is gated (a session of the harness's holds its whole KV budget), so the
    // generation's first step waits for room until the test opens the gate.
    let cluster = Cluster::start_with(tiny_model(), oneword_e2e::KvGate::decoder).await;
    let gate = oneword_e2e::KvGate::close(&cluster).await;
    let running = tokio::spawn({
        let mut gateway = cluster.gateway().await;
        async move { gateway.generate(named("queued-1", 1)).await }
    });
    let mut decoder = cluster.decoder().await;
    let info = oneword_proto::decoder::v1::InfoRequest {};
    while decoder
        .info(info)
        .await
        .unwrap()
        .into_inner()
        .requests_waiting
        == 0
    {
        tokio::task::yield_now().await;
    }
    let held = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let held = held.elapsed();
    gate.open().await;
    let answer = running.await.unwrap().unwrap().into_inner();
    let t = answer.timings.unwrap();
    assert!(t.queue_ns >= held.as_nanos() as u64, "{t:?} after {held:?}");
    // The parts do not overlap: the wait is not also counted as prefill.
    assert!(
        t.tokenize_ns + t.prefill_ns + t.decode_ns + t.queue_ns <= t.total_ns,
        "{t:?}"
    );
    cluster.decoder_idle().await;
}
