//! `make bench-search`'s measuring side for oneword (`bench/search.sh` runs it once per phase,
//! beside `bench/reference/search_ref.py` running the same phase for the reference systems):
//!
//! - `embed`: MiniLM throughput of `oneword_model::SentenceEncoder`, and its vectors against
//!   sentence-transformers';
//! - `exact`: the index's exact scan (`Rows`, `Exact`) on 100k×384, one query and batches of 64;
//!   computes (once) the brute-force truth every phase checks against;
//! - `hnsw`: the index's HNSW graph (built by `Indexes` as a collection builds it), an
//!   `ef_search` sweep, then a 1% payload filter through the same planner;
//! - `upsert`: the index service itself over gRPC: upserts, then restart times;
//! - `pgvector`: the pgvector backend beside the embedded one, both through the service: HNSW
//!   upserts, recall and QPS per `ef_search`, the 1% filter;
//! - `million`: an HNSW graph of 1M token states: build time, memory, recall and QPS.
//!
//! Each phase writes `oneword-<phase>.json` into `--out`; `bench/search_report.py` turns them
//! and the reference's into `report.md`.

#![forbid(unsafe_code)]

mod data;
mod embed;
mod flat;
mod graph;
mod million;
mod pg;
mod service;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use oneword_index::kernels::normalise;
use oneword_index::rows::Rows;
use oneword_index::types::NewPoint;
use serde_json::{json, Map, Value};

use data::Matrix;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    Embed,
    Exact,
    Hnsw,
    Upsert,
    Pgvector,
    Million,
}

/// Measures oneword's similarity search and writes JSON results.
#[derive(Parser)]
struct Args {
    /// What to measure.
    #[arg(long, value_enum)]
    phase: Phase,
    /// The data sets `search_ref.py prepare` built (datasets.json and the f32 files).
    #[arg(long, default_value = "bench/.work/search")]
    data: PathBuf,
    /// The sentence-transformers model directory (all-MiniLM-L6-v2).
    #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
    model: PathBuf,
    /// Where to write `oneword-<phase>.json`.
    #[arg(long)]
    out: PathBuf,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Queries timed one at a time in the exact phase.
    #[arg(long, default_value_t = 300)]
    single_queries: usize,
    /// Queries run in batches of 64 in the exact phase.
    #[arg(long, default_value_t = 512)]
    batch_queries: usize,
    /// Threads the batches of 64 are spread over.
    #[arg(long, default_value_t = 2)]
    batch_threads: usize,
    /// Repetitions of the throughput runs (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Corpus lines embedded as the long-sentence run.
    #[arg(long, default_value_t = 256)]
    long: usize,
    /// HNSW links per node.
    #[arg(long, default_value_t = 16)]
    m: usize,
    /// HNSW candidate list while building.
    #[arg(long, default_value_t = 200)]
    ef_construction: usize,
    /// HNSW candidate list sizes of the sweep.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,16,24,32,48,64,100,200,400"
    )]
    ef: Vec<usize>,
    /// Queries of the filtered runs.
    #[arg(long, default_value_t = 200)]
    filter_queries: usize,
    /// Points upserted through the service.
    #[arg(long, default_value_t = 100_000)]
    upsert_points: usize,
    /// Points per upsert request.
    #[arg(long, default_value_t = 256)]
    upsert_batch: usize,
    /// Also restart an AUTO collection of `upsert_points` (it rebuilds its HNSW graph).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    hnsw_restart: bool,
    /// `ef_search` values of the pgvector phase (both backends).
    #[arg(long, value_delimiter = ',', default_value = "40,100,200")]
    pg_ef: Vec<usize>,
    /// The 1M data set `search_ref.py prepare-million` built.
    #[arg(long, default_value = "bench/.work/search/million")]
    million_data: PathBuf,
    /// `ef_search` values of the 1M sweep.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,100,200")]
    million_ef: Vec<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let load_before = loadavg();
    let (name, mut doc) = match args.phase {
        Phase::Embed => (
            "embed",
            embed::run(&embed::Options {
                model: &args.model,
                data: &args.data,
                long: args.long,
                repeat: args.repeat,
            })?,
        ),
        Phase::Exact => {
            let (base, queries) = tokens(&args)?;
            let truth = data::truth(&args.data, &base, &queries, args.k)?;
            let rows = rows(&base);
            let options = flat::Options {
                k: args.k,
                single_queries: args.single_queries,
                batch_queries: args.batch_queries,
                batch_threads: args.batch_threads,
                repeat: args.repeat,
            };
            ("exact", flat::run(&rows, &queries, &truth, &options))
        }
        Phase::Hnsw => {
            let (base, queries) = tokens(&args)?;
            let truth = data::truth(&args.data, &base, &queries, args.k)?;
            let options = graph::Options {
                k: args.k,
                m: args.m,
                ef_construction: args.ef_construction,
                ef: args.ef.clone(),
                filter_queries: args.filter_queries,
                repeat: args.repeat,
                bucket: 7,
            };
            ("hnsw", graph::run(rows(&base), &queries, &truth, &options)?)
        }
        Phase::Upsert => {
            let (base, _) = tokens(&args)?;
            let options = service::Options {
                points: args.upsert_points,
                batch: args.upsert_batch,
                hnsw_restart: args.hnsw_restart,
            };
            ("upsert", service::run(&base, &options).await?)
        }
        Phase::Pgvector => {
            let (base, queries) = tokens(&args)?;
            let truth = data::truth(&args.data, &base, &queries, args.k)?;
            let options = pg::Options {
                k: args.k,
                m: args.m,
                ef_construction: args.ef_construction,
                ef: args.pg_ef.clone(),
                points: args.upsert_points,
                batch: args.upsert_batch,
                filter_queries: args.filter_queries,
                bucket: 7,
            };
            (
                "pgvector",
                pg::run(&base, &queries, &truth, &options).await?,
            )
        }
        Phase::Million => {
            let options = million::Options {
                k: args.k,
                m: args.m,
                ef_construction: args.ef_construction,
                ef: args.million_ef.clone(),
                repeat: args.repeat,
            };
            ("million", million::run(&args.million_data, &options)?)
        }
    };
    doc["loadavg_before"] = json!(load_before);
    doc["loadavg_after"] = json!(loadavg());
    write(&args, &format!("oneword-{name}.json"), &doc)?;
    write(&args, "machine.json", &machine())?;
    Ok(())
}

