//! The baseline's errors and their one mapping to gRPC statuses.

use oneword_runtime::TurnError;
use oneword_sampling::FieldError;
use tonic::Status;

/// Everything a baseline request can fail with.
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
    #[error("the baseline is shutting down")]
    ShuttingDown,
    /// The corpus could not be counted into a model.
    #[error("the n-gram corpus: {0}")]
    Corpus(String),
    /// A transformer instrument, which this backend does not have.
    #[error("{0} is the transformer decoder's; the n-gram baseline has no transformer")]
    NotHere(&'static str),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument(field.into(), message.into())
    }
}

impl From<FieldError> for Error {
    fn from(e: FieldError) -> Self {
        Error::InvalidArgument(e.field, e.message)
    }
}

impl From<TurnError> for Error {
    fn from(e: TurnError) -> Self {
        match e {
            TurnError::Full(message) => Error::Overloaded(message),
            TurnError::Closed => Error::ShuttingDown,
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        match error {
            Error::InvalidArgument(field, message) => {
                oneword_runtime::status::invalid_argument(&field, message)
            }
            Error::Session(e) => e.into(),
            e @ Error::Corpus(_) => Status::failed_precondition(e.to_string()),
            e @ Error::Overloaded(_) => oneword_runtime::status::overloaded(e.to_string()),
            e @ Error::ShuttingDown => Status::unavailable(e.to_string()),
            e @ Error::NotHere(_) => Status::unimplemented(e.to_string()),
        }
    }
}
