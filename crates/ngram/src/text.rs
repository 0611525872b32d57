//! Text normalisation as the essay does it: letters a–z and one symbol for the gaps between
//! words, or words; and the word ⇄ id mapping that word models count with.

use std::collections::{HashMap, HashSet};

/// The symbol that stands for each run of non-letters in [`letters`]: the 27th letter.
pub const SPACE: char = ' ';

/// The letters of `text`, lowercased, with every run of anything else (spaces, punctuation,
/// digits, non-ASCII letters) replaced by one [`SPACE`], at the ends too: `"Hi, you!"` becomes
/// `"hi you "`. So there are 27 symbols, and a space is never followed by a space.
pub fn letters(text: &str) -> Vec<char> {
    let mut out = Vec::with_capacity(text.len());
    let mut in_gap = false;
    for c in text.chars() {
        if c.is_ascii_alphabetic() {
            out.push(c.to_ascii_lowercase());
            in_gap = false;
        } else if !in_gap {
            out.push(SPACE);
            in_gap = true;
        }
    }
    out
}

/// The words of `text`, lowercased: maximal runs of letters a–z and apostrophes, less any
/// apostrophes at their ends, so `"The LORD's"` gives `["the", "lord's"]` and the closing quote
/// of `'brethren'` is dropped. Everything else separates words, hyphens and non-ASCII letters
/// included (as in [`letters`]).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphabetic() || c == '\''))
        .map(|run| run.trim_matches('\''))
        .filter(|word| !word.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// A word ⇄ id mapping: the distinct words of a corpus, with ids in alphabetical (byte) order so
/// that they, and every tie broken by id, are the same whatever order the words came in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vocabulary {
    words: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Vocabulary {
    /// The distinct words of `words`. More than `u32::MAX` distinct words share the last id.
    pub fn new<W: AsRef<str>>(words: &[W]) -> Self {
        Self::build(words).0
    }

    /// The vocabulary of `words`, and `words` as its ids.
    pub fn build<W: AsRef<str>>(words: &[W]) -> (Self, Vec<u32>) {
        // Deduplicated before sorting: a corpus has far fewer distinct words than words.
        let distinct: HashSet<&str> = words.iter().map(AsRef::as_ref).collect();
        let mut distinct: Vec<&str> = distinct.into_iter().collect();
        distinct.sort_unstable();
        let ids: HashMap<String, u32> = distinct
            .iter()
            .enumerate()
            .map(|(id, &word)| (word.to_owned(), u32::try_from(id).unwrap_or(u32::MAX)))
            .collect();
        // Every word is in `ids`; the fallback is never taken.
        let encoded = words
            .iter()
            .map(|word| ids.get(word.as_ref()).copied().unwrap_or(u32::MAX))
            .collect();
        let words = distinct.into_iter().map(str::to_owned).collect();
        (Vocabulary { words, ids }, encoded)
    }

    /// The id of `word`, if it is in the vocabulary.
    pub fn id(&self, word: &str) -> Option<u32> {
        self.ids.get(word).copied()
    }

    /// The word with id `id`, if there is one.
    pub fn word(&self, id: u32) -> Option<&str> {
        self.words.get(id as usize).map(String::as_str)
    }

    /// The ids of `words`, or the first word that is not in the vocabulary.
    pub fn encode<'w, W: AsRef<str>>(&self, words: &'w [W]) -> Result<Vec<u32>, &'w str> {
        words
            .iter()
            .map(|word| self.id(word.as_ref()).ok_or(word.as_ref()))
            .collect()
    }

    /// All the words, in id order.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The number of distinct words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether there are no words.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}
