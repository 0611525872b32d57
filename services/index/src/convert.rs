//! proto ⇄ domain: every request validated once here into typed values, every answer built
//! here. Errors name the field (`points[3].vector[7]`), the value and what is allowed.

/// Validation's properties, shared by the property tests and the fuzz targets (`make fuzz`); not
/// an API.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod checks;
mod filter;
mod points;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

use oneword_proto::index::v1 as pb;

use crate::embedder::TextModel;
use crate::error::Error;
use crate::types::{
    Found, HnswParams, IndexKind, Info, Metric, Query, Record, Search, Selector, Spec, With,
};

pub use filter::filter;
use points::{count, text};
pub use points::{embedded, from_embedder, points, vector, Content};

/// Longest collection name.
const MAX_NAME: usize = 64;
/// Longest vector, and largest HNSW parameters.
const MAX_DIMENSION: usize = 4096;
const MAX_EF: usize = 1000;

/// The service's limits, from its flags.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_points: usize,
    pub max_payload_bytes: usize,
    pub max_top_k: usize,
    pub max_search_batch: usize,
}

fn invalid(field: &str, message: String) -> Error {
    Error::invalid(field, message)
}

/// A collection name: 1 to 64 characters of [A-Za-z0-9_-].
pub fn name(field: &str, name: &str) -> Result<(), Error> {
    let ok = (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("`{field}` must be 1 to {MAX_NAME} characters of [A-Za-z0-9_-], got {name:?}"),
        ))
    }
}

/// A Create request before its model is resolved.
#[derive(Clone, Debug)]
pub struct Create {
    pub spec: Spec,
    /// The dimension asked for, if any.
    pub dimension: Option<usize>,
}

/// Validates a Create request; the model (if any) is checked later against the embedder.
pub fn create(r: pb::CreateRequest, created_us: i64) -> Result<Create, Error> {
    name("name", &r.name)?;
    let dimension = r
        .dimension
        .map(|d| {
            let d = d as usize;
            if (1..=MAX_DIMENSION).contains(&d) {
                Ok(d)
            } else {
                Err(invalid(
                    "dimension",
                    format!("`dimension` must be in 1..={MAX_DIMENSION}, got {d}"),
                ))
            }
        })
        .transpose()?;
    if r.model.is_empty() && dimension.is_none() {
        return Err(invalid(
            "dimension",
            "`dimension` is required for a collection without a `model`".into(),
        ));
    }
    let metric = match pb::Metric::try_from(r.metric) {
        Ok(pb::Metric::Unspecified | pb::Metric::Cosine) => Metric::Cosine,
        Ok(pb::Metric::Dot) => Metric::Dot,
        Ok(pb::Metric::L2) => Metric::L2,
        Err(_) => {
            return Err(invalid(
                "metric",
                format!("`metric` {} is not a known metric", r.metric),
            ))
        }
    };
    let index = match pb::IndexKind::try_from(r.index) {
        Ok(pb::IndexKind::Unspecified | pb::IndexKind::Auto) => IndexKind::Auto,
        Ok(pb::IndexKind::Exact) => IndexKind::Exact,
        Ok(pb::IndexKind::Hnsw) => IndexKind::Hnsw,
        Err(_) => {
            return Err(invalid(
                "index",
                format!("`index` {} is not a known index kind", r.index),
            ))
        }
    };
    let mut hnsw = HnswParams::default();
    if let Some(p) = r.hnsw {
        let bounded =
            |field: &str, value: Option<u32>, lo: usize, hi: usize, default: usize| match value
                .map(|v| v as usize)
            {
                None => Ok(default),
                Some(v) if (lo..=hi).contains(&v) => Ok(v),
                Some(v) => Err(invalid(
                    field,
                    format!("`{field}` must be in {lo}..={hi}, got {v}"),
                )),
            };
        hnsw = HnswParams {
            m: bounded("hnsw.m", p.m, 4, 64, hnsw.m)?,
            ef_construction: bounded(
                "hnsw.ef_construction",
                p.ef_construction,
                16,
                MAX_EF,
                hnsw.ef_construction,
            )?,
            ef_search: bounded("hnsw.ef_search", p.ef_search, 1, MAX_EF, hnsw.ef_search)?,
        };
    }
    Ok(Create {
        spec: Spec {
            name: r.name,
            model: r.model,
            dimension: dimension.unwrap_or(0),
            metric,
            index,
            hnsw,
            created_us,
        },
        dimension,
    })
}

/// The spec of a Create whose `model` names `served` (the embedder's text model): "default" or
/// the model's own name, stored as the latter; the dimension is the model's.
pub fn with_model(create: Create, served: &TextModel) -> Result<Spec, Error> {
    let mut spec = create.spec;
    if spec.model != "default" && spec.model != served.name {
        return Err(invalid(
            "model",
            format!(
                "`model` is {:?}; the embedder serves {:?} (or say \"default\")",
                spec.model, served.name
            ),
        ));
    }
    if let Some(d) = create.dimension.filter(|&d| d != served.dimensions) {
        return Err(invalid(
            "dimension",
            format!(
                "`dimension` is {d} but {:?} gives {}-dimensional vectors; leave it out",
                served.name, served.dimensions
            ),
        ));
    }
    spec.model = served.name.clone();
    spec.dimension = served.dimensions;
    Ok(spec)
}

