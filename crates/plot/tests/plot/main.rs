//! The plot crate's tests, as one test binary.

mod charts;
mod errors;
