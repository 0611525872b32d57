//! The decoder's flags; every one can also be set through its `ONEWORD_DECODER_*` variable.

use std::net::SocketAddr;

use clap::Parser;

#[derive(Clone, Debug, Parser)]
#[command(
    name = "oneword-decoder",
    about = "GPT-2's transformer blocks over named KV-cache sessions"
)]
pub struct Config {
    /// Model: a Hugging Face id (downloaded into the Hugging Face cache) or a local directory.
    #[arg(long, env = "ONEWORD_DECODER_MODEL", default_value = "gpt2")]
    pub model: String,
    /// Address to serve gRPC on.
    #[arg(long, env = "ONEWORD_DECODER_LISTEN", default_value = "0.0.0.0:50053")]
    pub listen: SocketAddr,
    /// Where to compute: cpu, cuda, cuda:N, or auto (a GPU when this build has CUDA and one is there).
    #[arg(long, env = "ONEWORD_DECODER_DEVICE", default_value = "auto")]
    pub device: String,
    /// Weight dtype: f32, f16, bf16, or auto (f32 on CPU, f16 on CUDA).
    #[arg(long, env = "ONEWORD_DECODER_DTYPE", default_value = "auto")]
    pub dtype: String,
    /// Most sessions (KV caches) held at once; creating more is RESOURCE_EXHAUSTED.
    #[arg(long, env = "ONEWORD_DECODER_MAX_SESSIONS", default_value_t = 256)]
    pub max_sessions: usize,
    /// Seconds a session may sit idle before it is dropped.
    #[arg(long, env = "ONEWORD_DECODER_SESSION_TTL_SECS", default_value_t = 300)]
    pub session_ttl_secs: u64,
    /// Requests waiting for the model thread before new ones are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "ONEWORD_DECODER_QUEUE_CAPACITY", default_value_t = 256)]
    pub queue_capacity: usize,
    /// Largest top-N list a step may ask for.
    #[arg(long, env = "ONEWORD_DECODER_MAX_TOP_N", default_value_t = 100)]
    pub max_top_n: usize,
    /// Largest gRPC message accepted, in bytes (a 1,024-token prefill of GPT-2 XL is 6.5 MB).
    #[arg(long, env = "ONEWORD_DECODER_MAX_MESSAGE_BYTES", default_value_t = 16 << 20)]
    pub max_message_bytes: usize,
}

impl Config {
    /// Defaults for a model, as tests build it.
    pub fn for_model(model: impl Into<String>) -> Self {
        Config::parse_from([
            "oneword-decoder",
            "--model",
            &model.into(),
            "--device",
            "cpu",
        ])
    }
}
