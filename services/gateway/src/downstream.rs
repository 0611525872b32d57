//! The services the gateway drives, with what it learns from them once and keeps: the model's
//! facts (from the decoder), the vocabulary (from the tokenizer), so that streams are detokenized
//! here without a call per token, and the n-gram models the baseline serves. Two backends speak
//! the decoder's session contract, the transformer decoder and the n-gram baseline; a request's
//! `model` picks one ([`Downstream::backend`]).

use std::sync::Arc;
use std::time::Duration;

use oneword_proto::common::v1::Tensor;
use oneword_proto::decoder::v1 as dec;
use oneword_proto::embedder::v1 as emb;
use oneword_proto::tokenizer::v1 as tok;
use oneword_runtime::deadline::Deadline;
use oneword_runtime::telemetry::TracedChannel;
use tokio::sync::OnceCell;

use crate::convert::{Given, Prompt};
use crate::replicas::{Dial, Replicas};
use crate::Error;

mod coalesce;
mod decoder;
use coalesce::Coalescer;
use decoder::slice_rows;
pub use decoder::{Decoder, Inputs, Sessions};

pub const TOKENIZER: &str = "tokenizer";
pub const EMBEDDER: &str = "embedder";
pub const DECODER: &str = "decoder";
pub const BASELINE: &str = "baseline";
pub const INDEX: &str = "index";

/// Embedding asks of at most this many ids (the next tokens of a stream's `n` samples) are
/// merged with other streams'.
const MERGED_MAX_IDS: usize = 16;

/// Facts about the served model and its vocabulary.
pub struct Model {
    pub info: oneword_proto::common::v1::ModelInfo,
    /// pieces[id] = the token's exact bytes.
    pub pieces: Vec<Vec<u8>>,
    pub context: usize,
    pub eos: u32,
}

/// Clients of the tokenizer, embedder and decoder replicas. Channels connect lazily, so the
/// services may start in any order; a call to one that is down answers UNAVAILABLE naming it.
#[derive(Clone)]
pub struct Downstream {
    tokenizers: Replicas,
    embedders: Replicas,
    decoders: Replicas,
    /// The n-gram baseline, when one is configured.
    baselines: Option<Replicas>,
    /// The index, when one is configured.
    indexes: Option<Replicas>,
    model: Arc<OnceCell<Arc<Model>>>,
    /// The n-gram models the baseline serves, asked once it answers.
    ngram_models: Arc<OnceCell<Arc<Vec<String>>>>,
    /// How long a session backend's step may take before its replica is probed for a hang.
    pub stall: Duration,
    /// Merges the streams' per-token embedding calls; set once the clients exist.
    coalescer: Arc<std::sync::OnceLock<Coalescer>>,
}

/// The backend a request's `model` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The transformer, on the decoder (`model` empty or the served model's id).
    Transformer,
    /// One of the baseline's n-gram models, by name.
    Ngram(String),
}

impl Backend {
    /// `SessionStep.model` of a session this backend creates.
    pub fn model_field(&self) -> String {
        match self {
            Backend::Transformer => String::new(),
            Backend::Ngram(name) => name.clone(),
        }
    }

    /// Whether its inputs are token ids (n-gram) rather than embeddings.
    pub fn takes_ids(&self) -> bool {
        matches!(self, Backend::Ngram(_))
    }

    /// The service that serves it.
    pub fn service(&self) -> &'static str {
        match self {
            Backend::Transformer => DECODER,
            Backend::Ngram(_) => BASELINE,
        }
    }
}

/// Messages up to this size pass between the services (a full-context prefill of GPT-2 XL's
/// embeddings is 6.5 MB).
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 << 20;

