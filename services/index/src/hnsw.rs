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
//! Each search, and each run of inserts, is one SIMD dispatch ([`crate::kernels`]), in which
//! the distances to a row's not yet visited neighbours are computed four rows at a time.
//!
//! There is no removal: a deleted or overwritten row stays in the graph as a waypoint and is
//! filtered out of results by the caller's `allow`; the caller rebuilds the graph when
//! tombstones pile up.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use pulp::{Simd, WithSimd};

use crate::kernels;
use crate::rows::Rows;
use crate::search::{Allow, Candidates, NearestIndex};
use crate::types::{HnswParams, Metric};

/// Highest level a row can get (with m = 4 a level above 16 would take ~4¹⁶ rows).
const MAX_LEVEL: usize = 16;
/// Level of a row not (yet) in the graph.
const ABSENT: u8 = u8::MAX;
/// Most links a row can have (2m with m ≤ 127, as [`Hnsw::new`] clamps it).
const MAX_LINKS: usize = 254;

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

thread_local! {
    /// Each thread's marks of the rows its walks reach, kept from one walk to the next.
    static VISITED: RefCell<Visited> = RefCell::default();
}

/// Rows already reached in one walk: a row is marked when its mark equals the walk's epoch, so
/// that a new walk forgets every mark by moving to the next epoch instead of clearing them
/// (hnswlib's visited list).
#[derive(Default)]
struct Visited {
    marks: Vec<u16>,
    epoch: u16,
}

