//! A hierarchical navigable small-world graph (Malkov & Yashunin, "Efficient and robust
//! approximate nearest neighbor search using Hierarchical Navigable Small World graphs", TPAMI
//! 2018), over the rows of a [`Rows`] table, searched the way hnswlib does.
//!
//! Written here rather than taken from `hnsw_rs` 0.3.5, whose graph keeps its own copy of every
//! vector (twice the memory of the flat rows), whose filtered search does not stop once its
//! list is full, and which asserts (panics) on negative distances, which dot-product ranking
//! produces. This one stores only links (u32 row numbers), never panics on data, and is
//! deterministic: a row's level comes from a hash of its number.
//!
//! There is no removal: a deleted or overwritten row stays in the graph as a waypoint and is
//! filtered out of results by the caller's `allow`; the caller rebuilds the graph when
//! tombstones pile up.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::kernels;
use crate::rows::Rows;
use crate::search::{Allow, Candidates, NearestIndex};
use crate::types::{HnswParams, Metric};

/// Highest level a row can get (with m = 4 a level above 16 would take ~4¹⁶ rows).
const MAX_LEVEL: usize = 16;
/// Level of a row not (yet) in the graph.
const ABSENT: u8 = u8::MAX;

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct Hnsw {
    metric: Metric,
    /// Links kept per row above layer 0.
    m: usize,
    /// Links kept per row in layer 0 (2m, as the paper advises).
    m0: usize,
    ef_construction: usize,
    /// 1 / ln(m): the paper's mL.
    level_scale: f64,
    /// Each row's top layer, or [`ABSENT`].
    levels: Vec<u8>,
    /// Layer-0 links: row r's are `links0[r*m0 .. r*m0 + count0[r]]`.
    links0: Vec<u32>,
    count0: Vec<u8>,
    /// Links above layer 0: `upper[r][l - 1]`, for the few rows with a level above 0.
    upper: Vec<Vec<Vec<u32>>>,
    /// The row the searches start from, on the top layer.
    entry: Option<u32>,
    top: usize,
}

/// A row with its distance to the query, ordered by distance (then row, for a total order).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Near(f32, u32);

impl Eq for Near {}

impl Ord for Near {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Rows already reached in one walk.
struct Visited(Vec<u64>);

impl Visited {
    fn new(rows: usize) -> Self {
        Visited(vec![0; rows.div_ceil(64)])
    }

    /// Marks `row`; whether it was new.
    fn insert(&mut self, row: u32) -> bool {
        let (word, bit) = (row as usize / 64, 1u64 << (row % 64));
        let new = self.0[word] & bit == 0;
        self.0[word] |= bit;
        new
    }
}

impl Hnsw {
    /// An empty graph; `params` are assumed validated (m ≥ 2).
    pub fn new(metric: Metric, params: HnswParams) -> Self {
        let m = params.m.clamp(2, 127);
        Hnsw {
            metric,
            m,
            m0: 2 * m,
            ef_construction: params.ef_construction.max(m),
            level_scale: 1.0 / (m as f64).ln(),
            levels: Vec::new(),
            links0: Vec::new(),
            count0: Vec::new(),
            upper: Vec::new(),
            entry: None,
            top: 0,
        }
    }

    /// A graph of every live row.
    pub fn build(rows: &Rows, metric: Metric, params: HnswParams) -> Self {
        let mut graph = Hnsw::new(metric, params);
        graph.extend(rows, 0);
        graph
    }

    /// Rows linked into the graph.
    pub fn len(&self) -> usize {
        self.levels.iter().filter(|&&l| l != ABSENT).count()
    }

    pub fn is_empty(&self) -> bool {
        self.entry.is_none()
    }

    fn distance(&self, a: &[f32], b: &[f32]) -> f32 {
        kernels::distance(self.metric, a, b)
    }

    /// The paper's ⌊−ln(u)·mL⌋ with u uniform in (0, 1], u taken from a hash of the row.
    fn level_of(&self, row: u32) -> usize {
        let mut z = u64::from(row).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        ((-u.ln() * self.level_scale) as usize).min(MAX_LEVEL)
    }

    fn links(&self, row: u32, layer: usize) -> &[u32] {
        let r = row as usize;
        if layer == 0 {
            &self.links0[r * self.m0..r * self.m0 + self.count0[r] as usize]
        } else {
            &self.upper[r][layer - 1]
        }
    }

