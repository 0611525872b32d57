//! A harness that starts the four oneword services in this process on `127.0.0.1:0`, waits
//! until each answers its health check, and hands back their addresses, clients and a way to
//! stop any of them.

#![forbid(unsafe_code)]

pub mod cli;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use oneword_proto::decoder::v1::decoder_client::DecoderClient;
use oneword_proto::gateway::v1::gateway_client::GatewayClient;
use oneword_proto::tokenizer::v1::tokenizer_client::TokenizerClient;
use oneword_runtime::Listeners;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A greedy generation request: the same tokens every time.
pub fn greedy(prompt: &str, max_new_tokens: u32) -> oneword_proto::gateway::v1::GenerateRequest {
    oneword_proto::gateway::v1::GenerateRequest {
        prompt: prompt.into(),
        max_new_tokens: Some(max_new_tokens),
        temperature: Some(0.0),
        ..Default::default()
    }
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The tiny random GPT-2 (2 layers, width 64, the real vocabulary), written once per test
/// process by the same tool `make demo-model` uses.
pub fn tiny_model() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        oneword_model::tiny::RandomCheckpoint::tiny()
            .write(dir.path(), &repo().join("tests/fixtures/gpt2-tokenizer"))
            .expect("writing the tiny model");
        dir
    })
    .path()
}

/// The checkpoint written by transformers' `save_pretrained`, with its reference logits.
pub fn hf_model() -> PathBuf {
    repo().join("tests/fixtures/tiny-gpt2-hf")
}

/// One running service.
pub struct Running {
    /// Its gRPC address, `http://127.0.0.1:port`.
    pub address: String,
    /// Where its Prometheus metrics are, `http://127.0.0.1:port/metrics`.
    pub metrics: String,
    /// The gateway's HTTP API, `http://127.0.0.1:port`.
    pub http: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Waits until the service stops by itself (a signal), returning how `run` ended.
    pub async fn finished(&mut self) -> anyhow::Result<()> {
        (&mut self.task).await?
    }

