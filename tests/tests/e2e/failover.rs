//! A generation outlives the decoder replica it runs on: when a replica dies or hangs
//! mid-stream, the gateway rebuilds the generation's sessions on another one (prompt + tokens
//! so far) and goes on with the same draws, so the client gets the text an undisturbed run
//! gives. The replicas sit behind links the test breaks as a dying pod would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use oneword_e2e::fault::Link;
use oneword_e2e::{decoder_idle, decoder_idle_within, start, tiny_model, until, Cluster, Running};
use oneword_proto::decoder::v1 as dec;
use oneword_proto::gateway::v1 as pb;
use oneword_proto::gateway::v1::gateway_client::GatewayClient;

/// Two decoders, each behind a link, and a gateway that balances over the links.
struct TwoDecoders {
    cluster: Cluster,
    second: Running,
    links: [Link; 2],
    gateway: Running,
}

impl TwoDecoders {
    async fn start() -> Self {
        // Both decoders sum every row the same way whatever its pass, so that a re-prefill
        // reproduces the incremental numbers exactly.
        let cluster = Cluster::start(tiny_model()).await;
        let model = tiny_model().to_str().unwrap().to_string();
        let config = oneword_decoder::Config::for_model(&model);
        let second = start(false, |l, s| oneword_decoder::run(config, l, until(s))).await;
        let links = [
            Link::start(&cluster.decoder.address).await,
            Link::start(&second.address).await,
        ];
        let mut config = oneword_gateway::Config::for_services(
            cluster.tokenizer.address.clone(),
            cluster.embedder.address.clone(),
            format!("{},{}", links[0].address, links[1].address),
        );
        // A hung replica is probed after 300 ms instead of 2 s, to keep the test short.
        config.decoder_stall_ms = 300;
        let gateway = start(true, |l, s| oneword_gateway::run(config, l, until(s))).await;
        TwoDecoders {
            cluster,
            second,
            links,
            gateway,
        }
    }

    async fn client(&self) -> GatewayClient<tonic::transport::Channel> {
        GatewayClient::connect(self.gateway.address.clone())
            .await
            .unwrap()
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(&self.gateway.metrics)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }
}

/// 32 generations of every kind the gateway runs: sampled, greedy, and `n` = 4 (forks).
fn requests() -> Vec<pb::GenerateRequest> {
    (0..32u64)
        .map(|i| pb::GenerateRequest {
            prompt: format!(
                "Stream {i} goes on and on, {}",
                "and on ".repeat(i as usize % 5)
            ),
            max_new_tokens: Some(64),
            temperature: Some(if i % 4 == 3 { 0.0 } else { 0.8 }),
            n: Some(if i % 8 >= 6 { 4 } else { 1 }),
            seed: Some(7000 + i),
            ignore_eos: true,
            ..Default::default()
        })
        .collect()
}

