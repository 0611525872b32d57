//! The embedding module: what the decoder's blocks take as input.

use candle_core::Tensor;

use crate::{Checkpoint, ModelError};

type Result<T> = std::result::Result<T, ModelError>;

/// The embedding module: token embeddings `wte` `[vocab, n_embd]` and learned position
/// embeddings `wpe` `[n_positions, n_embd]`.
pub struct Embeddings {
    wte: Tensor,
    wpe: Tensor,
}

impl Embeddings {
    /// Reads `wte` and `wpe` from a checkpoint.
    pub fn load(checkpoint: &Checkpoint) -> Result<Self> {
        let c = &checkpoint.config;
        Ok(Embeddings {
            wte: checkpoint.vb.get((c.vocab_size, c.n_embd), "wte.weight")?,
            wpe: checkpoint.vb.get((c.n_positions, c.n_embd), "wpe.weight")?,
        })
    }

    /// The decoder's input: `wte[id] + wpe[position]` for each pair, `[n, n_embd]`.
    pub fn embed(&self, ids: &[u32], positions: &[u32]) -> Result<Tensor> {
        if ids.len() != positions.len() {
            return Err(ModelError::Input(format!(
                "{} ids but {} positions",
                ids.len(),
                positions.len()
            )));
        }
        let tokens = self.token_vectors(ids)?;
        let positions = self.position_vectors(positions)?;
        Ok((tokens + positions)?)
    }

    /// Raw position embedding vectors `wpe[position]`, `[n, n_embd]`.
    pub fn position_vectors(&self, positions: &[u32]) -> Result<Tensor> {
        self.select(&self.wpe, positions, "position")
    }

    /// Raw token embedding vectors `wte[id]`, `[n, n_embd]`.
    pub fn token_vectors(&self, ids: &[u32]) -> Result<Tensor> {
        self.select(&self.wte, ids, "token id")
    }

    /// The whole token embedding matrix `wte`, `[vocab, n_embd]`, for searches over every token.
    pub fn token_table(&self) -> &Tensor {
        &self.wte
    }

    fn select(&self, table: &Tensor, rows: &[u32], what: &str) -> Result<Tensor> {
        let limit = table.dim(0)?;
        if let Some((i, &row)) = rows.iter().enumerate().find(|(_, &r)| r as usize >= limit) {
            // Out-of-range indices must never reach index_select: on CUDA they fault the device.
            return Err(ModelError::Input(format!(
                "{what} {row} at index {i} is out of range (must be below {limit})"
            )));
        }
        let index = Tensor::new(rows, table.device())?;
        Ok(table.index_select(&index, 0)?)
    }
}
