//! The autoregressive loop of the essay: tokenize, embed, run the transformer, pick a token with
//! a seeded draw, append, repeat, for `n` completions of one prompt at once.
//!
//! The prompt is prefilled once: with `n > 1` all but its last token go into one session, which
//! is forked `n` times, and each fork then feeds the last prompt token with its own draw. Every
//! later step sends all running completions to the decoder in one call.
//!
//! A generation outlives the decoder replica it runs on. Its sessions are only a cache: this
//! loop holds every token, and each pick's draw comes from a counter keyed by (seed, sample,
//! step). When the replica fails (refuses, drops the connection, or hangs: see
//! [`Decoder::step_watched`]), the sessions are built again on another replica from prompt +
//! tokens so far, the same prefill that started them with more rows, and the step in progress
//! is that prefill's pick: the text goes on as an undisturbed run's would.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use oneword_proto::decoder::v1 as dec;
use oneword_proto::gateway::v1 as pb;
use oneword_runtime::deadline::Deadline;
use tokio::sync::mpsc;
use tonic::Status;

use crate::client_sessions::{continued, Kept, Placed};
use crate::convert::GenerateParams;
use crate::downstream::{Backend, Decoder, Downstream, Inputs, Model, Sessions};
use crate::metrics::GatewayMetrics;
use crate::requests::Registration;
use crate::text_stream::TextStream;
use crate::{rng, Error};

/// Where chunks go; a closed receiver means the client went away.
pub type ChunkSender = mpsc::Sender<Result<pb::GenerateStreamResponse, Status>>;

/// One completion in progress.
struct Completion {
    index: u32,
    /// Its session on the current replica.
    session: String,
    text: TextStream,
    /// The tokens picked so far; the last one is fed next.
    tokens: Vec<u32>,
}

/// What building a generation's sessions on a replica needs.
struct Plan<'a> {
    down: &'a Downstream,
    backend: &'a Backend,
    request_id: &'a str,
    /// What its session names start with: the request id and a nonce, as a client may reuse an
    /// id once its request ended, and another gateway replica may run a request by the same id
    /// on the same decoder (which remembers released names for a while; see its scheduler).
    sessions: &'a str,
    prompt: &'a [u32],
    sampling: &'a (dyn Fn(usize, usize) -> dec::Sampling + Sync),
    /// Whether the steps name their tokens for the decoder's penalties.
    penalized: bool,
    /// The client session it continues and the tokens of it the prompt starts with (which a
    /// decoder holds already, unless an append moved the session on since).
    base: Option<(&'a Kept, &'a [u32])>,
    deadline: &'a Deadline,
}

/// A step's rows as the penalties count them, when they count at all.
fn history(penalized: bool, prompt: &[u32], generated: &[u32]) -> Option<dec::History> {
    penalized.then(|| dec::History {
        prompt_ids: prompt.to_vec(),
        generated_ids: generated.to_vec(),
    })
}

/// The replica a generation's sessions live on, and the guard that frees them there.
struct Placement {
    decoder: Decoder,
    sessions: Sessions,
}

