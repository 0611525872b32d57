//! Weight matrices packed once, at load, into the layout the product streams, and that product.
//!
//! A linear layer's weights `[k inputs, n outputs]` are cut into panels of `width` output columns
//! (two vector registers: 32 with AVX-512, 16 with AVX2) and each panel is stored as `k` rows of
//! `width` floats, one after the other: `[n / width][k][width]`, the last panel zero-padded. The
//! product then reads every panel once, front to back, whatever the batch (the hardware
//! prefetcher sees one sequential stream), and multiplies it by a tile of up to 12 rows at a
//! time, their `12 × width` sums held in registers (24 of AVX-512's 32): each weight loaded from
//! memory feeds 12 rows' multiply-adds, so a decode batch of 32 reads the weights once and
//! prefill is bound by arithmetic, not by memory. A general matrix product (gemm, as candle
//! calls it) packs the weights again on every call, which at decode batch sizes costs more than
//! the arithmetic.
//!
//! Every output is one chain of fused multiply-adds over `k` in order, started from zero, in
//! whatever tile its row falls: a row's result has the same bits alone, in any batch, on AVX2 and
//! on AVX-512. Threads take whole panels, so at one row both cores stream disjoint bands of the
//! weights, and at 32 rows they share the arithmetic.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use pulp::bytemuck::{Pod, Zeroable};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

/// Calls `$body` with the const `$r` equal to `$rows` (1 to 12).
macro_rules! with_tile_rows {
    ($rows:expr, $r:ident => $body:expr) => {
        match $rows {
            1 => {
                const $r: usize = 1;
                $body
            }
            2 => {
                const $r: usize = 2;
                $body
            }
            3 => {
                const $r: usize = 3;
                $body
            }
            4 => {
                const $r: usize = 4;
                $body
            }
            5 => {
                const $r: usize = 5;
                $body
            }
            6 => {
                const $r: usize = 6;
                $body
            }
            7 => {
                const $r: usize = 7;
                $body
            }
            8 => {
                const $r: usize = 8;
                $body
            }
            9 => {
                const $r: usize = 9;
                $body
            }
            10 => {
                const $r: usize = 10;
                $body
            }
            11 => {
                const $r: usize = 11;
                $body
            }
            12 => {
                const $r: usize = 12;
                $body
            }
            rows => unreachable!("a tile of {rows} rows, this is a bug"),
        }
    };
}
pub(crate) use with_tile_rows;

/// Multiply-adds below which a product runs on one thread: waking others costs more.
const PARALLEL_MIN_WORK: usize = 1 << 17;

/// Bytes ahead of its loads that a product asks for the weights it will read next. The hardware
/// prefetcher follows a stream only within a 4 KB page and starts over at every page; asking
/// 1 KB ahead carries the stream across. On the Xeon this was tuned on, GPT-2 small's f32 decode
/// (the transformer alone, alternated): one stream 52.5 tok/s against 50.1, four streams +15 %,
/// 32 streams +13 %; 256 B and 512 B ahead gained less, 2 KB and 4 KB no more.
const PREFETCH_AHEAD: usize = 1024;

/// Asks for the cache lines of the `bytes` that lie [`PREFETCH_AHEAD`] past `at` (the loads a
/// product is about to make) to be brought in. A hint: it never faults, whatever the address,
/// and changes nothing the program reads.
#[inline(always)]
pub(crate) fn prefetch_ahead(at: *const u8, bytes: usize) {
    let ahead = at.wrapping_add(PREFETCH_AHEAD);
    for line in (0..bytes).step_by(64) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch reads no memory the program sees and does not fault on any address.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (ahead, line);
    }
}

/// A weight matrix in panels (see the module's docs).
#[derive(Clone)]
pub struct Packed {
    /// Inputs: the length of a row of `x`.
    k: usize,
    /// Outputs.
    n: usize,
    /// Columns per panel.
    width: usize,
    /// `[n.div_ceil(width)][k][width]`.
    panels: Aligned<f32>,
}

