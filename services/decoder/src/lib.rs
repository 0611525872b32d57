//! The decoder service: GPT-2's transformer blocks, final layer norm and LM head over named
//! sessions (KV caches), turning logits into distributions and picking tokens with the draws the
//! gateway sends.

#![forbid(unsafe_code)]

pub mod config;
mod convert;
pub mod engine;
mod error;
pub mod probe;
mod service;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use oneword_model::{Checkpoint, Transformer};
use oneword_proto::decoder::v1::decoder_server::DecoderServer;
use oneword_runtime::{Listeners, Metrics, Server};
use tonic::codec::CompressionEncoding;

pub use config::Config;
pub use error::Error;

/// Serves the decoder on `listeners` until `shutdown` completes; health says NOT_SERVING until
/// the model is loaded and a warm-up forward pass has run.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Metrics::new("decoder");
    let (loader, for_load) = (config.clone(), metrics.clone());
    let load = async {
        let metrics = for_load;
        let service = tokio::task::spawn_blocking(move || load(&loader, &metrics)).await??;
        Ok(DecoderServer::new(service)
            .max_decoding_message_size(config.max_message_bytes)
            // Instrument answers may be larger than requests (they are capped on their own).
            .max_encoding_message_size(
                config
                    .max_message_bytes
                    .max(config.max_inspect_bytes + (1 << 20)),
            )
            .accept_compressed(CompressionEncoding::Gzip))
    };
    let server = Server {
        listeners,
        settings: config.server.settings(),
        metrics,
        drain: Default::default(),
    };
    server.serve(load, None, shutdown).await?;
    Ok(())
}

fn load(config: &Config, metrics: &Metrics) -> anyhow::Result<service::DecoderService> {
    let mut checkpoint = Checkpoint::load_transformer(&config.model, &config.device, &config.dtype)
        .with_context(|| format!("loading `{}`", config.model))?;
    let narrow_weights = checkpoint.weights != oneword_model::WeightFormat::F32;
    checkpoint.kv_cache = match (config.kv_cache_dtype.as_str(), checkpoint.device.is_cpu()) {
        ("f32", _) | ("auto", false) => oneword_model::KvFormat::F32,
        ("auto", true) if narrow_weights => oneword_model::KvFormat::F16,
        ("auto", true) => oneword_model::KvFormat::F32,
        ("f16", true) => oneword_model::KvFormat::F16,
        ("f16", false) => anyhow::bail!(
            "`--kv-cache-dtype` f16 is for the CPU path; on a GPU the cache takes the model's dtype (`--dtype`)"
        ),
        (other, _) => {
            anyhow::bail!("`--kv-cache-dtype` must be auto, f32 or f16, got {other:?}")
        }
    };
    let model = Transformer::load(&checkpoint)
        .with_context(|| format!("loading {}", checkpoint.dir.display()))?;
    let c = &checkpoint.config;
    // Warm up (weights paged in, kernels loaded on a GPU) before health says SERVING.
    let warm_up = candle_core::Tensor::zeros((1, c.n_embd), checkpoint.dtype, &checkpoint.device)?;
    model
        .forward(
            &warm_up,
            &mut model.new_cache(),
            oneword_model::LogitsAt::Last,
        )
        .context("warming up")?;
    tracing::info!(model = %config.model, dir = %checkpoint.dir.display(), device = ?checkpoint.device, dtype = ?checkpoint.dtype, weights = ?checkpoint.weights, kv_cache = ?checkpoint.kv_cache, layers = c.n_layer, width = c.n_embd, "decoder model loaded");
    let info =
        oneword_model::wire::model_info(&config.model, c, &checkpoint.device, checkpoint.dtype);
    let device = checkpoint.device.clone();
    let kv_budget_tokens = kv_budget(config, &model, &device)?;
    let per_token = model.cache_bytes_per_token();
    model
        .reserve_cache(kv_budget_tokens, config.max_sessions)
        .context("allocating the KV cache")?;
    tracing::info!(
        kv_budget_tokens,
        kv_budget_mib = (kv_budget_tokens * per_token) >> 20,
        max_batch_tokens = config.max_batch_tokens,
        "KV-cache budget"
    );
    let engine_metrics = engine::metrics::EngineMetrics::new(metrics, kv_budget_tokens, per_token);
    let engine = engine::Engine::start(
        model,
        engine::Limits {
            max_sessions: config.max_sessions,
            session_ttl: Duration::from_secs(config.session_ttl_secs),
            queue_capacity: config.queue_capacity,
            max_queue_wait: Duration::from_millis(config.max_queue_wait_ms),
            kv_budget_tokens,
            max_batch_tokens: config.max_batch_tokens,
            prefill_budget: millis(config.prefill_budget_ms, "--prefill-budget-ms")?,
            prefill_stretch: stretch(config.prefill_stretch)?,
            batch_wait: millis(config.batch_wait_ms, "--batch-wait-ms")?,
        },
        Some(engine_metrics),
    );
    Ok(service::DecoderService {
        engine,
        device,
        model: info,
        max_top_n: config.max_top_n,
        max_sessions: config.max_sessions,
        session_ttl_secs: config.session_ttl_secs,
        kv_budget_tokens,
        kv_bytes_per_token: per_token,
        max_inspect_bytes: config.max_inspect_bytes,
    })
}

/// The KV-cache budget in positions: as configured, or a share of the memory left on the device
/// after loading the model, capped at `max_sessions` full-context sessions.
fn kv_budget(
    config: &Config,
    model: &Transformer,
    device: &candle_core::Device,
) -> anyhow::Result<usize> {
    let per_token = model.cache_bytes_per_token();
    let context = model.config().n_positions;
    let tokens = match (config.kv_cache_bytes, config.kv_cache_tokens) {
        (Some(bytes), _) => bytes as usize / per_token,
        (None, Some(tokens)) => tokens,
        (None, None) => {
            if !(config.kv_cache_memory_fraction > 0.0 && config.kv_cache_memory_fraction <= 1.0) {
                anyhow::bail!(
                    "`kv_cache_memory_fraction` must be in (0, 1], got {}",
                    config.kv_cache_memory_fraction
                );
            }
            let cap = config.max_sessions * context;
            match oneword_model::free_memory(device) {
                Some(free) => {
                    let share = (free as f64 * config.kv_cache_memory_fraction) as usize;
                    (share / per_token).min(cap)
                }
                None => {
                    tracing::warn!("cannot tell the device's free memory; set --kv-cache-bytes (assuming 4 GiB)");
                    ((4usize << 30) / per_token).min(cap)
                }
            }
        }
    };
    if tokens < context {
        tracing::warn!(
            tokens,
            context,
            "the KV-cache budget is smaller than one full context: long prompts will be refused"
        );
    }
    if tokens == 0 {
        anyhow::bail!("the KV-cache budget is zero positions ({per_token} bytes each); raise --kv-cache-bytes or --kv-cache-tokens");
    }
    Ok(tokens)
}

/// A flag in milliseconds as a duration: from 0 to an hour, anything else refused by name.
fn stretch(value: f64) -> anyhow::Result<f64> {
    anyhow::ensure!(
        (0.1..=100.0).contains(&value),
        "`--prefill-stretch` must be in [0.1, 100], got {value}"
    );
    Ok(value)
}

fn millis(value: f64, flag: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        (0.0..=3.6e6).contains(&value),
        "`{flag}` must be in [0, 3600000] milliseconds, got {value}"
    );
    Ok(Duration::from_secs_f64(value / 1e3))
}
