//! Linear-layer weights in 8 bits, GGUF's q8_0 scheme: every run of 32 weights that feed one
//! output shares an f32 scale (the run's largest magnitude / 127) and each weight is the nearest
//! integer in [-127, 127] times it. They are quantized once, at load, from the same safetensors
//! checkpoints, into the panels of [`crate::packed`] (`[panel][k][width]` bytes, and a scale per
//! column per block of 32 rows), so a decode step reads a quarter of the f32 bytes.
//!
//! Activations stay f32: each panel row is widened to f32 in registers and multiplied as the f32
//! product does, the block's sums scaled once at its end. That is as fast as llama.cpp's 8-bit
//! activations where memory bounds the step, and more accurate (nothing is rounded but the
//! weights). Every output is still one fixed chain of operations, so a row's result does not
//! depend on its batch.

use pulp::Simd;
use rayon::prelude::*;

use crate::packed::{panel_width, tile_rows, unpack, with_tile_rows, Matrix, PackRows};

/// Weights per scale.
pub const BLOCK: usize = 32;

/// Multiply-adds below which a product runs on one thread.
const PARALLEL_MIN_WORK: usize = 1 << 17;

/// A weight matrix in q8_0, in panels.
#[derive(Clone)]
pub struct PackedQ8 {
    k: usize,
    n: usize,
    width: usize,
    /// `[panel][k][width]`.
    quants: Vec<i8>,
    /// `[panel][k.div_ceil(BLOCK)][width]`.
    scales: Vec<f32>,
}

impl PackedQ8 {
    /// Quantizes `w` into panels.
    pub fn new(w: Matrix) -> Self {
        let (k, n, width) = (w.inputs(), w.outputs(), panel_width());
        let (panels, blocks) = (n.div_ceil(width), k.div_ceil(BLOCK));
        let mut quants = vec![0i8; panels * k * width];
        let mut scales = vec![0f32; panels * blocks * width];
        quants
            .par_chunks_mut(k * width)
            .zip(scales.par_chunks_mut(blocks * width))
            .enumerate()
            .for_each(|(p, (quants, scales))| {
                for c in 0..width.min(n - p * width) {
                    let j = p * width + c;
                    for b in 0..blocks {
                        let rows = b * BLOCK..((b + 1) * BLOCK).min(k);
                        let max = rows.clone().map(|i| w.at(i, j).abs()).fold(0f32, f32::max);
                        let scale = max / 127.0;
                        scales[b * width + c] = scale;
                        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                        for i in rows {
                            quants[i * width + c] = (w.at(i, j) * inv).round() as i8;
                        }
                    }
                }
            });
        PackedQ8 {
            k,
            n,
            width,
            quants,
            scales,
        }
    }

    /// Inputs per row.
    pub fn inputs(&self) -> usize {
        self.k
    }

    /// Outputs per row.
    pub fn outputs(&self) -> usize {
        self.n
    }

    /// The weights the quantized matrix stands for, `[k, n]` (for the instruments).
    pub(crate) fn to_in_out(&self) -> Vec<f32> {
        let (k, n, width) = (self.k, self.n, self.width);
        let blocks = k.div_ceil(BLOCK);
        let mut w = vec![0f32; k * n];
        for j in 0..n {
            let (p, c) = (j / width, j % width);
            for i in 0..k {
                let q = self.quants[(p * k + i) * width + c] as f32;
                w[i * n + j] = q * self.scales[(p * blocks + i / BLOCK) * width + c];
            }
        }
        w
    }

    /// `x · W (+ bias)` for `rows` rows of `x` `[rows, k]`: `[rows, n]`.
    pub fn product(&self, x: &[f32], rows: usize, bias: Option<&[f32]>) -> Vec<f32> {
        assert_eq!(x.len(), rows * self.k, "rows of {} inputs", self.k);
        if rows == 0 {
            return Vec::new();
        }
        let (k, width) = (self.k, self.width);
        let blocks = k.div_ceil(BLOCK);
        let tiles = pulp::Arch::new().dispatch(PackRows { x, k });
        let mut by_panel = vec![0f32; self.quants.len() / k * rows];
        let panel = |((quants, scales), out): ((&[i8], &[f32]), &mut [f32])| {
            on_widest(Q8Panel {
                tiles: &tiles,
                k,
                quants,
                scales,
                out,
            })
        };
        let parallel = rows * k * self.n >= PARALLEL_MIN_WORK;
        if parallel {
            self.quants
                .par_chunks_exact(k * width)
                .zip(self.scales.par_chunks_exact(blocks * width))
                .zip(by_panel.par_chunks_exact_mut(rows * width))
                .for_each(panel);
        } else {
            self.quants
                .chunks_exact(k * width)
                .zip(self.scales.chunks_exact(blocks * width))
                .zip(by_panel.chunks_exact_mut(rows * width))
                .for_each(panel);
        }
        unpack(&by_panel, rows, self.n, width, bias, parallel)
    }
}

/// Every tile of rows against one q8_0 panel; results `[rows][width]`.
struct Q8Panel<'a> {
    tiles: &'a [f32],
    k: usize,
    quants: &'a [i8],
    scales: &'a [f32],
    out: &'a mut [f32],
}

