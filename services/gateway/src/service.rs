//! The `oneword.gateway.v1.Gateway` gRPC service: the public API.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use oneword_proto::gateway::v1 as pb;
use oneword_runtime::deadline::Deadline;
use oneword_runtime::drain::Drain;
use oneword_runtime::status::RETRY_AFTER;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::client_sessions::{self, ClientSessions, Kept};
use crate::convert::{
    self, CompareParams, GenerateParams, InspectParams, NextTokensParams, Prompt, ScoreParams,
    PROMPT_FIELDS,
};
use crate::downstream::{Downstream, BASELINE, DECODER};
use crate::error::{public_fields, GENERATION_FIELDS};
use crate::generate::generate;
use crate::metrics::GatewayMetrics;
use crate::requests::{Registration, Running};
use crate::turnover::{Admitted, Turnover};
use crate::{Config, Error};

/// Chunks buffered per stream before generation waits for the client to read: enough to absorb
/// jitter, small enough that a slow reader slows its own generation instead of growing memory.
const STREAM_BUFFER: usize = 16;

/// The gateway's state, shared by the gRPC and the HTTP API.
pub struct GatewayService {
    pub config: Config,
    pub downstream: Downstream,
    pub metrics: GatewayMetrics,
    /// Streams still running when the drain's time is up end with UNAVAILABLE.
    pub drain: Drain,
    /// One permit per request in flight (generations and next-token tables).
    pub in_flight: Arc<Semaphore>,
    /// The running generations by request id, for Cancel.
    pub running: Arc<Running>,
    /// How fast permits free, for the delay an overload refusal asks for.
    pub turnover: Arc<Turnover>,
    /// The client sessions, by handle.
    pub sessions: Arc<ClientSessions>,
}

impl GatewayService {
    pub fn new(
        config: Config,
        downstream: Downstream,
        metrics: GatewayMetrics,
        drain: Drain,
    ) -> Self {
        let in_flight = Arc::new(Semaphore::new(config.max_concurrent_requests));
        let sessions = Arc::new(ClientSessions::new(client_sessions::Limits {
            max: config.max_sessions,
            per_client: config.max_sessions_per_client,
            ttl: Duration::from_secs(config.session_ttl_secs.max(1)),
        }));
        GatewayService {
            sessions,
            config,
            downstream,
            metrics,
            drain,
            in_flight,
            running: Arc::default(),
            turnover: Arc::default(),
        }
    }

    /// The client session a request continues, when it names one (NOT_FOUND when none has
    /// the handle).
    pub fn base_of(&self, session_id: &str) -> Result<Option<Arc<Kept>>, Error> {
        (!session_id.is_empty())
            .then(|| self.sessions.get("session_id", session_id))
            .transpose()
    }

    /// Enters a generation under its request id (minted when `None`) so that Cancel can find it.
    pub fn register(&self, id: Option<String>) -> Result<Registration, Error> {
        self.running.register(id)
    }

    /// A permit to run one more request, or an error at once when the gateway is full:
    /// overload is an answer, not a growing queue.
    /// The refusal asks the client to wait about as long as a permit takes to free.
    pub fn admit(&self) -> Result<Admitted, Error> {
        let limit = self.config.max_concurrent_requests;
        match self.in_flight.clone().try_acquire_owned() {
            Ok(permit) => Ok(self.turnover.admitted(permit)),
            Err(_) => Err(Error::Overloaded(
                format!("the gateway is running {limit} requests (its limit); retry with backoff"),
                self.turnover.refused(limit).unwrap_or(RETRY_AFTER),
            )),
        }
    }
}

/// How long a stream cut at the end of the drain waits to queue its last message.
const CUT_SEND: Duration = Duration::from_millis(100);

