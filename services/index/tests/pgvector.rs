//! The PostgreSQL + pgvector backend beyond the conformance suite, against a real server
//! (`common::pg`): recall of its HNSW index, filters in SQL meaning what they mean in memory,
//! replicas sharing one database, replicas creating the layout together, and PostgreSQL going
//! away and coming back.

mod common;

use std::collections::BTreeSet;

use common::{by_vector, clustered, delete_ids, ids, pg, point, Index};
use oneword_index::backend::Backend;
use oneword_index::filter::{Condition, Filter, Range, Test};
use oneword_index::pgvector::Pgvector;
use oneword_index::rows::Rows;
use oneword_index::search::{rank, Allow, Exact, NearestIndex};
use oneword_index::types::{
    HnswParams, IndexKind, Metric, NewPoint, Query, Search, Selector, Spec,
};
use oneword_index::Config;
use oneword_proto::index::v1 as pb;
use serde_json::{json, Value};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// A backend on a new database of the shared server.
fn backend() -> Pgvector {
    let config = pg::database();
    Pgvector::open(config.config().unwrap().clone(), 2).unwrap()
}

fn spec(name: &str, dimension: usize, metric: Metric, index: IndexKind) -> Spec {
    Spec {
        name: name.into(),
        model: String::new(),
        dimension,
        metric,
        index,
        hnsw: HnswParams {
            m: 16,
            ef_construction: 64,
            ef_search: 40,
        },
        created_us: 1,
    }
}

fn search(query: Vec<f32>, top_k: usize) -> Search {
    Search {
        query: Query::Vector(query),
        top_k,
        filter: None,
        score_threshold: None,
        with_payload: false,
        with_vector: false,
        exact: false,
        ef_search: None,
    }
}

fn normalised(metric: Metric, v: &[f32]) -> Vec<f32> {
    let mut v = v.to_vec();
    if metric == Metric::Cosine {
        oneword_index::kernels::normalise(&mut v);
    }
    v
}

/// Recall@10 of pgvector's HNSW index at `ef_search` 100 against our own exact scan (an
/// independent answer), on the clustered set the embedded graph's recall test uses.
#[test]
fn hnsw_recall_at_10_is_at_least_0_95_at_ef_search_100() {
    const K: usize = 10;
    let (n, dim, queries) = (3000, 64, 100);
    let matrix = clustered(n + queries, dim, 20, 1.0, 42);
    let postgres = pg::database();
    let postgres = postgres.config().unwrap().clone();
    let db = Pgvector::open(postgres.clone(), 2).unwrap();
    for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
        let name = format!("r-{metric:?}");
        let spec = spec(&name, dim, metric, IndexKind::Hnsw);
        db.create(spec.clone()).unwrap();
        let points: Vec<NewPoint> = matrix[..n * dim]
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, v)| NewPoint {
                id: format!("{i:05}"),
                vector: normalised(metric, v),
                payload: json!({"g": i % 10}).as_object().unwrap().clone(),
                text: None,
            })
            .collect();
        let mut rows = Rows::new(dim);
        rows.upsert(points.clone());
        for batch in points.chunks(1000) {
            db.upsert(&spec, batch.to_vec()).unwrap();
        }
        let (mut found, mut wanted) = (0, 0);
        for q in matrix[n * dim..].chunks_exact(dim) {
            let q = normalised(metric, q);
            let mut truth = Exact { metric }.nearest(&rows, &q, K, 0, Allow::LIVE).hits;
            rank(&rows, &mut truth, K);
            let truth: Vec<&str> = truth.iter().map(|&(_, row)| rows.id(row)).collect();
            let mut s = search(q, K);
            s.ef_search = Some(100);
            let got = db.search(&name, &s).unwrap();
            assert!(!got.exact, "{metric:?}: searched through the index");
            assert_eq!(got.hits.len(), K);
            found += got
                .hits
                .iter()
                .filter(|h| truth.contains(&h.id.as_str()))
                .count();
            wanted += K;
        }
        let recall = found as f64 / wanted as f64;
        println!("pgvector {metric:?}: recall@{K} {recall:.4} at ef_search 100");
        assert!(recall >= 0.95, "{metric:?}: recall@{K} {recall}");

        // A filter passing a tenth of the points, with a short search list: the iterative
        // scan goes on past the first list (its rows in relaxed order), and the answer is
        // still k passing points, best first, ties by id.
        for q in matrix[n * dim..].chunks_exact(dim).take(20) {
            let mut s = search(normalised(metric, q), K);
            s.ef_search = Some(K);
            s.filter = Some(must(field("g", Test::Integer(3))));
            let got = db.search(&name, &s).unwrap();
            assert_eq!(got.hits.len(), K, "{metric:?}");
            assert!(got.hits.iter().all(|h| h.id.ends_with('3')), "{metric:?}");
            let in_order = got.hits.windows(2).all(|w| {
                let better = if metric == Metric::L2 {
                    w[0].score < w[1].score
                } else {
                    w[0].score > w[1].score
                };
                better || (w[0].score == w[1].score && w[0].id < w[1].id)
            });
            assert!(in_order, "{metric:?}: {:?}", got.hits);
        }
    }
    // The answers came from the HNSW indexes, not a scan the planner preferred: PostgreSQL
    // counted a scan of them per query (its statistics arrive when the connections close).
    drop(db);
    let mut client = postgres.connect(postgres::NoTls).unwrap();
    let mut scans = 0;
    for _ in 0..100 {
        scans = client
            .query_one(
                "SELECT coalesce(sum(idx_scan), 0)::bigint FROM pg_stat_user_indexes
                 WHERE indexrelname LIKE 'points\\_%\\_hnsw'",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0);
        if scans >= 3 * queries as i64 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "the HNSW indexes were scanned {scans} times for {} searches",
        3 * queries
    );
}

