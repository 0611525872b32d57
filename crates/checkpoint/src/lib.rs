//! A checkpoint in the Hugging Face layout (GPT-2, or a sentence-transformers embedding model), as every service sees it before any tensor is
//! read: its `config.json`, its tokenizer files, and where it lives (a directory, or a Hugging
//! Face id fetched into the standard cache). No candle here, so the tokenizer and the n-gram
//! baseline can find a checkpoint without linking the model's arithmetic.

#![forbid(unsafe_code)]

pub mod config;
pub mod hub;
pub mod sentence;

use std::path::PathBuf;

pub use config::Gpt2Config;
pub use hub::TokenizerFiles;
pub use sentence::{Pooling, SentenceConfig};

/// Why a checkpoint could not be found or its config read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0}")]
    NotFound(String),
    #[error("invalid config: {0}")]
    Config(String),
    #[error("reading {0}: {1}")]
    Io(PathBuf, std::io::Error),
}
