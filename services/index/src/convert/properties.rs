//! Validation's properties ([`super::checks`]) on random requests around every limit
//! (`PROPTEST_CASES` raises their number).

use proptest::prelude::*;

use oneword_proto::index::v1 as pb;
use pb::condition::Test;

use super::checks;

// Values are mostly valid, so that a request is often valid but for one field (or none) and
// each rule decides the outcome often.

fn float() -> impl Strategy<Value = f32> {
    prop_oneof![
        1 => prop::sample::select(vec![
            0.0f32,
            -0.0,
            1.0,
            1e-45,
            f32::NAN,
            f32::INFINITY,
            f32::MAX
        ]),
        4 => -2.0f32..2.0,
    ]
}

fn count() -> impl Strategy<Value = Option<u32>> {
    prop::option::of(prop_oneof![
        4 => 0u32..3,
        4 => 3u32..25,
        1 => 60u32..70,
        1 => 995u32..1005,
        1 => 4090u32..4100,
        1 => any::<u32>(),
    ])
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "a", "a.b", "a..b", ".a", "year"]).prop_map(String::from)
}

fn filter() -> impl Strategy<Value = pb::Filter> {
    let leaf = (key(), 0u8..6, any::<i64>(), prop::option::of(-1.0f64..1.0))
        .prop_map(|(key, kind, i, bound)| {
            let any = |keywords: Vec<String>| {
                Test::Any(pb::AnyOf {
                    keywords,
                    integers: vec![],
                })
            };
            let test = match kind {
                0 => None,
                1 => Some(Test::Match(pb::Match {
                    value: Some(pb::r#match::Value::Integer(i)),
                })),
                2 => Some(Test::Match(pb::Match { value: None })),
                3 => Some(any(vec!["x".into()])),
                4 => Some(any(vec![])),
                _ => Some(Test::Range(pb::Range {
                    lt: bound,
                    gte: (i % 7 == 0).then_some(f64::NAN),
                    ..Default::default()
                })),
            };
            pb::Condition { key, test }
        })
        .boxed();
    let conditions = |c: BoxedStrategy<pb::Condition>| prop::collection::vec(c, 0..3);
    let flat = (conditions(leaf.clone()), conditions(leaf.clone())).prop_map(|(must, should)| {
        pb::Filter {
            must,
            should,
            must_not: vec![],
        }
    });
    // Deeper than the 16 levels allowed, sometimes.
    flat.prop_recursive(18, 40, 2, move |inner| {
        let nested = (inner, prop::sample::select(vec!["", "", "a"]))
            .prop_map(|(f, key)| pb::Condition {
                key: key.into(),
                test: Some(Test::Filter(f)),
            })
            .boxed();
        (conditions(nested), conditions(leaf.clone())).prop_map(|(must, must_not)| pb::Filter {
            must,
            should: vec![],
            must_not,
        })
    })
}

/// Mostly of the dimension [`collection`] mostly has.
fn vector() -> impl Strategy<Value = pb::Vector> {
    let values = prop_oneof![
        3 => prop::collection::vec(float(), 2),
        1 => prop::collection::vec(float(), 0..5),
    ];
    values.prop_map(|values| pb::Vector { values })
}

/// A collection's dimension, metric and whether it has a text model.
fn collection() -> impl Strategy<Value = (usize, u8, bool)> {
    (
        prop_oneof![3 => Just(2usize), 1 => 1usize..4],
        0u8..3,
        any::<bool>(),
    )
}

fn search() -> impl Strategy<Value = pb::SearchRequest> {
    use pb::search_request::Query as Q;
    let query = prop::option::weighted(
        0.9,
        prop_oneof![
            vector().prop_map(Q::Vector),
            "a?".prop_map(Q::Text),
            "a{0,2}".prop_map(Q::Id),
        ],
    );
    (
        query,
        count(),
        prop::option::weighted(0.3, filter()),
        prop::option::weighted(0.3, float()),
        count(),
    )
        .prop_map(
            |(query, top_k, filter, score_threshold, ef_search)| pb::SearchRequest {
                collection: "c".into(),
                query,
                top_k,
                filter,
                score_threshold,
                ef_search,
                ..Default::default()
            },
        )
}

fn point() -> impl Strategy<Value = pb::Point> {
    use pb::point::Content;
    let content = prop::option::of(prop_oneof![
        vector().prop_map(Content::Vector),
        "a?".prop_map(Content::Text)
    ]);
    let payload = prop::sample::select(vec![
        "",
        " ",
        "{}",
        "{\"a\": 1}",
        "[1]",
        "{",
        "{\"long\": \"xxxxxxxxxxxxxxx\"}",
    ]);
    (prop_oneof!["[ab]{0,2}", "x{255,257}"], content, payload).prop_map(|(id, content, payload)| {
        pb::Point {
            id,
            content,
            payload: payload.into(),
        }
    })
}

proptest! {
    #[test]
    fn create_is_accepted_exactly_when_its_rules_hold(
        name in prop_oneof!["[a-zA-Z0-9_-]{0,3}", "[a-z]{63,65}", ".{0,4}"],
        model in prop_oneof![Just(String::new()), Just("default".to_owned())],
        dimension in count(),
        (metric, index) in (-1i32..5, -1i32..5),
        hnsw in prop::option::of((count(), count(), count())),
    ) {
        let hnsw = hnsw.map(|(m, ef_construction, ef_search)| pb::HnswParams { m, ef_construction, ef_search });
        checks::create(pb::CreateRequest { name, model, dimension, metric, index, hnsw });
    }

    #[test]
    fn search_is_accepted_exactly_when_its_rules_hold(
        r in search(),
        (dimension, metric, model) in collection(),
    ) {
        checks::search(r, &checks::spec(dimension, metric, model));
    }

    #[test]
    fn a_batch_names_the_search_that_fails(
        searches in prop::collection::vec(search(), 0..5),
        (dimension, metric, model) in collection(),
    ) {
        let r = pb::SearchBatchRequest { searches };
        checks::search_batch(r, &checks::spec(dimension, metric, model));
    }

    #[test]
    fn points_are_accepted_exactly_when_their_rules_hold(
        points in prop::collection::vec(point(), 0..6),
        (dimension, metric, model) in collection(),
    ) {
        checks::upsert(points, &checks::spec(dimension, metric, model));
    }

    #[test]
    fn delete_and_retrieve_are_accepted_exactly_when_their_rules_hold(
        ids in prop::collection::vec("[a-z]{1,3}", 0..6),
        filter in prop::option::of(filter()),
        with: (bool, bool),
    ) {
        use pb::delete_request::Selector;
        let selector = match filter {
            Some(f) => Some(Selector::Filter(f)),
            None if with.0 => None,
            None => Some(Selector::Ids(pb::PointIds { ids: ids.clone() })),
        };
        checks::delete(pb::DeleteRequest { collection: "c".into(), selector });
        checks::retrieve(pb::RetrieveRequest { collection: "c".into(), ids, with_payload: with.0, with_vector: with.1 });
    }

    #[test]
    fn names_are_accepted_exactly_when_their_rules_hold(name in prop_oneof![".{0,4}", "[a-zA-Z0-9_-]{60,66}"]) {
        checks::name(&name);
    }
}
