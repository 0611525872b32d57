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

/// An element of a cache's keys and values: f32, or f16 widened to f32 as attention reads it.
pub(crate) trait Element: Copy {
    /// Whether it needs room to be widened into.
    const WIDENS: bool;
    /// `stored` as f32: itself, or widened into `scratch`.
    fn widened<'a>(stored: &'a [Self], scratch: &'a mut [f32]) -> &'a [f32];
    /// What reads registers of `S`'s f32 lanes straight from stored elements; `None` where `S`
    /// cannot widen this element in a register (then it is widened into scratch memory).
    fn reader<S: Simd>() -> Option<Reader>;
    /// The first `S::F32_LANES` elements of `stored` as f32, with a reader from
    /// [`Element::reader`] for `S`.
    fn read<S: Simd>(reader: Reader, stored: &[Self]) -> S::f32s;
}

/// The instruction set tokens [`Element::read`] widens with.
#[derive(Clone, Copy, Default)]
pub(crate) struct Reader {
    #[cfg(target_arch = "x86_64")]
    v4: Option<pulp::x86::V4>,
    #[cfg(target_arch = "x86_64")]
    v3: Option<pulp::x86::V3>,
}

impl Element for f32 {
    const WIDENS: bool = false;
    #[inline(always)]
    fn widened<'a>(stored: &'a [f32], _: &'a mut [f32]) -> &'a [f32] {
        stored
    }

    fn reader<S: Simd>() -> Option<Reader> {
        Some(Reader::default())
    }

