//! Collections over REST in the shape Qdrant's users know (no standard exists): `PUT`/`GET`/
//! `DELETE /v1/collections/{name}`, `GET /v1/collections`, `PUT …/points`, `POST …/points/search`,
//! `POST …/points/search/batch`, `POST …/points/delete`, answers as `{"result", "status": "ok",
//! "time"}` and errors as `{"status": {"error"}, "time"}`. Extensions: a collection may name a text `model` instead of a
//! vector size, a point may carry `text` instead of `vector`, and a search may give `text`.
//! Everything is passed on to the index as gRPC does.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use oneword_proto::index::v1 as ix;
use oneword_proto::index::v1::collections_server::Collections;
use serde_json::{json, Value};

use crate::collections::CollectionsFront;
use crate::service::GatewayService;

/// An error in Qdrant's shape.
pub struct RestError(pub StatusCode, pub String);

impl RestError {
    fn bad(message: impl Into<String>) -> Self {
        RestError(StatusCode::BAD_REQUEST, message.into())
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"status": {"error": self.1}, "time": 0.0})),
        )
            .into_response()
    }
}

impl From<tonic::Status> for RestError {
    fn from(status: tonic::Status) -> Self {
        let code = match status.code() {
            tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
                StatusCode::BAD_REQUEST
            }
            tonic::Code::NotFound => StatusCode::NOT_FOUND,
            tonic::Code::AlreadyExists => StatusCode::CONFLICT,
            tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            tonic::Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        RestError(code, status.message().to_string())
    }
}

type Rest = Result<Response, RestError>;

fn ok(result: Value, started: Instant) -> Rest {
    Ok(Json(json!({
        "result": result,
        "status": "ok",
        "time": started.elapsed().as_secs_f64(),
    }))
    .into_response())
}

/// One call through the gateway's gRPC front of the index, so that REST and gRPC share its
/// admission, deadline and error mapping.
macro_rules! index_call {
    ($gateway:expr, $method:ident, $message:expr) => {
        CollectionsFront::new($gateway.clone())
            .$method(tonic::Request::new($message))
            .await?
            .into_inner()
    };
}

pub async fn create(
    State(gateway): State<Arc<GatewayService>>,
    Path(name): Path<String>,
    Json(body): Json<Value>,
) -> Rest {
    let started = Instant::now();
    let message = create_request(name, &body)?;
    index_call!(gateway, create, message);
    ok(json!(true), started)
}

/// The index's Create for Qdrant's body.
pub(super) fn create_request(name: String, body: &Value) -> Result<ix::CreateRequest, RestError> {
    let vectors = &body["vectors"];
    let metric = match vectors["distance"].as_str() {
        None | Some("Cosine") => ix::Metric::Cosine,
        Some("Dot") => ix::Metric::Dot,
        Some("Euclid") => ix::Metric::L2,
        Some(other) => {
            return Err(RestError::bad(format!(
                "`vectors.distance` must be Cosine, Dot or Euclid, got {other:?}"
            )))
        }
    };
    let dimension = unsigned(&vectors["size"], "vectors.size")?;
    let model = match (body["model"].as_str(), dimension) {
        (Some(model), _) => model.to_string(),
        (None, Some(_)) => String::new(),
        (None, None) => "default".into(),
    };
    let hnsw = &body["hnsw_config"];
    Ok(ix::CreateRequest {
        name,
        model,
        dimension,
        metric: metric as i32,
        index: ix::IndexKind::Auto as i32,
        hnsw: Some(ix::HnswParams {
            m: unsigned(&hnsw["m"], "hnsw_config.m")?,
            ef_construction: unsigned(&hnsw["ef_construct"], "hnsw_config.ef_construct")?,
            ef_search: None,
        }),
    })
}

/// An optional unsigned 32-bit field: refused rather than wrapped or ignored when it is
/// something else.
fn unsigned(value: &Value, path: &str) -> Result<Option<u32>, RestError> {
    match value {
        Value::Null => Ok(None),
        v => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                RestError::bad(format!(
                    "`{path}` must be an integer in 0..={}, got {v}",
                    u32::MAX
                ))
            }),
    }
}

