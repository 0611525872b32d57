//! The model thread's loop: continuous batching under a KV-cache budget.
//!
//! Step requests wait in arrival order until their sessions' growth fits the budget (or are
//! refused once they have waited too long), then run. Every pass takes the next row of each
//! running sequence's input first (decode steps), then fills the rest of the pass's row budget
//! with chunks of prompts being prefilled, no more than a time budget allows ([`Pace`]), so a burst of prompts arriving never stalls the streams already running. A request is answered when all its sessions are through; until then its
//! sessions are busy. A request that fails or whose caller has gone is undone: its sessions go
//! back to the length they had, and the ones it created are dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use oneword_model::{KvCache, ModelError, Sequence, Transformer};
use oneword_runtime::{Clock, Released, SessionError};
use oneword_sampling::{Pick, Picked, Seen, SessionShaping};
use rayon::prelude::*;

use super::job::{Job, Limits, Reply, StepDone, StepInput, StepOutput};
use super::metrics::EngineMetrics;
use super::pace::Pace;
use crate::Error;

struct Session {
    cache: KvCache,
    /// The shaping its steps use when they send none.
    shaping: SessionShaping,
    /// The tokens its steps' histories named, for the penalties.
    seen: Seen,
    last_used: Instant,
    /// In a running request: not to be stepped, forked or expired by anyone else.
    busy: bool,
}

/// A step request that has not been admitted yet.
struct Waiting {
    inputs: Vec<StepInput>,
    reply: Reply<StepDone>,
    arrived: Instant,
}

/// An admitted step request.
struct Running {
    parts: Vec<Part>,
    reply: Reply<StepDone>,
    forward: Duration,
    /// How long it waited before admission.
    queued: Duration,
}

/// One session's share of a running request.
struct Part {
    input: StepInput,
    /// Input rows already run.
    done: usize,
    /// The cache's length before the request: what undoing it restores.
    start_len: usize,
    /// The judgments of the rows run so far (teacher forcing).
    judged: Vec<Pick>,
    output: Option<StepOutput>,
}

impl Part {
    fn rows(&self) -> usize {
        self.input.embeddings.dims()[0]
    }

    fn remaining(&self) -> usize {
        self.rows() - self.done
    }
}

/// The share of a pass's time the next pass may wait for sequences due to join it.
const WAIT_SHARE: f64 = 0.5;

/// How much the mean pass time keeps of its past at each pass.
const PASS_DECAY: f64 = 0.9;

/// What one pass read from a part's logits: the pick after its last row, the judgments of its
/// rows.
type RowsRead = (Option<Picked>, Vec<Pick>);

pub(crate) struct Worker {
    model: Arc<Transformer>,
    limits: Limits,
    sessions: HashMap<String, Session>,
    waiting: VecDeque<Waiting>,
    running: Vec<Running>,
    /// Sessions that got a token in the last pass: their next step is probably on its way.
    expected: HashSet<String>,
    /// Ids released before a session had them: a call creating one is stale.
    released: Released,
    last_sweep: Instant,
    /// Set when every engine handle is gone: finish what is running, then stop.
    closing: bool,
    /// Forward passes run, and the rows they computed.
    passes: u64,
    rows: u64,
    /// What rows cost, for the prompt rows of the next pass.
    pace: Pace,
    /// Seconds a pass took lately (a decayed mean; 0 before the first).
    pass_seconds: f64,
    metrics: Option<EngineMetrics>,
    /// Where the TTL and the queue's wait are read: the system's, or a test's.
    clock: Clock,
}

impl Worker {
    pub(crate) fn new(
        model: Arc<Transformer>,
        limits: Limits,
        clock: Clock,
        metrics: Option<EngineMetrics>,
    ) -> Self {
        Worker {
            model,
            sessions: HashMap::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            expected: HashSet::new(),
            released: Released::default(),
            last_sweep: clock.now(),
            closing: false,
            passes: 0,
            rows: 0,
            pace: Pace::new(limits.prefill_budget, limits.prefill_stretch),
            pass_seconds: 0.0,
            limits,
            metrics,
            clock,
        }
    }

