//! GPT-2 on candle: the configuration, finding and loading Hugging Face checkpoints, the
//! embedding module, the transformer blocks with KV caches kept outside the model (so one
//! immutable model serves many sessions),
//! and writing small checkpoints for tests and benchmarks; and the sentence-embedding model
//! (a BERT) whose vectors similarity search uses.

mod attention;
mod awake;
mod bert;
pub mod candidates;
pub mod checkpoint;
#[cfg(target_arch = "x86_64")]
pub mod dot;
pub mod embeddings;
mod flash;
pub mod gpt2;
mod host;
pub mod inspect;
pub mod kv_cache;
pub mod narrow;
pub mod packed;
mod paged;
pub mod sentence;
pub mod speed;
pub mod tiny;
pub mod wire;

use std::path::PathBuf;

pub use candidates::{DeviceRow, Logits};
pub use checkpoint::{free_memory, load_device, Checkpoint, WeightFormat};
pub use embeddings::Embeddings;
pub use gpt2::{LogitsAt, Sequence, Transformer};
pub use inspect::{Inspection, BLOCK_MATRICES};
pub use kv_cache::{KvCache, KvFormat};
pub use narrow::{PackedNarrow, PackedQ8};
pub use oneword_checkpoint::{Gpt2Config, Pooling};
pub use packed::{HostMatrix, Packed};
pub use sentence::SentenceEncoder;

/// Why a model could not be found, loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    NotFound(String),
    #[error("invalid config: {0}")]
    Config(String),
    #[error("reading {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}")]
    Input(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl From<oneword_checkpoint::CheckpointError> for ModelError {
    fn from(e: oneword_checkpoint::CheckpointError) -> Self {
        use oneword_checkpoint::CheckpointError as E;
        match e {
            E::NotFound(m) => ModelError::NotFound(m),
            E::Config(m) => ModelError::Config(m),
            E::Io(path, e) => ModelError::Io(path, e),
        }
    }
}
