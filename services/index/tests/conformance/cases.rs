//! The suite's small cases: writes, deletes, ordering, thresholds and the errors.

use oneword_proto::index::v1 as pb;
use serde_json::json;
use tonic::Code;

use crate::common::{by_vector, delete_ids, ids, point, Metric};
use crate::Running;

fn payload(record: &pb::Record) -> serde_json::Value {
    serde_json::from_str(&record.payload).unwrap()
}

pub async fn upsert_and_overwrite(mut ix: Running) {
    let info = ix.create("c", 3, Metric::L2).await;
    let expected = if ix.flavour.approximate {
        pb::IndexKind::Hnsw
    } else {
        pb::IndexKind::Exact
    };
    assert_eq!(info.searched_with, expected as i32);
    assert_eq!(info.backend, ix.flavour.backend);
    let upserted = ix
        .upsert(
            "c",
            vec![
                point("a", &[1.0, 0.0, 0.0], json!({"n": 1})),
                point("b", &[0.0, 1.0, 0.0], json!({"n": 2})),
                point("c", &[0.0, 0.0, 1.0], json!({})),
            ],
        )
        .await;
    assert_eq!(upserted, 3);
    let got = ix.retrieve("c", &["b", "zz", "a", "c"]).await;
    assert_eq!(
        ids(&got),
        ["b", "a", "c"],
        "in the order asked, unknown ids left out"
    );
    assert_eq!(payload(&got[0]), json!({"n": 2}));
    assert_eq!(got[0].vector, [0.0, 1.0, 0.0]);
    assert_eq!(got[0].score, 0.0);

    assert_eq!(
        ix.upsert(
            "c",
            vec![point("b", &[0.0, 2.0, 0.0], json!({"n": 20, "s": "x"}))]
        )
        .await,
        1
    );
    let got = ix.retrieve("c", &["b"]).await;
    assert_eq!(payload(&got[0]), json!({"n": 20, "s": "x"}));
    assert_eq!(got[0].vector, [0.0, 2.0, 0.0]);
    assert_eq!(ix.points("c").await, 3, "an overwrite is not a new point");
    let found = ix.search(by_vector("c", &[0.0, 2.0, 0.0], 3)).await;
    assert_eq!(ids(&found.hits), ["b", "a", "c"]);
    assert_eq!(found.hits[0].score, 0.0);
    assert_eq!(payload(&found.hits[0]), json!({"n": 20, "s": "x"}));
}

