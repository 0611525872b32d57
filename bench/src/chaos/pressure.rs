//! Pressure from clients: overload at ten times capacity, worst-case answers, protocol attacks
//! on every port, and a long soak at 80% of capacity.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oneword_proto::gateway::v1 as pb;
use oneword_runtime::status::is_overloaded;
use pb::gateway_client::GatewayClient;
use tonic::transport::Channel;
use tonic::Code;

use crate::drive::{self, Backoff, Outcome};
use crate::fleet::{Fleet, Service, Setup, Shape};
use crate::{attack, faults};
use crate::{Rng, Row, Scale, Verdict};

const MIB: f64 = (1 << 20) as f64;

fn one_of_each(gateway_flags: &[&str]) -> Shape {
    Shape {
        stateless_replicas: 1,
        decoders: 1,
        gateway_flags: gateway_flags.iter().map(|f| f.to_string()).collect(),
        ..Default::default()
    }
}

/// Samples the resident memory of `services` every `every` until `stop`; returns each one's peak.
fn watch_rss(
    pids: Vec<(String, Option<u32>)>,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(String, u64)>> {
    tokio::spawn(async move {
        let mut peaks: Vec<(String, u64)> = pids.iter().map(|(n, _)| (n.clone(), 0)).collect();
        while !stop.load(Ordering::Relaxed) {
            for ((_, pid), (_, peak)) in pids.iter().zip(peaks.iter_mut()) {
                *peak = (*peak).max(pid.map_or(0, rss_of));
            }
            tokio::time::sleep(every).await;
        }
        peaks
    })
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn pids<'a>(services: impl IntoIterator<Item = &'a Service>) -> Vec<(String, Option<u32>)> {
    services
        .into_iter()
        .map(|s| (s.name.clone(), s.pid()))
        .collect()
}

/// Ten clients for every request the gateway admits, for `scale.overload`: refusals must be fast
/// and say when to retry, admitted streams must keep their pace, memory must stay flat. First the
/// clients wait as each refusal's `RetryInfo` asks (the goal's case), then they come back after
/// 20 ms whatever it asks, which offers hundreds of times what is served.
pub async fn overload(setup: &Setup, scale: &Scale) -> anyhow::Result<Vec<Row>> {
    const LIMIT: usize = 16;
    let fleet = Fleet::start(
        setup,
        &one_of_each(&["--max-concurrent-requests", &LIMIT.to_string()]),
    )
    .await?;
    let gateway = fleet.gateway_client().await?;
    let requests = (0..LIMIT as u64)
        .map(|i| drive::request(i, 64, 0.8, 1))
        .collect();
    let unloaded = drive::streams(&gateway, requests).await;
    let unloaded_p99 = drive::quantile_ms(&mut drive::all_gaps(&unloaded), 0.99);
    let overload = Overload {
        fleet: &fleet,
        gateway: &gateway,
        clients: 10 * LIMIT,
        unloaded_p99,
        against: format!("at {LIMIT} streams alone"),
        duration: scale.overload,
    };
    let mut rows = overload.phase("", Backoff::AsAsked).await?;
    rows.extend(
        overload
            .phase(
                "impatient clients (back after 20 ms, beyond the goal): ",
                Backoff::Fixed(Duration::from_millis(20)),
            )
            .await?,
    );
    fleet.stop().await;
    Ok(rows)
}

/// One overload phase's setting.
struct Overload<'a> {
    fleet: &'a Fleet,
    gateway: &'a GatewayClient<Channel>,
    clients: usize,
    unloaded_p99: f64,
    against: String,
    duration: Duration,
}

