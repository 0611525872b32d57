//! Validation errors name the field, the value and what is allowed.

use oneword_proto::index::v1 as pb;

use super::*;

const LIMITS: Limits = Limits {
    max_points: 3,
    max_payload_bytes: 32,
    max_top_k: 50,
    max_search_batch: 4,
};

fn spec(metric: Metric) -> Spec {
    Spec {
        name: "c".into(),
        model: String::new(),
        dimension: 2,
        metric,
        index: IndexKind::Auto,
        hnsw: HnswParams::default(),
        created_us: 0,
    }
}

fn vector_point(id: &str, values: &[f32], payload: &str) -> pb::Point {
    pb::Point {
        id: id.into(),
        content: Some(pb::point::Content::Vector(pb::Vector {
            values: values.to_vec(),
        })),
        payload: payload.into(),
    }
}

/// The field and message of an INVALID_ARGUMENT.
fn invalid<T: std::fmt::Debug>(result: Result<T, Error>) -> (String, String) {
    match result {
        Err(Error::InvalidArgument(field, message)) => (field, message),
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
}

#[test]
fn points_are_checked_field_by_field() {
    let s = spec(Metric::Dot);
    let check = |points: Vec<pb::Point>| super::points(points, &s, &LIMITS);

    let (field, message) = invalid(check(vec![vector_point("", &[1.0, 2.0], "")]));
    assert_eq!(field, "points[0].id");
    assert_eq!(message, "`points[0].id` must be 1 to 256 bytes, got 0");

    let (field, message) = invalid(check(vec![
        vector_point("a", &[1.0, 2.0], ""),
        vector_point("a", &[1.0, 2.0], ""),
    ]));
    assert_eq!(field, "points[1].id");
    assert!(message.contains("repeats `points[0].id`"), "{message}");

    let (field, message) = invalid(check(vec![vector_point("a", &[1.0, f32::NAN], "")]));
    assert_eq!(field, "points[0].vector[1]");
    assert_eq!(
        message,
        "`points[0].vector[1]` is NaN; values must be finite"
    );

    let (field, message) = invalid(check(vec![vector_point("a", &[1.0], "")]));
    assert_eq!(field, "points[0].vector");
    assert!(
        message.contains("has 1 values") && message.contains("2-dimensional"),
        "{message}"
    );

    let (field, message) = invalid(check(vec![vector_point("a", &[1.0, 2.0], "[1]")]));
    assert_eq!(field, "points[0].payload");
    assert_eq!(
        message,
        "`points[0].payload` must be a JSON object, got an array"
    );

    let (_, message) = invalid(check(vec![vector_point("a", &[1.0, 2.0], "{")]));
    assert!(
        message.starts_with("`points[0].payload` is not valid JSON"),
        "{message}"
    );

    let big = format!("{{\"k\": \"{}\"}}", "x".repeat(40));
    let (_, message) = invalid(check(vec![vector_point("a", &[1.0, 2.0], &big)]));
    assert_eq!(
        message,
        "`points[0].payload` is 49 bytes; at most 32 are allowed"
    );

    let (field, message) = invalid(check(vec![pb::Point {
        id: "a".into(),
        ..Default::default()
    }]));
    assert_eq!(
        (field.as_str(), message.as_str()),
        ("points[0]", "`points[0]` has neither `text` nor `vector`")
    );

    let (field, _) = invalid(check(vec![]));
    assert_eq!(field, "points");
    let many = (0..4)
        .map(|i| vector_point(&i.to_string(), &[1.0, 2.0], ""))
        .collect();
    assert!(matches!(check(many), Err(Error::TooMany(m)) if m.contains("at most 3")));

    let text = pb::Point {
        id: "t".into(),
        content: Some(pb::point::Content::Text("hello".into())),
        payload: String::new(),
    };
    assert!(
        matches!(check(vec![text]), Err(Error::FailedPrecondition(m)) if m.contains("has no text model"))
    );

    let ok = check(vec![vector_point("a", &[3.0, 4.0], " ")]).unwrap();
    assert!(ok[0].payload.is_empty(), "a blank payload is {{}}");
}

#[test]
fn cosine_vectors_are_normalised_and_must_have_a_direction() {
    let s = spec(Metric::Cosine);
    let ok = super::points(vec![vector_point("a", &[3.0, 4.0], "")], &s, &LIMITS).unwrap();
    assert!(matches!(&ok[0].content, Content::Vector(v) if v == &[0.6, 0.8]));
    let (field, _) = invalid(super::points(
        vec![vector_point("a", &[0.0, 0.0], "")],
        &s,
        &LIMITS,
    ));
    assert_eq!(field, "points[0].vector");
}

#[test]
fn creates_are_checked() {
    let create = |r: pb::CreateRequest| super::create(r, 1);
    let base = pb::CreateRequest {
        name: "ok".into(),
        dimension: Some(4),
        ..Default::default()
    };
    let (field, message) = invalid(create(pb::CreateRequest {
        name: "a b".into(),
        ..base.clone()
    }));
    assert_eq!(field, "name");
    assert_eq!(
        message,
        "`name` must be 1 to 64 characters of [A-Za-z0-9_-], got \"a b\""
    );
    let (field, message) = invalid(create(pb::CreateRequest {
        dimension: Some(5000),
        ..base.clone()
    }));
    assert_eq!(
        (field.as_str(), message.as_str()),
        ("dimension", "`dimension` must be in 1..=4096, got 5000")
    );
    let (field, _) = invalid(create(pb::CreateRequest {
        dimension: None,
        ..base.clone()
    }));
    assert_eq!(field, "dimension");
    let (field, message) = invalid(create(pb::CreateRequest {
        hnsw: Some(pb::HnswParams {
            m: Some(100),
            ..Default::default()
        }),
        ..base.clone()
    }));
    assert_eq!(
        (field.as_str(), message.as_str()),
        ("hnsw.m", "`hnsw.m` must be in 4..=64, got 100")
    );
    let (field, _) = invalid(create(pb::CreateRequest {
        metric: 9,
        ..base.clone()
    }));
    assert_eq!(field, "metric");
    let spec = create(base).unwrap().spec;
    assert_eq!(
        (spec.metric, spec.index, spec.hnsw),
        (Metric::Cosine, IndexKind::Auto, HnswParams::default())
    );
}

#[test]
fn a_model_is_the_embedders() {
    let served = TextModel {
        name: "all-minilm-l6-v2".into(),
        dimensions: 384,
    };
    let asked = |model: &str, dimension: Option<u32>| {
        let r = pb::CreateRequest {
            name: "t".into(),
            model: model.into(),
            dimension,
            ..Default::default()
        };
        with_model(super::create(r, 1).unwrap(), &served)
    };
    let spec = asked("default", None).unwrap();
    assert_eq!(
        (spec.model.as_str(), spec.dimension),
        ("all-minilm-l6-v2", 384)
    );
    assert_eq!(asked("all-minilm-l6-v2", Some(384)).unwrap().dimension, 384);
    let (field, message) = invalid(asked("gpt2", None));
    assert_eq!(field, "model");
    assert!(
        message.contains("the embedder serves \"all-minilm-l6-v2\""),
        "{message}"
    );
    let (field, _) = invalid(asked("default", Some(768)));
    assert_eq!(field, "dimension");
}

#[test]
fn searches_are_checked() {
    let s = spec(Metric::L2);
    let search = |r: pb::SearchRequest| super::search(r, &s, &LIMITS);
    let base = pb::SearchRequest {
        collection: "c".into(),
        query: Some(pb::search_request::Query::Vector(pb::Vector {
            values: vec![1.0, 2.0],
        })),
        ..Default::default()
    };
    assert_eq!(search(base.clone()).unwrap().top_k, 10, "the default");
    let (field, message) = invalid(search(pb::SearchRequest {
        top_k: Some(0),
        ..base.clone()
    }));
    assert_eq!(
        (field.as_str(), message.as_str()),
        ("top_k", "`top_k` must be in 1..=50, got 0")
    );
    let (field, message) = invalid(search(pb::SearchRequest {
        top_k: Some(20),
        ef_search: Some(10),
        ..base.clone()
    }));
    assert_eq!(field, "ef_search");
    assert_eq!(
        message,
        "`ef_search` must be in 20..=1000 (at least `top_k`), got 10"
    );
    let (field, _) = invalid(search(pb::SearchRequest {
        score_threshold: Some(f32::INFINITY),
        ..base.clone()
    }));
    assert_eq!(field, "score_threshold");
    let (field, _) = invalid(search(pb::SearchRequest {
        query: None,
        ..base.clone()
    }));
    assert_eq!(field, "query");
    let (field, _) = invalid(search(pb::SearchRequest {
        filter: Some(pb::Filter {
            must: vec![pb::Condition::default()],
            ..Default::default()
        }),
        ..base
    }));
    assert_eq!(field, "filter.must[0]");
}

#[test]
fn a_search_batch_is_capped_and_its_errors_name_the_search() {
    assert!(batch(1, &LIMITS).is_ok());
    assert!(batch(4, &LIMITS).is_ok());
    assert_eq!(
        invalid(batch(5, &LIMITS)),
        (
            "searches".into(),
            "`searches` must hold 1 to 4 searches, got 5".into()
        )
    );
    assert_eq!(invalid(batch(0, &LIMITS)).0, "searches");
    let s = spec(Metric::L2);
    let bad = pb::SearchRequest {
        top_k: Some(0),
        ..Default::default()
    };
    let e = super::search(bad, &s, &LIMITS).map_err(in_batch(2));
    assert_eq!(invalid(e).0, "searches[2].query");
}

#[test]
fn deletes_need_a_selector() {
    let (field, _) = invalid(delete(pb::DeleteRequest::default(), &LIMITS));
    assert_eq!(field, "selector");
    let ids = |n: usize| pb::DeleteRequest {
        collection: "c".into(),
        selector: Some(pb::delete_request::Selector::Ids(pb::PointIds {
            ids: (0..n).map(|i| i.to_string()).collect(),
        })),
    };
    let (field, _) = invalid(delete(ids(0), &LIMITS));
    assert_eq!(field, "ids.ids");
    assert!(matches!(delete(ids(4), &LIMITS), Err(Error::TooMany(_))));
}
