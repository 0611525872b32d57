//! Properties of the index's request validation, shared by the property tests (`cargo test`) and
//! the fuzz targets (`make fuzz`): each request is accepted exactly when the documented rules
//! hold (restated here), keeps what was asked for, and is otherwise refused with an error that
//! names its field. Each function panics when its property fails.

use oneword_proto::index::v1 as pb;

use super::{Limits, MAX_DIMENSION, MAX_EF, MAX_NAME};
use crate::error::Error;
use crate::types::{HnswParams, IndexKind, Metric, Query, Selector, Spec};

/// Limits small enough for random inputs to cross them.
pub const LIMITS: Limits = Limits {
    max_points: 4,
    max_payload_bytes: 24,
    max_top_k: 20,
    max_search_batch: 3,
};

/// A collection of `dimension` (1 to 4) with or without a text model.
pub fn spec(dimension: usize, metric: u8, model: bool) -> Spec {
    Spec {
        name: "c".into(),
        model: if model { "m".into() } else { String::new() },
        dimension: dimension.clamp(1, 4),
        metric: [Metric::Cosine, Metric::Dot, Metric::L2][metric as usize % 3],
        index: IndexKind::Auto,
        hnsw: HnswParams::default(),
        created_us: 0,
    }
}

/// A refusal of a request the rules call invalid, naming a field in backticks.
fn refused(valid: bool, request: &dyn std::fmt::Debug, e: &Error) {
    assert!(!valid, "{request:?} refused: {e}");
    match e {
        Error::InvalidArgument(field, message) => assert!(
            !field.is_empty() && message.contains(&format!("`{field}")),
            "{message:?} does not name `{field}`"
        ),
        Error::TooMany(message) | Error::FailedPrecondition(message) => {
            assert!(message.contains('`'), "{message:?} names no field")
        }
        other => panic!("validation failed with {other:?}"),
    }
}

