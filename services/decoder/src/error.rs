//! The decoder's errors and their one mapping to gRPC statuses.

use tonic::Status;

/// Everything a decoder request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is out of range; carries the field name and the message.
    #[error("{1}")]
    InvalidArgument(String, String),
    /// A session was not as the step, fork or release needed (the contract's own errors).
    #[error(transparent)]
    Session(#[from] oneword_runtime::SessionError),
    #[error("{0}")]
    Overloaded(String),
    /// No room in the KV cache's waiting line or budget; the delay derived from the queue says
    /// when to try again.
    #[error("{0}")]
    NoRoom(String, std::time::Duration),
    /// Larger than the decoder's whole KV budget or session limit: it can never run here.
    #[error("{0}")]
    ExceedsCapacity(String),
    #[error("the decoder is shutting down")]
    ShuttingDown,
    #[error("forward pass failed: {0}")]
    Model(#[from] oneword_model::ModelError),
}

impl From<candle_core::Error> for Error {
    fn from(error: candle_core::Error) -> Self {
        Error::Model(error.into())
    }
}

impl From<oneword_sampling::FieldError> for Error {
    fn from(e: oneword_sampling::FieldError) -> Self {
        Error::InvalidArgument(e.field, e.message)
    }
}

impl From<oneword_runtime::TurnError> for Error {
    fn from(e: oneword_runtime::TurnError) -> Self {
        match e {
            oneword_runtime::TurnError::Full(message) => Error::Overloaded(message),
            oneword_runtime::TurnError::Closed => Error::ShuttingDown,
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
            Error::Session(e) => e.into(),
            e @ Error::Overloaded(_) => oneword_runtime::status::overloaded(e.to_string()),
            Error::NoRoom(message, retry_after) => {
                oneword_runtime::status::overloaded_for(message, retry_after)
            }
            Error::ExceedsCapacity(message) => oneword_runtime::status::exceeds_capacity(message),
            e @ Error::ShuttingDown => Status::unavailable(e.to_string()),
            Error::Model(e) => oneword_runtime::status::internal("running the model", e),
        }
    }
}
