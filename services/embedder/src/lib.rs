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
use candle_core::{DType, Device, DeviceLocation};
use oneword_model::{Checkpoint, Embeddings};
use oneword_proto::common::v1 as common;
use oneword_proto::embedder::v1::embedder_server::EmbedderServer;
use tokio::net::TcpListener;

pub use config::Config;
pub use error::Error;

/// Room left in a message for everything but the tensor's bytes (field tags, lengths, shape).
const MESSAGE_OVERHEAD: usize = 1024;

/// Serves the embedder on `listener` until `shutdown` completes; health says NOT_SERVING until
/// the embedding module is loaded.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let load = async {
        let loader = config.clone();
        let service = tokio::task::spawn_blocking(move || load(&loader)).await??;
        Ok(EmbedderServer::new(service)
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes))
    };
    oneword_runtime::serve(listener, load, shutdown).await?;
    Ok(())
}

fn load(config: &Config) -> anyhow::Result<service::EmbedderService> {
    anyhow::ensure!(
        config.max_batch_tokens > 0,
        "`--max-batch-tokens` must be at least 1, got 0"
    );
    let dir = oneword_model::hub::resolve(&config.model)?;
    let device = oneword_model::load_device(&config.device)?;
    let dtype = match (config.dtype.as_str(), device.is_cuda()) {
        ("auto", false) | ("f32", _) => DType::F32,
        ("auto", true) | ("f16", _) => DType::F16,
        ("bf16", _) => DType::BF16,
        (other, _) => anyhow::bail!("`--dtype` must be auto, f32, f16 or bf16, got {other:?}"),
    };
    let checkpoint = Checkpoint::open(&dir, dtype, &device)
        .with_context(|| format!("opening {}", dir.display()))?;
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
    let model = common::ModelInfo {
        model_id: config.model.clone(),
        model_type: c.model_type.clone(),
        vocab_size: c.vocab_size as u32,
        context_length: c.n_positions as u32,
        hidden_size: c.n_embd as u32,
        num_layers: c.n_layer as u32,
        num_heads: c.n_head as u32,
        eos_token_id: c.eos_token_id,
        device: device_name(&device),
        dtype: convert::wire_dtype(dtype) as i32,
    };
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

/// `cpu` or `cuda:N`, as `ModelInfo.device` names it.
fn device_name(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}