impl Downstream {
    /// Clients of the services at `urls` (each a comma-separated list of `http://host:port`,
    /// dialled as `dial` says, whose names are re-resolved every `refresh`): tokenizer, embedder, decoder, baseline and
    /// index (the last two may be empty: none). A step that takes `stall` gets its replica
    /// probed for a hang.
    pub fn new(
        urls: [&str; 5],
        dial: Dial,
        refresh: Duration,
        stall: Duration,
    ) -> anyhow::Result<Self> {
        let [tokenizer, embedder, decoder, baseline, index] = urls;
        let start = |service, urls: &str| Replicas::start(service, urls, dial.clone(), refresh);
        let optional = |service, urls: &str| match urls.trim() {
            "" => Ok(None),
            urls => start(service, urls).map(Some),
        };
        Ok(Downstream {
            tokenizers: start(TOKENIZER, tokenizer)?,
            embedders: start(EMBEDDER, embedder)?,
            decoders: start(DECODER, decoder)?,
            baselines: optional(BASELINE, baseline)?,
            indexes: optional(INDEX, index)?,
            model: Arc::new(OnceCell::new()),
            ngram_models: Arc::new(OnceCell::new()),
            stall,
            coalescer: Arc::default(),
        })
    }

    /// The replicas of a session backend: `service` is [`DECODER`] or [`BASELINE`]; the
    /// baseline's are FAILED_PRECONDITION when this gateway has none (a request naming an n-gram
    /// model is refused before, by name).
    fn session_backends(&self, service: &'static str) -> Result<&Replicas, Error> {
        if service != BASELINE {
            return Ok(&self.decoders);
        }
        self.baselines.as_ref().ok_or_else(|| {
            Error::Downstream(
                BASELINE,
                tonic::Status::failed_precondition(
                    "this gateway has no n-gram baseline (its --baseline is empty)",
                ),
            )
        })
    }

    /// A replica of `backend` for one generation (its sessions live there), other than those at
    /// `excluded` (the ones it failed on).
    pub async fn decoder_excluding(
        &self,
        backend: &Backend,
        excluded: &[std::net::SocketAddr],
    ) -> Result<Decoder, Error> {
        let service = backend.service();
        Decoder::pick(self.session_backends(service)?, service, excluded).await
    }

    /// One call to a session backend (`service` is [`DECODER`] or [`BASELINE`]) that leaves no
    /// session behind (Info, Score, Inspect, Pool, Corpus, Weights, a step that creates and
    /// releases its session): tried again on another replica when one fails it, as stateless
    /// calls are, so that a rollout costs it nothing.
    pub async fn one_shot<T, F, Fut>(
        &self,
        service: &'static str,
        deadline: &Deadline,
        call: F,
    ) -> Result<T, Error>
    where
        F: Fn(dec::decoder_client::DecoderClient<TracedChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.session_backends(service)?
            .call(deadline, |channel| call(decoder_client(channel)))
            .await
    }

    /// The n-gram models the baseline serves (none without a baseline), asked from its `Info`
    /// on first need and kept; while it is down, UNAVAILABLE naming it.
    pub async fn ngram_models(&self, deadline: &Deadline) -> Result<Arc<Vec<String>>, Error> {
        if self.baselines.is_none() {
            return Ok(Arc::default());
        }
        self.ngram_models
            .get_or_try_init(|| async {
                let info = self
                    .one_shot(BASELINE, deadline, |mut d| async move {
                        d.info(deadline.request(dec::InfoRequest {})).await
                    })
                    .await?;
                Ok(Arc::new(info.ngram_models))
            })
            .await
            .cloned()
    }

    /// The backend that serves `requested` (a request's `model`): the transformer for no name or
    /// its own, else one of the baseline's n-gram models. Names are checked here, so the error
    /// names the request's field and lists what is served.
    pub async fn backend(
        &self,
        requested: &str,
        model: &Model,
        deadline: &Deadline,
    ) -> Result<Backend, Error> {
        if requested.is_empty() || requested == model.info.model_id {
            return Ok(Backend::Transformer);
        }
        let ngrams = self.ngram_models(deadline).await?;
        if ngrams.iter().any(|n| n == requested) {
            return Ok(Backend::Ngram(requested.to_string()));
        }
        let also = match ngrams.as_slice() {
            [] => String::new(),
            names => format!(" and the n-gram models {}", names.join(", ")),
        };
        Err(Error::invalid(
            "model",
            format!(
                "`model` is {requested:?}; this gateway serves {:?}{also}",
                model.info.model_id
            ),
        ))
    }
}

fn tokenizer(channel: TracedChannel) -> tok::tokenizer_client::TokenizerClient<TracedChannel> {
    tok::tokenizer_client::TokenizerClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
}

