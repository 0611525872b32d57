//! Linear-layer weights stored narrower than f32, in the panels of [`crate::packed`]
//! (`[panel][k][width]`), converted once at load from the same safetensors checkpoints:
//!
//! - [`Q8_0`], GGUF's scheme: every run of 32 weights that feed one output shares an f32 scale
//!   (the run's largest magnitude / 127) and each weight is the nearest integer in [-127, 127]
//!   times it; a quarter of the f32 bytes.
//! - [`Bf16`] and [`F16`]: each weight rounded to the nearest 16-bit float; half the bytes.
//!
//! Activations stay f32: each panel row is widened to f32 in registers and multiplied as the f32
//! product does (q8_0's block sums scaled once at the block's end). Where memory bounds the step
//! (decode) that runs at the speed of the bytes read, and it is more accurate than rounding the
//! activations too, as llama.cpp does. Every output is still one fixed chain of operations, so a
//! row's result does not depend on its batch.

use std::marker::PhantomData;

use pulp::Simd;
use rayon::prelude::*;

use crate::packed::{
    by_panels, f32_tiles, panel_width, tile_rows, with_tile_rows, Aligned, HostMatrix, Matrix,
    Shape,
};
use crate::ModelError;

/// How a narrow format stores a weight and widens it back to f32.
pub trait Format: Send + Sync + 'static {
    /// One stored weight.
    type Stored: Copy + Default + Send + Sync + pulp::bytemuck::Pod;
    /// Weights of one output per scale. By default a format has no scales: one block spans all
    /// of `k` with scale 1 (multiplying a sum by 1 changes no bit).
    const BLOCK: usize = usize::MAX;
    /// The largest magnitude the format holds.
    const MAX: f32 = f32::MAX;
    /// The scale of a run of weights whose largest magnitude is `max`.
    fn scale(_max: f32) -> f32 {
        1.0
    }
    /// `w` stored, under `scale`.
    fn store(w: f32, scale: f32) -> Self::Stored;
    /// A stored weight as f32, before its scale.
    fn load(s: Self::Stored) -> f32;
    /// Sixteen stored weights as f32 with AVX-512.
    #[cfg(target_arch = "x86_64")]
    fn widen_v4(simd: pulp::x86::V4, s: &[Self::Stored; 16]) -> pulp::f32x16;
    /// Eight stored weights as f32 with AVX2.
    #[cfg(target_arch = "x86_64")]
    fn widen_v3(simd: pulp::x86::V3, s: &[Self::Stored; 8]) -> pulp::f32x8;
}

/// GGUF's q8_0.
pub struct Q8_0;

impl Format for Q8_0 {
    type Stored = i8;
    const BLOCK: usize = 32;

    fn scale(max: f32) -> f32 {
        max / 127.0
    }

    fn store(w: f32, scale: f32) -> i8 {
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        (w * inv).round() as i8
    }

