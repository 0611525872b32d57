//! The arithmetic of closeness. Every search structure ranks by a *distance*, lower nearer:
//! `-dot` for cosine (vectors are stored normalised, so dot = cosine) and dot, the squared
//! Euclidean distance for L2. Scores are reported in the metric's own units ([`score`]).
//!
//! The kernels are generic over a [`pulp::Simd`] so that a caller can run a whole loop (a scan,
//! a graph walk) under one `pulp::Arch::dispatch`: the loop then compiles for AVX-512, AVX2 or
//! the baseline, picked at run time, with the kernels inlined into it. Everything a dispatched
//! loop calls on its hot path must be `#[inline(always)]`, or it compiles for the baseline.
//!
//! [`block`] scores several rows against several queries at once, their sums in registers.
//! Each (row, query) pair is summed in the same order whatever the block's shape (one SIMD
//! accumulator over the vector, its lanes, then the tail), so a pair gets the same bits alone
//! as in a batch, and a batched search ranks exactly as single ones do.

use pulp::{Simd, WithSimd};

use crate::types::Metric;

/// The distance of `a` to `b` under `metric`, for a caller outside a dispatched loop.
pub fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    struct Pair<'a>(Metric, &'a [f32], &'a [f32]);
    impl WithSimd for Pair<'_> {
        type Output = f32;
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) -> f32 {
            let [[d]] = block(simd, self.0, [self.1], [self.2]);
            d
        }
    }
    pulp::Arch::new().dispatch(Pair(metric, a, b))
}

/// The distances of `R` rows to `Q` queries (all of one length) under `metric`: `[r][q]`.
/// A NaN (possible only from overflowing values such as ∞ − ∞) becomes +∞, so that it ranks
/// last and can never win or upset an ordering.
#[inline(always)]
pub fn block<S: Simd, const R: usize, const Q: usize>(
    simd: S,
    metric: Metric,
    rows: [&[f32]; R],
    queries: [&[f32]; Q],
) -> [[f32; Q]; R] {
    let (mut d, negate) = match metric {
        Metric::Cosine | Metric::Dot => (sums::<S, R, Q, false>(simd, rows, queries), true),
        Metric::L2 => (sums::<S, R, Q, true>(simd, rows, queries), false),
    };
    // Plain loops here and below: a closure (`array::map`, `from_fn`) may stay out of line,
    // and so out of the dispatched code and its instruction set.
    for row in &mut d {
        for d in row {
            *d = if d.is_nan() {
                f32::INFINITY
            } else if negate {
                -*d
            } else {
                *d
            };
        }
    }
    d
}

/// Σ rᵢ·qᵢ, or Σ (rᵢ − qᵢ)² with `L2`, for every (row, query) pair.
#[inline(always)]
fn sums<S: Simd, const R: usize, const Q: usize, const L2: bool>(
    simd: S,
    rows: [&[f32]; R],
    queries: [&[f32]; Q],
) -> [[f32; Q]; R] {
    let n = rows.first().map_or(0, |r| r.len() / S::F32_LANES);
    let (mut rb, mut rt): ([&[S::f32s]; R], [&[f32]; R]) = ([&[]; R], [&[]; R]);
    for i in 0..R {
        let (body, tail) = S::as_simd_f32s(rows[i]);
        // Slices of exactly `n`, so that the loop's bounds checks fold away.
        (rb[i], rt[i]) = (&body[..n], tail);
    }
    let (mut qb, mut qt): ([&[S::f32s]; Q], [&[f32]; Q]) = ([&[]; Q], [&[]; Q]);
    for j in 0..Q {
        let (body, tail) = S::as_simd_f32s(queries[j]);
        (qb[j], qt[j]) = (&body[..n], tail);
    }
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; Q]; R];
    for c in 0..n {
        let mut qv = [zero; Q];
        for j in 0..Q {
            qv[j] = qb[j][c];
        }
        for i in 0..R {
            let rv = rb[i][c];
            for j in 0..Q {
                acc[i][j] = if L2 {
                    let d = simd.sub_f32s(rv, qv[j]);
                    simd.mul_add_e_f32s(d, d, acc[i][j])
                } else {
                    simd.mul_add_e_f32s(rv, qv[j], acc[i][j])
                };
            }
        }
    }
    let mut out = [[0f32; Q]; R];
    for i in 0..R {
        for j in 0..Q {
            let mut tail = 0f32;
            for (a, b) in rt[i].iter().zip(qt[j]) {
                tail += if L2 { (a - b) * (a - b) } else { a * b };
            }
            out[i][j] = simd.reduce_sum_f32s(acc[i][j]) + tail;
        }
    }
    out
}