pub async fn get(State(gateway): State<Arc<GatewayService>>, Path(name): Path<String>) -> Rest {
    let started = Instant::now();
    let info = index_call!(gateway, get, ix::CollectionRef { name });
    ok(describe(&info), started)
}

pub async fn list(State(gateway): State<Arc<GatewayService>>) -> Rest {
    let started = Instant::now();
    let list = index_call!(gateway, list, ix::ListRequest {});
    let names: Vec<Value> = list
        .collections
        .iter()
        .map(|c| json!({"name": c.name}))
        .collect();
    ok(json!({"collections": names}), started)
}

pub async fn drop(State(gateway): State<Arc<GatewayService>>, Path(name): Path<String>) -> Rest {
    let started = Instant::now();
    index_call!(gateway, drop, ix::CollectionRef { name });
    ok(json!(true), started)
}

fn describe(c: &ix::CollectionInfo) -> Value {
    let distance = match ix::Metric::try_from(c.metric) {
        Ok(ix::Metric::Dot) => "Dot",
        Ok(ix::Metric::L2) => "Euclid",
        _ => "Cosine",
    };
    let hnsw = c.hnsw.unwrap_or_default();
    json!({
        "status": "green",
        "points_count": c.points,
        "config": {
            "params": {"vectors": {"size": c.dimension, "distance": distance}},
            "hnsw_config": {"m": hnsw.m, "ef_construct": hnsw.ef_construction},
        },
        "model": c.model,
        "backend": c.backend,
    })
}

pub async fn upsert(
    State(gateway): State<Arc<GatewayService>>,
    Path(name): Path<String>,
    Json(body): Json<Value>,
) -> Rest {
    let started = Instant::now();
    let message = upsert_request(name, &body)?;
    index_call!(gateway, upsert, message);
    // Every upsert is durable when answered: `wait` makes no difference.
    ok(json!({"operation_id": 0, "status": "completed"}), started)
}

