//! Everything the crate can fail with. Every failure is a caller's input out of range, so each
//! message names the input, the value and what is allowed.

use std::io;
use std::path::PathBuf;

use crate::{MAX_LEN, MAX_ORDER};

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a model could not be trained or sampled.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `n` is outside `1..=MAX_ORDER`.
    #[error("`n` must be in 1..={MAX_ORDER}, got {0}")]
    OrderOutOfRange(usize),
    /// The sequence or text to train on is empty.
    #[error("the corpus is empty")]
    EmptyCorpus,
    /// The text to train on has no letters a–z, so it has no letters and no words.
    #[error("the corpus contains no letters a-z")]
    NoLetters,
    /// A corpus file is missing, unreadable or not UTF-8.
    #[error("corpus file `{}` could not be read: {source}", path.display())]
    UnreadableFile {
        /// The file as the caller named it.
        path: PathBuf,
        /// What reading it failed with.
        source: io::Error,
    },
    /// A corpus file has no bytes.
    #[error("corpus file `{}` is empty", path.display())]
    EmptyFile {
        /// The file as the caller named it.
        path: PathBuf,
    },
    /// A corpus file has text but no letters a–z.
    #[error("corpus file `{}` contains no letters a-z", path.display())]
    NoLettersInFile {
        /// The file as the caller named it.
        path: PathBuf,
    },
    /// The corpus has more distinct symbols than an n-gram key of order `n` can hold.
    #[error("the corpus has {distinct} distinct symbols, but `n` = {n} allows at most {max}")]
    TooManySymbols {
        /// Distinct symbols in the corpus.
        distinct: usize,
        /// The order asked for.
        n: usize,
        /// The most distinct symbols order `n` supports.
        max: u64,
    },
    /// A uniform number for inverse-CDF sampling is not in `[0, 1)` (or is NaN).
    #[error("`u` must be in [0, 1), got {0}")]
    UniformOutOfRange(f64),
    /// A length or count to generate is above [`MAX_LEN`].
    #[error("`{field}` must be in 0..={MAX_LEN}, got {value}")]
    LengthOutOfRange {
        /// The argument's name: `len` or `count`.
        field: &'static str,
        /// What the caller asked for.
        value: usize,
    },
    /// The start of a word sentence has no words a–z at all.
    #[error("`start` must contain a word of letters a-z, got {0:?}")]
    NoStartWord(String),
    /// A start word of a word sentence is not in the corpus the model was trained on.
    #[error("`start` word {0:?} does not occur in the corpus")]
    UnknownStartWord(String),
}
