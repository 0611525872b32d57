//! Flags of the similarity-search commands.

use clap::Args;

/// Flags of `oneword embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// The texts to embed ("-" reads one text from stdin).
    #[arg(required = true)]
    pub texts: Vec<String>,
    /// The text-embedding model (`oneword info` lists it); default: the gateway's.
    #[arg(long)]
    pub model: Option<String>,
    /// Cut a text over the model's token limit instead of refusing it.
    #[arg(long)]
    pub truncate: bool,
    /// Leave the vectors unnormalised (the model's own pipeline normalises MiniLM's).
    #[arg(long)]
    pub raw: bool,
    /// Print every value of each vector, not just the first few.
    #[arg(long)]
    pub full: bool,
}

/// Flags of `oneword similarity`.
#[derive(Debug, Args)]
pub struct SimilarityArgs {
    /// The text to compare the others with.
    pub source: String,
    /// The texts to rank by cosine similarity to the source.
    #[arg(required = true)]
    pub texts: Vec<String>,
    /// The text-embedding model; default: the gateway's.
    #[arg(long)]
    pub model: Option<String>,
}