/// The last message of a stream the shutdown cuts: retryable, and saying why.
pub fn cut_off() -> Status {
    Status::unavailable("the server is shutting down and its drain time is up; the stream was cut, retry on another replica")
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::GenerateStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::gateway_server::Gateway for GatewayService {
    async fn generate(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<Response<pb::GenerateResponse>, Status> {
        let deadline = Deadline::of(&request);
        let mut params = GenerateParams::new(request.into_inner(), &self.config)?;
        let base = self.base_of(&params.session_id)?;
        let _permit = self.admit().map_err(Status::from)?;
        let registration = self.register(params.request_id.take())?;
        let response = self
            .collected(params, deadline, &registration, base.as_deref())
            .await
            .map_err(|s| public_fields(s, GENERATION_FIELDS))?;
        Ok(with_request_id(response, &registration.id))
    }

    type GenerateStreamStream = ChunkStream;

    async fn generate_stream(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let deadline = Deadline::of(&request);
        // Bad requests fail the call itself rather than the first message of a stream.
        let mut params = GenerateParams::new(request.into_inner(), &self.config)?;
        let base = self.base_of(&params.session_id)?;
        let permit = self.admit().map_err(Status::from)?;
        let registration = self.register(params.request_id.take())?;
        let request_id = registration.id.clone();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let (downstream, metrics) = (self.downstream.clone(), self.metrics.clone());
        let drain = self.drain.clone();
        let generation = async move {
            let _permit = permit;
            let registration = registration;
            // A client that cancels or disconnects closes the stream: stop at once, even in the
            // middle of a decoder call. Dropping the generation drops its decoder call (the
            // decoder undoes that step) and its session guard (which releases the sessions).
            tokio::select! {
                result = generate(&downstream, &metrics, params, deadline, &tx, &registration, base.as_deref()) => {
                    if let Err(error) = result {
                        let status = public_fields(error.into(), GENERATION_FIELDS);
                        let _ = tx.send(Err(status)).await;
                    }
                }
                () = tx.closed() => {
                    tracing::debug!("client went away mid-stream; its sessions are released");
                }
                () = drain.cut_off() => {
                    let _ = tokio::time::timeout(CUT_SEND, tx.send(Err(cut_off()))).await;
                }
            }
        };
        // In the call's span, so that the generation's downstream calls are part of its trace.
        tokio::spawn(generation.in_current_span());
        let chunks: ChunkStream = Box::pin(ReceiverStream::new(rx));
        Ok(with_request_id(chunks, &request_id))
    }

    async fn cancel(
        &self,
        request: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::CancelResponse>, Status> {
        let id = crate::requests::valid_id("request_id", request.into_inner().request_id)?
            .ok_or_else(|| Error::invalid("request_id", "`request_id` must not be empty"))?;
        self.running.cancel(&id)?;
        Ok(Response::new(pb::CancelResponse {}))
    }

    async fn next_tokens(
        &self,
        request: Request<pb::NextTokensRequest>,
    ) -> Result<Response<pb::NextTokensResponse>, Status> {
        let deadline = Deadline::of(&request);
        let params = NextTokensParams::new(request.into_inner(), &self.config)?;
        let _permit = self.admit().map_err(Status::from)?;
        let table = deadline
            .within(self.next_token_table(params, deadline))
            .await?;
        Ok(Response::new(table))
    }

    async fn tokenize(
        &self,
        request: Request<pb::TokenizeRequest>,
    ) -> Result<Response<pb::TokenizeResponse>, Status> {
        let deadline = Deadline::of(&request);
        let request = request.into_inner();
        if request.text.len() > self.config.max_prompt_bytes {
            return Err(Error::invalid(
                "text",
                format!(
                    "`text` is {} bytes, over the limit of {} bytes",
                    request.text.len(),
                    self.config.max_prompt_bytes
                ),
            )
            .into());
        }
        let encoding = deadline
            .within(async {
                Ok(self
                    .downstream
                    .encode(&request.text, request.allow_special, &deadline)
                    .await?)
            })
            .await?;
        Ok(Response::new(pb::TokenizeResponse {
            encoding: Some(convert::encoding(encoding)),
        }))
    }

    async fn compare(
        &self,
        request: Request<pb::CompareRequest>,
    ) -> Result<Response<pb::CompareResponse>, Status> {
        let deadline = Deadline::of(&request);
        let mut params = CompareParams::new(request.into_inner(), &self.config)?;
        let _permit = self.admit()?;
        let registration = self.register(params.generation.request_id.take())?;
        let response = self
            .collected(params.generation, deadline, &registration, None)
            .await
            .map_err(|s| public_fields(s, GENERATION_FIELDS))?;
        let mut completions = response.completions.into_iter();
        let groups = params
            .groups
            .iter()
            .map(|&(temperature, count)| pb::TemperatureGroup {
                temperature,
                completions: completions.by_ref().take(count).collect(),
            })
            .collect();
        let compared = pb::CompareResponse {
            groups,
            seed: response.seed,
            usage: response.usage,
            timings: response.timings,
            request_id: response.request_id,
        };
        Ok(with_request_id(compared, &registration.id))
    }

    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let deadline = Deadline::of(&request);
        let owner = client_of(&request);
        let r = request.into_inner();
        let prompt = Prompt::new(r.prompt, r.prompt_token_ids, PROMPT_FIELDS, &self.config)?;
        let _permit = self.admit()?;
        let create = async {
            let down = &self.downstream;
            let model = down.model(&deadline).await?;
            let tokens = self.prompt_ids(&prompt, &model, &deadline).await?;
            if tokens.len() >= model.context {
                // Room for at least the next token.
                return Err(Error::ContextLength {
                    field: prompt.field,
                    prompt_tokens: tokens.len(),
                    max_new_tokens: 1,
                    context: model.context,
                }
                .into());
            }
            let backend = down.backend(&r.model, &model, &deadline).await?;
            let kept = self
                .sessions
                .create(owner, backend, tokens, down, &deadline)
                .await?;
            Ok(self.sessions.describe(&kept).await)
        };
        let session = deadline.within(create).await?;
        Ok(Response::new(pb::CreateSessionResponse {
            session: Some(session),
        }))
    }

    async fn fork_session(
        &self,
        request: Request<pb::ForkSessionRequest>,
    ) -> Result<Response<pb::ForkSessionResponse>, Status> {
        let deadline = Deadline::of(&request);
        let owner = client_of(&request);
        let source = self
            .sessions
            .get("session_id", &request.into_inner().session_id)?;
        let fork = async {
            let copy = self
                .sessions
                .fork(&source, owner, &self.downstream, &deadline)
                .await?;
            Ok(self.sessions.describe(&copy).await)
        };
        let session = deadline.within(fork).await?;
        Ok(Response::new(pb::ForkSessionResponse {
            session: Some(session),
        }))
    }

    async fn release_session(
        &self,
        request: Request<pb::ReleaseSessionRequest>,
    ) -> Result<Response<pb::ReleaseSessionResponse>, Status> {
        self.sessions.release(&request.into_inner().session_id)?;
        Ok(Response::new(pb::ReleaseSessionResponse {}))
    }

    async fn score(
        &self,
        request: Request<pb::ScoreRequest>,
    ) -> Result<Response<pb::ScoreResponse>, Status> {
        let deadline = Deadline::of(&request);
        let params = ScoreParams::new(request.into_inner(), &self.config)?;
        let _permit = self.admit()?;
        let scored = deadline.within(self.score_text(params, &deadline)).await?;
        Ok(Response::new(scored))
    }

    async fn inspect(
        &self,
        request: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::InspectResponse>, Status> {
        let deadline = Deadline::of(&request);
        let params = InspectParams::new(request.into_inner(), &self.config)?;
        let _permit = self.admit()?;
        let seen = deadline
            .within(self.inspect_prompt(params, &deadline))
            .await?;
        Ok(Response::new(seen))
    }

    async fn weights(
        &self,
        request: Request<pb::WeightsRequest>,
    ) -> Result<Response<pb::WeightsResponse>, Status> {
        let deadline = Deadline::of(&request);
        let _permit = self.admit()?;
        let read = deadline
            .within(async {
                let request = convert::weights_request(request.into_inner());
                Ok(self
                    .downstream
                    .one_shot(DECODER, &deadline, |mut d| {
                        let request = deadline.request(request.clone());
                        async move { d.weights(request).await }
                    })
                    .await?)
            })
            .await?;
        Ok(Response::new(convert::weights_response(read)))
    }

    async fn words(
        &self,
        request: Request<pb::WordsRequest>,
    ) -> Result<Response<pb::WordsResponse>, Status> {
        let deadline = Deadline::of(&request);
        let _permit = self.admit()?;
        let seen = deadline
            .within(self.words_of(request.into_inner(), &deadline))
            .await?;
        Ok(Response::new(seen))
    }

    async fn nearest(
        &self,
        request: Request<pb::NearestRequest>,
    ) -> Result<Response<pb::NearestResponse>, Status> {
        let deadline = Deadline::of(&request);
        let _permit = self.admit()?;
        let found = deadline
            .within(self.nearest_to(request.into_inner(), &deadline))
            .await?;
        Ok(Response::new(found))
    }

    async fn corpus(
        &self,
        request: Request<pb::CorpusRequest>,
    ) -> Result<Response<pb::CorpusResponse>, Status> {
        let deadline = Deadline::of(&request);
        let _permit = self.admit()?;
        let counted = deadline
            .within(async {
                let request = convert::corpus_request(request.into_inner());
                Ok(self
                    .downstream
                    .one_shot(BASELINE, &deadline, |mut d| {
                        let request = deadline.request(request.clone());
                        async move { d.corpus(request).await }
                    })
                    .await?)
            })
            .await?;
        Ok(Response::new(convert::corpus_response(counted)))
    }

    async fn embed(
        &self,
        request: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        let deadline = Deadline::of(&request);
        let _permit = self.admit()?;
        let request = request.into_inner();
        let answer = deadline
            .within(async { Ok(self.embed_texts(request, &deadline).await?) })
            .await?;
        Ok(Response::new(answer))
    }

    async fn info(
        &self,
        request: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        let deadline = Deadline::of(&request);
        let model = deadline
            .within(async { Ok(self.downstream.model(&deadline).await?) })
            .await?;
        // The text model is an extra: while the embedder is down, Info still answers.
        let text_model = self.downstream.text_model(&deadline).await.ok().flatten();
        let c = &self.config;
        Ok(Response::new(pb::InfoResponse {
            model: Some(model.info.clone()),
            max_new_tokens: c.max_new_tokens,
            max_n: c.max_n,
            max_stop_sequences: c.max_stop_sequences,
            max_stop_sequence_bytes: c.max_stop_sequence_bytes,
            max_top_n: c.max_top_n,
            embedding_models: text_model
                .map(convert::embedding_model)
                .into_iter()
                .collect(),
        }))
    }
}

impl GatewayService {
    /// Runs a generation to the end, gathering its chunks into whole completions.
    async fn collected(
        &self,
        params: GenerateParams,
        deadline: Deadline,
        request: &Registration,
        base: Option<&Kept>,
    ) -> Result<pb::GenerateResponse, Status> {
        let (seed, n) = (params.seed, params.n);
        let (tx, mut rx) = mpsc::channel(STREAM_BUFFER);
        let run = async move {
            let (down, metrics) = (&self.downstream, &self.metrics);
            let result = generate(down, metrics, params, deadline, &tx, request, base).await;
            drop(tx);
            result
        };
        let collect = async move {
            let mut response = pb::GenerateResponse {
                seed,
                request_id: request.id.clone(),
                ..Default::default()
            };
            response.completions = (0..n as u32)
                .map(|index| pb::Completion {
                    index,
                    ..Default::default()
                })
                .collect();
            let mut usage = pb::Usage::default();
            while let Some(Ok(chunk)) = rx.recv().await {
                let c = &mut response.completions[chunk.index as usize];
                c.text.push_str(&chunk.text);
                c.token_ids.extend(&chunk.token_ids);
                if let Some(more) = chunk.details {
                    c.details.get_or_insert_with(Default::default).append(more);
                }
                if chunk.finish_reason != pb::FinishReason::Unspecified as i32 {
                    c.finish_reason = chunk.finish_reason;
                    c.stop_sequence = chunk.stop_sequence;
                    c.stop_token_id = chunk.stop_token_id;
                    if let Some(u) = chunk.usage {
                        usage.prompt_tokens = u.prompt_tokens;
                        usage.completion_tokens += u.completion_tokens;
                    }
                    response.timings = chunk.timings;
                }
            }
            response.usage = Some(usage);
            response
        };
        let (result, response) = deadline
            .within(async { Ok(tokio::join!(run, collect)) })
            .await?;
        result?;
        Ok(response)
    }
}

/// An answer with its request id in the `x-request-id` metadata, where proxies and tracing
/// tools look for it.
fn with_request_id<T>(message: T, id: &str) -> Response<T> {
    let mut response = Response::new(message);
    if let Ok(value) = id.parse() {
        response.metadata_mut().insert("x-request-id", value);
    }
    response
}

/// Who a client session belongs to, for the per-client cap: the peer's address.
fn client_of<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}
