//! One head's causal attention on the CPU, flash-attention style ("FlashAttention", Dao et al.,
//! 2022; llama.cpp's tiled CPU kernel is the same idea): a tile of queries meets the keys one
//! block of [`KEY_BLOCK`] positions at a time, and a running maximum and sum per query (the
//! online softmax) rescale what the earlier blocks added, so nothing of size queries × keys is
//! ever held and both products run on the register tiles of [`crate::packed`].
//!
//! Keys are kept transposed in their blocks, `[block][head_dim][KEY_BLOCK]`, so the scores of a
//! block are a product with the queries like any linear layer's; values stay `[position]
//! [head_dim]`, which is the layout the second product reads. Every query's arithmetic (each
//! score's chain of multiply-adds, the block order, the rescaling) is the same whatever tile it
//! falls in and however many queries share the call, so a position gets the same bits in a
//! prefill chunk, alone in a decode step, or in a re-prefill after a failover.

use pulp::{Simd, WithSimd};

use crate::host::exp;
use crate::packed::{product_tile, with_tile_rows};

/// Positions per key block.
pub(crate) const KEY_BLOCK: usize = 16;

/// An element of a cache's keys and values: f32, or f16 widened a block at a time.
pub(crate) trait Element: Copy {
    /// Whether it needs room to be widened into.
    const WIDENS: bool;
    /// `stored` as f32: itself, or widened into `scratch`.
    fn widened<'a>(stored: &'a [Self], scratch: &'a mut [f32]) -> &'a [f32];
}

impl Element for f32 {
    const WIDENS: bool = false;
    #[inline(always)]
    fn widened<'a>(stored: &'a [f32], _: &'a mut [f32]) -> &'a [f32] {
        stored
    }
}

/// f16 bits, as [`crate::narrow::F16`] stores them.
impl Element for u16 {
    const WIDENS: bool = true;
    #[inline(always)]
    fn widened<'a>(stored: &'a [u16], scratch: &'a mut [f32]) -> &'a [f32] {
        crate::narrow::widen_f16(stored, scratch);
        &scratch[..stored.len()]
    }
}

/// One head's attention for the `n` queries `[n][head_dim]` at positions `past..past + n`, over
/// key blocks `keys[block]` `[head_dim][KEY_BLOCK]` and value blocks `values[block]`
/// `[KEY_BLOCK][head_dim]` that cover at least `past + n` positions: `[n][head_dim]`. The blocks
/// may lie anywhere (a cache's blocks are shared between forks).
pub(crate) fn attend<T: Element>(
    queries: &[f32],
    keys: &[&[T]],
    values: &[&[T]],
    past: usize,
    head_dim: usize,
    scale: f32,
) -> Vec<f32> {
    pulp::Arch::new().dispatch(Head {
        queries,
        keys,
        values,
        past,
        head_dim,
        scale,
    })
}

struct Head<'a, T> {
    queries: &'a [f32],
    keys: &'a [&'a [T]],
    values: &'a [&'a [T]],
    past: usize,
    head_dim: usize,
    scale: f32,
}

/// Calls `$body` with the const `$c` equal to `$regs` (1, 2, 4, 8 or 16), or `$other` for any
/// other count.
macro_rules! with_registers {
    ($regs:expr, $c:ident => $body:expr, $other:expr) => {
        match $regs {
            1 => {
                const $c: usize = 1;
                $body
            }
            2 => {
                const $c: usize = 2;
                $body
            }
            4 => {
                const $c: usize = 4;
                $body
            }
            8 => {
                const $c: usize = 8;
                $body
            }
            16 => {
                const $c: usize = 16;
                $body
            }
            _ => $other,
        }
    };
}

