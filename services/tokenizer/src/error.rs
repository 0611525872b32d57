//! The tokenizer's errors and their one mapping to gRPC statuses.

use tonic::Status;

/// Everything a tokenizer request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is out of range; carries the field name and the message.
    #[error("{message}")]
    InvalidArgument { field: String, message: String },
    /// Decode was given an id the vocabulary does not have.
    #[error("`ids[{index}]` = {id} is outside the vocabulary of {vocab_size} tokens")]
    UnknownId {
        index: usize,
        id: u32,
        vocab_size: usize,
    },
    #[error("{0}")]
    Overloaded(String),
    /// The `tokenizers` crate failed on valid input (a bug here or there).
    #[error("tokenizing failed: {0}")]
    Tokenizer(String),
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
            e @ Error::UnknownId { index, .. } => {
                status::invalid_argument(&format!("ids[{index}]"), e)
            }
            e @ Error::Overloaded(_) => Status::resource_exhausted(e.to_string()),
            e @ Error::Tokenizer(_) => status::internal("tokenizing", e),
            e @ Error::Worker(_) => status::internal("tokenizing", e),
        }
    }
}
