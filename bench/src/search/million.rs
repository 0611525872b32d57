//! Item 4's large set: an HNSW collection of a million MiniLM token states (the whole King James
//! text, `search_ref.py prepare-million`), built as a collection builds it (`Indexes`), with the
//! build time and the memory it holds, then recall@k and single-thread QPS over a sweep of
//! `ef_search`. No reference system runs here: the goals are absolute (recall, build time, RSS).
//!
//! The brute-force truth needs the whole base matrix; it is computed (or read from its cache)
//! first and the matrix dropped, then the peak-RSS counter is reset, and the rows are read in
//! pieces, so that the memory reported is what the index holds: the rows with their ids and
//! payloads, the graph, and the queries.

use std::path::Path;

use oneword_index::rows::Rows;
use serde_json::{json, Value};

use crate::data::{self, Matrix};

pub struct Options {
    pub k: usize,
    pub m: usize,
    pub ef_construction: usize,
    pub ef: Vec<usize>,
    pub repeat: usize,
}

/// Rows read from the file at a time.
const PIECE: usize = 50_000;

pub fn run(dir: &Path, o: &Options) -> anyhow::Result<Value> {
    let queries = Matrix::load(dir, "tokens-queries.f32")?;
    let truth = {
        let base = Matrix::load(dir, "tokens.f32")?;
        data::truth(dir, &base, &queries, o.k)?
    };
    reset_peak_rss();
    let before = memory();
    let mut rows = Rows::new(queries.dim);
    let total = Matrix::rows_in(dir, "tokens.f32")?;
    for first in (0..total).step_by(PIECE) {
        let piece = Matrix::load_rows(dir, "tokens.f32", first, PIECE.min(total - first))?;
        rows.upsert(crate::points(&piece, first));
    }
    let loaded = memory();
    let (indexes, build_s) = crate::graph::build(rows, o.m, o.ef_construction)?;
    let built = memory();
    eprintln!(
        "search bench: HNSW build of {total} points: {build_s:.0} s, RSS {:.2} GiB (peak {:.2})",
        gib(built.rss_kb),
        gib(built.peak_kb)
    );
    let sweep = crate::graph::sweep(&indexes, &queries, &truth, o.k, &o.ef, o.repeat)?;
    let searched = memory();
    Ok(json!({
        "system": "oneword Hnsw, 1M",
        "points": total,
        "dim": queries.dim,
        "queries": queries.rows,
        "m": o.m,
        "ef_construction": o.ef_construction,
        "build_s": build_s,
        // `Indexes::build` inserts the rows one after another.
        "build_threads": 1,
        "rss_gib": {
            "before_rows": gib(before.rss_kb),
            "rows_loaded": gib(loaded.rss_kb),
            "graph_built": gib(built.rss_kb),
            "after_search": gib(searched.rss_kb),
            "peak": gib(searched.peak_kb),
        },
        "sweep": sweep,
        "notes": [
            "rows read in pieces of 50,000 after the truth was computed and its matrix dropped; peak RSS counted from there (the rows with ids and payloads, the graph, the queries)",
            "QPS: one thread, one query at a time, the median of `repeat` passes",
        ],
    }))
}

struct Memory {
    rss_kb: f64,
    peak_kb: f64,
}

/// This process's resident set and its peak since [`reset_peak_rss`], from /proc.
fn memory() -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse().ok())
            .unwrap_or(f64::NAN)
    };
    Memory {
        rss_kb: field("VmRSS:"),
        peak_kb: field("VmHWM:"),
    }
}

/// Resets VmHWM to the current RSS (Linux: writing 5 to /proc/self/clear_refs).
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!(
            "search bench: could not reset the peak RSS ({e}); it includes the truth's matrix"
        );
    }
}

fn gib(kb: f64) -> f64 {
    kb / (1024.0 * 1024.0)
}
