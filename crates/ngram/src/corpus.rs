//! The text a model is counted from: the bundled King James books or a file of the caller's.

use std::borrow::Cow;
use std::path::Path;

use crate::{letters, words, Error, Result};

/// Genesis, Exodus, Psalms and Proverbs (King James Version, public domain), one verse per
/// line; `corpus/README.md` says how it was made.
const BUNDLED: &str = include_str!("../corpus/kjv.txt");

/// A text with at least one letter a–z, ready to count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corpus {
    text: Cow<'static, str>,
}

impl Corpus {
    /// The bundled corpus: Genesis, Exodus, Psalms and Proverbs from the King James Bible,
    /// one verse per line, 669,897 bytes of ASCII (128,699 words).
    pub fn bundled() -> Self {
        Corpus {
            text: Cow::Borrowed(BUNDLED),
        }
    }

    /// A corpus of `text`, which must have at least one letter a–z.
    pub fn from_text(text: impl Into<String>) -> Result<Self> {
        let text = text.into();
        if text.is_empty() {
            return Err(Error::EmptyCorpus);
        }
        if !has_letters(&text) {
            return Err(Error::NoLetters);
        }
        Ok(Corpus {
            text: Cow::Owned(text),
        })
    }

    /// The UTF-8 text of the file at `path`, which must have at least one letter a–z.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::UnreadableFile {
            path: path.to_owned(),
            source,
        })?;
        if text.is_empty() {
            return Err(Error::EmptyFile {
                path: path.to_owned(),
            });
        }
        if !has_letters(&text) {
            return Err(Error::NoLettersInFile {
                path: path.to_owned(),
            });
        }
        Ok(Corpus {
            text: Cow::Owned(text),
        })
    }

    /// The text as it was given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text normalised for letter models: see [`letters`].
    pub fn letters(&self) -> Vec<char> {
        letters(&self.text)
    }

    /// The text normalised for word models: see [`words`].
    pub fn words(&self) -> Vec<String> {
        words(&self.text)
    }
}

fn has_letters(text: &str) -> bool {
    text.bytes().any(|b| b.is_ascii_alphabetic())
}
