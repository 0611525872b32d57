//! The essay's baseline, served beside the transformer: n-gram models counted from a corpus,
//! driven by the same gateway loop (sampling, seeds, streaming, next-token tables).
//!
//! - `letters-N` counts letters (a–z and the space): after the text so far it puts all its
//!   probability on the GPT-2 tokens of single letters and the space.
//! - `tokens-N` counts GPT-2 tokens of the corpus. Common words are one token with their
//!   leading space (" cat"), so this is, for the most part, a word n-gram model at the
//!   granularity GPT-2 itself reads.
//!
//! Both back off to shorter contexts never seen in the corpus. Their sessions are the token ids
//! so far (no KV cache, no forward pass), kept here rather than on the model thread; steps name
//! the model's inputs by token id instead of by embedding. Models are counted on first use.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oneword_ngram::{Corpus, LetterModel, Ngram, LETTER_ALPHABET, MAX_ORDER};
use oneword_tokenizer::bpe::BpeTokenizer;

use crate::distribution;
use crate::engine::{Sampling, StepOutput};
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
    /// Parses a name; `None` for anything else (the transformer's name, a typo).
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

    /// Every name served.
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

/// An n-gram session: its model and every token id so far.
struct Session {
    model: ModelName,
    ids: Vec<u32>,
    used: Instant,
}

/// One session's step: new token ids, and the pick to make after them.
pub struct NgramStep {
    pub session_id: String,
    /// The model, when the step creates the session.
    pub create: Option<ModelName>,
    pub start_position: usize,
    pub token_ids: Vec<u32>,
    pub sampling: Option<Sampling>,
    pub release_after: bool,
}

/// The corpus, the vocabulary, the models counted so far and the sessions.
pub struct Ngrams {
    pub corpus: Corpus,
    /// Where the corpus came from, for Info.
    pub corpus_name: String,
    vocabulary: BpeTokenizer,
    /// The GPT-2 id of each symbol of [`LETTER_ALPHABET`].
    letter_ids: Vec<u32>,
    models: Mutex<HashMap<ModelName, Arc<Counted>>>,
    sessions: Mutex<HashMap<String, Session>>,
    max_sessions: usize,
    ttl: Duration,
}

impl Ngrams {
    /// The corpus (a file, or the bundled King James books) and the model directory's tokenizer.
    pub fn load(
        corpus: Option<&Path>,
        model_dir: &Path,
        max_sessions: usize,
        ttl: Duration,
    ) -> anyhow::Result<Self> {
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
        Ok(Ngrams {
            corpus,
            corpus_name,
            vocabulary,
            letter_ids,
            models: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            max_sessions,
            ttl,
        })
    }

    /// The model `name`, counted now if it is the first use.
    fn model(&self, name: ModelName) -> Result<Arc<Counted>, Error> {
        let mut models = self
            .models
            .lock()
            .expect("the n-gram models lock is never poisoned");
        if let Some(model) = models.get(&name) {
            return Ok(model.clone());
        }
        let started = Instant::now();
        let text = self.corpus.text();
        let counted = match name.unit {
            Unit::Letters => Counted::Letters(LetterModel::train(text, name.n).map_err(corpus)?),
            Unit::Tokens => {
                let ids = self
                    .vocabulary
                    .encode(text, false)
                    .map_err(|e| Error::Corpus(format!("tokenizing the corpus: {e}")))?
                    .ids;
                Counted::Tokens(Ngram::train(&ids, name.n).map_err(corpus)?)
            }
        };
        tracing::info!(model = ?name, ms = started.elapsed().as_millis() as u64, "n-gram model counted");
        let counted = Arc::new(counted);
        models.insert(name, counted.clone());
        Ok(counted)
    }

