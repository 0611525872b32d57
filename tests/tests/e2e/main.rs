//! The end-to-end tests that can share a process, as one test binary: each module starts the
//! services it needs on its own loopback ports. Linking one binary instead of eleven is most of
//! what `make test` saves (each links tonic, candle and tokenizers). The tests that need a
//! process of their own stay apart: `flood` (it watches the process's memory), `shutdown` (a
//! real SIGTERM) and `tracing` (a global subscriber).

mod cli;
mod client_sessions;
mod compatibility;
mod concurrency;
mod docs;
mod embeddings;
mod errors;
mod failover;
mod generation;
mod http;
mod instruments;
mod internal_auth;
mod limits;
mod ngrams;
mod pictures;
mod production;
mod prompts;
mod requests;
mod sampling_options;
mod search;
mod sessions;
mod stopping;
