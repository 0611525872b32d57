//! `POST /v1/completions`: OpenAI's legacy completions, as vLLM and TGI serve them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use oneword_proto::gateway::v1 as pb;
use oneword_runtime::deadline::Deadline;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument;

use super::{model_name, unix_now, ApiError};
use crate::convert::GenerateParams;
use crate::generate::generate;
use crate::service::GatewayService;

/// The request. Unknown fields are ignored, as OpenAI clients send many.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    prompt: Prompt,
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    /// An extension of vLLM's and TGI's.
    top_k: Option<u32>,
    n: Option<u32>,
    stop: Option<Stop>,
    seed: Option<u64>,
    logprobs: Option<u32>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    echo: bool,
    best_of: Option<u32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    logit_bias: Option<HashMap<String, f32>>,
    /// An extension of vLLM's.
    #[serde(default)]
    ignore_eos: bool,
    /// vLLM's extensions, as on gRPC.
    #[serde(default)]
    stop_token_ids: Vec<u32>,
    min_p: Option<f32>,
    typical_p: Option<f32>,
    min_tokens: Option<u32>,
    repetition_penalty: Option<f32>,
    #[serde(default)]
    include_stop_str_in_output: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Prompt {
    One(String),
    Many(Vec<String>),
    /// OpenAI's token-array prompt.
    Ids(Vec<u32>),
    /// A list of token arrays (one, here).
    IdLists(Vec<Vec<u32>>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Chunks buffered per stream (as the gRPC stream does).
const STREAM_BUFFER: usize = 16;

pub async fn create(
    State(gateway): State<Arc<GatewayService>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: CompletionRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(
            "body",
            format!("the request body is not a valid completion request: {e}"),
        )
    })?;
    let deadline = Deadline::default();
    let model = model_name(&gateway, &deadline).await?;
    // The served model, or one of the n-gram baselines by name.
    let mut ngram = String::new();
    if let Some(asked) = request
        .model
        .as_deref()
        .filter(|m| !m.is_empty() && *m != model)
    {
        let ngrams = gateway.downstream.ngram_models(&deadline).await?;
        if !ngrams.iter().any(|n| n == asked) {
            let also = match ngrams.as_slice() {
                [] => String::new(),
                names => format!(" and the n-gram baselines {}", names.join(", ")),
            };
            return Err(ApiError {
                status: http::StatusCode::NOT_FOUND,
                message: format!(
                    "The model `{asked}` does not exist; this server serves `{model}`{also}"
                ),
                kind: "invalid_request_error",
                param: Some("model".into()),
                code: Some("model_not_found"),
                retry_after: None,
            });
        }
        ngram = asked.to_string();
    }
    let (stream, include_usage) = (
        request.stream,
        request
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage),
    );
    let logprobs = request.logprobs.is_some();
    let grpc_request = pb::GenerateRequest {
        model: ngram,
        ..to_generate_request(request)?
    };
    let params = GenerateParams::new(grpc_request, &gateway.config)?;
    let permit = gateway.admit()?;
    // Its OpenAI id is its request id, so gRPC's Cancel can end it too.
    let registration = gateway.register(Some(format!("cmpl-{}", uuid::Uuid::new_v4().simple())))?;
    let reply = Reply {
        id: registration.id.clone(),
        created: unix_now(),
        model,
        logprobs,
    };
    let (tx, mut rx) = mpsc::channel(STREAM_BUFFER);
    let n = params.n;
    let generation = {
        let gateway = gateway.clone();
        async move {
            let _permit = permit;
            let (down, metrics) = (&gateway.downstream, &gateway.metrics);
            generate(down, metrics, params, deadline, &tx, &registration, None).await
        }
    };
    if stream {
        let events = stream_events(reply, generation, rx, include_usage, gateway.drain.clone());
        return Ok(Sse::new(events).into_response());
    }
    // Not streamed: the generation runs in this handler, so a client that hangs up drops it.
    let collect = async {
        let mut choices: Vec<Choice> = (0..n).map(|_| Choice::default()).collect();
        let mut usage = pb::Usage::default();
        while let Some(Ok(chunk)) = rx.recv().await {
            choices[chunk.index as usize].add(&chunk);
            add_usage(&mut usage, &chunk);
        }
        (choices, usage)
    };
    let (result, (choices, usage)) = tokio::join!(generation, collect);
    result?;
    Ok(Json(json!({
        "id": reply.id,
        "object": "text_completion",
        "created": reply.created,
        "model": reply.model,
        "choices": choices.iter().enumerate().map(|(i, c)| c.json(i, reply.logprobs)).collect::<Vec<_>>(),
        "usage": usage_json(&usage),
    }))
    .into_response())
}