pub async fn delete_by_id_and_by_filter(mut ix: Running) {
    ix.create("d", 2, Metric::L2).await;
    let points = (0..10)
        .map(|i| {
            point(
                format!("p{i}"),
                &[i as f32, 0.0],
                json!({"n": i, "even": i % 2 == 0}),
            )
        })
        .collect();
    ix.upsert("d", points).await;
    let deleted = |ids: &[&str]| delete_ids("d", ids.iter().copied());
    let r = ix
        .client
        .delete(deleted(&["p1", "p3", "nope"]))
        .await
        .unwrap();
    assert_eq!(r.into_inner().deleted, 2, "only points that existed count");
    let even = pb::Filter {
        must: vec![pb::Condition {
            key: "even".into(),
            test: Some(pb::condition::Test::Match(pb::Match {
                value: Some(pb::r#match::Value::Boolean(true)),
            })),
        }],
        ..Default::default()
    };
    let by_filter = |f: pb::Filter| pb::DeleteRequest {
        collection: "d".into(),
        selector: Some(pb::delete_request::Selector::Filter(f)),
    };
    let r = ix.client.delete(by_filter(even.clone())).await.unwrap();
    assert_eq!(r.into_inner().deleted, 5);
    let all: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    assert_eq!(ids(&ix.retrieve("d", &all).await), ["p5", "p7", "p9"]);
    assert_eq!(
        ids(&ix.search(by_vector("d", &[0.0, 0.0], 10)).await.hits),
        ["p5", "p7", "p9"]
    );
    assert_eq!(ix.points("d").await, 3);
    let r = ix.client.delete(by_filter(even)).await.unwrap();
    assert_eq!(r.into_inner().deleted, 0);
    let refused = ix
        .client
        .delete(by_filter(pb::Filter::default()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("`filter` has no condition"),
        "{}",
        refused.message()
    );
}

pub async fn top_k_ties_go_by_id(mut ix: Running) {
    for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
        let name = format!("t-{metric:?}");
        ix.create(&name, 2, metric).await;
        let points = ["d", "b", "a", "c"]
            .into_iter()
            .map(|id| point(id, &[1.0, 0.0], json!({})))
            .chain([point("e", &[0.0, 1.0], json!({}))])
            .collect();
        ix.upsert(&name, points).await;
        let top3 = ix.search(by_vector(&name, &[1.0, 0.0], 3)).await;
        assert_eq!(ids(&top3.hits), ["a", "b", "c"], "{metric:?}");
        let top5 = ix.search(by_vector(&name, &[1.0, 0.0], 5)).await;
        assert_eq!(ids(&top5.hits), ["a", "b", "c", "d", "e"], "{metric:?}");
    }
}

pub async fn score_threshold_in_each_metric(mut ix: Running) {
    // Scores from [2, 0]: cosine 1, 0.6, 0, −1; dot 2, 1.2, 0, −2; L2 1, 1.61, 2.24, 3.
    let vectors: [(&str, [f32; 2]); 4] = [
        ("a", [1.0, 0.0]),
        ("b", [0.6, 0.8]),
        ("c", [0.0, 1.0]),
        ("d", [-1.0, 0.0]),
    ];
    for (metric, threshold, kept, first) in [
        (Metric::Cosine, 0.5, vec!["a", "b"], 1.0),
        (Metric::Dot, 1.0, vec!["a", "b"], 2.0),
        (Metric::L2, 1.7, vec!["a", "b"], 1.0),
    ] {
        let name = format!("s-{metric:?}");
        ix.create(&name, 2, metric).await;
        let points = vectors
            .iter()
            .map(|(id, v)| point(*id, v, json!({})))
            .collect();
        ix.upsert(&name, points).await;
        let mut request = by_vector(&name, &[2.0, 0.0], 4);
        let all = ix.search(request.clone()).await;
        assert_eq!(ids(&all.hits), ["a", "b", "c", "d"], "{metric:?}");
        request.score_threshold = Some(threshold);
        let found = ix.search(request).await;
        assert_eq!(ids(&found.hits), kept, "{metric:?} at {threshold}");
        assert!(
            (found.hits[0].score - first).abs() < 1e-6,
            "{metric:?}: {}",
            found.hits[0].score
        );
    }
}

pub async fn dimension_mismatch_is_refused_and_changes_nothing(mut ix: Running) {
    ix.create("m", 3, Metric::Dot).await;
    let refused = ix
        .client
        .upsert(pb::UpsertRequest {
            collection: "m".into(),
            points: vec![
                point("ok", &[1.0, 2.0, 3.0], json!({})),
                point("short", &[1.0, 2.0], json!({})),
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused
            .message()
            .contains("`points[1].vector` has 2 values")
            && refused.message().contains("3-dimensional"),
        "{}",
        refused.message()
    );
    assert_eq!(ix.points("m").await, 0, "a refused request writes nothing");
    let refused = ix
        .client
        .search(by_vector("m", &[1.0; 4], 1))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("`vector` has 4 values"),
        "{}",
        refused.message()
    );
}

pub async fn non_finite_values_are_refused(mut ix: Running) {
    ix.create("n", 3, Metric::Cosine).await;
    for (bad, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let refused = ix
            .client
            .upsert(pb::UpsertRequest {
                collection: "n".into(),
                points: vec![point("x", &[1.0, bad, 0.0], json!({}))],
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused
                .message()
                .contains(&format!("`points[0].vector[1]` is {shown}")),
            "{}",
            refused.message()
        );
        let refused = ix
            .client
            .search(by_vector("n", &[bad, 0.0, 0.0], 1))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused.message().contains("`vector[0]`"),
            "{}",
            refused.message()
        );
    }
    let refused = ix
        .client
        .upsert(pb::UpsertRequest {
            collection: "n".into(),
            points: vec![point("zero", &[0.0; 3], json!({}))],
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::InvalidArgument,
        "a cosine collection needs a direction"
    );
    assert_eq!(ix.points("n").await, 0);
}

pub async fn unknown_collection_is_not_found(mut ix: Running) {
    let c = &mut ix.client;
    let reference = || pb::CollectionRef {
        name: "nope".into(),
    };
    let statuses = [
        c.get(reference()).await.unwrap_err(),
        c.drop(reference()).await.unwrap_err(),
        c.search(by_vector("nope", &[1.0], 1)).await.unwrap_err(),
        c.upsert(pb::UpsertRequest {
            collection: "nope".into(),
            points: vec![point("a", &[1.0], json!({}))],
        })
        .await
        .unwrap_err(),
        c.retrieve(pb::RetrieveRequest {
            collection: "nope".into(),
            ids: vec!["a".into()],
            ..Default::default()
        })
        .await
        .unwrap_err(),
        c.delete(delete_ids("nope", ["a"])).await.unwrap_err(),
    ];
    for status in statuses {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert!(
            status
                .message()
                .contains("collection `nope` does not exist"),
            "{status:?}"
        );
    }
}

pub async fn duplicate_name_and_drop(mut ix: Running) {
    ix.create("x", 2, Metric::L2).await;
    ix.upsert("x", vec![point("a", &[1.0, 1.0], json!({}))])
        .await;
    let again = ix
        .client
        .create(pb::CreateRequest {
            name: "x".into(),
            dimension: Some(4),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    assert!(
        again.message().contains("collection `x` already exists"),
        "{}",
        again.message()
    );
    let listed = ix
        .client
        .list(pb::ListRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.collections.len(), 1);
    assert_eq!(listed.collections[0].dimension, 2);
    let dropped = ix
        .client
        .drop(pb::CollectionRef { name: "x".into() })
        .await
        .unwrap();
    assert_eq!(dropped.into_inner().points, 1);
    let gone = ix
        .client
        .get(pb::CollectionRef { name: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let info = ix.create("x", 5, Metric::Dot).await;
    assert_eq!(
        (info.dimension, info.points),
        (5, 0),
        "a new collection, not the old one"
    );
}

pub async fn search_by_id_excludes_the_point(mut ix: Running) {
    ix.create("i", 2, Metric::L2).await;
    let points = [("a", [0.0, 0.0]), ("b", [1.0, 0.0]), ("c", [3.0, 0.0])]
        .iter()
        .map(|(id, v)| point(*id, v, json!({})))
        .collect();
    ix.upsert("i", points).await;
    let request = |id: &str| pb::SearchRequest {
        collection: "i".into(),
        query: Some(pb::search_request::Query::Id(id.into())),
        top_k: Some(5),
        ..Default::default()
    };
    let found = ix.search(request("a")).await;
    assert_eq!(ids(&found.hits), ["b", "c"]);
    assert_eq!(found.hits[0].score, 1.0);
    let missing = ix.client.search(request("zz")).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(
        missing.message().contains("no point `zz`"),
        "{}",
        missing.message()
    );
}
