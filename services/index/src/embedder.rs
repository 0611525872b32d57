//! The embedder, for texts: a collection created with a model learns its dimension from the
//! embedder's `Info`, and text points and text queries become vectors through `EmbedText`.
//! The channel connects lazily, so the index starts whether or not the embedder is up; a call
//! while it is down answers UNAVAILABLE naming it.

use std::time::Duration;

use oneword_proto::embedder::v1 as pb;
use oneword_runtime::deadline::Deadline;
use oneword_runtime::telemetry::{traced_with, TracedChannel};
use oneword_runtime::ServiceToken;
use tonic::transport::Endpoint;

use crate::error::Error;

/// Messages up to this size come back from the embedder (1,024 texts × 4,096 dimensions of
/// f32 is 16 MiB).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

type Client = pb::embedder_client::EmbedderClient<TracedChannel>;

/// A client of the embedder, or none when the index is configured without one.
#[derive(Clone)]
pub struct Embedder {
    client: Option<Client>,
}

/// The text model the embedder serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextModel {
    pub name: String,
    pub dimensions: usize,
}

/// Texts as vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedded {
    /// One per text, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the embedder read.
    pub tokens: u64,
}

impl Embedder {
    /// A client of the embedder at `url` (`http://host:port`), whose calls carry `token`; an
    /// empty `url` means none.
    pub fn new(url: &str, connect_timeout: Duration, token: &ServiceToken) -> anyhow::Result<Self> {
        let url = url.trim();
        if url.is_empty() {
            return Ok(Embedder { client: None });
        }
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| anyhow::anyhow!("`--embedder` {url:?} is not a URL: {e}"))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let client = Client::new(traced_with(endpoint.connect_lazy(), token))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Embedder {
            client: Some(client),
        })
    }

    fn client(&self) -> Result<Client, Error> {
        self.client.clone().ok_or_else(|| {
            Error::FailedPrecondition(
                "this index has no embedder (its --embedder is empty), so it cannot embed texts; \
                 give vectors instead"
                    .into(),
            )
        })
    }

    /// The text model the embedder serves now.
    pub async fn text_model(&self, deadline: &Deadline) -> Result<TextModel, Error> {
        let info = self
            .client()?
            .info(deadline.request(pb::InfoRequest {}))
            .await
            .map_err(Error::Embedder)?
            .into_inner();
        let model = info
            .text_model
            .ok_or_else(|| Error::FailedPrecondition("the embedder serves no text model".into()))?;
        Ok(TextModel {
            name: model.name,
            dimensions: model.dimensions as usize,
        })
    }

    /// Embeds `texts` with `model`, refusing (not cutting) texts over the model's limit.
    pub async fn embed(
        &self,
        texts: Vec<String>,
        model: &str,
        deadline: &Deadline,
    ) -> Result<Embedded, Error> {
        let n = texts.len();
        let request = pb::EmbedTextRequest {
            texts,
            model: model.to_string(),
            truncate: false,
            ..Default::default()
        };
        let response = self
            .client()?
            .embed_text(deadline.request(request))
            .await
            .map_err(Error::Embedder)?
            .into_inner();
        let tensor = response
            .embeddings
            .ok_or_else(|| Error::Internal("the embedder's EmbedText returned no tensor".into()))?;
        let values = oneword_proto::tensor::wire_to_f32(&tensor)
            .map_err(|e| Error::Internal(format!("the embedder's EmbedText tensor: {e}")))?;
        let [rows, dim] = tensor.shape[..] else {
            return Err(Error::Internal(format!(
                "the embedder's EmbedText returned shape {:?}, not [texts, dimensions]",
                tensor.shape
            )));
        };
        if rows as usize != n || dim == 0 {
            return Err(Error::Internal(format!(
                "the embedder's EmbedText returned shape {:?} for {n} texts",
                tensor.shape
            )));
        }
        Ok(Embedded {
            vectors: values
                .chunks_exact(dim as usize)
                .map(<[f32]>::to_vec)
                .collect(),
            tokens: response.total_tokens,
        })
    }
}
