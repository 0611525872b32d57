//! The embedder's errors and their one mapping to gRPC statuses.

use oneword_runtime::TurnError;
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
    /// The request needs something this embedder was not started with.
    #[error("{0}")]
    NotServed(String),
    /// Too many requests are waiting already.
    #[error("{0}")]
    Overloaded(String),
    #[error("the embedder is shutting down")]
    ShuttingDown,
}

impl From<TurnError> for Error {
    fn from(e: TurnError) -> Self {
        match e {
            TurnError::Full(message) => Error::Overloaded(message),
            TurnError::Closed => Error::ShuttingDown,
        }
    }
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
            Error::NotServed(message) => Status::failed_precondition(message),
            Error::Overloaded(message) => oneword_runtime::status::overloaded(message),
            e @ Error::ShuttingDown => Status::unavailable(e.to_string()),
            e @ (Error::Model(_) | Error::Wire(_) | Error::Task(_)) => {
                oneword_runtime::status::internal("looking up embeddings", e)
            }
        }
    }
}
