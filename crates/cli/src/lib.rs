//! `oneword`: the command line for people, talking to the gateway only.
//!
//! `config` holds the flags, `commands` the calls, `render` (text) and `json` (`--json`) turn
//! responses into output without any I/O, `collect` reassembles streamed completions.

#![forbid(unsafe_code)]

mod analysis;
mod client;
mod collect;
mod commands;
mod config;
mod error;
mod json;
mod picture;
mod render;

pub use client::normalize_address;
pub use commands::{run, Output};
pub use config::{Cli, ColorChoice, Command};
pub use error::Error;
pub use render::Style;
