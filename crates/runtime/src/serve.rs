//! Serving a gRPC service with `grpc.health.v1` and reflection (v1 and v1alpha, since the
//! grpcurl shipped on PyPI only speaks v1alpha), and stopping cleanly. On an internal service the
//! service's own calls need the service token; health and reflection never do, for probes.
//!
//! The port answers from the first moment: health says NOT_SERVING and the service's own calls
//! UNAVAILABLE while the model loads, SERVING once it is ready, NOT_SERVING again on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;

use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::transport::server::TcpIncoming;

use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Routes;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::drain::Drain;
use crate::metrics::Metrics;
use crate::observe::{ObserveLayer, Protocol};
use crate::service_token::{RequireServiceToken, ServiceToken};
use crate::settings::Settings;

/// How long the servers get to close their connections once the drain is over. tonic has no
/// forced shutdown and hyper's graceful close can hang (hyperium/hyper#4170), so it is bounded.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// HTTP/2 limits of every gRPC server. tonic hands hyper "no limit" for each unless it is set.
///
/// Streams one connection may hold open: the gateway multiplexes every call of every
/// generation it admits (`--max-concurrent-requests`, 128 by default) to a service over one
/// connection, so this is far above honest use and still bounds one peer.
const MAX_CONCURRENT_STREAMS: u32 = 1024;
/// Streams a peer may make this server reset for its protocol errors before the connection is
/// closed with GOAWAY: the bound hyper has for "rapid reset" floods (RUSTSEC-2024-0003), at
/// hyper's own figure.
const MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// Streams a peer may open and reset before this server has accepted them (the "rapid reset"
/// pattern itself) before GOAWAY. h2's default of 20 is tripped by honest use: when a hung
/// replica comes back, the gateway's cancellations of everything it had sent arrive in one
/// burst. Streams are bounded by `MAX_CONCURRENT_STREAMS`, so this matches it.
const MAX_PENDING_ACCEPT_RESETS: usize = 1024;
/// An idle connection is PINGed this often and dropped when the answer takes longer than the
/// timeout, so a peer that vanished (its node gone, the network cut) frees its streams.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keepalive probes after this much silence, for connections below HTTP/2's notice.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// The sockets one service serves on.
pub struct Listeners {
    pub grpc: TcpListener,
    pub metrics: TcpListener,
    /// The gateway's HTTP API.
    pub http: Option<TcpListener>,
}

impl Listeners {
    /// Binds the given addresses.
    pub async fn bind(
        grpc: SocketAddr,
        metrics: SocketAddr,
        http: Option<SocketAddr>,
    ) -> anyhow::Result<Self> {
        let bind = |address: SocketAddr, what: &'static str| async move {
            TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} ({what})"))
        };
        Ok(Listeners {
            grpc: bind(grpc, "gRPC").await?,
            metrics: bind(metrics, "metrics").await?,
            http: match http {
                Some(address) => Some(bind(address, "HTTP").await?),
                None => None,
            },
        })
    }

    /// Free ports on 127.0.0.1, as tests use them.
    pub async fn loopback(http: bool) -> std::io::Result<Self> {
        let any = || TcpListener::bind("127.0.0.1:0");
        Ok(Listeners {
            grpc: any().await?,
            metrics: any().await?,
            http: if http { Some(any().await?) } else { None },
        })
    }
}

/// The gateway's HTTP API: the routes, and the paths it names in metrics.
pub struct HttpApi {
    pub router: axum::Router,
    pub paths: &'static [&'static str],
    pub limits: crate::http_port::HttpLimits,
}

/// How long streams still running at the end of the drain get to send their last message.
const CUT_GRACE: Duration = Duration::from_millis(200);

/// One service's server: its sockets, settings, metrics, and the drain its streams may watch.
pub struct Server {
    pub listeners: Listeners,
    pub settings: Settings,
    pub metrics: Metrics,
    pub drain: Drain,
}

