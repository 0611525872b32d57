//! Item 3: the index's exact scan as a library, as a collection runs it: `Exact::nearest` over
//! the collection's `Rows`, then `rank`. One query at a time on one thread (latency), one query
//! on every thread (what one service call gets), and batches of 64 queries through
//! `Exact::nearest_batch` (what a SearchBatch call runs) on two threads. Every answer is checked
//! against the brute-force truth.

use std::time::Instant;

use oneword_index::rows::Rows;
use oneword_index::search::{rank, Allow, Exact, NearestIndex};
use oneword_index::types::Metric;
use serde_json::{json, Value};

use crate::data::{latency_summary, median, num, pool, recall, Matrix};

pub struct Options {
    pub k: usize,
    pub single_queries: usize,
    pub batch_queries: usize,
    pub batch_threads: usize,
    pub repeat: usize,
}

/// The top `k` row numbers of `query`, nearest first.
fn nearest(rows: &Rows, query: &[f32], k: usize) -> Vec<u32> {
    let mut found = EXACT.nearest(rows, query, k, 0, Allow::LIVE);
    rank(rows, &mut found.hits, k);
    found.hits.into_iter().map(|(_, row)| row).collect()
}

const EXACT: Exact = Exact {
    metric: Metric::Cosine,
};

/// The top `k` row numbers of each of `queries`, nearest first, from one batched scan.
fn nearest_batch(rows: &Rows, queries: &[&[f32]], k: usize) -> Vec<Vec<u32>> {
    EXACT
        .nearest_batch(rows, queries, k, Allow::LIVE)
        .into_iter()
        .map(|mut found| {
            rank(rows, &mut found.hits, k);
            found.hits.into_iter().map(|(_, row)| row).collect()
        })
        .collect()
}

/// Times one query at a time on a pool of `threads`; (latency summary, mean recall).
fn one_by_one(
    rows: &Rows,
    queries: &Matrix,
    truth: &[Vec<u32>],
    o: &Options,
    threads: usize,
) -> Value {
    pool(threads).install(|| {
        for q in 0..5 {
            nearest(rows, queries.row(q), o.k);
        }
        let n = o.single_queries.min(queries.rows);
        let (mut ms, mut recalls, mut tied) = (Vec::new(), Vec::new(), Vec::new());
        let started = Instant::now();
        for (q, truth) in truth.iter().enumerate().take(n) {
            let start = Instant::now();
            let found = nearest(rows, queries.row(q), o.k);
            ms.push(start.elapsed().as_secs_f64() * 1e3);
            recalls.push(recall(&found, &truth[..o.k]));
            tied.push(recall_up_to_ties(
                rows,
                queries.row(q),
                &found,
                &truth[..o.k],
            ));
        }
        let mut out = latency_summary(&ms, started.elapsed().as_secs_f64());
        out["threads"] = json!(threads);
        out["recall"] = json!(recalls.iter().sum::<f64>() / n as f64);
        out["min_recall"] = json!(recalls.iter().copied().fold(1.0, f64::min));
        out["recall_up_to_ties"] = json!(tied.iter().sum::<f64>() / n as f64);
        out
    })
}

/// Recall where a hit that scores (in f64) within `TIE` of the truth's k-th counts as found:
/// vectors that differ only in the last bits of f32 may swap places at the cut.
fn recall_up_to_ties(rows: &Rows, query: &[f32], found: &[u32], truth: &[u32]) -> f64 {
    const TIE: f64 = 1e-6;
    let score = |r: u32| -> f64 {
        query
            .iter()
            .zip(rows.vector(r))
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum()
    };
    let bar = truth
        .iter()
        .map(|&r| score(r))
        .fold(f64::INFINITY, f64::min)
        - TIE;
    let good = found.iter().filter(|&&r| score(r) >= bar).count();
    good.min(truth.len()) as f64 / truth.len().max(1) as f64
}

pub fn run(rows: &Rows, queries: &Matrix, truth: &[Vec<u32>], o: &Options) -> Value {
    let single = one_by_one(rows, queries, truth, o, 1);
    eprintln!(
        "search bench: exact, one thread: p50 {:.2} ms, p99 {:.2} ms, recall {:.4}",
        num(&single["p50_ms"]),
        num(&single["p99_ms"]),
        num(&single["recall"])
    );
    let single_all = one_by_one(rows, queries, truth, o, o.batch_threads);
    let n = o.batch_queries.min(queries.rows);
    let (batch_qps, recall64) = pool(o.batch_threads).install(|| {
        let (mut qps, mut recalls) = (Vec::new(), Vec::new());
        for _ in 0..o.repeat {
            let start = Instant::now();
            let mut answers = Vec::with_capacity(n);
            for first in (0..n).step_by(64) {
                let batch: Vec<&[f32]> = (first..(first + 64).min(n))
                    .map(|q| queries.row(q))
                    .collect();
                answers.extend(nearest_batch(rows, &batch, o.k));
            }
            qps.push(n as f64 / start.elapsed().as_secs_f64());
            recalls = answers
                .iter()
                .zip(truth)
                .map(|(a, t)| recall(a, &t[..o.k]))
                .collect();
        }
        (qps, recalls.iter().sum::<f64>() / n as f64)
    });
    eprintln!(
        "search bench: exact, batches of 64 on {} threads: {:.0} QPS",
        o.batch_threads,
        median(&batch_qps)
    );
    json!({
        "system": "oneword Exact",
        "points": rows.live_count(),
        "dim": rows.dim(),
        "k": o.k,
        "single": single,
        "single_all_threads": single_all,
        "batch64": {
            "threads": o.batch_threads,
            "queries": n,
            "qps": median(&batch_qps),
            "all": batch_qps,
            "recall": recall64,
        },
        "notes": [
            "Exact::nearest + rank over Rows (cosine), as a collection's exact search runs them, without gRPC",
            "batch64: each batch of 64 queries is one Exact::nearest_batch over the pool (as the service's SearchBatch runs exact searches of one collection)",
        ],
    })
}
