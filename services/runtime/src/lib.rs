//! The common server runtime of the oneword services: one way to serve (with health and
//! reflection), to stop, to log, to say what went wrong, to put tensors on the wire and to pass
//! deadlines on.

#![forbid(unsafe_code)]

pub mod deadline;
pub mod model_info;
pub mod serve;
pub mod status;
pub mod telemetry;
pub mod tensor;

pub use model_info::model_info;
pub use serve::{serve, shutdown_signal, ServeError};
