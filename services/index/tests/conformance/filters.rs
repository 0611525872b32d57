//! Every filter operator, over enough points that broad filters take the graph (in an HNSW
//! flavour) and narrow ones the exact scan; each answer is checked against brute force over
//! the points the filter should pass.

use oneword_proto::index::v1 as pb;
use pb::condition::Test;
use serde_json::json;

use crate::common::{by_vector, clustered, point, Metric};
use crate::Running;

const N: usize = 1000;
const DIM: usize = 8;
const K: usize = 10;

fn payload(i: usize) -> serde_json::Value {
    let tag = ["red", "green", "blue"][i % 3];
    json!({
        "tag": tag,
        "n": i,
        "even": i.is_multiple_of(2),
        "labels": [format!("l{}", i % 5), format!("m{}", i % 7)],
        "meta": {"year": 1900 + i % 100, "score": i as f64 * 0.5},
    })
}

fn field(key: &str, test: Test) -> pb::Condition {
    pb::Condition {
        key: key.into(),
        test: Some(test),
    }
}

fn keyword(key: &str, k: &str) -> pb::Condition {
    field(
        key,
        Test::Match(pb::Match {
            value: Some(pb::r#match::Value::Keyword(k.into())),
        }),
    )
}

fn integer(key: &str, i: i64) -> pb::Condition {
    field(
        key,
        Test::Match(pb::Match {
            value: Some(pb::r#match::Value::Integer(i)),
        }),
    )
}

fn boolean(key: &str, b: bool) -> pb::Condition {
    field(
        key,
        Test::Match(pb::Match {
            value: Some(pb::r#match::Value::Boolean(b)),
        }),
    )
}

fn range(key: &str, r: pb::Range) -> pb::Condition {
    field(key, Test::Range(r))
}

fn nested(f: pb::Filter) -> pb::Condition {
    pb::Condition {
        key: String::new(),
        test: Some(Test::Filter(f)),
    }
}

fn must(c: Vec<pb::Condition>) -> pb::Filter {
    pb::Filter {
        must: c,
        ..Default::default()
    }
}

type Case = (&'static str, pb::Filter, fn(usize) -> bool);

fn cases() -> Vec<Case> {
    let r = pb::Range::default();
    vec![
        ("match keyword", must(vec![keyword("tag", "red")]), |i| {
            i % 3 == 0
        }),
        ("match integer", must(vec![integer("n", 17)]), |i| i == 17),
        ("match boolean", must(vec![boolean("even", false)]), |i| {
            i % 2 == 1
        }),
        (
            "match in an array",
            must(vec![keyword("labels", "l2")]),
            |i| i % 5 == 2,
        ),
        (
            "any keywords",
            must(vec![field(
                "tag",
                Test::Any(pb::AnyOf {
                    keywords: vec!["red".into(), "blue".into()],
                    integers: vec![],
                }),
            )]),
            |i| i % 3 != 1,
        ),
        (
            "any integers",
            must(vec![field(
                "n",
                Test::Any(pb::AnyOf {
                    keywords: vec![],
                    integers: vec![1, 2, 3, 500],
                }),
            )]),
            |i| [1, 2, 3, 500].contains(&i),
        ),
        (
            "range gt",
            must(vec![range(
                "meta.score",
                pb::Range {
                    gt: Some(400.0),
                    ..r
                },
            )]),
            |i| i > 800,
        ),
        (
            "range gte",
            must(vec![range(
                "meta.score",
                pb::Range {
                    gte: Some(400.0),
                    ..r
                },
            )]),
            |i| i >= 800,
        ),
        (
            "range lt",
            must(vec![range(
                "meta.year",
                pb::Range {
                    lt: Some(1910.0),
                    ..r
                },
            )]),
            |i| i % 100 < 10,
        ),
        (
            "range lte",
            must(vec![range(
                "meta.year",
                pb::Range {
                    lte: Some(1910.0),
                    ..r
                },
            )]),
            |i| i % 100 <= 10,
        ),
        (
            "range both ends",
            must(vec![range(
                "n",
                pb::Range {
                    gte: Some(100.0),
                    lt: Some(700.0),
                    ..r
                },
            )]),
            |i| (100..700).contains(&i),
        ),
        (
            "must_not",
            pb::Filter {
                must_not: vec![keyword("tag", "red")],
                ..Default::default()
            },
            |i| i % 3 != 0,
        ),
        (
            "should",
            pb::Filter {
                should: vec![keyword("tag", "red"), boolean("even", true)],
                ..Default::default()
            },
            |i| i % 3 == 0 || i % 2 == 0,
        ),
        (
            "must and must_not",
            pb::Filter {
                must: vec![boolean("even", true)],
                must_not: vec![keyword("labels", "m0")],
                ..Default::default()
            },
            |i| i % 2 == 0 && i % 7 != 0,
        ),
        (
            "nested: (red and even) or (blue and n < 300)",
            pb::Filter {
                should: vec![
                    nested(must(vec![keyword("tag", "red"), boolean("even", true)])),
                    nested(must(vec![
                        keyword("tag", "blue"),
                        range(
                            "n",
                            pb::Range {
                                lt: Some(300.0),
                                ..r
                            },
                        ),
                    ])),
                ],
                ..Default::default()
            },
            |i| (i % 3 == 0 && i % 2 == 0) || (i % 3 == 2 && i < 300),
        ),
        (
            "a missing key fails must",
            must(vec![integer("nope", 1)]),
            |_| false,
        ),
        (
            "a missing key passes must_not",
            pb::Filter {
                must_not: vec![integer("nope", 1)],
                ..Default::default()
            },
            |_| true,
        ),
        (
            "integer does not match a string",
            must(vec![integer("tag", 0)]),
            |_| false,
        ),
    ]
}

pub async fn every_filter_operator(mut ix: Running) {
    let vectors = clustered(N + 1, DIM, 10, 0.3, 7);
    let row = |i: usize| &vectors[i * DIM..(i + 1) * DIM];
    ix.create("f", DIM as u32, Metric::L2).await;
    let points: Vec<pb::Point> = (0..N)
        .map(|i| point(format!("{i:04}"), row(i), payload(i)))
        .collect();
    for batch in points.chunks(500) {
        ix.upsert("f", batch.to_vec()).await;
    }
    let query = row(N);
    let mut through_the_graph = 0;
    for (name, filter, passes) in cases() {
        let mut request = by_vector("f", query, K as u32);
        request.filter = Some(filter);
        let found = ix.search(request).await;
        let ids: Vec<String> = (0..N)
            .filter(|&i| passes(i))
            .map(|i| format!("{i:04}"))
            .collect();
        let expected = Metric::L2.brute_force(
            ids.iter().map(|id| (id.as_str(), row(id.parse().unwrap()))),
            query,
            K,
        );
        assert_eq!(
            found.hits.len(),
            expected.len(),
            "{name}: never fewer than k when k pass"
        );
        for hit in &found.hits {
            assert!(
                passes(hit.id.parse().unwrap()),
                "{name}: {} does not pass",
                hit.id
            );
            let stored: serde_json::Value = serde_json::from_str(&hit.payload).unwrap();
            assert_eq!(stored, payload(hit.id.parse().unwrap()), "{name}");
        }
        let got: Vec<&str> = found.hits.iter().map(|h| h.id.as_str()).collect();
        let want: Vec<&str> = expected.iter().map(|(id, _)| id.as_str()).collect();
        if found.exact || !ix.flavour.approximate {
            assert_eq!(got, want, "{name}");
        } else {
            through_the_graph += 1;
            let recalled = got.iter().filter(|id| want.contains(id)).count();
            assert!(
                recalled * 10 >= want.len() * 8,
                "{name}: recall {recalled}/{}",
                want.len()
            );
        }
    }
    if ix.flavour.approximate {
        assert!(through_the_graph > 0, "broad filters go through the graph");
    }
}
