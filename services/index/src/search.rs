//! The search structures behind one small trait, so that another one (usearch, a GPU flat
//! scan) can replace or join them: [`Exact`], a scan of every allowed row, and
//! [`crate::hnsw::Hnsw`], the approximate graph. Both read the vectors from [`Rows`] and return
//! row numbers with their distances (see [`crate::kernels`]); the caller ranks, scores and
//! cuts them.

use std::cmp::Ordering;

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use crate::kernels;
use crate::rows::Rows;
use crate::types::Metric;

/// Which rows a search may return; tombstones and the query's own point never are.
#[derive(Clone, Copy)]
pub enum Allow<'a> {
    /// Every live row but the query's own point, if any: tested inline, without a call per row.
    Live { except: Option<u32> },
    /// The rows that pass a test (a filter's, which must rule out tombstones and the query's
    /// own point itself), tested before a row is scored.
    Passing(&'a (dyn Fn(u32) -> bool + Sync)),
}

impl Allow<'_> {
    /// Every live row.
    pub const LIVE: Allow<'static> = Allow::Live { except: None };

    #[inline(always)]
    pub fn allows(self, rows: &Rows, row: u32) -> bool {
        match self {
            Allow::Live { except } => rows.is_live(row) && Some(row) != except,
            Allow::Passing(test) => test(row),
        }
    }
}

/// Rows a search found, with their distances, and how many distances it computed.
#[derive(Debug, Default)]
pub struct Candidates {
    pub hits: Vec<(f32, u32)>,
    pub scanned: u64,
}

/// A way to find the rows nearest a query.
pub trait NearestIndex: Send + Sync {
    /// Makes rows `from..rows.len()` findable: the rows appended since the last call.
    fn extend(&mut self, rows: &Rows, from: u32);

    /// Up to `k` allowed rows near `query`, in no particular order (an approximate index may
    /// return more, up to `ef`, which is its search list size). Equal distances are not
    /// broken here: [`rank`] breaks them by id.
    fn nearest(&self, rows: &Rows, query: &[f32], k: usize, ef: usize, allow: Allow) -> Candidates;

    /// Whether [`NearestIndex::nearest`] always finds the true nearest rows.
    fn is_exact(&self) -> bool;
}

/// Sorts candidates nearest first, equal distances by id, and keeps the first `k`.
pub fn rank(rows: &Rows, hits: &mut Vec<(f32, u32)>, k: usize) {
    if hits.len() > k && k > 0 {
        hits.select_nth_unstable_by(k - 1, |a, b| order(rows, *a, *b));
        hits.truncate(k);
    }
    hits.sort_unstable_by(|a, b| order(rows, *a, *b));
    hits.truncate(k);
}

/// Nearer first; at equal distance, the smaller id first.
fn order(rows: &Rows, a: (f32, u32), b: (f32, u32)) -> Ordering {
    a.0.total_cmp(&b.0)
        .then_with(|| rows.id(a.1).cmp(rows.id(b.1)))
}

/// A scan of every allowed row: recall 1, and the fallback for selective filters.
#[derive(Clone, Copy, Debug)]
pub struct Exact {
    pub metric: Metric,
}

/// Distances (rows × queries) below which a scan stays on the calling thread: waking others
/// costs more.
const PARALLEL_MIN_WORK: usize = 32_768;
/// Rows scored against every query of a batch while they are in the first-level cache (a
/// multiple of the rows of every block shape below).
const TILE: usize = 24;

