//! The elementwise parts of a forward pass on the CPU, on plain rows: layer norm, activations,
//! residual adds. A decode batch is a few rows of 768 floats, where creating candle tensors and
//! waking candle's thread pool for each small op costs more than the op; here they are loops
//! over the rows, in place where they can be, split over threads only when big.

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
        let f = match self {
            Activation::GeluTanh => gelu_tanh,
            Activation::GeluErf => gelu_erf,
            Activation::Relu => |v: f32| v.max(0.0),
        };
        if x.len() < PARALLEL_MIN {
            x.iter_mut().for_each(|v| *v = f(*v));
        } else {
            x.par_chunks_mut(PARALLEL_MIN / 4)
                .for_each(|chunk| chunk.iter_mut().for_each(|v| *v = f(*v)));
        }
    }
}

fn gelu_tanh(v: f32) -> f32 {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    0.5 * v * (1.0 + (SQRT_TWO_OVER_PI * v * (1.0 + 0.044715 * v * v)).tanh())
}

fn gelu_erf(v: f32) -> f32 {
    // std has no erf; candle's (the one its own `gelu_erf` uses) does.
    let erf = candle_core::cpu::erf::erf_f64(v as f64 / std::f64::consts::SQRT_2);
    (0.5 * v as f64 * (1.0 + erf)) as f32
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
    }
}
