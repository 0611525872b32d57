//! The `oneword.decoder.v1.Decoder` gRPC service: translation between proto and the engine.

use candle_core::Device;
use oneword_proto::common::v1 as common;
use oneword_proto::decoder::v1 as pb;
use tonic::{Request, Response, Status};

use crate::convert::{self, Limits};
use crate::engine::Engine;
use crate::probe;

/// The service state shared by all calls.
pub struct DecoderService {
    pub engine: Engine,
    pub device: Device,
    pub model: common::ModelInfo,
    pub max_top_n: usize,
    pub max_sessions: usize,
    pub session_ttl_secs: u64,
    pub kv_budget_tokens: usize,
    pub kv_bytes_per_token: usize,
    /// Most bytes one instrument's answer may carry.
    pub max_inspect_bytes: usize,
}

impl DecoderService {
    fn limits(&self) -> Limits<'_> {
        Limits {
            device: &self.device,
            hidden_size: self.model.hidden_size as usize,
            vocab_size: self.model.vocab_size as usize,
            max_top_n: self.max_top_n,
            context: self.model.context_length as usize,
            layers: self.model.num_layers as usize,
        }
    }

    /// Refuses an answer of `bytes` past the cap, naming the field that makes it big.
    fn within_cap(&self, field: &str, bytes: usize, what: &str) -> Result<(), Status> {
        if bytes <= self.max_inspect_bytes {
            return Ok(());
        }
        Err(oneword_runtime::status::invalid_argument(
            field,
            format!(
                "{what} would be {} MiB, over the {} MiB an answer may carry (the decoder's \
                 --max-inspect-bytes); ask for less through `{field}` or a shorter input",
                bytes.div_ceil(1 << 20),
                self.max_inspect_bytes >> 20
            ),
        ))
    }
}

#[tonic::async_trait]
impl pb::decoder_server::Decoder for DecoderService {
    #[tracing::instrument(
        name = "step",
        skip_all,
        fields(sessions, session_ids, rows, forward_ms)
    )]
    async fn step(
        &self,
        request: Request<pb::StepRequest>,
    ) -> Result<Response<pb::StepResponse>, Status> {
        let steps = request.into_inner().steps;
        let span = tracing::Span::current();
        span.record("sessions", steps.len());
        let ids: Vec<&str> = steps
            .iter()
            .take(16)
            .map(|s| s.session_id.as_str())
            .collect();
        span.record("session_ids", ids.join(","));
        if steps.is_empty() {
            return Err(oneword_runtime::status::invalid_argument(
                "steps",
                "`steps` must not be empty",
            ));
        }
        let limits = self.limits();
        let inputs = steps
            .into_iter()
            .enumerate()
            .map(|(i, step)| convert::step_input(i, step, &limits))
            .collect::<Result<Vec<_>, _>>()?;
        let rows: usize = inputs
            .iter()
            .map(|i| i.embeddings.dims().first().copied().unwrap_or(0))
            .sum();
        span.record("rows", rows);
        let done = self.engine.step(inputs).await?;
        span.record("forward_ms", done.forward.as_secs_f64() * 1e3);
        Ok(Response::new(pb::StepResponse {
            results: done.outputs.into_iter().map(convert::step_result).collect(),
            forward_ns: done.forward.as_nanos() as u64,
            queue_ns: done.queued.as_nanos() as u64,
        }))
    }

    async fn fork(
        &self,
        request: Request<pb::ForkRequest>,
    ) -> Result<Response<pb::ForkResponse>, Status> {
        let request = request.into_inner();
        if request.new_session_ids.is_empty()
            || request.new_session_ids.iter().any(String::is_empty)
        {
            return Err(oneword_runtime::status::invalid_argument(
                "new_session_ids",
                "`new_session_ids` must name at least one session, none empty",
            ));
        }
        self.engine
            .fork(
                request.source_session_id,
                request.new_session_ids,
                request.seen_as_prompt,
            )
            .await?;
        Ok(Response::new(pb::ForkResponse {}))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let ids = request.into_inner().session_ids;
        let released = self.engine.release(ids).await?;
        Ok(Response::new(pb::ReleaseResponse {
            released: released as u32,
        }))
    }

    async fn score(
        &self,
        request: Request<pb::ScoreRequest>,
    ) -> Result<Response<pb::ScoreResponse>, Status> {
        let input = convert::score_input(request.into_inner(), &self.limits())?;
        let (picks, forward) = self
            .engine
            .probe(move |model| probe::score(model, &input))
            .await?;
        Ok(Response::new(convert::score_response(picks, forward)))
    }

    async fn inspect(
        &self,
        request: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::InspectResponse>, Status> {
        let input = convert::inspect_input(request.into_inner(), &self.limits())?;
        let c = &self.model;
        let n = input.embeddings.dims()[0];
        let attention = input.attention_layers.len() * (c.num_heads as usize) * n * n * 4;
        let hidden = if input.hidden_states {
            (c.num_layers as usize + 1) * n * c.hidden_size as usize * 4
        } else {
            0
        };
        self.within_cap("attention_layers", attention + hidden, "the answer")?;
        let out = self
            .engine
            .probe(move |model| probe::inspect(model, &input))
            .await?;
        Ok(Response::new(convert::inspect_response(out)?))
    }

    async fn pool(
        &self,
        request: Request<pb::PoolRequest>,
    ) -> Result<Response<pb::PoolResponse>, Status> {
        let input = convert::pool_input(request.into_inner(), &self.limits())?;
        let out = self
            .engine
            .probe(move |model| probe::pool(model, &input))
            .await?;
        Ok(Response::new(convert::pool_response(out)))
    }

    async fn weights(
        &self,
        request: Request<pb::WeightsRequest>,
    ) -> Result<Response<pb::WeightsResponse>, Status> {
        let input = convert::weights_input(request.into_inner(), &self.limits())?;
        let out = self
            .engine
            .probe(move |model| probe::weights(model, &input))
            .await?;
        if let Some(matrix) = &out.matrix {
            self.within_cap("matrix", matrix.elem_count() * 4, "the matrix")?;
        }
        Ok(Response::new(convert::weights_response(out)?))
    }

    async fn corpus(
        &self,
        _: Request<pb::CorpusRequest>,
    ) -> Result<Response<pb::CorpusResponse>, Status> {
        Err(Status::unimplemented(
            "Corpus is the n-gram baseline's (oneword-baseline); the decoder serves the transformer",
        ))
    }

    async fn info(
        &self,
        _: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        let usage = self.engine.usage().await?;
        Ok(Response::new(pb::InfoResponse {
            model: Some(self.model.clone()),
            sessions: usage.sessions as u32,
            cached_tokens: usage.cached_tokens as u64,
            cached_bytes: usage.cached_bytes as u64,
            max_sessions: self.max_sessions as u32,
            session_ttl_seconds: self.session_ttl_secs as u32,
            max_top_n: self.max_top_n as u32,
            kv_budget_tokens: self.kv_budget_tokens as u64,
            kv_budget_bytes: (self.kv_budget_tokens * self.kv_bytes_per_token) as u64,
            requests_running: usage.running as u32,
            requests_waiting: usage.waiting as u32,
            forward_passes: usage.passes,
            forward_rows: usage.rows,
            ..Default::default()
        }))
    }
}