/// The index's Upsert for Qdrant's body.
pub(super) fn upsert_request(name: String, body: &Value) -> Result<ix::UpsertRequest, RestError> {
    let Some(points) = body["points"].as_array() else {
        return Err(RestError::bad("`points` must be a list of points"));
    };
    let points = points
        .iter()
        .enumerate()
        .map(|(i, p)| point(i, p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ix::UpsertRequest {
        collection: name,
        points,
    })
}

fn point(i: usize, p: &Value) -> Result<ix::Point, RestError> {
    let id = id_of(&p["id"]).ok_or_else(|| {
        RestError::bad(format!(
            "`points[{i}].id` must be a string or an unsigned integer"
        ))
    })?;
    let content = match (&p["vector"], &p["text"]) {
        (Value::Array(values), Value::Null) => ix::point::Content::Vector(ix::Vector {
            values: floats(values)
                .ok_or_else(|| RestError::bad(format!("`points[{i}].vector` must hold numbers")))?,
        }),
        (Value::Null, Value::String(text)) => ix::point::Content::Text(text.clone()),
        _ => {
            return Err(RestError::bad(format!(
                "`points[{i}]` needs a `vector` or a `text`, not both"
            )))
        }
    };
    let payload = match &p["payload"] {
        Value::Null => String::new(),
        object @ Value::Object(_) => object.to_string(),
        _ => {
            return Err(RestError::bad(format!(
                "`points[{i}].payload` must be a JSON object"
            )))
        }
    };
    Ok(ix::Point {
        id,
        content: Some(content),
        payload,
    })
}

fn id_of(value: &Value) -> Option<String> {
    match value {
        Value::String(id) => Some(id.clone()),
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

fn floats(values: &[Value]) -> Option<Vec<f32>> {
    values
        .iter()
        .map(|v| v.as_f64().map(|x| x as f32))
        .collect()
}

pub async fn search(
    State(gateway): State<Arc<GatewayService>>,
    Path(name): Path<String>,
    Json(body): Json<Value>,
) -> Rest {
    let started = Instant::now();
    let message = search_request(&name, &body)?;
    let with_payload = message.with_payload;
    let found = index_call!(gateway, search, message);
    ok(hits(&found, with_payload), started)
}

/// Qdrant's `points/search/batch`: `{"searches": [search, …]}`, answered with one list of hits
/// per search, in order. The index runs the batch at once (one pass over the vectors for the
/// unfiltered exact ones) and caps its size.
pub async fn search_batch(
    State(gateway): State<Arc<GatewayService>>,
    Path(name): Path<String>,
    Json(body): Json<Value>,
) -> Rest {
    let started = Instant::now();
    let searches = search_batch_request(&name, &body)?;
    let with_payload: Vec<bool> = searches.iter().map(|s| s.with_payload).collect();
    let found = index_call!(gateway, search_batch, ix::SearchBatchRequest { searches });
    let results: Vec<Value> = found
        .results
        .iter()
        .zip(with_payload)
        .map(|(f, with_payload)| hits(f, with_payload))
        .collect();
    ok(json!(results), started)
}

/// The searches of Qdrant's batch body.
pub(super) fn search_batch_request(
    name: &str,
    body: &Value,
) -> Result<Vec<ix::SearchRequest>, RestError> {
    let Value::Array(searches) = &body["searches"] else {
        return Err(RestError::bad("`searches` must be a list of searches"));
    };
    searches
        .iter()
        .enumerate()
        .map(|(i, s)| {
            search_request(name, s)
                .map_err(|RestError(code, e)| RestError(code, format!("`searches[{i}]`: {e}")))
        })
        .collect()
}

/// One search of collection `name` from Qdrant's body.
pub(super) fn search_request(name: &str, body: &Value) -> Result<ix::SearchRequest, RestError> {
    let query = match (&body["vector"], &body["text"]) {
        (Value::Array(values), Value::Null) => ix::search_request::Query::Vector(ix::Vector {
            values: floats(values).ok_or_else(|| RestError::bad("`vector` must hold numbers"))?,
        }),
        (Value::Null, Value::String(text)) => ix::search_request::Query::Text(text.clone()),
        _ => return Err(RestError::bad("give a `vector` or a `text`, not both")),
    };
    let filter = match &body["filter"] {
        Value::Null => None,
        f => Some(filter(f, "filter")?),
    };
    Ok(ix::SearchRequest {
        collection: name.to_string(),
        query: Some(query),
        top_k: Some(unsigned(&body["limit"], "limit")?.unwrap_or(10)),
        filter,
        score_threshold: body["score_threshold"].as_f64().map(|t| t as f32),
        with_payload: body["with_payload"].as_bool().unwrap_or(false),
        with_vector: body["with_vector"].as_bool().unwrap_or(false),
        exact: body["params"]["exact"].as_bool().unwrap_or(false),
        ef_search: unsigned(&body["params"]["hnsw_ef"], "params.hnsw_ef")?,
    })
}

/// A search's hits as Qdrant's scored points.
fn hits(found: &ix::SearchResponse, with_payload: bool) -> Value {
    let hits: Vec<Value> = found
        .hits
        .iter()
        .map(|h| {
            let mut hit = json!({"id": rest_id(&h.id), "version": 0, "score": h.score});
            if with_payload {
                let mut payload: Value = serde_json::from_str(&h.payload).unwrap_or(json!({}));
                if !h.text.is_empty() {
                    payload["text"] = json!(h.text);
                }
                hit["payload"] = payload;
            }
            if !h.vector.is_empty() {
                hit["vector"] = json!(h.vector);
            }
            hit
        })
        .collect();
    json!(hits)
}

/// Ids that were unsigned integers go back as numbers, as Qdrant's clients expect.
fn rest_id(id: &str) -> Value {
    match id.parse::<u64>() {
        Ok(n) if n.to_string() == id => json!(n),
        _ => json!(id),
    }
}

pub async fn delete(
    State(gateway): State<Arc<GatewayService>>,
    Path(name): Path<String>,
    Json(body): Json<Value>,
) -> Rest {
    let started = Instant::now();
    let message = delete_request(name, &body)?;
    index_call!(gateway, delete, message);
    ok(json!({"operation_id": 0, "status": "completed"}), started)
}

/// The index's Delete for Qdrant's body: ids or a filter.
pub(super) fn delete_request(name: String, body: &Value) -> Result<ix::DeleteRequest, RestError> {
    let selector = match (&body["points"], &body["filter"]) {
        (Value::Array(ids), Value::Null) => ix::delete_request::Selector::Ids(ix::PointIds {
            ids: ids
                .iter()
                .map(id_of)
                .collect::<Option<_>>()
                .ok_or_else(|| RestError::bad("`points` must hold string or integer ids"))?,
        }),
        (Value::Null, f @ Value::Object(_)) => {
            ix::delete_request::Selector::Filter(filter(f, "filter")?)
        }
        _ => {
            return Err(RestError::bad(
                "give `points` (ids) or a `filter`, not both",
            ))
        }
    };
    Ok(ix::DeleteRequest {
        collection: name,
        selector: Some(selector),
    })
}

/// A Qdrant filter: `must` / `should` / `must_not` lists of conditions, each `{"key", "match":
/// {"value"} | {"any": [...]}}`, `{"key", "range": {gt, gte, lt, lte}}`, or a nested filter.
fn filter(value: &Value, path: &str) -> Result<ix::Filter, RestError> {
    let Value::Object(fields) = value else {
        return Err(RestError::bad(format!("`{path}` must be an object")));
    };
    let list = |name: &str| -> Result<Vec<ix::Condition>, RestError> {
        match fields.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, c)| condition(c, &format!("{path}.{name}[{i}]")))
                .collect(),
            Some(_) => Err(RestError::bad(format!("`{path}.{name}` must be a list"))),
        }
    };
    Ok(ix::Filter {
        must: list("must")?,
        should: list("should")?,
        must_not: list("must_not")?,
    })
}