    #[inline(always)]
    fn read<S: Simd>(_: Reader, stored: &[f32]) -> S::f32s {
        S::as_simd_f32s(&stored[..S::F32_LANES]).0[0]
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

    fn reader<S: Simd>() -> Option<Reader> {
        #[cfg(target_arch = "x86_64")]
        {
            use pulp::x86::{V3, V4};
            match S::F32_LANES {
                16 => V4::try_new().map(|v4| Reader {
                    v4: Some(v4),
                    v3: None,
                }),
                8 => V3::try_new().map(|v3| Reader {
                    v4: None,
                    v3: Some(v3),
                }),
                _ => None,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    }

    #[inline(always)]
    fn read<S: Simd>(reader: Reader, stored: &[u16]) -> S::f32s {
        use crate::narrow::{Format, F16};
        #[cfg(target_arch = "x86_64")]
        match (S::F32_LANES, reader.v4, reader.v3) {
            (16, Some(v4), _) => {
                let (halves, _) = stored.as_chunks::<16>();
                let wide: [f32; 16] = pulp::cast(F16::widen_v4(v4, &halves[0]));
                return S::as_simd_f32s(&wide).0[0];
            }
            (8, _, Some(v3)) => {
                let (halves, _) = stored.as_chunks::<8>();
                let wide: [f32; 8] = pulp::cast(F16::widen_v3(v3, &halves[0]));
                return S::as_simd_f32s(&wide).0[0];
            }
            _ => {}
        }
        let _ = reader;
        unreachable!("an f16 register is read only with a reader for its width, this is a bug")
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
        // A decode step's one query reads its keys and values straight into registers where
        // this CPU can widen them there, and scores every key first, several blocks at a time.
        let reader = (n == 1 && out_regs.is_some())
            .then(T::reader::<S>)
            .flatten();
        let scratch = if T::WIDENS && reader.is_none() {
            hd * KEY_BLOCK
        } else {
            0
        };
        let (mut key_scratch, mut value_scratch) = (vec![0f32; scratch], vec![0f32; scratch]);
        let decode_scores = (n == 1)
            .then(|| {
                let blocks = self.past / KEY_BLOCK + 1;
                one_query_scores(simd, self.queries, self.keys, blocks, hd, reader)
            })
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
                match (reader, out_regs) {
                    (Some(reader), Some(regs)) => with_registers!(regs, C => {
                        add_weighted_stored_values::<S, T, C>(simd, probs, self.values[block], out, reader)
                    }, unreachable!("a head of {regs} registers, this is a bug")),
                    _ => {
                        let values = T::widened(self.values[block], &mut value_scratch);
                        add_weighted_values(simd, probs, values, out, r, out_regs);
                    }
                }
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
/// blocks go [`SIDE_BY_SIDE`] registers at a time, their chains interleaved. With a `reader` the
/// keys are read (from an f16 cache, widened) straight into registers; without, those blocks are
/// widened into scratch memory first.
#[inline(always)]
fn one_query_scores<S: Simd, T: Element>(
    simd: S,
    query: &[f32],
    keys: &[&[T]],
    blocks: usize,
    hd: usize,
    reader: Option<Reader>,
) -> Option<Vec<f32>> {
    let regs = KEY_BLOCK / S::F32_LANES;
    if regs > SIDE_BY_SIDE {
        return None;
    }
    let group = SIDE_BY_SIDE / regs;
    let block_len = hd * KEY_BLOCK;
    let mut scratch = vec![
        0f32;
        if reader.is_none() {
            group * block_len
        } else {
            0
        }
    ];
    let mut scores = vec![0f32; blocks * KEY_BLOCK];
    for (g, out) in scores.chunks_mut(group * KEY_BLOCK).enumerate() {
        let stored = &keys[g * group..][..out.len() / KEY_BLOCK];
        let out = S::as_mut_simd_f32s(out).0;
        if let Some(reader) = reader {
            all_sums(simd, query, stored, hd, out, |x| T::read::<S>(reader, x));
        } else {
            let mut widened = [&[][..]; SIDE_BY_SIDE];
            let mut room = scratch.chunks_mut(block_len.max(1));
            for (w, stored) in widened.iter_mut().zip(stored) {
                *w = T::widened(stored, room.next().unwrap_or_default());
            }
            let read = |x: &[f32]| f32::read::<S>(Reader::default(), x);
            all_sums(simd, query, &widened[..stored.len()], hd, out, read);
        }
    }
    Some(scores)
}

/// [`side_by_side`] for as many key blocks as `out` holds (at most [`SIDE_BY_SIDE`] registers).
#[inline(always)]
fn all_sums<S: Simd, E>(
    simd: S,
    query: &[f32],
    keys: &[&[E]],
    hd: usize,
    out: &mut [S::f32s],
    read: impl Fn(&[E]) -> S::f32s + Copy,
) {
    let regs = KEY_BLOCK / S::F32_LANES;
    macro_rules! sums {
        ($g:literal, $c:literal) => {
            side_by_side::<S, E, $g, $c>(simd, query, keys, hd, out, read)
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

/// `G` key blocks of `C` registers each (`keys[b]` `[hd][C]` registers' worth of elements,
/// each register as `read` gives it) against one query: the `G × C` registers of sums into
/// `out`, `[G][C]`.
#[inline(always)]
fn side_by_side<S: Simd, E, const G: usize, const C: usize>(
    simd: S,
    query: &[f32],
    keys: &[&[E]],
    hd: usize,
    out: &mut [S::f32s],
    read: impl Fn(&[E]) -> S::f32s,
) {
    let width = C * S::F32_LANES;
    let keys: [&[E]; G] = std::array::from_fn(|b| &keys[b][..hd * width]);
    let mut sums = [[simd.splat_f32s(0.0); C]; G];
    for (d, &q) in query[..hd].iter().enumerate() {
        let q = simd.splat_f32s(q);
        for (b, sums) in sums.iter_mut().enumerate() {
            let row = &keys[b][d * width..][..width];
            for (c, sum) in sums.iter_mut().enumerate() {
                *sum = simd.mul_add_e_f32s(q, read(&row[c * S::F32_LANES..]), *sum);
            }
        }
    }
    for (out, sum) in out.iter_mut().zip(sums.iter().flatten()) {
        *out = *sum;
    }
}

/// One query's `out += Σ_j probs[j] · values[j]` over a value block `[KEY_BLOCK][head_dim]`
/// of `C` registers per row, each register as `reader` reads it: the chain of multiply-adds
/// [`add_weighted_values`] runs for a tile of one row, without widening the block first.
#[inline(always)]
fn add_weighted_stored_values<S: Simd, T: Element, const C: usize>(
    simd: S,
    probs: &[f32],
    values: &[T],
    out: &mut [f32],
    reader: Reader,
) {
    let width = C * S::F32_LANES;
    let out = &mut S::as_mut_simd_f32s(out).0[..C];
    let mut sums: [S::f32s; C] = std::array::from_fn(|c| out[c]);
    for (&p, row) in probs[..KEY_BLOCK].iter().zip(values.chunks_exact(width)) {
        let p = simd.splat_f32s(p);
        for (c, sum) in sums.iter_mut().enumerate() {
            *sum = simd.mul_add_e_f32s(p, T::read::<S>(reader, &row[c * S::F32_LANES..]), *sum);
        }
    }
    out.copy_from_slice(&sums);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::narrow::{Format, F16};
    use crate::packed::tests::values;

    /// `len` positions of one head as key and value blocks, each element stored by `store`.
    fn blocks<T: Element>(
        keys: &[f32],
        vals: &[f32],
        hd: usize,
        store: impl Fn(f32) -> T,
    ) -> (Vec<Vec<T>>, Vec<Vec<T>>) {
        let len = keys.len() / hd;
        let count = len.div_ceil(KEY_BLOCK);
        let mut k = vec![vec![store(0.0); hd * KEY_BLOCK]; count];
        let mut v = k.clone();
        for p in 0..len {
            for d in 0..hd {
                k[p / KEY_BLOCK][d * KEY_BLOCK + p % KEY_BLOCK] = store(keys[p * hd + d]);
                v[p / KEY_BLOCK][(p % KEY_BLOCK) * hd + d] = store(vals[p * hd + d]);
            }
        }
        (k, v)
    }

    /// Causal softmax attention in f64 over keys and values as `load` reads them back.
    fn naive(q: &[f32], k: &[f32], v: &[f32], hd: usize, scale: f32) -> Vec<f64> {
        let n = q.len() / hd;
        let mut out = vec![0f64; n * hd];
        for i in 0..n {
            let scores: Vec<f64> = (0..=i)
                .map(|j| {
                    let dot: f64 = (0..hd)
                        .map(|d| q[i * hd + d] as f64 * k[j * hd + d] as f64)
                        .sum();
                    dot * scale as f64
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for (j, w) in weights.iter().enumerate() {
                for d in 0..hd {
                    out[i * hd + d] += w / total * v[j * hd + d] as f64;
                }
            }
        }
        out
    }

    /// A whole prompt at once, then every position again alone as a decode step would run it
    /// (for a head of whole registers, with keys and values read straight into registers):
    /// the same bits, and near attention computed naively.
    fn decode_equals_prefill<T: Element>(hd: usize, store: impl Fn(f32) -> T, load: fn(T) -> f32) {
        let (n, scale) = (70, 1.0 / (hd as f32).sqrt());
        let q = values(n * hd, 1);
        let (k, v) = (values(n * hd, 2), values(n * hd, 3));
        let (kb, vb) = blocks(&k, &v, hd, &store);
        let keys: Vec<&[T]> = kb.iter().map(|b| &b[..]).collect();
        let vals: Vec<&[T]> = vb.iter().map(|b| &b[..]).collect();
        let all = attend(&q, &keys, &vals, 0, hd, scale);
        let stored = |x: &[f32]| -> Vec<f32> {
            let (kb, _) = blocks(x, x, hd, &store);
            (0..n)
                .flat_map(|p| (0..hd).map(move |d| (p, d)))
                .map(|(p, d)| load(kb[p / KEY_BLOCK][d * KEY_BLOCK + p % KEY_BLOCK]))
                .collect()
        };
        let expected = naive(&q, &stored(&k), &stored(&v), hd, scale);
        for p in 0..n {
            let one = attend(&q[p * hd..][..hd], &keys, &vals, p, hd, scale);
            assert_eq!(one, all[p * hd..][..hd], "position {p}, head of {hd}");
        }
        for (got, want) in all.iter().zip(&expected) {
            assert!((*got as f64 - want).abs() < 1e-5, "{got} against {want}");
        }
    }

    #[test]
    fn a_decode_step_gives_a_prefill_s_bits_in_f32_and_f16() {
        for hd in [64, 8] {
            decode_equals_prefill::<f32>(hd, |x| x, |x| x);
            decode_equals_prefill::<u16>(hd, |x| F16::store(x, 1.0), F16::load);
        }
    }
}
