//! A replica of a session backend (the decoder or the n-gram baseline) held for a whole
//! generation, since its sessions live there; the guard that frees those sessions however the
//! request ends; and a step's inputs.

use std::net::SocketAddr;
use std::time::Duration;

use oneword_proto::common::v1::Tensor;
use oneword_proto::decoder::v1 as dec;
use oneword_runtime::deadline::Deadline;
use oneword_runtime::telemetry::TracedChannel;

use super::{decoder_client, failed, Backend, Downstream};
use crate::replicas::{is_replica_failure, Pinned, Replicas};
use crate::Error;
use oneword_runtime::status::never_sent;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// How long a replica suspected of hanging gets to answer a health check.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One replica of a backend (the decoder or the baseline), kept for a whole generation: its
/// sessions live there.
#[derive(Clone)]
pub struct Decoder {
    client: dec::decoder_client::DecoderClient<TracedChannel>,
    pinned: Pinned,
    /// Which service it is, for errors.
    service: &'static str,
}

impl Decoder {
    pub(super) async fn pick(
        replicas: &Replicas,
        service: &'static str,
        excluded: &[SocketAddr],
    ) -> Result<Self, Error> {
        let pinned = replicas.pick_excluding(excluded).await?;
        let client = decoder_client(pinned.channel.clone());
        Ok(Decoder {
            client,
            pinned,
            service,
        })
    }

    /// The replica's address.
    pub fn address(&self) -> SocketAddr {
        self.pinned.address
    }

    /// Whether `error` says this replica failed (so its work may move to another), rather than
    /// the request or another service.
    pub fn failed_by(&self, error: &Error) -> bool {
        matches!(error, Error::Downstream(service, status)
            if *service == self.service && is_replica_failure(status))
    }

    /// Whether `error` is a call that never reached the replica (its connection was being
    /// recycled): the replica is fine and may be tried again at once.
    pub fn unsent(error: &Error) -> bool {
        matches!(error, Error::Downstream(_, status) if never_sent(status))
    }

    /// One decoder step over several sessions.
    pub async fn step(
        &self,
        steps: Vec<dec::SessionStep>,
        deadline: &Deadline,
    ) -> Result<dec::StepResponse, Error> {
        let result = self
            .client()
            .step(deadline.request(dec::StepRequest { steps }))
            .await;
        self.outcome(result, deadline)
    }

    /// Like [`Decoder::step`], watching for a replica that hangs: once the step has taken
    /// `stall`, the replica's health is probed (on the same connection); a replica that does
    /// not answer that within [`PROBE_TIMEOUT`] is given up on with UNAVAILABLE, so that the
    /// caller can move its work. A replica that is merely busy answers the probe at once and
    /// keeps the step.
    pub async fn step_watched(
        &self,
        steps: Vec<dec::SessionStep>,
        deadline: &Deadline,
        stall: Duration,
    ) -> Result<dec::StepResponse, Error> {
        let step = self.step(steps, deadline);
        tokio::pin!(step);
        loop {
            tokio::select! {
                result = &mut step => return result,
                () = tokio::time::sleep(stall) => {}
            }
            if !self.responds().await {
                let status = tonic::Status::unavailable(format!(
                    "the {} at {} took over {} ms for a step and did not answer a health check within {} ms",
                    self.service,
                    self.address(),
                    stall.as_millis(),
                    PROBE_TIMEOUT.as_millis()
                ));
                self.pinned.report(Some(&status));
                return Err(Error::Downstream(self.service, status));
            }
        }
    }

    /// Whether the replica answers a health check within [`PROBE_TIMEOUT`] (NOT_SERVING while
    /// draining is an answer too: the steps in flight still complete).
    async fn responds(&self) -> bool {
        let mut health = HealthClient::new(self.pinned.channel.clone());
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        request.set_timeout(PROBE_TIMEOUT);
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, health.check(request)).await,
            Ok(Ok(_))
        )
    }

    /// Copies `source` into `targets` (which count every token it has seen as prompt, for the
    /// penalties, when `seen_as_prompt`).
    pub async fn fork(
        &self,
        source: &str,
        targets: Vec<String>,
        seen_as_prompt: bool,
        deadline: &Deadline,
    ) -> Result<(), Error> {
        let request = dec::ForkRequest {
            source_session_id: source.to_string(),
            new_session_ids: targets,
            seen_as_prompt,
        };
        let result = self.client().fork(deadline.request(request)).await;
        self.outcome(result, deadline).map(drop)
    }

    fn client(&self) -> dec::decoder_client::DecoderClient<TracedChannel> {
        self.client.clone()
    }

    /// A call's answer, after recording how it went for the replica's failure accrual.
    fn outcome<T>(
        &self,
        result: Result<tonic::Response<T>, tonic::Status>,
        deadline: &Deadline,
    ) -> Result<T, Error> {
        self.pinned.report(result.as_ref().err());
        result
            .map(tonic::Response::into_inner)
            .map_err(|s| failed(self.service, s, deadline))
    }
}

