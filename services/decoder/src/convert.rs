//! proto ⇄ domain: requests are validated once here, into typed values.

use std::time::Duration;

use candle_core::{Device, Tensor};
use oneword_model::BLOCK_MATRICES;
use oneword_proto::common::v1 as common;
use oneword_proto::decoder::v1 as pb;
use oneword_runtime::tensor;

use crate::distribution::{Pick, Shaping};
use crate::engine::{Sampling, StepInput, StepOutput};
use crate::ngrams::{CorpusInput, CorpusOutput, ModelName, NgramStep};
use crate::probe::{InspectInput, InspectOutput, ScoreInput, WeightsInput, WeightsOutput};
use crate::Error;

/// What validation needs to know about the served model.
pub struct Limits<'a> {
    pub device: &'a Device,
    pub hidden_size: usize,
    pub vocab_size: usize,
    pub max_top_n: usize,
    /// Positions in the context window.
    pub context: usize,
    /// Transformer blocks.
    pub layers: usize,
}

/// Most histogram bins one Weights call may ask for.
const MAX_HISTOGRAM_BINS: u32 = 1000;

/// Validates one session's step.
pub fn step_input(i: usize, step: pb::SessionStep, limits: &Limits) -> Result<StepInput, Error> {
    let field = |name: &str| format!("steps[{i}].{name}");
    if step.session_id.is_empty() {
        return Err(Error::invalid(
            field("session_id"),
            format!("`{}` must not be empty", field("session_id")),
        ));
    }
    if !step.token_ids.is_empty() || !step.model.is_empty() {
        let f = field("model");
        return Err(Error::invalid(
            &f,
            format!(
                "`{f}`: token_ids and model are for n-gram sessions; `{}` is a transformer session",
                step.session_id
            ),
        ));
    }
    let embeddings = embeddings(&field("embeddings"), step.embeddings, limits)?;
    let sampling = step
        .sampling
        .map(|s| sampling(&field("sampling"), s, limits))
        .transpose()?;
    Ok(StepInput {
        session_id: step.session_id,
        create: step.create,
        start_position: step.start_position as usize,
        embeddings,
        sampling,
        release_after: step.release_after,
    })
}

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

/// Validates input embeddings `[n >= 1, hidden_size]`; `f` is their field path.
fn embeddings(f: &str, wire: Option<common::Tensor>, limits: &Limits) -> Result<Tensor, Error> {
    let wire = wire.ok_or_else(|| Error::invalid(f, format!("`{f}` is required")))?;
    let embeddings = tensor::from_wire(&wire, limits.device)
        .map_err(|e| Error::invalid(f, format!("`{f}`: {e}")))?;
    match embeddings.dims() {
        [n, width] if *n > 0 && *width == limits.hidden_size => Ok(embeddings),
        dims => Err(Error::invalid(
            f,
            format!(
                "`{f}` must have shape [n >= 1, {}], got {dims:?}",
                limits.hidden_size
            ),
        )),
    }
}