/// A client of a session backend (the decoder or the baseline) on `channel`.
pub(crate) fn decoder_client(
    channel: TracedChannel,
) -> dec::decoder_client::DecoderClient<TracedChannel> {
    dec::decoder_client::DecoderClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn embedder(channel: TracedChannel) -> emb::embedder_client::EmbedderClient<TracedChannel> {
    emb::embedder_client::EmbedderClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A client of the index on `channel`.
pub fn index(
    channel: TracedChannel,
) -> oneword_proto::index::v1::collections_client::CollectionsClient<TracedChannel> {
    oneword_proto::index::v1::collections_client::CollectionsClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

impl Downstream {
    /// The model's facts, asked for once on first use (so a gateway started before the other
    /// services still comes up) and kept.
    pub async fn model(&self, deadline: &Deadline) -> Result<Arc<Model>, Error> {
        self.model
            .get_or_try_init(|| async {
                let info = self
                    .one_shot(DECODER, deadline, |mut d| async move {
                        d.info(deadline.request(dec::InfoRequest {})).await
                    })
                    .await?
                    .model
                    .ok_or_else(|| Error::Internal("the decoder's Info has no model".into()))?;
                let vocab = self
                    .tokenizers
                    .call(deadline, |c| async move {
                        tokenizer(c).vocabulary(deadline.request(tok::VocabularyRequest {})).await
                    })
                    .await?;
                if vocab.pieces.len() != info.vocab_size as usize {
                    return Err(Error::Internal(format!(
                        "the tokenizer has {} tokens but the decoder's model has {}: they serve different models",
                        vocab.pieces.len(),
                        info.vocab_size
                    )));
                }
                Ok(Arc::new(Model {
                    context: info.context_length as usize,
                    eos: info.eos_token_id,
                    pieces: vocab.pieces,
                    info,
                }))
            })
            .await
            .cloned()
    }

    /// Tokenizes one text.
    pub async fn encode(
        &self,
        text: &str,
        allow_special: bool,
        deadline: &Deadline,
    ) -> Result<tok::Encoding, Error> {
        let request = tok::EncodeRequest {
            texts: vec![text.as_bytes().to_vec()],
            allow_special,
        };
        self.tokenizers
            .call(deadline, |c| {
                let request = deadline.request(request.clone());
                async move { tokenizer(c).encode(request).await }
            })
            .await?
            .encodings
            .pop()
            .ok_or_else(|| Error::Internal("the tokenizer returned no encoding".into()))
    }

    /// A prompt's token ids: its text tokenized, or its ids checked against the vocabulary of
    /// `vocab_size`; at least one.
    pub async fn prompt_ids(
        &self,
        prompt: &Prompt,
        vocab_size: usize,
        deadline: &Deadline,
    ) -> Result<Vec<u32>, Error> {
        let field = prompt.field;
        let ids = match &prompt.given {
            Given::Text(text) => self.encode(text, false, deadline).await?.ids,
            Given::Ids(ids) => {
                let outside = ids
                    .iter()
                    .enumerate()
                    .find(|(_, &id)| id as usize >= vocab_size);
                if let Some((i, id)) = outside {
                    return Err(Error::invalid(
                        field,
                        format!(
                            "`{field}[{i}]` is {id}, outside the vocabulary of {vocab_size} tokens"
                        ),
                    ));
                }
                ids.clone()
            }
        };
        if ids.is_empty() {
            return Err(Error::invalid(
                field,
                format!("`{field}` must contain at least one token"),
            ));
        }
        Ok(ids)
    }

    /// Tokenizes several texts in one call.
    pub async fn encode_many(
        &self,
        texts: Vec<Vec<u8>>,
        deadline: &Deadline,
    ) -> Result<Vec<tok::Encoding>, Error> {
        let request = tok::EncodeRequest {
            texts,
            allow_special: false,
        };
        Ok(self
            .tokenizers
            .call(deadline, |c| {
                let request = deadline.request(request.clone());
                async move { tokenizer(c).encode(request).await }
            })
            .await?
            .encodings)
    }

    /// Word vectors, their distances and map.
    pub async fn words(
        &self,
        request: emb::WordsRequest,
        deadline: &Deadline,
    ) -> Result<emb::WordsResponse, Error> {
        self.embedders
            .call(deadline, |c| {
                let request = deadline.request(request.clone());
                async move { embedder(c).words(request).await }
            })
            .await
    }

    /// The tokens nearest a word's vector.
    pub async fn nearest(
        &self,
        request: emb::NearestRequest,
        deadline: &Deadline,
    ) -> Result<emb::NearestResponse, Error> {
        self.embedders
            .call(deadline, |c| {
                let request = deadline.request(request.clone());
                async move { embedder(c).nearest(request).await }
            })
            .await
    }

    /// The index's replicas, or FAILED_PRECONDITION when this gateway has none.
    pub fn indexes(&self) -> Result<&Replicas, Error> {
        self.indexes.as_ref().ok_or_else(|| {
            Error::Downstream(
                INDEX,
                tonic::Status::failed_precondition(
                    "this gateway serves no collections (its --index is empty)",
                ),
            )
        })
    }

    /// Text embeddings from the embedder's text model.
    pub async fn embed_text(
        &self,
        request: emb::EmbedTextRequest,
        deadline: &Deadline,
    ) -> Result<emb::EmbedTextResponse, Error> {
        self.embedders
            .call(deadline, |c| {
                let request = deadline.request(request.clone());
                async move { embedder(c).embed_text(request).await }
            })
            .await
    }

    /// The embedder's text model, asked each time (an embedder may be restarted with another
    /// model); `None` when it serves none.
    pub async fn text_model(
        &self,
        deadline: &Deadline,
    ) -> Result<Option<emb::TextModelInfo>, Error> {
        Ok(self
            .embedders
            .call(deadline, |c| {
                let request = deadline.request(emb::InfoRequest {});
                async move { embedder(c).info(request).await }
            })
            .await?
            .text_model)
    }

    /// Input embeddings of `ids` at `positions`: a stream's next tokens in a call shared with
    /// other streams', a prompt in a call of its own (so that no stream's next token waits
    /// behind a large answer).
    pub async fn embed(
        &self,
        ids: Vec<u32>,
        positions: Vec<u32>,
        deadline: &Deadline,
    ) -> Result<Tensor, Error> {
        if ids.len() > MERGED_MAX_IDS {
            return self.embed_now(ids, positions, deadline).await;
        }
        let coalescer = self.coalescer.get_or_init(|| {
            // The merger holds a handle without the merger itself, so dropping the last
            // `Downstream` ends it.
            let mut down = self.clone();
            down.coalescer = Arc::default();
            Coalescer::start(down)
        });
        coalescer.embed(ids, positions, deadline).await
    }

    /// Input embeddings of `ids` at `positions`, in a call of their own.
    async fn embed_now(
        &self,
        ids: Vec<u32>,
        positions: Vec<u32>,
        deadline: &Deadline,
    ) -> Result<Tensor, Error> {
        let request = emb::EmbedRequest { ids, positions };
        self.embedders
            .call(deadline, |c| {
                let request = deadline.request(request.clone());
                async move { embedder(c).embed(request).await }
            })
            .await?
            .embeddings
            .ok_or_else(|| Error::Internal("the embedder returned no tensor".into()))
    }

    /// The embedding module's two parts for `ids` at `positions`.
    pub async fn embed_parts(
        &self,
        ids: Vec<u32>,
        positions: Vec<u32>,
        deadline: &Deadline,
    ) -> Result<emb::EmbedPartsResponse, Error> {
        let request = emb::EmbedRequest { ids, positions };
        self.embedders
            .call(deadline, |c| {
                let request = deadline.request(request.clone());
                async move { embedder(c).embed_parts(request).await }
            })
            .await
    }
}

/// The error for a failed downstream call. Past the caller's deadline the downstream service
/// cut the call short (tonic says CANCELLED then); the caller is told its deadline passed.
pub fn failed(service: &'static str, status: tonic::Status, deadline: &Deadline) -> Error {
    if deadline.expired() {
        Error::DeadlineExceeded
    } else {
        Error::Downstream(service, status)
    }
}
