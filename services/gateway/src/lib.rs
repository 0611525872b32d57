//! The gateway: oneword's public gRPC API. It validates requests, runs the autoregressive loop
//! over the tokenizer, embedder and decoder with seeded draws of its own, applies stop sequences
//! and streams UTF-8-safe text.

#![forbid(unsafe_code)]

pub mod config;
mod convert;
mod downstream;
mod error;
mod generate;
pub mod rng;
mod service;
pub mod text_stream;

use std::future::Future;
use std::time::Duration;

use oneword_proto::gateway::v1::gateway_server::GatewayServer;
use tokio::net::TcpListener;

pub use config::Config;
pub use error::Error;

/// Serves the gateway on `listener` until `shutdown` completes. The downstream services are
/// reached lazily, so they may start before or after it.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let downstream = downstream::Downstream::new(
        &config.tokenizer,
        &config.embedder,
        &config.decoder,
        Duration::from_secs(config.connect_timeout_secs),
    )?;
    let service = service::GatewayService::new(config, downstream);
    oneword_runtime::serve(
        listener,
        async { Ok(GatewayServer::new(service)) },
        shutdown,
    )
    .await?;
    Ok(())
}