impl Visited {
    /// Starts a walk over `rows` rows, none of them marked.
    fn start(&mut self, rows: usize) {
        if self.marks.len() < rows {
            self.marks.resize(rows, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `row`; whether it was new.
    #[inline(always)]
    fn insert(&mut self, row: u32) -> bool {
        let mark = &mut self.marks[row as usize];
        let new = *mark != self.epoch;
        *mark = self.epoch;
        new
    }
}

impl Hnsw {
    /// An empty graph; `params` are assumed validated (m ≥ 2).
    pub fn new(metric: Metric, params: HnswParams) -> Self {
        let m = params.m.clamp(2, MAX_LINKS / 2);
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

    #[inline(always)]
    fn distance<S: Simd>(&self, simd: S, a: &[f32], b: &[f32]) -> f32 {
        let [[d]] = kernels::block(simd, self.metric, [a], [b]);
        d
    }

    /// The distances of `query` to the rows `ids`, into `out`: four rows at a time, so that
    /// their loads from memory overlap.
    #[inline(always)]
    fn distances<S: Simd>(
        &self,
        simd: S,
        rows: &Rows,
        query: &[f32],
        ids: &[u32],
        out: &mut [f32],
    ) {
        let mut groups = ids.chunks_exact(4);
        let mut outs = out[..ids.len()].chunks_exact_mut(4);
        for (group, out) in (&mut groups).zip(&mut outs) {
            let vectors: [&[f32]; 4] = std::array::from_fn(|i| rows.vector(group[i]));
            let ds = kernels::block(simd, self.metric, vectors, [query]);
            for (o, [d]) in out.iter_mut().zip(ds) {
                *o = d;
            }
        }
        for (&id, o) in groups.remainder().iter().zip(outs.into_remainder()) {
            *o = self.distance(simd, query, rows.vector(id));
        }
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

    #[inline(always)]
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
    #[inline(always)]
    fn insert<S: Simd>(&mut self, simd: S, rows: &Rows, row: u32, visited: &mut Visited) {
        let query = rows.vector(row);
        let level = self.level_of(row);
        self.levels[row as usize] = level as u8;
        self.upper[row as usize] = vec![Vec::new(); level];
        let Some(entry) = self.entry else {
            (self.entry, self.top) = (Some(row), level);
            return;
        };
        let mut nearest = Near(self.distance(simd, query, rows.vector(entry)), entry);
        for layer in (level + 1..=self.top).rev() {
            nearest = self.greedy(simd, rows, query, nearest, layer).0;
        }
        for layer in (0..=level.min(self.top)).rev() {
            let ef = self.ef_construction;
            let found = self.search_layer(simd, rows, query, nearest, ef, layer, None, visited);
            let chosen = self.select(simd, rows, &found.0, self.m);
            self.set_links(row, layer, &chosen);
            for &neighbour in &chosen {
                self.connect(simd, rows, neighbour, row, layer);
            }
            nearest = found.0[0];
        }
        if level > self.top {
            (self.entry, self.top) = (Some(row), level);
        }
    }

    /// Adds `new` to `row`'s links on `layer`, pruning them with the heuristic when full.
    #[inline(always)]
    fn connect<S: Simd>(&mut self, simd: S, rows: &Rows, row: u32, new: u32, layer: usize) {
        let cap = if layer == 0 { self.m0 } else { self.m };
        let links = self.links(row, layer);
        if links.len() < cap {
            let mut grown = links.to_vec();
            grown.push(new);
            self.set_links(row, layer, &grown);
            return;
        }
        let mut ids = [0u32; MAX_LINKS + 1];
        ids[..links.len()].copy_from_slice(links);
        ids[links.len()] = new;
        let ids = &ids[..links.len() + 1];
        let mut ds = [0f32; MAX_LINKS + 1];
        self.distances(simd, rows, rows.vector(row), ids, &mut ds);
        let mut candidates: Vec<Near> = ids.iter().zip(ds).map(|(&n, d)| Near(d, n)).collect();
        candidates.sort_unstable();
        let kept = self.select(simd, rows, &candidates, cap);
        self.set_links(row, layer, &kept);
    }

    /// The paper's neighbour heuristic (its algorithm 4): from `candidates`, nearest first,
    /// keep one only if it is nearer the base than to every one kept, so that links spread in
    /// all directions instead of crowding into one cluster.
    #[inline(always)]
    fn select<S: Simd>(&self, simd: S, rows: &Rows, candidates: &[Near], m: usize) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for &Near(d, c) in candidates {
            if kept.len() >= m {
                break;
            }
            // Four of the kept at a time: one distance alone waits on its memory and its
            // sums. A loop, not `all`: a closure may stay out of the dispatched code.
            let mut diverse = true;
            let mut ds = [0f32; 4];
            for group in kept.chunks(4) {
                self.distances(simd, rows, rows.vector(c), group, &mut ds);
                if ds[..group.len()].iter().any(|&k| k < d) {
                    diverse = false;
                    break;
                }
            }
            if diverse {
                kept.push(c);
            }
        }
        kept
    }

    /// Walks `layer` greedily to the nearest row it can reach from `start`.
    #[inline(always)]
    fn greedy<S: Simd>(
        &self,
        simd: S,
        rows: &Rows,
        query: &[f32],
        start: Near,
        layer: usize,
    ) -> (Near, u64) {
        let (mut best, mut scanned) = (start, 0);
        let mut ds = [0f32; MAX_LINKS];
        loop {
            let links = self.links(best.1, layer);
            self.distances(simd, rows, query, links, &mut ds);
            scanned += links.len() as u64;
            let mut moved = false;
            for (&n, &d) in links.iter().zip(&ds) {
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
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn search_layer<S: Simd>(
        &self,
        simd: S,
        rows: &Rows,
        query: &[f32],
        start: Near,
        ef: usize,
        layer: usize,
        allow: Option<Allow>,
        visited: &mut Visited,
    ) -> (Vec<Near>, u64) {
        let allowed = |row| allow.is_none_or(|a| a.allows(rows, row));
        visited.start(self.levels.len());
        visited.insert(start.1);
        let mut candidates = BinaryHeap::from([Reverse(start)]);
        let mut results = BinaryHeap::with_capacity(ef + 1);
        if allowed(start.1) {
            results.push(start);
        }
        let mut bar = results.peek().map_or(f32::INFINITY, |n: &Near| n.0);
        let mut scanned = 0;
        let (mut fresh, mut ds) = ([0u32; MAX_LINKS], [0f32; MAX_LINKS]);
        while let Some(Reverse(current)) = candidates.pop() {
            if current.0 > bar && (results.len() >= ef || allow.is_none()) {
                break;
            }
            // The rows not reached yet, scored together.
            let mut len = 0;
            for &n in self.links(current.1, layer) {
                fresh[len] = n;
                len += usize::from(visited.insert(n));
            }
            self.distances(simd, rows, query, &fresh[..len], &mut ds);
            scanned += len as u64;
            for (&n, &d) in fresh[..len].iter().zip(&ds) {
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

/// Links rows `from..` into a graph, under one SIMD dispatch.
struct Extend<'a> {
    graph: &'a mut Hnsw,
    rows: &'a Rows,
    from: u32,
    visited: &'a mut Visited,
}

impl WithSimd for Extend<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        for row in self.from..self.rows.len() as u32 {
            if self.rows.is_live(row) && self.graph.levels[row as usize] == ABSENT {
                self.graph.insert(simd, self.rows, row, self.visited);
            }
        }
    }
}

/// One search, under one SIMD dispatch.
struct Walk<'a> {
    graph: &'a Hnsw,
    rows: &'a Rows,
    query: &'a [f32],
    entry: u32,
    ef: usize,
    allow: Allow<'a>,
    visited: &'a mut Visited,
}

impl WithSimd for Walk<'_> {
    type Output = Candidates;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Candidates {
        let (graph, rows, query) = (self.graph, self.rows, self.query);
        let entry = self.entry;
        let mut nearest = Near(graph.distance(simd, query, rows.vector(entry)), entry);
        let mut scanned = 1;
        for layer in (1..=graph.top).rev() {
            let (n, s) = graph.greedy(simd, rows, query, nearest, layer);
            (nearest, scanned) = (n, scanned + s);
        }
        let (found, s) = graph.search_layer(
            simd,
            rows,
            query,
            nearest,
            self.ef,
            0,
            Some(self.allow),
            self.visited,
        );
        Candidates {
            hits: found.into_iter().map(|Near(d, r)| (d, r)).collect(),
            scanned: scanned + s,
        }
    }
}

impl NearestIndex for Hnsw {
    fn extend(&mut self, rows: &Rows, from: u32) {
        let n = rows.len();
        self.levels.resize(n, ABSENT);
        self.count0.resize(n, 0);
        self.links0.resize(n * self.m0, 0);
        self.upper.resize(n, Vec::new());
        VISITED.with_borrow_mut(|visited| {
            pulp::Arch::new().dispatch(Extend {
                graph: self,
                rows,
                from,
                visited,
            })
        });
    }

    fn nearest(&self, rows: &Rows, query: &[f32], k: usize, ef: usize, allow: Allow) -> Candidates {
        let Some(entry) = self.entry else {
            return Candidates::default();
        };
        VISITED.with_borrow_mut(|visited| {
            pulp::Arch::new().dispatch(Walk {
                graph: self,
                rows,
                query,
                entry,
                ef: ef.max(k),
                allow,
                visited,
            })
        })
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
            let mut a = graph.nearest(&rows, &q, 5, 64, Allow::LIVE).hits;
            let mut b = exact.nearest(&rows, &q, 5, 0, Allow::LIVE).hits;
            rank(&rows, &mut a, 5);
            rank(&rows, &mut b, 5);
            assert_eq!(a, b, "query {q:?}");
        }
    }

    #[test]
    fn a_filter_still_gets_k_hits_and_only_allowed_ones() {
        let rows = grid(400);
        let graph = Hnsw::build(&rows, Metric::L2, HnswParams::default());
        let found = graph.nearest(&rows, &[0.0, 0.0], 10, 50, Allow::Passing(&|r| r % 7 == 3));
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
