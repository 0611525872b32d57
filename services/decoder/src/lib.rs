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
use candle_core::DType;
use oneword_model::{Checkpoint, Transformer};
use oneword_proto::common::v1 as common;
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
    let model =
        Transformer::load(&checkpoint).with_context(|| format!("loading {}", dir.display()))?;
    let c = checkpoint.config.clone();
    tracing::info!(model = %config.model, dir = %dir.display(), ?device, ?dtype, layers = c.n_layer, width = c.n_embd, "decoder model loaded");
    let info = common::ModelInfo {
        model_id: config.model.clone(),
        model_type: c.model_type.clone(),
        vocab_size: c.vocab_size as u32,
        context_length: c.n_positions as u32,
        hidden_size: c.n_embd as u32,
        num_layers: c.n_layer as u32,
        num_heads: c.n_head as u32,
        eos_token_id: c.eos_token_id,
        device: if device.is_cuda() {
            "cuda".into()
        } else {
            "cpu".into()
        },
        dtype: service::wire_dtype(dtype) as i32,
    };
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
