//! Word vectors and the distances between them, the essay's "meaning space". A word is a group
//! of token ids (the caller tokenizes); its vector is the mean of their `wte` rows. Distances are
//! computed in f64 from the vectors' Gram matrix, so each pair's dot product is taken once.

use candle_core::DType;
use oneword_model::{Embeddings, ModelError};

use crate::pca::{self, Projection};

/// Most words one Words request may carry: the answer holds two `n × n` matrices and the
/// projection's cost grows as `n²`, so a few hundred is what a plot of meaning space needs.
pub const MAX_WORDS: usize = 512;

/// Valid words: their token ids back to back, and how many ids each word has (at least one).
#[derive(Debug, PartialEq)]
pub struct Groups {
    pub ids: Vec<u32>,
    pub lengths: Vec<usize>,
}

/// Everything Words answers, for `n` words of vectors `width` wide.
#[derive(Debug)]
pub struct WordMap {
    pub width: usize,
    /// `[n, width]` row-major.
    pub vectors: Vec<f32>,
    /// `[n, n]` row-major.
    pub cosine: Vec<f32>,
    /// `[n, n]` row-major.
    pub euclidean: Vec<f32>,
    /// Absent unless asked for and there are at least two words.
    pub projection: Option<Projection>,
}

/// The word vectors of `groups`, their distances and, when `project`, their projection.
pub fn word_map(
    embeddings: &Embeddings,
    groups: &Groups,
    project: bool,
) -> Result<WordMap, ModelError> {
    let (rows, width) = token_rows(embeddings, &groups.ids)?;
    let vectors = group_means(&rows, width, &groups.lengths);
    let n = groups.lengths.len();
    let gram = gram(&vectors, width);
    let projection = (project && n >= 2).then(|| pca::project(&vectors, width));
    Ok(WordMap {
        width,
        cosine: cosine_matrix(&gram, n),
        euclidean: euclidean_matrix(&gram, n),
        vectors,
        projection,
    })
}

/// One word's vector: the mean of its tokens' `wte` rows, in f32.
pub fn word_vector(embeddings: &Embeddings, ids: &[u32]) -> Result<Vec<f32>, ModelError> {
    let (rows, width) = token_rows(embeddings, ids)?;
    Ok(group_means(&rows, width, &[ids.len()]))
}

/// The `wte` rows of `ids` as f32, row-major, and their width.
fn token_rows(embeddings: &Embeddings, ids: &[u32]) -> Result<(Vec<f32>, usize), ModelError> {
    let rows = embeddings.token_vectors(ids)?.to_dtype(DType::F32)?;
    let width = rows.dim(1)?;
    Ok((rows.flatten_all()?.to_vec1::<f32>()?, width))
}

/// The mean of each consecutive run of `lengths` rows, summed in f64 so that the order of the
/// rows does not matter at f32 precision.
fn group_means(rows: &[f32], width: usize, lengths: &[usize]) -> Vec<f32> {
    let mut means = Vec::with_capacity(lengths.len() * width);
    let mut sum = vec![0f64; width];
    let mut groups = rows.chunks_exact(width);
    for &length in lengths {
        sum.fill(0.0);
        for row in groups.by_ref().take(length) {
            for (s, &x) in sum.iter_mut().zip(row) {
                *s += f64::from(x);
            }
        }
        means.extend(sum.iter().map(|&s| (s / length as f64) as f32));
    }
    means
}

/// The dot product of two vectors in f64; four running sums so that the compiler can keep them
/// in vector registers.
pub(crate) fn dot<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> f64 {
    let mut lanes = [0f64; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = a4
        .remainder()
        .iter()
        .zip(b4.remainder())
        .map(|(&x, &y)| x.into() * y.into())
        .sum();
    for (x, y) in a4.zip(b4) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x.into() * y.into();
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// The Gram matrix `X Xᵀ` of the `n` rows of `vectors`, `[n, n]` row-major.
pub(crate) fn gram<T: Copy + Into<f64>>(vectors: &[T], width: usize) -> Vec<f64> {
    let rows: Vec<&[T]> = vectors.chunks_exact(width).collect();
    let n = rows.len();
    let mut gram = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let d = dot(rows[i], rows[j]);
            gram[i * n + j] = d;
            gram[j * n + i] = d;
        }
    }
    gram
}