impl Overload<'_> {
    /// `clients` closed-loop clients backing off as `backoff` says, and an HTTP prober, for
    /// `duration`; rows whose goals start with `who`.
    async fn phase(&self, who: &str, backoff: Backoff) -> anyhow::Result<Vec<Row>> {
        let rss_before = self.fleet.gateway.rss();
        let probing = Arc::new(AtomicBool::new(false));
        let http = tokio::spawn(http_probes(
            self.fleet.gateway.http.expect("the gateway's HTTP port"),
            probing.clone(),
        ));
        let overloading = async {
            tokio::time::sleep(self.duration).await;
            probing.store(true, Ordering::Relaxed);
            Ok(self.fleet.gateway.rss())
        };
        let (rss_after, outcomes) =
            drive::clients_during(self.gateway, self.clients, 64, backoff, overloading).await?;
        let (http_429, http_with_retry_after, http_other) = http.await??;

        let is_refusal = |o: &Outcome| {
            o.error
                .as_ref()
                .is_some_and(|s| s.code() == Code::ResourceExhausted)
        };
        let refused: Vec<&Outcome> = outcomes.iter().filter(|o| is_refusal(o)).collect();
        let with_retry_info = refused
            .iter()
            .filter(|o| o.error.as_ref().is_some_and(is_overloaded))
            .count();
        let mut refusal_times: Vec<Duration> =
            refused.iter().filter_map(|o| o.refused_after).collect();
        let refusal_p99 = drive::quantile_ms(&mut refusal_times, 0.99);
        let admitted: Vec<&Outcome> = outcomes.iter().filter(|o| o.error.is_none()).collect();
        let others = drive::failures(outcomes.iter().filter(|o| !is_refusal(o)));
        let admitted_p99 = drive::quantile_ms(&mut drive::all_gaps(admitted.iter().copied()), 0.99);
        let offered = outcomes.len() as f64 / self.duration.as_secs_f64();
        let served = admitted.len() as f64 / self.duration.as_secs_f64();
        Ok(vec![
            Row::new(
                "overload",
                format!("{who}10× capacity: every refusal is RESOURCE_EXHAUSTED with RetryInfo (gRPC) / 429 with Retry-After (HTTP), nothing else fails"),
                format!(
                    "{} clients offered {offered:.0} requests/s for {served:.1} served ({:.0}×); {} refused, {with_retry_info} with RetryInfo; {} completed; HTTP: {http_429} × 429, {http_with_retry_after} with Retry-After, {http_other} other answers{}",
                    self.clients,
                    offered / served.max(1e-9),
                    refused.len(),
                    admitted.len(),
                    if others.is_empty() { String::new() } else { format!("; other failures: {others}") }
                ),
                Verdict::check(
                    !refused.is_empty()
                        && with_retry_info == refused.len()
                        && http_with_retry_after == http_429
                        && others.is_empty()
                        && !admitted.is_empty(),
                ),
            ),
            Row::new(
                "overload",
                format!("{who}refusals within 50 ms p99"),
                format!("p99 {refusal_p99:.1} ms"),
                Verdict::timing(refusal_p99 <= 50.0),
            ),
            Row::p99_ratio(
                "overload",
                format!("{who}admitted streams' p99 inter-token latency ≤ 1.5× unloaded"),
                admitted_p99,
                self.unloaded_p99,
                &self.against,
                1.5,
            ),
            Row::new(
                "overload",
                format!("{who}gateway memory flat"),
                format!(
                    "RSS {:.1} MiB before, {:.1} MiB after ({:+.1} MiB)",
                    rss_before as f64 / MIB,
                    rss_after as f64 / MIB,
                    (rss_after as f64 - rss_before as f64) / MIB
                ),
                Verdict::timing(rss_after < rss_before + (16 << 20)),
            ),
        ])
    }
}

