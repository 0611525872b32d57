//! The service around the backend: texts without an embedder, an embedder that is down, limits,
//! AUTO collections changing index with their size, tombstone rebuilds, a restart that reloads
//! everything from the database, and search batches.

mod common;

use common::{by_vector, clustered, delete_ids, ids, point, Index};
use oneword_index::Config;
use oneword_proto::index::v1 as pb;
use serde_json::json;
use tonic::Code;

fn create(name: &str, dimension: u32, index: pb::IndexKind) -> pb::CreateRequest {
    pb::CreateRequest {
        name: name.into(),
        dimension: Some(dimension),
        metric: pb::Metric::L2 as i32,
        index: index as i32,
        ..Default::default()
    }
}

fn upsert(collection: &str, points: Vec<pb::Point>) -> pb::UpsertRequest {
    pb::UpsertRequest {
        collection: collection.into(),
        points,
    }
}

fn text_point(id: &str) -> pb::Point {
    pb::Point {
        id: id.into(),
        content: Some(pb::point::Content::Text("in the beginning".into())),
        payload: String::new(),
    }
}

async fn info(index: &mut Index, name: &str) -> pb::CollectionInfo {
    index
        .client
        .get(pb::CollectionRef { name: name.into() })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn without_an_embedder_texts_are_a_failed_precondition() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = Index::start(Config::for_data_dir(dir.path())).await;
    let c = &mut index.client;
    let refused = c
        .create(pb::CreateRequest {
            name: "t".into(),
            model: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("no embedder"),
        "{}",
        refused.message()
    );

    c.create(create("v", 2, pb::IndexKind::Exact))
        .await
        .unwrap();
    let refused = c
        .upsert(upsert("v", vec![text_point("a")]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("`points[0].text`: collection `v` has no text model"),
        "{}",
        refused.message()
    );
    let mut search = by_vector("v", &[1.0, 0.0], 1);
    search.query = Some(pb::search_request::Query::Text("hello".into()));
    let refused = c.search(search).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn an_embedder_that_is_down_is_unavailable_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(dir.path());
    // Port 1 is privileged and outside the ephemeral range, so no test server can take it: a
    // connection there is refused at once. (A port freed by another socket could be reused.)
    config.embedder = "http://127.0.0.1:1".into();
    let mut index = Index::start(config).await;
    let refused = index
        .client
        .create(pb::CreateRequest {
            name: "t".into(),
            model: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused
            .message()
            .contains("the embedder service is unavailable"),
        "{}",
        refused.message()
    );
}

#[tokio::test]
async fn too_many_points_or_ids_are_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(dir.path());
    config.max_points = 4;
    let mut index = Index::start(config).await;
    let c = &mut index.client;
    c.create(create("v", 1, pb::IndexKind::Exact))
        .await
        .unwrap();
    let points = (0..5)
        .map(|i| point(i.to_string(), &[i as f32], json!({})))
        .collect();
    let refused = c.upsert(upsert("v", points)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused
            .message()
            .contains("`points` holds 5 items; at most 4"),
        "{}",
        refused.message()
    );
    let refused = c
        .retrieve(pb::RetrieveRequest {
            collection: "v".into(),
            ids: (0..5).map(|i| i.to_string()).collect(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn auto_collections_switch_to_hnsw_at_the_threshold_and_back_under_half() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(dir.path());
    config.hnsw_threshold = 100;
    let mut index = Index::start(config).await;
    index
        .client
        .create(create("a", 4, pb::IndexKind::Auto))
        .await
        .unwrap();
    let vectors = clustered(100, 4, 3, 0.5, 5);
    let points: Vec<pb::Point> = vectors
        .chunks(4)
        .enumerate()
        .map(|(i, v)| point(format!("{i:03}"), v, json!({"i": i})))
        .collect();
    index
        .client
        .upsert(upsert("a", points[..99].to_vec()))
        .await
        .unwrap();
    let exact = pb::IndexKind::Exact as i32;
    let hnsw = pb::IndexKind::Hnsw as i32;
    assert_eq!(info(&mut index, "a").await.searched_with, exact);
    index
        .client
        .upsert(upsert("a", points[99..].to_vec()))
        .await
        .unwrap();
    let got = info(&mut index, "a").await;
    assert_eq!(
        (got.points, got.searched_with, got.index),
        (100, hnsw, pb::IndexKind::Auto as i32)
    );
    let found = index
        .client
        .search(by_vector("a", &vectors[..4], 5))
        .await
        .unwrap()
        .into_inner();
    assert!(!found.exact);

    let delete = |ids: Vec<String>| delete_ids("a", ids);
    // 50 points left: still at least half the threshold, so the graph stays (rebuilt without
    // its tombstones).
    index
        .client
        .delete(delete((0..50).map(|i| format!("{i:03}")).collect()))
        .await
        .unwrap();
    let got = info(&mut index, "a").await;
    assert_eq!((got.points, got.searched_with), (50, hnsw));
    let found = index
        .client
        .search(by_vector("a", &vectors[..4], 50))
        .await
        .unwrap()
        .into_inner();
    let expected: Vec<String> = (50..100).map(|i| format!("{i:03}")).collect();
    let mut got_ids = ids(&found.hits);
    got_ids.sort();
    assert_eq!(
        got_ids, expected,
        "every live point, and only those, after the rebuild"
    );
    index
        .client
        .delete(delete(vec!["050".into()]))
        .await
        .unwrap();
    assert_eq!(info(&mut index, "a").await.searched_with, exact);
}

#[tokio::test]
async fn a_restart_reloads_every_collection_from_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = clustered(300, 8, 4, 0.5, 9);
    let points: Vec<pb::Point> = vectors
        .chunks(8)
        .enumerate()
        .map(|(i, v)| point(format!("{i:03}"), v, json!({"i": i, "odd": i % 2 == 1})))
        .collect();
    let queries: Vec<pb::SearchRequest> = (0..5)
        .map(|q| {
            let mut r = by_vector("", &vectors[q * 8..q * 8 + 8], 7);
            r.with_vector = true;
            r
        })
        .collect();
    let mut before = Vec::new();
    let mut index = Index::start(Config::for_data_dir(dir.path())).await;
    for (name, kind) in [("e", pb::IndexKind::Exact), ("h", pb::IndexKind::Hnsw)] {
        index.client.create(create(name, 8, kind)).await.unwrap();
        index
            .client
            .upsert(upsert(name, points.clone()))
            .await
            .unwrap();
        index
            .client
            .delete(delete_ids(name, ["000", "001"]))
            .await
            .unwrap();
        for q in &queries {
            let q = pb::SearchRequest {
                collection: name.into(),
                ..q.clone()
            };
            before.push(index.client.search(q).await.unwrap().into_inner().hits);
        }
    }
    index.stop().await;

    let mut index = Index::start(Config::for_data_dir(dir.path())).await;
    let listed = index
        .client
        .list(pb::ListRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = listed.collections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["e", "h"]);
    assert!(listed.collections.iter().all(|c| c.points == 298));
    assert_eq!(
        listed.collections[1].searched_with,
        pb::IndexKind::Hnsw as i32
    );
    let mut after = Vec::new();
    for name in ["e", "h"] {
        for q in &queries {
            let q = pb::SearchRequest {
                collection: name.into(),
                ..q.clone()
            };
            after.push(index.client.search(q).await.unwrap().into_inner().hits);
        }
    }
    assert_eq!(
        before, after,
        "the same answers from the rebuilt structures"
    );
}

#[tokio::test]
async fn a_search_batch_answers_each_search_as_search_does_and_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(dir.path());
    config.max_search_batch = 8;
    let mut index = Index::start(config).await;
    let c = &mut index.client;
    let vectors = clustered(300, 4, 3, 0.5, 9);
    for (name, kind) in [("e", pb::IndexKind::Exact), ("h", pb::IndexKind::Hnsw)] {
        c.create(create(name, 4, kind)).await.unwrap();
        let points = vectors
            .chunks(4)
            .enumerate()
            .map(|(i, v)| point(format!("{i:03}"), v, json!({"i": i})))
            .collect();
        c.upsert(upsert(name, points)).await.unwrap();
    }
    // Tombstones, which the shared scan must skip as a single search does.
    c.delete(delete_ids(
        "e",
        (0..300).step_by(7).map(|i| format!("{i:03}")),
    ))
    .await
    .unwrap();
    let query = |i: usize| &vectors[i * 4..i * 4 + 4];
    let filtered = pb::SearchRequest {
        filter: Some(pb::Filter {
            must: vec![pb::Condition {
                key: "i".into(),
                test: Some(pb::condition::Test::Range(pb::Range {
                    lt: Some(100.0),
                    ..Default::default()
                })),
            }],
            ..Default::default()
        }),
        ..by_vector("e", query(3), 5)
    };
    let searches = vec![
        by_vector("e", query(1), 5),
        by_vector("h", query(2), 4),
        filtered,
        pb::SearchRequest {
            query: Some(pb::search_request::Query::Id("010".into())),
            ..by_vector("e", &[], 3)
        },
        by_vector("e", query(4), 12),
        pb::SearchRequest {
            score_threshold: Some(1.0),
            with_vector: true,
            ..by_vector("e", query(5), 7)
        },
    ];
    let batch = c
        .search_batch(pb::SearchBatchRequest {
            searches: searches.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.results.len(), searches.len());
    for (i, (search, got)) in searches.into_iter().zip(batch.results).enumerate() {
        let alone = c.search(search).await.unwrap().into_inner();
        assert_eq!(got, alone, "search {i}");
        assert!(!got.hits.is_empty(), "search {i}");
    }

    let refused = c
        .search_batch(pb::SearchBatchRequest {
            searches: vec![by_vector("e", query(1), 5); 9],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused
            .message()
            .contains("`searches` must hold 1 to 8 searches, got 9"),
        "{}",
        refused.message()
    );
    let refused = c
        .search_batch(pb::SearchBatchRequest {
            searches: vec![by_vector("e", query(1), 5), by_vector("e", query(1), 0)],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("`searches[1]`: `top_k`"),
        "{}",
        refused.message()
    );
}