impl<T: Element> WithSimd for Head<'_, T> {
    /// The heads' outputs, `[n][head_dim]`.
    type Output = Vec<f32>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Vec<f32> {
        let hd = self.head_dim;
        let n = self.queries.len() / hd;
        let lanes = S::F32_LANES;
        // Registers per row of a score tile and of an output tile; the query tile is as many
        // rows as keep both sets of sums in registers.
        let score_regs = KEY_BLOCK / lanes;
        let out_regs = hd.is_multiple_of(lanes).then_some(hd / lanes);
        let budget = 2 * crate::packed::tile_rows::<S>();
        let tile = (budget / score_regs.max(out_regs.unwrap_or(1))).clamp(1, 12);
        let mut out = vec![0f32; n * hd];
        let mut packed_queries = vec![0f32; tile * hd];
        let mut scores = vec![0f32; tile * KEY_BLOCK];
        let mut packed_scores = vec![0f32; KEY_BLOCK * tile];
        let scratch = if T::WIDENS { hd * KEY_BLOCK } else { 0 };
        let (mut key_scratch, mut value_scratch) = (vec![0f32; scratch], vec![0f32; scratch]);
        // A decode step's one query: every score first, several key blocks at a time.
        let decode_scores = (n == 1)
            .then(|| one_query_scores(simd, self.queries, self.keys, self.past / KEY_BLOCK + 1, hd))
            .flatten();
        for (t0, out) in (0..n).step_by(tile).zip(out.chunks_mut(tile * hd)) {
            let r = tile.min(n - t0);
            // `[head_dim][r]`: the values one step of a score's sum needs, side by side.
            let queries = &mut packed_queries[..hd * r];
            for (i, q) in self.queries[t0 * hd..][..r * hd]
                .chunks_exact(hd)
                .enumerate()
            {
                for (d, &v) in q.iter().enumerate() {
                    queries[d * r + i] = v;
                }
            }
            let (mut max, mut sum) = ([f32::NEG_INFINITY; 12], [0f32; 12]);
            let last = self.past + t0 + r - 1;
            for block in 0..=last / KEY_BLOCK {
                let first_key = block * KEY_BLOCK;
                let scores = &mut scores[..r * KEY_BLOCK];
                if let Some(all) = &decode_scores {
                    scores.copy_from_slice(&all[first_key..][..KEY_BLOCK]);
                } else {
                    let keys = T::widened(self.keys[block], &mut key_scratch);
                    let keys = S::as_simd_f32s(keys).0;
                    with_tile_rows!(r, R => with_registers!(score_regs, C => {
                        product_tile::<S, R, C>(simd, queries, keys, scores, false)
                    }, unreachable!("a key block is whole registers, this is a bug")));
                }
                for (i, row) in scores.chunks_exact_mut(KEY_BLOCK).enumerate() {
                    let visible = (self.past + t0 + i + 1).saturating_sub(first_key);
                    let row_max = row[..visible.min(KEY_BLOCK)]
                        .iter()
                        .fold(f32::NEG_INFINITY, |m, &s| m.max(s * self.scale));
                    let new_max = max[i].max(row_max);
                    for s in row.iter_mut() {
                        *s = *s * self.scale - new_max;
                    }
                    let (body, _) = S::as_mut_simd_f32s(row);
                    body.iter_mut().for_each(|v| *v = exp(simd, *v));
                    row[visible.min(KEY_BLOCK)..].fill(0.0);
                    let rescale = (max[i] - new_max).exp();
                    sum[i] = sum[i] * rescale + row.iter().sum::<f32>();
                    max[i] = new_max;
                    if rescale != 1.0 {
                        out[i * hd..][..hd].iter_mut().for_each(|o| *o *= rescale);
                    }
                }
                // `[KEY_BLOCK][r]`, and the outputs gain `p · values`.
                let probs = &mut packed_scores[..KEY_BLOCK * r];
                for (i, row) in scores.chunks_exact(KEY_BLOCK).enumerate() {
                    for (j, &p) in row.iter().enumerate() {
                        probs[j * r + i] = p;
                    }
                }
                let values = T::widened(self.values[block], &mut value_scratch);
                add_weighted_values(simd, probs, values, out, r, out_regs);
            }
            for (i, out) in out.chunks_exact_mut(hd).enumerate() {
                let inv = 1.0 / sum[i];
                out.iter_mut().for_each(|o| *o *= inv);
            }
        }
        out
    }
}

/// Registers of sums [`one_query_scores`] keeps side by side.
const SIDE_BY_SIDE: usize = 4;

