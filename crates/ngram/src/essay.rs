//! The essay's instruments built on the counts: letter frequencies, the letter-pair matrix,
//! random words from letter n-gram models and sentences from word n-gram models.

use crate::ngram::{check_len, check_order};
use crate::{letters, words, Distribution, Error, Ngram, Result, Vocabulary, SPACE};

/// The 27 symbols of the letter models, in the order `char` sorts them: the space, then a–z.
pub const LETTER_ALPHABET: [char; 27] = [
    ' ', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r',
    's', 't', 'u', 'v', 'w', 'x', 'y', 'z',
];

/// The longest random word [`LetterModel::random_words`] makes: a model that never picks a
/// space (a low order, or `u`s that keep choosing the likeliest letter) must still end its
/// words.
pub const MAX_WORD_LETTERS: usize = 24;

/// How often each letter a–z occurs among the letters of `text`, case folded, in alphabetical
/// order (all 26, zeros included). The frequencies sum to 1; anything but a–z is ignored.
pub fn letter_frequencies(text: &str) -> Result<Vec<(char, f64)>> {
    let mut counts = [0u64; 26];
    for b in text.bytes().filter(u8::is_ascii_alphabetic) {
        counts[usize::from(b.to_ascii_lowercase() - b'a')] += 1;
    }
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return Err(Error::NoLetters);
    }
    Ok(('a'..='z')
        .zip(counts)
        .map(|(letter, count)| (letter, count as f64 / total as f64))
        .collect())
}

/// P(second | first) for every pair of the 27 symbols of [`letters`]`(text)`: the essay's
/// picture of 2-gram probabilities, where after "q" nearly all the mass is on "u".
#[derive(Clone, Debug, PartialEq)]
pub struct LetterPairs {
    probabilities: Vec<f64>,
}

impl LetterPairs {
    /// The symbols of the rows and columns: [`LETTER_ALPHABET`].
    pub fn alphabet(&self) -> &'static [char] {
        &LETTER_ALPHABET
    }

    /// The 27 × 27 probabilities, row-major: row = first symbol, column = second. Each row sums
    /// to 1, except the row of a symbol that is never followed by anything, which is all 0.
    pub fn probabilities(&self) -> &[f64] {
        &self.probabilities
    }

    /// P(second | `first`) for every second symbol, in [`LETTER_ALPHABET`] order; `None` if
    /// `first` is not one of the 27 symbols.
    pub fn row(&self, first: char) -> Option<&[f64]> {
        let row = letter_index(first)?;
        self.probabilities
            .get(row * LETTER_ALPHABET.len()..(row + 1) * LETTER_ALPHABET.len())
    }

    /// P(`second` | `first`); `None` if either is not one of the 27 symbols.
    pub fn get(&self, first: char, second: char) -> Option<f64> {
        self.row(first)?.get(letter_index(second)?).copied()
    }
}

/// The letter-pair matrix of `text` (see [`LetterPairs`]).
pub fn letter_pair_matrix(text: &str) -> Result<LetterPairs> {
    let symbols = letters(text);
    if !symbols.iter().any(|&c| c != SPACE) {
        return Err(Error::NoLetters);
    }
    let size = LETTER_ALPHABET.len();
    let mut counts = vec![0u64; size * size];
    for pair in symbols.windows(2) {
        if let (Some(first), Some(second)) = (letter_index(pair[0]), letter_index(pair[1])) {
            counts[first * size + second] += 1;
        }
    }
    let probabilities = counts
        .chunks(size)
        .flat_map(|row| {
            let total: u64 = row.iter().sum();
            row.iter().map(move |&count| match total {
                0 => 0.0,
                total => count as f64 / total as f64,
            })
        })
        .collect();
    Ok(LetterPairs { probabilities })
}

fn letter_index(c: char) -> Option<usize> {
    LETTER_ALPHABET.binary_search(&c).ok()
}

/// A letter n-gram model: [`Ngram`] over the 27 symbols of [`letters`].
#[derive(Clone, Debug)]
pub struct LetterModel {
    ngram: Ngram<char>,
}

impl LetterModel {
    /// Counts the letter k-grams of `text` for k = 1..=`n`; `text` must have a letter a–z.
    pub fn train(text: &str, n: usize) -> Result<Self> {
        check_order(n)?;
        let symbols = letters(text);
        if !symbols.iter().any(|&c| c != SPACE) {
            return Err(Error::NoLetters);
        }
        Ok(LetterModel {
            ngram: Ngram::train(&symbols, n)?,
        })
    }

    /// The counts and probabilities underneath.
    pub fn ngram(&self) -> &Ngram<char> {
        &self.ngram
    }

    /// The distribution of the next symbol after [`letters`]`(context)`, with backoff.
    pub fn distribution(&self, context: &str) -> Distribution<char> {
        self.ngram.distribution(&letters(context))
    }

    /// [`letters`]`(start)` followed by `len` more symbols (at most [`MAX_LEN`](crate::MAX_LEN)),
    /// one per number of `u_source`.
    pub fn generate(
        &self,
        start: &str,
        len: usize,
        u_source: impl FnMut() -> f64,
    ) -> Result<String> {
        let start = letters(start);
        let more = self.ngram.generate(&start, len, u_source)?;
        Ok(start.into_iter().chain(more).collect())
    }

