//! The common server runtime of the oneword services: one way to serve (with health,
//! reflection, metrics and traces), to drain and stop, to log, and to say what went wrong and to
//! pass deadlines on.

#![forbid(unsafe_code)]

pub mod clock;
pub mod deadline;
pub mod drain;
pub mod metrics;
pub mod observe;
pub mod serve;
pub mod settings;
pub mod status;
pub mod telemetry;
pub mod turns;

pub use clock::Clock;
pub use metrics::Metrics;
/// The metric types services register, so that they need no dependency of their own.
pub use prometheus;
pub use serve::{shutdown_signal, HttpApi, Listeners, ServeError, Server};
pub use settings::Settings;
pub use status::SessionError;
pub use turns::{TurnError, Turns};
