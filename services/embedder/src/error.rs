//! The embedder's errors and their one mapping to gRPC statuses.

use tonic::Status;

/// Everything an embedder request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is out of range; carries the field name and the message.
    #[error("{1}")]
    InvalidArgument(String, String),
    #[error("embedding lookup failed: {0}")]
    Model(#[from] oneword_model::ModelError),
    #[error("packing the result failed: {0}")]
    Wire(#[from] oneword_model::wire::TensorWireError),
    #[error("the lookup task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument(field.into(), message.into())
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        match error {
            Error::InvalidArgument(field, message) => {
                oneword_runtime::status::invalid_argument(&field, message)
            }
            e @ (Error::Model(_) | Error::Wire(_) | Error::Task(_)) => {
                oneword_runtime::status::internal("looking up embeddings", e)
            }
        }
    }
}