/// Runs the generation, sending each completion's chunks to `out` as they are ready. Returns
/// early, releasing everything, when the client goes away; when `request` is cancelled, the
/// running completions end with FINISH_REASON_CANCELLED and what they had. With `base`, it
/// continues that client session (whose prefill is not run again).
#[tracing::instrument(
    name = "generate",
    skip_all,
    fields(request_id, n = params.n, prompt_tokens, generated_tokens, decoder, failovers),
    // A generation that fails is worth a line in the log, with its request id.
    err(level = "warn", Display)
)]
pub async fn generate(
    down: &Downstream,
    metrics: &GatewayMetrics,
    params: GenerateParams,
    deadline: Deadline,
    out: &ChunkSender,
    request: &Registration,
    base: Option<&Kept>,
) -> Result<(), Error> {
    let started = Instant::now();
    let cancelled = request.cancelled();
    tokio::pin!(cancelled);
    let mut progress = metrics.start();
    let span = tracing::Span::current();
    let model = down.model(&deadline).await?;
    let vocab_size = model.pieces.len();
    let (prompt, from_session) =
        continued(base, &params.prompt, down, vocab_size, &deadline).await?;
    let tokenized = Instant::now();
    params.check_against_model(prompt.len(), model.context, model.pieces.len())?;
    span.record("prompt_tokens", prompt.len());
    metrics.prompt_tokens.inc_by(prompt.len() as u64);
    metrics.request_prompt_tokens.observe(prompt.len() as f64);

    let request_id = request.id.as_str();
    span.record("request_id", request_id);
    let backend = match base {
        Some(base) => base.backend.clone(),
        None => down.backend(&params.model, &model, &deadline).await?,
    };
    let mut generated = Generated {
        span: span.clone(),
        tokens: 0,
    };
    let report = dec::Report {
        top_n: params.logprobs.unwrap_or(0) as u32,
        full_row: dec::FullRow::None as i32,
    };
    let sampling = |sample: usize, step: usize| dec::Sampling {
        shaping: Some(dec::Shaping {
            banned_ids: params.held_back(step, model.eos),
            ..params.shaping_of(sample)
        }),
        u: rng::uniform(params.seed, sample as u32, step as u32),
        report: Some(report),
    };
    let sessions = format!("{request_id}/{:016x}", uuid::Uuid::new_v4().as_u64_pair().0);
    let plan = Plan {
        down,
        backend: &backend,
        request_id,
        sessions: &sessions,
        prompt: &prompt,
        sampling: &sampling,
        // An appended completion's tokens must be counted for whatever continues it.
        penalized: params.penalizes() || params.append_to_session,
        base: base.map(|base| (base, &prompt[..from_session])),
        deadline: &deadline,
    };
    let mut running: Vec<Completion> = (0..params.n)
        .map(|i| Completion {
            index: i as u32,
            session: String::new(),
            text: TextStream::new(params.stop.clone()),
            tokens: Vec::new(),
        })
        .collect();

    let mut moves = Moves::default();
    // Time the steps waited in the decoder for room: in the prefill, and in all later steps.
    let mut queued = [Duration::ZERO; 2];
    let ended = |running: Vec<Completion>, prefilled: Instant, queued: [Duration; 2]| Ended {
        running,
        prompt_tokens: prompt.len(),
        request_id,
        seed: params.seed,
        timings: timings([started, tokenized, prefilled, Instant::now()], queued),
    };
    let Some(placed) =
        unless_cancelled(place(&plan, &mut running, &mut moves), &mut cancelled).await
    else {
        return ended(running, Instant::now(), queued)
            .cancelled(metrics, out)
            .await;
    };
    let (mut placement, mut response) = placed?;
    queued[0] = Duration::from_nanos(response.queue_ns);
    span.record("decoder", placement.decoder.address().to_string());
    let prefilled = Instant::now();
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
            chunk.request_id = request_id.to_string();
            chunk.prompt_tokens = prompt.len() as u32;
            if finished {
                metrics.finished(finish_label(chunk.finish_reason), completion.tokens.len());
                let now = Instant::now();
                chunk.usage = Some(pb::Usage {
                    prompt_tokens: prompt.len() as u32,
                    completion_tokens: completion.tokens.len() as u32,
                });
                chunk.timings = Some(timings([started, tokenized, prefilled, now], queued));
                match base.filter(|_| params.append_to_session) {
                    // Its decoder session holds the prompt and all but its last token: what the
                    // client session holds from now on.
                    Some(base) => {
                        let session = completion.session.clone();
                        // Guarded anew before the guard lets go, across the wait for the lock.
                        let placed = Placed::new(placement.decoder.clone(), session.clone());
                        placement.sessions.keep(&[session]);
                        let tokens = [prompt.as_slice(), &completion.tokens].concat();
                        base.adopt(tokens, placed).await;
                    }
                    None => done.push(completion.session.clone()),
                }
            } else {
                still_running.push(completion);
            }
            if out.send(Ok(chunk)).await.is_err() {
                tracing::info!(request_id, "client went away; releasing its sessions");
                return Ok(());
            }
        }
        placement.sessions.release(&done);
        running = still_running;
        if running.is_empty() {
            return Ok(());
        }
        if deadline.expired() {
            return Err(Error::DeadlineExceeded);
        }
        let ids: Vec<u32> = running.iter().map(last_token).collect();
        let positions: Vec<u32> = running
            .iter()
            .map(|c| (prompt.len() + c.tokens.len() - 1) as u32)
            .collect();
        let inputs = Inputs::of(down, &backend, ids, positions.clone(), &deadline).await?;
        let steps = running
            .iter()
            .zip(positions)
            .enumerate()
            .map(|(row, (c, position))| {
                dec::SessionStep {
                    session_id: c.session.clone(),
                    create: false,
                    start_position: position,
                    input: inputs.rows(row, 1),
                    // The session keeps the shaping it was built with, until min_new_tokens
                    // lifts the hold on the end-of-text and stop tokens.
                    sampling: Some({
                        let mut s = sampling(c.index as usize, c.tokens.len());
                        if c.tokens.len() != params.min_new_tokens {
                            s.shaping = None;
                        }
                        s
                    }),
                    release_after: false,
                    model: String::new(),
                    history: history(plan.penalized, &[], &[last_token(c)]),
                    judge_ids: Vec::new(),
                }
            })
            .collect();
        let decoder = &placement.decoder;
        let step = decoder.step_watched(steps, &deadline, down.stall);
        let Some(stepped) = unless_cancelled(step, &mut cancelled).await else {
            // Dropping the call made the decoder undo the step; the guard releases the sessions.
            return ended(running, prefilled, queued)
                .cancelled(metrics, out)
                .await;
        };
        response = match stepped {
            Ok(response) => {
                moves.progressed();
                queued[1] += Duration::from_nanos(response.queue_ns);
                response
            }
            Err(e) if decoder.failed_by(&e) => {
                let from = decoder.address();
                moves.failed_on(from, &e)?;
                let rebuilt = running.len() * (prompt.len() + running[0].tokens.len());
                tracing::warn!(
                    request_id,
                    %from,
                    error = %e,
                    rebuilt,
                    "the decoder replica failed mid-generation; moving its sessions to another"
                );
                metrics.failovers.inc();
                metrics.failover_tokens.inc_by(rebuilt as u64);
                span.record("failovers", moves.count);
                // The old sessions are released there (if it still answers) by the guard.
                drop(placement);
                let moving = place(&plan, &mut running, &mut moves);
                let Some(moved) = unless_cancelled(moving, &mut cancelled).await else {
                    return ended(running, prefilled, queued)
                        .cancelled(metrics, out)
                        .await;
                };
                let moved = moved?;
                queued[1] += Duration::from_nanos(moved.1.queue_ns);
                span.record("decoder", moved.0.decoder.address().to_string());
                placement = moved.0;
                moved.1
            }
            Err(e) => return Err(e),
        };
    }
}

