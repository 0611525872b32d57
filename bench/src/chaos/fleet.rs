//! The services as child processes on 127.0.0.1, so that faults are real: SIGKILL, SIGSTOP and
//! SIGTERM reach a process, its sockets and its memory, not a task in the driver's runtime.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use oneword_proto::decoder::v1 as dec;
use oneword_proto::gateway::v1::gateway_client::GatewayClient;
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// How long a process may take to answer its health check as SERVING.
const START_LIMIT: Duration = Duration::from_secs(120);

/// Where the binaries and the model are, and where logs go.
#[derive(Clone, Debug)]
pub struct Setup {
    pub bin_dir: PathBuf,
    pub model: PathBuf,
    pub logs: PathBuf,
}

/// What to start: replica counts and extra flags.
#[derive(Clone, Debug, Default)]
pub struct Shape {
    /// Tokenizer and embedder replicas each (at least 1).
    pub stateless_replicas: usize,
    pub decoders: usize,
    pub decoder_flags: Vec<String>,
    pub gateway_flags: Vec<String>,
    /// The token every service demands of its callers (and the gateway sends); none = no check.
    pub service_token: Option<String>,
}

/// One service process: its addresses, its command line and the running child.
pub struct Service {
    pub name: String,
    binary: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    pub grpc: SocketAddr,
    pub metrics: SocketAddr,
    pub http: Option<SocketAddr>,
    child: Option<Child>,
}

/// Every process of one deployment.
pub struct Fleet {
    pub tokenizers: Vec<Service>,
    pub embedders: Vec<Service>,
    pub decoders: Vec<Service>,
    pub gateway: Service,
}

/// A port that was free a moment ago (the services bind it right after), below the kernel's
/// ephemeral range: a port the kernel hands out for `:0` may be taken in between by the
/// outgoing connection of any client (this driver's own floods open thousands).
fn free_port() -> anyhow::Result<SocketAddr> {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Ports handed out in turn, from a start that differs from run to run.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, span) = (10_000, ephemeral_start.saturating_sub(10_000).max(1));
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id() % u32::from(span)) as u16 + 1,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = low + NEXT.fetch_add(1, Ordering::Relaxed) % span;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return Ok(listener.local_addr()?);
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl Fleet {
    pub async fn start(setup: &Setup, shape: &Shape) -> anyhow::Result<Fleet> {
        let model = setup.model.display().to_string();
        let token: Vec<String> = shape
            .service_token
            .iter()
            .flat_map(|t| ["--service-token".to_string(), t.clone()])
            .collect();
        let token = token.iter().map(String::as_str);
        let replicas = shape.stateless_replicas.max(1);
        let mut tokenizers = Vec::new();
        let mut embedders = Vec::new();
        let mut decoders = Vec::new();
        for i in 0..replicas {
            tokenizers.push(Service::new(
                setup,
                "tokenizer",
                i,
                ["--model", &model].into_iter().chain(token.clone()),
            )?);
            embedders.push(Service::new(
                setup,
                "embedder",
                i,
                ["--model", &model, "--text-model", "", "--device", "cpu"]
                    .into_iter()
                    .chain(token.clone()),
            )?);
        }
        for i in 0..shape.decoders {
            let mut flags = vec!["--model", &model, "--device", "cpu"];
            flags.extend(shape.decoder_flags.iter().map(String::as_str));
            flags.extend(token.clone());
            decoders.push(Service::new(setup, "decoder", i, flags)?);
        }
        let urls = |services: &[Service]| {
            services
                .iter()
                .map(|s| format!("http://{}", s.grpc))
                .collect::<Vec<_>>()
                .join(",")
        };
        let http = free_port()?;
        let mut flags = vec![
            "--tokenizer".to_string(),
            urls(&tokenizers),
            "--embedder".into(),
            urls(&embedders),
            "--decoder".into(),
            urls(&decoders),
            "--baseline".into(),
            String::new(),
            "--index".into(),
            String::new(),
            "--http-listen".into(),
            http.to_string(),
        ];
        flags.extend(shape.gateway_flags.iter().cloned());
        flags.extend(token.map(str::to_string));
        let mut gateway = Service::new(setup, "gateway", 0, flags.iter().map(String::as_str))?;
        gateway.http = Some(http);

        let mut fleet = Fleet {
            tokenizers,
            embedders,
            decoders,
            gateway,
        };
        for service in fleet.all_mut() {
            service.spawn()?;
        }
        for service in fleet.all_mut() {
            service.wait_serving().await?;
        }
        Ok(fleet)
    }

    fn all_mut(&mut self) -> impl Iterator<Item = &mut Service> {
        self.tokenizers
            .iter_mut()
            .chain(self.embedders.iter_mut())
            .chain(self.decoders.iter_mut())
            .chain(std::iter::once(&mut self.gateway))
    }

    pub fn all(&self) -> impl Iterator<Item = &Service> {
        self.tokenizers
            .iter()
            .chain(self.embedders.iter())
            .chain(self.decoders.iter())
            .chain(std::iter::once(&self.gateway))
    }

    pub async fn gateway_client(&self) -> anyhow::Result<GatewayClient<Channel>> {
        let channel = Channel::from_shared(format!("http://{}", self.gateway.grpc))?
            .connect()
            .await?;
        Ok(GatewayClient::new(channel)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(64 << 20))
    }

    /// Kills every process (the scenario is over; nothing is drained).
    pub async fn stop(mut self) {
        for service in self.all_mut() {
            service.kill().await;
        }
    }
}

