//! The handle to the model thread ([`crate::scheduler`]), which owns the transformer and every
//! session's KV cache and runs the forward passes, so heavy compute never blocks tokio's workers.
//! Requests arrive over a bounded channel (full = overloaded, answered at once) with a oneshot
//! for the reply.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use candle_core::Tensor;
use oneword_model::Transformer;
use tokio::sync::{oneshot, Semaphore};

use crate::distribution::{Pick, Shaping};
use crate::metrics::EngineMetrics;
use crate::scheduler::Worker;
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

/// What the sessions occupy and what is queued.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub sessions: usize,
    pub cached_tokens: usize,
    pub cached_bytes: usize,
    /// Step requests admitted and being computed.
    pub running: usize,
    /// Step requests waiting for room in the KV cache.
    pub waiting: usize,
    /// Forward passes run since start, and the rows they computed.
    pub passes: u64,
    pub rows: u64,
}

/// Limits the engine enforces.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_sessions: usize,
    pub session_ttl: Duration,
    /// Step requests that may wait (in the channel, then for room) before more are refused.
    pub queue_capacity: usize,
    /// How long a step may wait for room before it is refused.
    pub max_queue_wait: Duration,
    /// KV-cache positions all sessions together may hold.
    pub kv_budget_tokens: usize,
    /// Rows one forward pass may take: decode steps first, then chunks of prefills.
    pub max_batch_tokens: usize,
    /// How long a pass may wait for sequences that just got a token to send their next one, so
    /// that streams stepping in lockstep share passes instead of drifting into alternate ones.
    pub batch_wait: Duration,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// A step's results in order, and the time spent in the forward passes it took part in.
pub(crate) type StepDone = (Vec<StepOutput>, Duration);

pub(crate) enum Job {
    Step(Vec<StepInput>, Reply<StepDone>),
    Fork(String, Vec<String>, Reply<()>),
    Release(Vec<String>, Reply<usize>),
    Usage(Reply<Usage>),
}

/// Jobs the channel to the model thread holds beyond `queue_capacity`.
const CONTROL_SLACK: usize = 16;

/// How many one-shot instruments may wait for their turn before more are refused.
const PROBE_QUEUE: usize = 16;

/// A handle to the model thread. Cloning shares the thread.
#[derive(Clone)]
pub struct Engine {
    jobs: mpsc::SyncSender<Job>,
    capacity: usize,
    /// The same immutable model, for the one-shot instruments ([`Engine::probe`]).
    model: Arc<Transformer>,
    /// One instrument runs at a time, so they cannot crowd out the batched steps.
    probe_turn: Arc<Semaphore>,
    probes_waiting: Arc<AtomicUsize>,
}

impl Engine {
    /// Starts the model thread. It stops when every handle is dropped.
    pub fn start(model: Transformer, limits: Limits, metrics: Option<EngineMetrics>) -> Self {
        // Room beyond the steps' bound for the small jobs (Info, Release, Fork), so that a
        // health probe or a release cannot make a step be refused as "queue full" (the model
        // thread bounds waiting steps itself).
        let limits_capacity = limits.queue_capacity + CONTROL_SLACK;
        let (jobs, rx) = mpsc::sync_channel(limits_capacity);
        let model = Arc::new(model);
        let for_worker = model.clone();
        std::thread::Builder::new()
            .name("decoder-model".into())
            .spawn(move || Worker::new(for_worker, limits, metrics).run(rx))
            .expect("spawning the model thread failed; the process cannot serve, this is a bug");
        Engine {
            jobs,
            capacity: limits_capacity,
            model,
            probe_turn: Arc::new(Semaphore::new(1)),
            probes_waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Runs a one-shot instrument on the model, off tokio's workers and beside the model thread,
    /// one at a time. It runs to the end even if the caller goes away, holding its turn.
    pub async fn probe<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Transformer) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        /// Counts a caller waiting for its turn until it has it or goes away.
        struct InLine<'a>(&'a AtomicUsize);
        impl Drop for InLine<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let in_line = InLine(&self.probes_waiting);
        if self.probes_waiting.fetch_add(1, Ordering::SeqCst) >= PROBE_QUEUE {
            return Err(Error::Overloaded(format!(
                "{PROBE_QUEUE} instrument requests are already waiting (the limit); retry with backoff"
            )));
        }
        let turn = self.probe_turn.clone().acquire_owned().await;
        drop(in_line);
        let turn = turn.map_err(|_| Error::ShuttingDown)?;
        let model = self.model.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            work(&model)
        })
        .await
        .map_err(|_| Error::ShuttingDown)?
    }

    async fn call<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.jobs.try_send(job(tx)).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => Error::Overloaded(format!(
                "the decoder's request queue is full ({} requests); retry with backoff",
                self.capacity
            )),
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
