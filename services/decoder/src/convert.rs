//! proto ⇄ domain: requests are validated once here, into typed values. The steps are here,
//! the instruments in `instruments`; the shaping's rules are the ones the gateway applies too
//! (`oneword_sampling`).

use candle_core::{Device, Tensor};
use oneword_proto::common::v1 as common;
use oneword_proto::decoder::v1 as pb;

use oneword_sampling::Shaping;

use crate::engine::{StepInput, StepOutput};
use crate::Error;

mod instruments;

pub use instruments::{
    inspect_input, inspect_response, pool_input, pool_response, score_input, score_response,
    weights_input, weights_response,
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
    let wire = match step.input {
        Some(pb::session_step::Input::TokenIds(_)) => {
            let f = field("token_ids");
            return Err(Error::invalid(
                &f,
                format!(
                    "`{f}`: token ids are the input of n-gram sessions, which the baseline serves; the decoder runs the transformer on embeddings (session `{}`)",
                    step.session_id
                ),
            ));
        }
        Some(pb::session_step::Input::Embeddings(t)) => Some(t),
        None => None,
    };
    if !step.model.is_empty() {
        let f = field("model");
        return Err(Error::invalid(
            &f,
            format!(
                "`{f}` is {:?}: the n-gram models are served by the baseline; the decoder runs the transformer (session `{}`)",
                step.model, step.session_id
            ),
        ));
    }
    // A step's rows stay on the host: the model uploads a whole pass's rows at once.
    let embeddings = embeddings(&field("embeddings"), wire, &Device::Cpu, limits)?;
    let sampling = step
        .sampling
        .map(|s| {
            oneword_sampling::sampling(&field("sampling"), &s, limits.vocab_size, limits.max_top_n)
        })
        .transpose()?;
    let history = step
        .history
        .map(|h| {
            let rows = embeddings.dims()[0];
            oneword_sampling::history(&field("history"), h, rows, limits.vocab_size)
        })
        .transpose()?;
    let rows = embeddings.dims()[0];
    if !step.judge_ids.is_empty() {
        let f = field("judge_ids");
        if history.is_some() {
            // A step's history is counted before its rows run; judged rows would see the later ones.
            return Err(Error::invalid(
                &f,
                format!(
                    "`{f}` cannot be given with `{}`: a judging step counts no history",
                    field("history")
                ),
            ));
        }
        if step.judge_ids.len() != rows || sampling.is_none() {
            return Err(Error::invalid(
                &f,
                format!(
                    "`{f}` names {} tokens for a step of {rows} rows{}; it must name one per row, with `sampling`",
                    step.judge_ids.len(),
                    if sampling.is_none() { " and no sampling" } else { "" }
                ),
            ));
        }
        if let Some(id) = step
            .judge_ids
            .iter()
            .find(|&&id| id as usize >= limits.vocab_size)
        {
            return Err(Error::invalid(
                &f,
                format!(
                    "`{f}` names token {id}, outside the vocabulary of {} tokens",
                    limits.vocab_size
                ),
            ));
        }
    }
    Ok(StepInput {
        session_id: step.session_id,
        create: step.create,
        start_position: step.start_position as usize,
        embeddings,
        sampling,
        release_after: step.release_after,
        history,
        judge_ids: step.judge_ids,
    })
}

/// Validates input embeddings `[n >= 1, hidden_size]`, read onto `device`; `f` is their field
/// path.
pub(crate) fn embeddings(
    f: &str,
    wire: Option<common::Tensor>,
    device: &Device,
    limits: &Limits,
) -> Result<Tensor, Error> {
    let wire = wire.ok_or_else(|| Error::invalid(f, format!("`{f}` is required")))?;
    let embeddings = oneword_model::wire::from_wire(&wire, device)
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
    let embeddings = embeddings("embeddings", wire, limits.device, limits)?;
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

/// Validates a shaping; `field` is its path.
pub(crate) fn shaping(
    field: &str,
    shaping: &pb::Shaping,
    limits: &Limits,
) -> Result<Shaping, Error> {
    Ok(oneword_sampling::shaping(
        &format!("{field}."),
        shaping,
        Some(limits.vocab_size),
    )?)
}

/// The wire form of one result.
pub fn step_result(out: StepOutput) -> pb::StepResult {
    pb::StepResult {
        session_id: out.session_id,
        length: out.length as u32,
        pick: out.picked.map(pb::Pick::from),
        judged: out
            .judged
            .into_iter()
            .map(|pick| {
                pb::Pick::from(oneword_sampling::Picked {
                    pick,
                    full_row: None,
                })
            })
            .collect(),
    }
}
