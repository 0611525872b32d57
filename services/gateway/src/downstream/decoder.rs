//! A replica of a session backend (the decoder or the n-gram baseline) held for a whole
//! generation, since its sessions live there; the guard that frees those sessions however the
//! request ends; and a step's inputs.

use std::time::Duration;

use oneword_proto::common::v1::Tensor;
use oneword_proto::decoder::v1 as dec;
use oneword_runtime::deadline::Deadline;
use oneword_runtime::telemetry::TracedChannel;

use super::{failed, Backend, Downstream, MAX_MESSAGE_BYTES};
use crate::replicas::{Pinned, Replicas};
use crate::Error;

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
    pub(super) async fn pick(replicas: &Replicas, service: &'static str) -> Result<Self, Error> {
        let pinned = replicas.pick().await?;
        let client = dec::decoder_client::DecoderClient::new(pinned.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Decoder {
            client,
            pinned,
            service,
        })
    }

    /// The backend's facts (model, vocabulary size, n-gram models…).
    pub async fn info(&self, deadline: &Deadline) -> Result<dec::InfoResponse, Error> {
        Ok(self
            .client
            .clone()
            .info(deadline.request(dec::InfoRequest {}))
            .await
            .map_err(|s| failed(self.service, s, deadline))?
            .into_inner())
    }

    /// The replica's address.
    pub fn address(&self) -> std::net::SocketAddr {
        self.pinned.address
    }

    /// One decoder step over several sessions.
    pub async fn step(
        &self,
        steps: Vec<dec::SessionStep>,
        deadline: &Deadline,
    ) -> Result<dec::StepResponse, Error> {
        let response = self
            .client
            .clone()
            .step(deadline.request(dec::StepRequest { steps }))
            .await
            .map_err(|s| failed(self.service, s, deadline))?;
        Ok(response.into_inner())
    }

    /// Scores targets by teacher forcing (one-shot, no session).
    pub async fn score(
        &self,
        request: dec::ScoreRequest,
        deadline: &Deadline,
    ) -> Result<dec::ScoreResponse, Error> {
        Ok(self
            .client
            .clone()
            .score(deadline.request(request))
            .await
            .map_err(|s| failed(self.service, s, deadline))?
            .into_inner())
    }

    /// What one uncached pass keeps (one-shot, no session).
    pub async fn inspect(
        &self,
        request: dec::InspectRequest,
        deadline: &Deadline,
    ) -> Result<dec::InspectResponse, Error> {
        Ok(self
            .client
            .clone()
            .inspect(deadline.request(request))
            .await
            .map_err(|s| failed(self.service, s, deadline))?
            .into_inner())
    }

    /// GPT-2's own text embeddings: hidden states pooled beside the blocks.
    pub async fn pool(
        &self,
        request: dec::PoolRequest,
        deadline: &Deadline,
    ) -> Result<dec::PoolResponse, Error> {
        Ok(self
            .client
            .clone()
            .pool(deadline.request(request))
            .await
            .map_err(|s| failed(self.service, s, deadline))?
            .into_inner())
    }

    /// Corpus statistics.
    pub async fn corpus(
        &self,
        request: dec::CorpusRequest,
        deadline: &Deadline,
    ) -> Result<dec::CorpusResponse, Error> {
        Ok(self
            .client
            .clone()
            .corpus(deadline.request(request))
            .await
            .map_err(|s| failed(self.service, s, deadline))?
            .into_inner())
    }

    /// Reads weights.
    pub async fn weights(
        &self,
        request: dec::WeightsRequest,
        deadline: &Deadline,
    ) -> Result<dec::WeightsResponse, Error> {
        Ok(self
            .client
            .clone()
            .weights(deadline.request(request))
            .await
            .map_err(|s| failed(self.service, s, deadline))?
            .into_inner())
    }

    /// Copies `source` into `targets`.
    pub async fn fork(
        &self,
        source: &str,
        targets: Vec<String>,
        deadline: &Deadline,
    ) -> Result<(), Error> {
        let request = dec::ForkRequest {
            source_session_id: source.to_string(),
            new_session_ids: targets,
        };
        self.client
            .clone()
            .fork(deadline.request(request))
            .await
            .map_err(|s| failed(self.service, s, deadline))?;
        Ok(())
    }
}

/// Rows `start..start + len` of a `[n, width]` wire tensor, without decoding it.
fn slice_rows(tensor: &Tensor, start: usize, len: usize) -> Tensor {
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

fn spawn_release(
    mut decoder: dec::decoder_client::DecoderClient<TracedChannel>,
    session_ids: Vec<String>,
) {
    if session_ids.is_empty() {
        return;
    }
    // Runs on its own, since the request that owned the sessions may be gone already.
    tokio::spawn(async move {
        let mut request = tonic::Request::new(dec::ReleaseRequest { session_ids });
        request.set_timeout(Duration::from_secs(5));
        if let Err(status) = decoder.release(request).await {
            tracing::warn!(%status, "could not release decoder sessions; their TTL will");
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

    /// Rows `start..start + len`, as SessionStep's `embeddings` and `token_ids`.
    pub fn rows(&self, start: usize, len: usize) -> (Option<Tensor>, Vec<u32>) {
        match self {
            Inputs::Embedded(t) => (Some(slice_rows(t, start, len)), Vec::new()),
            Inputs::Ids(ids) => (None, ids[start..start + len].to_vec()),
        }
    }
}
