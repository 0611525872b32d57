//! The gateway's flags; every one can also be set through its `ONEWORD_GATEWAY_*` variable.

use std::net::SocketAddr;

use clap::Parser;

#[derive(Clone, Debug, Parser)]
#[command(
    name = "oneword-gateway",
    about = "oneword's public gRPC API: the autoregressive loop over the other services"
)]
pub struct Config {
    /// Address to serve gRPC on.
    #[arg(long, env = "ONEWORD_GATEWAY_LISTEN", default_value = "0.0.0.0:50050")]
    pub listen: SocketAddr,
    /// The tokenizer service.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_TOKENIZER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub tokenizer: String,
    /// The embedder service.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_EMBEDDER",
        default_value = "http://127.0.0.1:50052"
    )]
    pub embedder: String,
    /// The decoder service.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_DECODER",
        default_value = "http://127.0.0.1:50053"
    )]
    pub decoder: String,
    /// Seconds to wait for a connection to a downstream service before answering UNAVAILABLE.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_CONNECT_TIMEOUT_SECS",
        default_value_t = 3
    )]
    pub connect_timeout_secs: u64,
    /// `max_new_tokens` when a request leaves it out.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_DEFAULT_MAX_NEW_TOKENS",
        default_value_t = 16
    )]
    pub default_max_new_tokens: u32,
    /// Largest `max_new_tokens` accepted (the context window caps it too).
    #[arg(long, env = "ONEWORD_GATEWAY_MAX_NEW_TOKENS", default_value_t = 1024)]
    pub max_new_tokens: u32,
    /// Largest `n` (completions per request) accepted.
    #[arg(long, env = "ONEWORD_GATEWAY_MAX_N", default_value_t = 16)]
    pub max_n: u32,
    /// Most stop sequences per request.
    #[arg(long, env = "ONEWORD_GATEWAY_MAX_STOP_SEQUENCES", default_value_t = 8)]
    pub max_stop_sequences: u32,
    /// Longest stop sequence, in bytes.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_MAX_STOP_SEQUENCE_BYTES",
        default_value_t = 256
    )]
    pub max_stop_sequence_bytes: u32,
    /// Largest `logprobs` / `top_n` accepted (the decoder has its own cap too).
    #[arg(long, env = "ONEWORD_GATEWAY_MAX_TOP_N", default_value_t = 100)]
    pub max_top_n: u32,
    /// Most requests (generations and next-token tables) in flight at once; more are refused
    /// with RESOURCE_EXHAUSTED. The decoder batches the ones in flight into shared passes.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_MAX_CONCURRENT_REQUESTS",
        default_value_t = 128
    )]
    pub max_concurrent_requests: usize,
    /// Largest prompt accepted, in bytes (tokens are checked against the context window after).
    #[arg(long, env = "ONEWORD_GATEWAY_MAX_PROMPT_BYTES", default_value_t = 1 << 20)]
    pub max_prompt_bytes: usize,
}

impl Config {
    /// Defaults pointing at the given service addresses, as tests build it.
    pub fn for_services(tokenizer: String, embedder: String, decoder: String) -> Self {
        let mut config = Config::parse_from(["oneword-gateway"]);
        (config.tokenizer, config.embedder, config.decoder) = (tokenizer, embedder, decoder);
        config
    }
}
