//! proto ⇄ domain: a step's sessions and sampling, and what to count from a corpus, validated
//! once here into typed values.

use oneword_proto::decoder::v1 as pb;
use oneword_sampling::{Picked, Sampling};

use crate::models::{CorpusInput, CorpusOutput, ModelName};
use crate::sessions::StepIds;
use crate::Error;

/// What validation needs to know.
pub struct Limits {
    pub vocab_size: usize,
    pub max_top_n: usize,
}

/// Validates one step of an n-gram session. `create` steps name their model.
pub fn step(
    i: usize,
    step: pb::SessionStep,
    limits: &Limits,
) -> Result<(StepIds, Option<Sampling>), Error> {
    let field = |name: &str| format!("steps[{i}].{name}");
    if step.session_id.is_empty() {
        let f = field("session_id");
        return Err(Error::invalid(&f, format!("`{f}` must not be empty")));
    }
    let token_ids = match step.input {
        Some(pb::session_step::Input::Embeddings(_)) => {
            let f = field("embeddings");
            return Err(Error::invalid(
                &f,
                format!("`{f}`: an n-gram session takes token_ids, not embeddings"),
            ));
        }
        Some(pb::session_step::Input::TokenIds(t)) if !t.ids.is_empty() => t.ids,
        _ => {
            let f = field("token_ids");
            return Err(Error::invalid(&f, format!("`{f}` must not be empty")));
        }
    };
    let vocab = limits.vocab_size;
    if let Some(id) = token_ids.iter().find(|&&id| id as usize >= vocab) {
        let f = field("token_ids");
        return Err(Error::invalid(
            &f,
            format!("`{f}` holds {id}, outside the vocabulary of {vocab} tokens"),
        ));
    }
    let create = if step.create {
        let f = field("model");
        let name = &step.model;
        Some(ModelName::parse(name).ok_or_else(|| {
            Error::invalid(
                &f,
                format!("`{f}` is {name:?}; the baseline serves the n-gram models letters-1..=6 and tokens-1..=6"),
            )
        })?)
    } else {
        None
    };
    let sampling = step
        .sampling
        .map(|s| oneword_sampling::sampling(&field("sampling"), &s, vocab, limits.max_top_n))
        .transpose()?;
    if !step.judge_ids.is_empty() {
        let f = field("judge_ids");
        return Err(Error::invalid(
            &f,
            format!("`{f}`: the n-gram baseline does not judge given tokens; the decoder does"),
        ));
    }
    let history = step
        .history
        .map(|h| oneword_sampling::history(&field("history"), h, token_ids.len(), vocab))
        .transpose()?;
    let ids = StepIds {
        session_id: step.session_id,
        create,
        start_position: step.start_position as usize,
        token_ids,
        release_after: step.release_after,
        history,
    };
    Ok((ids, sampling))
}

/// The wire form of one session's result.
pub fn step_result(session_id: String, length: usize, picked: Option<Picked>) -> pb::StepResult {
    pb::StepResult {
        session_id,
        length: length as u32,
        pick: picked.map(pb::Pick::from),
        judged: Vec::new(),
    }
}

/// Validates what to count from a corpus.
pub fn corpus_input(r: pb::CorpusRequest) -> Result<CorpusInput, Error> {
    let text = r
        .text
        .map(|t| {
            oneword_ngram::Corpus::from_text(t)
                .map_err(|e| Error::invalid("text", format!("`text`: {e}")))
        })
        .transpose()?;
    let order = |f: &str, n: u32| -> Result<Option<usize>, Error> {
        match n {
            0 => Ok(None),
            1..=6 => Ok(Some(n as usize)),
            _ => Err(Error::invalid(
                f,
                format!("`{f}` must be in 1..=6 (0 = none), got {n}"),
            )),
        }
    };
    let count = |f: &str, n: u32, default: usize| -> Result<usize, Error> {
        match n {
            0 => Ok(default),
            1..=1000 => Ok(n as usize),
            _ => Err(Error::invalid(
                f,
                format!("`{f}` must be in 1..=1000 (0 = {default}), got {n}"),
            )),
        }
    };
    let random_words = match order("random_words_n", r.random_words_n)? {
        Some(n) => Some((n, count("random_words", r.random_words, 10)?)),
        None => None,
    };
    let sentence = match order("sentence_n", r.sentence_n)? {
        Some(n) => {
            if r.sentence_start.trim().is_empty() {
                return Err(Error::invalid(
                    "sentence_start",
                    "`sentence_start` must name the word(s) the sentence starts with",
                ));
            }
            Some((
                n,
                r.sentence_start,
                count("sentence_words", r.sentence_words, 20)?,
            ))
        }
        None => None,
    };
    Ok(CorpusInput {
        text,
        letter_frequencies: r.letter_frequencies,
        letter_pairs: r.letter_pairs,
        random_words,
        sentence,
        seed: r.seed,
    })
}

/// The wire form of corpus statistics.
pub fn corpus_response(out: CorpusOutput) -> pb::CorpusResponse {
    pb::CorpusResponse {
        corpus: out.corpus,
        corpus_bytes: out.corpus_bytes as u64,
        letters: out.frequencies.iter().map(|(c, _)| c.to_string()).collect(),
        frequencies: out.frequencies.iter().map(|(_, f)| *f).collect(),
        pair_symbols: out.pair_symbols.iter().map(char::to_string).collect(),
        pair_probabilities: out.pair_probabilities,
        random_words: out.random_words,
        sentence: out.sentence,
    }
}