/// Validates a search; a text query stays [`Query::Text`] for the service to embed.
pub fn search(r: pb::SearchRequest, spec: &Spec, limits: &Limits) -> Result<Search, Error> {
    use pb::search_request::Query as Q;
    let query = match r.query {
        Some(Q::Vector(v)) => Query::Vector(vector("vector", v.values, spec)?),
        Some(Q::Text(t)) => Query::Text(text("text", t, spec)?),
        Some(Q::Id(id)) if !id.is_empty() => Query::Id(id),
        Some(Q::Id(_)) => return Err(invalid("id", "`id` must not be empty".into())),
        None => {
            return Err(invalid(
                "query",
                "`query`: give `text`, `vector` or `id`".into(),
            ))
        }
    };
    let max = limits.max_top_k;
    let top_k = match r.top_k.map(|k| k as usize) {
        None => 10.min(max),
        Some(k) if (1..=max).contains(&k) => k,
        Some(k) => {
            return Err(invalid(
                "top_k",
                format!("`top_k` must be in 1..={max}, got {k}"),
            ))
        }
    };
    let ef_search = match r.ef_search.map(|e| e as usize) {
        None => None,
        Some(e) if (top_k..=MAX_EF.max(top_k)).contains(&e) => Some(e),
        Some(e) => {
            return Err(invalid(
                "ef_search",
                format!(
                    "`ef_search` must be in {top_k}..={} (at least `top_k`), got {e}",
                    MAX_EF.max(top_k)
                ),
            ))
        }
    };
    if let Some(t) = r.score_threshold.filter(|t| !t.is_finite()) {
        return Err(invalid(
            "score_threshold",
            format!("`score_threshold` must be finite, got {t}"),
        ));
    }
    Ok(Search {
        query,
        top_k,
        filter: r.filter.map(|f| filter("filter", f)).transpose()?,
        score_threshold: r.score_threshold,
        with_payload: r.with_payload,
        with_vector: r.with_vector,
        exact: r.exact,
        ef_search,
    })
}

/// Checks the size of a SearchBatch: 1 to `--max-search-batch` searches.
pub fn batch(searches: usize, limits: &Limits) -> Result<(), Error> {
    let max = limits.max_search_batch;
    if (1..=max).contains(&searches) {
        return Ok(());
    }
    Err(invalid(
        "searches",
        format!("`searches` must hold 1 to {max} searches, got {searches}"),
    ))
}

/// An error of search `i` of a SearchBatch, naming the field in the batch.
pub fn in_batch(i: usize) -> impl Fn(Error) -> Error {
    move |e| match e {
        Error::InvalidArgument(field, message) => Error::InvalidArgument(
            format!("searches[{i}].{field}"),
            format!("`searches[{i}]`: {message}"),
        ),
        e => e,
    }
}

/// Validates a Delete.
pub fn delete(r: pb::DeleteRequest, limits: &Limits) -> Result<Selector, Error> {
    use pb::delete_request::Selector as S;
    match r.selector {
        Some(S::Ids(ids)) => {
            count("ids.ids", ids.ids.len(), limits)?;
            Ok(Selector::Ids(ids.ids))
        }
        Some(S::Filter(f)) => {
            let f = filter("filter", f)?;
            if f.is_empty() {
                return Err(invalid(
                    "filter",
                    "`filter` has no condition; to delete every point, drop the collection".into(),
                ));
            }
            Ok(Selector::Filter(f))
        }
        None => Err(invalid(
            "selector",
            "`selector`: give `ids` or `filter`".into(),
        )),
    }
}

/// Validates a Retrieve's ids.
pub fn retrieve(r: &pb::RetrieveRequest, limits: &Limits) -> Result<With, Error> {
    count("ids", r.ids.len(), limits)?;
    Ok(With {
        payload: r.with_payload,
        vector: r.with_vector,
    })
}

/// The wire form of a collection's description.
pub fn info(info: Info) -> pb::CollectionInfo {
    let s = info.spec;
    let index = |k: IndexKind| match k {
        IndexKind::Auto => pb::IndexKind::Auto,
        IndexKind::Exact => pb::IndexKind::Exact,
        IndexKind::Hnsw => pb::IndexKind::Hnsw,
    } as i32;
    pb::CollectionInfo {
        name: s.name,
        model: s.model,
        dimension: s.dimension as u32,
        metric: match s.metric {
            Metric::Cosine => pb::Metric::Cosine,
            Metric::Dot => pb::Metric::Dot,
            Metric::L2 => pb::Metric::L2,
        } as i32,
        index: index(s.index),
        hnsw: Some(pb::HnswParams {
            m: Some(s.hnsw.m as u32),
            ef_construction: Some(s.hnsw.ef_construction as u32),
            ef_search: Some(s.hnsw.ef_search as u32),
        }),
        points: info.points,
        backend: info.backend.into(),
        searched_with: index(info.searched_with),
    }
}

/// The wire form of a search's answer.
pub fn found(found: Found, embedded_tokens: u64) -> pb::SearchResponse {
    pb::SearchResponse {
        hits: found.hits.into_iter().map(record).collect(),
        exact: found.exact,
        candidates_scanned: found.candidates_scanned,
        embedded_tokens,
    }
}

/// The wire form of a point.
pub fn record(r: Record) -> pb::Record {
    pb::Record {
        id: r.id,
        score: r.score,
        payload: r.payload.unwrap_or_default(),
        text: r.text.unwrap_or_default(),
        vector: r.vector.unwrap_or_default(),
    }
}