/// Weights whose first element starts a cache line, so that each of a panel's 64-byte loads
/// reads one line rather than straddling two: the allocator's large blocks start 16 bytes into
/// a page. Streaming a 768 × 2304 matrix in panels from memory, two threads, measured 27.0 GB/s
/// aligned against 24.7 at that offset on the Xeon.
#[derive(Clone)]
pub(crate) struct Aligned<T> {
    lines: Vec<Line>,
    len: usize,
    element: PhantomData<T>,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

// SAFETY: 64 bytes without padding, and every bit pattern is a valid `Line`.
unsafe impl Zeroable for Line {}
// SAFETY: as above; `Line` is `Copy` and `repr(C)`.
unsafe impl Pod for Line {}

impl<T: Pod> Aligned<T> {
    /// `len` zeroed elements.
    pub(crate) fn zeroed(len: usize) -> Self {
        let lines = (len * std::mem::size_of::<T>()).div_ceil(64);
        Aligned {
            lines: vec![Line([0; 64]); lines],
            len,
            element: PhantomData,
        }
    }
}

impl<T: Pod> Deref for Aligned<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &pulp::bytemuck::cast_slice(&self.lines)[..self.len]
    }
}

impl<T: Pod> DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut pulp::bytemuck::cast_slice_mut(&mut self.lines)[..self.len]
    }
}

/// A weight matrix the CPU path multiplies: f32 [`Packed`], or a narrow format
/// ([`crate::narrow`]).
pub trait HostMatrix: Send + Sync {
    /// Inputs per row.
    fn inputs(&self) -> usize;
    /// Outputs per row.
    fn outputs(&self) -> usize;
    /// `x · W (+ bias)` for `rows` rows of `x` `[rows, k]`: `[rows, n]`.
    fn product(&self, x: &[f32], rows: usize, bias: Option<&[f32]>) -> Vec<f32>;
    /// The matrix as the checkpoint stores a `Conv1D`, `[k, n]` (for the instruments).
    fn to_in_out(&self) -> Vec<f32>;
}

/// How a checkpoint stores a weight matrix of `k` inputs and `n` outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[k, n]`: a `Conv1D`'s.
    InOut,
    /// `[n, k]`: `nn.Linear`'s, and the LM head's (tied to `wte`).
    OutIn,
}

/// A weight matrix's values as a checkpoint stores them: what the packed forms are made from.
#[derive(Clone, Copy)]
pub struct Matrix<'a> {
    values: &'a [f32],
    k: usize,
    n: usize,
    layout: Layout,
}

impl<'a> Matrix<'a> {
    pub fn new(values: &'a [f32], k: usize, n: usize, layout: Layout) -> Self {
        assert_eq!(
            values.len(),
            k * n,
            "a matrix of {k} × {n} values, this is a bug"
        );
        Matrix {
            values,
            k,
            n,
            layout,
        }
    }

    /// The weight from input `i` to output `j`.
    pub(crate) fn at(&self, i: usize, j: usize) -> f32 {
        match self.layout {
            Layout::InOut => self.values[i * self.n + j],
            Layout::OutIn => self.values[j * self.k + i],
        }
    }

    pub(crate) fn inputs(&self) -> usize {
        self.k
    }

    pub(crate) fn outputs(&self) -> usize {
        self.n
    }
}

impl Packed {
    /// Packs `w` into panels.
    pub fn new(w: Matrix) -> Self {
        let (k, n, width) = (w.k, w.n, panel_width());
        let mut panels = Aligned::zeroed(n.div_ceil(width) * k * width);
        panels
            .par_chunks_mut(k * width)
            .enumerate()
            .for_each(|(p, panel)| {
                for (i, row) in panel.chunks_exact_mut(width).enumerate() {
                    for (c, v) in row.iter_mut().enumerate() {
                        let j = p * width + c;
                        if j < n {
                            *v = w.at(i, j);
                        }
                    }
                }
            });
        Packed {
            k,
            n,
            width,
            panels,
        }
    }
}

impl HostMatrix for Packed {
    fn inputs(&self) -> usize {
        self.k
    }

    fn outputs(&self) -> usize {
        self.n
    }

