//! Narrow weights multiplied by narrow activations, on AVX-512's dot-product instructions: where
//! the CPU has them, how `--dtype q8_0` and `--dtype bf16` run.
//!
//! Widening each weight to f32 ([`crate::narrow`]) keeps the activations exact but does f32
//! arithmetic, one multiply-add per weight and row: once a batch makes the product bound by
//! arithmetic rather than memory (decode at 16 streams and more, prefill), narrow weights are no
//! faster than f32. The dot-product instructions multiply narrow values in groups:
//!
//! - [`DotQ8`]: VNNI's `vpdpbusd` adds four products of 8-bit integers into each 32-bit lane.
//!   Each row's activations are quantized per block of 32 as q8_0 weights are (the block's
//!   largest magnitude / 127 is its scale), as llama.cpp does; the integer sums of a block are
//!   scaled by both scales into f32 at the block's end. The instruction wants one side unsigned:
//!   the weights are stored plus 128, and each row's block sum starts from minus 128 × the sum of
//!   its quantized activations, which takes that back (a number per row and block, where an
//!   offset on the activations would have needed one per output and block, read with the
//!   weights).
//! - [`DotBf16`]: AVX512-BF16's `vdpbf16ps` adds two products of bf16 values into each f32 lane.
//!   Each activation is rounded to the nearest bf16.
//!
//! Both round the activations, which costs accuracy the widening kernels do not lose (the README
//! states the measured difference). The panels are those of [`crate::packed`], two registers of
//! 16 outputs wide, with the four (or two) weights one lane multiplies side by side:
//! `[panel][k / 4][32][4]` bytes, `[panel][k / 2][32][2]` bf16. Every output is one fixed chain of
//! instructions over `k`, so a row's result does not depend on its batch.

use std::arch::x86_64::*;

use rayon::prelude::*;

use crate::narrow::{Format, Q8_0};
use crate::packed::{by_panels, prefetch_ahead, HostMatrix, Matrix, Shape, Tiles};
use pulp::bytemuck::{cast_slice, cast_slice_mut};

/// Outputs per panel: two registers of 16 lanes.
const WIDTH: usize = 32;
/// Weights of one output, and activations of one row, per q8_0 scale.
const BLOCK: usize = 32;
/// Bytes one `vpdpbusd` lane multiplies.
const QUAD: usize = 4;
/// Rows per q8_0 tile: 12 integer sums and 12 float sums leave room for the weights.
const Q8_TILE: usize = 6;
/// Rows per bf16 tile, as the f32 product's.
const BF16_TILE: usize = 12;

/// Whether this CPU has what [`DotQ8`] runs on.
pub fn has_vnni() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
}

/// Whether this CPU has what [`DotBf16`] runs on.
pub fn has_bf16_dot() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
}

/// q8_0 weights for `vpdpbusd`.
pub struct DotQ8 {
    k: usize,
    n: usize,
    /// `k` rounded up to whole blocks; the padding weighs zero.
    depth: usize,
    /// `[panel][depth / 4][WIDTH][4]`, each quantized weight plus 128.
    weights: Vec<u8>,
    /// `[panel][depth / BLOCK][WIDTH]`.
    scales: Vec<f32>,
}

