//! Properties of the HTTP API's bodies, shared by the property tests (`cargo test`) and the fuzz
//! targets (`make fuzz`): any bytes are refused with an answer naming what is wrong, or become
//! the request they say, which then validates as the gRPC API's does. Each function panics when
//! its property fails.

use http::StatusCode;
use serde_json::Value;

use super::collections::{
    create_request, delete_request, search_batch_request, search_request, upsert_request, RestError,
};
use super::completions::{to_generate_request, CompletionRequest};
use super::embeddings::{embed_request, EmbeddingsRequest};
use super::ApiError;
use crate::Config;

/// A 400 in OpenAI's shape that names its parameter in backticks.
fn names_param(e: &ApiError) {
    let param = e.param.as_deref().unwrap_or_default();
    assert_eq!(e.status, StatusCode::BAD_REQUEST, "{e:?}");
    assert!(
        !param.is_empty() && e.message.contains(&format!("`{param}")),
        "{e:?}"
    );
}

/// The body as a JSON value, to compare the request with. serde_json skips the fields a
/// request does not have without checking them fully (UTF-8 in strings, the range of numbers),
/// so a body it parsed as a request may be no JSON value: then only the request is checked.
fn as_json(body: &[u8]) -> Option<Value> {
    serde_json::from_slice(body).ok()
}

/// `POST /v1/completions`: a body that parses becomes the Generate it says (prompt, stop, n,
/// seed, …), or is refused naming the parameter; the Generate then validates as on gRPC.
pub fn completion_body(body: &[u8], config: &Config) {
    let Ok(request) = serde_json::from_slice::<CompletionRequest>(body) else {
        return;
    };
    let r = match to_generate_request(request) {
        Ok(r) => r,
        Err(e) => return names_param(&e),
    };
    if let Some(json) = as_json(body) {
        // A text, a list of one, token ids or a list of one token array.
        let prompt = json["prompt"].as_str().or(json["prompt"][0].as_str());
        let ids_json = match &json["prompt"][0] {
            Value::Array(inner) => inner.clone(),
            Value::Number(_) => json["prompt"].as_array().cloned().unwrap_or_default(),
            _ => Vec::new(),
        };
        let ids: Vec<u64> = ids_json.iter().filter_map(Value::as_u64).collect();
        // A text prompt stays text; token ids (even an empty list of them) become ids.
        if prompt.is_some() {
            assert_eq!(Some(r.prompt.as_str()), prompt);
        } else {
            let given: Vec<u64> = r.prompt_token_ids.iter().map(|&id| u64::from(id)).collect();
            assert_eq!((r.prompt.as_str(), given), ("", ids));
        }
        let stop: Vec<&str> = match &json["stop"] {
            Value::String(s) => vec![s.as_str()],
            v => v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect(),
        };
        assert_eq!(r.stop, stop);
        assert_eq!(r.max_new_tokens.map(u64::from), json["max_tokens"].as_u64());
        assert_eq!(r.n.map(u64::from), json["n"].as_u64());
        assert_eq!(r.seed, json["seed"].as_u64());
        let biased = json["logit_bias"].as_object().map_or(0, |m| m.len());
        assert_eq!(r.logit_bias.len(), biased);
        let float = |key: &str| json[key].as_f64().map(|v| v as f32);
        assert_eq!(
            (
                r.repetition_penalty,
                r.frequency_penalty,
                r.presence_penalty
            ),
            (
                float("repetition_penalty"),
                float("frequency_penalty"),
                float("presence_penalty")
            )
        );
    }
    crate::convert::checks::generate(r, config, (1, 1024, 50257));
}

/// `POST /v1/embeddings`: a body that parses becomes an Embed of the texts or token lists it
/// gives, or is refused naming the parameter.
pub fn embeddings_body(body: &[u8]) {
    let Ok(request) = serde_json::from_slice::<EmbeddingsRequest>(body) else {
        return;
    };
    match embed_request(request) {
        Ok((r, base64)) => {
            assert!(r.texts.len() + r.tokens.len() > 0);
            if let Some(json) = as_json(body) {
                assert_eq!(base64, json["encoding_format"] == "base64");
                let input = &json["input"];
                let texts = match input {
                    Value::String(_) => 1,
                    Value::Array(items) if items.iter().all(Value::is_string) => items.len(),
                    _ => 0,
                };
                assert_eq!(r.texts.len(), texts, "{input}");
                assert_eq!(r.model, json["model"].as_str().unwrap_or_default());
            }
        }
        Err(e) => names_param(&e),
    }
}

/// The collections' REST bodies (`kind` picks create, upsert, search, search batch or delete):
/// any JSON becomes the index request it says, with its numbers as given, or a 400 whose
/// message names a field in backticks.
pub fn collections_body(kind: u8, body: &[u8]) {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let refused = |e: RestError| {
        assert_eq!(e.0, StatusCode::BAD_REQUEST);
        assert!(e.1.contains('`'), "{:?} names no field", e.1);
    };
    let number = |v: &Value| v.as_u64().map(|n| n as u32);
    match kind % 5 {
        0 => match create_request("c".into(), &json) {
            Ok(r) => {
                assert_eq!(r.dimension, number(&json["vectors"]["size"]));
                let hnsw = r.hnsw.expect("create sets hnsw");
                assert_eq!(hnsw.m, number(&json["hnsw_config"]["m"]));
                assert_eq!(
                    hnsw.ef_construction,
                    number(&json["hnsw_config"]["ef_construct"])
                );
            }
            Err(e) => refused(e),
        },
        1 => match upsert_request("c".into(), &json) {
            Ok(r) => assert_eq!(
                Some(r.points.len()),
                json["points"].as_array().map(Vec::len)
            ),
            Err(e) => refused(e),
        },
        2 => match search_request("c", &json) {
            Ok(r) => {
                assert_eq!(r.top_k, Some(number(&json["limit"]).unwrap_or(10)));
                assert_eq!(r.ef_search, number(&json["params"]["hnsw_ef"]));
            }
            Err(e) => refused(e),
        },
        3 => match search_batch_request("c", &json) {
            Ok(r) => assert_eq!(Some(r.len()), json["searches"].as_array().map(Vec::len)),
            Err(e) => refused(e),
        },
        _ => match delete_request("c".into(), &json) {
            Ok(r) => assert!(r.selector.is_some()),
            Err(e) => refused(e),
        },
    }
}
