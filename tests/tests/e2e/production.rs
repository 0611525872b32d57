//! What a Kubernetes deployment relies on: health per service name, reflection for grpcurl (of
//! each service's own schema only), Prometheus metrics, the optional API key, gzip, and load
//! spread over decoder replicas.

use futures::StreamExt;
use oneword_e2e::{greedy, start_on, tiny_model, until, Cluster};
use oneword_proto::gateway::v1 as pb;
use oneword_runtime::Listeners;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

async fn health(address: &str, service: &str) -> Result<i32, tonic::Status> {
    let channel = Channel::from_shared(address.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = HealthCheckRequest {
        service: service.into(),
    };
    Ok(HealthClient::new(channel)
        .check(request)
        .await?
        .into_inner()
        .status)
}

#[tokio::test]
async fn every_service_reports_health_by_name_and_lists_itself_by_reflection() {
    let cluster = Cluster::start(tiny_model()).await;
    let services = [
        (&cluster.tokenizer, "oneword.tokenizer.v1.Tokenizer"),
        (&cluster.embedder, "oneword.embedder.v1.Embedder"),
        (&cluster.decoder, "oneword.decoder.v1.Decoder"),
        (&cluster.gateway, "oneword.gateway.v1.Gateway"),
    ];
    for (service, name) in services {
        let serving = ServingStatus::Serving as i32;
        assert_eq!(health(&service.address, "").await.unwrap(), serving);
        assert_eq!(
            health(&service.address, name).await.unwrap(),
            serving,
            "{name}"
        );
        let unknown = health(&service.address, "nope").await.unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        // Each lists its own schema (the gateway also the collections it fronts), never the
        // internal services behind it.
        let own: &[&str] = if name == "oneword.gateway.v1.Gateway" {
            &[name, "oneword.index.v1.Collections"]
        } else {
            &[name]
        };
        for listed in [
            list_services_v1(&service.address).await,
            list_services_v1alpha(&service.address).await,
        ] {
            let mut oneword: Vec<&str> = listed
                .iter()
                .map(String::as_str)
                .filter(|s| s.starts_with("oneword."))
                .collect();
            oneword.sort_unstable();
            assert_eq!(oneword, own, "{listed:?}");
            assert!(
                listed.iter().any(|s| s == "grpc.health.v1.Health"),
                "{listed:?}"
            );
            assert!(
                listed
                    .iter()
                    .all(|s| s.starts_with("oneword.") || s.starts_with("grpc.")),
                "{listed:?}"
            );
        }
    }
}

/// `list_services_v1` and `list_services_v1alpha`: the same call through each version's
/// generated client.
macro_rules! list_services {
    ($name:ident, $version:ident) => {
        pub(crate) async fn $name(address: &str) -> Vec<String> {
            use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
            use tonic_reflection::pb::$version::ServerReflectionRequest;
            let channel = Channel::from_shared(address.to_string())
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut client = ServerReflectionClient::new(channel);
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut answers = client
                .server_reflection_info(futures::stream::iter([request]))
                .await
                .unwrap()
                .into_inner();
            match answers.next().await.unwrap().unwrap().message_response {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    list.service.into_iter().map(|s| s.name).collect()
                }
                other => panic!("not a list of services: {other:?}"),
            }
        }
    };
}
list_services!(list_services_v1, v1);
list_services!(list_services_v1alpha, v1alpha);

