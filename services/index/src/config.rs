//! The index's flags; every one can also be set through its `ONEWORD_INDEX_*` variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;

oneword_runtime::server_flags!("index", "INDEX", metrics = "0.0.0.0:9095");

#[derive(Clone, Debug, Parser)]
#[command(
    name = "oneword-index",
    about = "Collections of embedded points, searched exactly or through HNSW, stored in SQLite or in PostgreSQL + pgvector"
)]
pub struct Config {
    /// Address to serve gRPC on.
    #[arg(long, env = "ONEWORD_INDEX_LISTEN", default_value = "0.0.0.0:50055")]
    pub listen: SocketAddr,
    /// Directory of the embedded database (`index.sqlite` and its WAL files); created if absent;
    /// unused with `--postgres`.
    #[arg(long, env = "ONEWORD_INDEX_DATA_DIR", default_value = "data/index")]
    pub data_dir: PathBuf,
    /// PostgreSQL with the pgvector extension to keep the collections in, instead of the embedded
    /// SQLite store in `--data-dir`: a libpq-style DSN (`host=db port=5432 user=oneword
    /// dbname=oneword`) or a `postgresql://` URL; empty = embedded. Any number of index replicas
    /// may share one database; without TLS (`sslmode=disable` or `prefer`).
    #[arg(long, env = "ONEWORD_INDEX_POSTGRES", default_value = "")]
    pub postgres: Postgres,
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
    /// Most searches one SearchBatch may carry.
    #[arg(long, env = "ONEWORD_INDEX_MAX_SEARCH_BATCH", default_value_t = 256)]
    pub max_search_batch: usize,
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

/// The `--postgres` DSN, checked when the flags are parsed; shown without its password.
#[derive(Clone, Default)]
pub struct Postgres(Option<postgres::Config>);

impl Postgres {
    /// The parsed DSN, if one was given.
    pub fn config(&self) -> Option<&postgres::Config> {
        self.0.as_ref()
    }
}

impl std::str::FromStr for Postgres {
    type Err = String;

    fn from_str(dsn: &str) -> Result<Self, String> {
        if dsn.trim().is_empty() {
            return Ok(Postgres(None));
        }
        let config = dsn.parse::<postgres::Config>().map_err(|e| {
            format!("`--postgres` must be a libpq-style DSN (`host=… dbname=…`) or a `postgresql://` URL: {e}")
        })?;
        Ok(Postgres(Some(config)))
    }
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("\"\""),
            // The effective configuration is logged at start-up: never the password.
            Some(config) => write!(f, "{:?}", redacted(config)),
        }
    }
}

/// Where a DSN points, for logs: hosts, ports, user and database, no password.
pub fn redacted(config: &postgres::Config) -> String {
    use postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "host={} port={} user={} dbname={}",
        hosts.join(","),
        ports.join(","),
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
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
            ("--max-search-batch", self.max_search_batch),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_dsn_is_checked_and_logged_without_its_password() {
        let config = Config::parse_from([
            "oneword-index",
            "--postgres",
            "postgresql://oneword:s3cret@db.example:5433/vectors",
        ]);
        let pg = config.postgres.config().expect("a DSN was given");
        assert_eq!(pg.get_dbname(), Some("vectors"));
        let logged = format!("{config:?}");
        assert!(!logged.contains("s3cret"), "{logged}");
        assert!(
            logged.contains("host=db.example port=5433 user=oneword dbname=vectors"),
            "{logged}"
        );
        assert!(Config::for_data_dir("x").postgres.config().is_none());
        let bad = Config::try_parse_from(["oneword-index", "--postgres", "host=a port=notaport"])
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("`--postgres` must be a libpq-style DSN"),
            "{bad}"
        );
    }
}