/// `cos(x_i, x_j) = G_ij / (|x_i| |x_j|)`, clamped to [-1, 1] against rounding; 0 where either
/// vector is all zeros, where the angle is undefined.
fn cosine_matrix(gram: &[f64], n: usize) -> Vec<f32> {
    let norms: Vec<f64> = (0..n).map(|i| gram[i * n + i].sqrt()).collect();
    let mut cosine = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            let scale = norms[i] * norms[j];
            let c = if scale > 0.0 {
                (gram[i * n + j] / scale).clamp(-1.0, 1.0)
            } else {
                0.0
            };
            cosine.push(c as f32);
        }
    }
    cosine
}

/// `|x_i - x_j| = sqrt(G_ii + G_jj - 2 G_ij)`, clamped at 0 against rounding. In f64 the
/// cancellation costs nothing visible in the f32 answer.
fn euclidean_matrix(gram: &[f64], n: usize) -> Vec<f32> {
    let mut distances = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            let squared = gram[i * n + i] + gram[j * n + j] - 2.0 * gram[i * n + j];
            distances.push(squared.max(0.0).sqrt() as f32);
        }
    }
    distances
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairwise(vectors: &[f32], width: usize) -> (Vec<f32>, Vec<f32>) {
        let n = vectors.len() / width;
        let gram = gram(vectors, width);
        (cosine_matrix(&gram, n), euclidean_matrix(&gram, n))
    }

    #[test]
    fn groups_average_their_rows() {
        let rows = [1.0, 2.0, 3.0, 6.0, -1.0, 0.5, 5.0, 5.0, 7.0, 9.0];
        let means = group_means(&rows, 2, &[2, 1, 2]);
        assert_eq!(means, vec![2.0, 4.0, -1.0, 0.5, 6.0, 7.0]);
    }

    #[test]
    fn identical_vectors_have_cosine_one_and_distance_zero() {
        let v = [0.3, -1.7, 2.5, 0.01, 4.0];
        let both: Vec<f32> = v.iter().chain(&v).copied().collect();
        let (cosine, euclidean) = pairwise(&both, 5);
        assert!(cosine.iter().all(|&c| (c - 1.0).abs() < 1e-7), "{cosine:?}");
        assert_eq!(euclidean, vec![0.0; 4]);
    }

    #[test]
    fn orthogonal_and_opposite_vectors() {
        let vectors = [3.0, 0.0, 0.0, 2.0, -6.0, 0.0];
        let (cosine, euclidean) = pairwise(&vectors, 2);
        assert_eq!(cosine, vec![1.0, 0.0, -1.0, 0.0, 1.0, 0.0, -1.0, 0.0, 1.0]);
        let (ab, bc) = (13f32.sqrt(), 40f32.sqrt());
        let expected = [0.0, ab, 9.0, ab, 0.0, bc, 9.0, bc, 0.0];
        for (got, want) in euclidean.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{euclidean:?}");
        }
    }

    #[test]
    fn cosine_ignores_length_and_a_zero_vector_has_cosine_zero() {
        let vectors = [1.0, 2.0, 10.0, 20.0, 0.0, 0.0];
        let (cosine, _) = pairwise(&vectors, 2);
        assert!((cosine[1] - 1.0).abs() < 1e-7);
        assert_eq!(&cosine[6..], &[0.0, 0.0, 0.0]);
    }

    #[test]
    fn the_dot_product_handles_every_remainder() {
        for len in 0..11 {
            let a: Vec<f32> = (0..len).map(|i| i as f32 + 0.5).collect();
            let b: Vec<f32> = (0..len).map(|i| 2.0 - i as f32).collect();
            let naive: f64 = a.iter().zip(&b).map(|(&x, &y)| f64::from(x * y)).sum();
            assert_eq!(dot(&a, &b), naive, "length {len}");
        }
    }
}
