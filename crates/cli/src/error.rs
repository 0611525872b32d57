//! What can go wrong, how it reads, and the exit code it gives.

use std::fmt;

use tonic::Code;

/// A failed command.
#[derive(Debug)]
pub enum Error {
    /// The gateway address does not parse as a URI.
    BadAddress { address: String, reason: String },
    /// The API key cannot go in a header.
    BadApiKey,
    /// No connection to the gateway could be made.
    Connect {
        address: String,
        source: tonic::transport::Error,
    },
    /// The gateway answered with an error status.
    Status(tonic::Status),
    /// Reading the input or writing the output failed.
    Io(std::io::Error),
    /// Flags that make sense alone but not with the model's answer (a head it does not have).
    Usage(String),
    /// The answer could not be used (a tensor of the wrong shape), or a picture not drawn.
    Response(String),
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Error::Status(status)
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::Io(err)
    }
}

impl Error {
    /// The process exit code: 2 for a request the gateway called invalid (like clap's usage
    /// errors), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Status(status) if status.code() == Code::InvalidArgument => 2,
            Error::BadAddress { .. } | Error::BadApiKey | Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Whether this is stdout closing under us (`oneword generate … | head`): not worth a word.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io(err) if err.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadAddress { address, reason } => {
                write!(
                    f,
                    "error: `--gateway` {address:?} is not an address: {reason}"
                )
            }
            Error::BadApiKey => write!(
                f,
                "error: `--api-key` must be printable ASCII without line breaks"
            ),
            Error::Connect { address, source } => {
                write!(
                    f,
                    "error: cannot reach the gateway at {address}: {}\n\
                     hint: is it running? start the services with `make run`, or point --gateway \
                     (or ONEWORD_GATEWAY) at a running gateway",
                    root_cause(source)
                )
            }
            Error::Status(status) => {
                let code = code_name(status.code());
                if status.message().is_empty() {
                    write!(f, "error: {code}")
                } else {
                    write!(f, "error: {} ({code})", status.message())
                }
            }
            Error::Io(err) => write!(f, "error: {err}"),
            Error::Usage(message) | Error::Response(message) => write!(f, "error: {message}"),
        }
    }
}

/// The innermost error's message: tonic's own ("transport error") says nothing useful.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A status code as words, the way people say it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_reads_and_exits_with_2() {
        let err = Error::from(tonic::Status::invalid_argument(
            "`top_p` must be in (0, 1], got 1.5",
        ));
        assert_eq!(
            err.to_string(),
            "error: `top_p` must be in (0, 1], got 1.5 (invalid argument)"
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn other_statuses_exit_with_1() {
        let err = Error::from(tonic::Status::resource_exhausted("queue full"));
        assert_eq!(err.to_string(), "error: queue full (resource exhausted)");
        assert_eq!(err.exit_code(), 1);
        let err = Error::from(tonic::Status::new(Code::Unavailable, ""));
        assert_eq!(err.to_string(), "error: unavailable");
    }

    #[test]
    fn broken_pipe_is_recognised() {
        let err = Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(err.is_broken_pipe());
        assert!(!Error::from(tonic::Status::internal("x")).is_broken_pipe());
    }
}
