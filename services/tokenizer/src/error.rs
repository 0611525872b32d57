//! The tokenizer's errors and their one mapping to gRPC statuses.

use tonic::Status;

/// Everything a tokenizer request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is out of range; carries the field name and the message.
    #[error("{message}")]
    InvalidArgument { field: String, message: String },
    /// Encoding or decoding failed: an unknown id, or the `tokenizers` crate itself.
    #[error(transparent)]
    Bpe(#[from] oneword_bpe::Error),
    #[error("{0}")]
    Overloaded(String),
    #[error("the tokenizing thread failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        use oneword_runtime::status;
        match error {
            Error::InvalidArgument { field, message } => status::invalid_argument(&field, message),
            Error::Bpe(e @ oneword_bpe::Error::UnknownId { index, .. }) => {
                status::invalid_argument(&format!("ids[{index}]"), e)
            }
            e @ Error::Overloaded(_) => oneword_runtime::status::overloaded(e.to_string()),
            Error::Bpe(e @ oneword_bpe::Error::Tokenizer(_)) => status::internal("tokenizing", e),
            e @ Error::Worker(_) => status::internal("tokenizing", e),
        }
    }
}
