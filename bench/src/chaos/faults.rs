//! Process faults under load: a decoder killed or frozen mid-stream, every replica restarted in
//! turn, and a storm of cancellations, expired deadlines and client resets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oneword_proto::gateway::v1 as pb;
use pb::gateway_client::GatewayClient;
use tonic::transport::{Channel, Endpoint};

use crate::drive::{self, Backoff, Outcome};
use crate::fleet::{Fleet, Setup, Shape};
use crate::{Rng, Row, Scale, Verdict};

/// What a failover has to beat: a step stalled this long makes the gateway probe the replica.
const STALL_MS: &str = "1000";

/// Two decoders (a re-prefill computes exactly what decoding did: every CPU product is
/// batch-invariant), one tokenizer and one embedder.
fn two_decoders() -> Shape {
    Shape {
        stateless_replicas: 1,
        decoders: 2,
        gateway_flags: vec!["--decoder-stall-ms".into(), STALL_MS.into()],
        ..Default::default()
    }
}

/// `streams` seeded requests: most sampled at T = 0.8, every eighth greedy with n = 4 (forks).
fn seeded(scale: &Scale) -> Vec<pb::GenerateRequest> {
    (0..scale.streams as u64)
        .map(|i| {
            if i % 8 == 7 {
                drive::request(i, scale.tokens, 0.0, 4)
            } else {
                drive::request(i, scale.tokens, 0.8, 1)
            }
        })
        .collect()
}

/// Rows comparing a disturbed run with the undisturbed one.
fn compare(scenario: &'static str, undisturbed: &[Outcome], disturbed: &[Outcome]) -> Vec<Row> {
    let identical = undisturbed
        .iter()
        .zip(disturbed)
        .filter(|(a, b)| b.error.is_none() && b.finished && a.texts == b.texts)
        .count();
    let failures = drive::failures(disturbed);
    vec![Row::new(
        scenario,
        format!(
            "{n}/{n} streams complete with text identical to an undisturbed run",
            n = undisturbed.len()
        ),
        format!(
            "{identical}/{} identical{}",
            undisturbed.len(),
            if failures.is_empty() {
                String::new()
            } else {
                format!("; {failures}")
            }
        ),
        Verdict::check(identical == undisturbed.len()),
    )]
}

/// The decoder holding the most sessions now.
async fn busiest(fleet: &Fleet) -> usize {
    let mut best = (0, 0);
    for (i, decoder) in fleet.decoders.iter().enumerate() {
        let sessions = decoder.decoder_info().await.map_or(0, |info| info.sessions);
        if sessions > best.1 {
            best = (i, sessions);
        }
    }
    best.0
}

