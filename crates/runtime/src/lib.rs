//! The common server runtime of the oneword services: one way to serve (with health,
//! reflection, metrics and traces, closed to callers without the service token), to drain and
//! stop, to log, and to say what went wrong and to pass deadlines on.

#![forbid(unsafe_code)]

pub mod clock;
pub mod deadline;
pub mod drain;
pub mod http_port;
pub mod metrics;
pub mod observe;
pub mod reflection;
pub mod released;
pub mod serve;
pub mod service_token;
pub mod settings;
pub mod status;
pub mod telemetry;
pub mod turns;

pub use clock::Clock;
pub use http_port::HttpLimits;
pub use metrics::Metrics;
/// The metric types services register, so that they need no dependency of their own.
pub use prometheus;
pub use released::Released;
pub use serve::{shutdown_signal, HttpApi, Listeners, More, ServeError, Server};
pub use service_token::ServiceToken;
pub use settings::Settings;
pub use status::SessionError;
pub use turns::{TurnError, Turns};
