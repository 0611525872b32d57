//! Prometheus metrics: one registry per service, every name under `oneword_` and labelled with
//! the `service`, served on the service's own metrics port. The per-call metrics are recorded by
//! [`crate::observe`]; services add their own (token latencies, batch sizes, KV-cache use) and
//! refresh gauges from their state just before each scrape.

use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

type Refresh = Box<dyn Fn() + Send + Sync>;

/// A service's metrics.
#[derive(Clone)]
pub struct Metrics {
    role: &'static str,
    registry: Registry,
    refresh: Arc<Mutex<Vec<Refresh>>>,
    pub(crate) calls: Arc<CallMetrics>,
}

/// What [`crate::observe`] records for every call, gRPC or HTTP.
pub(crate) struct CallMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub in_flight: IntGaugeVec,
}

/// Latency buckets of whole calls, in seconds: from a 1 ms lookup to a 16-minute generation.
pub const CALL_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0,
    160.0, 320.0, 960.0,
];

impl Metrics {
    /// The registry of the service `role`.
    pub fn new(role: &'static str) -> Self {
        let labels = [("service".to_string(), role.to_string())].into();
        let registry = Registry::new_custom(Some("oneword".into()), Some(labels))
            .expect("a valid prefix and label; this is a bug");
        let calls = CallMetrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "requests_total",
                    "Calls finished, by method and status code (gRPC code name or HTTP status).",
                ),
                &["method", "code"],
            )
            .expect("valid metric; this is a bug"),
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "request_duration_seconds",
                    "Time from a call's arrival to its last response byte, streams included.",
                )
                .buckets(CALL_SECONDS.to_vec()),
                &["method"],
            )
            .expect("valid metric; this is a bug"),
            in_flight: IntGaugeVec::new(
                Opts::new("requests_in_flight", "Calls being served now."),
                &["method"],
            )
            .expect("valid metric; this is a bug"),
        };
        let metrics = Metrics {
            role,
            registry,
            refresh: Arc::default(),
            calls: Arc::new(calls),
        };
        metrics.register(metrics.calls.requests.clone());
        metrics.register(metrics.calls.duration.clone());
        metrics.register(metrics.calls.in_flight.clone());
        metrics
    }

    /// The service these metrics belong to.
    pub fn role(&self) -> &'static str {
        self.role
    }

    /// Adds a metric. Names are fixed in the code, so a clash is a bug.
    pub fn register<M: prometheus::core::Collector + Clone + 'static>(&self, metric: M) -> M {
        self.registry
            .register(Box::new(metric.clone()))
            .expect("metric names are unique; this is a bug");
        metric
    }

    /// A histogram `oneword_<name>` with `buckets`.
    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        self.register(
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .expect("valid metric; this is a bug"),
        )
    }

    /// A counter `oneword_<name>` (name it `*_total`).
    pub fn counter(&self, name: &str, help: &str) -> prometheus::IntCounter {
        self.register(prometheus::IntCounter::new(name, help).expect("valid metric; this is a bug"))
    }

    /// A gauge `oneword_<name>` of whole numbers.
    pub fn int_gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::new(name, help).expect("valid metric; this is a bug"))
    }

    /// A gauge `oneword_<name>`.
    pub fn gauge(&self, name: &str, help: &str) -> prometheus::Gauge {
        self.register(prometheus::Gauge::new(name, help).expect("valid metric; this is a bug"))
    }

    /// Runs `refresh` before every scrape, to set gauges from the service's state.
    pub fn on_scrape(&self, refresh: impl Fn() + Send + Sync + 'static) {
        self.refresh
            .lock()
            .expect("the refresh list is never poisoned; this is a bug")
            .push(Box::new(refresh));
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        for refresh in self
            .refresh
            .lock()
            .expect("the refresh list is never poisoned; this is a bug")
            .iter()
        {
            refresh();
        }
        let mut out = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            tracing::warn!("encoding metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                    metrics.render(),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
