//! The essay's baselines: n-gram models counted from a corpus.
//!
//! - `letters-N` counts letters (a–z and the space): after the text so far it puts all its
//!   probability on the GPT-2 tokens of single letters and the space.
//! - `tokens-N` counts GPT-2 tokens of the corpus. Common words are one token with their
//!   leading space (" cat"), so this is, for the most part, a word n-gram model at the
//!   granularity GPT-2 itself reads.
//!
//! Both back off to shorter contexts never seen in the corpus. A model is counted on its first
//! use, once, without holding up the use of any other model.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use oneword_bpe::BpeTokenizer;
use oneword_ngram::{Corpus, LetterModel, Ngram, LETTER_ALPHABET, MAX_ORDER};

use crate::Error;

/// What an n-gram model counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    Letters,
    Tokens,
}

/// An n-gram model's name: `letters-N` or `tokens-N`, N in 1..=6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModelName {
    pub unit: Unit,
    pub n: usize,
}

impl ModelName {
    /// Parses a name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        let (unit, n) = name.split_once('-')?;
        let unit = match unit {
            "letters" => Unit::Letters,
            "tokens" => Unit::Tokens,
            _ => return None,
        };
        let n: usize = n.parse().ok()?;
        (1..=MAX_ORDER)
            .contains(&n)
            .then_some(ModelName { unit, n })
    }

    /// Every name served, as Info lists them.
    pub fn all() -> Vec<String> {
        ["letters", "tokens"]
            .iter()
            .flat_map(|unit| (1..=MAX_ORDER).map(move |n| format!("{unit}-{n}")))
            .collect()
    }
}

enum Counted {
    Letters(LetterModel),
    Tokens(Ngram<u32>),
}

/// A model counted once, or why it could not be.
type Cell = OnceLock<Result<Arc<Counted>, String>>;

/// The corpus, the vocabulary and the models counted so far.
pub struct Models {
    pub corpus: Corpus,
    /// Where the corpus came from, for Info and Corpus.
    pub corpus_name: String,
    vocabulary: BpeTokenizer,
    /// The GPT-2 id of each symbol of [`LETTER_ALPHABET`].
    letter_ids: Vec<u32>,
    counted: Mutex<HashMap<ModelName, Arc<Cell>>>,
}

impl Models {
    /// The corpus (a file, or the bundled King James books) and the model directory's tokenizer.
    pub fn load(corpus: Option<&Path>, model_dir: &Path) -> anyhow::Result<Self> {
        let (corpus, corpus_name) = match corpus {
            Some(path) => (Corpus::from_file(path)?, path.display().to_string()),
            None => (
                Corpus::bundled(),
                "bundled: Genesis, Exodus, Psalms and Proverbs (King James Version)".to_string(),
            ),
        };
        let vocabulary = BpeTokenizer::load(model_dir)?;
        let letter_ids = LETTER_ALPHABET
            .iter()
            .map(|c| {
                let encoded = vocabulary.encode(&c.to_string(), false)?;
                match encoded.ids[..] {
                    [id] => Ok(id),
                    _ => anyhow::bail!("the vocabulary has no single token for {c:?}"),
                }
            })
            .collect::<anyhow::Result<Vec<u32>>>()?;
        Ok(Models {
            corpus,
            corpus_name,
            vocabulary,
            letter_ids,
            counted: Mutex::default(),
        })
    }