/// The value of the sample `name{labels}` (labels in Prometheus' sorted order), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Callers choose gRPC paths and HTTP methods; only known ones become label values (the rest
/// are `other` / `OTHER`), so a scanner cannot grow the metrics' series.
#[tokio::test]
async fn unknown_paths_and_methods_add_at_most_one_series_each() {
    let cluster = Cluster::start(tiny_model()).await;
    let scrape =
        |url: String| async move { reqwest::get(url).await.unwrap().text().await.unwrap() };
    let series = |metrics: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with("oneword_requests_total{"))
            .count()
    };
    let before = series(&scrape(cluster.gateway.metrics.clone()).await);
    let channel = Channel::from_shared(cluster.gateway.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    for i in 0..200 {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let path = format!("/oneword.scan{i}.v1.Scan/Probe{i}")
            .parse()
            .unwrap();
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        let status = grpc
            .unary(tonic::Request::new(()), path, codec)
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
    }
    let http = reqwest::Client::new();
    let models = format!("{}/v1/models", cluster.gateway.http.as_ref().unwrap());
    for i in 0..200 {
        let method = reqwest::Method::from_bytes(format!("SCAN{i}").as_bytes()).unwrap();
        http.request(method, &models).send().await.unwrap();
    }
    let after = scrape(cluster.gateway.metrics.clone()).await;
    assert!(!after.to_lowercase().contains("scan"), "{after}");
    // `other` with UNIMPLEMENTED, and `OTHER /v1/models` with its status.
    assert_eq!(series(&after), before + 2, "{after}");
}