/// `work`'s output, or `None` when the request is cancelled first. `work` is dropped then: a
/// decoder call in flight is undone there.
async fn unless_cancelled<T>(
    work: impl Future<Output = T>,
    cancelled: &mut Pin<&mut impl Future<Output = ()>>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = cancelled.as_mut() => None,
        output = work => Some(output),
    }
}

/// The completions still running when a request was cancelled, and what their last chunks
/// report.
struct Ended<'a> {
    running: Vec<Completion>,
    prompt_tokens: usize,
    request_id: &'a str,
    seed: u64,
    timings: pb::Timings,
}

impl Ended<'_> {
    /// Ends each completion with FINISH_REASON_CANCELLED: the text it held back (whole
    /// characters), its usage and timings.
    async fn cancelled(self, metrics: &GatewayMetrics, out: &ChunkSender) -> Result<(), Error> {
        tracing::info!(request_id = self.request_id, "cancelled");
        for mut c in self.running {
            metrics.finished("cancelled", c.tokens.len());
            let delta = c.text.finish();
            let chunk = pb::GenerateStreamResponse {
                index: c.index,
                text: delta.text,
                generated_tokens: c.tokens.len() as u32,
                finish_reason: pb::FinishReason::Cancelled as i32,
                usage: Some(pb::Usage {
                    prompt_tokens: self.prompt_tokens as u32,
                    completion_tokens: c.tokens.len() as u32,
                }),
                seed: self.seed,
                timings: Some(self.timings),
                request_id: self.request_id.to_string(),
                prompt_tokens: self.prompt_tokens as u32,
                ..Default::default()
            };
            if out.send(Ok(chunk)).await.is_err() {
                break;
            }
        }
        Ok(())
    }
}

