//! The public front of the index: the gateway serves `oneword.index.v1.Collections` itself and
//! passes each call on to an index replica, so callers reach collections at the same address,
//! behind the same API key and the same admission limit as generation. The index validates,
//! embeds texts (through the embedder) and answers; its errors come back naming its fields.

use std::sync::Arc;

use oneword_proto::index::v1 as pb;
use oneword_proto::index::v1::collections_server::Collections;
use oneword_runtime::deadline::Deadline;
use tonic::{Request, Response, Status};

use crate::downstream::index;
use crate::service::GatewayService;

/// Largest collections message in either direction (a batch of upserts with payloads).
pub const MAX_MESSAGE_BYTES: usize = 32 << 20;

pub struct CollectionsFront {
    gateway: Arc<GatewayService>,
}

impl CollectionsFront {
    pub fn new(gateway: Arc<GatewayService>) -> Self {
        CollectionsFront { gateway }
    }
}

/// Each call: admitted like any other, then passed on within the caller's deadline.
macro_rules! pass_on {
    ($($method:ident($request:ty) -> $response:ty;)*) => {
        #[tonic::async_trait]
        impl Collections for CollectionsFront {
            $(
                async fn $method(
                    &self,
                    request: Request<$request>,
                ) -> Result<Response<$response>, Status> {
                    let deadline = Deadline::of(&request);
                    let _permit = self.gateway.admit()?;
                    let request = request.into_inner();
                    let indexes = self.gateway.downstream.indexes()?;
                    let answer = deadline
                        .within(async {
                            Ok(indexes
                                .call(&deadline, |c| {
                                    let request = deadline.request(request.clone());
                                    async move { index(c).$method(request).await }
                                })
                                .await?)
                        })
                        .await?;
                    Ok(Response::new(answer))
                }
            )*
        }
    };
}

pass_on! {
    create(pb::CreateRequest) -> pb::CollectionInfo;
    get(pb::CollectionRef) -> pb::CollectionInfo;
    list(pb::ListRequest) -> pb::ListResponse;
    drop(pb::CollectionRef) -> pb::DropResponse;
    upsert(pb::UpsertRequest) -> pb::UpsertResponse;
    delete(pb::DeleteRequest) -> pb::DeleteResponse;
    search(pb::SearchRequest) -> pb::SearchResponse;
    search_batch(pb::SearchBatchRequest) -> pb::SearchBatchResponse;
    retrieve(pb::RetrieveRequest) -> pb::RetrieveResponse;
    snapshot(pb::CollectionRef) -> pb::SnapshotResponse;
}