    fn set_links(&mut self, row: u32, layer: usize, links: &[u32]) {
        let r = row as usize;
        if layer == 0 {
            self.links0[r * self.m0..r * self.m0 + links.len()].copy_from_slice(links);
            self.count0[r] = links.len() as u8;
        } else {
            self.upper[r][layer - 1] = links.to_vec();
        }
    }

    /// Links `row` into the graph.
    fn insert(&mut self, rows: &Rows, row: u32) {
        let query = rows.vector(row);
        let level = self.level_of(row);
        self.levels[row as usize] = level as u8;
        self.upper[row as usize] = vec![Vec::new(); level];
        let Some(entry) = self.entry else {
            (self.entry, self.top) = (Some(row), level);
            return;
        };
        let mut nearest = Near(self.distance(query, rows.vector(entry)), entry);
        for layer in (level + 1..=self.top).rev() {
            nearest = self.greedy(rows, query, nearest, layer).0;
        }
        for layer in (0..=level.min(self.top)).rev() {
            let found = self.search_layer(rows, query, nearest, self.ef_construction, layer, None);
            let chosen = self.select(rows, &found.0, self.m);
            self.set_links(row, layer, &chosen);
            for &neighbour in &chosen {
                self.connect(rows, neighbour, row, layer);
            }
            nearest = found.0[0];
        }
        if level > self.top {
            (self.entry, self.top) = (Some(row), level);
        }
    }

    /// Adds `new` to `row`'s links on `layer`, pruning them with the heuristic when full.
    fn connect(&mut self, rows: &Rows, row: u32, new: u32, layer: usize) {
        let cap = if layer == 0 { self.m0 } else { self.m };
        let links = self.links(row, layer);
        if links.len() < cap {
            let mut grown = links.to_vec();
            grown.push(new);
            self.set_links(row, layer, &grown);
            return;
        }
        let base = rows.vector(row);
        let mut candidates: Vec<Near> = links
            .iter()
            .chain(std::iter::once(&new))
            .map(|&n| Near(self.distance(base, rows.vector(n)), n))
            .collect();
        candidates.sort_unstable();
        let kept = self.select(rows, &candidates, cap);
        self.set_links(row, layer, &kept);
    }

    /// The paper's neighbour heuristic (its algorithm 4): from `candidates`, nearest first,
    /// keep one only if it is nearer the base than to every one kept, so that links spread in
    /// all directions instead of crowding into one cluster.
    fn select(&self, rows: &Rows, candidates: &[Near], m: usize) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for &Near(d, c) in candidates {
            if kept.len() >= m {
                break;
            }
            let v = rows.vector(c);
            if kept.iter().all(|&k| self.distance(v, rows.vector(k)) >= d) {
                kept.push(c);
            }
        }
        kept
    }

    /// Walks `layer` greedily to the nearest row it can reach from `start`.
    fn greedy(&self, rows: &Rows, query: &[f32], start: Near, layer: usize) -> (Near, u64) {
        let (mut best, mut scanned) = (start, 0);
        loop {
            let mut moved = false;
            for &n in self.links(best.1, layer) {
                let d = self.distance(query, rows.vector(n));
                scanned += 1;
                if d < best.0 {
                    (best, moved) = (Near(d, n), true);
                }
            }
            if !moved {
                return (best, scanned);
            }
        }
    }

