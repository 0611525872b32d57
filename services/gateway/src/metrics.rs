//! The gateway's own metrics, named as vLLM names them (under `oneword_`), recorded by the
//! generation loop that both the gRPC and the HTTP API run. Per-call counts and latencies come
//! from the runtime's one tower layer.

use std::time::Instant;

use oneword_runtime::prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Opts};
use oneword_runtime::Metrics;

/// vLLM's buckets for time to first token, in seconds.
const TTFT_SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0,
];
/// vLLM's buckets for inter-token latency, in seconds (with a finer low end for small models).
const ITL_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
    5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
];
/// vLLM's buckets for end-to-end latency, in seconds.
const E2E_SECONDS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];
/// Token counts per request.
const TOKENS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// See the module documentation.
#[derive(Clone)]
pub struct GatewayMetrics {
    pub time_to_first_token: Histogram,
    pub inter_token_latency: Histogram,
    pub e2e_latency: Histogram,
    pub prompt_tokens: IntCounter,
    pub generation_tokens: IntCounter,
    pub request_prompt_tokens: Histogram,
    pub request_generation_tokens: Histogram,
    pub failovers: IntCounter,
    pub failover_tokens: IntCounter,
    finished: IntCounterVec,
    running: IntGauge,
    waiting: IntGauge,
}

impl GatewayMetrics {
    pub fn new(metrics: &Metrics) -> Self {
        GatewayMetrics {
            time_to_first_token: metrics.histogram("time_to_first_token_seconds", "Time from a generation's arrival to its first token.", TTFT_SECONDS),
            inter_token_latency: metrics.histogram("inter_token_latency_seconds", "Time between two tokens of a generation.", ITL_SECONDS),
            e2e_latency: metrics.histogram("e2e_request_latency_seconds", "Time from a generation's arrival to its last token.", E2E_SECONDS),
            prompt_tokens: metrics.counter("prompt_tokens_total", "Prompt tokens of generations."),
            generation_tokens: metrics.counter("generation_tokens_total", "Tokens generated."),
            request_prompt_tokens: metrics.histogram("request_prompt_tokens", "Prompt tokens per generation.", TOKENS),
            request_generation_tokens: metrics.histogram("request_generation_tokens", "Tokens generated per completion.", TOKENS),
            failovers: metrics.counter("generation_failovers_total", "Generations moved to another decoder replica after theirs failed mid-generation."),
            failover_tokens: metrics.counter("generation_failover_prefill_tokens_total", "Tokens prefilled again on the replica a failed generation moved to (prompt + tokens so far, per completion)."),
            finished: metrics.register(
                IntCounterVec::new(
                    Opts::new("request_success_total", "Completions finished, by why they finished."),
                    &["finished_reason"],
                )
                .expect("valid metric; this is a bug"),
            ),
            running: metrics.int_gauge("num_requests_running", "Generations producing tokens."),
            waiting: metrics.int_gauge("num_requests_waiting", "Generations admitted and not yet at their first token (tokenizing, queued or prefilling)."),
        }
    }

    /// Counts a generation as waiting until [`Progress::first_token`], then running until the
    /// returned value is dropped (finished, failed or cancelled alike).
    pub fn start(&self) -> Progress {
        self.waiting.inc();
        Progress {
            metrics: self.clone(),
            arrived: Instant::now(),
            last_token: None,
        }
    }

    /// A completion ended for `reason` (`length`, `eos_token`, `stop_sequence`).
    pub fn finished(&self, reason: &str, generated: usize) {
        self.finished.with_label_values(&[reason]).inc();
        self.request_generation_tokens.observe(generated as f64);
    }
}

/// One generation's place in the running/waiting gauges and its token times.
pub struct Progress {
    metrics: GatewayMetrics,
    arrived: Instant,
    last_token: Option<Instant>,
}

impl Progress {
    /// A step produced tokens (one per running completion).
    pub fn tokens(&mut self, count: usize) {
        let now = Instant::now();
        let m = &self.metrics;
        match self.last_token {
            None => {
                m.time_to_first_token
                    .observe((now - self.arrived).as_secs_f64());
                m.waiting.dec();
                m.running.inc();
            }
            Some(last) => m.inter_token_latency.observe((now - last).as_secs_f64()),
        }
        m.generation_tokens.inc_by(count as u64);
        self.last_token = Some(now);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        let m = &self.metrics;
        match self.last_token {
            None => m.waiting.dec(),
            Some(_) => {
                m.running.dec();
                m.e2e_latency.observe(self.arrived.elapsed().as_secs_f64());
            }
        }
    }
}
