//! The decoder's errors and their one mapping to gRPC statuses.

use tonic::Status;

/// Everything a decoder request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is out of range; carries the field name and the message.
    #[error("{1}")]
    InvalidArgument(String, String),
    #[error("session `{0}` does not exist (it may have expired or been released)")]
    SessionNotFound(String),
    #[error("session `{0}` already exists")]
    SessionExists(String),
    #[error(
        "session `{0}` is in a step that is still running; send its next step after the answer"
    )]
    SessionBusy(String),
    #[error("session `{id}` holds {length} positions but the step starts at position {start}")]
    PositionMismatch {
        id: String,
        length: usize,
        start: usize,
    },
    #[error("{0}")]
    Overloaded(String),
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
            e @ Error::SessionNotFound(_) => Status::not_found(e.to_string()),
            e @ Error::SessionExists(_) => Status::already_exists(e.to_string()),
            e @ (Error::PositionMismatch { .. } | Error::SessionBusy(_)) => {
                Status::failed_precondition(e.to_string())
            }
            e @ Error::Overloaded(_) => Status::resource_exhausted(e.to_string()),
            e @ Error::ShuttingDown => Status::unavailable(e.to_string()),
            Error::Model(e) => oneword_runtime::status::internal("running the model", e),
        }
    }
}