impl DotQ8 {
    /// Quantizes `w` as [`Q8_0`] does; `None` where the CPU lacks the instructions
    /// ([`has_vnni`]).
    pub fn new(w: Matrix) -> Option<Self> {
        if !has_vnni() {
            return None;
        }
        let (k, n) = (w.inputs(), w.outputs());
        let depth = k.next_multiple_of(BLOCK);
        let (panels, blocks) = (n.div_ceil(WIDTH), depth / BLOCK);
        let mut weights = vec![128u8; panels * depth * WIDTH];
        let mut scales = vec![0f32; panels * blocks * WIDTH];
        weights
            .par_chunks_mut(depth * WIDTH)
            .zip(scales.par_chunks_mut(blocks * WIDTH))
            .enumerate()
            .for_each(|(p, (weights, scales))| {
                for c in 0..WIDTH.min(n - p * WIDTH) {
                    let j = p * WIDTH + c;
                    for b in 0..blocks {
                        let inputs = b * BLOCK..((b + 1) * BLOCK).min(k);
                        let max = inputs
                            .clone()
                            .map(|i| w.at(i, j).abs())
                            .fold(0f32, f32::max);
                        let scale = Q8_0::scale(max);
                        for i in inputs {
                            let q = Q8_0::store(w.at(i, j), scale);
                            weights[((i / QUAD) * WIDTH + c) * QUAD + i % QUAD] = unsigned(q);
                        }
                        scales[b * WIDTH + c] = scale;
                    }
                }
            });
        Some(DotQ8 {
            k,
            n,
            depth,
            weights,
            scales,
        })
    }
}

impl HostMatrix for DotQ8 {
    fn inputs(&self) -> usize {
        self.k
    }

    fn outputs(&self) -> usize {
        self.n
    }

    fn to_in_out(&self) -> Vec<f32> {
        let (k, n, depth, blocks) = (self.k, self.n, self.depth, self.depth / BLOCK);
        let mut w = vec![0f32; k * n];
        for j in 0..n {
            let (p, c) = (j / WIDTH, j % WIDTH);
            for i in 0..k {
                let q =
                    self.weights[p * depth * WIDTH + ((i / QUAD) * WIDTH + c) * QUAD + i % QUAD];
                w[i * n + j] =
                    (q as i32 - 128) as f32 * self.scales[(p * blocks + i / BLOCK) * WIDTH + c];
            }
        }
        w
    }

    fn product(&self, x: &[f32], rows: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let (k, depth) = (self.k, self.depth);
        let blocks = depth / BLOCK;
        let quads_len = rows * depth / QUAD;
        let tiles = Tiles {
            len: quads_len + 2 * rows * blocks,
            pack: |out: &mut [f32]| {
                let (quads, rest) = out.split_at_mut(quads_len);
                let (scales, starts) = rest.split_at_mut(rows * blocks);
                let (quads, starts) = (cast_slice_mut(quads), cast_slice_mut(starts));
                // SAFETY: a `DotQ8` exists only where `has_vnni` (which includes F and BW) said yes.
                unsafe { quantize_rows(x, k, depth, quads, scales, starts) };
            },
        };
        let shape = Shape {
            k,
            n: self.n,
            width: WIDTH,
        };
        let (panel_len, scales_len) = (depth * WIDTH, blocks * WIDTH);
        by_panels(x, rows, shape, bias, tiles, |tiles, p, out| {
            let (quads, rest) = tiles.split_at(quads_len);
            let (row_scales, starts) = rest.split_at(rows * blocks);
            let panel = Q8Panel {
                quads: cast_slice(quads),
                row_scales,
                starts: cast_slice(starts),
                weights: &self.weights[p * panel_len..][..panel_len],
                scales: &self.scales[p * scales_len..][..scales_len],
            };
            // SAFETY: a `DotQ8` exists only where `has_vnni` said yes, and
            // `Q8Panel::run` checks every length it reads against the others.
            unsafe { panel.run(out) }
        })
    }
}

/// A quantized weight as [`DotQ8`] stores it.
fn unsigned(q: i8) -> u8 {
    (q as i32 + 128) as u8
}

