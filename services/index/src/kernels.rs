//! The arithmetic of closeness. Every search structure ranks by a *distance*, lower nearer:
//! `-dot` for cosine (vectors are stored normalised, so dot = cosine) and dot, the squared
//! Euclidean distance for L2. Scores are reported in the metric's own units ([`score`]).
//!
//! The loops keep 16 independent partial sums, so that LLVM turns them into SIMD without
//! being allowed to reorder floating-point additions itself.

use crate::types::Metric;

const LANES: usize = 16;

/// Σ aᵢ·bᵢ.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Σ (aᵢ − bᵢ)².
#[inline]
pub fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| (x - y) * (x - y)).sum();
    acc.iter().sum::<f32>() + tail
}

/// The distance that ranks points under `metric`, lower nearer. A NaN (possible only from
/// overflowing values such as ∞ − ∞) ranks last, so it can never win or upset an ordering.
#[inline]
pub fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    let d = match metric {
        Metric::Cosine | Metric::Dot => -dot(a, b),
        Metric::L2 => squared_l2(a, b),
    };
    if d.is_nan() {
        f32::INFINITY
    } else {
        d
    }
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

    #[test]
    fn kernels_match_the_plain_sums_for_every_length() {
        for n in [0, 1, 15, 16, 17, 64, 100] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let d: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let l: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            assert!((dot(&a, &b) - d).abs() < 1e-4, "dot, n = {n}");
            assert!((squared_l2(&a, &b) - l).abs() < 1e-4, "l2, n = {n}");
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
