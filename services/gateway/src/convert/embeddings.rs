//! Embed: the public request passed on to the embedder's EmbedText, which validates it (the
//! field names are the same, so its errors name the caller's fields), and the answer back.

use oneword_proto::embedder::v1 as emb;
use oneword_proto::gateway::v1 as pb;

/// The embedder's request for a public one; `model` "default" means the embedder's own.
pub fn embed_request(request: pb::EmbedRequest) -> emb::EmbedTextRequest {
    let pb::EmbedRequest {
        texts,
        tokens,
        model,
        truncate,
        normalize,
        pooling: _,
        layer: _,
    } = request;
    emb::EmbedTextRequest {
        texts,
        tokens: tokens
            .into_iter()
            .map(|t| emb::TextTokens { ids: t.ids })
            .collect(),
        model: if model == "default" {
            String::new()
        } else {
            model
        },
        truncate,
        normalize,
    }
}

pub fn embed_response(answer: emb::EmbedTextResponse) -> pb::EmbedResponse {
    pb::EmbedResponse {
        embeddings: answer.embeddings,
        token_counts: answer.token_counts,
        truncated: answer.truncated,
        total_tokens: answer.total_tokens,
        model: answer.model,
    }
}

pub fn embedding_model(info: emb::TextModelInfo) -> pb::EmbeddingModel {
    pb::EmbeddingModel {
        name: info.name,
        dimensions: info.dimensions,
        max_tokens: info.max_tokens,
        max_texts: info.max_texts,
        pooling: info.pooling,
    }
}