    /// The logits (log-probabilities, `-inf` for what never follows) of the next token.
    fn row(&self, name: ModelName, ids: &[u32]) -> Result<Vec<f32>, Error> {
        let mut row = vec![f32::NEG_INFINITY; self.vocabulary.vocab_size()];
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

    /// Whether `id` is an n-gram session.
    pub fn holds(&self, id: &str) -> bool {
        // No sweep here: every transformer step asks, and an expired session is swept (and
        // reported NOT_FOUND) by the n-gram step that follows.
        self.sessions
            .lock()
            .expect("the n-gram sessions lock is never poisoned")
            .contains_key(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        let mut sessions = self
            .sessions
            .lock()
            .expect("the n-gram sessions lock is never poisoned");
        let ttl = self.ttl;
        sessions.retain(|_, s| s.used.elapsed() < ttl);
        sessions
    }

    /// Runs each step in order; on an error no session has changed.
    pub fn step(&self, steps: Vec<NgramStep>) -> Result<Vec<StepOutput>, Error> {
        let vocab = self.vocabulary.vocab_size();
        // Count any model met for the first time before taking the sessions lock: counting takes
        // a moment, and every transformer step asks that lock whether its session is an n-gram one.
        let models: Vec<ModelName> = {
            let sessions = self.lock();
            steps
                .iter()
                .filter_map(|s| {
                    s.create
                        .or_else(|| sessions.get(&s.session_id).map(|s| s.model))
                })
                .collect()
        };
        for model in models {
            self.model(model)?;
        }
        let mut sessions = self.lock();
        // Check everything first, so that a bad step leaves every session as it was.
        let mut creating = 0;
        for (i, step) in steps.iter().enumerate() {
            if let Some(id) = step.token_ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(Error::invalid(
                    format!("steps[{i}].token_ids"),
                    format!("`steps[{i}].token_ids` holds {id}, outside the vocabulary of {vocab} tokens"),
                ));
            }
            let length = match (&step.create, sessions.get(&step.session_id)) {
                (Some(_), Some(_)) => return Err(Error::SessionExists(step.session_id.clone())),
                (Some(_), None) => {
                    creating += 1;
                    0
                }
                (None, Some(s)) => s.ids.len(),
                (None, None) => return Err(Error::SessionNotFound(step.session_id.clone())),
            };
            if step.start_position != length {
                return Err(Error::PositionMismatch {
                    id: step.session_id.clone(),
                    length,
                    start: step.start_position,
                });
            }
        }
        if sessions.len() + creating > self.max_sessions {
            return Err(Error::Overloaded(format!(
                "the decoder holds {} n-gram sessions, its limit is {}",
                sessions.len(),
                self.max_sessions
            )));
        }
        let mut outputs = Vec::with_capacity(steps.len());
        for step in steps {
            let mut ids = match step.create {
                Some(_) => Vec::new(),
                None => sessions
                    .get(&step.session_id)
                    .map(|s| s.ids.clone())
                    .unwrap_or_default(),
            };
            let model = match step.create {
                Some(model) => model,
                None => sessions
                    .get(&step.session_id)
                    .map(|s| s.model)
                    .ok_or_else(|| Error::SessionNotFound(step.session_id.clone()))?,
            };
            ids.extend(&step.token_ids);
            let (pick, full_row) = match &step.sampling {
                Some(s) => {
                    let row = self.row(model, &ids)?;
                    let pick = distribution::pick(&row, &s.shaping, s.u, s.top_n);
                    (Some(pick), s.full_row.then_some(row))
                }
                None => (None, None),
            };
            let length = ids.len();
            if step.release_after {
                sessions.remove(&step.session_id);
            } else {
                sessions.insert(
                    step.session_id.clone(),
                    Session {
                        model,
                        ids,
                        used: Instant::now(),
                    },
                );
            }
            outputs.push(StepOutput {
                session_id: step.session_id,
                length,
                pick,
                full_row,
            });
        }
        Ok(outputs)
    }

    /// Copies `source` into `targets`; `false` when `source` is not an n-gram session.
    pub fn fork(&self, source: &str, targets: &[String]) -> Result<bool, Error> {
        let mut sessions = self.lock();
        let Some(s) = sessions.get(source) else {
            return Ok(false);
        };
        let (model, ids) = (s.model, s.ids.clone());
        if let Some(taken) = targets.iter().find(|t| sessions.contains_key(*t)) {
            return Err(Error::SessionExists(taken.clone()));
        }
        for target in targets {
            let copy = Session {
                model,
                ids: ids.clone(),
                used: Instant::now(),
            };
            sessions.insert(target.clone(), copy);
        }
        Ok(true)
    }

    /// Drops the named sessions; returns how many existed.
    pub fn release(&self, ids: &[String]) -> usize {
        let mut sessions = self.lock();
        ids.iter()
            .filter(|id| sessions.remove(*id).is_some())
            .count()
    }

    /// Sessions held.
    pub fn sessions(&self) -> usize {
        self.lock().len()
    }
}

fn corpus(e: oneword_ngram::Error) -> Error {
    Error::Corpus(e.to_string())
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

impl Ngrams {
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
