//! The next tokens' input embeddings of many streams in one embedder call. Every running stream
//! needs `wte[id] + wpe[pos]` for its next token at about the same moment (they all got their
//! tokens from one decoder pass), and a gRPC call costs far more than the lookup: at 32 streams,
//! 32 calls per step took CPU from the decoder on the same cores. Asks queue while a call is in
//! flight and the next call takes all of them (no timer: a lone stream waits for nothing), so
//! the embedder is asked about twice per step whatever the number of streams.

use oneword_proto::common::v1::Tensor;
use oneword_runtime::deadline::Deadline;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::{slice_rows, Downstream};
use crate::Error;

/// Asks that may wait for the next call; more wait to be queued (back-pressure on the streams).
const QUEUE: usize = 1024;

/// Most rows one call carries (each 3 KB for GPT-2 small), well under the message limit.
const MAX_ROWS: usize = 2048;

struct Ask {
    ids: Vec<u32>,
    positions: Vec<u32>,
    deadline: Deadline,
    /// The asking request's span: a merged call is traced under its first ask's.
    span: tracing::Span,
    reply: oneshot::Sender<Result<Tensor, Error>>,
}

/// A handle to the task that merges embedding asks.
#[derive(Clone)]
pub struct Coalescer {
    asks: mpsc::Sender<Ask>,
}

impl Coalescer {
    /// Starts the merging task; it ends when every handle is gone.
    pub fn start(down: Downstream) -> Self {
        let (asks, queue) = mpsc::channel(QUEUE);
        tokio::spawn(merge(down, queue));
        Coalescer { asks }
    }

    /// Input embeddings of `ids` at `positions`, from a call that may serve other streams too.
    pub async fn embed(
        &self,
        ids: Vec<u32>,
        positions: Vec<u32>,
        deadline: &Deadline,
    ) -> Result<Tensor, Error> {
        let (reply, answer) = oneshot::channel();
        let ask = Ask {
            ids,
            positions,
            deadline: *deadline,
            span: tracing::Span::current(),
            reply,
        };
        let gone = || Error::Internal("the embedding merger stopped".into());
        let wait = async {
            self.asks.send(ask).await.map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        };
        match deadline.remaining() {
            Some(left) => tokio::time::timeout(left, wait)
                .await
                .unwrap_or(Err(Error::DeadlineExceeded)),
            None => wait.await,
        }
    }
}

async fn merge(down: Downstream, mut queue: mpsc::Receiver<Ask>) {
    while let Some(first) = queue.recv().await {
        let mut asks = vec![first];
        let mut rows = asks[0].ids.len();
        while rows < MAX_ROWS {
            match queue.try_recv() {
                Ok(ask) => {
                    rows += ask.ids.len();
                    asks.push(ask);
                }
                Err(_) => break,
            }
        }
        // Asks whose caller stopped waiting cost nothing more.
        asks.retain(|a| !a.reply.is_closed());
        if asks.is_empty() {
            continue;
        }
        let deadline = asks
            .iter()
            .map(|a| a.deadline)
            .reduce(Deadline::later)
            .unwrap_or_default();
        let ids = asks.iter().flat_map(|a| a.ids.iter().copied()).collect();
        let positions = asks
            .iter()
            .flat_map(|a| a.positions.iter().copied())
            .collect();
        let span = asks[0].span.clone();
        match down
            .embed_now(ids, positions, &deadline)
            .instrument(span)
            .await
        {
            Ok(tensor) => {
                let mut start = 0;
                for ask in asks {
                    let len = ask.ids.len();
                    let _ = ask.reply.send(Ok(slice_rows(&tensor, start, len)));
                    start += len;
                }
            }
            // One stream's bad input must not fail the others: each is asked again alone.
            Err(Error::Downstream(_, status))
                if asks.len() > 1 && status.code() == tonic::Code::InvalidArgument =>
            {
                for ask in asks {
                    let alone = down.embed_now(ask.ids, ask.positions, &ask.deadline);
                    let _ = ask.reply.send(alone.instrument(ask.span).await);
                }
            }
            Err(e) => {
                for ask in asks {
                    let _ = ask.reply.send(Err(copy(&e)));
                }
            }
        }
    }
}

/// The same failure for each stream the call served.
fn copy(e: &Error) -> Error {
    match e {
        Error::Downstream(service, status) => Error::Downstream(service, status.clone()),
        Error::DeadlineExceeded => Error::DeadlineExceeded,
        Error::Overloaded(m, after) => Error::Overloaded(m.clone(), *after),
        other => Error::Internal(other.to_string()),
    }
}