impl Service {
    fn new<'a>(
        setup: &Setup,
        role: &str,
        index: usize,
        flags: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<Service> {
        let name = format!("{role}-{index}");
        let (grpc, metrics) = (free_port()?, free_port()?);
        let mut args: Vec<String> = vec![
            "--listen".into(),
            grpc.to_string(),
            "--metrics-listen".into(),
            metrics.to_string(),
        ];
        args.extend(flags.into_iter().map(str::to_string));
        Ok(Service {
            binary: setup.bin_dir.join(format!("oneword-{role}")),
            log: setup.logs.join(format!("{name}.log")),
            name,
            args,
            grpc,
            metrics,
            http: None,
            child: None,
        })
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Polls the health check until SERVING; fails if the process exits first.
    pub async fn wait_serving(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < START_LIMIT {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "{} exited with {status} while starting; see {}",
                        self.name,
                        self.log.display()
                    );
                }
            }
            if self.serving().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "{} did not become healthy within {START_LIMIT:?}",
            self.name
        )
    }

    async fn serving(&self) -> bool {
        let Ok(channel) = Channel::from_shared(format!("http://{}", self.grpc))
            .expect("a valid URL")
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(1))
            .connect()
            .await
        else {
            return false;
        };
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await;
        matches!(answer, Ok(r) if r.get_ref().status == ServingStatus::Serving as i32)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Sends a signal (`KILL`, `STOP`, `CONT`, `TERM`) with kill(1).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("the process is not running")?;
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
        Ok(())
    }

    /// SIGKILL, and waits for the exit.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM (a drain, as Kubernetes does in a rollout), waits for the exit, starts the same
    /// command on the same ports and waits until it serves. Returns how long the drain took.
    pub async fn restart(&mut self, drain_limit: Duration) -> anyhow::Result<Duration> {
        let began = Instant::now();
        self.signal("TERM")?;
        let mut child = self.child.take().context("not running")?;
        if tokio::time::timeout(drain_limit, child.wait())
            .await
            .is_err()
        {
            bail!(
                "{} did not exit within {drain_limit:?} of SIGTERM",
                self.name
            );
        }
        let drained = began.elapsed();
        self.spawn()?;
        self.wait_serving().await?;
        Ok(drained)
    }

    fn proc_file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.pid()?)).ok()
    }

    /// Resident memory in bytes (0 when unknown).
    pub fn rss(&self) -> u64 {
        self.proc_file("statm")
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |pages| pages * 4096)
    }

    /// Open file descriptors (sockets included).
    pub fn fds(&self) -> usize {
        self.pid()
            .and_then(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok())
            .map_or(0, |entries| entries.count())
    }

    /// User + system CPU seconds used so far.
    pub fn cpu_seconds(&self) -> f64 {
        // /proc/PID/stat: fields 14 and 15 (utime, stime) in clock ticks, counted after the
        // command name, which is in parentheses and may hold spaces.
        self.proc_file("stat")
            .and_then(|stat| {
                let rest = stat.rsplit_once(')')?.1;
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let ticks =
                    fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
                Some(ticks / 100.0)
            })
            .unwrap_or(0.0)
    }

    /// The decoder's `Info`: sessions, cached bytes, running and waiting steps.
    pub async fn decoder_info(&self) -> anyhow::Result<dec::InfoResponse> {
        let channel = Channel::from_shared(format!("http://{}", self.grpc))?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(2))
            .connect()
            .await?;
        Ok(dec::decoder_client::DecoderClient::new(channel)
            .info(dec::InfoRequest {})
            .await?
            .into_inner())
    }

    /// The metrics port's text.
    pub async fn scrape(&self) -> anyhow::Result<String> {
        scrape(self.metrics).await
    }

    /// The sum of every sample of the metric `name` on the metrics port.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = self.scrape().await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum())
    }
}

/// `GET /metrics` over plain HTTP/1.0.
async fn scrape(address: SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n")
        .await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body)
}

/// Writes the tiny model if `dir` holds none (the same tool `make demo-model` runs).
pub fn ensure_model(bin_dir: &Path, dir: &Path, tokenizer: &Path) -> anyhow::Result<()> {
    if dir.join("config.json").is_file() {
        return Ok(());
    }
    let status = std::process::Command::new(bin_dir.join("oneword-model"))
        .arg("random")
        .arg(dir)
        .arg("--tokenizer")
        .arg(tokenizer)
        .status()
        .context("running oneword-model random")?;
    anyhow::ensure!(status.success(), "oneword-model random failed");
    Ok(())
}