/// Each request's completions' texts, in order of `index`; `received` counts chunks as they
/// arrive (so that a test can break a link mid-stream).
async fn run_all(
    setup: &TwoDecoders,
    received: Arc<AtomicUsize>,
) -> Vec<Result<Vec<String>, tonic::Status>> {
    let mut tasks = Vec::new();
    for request in requests() {
        let mut client = setup.client().await;
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            let n = request.n.unwrap_or(1) as usize;
            let mut stream = client.generate_stream(request).await?.into_inner();
            let mut texts = vec![String::new(); n];
            let mut finished = 0;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                received.fetch_add(1, Ordering::Relaxed);
                texts[chunk.index as usize].push_str(&chunk.text);
                if chunk.finish_reason != pb::FinishReason::Unspecified as i32 {
                    finished += 1;
                }
            }
            assert_eq!(
                finished, n,
                "a stream ended cleanly before every completion finished"
            );
            Ok(texts)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

/// Waits until `count` chunks have arrived.
async fn after_chunks(received: &AtomicUsize, count: usize) {
    while received.load(Ordering::Relaxed) < count {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn texts(results: Vec<Result<Vec<String>, tonic::Status>>) -> Vec<Vec<String>> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|s| panic!("a stream failed: {s:?}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decoder_killed_mid_stream_costs_no_stream_and_changes_no_text() {
    let setup = TwoDecoders::start().await;
    let undisturbed = texts(run_all(&setup, Arc::default()).await);

    let received = Arc::new(AtomicUsize::new(0));
    let disturbed = {
        let run = run_all(&setup, received.clone());
        let kill = async {
            // A few tokens into every stream, with most of each still to come.
            after_chunks(&received, 32 * 8).await;
            setup.links[0].kill();
        };
        let (results, ()) = tokio::join!(run, kill);
        texts(results)
    };
    for (i, (a, b)) in undisturbed.iter().zip(&disturbed).enumerate() {
        assert_eq!(a, b, "request {i}'s text changed when its decoder died");
    }
    assert!(
        setup
            .metric(r#"oneword_generation_failovers_total{service="gateway"}"#)
            .await
            >= 1.0
    );
    // The survivor holds nothing once the streams are done.
    let survivor = decoder_idle(&setup.second.address).await;
    assert_eq!(survivor.cached_bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decoder_that_hangs_mid_stream_is_left_and_its_stale_sessions_freed() {
    let setup = TwoDecoders::start().await;
    let undisturbed = texts(run_all(&setup, Arc::default()).await);

    let received = Arc::new(AtomicUsize::new(0));
    let disturbed = {
        let run = run_all(&setup, received.clone());
        let hang = async {
            after_chunks(&received, 32 * 8).await;
            setup.links[0].freeze();
        };
        let (results, ()) = tokio::join!(run, hang);
        texts(results)
    };
    for (i, (a, b)) in undisturbed.iter().zip(&disturbed).enumerate() {
        assert_eq!(a, b, "request {i}'s text changed when its decoder hung");
    }
    assert!(
        setup
            .metric(r#"oneword_generation_failovers_total{service="gateway"}"#)
            .await
            >= 1.0
    );
    // Back from the hang, the replica gets the releases the gateway sent it and holds nothing:
    // no stale session is used or kept.
    setup.links[0].thaw();
    let thawed = std::time::Instant::now();
    decoder_idle_within(&setup.cluster.decoder.address, Duration::from_secs(30)).await;
    println!(
        "the stale sessions were freed {:?} after the thaw",
        thawed.elapsed()
    );
    decoder_idle(&setup.second.address).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_replica_left_a_stream_ends_with_unavailable_not_a_clean_end() {
    let setup = TwoDecoders::start().await;
    let received = Arc::new(AtomicUsize::new(0));
    let run = run_all(&setup, received.clone());
    let kill = async {
        after_chunks(&received, 32 * 4).await;
        setup.links[0].kill();
        setup.links[1].kill();
    };
    let (results, ()) = tokio::join!(run, kill);
    let failed: Vec<tonic::Status> = results.into_iter().filter_map(Result::err).collect();
    assert!(
        !failed.is_empty(),
        "every stream finished although both decoders died"
    );
    for status in failed {
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().contains("decoder"), "{status:?}");
    }
}

/// A decoder call that keeps no session (the model's facts a gateway asks with its first
/// request, a next-token table, Score, Inspect…) costs nothing when a replica is gone: it is
/// tried again on the other one, as calls to the stateless services are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_decoder_calls_are_tried_again_on_another_replica() {
    let setup = TwoDecoders::start().await;
    setup.links[0].kill();
    let mut client = setup.client().await;
    // Enough calls that the balancer sends some to the dead replica before it is ejected.
    for i in 0..6 {
        let table = client
            .next_tokens(pb::NextTokensRequest {
                prompt: format!("Call {i} of six"),
                top_n: Some(3),
                ..Default::default()
            })
            .await;
        assert!(table.is_ok(), "call {i} failed: {table:?}");
    }
}

/// The contract failover rests on, measured: a session rebuilt by one prefill of prompt +
/// tokens so far, in a pass crowded with others, picks what the incrementally decoded session
/// picks at every step of a long seeded run, with bit-identical log-probabilities (every CPU
/// product sums a row the same way whatever shares its pass).
#[tokio::test]
async fn a_reprefilled_session_picks_what_the_incremental_one_picks_at_every_step() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut decoder = cluster.decoder().await;
    let mut embedder = oneword_proto::embedder::v1::embedder_client::EmbedderClient::connect(
        cluster.embedder.address.clone(),
    )
    .await
    .unwrap();
    let mut embed = async |ids: Vec<u32>, start: u32| {
        let positions = (start..start + ids.len() as u32).collect();
        embedder
            .embed(oneword_proto::embedder::v1::EmbedRequest { ids, positions })
            .await
            .unwrap()
            .into_inner()
            .embeddings
    };
    let sampling = |step: u32| dec::Sampling {
        shaping: Some(dec::Shaping {
            temperature: Some(0.8),
            ..Default::default()
        }),
        u: oneword_gateway::rng::uniform(99, 0, step),
        report: None,
    };
    let mut tokens: Vec<u32> = vec![464, 1266, 1517, 546, 9552, 318, 663, 2694, 284];
    for step in 0..200u32 {
        let start = if step == 0 {
            0
        } else {
            tokens.len() as u32 - 1
        };
        let fed = tokens[start as usize..].to_vec();
        let mut steps = vec![dec::SessionStep {
            session_id: "incremental".into(),
            create: step == 0,
            start_position: start,
            input: embed(fed, start)
                .await
                .map(dec::session_step::Input::Embeddings),
            sampling: Some(sampling(step)),
            ..Default::default()
        }];
        // The rebuilt session, every few steps among others being rebuilt too (a pass of
        // hundreds of rows); otherwise alone with the incremental one.
        let crowd = if step % 10 == 0 { 8 } else { 1 };
        let embeddings = embed(tokens.clone(), 0).await;
        for c in 0..crowd {
            steps.push(dec::SessionStep {
                session_id: format!("rebuilt-{step}-{c}"),
                create: true,
                input: embeddings.clone().map(dec::session_step::Input::Embeddings),
                sampling: Some(sampling(step)),
                release_after: true,
                ..Default::default()
            });
        }
        let picks: Vec<dec::Pick> = decoder
            .step(dec::StepRequest { steps })
            .await
            .unwrap()
            .into_inner()
            .results
            .into_iter()
            .map(|r| r.pick.unwrap())
            .collect();
        for rebuilt in &picks[1..] {
            assert_eq!(
                (picks[0].token_id, picks[0].logprob.to_bits()),
                (rebuilt.token_id, rebuilt.logprob.to_bits()),
                "step {step}: the rebuilt session's pick differs"
            );
        }
        tokens.push(picks[0].token_id);
    }
}

/// The gateway cancels a decoder call whenever a client leaves or a replica is left, and when a
/// hung replica comes back, the cancellations of everything sent to it arrive in one burst of
/// HEADERS + RST_STREAM pairs. 10,000 of them on one connection, in bursts of 500, must not make
/// the decoder's defences against reset floods close it (h2's default allows 20 resets of
/// streams not yet accepted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_cancellations_on_one_connection_do_not_trip_the_reset_limits() {
    let cluster = Cluster::start(tiny_model()).await;
    let link = Link::start(&cluster.decoder.address).await;
    let channel = tonic::transport::Channel::from_shared(link.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let decoder = dec::decoder_client::DecoderClient::new(channel);
    for round in 0..20 {
        link.freeze();
        let calls = (0..500).map(|_| {
            let mut decoder = decoder.clone();
            async move {
                let cut = tokio::time::timeout(
                    Duration::from_millis(20),
                    decoder.info(dec::InfoRequest {}),
                );
                assert!(cut.await.is_err(), "a call answered through a frozen link");
            }
        });
        futures::future::join_all(calls).await;
        link.thaw();
        // The burst's requests reach the decoder before their resets do, so for a moment they
        // fill its request queue and the next call may be told to back off: that is the queue
        // doing its job. Only a connection the decoder closed fails the test.
        let mut decoder = decoder.clone();
        let mut tries = 0;
        loop {
            match decoder.info(dec::InfoRequest {}).await {
                Ok(_) => break,
                Err(status) if status.code() == tonic::Code::ResourceExhausted && tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(status) => panic!(
                    "after {} cancellations the connection failed: {status:?}",
                    (round + 1) * 500
                ),
            }
        }
    }
}
