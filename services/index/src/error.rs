//! The index's errors and their one mapping to gRPC statuses.

use oneword_runtime::TurnError;
use tonic::Status;

/// The name the embedder goes by in errors.
pub const EMBEDDER: &str = "embedder";

/// Everything an index request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is out of range; carries the field path and the message.
    #[error("{1}")]
    InvalidArgument(String, String),
    #[error("collection `{0}` does not exist")]
    NoCollection(String),
    #[error("collection `{collection}` has no point `{id}`")]
    NoPoint { collection: String, id: String },
    #[error("collection `{0}` already exists")]
    Exists(String),
    /// More than a limit allows in one request (points, ids).
    #[error("{0}")]
    TooMany(String),
    /// The work queue is full.
    #[error("{0}")]
    Overloaded(String),
    /// The request needs something this index or collection does not have (a model, an
    /// embedder).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The embedder answered with an error, or could not be reached.
    #[error("the embedder: {}", .0.message())]
    Embedder(Status),
    /// The database cannot be written or read (disk full, I/O error, locked); nothing was
    /// changed. The detail is logged where it happens.
    #[error("the index's database is unavailable ({0}); nothing was changed, retry later")]
    Database(String),
    /// PostgreSQL (the `--postgres` backend) cannot be reached or cannot serve now; the detail
    /// says whether anything may have been changed.
    #[error("the PostgreSQL database is unavailable: {0}")]
    Postgres(String),
    #[error("the index is shutting down")]
    ShuttingDown,
    /// A bug or a broken invariant; logged once, answered without internals.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument(field.into(), message.into())
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
            e @ (Error::NoCollection(_) | Error::NoPoint { .. }) => {
                Status::not_found(e.to_string())
            }
            e @ Error::Exists(_) => Status::already_exists(e.to_string()),
            e @ Error::TooMany(_) => Status::resource_exhausted(e.to_string()),
            e @ Error::Overloaded(_) => oneword_runtime::status::overloaded(e.to_string()),
            e @ Error::FailedPrecondition(_) => Status::failed_precondition(e.to_string()),
            Error::Embedder(status) => oneword_runtime::status::from_downstream(EMBEDDER, status),
            e @ (Error::Database(_) | Error::Postgres(_) | Error::ShuttingDown) => {
                Status::unavailable(e.to_string())
            }
            Error::Internal(detail) => {
                oneword_runtime::status::internal("serving an index call", detail)
            }
        }
    }
}
