//! Flags of the client-session commands.

use clap::{Args, Subcommand};

/// Flags of `oneword branch`.
#[derive(Debug, Args)]
pub struct BranchArgs {
    /// The text to prefill once and branch from ("-" reads stdin).
    pub prompt: String,
    /// The temperatures of the branches, comma-separated (0 = greedy).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,0.8",
        allow_negative_numbers = true
    )]
    pub temperatures: Vec<f32>,
    /// Branches at each temperature above 0.
    #[arg(long, default_value_t = 3)]
    pub samples: u32,
    /// Most tokens per branch. Default (the gateway's): 16.
    #[arg(long, visible_alias = "max-new-tokens", value_name = "N")]
    pub max_tokens: Option<u32>,
    /// Seed for the random draws. Default: a random seed, shown in the summary.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Keep the session afterwards (its handle is printed) instead of releasing it.
    #[arg(long)]
    pub keep: bool,
}

/// Flags of `oneword session`.
#[derive(Debug, Args)]
pub struct SessionArgs {
    #[command(subcommand)]
    pub action: SessionAction,
}

#[derive(Debug, Subcommand)]
pub enum SessionAction {
    /// Prefill a prompt and keep it; prints the session's handle for `--session`.
    Create {
        /// The text to prefill ("-" reads stdin).
        prompt: String,
        /// Read the prompt as token ids separated by spaces or commas.
        #[arg(long)]
        ids: bool,
        /// The model: the served transformer (default), or an n-gram baseline.
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
    },
    /// Copy a session (in the decoder, without prefilling it again); prints the copy's handle.
    Fork { session_id: String },
    /// Drop a session and free its KV cache.
    Release { session_id: String },
}
