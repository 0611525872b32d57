//! Items 4 and 5: a collection's search structures as the service builds and plans them
//! (`oneword_index::indexes::Indexes`, kind HNSW, which builds an `oneword_index::hnsw::Hnsw`
//! over the rows), without gRPC. The build is timed; then a sweep of `ef_search`, one query at
//! a time on one thread, gives recall@k against the brute-force truth and QPS; then a payload
//! filter that 1% of the points pass goes through the same planner (its exact fallback).

use std::time::Instant;

use oneword_index::filter::{Condition, Filter, Test};
use oneword_index::indexes::{Indexes, Policy};
use oneword_index::rows::Rows;
use oneword_index::types::{HnswParams, IndexKind, Metric, Query, Search, Spec};
use serde_json::{json, Value};

use crate::data::{latency_summary, median, num, pool, recall, Matrix};

pub struct Options {
    pub k: usize,
    pub m: usize,
    pub ef_construction: usize,
    pub ef: Vec<usize>,
    pub filter_queries: usize,
    /// Passes over the queries per `ef` (the median QPS is reported).
    pub repeat: usize,
    /// Points whose `bucket` is this pass the filter (`bucket` = row % 100).
    pub bucket: i64,
}

/// The payload key whose value is `row % 100`, so that one value passes 1% of the points.
pub const BUCKETS: usize = 100;

fn search(query: &[f32], k: usize, ef: usize, filter: Option<Filter>) -> Search {
    Search {
        query: Query::Vector(query.to_vec()),
        top_k: k,
        filter,
        score_threshold: None,
        with_payload: false,
        with_vector: false,
        exact: false,
        ef_search: Some(ef),
    }
}

/// Row numbers of a search's hits (the bench names each point by its zero-padded row).
fn rows_of(found: &oneword_index::types::Found) -> Vec<u32> {
    found
        .hits
        .iter()
        .map(|h| h.id.parse().expect("the bench's ids are row numbers"))
        .collect()
}

pub fn run(rows: Rows, queries: &Matrix, truth: &[Vec<u32>], o: &Options) -> anyhow::Result<Value> {
    let points = rows.live_count();
    let (indexes, build_s) = build(rows, o.m, o.ef_construction)?;
    eprintln!("search bench: HNSW build of {points} points: {build_s:.1} s (one thread)");

    let sweep = sweep(&indexes, queries, truth, o.k, &o.ef, o.repeat)?;
    let hnsw = json!({
        "system": "oneword Hnsw",
        "points": points,
        "m": o.m,
        "ef_construction": o.ef_construction,
        "build_s": build_s,
        "threads": 1,
        "sweep": sweep,
        "notes": [
            "Indexes::search (the service's planner, kind HNSW) without gRPC: Hnsw::nearest, rank, records",
            "QPS: the median of `repeat` passes over every query, one query at a time",
        ],
    });
    let filtered = filtered(&indexes, queries, o)?;
    Ok(json!({"hnsw": hnsw, "filtered": filtered}))
}

/// Builds an HNSW collection's structures over `rows` as the service does (`Indexes`, cosine),
/// with the seconds it took.
pub fn build(rows: Rows, m: usize, ef_construction: usize) -> anyhow::Result<(Indexes, f64)> {
    let spec = Spec {
        name: "bench".into(),
        model: String::new(),
        dimension: rows.dim(),
        metric: Metric::Cosine,
        index: IndexKind::Hnsw,
        hnsw: HnswParams {
            m,
            ef_construction,
            ef_search: 100,
        },
        created_us: 0,
    };
    let start = Instant::now();
    let indexes = Indexes::build(&spec, rows, Policy { hnsw_threshold: 1 });
    let build_s = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        indexes.searched_with() == IndexKind::Hnsw,
        "no graph was built"
    );
    Ok((indexes, build_s))
}