/// Polls until the gateway and the decoders (all but `skip`) hold nothing; how long it took.
pub(crate) async fn idle_within(
    fleet: &Fleet,
    skip: Option<usize>,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if leftovers(fleet, skip).await.is_empty() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// What is still held: sessions, cached bytes, steps, requests and permits in flight.
pub(crate) async fn leftovers(fleet: &Fleet, skip: Option<usize>) -> String {
    let mut held = Vec::new();
    for (i, decoder) in fleet.decoders.iter().enumerate() {
        if Some(i) == skip {
            continue;
        }
        match decoder.decoder_info().await {
            Ok(info) => {
                if info.sessions + info.requests_running + info.requests_waiting > 0
                    || info.cached_bytes > 0
                {
                    held.push(format!(
                        "{}: {} sessions, {} KV bytes, {} running, {} waiting",
                        decoder.name,
                        info.sessions,
                        info.cached_bytes,
                        info.requests_running,
                        info.requests_waiting
                    ));
                }
            }
            Err(e) => held.push(format!("{}: {e}", decoder.name)),
        }
    }
    for metric in [
        "oneword_requests_in_flight",
        "oneword_num_requests_running",
        "oneword_num_requests_waiting",
    ] {
        match fleet.gateway.metric(metric).await {
            Ok(0.0) => {}
            Ok(v) => held.push(format!("gateway {metric} {v}")),
            Err(e) => held.push(format!("gateway metrics: {e}")),
        }
    }
    held.join("; ")
}

async fn gateway_metric(fleet: &Fleet, name: &str) -> f64 {
    fleet.gateway.metric(name).await.unwrap_or(f64::NAN)
}

/// SIGKILL the busiest of two decoders at a random point of a seeded run.
pub async fn kill(setup: &Setup, scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let mut fleet = Fleet::start(setup, &two_decoders()).await?;
    let gateway = fleet.gateway_client().await?;
    let started = Instant::now();
    let undisturbed = drive::streams(&gateway, seeded(scale)).await;
    let run_time = started.elapsed();

    let mut rng = Rng::new(run_time.as_nanos() as u64);
    let at = run_time.mul_f64(0.2 + 0.4 * rng.unit());
    let requests = seeded(scale);
    let running = tokio::spawn({
        let gateway = gateway.clone();
        async move { drive::streams(&gateway, requests).await }
    });
    tokio::time::sleep(at).await;
    let victim = busiest(&fleet).await;
    let sessions = fleet.decoders[victim].decoder_info().await?.sessions;
    eprintln!(
        "  SIGKILL {} at {:.0} ms of ~{:.0} ({sessions} sessions)",
        fleet.decoders[victim].name,
        at.as_secs_f64() * 1e3,
        run_time.as_secs_f64() * 1e3
    );
    fleet.decoders[victim].signal("KILL")?;
    let disturbed = running.await?;
    let mut rows = compare("kill", &undisturbed, &disturbed);
    let idle = idle_within(&fleet, Some(victim), Duration::from_secs(10)).await;
    rows.push(Row::new(
        "kill",
        "the survivor ends with 0 sessions",
        match idle {
            Some(t) => format!(
                "0 sessions {:.0} ms after the last stream",
                t.as_secs_f64() * 1e3
            ),
            None => leftovers(&fleet, Some(victim)).await,
        },
        Verdict::check(idle.is_some()),
    ));
    rows.push(Row::new(
        "kill",
        "failovers reported in metrics",
        format!(
            "{} generations moved ({sessions} sessions on the killed decoder), {} tokens re-prefilled; largest gap a client saw {:.0} ms",
            gateway_metric(&fleet, "oneword_generation_failovers_total").await,
            gateway_metric(&fleet, "oneword_generation_failover_prefill_tokens_total").await,
            disturbed.iter().map(Outcome::largest_gap).max().unwrap_or_default().as_secs_f64() * 1e3
        ),
        Verdict::check(sessions == 0 || gateway_metric(&fleet, "oneword_generation_failovers_total").await > 0.0),
    ));
    fleet.decoders[victim].kill().await;
    fleet.stop().await;
    Ok(rows)
}

/// SIGSTOP the busiest decoder mid-stream for `scale.freeze`, then SIGCONT it.
pub async fn freeze(setup: &Setup, scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let fleet = Fleet::start(setup, &two_decoders()).await?;
    let gateway = fleet.gateway_client().await?;
    let started = Instant::now();
    let undisturbed = drive::streams(&gateway, seeded(scale)).await;
    let run_time = started.elapsed();
    let mut baseline_gaps = drive::all_gaps(&undisturbed);
    let baseline_p99 = drive::quantile_ms(&mut baseline_gaps, 0.99);

    let requests = seeded(scale);
    let running = tokio::spawn({
        let gateway = gateway.clone();
        async move { drive::streams(&gateway, requests).await }
    });
    tokio::time::sleep(run_time.mul_f64(0.3)).await;
    let victim = busiest(&fleet).await;
    let frozen = &fleet.decoders[victim];
    let sessions = frozen.decoder_info().await?.sessions;
    eprintln!(
        "  SIGSTOP {} for {:?} ({sessions} sessions)",
        frozen.name, scale.freeze
    );
    frozen.signal("STOP")?;
    let frozen_at = Instant::now();
    let disturbed = running.await?;
    let streams_done = frozen_at.elapsed();
    tokio::time::sleep(scale.freeze.saturating_sub(frozen_at.elapsed())).await;
    frozen.signal("CONT")?;

    let mut rows = compare("stop", &undisturbed, &disturbed);
    // Streams on the frozen decoder show one long gap: the time to detect the hang and move.
    let detect = Duration::from_secs(5);
    let (affected, healthy): (Vec<&Outcome>, Vec<&Outcome>) = disturbed
        .iter()
        .partition(|o| o.largest_gap() > Duration::from_millis(900));
    let slowest_move = affected
        .iter()
        .map(|o| o.largest_gap())
        .max()
        .unwrap_or_default();
    rows.push(Row::new(
        "stop",
        "frozen streams detected and moved within 5 s",
        format!(
            "{} streams stalled, the longest for {:.2} s; all streams done {:.1} s after SIGSTOP",
            affected.len(),
            slowest_move.as_secs_f64(),
            streams_done.as_secs_f64()
        ),
        Verdict::timing(slowest_move <= detect),
    ));
    let healthy_p99 = drive::quantile_ms(&mut drive::all_gaps(healthy), 0.99);
    rows.push(Row::p99_ratio(
        "stop",
        "healthy streams' p99 inter-token latency ≤ 1.2× undisturbed",
        healthy_p99,
        baseline_p99,
        "undisturbed",
        1.2,
    ));
    // After SIGCONT the gateway's retried releases free what the frozen decoder held, and a new
    // run (which may land on it) still gives the same text.
    let idle = idle_within(&fleet, None, Duration::from_secs(15)).await;
    rows.push(Row::new(
        "stop",
        "after SIGCONT no stale session is left or used",
        match idle {
            Some(t) => format!(
                "both decoders at 0 sessions {:.1} s after SIGCONT",
                t.as_secs_f64()
            ),
            None => leftovers(&fleet, None).await,
        },
        Verdict::check(idle.is_some()),
    ));
    let again = drive::streams(&gateway, seeded(scale)).await;
    rows.extend(
        compare("stop", &undisturbed, &again)
            .into_iter()
            .map(|mut r| {
                r.goal = format!("after SIGCONT: {}", r.goal);
                r
            }),
    );
    fleet.stop().await;
    Ok(rows)
}

/// Restarts every decoder, tokenizer and embedder replica in turn (SIGTERM, drain, start on the
/// same port) while workers generate; for `scale.rolling`, at least one full round.
pub async fn rolling(setup: &Setup, scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let shape = Shape {
        stateless_replicas: 2,
        decoders: 2,
        decoder_flags: vec!["--drain-secs".into(), "5".into()],
        gateway_flags: vec!["--decoder-stall-ms".into(), STALL_MS.into()],
        ..Default::default()
    };
    let mut fleet = Fleet::start(setup, &shape).await?;
    let gateway = fleet.gateway_client().await?;
    let started = Instant::now();
    let restarting = async {
        let (mut restarts, mut longest_drain) = (0, Duration::ZERO);
        loop {
            for group in 0..3 {
                let replicas = match group {
                    0 => &mut fleet.decoders,
                    1 => &mut fleet.tokenizers,
                    _ => &mut fleet.embedders,
                };
                for replica in replicas.iter_mut() {
                    let drained = replica.restart(Duration::from_secs(30)).await?;
                    longest_drain = longest_drain.max(drained);
                    restarts += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            if started.elapsed() >= scale.rolling {
                return Ok((restarts, longest_drain));
            }
        }
    };
    let ((restarts, longest_drain), outcomes) =
        drive::clients_during(&gateway, 8, 32, Backoff::AsAsked, restarting).await?;
    let tokens: usize = outcomes.iter().map(|o| o.tokens).sum();
    let rows = vec![Row::new(
        "rolling",
        "rolling restarts of 2 decoders, 2 tokenizers, 2 embedders under load: 0 client-visible errors",
        format!(
            "{restarts} restarts in {:.0} s (longest drain {:.1} s), {tokens} tokens, {}",
            started.elapsed().as_secs_f64(),
            longest_drain.as_secs_f64(),
            drive::summary(&outcomes)
        ),
        Verdict::check(drive::failures(&outcomes).is_empty() && !outcomes.is_empty()),
    )];
    fleet.stop().await;
    Ok(rows)
}

/// Servers that close every connection after a second (as `--max-connection-age-secs` does to
/// rebalance clients) while workers generate: the recycling must cost no call.
pub async fn connection_age(setup: &Setup, scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let age = ["--max-connection-age-secs".to_string(), "1".to_string()];
    let shape = Shape {
        stateless_replicas: 1,
        decoders: 2,
        decoder_flags: age.to_vec(),
        gateway_flags: age.to_vec(),
        ..Default::default()
    };
    let fleet = Fleet::start(setup, &shape).await?;
    let gateway = fleet.gateway_client().await?;
    let sleep = async {
        tokio::time::sleep(scale.age).await;
        Ok(())
    };
    let ((), outcomes) = drive::clients_during(&gateway, 16, 32, Backoff::AsAsked, sleep).await?;
    let rows = vec![Row::new(
        "age",
        format!(
            "connections closed after 1 s by the gateway and the decoders, 16 streams for {} s: 0 errors",
            scale.age.as_secs()
        ),
        drive::summary(&outcomes),
        Verdict::check(drive::failures(&outcomes).is_empty() && !outcomes.is_empty()),
    )];
    fleet.stop().await;
    Ok(rows)
}

/// How one storm request ends.
#[derive(Clone, Copy)]
enum Storm {
    /// The client drops the stream after a delay.
    Cancel,
    /// A deadline that expires while the request runs.
    Deadline,
    /// The client's TCP connection is reset (SO_LINGER 0).
    Reset,
}

/// One storm request: n ∈ {1, 4}, ended at a random point from before the first token to well
/// into decoding.
async fn storm_one(
    gateway: GatewayClient<Channel>,
    address: std::net::SocketAddr,
    kind: Storm,
    i: u64,
    after: Duration,
) {
    use futures::StreamExt;
    let n = if i.is_multiple_of(4) { 4 } else { 1 };
    let request = drive::request(i, 64, 0.8, n);
    match kind {
        Storm::Cancel => {
            let mut gateway = gateway;
            let _ = tokio::time::timeout(after, async move {
                let mut stream = gateway.generate_stream(request).await?.into_inner();
                while stream.next().await.is_some() {}
                Ok::<_, tonic::Status>(())
            })
            .await;
        }
        Storm::Deadline => {
            let mut gateway = gateway;
            let mut request = tonic::Request::new(request);
            request.set_timeout(after.max(Duration::from_millis(1)));
            if let Ok(stream) = gateway.generate_stream(request).await {
                let mut stream = stream.into_inner();
                while stream.next().await.is_some() {}
            }
        }
        Storm::Reset => {
            let Ok(channel) = reset_on_drop(address).await else {
                return;
            };
            let mut client = GatewayClient::new(channel.clone());
            let _ = tokio::time::timeout(after, async move {
                let mut stream = client.generate_stream(request).await?.into_inner();
                while stream.next().await.is_some() {}
                Ok::<_, tonic::Status>(())
            })
            .await;
            drop(channel);
        }
    }
}

/// A channel of its own whose socket is closed with a TCP RST (linger 0) when dropped: a client
/// that vanishes mid-call.
async fn reset_on_drop(address: std::net::SocketAddr) -> anyhow::Result<Channel> {
    let connector = tower::service_fn(move |_| async move {
        let socket = tokio::net::TcpStream::connect(address).await?;
        socket.set_zero_linger()?;
        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(socket))
    });
    Ok(Endpoint::from_shared(format!("http://{address}"))?
        .connect_with_connector(connector)
        .await?)
}

/// Cancellations, expired deadlines and client resets at random points, `scale.storm_each` of
/// each; then everything must be let go within a second.
pub async fn storm(setup: &Setup, scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let fleet = Fleet::start(setup, &two_decoders()).await?;
    let gateway = fleet.gateway_client().await?;
    // A greedy stream's pace, to spread the cut points over a whole generation.
    let probe = drive::stream(gateway.clone(), drive::request(0, 64, 0.0, 1)).await;
    let generation = probe.first.unwrap_or_default() + probe.gaps.iter().sum::<Duration>();
    let mut rng = Rng::new(7);
    let mut tasks = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    let started = Instant::now();
    for i in 0..3 * scale.storm_each as u64 {
        let kind = [Storm::Cancel, Storm::Deadline, Storm::Reset][(i % 3) as usize];
        let after = generation.mul_f64(rng.unit() * 1.2);
        let permit = limit.clone().acquire_owned().await?;
        let gateway = gateway.clone();
        let address = fleet.gateway.grpc;
        tasks.spawn(async move {
            storm_one(gateway, address, kind, i, after).await;
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    let storm_time = started.elapsed();
    let idle = idle_within(&fleet, None, Duration::from_secs(10)).await;
    let mut rows = vec![Row::new(
        "storm",
        format!(
            "{} cancellations + {} expired deadlines + {} client resets: 0 sessions, 0 KV bytes, 0 steps, every permit back",
            scale.storm_each, scale.storm_each, scale.storm_each
        ),
        match idle {
            Some(t) => format!(
                "all let go {:.0} ms after the last request ended ({:.1} s of storm, cut points over a {:.0} ms generation)",
                t.as_secs_f64() * 1e3,
                storm_time.as_secs_f64(),
                generation.as_secs_f64() * 1e3
            ),
            None => format!("still held after 10 s: {}", leftovers(&fleet, None).await),
        },
        Verdict::check(idle.is_some()),
    )];
    rows.push(Row::new(
        "storm",
        "… within 1 s",
        idle.map_or("never".into(), |t| {
            format!("{:.0} ms", t.as_secs_f64() * 1e3)
        }),
        Verdict::timing(idle.is_some_and(|t| t <= Duration::from_secs(1))),
    ));
    // The gateway's connections to the decoders survived the resets it sent them.
    let after = drive::streams(&gateway, seeded(scale)).await;
    let failures = drive::failures(&after);
    rows.push(Row::new(
        "storm",
        "the service works normally after the storm",
        if failures.is_empty() {
            format!("{} seeded streams complete", after.len())
        } else {
            failures.clone()
        },
        Verdict::check(failures.is_empty()),
    ));
    fleet.stop().await;
    Ok(rows)
}
