//! Points from the wire: ids, vectors, payloads and texts checked against the collection, and
//! the vectors the embedder returns for the texts.

use std::collections::HashMap;

use oneword_proto::index::v1 as pb;
use serde_json::{Map, Value};

use super::{invalid, Limits};
use crate::error::Error;
use crate::kernels;
use crate::types::{Metric, NewPoint, Spec};

/// Longest point id.
const MAX_ID_BYTES: usize = 256;

/// A point whose text is still to be embedded, or its vector.
#[derive(Clone, Debug)]
pub enum Content {
    Vector(Vec<f32>),
    Text(String),
}

/// A validated point, before embedding.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub id: String,
    pub content: Content,
    pub payload: Map<String, Value>,
}

/// Validates an Upsert's points against the collection.
pub fn points(
    points: Vec<pb::Point>,
    spec: &Spec,
    limits: &Limits,
) -> Result<Vec<Incoming>, Error> {
    count("points", points.len(), limits)?;
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(points.len());
    for (i, p) in points.iter().enumerate() {
        let field = format!("points[{i}].id");
        if !(1..=MAX_ID_BYTES).contains(&p.id.len()) {
            return Err(invalid(
                &field,
                format!(
                    "`{field}` must be 1 to {MAX_ID_BYTES} bytes, got {}",
                    p.id.len()
                ),
            ));
        }
        if let Some(first) = seen.insert(&p.id, i) {
            return Err(invalid(
                &field,
                format!("`{field}` {:?} repeats `points[{first}].id`; ids must be unique within a request", p.id),
            ));
        }
    }
    points
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let content = match p.content {
                Some(pb::point::Content::Vector(v)) => {
                    Content::Vector(vector(&format!("points[{i}].vector"), v.values, spec)?)
                }
                Some(pb::point::Content::Text(t)) => {
                    Content::Text(text(&format!("points[{i}].text"), t, spec)?)
                }
                None => {
                    let f = format!("points[{i}]");
                    return Err(invalid(
                        &f,
                        format!("`{f}` has neither `text` nor `vector`"),
                    ));
                }
            };
            Ok(Incoming {
                id: p.id,
                content,
                payload: payload(&format!("points[{i}].payload"), &p.payload, limits)?,
            })
        })
        .collect()
}

/// At least one item and at most `--max-points`.
pub(super) fn count(field: &str, n: usize, limits: &Limits) -> Result<(), Error> {
    if n == 0 {
        return Err(invalid(field, format!("`{field}` must not be empty")));
    }
    if n > limits.max_points {
        return Err(Error::TooMany(format!(
            "`{field}` holds {n} items; at most {} are allowed per request",
            limits.max_points
        )));
    }
    Ok(())
}

/// A text to embed: the collection must have a model.
pub(super) fn text(field: &str, text: String, spec: &Spec) -> Result<String, Error> {
    if spec.model.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "`{field}`: collection `{}` has no text model, so it takes vectors only (create it with a `model` to store texts)",
            spec.name
        )));
    }
    if text.is_empty() {
        return Err(invalid(field, format!("`{field}` must not be empty")));
    }
    Ok(text)
}

/// A vector of the collection's dimension with finite values, normalised for cosine.
pub fn vector(field: &str, mut values: Vec<f32>, spec: &Spec) -> Result<Vec<f32>, Error> {
    if values.len() != spec.dimension {
        return Err(invalid(
            field,
            format!(
                "`{field}` has {} values but collection `{}` holds {}-dimensional vectors",
                values.len(),
                spec.name,
                spec.dimension
            ),
        ));
    }
    if let Some((j, x)) = values.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(invalid(
            &format!("{field}[{j}]"),
            format!("`{field}[{j}]` is {x}; values must be finite"),
        ));
    }
    if spec.metric == Metric::Cosine && !kernels::normalise(&mut values) {
        return Err(invalid(
            field,
            format!("`{field}` has length 0 (or too large to normalise); a cosine collection needs a direction"),
        ));
    }
    Ok(values)
}

/// A JSON object of at most `--max-payload-bytes`; empty is `{}`.
fn payload(field: &str, text: &str, limits: &Limits) -> Result<Map<String, Value>, Error> {
    if text.len() > limits.max_payload_bytes {
        return Err(invalid(
            field,
            format!(
                "`{field}` is {} bytes; at most {} are allowed",
                text.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(invalid(
            field,
            format!("`{field}` must be a JSON object, got {}", kind(&other)),
        )),
        Err(e) => Err(invalid(field, format!("`{field}` is not valid JSON: {e}"))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The points to store, once texts are embedded (`vectors`, in the order of the text points).
pub fn embedded(
    spec: &Spec,
    incoming: Vec<Incoming>,
    vectors: Vec<Vec<f32>>,
) -> Result<Vec<NewPoint>, Error> {
    let mut vectors = vectors.into_iter();
    incoming
        .into_iter()
        .map(|p| {
            let (vector, text) = match p.content {
                Content::Vector(v) => (v, None),
                Content::Text(t) => {
                    let v = vectors.next().ok_or_else(|| {
                        Error::Internal("the embedder returned fewer vectors than texts".into())
                    })?;
                    (from_embedder(spec, v)?, Some(t))
                }
            };
            Ok(NewPoint {
                id: p.id,
                vector,
                payload: p.payload,
                text,
            })
        })
        .collect()
}

/// A vector from the embedder, checked against the collection it is for.
pub fn from_embedder(spec: &Spec, mut v: Vec<f32>) -> Result<Vec<f32>, Error> {
    if v.len() != spec.dimension {
        return Err(Error::FailedPrecondition(format!(
            "the embedder's model now gives {}-dimensional vectors but collection `{}` holds {} (was the embedder's model changed?)",
            v.len(),
            spec.name,
            spec.dimension
        )));
    }
    if v.iter().any(|x| !x.is_finite())
        || (spec.metric == Metric::Cosine && !kernels::normalise(&mut v))
    {
        return Err(Error::Internal(
            "the embedder returned a vector that is not finite or is zero".into(),
        ));
    }
    Ok(v)
}
