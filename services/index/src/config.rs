//! The index's flags; every one can also be set through its `ONEWORD_INDEX_*` variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;

oneword_runtime::server_flags!("index", "INDEX", metrics = "0.0.0.0:9095");

#[derive(Clone, Debug, Parser)]
#[command(
    name = "oneword-index",
    about = "Collections of embedded points, searched exactly or through HNSW, stored in SQLite"
)]
pub struct Config {
    /// Address to serve gRPC on.
    #[arg(long, env = "ONEWORD_INDEX_LISTEN", default_value = "0.0.0.0:50055")]
    pub listen: SocketAddr,
    /// Directory of the database (`index.sqlite` and its WAL files); created if absent.
    #[arg(long, env = "ONEWORD_INDEX_DATA_DIR", default_value = "data/index")]
    pub data_dir: PathBuf,
    /// The embedder service that embeds texts (`http://host:port`); empty = none, and then
    /// text points, text queries and collections with a model are refused.
    #[arg(
        long,
        env = "ONEWORD_INDEX_EMBEDDER",
        default_value = "http://127.0.0.1:50052"
    )]
    pub embedder: String,
    /// Seconds to wait for a connection to the embedder before answering UNAVAILABLE.
    #[arg(long, env = "ONEWORD_INDEX_CONNECT_TIMEOUT_SECS", default_value_t = 5)]
    pub connect_timeout_secs: u64,
    /// Points at which an AUTO collection is searched through an HNSW graph instead of
    /// exactly (it goes back to exact under half of it).
    #[arg(long, env = "ONEWORD_INDEX_HNSW_THRESHOLD", default_value_t = 50_000)]
    pub hnsw_threshold: usize,
    /// Most points one Upsert may carry, and most ids one Retrieve or Delete may name.
    #[arg(long, env = "ONEWORD_INDEX_MAX_POINTS", default_value_t = 1024)]
    pub max_points: usize,
    /// Largest payload of one point, in bytes of JSON.
    #[arg(
        long,
        env = "ONEWORD_INDEX_MAX_PAYLOAD_BYTES",
        default_value_t = 65_536
    )]
    pub max_payload_bytes: usize,
    /// Largest `top_k` a search may ask for.
    #[arg(long, env = "ONEWORD_INDEX_MAX_TOP_K", default_value_t = 1000)]
    pub max_top_k: usize,
    /// Writes, searches and reads run at once, off the async workers.
    #[arg(long, env = "ONEWORD_INDEX_WORKERS", default_value_t = 2)]
    pub workers: usize,
    /// Calls that may wait for a worker; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "ONEWORD_INDEX_QUEUE_CAPACITY", default_value_t = 256)]
    pub queue_capacity: usize,
    /// Largest gRPC message accepted, in bytes.
    #[arg(long, env = "ONEWORD_INDEX_MAX_MESSAGE_BYTES", default_value_t = 16 << 20)]
    pub max_message_bytes: usize,
    #[command(flatten)]
    pub server: ServerFlags,
}

impl Config {
    /// Defaults for a data directory, without an embedder, as tests build it.
    pub fn for_data_dir(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref().to_string_lossy().into_owned();
        Config::parse_from(["oneword-index", "--data-dir", &dir, "--embedder", ""])
    }

    /// Checks that the limits make sense, naming the flag at fault.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (flag, value) in [
            ("--hnsw-threshold", self.hnsw_threshold),
            ("--max-points", self.max_points),
            ("--max-payload-bytes", self.max_payload_bytes),
            ("--max-top-k", self.max_top_k),
            ("--workers", self.workers),
            ("--queue-capacity", self.queue_capacity),
            ("--max-message-bytes", self.max_message_bytes),
        ] {
            if value == 0 {
                anyhow::bail!("`{flag}` must be at least 1, got 0");
            }
        }
        Ok(())
    }
}