fn add_usage(usage: &mut pb::Usage, chunk: &pb::GenerateStreamResponse) {
    if let Some(u) = chunk.usage {
        usage.prompt_tokens = u.prompt_tokens;
        usage.completion_tokens += u.completion_tokens;
    }
}

/// What every answer of one request repeats.
struct Reply {
    id: String,
    created: u64,
    model: String,
    logprobs: bool,
}

pub(super) fn to_generate_request(r: CompletionRequest) -> Result<pb::GenerateRequest, ApiError> {
    let one = |count: usize| {
        ApiError::invalid(
            "prompt",
            format!(
                "`prompt` must be one string or token array (or a list of one); got a list of {count}"
            ),
        )
    };
    let (prompt, prompt_token_ids) = match r.prompt {
        Prompt::One(p) => (p, Vec::new()),
        Prompt::Many(mut many) if many.len() == 1 => (many.remove(0), Vec::new()),
        Prompt::Many(many) => return Err(one(many.len())),
        Prompt::Ids(ids) => (String::new(), ids),
        Prompt::IdLists(mut lists) if lists.len() == 1 => (String::new(), lists.remove(0)),
        Prompt::IdLists(lists) => return Err(one(lists.len())),
    };
    if r.echo {
        return Err(ApiError::invalid(
            "echo",
            "`echo` is not supported; got true",
        ));
    }
    if let Some(best_of) = r.best_of.filter(|&b| b != r.n.unwrap_or(1)) {
        return Err(ApiError::invalid(
            "best_of",
            format!("`best_of` must equal `n` (no re-ranking here), got {best_of}"),
        ));
    }
    let mut logit_bias = HashMap::new();
    for (key, bias) in r.logit_bias.unwrap_or_default() {
        let id = key.parse::<u32>().map_err(|_| {
            ApiError::invalid(
                "logit_bias",
                format!("`logit_bias` keys must be token ids, got `{key}`"),
            )
        })?;
        // "5" and "05" are one token; which bias won would depend on the map's order.
        if logit_bias.insert(id, bias).is_some() {
            return Err(ApiError::invalid(
                "logit_bias",
                format!("`logit_bias` names token {id} more than once (`{key}` is one spelling)"),
            ));
        }
    }
    Ok(pb::GenerateRequest {
        prompt,
        prompt_token_ids,
        max_new_tokens: r.max_tokens,
        temperature: r.temperature,
        top_k: r.top_k,
        top_p: r.top_p,
        seed: r.seed,
        stop: match r.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        },
        n: r.n,
        logprobs: r.logprobs,
        ignore_eos: r.ignore_eos,
        stop_token_ids: r.stop_token_ids,
        min_p: r.min_p,
        typical_p: r.typical_p,
        min_new_tokens: r.min_tokens,
        repetition_penalty: r.repetition_penalty,
        frequency_penalty: r.frequency_penalty,
        presence_penalty: r.presence_penalty,
        include_stop_str_in_output: r.include_stop_str_in_output,
        logit_bias,
        // Set by the caller, which knows the served model's name.
        model: String::new(),
        // Its OpenAI id becomes its request id.
        request_id: String::new(),
        // OpenAI has no sessions.
        session_id: String::new(),
        append_to_session: false,
    })
}

/// One choice being collected.
#[derive(Default)]
struct Choice {
    text: String,
    finish_reason: Option<&'static str>,
    tokens: Vec<String>,
    token_logprobs: Vec<f32>,
    top_logprobs: Vec<Value>,
}