fn last_token(c: &Completion) -> u32 {
    *c.tokens
        .last()
        .expect("a running completion has picked a token before it is fed; this is a bug")
}

/// Most times one generation may move to another replica: a bound on the work a flapping
/// deployment can make it redo.
const MAX_MOVES: usize = 16;

/// Where a generation must not go, and how often it has moved.
#[derive(Default)]
struct Moves {
    /// The replica it last failed on, until it makes progress. Only that one: a replica
    /// restarted in a rolling update may take it again after the next one fails (and a channel
    /// answers once with the stale error of a connect that failed while its replica was down).
    excluded: Vec<SocketAddr>,
    /// Moves in all; they name its sessions (fresh names on each replica).
    count: usize,
}

impl Moves {
    fn failed_on(&mut self, replica: SocketAddr, error: &Error) -> Result<(), Error> {
        self.excluded.clear();
        if !Decoder::unsent(error) {
            self.excluded.push(replica);
        }
        self.count += 1;
        if self.count > MAX_MOVES {
            return Err(Error::Downstream(
                "decoder",
                tonic::Status::unavailable(format!(
                    "the generation failed on a decoder replica {} times; giving up",
                    self.count
                )),
            ));
        }
        Ok(())
    }

    fn progressed(&mut self) {
        self.excluded.clear();
    }
}

