//! Passing the caller's deadline on. tonic hands handlers no parsed deadline, so the
//! `grpc-timeout` header is read here and the remaining time is set on every downstream call.

use std::time::{Duration, Instant};

/// When the caller stops waiting, if it said.
#[derive(Clone, Copy, Debug, Default)]
pub struct Deadline(Option<Instant>);

/// When a call reached the server. The observe layer puts it on every request before tonic
/// starts its own timer on the same `grpc-timeout`, so a deadline counted from it ends first.
#[derive(Clone, Copy, Debug)]
pub struct Arrival(pub Instant);

impl Deadline {
    /// Reads the `grpc-timeout` header of an incoming request, counting from its [`Arrival`]
    /// (or from now, for a request that did not pass the observe layer).
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        let arrived = request
            .extensions()
            .get::<Arrival>()
            .map_or_else(Instant::now, |a| a.0);
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        Deadline(timeout.map(|t| arrived + t))
    }

    /// Time left, or `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.0.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The later of two deadlines (none is the latest): what one call made for both callers
    /// may take.
    pub fn later(self, other: Deadline) -> Deadline {
        match (self.0, other.0) {
            (Some(a), Some(b)) => Deadline(Some(a.max(b))),
            _ => Deadline(None),
        }
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        self.remaining().is_some_and(|r| r.is_zero())
    }

    /// Runs `work` until the deadline and answers DEADLINE_EXCEEDED past it. It gives up a few
    /// milliseconds early, counted from the call's [`Arrival`]: tonic's own timer on the same
    /// header would otherwise end the call first, with CANCELLED, which tells the caller less.
    pub async fn within<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        let Some(left) = self.remaining() else {
            return work.await;
        };
        tokio::time::timeout(left.saturating_sub(Duration::from_millis(5)), work)
            .await
            .unwrap_or_else(|_| {
                Err(tonic::Status::deadline_exceeded(
                    "the request's deadline passed before it finished",
                ))
            })
    }

    /// Wraps `message` in a request that carries the remaining time as its own timeout.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(remaining) = self.remaining() {
            request.set_timeout(remaining.max(Duration::from_millis(1)));
        }
        request
    }
}

/// Parses the gRPC wire format of a timeout: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("150m"), Some(Duration::from_millis(150)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
    }

    #[test]
    fn reads_the_header_and_propagates_the_rest() {
        let mut incoming = tonic::Request::new(());
        incoming
            .metadata_mut()
            .insert("grpc-timeout", "5S".parse().unwrap());
        let deadline = Deadline::of(&incoming);
        let left = deadline.remaining().unwrap();
        assert!(left <= Duration::from_secs(5) && left > Duration::from_secs(4));
        assert!(!deadline.expired());
        let outbound = deadline.request(());
        assert!(outbound.metadata().get("grpc-timeout").is_some());
        assert!(Deadline::default().remaining().is_none());

        // Counted from when the call arrived, not from when it is read.
        let arrived = Instant::now() - Duration::from_secs(2);
        incoming.extensions_mut().insert(Arrival(arrived));
        let left = Deadline::of(&incoming).remaining().unwrap();
        assert!(left <= Duration::from_secs(3) && left > Duration::from_secs(2));
    }
}
