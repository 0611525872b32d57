//! The tokenizer service: GPT-2's byte-level BPE over gRPC. Text to ids with each token's exact
//! bytes and byte offsets, ids back to text, and the whole vocabulary as bytes so that clients
//! can detokenize streams themselves.

#![forbid(unsafe_code)]

pub mod config;
mod convert;
mod error;
mod service;

use std::future::Future;

use anyhow::Context;
use oneword_proto::tokenizer::v1::tokenizer_server::TokenizerServer;
use oneword_runtime::{Listeners, Metrics, Server};
use tonic::codec::CompressionEncoding;

use crate::convert::Limits;
use crate::service::TokenizerService;
pub use config::Config;
pub use error::Error;
use oneword_bpe::BpeTokenizer;

/// Serves the tokenizer on `listeners` until `shutdown` completes; health says NOT_SERVING until
/// the tokenizer is loaded and has encoded a first text.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    let load = async {
        let model = config.model.clone();
        let tokenizer = tokio::task::spawn_blocking(move || load(&model))
            .await
            .context("the loading thread failed")??;
        let limits = Limits {
            max_batch_texts: config.max_batch_texts,
            max_text_bytes: config.max_text_bytes,
        };
        let service =
            TokenizerService::new(tokenizer, &config.model, limits, config.queue_capacity);
        Ok(TokenizerServer::new(service)
            .max_decoding_message_size(config.max_message_bytes)
            .accept_compressed(CompressionEncoding::Gzip))
    };
    let server = Server {
        listeners,
        settings: config.server.settings(),
        metrics: Metrics::new("tokenizer"),
        drain: Default::default(),
    };
    server.serve(load, None, shutdown).await?;
    Ok(())
}

/// Finds and loads the tokenizer of `model`. A directory needs only the tokenizer files (the
/// weights belong to the other services); a Hugging Face id goes through the shared resolver.
fn load(model: &str) -> anyhow::Result<BpeTokenizer> {
    let dir = oneword_checkpoint::hub::resolve_tokenizer(model)?;
    let tokenizer = BpeTokenizer::load(&dir)
        .with_context(|| format!("loading the tokenizer of `{model}` from {}", dir.display()))?;
    // Warm up (the regex and BPE caches) before health says SERVING.
    tokenizer
        .encode("Hello world", false)
        .context("warming up")?;
    tracing::info!(
        model,
        dir = %dir.display(),
        vocab_size = tokenizer.vocab_size(),
        eos_token_id = tokenizer.eos_token_id(),
        config_json = tokenizer.config().is_some(),
        "tokenizer loaded"
    );
    Ok(tokenizer)
}