/// `x`'s rows of `k`, quantized per block of [`BLOCK`] into bytes, four to a word, in tiles of
/// [`Q8_TILE`] rows: `quads` `[tile][depth / 4][tile rows]`; `scales` and `starts` (where the
/// block's integer sum starts: minus 128 × the sum of its quantized values) `[tile][blocks][tile
/// rows]`. Inputs past `k` are zero. Activations round half to even (the instruction's rounding),
/// weights half away from zero (GGUF's).
///
/// # Safety
/// The CPU has AVX-512 F and BW.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_rows(
    x: &[f32],
    k: usize,
    depth: usize,
    quads: &mut [u32],
    scales: &mut [f32],
    starts: &mut [i32],
) {
    let (words, blocks) = (depth / QUAD, depth / BLOCK);
    let tiles = x
        .chunks(Q8_TILE * k)
        .zip(quads.chunks_mut(Q8_TILE * words))
        .zip(scales.chunks_mut(Q8_TILE * blocks))
        .zip(starts.chunks_mut(Q8_TILE * blocks));
    for (((rows, quads), scales), starts) in tiles {
        let r_count = rows.len() / k;
        for (r, row) in rows.chunks_exact(k).enumerate() {
            for b in 0..blocks {
                let [low, high] = load_block(&row[(b * BLOCK).min(k)..((b + 1) * BLOCK).min(k)]);
                let (low_abs, high_abs) = (_mm512_abs_ps(low), _mm512_abs_ps(high));
                let infinity = _mm512_set1_ps(f32::INFINITY);
                let not_finite = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(low_abs, infinity)
                    | _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(high_abs, infinity);
                // A block holding an infinity or a NaN has a NaN scale and values of zero, so its
                // outputs are NaN, not finite, as the f32 product's would not be.
                let (low, high, scale) = if not_finite != 0 {
                    let zero = _mm512_setzero_ps();
                    (zero, zero, f32::NAN)
                } else {
                    let max = _mm512_reduce_max_ps(_mm512_max_ps(low_abs, high_abs));
                    (low, high, Q8_0::scale(max))
                };
                let inverse = _mm512_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
                let low = _mm512_cvtps_epi32(_mm512_mul_ps(low, inverse));
                let high = _mm512_cvtps_epi32(_mm512_mul_ps(high, inverse));
                scales[b * r_count + r] = scale;
                starts[b * r_count + r] =
                    -128 * _mm512_reduce_add_epi32(_mm512_add_epi32(low, high));
                let mut words = [0u32; BLOCK / QUAD];
                _mm_storeu_si128(words.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(low));
                _mm_storeu_si128(words.as_mut_ptr().add(4).cast(), _mm512_cvtepi32_epi8(high));
                for (q, word) in words.into_iter().enumerate() {
                    quads[(b * BLOCK / QUAD + q) * r_count + r] = word;
                }
            }
        }
    }
}

/// Up to 32 values in two registers, zeros after them.
///
/// # Safety
/// AVX-512 F.
#[inline(always)]
unsafe fn load_block(values: &[f32]) -> [__m512; 2] {
    let mask = |from: usize| -> __mmask16 {
        let len = values.len().saturating_sub(from).min(16);
        ((1u32 << len) - 1) as __mmask16
    };
    let at = values.as_ptr();
    // Masked-off lanes are neither read nor faulted on.
    [
        _mm512_maskz_loadu_ps(mask(0), at),
        _mm512_maskz_loadu_ps(mask(16), at.wrapping_add(16)),
    ]
}

/// Every tile of rows against one q8_0 panel.
struct Q8Panel<'a> {
    quads: &'a [u32],
    row_scales: &'a [f32],
    starts: &'a [i32],
    weights: &'a [u8],
    scales: &'a [f32],
}

