//! The autoregressive loop of the essay: tokenize, embed, run the transformer, pick a token with
//! a seeded draw, append, repeat, for `n` completions of one prompt at once.
//!
//! The prompt is prefilled once: with `n > 1` all but its last token go into one session, which
//! is forked `n` times, and each fork then feeds the last prompt token with its own draw. Every
//! later step sends all running completions to the decoder in one call.

use std::time::{Duration, Instant};

use oneword_proto::decoder::v1 as dec;
use oneword_proto::gateway::v1 as pb;
use oneword_runtime::deadline::Deadline;
use tokio::sync::mpsc;
use tonic::Status;

use crate::convert::GenerateParams;
use crate::downstream::{Downstream, Inputs, Model, Sessions};
use crate::metrics::GatewayMetrics;
use crate::text_stream::TextStream;
use crate::{rng, Error};

/// Where chunks go; a closed receiver means the client went away.
pub type ChunkSender = mpsc::Sender<Result<pb::GenerateStreamResponse, Status>>;

/// One completion in progress.
struct Completion {
    index: u32,
    session: String,
    text: TextStream,
    generated: usize,
    /// The token picked last, to be fed next.
    last_token: u32,
    /// Where `last_token` will be fed.
    next_position: usize,
}

/// Runs the generation, sending each completion's chunks to `out` as they are ready. Returns
/// early, releasing everything, when the client goes away.
#[tracing::instrument(
    name = "generate",
    skip_all,
    fields(request_id, n = params.n, prompt_tokens, generated_tokens, decoder)
)]
pub async fn generate(
    down: &Downstream,
    metrics: &GatewayMetrics,
    params: GenerateParams,
    deadline: Deadline,
    out: &ChunkSender,
) -> Result<(), Error> {
    let started = Instant::now();
    let mut progress = metrics.start();
    let span = tracing::Span::current();
    let model = down.model(&deadline).await?;
    let encoding = down.encode(&params.prompt, false, &deadline).await?;
    let tokenized = Instant::now();
    let prompt = encoding.ids;
    params.check_against_model(prompt.len(), model.context, model.pieces.len())?;
    span.record("prompt_tokens", prompt.len());
    metrics.prompt_tokens.inc_by(prompt.len() as u64);
    metrics.request_prompt_tokens.observe(prompt.len() as f64);

    let request_id = uuid::Uuid::new_v4().simple().to_string();
    span.record("request_id", request_id.as_str());
    // Every step of this generation goes to one replica of its backend: its sessions live there.
    let backend = down.backend(&params.model, &model, &deadline).await?;
    let decoder = down.decoder_for(&backend).await?;
    span.record("decoder", decoder.address().to_string());
    let names: Vec<String> = (0..params.n).map(|i| format!("{request_id}-{i}")).collect();
    let mut sessions = Sessions::new(&decoder, names.clone());
    let mut generated = Generated {
        span: span.clone(),
        tokens: 0,
    };
    let positions: Vec<u32> = (0..prompt.len() as u32).collect();
    let inputs = Inputs::of(down, &backend, prompt.clone(), positions, &deadline).await?;
    let model_name = backend.model_field();

    let report = dec::Report {
        top_n: params.logprobs.unwrap_or(0) as u32,
        full_row: dec::FullRow::None as i32,
    };
    let sampling = |sample: usize, step: usize| dec::Sampling {
        shaping: Some(params.shaping_of(sample)),
        u: rng::uniform(params.seed, sample as u32, step as u32),
        report: Some(report),
    };
    let last = prompt.len() - 1;
    let first_steps: Vec<dec::SessionStep> = if params.n == 1 || last == 0 {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let (embeddings, token_ids) = inputs.rows(0, prompt.len());
                dec::SessionStep {
                    session_id: name.clone(),
                    create: true,
                    start_position: 0,
                    embeddings,
                    sampling: Some(sampling(i, 0)),
                    release_after: false,
                    token_ids,
                    model: model_name.clone(),
                }
            })
            .collect()
    } else {
        let (embeddings, token_ids) = inputs.rows(0, last);
        let prefill = dec::SessionStep {
            session_id: names[0].clone(),
            create: true,
            start_position: 0,
            embeddings,
            sampling: None,
            release_after: false,
            token_ids,
            model: model_name.clone(),
        };
        decoder.step(vec![prefill], &deadline).await?;
        decoder
            .fork(&names[0], names[1..].to_vec(), &deadline)
            .await?;
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let (embeddings, token_ids) = inputs.rows(last, 1);
                dec::SessionStep {
                    session_id: name.clone(),
                    create: false,
                    start_position: last as u32,
                    embeddings,
                    sampling: Some(sampling(i, 0)),
                    release_after: false,
                    token_ids,
                    model: String::new(),
                }
            })
            .collect()
    };
    let mut running: Vec<Completion> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Completion {
            index: i as u32,
            session: name.clone(),
            text: TextStream::new(params.stop.clone()),
            generated: 0,
            last_token: 0,
            next_position: prompt.len(),
        })
        .collect();

    let mut response = decoder.step(first_steps, &deadline).await?;
    let prefilled = Instant::now();
    let mut step = 0;
    loop {
        if response.results.len() != running.len() {
            return Err(Error::Internal(format!(
                "the decoder answered {} results for {} sessions",
                response.results.len(),
                running.len()
            )));
        }
        progress.tokens(running.len());
        generated.tokens += running.len();
        let mut done = Vec::new();
        let mut still_running = Vec::with_capacity(running.len());
        for (mut completion, result) in running.into_iter().zip(response.results) {
            let pick = result
                .pick
                .ok_or_else(|| Error::Internal("the decoder returned no token".into()))?;
            let (mut chunk, finished) = advance(&mut completion, &pick, &params, &model)?;
            chunk.seed = params.seed;
            if finished {
                metrics.finished(finish_label(chunk.finish_reason), completion.generated);
                let now = Instant::now();
                chunk.usage = Some(pb::Usage {
                    prompt_tokens: prompt.len() as u32,
                    completion_tokens: completion.generated as u32,
                });
                chunk.timings = Some(pb::Timings {
                    tokenize_ns: nanos(tokenized - started),
                    prefill_ns: nanos(prefilled - tokenized),
                    decode_ns: nanos(now - prefilled),
                    total_ns: nanos(now - started),
                });
                done.push(completion.session.clone());
            } else {
                still_running.push(completion);
            }
            if out.send(Ok(chunk)).await.is_err() {
                tracing::info!(request_id, "client went away; releasing its sessions");
                return Ok(());
            }
        }
        sessions.release(&done);
        running = still_running;
        if running.is_empty() {
            return Ok(());
        }
        if deadline.expired() {
            return Err(Error::DeadlineExceeded);
        }
        step += 1;
        let ids: Vec<u32> = running.iter().map(|c| c.last_token).collect();
        let positions: Vec<u32> = running.iter().map(|c| c.next_position as u32).collect();
        let inputs = Inputs::of(down, &backend, ids, positions, &deadline).await?;
        let steps = running
            .iter()
            .enumerate()
            .map(|(row, c)| {
                let (embeddings, token_ids) = inputs.rows(row, 1);
                dec::SessionStep {
                    session_id: c.session.clone(),
                    create: false,
                    start_position: c.next_position as u32,
                    embeddings,
                    sampling: Some(sampling(c.index as usize, step)),
                    release_after: false,
                    token_ids,
                    model: String::new(),
                }
            })
            .collect();
        for c in running.iter_mut() {
            c.next_position += 1;
        }
        response = decoder.step(steps, &deadline).await?;
    }
}

