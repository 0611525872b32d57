//! CPU kernels for decoding, on plain slices.
//!
//! A decode step multiplies a handful of rows by every weight matrix, so it is bound by how fast
//! the weights stream from memory, not by arithmetic: a general matrix product (candle's gemm)
//! packs and tiles for reuse that a few rows cannot exploit. This kernel reads each weight once
//! per call, in order, one contiguous band per thread, and uses every row of the batch while a
//! weight row is in cache. Weights are `[out, in]` (as `nn.Linear` keeps them), so each output is
//! a dot product of two contiguous rows; each weight row is multiplied by a block of batch rows
//! at once, their sums in registers. (Blocking several weight rows too was slower as written.)
//!
//! How work is split depends only on the matrix, never on the batch, and every output is summed
//! in the same order whatever block it falls in, so a row's result does not depend on what else
//! is in the batch.

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

/// Lanes of the running sums: one AVX-512 register, two AVX ones.
const LANES: usize = 16;

/// Rows of `x` per register block.
const ROW_BLOCK: usize = 4;

/// Below this many multiply-adds per row a call runs on one thread: waking others costs more.
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// `x · wᵀ` for `rows` rows of `x` `[rows, k]` and `w` `[m, k]`. Returns `[rows, m]`.
pub fn linear(x: &[f32], rows: usize, w: &[f32], k: usize, m: usize) -> Vec<f32> {
    debug_assert_eq!(x.len(), rows * k);
    debug_assert_eq!(w.len(), m * k);
    let parts = if k * m < PARALLEL_MIN_WORK {
        1
    } else {
        rayon::current_num_threads().clamp(1, m)
    };
    let band = m.div_ceil(parts);
    let part = |p: usize| {
        let (start, end) = ((p * band).min(m), ((p + 1) * band).min(m));
        let mut out = vec![0f32; rows * (end - start)];
        pulp::Arch::new().dispatch(Band {
            x,
            rows,
            k,
            w: &w[start * k..end * k],
            out: &mut out,
        });
        (start, end, out)
    };
    let parts: Vec<_> = if parts == 1 {
        vec![part(0)]
    } else {
        (0..parts).into_par_iter().map(part).collect()
    };
    let mut out = vec![0f32; rows * m];
    for (start, end, values) in parts {
        let width = end - start;
        if width == 0 {
            continue;
        }
        for (r, values) in values.chunks_exact(width).enumerate() {
            out[r * m + start..r * m + end].copy_from_slice(values);
        }
    }
    out
}

/// Every row of `x` against a band of weight rows, written to `out` `[rows, band width]`.
struct Band<'a> {
    x: &'a [f32],
    rows: usize,
    k: usize,
    w: &'a [f32],
    out: &'a mut [f32],
}

impl WithSimd for Band<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let k = self.k;
        let columns = self.w.len() / k;
        for (column, w) in self.w.chunks_exact(k).enumerate() {
            let mut row = 0;
            while row + ROW_BLOCK <= self.rows {
                let xs = std::array::from_fn(|r| &self.x[(row + r) * k..][..k]);
                let sums = block::<S, ROW_BLOCK>(simd, xs, w);
                for (r, sum) in sums.into_iter().enumerate() {
                    self.out[(row + r) * columns + column] = sum;
                }
                row += ROW_BLOCK;
            }
            for row in row..self.rows {
                let [sum] = block::<S, 1>(simd, [&self.x[row * k..][..k]], w);
                self.out[row * columns + column] = sum;
            }
        }
    }
}

/// `R` rows of `x` against one weight row, sums held in registers: `[r] = xs[r] · w`.
#[inline(always)]
fn block<S: Simd, const R: usize>(simd: S, xs: [&[f32]; R], w: &[f32]) -> [f32; R] {
    let (w_body, w_tail) = S::as_simd_f32s(w);
    let n = w_body.len();
    let xv: [(&[S::f32s], &[f32]); R] = std::array::from_fn(|r| S::as_simd_f32s(xs[r]));
    // Slices of exactly `n`, so that the loop's bounds checks fold away.
    let x_body: [&[S::f32s]; R] = std::array::from_fn(|r| &xv[r].0[..n]);
    let mut sums = [simd.splat_f32s(0.0); R];
    for (i, &w) in w_body.iter().enumerate() {
        for r in 0..R {
            sums[r] = simd.mul_add_e_f32s(x_body[r][i], w, sums[r]);
        }
    }
    std::array::from_fn(|r| {
        let tail: f32 = xv[r].1.iter().zip(w_tail).map(|(a, b)| a * b).sum();
        simd.reduce_sum_f32s(sums[r]) + tail
    })
}

/// `acc += a · w`.
#[inline(always)]
pub fn axpy(a: f32, w: &[f32], acc: &mut [f32]) {
    acc.iter_mut().zip(w).for_each(|(o, w)| *o += a * w);
}

/// `Σ a·b`, summed in `LANES` running lanes (then the lanes, then the tail) so that it
/// vectorises; the order is fixed, so the result is the same on every call.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut lanes = [0f32; LANES];
    let (a_body, a_tail) = a.split_at(a.len() - a.len() % LANES);
    let (b_body, b_tail) = b.split_at(a_body.len());
    for (a, b) in a_body.chunks_exact(LANES).zip(b_body.chunks_exact(LANES)) {
        for l in 0..LANES {
            lanes[l] += a[l] * b[l];
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(a, b)| a * b).sum();
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn linear_matches_the_naive_product() {
        for (rows, k, m) in [
            (1, 7, 3),
            (3, 64, 1001),
            (5, 300, 400),
            (9, 768, 130),
            (2, 33, 70000),
        ] {
            let (x, w) = (values(rows * k, 4), values(m * k, 5));
            let got = linear(&x, rows, &w, k, m);
            for r in 0..rows {
                for j in 0..m {
                    let want: f32 = (0..k).map(|i| x[r * k + i] * w[j * k + i]).sum::<f32>();
                    let g = got[r * m + j];
                    assert!(
                        (g - want).abs() < 1e-3,
                        "{rows}x{k}x{m} at ({r}, {j}): {g} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_row_gets_the_same_bits_whatever_else_is_in_the_batch() {
        let (k, m) = (256, 515);
        let (x, w) = (values(7 * k, 1), values(m * k, 2));
        let all = linear(&x, 7, &w, k, m);
        for r in 0..7 {
            let alone = linear(&x[r * k..(r + 1) * k], 1, &w, k, m);
            assert_eq!(alone, all[r * m..(r + 1) * m]);
        }
    }
}
