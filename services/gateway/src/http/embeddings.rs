//! `POST /v1/embeddings`: OpenAI's embeddings, so that OpenAI clients, LangChain and LlamaIndex
//! work unchanged. `input` is a string, a list of strings, a list of token ids or a list of such
//! lists (ids of the text model's tokenizer); `encoding_format` float or base64 (little-endian
//! f32, as OpenAI's clients decode it). Extensions as TEI and vLLM name them: `truncate`,
//! `normalize`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use oneword_proto::gateway::v1 as pb;
use oneword_proto::tensor::wire_to_f32;
use oneword_runtime::deadline::Deadline;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ApiError;
use crate::service::GatewayService;

/// The request. Unknown fields (`user`) are ignored, as OpenAI clients send them.
#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    input: Input,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    encoding_format: Option<String>,
    dimensions: Option<u32>,
    #[serde(default)]
    truncate: bool,
    normalize: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
    Ids(Vec<u32>),
    ManyIds(Vec<Vec<u32>>),
}

pub async fn create(
    State(gateway): State<Arc<GatewayService>>,
    Json(request): Json<EmbeddingsRequest>,
) -> Result<Response, ApiError> {
    let _permit = gateway.admit()?;
    let deadline = Deadline::default();
    let dimensions = request.dimensions;
    let (message, base64) = embed_request(request)?;
    let answer = gateway.embed_texts(message, &deadline).await?;
    let tensor = answer.embeddings.unwrap_or_default();
    let values = wire_to_f32(&tensor).map_err(|e| {
        ApiError::from(crate::Error::Internal(format!(
            "the embedder's vectors: {e}"
        )))
    })?;
    let width = tensor.shape.get(1).copied().unwrap_or(0) as usize;
    if let Some(dimensions) = dimensions {
        check_dimensions(dimensions, &answer.model, width)?;
    }
    let data: Vec<Value> = values
        .chunks(width.max(1))
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": answer.model,
        "usage": {"prompt_tokens": answer.total_tokens, "total_tokens": answer.total_tokens},
    }))
    .into_response())
}

/// The gateway's request for a body, and whether the vectors go back as base64.
pub(super) fn embed_request(
    request: EmbeddingsRequest,
) -> Result<(pb::EmbedRequest, bool), ApiError> {
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!("`encoding_format` must be float or base64, got {other:?}"),
            ))
        }
    };
    let (texts, tokens) = match request.input {
        Input::One(text) => (vec![text], Vec::new()),
        Input::Many(texts) => (texts, Vec::new()),
        Input::Ids(ids) => (Vec::new(), vec![ids]),
        Input::ManyIds(lists) => (Vec::new(), lists),
    };
    if texts.is_empty() && tokens.is_empty() {
        return Err(ApiError::invalid("input", "`input` must not be empty"));
    }
    let message = pb::EmbedRequest {
        texts,
        tokens: tokens
            .into_iter()
            .map(|ids| pb::TextTokenIds { ids })
            .collect(),
        model: request.model.unwrap_or_default(),
        truncate: request.truncate,
        normalize: request.normalize,
        ..Default::default()
    };
    Ok((message, base64))
}

/// `dimensions` shortens vectors only for models trained for it (Matryoshka); neither MiniLM nor
/// GPT-2 was, so anything but the model's own width is refused, naming the model, as vLLM does.
/// Checked against the answer, so that it holds for whichever model `model` chose.
fn check_dimensions(dimensions: u32, model: &str, width: usize) -> Result<(), ApiError> {
    if dimensions as usize != width {
        return Err(ApiError::invalid(
            "dimensions",
            format!(
                "`dimensions` is {dimensions}, but {model} gives {width}-dimensional vectors and was not trained to shorten them (Matryoshka); leave `dimensions` out"
            ),
        ));
    }
    Ok(())
}
