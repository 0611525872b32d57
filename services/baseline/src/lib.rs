//! The n-gram baseline service: the essay's letter and word n-gram models as a next-token
//! backend. It speaks the decoder's session contract (`oneword.decoder.v1.Decoder`: Step, Fork,
//! Release, Info), so the gateway drives it with the same loop as the transformer and picks the
//! backend by the request's `model`; it also answers `Corpus`, the essay's corpus statistics.
//! It runs in its own process, so nothing it counts or locks can slow a transformer step.

#![forbid(unsafe_code)]

pub mod config;
mod convert;
mod error;
pub mod models;
mod service;
pub mod sessions;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use oneword_proto::decoder::v1::decoder_server::DecoderServer;
use oneword_runtime::{Listeners, Metrics, Server, Turns};
use tonic::codec::CompressionEncoding;

pub use config::Config;
pub use error::Error;

/// Serves the baseline on `listeners` until `shutdown` completes; health says NOT_SERVING until
/// the corpus and the vocabulary are loaded.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    let load = async {
        let loader = config.clone();
        let service = tokio::task::spawn_blocking(move || load(&loader))
            .await
            .context("the loading thread failed")??;
        Ok(DecoderServer::new(service)
            .max_decoding_message_size(config.max_message_bytes)
            .accept_compressed(CompressionEncoding::Gzip))
    };
    let server = Server {
        listeners,
        settings: config.server.settings(),
        metrics: Metrics::new("baseline"),
        drain: Default::default(),
    };
    server.serve(load, None, shutdown).await?;
    Ok(())
}

fn load(config: &Config) -> anyhow::Result<service::BaselineService> {
    // Only the tokenizer files are needed: the vocabulary the sessions' ids come from.
    let dir = oneword_checkpoint::hub::resolve_tokenizer(&config.model)?;
    let models = models::Models::load(config.corpus.as_deref(), &dir).with_context(|| {
        format!(
            "loading the corpus and the vocabulary of `{}`",
            config.model
        )
    })?;
    tracing::info!(model = %config.model, corpus = %models.corpus_name, corpus_bytes = models.corpus.text().len(), "n-gram baseline loaded");
    let limits = sessions::Limits {
        max_sessions: config.max_sessions,
        ttl: Duration::from_secs(config.session_ttl_secs),
        context: config.context_length,
    };
    Ok(service::BaselineService {
        state: Arc::new(service::State {
            models,
            sessions: std::sync::Mutex::new(sessions::Sessions::new(limits)),
        }),
        turns: Turns::new(config.workers, config.queue_capacity, "n-gram requests"),
        limits,
        model_id: config.model.clone(),
        max_top_n: config.max_top_n,
    })
}