impl Exact {
    /// [`NearestIndex::nearest`] for many queries in one pass over the rows: each tile of rows
    /// is scored against every query while it is in cache, several rows by several queries at
    /// once. Each query gets the candidates its own search would get (their distances have the
    /// same bits; see [`kernels`]), so [`rank`] orders them alike.
    pub fn nearest_batch(
        &self,
        rows: &Rows,
        queries: &[&[f32]],
        k: usize,
        allow: Allow,
    ) -> Vec<Candidates> {
        let n = rows.len();
        // Equal pieces, twice as many as threads so that a thread slowed by others can be
        // relieved; the answer does not depend on how the rows are cut.
        let pieces = if n * queries.len() < PARALLEL_MIN_WORK {
            1
        } else {
            (2 * rayon::current_num_threads()).min(n.div_ceil(TILE))
        };
        let size = n.div_ceil(pieces.max(1));
        let scan = |p: usize| {
            pulp::Arch::new().dispatch(Scan {
                metric: self.metric,
                rows,
                queries,
                k,
                allow,
                range: (p * size).min(n)..((p + 1) * size).min(n),
            })
        };
        let piece = if pieces == 1 {
            scan(0)
        } else {
            (0..pieces)
                .into_par_iter()
                .map(scan)
                .reduce(|| Piece::new(rows, queries.len(), k), Piece::merge)
        };
        let scanned = piece.scanned;
        piece
            .tops
            .into_iter()
            .map(|top| Candidates {
                hits: top.into_hits(),
                scanned,
            })
            .collect()
    }
}

impl NearestIndex for Exact {
    fn extend(&mut self, _: &Rows, _: u32) {}

    fn nearest(&self, rows: &Rows, query: &[f32], k: usize, _: usize, allow: Allow) -> Candidates {
        let mut found = self.nearest_batch(rows, &[query], k, allow);
        found
            .pop()
            .expect("one query has one answer; this is a bug")
    }

    fn is_exact(&self) -> bool {
        true
    }
}

/// One piece of a scan, run under one SIMD dispatch.
struct Scan<'a> {
    metric: Metric,
    rows: &'a Rows,
    queries: &'a [&'a [f32]],
    k: usize,
    allow: Allow<'a>,
    range: std::ops::Range<usize>,
}

/// What a piece found: the best `k` of it for each query, and the rows scored.
struct Piece<'a> {
    tops: Vec<TopK<'a>>,
    scanned: u64,
}

impl<'a> Piece<'a> {
    fn new(rows: &'a Rows, queries: usize, k: usize) -> Self {
        Piece {
            tops: (0..queries).map(|_| TopK::new(rows, k)).collect(),
            scanned: 0,
        }
    }

    fn merge(mut self, other: Piece<'a>) -> Self {
        self.scanned += other.scanned;
        for (a, b) in self.tops.iter_mut().zip(other.tops) {
            a.merge(b);
        }
        self
    }
}

impl<'a> WithSimd for Scan<'a> {
    type Output = Piece<'a>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Piece<'a> {
        let rows = self.rows;
        let mut piece = Piece::new(rows, self.queries.len(), self.k);
        let (mut tile, mut len) = ([0u32; TILE], 0);
        for row in self.range.clone().map(|r| r as u32) {
            if !self.allow.allows(rows, row) {
                continue;
            }
            tile[len] = row;
            len += 1;
            if len == TILE {
                self.tile(simd, &tile, &mut piece.tops);
                piece.scanned += TILE as u64;
                len = 0;
            }
        }
        self.tile(simd, &tile[..len], &mut piece.tops);
        piece.scanned += len as u64;
        piece
    }
}

/// Queries scored together against a few rows: their sums and the rows' fill the registers.
const QUERY_BLOCK: usize = 4;

