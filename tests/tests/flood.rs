//! A flood of requests at several times the gateway's limit: what cannot run at once is refused
//! with RESOURCE_EXHAUSTED and RetryInfo (not queued without bound), what runs completes, and memory stays flat
//! wave after wave. (Its own test binary, so that no other test moves the process's memory.)

use futures::StreamExt;
use oneword_e2e::{tiny_model, Cluster, KvGate};
use oneword_proto::gateway::v1 as pb;
use tokio::task::JoinSet;
use tonic::Code;

const LIMIT: usize = 8;
const FLOOD: usize = 4 * LIMIT;
const TOKENS: u32 = 48;

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("reading /proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Streams one generation to its end: `Ok(tokens)` or the status it was refused with.
async fn run(cluster_address: String, i: u64) -> Result<usize, tonic::Status> {
    let mut gateway =
        oneword_proto::gateway::v1::gateway_client::GatewayClient::connect(cluster_address)
            .await
            .unwrap();
    let request = pb::GenerateRequest {
        prompt: format!("Request number {i} says"),
        max_new_tokens: Some(TOKENS),
        temperature: Some(0.8),
        seed: Some(i),
        ignore_eos: true,
        ..Default::default()
    };
    let mut stream = gateway.generate_stream(request).await?.into_inner();
    let mut tokens = 0;
    while let Some(chunk) = stream.next().await {
        tokens += chunk?.token_ids.len();
    }
    Ok(tokens)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_refused_fast_and_memory_stays_flat() {
    // The decoder is gated shut while a wave arrives, so exactly LIMIT generations are in flight
    // (waiting for room) whatever the machine's speed, and every other request is refused.
    let cluster = Cluster::start_configured(tiny_model(), KvGate::decoder, |g| {
        g.max_concurrent_requests = LIMIT
    })
    .await;
    let mut baseline = 0;
    for wave in 0..4u64 {
        let gate = KvGate::close(&cluster).await;
        let mut tasks: JoinSet<_> = (0..FLOOD as u64)
            .map(|i| run(cluster.gateway.address.clone(), wave * 1000 + i))
            .collect();
        // While the gate is shut nothing completes, so the first answers are the refusals.
        for _ in LIMIT..FLOOD {
            let status = tasks.join_next().await.unwrap().unwrap().unwrap_err();
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            assert!(status.message().contains("limit"), "{}", status.message());
            assert!(
                oneword_runtime::status::is_overloaded(&status),
                "an overload refusal carries RetryInfo: {status:?}"
            );
        }
        gate.open().await;
        let mut completed = 0;
        while let Some(task) = tasks.join_next().await {
            assert_eq!(task.unwrap().unwrap(), TOKENS as usize);
            completed += 1;
        }
        assert_eq!(completed, LIMIT, "wave {wave}");

        // Nothing left behind in the decoder…
        cluster.decoder_idle().await;
        // …and no growth after the first wave has warmed every pool and buffer up.
        if wave == 0 {
            baseline = rss();
        }
    }
    let grown = rss().saturating_sub(baseline);
    assert!(
        grown < 64 << 20,
        "memory grew by {} MiB over three waves",
        grown >> 20
    );
}
