//! The tokens nearest a vector by cosine similarity, over the whole token embedding matrix. The
//! rows' norms are computed once at load, so a query is one matrix-vector product over `wte`
//! (on the model's device, in f32) plus a partial sort of one similarity per token.

use candle_core::{DType, Tensor};
use oneword_model::{Embeddings, ModelError};

/// Most tokens one Nearest request may ask for.
pub const MAX_TOP: usize = 1000;
/// How many tokens a Nearest request gets when it does not say.
pub const DEFAULT_TOP: usize = 10;

/// Rows whose squares are summed at once when loading: bounds the temporary to ~12 MB for
/// GPT-2 small instead of a second copy of the whole table.
const NORM_CHUNK: usize = 4096;

/// `wte` in f32 with the inverse norms of its rows.
pub struct NearestIndex {
    /// `[vocab, width]` f32 on the model's device: shares the model's storage when the model is
    /// f32, else a widened copy (154 MB for GPT-2 small), since f16 sums lose the ranking.
    table: Tensor,
    /// `1 / |wte[i]|`, or 0 for an all-zero row, whose cosine is undefined and reported as 0.
    inverse_norms: Vec<f32>,
}

impl NearestIndex {
    /// Builds the index over the embedding module's token table.
    pub fn new(embeddings: &Embeddings) -> Result<Self, ModelError> {
        let table = embeddings.token_table().to_dtype(DType::F32)?;
        let vocab = table.dim(0)?;
        let mut inverse_norms = Vec::with_capacity(vocab);
        for start in (0..vocab).step_by(NORM_CHUNK) {
            let rows = table.narrow(0, start, NORM_CHUNK.min(vocab - start))?;
            let squares = rows.sqr()?.sum(1)?.to_vec1::<f32>()?;
            inverse_norms.extend(squares.iter().map(|&s| inverse(s.sqrt())));
        }
        Ok(NearestIndex {
            table,
            inverse_norms,
        })
    }

    /// The `top` tokens most similar to `query` (a vector of the table's width), most similar
    /// first with equal similarities by lower id, leaving out the ids in `exclude`.
    pub fn nearest(
        &self,
        query: &[f32],
        top: usize,
        exclude: &[u32],
    ) -> Result<Vec<(u32, f32)>, ModelError> {
        let column = Tensor::from_slice(query, (query.len(), 1), self.table.device())?;
        let dots = self.table.matmul(&column)?.squeeze(1)?.to_vec1::<f32>()?;
        let query_norm = crate::words::dot(query, query).sqrt() as f32;
        Ok(best(
            &dots,
            &self.inverse_norms,
            inverse(query_norm),
            top,
            exclude,
        ))
    }
}

/// `1 / x`, or 0 for a zero norm so that a cosine with an all-zero vector comes out as 0.
fn inverse(norm: f32) -> f32 {
    if norm > 0.0 {
        1.0 / norm
    } else {
        0.0
    }
}

/// The `top` best `(id, dots[id] · inverse_norms[id] · inverse_query)`, ids in `exclude` left
/// out, by descending similarity then ascending id: a total order, so the answer is unique.
fn best(
    dots: &[f32],
    inverse_norms: &[f32],
    inverse_query: f32,
    top: usize,
    exclude: &[u32],
) -> Vec<(u32, f32)> {
    if top == 0 {
        return Vec::new();
    }
    let mut excluded = vec![false; dots.len()];
    for &id in exclude {
        if let Some(e) = excluded.get_mut(id as usize) {
            *e = true;
        }
    }
    let mut candidates: Vec<(u32, f32)> = dots
        .iter()
        .zip(inverse_norms)
        .enumerate()
        .filter(|&(id, _)| !excluded[id])
        .map(|(id, (&dot, &inverse_norm))| {
            let scale = inverse_norm * inverse_query;
            // A zero scale gives +0 (never -0, which would sort apart from +0); rounding may
            // step just past ±1.
            let similarity = if scale > 0.0 {
                (dot * scale).clamp(-1.0, 1.0)
            } else {
                0.0
            };
            (id as u32, similarity)
        })
        .collect();
    let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if top < candidates.len() {
        candidates.select_nth_unstable_by(top - 1, order);
        candidates.truncate(top);
    }
    candidates.sort_unstable_by(order);
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_similarity_then_by_id_and_leaves_out_the_excluded() {
        // Similarities 0.5, 0.9, 0.5, -0.2, 0.9, 0 (zero row), 0.7.
        let dots = [1.0, 1.8, 0.5, -0.4, 0.9, -3.0, 1.4];
        let inverse_norms = [0.5, 0.5, 1.0, 0.5, 1.0, 0.0, 0.5];
        let got = best(&dots, &inverse_norms, 1.0, 4, &[]);
        assert_eq!(got, vec![(1, 0.9), (4, 0.9), (6, 0.7), (0, 0.5)]);
        let got = best(&dots, &inverse_norms, 1.0, 3, &[4, 6, 4, 99]);
        assert_eq!(got, vec![(1, 0.9), (0, 0.5), (2, 0.5)]);
        // More than there are: all of them, the zero row at 0 ahead of the negative one.
        let got = best(&dots, &inverse_norms, 1.0, 50, &[0, 1, 2, 4, 6]);
        assert_eq!(got, vec![(5, 0.0), (3, -0.2)]);
    }

    #[test]
    fn a_zero_query_is_similar_to_nothing() {
        let got = best(&[0.0, 0.0], &[1.0, 2.0], inverse(0.0), 2, &[]);
        assert_eq!(got, vec![(0, 0.0), (1, 0.0)]);
        assert!(got.iter().all(|(_, s)| s.is_sign_positive()));
    }

    #[test]
    fn similarities_stay_within_one() {
        // 3 · (1/3) rounds to 1.0000001 in f32 for some values; clamped.
        let got = best(&[3.0000002, -3.0000002], &[1.0 / 3.0; 2], 1.0, 2, &[]);
        assert_eq!(got, vec![(0, 1.0), (1, -1.0)]);
    }
}