impl Scan<'_> {
    /// Scores the rows `tile` against every query, offering each distance to its query's top.
    #[inline(always)]
    fn tile<S: Simd>(&self, simd: S, tile: &[u32], tops: &mut [TopK]) {
        let mut q = 0;
        while q + QUERY_BLOCK <= self.queries.len() {
            let queries = std::array::from_fn(|j| self.queries[q + j]);
            // 24 sums in registers where there are 32 (AVX-512), 8 where there are 16.
            if S::F32_LANES >= 16 {
                self.block::<S, 6, QUERY_BLOCK>(simd, tile, queries, &mut tops[q..]);
            } else {
                self.block::<S, 2, QUERY_BLOCK>(simd, tile, queries, &mut tops[q..]);
            }
            q += QUERY_BLOCK;
        }
        for q in q..self.queries.len() {
            // One query alone: more rows at once, for more sums in flight.
            self.block::<S, 8, 1>(simd, tile, [self.queries[q]], &mut tops[q..]);
        }
    }

    /// `R` rows at a time of `tile` against `queries`, whose tops are `tops[..Q]`.
    #[inline(always)]
    fn block<S: Simd, const R: usize, const Q: usize>(
        &self,
        simd: S,
        tile: &[u32],
        queries: [&[f32]; Q],
        tops: &mut [TopK],
    ) {
        let (rows, metric) = (self.rows, self.metric);
        let tops = &mut tops[..Q];
        let mut groups = tile.chunks_exact(R);
        for group in &mut groups {
            let vectors: [&[f32]; R] = std::array::from_fn(|i| rows.vector(group[i]));
            let distances = kernels::block(simd, metric, vectors, queries);
            for (&row, distances) in group.iter().zip(distances) {
                for (top, d) in tops.iter_mut().zip(distances) {
                    top.offer(d, row);
                }
            }
        }
        for &row in groups.remainder() {
            let [distances] = kernels::block(simd, metric, [rows.vector(row)], queries);
            for (top, d) in tops.iter_mut().zip(distances) {
                top.offer(d, row);
            }
        }
    }
}

/// The best `k` of a stream of (distance, row), with ties kept until they are broken by id:
/// candidates are buffered, and every time the buffer holds 2k the best k are selected and
/// their worst distance becomes the bar a newcomer must not exceed.
struct TopK<'a> {
    rows: &'a Rows,
    k: usize,
    buffer: Vec<(f32, u32)>,
    bar: f32,
}

impl<'a> TopK<'a> {
    fn new(rows: &'a Rows, k: usize) -> Self {
        TopK {
            rows,
            k,
            buffer: Vec::with_capacity(2 * k.max(1)),
            bar: f32::INFINITY,
        }
    }

    /// Keeps (distance, row) if it may be among the best `k`.
    #[inline(always)]
    fn offer(&mut self, distance: f32, row: u32) {
        if distance <= self.bar {
            self.push(distance, row);
        }
    }

    fn push(&mut self, distance: f32, row: u32) {
        self.buffer.push((distance, row));
        if self.buffer.len() >= 2 * self.k.max(1) {
            self.shrink();
        }
    }

    fn shrink(&mut self) {
        rank(self.rows, &mut self.buffer, self.k);
        if self.buffer.len() == self.k {
            self.bar = self.buffer.last().map_or(f32::INFINITY, |h| h.0);
        }
    }

    fn merge(&mut self, other: TopK<'a>) {
        self.buffer.extend(other.buffer);
        self.shrink();
    }

