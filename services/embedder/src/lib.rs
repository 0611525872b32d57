//! The embedder service: GPT-2's embedding module. It gives the decoder its input,
//! `wte[id] + wpe[position]` per token (and the two parts apart), and anyone the raw token
//! vectors `wte[id]`, word vectors with their distances and projection (the essay's meaning
//! space), and the tokens nearest a word over the whole vocabulary. It also serves text
//! embeddings from a sentence-embedding model (all-MiniLM-L6-v2 by default) for similarity search.

#![forbid(unsafe_code)]

pub mod config;
mod convert;
mod error;
mod lookup;
mod nearest;
mod pca;
mod service;
mod text;
mod words;

use std::future::Future;

use anyhow::Context;
use candle_core::DType;
use oneword_model::{Checkpoint, Embeddings, SentenceEncoder};
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
    anyhow::ensure!(
        config.dtype != "q8_0",
        "`--dtype` q8_0 quantizes the decoder's linear layers; the embedder's tables take auto, f32, f16 or bf16"
    );
    let checkpoint = Checkpoint::load(&config.model, &config.device, &config.dtype)
        .with_context(|| format!("loading `{}`", config.model))?;
    let (dir, device, dtype) = (&checkpoint.dir, &checkpoint.device, checkpoint.dtype);
    let embeddings =
        Embeddings::load(&checkpoint).with_context(|| format!("loading {}", dir.display()))?;
    let c = &checkpoint.config;

    let fits = Fits::new(config, c.n_embd)?;

    // Warm up (the first lookup on a GPU loads its kernels) before health says SERVING.
    convert::pack(&embeddings.embed(&[0], &[0])?).context("warming up")?;
    let started = std::time::Instant::now();
    let nearest = nearest::NearestIndex::new(&embeddings).context("indexing the token table")?;
    nearest
        .nearest(&words::word_vector(&embeddings, &[0])?, 1, &[])
        .context("warming up the index")?;
    tracing::info!(elapsed = ?started.elapsed(), "token table indexed for Nearest");

    tracing::info!(model = %config.model, dir = %dir.display(), ?device, ?dtype, vocab = c.vocab_size, width = c.n_embd, "embedder model loaded");
    let model = oneword_model::wire::model_info(&config.model, c, device, dtype);
    let limits = convert::Limits {
        vocab_size: c.vocab_size,
        context_length: c.n_positions,
        max_batch_tokens: fits.batch_tokens,
        max_parts_tokens: fits.parts_tokens,
        max_words: fits.words,
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let tables = lookup::Tables {
        embeddings,
        nearest,
    };
    Ok(service::EmbedderService {
        lookups: lookup::Lookups::new(tables, cores),
        limits,
        model,
        text: load_text_model(config)?,
    })
}

/// The sentence-embedding model named by `--text-model`, loaded and warmed up; `None` if empty.
fn load_text_model(config: &Config) -> anyhow::Result<Option<text::TextModel>> {
    if config.text_model.is_empty() {
        return Ok(None);
    }
    anyhow::ensure!(
        config.max_texts > 0,
        "`--max-texts` must be at least 1, got 0"
    );
    let encoder = SentenceEncoder::load(&config.text_model, &config.device, &config.dtype)
        .with_context(|| format!("loading the text model `{}`", config.text_model))?;
    let warm = encoder
        .encode_text("warming up")
        .context("warming up the text model")?;
    encoder
        .embed(&[warm], true)
        .context("warming up the text model")?;
    tracing::info!(text_model = %config.text_model, dir = %encoder.dir.display(), dimensions = encoder.dimensions, max_tokens = encoder.max_tokens, pooling = encoder.pooling().name(), "text model loaded");
    Ok(Some(text::TextModel::new(
        encoder,
        config.text_model.clone(),
        config.max_texts,
        config.text_queue,
    )))
}

/// The request limits, lowered where the largest answer would not fit in `--max-message-bytes`.
struct Fits {
    batch_tokens: usize,
    parts_tokens: usize,
    words: usize,
}

impl Fits {
    fn new(config: &Config, width: usize) -> anyhow::Result<Fits> {
        let room = config.max_message_bytes.saturating_sub(MESSAGE_OVERHEAD);
        let row = width * DType::F32.size_in_bytes();
        // EmbedParts answers two f32 rows per id, the most per id of any RPC.
        anyhow::ensure!(
            room / (2 * row) > 0,
            "`--max-message-bytes` is {}, too small for even two vectors of {width} f32 values",
            config.max_message_bytes
        );
        // TokenVectors answers one f32 row per id whatever the model's dtype; Embed no more.
        let batch_tokens = config.max_batch_tokens.min(room / row);
        if batch_tokens < config.max_batch_tokens {
            tracing::warn!(
                requested = config.max_batch_tokens,
                max_batch_tokens = batch_tokens,
                max_message_bytes = config.max_message_bytes,
                "lowering the batch limit so that every answer fits in a message"
            );
        }
        // Words answers n f32 rows, two n × n f32 matrices and n × 2 f32 coordinates.
        let words_bytes = |n: usize| n * row + 8 * n * n + 8 * n;
        let words = (1..=words::MAX_WORDS)
            .rev()
            .find(|&n| words_bytes(n) <= room)
            .unwrap_or(0);
        anyhow::ensure!(
            words > 0,
            "`--max-message-bytes` is {}, too small for the answer about one word",
            config.max_message_bytes
        );
        if words < words::MAX_WORDS {
            tracing::warn!(
                max_words = words,
                max_message_bytes = config.max_message_bytes,
                "lowering the word limit so that every answer fits in a message"
            );
        }
        Ok(Fits {
            batch_tokens,
            parts_tokens: batch_tokens.min(room / (2 * row)),
            words,
        })
    }
}
