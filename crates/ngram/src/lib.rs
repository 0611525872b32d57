//! Letter and word n-gram models made by counting a corpus, for n = 1…6: the baseline that
//! Stephen Wolfram's essay "What Is ChatGPT Doing … and Why Does It Work?" starts from (its §2),
//! before any neural net.
//!
//! [`Ngram`] counts every k-gram (k = 1…n) of a sequence of symbols and gives the probability of
//! the next symbol after the last n − 1, backing off to shorter contexts the corpus never showed.
//! It samples by inverse CDF at a uniform number `u` the caller supplies, so a sampling loop
//! elsewhere (the gateway's) drives it exactly as it drives GPT-2: the same corpus and the same
//! `u`s give the same output, whatever order a hash map iterates in.
//!
//! On top of it, the essay's instruments: [`letter_frequencies`], [`letter_pair_matrix`] (after
//! "q" comes "u"), [`random_words`] from letter models that look more like English as n grows,
//! and [`word_sentence`] from word models. [`Corpus::bundled`] is four books of the King James
//! Bible to count.
//!
//! ```
//! use oneword_ngram::{seeded_uniforms, Corpus, LetterModel};
//!
//! let model = LetterModel::train("the cat sat on the mat", 3)?;
//! let words = model.random_words(4, seeded_uniforms(7))?;
//! assert_eq!(words.len(), 4);
//! assert!(Corpus::bundled().text().starts_with("In the beginning"));
//! # Ok::<(), oneword_ngram::Error>(())
//! ```

#![forbid(unsafe_code)]

mod corpus;
mod count;
mod error;
mod essay;
mod ngram;
mod text;
mod uniform;

/// Properties shared by the property tests and the fuzz targets (`make fuzz`); not an API.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod checks;
#[cfg(test)]
mod properties;

pub use corpus::Corpus;
pub use error::{Error, Result};
pub use essay::{
    letter_frequencies, letter_pair_matrix, random_words, word_sentence, LetterModel, LetterPairs,
    WordModel, LETTER_ALPHABET, MAX_WORD_LETTERS,
};
pub use ngram::{Distribution, Ngram};
pub use text::{letters, words, Vocabulary, SPACE};
pub use uniform::seeded_uniforms;

/// The largest n (the longest k-gram counted), as in the essay's tables of letter n-grams.
pub const MAX_ORDER: usize = 6;

/// The most symbols, words or random words one call may generate: a bound on the work and
/// memory one request can ask for.
pub const MAX_LEN: usize = 100_000;