    fn load(s: i8) -> f32 {
        s as f32
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn widen_v4(simd: pulp::x86::V4, s: &[i8; 16]) -> pulp::f32x16 {
        simd.convert_i32x16_to_f32x16(simd.convert_i8x16_to_i32x16(pulp::cast(*s)))
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn widen_v3(simd: pulp::x86::V3, s: &[i8; 8]) -> pulp::f32x8 {
        // Widening reads the low 8 bytes of a 16-byte register.
        let mut bytes = [0i8; 16];
        bytes[..8].copy_from_slice(s);
        simd.convert_i32x8_to_f32x8(simd.convert_i8x16_to_i32x8(pulp::cast(bytes)))
    }
}

/// bfloat16: f32's exponent range, 8 bits of precision.
pub struct Bf16;

impl Format for Bf16 {
    type Stored = u16;

    fn store(w: f32, _: f32) -> u16 {
        half::bf16::from_f32(w).to_bits()
    }

    fn load(s: u16) -> f32 {
        half::bf16::from_bits(s).to_f32()
    }

    /// A bf16 is the high half of an f32.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn widen_v4(simd: pulp::x86::V4, s: &[u16; 16]) -> pulp::f32x16 {
        let wide = simd.convert_u16x16_to_u32x16(pulp::cast(*s));
        pulp::cast(simd.shl_const_u32x16::<16>(wide))
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn widen_v3(simd: pulp::x86::V3, s: &[u16; 8]) -> pulp::f32x8 {
        let wide = simd.convert_u16x8_to_u32x8(pulp::cast(*s));
        pulp::cast(simd.shl_const_u32x8::<16>(wide))
    }
}

/// IEEE half precision: 11 bits of precision, magnitudes up to 65,504.
pub struct F16;

impl Format for F16 {
    type Stored = u16;
    const MAX: f32 = 65504.0;

    fn store(w: f32, _: f32) -> u16 {
        half::f16::from_f32(w).to_bits()
    }

    fn load(s: u16) -> f32 {
        half::f16::from_bits(s).to_f32()
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn widen_v4(simd: pulp::x86::V4, s: &[u16; 16]) -> pulp::f32x16 {
        pulp::cast(simd.avx512f._mm512_cvtph_ps(pulp::cast(*s)))
    }

    /// AVX2 without F16C (which `pulp`'s level does not promise): the 15 bits below the sign,
    /// moved to an f32's exponent and fraction, are the value times 2^-112 for normal and
    /// subnormal halves alike, so one multiply restores it. Infinities and NaN do not survive,
    /// and cannot occur: loading refuses weights beyond [`F16::MAX`].
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn widen_v3(simd: pulp::x86::V3, s: &[u16; 8]) -> pulp::f32x8 {
        let wide = simd.convert_u16x8_to_u32x8(pulp::cast(*s));
        let magnitude = simd.shl_const_u32x8::<13>(simd.and_u32x8(wide, simd.splat_u32x8(0x7fff)));
        let sign = simd.shl_const_u32x8::<16>(simd.and_u32x8(wide, simd.splat_u32x8(0x8000)));
        let value = simd.mul_f32x8(
            pulp::cast(magnitude),
            simd.splat_f32x8(f32::from_bits(0x7780_0000)),
        );
        pulp::cast(simd.or_u32x8(pulp::cast(value), sign))
    }
}

/// f16 bits (as [`F16`] stores them) widened to f32, `out[i] = stored[i]`, with the widest
/// instructions this CPU has: how an f16 KV cache is read ([`crate::flash`]).
pub(crate) fn widen_f16(stored: &[u16], out: &mut [f32]) {
    let out = &mut out[..stored.len()];
    #[cfg(target_arch = "x86_64")]
    {
        use pulp::x86::{V3, V4};
        if let Some(simd) = V4::try_new() {
            return simd.vectorize(
                #[inline(always)]
                || {
                    let (halves, tail) = stored.as_chunks::<16>();
                    let (wide, wide_tail) = out.as_chunks_mut::<16>();
                    for (h, w) in halves.iter().zip(wide) {
                        *w = pulp::cast(F16::widen_v4(simd, h));
                    }
                    widen_one_by_one(tail, wide_tail);
                },
            );
        }
        if let Some(simd) = V3::try_new() {
            return simd.vectorize(
                #[inline(always)]
                || {
                    let (halves, tail) = stored.as_chunks::<8>();
                    let (wide, wide_tail) = out.as_chunks_mut::<8>();
                    for (h, w) in halves.iter().zip(wide) {
                        *w = pulp::cast(F16::widen_v3(simd, h));
                    }
                    widen_one_by_one(tail, wide_tail);
                },
            );
        }
    }
    widen_one_by_one(stored, out);
}

fn widen_one_by_one(stored: &[u16], out: &mut [f32]) {
    for (s, o) in stored.iter().zip(out) {
        *o = F16::load(*s);
    }
}

/// A weight matrix in a narrow format, in panels.
pub struct PackedNarrow<F: Format> {
    k: usize,
    n: usize,
    width: usize,
    /// `[panel][k][width]`.
    stored: Aligned<F::Stored>,
    /// `[panel][k.div_ceil(F::BLOCK)][width]`.
    scales: Vec<f32>,
    format: PhantomData<F>,
}

/// q8_0 weights (see [`Q8_0`]).
pub type PackedQ8 = PackedNarrow<Q8_0>;

impl<F: Format> PackedNarrow<F> {
    /// Converts `w` into panels; a weight beyond the format's range is refused.
    pub fn new(w: Matrix) -> Result<Self, ModelError> {
        let (k, n, width) = (w.inputs(), w.outputs(), panel_width());
        let (panels, blocks) = (n.div_ceil(width), k.div_ceil(F::BLOCK));
        let mut stored = Aligned::zeroed(panels * k * width);
        let mut scales = vec![0f32; panels * blocks * width];
        stored
            .par_chunks_mut(k * width)
            .zip(scales.par_chunks_mut(blocks * width))
            .enumerate()
            .try_for_each(|(p, (stored, scales))| {
                for c in 0..width.min(n - p * width) {
                    let j = p * width + c;
                    for b in 0..blocks {
                        let first = b * F::BLOCK;
                        let rows = first..first.saturating_add(F::BLOCK).min(k);
                        let run = rows.clone().map(|i| w.at(i, j));
                        if let Some(v) = run.clone().find(|v| v.is_nan() || v.abs() > F::MAX) {
                            return Err(ModelError::Checkpoint(format!(
                                "weight {v} is beyond this dtype's range (±{}); load it in f32 or bf16",
                                F::MAX
                            )));
                        }
                        let max = run.map(f32::abs).fold(0f32, f32::max);
                        let scale = F::scale(max);
                        scales[b * width + c] = scale;
                        for i in rows {
                            stored[i * width + c] = F::store(w.at(i, j), scale);
                        }
                    }
                }
                Ok(())
            })?;
        Ok(PackedNarrow {
            k,
            n,
            width,
            stored,
            scales,
            format: PhantomData,
        })
    }
}

impl<F: Format> HostMatrix for PackedNarrow<F> {
    fn inputs(&self) -> usize {
        self.k
    }

    fn outputs(&self) -> usize {
        self.n
    }

    fn to_in_out(&self) -> Vec<f32> {
        let (k, n, width) = (self.k, self.n, self.width);
        let blocks = k.div_ceil(F::BLOCK);
        let mut w = vec![0f32; k * n];
        for j in 0..n {
            let (p, c) = (j / width, j % width);
            for i in 0..k {
                let s = F::load(self.stored[(p * k + i) * width + c]);
                w[i * n + j] = s * self.scales[(p * blocks + i / F::BLOCK) * width + c];
            }
        }
        w
    }

    fn product(&self, x: &[f32], rows: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let (k, width) = (self.k, self.width);
        let (panel_len, scales_len) = (k * width, k.div_ceil(F::BLOCK) * width);
        let shape = Shape {
            k,
            n: self.n,
            width,
        };
        by_panels(x, rows, shape, bias, f32_tiles(x, k), |tiles, p, out| {
            on_widest::<F>(NarrowPanel {
                tiles,
                k,
                stored: &self.stored[p * panel_len..][..panel_len],
                scales: &self.scales[p * scales_len..][..scales_len],
                out,
            })
        })
    }
}

/// Every tile of rows against one narrow panel; results `[rows][width]`.
struct NarrowPanel<'a, T> {
    tiles: &'a [f32],
    k: usize,
    stored: &'a [T],
    scales: &'a [f32],
    out: &'a mut [f32],
}

impl<T> NarrowPanel<'_, T> {
    /// The product with `widen` turning a panel row into its two registers of f32.
    #[inline(always)]
    fn run<S: Simd>(self, simd: S, block: usize, widen: impl Fn(&[T]) -> [S::f32s; 2]) {
        let (k, tile) = (self.k, tile_rows::<S>());
        let width = 2 * S::F32_LANES;
        let scales = S::as_simd_f32s(self.scales).0;
        for (rows, out) in self
            .tiles
            .chunks(tile * k)
            .zip(self.out.chunks_mut(tile * width))
        {
            with_tile_rows!(rows.len() / k, R => {
                narrow_tile::<S, T, R>(simd, &widen, block, rows, self.stored, scales, out, k)
            });
        }
    }
}

/// `R` rows against a narrow panel: per block of rows of `k`, the sums of `x · w` in registers,
/// then scaled into the outputs.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn narrow_tile<S: Simd, T, const R: usize>(
    simd: S,
    widen: &impl Fn(&[T]) -> [S::f32s; 2],
    block: usize,
    rows: &[f32],
    stored: &[T],
    scales: &[S::f32s],
    out: &mut [f32],
    k: usize,
) {
    let width = 2 * S::F32_LANES;
    let zero = simd.splat_f32s(0.0);
    let mut sums = [[zero; 2]; R];
    let (rows, _) = rows.as_chunks::<R>();
    for (b, scale) in scales.chunks_exact(2).enumerate() {
        let first = b * block;
        let depth = block.min(k - first);
        let mut partial = [[zero; 2]; R];
        for (x, w) in rows[first..first + depth]
            .iter()
            .zip(stored[first * width..(first + depth) * width].chunks_exact(width))
        {
            let w = widen(w);
            for r in 0..R {
                let x = simd.splat_f32s(x[r]);
                partial[r][0] = simd.mul_add_e_f32s(x, w[0], partial[r][0]);
                partial[r][1] = simd.mul_add_e_f32s(x, w[1], partial[r][1]);
            }
        }
        for r in 0..R {
            sums[r][0] = simd.mul_add_e_f32s(partial[r][0], scale[0], sums[r][0]);
            sums[r][1] = simd.mul_add_e_f32s(partial[r][1], scale[1], sums[r][1]);
        }
    }
    let out = &mut S::as_mut_simd_f32s(out).0[..2 * R];
    for (r, sums) in sums.iter().enumerate() {
        out[2 * r..][..2].copy_from_slice(sums);
    }
}

