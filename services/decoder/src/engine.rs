//! The model thread: it owns the transformer and every session's KV cache, and runs the
//! forward passes, so heavy compute never blocks tokio's workers. Requests arrive over a bounded
//! channel (full = overloaded, answered at once) with a oneshot for the reply.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use oneword_model::{KvCache, LogitsAt, Transformer};
use tokio::sync::oneshot;

use crate::distribution::{self, Pick, Shaping};
use crate::Error;

/// One session's part of a step, validated.
pub struct StepInput {
    pub session_id: String,
    pub create: bool,
    pub start_position: usize,
    /// `[n_new, n_embd]` on the model's device.
    pub embeddings: Tensor,
    pub sampling: Option<Sampling>,
    pub release_after: bool,
}

/// How to pick a token after the step.
pub struct Sampling {
    pub shaping: Shaping,
    pub u: f64,
    pub top_n: usize,
    pub full_row: bool,
}

/// One session's result.
pub struct StepOutput {
    pub session_id: String,
    pub length: usize,
    pub pick: Option<Pick>,
    /// The raw logits, when asked for.
    pub full_row: Option<Vec<f32>>,
}

/// What the sessions occupy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub sessions: usize,
    pub cached_tokens: usize,
    pub cached_bytes: usize,
}

/// Limits the engine enforces.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_sessions: usize,
    pub session_ttl: Duration,
    pub queue_capacity: usize,
}

type Reply<T> = oneshot::Sender<Result<T, Error>>;

enum Job {
    Step(Vec<StepInput>, Reply<(Vec<StepOutput>, Duration)>),
    Fork(String, Vec<String>, Reply<()>),
    Release(Vec<String>, Reply<usize>),
    Usage(Reply<Usage>),
}

/// A handle to the model thread. Cloning shares the thread.
#[derive(Clone)]
pub struct Engine {
    jobs: mpsc::SyncSender<Job>,
}

impl Engine {
    /// Starts the model thread. It stops when every handle is dropped.
    pub fn start(model: Transformer, limits: Limits) -> Self {
        let (jobs, rx) = mpsc::sync_channel(limits.queue_capacity);
        std::thread::Builder::new()
            .name("decoder-model".into())
            .spawn(move || {
                Worker {
                    model,
                    limits,
                    sessions: HashMap::new(),
                }
                .run(rx)
            })
            .expect("spawning the model thread failed; the process cannot serve, this is a bug");
        Engine { jobs }
    }

    async fn call<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.jobs.try_send(job(tx)).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => {
                Error::Overloaded("the decoder's request queue is full; retry with backoff".into())
            }
            mpsc::TrySendError::Disconnected(_) => Error::ShuttingDown,
        })?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Runs one step for each input; returns the results in order and the forward time.
    pub async fn step(&self, inputs: Vec<StepInput>) -> Result<(Vec<StepOutput>, Duration), Error> {
        self.call(|reply| Job::Step(inputs, reply)).await
    }

    /// Copies `source` into each of `targets`.
    pub async fn fork(&self, source: String, targets: Vec<String>) -> Result<(), Error> {
        self.call(|reply| Job::Fork(source, targets, reply)).await
    }

    /// Drops the named sessions; returns how many existed.
    pub async fn release(&self, ids: Vec<String>) -> Result<usize, Error> {
        self.call(|reply| Job::Release(ids, reply)).await
    }

    /// What the sessions occupy now.
    pub async fn usage(&self) -> Result<Usage, Error> {
        self.call(Job::Usage).await
    }
}

struct Session {
    cache: KvCache,
    last_used: Instant,
}

struct Worker {
    model: Transformer,
    limits: Limits,
    sessions: HashMap<String, Session>,
}

