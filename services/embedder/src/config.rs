//! The embedder's flags; every one can also be set through its `ONEWORD_EMBEDDER_*` variable.

use std::net::SocketAddr;

use clap::Parser;

oneword_runtime::server_flags!("embedder", "EMBEDDER", metrics = "0.0.0.0:9092");

#[derive(Clone, Debug, Parser)]
#[command(
    name = "oneword-embedder",
    about = "GPT-2's embedding module (token + position embeddings, token vectors) and text embeddings for similarity search"
)]
pub struct Config {
    /// Model: a Hugging Face id (downloaded into the Hugging Face cache) or a local directory.
    #[arg(long, env = "ONEWORD_EMBEDDER_MODEL", default_value = "gpt2")]
    pub model: String,
    /// Address to serve gRPC on.
    #[arg(long, env = "ONEWORD_EMBEDDER_LISTEN", default_value = "0.0.0.0:50052")]
    pub listen: SocketAddr,
    /// Where to compute: cpu, cuda, cuda:N, or auto (a GPU when this build has CUDA and one is there).
    #[arg(long, env = "ONEWORD_EMBEDDER_DEVICE", default_value = "auto")]
    pub device: String,
    /// Weight dtype: f32, f16, bf16, or auto (f32 on CPU, f16 on CUDA).
    #[arg(long, env = "ONEWORD_EMBEDDER_DTYPE", default_value = "auto")]
    pub dtype: String,
    /// Most ids one request may carry; lowered at start-up if the largest answer (f32 vectors)
    /// would not fit in `--max-message-bytes`.
    #[arg(
        long,
        env = "ONEWORD_EMBEDDER_MAX_BATCH_TOKENS",
        default_value_t = 8192
    )]
    pub max_batch_tokens: usize,
    /// Largest gRPC message accepted or sent, in bytes (5,461 f32 vectors of GPT-2 small fill 16 MiB).
    #[arg(long, env = "ONEWORD_EMBEDDER_MAX_MESSAGE_BYTES", default_value_t = 16 << 20)]
    pub max_message_bytes: usize,
    /// Sentence-embedding model for EmbedText (similarity search): a Hugging Face id or a local
    /// directory in the sentence-transformers layout; empty = serve no text embeddings.
    #[arg(
        long,
        env = "ONEWORD_EMBEDDER_TEXT_MODEL",
        default_value = "sentence-transformers/all-MiniLM-L6-v2"
    )]
    pub text_model: String,
    /// Most texts one EmbedText request may carry.
    #[arg(long, env = "ONEWORD_EMBEDDER_MAX_TEXTS", default_value_t = 512)]
    pub max_texts: usize,
    /// EmbedText requests that may wait while one runs; more are refused (RESOURCE_EXHAUSTED).
    #[arg(long, env = "ONEWORD_EMBEDDER_TEXT_QUEUE", default_value_t = 64)]
    pub text_queue: usize,
    #[command(flatten)]
    pub server: ServerFlags,
}

impl Config {
    /// Defaults for a model, without a text model, as tests build it.
    pub fn for_model(model: impl Into<String>) -> Self {
        Config::parse_from([
            "oneword-embedder",
            "--model",
            &model.into(),
            "--device",
            "cpu",
            "--text-model",
            "",
        ])
    }
}