/// Input embeddings of a whole sequence from position 0, which must fit the context.
fn whole_sequence(wire: Option<common::Tensor>, limits: &Limits) -> Result<Tensor, Error> {
    let embeddings = embeddings("embeddings", wire, limits)?;
    let n = embeddings.dims()[0];
    if n > limits.context {
        return Err(Error::invalid(
            "embeddings",
            format!(
                "`embeddings` has {n} positions, more than the context of {}",
                limits.context
            ),
        ));
    }
    Ok(embeddings)
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

fn top_n(f: &str, n: u32, limits: &Limits) -> Result<(), Error> {
    if n as usize > limits.max_top_n {
        return Err(Error::invalid(
            f,
            format!("`{f}` must be at most {}, got {n}", limits.max_top_n),
        ));
    }
    Ok(())
}

/// Validates a shaping; `prefix` is its field path.
fn shaping(prefix: &str, shaping: pb::Shaping, limits: &Limits) -> Result<Shaping, Error> {
    let temperature = shaping.temperature.unwrap_or(1.0);
    if !temperature.is_finite() || temperature < 0.0 {
        let f = format!("{prefix}.temperature");
        return Err(Error::invalid(
            &f,
            format!("`{f}` must be finite and >= 0, got {temperature}"),
        ));
    }
    if let Some(k) = shaping.top_k.filter(|&k| k == 0) {
        let f = format!("{prefix}.top_k");
        return Err(Error::invalid(
            &f,
            format!("`{f}` must be >= 1 when given, got {k}"),
        ));
    }
    if let Some(p) = shaping.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
        let f = format!("{prefix}.top_p");
        return Err(Error::invalid(
            &f,
            format!("`{f}` must be in (0, 1], got {p}"),
        ));
    }
    let mut logit_bias: Vec<(u32, f32)> = shaping.logit_bias.into_iter().collect();
    logit_bias.sort_unstable_by_key(|b| b.0);
    for &(id, bias) in &logit_bias {
        let f = format!("{prefix}.logit_bias");
        if id as usize >= limits.vocab_size {
            return Err(Error::invalid(
                &f,
                format!(
                    "`{f}` names token {id}, outside the vocabulary of {} tokens",
                    limits.vocab_size
                ),
            ));
        }
        if !(-100.0..=100.0).contains(&bias) {
            return Err(Error::invalid(
                &f,
                format!("`{f}[{id}]` must be in [-100, 100], got {bias}"),
            ));
        }
    }
    Ok(Shaping {
        temperature,
        top_k: shaping.top_k.map(|k| k as usize),
        top_p: shaping.top_p,
        logit_bias,
    })
}

fn sampling(prefix: &str, s: pb::Sampling, limits: &Limits) -> Result<Sampling, Error> {
    let shaping = shaping(
        &format!("{prefix}.shaping"),
        s.shaping.unwrap_or_default(),
        limits,
    )?;
    if !(0.0..1.0).contains(&s.u) {
        let f = format!("{prefix}.u");
        return Err(Error::invalid(
            &f,
            format!("`{f}` must be in [0, 1), got {}", s.u),
        ));
    }
    let report = s.report.unwrap_or_default();
    if report.top_n as usize > limits.max_top_n {
        let f = format!("{prefix}.report.top_n");
        return Err(Error::invalid(
            &f,
            format!(
                "`{f}` must be at most {}, got {}",
                limits.max_top_n, report.top_n
            ),
        ));
    }
    let full_row = matches!(
        pb::FullRow::try_from(report.full_row),
        Ok(pb::FullRow::F32 | pb::FullRow::F16)
    );
    Ok(Sampling {
        shaping,
        u: s.u,
        top_n: report.top_n as usize,
        full_row,
    })
}

fn top(list: &[(u32, f32)]) -> pb::TopTokens {
    pb::TopTokens {
        ids: list.iter().map(|t| t.0).collect(),
        logprobs: list.iter().map(|t| t.1).collect(),
    }
}

/// The wire form of one result; `half` packs the full row as f16.
pub fn step_result(out: StepOutput, half: bool) -> pb::StepResult {
    let full_row = out.full_row.map(|row| {
        let shape = [row.len() as u32];
        if half {
            tensor::f16_to_wire(&row, &shape)
        } else {
            tensor::f32_to_wire(&row, &shape)
        }
    });
    pb::StepResult {
        session_id: out.session_id,
        length: out.length as u32,
        pick: out.pick.map(|p: Pick| pb::Pick {
            token_id: p.token,
            logprob: p.logprob,
            rank: p.rank,
            shaped_logprob: p.shaped_logprob,
            raw_top: Some(top(&p.raw_top)),
            shaped_top: Some(top(&p.shaped_top)),
            full_row,
            entropy: p.entropy,
            shaped_entropy: p.shaped_entropy,
        }),
    }
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
