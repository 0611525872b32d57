//! Flags of the client-session commands.

use clap::{Args, Subcommand};

use super::instruments::ContinuationArgs;

/// Flags of `oneword branch`.
#[derive(Debug, Args)]
pub struct BranchArgs {
    /// The text to prefill once and branch from ("-" reads stdin).
    pub prompt: String,
    #[command(flatten)]
    pub branches: ContinuationArgs,
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