/// Payloads that tell the readings of a filter apart: arrays at the end and on the way,
/// nested arrays, numbers written as integers and as floats, strings that look like numbers,
/// keys that look like array indexes, missing keys.
fn payloads() -> Vec<Value> {
    vec![
        json!({"a": "red"}),
        json!({"a": ["red", "blue"]}),
        json!({"a": [["red"]]}),
        json!({"a": {"b": "red"}}),
        json!({"a": [{"b": "red"}]}),
        json!({"a": {"0": "red"}}),
        json!({"a": 3}),
        json!({"a": 3.0}),
        json!({"a": 3.5}),
        json!({"a": "3"}),
        json!({"a": [1, "x", 7.5]}),
        json!({"a": [[3]]}),
        json!({"a": true}),
        json!({"a": [true, false]}),
        json!({"a": null}),
        json!({}),
        json!({"a": "Red"}),
        json!({"a": "ré"}),
        json!({"a": ""}),
        json!({"a": -0.0}),
        json!({"a": 1e300}),
        json!({"a": 9_007_199_254_740_993_i64}),
        json!({"a": {"b": {"c": 5}}}),
        json!({"a": {"b": [5, 6]}}),
        json!({"a\"b": "q", "b": 2}),
    ]
}

fn field(path: &str, test: Test) -> Condition {
    Condition::Field {
        path: path.split('.').map(String::from).collect(),
        test,
    }
}

fn must(c: Condition) -> Filter {
    Filter {
        must: vec![c],
        ..Default::default()
    }
}

fn filters() -> Vec<Filter> {
    let kw = |path: &str, k: &str| field(path, Test::Keyword(k.into()));
    let int = |path: &str, i: i64| field(path, Test::Integer(i));
    let range = |path: &str, gt, gte, lt, lte| field(path, Test::Range(Range { gt, gte, lt, lte }));
    vec![
        must(kw("a", "red")),
        must(kw("a", "Red")),
        must(kw("a", "ré")),
        must(kw("a", "")),
        must(kw("a.b", "red")),
        must(kw("a.0", "red")),
        must(kw("a\"b", "q")),
        must(kw("a", "x\0")),
        must(int("a", 3)),
        must(int("a", 1)),
        must(int("a", 9_007_199_254_740_993)),
        must(int("a.b.c", 5)),
        must(int("a.b", 6)),
        must(field("a", Test::Boolean(true))),
        must(field("a", Test::Boolean(false))),
        must(field(
            "a",
            Test::AnyKeyword(vec!["blue".into(), "3".into()]),
        )),
        must(field("a", Test::AnyInteger(vec![3, 7]))),
        must(field("a", Test::AnyInteger((0..40).collect()))),
        must(range("a", Some(2.0), None, None, None)),
        must(range("a", None, Some(3.0), Some(3.5), None)),
        must(range("a", None, None, Some(0.0), None)),
        must(range("a", None, Some(0.0), None, Some(0.0))),
        must(range("a", Some(1e299), None, None, None)),
        must(range("a", None, Some(7.5), None, None)),
        must(range("a.b", None, None, None, Some(5.0))),
        must(range("a.b.c", Some(4.0), None, None, None)),
        Filter {
            must_not: vec![kw("a", "red")],
            ..Default::default()
        },
        Filter {
            must_not: vec![int("nope", 1)],
            ..Default::default()
        },
        Filter {
            should: vec![kw("a", "red"), int("a", 3), int("b", 2)],
            ..Default::default()
        },
        Filter {
            must: vec![range("a", Some(0.0), None, None, None)],
            must_not: vec![int("a", 3)],
            should: vec![
                Condition::Nested(must(kw("a", "x"))),
                Condition::Nested(Filter::default()),
            ],
        },
    ]
}