/// The score a client sees for a [`distance`]: the similarity (cosine, dot) or the Euclidean
/// distance (L2).
#[inline]
pub fn score(metric: Metric, distance: f32) -> f32 {
    match metric {
        Metric::Cosine | Metric::Dot => -distance,
        Metric::L2 => distance.sqrt(),
    }
}

/// Scales `v` to unit length; `false` (leaving it as it is) for a zero or non-finite norm.
pub fn normalise(v: &mut [f32]) -> bool {
    let norm = (v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>()).sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return false;
    }
    for x in v.iter_mut() {
        *x = (f64::from(*x) / norm) as f32;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * seed).sin()).collect()
    }

    #[test]
    fn distances_match_the_plain_sums_for_every_length() {
        for n in [0, 1, 7, 15, 16, 17, 64, 100, 384] {
            let (a, b) = (values(n, 0.37), values(n, 0.11));
            let d: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let l: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            assert!(
                (distance(Metric::Dot, &a, &b) + d).abs() < 1e-4,
                "dot, n = {n}"
            );
            assert!(
                (distance(Metric::L2, &a, &b) - l).abs() < 1e-4,
                "l2, n = {n}"
            );
        }
    }

    /// Checks every (row, query) pair of a 3 × 2 block against the pair alone (the same bits)
    /// and against the plain sum, for vectors of `n` values.
    struct Shapes(Metric, usize);

    impl WithSimd for Shapes {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) {
            let (metric, n) = (self.0, self.1);
            let rows: Vec<Vec<f32>> = (0..3).map(|i| values(n, 0.3 + i as f32)).collect();
            let queries: Vec<Vec<f32>> = (0..2).map(|j| values(n, 0.7 - j as f32)).collect();
            let big = block(
                simd,
                metric,
                [&rows[0][..], &rows[1], &rows[2]],
                [&queries[0][..], &queries[1]],
            );
            for (i, row) in rows.iter().enumerate() {
                for (j, query) in queries.iter().enumerate() {
                    let [[one]] = block(simd, metric, [&row[..]], [&query[..]]);
                    assert_eq!(one.to_bits(), big[i][j].to_bits(), "{metric:?}, n {n}");
                    let plain: f32 = row
                        .iter()
                        .zip(query)
                        .map(|(a, b)| match metric {
                            Metric::L2 => (a - b) * (a - b),
                            _ => -a * b,
                        })
                        .sum();
                    assert!((one - plain).abs() < 1e-3, "{metric:?}, n {n}");
                }
            }
        }
    }

    #[test]
    fn a_pair_gets_the_same_bits_in_every_block_shape_on_every_instruction_set() {
        for metric in [Metric::Dot, Metric::L2] {
            for n in [1, 9, 100, 384] {
                pulp::Arch::new().dispatch(Shapes(metric, n));
                // What a machine without AVX gets.
                Shapes(metric, n).with_simd(pulp::Scalar::new());
                #[cfg(target_arch = "x86_64")]
                if let Some(v3) = pulp::x86::V3::try_new() {
                    Shapes(metric, n).with_simd(v3);
                }
            }
        }
    }

    #[test]
    fn distances_rank_and_scores_read_in_the_metrics_units() {
        let (a, b) = ([3.0, 4.0], [0.0, 0.0]);
        assert_eq!(score(Metric::L2, distance(Metric::L2, &a, &b)), 5.0);
        assert_eq!(score(Metric::Dot, distance(Metric::Dot, &a, &a)), 25.0);
        let mut v = vec![3.0, 4.0];
        assert!(normalise(&mut v));
        assert_eq!(v, [0.6, 0.8]);
        assert!(!normalise(&mut [0.0, 0.0]));
        let huge = [f32::MAX, -f32::MAX];
        assert_eq!(
            distance(Metric::Dot, &huge, &[f32::MAX, f32::MAX]),
            f32::INFINITY
        );
    }
}