    /// Tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocabulary.vocab_size()
    }

    /// The end-of-text token.
    pub fn eos_token_id(&self) -> u32 {
        self.vocabulary.eos_token_id()
    }

    /// The model `name`, counted now if this is its first use. The map's lock is held only to
    /// find the model's cell; counting holds just that cell.
    fn model(&self, name: ModelName) -> Result<Arc<Counted>, Error> {
        let cell = self
            .counted
            .lock()
            .expect("the n-gram models lock is never poisoned")
            .entry(name)
            .or_default()
            .clone();
        cell.get_or_init(|| self.count(name))
            .clone()
            .map_err(Error::Corpus)
    }

    fn count(&self, name: ModelName) -> Result<Arc<Counted>, String> {
        let started = Instant::now();
        let text = self.corpus.text();
        let counted = match name.unit {
            Unit::Letters => {
                Counted::Letters(LetterModel::train(text, name.n).map_err(|e| e.to_string())?)
            }
            Unit::Tokens => {
                let ids = self
                    .vocabulary
                    .encode(text, false)
                    .map_err(|e| format!("tokenizing the corpus: {e}"))?
                    .ids;
                Counted::Tokens(Ngram::train(&ids, name.n).map_err(|e| e.to_string())?)
            }
        };
        tracing::info!(model = ?name, ms = started.elapsed().as_millis() as u64, "n-gram model counted");
        Ok(Arc::new(counted))
    }

    /// The logits (log-probabilities, `-inf` for what never follows) of the token after `ids`.
    pub fn row(&self, name: ModelName, ids: &[u32]) -> Result<Vec<f32>, Error> {
        let mut row = vec![f32::NEG_INFINITY; self.vocab_size()];
        match &*self.model(name)? {
            Counted::Letters(model) => {
                let bytes: Vec<u8> = ids
                    .iter()
                    .flat_map(|&id| self.vocabulary.piece(id).to_vec())
                    .collect();
                let text = String::from_utf8_lossy(&bytes);
                for &(symbol, p) in model.distribution(&text).entries() {
                    if let Ok(i) = LETTER_ALPHABET.binary_search(&symbol) {
                        row[self.letter_ids[i] as usize] = (p as f32).ln();
                    }
                }
            }
            Counted::Tokens(model) => {
                for &(id, p) in model.distribution(ids).entries() {
                    row[id as usize] = (p as f32).ln();
                }
            }
        }
        Ok(row)
    }
}

/// What to count and show from a corpus, validated.
pub struct CorpusInput {
    /// A text to count instead of the served corpus.
    pub text: Option<Corpus>,
    pub letter_frequencies: bool,
    pub letter_pairs: bool,
    /// (order, count)
    pub random_words: Option<(usize, usize)>,
    /// (order, start, words)
    pub sentence: Option<(usize, String, usize)>,
    pub seed: u64,
}

/// The corpus statistics asked for.
#[derive(Default)]
pub struct CorpusOutput {
    pub corpus: String,
    pub corpus_bytes: usize,
    pub frequencies: Vec<(char, f64)>,
    pub pair_symbols: Vec<char>,
    pub pair_probabilities: Vec<f64>,
    pub random_words: Vec<String>,
    pub sentence: String,
}

impl Models {
    /// Letter frequencies, letter pairs, random words and a sentence, as asked.
    pub fn corpus_stats(&self, input: CorpusInput) -> Result<CorpusOutput, Error> {
        let (corpus, name) = match &input.text {
            Some(text) => (text, "the request's text".to_string()),
            None => (&self.corpus, self.corpus_name.clone()),
        };
        let text = corpus.text();
        let invalid =
            |field: &str, e: oneword_ngram::Error| Error::invalid(field, format!("`{field}`: {e}"));
        let mut out = CorpusOutput {
            corpus: name,
            corpus_bytes: text.len(),
            ..Default::default()
        };
        if input.letter_frequencies {
            out.frequencies =
                oneword_ngram::letter_frequencies(text).map_err(|e| invalid("text", e))?;
        }
        if input.letter_pairs {
            let pairs = oneword_ngram::letter_pair_matrix(text).map_err(|e| invalid("text", e))?;
            out.pair_symbols = pairs.alphabet().to_vec();
            out.pair_probabilities = pairs.probabilities().to_vec();
        }
        if let Some((n, count)) = input.random_words {
            let uniforms = oneword_ngram::seeded_uniforms(input.seed);
            out.random_words = oneword_ngram::random_words(text, n, count, uniforms)
                .map_err(|e| invalid("random_words_n", e))?;
        }
        if let Some((n, start, words)) = &input.sentence {
            let uniforms = oneword_ngram::seeded_uniforms(input.seed);
            out.sentence = oneword_ngram::word_sentence(text, *n, start, *words, uniforms)
                .map_err(|e| invalid("sentence_start", e))?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_within_the_orders_served() {
        assert_eq!(
            ModelName::parse("letters-3"),
            Some(ModelName {
                unit: Unit::Letters,
                n: 3
            })
        );
        for bad in ["letters-0", "tokens-7", "words-2", "gpt2", "tokens-x", ""] {
            assert_eq!(ModelName::parse(bad), None, "{bad}");
        }
        let all = ModelName::all();
        assert_eq!(all.len(), 2 * MAX_ORDER);
        assert!(all.iter().all(|n| ModelName::parse(n).is_some()));
    }
}
