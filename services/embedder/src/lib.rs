//! The embedder service: GPT-2's embedding module. It gives the decoder its input,
//! `wte[id] + wpe[position]` per token, and anyone the raw token vectors `wte[id]` (the essay's
//! word embeddings).

#![forbid(unsafe_code)]

pub mod config;
mod convert;
mod error;
mod lookup;
mod service;

use std::future::Future;

use anyhow::Context;
use candle_core::DType;
use oneword_model::{Checkpoint, Embeddings};
use oneword_proto::embedder::v1::embedder_server::EmbedderServer;
use oneword_runtime::{Listeners, Metrics, Server};
use tonic::codec::CompressionEncoding;

pub use config::Config;
pub use error::Error;

/// Room left in a message for everything but the tensor's bytes (field tags, lengths, shape).
const MESSAGE_OVERHEAD: usize = 1024;

/// Serves the embedder on `listeners` until `shutdown` completes; health says NOT_SERVING until
/// the embedding module is loaded and warmed up.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let load = async {
        let loader = config.clone();
        let service = tokio::task::spawn_blocking(move || load(&loader)).await??;
        Ok(EmbedderServer::new(service)
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip))
    };
    let server = Server {
        listeners,
        settings: config.server.settings(),
        metrics: Metrics::new("embedder"),
        drain: Default::default(),
    };
    server.serve(load, None, shutdown).await?;
    Ok(())
}

fn load(config: &Config) -> anyhow::Result<service::EmbedderService> {
    anyhow::ensure!(
        config.max_batch_tokens > 0,
        "`--max-batch-tokens` must be at least 1, got 0"
    );
    let checkpoint = Checkpoint::load(&config.model, &config.device, &config.dtype)
        .with_context(|| format!("loading `{}`", config.model))?;
    let (dir, device, dtype) = (&checkpoint.dir, &checkpoint.device, checkpoint.dtype);
    let embeddings =
        Embeddings::load(&checkpoint).with_context(|| format!("loading {}", dir.display()))?;
    let c = &checkpoint.config;

    // TokenVectors answers in f32 whatever the model's dtype, so its answers are the largest.
    let row_bytes = c.n_embd * DType::F32.size_in_bytes();
    let fitting = config.max_message_bytes.saturating_sub(MESSAGE_OVERHEAD) / row_bytes;
    anyhow::ensure!(
        fitting > 0,
        "`--max-message-bytes` is {}, too small for even one vector of {} f32 values",
        config.max_message_bytes,
        c.n_embd
    );
    let max_batch_tokens = config.max_batch_tokens.min(fitting);
    if max_batch_tokens < config.max_batch_tokens {
        tracing::warn!(
            requested = config.max_batch_tokens,
            max_batch_tokens,
            max_message_bytes = config.max_message_bytes,
            "lowering the batch limit so that every answer fits in a message"
        );
    }

    // Warm up (the first lookup on a GPU loads its kernels) before health says SERVING.
    convert::pack(&embeddings.embed(&[0], &[0])?).context("warming up")?;

    tracing::info!(model = %config.model, dir = %dir.display(), ?device, ?dtype, vocab = c.vocab_size, width = c.n_embd, "embedder model loaded");
    let model = oneword_runtime::model_info(&config.model, c, device, dtype);
    let limits = convert::Limits {
        vocab_size: c.vocab_size,
        context_length: c.n_positions,
        max_batch_tokens,
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    Ok(service::EmbedderService {
        lookups: lookup::Lookups::new(embeddings, cores),
        limits,
        model,
    })
}
