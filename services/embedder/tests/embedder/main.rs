//! The embedder's service tests, as one test binary.

mod harness;
mod service;
mod words;
