//! The elementwise parts of a forward pass on the CPU, on plain rows: layer norm, activations,
//! residual adds. A decode batch is a few rows of 768 floats, where creating candle tensors and
//! waking candle's thread pool for each small op costs more than the op; here they are loops
//! over the rows, in place where they can be, split over threads only when big.

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

/// Elements below which a loop runs on one thread.
const PARALLEL_MIN: usize = 1 << 16;

/// `(x - mean) / sqrt(var + eps) · weight + bias` for each row of width `weight.len()`, as
/// `torch.nn.LayerNorm` (biased variance, f32).
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f32) -> Vec<f32> {
    let width = weight.len();
    let mut out = vec![0f32; x.len()];
    let norm = |(row, out): (&[f32], &mut [f32])| {
        let mean = row.iter().sum::<f32>() / width as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / width as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for (((o, v), w), b) in out.iter_mut().zip(row).zip(weight).zip(bias) {
            *o = (v - mean) * inv * w + b;
        }
    };
    if x.len() < PARALLEL_MIN {
        x.chunks_exact(width)
            .zip(out.chunks_exact_mut(width))
            .for_each(norm);
    } else {
        x.par_chunks_exact(width)
            .zip(out.par_chunks_exact_mut(width))
            .for_each(norm);
    }
    out
}

/// The MLP's activations, applied in place.
#[derive(Clone, Copy)]
pub enum Activation {
    /// `gelu_new` / `gelu_pytorch_tanh`: GPT-2's tanh approximation.
    GeluTanh,
    /// `gelu`: the exact one, with erf.
    GeluErf,
    Relu,
}

impl Activation {
    pub fn apply(self, x: &mut [f32]) {
        let f = |chunk: &mut [f32]| match self {
            Activation::Relu => chunk.iter_mut().for_each(|v| *v = v.max(0.0)),
            gelu => pulp::Arch::new().dispatch(Gelu(gelu, chunk)),
        };
        if x.len() < PARALLEL_MIN {
            f(x);
        } else {
            x.par_chunks_mut(PARALLEL_MIN / 4).for_each(f);
        }
    }
}

/// One of the GELUs in place, lane by lane.
struct Gelu<'a>(Activation, &'a mut [f32]);

impl WithSimd for Gelu<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let lanes = |v| match self.0 {
            Activation::GeluErf => gelu_erf_lanes(simd, v),
            _ => gelu_tanh_lanes(simd, v),
        };
        let (body, tail) = S::as_mut_simd_f32s(self.1);
        for v in body {
            *v = lanes(*v);
        }
        if !tail.is_empty() {
            let v = lanes(simd.partial_load_f32s(tail));
            simd.partial_store_f32s(tail, v);
        }
    }
}

/// GPT-2's `0.5 x (1 + tanh u)`, u = √(2/π) (x + 0.044715 x³), computed as the equal `x σ(2u)
/// = x / (1 + e^(-2u))`: with a vector exp it is an order of magnitude faster than scalar tanh,
/// and it avoids the cancellation of `1 + tanh u` for negative x (within 2e-6 of f64 where tanh
/// is off by 5e-5).
#[inline(always)]
fn gelu_tanh_lanes<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    let c = |v: f32| simd.splat_f32s(v);
    let x2 = simd.mul_f32s(x, x);
    let u = simd.mul_f32s(
        simd.mul_f32s(x, c(0.797_884_6)),
        simd.mul_add_e_f32s(x2, c(0.044715), c(1.0)),
    );
    let e = exp(simd, simd.mul_f32s(u, c(-2.0)));
    simd.div_f32s(x, simd.add_f32s(c(1.0), e))
}

/// `x Φ(x) = x (1 + erf(x/√2)) / 2`, with erf as PyTorch's vectorised CPU kernel computes it
/// (Abramowitz & Stegun 7.1.26, within 1.5e-7): the reference's own arithmetic, and an order of
/// magnitude faster than a scalar f64 erf, which was an eighth of a BERT forward.
#[inline(always)]
fn gelu_erf_lanes<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    let c = |v: f32| simd.splat_f32s(v);
    let z = simd.mul_f32s(x, c(std::f32::consts::FRAC_1_SQRT_2));
    let a = simd.abs_f32s(z);
    let t = simd.div_f32s(c(1.0), simd.mul_add_e_f32s(c(0.327_591_1), a, c(1.0)));
    let mut r = c(1.061_405_4);
    for k in [-1.453_152, 1.421_413_8, -0.284_496_74, 0.254_829_6] {
        r = simd.mul_add_e_f32s(r, t, c(k));
    }
    // erf(|z|) = 1 - r t e^(-z²)
    let e = exp(simd, simd.neg_f32s(simd.mul_f32s(z, z)));
    let erf = simd.sub_f32s(c(1.0), simd.mul_f32s(simd.mul_f32s(r, t), e));
    let erf = simd.select_f32s(simd.less_than_f32s(z, c(0.0)), simd.neg_f32s(erf), erf);
    simd.mul_f32s(simd.mul_f32s(c(0.5), x), simd.add_f32s(c(1.0), erf))
}

