//! One collection's search structures in memory, derived from its rows and disposable: the
//! rows themselves (searched exactly) and, for HNSW collections and AUTO ones past the
//! threshold, a graph over them. This is where a search is planned: exact, HNSW, or HNSW that
//! falls back to exact so that a filter never costs hits.

use crate::error::Error;
use crate::filter::Filter;
use crate::hnsw::Hnsw;
use crate::kernels;
use crate::rows::Rows;
use crate::search::{rank, Allow, Candidates, Exact, NearestIndex};
use crate::types::{Found, HnswParams, IndexKind, Metric, NewPoint, Query, Search, Spec, With};

/// A filter passing at most this share of the points is searched exactly: the scan of the
/// passing rows is then cheaper than a graph walk that must step over the others, and it
/// never misses.
const SELECTIVE: usize = 10;
/// A graph search that found fewer than `k` allowed hits is retried with this many times
/// the search list, up to this list size, then the allowed rows are scanned exactly.
const EF_GROWTH: usize = 4;
const MAX_EF: usize = 4096;

/// When the service builds and drops graphs.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// AUTO collections get a graph at this many points. They keep it until they fall under
    /// half of it, so that a collection hovering at the threshold is not rebuilt at every write.
    pub hnsw_threshold: usize,
}

/// See the module documentation.
pub struct Indexes {
    pub rows: Rows,
    graph: Option<Hnsw>,
    metric: Metric,
    kind: IndexKind,
    params: HnswParams,
}

impl Indexes {
    /// Structures for `rows` of the collection `spec`, built as `policy` says.
    pub fn build(spec: &Spec, rows: Rows, policy: Policy) -> Self {
        let mut indexes = Indexes {
            rows,
            graph: None,
            metric: spec.metric,
            kind: spec.index,
            params: spec.hnsw,
        };
        if indexes.wants_graph(policy) {
            indexes.graph = Some(Hnsw::build(&indexes.rows, spec.metric, spec.hnsw));
        }
        indexes
    }

    /// How a search without `exact` runs now.
    pub fn searched_with(&self) -> IndexKind {
        match self.graph {
            Some(_) => IndexKind::Hnsw,
            None => IndexKind::Exact,
        }
    }

    fn wants_graph(&self, policy: Policy) -> bool {
        let live = self.rows.live_count();
        match self.kind {
            IndexKind::Exact => false,
            IndexKind::Hnsw => true,
            IndexKind::Auto if self.graph.is_some() => live >= policy.hnsw_threshold / 2,
            IndexKind::Auto => live >= policy.hnsw_threshold,
        }
    }

    /// Applies committed upserts: new rows, tombstones for the ones they replace, and the new
    /// rows linked into the graph.
    pub fn upsert(&mut self, points: Vec<NewPoint>) {
        let from = self.rows.upsert(points);
        if let Some(graph) = &mut self.graph {
            graph.extend(&self.rows, from);
        }
    }

    /// Applies committed deletes; how many of the ids were stored.
    pub fn delete(&mut self, ids: &[String]) -> usize {
        ids.iter().filter(|id| self.rows.remove(id)).count()
    }

    /// The ids of the stored points that pass `filter`.
    pub fn matching(&self, filter: &Filter) -> Vec<String> {
        (0..self.rows.len() as u32)
            .filter(|&r| self.rows.is_live(r) && filter.matches(self.rows.payload(r)))
            .map(|r| self.rows.id(r).to_string())
            .collect()
    }

    /// Whether [`Indexes::rebuilt`] is due: tombstones past a fifth of the rows, or a graph to
    /// build or drop.
    pub fn needs_rebuild(&self, policy: Policy) -> bool {
        self.rows.dead_count() * 5 > self.rows.len()
            || self.wants_graph(policy) != self.graph.is_some()
    }

    /// The same points without tombstones, with a graph if `policy` wants one. Built from
    /// `&self`, so searches go on against the old structures while this runs.
    pub fn rebuilt(&self, policy: Policy) -> Indexes {
        let rows = if self.rows.dead_count() > 0 {
            self.rows.compacted()
        } else {
            self.rows.clone()
        };
        let mut fresh = Indexes {
            rows,
            graph: self
                .graph
                .as_ref()
                .map(|_| Hnsw::new(self.metric, self.params)),
            metric: self.metric,
            kind: self.kind,
            params: self.params,
        };
        fresh.graph = fresh
            .wants_graph(policy)
            .then(|| Hnsw::build(&fresh.rows, self.metric, self.params));
        fresh
    }

    /// Runs a search of the collection `collection` (named in errors).
    pub fn search(&self, collection: &str, s: &Search) -> Result<Found, Error> {
        let rows = &self.rows;
        let (query, exclude) = self.query(collection, s)?;
        let filter = s.filter.as_ref().filter(|f| !f.is_empty());
        let (found, exact) = match (&self.graph, s.exact) {
            (Some(graph), false) => {
                let ef = s.ef_search.unwrap_or(self.params.ef_search);
                self.approximate(graph, query, s.top_k, ef, exclude, filter)
            }
            _ => {
                let passing = |r| {
                    rows.is_live(r)
                        && Some(r) != exclude
                        && filter.is_some_and(|f| f.matches(rows.payload(r)))
                };
                let allow = match filter {
                    Some(_) => Allow::Passing(&passing),
                    None => Allow::Live { except: exclude },
                };
                (self.exact().nearest(rows, query, s.top_k, 0, allow), true)
            }
        };
        Ok(self.answer(s, found, exact))
    }