/// Builds the running completions' sessions on a replica that it has not failed on since its
/// last step, and runs the step in progress there: the first step of a new generation, or, after a
/// failure, prompt + tokens so far as one prefill whose pick is the step that failed. Tries
/// replica after replica until one succeeds; UNAVAILABLE when none is left.
async fn place(
    plan: &Plan<'_>,
    running: &mut [Completion],
    moves: &mut Moves,
) -> Result<(Placement, dec::StepResponse), Error> {
    loop {
        // Fresh names on each replica, so that a session left on a failed one is never mixed up.
        for c in running.iter_mut() {
            c.session = match moves.count {
                0 => format!("{}-{}", plan.sessions, c.index),
                moves => format!("{}-{}.{moves}", plan.sessions, c.index),
            };
        }
        let names: Vec<String> = running.iter().map(|c| c.session.clone()).collect();
        // A client session is forked where it lives (it finds itself a replica when it lives
        // nowhere); after a move, the generation is prefilled whole like any other.
        let forked = match plan.base.filter(|_| moves.count == 0) {
            Some((base, tokens)) => {
                let forking = base.fork_into(plan.down, names.clone(), tokens, plan.deadline);
                forking.await?
            }
            None => None,
        };
        let (decoder, prefilled, sessions) = match forked {
            Some(f) => (f.decoder, f.held, f.sessions),
            None => {
                let decoder = plan.down.decoder_excluding(plan.backend, &moves.excluded);
                let decoder = decoder.await?;
                let sessions = Sessions::new(&decoder, names);
                (decoder, 0, sessions)
            }
        };
        match build(plan, &decoder, running, prefilled).await {
            Ok(response) => return Ok((Placement { decoder, sessions }, response)),
            Err(e) if decoder.failed_by(&e) => {
                tracing::warn!(
                    request_id = plan.request_id,
                    replica = %decoder.address(),
                    error = %e,
                    "a decoder replica failed while the generation's sessions were built; trying another"
                );
                moves.failed_on(decoder.address(), &e)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The sessions of `running` on `decoder`, fed prompt + tokens so far. With several
/// completions the prompt but its last token is prefilled once and forked, and each fork
/// then feeds the rest (the last prompt token and its own tokens) with its own draw. When the
/// sessions hold the first `prefilled` positions already (forks of a client session), only the
/// rest is fed.
async fn build(
    plan: &Plan<'_>,
    decoder: &Decoder,
    running: &[Completion],
    prefilled: usize,
) -> Result<dec::StepResponse, Error> {
    let (prompt, deadline, stall) = (plan.prompt, plan.deadline, plan.down.stall);
    let fed = prompt.len() + running[0].tokens.len();
    let shared = match prefilled {
        0 if running.len() > 1 => prompt.len() - 1,
        held => held,
    };
    // The shared part still to prefill here.
    let prefix = if prefilled > 0 { 0 } else { shared };
    let own = fed - shared;
    let mut ids = prompt[..prefix].to_vec();
    let mut positions: Vec<u32> = (0..prefix as u32).collect();
    for c in running {
        ids.extend_from_slice(&prompt[shared..]);
        ids.extend_from_slice(&c.tokens);
        positions.extend(shared as u32..fed as u32);
    }
    let inputs = Inputs::of(plan.down, plan.backend, ids, positions, deadline).await?;
    let model = plan.backend.model_field();
    if prefix > 0 {
        let prefill = dec::SessionStep {
            session_id: running[0].session.clone(),
            create: true,
            start_position: 0,
            input: inputs.rows(0, prefix),
            sampling: None,
            release_after: false,
            model: model.clone(),
            history: history(plan.penalized, &prompt[..prefix], &[]),
            judge_ids: Vec::new(),
        };
        decoder.step_watched(vec![prefill], deadline, stall).await?;
        let forks = running[1..].iter().map(|c| c.session.clone()).collect();
        decoder
            .fork(&running[0].session, forks, false, deadline)
            .await?;
    }
    let steps = running
        .iter()
        .enumerate()
        .map(|(i, c)| dec::SessionStep {
            session_id: c.session.clone(),
            create: shared == 0,
            start_position: shared as u32,
            input: inputs.rows(prefix + i * own, own),
            sampling: Some((plan.sampling)(c.index as usize, c.tokens.len())),
            release_after: false,
            model: if shared == 0 {
                model.clone()
            } else {
                String::new()
            },
            history: history(plan.penalized, &prompt[shared..], &c.tokens),
            judge_ids: Vec::new(),
        })
        .collect();
    decoder.step_watched(steps, deadline, stall).await
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
        Ok(pb::FinishReason::Cancelled) => "cancelled",
        Ok(pb::FinishReason::StopToken) => "stop_token",
        _ => "other",
    }
}

/// Where the time went, from the moments a generation started, was tokenized and prefilled, and
/// now, less the time its steps queued in the decoder (in the prefill, and after it).
fn timings(
    [started, tokenized, prefilled, now]: [Instant; 4],
    [in_prefill, in_decode]: [Duration; 2],
) -> pb::Timings {
    pb::Timings {
        tokenize_ns: nanos(tokenized - started),
        prefill_ns: nanos((prefilled.max(tokenized) - tokenized).saturating_sub(in_prefill)),
        decode_ns: nanos(
            now.saturating_duration_since(prefilled)
                .saturating_sub(in_decode),
        ),
        total_ns: nanos(now - started),
        queue_ns: nanos(in_prefill + in_decode),
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
    c.tokens.push(token);
    let mut text = String::new();
    let mut finish = None;
    let mut stop_sequence = String::new();
    let mut stop_token_id = None;
    if token == model.eos && !params.ignore_eos {
        finish = Some(pb::FinishReason::EosToken);
    } else if params.stop_token_ids.contains(&token) {
        finish = Some(pb::FinishReason::StopToken);
        stop_token_id = Some(token);
    } else {
        let delta = c.text.push(piece);
        text.push_str(&delta.text);
        if let Some(stop) = delta.stopped {
            finish = Some(pb::FinishReason::StopSequence);
            stop_sequence = stop;
        }
    }
    if finish.is_none() && c.tokens.len() >= params.max_new_tokens {
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
    if params.include_stop_str {
        // The text runs to the start of what stopped it; keeping it means adding it back.
        match stop_token_id {
            Some(_) => text.push_str(&String::from_utf8_lossy(piece)),
            None => text.push_str(&stop_sequence),
        }
    }
    let details = params.logprobs.map(|_| details(token, piece, pick, model));
    let chunk = pb::GenerateStreamResponse {
        index: c.index,
        text,
        token_ids: vec![token],
        details,
        generated_tokens: c.tokens.len() as u32,
        finish_reason: finish.unwrap_or(pb::FinishReason::Unspecified) as i32,
        stop_sequence,
        stop_token_id,
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
