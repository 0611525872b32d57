//! The decoder service: GPT-2's transformer blocks, final layer norm and LM head over named
//! sessions (KV caches), turning logits into distributions and picking tokens with the draws the
//! gateway sends.

#![forbid(unsafe_code)]

pub mod config;
mod convert;
pub mod distribution;
pub mod engine;
mod error;
mod service;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use oneword_model::{Checkpoint, Transformer};
use oneword_proto::decoder::v1::decoder_server::DecoderServer;
use tokio::net::TcpListener;

pub use config::Config;
pub use error::Error;

/// Serves the decoder on `listener` until `shutdown` completes; health says NOT_SERVING until
/// the model is loaded.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let load = async {
        let loader = config.clone();
        let service = tokio::task::spawn_blocking(move || load(&loader)).await??;
        Ok(DecoderServer::new(service)
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes))
    };
    oneword_runtime::serve(listener, load, shutdown).await?;
    Ok(())
}

fn load(config: &Config) -> anyhow::Result<service::DecoderService> {
    let checkpoint = Checkpoint::load(&config.model, &config.device, &config.dtype)
        .with_context(|| format!("loading `{}`", config.model))?;
    let model = Transformer::load(&checkpoint)
        .with_context(|| format!("loading {}", checkpoint.dir.display()))?;
    let c = &checkpoint.config;
    tracing::info!(model = %config.model, dir = %checkpoint.dir.display(), device = ?checkpoint.device, dtype = ?checkpoint.dtype, layers = c.n_layer, width = c.n_embd, "decoder model loaded");
    let info = oneword_runtime::model_info(&config.model, c, &checkpoint.device, checkpoint.dtype);
    let device = checkpoint.device.clone();
    let engine = engine::Engine::start(
        model,
        engine::Limits {
            max_sessions: config.max_sessions,
            session_ttl: Duration::from_secs(config.session_ttl_secs),
            queue_capacity: config.queue_capacity,
        },
    );
    Ok(service::DecoderService {
        engine,
        device,
        model: info,
        max_top_n: config.max_top_n,
        max_sessions: config.max_sessions,
        session_ttl_secs: config.session_ttl_secs,
    })
}