    /// Runs searches of the collection `collection`, answering each as [`Indexes::search`]
    /// would. The ones that scan every point for a vector, unfiltered, share one pass over the
    /// rows ([`Exact::nearest_batch`]); the others run one by one.
    pub fn search_batch(&self, collection: &str, searches: &[Search]) -> Result<Vec<Found>, Error> {
        let shared = |s: &Search| {
            matches!(s.query, Query::Vector(_))
                && s.filter.as_ref().is_none_or(Filter::is_empty)
                && (s.exact || self.graph.is_none())
        };
        let scans: Vec<usize> = (0..searches.len())
            .filter(|&i| shared(&searches[i]))
            .collect();
        let mut answers: Vec<Option<Found>> = searches.iter().map(|_| None).collect();
        if scans.len() > 1 {
            let queries = scans
                .iter()
                .map(|&i| self.query(collection, &searches[i]).map(|(q, _)| q))
                .collect::<Result<Vec<_>, _>>()?;
            // The longest list serves every query: a query's best k are the first k of it.
            let k = scans.iter().map(|&i| searches[i].top_k).max().unwrap_or(0);
            let found = self
                .exact()
                .nearest_batch(&self.rows, &queries, k, Allow::LIVE);
            for (&i, found) in scans.iter().zip(found) {
                answers[i] = Some(self.answer(&searches[i], found, true));
            }
        }
        searches
            .iter()
            .zip(answers)
            .map(|(s, answer)| answer.map_or_else(|| self.search(collection, s), Ok))
            .collect()
    }

    /// The vector a search starts from, and the row it names, which is not to be found.
    fn query<'a>(
        &'a self,
        collection: &str,
        s: &'a Search,
    ) -> Result<(&'a [f32], Option<u32>), Error> {
        let rows = &self.rows;
        let (query, exclude) = match &s.query {
            Query::Vector(v) => (v.as_slice(), None),
            Query::Text(_) => {
                return Err(Error::Internal(
                    "a text query reached the index unembedded; this is a bug".into(),
                ))
            }
            Query::Id(id) => {
                let row = rows.row_of(id).ok_or_else(|| Error::NoPoint {
                    collection: collection.to_string(),
                    id: id.clone(),
                })?;
                (rows.vector(row), Some(row))
            }
        };
        if query.len() != rows.dim() {
            return Err(Error::invalid(
                "vector",
                format!(
                    "`vector` has {} values but collection `{collection}` holds {}-dimensional vectors",
                    query.len(),
                    rows.dim()
                ),
            ));
        }
        Ok((query, exclude))
    }

    /// The answer to `s` from its candidates: ranked, cut, scored and thresholded.
    fn answer(&self, s: &Search, mut found: Candidates, exact: bool) -> Found {
        let rows = &self.rows;
        rank(rows, &mut found.hits, s.top_k);
        let with = With {
            payload: s.with_payload,
            vector: s.with_vector,
        };
        let hits = found
            .hits
            .into_iter()
            .map(|(d, row)| (kernels::score(self.metric, d), row))
            .filter(|&(score, _)| s.passes(self.metric, score))
            .map(|(score, row)| rows.record(row, score, with))
            .collect();
        Found {
            hits,
            exact,
            candidates_scanned: found.scanned,
        }
    }

    fn exact(&self) -> Exact {
        Exact {
            metric: self.metric,
        }
    }

    /// A graph search that never returns fewer than `k` hits when `k` allowed points exist:
    /// selective filters are scanned exactly; otherwise the walk is retried with a longer
    /// search list, and as a last resort the allowed rows are scanned. Returns whether the
    /// answer came from an exact scan.
    fn approximate(
        &self,
        graph: &Hnsw,
        query: &[f32],
        k: usize,
        ef: usize,
        exclude: Option<u32>,
        filter: Option<&Filter>,
    ) -> (Candidates, bool) {
        let rows = &self.rows;
        // With a filter, the rows that pass are marked once, so that the walk and any exact
        // fallback test a bit rather than the payload, and their count is known.
        let mask: Option<Vec<bool>> = filter.map(|f| {
            (0..rows.len() as u32)
                .map(|r| rows.is_live(r) && Some(r) != exclude && f.matches(rows.payload(r)))
                .collect()
        });
        let by_mask = |r: u32| mask.as_ref().is_some_and(|m| m[r as usize]);
        let (allow, allowed) = match &mask {
            Some(m) => (Allow::Passing(&by_mask), m.iter().filter(|&&b| b).count()),
            None => (
                Allow::Live { except: exclude },
                rows.live_count() - usize::from(exclude.is_some()),
            ),
        };
        let ef = ef.max(k);
        if mask.is_some() && allowed <= ef.max(rows.live_count() / SELECTIVE) {
            return (self.exact().nearest(rows, query, k, 0, allow), true);
        }
        let (want, mut ef, mut scanned) = (k.min(allowed), ef, 0);
        loop {
            let mut found = graph.nearest(rows, query, k, ef, allow);
            scanned += found.scanned;
            if found.hits.len() >= want {
                found.scanned = scanned;
                return (found, false);
            }
            if ef >= allowed || ef >= MAX_EF {
                break;
            }
            ef = (ef * EF_GROWTH).min(MAX_EF);
        }
        let mut found = self.exact().nearest(rows, query, k, 0, allow);
        found.scanned += scanned;
        (found, true)
    }
}
