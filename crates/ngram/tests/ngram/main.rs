//! The n-gram crate's tests, as one test binary.

mod errors;
mod essay;
mod ngram;