impl Q8Panel<'_> {
    /// Results `[rows][WIDTH]` into `out`.
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn run(self, out: &mut [f32]) {
        let blocks = self.scales.len() / WIDTH;
        let words = blocks * BLOCK / QUAD;
        let rows = out.len() / WIDTH;
        assert!(
            self.quads.len() == rows * words
                && self.row_scales.len() == rows * blocks
                && self.starts.len() == rows * blocks
                && self.weights.len() == words * WIDTH * QUAD,
            "a q8_0 panel's parts disagree, this is a bug"
        );
        let tiles = self
            .quads
            .chunks(Q8_TILE * words)
            .zip(self.row_scales.chunks(Q8_TILE * blocks))
            .zip(self.starts.chunks(Q8_TILE * blocks))
            .zip(out.chunks_mut(Q8_TILE * WIDTH));
        for (((quads, row_scales), starts), out) in tiles {
            let rows = RowTile {
                quads,
                scales: row_scales,
                starts,
            };
            macro_rules! tile {
                ($r:literal) => {
                    q8_tile::<$r>(rows, &self, out)
                };
            }
            match quads.len() / words {
                1 => tile!(1),
                2 => tile!(2),
                3 => tile!(3),
                4 => tile!(4),
                5 => tile!(5),
                6 => tile!(6),
                r => unreachable!("a tile of {r} rows, this is a bug"),
            }
        }
    }
}

/// One tile of quantized rows (see [`quantize_rows`]).
#[derive(Clone, Copy)]
struct RowTile<'a> {
    quads: &'a [u32],
    scales: &'a [f32],
    starts: &'a [i32],
}

/// `R` rows against a q8_0 panel. Per block: the integer sums from the rows' starts, eight
/// `vpdpbusd` per register, then `sum += float(integer sum) × (weight scale × row scale)`.
///
/// # Safety
/// AVX-512 F, BW and VNNI; the lengths [`Q8Panel::run`] checked.
#[inline(always)]
unsafe fn q8_tile<const R: usize>(rows: RowTile, panel: &Q8Panel, out: &mut [f32]) {
    let words_per_block = BLOCK / QUAD;
    let mut sums = [[_mm512_setzero_ps(); 2]; R];
    for b in 0..panel.scales.len() / WIDTH {
        let mut acc = [[_mm512_setzero_si512(); 2]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            *acc = [_mm512_set1_epi32(*rows.starts.get_unchecked(b * R + r)); 2];
        }
        for q in b * words_per_block..(b + 1) * words_per_block {
            let w = panel.weights.as_ptr().add(q * WIDTH * QUAD);
            prefetch_ahead(w.cast(), 128);
            let w = [
                _mm512_loadu_si512(w.cast()),
                _mm512_loadu_si512(w.add(64).cast()),
            ];
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_epi32(*rows.quads.get_unchecked(q * R + r) as i32);
                acc[0] = _mm512_dpbusd_epi32(acc[0], w[0], x);
                acc[1] = _mm512_dpbusd_epi32(acc[1], w[1], x);
            }
        }
        let scales = panel.scales.as_ptr().add(b * WIDTH);
        let scales = [_mm512_loadu_ps(scales), _mm512_loadu_ps(scales.add(16))];
        for (r, (sums, acc)) in sums.iter_mut().zip(&acc).enumerate() {
            let x_scale = _mm512_set1_ps(*rows.scales.get_unchecked(b * R + r));
            for c in 0..2 {
                let scale = _mm512_mul_ps(scales[c], x_scale);
                sums[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[c]), scale, sums[c]);
            }
        }
    }
    for (r, sums) in sums.iter().enumerate() {
        _mm512_storeu_ps(out.as_mut_ptr().add(r * WIDTH), sums[0]);
        _mm512_storeu_ps(out.as_mut_ptr().add(r * WIDTH + 16), sums[1]);
    }
}

/// bf16 weights for `vdpbf16ps`.
pub struct DotBf16 {
    k: usize,
    n: usize,
    /// `k` rounded up to even; the padding weighs zero.
    depth: usize,
    /// `[panel][depth / 2][WIDTH][2]`, bf16 bits.
    weights: Vec<u16>,
}