/// For each `ef`: recall@k of every query against `truth` and the queries per second, one
/// query at a time on one thread (the median of `repeat` passes), after a warm-up.
pub fn sweep(
    indexes: &Indexes,
    queries: &Matrix,
    truth: &[Vec<u32>],
    k: usize,
    efs: &[usize],
    repeat: usize,
) -> anyhow::Result<Vec<Value>> {
    let one = pool(1);
    let mut sweep = Vec::new();
    for &ef in efs {
        let (qps, mean_recall) = one.install(|| -> anyhow::Result<(f64, f64)> {
            for q in 0..10.min(queries.rows) {
                indexes.search("bench", &search(queries.row(q), k, ef, None))?;
            }
            let (mut qps, mut recalls) = (Vec::new(), Vec::new());
            for _ in 0..repeat {
                recalls.clear();
                let started = Instant::now();
                for (q, truth) in truth.iter().enumerate().take(queries.rows) {
                    let found = indexes.search("bench", &search(queries.row(q), k, ef, None))?;
                    recalls.push(recall(&rows_of(&found), &truth[..k]));
                }
                qps.push(queries.rows as f64 / started.elapsed().as_secs_f64());
            }
            Ok((
                median(&qps),
                recalls.iter().sum::<f64>() / recalls.len() as f64,
            ))
        })?;
        eprintln!("search bench: HNSW ef {ef}: recall@{k} {mean_recall:.4}, {qps:.0} QPS");
        sweep.push(json!({"ef": ef, "recall": mean_recall, "qps": qps}));
    }
    Ok(sweep)
}

/// Item 5: `bucket == o.bucket` (1% of the points) through the planner, whose answer must
/// hold k hits (1,000 points pass) and equal the brute force over the passing points.
fn filtered(indexes: &Indexes, queries: &Matrix, o: &Options) -> anyhow::Result<Value> {
    let rows = &indexes.rows;
    let filter = Filter {
        must: vec![Condition::Field {
            path: vec!["bucket".into()],
            test: Test::Integer(o.bucket),
        }],
        ..Default::default()
    };
    let passing: Vec<u32> = (0..rows.len() as u32)
        .filter(|&r| filter.matches(rows.payload(r)))
        .collect();
    let n = o.filter_queries.min(queries.rows);
    let mut runs = Vec::new();
    for (threads, k) in [(1, o.k), (2, o.k), (1, 100)] {
        let result = pool(threads).install(|| -> anyhow::Result<Value> {
            let (mut ms, mut recalls) = (Vec::new(), Vec::new());
            let (mut short, mut foreign, mut exact) = (0, 0, 0);
            let started = Instant::now();
            for q in 0..n {
                let query = queries.row(q);
                let start = Instant::now();
                let found =
                    indexes.search("bench", &search(query, k, 100, Some(filter.clone())))?;
                ms.push(start.elapsed().as_secs_f64() * 1e3);
                let hits = rows_of(&found);
                short += usize::from(hits.len() < k.min(passing.len()));
                foreign += hits.iter().filter(|&&r| !passing.contains(&r)).count();
                exact += usize::from(found.exact);
                recalls.push(recall(&hits, &brute_force(rows, &passing, query, k)));
            }
            let mut out = latency_summary(&ms, started.elapsed().as_secs_f64());
            out["threads"] = json!(threads);
            out["k"] = json!(k);
            out["answers_short_of_k"] = json!(short);
            out["hits_failing_the_filter"] = json!(foreign);
            out["answered_exactly"] = json!(exact);
            out["recall"] = json!(recalls.iter().sum::<f64>() / n as f64);
            Ok(out)
        })?;
        eprintln!(
            "search bench: filtered 1%, k {k}, {threads} thread(s): p50 {:.2} ms, short answers {}",
            num(&result["p50_ms"]),
            result["answers_short_of_k"]
        );
        runs.push(result);
    }
    Ok(json!({
        "system": "oneword Indexes (HNSW collection, payload filter)",
        "points": rows.live_count(),
        "passing": passing.len(),
        "selectivity": passing.len() as f64 / rows.live_count() as f64,
        "filter": format!("must: bucket == {} (bucket = row % {BUCKETS})", o.bucket),
        "runs": runs,
    }))
}

/// The `k` passing rows nearest `query` by a plain f64 loop.
fn brute_force(rows: &Rows, passing: &[u32], query: &[f32], k: usize) -> Vec<u32> {
    let mut scored: Vec<(f64, u32)> = passing
        .iter()
        .map(|&r| {
            let dot: f64 = query
                .iter()
                .zip(rows.vector(r))
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            (dot, r)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, r)| r).collect()
}