impl Server {
    /// Serves the service that `load` builds (a generated `*Server`), plus health, reflection,
    /// metrics and (for the gateway) `http`, until `shutdown` completes.
    ///
    /// Health is NOT_SERVING until `load` (which loads and warms the model) succeeds; if it
    /// fails, serving stops and the error is returned. On shutdown health turns NOT_SERVING,
    /// new calls are refused with UNAVAILABLE (HTTP 503), and the calls in flight get
    /// `settings.drain` to finish before the servers close.
    pub async fn serve<S, B>(
        self,
        load: impl Future<Output = anyhow::Result<S>>,
        http: Option<HttpApi>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError>
    where
        S: Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<tonic::codegen::StdError>,
    {
        self.serve_with(load, |more| more, http, shutdown).await
    }

    /// [`serve`](Self::serve), with more services beside the main one that need no loading
    /// (the gateway's front for the index): `more` adds them with [`More::add_service`].
    pub async fn serve_with<S, B>(
        self,
        load: impl Future<Output = anyhow::Result<S>>,
        more: impl FnOnce(More) -> More,
        http: Option<HttpApi>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError>
    where
        S: Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<tonic::codegen::StdError>,
    {
        let Server {
            listeners,
            settings,
            metrics,
            drain,
        } = self;
        let (reporter, health_service) = tonic_health::server::health_reporter();
        set_health::<S>(&reporter, ServingStatus::NotServing).await;
        let loaded = Arc::new(OnceLock::new());
        let guard = RequireServiceToken(if settings.public {
            ServiceToken::default()
        } else {
            settings.service_token.clone()
        });
        log_token_mode(&settings);
        let main = WhenLoaded {
            service: loaded.clone(),
        };
        let more = more(More {
            routes: Routes::new(InterceptedService::new(main, guard.clone()))
                .add_service(health_service),
            names: vec![S::NAME],
            guard,
        });
        let (v1, v1alpha) = crate::reflection::services(&more.names)?;
        let routes = more.routes.add_service(v1).add_service(v1alpha);

        let addr = listeners.grpc.local_addr()?;
        let (close, closed) = tokio::sync::watch::channel(false);
        let until_closed = |mut closed: tokio::sync::watch::Receiver<bool>| async move {
            let _ = closed.wait_for(|c| *c).await;
        };
        let grpc = tonic::transport::Server::builder()
            .max_connection_age(settings.max_connection_age)
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
            .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESETS))
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .layer(ObserveLayer::new(
                metrics.clone(),
                drain.clone(),
                Protocol::Grpc,
            ))
            .add_routes(routes)
            // Without TCP_NODELAY every small reply waits on delayed ACKs (~40 ms per call here).
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listeners.grpc)
                    .with_nodelay(Some(true))
                    .with_keepalive(Some(TCP_KEEPALIVE)),
                until_closed(closed.clone()),
            );
        let metrics_address = listeners.metrics.local_addr()?;
        let metrics_server = tokio::spawn(crate::metrics::serve(
            listeners.metrics,
            metrics.clone(),
            until_closed(closed.clone()),
        ));
        let http_server = match (http, listeners.http) {
            (Some(api), Some(listener)) => {
                let http_address = listener.local_addr()?;
                tracing::info!(%http_address, "serving HTTP");
                let router = api.router.layer(ObserveLayer::new(
                    metrics.clone(),
                    drain.clone(),
                    Protocol::Http(api.paths),
                ));
                Some(tokio::spawn(crate::http_port::serve(
                    listener,
                    router,
                    api.limits,
                    until_closed(closed.clone()),
                )))
            }
            _ => None,
        };
        tracing::info!(%addr, %metrics_address, service = S::NAME, "listening; loading");
        tokio::pin!(grpc);
        let serving = async {
            let service = load.await.map_err(ServeError::Load)?;
            let _ = loaded.set(service);
            set_health::<S>(&reporter, ServingStatus::Serving).await;
            tracing::info!(%addr, service = S::NAME, "serving");
            std::future::pending::<Result<(), ServeError>>().await
        };
        let result = tokio::select! {
            result = &mut grpc => result.map_err(ServeError::from),
            failed = serving => failed,
            () = shutdown => {
                set_health::<S>(&reporter, ServingStatus::NotServing).await;
                tracing::info!(in_flight = drain.in_flight(), limit = ?settings.drain, "draining");
                if !drain.drain(settings.drain).await {
                    tracing::warn!(in_flight = drain.in_flight(), "calls still running after {:?}; cutting them off", settings.drain);
                    tokio::time::sleep(CUT_GRACE).await;
                }
                Ok(())
            }
        };
        let _ = close.send(true);
        if tokio::time::timeout(CLOSE_TIMEOUT, &mut grpc)
            .await
            .is_err()
        {
            tracing::warn!(%addr, "connections did not close within {CLOSE_TIMEOUT:?}");
        }
        for task in [Some(metrics_server), http_server].into_iter().flatten() {
            if tokio::time::timeout(CLOSE_TIMEOUT, task).await.is_err() {
                tracing::warn!("an HTTP server did not close within {CLOSE_TIMEOUT:?}");
            }
        }
        tracing::info!(%addr, service = S::NAME, "stopped");
        result
    }
}

async fn set_health<S: NamedService>(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status(S::NAME, status).await;
    reporter.set_service_status("", status).await;
}

fn log_token_mode(settings: &Settings) {
    match (settings.public, settings.service_token.is_set()) {
        (false, true) => {
            tracing::info!("a service token is required on every call but health and reflection")
        }
        (false, false) => tracing::info!(
            "no service token: every caller that reaches the port is served (local development)"
        ),
        (true, true) => tracing::info!("calls to the internal services carry the service token"),
        (true, false) => tracing::info!("no service token to send to the internal services"),
    }
}

/// The services a server serves beside its main one (see [`Server::serve_with`]). Each is behind
/// the same service-token check as the main one, and reflection describes it.
pub struct More {
    routes: Routes,
    names: Vec<&'static str>,
    guard: RequireServiceToken,
}

impl More {
    /// Serves `service` too.
    pub fn add_service<M, B>(mut self, service: M) -> Self
    where
        M: Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        M::Future: Send + 'static,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<tonic::codegen::StdError>,
    {
        self.names.push(M::NAME);
        self.routes = self
            .routes
            .add_service(InterceptedService::new(service, self.guard.clone()));
        self
    }
}

/// Answers UNAVAILABLE until the service is loaded, then hands every call to it.
#[derive(Clone)]
struct WhenLoaded<S> {
    service: Arc<OnceLock<S>>,
}

impl<S: NamedService> NamedService for WhenLoaded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<Body>> for WhenLoaded<S>
where
    S: Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
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
                Box::pin(async move {
                    let response = service.call(request).await?;
                    Ok(response.map(Body::new))
                })
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

/// The body of every service's `main`: telemetry, logging the effective configuration, binding
/// the sockets, running the service until Ctrl-C or SIGTERM, and turning a failure into one
/// readable line and exit code 1.
pub async fn main<F, Fut>(
    settings: Settings,
    config: &dyn std::fmt::Debug,
    grpc: SocketAddr,
    http: Option<SocketAddr>,
    run: F,
) -> std::process::ExitCode
where
    F: FnOnce(Listeners, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let result = async {
        let _telemetry = crate::telemetry::init(&settings)?;
        tracing::info!(role = settings.role, "effective configuration: {config:?}");
        let listeners = Listeners::bind(grpc, settings.metrics_listen, http).await?;
        run(listeners, Box::pin(shutdown_signal())).await
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
