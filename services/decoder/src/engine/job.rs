//! What crosses the channel to the model thread: the jobs, their inputs and answers, and the
//! limits the thread enforces.

use std::time::Duration;

use candle_core::Tensor;
use oneword_sampling::{History, Pick, Picked, Sampling};
use tokio::sync::oneshot;

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
    /// The rows' token ids, for the penalties; `None`: not counted.
    pub history: Option<History>,
    /// Per row, the token that follows it, to judge (teacher forcing); empty: none.
    pub judge_ids: Vec<u32>,
}

/// One session's result.
pub struct StepOutput {
    pub session_id: String,
    pub length: usize,
    /// The picked token (and the raw row, when asked for), when sampling was asked for.
    pub picked: Option<Picked>,
    /// What the distribution after each row gives its judged token.
    pub judged: Vec<Pick>,
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
    /// While streams are decoding, the time prompt chunks may add to a pass (see `pace`).
    pub prefill_budget: Duration,
    /// The most prompt chunks may add to a pass, as a multiple of the decode rows' own time.
    pub prefill_stretch: f64,
    /// How long a pass may wait for sequences that just got a token to send their next one, so
    /// that streams stepping in lockstep share passes instead of drifting into alternate ones.
    pub batch_wait: Duration,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// A step's results in order, and the time spent in the forward passes it took part in.
/// A step request's answer.
pub struct StepDone {
    pub outputs: Vec<StepOutput>,
    /// Time in the forward passes that ran its rows.
    pub forward: Duration,
    /// Time it waited for room (KV budget, sessions) before it was admitted.
    pub queued: Duration,
}

pub(crate) enum Job {
    Step(Vec<StepInput>, Reply<StepDone>),
    /// Source, targets, whether the copies count every seen token as prompt.
    Fork(String, Vec<String>, bool, Reply<()>),
    Release(Vec<String>, Reply<usize>),
    Usage(Reply<Usage>),
}