fn condition(value: &Value, path: &str) -> Result<ix::Condition, RestError> {
    use ix::condition::Test;
    let Some(key) = value["key"].as_str() else {
        // No key: a nested filter.
        return Ok(ix::Condition {
            key: String::new(),
            test: Some(Test::Filter(filter(value, path)?)),
        });
    };
    let test = if let Value::Object(m) = &value["match"] {
        if let Some(any) = m.get("any").and_then(Value::as_array) {
            let keywords: Option<Vec<String>> =
                any.iter().map(|v| v.as_str().map(String::from)).collect();
            let integers: Option<Vec<i64>> = any.iter().map(Value::as_i64).collect();
            match (keywords, integers) {
                (Some(keywords), _) => Test::Any(ix::AnyOf {
                    keywords,
                    integers: Vec::new(),
                }),
                (None, Some(integers)) => Test::Any(ix::AnyOf {
                    keywords: Vec::new(),
                    integers,
                }),
                _ => {
                    return Err(RestError::bad(format!(
                        "`{path}.match.any` must be all strings or all integers"
                    )))
                }
            }
        } else {
            use ix::r#match::Value as M;
            let matched = match m.get("value") {
                Some(Value::String(s)) => M::Keyword(s.clone()),
                Some(Value::Bool(b)) => M::Boolean(*b),
                Some(n) if n.is_i64() => M::Integer(n.as_i64().unwrap_or_default()),
                _ => {
                    return Err(RestError::bad(format!(
                    "`{path}.match` needs a `value` (a string, an integer or a boolean) or `any`"
                )))
                }
            };
            Test::Match(ix::Match {
                value: Some(matched),
            })
        }
    } else if let Value::Object(r) = &value["range"] {
        let bound = |name: &str| r.get(name).and_then(Value::as_f64);
        Test::Range(ix::Range {
            gt: bound("gt"),
            gte: bound("gte"),
            lt: bound("lt"),
            lte: bound("lte"),
        })
    } else {
        return Err(RestError::bad(format!(
            "`{path}` needs a `match` or a `range`"
        )));
    };
    Ok(ix::Condition {
        key: key.to_string(),
        test: Some(test),
    })
}