impl Worker {
    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        let sweep_every =
            (self.limits.session_ttl / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
        let mut last_sweep = Instant::now();
        loop {
            match jobs.recv_timeout(sweep_every) {
                Ok(job) => self.handle(job),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if last_sweep.elapsed() >= sweep_every {
                self.expire_idle();
                last_sweep = Instant::now();
            }
        }
    }

    fn handle(&mut self, job: Job) {
        // A caller that gave up (deadline, cancel) no longer needs its reply: send errors are fine.
        match job {
            Job::Step(inputs, reply) => {
                let started = Instant::now();
                let result = self.step(inputs).map(|out| (out, started.elapsed()));
                let _ = reply.send(result);
            }
            Job::Fork(source, targets, reply) => {
                let _ = reply.send(self.fork(&source, targets));
            }
            Job::Release(ids, reply) => {
                let released = ids
                    .iter()
                    .filter(|id| self.sessions.remove(*id).is_some())
                    .count();
                let _ = reply.send(Ok(released));
            }
            Job::Usage(reply) => {
                let _ = reply.send(Ok(self.usage()));
            }
        }
    }

    fn usage(&self) -> Usage {
        Usage {
            sessions: self.sessions.len(),
            cached_tokens: self.sessions.values().map(|s| s.cache.len()).sum(),
            cached_bytes: self.sessions.values().map(|s| s.cache.bytes()).sum(),
        }
    }

    fn expire_idle(&mut self) {
        let ttl = self.limits.session_ttl;
        let before = self.sessions.len();
        self.sessions.retain(|_, s| s.last_used.elapsed() < ttl);
        let expired = before - self.sessions.len();
        if expired > 0 {
            tracing::info!(expired, "dropped idle sessions past their TTL");
        }
    }

    /// Checks the whole batch before running any of it, runs every forward pass on copies of the
    /// caches, and commits them only when all succeeded: a failed step changes nothing.
    fn step(&mut self, inputs: Vec<StepInput>) -> Result<Vec<StepOutput>, Error> {
        let mut seen = HashSet::new();
        let mut creating = 0;
        for input in &inputs {
            if !seen.insert(input.session_id.as_str()) {
                return Err(Error::invalid(
                    "steps",
                    format!("session `{}` appears twice in one step", input.session_id),
                ));
            }
            match (self.sessions.get(&input.session_id), input.create) {
                (Some(_), true) => return Err(Error::SessionExists(input.session_id.clone())),
                (None, false) => return Err(Error::SessionNotFound(input.session_id.clone())),
                (None, true) => creating += 1,
                (Some(_), false) => {}
            }
            let length = self
                .sessions
                .get(&input.session_id)
                .map_or(0, |s| s.cache.len());
            if input.start_position != length {
                return Err(Error::PositionMismatch {
                    id: input.session_id.clone(),
                    length,
                    start: input.start_position,
                });
            }
            let (n_new, context) = (input.embeddings.dims()[0], self.model.config().n_positions);
            if length + n_new > context {
                return Err(Error::invalid(
                    "embeddings",
                    format!(
                        "session `{}` holds {length} positions; {n_new} more exceed the context window of {context}",
                        input.session_id
                    ),
                ));
            }
        }
        if self.sessions.len() + creating > self.limits.max_sessions {
            return Err(Error::Overloaded(format!(
                "the decoder holds {} sessions and {creating} more would exceed its limit of {}",
                self.sessions.len(),
                self.limits.max_sessions
            )));
        }

        let mut caches = Vec::with_capacity(inputs.len());
        let mut outputs = Vec::with_capacity(inputs.len());
        for input in &inputs {
            let mut cache = match self.sessions.get(&input.session_id) {
                Some(session) => session.cache.clone(),
                None => self.model.new_cache(),
            };
            let at = if input.sampling.is_some() {
                LogitsAt::Last
            } else {
                LogitsAt::None
            };
            let logits = self.model.forward(&input.embeddings, &mut cache, at)?;
            let (pick, full_row) = match (&input.sampling, logits) {
                (Some(sampling), Some(logits)) => {
                    let row = logits
                        .to_vec1::<f32>()
                        .map_err(oneword_model::ModelError::from)?;
                    let pick =
                        distribution::pick(&row, &sampling.shaping, sampling.u, sampling.top_n);
                    (Some(pick), sampling.full_row.then_some(row))
                }
                _ => (None, None),
            };
            outputs.push(StepOutput {
                session_id: input.session_id.clone(),
                length: cache.len(),
                pick,
                full_row,
            });
            caches.push(cache);
        }
        let now = Instant::now();
        for (input, cache) in inputs.into_iter().zip(caches) {
            if input.release_after {
                self.sessions.remove(&input.session_id);
            } else {
                self.sessions.insert(
                    input.session_id,
                    Session {
                        cache,
                        last_used: now,
                    },
                );
            }
        }
        Ok(outputs)
    }

    fn fork(&mut self, source: &str, targets: Vec<String>) -> Result<(), Error> {
        let cache = match self.sessions.get_mut(source) {
            Some(session) => {
                session.last_used = Instant::now();
                session.cache.clone()
            }
            None => return Err(Error::SessionNotFound(source.to_string())),
        };
        let mut unique = HashSet::new();
        for target in &targets {
            if self.sessions.contains_key(target) || !unique.insert(target) {
                return Err(Error::SessionExists(target.clone()));
            }
        }
        if self.sessions.len() + targets.len() > self.limits.max_sessions {
            return Err(Error::Overloaded(format!(
                "the decoder holds {} sessions and {} forks would exceed its limit of {}",
                self.sessions.len(),
                targets.len(),
                self.limits.max_sessions
            )));
        }
        let now = Instant::now();
        for target in targets {
            self.sessions.insert(
                target,
                Session {
                    cache: cache.clone(),
                    last_used: now,
                },
            );
        }
        Ok(())
    }
}
