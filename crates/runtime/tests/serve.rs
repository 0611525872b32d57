//! The serving life cycle with a loader and a handler the test controls: NOT_SERVING and
//! UNAVAILABLE while loading, SERVING after, and on shutdown NOT_SERVING, new calls refused, the
//! call in flight finished, and a drain that gives up at its deadline; the service token
//! required of the service's own calls on an internal server, and of none on a public one.

use std::sync::Arc;
use std::time::Duration;

use oneword_proto::embedder::v1 as pb;
use oneword_runtime::settings::{LogFormat, Settings};
use oneword_runtime::telemetry::{traced, traced_with};
use oneword_runtime::{Listeners, Metrics, Server, ServiceToken};
use tokio::sync::{oneshot, Notify};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// An embedder whose `Info` waits until the test lets it answer.
struct Held {
    entered: Arc<Notify>,
    release: Arc<Notify>,
}

#[tonic::async_trait]
impl pb::embedder_server::Embedder for Held {
    async fn embed(
        &self,
        _: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        Ok(Response::new(pb::EmbedResponse::default()))
    }

    async fn token_vectors(
        &self,
        _: Request<pb::TokenVectorsRequest>,
    ) -> Result<Response<pb::TokenVectorsResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn embed_parts(
        &self,
        _: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedPartsResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn words(
        &self,
        _: Request<pb::WordsRequest>,
    ) -> Result<Response<pb::WordsResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn nearest(
        &self,
        _: Request<pb::NearestRequest>,
    ) -> Result<Response<pb::NearestResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn embed_text(
        &self,
        _: Request<pb::EmbedTextRequest>,
    ) -> Result<Response<pb::EmbedTextResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn info(
        &self,
        _: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        self.entered.notify_one();
        self.release.notified().await;
        Ok(Response::new(pb::InfoResponse::default()))
    }
}

struct Running {
    channel: Channel,
    metrics: String,
    entered: Arc<Notify>,
    release: Arc<Notify>,
    loaded: Option<oneshot::Sender<()>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), oneword_runtime::ServeError>>,
}

async fn start(drain: Duration) -> Running {
    start_with(drain, |_| {}).await
}

async fn start_with(drain: Duration, adjust: impl FnOnce(&mut Settings)) -> Running {
    let listeners = Listeners::loopback(false).await.unwrap();
    let address = format!("http://{}", listeners.grpc.local_addr().unwrap());
    let metrics = format!("http://{}/metrics", listeners.metrics.local_addr().unwrap());
    let mut settings = Settings {
        role: "embedder",
        metrics_listen: listeners.metrics.local_addr().unwrap(),
        log_format: LogFormat::Text,
        otlp_endpoint: None,
        drain,
        max_connection_age: Duration::from_secs(300),
        service_token: Default::default(),
        public: false,
    };
    adjust(&mut settings);
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let service = Held {
        entered: entered.clone(),
        release: release.clone(),
    };
    let (loaded, load) = oneshot::channel::<()>();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = Server {
        listeners,
        settings,
        metrics: Metrics::new("embedder"),
        drain: Default::default(),
    };
    let task = tokio::spawn(server.serve(
        async move {
            load.await?;
            Ok(pb::embedder_server::EmbedderServer::new(service))
        },
        None,
        async move {
            let _ = stopped.await;
        },
    ));
    let channel = Channel::from_shared(address)
        .unwrap()
        .connect()
        .await
        .unwrap();
    Running {
        channel,
        metrics,
        entered,
        release,
        loaded: Some(loaded),
        stop: Some(stop),
        task,
    }
}

async fn health(channel: &Channel, service: &str) -> i32 {
    let request = HealthCheckRequest {
        service: service.into(),
    };
    HealthClient::new(channel.clone())
        .check(request)
        .await
        .unwrap()
        .into_inner()
        .status
}