/// Runs `panel` with the widest instructions this CPU has: widening has no portable form in
/// `pulp`, so each instruction set gets its own.
fn on_widest<F: Format>(panel: NarrowPanel<'_, F::Stored>) {
    #[cfg(target_arch = "x86_64")]
    {
        use pulp::x86::{V3, V4};
        if let Some(simd) = V4::try_new() {
            let widen = |s: &[F::Stored]| F::widen_v4(simd, s.try_into().expect("16 weights"));
            return simd.vectorize(
                #[inline(always)]
                || panel.run(simd, F::BLOCK, |s| [widen(&s[..16]), widen(&s[16..32])]),
            );
        }
        if let Some(simd) = V3::try_new() {
            let widen = |s: &[F::Stored]| F::widen_v3(simd, s.try_into().expect("8 weights"));
            return simd.vectorize(
                #[inline(always)]
                || panel.run(simd, F::BLOCK, |s| [widen(&s[..8]), widen(&s[8..16])]),
            );
        }
    }
    panel.run(pulp::Scalar::new(), F::BLOCK, |s| {
        [F::load(s[0]), F::load(s[1])]
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packed::tests::values;
    use crate::packed::Layout;

    /// The product equals that of the weights the format stands for, and is within `tolerance`
    /// (relative, over all outputs) of the f32 product; a row's bits do not depend on its batch.
    fn check<F: Format>(tolerance: f64) {
        for (rows, k, n) in [(1, 7, 3), (3, 64, 1001), (13, 300, 400), (32, 768, 130)] {
            let (x, w) = (values(rows * k, 4), values(k * n, 5));
            let q = PackedNarrow::<F>::new(Matrix::new(&w, k, n, Layout::InOut)).unwrap();
            let stood_for = q.to_in_out();
            let got = q.product(&x, rows, None);
            let (mut err, mut norm) = (0f64, 0f64);
            for r in 0..rows {
                for j in 0..n {
                    let exact: f64 = (0..k).map(|i| (x[r * k + i] * w[i * n + j]) as f64).sum();
                    let of_stood_for: f64 = (0..k)
                        .map(|i| (x[r * k + i] * stood_for[i * n + j]) as f64)
                        .sum();
                    let g = got[r * n + j] as f64;
                    assert!(
                        (g - of_stood_for).abs() < 1e-3,
                        "{rows}x{k}x{n} at ({r}, {j})"
                    );
                    err += (g - exact).powi(2);
                    norm += exact.powi(2);
                }
            }
            let relative = (err / norm).sqrt();
            assert!(
                relative < tolerance,
                "{rows}x{k}x{n}: relative error {relative}"
            );
        }

        let (k, n) = (256, 515);
        let w =
            PackedNarrow::<F>::new(Matrix::new(&values(k * n, 2), k, n, Layout::InOut)).unwrap();
        let x = values(29 * k, 1);
        let all = w.product(&x, 29, None);
        for r in 0..29 {
            let alone = w.product(&x[r * k..(r + 1) * k], 1, None);
            assert_eq!(alone, all[r * n..(r + 1) * n], "row {r}");
        }
    }

    #[test]
    fn q8_0_products_are_those_of_the_quantized_weights() {
        check::<Q8_0>(1e-2);
    }

    #[test]
    fn bf16_products_are_those_of_the_rounded_weights() {
        check::<Bf16>(1e-2);
    }

    #[test]
    fn f16_products_are_those_of_the_rounded_weights() {
        check::<F16>(1e-3);
    }

    /// Every finite 16-bit pattern widens in registers to the value `half` gives it, on every
    /// instruction set this CPU has (F16's AVX2 path is arithmetic, not an instruction).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn widening_in_registers_equals_the_scalar_conversion() {
        fn each<F: Format<Stored = u16>>() {
            let finite: Vec<u16> = (0..=u16::MAX).filter(|&b| F::load(b).is_finite()).collect();
            for chunk in finite.chunks_exact(16) {
                let want: Vec<u32> = chunk.iter().map(|&b| F::load(b).to_bits()).collect();
                if let Some(simd) = pulp::x86::V3::try_new() {
                    for (half, want) in chunk.chunks_exact(8).zip(want.chunks_exact(8)) {
                        let got: [f32; 8] = pulp::cast(F::widen_v3(simd, half.try_into().unwrap()));
                        assert_eq!(got.map(f32::to_bits), want[..], "{half:x?}");
                    }
                }
                if let Some(simd) = pulp::x86::V4::try_new() {
                    let got: [f32; 16] = pulp::cast(F::widen_v4(simd, chunk.try_into().unwrap()));
                    assert_eq!(got.map(f32::to_bits), want[..], "{chunk:x?}");
                }
            }
        }
        each::<Bf16>();
        each::<F16>();
    }

    #[test]
    fn f16_refuses_weights_beyond_its_range() {
        let w = [1.0, -7.0e4];
        let err = PackedNarrow::<F16>::new(Matrix::new(&w, 2, 1, Layout::InOut))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("-70000"), "{err}");
        assert!(PackedNarrow::<Bf16>::new(Matrix::new(&w, 2, 1, Layout::InOut)).is_ok());
    }
}