/// The token data set: 100k base vectors and the held-out queries.
fn tokens(args: &Args) -> anyhow::Result<(Matrix, Matrix)> {
    let base = Matrix::load(&args.data, "tokens.f32")?;
    let queries = Matrix::load(&args.data, "tokens-queries.f32")?;
    anyhow::ensure!(base.dim == queries.dim, "base and queries differ in width");
    Ok((base, queries))
}

/// `base` as a cosine collection's rows (see [`points`]).
fn rows(base: &Matrix) -> Rows {
    let mut rows = Rows::new(base.dim);
    rows.upsert(points(base, 0));
    rows
}

/// The rows of `piece`, which starts at row `first` of its data set, as points: normalised (as
/// the service stores them), named by their zero-padded row number, with a `bucket` payload of
/// row % 100 for the filter runs.
fn points(piece: &Matrix, first: usize) -> Vec<NewPoint> {
    (0..piece.rows)
        .map(|i| {
            let r = first + i;
            let mut vector = piece.row(i).to_vec();
            normalise(&mut vector);
            let mut payload = Map::new();
            payload.insert("bucket".into(), json!(r % graph::BUCKETS));
            NewPoint {
                id: format!("{r:06}"),
                vector,
                payload,
                text: None,
            }
        })
        .collect()
}

fn write(args: &Args, name: &str, value: &Value) -> anyhow::Result<()> {
    std::fs::write(
        args.out.join(name),
        serde_json::to_string_pretty(value)? + "\n",
    )?;
    Ok(())
}

/// The CPU (lscpu's model name), its threads, and what rayon and candle use.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(
            || std::env::consts::ARCH.to_string(),
            |s| s.trim().to_string(),
        );
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    let simd: Vec<&str> = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"]
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    json!({
        "cpu": cpu,
        "cpu_threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "rayon_threads": rayon::current_num_threads(),
        "simd": simd,
        "memory_gib": meminfo_gib(),
        "rust_target_features": if cfg!(target_feature = "avx2") {
            "AVX2 enabled at compile time"
        } else {
            "the x86-64 baseline (no -C target-cpu); the index's kernels and the BERT forward pick AVX-512 or AVX2 at run time (pulp), candle's matrix products use gemm's AVX-512 kernels (x86-v4)"
        },
    })
}

fn meminfo_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / (1024.0 * 1024.0))
}

/// The 1-minute load average: how busy the machine was besides the bench.
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(f64::NAN)
}
