//! The load driver: seeded generation streams over gRPC, timed chunk by chunk, with the client's
//! view of how each ended (complete, refused, failed, or cut short).

use std::time::{Duration, Instant};

use futures::StreamExt;
use oneword_proto::gateway::v1 as pb;
use oneword_runtime::status::never_sent;
use pb::gateway_client::GatewayClient;
use tonic::transport::Channel;
use tonic::Status;

/// A seeded request: `n` completions of up to `tokens` tokens at `temperature`, EOS ignored so
/// that every run has the same length.
pub fn request(i: u64, tokens: u32, temperature: f32, n: u32) -> pb::GenerateRequest {
    pb::GenerateRequest {
        prompt: format!("Stream {i} began with a sentence about"),
        max_new_tokens: Some(tokens),
        temperature: Some(temperature),
        seed: Some(i),
        n: Some(n),
        ignore_eos: true,
        ..Default::default()
    }
}

/// What the client saw of one stream.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Text of each completion, by index.
    pub texts: Vec<String>,
    pub tokens: usize,
    /// From the call to the first chunk.
    pub first: Option<Duration>,
    /// Time between consecutive chunks.
    pub gaps: Vec<Duration>,
    /// The status the stream (or the call) ended with.
    pub error: Option<Status>,
    /// How long the call took to be refused, when it was refused before any chunk.
    pub refused_after: Option<Duration>,
    /// Every completion got its finish reason: an `Ok` end without one is truncation.
    pub finished: bool,
    /// The call was sent again because the first never left this process.
    pub resent: bool,
}

impl Outcome {
    pub fn largest_gap(&self) -> Duration {
        self.gaps.iter().copied().max().unwrap_or_default()
    }

    /// Ended cleanly yet incomplete: the failure a client cannot tell from success.
    pub fn truncated(&self) -> bool {
        self.error.is_none() && !self.finished
    }
}

/// Runs one stream to its end.
pub async fn stream(mut gateway: GatewayClient<Channel>, request: pb::GenerateRequest) -> Outcome {
    let n = request.n.unwrap_or(1).max(1) as usize;
    let mut outcome = Outcome {
        texts: vec![String::new(); n],
        ..Default::default()
    };
    let started = Instant::now();
    let mut answer = gateway.generate_stream(request.clone()).await;
    if answer.as_ref().is_err_and(never_sent) {
        // What gRPC's transparent retry does and tonic does not: a call the server never saw
        // (its connection was being closed at the server's maximum age) is sent again.
        outcome.resent = true;
        answer = gateway.generate_stream(request).await;
    }
    let mut chunks = match answer {
        Ok(response) => response.into_inner(),
        Err(status) => {
            outcome.refused_after = Some(started.elapsed());
            outcome.error = Some(status);
            return outcome;
        }
    };
    let mut last = started;
    let mut done = vec![false; n];
    while let Some(chunk) = chunks.next().await {
        let now = Instant::now();
        match chunk {
            Ok(chunk) => {
                match outcome.first {
                    None => outcome.first = Some(now - started),
                    Some(_) => outcome.gaps.push(now - last),
                }
                last = now;
                let i = chunk.index as usize;
                if let Some(text) = outcome.texts.get_mut(i) {
                    text.push_str(&chunk.text);
                }
                outcome.tokens += chunk.token_ids.len();
                if chunk.finish_reason != pb::FinishReason::Unspecified as i32 {
                    if let Some(d) = done.get_mut(i) {
                        *d = true;
                    }
                }
            }
            Err(status) => {
                if outcome.first.is_none() {
                    outcome.refused_after = Some(started.elapsed());
                }
                outcome.error = Some(status);
                break;
            }
        }
    }
    outcome.finished = done.iter().all(|d| *d);
    outcome
}

/// Runs `requests` concurrently and returns their outcomes in order.
pub async fn streams(
    gateway: &GatewayClient<Channel>,
    requests: Vec<pb::GenerateRequest>,
) -> Vec<Outcome> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|r| tokio::spawn(stream(gateway.clone(), r)))
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.unwrap_or_else(|e| Outcome {
            error: Some(Status::internal(format!("the driver's task failed: {e}"))),
            ..Default::default()
        }));
    }
    outcomes
}

/// The `q` quantile (0..=1) of durations, in milliseconds (0 for none).
pub fn quantile_ms(samples: &mut [Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let i = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[i].as_secs_f64() * 1e3
}

/// Every gap of `outcomes`, for latency quantiles.
pub fn all_gaps<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Vec<Duration> {
    outcomes
        .into_iter()
        .flat_map(|o| o.gaps.iter().copied())
        .collect()
}

/// Errors (by code) and truncations among `outcomes`, as one line; empty when none.
pub fn failures<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> String {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for o in outcomes {
        if let Some(status) = &o.error {
            *counts
                .entry(format!("{:?}: {}", status.code(), status.message()))
                .or_default() += 1;
        } else if o.truncated() {
            *counts.entry("truncated (clean end)".into()).or_default() += 1;
        }
    }
    counts
        .iter()
        .map(|(what, n)| format!("{n}× {what}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// "N streams (k sent again …), 0 errors", or the failures instead of "0 errors".
pub fn summary(outcomes: &[Outcome]) -> String {
    let failures = failures(outcomes);
    format!(
        "{} streams ({} sent again by the client after an unsent first try), {}",
        outcomes.len(),
        outcomes.iter().filter(|o| o.resent).count(),
        if failures.is_empty() {
            "0 errors"
        } else {
            &failures
        }
    )
}

/// How long a client waits after an overload refusal before it asks again.
#[derive(Clone, Copy)]
pub enum Backoff {
    /// As long as the refusal's `RetryInfo` asks (what gRPC retry policies and the OpenAI SDKs
    /// do with their own hints).
    AsAsked,
    /// A fixed pause, whatever the server asked: an impatient client.
    Fixed(Duration),
}

impl Backoff {
    fn after(self, refusal: Option<&tonic::Status>) -> Duration {
        use tonic_types::StatusExt;
        match self {
            Backoff::Fixed(pause) => pause,
            Backoff::AsAsked => refusal
                .and_then(|s| s.get_details_retry_info()?.retry_delay)
                .unwrap_or(oneword_runtime::status::RETRY_AFTER),
        }
    }
}

/// `count` closed-loop clients generating `tokens` tokens each time (waiting as `backoff` says
/// after a refusal), for as long as `during` runs; its result and every outcome.
pub async fn clients_during<T>(
    gateway: &GatewayClient<Channel>,
    count: usize,
    tokens: u32,
    backoff: Backoff,
    during: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, Vec<Outcome>)> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..count as u64)
        .map(|w| {
            let (gateway, stop) = (gateway.clone(), stop.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let o =
                        stream(gateway.clone(), request(w * 1_000_000 + i, tokens, 0.8, 1)).await;
                    if o.refused_after.is_some() {
                        tokio::time::sleep(backoff.after(o.error.as_ref())).await;
                    }
                    outcomes.push(o);
                    i += 1;
                }
                outcomes
            })
        })
        .collect();
    let result = during.await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for client in clients {
        outcomes.extend(client.await?);
    }
    Ok((result?, outcomes))
}
