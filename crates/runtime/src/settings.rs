//! The flags every server has (metrics port, logs, traces, draining, connection age, the
//! internal services' token), declared
//! once here and stamped into each service's config so that each gets its own
//! `ONEWORD_<ROLE>_*` variables.

use std::net::SocketAddr;
use std::time::Duration;

use crate::service_token::ServiceToken;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The shared server settings, as the runtime uses them.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `tokenizer`, `embedder`, `decoder` or `gateway`: the metrics' `service` label and the
    /// traces' service name.
    pub role: &'static str,
    pub metrics_listen: SocketAddr,
    pub log_format: LogFormat,
    /// Where traces are exported (OTLP over gRPC); none means no export.
    pub otlp_endpoint: Option<String>,
    /// How long in-flight calls get to finish after a shutdown signal.
    pub drain: Duration,
    /// Connections older than this are closed (gracefully), so that clients re-resolve the
    /// service's DNS name and new replicas get a share of the traffic.
    pub max_connection_age: Duration,
    /// The internal services' shared secret: this server's calls to them carry it and, unless
    /// it is `public`, every call of its own API must.
    pub service_token: ServiceToken,
    /// Whether this server's own API is public (the gateway's: its clients carry the API key,
    /// never the service token).
    pub public: bool,
}

/// Declares `pub struct ServerFlags` (clap `Args`) for one role, with variables named
/// `ONEWORD_<ROLE>_*`, and `ServerFlags::settings()`. Each service's `Config` flattens it.
/// `public = true` marks the server whose API is public (the gateway); the others are internal.
#[macro_export]
macro_rules! server_flags {
    ($role:literal, $role_env:literal, metrics = $metrics:literal) => {
        $crate::server_flags!($role, $role_env, metrics = $metrics, public = false);
    };
    ($role:literal, $role_env:literal, metrics = $metrics:literal, public = $public:literal) => {
        /// The flags every oneword server has.
        #[derive(Clone, Debug, clap::Args)]
        pub struct ServerFlags {
            /// Address to serve Prometheus metrics on (`GET /metrics`).
            #[arg(long, env = concat!("ONEWORD_", $role_env, "_METRICS_LISTEN"), default_value = $metrics)]
            pub metrics_listen: std::net::SocketAddr,
            /// Log format: `text` (for people) or `json` (one object per line, for collectors).
            #[arg(long, env = concat!("ONEWORD_", $role_env, "_LOG_FORMAT"), default_value = "text", value_parser = ["text", "json"])]
            pub log_format: String,
            /// OTLP/gRPC endpoint to export traces to, such as `http://otel-collector:4317`;
            /// empty = no export. The `OTEL_*` variables of the OpenTelemetry SDK apply too.
            #[arg(long, env = concat!("ONEWORD_", $role_env, "_OTLP_ENDPOINT"), default_value = "")]
            pub otlp_endpoint: String,
            /// Seconds in-flight calls get to finish after SIGTERM or Ctrl-C, while new ones are
            /// refused with UNAVAILABLE and health says NOT_SERVING.
            #[arg(long, env = concat!("ONEWORD_", $role_env, "_DRAIN_SECS"), default_value_t = 20)]
            pub drain_secs: u64,
            /// Seconds after which a client's connection is closed gracefully, so that clients
            /// re-resolve DNS and new replicas get traffic.
            #[arg(long, env = concat!("ONEWORD_", $role_env, "_MAX_CONNECTION_AGE_SECS"), default_value_t = 300)]
            pub max_connection_age_secs: u64,
            /// Token shared by the services, sent as `x-oneword-service-token`: the tokenizer,
            /// embedder, decoder, baseline and index answer only calls that carry it (health and
            /// reflection stay open), and the gateway and index send it on their calls to them.
            /// A comma-separated list rotates it: every token listed is accepted, the first is
            /// sent. Empty = no check (local development).
            #[arg(
                long,
                env = concat!("ONEWORD_", $role_env, "_SERVICE_TOKEN"),
                default_value = "",
                hide_default_value = true,
                hide_env_values = true,
                value_parser = $crate::service_token::Parser
            )]
            pub service_token: $crate::service_token::ServiceToken,
        }

        impl ServerFlags {
            /// The settings the runtime takes.
            pub fn settings(&self) -> $crate::settings::Settings {
                $crate::settings::Settings {
                    role: $role,
                    metrics_listen: self.metrics_listen,
                    log_format: if self.log_format == "json" {
                        $crate::settings::LogFormat::Json
                    } else {
                        $crate::settings::LogFormat::Text
                    },
                    otlp_endpoint: Some(self.otlp_endpoint.trim().to_string())
                        .filter(|e| !e.is_empty()),
                    drain: std::time::Duration::from_secs(self.drain_secs),
                    max_connection_age: std::time::Duration::from_secs(
                        self.max_connection_age_secs.max(1),
                    ),
                    service_token: self.service_token.clone(),
                    public: $public,
                }
            }
        }
    };
}