    fn into_hits(mut self) -> Vec<(f32, u32)> {
        self.shrink();
        self.buffer
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::types::NewPoint;

    fn rows(vectors: &[[f32; 2]]) -> Rows {
        let mut rows = Rows::new(2);
        rows.upsert(
            vectors
                .iter()
                .enumerate()
                .map(|(i, v)| NewPoint {
                    id: format!("p{i:05}"),
                    vector: v.to_vec(),
                    payload: Default::default(),
                    text: None,
                })
                .collect(),
        );
        rows
    }

    #[test]
    fn exact_keeps_the_nearest_and_breaks_ties_by_id() {
        // Rows 3, 1 and 4 tie; the smaller ids win the last places.
        let r = rows(&[[5.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0]]);
        let exact = Exact { metric: Metric::L2 };
        let mut found = exact.nearest(&r, &[0.0, 0.0], 3, 0, Allow::LIVE);
        rank(&r, &mut found.hits, 3);
        assert_eq!(found.hits, [(0.0, 2), (1.0, 1), (1.0, 3)]);
        assert_eq!(found.scanned, 5);
        let mut found = exact.nearest(&r, &[0.0, 0.0], 2, 0, Allow::Passing(&|row| row != 2));
        rank(&r, &mut found.hits, 2);
        assert_eq!(found.hits, [(1.0, 1), (1.0, 3)]);
        let found = exact.nearest(&r, &[0.0, 0.0], 2, 0, Allow::Live { except: Some(2) });
        assert_eq!(found.scanned, 4);
    }

    /// The `k` allowed rows nearest `query` by one distance at a time, ranked.
    fn brute_force(
        r: &Rows,
        metric: Metric,
        query: &[f32],
        k: usize,
        allow: Allow,
    ) -> Vec<(f32, u32)> {
        let mut all: Vec<(f32, u32)> = (0..r.len() as u32)
            .filter(|&row| allow.allows(r, row))
            .map(|row| (kernels::distance(metric, query, r.vector(row)), row))
            .collect();
        rank(r, &mut all, k);
        all
    }

    #[test]
    fn the_parallel_scan_equals_the_serial_one() {
        let vectors: Vec<[f32; 2]> = (0..3 * PARALLEL_MIN_WORK)
            .map(|i| [(i as f32 * 0.7).sin(), ((i % 97) as f32).cos()])
            .collect();
        let r = rows(&vectors);
        let exact = Exact {
            metric: Metric::Dot,
        };
        let allow = Allow::Passing(&|row| row % 3 != 0);
        let mut found = exact.nearest(&r, &[0.3, -0.9], 25, 0, allow);
        rank(&r, &mut found.hits, 25);
        assert_eq!(
            found.hits,
            brute_force(&r, Metric::Dot, &[0.3, -0.9], 25, allow)
        );
        assert_eq!(found.scanned, 2 * PARALLEL_MIN_WORK as u64);
    }

    /// `n` rows of `dim` values from a fixed seed, with many exact ties (repeated rows).
    fn random_rows(n: usize, dim: usize) -> Rows {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let distinct: Vec<Vec<f32>> = (0..n / 2)
            .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let mut rows = Rows::new(dim);
        rows.upsert(
            (0..n)
                .map(|i| NewPoint {
                    id: format!("p{:05}", (i * 7919) % n),
                    vector: distinct[rng.random_range(0..distinct.len())].clone(),
                    payload: Default::default(),
                    text: None,
                })
                .collect(),
        );
        rows
    }

    #[test]
    fn a_batch_finds_what_single_searches_find() {
        let (dim, n) = (37, 5_000);
        let mut r = random_rows(n, dim);
        for i in (0..n).step_by(11) {
            r.remove(&format!("p{i:05}"));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        // 11 queries: blocks of four and a remainder; some are stored rows, tied with copies.
        let queries: Vec<Vec<f32>> = (0..11)
            .map(|q| match q % 3 {
                0 => r.vector(q as u32 * 13).to_vec(),
                _ => (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect(),
            })
            .collect();
        let refs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
        let odd = |row: u32| r.is_live(row) && row % 2 == 1;
        for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
            let exact = Exact { metric };
            for allow in [
                Allow::LIVE,
                Allow::Live { except: Some(13) },
                Allow::Passing(&odd),
            ] {
                for k in [1, 10, 100] {
                    let batch = exact.nearest_batch(&r, &refs, k, allow);
                    assert_eq!(batch.len(), refs.len());
                    for (query, mut found) in refs.iter().zip(batch) {
                        let single = exact.nearest(&r, query, k, 0, allow);
                        assert_eq!(found.scanned, single.scanned);
                        rank(&r, &mut found.hits, k);
                        assert_eq!(
                            found.hits,
                            brute_force(&r, metric, query, k, allow),
                            "{metric:?}, k {k}"
                        );
                    }
                }
            }
        }
    }
}