#[tokio::test]
async fn each_service_exports_prometheus_metrics_of_what_it_did() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut gateway = cluster.gateway().await;
    gateway.generate(greedy("Hello there", 5)).await.unwrap();
    let mut stream = gateway
        .generate_stream(greedy("Hello again", 4))
        .await
        .unwrap()
        .into_inner();
    while stream.next().await.is_some() {}
    let bad = gateway
        .generate(pb::GenerateRequest::default())
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    let scrape =
        |url: String| async move { reqwest::get(url).await.unwrap().text().await.unwrap() };
    let g = scrape(cluster.gateway.metrics.clone()).await;
    let generate = r#"method="oneword.gateway.v1.Gateway/Generate",service="gateway""#;
    assert_eq!(
        sample(
            &g,
            &format!(r#"oneword_requests_total{{code="OK",{generate}}}"#)
        ),
        Some(1.0),
        "{g}"
    );
    assert_eq!(
        sample(
            &g,
            &format!(r#"oneword_requests_total{{code="INVALID_ARGUMENT",{generate}}}"#)
        ),
        Some(1.0)
    );
    let stream_ok = r#"oneword_requests_total{code="OK",method="oneword.gateway.v1.Gateway/GenerateStream",service="gateway"}"#;
    assert_eq!(
        sample(&g, stream_ok),
        Some(1.0),
        "a stream is counted when it ends"
    );
    assert_eq!(
        sample(
            &g,
            r#"oneword_time_to_first_token_seconds_count{service="gateway"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &g,
            r#"oneword_inter_token_latency_seconds_count{service="gateway"}"#
        ),
        Some(4.0 + 3.0)
    );
    assert_eq!(
        sample(&g, r#"oneword_generation_tokens_total{service="gateway"}"#),
        Some(9.0)
    );
    assert_eq!(
        sample(
            &g,
            r#"oneword_e2e_request_latency_seconds_count{service="gateway"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &g,
            r#"oneword_request_success_total{finished_reason="length",service="gateway"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&g, r#"oneword_num_requests_running{service="gateway"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&g, r#"oneword_num_requests_waiting{service="gateway"}"#),
        Some(0.0)
    );

    let d = scrape(cluster.decoder.metrics.clone()).await;
    assert!(
        sample(&d, r#"oneword_iteration_tokens_count{service="decoder"}"#).unwrap() >= 9.0,
        "{d}"
    );
    assert!(
        sample(
            &d,
            r#"oneword_forward_duration_seconds_count{service="decoder"}"#
        )
        .unwrap()
            >= 9.0
    );
    assert!(sample(&d, r#"oneword_kv_cache_limit_bytes{service="decoder"}"#).unwrap() > 0.0);
    assert!(sample(&d, r#"oneword_kv_cache_usage_perc{service="decoder"}"#).is_some());
    assert_eq!(
        sample(&d, r#"oneword_num_requests_waiting{service="decoder"}"#),
        Some(0.0)
    );
    let steps = r#"oneword_requests_total{code="OK",method="oneword.decoder.v1.Decoder/Step",service="decoder"}"#;
    assert_eq!(sample(&d, steps), Some(9.0), "one Step per token");

    let t = scrape(cluster.tokenizer.metrics.clone()).await;
    let encodes = r#"oneword_requests_total{code="OK",method="oneword.tokenizer.v1.Tokenizer/Encode",service="tokenizer"}"#;
    assert_eq!(sample(&t, encodes), Some(2.0), "{t}");
    let e = scrape(cluster.embedder.metrics.clone()).await;
    let latency = r#"oneword_request_duration_seconds_count{method="oneword.embedder.v1.Embedder/Embed",service="embedder"}"#;
    assert!(sample(&e, latency).unwrap() >= 9.0, "{e}");
}

#[tokio::test]
async fn an_api_key_guards_grpc_and_http_but_not_health_or_metrics() {
    let cluster = Cluster::start_configured(
        tiny_model(),
        |_| {},
        |g| g.api_key = "s3cret".parse().unwrap(),
    )
    .await;
    let mut gateway = cluster.gateway().await;
    let refused = gateway.generate(greedy("Hi", 1)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(
        refused.message().contains("authorization: Bearer"),
        "{}",
        refused.message()
    );
    let mut request = tonic::Request::new(greedy("Hi", 1));
    request
        .metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    gateway.generate(request).await.unwrap();

    let url = format!("{}/v1/completions", cluster.gateway.http.as_ref().unwrap());
    let body = serde_json::json!({"prompt": "Hi", "max_tokens": 1});
    let client = reqwest::Client::new();
    let response = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_api_key");
    let response = client
        .post(&url)
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    assert_eq!(
        health(&cluster.gateway.address, "").await.unwrap(),
        ServingStatus::Serving as i32
    );
    assert_eq!(
        reqwest::get(cluster.gateway.metrics.clone())
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn gzip_requests_and_answers_are_understood() {
    let cluster = Cluster::start(tiny_model()).await;
    let plain = cluster
        .gateway()
        .await
        .generate(greedy("Compress me", 6))
        .await
        .unwrap()
        .into_inner();
    let mut gzip = cluster
        .gateway()
        .await
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let response = gzip.generate(greedy("Compress me", 6)).await.unwrap();
    assert_eq!(response.metadata().get("grpc-encoding").unwrap(), "gzip");
    assert_eq!(response.into_inner().completions, plain.completions);
}

#[tokio::test]
async fn generations_spread_over_two_decoder_replicas() {
    let model = tiny_model().to_str().unwrap().to_string();
    let base = Cluster::start(tiny_model()).await;
    // A second decoder on another loopback address: the gateway is given both.
    let second = Listeners {
        grpc: tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap(),
        metrics: tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap(),
        http: None,
    };
    let config = oneword_decoder::Config::for_model(&model);
    let other = start_on(second, |l, s| oneword_decoder::run(config, l, until(s))).await;
    let mut config = oneword_gateway::Config::for_services(
        base.tokenizer.address.clone(),
        base.embedder.address.clone(),
        format!("{},{}", base.decoder.address, other.address),
    );
    config.resolve_interval_secs = 1;
    let gateway = oneword_e2e::start(true, |l, s| oneword_gateway::run(config, l, until(s))).await;
    let client =
        oneword_proto::gateway::v1::gateway_client::GatewayClient::connect(gateway.address.clone())
            .await
            .unwrap();
    let requests = (0..8).map(|i| {
        let mut client = client.clone();
        async move {
            client
                .generate(greedy(&format!("Request {i}"), 8))
                .await
                .unwrap()
                .into_inner()
        }
    });
    let answers = futures::future::join_all(requests).await;
    assert!(answers
        .iter()
        .all(|a| a.usage.unwrap().completion_tokens == 8));
    for decoder in [&base.decoder.address, &other.address] {
        let info = oneword_e2e::decoder_idle(decoder).await;
        assert!(info.forward_passes > 0, "{decoder} got no steps");
    }
}
