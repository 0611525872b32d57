//! The data sets `search_ref.py prepare` builds (raw little-endian f32 matrices named in
//! `datasets.json`), the exact answers the harness computes once by brute force, and the small
//! statistics every phase reports.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;
use serde_json::{json, Value};

/// A row-major matrix of f32.
pub struct Matrix {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    /// Reads `name` from `data`, with the shape `datasets.json` gives it.
    pub fn load(data: &Path, name: &str) -> anyhow::Result<Matrix> {
        let rows = Matrix::rows_in(data, name)?;
        Matrix::load_rows(data, name, 0, rows)
    }

    /// How many rows `datasets.json` says `name` has (checked against the file's size).
    pub fn rows_in(data: &Path, name: &str) -> anyhow::Result<usize> {
        Ok(shape(data, name)?.0)
    }

    /// Rows `first..first + count` of `name`, read without the rest of the file.
    pub fn load_rows(
        data: &Path,
        name: &str,
        first: usize,
        count: usize,
    ) -> anyhow::Result<Matrix> {
        use std::io::{Read, Seek, SeekFrom};
        let (rows, dim) = shape(data, name)?;
        anyhow::ensure!(
            first + count <= rows,
            "{name} has {rows} rows, not {}",
            first + count
        );
        let mut file = std::fs::File::open(data.join(name))?;
        file.seek(SeekFrom::Start((first * dim * 4) as u64))?;
        let mut bytes = vec![0u8; count * dim * 4];
        file.read_exact(&mut bytes)
            .with_context(|| format!("reading {name}"))?;
        let data = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(Matrix {
            rows: count,
            dim,
            data,
        })
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// The `[rows, dim]` of `name` that `datasets.json` gives, checked against the file's size.
fn shape(data: &Path, name: &str) -> anyhow::Result<(usize, usize)> {
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("datasets.json"))
            .with_context(|| format!("{}: run `search_ref.py prepare` first", data.display()))?,
    )?;
    let shape = meta["files"][name]
        .as_array()
        .with_context(|| format!("`{name}` is not in datasets.json"))?;
    let (rows, dim) = (
        shape[0].as_u64().unwrap_or(0) as usize,
        shape[1].as_u64().unwrap_or(0) as usize,
    );
    let bytes = std::fs::metadata(data.join(name))
        .with_context(|| format!("reading {name}"))?
        .len();
    anyhow::ensure!(
        bytes == (rows * dim * 4) as u64,
        "{name} holds {bytes} bytes, not {rows}×{dim} f32"
    );
    Ok((rows, dim))
}

/// The `k` nearest base rows of each query by inner product, computed in f64 by a plain loop
/// (independent of the index's kernels), best first; cached in `truth.u32` + `truth.json`.
pub fn truth(
    data: &Path,
    base: &Matrix,
    queries: &Matrix,
    k: usize,
) -> anyhow::Result<Vec<Vec<u32>>> {
    let (file, meta) = (data.join("truth.u32"), data.join("truth.json"));
    let want = json!({"base": base.rows, "queries": queries.rows, "k": k, "dim": base.dim});
    if let Ok(text) = std::fs::read_to_string(&meta) {
        if serde_json::from_str::<Value>(&text).ok().as_ref() == Some(&want) {
            let bytes = std::fs::read(&file)?;
            let ids: Vec<u32> = bytes
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            return Ok(ids.chunks(k).map(<[u32]>::to_vec).collect());
        }
    }
    let started = Instant::now();
    let answers: Vec<Vec<u32>> = (0..queries.rows)
        .into_par_iter()
        .map(|q| {
            let query = queries.row(q);
            let mut scored: Vec<(f64, u32)> = (0..base.rows)
                .map(|r| {
                    let dot: f64 = query
                        .iter()
                        .zip(base.row(r))
                        .map(|(a, b)| f64::from(*a) * f64::from(*b))
                        .sum();
                    (dot, r as u32)
                })
                .collect();
            scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(k);
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            scored.into_iter().map(|(_, r)| r).collect()
        })
        .collect();
    let bytes: Vec<u8> = answers
        .iter()
        .flatten()
        .flat_map(|id| id.to_le_bytes())
        .collect();
    std::fs::write(&file, bytes)?;
    std::fs::write(&meta, want.to_string())?;
    eprintln!(
        "search bench: brute-force truth for {} queries in {:.0} s",
        queries.rows,
        started.elapsed().as_secs_f64()
    );
    Ok(answers)
}

/// The share of `truth` found in `found` (recall@k, with k = truth's length).
pub fn recall(found: &[u32], truth: &[u32]) -> f64 {
    let hit = truth.iter().filter(|t| found.contains(t)).count();
    hit as f64 / truth.len().max(1) as f64
}

/// The value below which `q` of `values` fall (nearest rank).
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// A JSON number as f64 (NaN if it is none), for log lines.
pub fn num(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

pub fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}

/// Latencies in ms → p50, p99, mean and QPS over their sum.
pub fn latency_summary(ms: &[f64], wall_s: f64) -> Value {
    json!({
        "queries": ms.len(),
        "p50_ms": percentile(ms, 0.5),
        "p99_ms": percentile(ms, 0.99),
        "mean_ms": ms.iter().sum::<f64>() / ms.len().max(1) as f64,
        "qps": ms.len() as f64 / wall_s,
    })
}

/// A rayon pool of `threads` threads.
pub fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool can be built; this is a bug")
}
