//! proto ⇄ domain for the one-shot instruments, the n-gram sessions and the corpus statistics.

use std::time::Duration;

use candle_core::Tensor;
use oneword_model::BLOCK_MATRICES;
use oneword_proto::common::v1 as common;
use oneword_proto::decoder::v1 as pb;
use oneword_runtime::tensor;

use super::{sampling, shaping, top, top_n, whole_sequence, Limits};
use crate::distribution::Pick;
use crate::ngrams::{CorpusInput, CorpusOutput, ModelName, NgramStep};
use crate::probe::{InspectInput, InspectOutput, ScoreInput, WeightsInput, WeightsOutput};
use crate::Error;

/// Most histogram bins one Weights call may ask for.
const MAX_HISTOGRAM_BINS: u32 = 1000;

/// Validates one step of an n-gram session. `create` steps name their model.
pub fn ngram_step(i: usize, step: pb::SessionStep, limits: &Limits) -> Result<NgramStep, Error> {
    let field = |name: &str| format!("steps[{i}].{name}");
    if step.session_id.is_empty() {
        let f = field("session_id");
        return Err(Error::invalid(&f, format!("`{f}` must not be empty")));
    }
    if step.embeddings.is_some() {
        let f = field("embeddings");
        return Err(Error::invalid(
            &f,
            format!("`{f}`: an n-gram session takes token_ids, not embeddings"),
        ));
    }
    if step.token_ids.is_empty() {
        let f = field("token_ids");
        return Err(Error::invalid(&f, format!("`{f}` must not be empty")));
    }
    let create = if step.create {
        Some(ngram_model(&field("model"), &step.model)?)
    } else {
        None
    };
    let sampling = step
        .sampling
        .map(|s| sampling(&field("sampling"), s, limits))
        .transpose()?;
    Ok(NgramStep {
        session_id: step.session_id,
        create,
        start_position: step.start_position as usize,
        token_ids: step.token_ids,
        sampling,
        release_after: step.release_after,
    })
}