impl Q8Panel<'_> {
    /// The product with `widen` turning a panel row's bytes into its two registers of f32.
    #[inline(always)]
    fn run<S: Simd>(self, simd: S, widen: impl Fn(&[i8]) -> [S::f32s; 2]) {
        let (k, tile) = (self.k, tile_rows::<S>());
        let width = 2 * S::F32_LANES;
        let scales = S::as_simd_f32s(self.scales).0;
        for (rows, out) in self
            .tiles
            .chunks(tile * k)
            .zip(self.out.chunks_mut(tile * width))
        {
            with_tile_rows!(rows.len() / k, R => {
                q8_tile::<S, R>(simd, &widen, rows, self.quants, scales, out, k)
            });
        }
    }
}

/// `R` rows against a q8_0 panel: per block of 32 rows of `k`, the sums of `x · q` in registers,
/// then scaled into the outputs.
#[inline(always)]
fn q8_tile<S: Simd, const R: usize>(
    simd: S,
    widen: &impl Fn(&[i8]) -> [S::f32s; 2],
    rows: &[f32],
    quants: &[i8],
    scales: &[S::f32s],
    out: &mut [f32],
    k: usize,
) {
    let width = 2 * S::F32_LANES;
    let zero = simd.splat_f32s(0.0);
    let mut sums = [[zero; 2]; R];
    let (rows, _) = rows.as_chunks::<R>();
    for (b, scale) in scales.chunks_exact(2).enumerate() {
        let first = b * BLOCK;
        let depth = BLOCK.min(k - first);
        let mut block = [[zero; 2]; R];
        for (x, q) in rows[first..first + depth]
            .iter()
            .zip(quants[first * width..(first + depth) * width].chunks_exact(width))
        {
            let w = widen(q);
            for r in 0..R {
                let x = simd.splat_f32s(x[r]);
                block[r][0] = simd.mul_add_e_f32s(x, w[0], block[r][0]);
                block[r][1] = simd.mul_add_e_f32s(x, w[1], block[r][1]);
            }
        }
        for r in 0..R {
            sums[r][0] = simd.mul_add_e_f32s(block[r][0], scale[0], sums[r][0]);
            sums[r][1] = simd.mul_add_e_f32s(block[r][1], scale[1], sums[r][1]);
        }
    }
    let out = &mut S::as_mut_simd_f32s(out).0[..2 * R];
    for (r, sums) in sums.iter().enumerate() {
        out[2 * r..][..2].copy_from_slice(sums);
    }
}

/// Runs `panel` with the widest instructions this CPU has: widening bytes to f32 has no
/// portable form in `pulp`, so each instruction set gets its own.
fn on_widest(panel: Q8Panel<'_>) {
    #[cfg(target_arch = "x86_64")]
    {
        use pulp::x86::{V3, V4};
        if let Some(simd) = V4::try_new() {
            let widen = |q: &[i8]| {
                let bytes: [i8; 16] = q.try_into().expect("16 bytes, this is a bug");
                simd.convert_i32x16_to_f32x16(simd.convert_i8x16_to_i32x16(pulp::cast(bytes)))
            };
            return simd.vectorize(
                #[inline(always)]
                || panel.run(simd, |q| [widen(&q[..16]), widen(&q[16..32])]),
            );
        }
        if let Some(simd) = V3::try_new() {
            // Widening reads the low 8 bytes of a 16-byte register.
            let widen = |q: &[i8]| {
                let mut bytes = [0i8; 16];
                bytes[..8].copy_from_slice(q);
                simd.convert_i32x8_to_f32x8(simd.convert_i8x16_to_i32x8(pulp::cast(bytes)))
            };
            return simd.vectorize(
                #[inline(always)]
                || panel.run(simd, |q| [widen(&q[..8]), widen(&q[8..16])]),
            );
        }
    }
    panel.run(pulp::Scalar::new(), |q| [q[0] as f32, q[1] as f32]);
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
    fn the_product_is_that_of_the_dequantized_weights_and_near_the_f32_one() {
        for (rows, k, n) in [(1, 7, 3), (3, 64, 1001), (13, 300, 400), (32, 768, 130)] {
            let (x, w) = (values(rows * k, 4), values(k * n, 5));
            let q = PackedQ8::new(Matrix::new(&w, k, n, crate::packed::Layout::InOut));
            let dequantized = q.to_in_out();
            let got = q.product(&x, rows, None);
            let (mut err, mut norm) = (0f64, 0f64);
            for r in 0..rows {
                for j in 0..n {
                    let exact: f64 = (0..k).map(|i| (x[r * k + i] * w[i * n + j]) as f64).sum();
                    let of_dequantized: f64 = (0..k)
                        .map(|i| (x[r * k + i] * dequantized[i * n + j]) as f64)
                        .sum();
                    let g = got[r * n + j] as f64;
                    assert!(
                        (g - of_dequantized).abs() < 1e-3,
                        "{rows}x{k}x{n} at ({r}, {j})"
                    );
                    err += (g - exact).powi(2);
                    norm += exact.powi(2);
                }
            }
            let relative = (err / norm).sqrt();
            assert!(relative < 1e-2, "{rows}x{k}x{n}: relative error {relative}");
        }
    }

    #[test]
    fn a_row_gets_the_same_bits_whatever_else_is_in_the_batch() {
        let (k, n) = (256, 515);
        let w = PackedQ8::new(Matrix::new(
            &values(k * n, 2),
            k,
            n,
            crate::packed::Layout::InOut,
        ));
        let x = values(29 * k, 1);
        let all = w.product(&x, 29, None);
        for r in 0..29 {
            assert_eq!(
                w.product(&x[r * k..(r + 1) * k], 1, None),
                all[r * n..(r + 1) * n]
            );
        }
    }
}
