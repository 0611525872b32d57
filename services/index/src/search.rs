//! The search structures behind one small trait, so that another one (usearch, a GPU flat
//! scan) can replace or join them: [`Exact`], a scan of every allowed row, and
//! [`crate::hnsw::Hnsw`], the approximate graph. Both read the vectors from [`Rows`] and return
//! row numbers with their distances (see [`crate::kernels`]); the caller ranks, scores and
//! cuts them.

use std::cmp::Ordering;

use rayon::prelude::*;

use crate::kernels;
use crate::rows::Rows;
use crate::types::Metric;

/// Which rows a search may return; tombstones and the query's own point are never allowed.
pub type Allow<'a> = &'a (dyn Fn(u32) -> bool + Sync);

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

/// Rows per parallel piece of a scan; below two pieces the scan stays on the calling thread.
const PIECE: usize = 16_384;

impl NearestIndex for Exact {
    fn extend(&mut self, _: &Rows, _: u32) {}

    fn nearest(&self, rows: &Rows, query: &[f32], k: usize, _: usize, allow: Allow) -> Candidates {
        let n = rows.len();
        let scan = |range: std::ops::Range<usize>| {
            let mut top = TopK::new(rows, k);
            for row in range.map(|r| r as u32).filter(|&r| allow(r)) {
                top.push(kernels::distance(self.metric, query, rows.vector(row)), row);
            }
            top
        };
        let top = if n < 2 * PIECE {
            scan(0..n)
        } else {
            (0..n.div_ceil(PIECE))
                .into_par_iter()
                .map(|p| scan(p * PIECE..((p + 1) * PIECE).min(n)))
                .reduce(|| TopK::new(rows, k), TopK::merge)
        };
        Candidates {
            scanned: top.scanned,
            hits: top.into_hits(),
        }
    }

    fn is_exact(&self) -> bool {
        true
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
    scanned: u64,
}

impl<'a> TopK<'a> {
    fn new(rows: &'a Rows, k: usize) -> Self {
        TopK {
            rows,
            k,
            buffer: Vec::with_capacity(2 * k.max(1)),
            bar: f32::INFINITY,
            scanned: 0,
        }
    }

    #[inline]
    fn push(&mut self, distance: f32, row: u32) {
        self.scanned += 1;
        if distance <= self.bar {
            self.buffer.push((distance, row));
            if self.buffer.len() >= 2 * self.k.max(1) {
                self.shrink();
            }
        }
    }

    fn shrink(&mut self) {
        rank(self.rows, &mut self.buffer, self.k);
        if self.buffer.len() == self.k {
            self.bar = self.buffer.last().map_or(f32::INFINITY, |h| h.0);
        }
    }

    fn merge(mut self, other: TopK<'a>) -> Self {
        self.scanned += other.scanned;
        self.buffer.extend(other.buffer);
        self.shrink();
        self
    }

    fn into_hits(mut self) -> Vec<(f32, u32)> {
        self.shrink();
        self.buffer
    }
}

#[cfg(test)]
mod tests {
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
        let mut found = exact.nearest(&r, &[0.0, 0.0], 3, 0, &|_| true);
        rank(&r, &mut found.hits, 3);
        assert_eq!(found.hits, [(0.0, 2), (1.0, 1), (1.0, 3)]);
        assert_eq!(found.scanned, 5);
        let mut found = exact.nearest(&r, &[0.0, 0.0], 2, 0, &|row| row != 2);
        rank(&r, &mut found.hits, 2);
        assert_eq!(found.hits, [(1.0, 1), (1.0, 3)]);
    }

    #[test]
    fn the_parallel_scan_equals_the_serial_one() {
        let vectors: Vec<[f32; 2]> = (0..3 * PIECE)
            .map(|i| [(i as f32 * 0.7).sin(), ((i % 97) as f32).cos()])
            .collect();
        let r = rows(&vectors);
        let exact = Exact {
            metric: Metric::Dot,
        };
        let mut found = exact.nearest(&r, &[0.3, -0.9], 25, 0, &|row| row % 3 != 0);
        rank(&r, &mut found.hits, 25);
        let mut all: Vec<(f32, u32)> = (0..r.len() as u32)
            .filter(|row| row % 3 != 0)
            .map(|row| {
                (
                    kernels::distance(Metric::Dot, &[0.3, -0.9], r.vector(row)),
                    row,
                )
            })
            .collect();
        rank(&r, &mut all, 25);
        assert_eq!(found.hits, all);
        assert_eq!(found.scanned, 2 * PIECE as u64);
    }
}