/// An n-gram model's name, or the error listing what is served.
fn ngram_model(f: &str, name: &str) -> Result<ModelName, Error> {
    ModelName::parse(name).ok_or_else(|| {
        Error::invalid(
            f,
            format!(
                "`{f}` is {name:?}; the decoder serves the transformer (empty) and the n-gram models letters-1..=6 and tokens-1..=6"
            ),
        )
    })
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

/// Validates a text to score.
pub fn score_input(request: pb::ScoreRequest, limits: &Limits) -> Result<ScoreInput, Error> {
    let embeddings = whole_sequence(request.embeddings, limits)?;
    let n = embeddings.dims()[0];
    if request.targets.len() != n {
        return Err(Error::invalid(
            "targets",
            format!(
                "`targets` must have one id per input position ({n}), got {}",
                request.targets.len()
            ),
        ));
    }
    if let Some((i, id)) = request
        .targets
        .iter()
        .enumerate()
        .find(|(_, &id)| id as usize >= limits.vocab_size)
    {
        return Err(Error::invalid(
            "targets",
            format!(
                "`targets[{i}]` is {id}, outside the vocabulary of {} tokens",
                limits.vocab_size
            ),
        ));
    }
    top_n("top_n", request.top_n, limits)?;
    Ok(ScoreInput {
        embeddings,
        targets: request.targets,
        shaping: shaping("shaping", request.shaping.unwrap_or_default(), limits)?,
        top_n: request.top_n as usize,
    })
}

/// Validates what to keep from a pass, and that it fits the cap on what one answer may carry.
pub fn inspect_input(request: pb::InspectRequest, limits: &Limits) -> Result<InspectInput, Error> {
    let embeddings = whole_sequence(request.embeddings, limits)?;
    let mut layers = Vec::with_capacity(request.attention_layers.len());
    for (i, &layer) in request.attention_layers.iter().enumerate() {
        let f = format!("attention_layers[{i}]");
        if layer as usize >= limits.layers {
            return Err(Error::invalid(
                &f,
                format!(
                    "`{f}` is {layer}, but the model's layers are 0..={}",
                    limits.layers - 1
                ),
            ));
        }
        if layers.contains(&(layer as usize)) {
            return Err(Error::invalid(
                &f,
                format!("`{f}`: layer {layer} is listed twice"),
            ));
        }
        layers.push(layer as usize);
    }
    top_n("lens_top_n", request.lens_top_n, limits)?;
    Ok(InspectInput {
        embeddings,
        attention_layers: layers,
        hidden_states: request.hidden_states,
        lens_top_n: request.lens_top_n as usize,
    })
}

/// Validates which weights to read.
pub fn weights_input(request: pb::WeightsRequest, limits: &Limits) -> Result<WeightsInput, Error> {
    let matrix = match request.layer {
        None if request.matrix.is_empty() => None,
        None => return Err(Error::invalid("layer", "`layer` is required with `matrix`")),
        Some(layer) if layer as usize >= limits.layers => {
            return Err(Error::invalid(
                "layer",
                format!(
                    "`layer` is {layer}, but the model's layers are 0..={}",
                    limits.layers - 1
                ),
            ))
        }
        Some(layer) => {
            if !BLOCK_MATRICES.contains(&request.matrix.as_str()) {
                return Err(Error::invalid(
                    "matrix",
                    format!(
                        "`matrix` is {:?}; a block's matrices are {}",
                        request.matrix,
                        BLOCK_MATRICES.join(", ")
                    ),
                ));
            }
            Some((layer as usize, request.matrix))
        }
    };
    if request.histogram_bins > MAX_HISTOGRAM_BINS {
        return Err(Error::invalid(
            "histogram_bins",
            format!(
                "`histogram_bins` must be in 0..={MAX_HISTOGRAM_BINS}, got {}",
                request.histogram_bins
            ),
        ));
    }
    Ok(WeightsInput {
        matrix,
        histogram_bins: request.histogram_bins as usize,
    })
}

/// The wire form of a scored text.
pub fn score_response(picks: Vec<Pick>, forward: Duration) -> pb::ScoreResponse {
    pb::ScoreResponse {
        logprobs: picks.iter().map(|p| p.logprob).collect(),
        ranks: picks.iter().map(|p| p.rank).collect(),
        shaped_logprobs: picks.iter().map(|p| p.shaped_logprob).collect(),
        entropies: picks.iter().map(|p| p.entropy).collect(),
        top: picks.iter().map(|p| top(&p.raw_top)).collect(),
        forward_ns: forward.as_nanos() as u64,
    }
}

fn wire(t: &Tensor) -> Result<common::Tensor, Error> {
    tensor::to_wire(t).map_err(|e| Error::Model(oneword_model::ModelError::Input(e.to_string())))
}

/// The wire form of what a pass kept.
pub fn inspect_response(out: InspectOutput) -> Result<pb::InspectResponse, Error> {
    Ok(pb::InspectResponse {
        attentions: out
            .attentions
            .iter()
            .map(|(layer, weights)| {
                Ok(pb::LayerAttention {
                    layer: *layer as u32,
                    weights: Some(wire(weights)?),
                })
            })
            .collect::<Result<_, Error>>()?,
        hidden_states: out.hidden_states.as_ref().map(wire).transpose()?,
        lens: out.lens.iter().map(|l| top(l)).collect(),
        forward_ns: out.forward.as_nanos() as u64,
    })
}

/// The wire form of the weights read.
pub fn weights_response(out: WeightsOutput) -> Result<pb::WeightsResponse, Error> {
    Ok(pb::WeightsResponse {
        matrix: out.matrix.as_ref().map(wire).transpose()?,
        histograms: out
            .histograms
            .into_iter()
            .enumerate()
            .map(|(layer, h)| pb::Histogram {
                layer: layer as u32,
                edges: h.edges,
                counts: h.counts,
            })
            .collect(),
    })
}
