//! proto ⇄ domain: requests are validated once here, into typed values.

use candle_core::Device;
use oneword_proto::decoder::v1 as pb;
use oneword_runtime::tensor;

use crate::distribution::{Pick, Shaping};
use crate::engine::{Sampling, StepInput, StepOutput};
use crate::Error;

/// What validation needs to know about the served model.
pub struct Limits<'a> {
    pub device: &'a Device,
    pub hidden_size: usize,
    pub vocab_size: usize,
    pub max_top_n: usize,
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
    let wire = step.embeddings.ok_or_else(|| {
        Error::invalid(
            field("embeddings"),
            format!("`{}` is required", field("embeddings")),
        )
    })?;
    let embeddings = tensor::from_wire(&wire, limits.device).map_err(|e| {
        Error::invalid(
            field("embeddings"),
            format!("`{}`: {e}", field("embeddings")),
        )
    })?;
    match embeddings.dims() {
        [n, width] if *n > 0 && *width == limits.hidden_size => {}
        dims => {
            return Err(Error::invalid(
                field("embeddings"),
                format!(
                    "`{}` must have shape [n >= 1, {}], got {dims:?}",
                    field("embeddings"),
                    limits.hidden_size
                ),
            ))
        }
    }
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

fn sampling(prefix: &str, s: pb::Sampling, limits: &Limits) -> Result<Sampling, Error> {
    let shaping = s.shaping.unwrap_or_default();
    let temperature = shaping.temperature.unwrap_or(1.0);
    if !temperature.is_finite() || temperature < 0.0 {
        let f = format!("{prefix}.shaping.temperature");
        return Err(Error::invalid(
            &f,
            format!("`{f}` must be finite and >= 0, got {temperature}"),
        ));
    }
    if let Some(k) = shaping.top_k.filter(|&k| k == 0) {
        let f = format!("{prefix}.shaping.top_k");
        return Err(Error::invalid(
            &f,
            format!("`{f}` must be >= 1 when given, got {k}"),
        ));
    }
    if let Some(p) = shaping.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
        let f = format!("{prefix}.shaping.top_p");
        return Err(Error::invalid(
            &f,
            format!("`{f}` must be in (0, 1], got {p}"),
        ));
    }
    if !(0.0..1.0).contains(&s.u) {
        let f = format!("{prefix}.u");
        return Err(Error::invalid(
            &f,
            format!("`{f}` must be in [0, 1), got {}", s.u),
        ));
    }
    let mut logit_bias: Vec<(u32, f32)> = shaping.logit_bias.into_iter().collect();
    logit_bias.sort_unstable_by_key(|b| b.0);
    for &(id, bias) in &logit_bias {
        let f = format!("{prefix}.shaping.logit_bias");
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
        shaping: Shaping {
            temperature,
            top_k: shaping.top_k.map(|k| k as usize),
            top_p: shaping.top_p,
            logit_bias,
        },
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
        }),
    }
}
