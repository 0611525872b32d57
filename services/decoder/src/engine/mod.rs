//! The engine: a handle ([`Engine`]) to the model thread ([`scheduler`]), which owns the
//! transformer and every session's KV cache and runs the forward passes, so heavy compute never
//! blocks tokio's workers. Requests arrive over a bounded channel (full = overloaded, answered at
//! once) with a oneshot for the reply. The children depend only on [`job`] (what crosses the
//! channel) and on each other downwards (scheduler → metrics), never on this handle.

mod job;
pub mod metrics;
mod pace;
mod scheduler;

use std::sync::mpsc;
use std::sync::Arc;

use oneword_model::Transformer;
use oneword_runtime::{Clock, Turns};
use tokio::sync::oneshot;

use job::{Job, Reply, StepDone};
pub use job::{Limits, StepInput, StepOutput, Usage};
use metrics::EngineMetrics;
use scheduler::Worker;

use crate::Error;

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
    probe_turns: Turns,
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
            .spawn(move || Worker::new(for_worker, limits, Clock::system(), metrics).run(rx))
            .expect("spawning the model thread failed; the process cannot serve, this is a bug");
        Engine {
            jobs,
            capacity: limits_capacity,
            model,
            probe_turns: Turns::new(1, PROBE_QUEUE, "instrument requests"),
        }
    }

    /// Runs a one-shot instrument on the model, off tokio's workers and beside the model thread,
    /// one at a time. It runs to the end even if the caller goes away, holding its turn.
    pub async fn probe<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Transformer) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let model = self.model.clone();
        self.probe_turns.run(move || work(&model)).await?
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
    pub async fn step(&self, inputs: Vec<StepInput>) -> Result<StepDone, Error> {
        self.call(|reply| Job::Step(inputs, reply)).await
    }

    /// Copies `source` into each of `targets` (counting every token it has seen as prompt,
    /// for the penalties, when `seen_as_prompt`).
    pub async fn fork(
        &self,
        source: String,
        targets: Vec<String>,
        seen_as_prompt: bool,
    ) -> Result<(), Error> {
        self.call(|reply| Job::Fork(source, targets, seen_as_prompt, reply))
            .await
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
