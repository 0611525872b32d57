//! The gateway's flags; every one can also be set through its `ONEWORD_GATEWAY_*` variable.

use std::net::SocketAddr;

use clap::Parser;

use crate::auth::ApiKey;

// Public: its clients carry the API key; the service token only goes out on its own calls.
oneword_runtime::server_flags!(
    "gateway",
    "GATEWAY",
    metrics = "0.0.0.0:9090",
    public = true
);

#[derive(Clone, Debug, Parser)]
#[command(
    name = "oneword-gateway",
    about = "oneword's public gRPC API: the autoregressive loop over the other services"
)]
pub struct Config {
    /// Address to serve gRPC on.
    #[arg(long, env = "ONEWORD_GATEWAY_LISTEN", default_value = "0.0.0.0:50050")]
    pub listen: SocketAddr,
    /// Address to serve the OpenAI-compatible HTTP API on (`POST /v1/completions`,
    /// `GET /v1/models`, `GET /health`).
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_HTTP_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub http_listen: SocketAddr,
    /// API key every gRPC and HTTP call must carry as `authorization: Bearer <key>` (health,
    /// reflection and metrics stay open). Empty = no key.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_API_KEY",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub api_key: ApiKey,
    /// Model name `/v1/models` lists and responses carry (default: the decoder's model).
    #[arg(long, env = "ONEWORD_GATEWAY_SERVED_MODEL_NAME")]
    pub served_model_name: Option<String>,
    /// The tokenizer service: `http://host:port`, or several separated by commas. Each name is
    /// resolved to all its addresses (point it at a headless Service) and calls go to the
    /// replica with the least in flight.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_TOKENIZER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub tokenizer: String,
    /// The embedder service, as `--tokenizer`.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_EMBEDDER",
        default_value = "http://127.0.0.1:50052"
    )]
    pub embedder: String,
    /// The decoder service, as `--tokenizer`; each generation stays on the replica it starts on,
    /// where its sessions live.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_DECODER",
        default_value = "http://127.0.0.1:50053"
    )]
    pub decoder: String,
    /// The n-gram baseline service (letters-N, tokens-N), as `--tokenizer`; empty = no n-gram
    /// models. The models it serves are asked from it, and a request's `model` picks it or the
    /// decoder.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_BASELINE",
        default_value = "http://127.0.0.1:50054"
    )]
    pub baseline: String,
    /// The index service (collections and similarity search), as `--tokenizer`; empty = no
    /// collections. The gateway serves its `oneword.index.v1.Collections` API by passing calls on.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_INDEX",
        default_value = "http://127.0.0.1:50055"
    )]
    pub index: String,
    /// Seconds between re-resolving the services' names, so that new replicas get work.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_RESOLVE_INTERVAL_SECS",
        default_value_t = 10
    )]
    pub resolve_interval_secs: u64,
    /// Seconds to wait for a connection to a downstream service before answering UNAVAILABLE.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_CONNECT_TIMEOUT_SECS",
        default_value_t = 3
    )]
    pub connect_timeout_secs: u64,
    /// Milliseconds a decoder step may take before its replica's health is probed; a replica
    /// that then does not answer within a second is treated as failed, and its generations
    /// move to another replica (re-prefilled, with the same draws: the same text).
    #[arg(long, env = "ONEWORD_GATEWAY_DECODER_STALL_MS", default_value_t = 2000)]
    pub decoder_stall_ms: u64,
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
    /// Client sessions (CreateSession, ForkSession) this gateway keeps at once; more are
    /// refused with RESOURCE_EXHAUSTED. Each holds a decoder session in a KV budget.
    #[arg(long, env = "ONEWORD_GATEWAY_MAX_SESSIONS", default_value_t = 256)]
    pub max_sessions: usize,
    /// Client sessions one client (one peer address) may keep at once.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_MAX_SESSIONS_PER_CLIENT",
        default_value_t = 16
    )]
    pub max_sessions_per_client: usize,
    /// Seconds a client session may stay unused before it is dropped (and its KV cache freed).
    #[arg(long, env = "ONEWORD_GATEWAY_SESSION_TTL_SECS", default_value_t = 300)]
    pub session_ttl_secs: u64,
    /// HTTP connections open at once; more are closed as soon as they are accepted.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_HTTP_MAX_CONNECTIONS",
        default_value_t = 4096
    )]
    pub http_max_connections: usize,
    /// Seconds an HTTP client may take to send a request's headers (and an idle keep-alive
    /// connection stays open): slow clients cannot hold connections for ever.
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_HTTP_HEADER_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub http_header_timeout_secs: u64,
    /// Seconds an HTTP client may take to send a request's whole body (400 after).
    #[arg(
        long,
        env = "ONEWORD_GATEWAY_HTTP_BODY_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub http_body_timeout_secs: u64,
    #[command(flatten)]
    pub server: ServerFlags,
}

impl Config {
    /// Defaults pointing at the given service addresses, with no n-gram baseline, as tests
    /// build it.
    pub fn for_services(tokenizer: String, embedder: String, decoder: String) -> Self {
        let mut config = Config::parse_from(["oneword-gateway"]);
        (config.tokenizer, config.embedder, config.decoder) = (tokenizer, embedder, decoder);
        config.baseline = String::new();
        config.index = String::new();
        config
    }
}