impl Choice {
    fn add(&mut self, chunk: &pb::GenerateStreamResponse) {
        self.text.push_str(&chunk.text);
        self.finish_reason = self.finish_reason.or(finish_reason(chunk.finish_reason));
        if let Some(d) = &chunk.details {
            self.tokens.extend(
                d.pieces
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned()),
            );
            self.token_logprobs.extend(&d.logprobs);
            self.top_logprobs.extend(d.top.iter().map(|alternatives| {
                let mut top = serde_json::Map::new();
                for (piece, logprob) in alternatives.pieces.iter().zip(&alternatives.logprobs) {
                    top.insert(String::from_utf8_lossy(piece).into_owned(), json!(logprob));
                }
                Value::Object(top)
            }));
        }
    }

    fn json(&self, index: usize, logprobs: bool) -> Value {
        let logprobs = logprobs.then(|| {
            let mut offset = 0;
            let offsets: Vec<usize> = self
                .tokens
                .iter()
                .map(|t| {
                    let at = offset;
                    offset += t.len();
                    at
                })
                .collect();
            json!({
                "tokens": self.tokens,
                "token_logprobs": self.token_logprobs,
                "top_logprobs": self.top_logprobs,
                "text_offset": offsets,
            })
        });
        json!({
            "index": index,
            "text": self.text,
            "logprobs": logprobs,
            "finish_reason": self.finish_reason,
        })
    }
}

/// OpenAI's finish reasons: `length`, or `stop` for the end-of-text token and stop sequences.
fn finish_reason(reason: i32) -> Option<&'static str> {
    match pb::FinishReason::try_from(reason) {
        Ok(pb::FinishReason::Length) => Some("length"),
        Ok(
            pb::FinishReason::EosToken
            | pb::FinishReason::StopSequence
            | pb::FinishReason::StopToken,
        ) => Some("stop"),
        Ok(pb::FinishReason::Cancelled) => Some("abort"),
        _ => None,
    }
}

fn usage_json(usage: &pb::Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    })
}

/// The server-sent events of a streamed completion: one per chunk with text, an error event if
/// the generation fails, the usage when asked for, then `[DONE]`. A client that hangs up drops
/// the events' receiver, which ends the forwarding, which closes the generation's channel, which
/// stops the generation at its next token and releases its sessions.
fn stream_events(
    reply: Reply,
    generation: impl std::future::Future<Output = Result<(), crate::Error>> + Send + 'static,
    mut chunks: mpsc::Receiver<Result<pb::GenerateStreamResponse, tonic::Status>>,
    include_usage: bool,
    drain: oneword_runtime::drain::Drain,
) -> ReceiverStream<Result<Event, Infallible>> {
    let (events, out) = mpsc::channel(STREAM_BUFFER);
    let send = move |events: mpsc::Sender<Result<Event, Infallible>>, data: String| async move {
        events.send(Ok(Event::default().data(data))).await.is_ok()
    };
    let run = async move {
        let mut usage = pb::Usage::default();
        let forward = async {
            while let Some(Ok(chunk)) = chunks.recv().await {
                add_usage(&mut usage, &chunk);
                let mut choice = Choice::default();
                choice.add(&chunk);
                if chunk.text.is_empty() && choice.finish_reason.is_none() && !reply.logprobs {
                    // Bytes held back (half a character, a possible stop sequence): nothing yet.
                    continue;
                }
                let data = json!({
                    "id": reply.id,
                    "object": "text_completion",
                    "created": reply.created,
                    "model": reply.model,
                    "choices": [choice.json(chunk.index as usize, reply.logprobs)],
                });
                if !send(events.clone(), data.to_string()).await {
                    return false;
                }
            }
            true
        };
        let (result, connected) = tokio::select! {
            (result, connected) = async { tokio::join!(generation, forward) } => {
                (result.map_err(ApiError::from), connected)
            }
            () = drain.cut_off() => (Err(ApiError::from(crate::service::cut_off())), true),
        };
        if !connected {
            return;
        }
        if let Err(error) = result {
            let _ = send(events.clone(), error.body().to_string()).await;
        } else if include_usage {
            let data = json!({
                "id": reply.id,
                "object": "text_completion",
                "created": reply.created,
                "model": reply.model,
                "choices": [],
                "usage": usage_json(&usage),
            });
            let _ = send(events.clone(), data.to_string()).await;
        }
        let _ = send(events, "[DONE]".into()).await;
    };
    tokio::spawn(run.in_current_span());
    ReceiverStream::new(out)
}