impl DotBf16 {
    /// Rounds `w` to bf16; `None` where the CPU lacks the instructions ([`has_bf16_dot`]).
    pub fn new(w: Matrix) -> Option<Self> {
        if !has_bf16_dot() {
            return None;
        }
        let (k, n) = (w.inputs(), w.outputs());
        let depth = k.next_multiple_of(2);
        let mut weights = vec![0u16; n.div_ceil(WIDTH) * depth * WIDTH];
        weights
            .par_chunks_mut(depth * WIDTH)
            .enumerate()
            .for_each(|(p, weights)| {
                for c in 0..WIDTH.min(n - p * WIDTH) {
                    for i in 0..k {
                        let v = half::bf16::from_f32(w.at(i, p * WIDTH + c)).to_bits();
                        weights[((i / 2) * WIDTH + c) * 2 + i % 2] = v;
                    }
                }
            });
        Some(DotBf16 {
            k,
            n,
            depth,
            weights,
        })
    }
}

impl HostMatrix for DotBf16 {
    fn inputs(&self) -> usize {
        self.k
    }

    fn outputs(&self) -> usize {
        self.n
    }

    fn to_in_out(&self) -> Vec<f32> {
        let (k, n, depth) = (self.k, self.n, self.depth);
        let mut w = vec![0f32; k * n];
        for j in 0..n {
            let (p, c) = (j / WIDTH, j % WIDTH);
            for i in 0..k {
                let bits = self.weights[p * depth * WIDTH + ((i / 2) * WIDTH + c) * 2 + i % 2];
                w[i * n + j] = half::bf16::from_bits(bits).to_f32();
            }
        }
        w
    }

    fn product(&self, x: &[f32], rows: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let (k, depth) = (self.k, self.depth);
        let tiles = Tiles {
            len: rows * depth / 2,
            pack: |out: &mut [f32]| {
                // SAFETY: a `DotBf16` exists only where `has_bf16_dot` said yes.
                unsafe { round_rows(x, k, depth, cast_slice_mut(out)) };
            },
        };
        let shape = Shape {
            k,
            n: self.n,
            width: WIDTH,
        };
        let panel_len = depth * WIDTH;
        by_panels(x, rows, shape, bias, tiles, |tiles, p, out| {
            let weights = &self.weights[p * panel_len..][..panel_len];
            // SAFETY: a `DotBf16` exists only where `has_bf16_dot` said yes, and
            // `bf16_panel` checks the lengths it reads.
            unsafe { bf16_panel(pulp::bytemuck::cast_slice(tiles), weights, out) }
        })
    }
}

/// `x`'s rows of `k` rounded to bf16, two to a word, in tiles of [`BF16_TILE`] rows: `[tile][depth
/// / 2][tile rows]`. An input past `k` is zero.
///
/// # Safety
/// The CPU has AVX-512 F and BF16.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn round_rows(x: &[f32], k: usize, depth: usize, pairs: &mut [u32]) {
    let words = depth / 2;
    for (rows, pairs) in x
        .chunks(BF16_TILE * k)
        .zip(pairs.chunks_mut(BF16_TILE * words))
    {
        let r_count = rows.len() / k;
        for (r, row) in rows.chunks_exact(k).enumerate() {
            for (c, values) in row.chunks(32).enumerate() {
                let [low, high] = load_block(values);
                let rounded =
                    std::mem::transmute::<__m512bh, [u32; 16]>(_mm512_cvtne2ps_pbh(high, low));
                for (q, word) in rounded.into_iter().take(words - 16 * c).enumerate() {
                    pairs[(16 * c + q) * r_count + r] = word;
                }
            }
        }
    }
}

/// Every tile of rows `pairs` (see [`round_rows`]) against one bf16 panel; results `[rows][WIDTH]`.
///
/// # Safety
/// The CPU has AVX-512 F and BF16.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn bf16_panel(pairs: &[u32], weights: &[u16], out: &mut [f32]) {
    let words = weights.len() / (2 * WIDTH);
    let rows = out.len() / WIDTH;
    assert!(
        pairs.len() == rows * words && weights.len() == words * 2 * WIDTH,
        "a bf16 panel's parts disagree, this is a bug"
    );
    for (pairs, out) in pairs
        .chunks(BF16_TILE * words)
        .zip(out.chunks_mut(BF16_TILE * WIDTH))
    {
        macro_rules! tile {
            ($r:literal) => {
                bf16_tile::<$r>(pairs, weights, out)
            };
        }
        match pairs.len() / words {
            1 => tile!(1),
            2 => tile!(2),
            3 => tile!(3),
            4 => tile!(4),
            5 => tile!(5),
            6 => tile!(6),
            7 => tile!(7),
            8 => tile!(8),
            9 => tile!(9),
            10 => tile!(10),
            11 => tile!(11),
            12 => tile!(12),
            r => unreachable!("a tile of {r} rows, this is a bug"),
        }
    }
}