    /// The paper's algorithm 2, with hnswlib's filter: every row reached is a waypoint, but
    /// only allowed rows enter the `ef` results, and the walk goes on while the results are not
    /// full. Returns the results nearest first, and the distances computed.
    fn search_layer(
        &self,
        rows: &Rows,
        query: &[f32],
        start: Near,
        ef: usize,
        layer: usize,
        allow: Option<Allow>,
    ) -> (Vec<Near>, u64) {
        let allowed = |row| allow.is_none_or(|a| a(row));
        let mut visited = Visited::new(self.levels.len());
        visited.insert(start.1);
        let mut candidates = BinaryHeap::from([Reverse(start)]);
        let mut results = BinaryHeap::with_capacity(ef + 1);
        if allowed(start.1) {
            results.push(start);
        }
        let mut bar = results.peek().map_or(f32::INFINITY, |n: &Near| n.0);
        let mut scanned = 0;
        while let Some(Reverse(current)) = candidates.pop() {
            if current.0 > bar && (results.len() >= ef || allow.is_none()) {
                break;
            }
            for &n in self.links(current.1, layer) {
                if !visited.insert(n) {
                    continue;
                }
                let d = self.distance(query, rows.vector(n));
                scanned += 1;
                if results.len() < ef || d < bar {
                    candidates.push(Reverse(Near(d, n)));
                    if allowed(n) {
                        results.push(Near(d, n));
                        if results.len() > ef {
                            results.pop();
                        }
                        bar = results.peek().map_or(f32::INFINITY, |n| n.0);
                    }
                }
            }
        }
        (results.into_sorted_vec(), scanned)
    }
}

impl NearestIndex for Hnsw {
    fn extend(&mut self, rows: &Rows, from: u32) {
        let n = rows.len();
        self.levels.resize(n, ABSENT);
        self.count0.resize(n, 0);
        self.links0.resize(n * self.m0, 0);
        self.upper.resize(n, Vec::new());
        for row in from..n as u32 {
            if rows.is_live(row) && self.levels[row as usize] == ABSENT {
                self.insert(rows, row);
            }
        }
    }

    fn nearest(&self, rows: &Rows, query: &[f32], k: usize, ef: usize, allow: Allow) -> Candidates {
        let Some(entry) = self.entry else {
            return Candidates::default();
        };
        let mut nearest = Near(self.distance(query, rows.vector(entry)), entry);
        let mut scanned = 1;
        for layer in (1..=self.top).rev() {
            let (n, s) = self.greedy(rows, query, nearest, layer);
            (nearest, scanned) = (n, scanned + s);
        }
        let (found, s) = self.search_layer(rows, query, nearest, ef.max(k), 0, Some(allow));
        Candidates {
            hits: found.into_iter().map(|Near(d, r)| (d, r)).collect(),
            scanned: scanned + s,
        }
    }

    fn is_exact(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::{rank, Exact};
    use crate::types::NewPoint;

    fn grid(n: usize) -> Rows {
        let mut rows = Rows::new(2);
        rows.upsert(
            (0..n)
                .map(|i| NewPoint {
                    id: format!("{i:04}"),
                    vector: vec![(i % 20) as f32, (i / 20) as f32],
                    payload: Default::default(),
                    text: None,
                })
                .collect(),
        );
        rows
    }

    #[test]
    fn finds_what_the_exact_scan_finds_on_a_small_grid() {
        let rows = grid(400);
        let graph = Hnsw::build(&rows, Metric::L2, HnswParams::default());
        assert_eq!(graph.len(), 400);
        let exact = Exact { metric: Metric::L2 };
        for q in [[3.2, 7.9], [19.5, 0.1], [-4.0, 30.0]] {
            let mut a = graph.nearest(&rows, &q, 5, 64, &|_| true).hits;
            let mut b = exact.nearest(&rows, &q, 5, 0, &|_| true).hits;
            rank(&rows, &mut a, 5);
            rank(&rows, &mut b, 5);
            assert_eq!(a, b, "query {q:?}");
        }
    }

    #[test]
    fn a_filter_still_gets_k_hits_and_only_allowed_ones() {
        let rows = grid(400);
        let graph = Hnsw::build(&rows, Metric::L2, HnswParams::default());
        let found = graph.nearest(&rows, &[0.0, 0.0], 10, 50, &|r| r % 7 == 3);
        assert!(found.hits.len() >= 10);
        assert!(found.hits.iter().all(|&(_, r)| r % 7 == 3));
    }

    #[test]
    fn levels_are_deterministic_and_mostly_zero() {
        let graph = Hnsw::new(Metric::Dot, HnswParams::default());
        let levels: Vec<usize> = (0..10_000).map(|r| graph.level_of(r)).collect();
        assert_eq!(
            levels,
            (0..10_000).map(|r| graph.level_of(r)).collect::<Vec<_>>()
        );
        let zero = levels.iter().filter(|&&l| l == 0).count();
        // P(level 0) = 1 − 1/m = 15/16.
        assert!((9_200..9_550).contains(&zero), "{zero}");
    }
}
