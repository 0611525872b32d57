//! Building the statuses every service answers with, so that they read the same everywhere:
//! lowercase messages naming the field, the value and what is allowed, with machine-readable
//! `google.rpc` details beside them.

use std::fmt::Display;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// INVALID_ARGUMENT for one bad field, with a `BadRequest` field violation.
pub fn invalid_argument(field: &str, description: impl Display) -> Status {
    let description = description.to_string();
    Status::with_error_details(
        Code::InvalidArgument,
        description.clone(),
        ErrorDetails::with_bad_request_violation(field, description),
    )
}

/// INVALID_ARGUMENT for a prompt that, with what is to be generated, does not fit the context
/// window; carries `ErrorInfo{reason: CONTEXT_LENGTH_EXCEEDED}` with the counts.
pub fn context_length_exceeded(
    field: &str,
    prompt_tokens: usize,
    max_new_tokens: usize,
    context: usize,
) -> Status {
    let message = if prompt_tokens >= context {
        format!(
            "`{field}` has {prompt_tokens} tokens but the context window is {context} tokens (the prompt must leave room for at least one new token)"
        )
    } else {
        format!(
            "`{field}` has {prompt_tokens} tokens and `max_new_tokens` is {max_new_tokens}: {} in all, over the context window of {context} tokens",
            prompt_tokens + max_new_tokens
        )
    };
    let mut details = ErrorDetails::with_error_info(
        "CONTEXT_LENGTH_EXCEEDED",
        "oneword",
        [
            ("prompt_tokens".to_string(), prompt_tokens.to_string()),
            ("max_new_tokens".to_string(), max_new_tokens.to_string()),
            ("context_length".to_string(), context.to_string()),
        ],
    );
    details.add_bad_request_violation(field, message.clone());
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// How long a caller refused for overload should wait before trying again when nothing better is
/// known: gRPC's `RetryInfo` and HTTP's `Retry-After` say the same.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The range of a retry delay derived from a queue: not so short that clients hammer, not so long
/// that they give up on a server about to have room.
pub const RETRY_RANGE: (Duration, Duration) = (Duration::from_millis(20), Duration::from_secs(30));

/// RESOURCE_EXHAUSTED for work refused because the server is full, not because the request is too
/// big: the same call can succeed later, and `RetryInfo` says when (clients that honour it, as
/// gRPC's retry policies do, back off instead of hammering a full server).
pub fn overloaded(message: impl Into<String>) -> Status {
    overloaded_for(message, RETRY_AFTER)
}

/// [`overloaded`] with a delay the server derived from its queue (kept within [`RETRY_RANGE`]).
pub fn overloaded_for(message: impl Into<String>, retry_after: Duration) -> Status {
    let retry_after = retry_after.clamp(RETRY_RANGE.0, RETRY_RANGE.1);
    let mut details = ErrorDetails::with_retry_info(Some(retry_after));
    details.set_error_info("OVERLOADED", "oneword", []);
    Status::with_error_details(Code::ResourceExhausted, message.into(), details)
}

/// The delay an overload refusal asks for.
pub fn retry_delay(status: &Status) -> Option<Duration> {
    status.get_details_retry_info()?.retry_delay
}

/// FAILED_PRECONDITION for work larger than the server's whole capacity (a KV budget, a session
/// limit): unlike an overload, waiting cannot help, so there is no `RetryInfo`;
/// `ErrorInfo{reason: EXCEEDS_CAPACITY}` tells the two apart by machine.
pub fn exceeds_capacity(message: impl Into<String>) -> Status {
    let details = ErrorDetails::with_error_info("EXCEEDS_CAPACITY", "oneword", []);
    Status::with_error_details(Code::FailedPrecondition, message.into(), details)
}

/// Whether `status` is an overload refusal that may be retried (it carries `RetryInfo`).
pub fn is_overloaded(status: &Status) -> bool {
    status.code() == Code::ResourceExhausted && status.get_details_retry_info().is_some()
}

/// Whether a call failed before the server saw it, so that sending it again is safe whatever it
/// does (gRPC's "transparent retry", which grpc-go and grpc-java do and tonic does not). Two
/// answers of tonic's say so, both when a server closes a connection (as past its maximum age):
/// CANCELLED with the transport's error as its source, for a call still queued on the closing
/// connection; and INTERNAL "h2 protocol error" whose source is the server's GOAWAY with
/// NO_ERROR, for a stream opened after the last one the server said it would process.
pub fn never_sent(status: &Status) -> bool {
    let mut sources = std::iter::successors(std::error::Error::source(status), |e| e.source());
    match status.code() {
        Code::Cancelled => sources.next().is_some(),
        Code::Internal => sources.any(|e| {
            e.downcast_ref::<h2::Error>().is_some_and(|e| {
                e.is_go_away() && e.is_remote() && e.reason() == Some(h2::Reason::NO_ERROR)
            })
        }),
        _ => false,
    }
}

/// UNAVAILABLE for a downstream service that could not be reached, naming it.
pub fn downstream_unavailable(service: &str, cause: impl Display) -> Status {
    Status::unavailable(format!("the {service} service is unavailable: {cause}"))
}

/// Passes a downstream service's status on, saying where it came from. Connection failures become
/// UNAVAILABLE naming the service; everything else keeps its code.
pub fn from_downstream(service: &str, status: Status) -> Status {
    match status.code() {
        Code::Unavailable | Code::Unknown if is_transport_failure(&status) => {
            downstream_unavailable(service, status.message())
        }
        Code::Unavailable => downstream_unavailable(service, status.message()),
        // The caller did nothing wrong: this server's own credentials were refused.
        Code::Unauthenticated | Code::PermissionDenied => internal(
            "calling a downstream service",
            format!(
                "the {service} refused this server's service token: {}",
                status.message()
            ),
        ),
        // Keep the retry hint, so the caller learns that waiting helps.
        Code::ResourceExhausted if is_overloaded(&status) => overloaded_for(
            format!("{service}: {}", status.message()),
            retry_delay(&status).unwrap_or(RETRY_AFTER),
        ),
        // The details (field violations, error info) stay: a client reads them by machine.
        code => Status::with_details(
            code,
            format!("{service}: {}", status.message()),
            status.details().to_vec().into(),
        ),
    }
}

fn is_transport_failure(status: &Status) -> bool {
    let message = status.message();
    message.contains("transport error")
        || message.contains("connection")
        || message.contains("tcp connect")
}

/// INTERNAL without internals; the detail is logged once, here.
pub fn internal(context: &str, error: impl Display) -> Status {
    tracing::error!(%error, "{context}");
    Status::internal(format!("internal error while {context}"))
}

/// Why a step, fork or release of the session contract (`oneword.decoder.v1.Decoder`) was
/// refused, in every backend that serves it (the decoder, the baseline), with its one status.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("session `{0}` does not exist (it may have expired or been released)")]
    NotFound(String),
    #[error("session `{0}` already exists")]
    Exists(String),
    #[error(
        "session `{0}` is in a step that is still running; send its next step after the answer"
    )]
    Busy(String),
    #[error("session `{id}` holds {length} positions but the step starts at position {start}")]
    PositionMismatch {
        id: String,
        length: usize,
        start: usize,
    },
}

impl From<SessionError> for Status {
    fn from(error: SessionError) -> Status {
        match error {
            e @ SessionError::NotFound(_) => Status::not_found(e.to_string()),
            e @ SessionError::Exists(_) => Status::already_exists(e.to_string()),
            e @ (SessionError::Busy(_) | SessionError::PositionMismatch { .. }) => {
                Status::failed_precondition(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_calls_the_transport_gave_up_on_before_sending_count_as_never_sent() {
        let broken = || Box::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let answered = Status::cancelled("operation was canceled");
        assert!(!never_sent(&answered), "a CANCELLED the server sent");
        let other = Status::from_error(broken());
        assert!(!never_sent(&other), "{other:?} is not CANCELLED");
        let mut cancelled = Status::cancelled("operation was canceled");
        cancelled.set_source(std::sync::Arc::new(*broken()));
        assert!(never_sent(&cancelled));
        // A reset (not a GOAWAY) may come after the server did the work.
        let mut reset = Status::internal("h2 protocol error");
        reset.set_source(std::sync::Arc::new(h2::Error::from(h2::Reason::NO_ERROR)));
        assert!(!never_sent(&reset));
    }
}