/// 32 bf16 bit patterns as the instruction's operand type.
#[inline(always)]
fn as_bf16(v: __m512i) -> __m512bh {
    // SAFETY: both are 64 bytes of plain bits.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
}

/// `R` rows against a bf16 panel: one `vdpbf16ps` per register and pair of inputs.
///
/// # Safety
/// AVX-512 F and BF16; the lengths [`bf16_panel`] checked.
#[inline(always)]
unsafe fn bf16_tile<const R: usize>(pairs: &[u32], weights: &[u16], out: &mut [f32]) {
    let mut sums = [[_mm512_setzero_ps(); 2]; R];
    for q in 0..weights.len() / (2 * WIDTH) {
        let w = weights.as_ptr().add(q * 2 * WIDTH);
        prefetch_ahead(w.cast(), 128);
        let w: [__m512bh; 2] = [
            as_bf16(_mm512_loadu_si512(w.cast())),
            as_bf16(_mm512_loadu_si512(w.add(WIDTH).cast())),
        ];
        for (r, sums) in sums.iter_mut().enumerate() {
            let x = as_bf16(_mm512_set1_epi32(*pairs.get_unchecked(q * R + r) as i32));
            sums[0] = _mm512_dpbf16_ps(sums[0], x, w[0]);
            sums[1] = _mm512_dpbf16_ps(sums[1], x, w[1]);
        }
    }
    for (r, sums) in sums.iter().enumerate() {
        _mm512_storeu_ps(out.as_mut_ptr().add(r * WIDTH), sums[0]);
        _mm512_storeu_ps(out.as_mut_ptr().add(r * WIDTH + 16), sums[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packed::tests::values;
    use crate::packed::Layout;

    const SHAPES: [(usize, usize, usize); 5] = [
        (1, 7, 3),
        (3, 64, 1001),
        (13, 300, 400),
        (32, 768, 130),
        (7, 62, 33),
    ];

    /// What [`DotQ8`] computes, in scalar code: the same quantization and the same operations in
    /// the same order, so the same bits.
    fn q8_by_hand(x: &[f32], k: usize, w: &[f32], n: usize) -> Vec<f32> {
        let rows = x.len() / k;
        let mut out = vec![0f32; rows * n];
        for r in 0..rows {
            for j in 0..n {
                let mut sum = 0f32;
                for b in 0..k.div_ceil(BLOCK) {
                    let inputs = b * BLOCK..((b + 1) * BLOCK).min(k);
                    let quantize = |v: &mut dyn Iterator<Item = f32>, weights: bool| {
                        let v: Vec<f32> = v.collect();
                        let scale = Q8_0::scale(v.iter().fold(0f32, |m, v| m.max(v.abs())));
                        let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                        let q: Vec<i32> = v
                            .iter()
                            .map(|&v| match weights {
                                true => Q8_0::store(v, scale) as i32,
                                false => (v * inverse).round_ties_even() as i32,
                            })
                            .collect();
                        (scale, q)
                    };
                    let (sx, qx) = quantize(&mut inputs.clone().map(|i| x[r * k + i]), false);
                    let (sw, qw) = quantize(&mut inputs.clone().map(|i| w[i * n + j]), true);
                    let dot: i32 = qx.iter().zip(&qw).map(|(a, b)| a * b).sum();
                    sum = (dot as f32).mul_add(sw * sx, sum);
                }
                out[r * n + j] = sum;
            }
        }
        out
    }

    #[test]
    fn q8_0_dot_products_are_those_of_the_quantized_rows_and_weights() {
        if !has_vnni() {
            eprintln!("skipped: this CPU has no AVX512-VNNI");
            return;
        }
        for (rows, k, n) in SHAPES {
            let (x, w) = (values(rows * k, 4), values(k * n, 5));
            let q = DotQ8::new(Matrix::new(&w, k, n, Layout::InOut)).unwrap();
            let got = q.product(&x, rows, None);
            assert_eq!(got, q8_by_hand(&x, k, &w, n), "{rows}x{k}x{n}");
            assert_eq!(q.to_in_out().len(), k * n);
        }
        invariant_in_the_batch(|w, k, n| {
            Box::new(DotQ8::new(Matrix::new(w, k, n, Layout::InOut)).unwrap())
        });
    }

    /// An infinity or a NaN among a row's activations makes that row's outputs infinite or NaN,
    /// as in f32, and leaves the other rows alone.
    #[test]
    fn non_finite_activations_give_nan_not_a_panic() {
        let (k, n) = (64, 40);
        let w = values(k * n, 5);
        let mut x = values(3 * k, 4);
        x[k + 7] = f32::INFINITY;
        x[2 * k + 40] = f32::NAN;
        let matrices: Vec<Box<dyn HostMatrix>> = [
            DotQ8::new(Matrix::new(&w, k, n, Layout::InOut)).map(|m| Box::new(m) as _),
            DotBf16::new(Matrix::new(&w, k, n, Layout::InOut)).map(|m| Box::new(m) as _),
        ]
        .into_iter()
        .flatten()
        .collect();
        for m in matrices {
            let out = m.product(&x, 3, None);
            assert!(out[..n].iter().all(|v| v.is_finite()));
            assert!(out[n..].iter().all(|v| !v.is_finite()), "{:?}", &out[n..]);
        }
    }

    #[test]
    fn bf16_dot_products_are_those_of_the_rounded_rows_and_weights() {
        if !has_bf16_dot() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        let round = |v: f32| half::bf16::from_f32(v).to_f32();
        for (rows, k, n) in SHAPES {
            let (x, w) = (values(rows * k, 4), values(k * n, 5));
            let m = DotBf16::new(Matrix::new(&w, k, n, Layout::InOut)).unwrap();
            assert_eq!(
                m.to_in_out(),
                w.iter().map(|&v| round(v)).collect::<Vec<_>>()
            );
            let got = m.product(&x, rows, Some(&values(n, 6)));
            for r in 0..rows {
                for j in 0..n {
                    // Products of bf16 values are exact in f32; only the sums round.
                    let want: f64 = values(n, 6)[j] as f64
                        + (0..k)
                            .map(|i| round(x[r * k + i]) as f64 * round(w[i * n + j]) as f64)
                            .sum::<f64>();
                    let g = got[r * n + j] as f64;
                    assert!(
                        (g - want).abs() < 1e-4 * (k as f64),
                        "{rows}x{k}x{n} at ({r}, {j}): {g} vs {want}"
                    );
                }
            }
        }
        invariant_in_the_batch(|w, k, n| {
            Box::new(DotBf16::new(Matrix::new(w, k, n, Layout::InOut)).unwrap())
        });
    }

    fn invariant_in_the_batch(build: impl Fn(&[f32], usize, usize) -> Box<dyn HostMatrix>) {
        let (k, n) = (256, 515);
        let w = build(&values(k * n, 2), k, n);
        let x = values(29 * k, 1);
        let all = w.product(&x, 29, None);
        for r in 0..29 {
            let alone = w.product(&x[r * k..(r + 1) * k], 1, None);
            assert_eq!(alone, all[r * n..(r + 1) * n], "row {r}");
        }
    }
}
