//! The decoder's own metrics, recorded on the model thread: what each forward pass computed and
//! how long it took, and after each round what the sessions hold and what is queued.

use oneword_runtime::prometheus::{Gauge, Histogram, IntCounter, IntGauge};
use oneword_runtime::Metrics;

use super::job::Usage;

/// Rows (tokens) per forward pass: 1 is one stream decoding alone, up to `--max-batch-tokens`.
const ROWS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];
/// Sequences per forward pass.
const SEQUENCES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Seconds per forward pass: a GPU decode step to a long CPU prefill.
const FORWARD_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12,
];

/// See the module documentation.
#[derive(Clone)]
pub struct EngineMetrics {
    pub iteration_tokens: Histogram,
    pub batch_sequences: Histogram,
    pub forward_seconds: Histogram,
    pub logit_rows_downloaded: IntCounter,
    sessions: IntGauge,
    kv_cache_bytes: IntGauge,
    kv_cache_limit_bytes: IntGauge,
    kv_cache_tokens: IntGauge,
    kv_cache_limit_tokens: IntGauge,
    kv_cache_usage: Gauge,
    running: IntGauge,
    waiting: IntGauge,
}

impl EngineMetrics {
    /// Registers the decoder's metrics, with the KV-cache limit known at start.
    pub fn new(metrics: &Metrics, kv_budget_tokens: usize, bytes_per_token: usize) -> Self {
        let m = EngineMetrics {
            iteration_tokens: metrics.histogram(
                "iteration_tokens",
                "Rows (tokens) computed per forward pass: decode steps plus prompt chunks.",
                ROWS,
            ),
            batch_sequences: metrics.histogram(
                "batch_sequences",
                "Sequences (sessions) per forward pass.",
                SEQUENCES,
            ),
            forward_seconds: metrics.histogram(
                "forward_duration_seconds",
                "Time of one forward pass through the blocks and LM head.",
                FORWARD_SECONDS,
            ),
            logit_rows_downloaded: metrics.counter(
                "logit_rows_downloaded_total",
                "Picks on a GPU that needed their whole logit row: a shaping its candidates cannot tell (bias, bans, penalties, a typical set of the whole row, a full row asked for) or a pick they declined.",
            ),
            sessions: metrics.int_gauge("sessions", "Sessions (KV caches) held."),
            kv_cache_bytes: metrics
                .int_gauge("kv_cache_bytes", "Bytes the sessions' KV caches hold."),
            kv_cache_limit_bytes: metrics
                .int_gauge("kv_cache_limit_bytes", "The KV-cache budget in bytes."),
            kv_cache_tokens: metrics
                .int_gauge("kv_cache_tokens", "Positions the sessions' KV caches hold."),
            kv_cache_limit_tokens: metrics
                .int_gauge("kv_cache_limit_tokens", "The KV-cache budget in positions."),
            kv_cache_usage: metrics.gauge(
                "kv_cache_usage_perc",
                "Share of the KV-cache budget in use (1 = full), as vLLM's kv_cache_usage_perc.",
            ),
            running: metrics.int_gauge(
                "num_requests_running",
                "Step requests admitted and being computed.",
            ),
            waiting: metrics.int_gauge(
                "num_requests_waiting",
                "Step requests waiting for room in the KV cache.",
            ),
        };
        m.kv_cache_limit_tokens.set(kv_budget_tokens as i64);
        m.kv_cache_limit_bytes
            .set((kv_budget_tokens * bytes_per_token) as i64);
        m
    }

    /// Sets the gauges from the engine's state.
    pub fn publish(&self, usage: &Usage) {
        self.sessions.set(usage.sessions as i64);
        self.kv_cache_bytes.set(usage.cached_bytes as i64);
        self.kv_cache_tokens.set(usage.cached_tokens as i64);
        let limit = self.kv_cache_limit_tokens.get().max(1) as f64;
        self.kv_cache_usage.set(usage.cached_tokens as f64 / limit);
        self.running.set(usage.running as i64);
        self.waiting.set(usage.waiting as i64);
    }
}
