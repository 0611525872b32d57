//! The OpenAI-compatible HTTP API (axum, on its own port): `POST /v1/completions` (streamed as
//! server-sent events when asked), `POST /v1/embeddings`, `GET /v1/models`, `GET /health`, and
//! collections in Qdrant's REST shape under `/v1/collections`. It runs the same
//! validation and generation loop as the gRPC API; only the shapes differ.

/// The bodies' properties, shared by the property tests and the fuzz targets; not an API.
#[cfg(any(test, fuzzing))]
pub mod checks;
mod collections;
mod completions;
mod embeddings;
mod errors;
#[cfg(test)]
mod properties;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use oneword_runtime::deadline::Deadline;
use oneword_runtime::{HttpApi, HttpLimits};
use serde_json::json;

use crate::service::GatewayService;
pub use errors::ApiError;

/// The paths metrics name (anything else is counted as `other`).
const PATHS: &[&str] = &[
    "/v1/completions",
    "/v1/embeddings",
    "/v1/models",
    "/health",
    "/v1/collections",
    "/v1/collections/{name}",
    "/v1/collections/{name}/points",
    "/v1/collections/{name}/points/search",
    "/v1/collections/{name}/points/search/batch",
    "/v1/collections/{name}/points/delete",
];

/// Largest collections body (a batch of points with vectors and payloads).
const COLLECTIONS_BODY_LIMIT: usize = 32 << 20;

/// Largest `/v1/embeddings` body: a full batch of texts at the model's token limit, with room
/// for JSON escapes.
const EMBEDDINGS_BODY_LIMIT: usize = 8 << 20;

/// The HTTP API over `gateway`.
pub fn api(gateway: Arc<GatewayService>) -> HttpApi {
    // JSON escapes can double a prompt's size; the prompt limit itself is checked after parsing.
    let body_limit = gateway.config.max_prompt_bytes * 2 + (64 << 10);
    let v1 = Router::new()
        .route("/v1/completions", post(completions::create))
        .route("/v1/models", get(models))
        .route(
            "/v1/embeddings",
            post(embeddings::create)
                .layer(axum::extract::DefaultBodyLimit::max(EMBEDDINGS_BODY_LIMIT)),
        )
        .route("/v1/collections", get(collections::list))
        .route(
            "/v1/collections/{name}",
            put(collections::create)
                .get(collections::get)
                .delete(collections::drop),
        )
        .route(
            "/v1/collections/{name}/points",
            put(collections::upsert)
                .layer(axum::extract::DefaultBodyLimit::max(COLLECTIONS_BODY_LIMIT)),
        )
        .route(
            "/v1/collections/{name}/points/search",
            post(collections::search),
        )
        .route(
            "/v1/collections/{name}/points/search/batch",
            post(collections::search_batch)
                .layer(axum::extract::DefaultBodyLimit::max(COLLECTIONS_BODY_LIMIT)),
        )
        .route(
            "/v1/collections/{name}/points/delete",
            post(collections::delete),
        )
        .layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            require_key,
        ));
    let limits = HttpLimits {
        max_connections: gateway.config.http_max_connections.max(1),
        header_read_timeout: Duration::from_secs(gateway.config.http_header_timeout_secs.max(1)),
        body_read_timeout: Duration::from_secs(gateway.config.http_body_timeout_secs.max(1)),
    };
    let router = Router::new()
        .merge(v1)
        .route("/health", get(health))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(gateway);
    HttpApi {
        router,
        paths: PATHS,
        limits,
    }
}

/// Refuses calls without the API key (when one is set) with 401 in OpenAI's shape.
async fn require_key(
    State(gateway): State<Arc<GatewayService>>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if gateway.config.api_key.allows(header) {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// The served model's name: as configured, or the decoder's.
async fn model_name(gateway: &GatewayService, deadline: &Deadline) -> Result<String, ApiError> {
    if let Some(name) = &gateway.config.served_model_name {
        return Ok(name.clone());
    }
    let model = gateway.downstream.model(deadline).await?;
    Ok(model.info.model_id.clone())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn models(State(gateway): State<Arc<GatewayService>>) -> Result<Response, ApiError> {
    let deadline = Deadline::default();
    let model = gateway.downstream.model(&deadline).await?;
    let name = model_name(&gateway, &deadline).await?;
    let entry = |id: String, owned_by: &str| {
        json!({
            "id": id,
            "object": "model",
            "created": unix_now(),
            "owned_by": owned_by,
            "max_model_len": model.context,
        })
    };
    // The served model first, then the n-gram baselines, while the baseline answers (a baseline
    // that is down takes its models off the list, not the transformer's).
    let ngrams = match gateway.downstream.ngram_models(&deadline).await {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!(error = %e, "the n-gram baseline did not answer; listing the transformer only");
            Default::default()
        }
    };
    // Then the text-embedding model with its width, while the embedder answers.
    let text_model = gateway
        .downstream
        .text_model(&deadline)
        .await
        .ok()
        .flatten();
    let embedding = text_model.map(|m| {
        json!({
            "id": m.name,
            "object": "model",
            "created": unix_now(),
            "owned_by": "oneword-embedder",
            "max_model_len": m.max_tokens,
            "dimensions": m.dimensions,
        })
    });
    let data: Vec<_> = std::iter::once(entry(name, "oneword"))
        .chain(ngrams.iter().map(|n| entry(n.clone(), "oneword-baseline")))
        .chain(embedding)
        .collect();
    Ok(Json(json!({"object": "list", "data": data})).into_response())
}

/// 200 when the services behind the gateway answer (the model is known), 503 otherwise.
async fn health(State(gateway): State<Arc<GatewayService>>) -> Result<Response, ApiError> {
    let deadline = Deadline::default();
    let check = gateway.downstream.model(&deadline);
    match tokio::time::timeout(Duration::from_secs(5), check).await {
        Ok(Ok(_)) => Ok(Json(json!({"status": "ok"})).into_response()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(ApiError::unavailable(
            "the services behind the gateway did not answer within 5 s",
        )),
    }
}