fn name_ok(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn vector_ok(v: &[f32], spec: &Spec) -> bool {
    v.len() == spec.dimension
        && v.iter().all(|x| x.is_finite())
        && (spec.metric != Metric::Cosine || v.iter().any(|&x| x != 0.0))
}

/// A filter's rules: every condition has a test, a field condition a key of non-empty dot
/// steps, a nested one no key and at most 16 levels, a match a value, an `any` exactly one
/// list, a range a bound and no NaN.
fn filter_ok(f: &pb::Filter, depth: usize) -> bool {
    use pb::condition::Test;
    let key_ok = |k: &str| !k.is_empty() && k.split('.').all(|s| !s.is_empty());
    depth <= 16
        && [&f.must, &f.should, &f.must_not].iter().all(|list| {
            list.iter().all(|c| match &c.test {
                None => false,
                Some(Test::Filter(inner)) => c.key.is_empty() && filter_ok(inner, depth + 1),
                Some(Test::Match(m)) => m.value.is_some() && key_ok(&c.key),
                Some(Test::Any(a)) => {
                    a.keywords.is_empty() != a.integers.is_empty() && key_ok(&c.key)
                }
                Some(Test::Range(r)) => {
                    let bounds = [r.gt, r.gte, r.lt, r.lte];
                    bounds.iter().any(Option::is_some)
                        && bounds.iter().flatten().all(|b| !b.is_nan())
                        && key_ok(&c.key)
                }
            })
        })
}

pub fn create(r: pb::CreateRequest) {
    let bounded = |v: Option<u32>, lo: u32, hi: u32| v.is_none_or(|v| (lo..=hi).contains(&v));
    let valid = name_ok(&r.name)
        && bounded(r.dimension, 1, MAX_DIMENSION as u32)
        && (!r.model.is_empty() || r.dimension.is_some())
        && pb::Metric::try_from(r.metric).is_ok()
        && pb::IndexKind::try_from(r.index).is_ok()
        && r.hnsw.is_none_or(|h| {
            bounded(h.m, 4, 64)
                && bounded(h.ef_construction, 16, MAX_EF as u32)
                && bounded(h.ef_search, 1, MAX_EF as u32)
        });
    match super::create(r.clone(), 0) {
        Ok(c) => {
            assert!(valid, "{r:?} accepted");
            assert_eq!(c.dimension, r.dimension.map(|d| d as usize));
            assert_eq!((c.spec.name, c.spec.model), (r.name, r.model));
            let h = r.hnsw.unwrap_or_default();
            let default = HnswParams::default();
            assert_eq!(c.spec.hnsw.m, h.m.map_or(default.m, |m| m as usize));
        }
        Err(e) => refused(valid, &r, &e),
    }
}

pub fn search(r: pb::SearchRequest, spec: &Spec) {
    use pb::search_request::Query as Q;
    let top_k = r.top_k.map_or(10, |k| k as usize);
    let valid = match &r.query {
        Some(Q::Vector(v)) => vector_ok(&v.values, spec),
        Some(Q::Text(t)) => !spec.model.is_empty() && !t.is_empty(),
        Some(Q::Id(id)) => !id.is_empty(),
        None => false,
    } && (1..=LIMITS.max_top_k).contains(&top_k)
        && r.ef_search
            .is_none_or(|e| (top_k..=MAX_EF.max(top_k)).contains(&(e as usize)))
        && r.score_threshold.is_none_or(f32::is_finite)
        && r.filter.as_ref().is_none_or(|f| filter_ok(f, 0));
    match super::search(r.clone(), spec, &LIMITS) {
        Ok(s) => {
            assert!(valid, "{r:?} accepted");
            assert_eq!(s.top_k, top_k);
            assert_eq!(s.ef_search, r.ef_search.map(|e| e as usize));
            assert_eq!(s.filter.is_some(), r.filter.is_some());
            if let Query::Vector(v) = &s.query {
                if spec.metric == Metric::Cosine {
                    let norm = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
                    assert!((norm - 1.0).abs() < 1e-5, "{v:?} has norm {norm}");
                }
            }
        }
        Err(e) => refused(valid, &r, &e),
    }
}

pub fn search_batch(r: pb::SearchBatchRequest, spec: &Spec) {
    let sized = super::batch(r.searches.len(), &LIMITS);
    assert_eq!(
        sized.is_ok(),
        (1..=LIMITS.max_search_batch).contains(&r.searches.len())
    );
    if let Err(e) = sized {
        return refused(false, &r, &e);
    }
    for (i, s) in r.searches.into_iter().enumerate() {
        if let Err(Error::InvalidArgument(field, message)) =
            super::search(s, spec, &LIMITS).map_err(super::in_batch(i))
        {
            let at = format!("searches[{i}]");
            assert!(field.starts_with(&at) && message.starts_with(&format!("`{at}`")));
        }
    }
}

pub fn upsert(points: Vec<pb::Point>, spec: &Spec) {
    use pb::point::Content;
    let mut ids: Vec<&str> = points.iter().map(|p| p.id.as_str()).collect();
    ids.sort_unstable();
    let unique = ids.windows(2).all(|w| w[0] != w[1]);
    let payload_ok = |p: &str| {
        p.len() <= LIMITS.max_payload_bytes
            && (p.trim().is_empty()
                || serde_json::from_str::<serde_json::Value>(p).is_ok_and(|v| v.is_object()))
    };
    let valid = (1..=LIMITS.max_points).contains(&points.len())
        && unique
        && points.iter().all(|p| {
            (1..=256).contains(&p.id.len())
                && payload_ok(&p.payload)
                && match &p.content {
                    Some(Content::Vector(v)) => vector_ok(&v.values, spec),
                    Some(Content::Text(t)) => !spec.model.is_empty() && !t.is_empty(),
                    None => false,
                }
        });
    match super::points(points.clone(), spec, &LIMITS) {
        Ok(incoming) => {
            assert!(valid, "{points:?} accepted");
            let back: Vec<&str> = incoming.iter().map(|p| p.id.as_str()).collect();
            assert_eq!(
                back,
                points.iter().map(|p| p.id.as_str()).collect::<Vec<_>>()
            );
        }
        Err(e) => refused(valid, &points, &e),
    }
}

pub fn delete(r: pb::DeleteRequest) {
    use pb::delete_request::Selector as S;
    let valid = match &r.selector {
        Some(S::Ids(ids)) => (1..=LIMITS.max_points).contains(&ids.ids.len()),
        Some(S::Filter(f)) => {
            filter_ok(f, 0) && !(f.must.is_empty() && f.should.is_empty() && f.must_not.is_empty())
        }
        None => false,
    };
    match super::delete(r.clone(), &LIMITS) {
        Ok(Selector::Ids(ids)) => {
            assert!(valid, "{r:?} accepted");
            assert!(matches!(&r.selector, Some(S::Ids(given)) if given.ids == ids));
        }
        Ok(Selector::Filter(_)) => assert!(valid, "{r:?} accepted"),
        Err(e) => refused(valid, &r, &e),
    }
}

pub fn retrieve(r: pb::RetrieveRequest) {
    let valid = (1..=LIMITS.max_points).contains(&r.ids.len());
    match super::retrieve(&r, &LIMITS) {
        Ok(with) => {
            assert!(valid && with.payload == r.with_payload && with.vector == r.with_vector)
        }
        Err(e) => refused(valid, &r, &e),
    }
}

/// A collection name is accepted exactly when it is 1 to 64 characters of [A-Za-z0-9_-].
pub fn name(name: &str) {
    match super::name("name", name) {
        Ok(()) => assert!(name_ok(name), "{name:?} accepted"),
        Err(e) => refused(name_ok(name), &name, &e),
    }
}
