//! The baseline's flags; every one can also be set through its `ONEWORD_BASELINE_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

oneword_runtime::server_flags!("baseline", "BASELINE", metrics = "0.0.0.0:9094");

#[derive(Clone, Debug, Parser)]
#[command(
    name = "oneword-baseline",
    about = "The essay's n-gram baselines (letters-N, tokens-N) over the decoder's session contract"
)]
pub struct Config {
    /// Model whose vocabulary the n-gram sessions speak: a Hugging Face id or a local directory
    /// holding its tokenizer files (the same model as the other services).
    #[arg(long, env = "ONEWORD_BASELINE_MODEL", default_value = "gpt2")]
    pub model: String,
    /// Address to serve gRPC on.
    #[arg(long, env = "ONEWORD_BASELINE_LISTEN", default_value = "0.0.0.0:50054")]
    pub listen: SocketAddr,
    /// A text file the n-gram models (letters-N, tokens-N) are counted from. Default: the
    /// bundled King James books (Genesis, Exodus, Psalms, Proverbs).
    #[arg(long, env = "ONEWORD_BASELINE_CORPUS", value_name = "FILE")]
    pub corpus: Option<PathBuf>,
    /// Most n-gram sessions held at once; creating more is RESOURCE_EXHAUSTED.
    #[arg(long, env = "ONEWORD_BASELINE_MAX_SESSIONS", default_value_t = 1024)]
    pub max_sessions: usize,
    /// Seconds a session may sit idle before it is dropped.
    #[arg(long, env = "ONEWORD_BASELINE_SESSION_TTL_SECS", default_value_t = 300)]
    pub session_ttl_secs: u64,
    /// Most tokens one session may hold (its context), as the transformer's context window caps
    /// its sessions.
    #[arg(long, env = "ONEWORD_BASELINE_CONTEXT_LENGTH", default_value_t = 1024)]
    pub context_length: usize,
    /// Steps and corpus counts computed at once, off the async workers.
    #[arg(long, env = "ONEWORD_BASELINE_WORKERS", default_value_t = 2)]
    pub workers: usize,
    /// Steps and corpus counts that may wait for a worker; more are refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "ONEWORD_BASELINE_QUEUE_CAPACITY", default_value_t = 256)]
    pub queue_capacity: usize,
    /// Largest top-N list a step may ask for.
    #[arg(long, env = "ONEWORD_BASELINE_MAX_TOP_N", default_value_t = 100)]
    pub max_top_n: usize,
    /// Largest gRPC message accepted, in bytes (a corpus text sent with a Corpus call counts).
    #[arg(long, env = "ONEWORD_BASELINE_MAX_MESSAGE_BYTES", default_value_t = 16 << 20)]
    pub max_message_bytes: usize,
    #[command(flatten)]
    pub server: ServerFlags,
}

impl Config {
    /// Defaults for a model, as tests build it.
    pub fn for_model(model: impl Into<String>) -> Self {
        Config::parse_from(["oneword-baseline", "--model", &model.into()])
    }

    /// Checks that the limits make sense, naming the flag at fault.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (flag, value) in [
            ("--max-sessions", self.max_sessions),
            ("--context-length", self.context_length),
            ("--workers", self.workers),
            ("--queue-capacity", self.queue_capacity),
        ] {
            if value == 0 {
                anyhow::bail!("`{flag}` must be at least 1, got 0");
            }
        }
        Ok(())
    }
}