    pub(crate) fn run(mut self, jobs: mpsc::Receiver<Job>) {
        loop {
            self.take_arrived(&jobs);
            self.drop_abandoned();
            self.admit();
            // Before the pass, whose replies may reach a scraper before the loop's end.
            self.publish();
            if self.running.is_empty() {
                if self.closing {
                    return;
                }
                // Nothing to compute: sleep until a job comes, the head of the queue times out
                // or the TTL sweep is due.
                let mut timeout = self.sweep_every();
                if let Some(head) = self.waiting.front() {
                    let left = self
                        .limits
                        .max_queue_wait
                        .saturating_sub(self.clock.since(head.arrived));
                    timeout = timeout.min(left.max(Duration::from_millis(1)));
                }
                match jobs.recv_timeout(timeout) {
                    Ok(job) => self.accept(job),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => self.closing = true,
                }
            } else {
                if self.wait_for_expected(&jobs) {
                    self.drop_abandoned();
                    self.admit();
                }
                self.pass();
            }
            if self.clock.since(self.last_sweep) >= self.sweep_every() {
                self.expire_idle();
                self.last_sweep = self.clock.now();
            }
            self.publish();
        }
    }

    /// Sets the metrics' gauges from the state now.
    fn publish(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.publish(&self.usage());
        }
    }

    fn sweep_every(&self) -> Duration {
        (self.limits.session_ttl / 4).clamp(Duration::from_millis(10), Duration::from_secs(5))
    }

    fn take_arrived(&mut self, jobs: &mpsc::Receiver<Job>) {
        loop {
            match jobs.try_recv() {
                Ok(job) => self.accept(job),
                Err(mpsc::TryRecvError::Empty) => return,
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.closing = true;
                    return;
                }
            }
        }
    }

    /// How long a pass may wait for the sequences that just got a token: `batch_wait`, but no
    /// more than a share of what a pass takes, so that a device whose pass is far shorter than
    /// the flag's milliseconds (a GPU's decode step) does not idle for several passes.
    fn batch_wait(&self) -> Duration {
        let cap = self.limits.batch_wait;
        if self.pass_seconds == 0.0 {
            return cap;
        }
        cap.min(Duration::from_secs_f64(self.pass_seconds * WAIT_SHARE))
    }

    /// Gives the sequences that just got a token a moment ([`Worker::batch_wait`]) to send
    /// their next step, so that they share the next pass. Returns whether any job came.
    fn wait_for_expected(&mut self, jobs: &mpsc::Receiver<Job>) -> bool {
        let deadline = Instant::now() + self.batch_wait();
        let mut came = false;
        while !self.expected.is_empty() && !self.closing {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match jobs.recv_timeout(left) {
                Ok(job) => {
                    self.accept(job);
                    came = true;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => self.closing = true,
            }
        }
        self.expected.clear();
        came
    }

    fn accept(&mut self, job: Job) {
        // A caller that gave up (deadline, cancel) no longer needs its reply: send errors are fine.
        match job {
            Job::Step(inputs, reply) => {
                for input in &inputs {
                    self.expected.remove(&input.session_id);
                }
                if let Some(stale) =
                    self.first_released(inputs.iter().filter(|i| i.create).map(|i| &i.session_id))
                {
                    let _ = reply.send(Err(Error::Session(SessionError::NotFound(stale))));
                    return;
                }
                if self.waiting.len() >= self.limits.queue_capacity {
                    // A place in line frees by the time the head is admitted or refused.
                    let head_waited = self.waiting.front().map(|h| self.clock.since(h.arrived));
                    let retry_after = self
                        .limits
                        .max_queue_wait
                        .saturating_sub(head_waited.unwrap_or_default());
                    let _ = reply.send(Err(Error::NoRoom(
                        format!(
                            "{} steps are already waiting for room in the KV cache (the limit); retry with backoff",
                            self.waiting.len()
                        ),
                        retry_after,
                    )));
                    return;
                }
                self.waiting.push_back(Waiting {
                    inputs,
                    reply,
                    arrived: self.clock.now(),
                });
            }
            Job::Fork(source, targets, seen_as_prompt, reply) => {
                let _ = reply.send(self.fork(&source, targets, seen_as_prompt));
            }
            Job::Release(ids, reply) => {
                let _ = reply.send(Ok(self.release(&ids)));
            }
            Job::Usage(reply) => {
                let _ = reply.send(Ok(self.usage()));
            }
        }
    }

    /// Forgets requests whose callers are gone (deadline passed, stream cancelled, client
    /// disconnected), undoing the running ones, and running ones that lost a session to Release.
    fn drop_abandoned(&mut self) {
        self.waiting.retain(|w| !w.reply.is_closed());
        let mut i = 0;
        while i < self.running.len() {
            let run = &self.running[i];
            let lost = run
                .parts
                .iter()
                .find(|p| !self.sessions.contains_key(&p.input.session_id))
                .map(|p| p.input.session_id.clone());
            if run.reply.is_closed() || lost.is_some() {
                let run = self.running.swap_remove(i);
                let error = Error::Session(SessionError::NotFound(lost.unwrap_or_default()));
                self.undo(run, error);
            } else {
                i += 1;
            }
        }
    }

    /// Puts every session of `run` back as it was and answers `error`.
    fn undo(&mut self, run: Running, error: Error) {
        for part in &run.parts {
            let id = &part.input.session_id;
            if part.input.create {
                self.sessions.remove(id);
            } else if let Some(session) = self.sessions.get_mut(id) {
                session.cache.truncate(part.start_len);
                if let Some(history) = &part.input.history {
                    session.seen.remove(history);
                }
                session.busy = false;
            }
        }
        let _ = run.reply.send(Err(error));
    }

    /// Admits waiting requests in arrival order while they fit.
    fn admit(&mut self) {
        while let Some(head) = self.waiting.front() {
            if let Err(e) = self.check(&head.inputs) {
                let head = self.waiting.pop_front().expect("the head exists");
                let _ = head.reply.send(Err(e));
                continue;
            }
            let (tokens, sessions) = self.needs(&head.inputs);
            let budget = self.limits.kv_budget_tokens;
            let max_sessions = self.limits.max_sessions;
            let (committed, held) = (self.committed_tokens(), self.sessions.len());
            let never = tokens > budget || sessions > max_sessions;
            if !never && committed + tokens <= budget && held + sessions <= max_sessions {
                let head = self.waiting.pop_front().expect("the head exists");
                self.start(head);
                continue;
            }
            let waited = self.clock.since(head.arrived);
            if never || waited >= self.limits.max_queue_wait {
                let head = self.waiting.pop_front().expect("the head exists");
                let error = if never {
                    Error::ExceedsCapacity(format!(
                        "this step needs {tokens} KV-cache positions and {sessions} new sessions; the decoder's limits are {budget} positions and {max_sessions} sessions, so it can never run here"
                    ))
                } else {
                    // Nothing freed room within that wait: the next try had better wait as long.
                    Error::NoRoom(
                        format!(
                            "no room after waiting {} ms: the KV cache holds {committed} of {budget} positions and {held} of {max_sessions} sessions; this step needs {tokens} more positions and {sessions} more sessions; retry with backoff",
                            waited.as_millis()
                        ),
                        waited,
                    )
                };
                let _ = head.reply.send(Err(error));
                continue;
            }
            // The head waits for room, and everything behind it waits in order.
            return;
        }
    }

    /// What admitting `inputs` adds: KV-cache positions and sessions.
    fn needs(&self, inputs: &[StepInput]) -> (usize, usize) {
        let mut tokens = 0;
        let mut sessions = 0;
        for input in inputs {
            let n = input.embeddings.dims()[0];
            match self.sessions.get(&input.session_id) {
                Some(s) => tokens += s.cache.capacity_after(n) - s.cache.capacity_after(0),
                None => {
                    tokens += self.model.new_cache().capacity_after(n);
                    sessions += 1;
                }
            }
        }
        (tokens, sessions)
    }

    /// Checks a request against the sessions as they are now.
    fn check(&self, inputs: &[StepInput]) -> Result<(), Error> {
        let mut seen = HashSet::new();
        let context = self.model.config().n_positions;
        for input in inputs {
            let id = &input.session_id;
            if !seen.insert(id.as_str()) {
                return Err(Error::invalid(
                    "steps",
                    format!("session `{id}` appears twice in one step"),
                ));
            }
            let session = self.sessions.get(id);
            match (session, input.create) {
                (Some(_), true) => return Err(Error::Session(SessionError::Exists(id.clone()))),
                (None, false) => return Err(Error::Session(SessionError::NotFound(id.clone()))),
                (Some(s), false) if s.busy => {
                    return Err(Error::Session(SessionError::Busy(id.clone())))
                }
                _ => {}
            }
            let length = session.map_or(0, |s| s.cache.len());
            if input.start_position != length {
                return Err(Error::Session(SessionError::PositionMismatch {
                    id: id.clone(),
                    length,
                    start: input.start_position,
                }));
            }
            let n_new = input.embeddings.dims()[0];
            if length + n_new > context {
                return Err(Error::invalid(
                    "embeddings",
                    format!(
                        "session `{id}` holds {length} positions; {n_new} more exceed the context window of {context}"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn start(&mut self, request: Waiting) {
        let now = self.clock.now();
        let queued = self.clock.since(request.arrived);
        let parts = request
            .inputs
            .into_iter()
            .map(|mut input| {
                let session = self
                    .sessions
                    .entry(input.session_id.clone())
                    .or_insert_with(|| Session {
                        cache: self.model.new_cache(),
                        shaping: SessionShaping::default(),
                        seen: Seen::default(),
                        last_used: now,
                        busy: false,
                    });
                session.busy = true;
                if let Some(history) = &input.history {
                    session.seen.add(history);
                }
                if let Some(sampling) = &mut input.sampling {
                    session.shaping.settle(sampling);
                }
                Part {
                    start_len: session.cache.len(),
                    input,
                    done: 0,
                    judged: Vec::new(),
                    output: None,
                }
            })
            .collect();
        self.running.push(Running {
            parts,
            reply: request.reply,
            forward: Duration::ZERO,
            queued,
        });
    }

    /// The rows of the next pass as (request, part, rows): the next row of every part with one
    /// left (decode steps), then prompt chunks in arrival order, within `max_batch_tokens` and
    /// the time [`Pace`] gives them. Also returns how many of the rows are decode steps.
    fn plan(&self) -> (Vec<(usize, usize, usize)>, usize) {
        let max = self.limits.max_batch_tokens.max(1);
        let (mut budget, mut decode_rows) = (max, 0);
        let mut plan = Vec::new();
        for decode in [true, false] {
            if !decode {
                decode_rows = max - budget;
                let sequences = self.running.iter().flat_map(|run| &run.parts);
                let sequences = sequences.filter(|part| part.remaining() > 0).count();
                budget = budget.min(self.pace.prompt_rows(decode_rows, sequences, max));
            }
            for (r, run) in self.running.iter().enumerate() {
                for (p, part) in run.parts.iter().enumerate() {
                    let left = part.remaining();
                    if left == 0 || (left == 1) != decode || budget == 0 {
                        continue;
                    }
                    let rows = left.min(budget);
                    budget -= rows;
                    plan.push((r, p, rows));
                }
            }
        }
        (plan, decode_rows)
    }

    /// One forward pass over the planned rows, then the picks, then the answers to the requests
    /// that are through.
    fn pass(&mut self) {
        let (plan, decode_rows) = self.plan();
        let mut caches = Vec::with_capacity(plan.len());
        let mut inputs = Vec::with_capacity(plan.len());
        let mut logits_at = Vec::with_capacity(plan.len());
        for &(r, p, rows) in &plan {
            let part = &self.running[r].parts[p];
            let session = self
                .sessions
                .remove(&part.input.session_id)
                .expect("running sessions were checked to exist, this is a bug");
            logits_at.push(part.logits_at(rows, &session.seen, &self.model));
            inputs.push(part.input.embeddings.narrow(0, part.done, rows));
            caches.push(session);
        }
        let started = Instant::now();
        let result = inputs
            .into_iter()
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(ModelError::from)
            .and_then(|inputs| {
                let mut batch: Vec<Sequence> = caches
                    .iter_mut()
                    .zip(&inputs)
                    .zip(&logits_at)
                    .map(|((session, inputs), &logits)| Sequence {
                        inputs,
                        cache: &mut session.cache,
                        logits,
                    })
                    .collect();
                self.model.forward_batch_logits(&mut batch)
            });
        let forward = started.elapsed();
        let rows: usize = plan.iter().map(|p| p.2).sum();
        if result.is_ok() {
            let seconds = forward.as_secs_f64();
            self.pace.observe(decode_rows, rows - decode_rows, seconds);
            self.pass_seconds = match self.pass_seconds {
                0.0 => seconds,
                mean => PASS_DECAY * mean + (1.0 - PASS_DECAY) * seconds,
            };
        }
        self.passes += 1;
        self.rows += rows as u64;
        if let Some(metrics) = &self.metrics {
            metrics.iteration_tokens.observe(rows as f64);
            metrics.batch_sequences.observe(plan.len() as f64);
            metrics.forward_seconds.observe(forward.as_secs_f64());
        }
        tracing::debug!(
            sequences = plan.len(),
            rows,
            forward_ms = forward.as_secs_f64() * 1e3,
            "forward pass"
        );

        // Put the sessions back before anything can fail or return.
        let now = self.clock.now();
        for (&(r, p, _), mut session) in plan.iter().zip(caches) {
            session.last_used = now;
            self.sessions
                .insert(self.running[r].parts[p].input.session_id.clone(), session);
        }
        let involved: HashSet<usize> = plan.iter().map(|p| p.0).collect();
        let logits = match result {
            Ok(logits) => logits,
            Err(e) => {
                tracing::error!(error = %e, "forward pass failed");
                self.finish_failed(&involved, || Error::Model(ModelError::Input(e.to_string())));
                return;
            }
        };
        for &r in &involved {
            self.running[r].forward += forward;
        }

        // Picks are independent per sequence: spread them over the cores.
        let reads = plan
            .par_iter()
            .zip(logits)
            .map(|(&(r, p, rows), logits)| {
                let part = &self.running[r].parts[p];
                part.read(rows, logits, &self.sessions[&part.input.session_id].seen)
            })
            .collect();
        let picks = self.finish_reads(&plan, &logits_at, reads);
        let mut failed = HashSet::new();
        for (&(r, p, rows), pick) in plan.iter().zip(picks) {
            let part = &mut self.running[r].parts[p];
            part.done += rows;
            let pick = pick.map(|(pick, judged)| {
                part.judged.extend(judged);
                pick
            });
            match pick {
                Err(_) => {
                    failed.insert(r);
                }
                Ok(pick) if part.done == part.rows() => {
                    let id = part.input.session_id.clone();
                    if pick.is_some() && !part.input.release_after {
                        self.expected.insert(id.clone());
                    }
                    part.output = Some(StepOutput {
                        length: self.sessions[&id].cache.len(),
                        session_id: id,
                        picked: pick,
                        judged: std::mem::take(&mut part.judged),
                    });
                }
                Ok(_) => {}
            }
        }
        if !failed.is_empty() {
            self.finish_failed(&failed, || {
                Error::Model(ModelError::Input("reading the logits failed".into()))
            });
        }
        self.answer_finished();
    }

    fn finish_failed(&mut self, runs: &HashSet<usize>, error: impl Fn() -> Error) {
        let mut indices: Vec<usize> = runs.iter().copied().collect();
        indices.sort_unstable_by(|a, b| b.cmp(a));
        for r in indices {
            let run = self.running.swap_remove(r);
            self.undo(run, error());
        }
    }

    /// Answers every request whose sessions are all through, and frees its sessions.
    fn answer_finished(&mut self) {
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].parts.iter().any(|p| p.output.is_none()) {
                i += 1;
                continue;
            }
            let run = self.running.remove(i);
            let mut outputs = Vec::with_capacity(run.parts.len());
            for part in run.parts {
                let id = &part.input.session_id;
                if part.input.release_after {
                    self.sessions.remove(id);
                } else if let Some(session) = self.sessions.get_mut(id) {
                    session.busy = false;
                }
                outputs.push(part.output.expect("checked above"));
            }
            let _ = run.reply.send(Ok(StepDone {
                outputs,
                forward: run.forward,
                queued: run.queued,
            }));
        }
    }
}

mod picks;
mod sessions;
#[cfg(test)]
mod tests;