/// One query's raw scores `q · k` against the first `blocks` key blocks of `keys`,
/// `[blocks][KEY_BLOCK]`; `None` where a key block is more registers than [`SIDE_BY_SIDE`].
///
/// Each score is the chain of multiply-adds over the head's dimensions that [`product_tile`]
/// computes for a tile of one row, so the bits are a prefill's; but a tile of one row has one
/// register of sums per key block, and each multiply-add waits on the one before. Here the
/// blocks go [`SIDE_BY_SIDE`] registers at a time, their chains interleaved, and the keys of
/// those blocks are widened (from an f16 cache) in one call.
#[inline(always)]
fn one_query_scores<S: Simd, T: Element>(
    simd: S,
    query: &[f32],
    keys: &[&[T]],
    blocks: usize,
    hd: usize,
) -> Option<Vec<f32>> {
    let regs = KEY_BLOCK / S::F32_LANES;
    if regs > SIDE_BY_SIDE {
        return None;
    }
    let group = SIDE_BY_SIDE / regs;
    let block_len = hd * KEY_BLOCK;
    let mut scratch = vec![0f32; if T::WIDENS { group * block_len } else { 0 }];
    let mut scores = vec![0f32; blocks * KEY_BLOCK];
    for (g, out) in scores.chunks_mut(group * KEY_BLOCK).enumerate() {
        let stored = &keys[g * group..][..out.len() / KEY_BLOCK];
        let mut widened = [&[][..]; SIDE_BY_SIDE];
        let mut room = scratch.chunks_mut(block_len.max(1));
        for (w, stored) in widened.iter_mut().zip(stored) {
            *w = S::as_simd_f32s(T::widened(stored, room.next().unwrap_or_default())).0;
        }
        let keys = &widened[..stored.len()];
        let out = S::as_mut_simd_f32s(out).0;
        macro_rules! sums {
            ($g:literal, $c:literal) => {
                side_by_side::<S, $g, $c>(simd, query, keys, hd, out)
            };
        }
        match (out.len() / regs, regs) {
            (1, 1) => sums!(1, 1),
            (2, 1) => sums!(2, 1),
            (3, 1) => sums!(3, 1),
            (4, 1) => sums!(4, 1),
            (1, 2) => sums!(1, 2),
            (2, 2) => sums!(2, 2),
            (1, 4) => sums!(1, 4),
            _ => unreachable!("blocks of whole registers, at most {SIDE_BY_SIDE}, this is a bug"),
        }
    }
    Some(scores)
}

/// `G` key blocks of `C` registers each (`keys[b]` `[hd][C]` registers) against one query: the
/// `G × C` registers of sums into `out`, `[G][C]`.
#[inline(always)]
fn side_by_side<S: Simd, const G: usize, const C: usize>(
    simd: S,
    query: &[f32],
    keys: &[&[S::f32s]],
    hd: usize,
    out: &mut [S::f32s],
) {
    let keys: [&[S::f32s]; G] = std::array::from_fn(|b| &keys[b][..hd * C]);
    let mut sums = [[simd.splat_f32s(0.0); C]; G];
    for (d, &q) in query[..hd].iter().enumerate() {
        let q = simd.splat_f32s(q);
        for (b, sums) in sums.iter_mut().enumerate() {
            for (c, sum) in sums.iter_mut().enumerate() {
                *sum = simd.mul_add_e_f32s(q, keys[b][d * C + c], *sum);
            }
        }
    }
    for (out, sum) in out.iter_mut().zip(sums.iter().flatten()) {
        *out = *sum;
    }
}

/// `out[i] += Σ_j probs[j][i] · values[j]` for `r` rows of `out` `[r][head_dim]`: a register
/// tile where the head's width is whole registers, else a plain loop with the same order of
/// multiply-adds per output.
#[inline(always)]
fn add_weighted_values<S: Simd>(
    simd: S,
    probs: &[f32],
    values: &[f32],
    out: &mut [f32],
    r: usize,
    regs: Option<usize>,
) {
    let plain = |out: &mut [f32]| {
        let hd = values.len() / KEY_BLOCK;
        for (j, value) in values.chunks_exact(hd).enumerate() {
            for (i, out) in out.chunks_exact_mut(hd).enumerate() {
                let p = probs[j * r + i];
                out.iter_mut()
                    .zip(value)
                    .for_each(|(o, v)| *o = p.mul_add(*v, *o));
            }
        }
    };
    let Some(regs) = regs else {
        return plain(out);
    };
    let panel = S::as_simd_f32s(values).0;
    with_tile_rows!(r, R => with_registers!(regs, C => {
        product_tile::<S, R, C>(simd, probs, panel, out, true)
    }, plain(out)));
}
