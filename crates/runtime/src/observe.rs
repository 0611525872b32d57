//! The one tower layer every call passes through, gRPC and HTTP alike: it opens the call's
//! server span (a child of the trace context the caller sent), counts the call in the
//! service's metrics (`requests_total` by method and status, `request_duration_seconds` up to
//! the last byte of a stream, `requests_in_flight`), and, once the service drains, refuses new
//! calls with UNAVAILABLE / 503 while counting the ones still running. It also stamps each
//! request with its [`Arrival`](crate::deadline::Arrival), from which deadlines are counted.
//!
//! Label values come only from known sets (the methods of the compiled-in schemas, the routes
//! the router matched, the standard HTTP methods); anything else a caller sends is `other`, so
//! no request can add a series beyond those.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame};
use prost::Message as _;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::drain::{Drain, InFlight};
use crate::metrics::Metrics;

/// Which protocol the layer serves, for the status it reads and the refusal it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    /// HTTP with the routes it knows (other paths are counted as `other`, so that scanners
    /// cannot grow the label set).
    Http(&'static [&'static str]),
}

/// See the module documentation.
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Metrics,
    drain: Drain,
    protocol: Protocol,
}

impl ObserveLayer {
    pub fn new(metrics: Metrics, drain: Drain, protocol: Protocol) -> Self {
        ObserveLayer {
            metrics,
            drain,
            protocol,
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`ObserveLayer`] makes.
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    layer: ObserveLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Observe<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Unpin,
{
    type Response = Response<Observed<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        request
            .extensions_mut()
            .insert(crate::deadline::Arrival(Instant::now()));
        let layer = self.layer.clone();
        let path = request.uri().path();
        let (method, infrastructure) = match layer.protocol {
            Protocol::Grpc => match known_grpc_method(path) {
                Some(method) => (method.to_string(), method.starts_with("grpc.")),
                None => ("other".into(), false),
            },
            // HTTP `/health` is refused while draining too: 503 is how it says "not ready".
            Protocol::Http(routes) => {
                // A route with parameters is named by its template (`/v1/collections/{name}`),
                // which the router has matched by now, never by the path a caller chose.
                let matched = request
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map(|m| m.as_str());
                let label = routes
                    .iter()
                    .find(|&&route| route == path || Some(route) == matched)
                    .copied()
                    .unwrap_or("other");
                (format!("{} {label}", http_method(request.method())), false)
            }
        };
        let span = tracing::info_span!(
            "call",
            otel.name = %method,
            otel.kind = "server",
            rpc.method = %method,
            service = layer.metrics.role(),
            code = tracing::field::Empty,
        );
        let _ = span.set_parent(crate::telemetry::extract(request.headers()));
        // Health checks and reflection go on while draining, and do not hold the drain up.
        let guard = if infrastructure {
            None
        } else {
            match layer.drain.enter() {
                Some(guard) => Some(guard),
                None => {
                    let response = refusal(layer.protocol);
                    let code = response_code(layer.protocol, response.status(), response.headers());
                    span.record("code", code.as_str());
                    layer
                        .metrics
                        .calls
                        .requests
                        .with_label_values(&[method.as_str(), code.as_str()])
                        .inc();
                    return Box::pin(async move { Ok(response.map(Observed::fixed)) });
                }
            }
        };
        layer
            .metrics
            .calls
            .in_flight
            .with_label_values(&[method.as_str()])
            .inc();
        let record = Record {
            metrics: layer.metrics.clone(),
            protocol: layer.protocol,
            method,
            start: Instant::now(),
            span: span.clone(),
            _in_flight: guard,
            code: None,
        };
        let mut inner = self.inner.clone();
        std::mem::swap(&mut inner, &mut self.inner);
        Box::pin(
            async move {
                let mut record = record;
                let response = inner.call(request).await?;
                record.code = Some(response_code(
                    record.protocol,
                    response.status(),
                    response.headers(),
                ));
                let (parts, body) = response.into_parts();
                // An empty body (a trailers-only gRPC error) may never be polled.
                let record = if body.is_end_stream() {
                    record.finish(true);
                    None
                } else {
                    Some(record)
                };
                Ok(Response::from_parts(
                    parts,
                    Observed {
                        inner: Some(body),
                        fixed: None,
                        record,
                    },
                ))
            }
            .instrument(span),
        )
    }
}

/// What is recorded when a call's response ends.
struct Record {
    metrics: Metrics,
    protocol: Protocol,
    method: String,
    start: Instant,
    span: tracing::Span,
    _in_flight: Option<InFlight>,
    /// The code known so far (from the headers; gRPC trailers override it).
    code: Option<String>,
}

impl Record {
    fn finish(self, ended: bool) {
        let code = match (ended, self.code) {
            (true, Some(code)) => code,
            (true, None) => "OK".into(),
            // The client went away (or the server cut the stream) before the end.
            (false, _) => match self.protocol {
                Protocol::Grpc => "CANCELLED".into(),
                Protocol::Http(_) => "499".into(),
            },
        };
        self.span.record("code", code.as_str());
        let calls = &self.metrics.calls;
        calls
            .requests
            .with_label_values(&[self.method.as_str(), code.as_str()])
            .inc();
        calls
            .duration
            .with_label_values(&[self.method.as_str()])
            .observe(self.start.elapsed().as_secs_f64());
        calls
            .in_flight
            .with_label_values(&[self.method.as_str()])
            .dec();
    }
}

/// A response body that records the call when its last frame has gone (or it is dropped).
pub struct Observed<B> {
    inner: Option<B>,
    /// The whole body of a response the layer wrote itself.
    fixed: Option<Bytes>,
    record: Option<Record>,
}

impl<B> Observed<B> {
    fn fixed(body: Bytes) -> Self {
        Observed {
            inner: None,
            fixed: Some(body).filter(|b| !b.is_empty()),
            record: None,
        }
    }
}

impl<B> Drop for Observed<B> {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            record.finish(false);
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Observed<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(body) = self.fixed.take() {
            return Poll::Ready(Some(Ok(Frame::data(body))));
        }
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        // The server stops polling once the body says it has ended, so the call is recorded at
        // its last frame: the trailers, or data that ends the body.
        let ended = inner.is_end_stream();
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let trailers = frame.trailers_ref();
                if let Some(mut record) = self.record.take() {
                    if let Some(code) = trailers.and_then(grpc_code) {
                        record.code = Some(code);
                    }
                    if ended || trailers.is_some() {
                        record.finish(true);
                    } else {
                        self.record = Some(record);
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(record) = self.record.take() {
                    record.finish(true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(mut record) = self.record.take() {
                    record.code = Some("INTERNAL".into());
                    record.finish(true);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.fixed.is_none() && self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }
}

/// A gRPC path as its metrics label (`package.Service/Method`) if it names a method of the
/// schemas compiled in (oneword's, health's, reflection's), else `None`: callers choose paths,
/// and only known ones may become label values.
fn known_grpc_method(path: &str) -> Option<&'static str> {
    static KNOWN: OnceLock<HashSet<String>> = OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        [
            oneword_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ]
        .into_iter()
        .flat_map(|set| {
            prost_types::FileDescriptorSet::decode(set)
                .expect("the compiled-in descriptor sets decode")
                .file
        })
        .flat_map(|file| {
            let package = file.package().to_string();
            file.service.into_iter().flat_map(move |service| {
                let prefix = format!("{package}.{}", service.name());
                service
                    .method
                    .into_iter()
                    .map(move |m| format!("{prefix}/{}", m.name()))
            })
        })
        .collect()
    });
    known.get(path.strip_prefix('/')?).map(String::as_str)
}

/// An HTTP method as its label: the standard ones by name, any other token (which a client may
/// make up) as `OTHER`.
fn http_method(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

fn refusal(protocol: Protocol) -> Response<Bytes> {
    const MESSAGE: &str = "the server is shutting down; retry on another replica";
    match protocol {
        Protocol::Grpc => tonic::Status::unavailable(MESSAGE)
            .into_http::<()>()
            .map(|()| Bytes::new()),
        // In the shape OpenAI clients parse.
        Protocol::Http(_) => {
            let body = format!(
                r#"{{"error":{{"message":"{MESSAGE}","type":"unavailable","param":null,"code":503}}}}"#
            );
            let mut response = Response::new(Bytes::from(body));
            *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
    }
}

fn response_code(protocol: Protocol, status: http::StatusCode, headers: &HeaderMap) -> String {
    match protocol {
        // A trailers-only response (an immediate error) carries its status in the headers.
        Protocol::Grpc => grpc_code(headers).unwrap_or_else(|| "OK".into()),
        Protocol::Http(_) => status.as_str().to_string(),
    }
}

fn grpc_code(headers: &HeaderMap) -> Option<String> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(code_name(tonic::Code::from_i32(code)).to_string())
}

/// The canonical upper-case name of a gRPC status code.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_compiled_in_methods_are_labels() {
        assert_eq!(
            known_grpc_method("/oneword.gateway.v1.Gateway/Generate"),
            Some("oneword.gateway.v1.Gateway/Generate")
        );
        assert_eq!(
            known_grpc_method("/grpc.health.v1.Health/Check"),
            Some("grpc.health.v1.Health/Check")
        );
        for unknown in [
            "/oneword.gateway.v1.Gateway/Nope",
            "/oneword.anything/At",
            "/grpc.health.v1.Health/Nope",
            "oneword.gateway.v1.Gateway/Generate",
            "/",
        ] {
            assert_eq!(known_grpc_method(unknown), None, "{unknown}");
        }
        assert_eq!(http_method(&http::Method::POST), "POST");
        let made_up = http::Method::from_bytes(b"SCAN").unwrap();
        assert_eq!(http_method(&made_up), "OTHER");
    }
}