async fn wait_for_health(channel: &Channel, status: ServingStatus) {
    for _ in 0..200 {
        if health(channel, "").await == status as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("health never became {status:?}");
}

const NAME: &str = "oneword.embedder.v1.Embedder";

#[tokio::test]
async fn not_serving_while_loading_then_serving_then_draining_until_the_last_call_ends() {
    let mut server = start(Duration::from_secs(30)).await;
    let mut client = pb::embedder_client::EmbedderClient::new(server.channel.clone());
    assert_eq!(
        health(&server.channel, "").await,
        ServingStatus::NotServing as i32
    );
    assert_eq!(
        health(&server.channel, NAME).await,
        ServingStatus::NotServing as i32
    );
    let loading = client.embed(pb::EmbedRequest::default()).await.unwrap_err();
    assert_eq!(loading.code(), Code::Unavailable);
    assert!(
        loading.message().contains("loading"),
        "{}",
        loading.message()
    );

    server.loaded.take().unwrap().send(()).unwrap();
    wait_for_health(&server.channel, ServingStatus::Serving).await;
    assert_eq!(
        health(&server.channel, NAME).await,
        ServingStatus::Serving as i32
    );
    client.embed(pb::EmbedRequest::default()).await.unwrap();

    // A call in flight, then the shutdown.
    let mut held = client.clone();
    let in_flight = tokio::spawn(async move { held.info(pb::InfoRequest {}).await });
    server.entered.notified().await;
    server.stop.take().unwrap().send(()).unwrap();
    wait_for_health(&server.channel, ServingStatus::NotServing).await;
    assert_eq!(
        health(&server.channel, NAME).await,
        ServingStatus::NotServing as i32
    );
    let refused = client.embed(pb::EmbedRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains("shutting down"),
        "{}",
        refused.message()
    );
    assert!(
        !server.task.is_finished(),
        "the drain waits for the call in flight"
    );

    let metrics = reqwest::get(&server.metrics)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = r#"oneword_requests_total{code="UNAVAILABLE",method="oneword.embedder.v1.Embedder/Embed",service="embedder"} 2"#;
    assert!(
        metrics.contains(series),
        "both refusals are counted: {metrics}"
    );

    server.release.notify_one();
    in_flight
        .await
        .unwrap()
        .expect("the call in flight finishes");
    server
        .task
        .await
        .unwrap()
        .expect("the server stops cleanly");
}

#[tokio::test]
async fn the_drain_gives_up_at_its_deadline() {
    let mut server = start(Duration::from_millis(300)).await;
    server.loaded.take().unwrap().send(()).unwrap();
    wait_for_health(&server.channel, ServingStatus::Serving).await;
    let mut client = pb::embedder_client::EmbedderClient::new(server.channel.clone());
    let _stuck = tokio::spawn(async move { client.info(pb::InfoRequest {}).await });
    server.entered.notified().await;
    // From here on time is tokio's, which jumps ahead whenever everything waits: the drain's
    // deadline and the close that follows are measured exactly, however busy the machine.
    tokio::time::pause();
    let asked = tokio::time::Instant::now();
    server.stop.take().unwrap().send(()).unwrap();
    // `serve` returns, so `main` returns and the process exits, taking the stuck call with it
    // (in this test process the call's task lives on: tonic cannot abort handlers).
    server.task.await.unwrap().expect("the server stops");
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "it waited for the drain: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "then gave up: {took:?}");
}

#[tokio::test]
async fn an_internal_server_answers_its_own_calls_only_with_the_token_and_health_always() {
    let token: ServiceToken = "s3cret".parse().unwrap();
    let mut server = start_with(Duration::from_secs(1), |s| s.service_token = token.clone()).await;
    server.loaded.take().unwrap().send(()).unwrap();
    wait_for_health(&server.channel, ServingStatus::Serving).await;
    assert_eq!(
        health(&server.channel, NAME).await,
        ServingStatus::Serving as i32
    );
    let wrong: ServiceToken = "guessed".parse().unwrap();
    for channel in [
        traced(server.channel.clone()),
        traced_with(server.channel.clone(), &wrong),
    ] {
        let refused = pb::embedder_client::EmbedderClient::new(channel)
            .embed(pb::EmbedRequest::default())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
        assert!(
            refused.message().contains("x-oneword-service-token")
                && !refused.message().contains("guessed"),
            "{}",
            refused.message()
        );
    }
    pb::embedder_client::EmbedderClient::new(traced_with(server.channel.clone(), &token))
        .embed(pb::EmbedRequest::default())
        .await
        .expect("the token opens the service");
}

#[tokio::test]
async fn a_public_server_asks_no_service_token_of_its_clients() {
    let mut server = start_with(Duration::from_secs(1), |s| {
        s.service_token = "s3cret".parse().unwrap();
        s.public = true;
    })
    .await;
    server.loaded.take().unwrap().send(()).unwrap();
    wait_for_health(&server.channel, ServingStatus::Serving).await;
    pb::embedder_client::EmbedderClient::new(server.channel.clone())
        .embed(pb::EmbedRequest::default())
        .await
        .expect("no token needed");
}
