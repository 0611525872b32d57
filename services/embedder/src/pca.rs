//! The first two principal components of a few hundred word vectors, for a plot of meaning
//! space. The vectors are centred and the top eigenvectors of their `n × n` Gram matrix found by
//! subspace iteration with Rayleigh–Ritz: `n` is at most a few hundred while vectors are 768 or
//! more wide, so the Gram matrix is the smaller problem; and iterating a block of several vectors
//! separates components of close variance, which power iteration with deflation does slowly.
//! Everything is f64 and starts from a fixed seed, so the same words give the same plot.

use crate::words::{dot, gram};

/// The words placed on the plane of their first two principal components.
#[derive(Debug, PartialEq)]
pub struct Projection {
    /// Each vector's coordinates on the two components; each component's sign makes its
    /// largest coordinate in magnitude (the first among equals) positive.
    pub coordinates: Vec<[f64; 2]>,
    /// The share of the total variance each component explains.
    pub explained: [f64; 2],
}

/// Vectors iterated together: more than the two wanted, so that convergence goes with the
/// ratio of the 3rd..9th variances to the 2nd, not of the 3rd to the 2nd.
const BLOCK: usize = 8;
/// Enough for any spectrum with a visible gap after the 2nd component; without one, the plane
/// is not well defined and the best plane found so far is as good an answer as any.
const MAX_ITERATIONS: usize = 500;
/// Converged when `|C v - λ v| <= TOLERANCE * λ₁` for both components.
const TOLERANCE: f64 = 1e-10;

/// Projects the rows of `vectors` (`[n, width]` row-major) on their first two principal
/// components. Vectors that are all the same have no variance and get zeros.
pub fn project(vectors: &[f32], width: usize) -> Projection {
    let n = vectors.len() / width;
    let centred = gram(&centre(vectors, width), width);
    let total: f64 = (0..n).map(|i| centred[i * n + i]).sum();
    let mut projection = Projection {
        coordinates: vec![[0.0; 2]; n],
        explained: [0.0; 2],
    };
    if total <= 0.0 {
        return projection;
    }
    for (k, (value, mut vector)) in top_eigenpairs(&centred, n).into_iter().enumerate() {
        // The Gram matrix is positive semi-definite; rounding may leave a null value below 0.
        let value = value.max(0.0);
        fix_sign(&mut vector);
        // With `C = U S² Uᵀ` the coordinates `Xc V` of the SVD `Xc = U S Vᵀ` are `U S`.
        let scale = value.sqrt();
        for (point, &u) in projection.coordinates.iter_mut().zip(&vector) {
            point[k] = scale * u;
        }
        projection.explained[k] = value / total;
    }
    projection
}