/// Records on the generation's span how many tokens it produced, however it ends.
struct Generated {
    span: tracing::Span,
    tokens: usize,
}

impl Drop for Generated {
    fn drop(&mut self) {
        self.span.record("generated_tokens", self.tokens);
    }
}

fn finish_label(reason: i32) -> &'static str {
    match pb::FinishReason::try_from(reason) {
        Ok(pb::FinishReason::Length) => "length",
        Ok(pb::FinishReason::EosToken) => "eos_token",
        Ok(pb::FinishReason::StopSequence) => "stop_sequence",
        _ => "other",
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// Takes one picked token into a completion: its text, whether it ends the completion, and the
/// chunk that reports it.
fn advance(
    c: &mut Completion,
    pick: &dec::Pick,
    params: &GenerateParams,
    model: &Model,
) -> Result<(pb::GenerateStreamResponse, bool), Error> {
    let token = pick.token_id;
    let piece = model.pieces.get(token as usize).ok_or_else(|| {
        Error::Internal(format!(
            "the decoder picked token {token}, outside the vocabulary"
        ))
    })?;
    c.generated += 1;
    c.last_token = token;
    let mut text = String::new();
    let mut finish = None;
    let mut stop_sequence = String::new();
    if token == model.eos && !params.ignore_eos {
        finish = Some(pb::FinishReason::EosToken);
    } else {
        let delta = c.text.push(piece);
        text.push_str(&delta.text);
        if let Some(stop) = delta.stopped {
            finish = Some(pb::FinishReason::StopSequence);
            stop_sequence = stop;
        }
    }
    if finish.is_none() && c.generated >= params.max_new_tokens {
        finish = Some(pb::FinishReason::Length);
    }
    if finish.is_some() {
        // The end releases held bytes, and can itself complete a stop sequence that was waiting.
        let delta = c.text.finish();
        text.push_str(&delta.text);
        if let Some(stop) = delta.stopped {
            finish = Some(pb::FinishReason::StopSequence);
            stop_sequence = stop;
        }
    }
    let details = params.logprobs.map(|_| details(token, piece, pick, model));
    let chunk = pb::GenerateStreamResponse {
        index: c.index,
        text,
        token_ids: vec![token],
        details,
        generated_tokens: c.generated as u32,
        finish_reason: finish.unwrap_or(pb::FinishReason::Unspecified) as i32,
        stop_sequence,
        ..Default::default()
    };
    Ok((chunk, finish.is_some()))
}

fn details(token: u32, piece: &[u8], pick: &dec::Pick, model: &Model) -> pb::TokenDetails {
    let raw_top = pick.raw_top.clone().unwrap_or_default();
    let piece_of = |id: &u32| model.pieces.get(*id as usize).cloned().unwrap_or_default();
    pb::TokenDetails {
        ids: vec![token],
        pieces: vec![piece.to_vec()],
        logprobs: vec![pick.logprob],
        ranks: vec![pick.rank],
        shaped_logprobs: vec![pick.shaped_logprob],
        top: vec![pb::Alternatives {
            pieces: raw_top.ids.iter().map(piece_of).collect(),
            ids: raw_top.ids,
            logprobs: raw_top.logprobs,
        }],
    }
}