    fn to_in_out(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.k * self.n];
        for (p, panel) in self.panels.chunks_exact(self.k * self.width).enumerate() {
            let first = p * self.width;
            let cols = self.width.min(self.n - first);
            for (i, row) in panel.chunks_exact(self.width).enumerate() {
                w[i * self.n + first..][..cols].copy_from_slice(&row[..cols]);
            }
        }
        w
    }

    fn product(&self, x: &[f32], rows: usize, bias: Option<&[f32]>) -> Vec<f32> {
        assert_eq!(
            x.len(),
            rows * self.k,
            "rows of {} inputs, this is a bug",
            self.k
        );
        let arch = pulp::Arch::new();
        let panel_len = self.k * self.width;
        let shape = Shape {
            k: self.k,
            n: self.n,
            width: self.width,
        };
        by_panels(
            x,
            rows,
            shape,
            bias,
            f32_tiles(x, self.k),
            |tiles, p, out| {
                arch.dispatch(PanelProduct {
                    tiles,
                    k: self.k,
                    panel: &self.panels[p * panel_len..][..panel_len],
                    out,
                })
            },
        )
    }
}

/// A packed product's dimensions: inputs, outputs, columns per panel.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) width: usize,
}

/// Bytes of scratch a thread keeps between products; a larger product's is freed after it.
const SCRATCH_KEPT: usize = 64 << 20;

/// How a product lays out its rows before the panels read them: `len` words of scratch, filled by
/// `pack`.
pub(crate) struct Tiles<P: FnOnce(&mut [f32])> {
    pub(crate) len: usize,
    pub(crate) pack: P,
}

/// The f32 products' tiles: `x`'s rows of `k` packed by [`PackRows`].
pub(crate) fn f32_tiles(x: &[f32], k: usize) -> Tiles<impl FnOnce(&mut [f32]) + '_> {
    Tiles {
        len: x.len(),
        pack: move |out: &mut [f32]| pulp::Arch::new().dispatch(PackRows { x, k, out }),
    }
}

/// What every packed product shares: `x`'s `rows` packed into tiles (by `tiles`), `panel(tiles,
/// p, out)` run for each panel `p` into its results `[rows][width]` (spread over the cores when the
/// work is large enough; threads take whole panels), and the results unpacked to `[rows, n]` with
/// the bias.
///
/// The tiles and the results by panel live in scratch memory the process reuses from one product
/// to the next: allocating them afresh cost page faults and zeroing on every call, several
/// percent of a 32-stream step. One scratch for the process, not one per thread: a pass runs on
/// whichever of the pool's threads takes it, and per-thread scratch would keep up to
/// [`SCRATCH_KEPT`] on each. A product that finds it in use (another running beside it, or one
/// inside another on this thread while rayon lets it take other work) gets memory of its own.
/// Every element is written in a call before that call reads it.
pub(crate) fn by_panels(
    x: &[f32],
    rows: usize,
    shape: Shape,
    bias: Option<&[f32]>,
    tiles: Tiles<impl FnOnce(&mut [f32])>,
    panel: impl Fn(&[f32], usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    static SCRATCH: std::sync::Mutex<Vec<f32>> = std::sync::Mutex::new(Vec::new());
    let Shape { k, n, width } = shape;
    assert_eq!(x.len(), rows * k, "rows of {k} inputs, this is a bug");
    if rows == 0 {
        return Vec::new();
    }
    let (tiles_len, results_len) = (tiles.len, n.div_ceil(width) * width * rows);
    let run = |scratch: &mut [f32]| {
        let (packed, by_panel) = scratch.split_at_mut(tiles_len);
        (tiles.pack)(packed);
        let tiles = &*packed;
        let task = |(p, out): (usize, &mut [f32])| panel(tiles, p, out);
        let parallel = rows * k * n >= PARALLEL_MIN_WORK;
        if parallel {
            by_panel
                .par_chunks_exact_mut(rows * width)
                .enumerate()
                .for_each(task);
        } else {
            by_panel
                .chunks_exact_mut(rows * width)
                .enumerate()
                .for_each(task);
        }
        unpack(by_panel, rows, n, width, bias, parallel)
    };
    let needed = tiles_len + results_len;
    let mut scratch = match SCRATCH.try_lock() {
        Ok(scratch) => scratch,
        // Scratch holds no invariant a panic could have broken.
        Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return run(&mut vec![0f32; needed]),
    };
    if scratch.len() < needed {
        scratch.resize(needed, 0.0);
    }
    let out = run(&mut scratch[..needed]);
    if scratch.len() * 4 > SCRATCH_KEPT {
        *scratch = Vec::new();
    }
    out
}

/// Results `[panels][rows][width]` to `[rows, n]`, adding the bias. The output is written
/// straight into fresh memory, not zeroed first.
fn unpack(
    by_panel: &[f32],
    rows: usize,
    n: usize,
    width: usize,
    bias: Option<&[f32]>,
    parallel: bool,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * n);
    let row = |(r, out): (usize, &mut [std::mem::MaybeUninit<f32>])| {
        for (p, out) in out.chunks_mut(width).enumerate() {
            let results = &by_panel[(p * rows + r) * width..][..out.len()];
            match bias {
                Some(bias) => {
                    let bias = &bias[p * width..][..out.len()];
                    for ((o, &v), &b) in out.iter_mut().zip(results).zip(bias) {
                        o.write(v + b);
                    }
                }
                None => {
                    for (o, &v) in out.iter_mut().zip(results) {
                        o.write(v);
                    }
                }
            }
        }
    };
    let spare = &mut out.spare_capacity_mut()[..rows * n];
    if parallel {
        spare.par_chunks_exact_mut(n).enumerate().for_each(row);
    } else {
        spare.chunks_exact_mut(n).enumerate().for_each(row);
    }
    // SAFETY: `row` wrote every element of every row, `rows * n` in all.
    unsafe { out.set_len(rows * n) };
    out
}

