//! The `oneword.embedder.v1.Embedder` gRPC service: translation between proto and the lookups.

use oneword_proto::common::v1 as common;
use oneword_proto::embedder::v1 as pb;
use tonic::{Request, Response, Status};

use crate::convert::{self, Limits};
use crate::lookup::Lookups;
use crate::text::TextModel;
use crate::{words, Error};

/// The service state shared by all calls.
pub struct EmbedderService {
    pub lookups: Lookups,
    pub limits: Limits,
    pub model: common::ModelInfo,
    /// The sentence-embedding model, if the embedder was started with one.
    pub text: Option<TextModel>,
}

#[tonic::async_trait]
impl pb::embedder_server::Embedder for EmbedderService {
    async fn embed(
        &self,
        request: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        let input = convert::embed_input(request.into_inner(), &self.limits)?;
        let embeddings = self
            .lookups
            .run(move |t| convert::pack(&t.embeddings.embed(&input.ids, &input.positions)?))
            .await?;
        Ok(Response::new(pb::EmbedResponse {
            embeddings: Some(embeddings),
        }))
    }

    async fn embed_parts(
        &self,
        request: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedPartsResponse>, Status> {
        let input = convert::embed_input(request.into_inner(), &self.limits.parts())?;
        let response = self
            .lookups
            .run(move |t| {
                let token = t.embeddings.token_vectors(&input.ids)?;
                let position = t.embeddings.position_vectors(&input.positions)?;
                convert::embed_parts_response(&token, &position)
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn token_vectors(
        &self,
        request: Request<pb::TokenVectorsRequest>,
    ) -> Result<Response<pb::TokenVectorsResponse>, Status> {
        let ids = convert::token_ids(request.into_inner().ids, &self.limits)?;
        // The contract promises f32: rows of a half-precision model are widened, exactly.
        let vectors = self
            .lookups
            .run(move |t| convert::pack_f32(&t.embeddings.token_vectors(&ids)?))
            .await?;
        Ok(Response::new(pb::TokenVectorsResponse {
            vectors: Some(vectors),
        }))
    }

    async fn words(
        &self,
        request: Request<pb::WordsRequest>,
    ) -> Result<Response<pb::WordsResponse>, Status> {
        let input = convert::words_input(request.into_inner(), &self.limits)?;
        let response = self
            .lookups
            .run(move |t| {
                let map = words::word_map(&t.embeddings, &input.groups, input.project)?;
                Ok(convert::words_response(map))
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn nearest(
        &self,
        request: Request<pb::NearestRequest>,
    ) -> Result<Response<pb::NearestResponse>, Status> {
        let input = convert::nearest_input(request.into_inner(), &self.limits)?;
        let response = self
            .lookups
            .run(move |t| {
                let query = words::word_vector(&t.embeddings, &input.ids)?;
                let exclude = if input.include_query {
                    &[][..]
                } else {
                    &input.ids
                };
                let hits = t.nearest.nearest(&query, input.top, exclude)?;
                Ok(convert::nearest_response(hits))
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn embed_text(
        &self,
        request: Request<pb::EmbedTextRequest>,
    ) -> Result<Response<pb::EmbedTextResponse>, Status> {
        let model = self.text.as_ref().ok_or_else(|| {
            Error::NotServed(
                "this embedder serves no text model (start it with `--text-model`)".into(),
            )
        })?;
        let input = convert::text::text_request(request.into_inner(), model)?;
        let vectors = model.embed(input).await?;
        Ok(Response::new(convert::text::text_response(vectors, model)))
    }

    async fn info(
        &self,
        _: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        Ok(Response::new(pb::InfoResponse {
            model: Some(self.model.clone()),
            max_batch_tokens: self.limits.max_batch_tokens as u32,
            max_parts_tokens: self.limits.max_parts_tokens as u32,
            max_words: self.limits.max_words as u32,
            text_model: self.text.as_ref().map(convert::text::text_model_info),
        }))
    }
}
