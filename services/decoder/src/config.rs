//! The decoder's flags; every one can also be set through its `ONEWORD_DECODER_*` variable.

use std::net::SocketAddr;

use clap::Parser;

oneword_runtime::server_flags!("decoder", "DECODER", metrics = "0.0.0.0:9093");

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
    /// Weight dtype: f32, f16, bf16, q8_0 (8-bit linear layers, CPU only), or auto (f32 on CPU,
    /// f16 on CUDA). On the CPU, f16, bf16 and q8_0 store the linear layers so, converted at load
    /// from the same checkpoint; activations and the KV cache stay f32.
    #[arg(long, env = "ONEWORD_DECODER_DTYPE", default_value = "auto")]
    pub dtype: String,
    /// Most sessions (KV caches) held at once; creating more is RESOURCE_EXHAUSTED.
    #[arg(long, env = "ONEWORD_DECODER_MAX_SESSIONS", default_value_t = 256)]
    pub max_sessions: usize,
    /// Seconds a session may sit idle before it is dropped.
    #[arg(long, env = "ONEWORD_DECODER_SESSION_TTL_SECS", default_value_t = 300)]
    pub session_ttl_secs: u64,
    /// KV-cache memory for all sessions together, in bytes (default: see
    /// --kv-cache-memory-fraction). Steps that would exceed it wait, then are refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "ONEWORD_DECODER_KV_CACHE_BYTES",
        conflicts_with = "kv_cache_tokens"
    )]
    pub kv_cache_bytes: Option<u64>,
    /// The same budget in positions (tokens) instead of bytes.
    #[arg(long, env = "ONEWORD_DECODER_KV_CACHE_TOKENS")]
    pub kv_cache_tokens: Option<usize>,
    /// Without an explicit budget: this share of the device memory free after loading the model,
    /// capped at what --max-sessions full-context sessions would use.
    #[arg(
        long,
        env = "ONEWORD_DECODER_KV_CACHE_MEMORY_FRACTION",
        default_value_t = 0.5
    )]
    pub kv_cache_memory_fraction: f64,
    /// What the KV cache holds on the CPU: f32, or f16 (twice the positions in the same bytes,
    /// each key and value rounded to f16, and less memory to read per step); auto is f32 beside
    /// f32 weights and f16 beside narrower ones (`--dtype` bf16, f16 or q8_0), whose rounding
    /// is already larger. On a GPU the cache takes the model's dtype.
    #[arg(long, env = "ONEWORD_DECODER_KV_CACHE_DTYPE", default_value = "auto")]
    pub kv_cache_dtype: String,
    /// Most steps waiting for room in the KV cache; more are refused with RESOURCE_EXHAUSTED.
    /// (It also bounds the queue in front of the model thread, with room for 16 small jobs more.)
    #[arg(long, env = "ONEWORD_DECODER_QUEUE_CAPACITY", default_value_t = 256)]
    pub queue_capacity: usize,
    /// Longest a step waits for room in the KV cache before it is refused, in milliseconds.
    #[arg(
        long,
        env = "ONEWORD_DECODER_MAX_QUEUE_WAIT_MS",
        default_value_t = 5000
    )]
    pub max_queue_wait_ms: u64,
    /// Accepted so that older manifests still start; it changes nothing: every CPU product now
    /// sums a row the same way whatever shares its pass.
    #[arg(long, env = "ONEWORD_DECODER_BATCH_INVARIANT", hide = true)]
    pub batch_invariant: bool,
    /// Most rows (tokens) in one forward pass: running sequences' next tokens first, then chunks
    /// of prompts, so a long prompt is prefilled over several passes while streams keep flowing.
    #[arg(long, env = "ONEWORD_DECODER_MAX_BATCH_TOKENS", default_value_t = 256)]
    pub max_batch_tokens: usize,
    /// While streams are decoding, prompt chunks may add at most this many milliseconds to a
    /// pass, and at most what the pass's decode rows take (what a row costs is measured as passes
    /// run; at least 16 rows go), so a burst of new prompts delays each running stream's next
    /// token by at most that much; with no stream decoding, prompts fill `--max-batch-tokens`.
    #[arg(
        long,
        env = "ONEWORD_DECODER_PREFILL_BUDGET_MS",
        default_value_t = 100.0
    )]
    pub prefill_budget_ms: f64,
    /// While streams are decoding, prompt chunks may also add at most this multiple of what a
    /// pass of the decode rows alone takes: 0.75 keeps a running stream's time between tokens
    /// within about 1.75 times its usual (room under twice it for the hops and the machine's
    /// noise); more shortens a burst's time to first token at that tail's cost.
    #[arg(long, env = "ONEWORD_DECODER_PREFILL_STRETCH", default_value_t = 0.75)]
    pub prefill_stretch: f64,
    /// Longest a pass waits for sequences that just got a token to send their next step, in
    /// milliseconds, so that streams share passes (0 = never wait). The wait is also at most
    /// half the recent pass time, so a fast device (a GPU's sub-millisecond step) does not idle.
    #[arg(long, env = "ONEWORD_DECODER_BATCH_WAIT_MS", default_value_t = 5.0)]
    pub batch_wait_ms: f64,
    /// Largest top-N list a step may ask for.
    #[arg(long, env = "ONEWORD_DECODER_MAX_TOP_N", default_value_t = 100)]
    pub max_top_n: usize,
    /// Largest gRPC message accepted, in bytes (a 1,024-token prefill of GPT-2 XL is 6.5 MB).
    #[arg(long, env = "ONEWORD_DECODER_MAX_MESSAGE_BYTES", default_value_t = 16 << 20)]
    pub max_message_bytes: usize,
    /// Most bytes one instrument's answer (Inspect's attention weights and hidden states, a
    /// Weights matrix) may carry; larger asks are refused, naming the field to shrink. Full
    /// attention of one GPT-2 layer for 1,024 tokens is 48 MiB.
    #[arg(long, env = "ONEWORD_DECODER_MAX_INSPECT_BYTES", default_value_t = 64 << 20)]
    pub max_inspect_bytes: usize,
    #[command(flatten)]
    pub server: ServerFlags,
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
