//! One generation is one trace: the trace context crosses every gRPC hop, so the spans of the
//! gateway, tokenizer, embedder and decoder share a trace id. Spans are caught in memory (this
//! test is its own process, with its own global subscriber).

use std::collections::HashSet;
use std::time::Duration;

use oneword_e2e::{tiny_model, Cluster};
use oneword_proto::gateway::v1 as pb;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test]
async fn one_generation_is_one_trace_through_all_four_services() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("oneword-test")))
        .init();

    let cluster = Cluster::start(tiny_model()).await;
    let request = pb::GenerateRequest {
        prompt: "Trace me".into(),
        max_new_tokens: Some(3),
        temperature: Some(0.0),
        ..Default::default()
    };
    cluster.gateway().await.generate(request).await.unwrap();

    // The call's span ends with its response body, a moment after the client has the answer.
    let root_name = "oneword.gateway.v1.Gateway/Generate";
    let mut spans = Vec::new();
    for _ in 0..100 {
        spans = exporter.get_finished_spans().unwrap();
        if spans.iter().any(|s| s.name == root_name) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let root = spans
        .iter()
        .find(|s| s.name == root_name)
        .expect("the gateway's call span");
    let trace = root.span_context.trace_id();
    let in_trace: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .collect();
    let names: HashSet<&str> = in_trace.iter().map(|s| s.name.as_ref()).collect();
    for hop in [
        "generate",
        "oneword.tokenizer.v1.Tokenizer/Encode",
        "oneword.embedder.v1.Embedder/Embed",
        "oneword.decoder.v1.Decoder/Step",
        "step",
    ] {
        assert!(
            names.contains(hop),
            "{hop} is missing from the trace: {names:?}"
        );
    }
    for service in ["gateway", "tokenizer", "embedder", "decoder"] {
        assert!(
            in_trace
                .iter()
                .any(|s| attribute(s, "service").as_deref() == Some(service)),
            "no span of the {service} in the trace"
        );
    }
    let generate = in_trace.iter().find(|s| s.name == "generate").unwrap();
    assert_eq!(
        attribute(generate, "generated_tokens").as_deref(),
        Some("3")
    );
    assert!(attribute(generate, "prompt_tokens").is_some());
    assert!(attribute(generate, "request_id").is_some());
    let step = in_trace.iter().find(|s| s.name == "step").unwrap();
    assert!(attribute(step, "session_ids")
        .unwrap()
        .contains(&attribute(generate, "request_id").unwrap()));
    assert_eq!(attribute(root, "code").as_deref(), Some("OK"));
}