/// Rows `start..start + len` of a `[n, width]` wire tensor, without decoding it.
pub(super) fn slice_rows(tensor: &Tensor, start: usize, len: usize) -> Tensor {
    let rows = tensor.shape.first().copied().unwrap_or(0).max(1) as usize;
    let row_bytes = tensor.data.len() / rows;
    let mut shape = tensor.shape.clone();
    if let Some(first) = shape.first_mut() {
        *first = len as u32;
    }
    Tensor {
        data: tensor.data[start * row_bytes..(start + len) * row_bytes].to_vec(),
        shape,
        dtype: tensor.dtype,
    }
}

/// Frees decoder sessions when dropped, so a request that fails, is cancelled or loses its
/// client never leaves a KV cache behind (the TTL is only the last resort).
pub struct Sessions {
    decoder: dec::decoder_client::DecoderClient<TracedChannel>,
    ids: Vec<String>,
}

impl Sessions {
    pub fn new(decoder: &Decoder, ids: Vec<String>) -> Self {
        Sessions {
            decoder: decoder.client.clone(),
            ids,
        }
    }

    /// Stops tracking `ids` without releasing them: someone else holds them now.
    pub fn keep(&mut self, ids: &[String]) {
        self.ids.retain(|id| !ids.contains(id));
    }

    /// Releases `ids` now (they are done) and stops tracking them.
    pub fn release(&mut self, ids: &[String]) {
        self.ids.retain(|id| !ids.contains(id));
        spawn_release(self.decoder.clone(), ids.to_vec());
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            spawn_release(self.decoder.clone(), std::mem::take(&mut self.ids));
        }
    }
}

/// How long a release keeps being retried while its replica does not answer: a replica that
/// hung (and so lost its generations to another) frees their sessions when it comes back,
/// instead of holding them until their TTL.
const RELEASE_RETRIES_FOR: Duration = Duration::from_secs(120);
/// The longest pause between two tries.
const RELEASE_BACKOFF_MAX: Duration = Duration::from_secs(4);

fn spawn_release(
    mut decoder: dec::decoder_client::DecoderClient<TracedChannel>,
    session_ids: Vec<String>,
) {
    if session_ids.is_empty() {
        return;
    }
    // Runs on its own, since the request that owned the sessions may be gone already.
    tokio::spawn(async move {
        let give_up = tokio::time::Instant::now() + RELEASE_RETRIES_FOR;
        let mut backoff = Duration::from_millis(250);
        loop {
            let mut request = tonic::Request::new(dec::ReleaseRequest {
                session_ids: session_ids.clone(),
            });
            request.set_timeout(Duration::from_secs(5));
            let status = match decoder.release(request).await {
                Ok(_) => return,
                Err(status) => status,
            };
            if !is_replica_failure(&status) || tokio::time::Instant::now() + backoff > give_up {
                tracing::warn!(%status, "could not release decoder sessions; their TTL will");
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RELEASE_BACKOFF_MAX);
        }
    });
}

/// A step's new inputs: embeddings for the transformer, token ids for an n-gram model (which
/// the decoder reads by id, so the embedder is not asked).
pub enum Inputs {
    Embedded(Tensor),
    Ids(Vec<u32>),
}

impl Inputs {
    /// The inputs of `ids` at `positions`.
    pub async fn of(
        down: &Downstream,
        backend: &Backend,
        ids: Vec<u32>,
        positions: Vec<u32>,
        deadline: &Deadline,
    ) -> Result<Self, Error> {
        Ok(if backend.takes_ids() {
            Inputs::Ids(ids)
        } else {
            Inputs::Embedded(down.embed(ids, positions, deadline).await?)
        })
    }

    /// Rows `start..start + len`, as SessionStep's `input`.
    pub fn rows(&self, start: usize, len: usize) -> Option<dec::session_step::Input> {
        Some(match self {
            Inputs::Embedded(t) => dec::session_step::Input::Embeddings(slice_rows(t, start, len)),
            Inputs::Ids(ids) => dec::session_step::Input::TokenIds(dec::TokenIds {
                ids: ids[start..start + len].to_vec(),
            }),
        })
    }
}
