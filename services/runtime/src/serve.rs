//! Serving a gRPC service with `grpc.health.v1` and reflection (v1 and v1alpha, since the
//! grpcurl shipped on PyPI only speaks v1alpha), and stopping cleanly.
//!
//! The port answers from the first moment: health says NOT_SERVING and the service's own calls
//! UNAVAILABLE while the model loads, SERVING once it is ready, NOT_SERVING again on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::transport::server::TcpIncoming;

use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic_health::ServingStatus;

/// How long in-flight calls get to finish after shutdown is asked for. tonic has no forced
/// shutdown and hyper's graceful drain can hang (hyperium/hyper#4170), so the drain is bounded.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the service that `load` builds (a generated `*Server`), plus health and reflection, on
/// `listener` until `shutdown` completes. Health is NOT_SERVING until `load` succeeds; if it
/// fails, serving stops and the error is returned. On shutdown health turns NOT_SERVING at once,
/// then in-flight calls get [`DRAIN_TIMEOUT`] to finish.
pub async fn serve<S>(
    listener: TcpListener,
    load: impl Future<Output = anyhow::Result<S>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter.set_not_serving::<S>().await;
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let loaded = Arc::new(OnceLock::new());
    let routes = Routes::new(WhenLoaded {
        service: loaded.clone(),
    });
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(oneword_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let routes = routes
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);

    let addr = listener.local_addr()?;
    let ready = reporter.clone();
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        shutdown.await;
        reporter.set_not_serving::<S>().await;
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        let _ = draining_tx.send(());
    };
    let server = tonic::transport::Server::builder()
        .add_routes(routes)
        // Without TCP_NODELAY every small reply waits on delayed ACKs (~40 ms per call here).
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), stop);
    tracing::info!(%addr, service = S::NAME, "listening; loading");
    tokio::pin!(server);
    let serving = async {
        let service = load.await.map_err(ServeError::Load)?;
        let _ = loaded.set(service);
        ready.set_serving::<S>().await;
        ready.set_service_status("", ServingStatus::Serving).await;
        tracing::info!(%addr, service = S::NAME, "serving");
        std::future::pending::<Result<(), ServeError>>().await
    };
    tokio::select! {
        result = &mut server => result?,
        failed = serving => return failed,
        _ = draining_rx => {
            if tokio::time::timeout(DRAIN_TIMEOUT, server).await.is_err() {
                tracing::warn!(%addr, "in-flight calls did not finish within {DRAIN_TIMEOUT:?}");
            }
        }
    }
    tracing::info!(%addr, service = S::NAME, "stopped");
    Ok(())
}

/// Answers UNAVAILABLE until the service is loaded, then hands every call to it.
#[derive(Clone)]
struct WhenLoaded<S> {
    service: Arc<OnceLock<S>>,
}

impl<S: NamedService> NamedService for WhenLoaded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for WhenLoaded<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        // Generated tonic servers are always ready.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self.service.get() {
            Some(service) => {
                let mut service = service.clone();
                Box::pin(async move { service.call(request).await })
            }
            None => Box::pin(async {
                Ok(
                    tonic::Status::unavailable(format!("{} is loading its model", S::NAME))
                        .into_http(),
                )
            }),
        }
    }
}

/// Why a server could not start or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("loading: {0:#}")]
    Load(anyhow::Error),
    #[error("building reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("reading the listener's address: {0}")]
    Io(#[from] std::io::Error),
    #[error("serving: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested");
}

/// The body of every service's `main`: logging, binding `listen`, running the service until
/// Ctrl-C or SIGTERM, and turning a failure into one readable line and exit code 1.
pub async fn main<F, Fut>(listen: std::net::SocketAddr, run: F) -> std::process::ExitCode
where
    F: FnOnce(TcpListener, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    crate::telemetry::init();
    let result = match TcpListener::bind(listen).await {
        Ok(listener) => run(listener, Box::pin(shutdown_signal())).await,
        Err(e) => Err(anyhow::anyhow!("cannot listen on {listen}: {e}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