    /// Stops the service and waits until it has.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a service on free loopback ports (an HTTP one too when `http`) and waits until it is
/// healthy.
pub async fn start<F, Fut>(http: bool, run: F) -> Running
where
    F: FnOnce(Listeners, oneshot::Receiver<()>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let listeners = Listeners::loopback(http)
        .await
        .expect("binding 127.0.0.1:0");
    start_on(listeners, run).await
}

/// Starts a service on `listeners` and waits until it is healthy.
pub async fn start_on<F, Fut>(listeners: Listeners, run: F) -> Running
where
    F: FnOnce(Listeners, oneshot::Receiver<()>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let url = |l: &TcpListener| format!("http://{}", l.local_addr().expect("a bound address"));
    let address = url(&listeners.grpc);
    let metrics = format!("{}/metrics", url(&listeners.metrics));
    let http = listeners.http.as_ref().map(url);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(run(listeners, stopped));
    let running = Running {
        address,
        metrics,
        http,
        stop: Some(stop),
        task,
    };
    wait_serving(&running).await;
    running
}

/// Polls the health check until SERVING, for at most a minute (loading is quick for test models,
/// but CI machines are slow and shared).
async fn wait_serving(service: &Running) {
    let mut backoff = Duration::from_millis(5);
    for _ in 0..200 {
        if service.task.is_finished() {
            panic!("the service at {} exited while starting", service.address);
        }
        if let Ok(channel) = Channel::from_shared(service.address.clone())
            .unwrap()
            .connect()
            .await
        {
            let status = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if status.is_ok_and(|s| s.into_inner().status == ServingStatus::Serving as i32) {
                return;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(300));
    }
    panic!("the service at {} did not become healthy", service.address);
}

/// Completes when the harness asks the service to stop.
pub async fn until(stopped: oneshot::Receiver<()>) {
    let _ = stopped.await;
}

/// The four services, started on one model directory.
pub struct Cluster {
    pub tokenizer: Running,
    pub embedder: Running,
    pub decoder: Running,
    pub gateway: Running,
}

impl Cluster {
    /// Starts tokenizer, embedder, decoder and gateway on `model`, with default settings.
    pub async fn start(model: &Path) -> Cluster {
        Self::start_with(model, |_| {}).await
    }

    /// Like [`Cluster::start`], letting the test adjust the decoder's config first.
    pub async fn start_with(
        model: &Path,
        adjust_decoder: impl FnOnce(&mut oneword_decoder::Config),
    ) -> Cluster {
        Self::start_configured(model, adjust_decoder, |_| {}).await
    }

    /// Like [`Cluster::start`], letting the test adjust the decoder's and the gateway's configs.
    pub async fn start_configured(
        model: &Path,
        adjust_decoder: impl FnOnce(&mut oneword_decoder::Config),
        adjust_gateway: impl FnOnce(&mut oneword_gateway::Config),
    ) -> Cluster {
        // Logs go through the test harness's capture, shown only for failing tests.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
            )
            .with_test_writer()
            .try_init();
        let model = model.to_str().expect("a UTF-8 model path").to_string();
        let tokenizer_config = oneword_tokenizer::Config::for_model(&model);
        let tokenizer = start(false, |l, s| {
            oneword_tokenizer::run(tokenizer_config, l, until(s))
        })
        .await;
        let embedder_config = oneword_embedder::Config::for_model(&model);
        let embedder = start(false, |l, s| {
            oneword_embedder::run(embedder_config, l, until(s))
        })
        .await;
        let mut decoder_config = oneword_decoder::Config::for_model(&model);
        adjust_decoder(&mut decoder_config);
        let decoder = start(false, |l, s| {
            oneword_decoder::run(decoder_config, l, until(s))
        })
        .await;
        let mut gateway_config = oneword_gateway::Config::for_services(
            tokenizer.address.clone(),
            embedder.address.clone(),
            decoder.address.clone(),
        );
        adjust_gateway(&mut gateway_config);
        let gateway = start(true, |l, s| {
            oneword_gateway::run(gateway_config, l, until(s))
        })
        .await;
        Cluster {
            tokenizer,
            embedder,
            decoder,
            gateway,
        }
    }

    /// A client of the public API.
    pub async fn gateway(&self) -> GatewayClient<Channel> {
        GatewayClient::connect(self.gateway.address.clone())
            .await
            .expect("connecting to the gateway")
    }

    /// A client of the decoder, to look at its sessions.
    pub async fn decoder(&self) -> DecoderClient<Channel> {
        DecoderClient::connect(self.decoder.address.clone())
            .await
            .expect("connecting to the decoder")
    }

    /// Waits until the decoder holds no session and runs no step, and returns its `Info`.
    pub async fn decoder_idle(&self) -> oneword_proto::decoder::v1::InfoResponse {
        decoder_idle(&self.decoder.address).await
    }

    /// A client of the tokenizer.
    pub async fn tokenizer(&self) -> TokenizerClient<Channel> {
        TokenizerClient::connect(self.tokenizer.address.clone())
            .await
            .expect("connecting to the tokenizer")
    }
}

/// Polls the decoder at `address` until it holds no session (transformer or n-gram) and runs or
/// queues no step, for at most 10 s, and returns its `Info`. The gateway releases a finished
/// request's sessions in the background, so they may outlive its answer by a moment.
pub async fn decoder_idle(address: &str) -> oneword_proto::decoder::v1::InfoResponse {
    let mut decoder = DecoderClient::connect(address.to_string())
        .await
        .expect("connecting to the decoder");
    let mut info = Default::default();
    for _ in 0..200 {
        info = decoder
            .info(oneword_proto::decoder::v1::InfoRequest {})
            .await
            .expect("decoder info")
            .into_inner();
        let oneword_proto::decoder::v1::InfoResponse {
            sessions,
            ngram_sessions,
            requests_running,
            requests_waiting,
            ..
        } = info;
        if sessions + ngram_sessions + requests_running + requests_waiting == 0 {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the decoder still holds {} sessions and {} n-gram sessions, with {} running and {} \
         waiting steps",
        info.sessions, info.ngram_sessions, info.requests_running, info.requests_waiting
    );
}

/// Asserts that a call failed with `code` and a message naming `needle` (a field, a value).
pub fn refused<T>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: tonic::Code,
    needle: &str,
) {
    let status = result.err().expect("the call should fail");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(needle),
        "{needle:?} not in {:?}",
        status.message()
    );
}