/// `e^x` lane by lane, as Cephes' `expf`: x = n ln 2 + r with |r| ≤ ln 2 / 2, a polynomial for e^r,
/// and 2^n written straight into the exponent bits. Within 2 ulp; inputs below -87.3 give about
/// 1e-38, not 0 (callers that need 0 there set it).
#[inline(always)]
pub fn exp<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    let c = |v: f32| simd.splat_f32s(v);
    let x = simd.min_f32s(simd.max_f32s(x, c(-87.3)), c(88.3));
    // Adding 1.5·2^23 rounds to an integer, which then sits in the low mantissa bits.
    let magic = c(12_582_912.0);
    let shifted = simd.mul_add_e_f32s(x, c(std::f32::consts::LOG2_E), magic);
    let n = simd.sub_f32s(shifted, magic);
    // ln 2 in two parts, so that n · the first is exact.
    let r = simd.mul_add_e_f32s(n, c(-0.693_359_4), x);
    let r = simd.mul_add_e_f32s(n, c(2.121_944_4e-4), r);
    let mut p = c(1.987_569_1e-4);
    for k in [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = simd.mul_add_e_f32s(p, r, c(k));
    }
    let p = simd.add_f32s(simd.mul_add_e_f32s(simd.mul_f32s(p, r), r, r), c(1.0));
    // The low bits of `shifted` hold n; shifting them into the exponent field and adding the
    // bias makes 2^n (the magic's own bits shift out).
    let bits = simd.wrapping_dyn_shl_u32s(simd.transmute_u32s_f32s(shifted), simd.splat_u32s(23));
    let two_n = simd.transmute_f32s_u32s(simd.add_u32s(bits, simd.splat_u32s(127 << 23)));
    simd.mul_f32s(p, two_n)
}

/// `x += y`, elementwise.
pub fn add_into(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_centres_and_scales_each_row() {
        let x = [1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 14.0];
        let out = layer_norm(&x, &[1.0; 4], &[0.5; 4], 0.0);
        for row in out.chunks_exact(4) {
            let mean = row.iter().sum::<f32>() / 4.0;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 4.0;
            assert!((mean - 0.5).abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn activations_match_their_definitions() {
        let mut x = [-2.0f32, -0.5, 0.0, 0.7, 3.0];
        Activation::GeluErf.apply(&mut x);
        // gelu(x) = x Φ(x): Φ(0.7) = 0.758036, Φ(-2) = 0.0227501
        assert!((x[3] - 0.7 * 0.758_036).abs() < 1e-5, "{}", x[3]);
        assert!((x[0] + 2.0 * 0.022_750_1).abs() < 1e-5, "{}", x[0]);
        assert_eq!(x[2], 0.0);
        let mut y = [0.7f32];
        Activation::GeluTanh.apply(&mut y);
        assert!((y[0] - 0.530_576).abs() < 1e-5, "{}", y[0]);
        let xs: Vec<f32> = (0..4000).map(|i| (i as f32 - 2000.0) / 150.0).collect();
        let mut tanh = xs.clone();
        Activation::GeluTanh.apply(&mut tanh);
        for (&x, &g) in xs.iter().zip(&tanh) {
            let x = x as f64;
            let want = 0.5 * x * (1.0 + (0.797_884_560_8 * (x + 0.044715 * x * x * x)).tanh());
            assert!(
                (g as f64 - want).abs() <= 2e-6 * x.abs().max(1e-3),
                "gelu_tanh({x}): {g} vs {want}"
            );
        }
    }

    #[test]
    fn vector_gelu_and_exp_match_f64_over_a_wide_range() {
        let xs: Vec<f32> = (0..4000).map(|i| (i as f32 - 2000.0) / 100.0).collect();
        let mut gelu = xs.clone();
        Activation::GeluErf.apply(&mut gelu);
        for (&x, &g) in xs.iter().zip(&gelu) {
            let erf = candle_core::cpu::erf::erf_f64(x as f64 / std::f64::consts::SQRT_2);
            let want = 0.5 * x as f64 * (1.0 + erf);
            assert!(
                (g as f64 - want).abs() <= 2e-7 * (x.abs() as f64).max(1.0),
                "gelu({x}): {g} vs {want}"
            );
        }
        struct Exp<'a>(&'a mut [f32]);
        impl WithSimd for Exp<'_> {
            type Output = ();
            fn with_simd<S: Simd>(self, simd: S) {
                // 4000 values: whole registers, no tail.
                for v in S::as_mut_simd_f32s(self.0).0 {
                    *v = exp(simd, *v);
                }
            }
        }
        let mut e: Vec<f32> = xs.iter().map(|x| x * 4.0).collect();
        pulp::Arch::new().dispatch(Exp(&mut e));
        for (&x, &got) in xs.iter().zip(&e) {
            let want = (x as f64 * 4.0).exp();
            assert!(
                ((got as f64 - want) / want).abs() < 3e-7,
                "exp({}): {got} vs {want}",
                x * 4.0
            );
        }
    }
}
