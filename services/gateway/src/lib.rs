//! The gateway: oneword's public gRPC API. It validates requests, runs the autoregressive loop
//! over the tokenizer, embedder and decoder with seeded draws of its own, applies stop sequences
//! and streams UTF-8-safe text.

#![forbid(unsafe_code)]

pub mod auth;
mod client_sessions;
mod collections;
pub mod config;
mod convert;
mod downstream;
mod embed;
mod error;
mod generate;
mod http;
mod instruments;
mod metrics;
mod replicas;
mod requests;
pub mod rng;
mod service;
pub mod text_stream;
mod turnover;
mod words;

use std::future::Future;
use std::time::Duration;

use oneword_proto::gateway::v1::gateway_server::GatewayServer;
use oneword_proto::index::v1::collections_server::CollectionsServer;
use oneword_runtime::drain::Drain;
use oneword_runtime::{Listeners, Metrics, Server};
use std::sync::Arc;
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;

pub use config::Config;
/// Validation's properties, for the fuzz targets (`make fuzz`); not an API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub use convert::checks as fuzzing;
pub use error::Error;

/// Serves the gateway's gRPC API (and, when `listeners` has an HTTP socket, its HTTP API) until
/// `shutdown` completes. The downstream services are reached lazily, so they may start before or
/// after it.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let downstream = downstream::Downstream::new(
        [
            &config.tokenizer,
            &config.embedder,
            &config.decoder,
            &config.baseline,
            &config.index,
        ],
        replicas::Dial {
            connect_timeout: Duration::from_secs(config.connect_timeout_secs),
            token: config.server.service_token.clone(),
        },
        Duration::from_secs(config.resolve_interval_secs.max(1)),
        Duration::from_millis(config.decoder_stall_ms.max(1)),
    )?;
    let metrics = Metrics::new("gateway");
    let settings = config.server.settings();
    let key = auth::RequireKey(config.api_key.clone());
    if config.api_key.is_set() {
        tracing::info!("an API key is required on every call but health, reflection and metrics");
    }
    let drain = Drain::default();
    let gateway = Arc::new(service::GatewayService::new(
        config,
        downstream,
        metrics::GatewayMetrics::new(&metrics),
        drain.clone(),
    ));
    tokio::spawn(expire_sessions(Arc::downgrade(&gateway.sessions)));
    let api = http::api(gateway.clone());
    let collections = InterceptedService::new(
        CollectionsServer::new(collections::CollectionsFront::new(gateway.clone()))
            .max_decoding_message_size(collections::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(collections::MAX_MESSAGE_BYTES)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip),
        key.clone(),
    );
    // Requests are a prompt plus small fields (logit_bias holds at most 300 entries).
    let max_request_bytes = gateway.config.max_prompt_bytes + (1 << 20);
    let grpc = InterceptedService::new(
        GatewayServer::from_arc(gateway)
            .max_decoding_message_size(max_request_bytes)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip),
        key,
    );
    let server = Server {
        listeners,
        settings,
        metrics,
        drain,
    };
    server
        .serve_with(
            async { Ok(grpc) },
            |more| more.add_service(collections),
            Some(api),
            shutdown,
        )
        .await?;
    Ok(())
}

/// Drops client sessions idle past their TTL (freeing their decoder sessions) every quarter of
/// it, until the gateway is gone.
async fn expire_sessions(sessions: std::sync::Weak<client_sessions::ClientSessions>) {
    loop {
        let Some(every) = sessions.upgrade().map(|s| s.limits.ttl / 4) else {
            return;
        };
        tokio::time::sleep(every.max(Duration::from_millis(100))).await;
        match sessions.upgrade() {
            Some(s) => s.expire(),
            None => return,
        }
    }
}