/// Every filter selects in PostgreSQL exactly the points it passes in memory
/// (`Filter::matches`), for searches and for deletes.
#[test]
fn filters_in_sql_mean_what_they_mean_in_memory() {
    let db = backend();
    let spec = spec("f", 2, Metric::L2, IndexKind::Exact);
    db.create(spec.clone()).unwrap();
    let payloads = payloads();
    let points: Vec<NewPoint> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| NewPoint {
            id: format!("p{i:02}"),
            vector: vec![i as f32, 0.0],
            payload: p.as_object().unwrap().clone(),
            text: None,
        })
        .collect();
    db.upsert(&spec, points.clone()).unwrap();
    for (i, f) in filters().into_iter().enumerate() {
        let expected: BTreeSet<String> = points
            .iter()
            .filter(|p| f.matches(&p.payload))
            .map(|p| p.id.clone())
            .collect();
        let mut s = search(vec![0.0, 0.0], points.len());
        s.filter = Some(f.clone());
        s.with_payload = true;
        let found = db.search("f", &s).unwrap();
        assert!(found.exact);
        assert_eq!(
            found.candidates_scanned,
            expected.len() as u64,
            "filter {i}"
        );
        let got: BTreeSet<String> = found.hits.iter().map(|h| h.id.clone()).collect();
        assert_eq!(got, expected, "filter {i}: {f:?}");
        for hit in &found.hits {
            let n: usize = hit.id[1..].parse().unwrap();
            let stored: Value = serde_json::from_str(hit.payload.as_deref().unwrap()).unwrap();
            assert_eq!(stored, payloads[n], "payloads come back as stored");
        }
    }
    // And a delete by filter removes exactly those.
    let f = must(field("a", Test::AnyInteger(vec![3])));
    let deleted = db.delete("f", &Selector::Filter(f.clone())).unwrap();
    let matching = points.iter().filter(|p| f.matches(&p.payload)).count();
    assert_eq!(deleted, matching as u64);
    assert_eq!(
        db.get("f").unwrap().points,
        (points.len() - matching) as u64
    );
}

/// Replicas starting together on an empty database all create (or find) the layout: the
/// advisory lock serialises them.
#[test]
fn replicas_starting_together_create_the_layout_once() {
    let config = pg::database();
    let config = config.config().unwrap().clone();
    let opened: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| Pgvector::open(config.clone(), 1)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in opened {
        let db = o.unwrap();
        assert!(db.list().unwrap().is_empty());
    }
}

fn config(postgres: &oneword_index::config::Postgres) -> Config {
    let mut config = Config::for_data_dir("/nonexistent/the-index-uses-postgres");
    config.postgres = postgres.clone();
    config
}

fn create(name: &str, dimension: u32) -> pb::CreateRequest {
    pb::CreateRequest {
        name: name.into(),
        dimension: Some(dimension),
        metric: pb::Metric::L2 as i32,
        index: pb::IndexKind::Hnsw as i32,
        ..Default::default()
    }
}

fn upsert(collection: &str, points: Vec<pb::Point>) -> pb::UpsertRequest {
    pb::UpsertRequest {
        collection: collection.into(),
        points,
    }
}

fn reference(name: &str) -> pb::CollectionRef {
    pb::CollectionRef { name: name.into() }
}

