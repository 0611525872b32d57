//! The `oneword.tokenizer.v1.Tokenizer` gRPC service: translation between proto and the BPE.

use std::sync::Arc;

use oneword_proto::tokenizer::v1 as pb;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use crate::convert::{self, Limits, ValidEncode};
use crate::Error;
use oneword_bpe::BpeTokenizer;

/// Batches of at most this many bytes are encoded on the calling task: a fraction of a
/// millisecond, cheaper than a hop to another thread. Bigger ones go to a blocking thread.
const INLINE_BYTES: usize = 1024;

/// Decodes of at most this many ids run on the calling task; longer ones (up to millions of ids
/// fit in a request) go to a blocking thread.
const INLINE_IDS: usize = 16 * 1024;

/// The service state shared by all calls.
pub struct TokenizerService {
    tokenizer: Arc<BpeTokenizer>,
    limits: Limits,
    info: pb::InfoResponse,
    vocabulary: pb::VocabularyResponse,
    /// Big batches admitted (waiting or running); full means RESOURCE_EXHAUSTED.
    queue: Arc<Semaphore>,
    queue_capacity: usize,
    /// Big batches running at once, one per core.
    workers: Arc<Semaphore>,
}

impl TokenizerService {
    /// Wraps a loaded tokenizer; `model_id` is what the operator asked for.
    pub fn new(
        tokenizer: BpeTokenizer,
        model_id: &str,
        limits: Limits,
        queue_capacity: usize,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        TokenizerService {
            info: pb::InfoResponse {
                model: Some(convert::model_info(model_id, &tokenizer)),
                max_batch_texts: limits.max_batch_texts as u32,
            },
            vocabulary: convert::vocabulary(&tokenizer),
            tokenizer: Arc::new(tokenizer),
            limits,
            queue: Arc::new(Semaphore::new(queue_capacity)),
            queue_capacity,
            workers: Arc::new(Semaphore::new(cores)),
        }
    }

    async fn encode_batch(&self, request: ValidEncode) -> Result<Vec<pb::Encoding>, Error> {
        let tokenizer = Arc::clone(&self.tokenizer);
        if request.total_bytes() <= INLINE_BYTES {
            return request
                .texts
                .iter()
                .map(|text| {
                    let encoded = tokenizer.encode(text, request.allow_special)?;
                    Ok(convert::encoding(&tokenizer, encoded))
                })
                .collect();
        }
        let queued = Arc::clone(&self.queue).try_acquire_owned().map_err(|_| {
            Error::Overloaded(format!(
                "the tokenizer already holds {} large encode batches; retry later",
                self.queue_capacity
            ))
        })?;
        let running = Arc::clone(&self.workers)
            .acquire_owned()
            .await
            .expect("the worker semaphore is never closed, this is a bug");
        // The permits travel with the work, so a caller that goes away does not free a slot
        // while its batch still runs.
        tokio::task::spawn_blocking(move || {
            let _permits = (queued, running);
            let encoded = tokenizer.encode_batch(&request.texts, request.allow_special)?;
            Ok(encoded
                .into_iter()
                .map(|e| convert::encoding(&tokenizer, e))
                .collect())
        })
        .await?
    }
}

#[tonic::async_trait]
impl pb::tokenizer_server::Tokenizer for TokenizerService {
    async fn encode(
        &self,
        request: Request<pb::EncodeRequest>,
    ) -> Result<Response<pb::EncodeResponse>, Status> {
        let valid = convert::encode_request(request.into_inner(), &self.limits)?;
        let encodings = self.encode_batch(valid).await?;
        Ok(Response::new(pb::EncodeResponse { encodings }))
    }

    async fn decode(
        &self,
        request: Request<pb::DecodeRequest>,
    ) -> Result<Response<pb::DecodeResponse>, Status> {
        let request = request.into_inner();
        let raw = if request.ids.len() <= INLINE_IDS {
            self.tokenizer
                .decode(&request.ids, request.skip_special_tokens)
                .map_err(Error::from)?
        } else {
            let tokenizer = Arc::clone(&self.tokenizer);
            tokio::task::spawn_blocking(move || {
                tokenizer.decode(&request.ids, request.skip_special_tokens)
            })
            .await
            .map_err(Error::from)?
            .map_err(Error::from)?
        };
        Ok(Response::new(convert::decoded(raw)))
    }

    async fn vocabulary(
        &self,
        _: Request<pb::VocabularyRequest>,
    ) -> Result<Response<pb::VocabularyResponse>, Status> {
        Ok(Response::new(self.vocabulary.clone()))
    }

    async fn info(
        &self,
        _: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        Ok(Response::new(self.info.clone()))
    }
}