/// Columns per panel on this CPU: two of its widest vector registers.
pub fn panel_width() -> usize {
    struct Lanes;
    impl WithSimd for Lanes {
        type Output = usize;
        fn with_simd<S: Simd>(self, _: S) -> usize {
            S::F32_LANES
        }
    }
    2 * pulp::Arch::new().dispatch(Lanes)
}

/// Rows per register tile: as many as leave room beside the sums for a weight and a broadcast.
pub(crate) const fn tile_rows<S: Simd>() -> usize {
    match S::F32_LANES {
        16.. => 12,
        8.. => 6,
        _ => 4,
    }
}

/// The rows of `x` in tiles of [`tile_rows`], each stored `[k][tile rows]` (the values one step
/// of `k` needs, side by side), the last tile shorter.
struct PackRows<'a> {
    x: &'a [f32],
    k: usize,
    /// As long as `x`.
    out: &'a mut [f32],
}

impl WithSimd for PackRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let (k, tile) = (self.k, tile_rows::<S>());
        for (rows, out) in self.x.chunks(tile * k).zip(self.out.chunks_mut(tile * k)) {
            let r = rows.len() / k;
            for (i, row) in rows.chunks_exact(k).enumerate() {
                for (kk, &v) in row.iter().enumerate() {
                    out[kk * r + i] = v;
                }
            }
        }
    }
}

/// Every tile of rows against one panel; results `[rows][width]`.
struct PanelProduct<'a> {
    tiles: &'a [f32],
    k: usize,
    panel: &'a [f32],
    out: &'a mut [f32],
}

impl WithSimd for PanelProduct<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let (k, tile) = (self.k, tile_rows::<S>());
        let panel = S::as_simd_f32s(self.panel).0;
        let width = 2 * S::F32_LANES;
        for (rows, out) in self
            .tiles
            .chunks(tile * k)
            .zip(self.out.chunks_mut(tile * width))
        {
            with_tile_rows!(rows.len() / k, R => {
                product_tile::<S, R, 2>(simd, rows, panel, out, false)
            });
        }
    }
}