    /// `count` random words (at most [`MAX_LEN`](crate::MAX_LEN)), as the essay makes them: the
    /// model writes on from a space, letter by letter, one number of `u_source` per letter, and
    /// each space it picks ends a word. So the words run on from one another, as in the corpus.
    /// A word's first letter is picked with the space left out (that only changes anything
    /// when the model has backed off to unigrams, e.g. for n = 1, where an empty word would
    /// otherwise come up), and a word stops at [`MAX_WORD_LETTERS`].
    pub fn random_words(
        &self,
        count: usize,
        mut u_source: impl FnMut() -> f64,
    ) -> Result<Vec<String>> {
        check_len("count", count)?;
        let keep = self.ngram.order() - 1;
        let mut context: Vec<char> = Vec::with_capacity(keep + 1);
        // The context is the last n − 1 symbols written.
        let push = |context: &mut Vec<char>, c: char| {
            context.push(c);
            if context.len() > keep {
                context.remove(0);
            }
        };
        push(&mut context, SPACE);
        let mut words = Vec::with_capacity(count);
        for _ in 0..count {
            let mut word = String::new();
            let mut next = self
                .ngram
                .distribution(&context)
                .excluding(SPACE)
                .pick(u_source())?;
            loop {
                word.push(next);
                push(&mut context, next);
                if word.len() == MAX_WORD_LETTERS {
                    break;
                }
                next = self.ngram.pick(&context, u_source())?;
                if next == SPACE {
                    break;
                }
            }
            push(&mut context, SPACE);
            words.push(word);
        }
        Ok(words)
    }
}

/// Random words from the letter n-gram model of order `n` of `text` (see
/// [`LetterModel::random_words`]); with increasing n they look more like English words.
pub fn random_words(
    text: &str,
    n: usize,
    count: usize,
    u_source: impl FnMut() -> f64,
) -> Result<Vec<String>> {
    check_len("count", count)?;
    LetterModel::train(text, n)?.random_words(count, u_source)
}

/// A word n-gram model: [`Ngram`] over the ids of a [`Vocabulary`] of the [`words`] of a text.
#[derive(Clone, Debug)]
pub struct WordModel {
    vocabulary: Vocabulary,
    ngram: Ngram<u32>,
}

impl WordModel {
    /// Counts the word k-grams of `text` for k = 1..=`n`; `text` must have a word.
    pub fn train(text: &str, n: usize) -> Result<Self> {
        check_order(n)?;
        let words = words(text);
        if words.is_empty() {
            return Err(Error::NoLetters);
        }
        let (vocabulary, ids) = Vocabulary::build(&words);
        Ok(WordModel {
            ngram: Ngram::train(&ids, n)?,
            vocabulary,
        })
    }

    /// The words and their ids.
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }

    /// The counts and probabilities underneath, over word ids.
    pub fn ngram(&self) -> &Ngram<u32> {
        &self.ngram
    }

    /// The distribution of the next word after the [`words`] of `context`, with backoff. A word
    /// the corpus lacks never occurred in a context either, so only the words after the last
    /// such word count.
    pub fn distribution(&self, context: &str) -> Distribution<&str> {
        let context = words(context);
        let mut known: Vec<u32> = context
            .iter()
            .rev()
            .map_while(|word| self.vocabulary.id(word))
            .collect();
        known.reverse();
        self.ngram.distribution(&known).map(|id| self.word(id))
    }

    /// The [`words`] of `start` followed by `len` more words (at most
    /// [`MAX_LEN`](crate::MAX_LEN)), one per number of `u_source`. `start` must have at least one
    /// word, and every one of its words must occur in the corpus.
    pub fn sentence(
        &self,
        start: &str,
        len: usize,
        u_source: impl FnMut() -> f64,
    ) -> Result<Vec<&str>> {
        check_len("len", len)?;
        let start_words = words(start);
        if start_words.is_empty() {
            return Err(Error::NoStartWord(start.to_owned()));
        }
        let ids = self
            .vocabulary
            .encode(&start_words)
            .map_err(|word| Error::UnknownStartWord(word.to_owned()))?;
        let more = self.ngram.generate(&ids, len, u_source)?;
        Ok(ids.iter().chain(&more).map(|&id| self.word(id)).collect())
    }

    fn word(&self, id: u32) -> &str {
        // Every id the model holds came from the vocabulary.
        self.vocabulary.word(id).unwrap_or_default()
    }
}

/// A sentence from the word n-gram model of order `n` of `text`: the words of `start` and `len`
/// more, joined by spaces (see [`WordModel::sentence`]).
pub fn word_sentence(
    text: &str,
    n: usize,
    start: &str,
    len: usize,
    u_source: impl FnMut() -> f64,
) -> Result<String> {
    check_len("len", len)?;
    let model = WordModel::train(text, n)?;
    Ok(model.sentence(start, len, u_source)?.join(" "))
}
