//! Serving a set of gRPC routes with `grpc.health.v1` and reflection (v1 and v1alpha, since the
//! grpcurl shipped on PyPI only speaks v1alpha), and stopping cleanly.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic_health::ServingStatus;

/// How long in-flight calls get to finish after shutdown is asked for. tonic has no forced
/// shutdown and hyper's graceful drain can hang (hyperium/hyper#4170), so the drain is bounded.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `routes` (whose main service is `S`) plus health and reflection on `listener` until
/// `shutdown` completes. Callers load their model first, so health starts as SERVING; it turns
/// NOT_SERVING as soon as shutdown begins, then in-flight calls get [`DRAIN_TIMEOUT`] to finish.
pub async fn serve<S: NamedService>(
    listener: TcpListener,
    routes: Routes,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter.set_serving::<S>().await;
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
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
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop);
    tracing::info!(%addr, service = S::NAME, "serving");
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        _ = draining_rx => {
            if tokio::time::timeout(DRAIN_TIMEOUT, server).await.is_err() {
                tracing::warn!(%addr, "in-flight calls did not finish within {DRAIN_TIMEOUT:?}");
            }
        }
    }
    tracing::info!(%addr, service = S::NAME, "stopped");
    Ok(())
}

/// Why a server could not start or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
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