/// `R` rows against a panel of `C` registers per row: `out[r] (+)= Σ_i rows[i][r] · panel[i]`.
///
/// `rows` is `[k][R]` (a packed tile), `panel` `[k][C]` registers, `out` `R` runs of `C`
/// registers' worth of floats. With `accumulate` the sums start from `out`, else from zero; each
/// output is one chain of multiply-adds over `i` in order.
#[inline(always)]
pub(crate) fn product_tile<S: Simd, const R: usize, const C: usize>(
    simd: S,
    rows: &[f32],
    panel: &[S::f32s],
    out: &mut [f32],
    accumulate: bool,
) {
    let out = &mut S::as_mut_simd_f32s(out).0[..R * C];
    let mut sums = [[simd.splat_f32s(0.0); C]; R];
    if accumulate {
        for (r, sums) in sums.iter_mut().enumerate() {
            sums.copy_from_slice(&out[r * C..][..C]);
        }
    }
    let (rows, _) = rows.as_chunks::<R>();
    let (panel, _) = panel.as_chunks::<C>();
    for (x, w) in rows.iter().zip(panel) {
        prefetch_ahead(w.as_ptr().cast(), std::mem::size_of_val(w));
        for r in 0..R {
            let x = simd.splat_f32s(x[r]);
            for c in 0..C {
                sums[r][c] = simd.mul_add_e_f32s(x, w[c], sums[r][c]);
            }
        }
    }
    for (r, sums) in sums.iter().enumerate() {
        out[r * C..][..C].copy_from_slice(sums);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Spread-out values in [-1, 1), reproducible from `seed`.
    pub(crate) fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn the_product_matches_the_naive_one_in_both_layouts() {
        for (rows, k, n) in [
            (1, 7, 3),
            (3, 64, 1001),
            (13, 300, 400),
            (32, 768, 130),
            (2, 33, 20000),
            (0, 16, 40),
        ] {
            let (x, w, bias) = (values(rows * k, 4), values(k * n, 5), values(n, 6));
            let in_out = Packed::new(Matrix::new(&w, k, n, Layout::InOut));
            let transposed: Vec<f32> = (0..n)
                .flat_map(|j| (0..k).map(move |i| (i, j)))
                .map(|(i, j)| w[i * n + j])
                .collect();
            let out_in = Packed::new(Matrix::new(&transposed, k, n, Layout::OutIn));
            assert_eq!(in_out.to_in_out(), w);
            let got = in_out.product(&x, rows, Some(&bias));
            assert_eq!(got, out_in.product(&x, rows, Some(&bias)));
            for r in 0..rows {
                for j in 0..n {
                    let want = bias[j] + (0..k).map(|i| x[r * k + i] * w[i * n + j]).sum::<f32>();
                    let g = got[r * n + j];
                    assert!(
                        (g - want).abs() < 1e-3,
                        "{rows}x{k}x{n} at ({r}, {j}): {g} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn weights_start_on_a_cache_line_and_hold_what_was_written() {
        let mut floats = Aligned::<f32>::zeroed(1001);
        let bytes = Aligned::<i8>::zeroed(77);
        let halves = Aligned::<u16>::zeroed(5);
        assert_eq!(floats.as_ptr() as usize % 64, 0);
        assert_eq!(bytes.as_ptr() as usize % 64, 0);
        assert_eq!(halves.as_ptr() as usize % 64, 0);
        assert_eq!((floats.len(), bytes.len(), halves.len()), (1001, 77, 5));
        assert!(floats.iter().all(|&v| v == 0.0));
        floats[1000] = 2.5;
        let copy = floats.clone();
        assert_eq!((copy[1000], copy.as_ptr() as usize % 64), (2.5, 0));
    }

    #[test]
    fn a_row_gets_the_same_bits_whatever_else_is_in_the_batch() {
        let (k, n) = (256, 515);
        let w = Packed::new(Matrix::new(&values(k * n, 2), k, n, Layout::InOut));
        let x = values(29 * k, 1);
        let all = w.product(&x, 29, None);
        for r in 0..29 {
            let alone = w.product(&x[r * k..(r + 1) * k], 1, None);
            assert_eq!(alone, all[r * n..(r + 1) * n], "row {r}");
        }
    }
}
