//! A real SIGTERM (this test is its own process): the gateway turns NOT_SERVING, refuses new
//! calls with UNAVAILABLE (HTTP 503), lets the stream in flight finish, and exits cleanly.

use std::time::Duration;

use futures::StreamExt;
use oneword_e2e::{greedy, start_on, tiny_model, Cluster};
use oneword_proto::gateway::v1 as pb;
use oneword_runtime::Listeners;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test]
async fn sigterm_drains_the_gateway_a_stream_in_flight_completes_and_new_work_is_refused() {
    let base = Cluster::start(tiny_model()).await;
    let config = oneword_gateway::Config::for_services(
        base.tokenizer.address.clone(),
        base.embedder.address.clone(),
        base.decoder.address.clone(),
    );
    let listeners = Listeners::loopback(true).await.unwrap();
    let mut gateway = start_on(listeners, |l, _| {
        oneword_gateway::run(config, l, oneword_runtime::shutdown_signal())
    })
    .await;
    let http = gateway.http.clone().unwrap();
    let mut client = pb::gateway_client::GatewayClient::connect(gateway.address.clone())
        .await
        .unwrap();
    let mut health = HealthClient::new(
        tonic::transport::Channel::from_shared(gateway.address.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );

    // A stream in flight: 200 tokens, read slowly, so it is still running during the checks
    // (the gateway buffers a few chunks, then waits for the reader).
    let mut stream = client
        .generate_stream(greedy("Drain me", 200))
        .await
        .unwrap()
        .into_inner();
    let mut last = stream.next().await.unwrap().unwrap();

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let check = HealthCheckRequest {
        service: String::new(),
    };
    let mut status = ServingStatus::Serving as i32;
    for _ in 0..100 {
        status = health
            .check(check.clone())
            .await
            .unwrap()
            .into_inner()
            .status;
        if status == ServingStatus::NotServing as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        status,
        ServingStatus::NotServing as i32,
        "health turns NOT_SERVING on SIGTERM"
    );

    let refused = client.generate(greedy("Too late", 1)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert!(
        refused.message().contains("shutting down"),
        "{}",
        refused.message()
    );
    let response = reqwest::Client::new()
        .post(format!("{http}/v1/completions"))
        .json(&serde_json::json!({"prompt": "Too late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let health = reqwest::get(format!("{http}/health")).await.unwrap();
    assert_eq!(
        health.status(),
        503,
        "HTTP health says not ready while draining"
    );

    let mut chunks = 1;
    while let Some(chunk) = stream.next().await {
        last = chunk.expect("the stream in flight finishes");
        chunks += 1;
    }
    assert_eq!(last.finish_reason, pb::FinishReason::Length as i32);
    assert_eq!(last.generated_tokens, 200, "after {chunks} chunks");
    tokio::time::timeout(Duration::from_secs(10), gateway.finished())
        .await
        .expect("the gateway exits once drained")
        .expect("and says it stopped cleanly");
}

#[tokio::test]
async fn a_stream_still_running_when_the_drain_time_is_up_ends_with_unavailable() {
    let base = Cluster::start(tiny_model()).await;
    let mut config = oneword_gateway::Config::for_services(
        base.tokenizer.address.clone(),
        base.embedder.address.clone(),
        base.decoder.address.clone(),
    );
    config.server.drain_secs = 1;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listeners = Listeners::loopback(false).await.unwrap();
    let mut gateway = start_on(listeners, |l, _| {
        oneword_gateway::run(config, l, async {
            let _ = stopped.await;
        })
    })
    .await;
    let mut client = pb::gateway_client::GatewayClient::connect(gateway.address.clone())
        .await
        .unwrap();
    let mut stream = client
        .generate_stream(greedy("Cut me", 600))
        .await
        .unwrap()
        .into_inner();
    stream.next().await.unwrap().unwrap();
    stop.send(()).unwrap();

    // A slow reader: 600 tokens at 20 ms each would take 12 s, far past the 1 s drain.
    let mut tokens = 1;
    let last = loop {
        match stream.next().await {
            Some(Ok(chunk)) => tokens += chunk.token_ids.len(),
            Some(Err(status)) => break status,
            None => panic!("the stream ended without an error after {tokens} tokens"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(last.code(), tonic::Code::Unavailable, "{last}");
    assert!(
        last.message().contains("drain time is up"),
        "{}",
        last.message()
    );
    assert!(tokens < 600);
    tokio::time::timeout(Duration::from_secs(10), gateway.finished())
        .await
        .expect("the gateway exits after cutting the stream")
        .expect("cleanly");
}
