//! Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with the status
//! codes OpenAI clients act on.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde_json::json;
use tonic::Code;

use crate::Error;

/// An HTTP error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<Cow<'static, str>>,
    pub code: Option<&'static str>,
    /// With 429: how long to wait, for `Retry-After`.
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    /// 400 for a bad field.
    pub fn invalid(param: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
            code: None,
            retry_after: None,
        }
    }

    pub fn unauthorized() -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: crate::auth::REFUSED.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
            retry_after: None,
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            kind: "unavailable",
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            // Whole seconds, rounded up: the header has no finer unit.
            let wait = self
                .retry_after
                .unwrap_or(oneword_runtime::status::RETRY_AFTER);
            let seconds = wait.as_millis().div_ceil(1000).max(1) as u64;
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
        }
        response
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(field, message) => ApiError::invalid(field, message),
            // The wording OpenAI uses, which client libraries match on.
            Error::ContextLength {
                prompt_tokens,
                max_new_tokens,
                context,
                ..
            } => ApiError {
                status: StatusCode::BAD_REQUEST,
                message: format!(
                    "This model's maximum context length is {context} tokens. However, you requested {} tokens ({prompt_tokens} in the prompt, {max_new_tokens} in the completion). Please reduce your prompt; or completion length.",
                    prompt_tokens + max_new_tokens
                ),
                kind: "invalid_request_error",
                param: Some("prompt".into()),
                code: Some("context_length_exceeded"),
                retry_after: None,
            },
            Error::Overloaded(message, retry_after) => ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                message,
                kind: "overloaded_error",
                param: None,
                code: Some("overloaded"),
                retry_after: Some(retry_after),
            },
            other => tonic::Status::from(other).into(),
        }
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        let (code, kind) = match status.code() {
            // FAILED_PRECONDITION: larger than a service's whole capacity; the request must shrink.
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
                (StatusCode::BAD_REQUEST, "invalid_request_error")
            }
            Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "overloaded_error"),
            Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            Code::NotFound => (StatusCode::NOT_FOUND, "not_found_error"),
            Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "invalid_request_error"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        };
        // The field a downstream named (already the public request's name), as OpenAI's param.
        let param = tonic_types::StatusExt::get_details_bad_request(&status)
            .and_then(|bad| bad.field_violations.into_iter().next())
            .map(|v| Cow::Owned(v.field));
        ApiError {
            status: code,
            retry_after: oneword_runtime::status::retry_delay(&status),
            message: status.message().to_string(),
            kind,
            param,
            code: None,
        }
    }
}