/// Two index replicas on one database see each other's writes at once: neither keeps
/// anything another could change.
#[tokio::test]
async fn replicas_share_one_database() {
    let postgres = pg::database();
    let mut a = Index::start(config(&postgres)).await;
    let mut b = Index::start(config(&postgres)).await;
    a.client.create(create("s", 2)).await.unwrap();
    let info = b.client.get(reference("s")).await.unwrap().into_inner();
    assert_eq!((info.dimension, info.backend.as_str()), (2, "pgvector"));
    b.client
        .upsert(upsert(
            "s",
            vec![
                point("x", &[0.0, 0.0], json!({"by": "b"})),
                point("y", &[1.0, 0.0], json!({})),
            ],
        ))
        .await
        .unwrap();
    let found = a.client.search(by_vector("s", &[0.1, 0.0], 5)).await;
    assert_eq!(ids(&found.unwrap().into_inner().hits), ["x", "y"]);

    a.client.drop(reference("s")).await.unwrap();
    let gone = b.client.search(by_vector("s", &[0.1, 0.0], 5)).await;
    assert_eq!(gone.unwrap_err().code(), Code::NotFound);
    b.client.create(create("s", 3)).await.unwrap();
    let refused = a
        .client
        .upsert(upsert("s", vec![point("z", &[1.0, 2.0], json!({}))]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("3-dimensional"), "{refused:?}");

    // What PostgreSQL cannot store is refused, naming the field.
    let nul = a
        .client
        .upsert(upsert(
            "s",
            vec![
                point("ok", &[1.0, 2.0, 3.0], json!({})),
                point("bad", &[1.0, 2.0, 3.0], json!({"k": "a\u{0}b"})),
            ],
        ))
        .await
        .unwrap_err();
    assert_eq!(nul.code(), Code::InvalidArgument);
    assert!(
        nul.message()
            .contains("`points[1].payload` holds the NUL character"),
        "{nul:?}"
    );
    let listed = b
        .client
        .list(pb::ListRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.collections.len(), 1);
    assert_eq!(listed.collections[0].points, 0);
}

/// A refusal that retrying cannot mend (here: no such database) stops the index at start-up
/// with the reason, rather than leaving it NOT_SERVING for ever.
#[tokio::test]
async fn a_database_that_cannot_be_used_stops_the_index_with_the_reason() {
    let server = tokio::task::spawn_blocking(pg::shared).await.unwrap();
    let postgres = server.dsn("no_such_database").parse().unwrap();
    let listeners = oneword_runtime::Listeners::loopback(false).await.unwrap();
    let failed = oneword_index::run(config(&postgres), listeners, std::future::pending())
        .await
        .unwrap_err();
    let failed = format!("{failed:#}");
    assert!(
        failed.contains("cannot be used") && failed.contains("\"no_such_database\" does not exist"),
        "{failed}"
    );
}

/// The index waits (NOT_SERVING) for a PostgreSQL that is not up yet; once serving, a
/// PostgreSQL that crashes makes every call UNAVAILABLE, naming it; after it restarts, calls
/// work again, with every acknowledged write still there. Its own server, so that stopping it
/// disturbs no other test.
#[tokio::test]
async fn postgres_going_away_is_unavailable_and_named_then_calls_recover() {
    let server = tokio::task::spawn_blocking(pg::Server::start)
        .await
        .unwrap();
    let postgres = server.database();
    server.crash();

    let mut index = Index::spawn(config(&postgres)).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(index.health().await, ServingStatus::NotServing);
    let early = index.client.list(pb::ListRequest {}).await.unwrap_err();
    assert_eq!(early.code(), Code::Unavailable);
    server.restart();
    index.serving().await;

    let c = &mut index.client;
    c.create(create("r", 2)).await.unwrap();
    c.upsert(upsert(
        "r",
        vec![point("kept", &[1.0, 1.0], json!({"n": 1}))],
    ))
    .await
    .unwrap();

    server.crash();
    let statuses = [
        c.search(by_vector("r", &[1.0, 1.0], 3)).await.unwrap_err(),
        c.upsert(upsert("r", vec![point("lost", &[2.0, 2.0], json!({}))]))
            .await
            .unwrap_err(),
        c.get(reference("r")).await.unwrap_err(),
        c.list(pb::ListRequest {}).await.unwrap_err(),
        c.delete(delete_ids("r", ["kept"])).await.unwrap_err(),
    ];
    for status in statuses {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status
                .message()
                .starts_with("the PostgreSQL database is unavailable: "),
            "{status:?}"
        );
    }

    server.restart();
    let found = c.search(by_vector("r", &[1.0, 1.0], 3)).await.unwrap();
    assert_eq!(ids(&found.into_inner().hits), ["kept"]);
    c.upsert(upsert("r", vec![point("after", &[2.0, 2.0], json!({}))]))
        .await
        .unwrap();
    let info = c.get(reference("r")).await.unwrap().into_inner();
    assert_eq!(
        info.points, 2,
        "the acknowledged point survived, the refused one is absent"
    );
    index.stop().await;
}
