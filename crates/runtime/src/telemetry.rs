//! One telemetry set-up for every binary: log lines (text or JSON) to stderr filtered by
//! `RUST_LOG` (default `info`), and, when an OTLP endpoint is configured, spans exported to it.
//!
//! Traces cross the services in W3C trace-context headers (`traceparent`, `tracestate`):
//! clients inject the current span's context into every outgoing call ([`Inject`]), and
//! [`crate::observe`] extracts it on every incoming one, so one request is one trace through the
//! gateway, tokenizer, embedder and decoder.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::service_token::ServiceToken;
use crate::settings::{LogFormat, Settings};

/// Keeps the trace exporter alive; dropping it flushes the spans not yet sent.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("flushing traces: {e}");
            }
        }
    }
}

/// Installs the global subscriber for `settings`. A second call keeps the first subscriber,
/// which tests that start several services in one process rely on.
pub fn init(settings: &Settings) -> anyhow::Result<Telemetry> {
    let provider = match &settings.otlp_endpoint {
        Some(endpoint) => Some(otlp_provider(endpoint, settings.role)?),
        None => None,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match settings.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer().with_tracer(p.tracer(format!("oneword-{}", settings.role)))
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .try_init();
    if let Some(endpoint) = &settings.otlp_endpoint {
        tracing::info!(%endpoint, "exporting traces over OTLP");
    }
    Ok(Telemetry { provider })
}

fn otlp_provider(endpoint: &str, role: &str) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(format!("oneword-{role}"))
                .build(),
        )
        .build())
}

/// The remote parent carried by incoming `headers`, if any.
pub fn extract(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// A tonic interceptor that puts the current span's trace context into every outgoing call,
/// and the service token, when it has one, so that internal services answer it.
#[derive(Clone, Debug, Default)]
pub struct Inject {
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Inject {
    /// An interceptor that also sends `token` (nothing when it is empty).
    pub fn with_token(token: &ServiceToken) -> Self {
        Inject {
            token: token.header_value(),
        }
    }
}

impl tonic::service::Interceptor for Inject {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let context = tracing::Span::current().context();
        let mut fields = HashMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut MapInjector(&mut fields));
        for (key, value) in fields {
            if let (Ok(key), Ok(value)) = (
                tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
                value.parse(),
            ) {
                request.metadata_mut().insert(key, value);
            }
        }
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert(crate::service_token::HEADER, token.clone());
        }
        Ok(request)
    }
}

/// A channel whose calls carry the caller's trace context (and the service token, if given).
pub type TracedChannel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Inject>;

/// Wraps `channel` so that its calls carry the caller's trace context.
pub fn traced(channel: tonic::transport::Channel) -> TracedChannel {
    tonic::service::interceptor::InterceptedService::new(channel, Inject::default())
}

/// Wraps `channel` so that its calls carry the caller's trace context and `token` (the internal
/// services' `--service-token`; an empty one adds nothing).
pub fn traced_with(channel: tonic::transport::Channel, token: &ServiceToken) -> TracedChannel {
    tonic::service::interceptor::InterceptedService::new(channel, Inject::with_token(token))
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct MapInjector<'a>(&'a mut HashMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}
