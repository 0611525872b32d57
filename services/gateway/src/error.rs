//! The gateway's errors and their one mapping to gRPC statuses.

use std::borrow::Cow;

use tonic::Status;

/// Everything a gateway request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is out of range: the field and the message.
    #[error("{1}")]
    InvalidArgument(Cow<'static, str>, String),
    #[error("prompt of {prompt_tokens} tokens with max_new_tokens {max_new_tokens} exceeds the context of {context}")]
    ContextLength {
        /// The field the prompt came in (with a client session, its tokens count too).
        field: &'static str,
        prompt_tokens: usize,
        max_new_tokens: usize,
        context: usize,
    },
    /// A downstream call failed: which service, and its status.
    #[error("{0}: {1}")]
    Downstream(&'static str, Status),
    #[error("the request's deadline passed before it finished")]
    DeadlineExceeded,
    /// A running request already has the id the client chose.
    #[error("{0}")]
    AlreadyExists(String),
    /// No running request has the id a cancel named.
    #[error("{0}")]
    NotFound(String),
    /// Too much work in flight; the message says which limit, the delay when to try again.
    #[error("{0}")]
    Overloaded(String, std::time::Duration),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Error::InvalidArgument(field.into(), message.into())
    }
}

impl From<oneword_sampling::FieldError> for Error {
    fn from(e: oneword_sampling::FieldError) -> Self {
        Error::InvalidArgument(e.field.into(), e.message)
    }
}

/// A status whose field violations (in its details and its message) name the public request's
/// fields rather than the decoder's step paths: `steps[0].sampling.shaping.top_p` becomes its
/// last part, `top_p`, and then any name in `renamed` (`top_n`, which Generate calls `logprobs`)
/// the public one.
pub fn public_fields(status: Status, renamed: &[(&str, &str)]) -> Status {
    use tonic_types::StatusExt;
    let mut details = status.get_error_details();
    let Some(bad) = details.bad_request().cloned() else {
        return status;
    };
    let mut message = status.message().to_string();
    let violations: Vec<_> = bad
        .field_violations
        .into_iter()
        .map(|v| {
            // Only the decoder's step paths are internal; the embedder's and the index's
            // (`tokens[0].ids[1]`, `filter.must[0]`) are the public request's own.
            let last = if v.field.starts_with("steps[") {
                v.field.rsplit('.').next().unwrap_or(&v.field)
            } else {
                &v.field
            };
            let public = renamed
                .iter()
                .find(|(from, _)| *from == last)
                .map_or(last, |(_, to)| *to)
                .to_string();
            message = message.replace(&v.field, &public);
            tonic_types::FieldViolation {
                description: v.description.replace(&v.field, &public),
                field: public,
                ..v
            }
        })
        .collect();
    details.set_bad_request(violations);
    Status::with_error_details(status.code(), message, details)
}

/// What a generation's request calls the decoder's `top_n`.
pub const GENERATION_FIELDS: &[(&str, &str)] = &[("top_n", "logprobs")];

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        use oneword_runtime::status;
        match error {
            Error::InvalidArgument(field, message) => status::invalid_argument(&field, message),
            Error::ContextLength {
                field,
                prompt_tokens,
                max_new_tokens,
                context,
            } => status::context_length_exceeded(field, prompt_tokens, max_new_tokens, context),
            Error::Downstream(service, s) => {
                public_fields(status::from_downstream(service, s), &[])
            }
            e @ Error::DeadlineExceeded => Status::deadline_exceeded(e.to_string()),
            Error::AlreadyExists(message) => Status::already_exists(message),
            Error::NotFound(message) => Status::not_found(message),
            Error::Overloaded(message, retry_after) => status::overloaded_for(message, retry_after),
            Error::Internal(detail) => status::internal("generating", detail),
        }
    }
}
