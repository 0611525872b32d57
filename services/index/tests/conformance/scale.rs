//! The suite's larger cases: exact answers against brute force, and 10,000 points stored,
//! read back and searched.

use oneword_proto::index::v1 as pb;
use serde_json::json;

use crate::common::{by_vector, clustered, ids, point, Metric};
use crate::Running;

/// Compares a search's hits with a brute-force answer: the same ids in the same order, and
/// scores equal to f32 precision.
fn assert_same(hits: &[pb::Record], expected: &[(String, f64)], what: &str) {
    assert_eq!(
        ids(hits),
        expected.iter().map(|e| e.0.clone()).collect::<Vec<_>>(),
        "{what}"
    );
    for (hit, (_, score)) in hits.iter().zip(expected) {
        let tolerance = 1e-4 * score.abs().max(1.0);
        assert!(
            (f64::from(hit.score) - score).abs() <= tolerance,
            "{what}: {} vs {score}",
            hit.score
        );
    }
}

pub async fn exact_results_equal_brute_force_in_every_metric(mut ix: Running) {
    const N: usize = 300;
    const DIM: usize = 8;
    let vectors = clustered(N + 10, DIM, 5, 0.5, 11);
    let queries = &vectors[N * DIM..];
    let names: Vec<String> = (0..N).map(|i| format!("v{i:03}")).collect();
    let rows = || (0..N).map(|i| (names[i].as_str(), &vectors[i * DIM..(i + 1) * DIM]));
    for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
        let name = format!("b-{metric:?}");
        ix.create(&name, DIM as u32, metric).await;
        let points = rows().map(|(id, v)| point(id, v, json!({}))).collect();
        ix.upsert(&name, points).await;
        for q in queries.chunks(DIM) {
            let expected = metric.brute_force(rows(), q, 7);
            let mut request = by_vector(&name, q, 7);
            request.exact = true;
            let found = ix.search(request.clone()).await;
            assert!(found.exact);
            assert_eq!(
                found.candidates_scanned, N as u64,
                "an exact search scores every point"
            );
            assert_same(&found.hits, &expected, &format!("{metric:?}, exact"));
            if !ix.flavour.approximate {
                request.exact = false;
                let found = ix.search(request).await;
                assert_same(&found.hits, &expected, &format!("{metric:?}"));
            }
        }
    }
}

pub async fn round_trip_of_10k_points(mut ix: Running) {
    const N: usize = 10_000;
    const DIM: usize = 16;
    const K: usize = 10;
    // The last 20 rows are the queries: drawn like the points, as real queries are.
    let vectors = clustered(N + 20, DIM, 50, 0.4, 21);
    let row = |i: usize| &vectors[i * DIM..(i + 1) * DIM];
    let names: Vec<String> = (0..N).map(|i| format!("r{i:05}")).collect();
    ix.create("big", DIM as u32, Metric::Dot).await;
    for start in (0..N).step_by(1000) {
        let batch = (start..start + 1000)
            .map(|i| point(names[i].clone(), row(i), json!({"i": i})))
            .collect();
        assert_eq!(ix.upsert("big", batch).await, 1000);
    }
    assert_eq!(ix.points("big").await, N as u64);

    for start in (0..N).step_by(1000) {
        let asked: Vec<&str> = names[start..start + 1000]
            .iter()
            .map(String::as_str)
            .collect();
        let got = ix.retrieve("big", &asked).await;
        assert_eq!(got.len(), 1000);
        for (i, record) in (start..).zip(&got) {
            assert_eq!(record.id, names[i]);
            assert_eq!(record.vector, row(i), "{}", record.id);
            let p: serde_json::Value = serde_json::from_str(&record.payload).unwrap();
            assert_eq!(p, json!({"i": i}));
        }
    }

    let queries = &vectors[N * DIM..];
    let all = || (0..N).map(|i| (names[i].as_str(), row(i)));
    let (mut recalled, mut wanted) = (0, 0);
    for q in queries.chunks(DIM) {
        let expected = Metric::Dot.brute_force(all(), q, K);
        let mut request = by_vector("big", q, K as u32);
        request.exact = true;
        assert_same(&ix.search(request.clone()).await.hits, &expected, "exact");

        request.exact = false;
        let found = ix.search(request.clone()).await;
        if ix.flavour.approximate {
            assert!(!found.exact);
            assert!(
                found.candidates_scanned < N as u64,
                "the graph scores a fraction"
            );
            let want = ids_of(&expected);
            recalled += ids(&found.hits)
                .iter()
                .filter(|id| want.contains(id))
                .count();
            wanted += K;
        } else {
            assert_same(&found.hits, &expected, "default");
        }

        // A filter passing half the points, exactly.
        request.exact = true;
        request.filter = Some(pb::Filter {
            must: vec![pb::Condition {
                key: "i".into(),
                test: Some(pb::condition::Test::Range(pb::Range {
                    lt: Some(5000.0),
                    ..Default::default()
                })),
            }],
            ..Default::default()
        });
        let expected = Metric::Dot.brute_force(all().take(5000), q, K);
        assert_same(&ix.search(request).await.hits, &expected, "filtered");
    }
    if ix.flavour.approximate {
        assert!(
            recalled * 100 >= wanted * 90,
            "recall@{K} {recalled}/{wanted}"
        );
    }
}

fn ids_of(expected: &[(String, f64)]) -> Vec<String> {
    expected.iter().map(|e| e.0.clone()).collect()
}