/// The rows minus their mean, in f64: centring before the products keeps the Gram matrix free
/// of the cancellation that centring it afterwards would bring.
fn centre(vectors: &[f32], width: usize) -> Vec<f64> {
    let n = (vectors.len() / width).max(1);
    let mut mean = vec![0f64; width];
    for row in vectors.chunks_exact(width) {
        for (m, &x) in mean.iter_mut().zip(row) {
            *m += f64::from(x);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    vectors
        .chunks_exact(width)
        .flat_map(|row| row.iter().zip(&mean).map(|(&x, m)| f64::from(x) - m))
        .collect()
}

/// The two largest eigenvalues of the symmetric `n × n` `matrix` (fewer when `n < 2`) with
/// unit eigenvectors, largest first.
fn top_eigenpairs(matrix: &[f64], n: usize) -> Vec<(f64, Vec<f64>)> {
    let wanted = n.min(2);
    let mut seed = 0x5eed_u64;
    let mut basis: Vec<Vec<f64>> = (0..n.min(BLOCK)).map(|_| random(&mut seed, n)).collect();
    orthonormalize(&mut basis, &mut seed);
    let mut pairs = Vec::new();
    for iteration in 1..=MAX_ITERATIONS {
        let images: Vec<Vec<f64>> = basis.iter().map(|v| times(matrix, v)).collect();
        // Rayleigh–Ritz: the eigenvectors of the matrix restricted to the basis' span are the
        // best approximations within it, whatever the gaps between the leading eigenvalues.
        let p = basis.len();
        let mut small = vec![0f64; p * p];
        for a in 0..p {
            for b in 0..p {
                small[a * p + b] = 0.5 * (dot(&basis[a], &images[b]) + dot(&basis[b], &images[a]));
            }
        }
        let (values, rotation) = jacobi(small, p);
        let ritz = combine(&basis, &rotation);
        let ritz_images = combine(&images, &rotation);
        let converged = (0..wanted).all(|k| {
            let residual: f64 = ritz_images[k]
                .iter()
                .zip(&ritz[k])
                .map(|(cv, v)| (cv - values[k] * v).powi(2))
                .sum();
            residual.sqrt() <= TOLERANCE * values[0]
        });
        pairs = (0..wanted).map(|k| (values[k], ritz[k].clone())).collect();
        if converged || p == n {
            break;
        }
        if iteration == MAX_ITERATIONS {
            tracing::debug!(
                n,
                "projection stopped unconverged: the 2nd principal component is not well defined"
            );
        }
        basis = ritz_images;
        orthonormalize(&mut basis, &mut seed);
    }
    pairs
}

/// `matrix · v` for a square row-major `matrix`.
fn times(matrix: &[f64], v: &[f64]) -> Vec<f64> {
    matrix
        .chunks_exact(v.len())
        .map(|row| dot(row, v))
        .collect()
}

/// The vectors `Σ_a vectors[a] · rotation[a][k]`, one per column `k` of `rotation`.
fn combine(vectors: &[Vec<f64>], rotation: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = vectors.first().map_or(0, Vec::len);
    (0..rotation.len())
        .map(|k| {
            let mut out = vec![0f64; n];
            for (v, row) in vectors.iter().zip(rotation) {
                out.iter_mut().zip(v).for_each(|(o, &x)| *o += row[k] * x);
            }
            out
        })
        .collect()
}

/// Modified Gram–Schmidt, twice for orthogonality to rounding. A vector that falls into the
/// span of the ones before it (the image of a null direction) is replaced by a fresh random one:
/// any direction orthogonal to the others is as good for a null eigenvalue.
fn orthonormalize(vectors: &mut [Vec<f64>], seed: &mut u64) {
    for k in 0..vectors.len() {
        let (done, rest) = vectors.split_at_mut(k);
        let v = &mut rest[0];
        for _attempt in 0..8 {
            let before = dot(v, v).sqrt();
            for _pass in 0..2 {
                for u in done.iter() {
                    let d = dot(u, v);
                    v.iter_mut().zip(u).for_each(|(x, &y)| *x -= d * y);
                }
            }
            let after = dot(v, v).sqrt();
            if after > 1e-10 * before && after > 0.0 {
                v.iter_mut().for_each(|x| *x /= after);
                break;
            }
            *v = random(seed, v.len());
        }
    }
}

/// A vector of `n` values in [-1, 1) from splitmix64: a fixed start, the same on every machine.
fn random(seed: &mut u64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = *seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

/// Eigen-decomposition of a small symmetric `m × m` matrix by cyclic Jacobi rotations:
/// eigenvalues largest first, and the matrix whose column `k` is the eigenvector of value `k`.
fn jacobi(mut a: Vec<f64>, m: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut v: Vec<f64> = (0..m * m)
        .map(|i| if i / m == i % m { 1.0 } else { 0.0 })
        .collect();
    let norm = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..64 {
        let off = (0..m)
            .flat_map(|p| (p + 1..m).map(move |q| (p, q)))
            .map(|(p, q)| a[p * m + q].powi(2))
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * norm {
            break;
        }
        for p in 0..m {
            for q in p + 1..m {
                let apq = a[p * m + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation by the smaller angle that zeroes a[p][q].
                let theta = (a[q * m + q] - a[p * m + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + theta.hypot(1.0));
                let c = 1.0 / t.hypot(1.0);
                let s = t * c;
                for k in 0..m {
                    let (kp, kq) = (a[k * m + p], a[k * m + q]);
                    a[k * m + p] = c * kp - s * kq;
                    a[k * m + q] = s * kp + c * kq;
                }
                for k in 0..m {
                    let (pk, qk) = (a[p * m + k], a[q * m + k]);
                    a[p * m + k] = c * pk - s * qk;
                    a[q * m + k] = s * pk + c * qk;
                }
                for k in 0..m {
                    let (kp, kq) = (v[k * m + p], v[k * m + q]);
                    v[k * m + p] = c * kp - s * kq;
                    v[k * m + q] = s * kp + c * kq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| a[j * m + j].total_cmp(&a[i * m + i]));
    let values = order.iter().map(|&i| a[i * m + i]).collect();
    // Row `r` of the result holds row `r` of `v` with its columns in the sorted order.
    let rotation = (0..m)
        .map(|r| order.iter().map(|&i| v[r * m + i]).collect())
        .collect();
    (values, rotation)
}

/// Makes the largest coordinate in magnitude positive; among coordinates equal in magnitude up
/// to rounding, the first decides, so that mirror-symmetric data still gets one answer.
fn fix_sign(vector: &mut [f64]) {
    let largest = vector.iter().fold(0f64, |m, x| m.max(x.abs()));
    let decider = vector.iter().find(|x| x.abs() >= largest * (1.0 - 1e-9));
    if decider.is_some_and(|&x| x < 0.0) {
        vector.iter_mut().for_each(|x| *x = -*x);
    }
}

#[cfg(test)]
mod tests;
