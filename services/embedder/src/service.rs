//! The `oneword.embedder.v1.Embedder` gRPC service: translation between proto and the lookups.

use oneword_proto::common::v1 as common;
use oneword_proto::embedder::v1 as pb;
use tonic::{Request, Response, Status};

use crate::convert::{self, Limits};
use crate::lookup::Lookups;

/// The service state shared by all calls.
pub struct EmbedderService {
    pub lookups: Lookups,
    pub limits: Limits,
    pub model: common::ModelInfo,
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
            .run(move |e| convert::pack(&e.embed(&input.ids, &input.positions)?))
            .await?;
        Ok(Response::new(pb::EmbedResponse {
            embeddings: Some(embeddings),
        }))
    }

    async fn token_vectors(
        &self,
        request: Request<pb::TokenVectorsRequest>,
    ) -> Result<Response<pb::TokenVectorsResponse>, Status> {
        let ids = convert::token_ids(request.into_inner().ids, &self.limits)?;
        // The contract promises f32: rows of a half-precision model are widened, exactly.
        let vectors = self
            .lookups
            .run(move |e| convert::pack_f32(&e.token_vectors(&ids)?))
            .await?;
        Ok(Response::new(pb::TokenVectorsResponse {
            vectors: Some(vectors),
        }))
    }

    async fn info(
        &self,
        _: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        Ok(Response::new(pb::InfoResponse {
            model: Some(self.model.clone()),
            max_batch_tokens: self.limits.max_batch_tokens as u32,
        }))
    }
}