/// `POST /v1/completions` every 50 ms until `stop`: (429s, 429s with `Retry-After`, other
/// non-success answers).
async fn http_probes(
    address: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(usize, usize, usize)> {
    let client = reqwest::Client::new();
    let url = format!("http://{address}/v1/completions");
    let (mut too_many, mut with_header, mut other) = (0, 0, 0);
    while !stop.load(Ordering::Relaxed) {
        let answer = client
            .post(&url)
            .json(&serde_json::json!({"prompt": "An overloaded server", "max_tokens": 8}))
            .send()
            .await?;
        match answer.status().as_u16() {
            200 => {}
            429 => {
                too_many += 1;
                with_header += usize::from(answer.headers().contains_key("retry-after"));
            }
            _ => other += 1,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((too_many, with_header, other))
}

/// The largest answers a client can ask for, `scale.worst` at once: every layer's attention and
/// hidden states of a full-context prompt, full logit rows, top-100 logprobs of 16 completions.
pub async fn worst(setup: &Setup, scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let fleet = Fleet::start(setup, &one_of_each(&[])).await?;
    let gateway = fleet.gateway_client().await?;
    let info = gateway.clone().info(pb::InfoRequest {}).await?.into_inner();
    let model = info.model.unwrap_or_default();
    // "the" is one token; leave room for 16 new ones.
    let long = format!(
        "the{}",
        " the".repeat(model.context_length.saturating_sub(17) as usize)
    );
    let before: Vec<u64> = fleet.all().map(Service::rss).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let peaks = watch_rss(pids(fleet.all()), Duration::from_millis(20), stop.clone());
    let started = Instant::now();
    let calls: Vec<_> = (0..scale.worst)
        .map(|i| {
            let (mut gateway, prompt) = (gateway.clone(), long.clone());
            let layers = (0..model.num_layers).collect();
            tokio::spawn(async move {
                let answer = match i % 3 {
                    0 => gateway
                        .inspect(pb::InspectRequest {
                            prompt,
                            embedding_parts: true,
                            attention_layers: layers,
                            hidden_states: true,
                            lens_top_n: Some(100),
                        })
                        .await
                        .map(|_| ()),
                    1 => gateway
                        .next_tokens(pb::NextTokensRequest {
                            prompt,
                            top_n: Some(100),
                            temperature: Some(0.8),
                            full_row: true,
                            ..Default::default()
                        })
                        .await
                        .map(|_| ()),
                    _ => {
                        let mut request = drive::request(i as u64, 16, 0.8, 16);
                        request.prompt = prompt;
                        request.logprobs = Some(100);
                        gateway.generate(request).await.map(|_| ())
                    }
                };
                answer.err().map(|s| s.code())
            })
        })
        .collect();
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for call in calls {
        let code = call.await?;
        *codes
            .entry(code.map_or("OK".into(), |c| format!("{c:?}")))
            .or_default() += 1;
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let peaks = peaks.await?;
    let alive = fleet.all().all(|s| s.rss() > 0);
    let unexpected: usize = codes
        .iter()
        .filter(|(c, _)| !matches!(c.as_str(), "OK" | "ResourceExhausted"))
        .map(|(_, n)| n)
        .sum();
    let growth: Vec<String> = peaks
        .iter()
        .zip(&before)
        .filter(|((name, _), _)| name.starts_with("gateway") || name.starts_with("decoder"))
        .map(|((name, peak), before)| {
            format!(
                "{name} {:.0} → peak {:.0} MiB",
                *before as f64 / MIB,
                *peak as f64 / MIB
            )
        })
        .collect();
    let rows = vec![Row::new(
        "worst",
        format!(
            "{} concurrent maximum-size Inspect / full-row / n=16 top-100 logprob requests: only OK or RESOURCE_EXHAUSTED, every process alive",
            scale.worst
        ),
        format!(
            "{codes:?} in {:.1} s; {}",
            elapsed.as_secs_f64(),
            growth.join(", ")
        ),
        Verdict::check(alive && unexpected == 0),
    )];
    fleet.stop().await;
    Ok(rows)
}

/// Rapid reset and CONTINUATION floods on each port, and slow clients on the HTTP port, while an
/// honest client generates.
pub async fn attacks(setup: &Setup, scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let fleet = Fleet::start(setup, &one_of_each(&[])).await?;
    let gateway = fleet.gateway_client().await?;
    let honest_baseline = honest(&gateway, Duration::from_secs(3)).await;
    let mut rows = Vec::new();
    let http = fleet.gateway.http.expect("the gateway's HTTP port");
    let mut ports: Vec<(&Service, std::net::SocketAddr, &str)> = vec![
        (
            &fleet.gateway,
            fleet.gateway.grpc,
            "/oneword.gateway.v1.Gateway/GenerateStream",
        ),
        (&fleet.gateway, http, "/v1/completions"),
    ];
    if scale.attack_internal_ports {
        ports.push((
            &fleet.decoders[0],
            fleet.decoders[0].grpc,
            "/oneword.decoder.v1.Decoder/Step",
        ));
        ports.push((
            &fleet.tokenizers[0],
            fleet.tokenizers[0].grpc,
            "/oneword.tokenizer.v1.Tokenizer/Encode",
        ));
        ports.push((
            &fleet.embedders[0],
            fleet.embedders[0].grpc,
            "/oneword.embedder.v1.Embedder/Embed",
        ));
    }
    for (service, address, path) in ports {
        let port = format!("{} {address}", service.name);
        let cpu_before = service.cpu_seconds();
        let started = Instant::now();
        let (flood, honest_p99) = tokio::join!(
            attack::rapid_reset(address, path, scale.resets, Duration::from_secs(10)),
            honest(&gateway, Duration::from_secs(10)),
        );
        let flood = flood?;
        let cores = (service.cpu_seconds() - cpu_before) / started.elapsed().as_secs_f64();
        rows.push(Row::new(
            "attacks",
            format!("rapid reset ({} HEADERS+RST_STREAM in ≤ 10 s) on {port}: connection closed or GOAWAY", scale.resets),
            format!(
                "{} streams in {:.2} s; {}",
                flood.sent,
                flood.elapsed.as_secs_f64(),
                ending(&flood)
            ),
            // A server that keeps up without closing is fine too, if it stays within a core.
            Verdict::check(flood.goaway.is_some() || flood.closed || cores <= 1.0),
        ));
        rows.push(Row::new(
            "attacks",
            format!("rapid reset on {port}: CPU ≤ 1 core, honest p99 ≤ 2×"),
            format!("{cores:.2} cores; honest p99 {honest_p99:.1} ms vs {honest_baseline:.1} ms ({:.2}×)", honest_p99 / honest_baseline.max(1e-9)),
            Verdict::timing(cores <= 1.0 && honest_p99 <= 2.0 * honest_baseline),
        ));
        let rss_before = service.rss();
        let flood = attack::continuation_flood(address, path, scale.continuation_frames).await?;
        let grown = service.rss().saturating_sub(rss_before) as f64 / MIB;
        rows.push(Row::new(
            "attacks",
            format!("CONTINUATION flood (up to {} frames of 1 KiB) on {port}: connection closed, RSS + < 1 MiB", scale.continuation_frames),
            format!("after {} frames: {}; RSS {grown:+.2} MiB", flood.sent, ending(&flood)),
            Verdict::check((flood.goaway.is_some() || flood.closed) && flood.sent < scale.continuation_frames),
        ));
    }
    let hold = Duration::from_secs(35);
    let (slow, honest_p99) = tokio::join!(
        attack::slowloris(http, scale.slow_connections, Duration::from_secs(2), hold),
        honest(&gateway, Duration::from_secs(12)),
    );
    let slow = slow?;
    rows.push(Row::new(
        "attacks",
        format!("{} slowloris connections on {http}: idle header reads closed ≤ 30 s", scale.slow_connections),
        format!(
            "{} of {} closed by the server (the slowest after {:.1} s), {} refused; honest p99 {honest_p99:.1} ms",
            slow.closed,
            slow.connections,
            slow.slowest_close.unwrap_or_default().as_secs_f64(),
            slow.refused
        ),
        Verdict::check(
            slow.closed + slow.refused == slow.connections
                && slow.slowest_close.is_some_and(|t| t <= Duration::from_secs(30)),
        ),
    ));
    // Still serving after all of it.
    let after = drive::stream(gateway.clone(), drive::request(1, 16, 0.0, 1)).await;
    let failures = drive::failures([&after]);
    rows.push(Row::new(
        "attacks",
        "the gateway serves normally afterwards",
        if failures.is_empty() {
            "a greedy stream completes".into()
        } else {
            failures
        },
        Verdict::check(after.error.is_none() && after.finished),
    ));
    fleet.stop().await;
    Ok(rows)
}

fn ending(flood: &attack::FloodReport) -> String {
    match (flood.goaway, flood.closed) {
        (Some(code), _) => format!("GOAWAY 0x{code:x}"),
        (None, true) => "connection closed".into(),
        (None, false) => "connection still open".into(),
    }
}

/// p99 inter-token latency, in ms, of greedy streams run one after another for `span`.
async fn honest(gateway: &GatewayClient<Channel>, span: Duration) -> f64 {
    let started = Instant::now();
    let mut gaps = Vec::new();
    let mut i = 0;
    while started.elapsed() < span {
        let o = drive::stream(gateway.clone(), drive::request(i, 32, 0.0, 1)).await;
        gaps.extend(o.gaps);
        i += 1;
    }
    drive::quantile_ms(&mut gaps, 0.99)
}

/// At 80% of the measured capacity for `scale.soak`: open arrivals with mixed prompt and output
/// lengths and 10% cancellations; memory, descriptors and latency must not drift.
pub async fn soak(setup: &Setup, scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let fleet = Fleet::start(setup, &one_of_each(&[])).await?;
    let gateway = fleet.gateway_client().await?;
    let mut rng = Rng::new(11);
    let mixed = |rng: &mut Rng, i: u64| {
        let mut request = drive::request(i, 16 + rng.below(113) as u32, 0.8, 1);
        request.prompt += &" and then".repeat(rng.below(60) as usize);
        request
    };
    // Capacity: requests per second at 16 concurrent closed-loop clients.
    let probe_span = Duration::from_secs(15);
    let started = Instant::now();
    let mut done = 0u64;
    let mut probes = tokio::task::JoinSet::new();
    for i in 0..16 {
        probes.spawn(drive::stream(gateway.clone(), mixed(&mut rng, i)));
    }
    while let Some(o) = probes.join_next().await {
        done += u64::from(o?.error.is_none());
        if started.elapsed() < probe_span {
            probes.spawn(drive::stream(gateway.clone(), mixed(&mut rng, 1000 + done)));
        }
    }
    let capacity = done as f64 / started.elapsed().as_secs_f64();
    let rate = 0.8 * capacity;
    eprintln!(
        "  capacity {capacity:.1} requests/s; soaking at {rate:.1}/s for {:?}",
        scale.soak
    );

    let mut outcomes: Vec<(Duration, Outcome)> = Vec::new();
    let mut samples: Vec<(f64, Vec<u64>, Vec<usize>)> = Vec::new();
    let mut running = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut next_sample = Duration::ZERO;
    let mut i = 0u64;
    while started.elapsed() < scale.soak {
        // Poisson arrivals.
        let wait = Duration::from_secs_f64(-(1.0 - rng.unit()).ln() / rate);
        tokio::time::sleep(wait).await;
        let request = mixed(&mut rng, 1_000_000 + i);
        let cancel = (rng.below(10) == 0).then(|| Duration::from_millis(rng.below(2000)));
        let (gateway, at) = (gateway.clone(), started.elapsed());
        running.spawn(async move {
            let outcome = match cancel {
                Some(after) => tokio::time::timeout(after, drive::stream(gateway, request))
                    .await
                    .ok(),
                None => Some(drive::stream(gateway, request).await),
            };
            (at, outcome)
        });
        while let Some(Ok((at, Some(o)))) = running.try_join_next() {
            outcomes.push((at, o));
        }
        if started.elapsed() >= next_sample {
            samples.push((
                started.elapsed().as_secs_f64() / 60.0,
                fleet.all().map(Service::rss).collect(),
                fleet.all().map(Service::fds).collect(),
            ));
            next_sample += Duration::from_secs(10);
        }
        i += 1;
    }
    while let Some(joined) = running.join_next().await {
        if let Ok((at, Some(o))) = joined {
            outcomes.push((at, o));
        }
    }
    let mut rows = soak_rows(&fleet, scale, rate, &outcomes, &samples);
    let idle = faults::idle_within(&fleet, None, Duration::from_secs(10)).await;
    rows.push(Row::new(
        "soak",
        "every gauge back to 0 at the end",
        match idle {
            Some(t) => format!("idle {:.0} ms after the last stream", t.as_secs_f64() * 1e3),
            None => faults::leftovers(&fleet, None).await,
        },
        Verdict::check(idle.is_some()),
    ));
    fleet.stop().await;
    Ok(rows)
}

fn soak_rows(
    fleet: &Fleet,
    scale: &Scale,
    rate: f64,
    outcomes: &[(Duration, Outcome)],
    samples: &[(f64, Vec<u64>, Vec<usize>)],
) -> Vec<Row> {
    let failures = drive::failures(outcomes.iter().map(|(_, o)| o));
    let minutes = scale.soak.as_secs_f64() / 60.0;
    let mut rows = vec![Row::new(
        "soak",
        format!(
            "{minutes:.0} min at 80% of capacity ({rate:.1} requests/s), 10% cancelled: 0 errors"
        ),
        format!(
            "{} streams finished; {}",
            outcomes.len(),
            if failures.is_empty() {
                "0 errors".into()
            } else {
                failures.clone()
            }
        ),
        Verdict::check(failures.is_empty()),
    )];
    // Warm-up: the first fifth of the run (5 min of 30) is left out of the slopes.
    let warm: Vec<_> = samples
        .iter()
        .filter(|(t, ..)| *t >= minutes / 5.0)
        .collect();
    let names: Vec<String> = fleet.all().map(|s| s.name.clone()).collect();
    let mut slopes = Vec::new();
    let mut worst_slope: f64 = 0.0;
    for (p, name) in names.iter().enumerate() {
        let points: Vec<(f64, f64)> = warm
            .iter()
            .map(|(t, rss, _)| (*t, rss[p] as f64 / MIB))
            .collect();
        let slope = slope(&points);
        worst_slope = worst_slope.max(slope);
        slopes.push(format!("{name} {slope:+.2}"));
    }
    rows.push(Row::new(
        "soak",
        "RSS slope < 0.5 MB/min after warm-up (every process)",
        format!("MiB/min: {}", slopes.join(", ")),
        Verdict::timing(worst_slope < 0.5),
    ));
    let fds_first = samples
        .first()
        .map(|(_, _, f)| f.clone())
        .unwrap_or_default();
    let fds_last = samples
        .last()
        .map(|(_, _, f)| f.clone())
        .unwrap_or_default();
    rows.push(Row::new(
        "soak",
        "file descriptors flat",
        format!("first {fds_first:?}, last {fds_last:?}"),
        Verdict::timing(fds_last.iter().zip(&fds_first).all(|(l, f)| *l <= f + 8)),
    ));
    let window = scale.soak.mul_f64(1.0 / 6.0);
    let p99_of = |keep: &dyn Fn(Duration) -> bool| {
        let mut gaps = drive::all_gaps(outcomes.iter().filter(|(at, _)| keep(*at)).map(|(_, o)| o));
        drive::quantile_ms(&mut gaps, 0.99)
    };
    let first = p99_of(&|at| at < window);
    let last = p99_of(&|at| at >= scale.soak.saturating_sub(window));
    rows.push(Row::p99_ratio(
        "soak",
        "p99 inter-token latency of the last sixth ≤ 1.1× the first",
        last,
        first,
        "in the first sixth",
        1.1,
    ));
    rows
}

/// Least-squares slope of `points` (y per x).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}
