//! proto ⇄ domain: requests are validated once here, into typed values. The steps are here,
//! the instruments and the n-gram sessions in `instruments`.

use candle_core::{Device, Tensor};
use oneword_proto::common::v1 as common;
use oneword_proto::decoder::v1 as pb;
use oneword_runtime::tensor;

use crate::distribution::{Pick, Shaping};
use crate::engine::{Sampling, StepInput, StepOutput};
use crate::Error;

mod instruments;

pub use instruments::{
    corpus_input, corpus_response, inspect_input, inspect_response, ngram_step, score_input,
    score_response, weights_input, weights_response,
};

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

/// Validates input embeddings `[n >= 1, hidden_size]`; `f` is their field path.
pub(crate) fn embeddings(
    f: &str,
    wire: Option<common::Tensor>,
    limits: &Limits,
) -> Result<Tensor, Error> {
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
pub(crate) fn whole_sequence(
    wire: Option<common::Tensor>,
    limits: &Limits,
) -> Result<Tensor, Error> {
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

pub(crate) fn top_n(f: &str, n: u32, limits: &Limits) -> Result<(), Error> {
    if n as usize > limits.max_top_n {
        return Err(Error::invalid(
            f,
            format!("`{f}` must be at most {}, got {n}", limits.max_top_n),
        ));
    }
    Ok(())
}

/// Validates a shaping; `prefix` is its field path.
pub(crate) fn shaping(
    prefix: &str,
    shaping: pb::Shaping,
    limits: &Limits,
) -> Result<Shaping, Error> {
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

pub(crate) fn sampling(prefix: &str, s: pb::Sampling, limits: &Limits) -> Result<Sampling, Error> {
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

pub(crate) fn top(list: &[(u32, f32)]) -> pb::TopTokens {
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
