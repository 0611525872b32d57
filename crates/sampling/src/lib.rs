//! The next token from one row of logits, as every next-token backend (the transformer decoder,
//! the n-gram baseline) computes it, and the validation of the shaping that the gateway and the
//! backends share: one function per rule, so the two sides cannot drift apart.

#![forbid(unsafe_code)]

pub mod distribution;
mod penalties;
mod validate;

/// Properties shared by the property tests and the fuzz targets (`make fuzz`); not an API.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod checks;
#[cfg(test)]
mod properties;

pub use distribution::{judge, pick, Candidates, Pick, Shaping};
pub use penalties::{History, Seen};
pub use validate::{check_logit_bias_ids, history, sampling, shaping, FieldError};

use oneword_proto::common::v1 as common;
use oneword_proto::decoder::v1 as pb;
use oneword_proto::tensor::{f16_to_wire, f32_to_wire};

/// How to pick a token after a step, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// `None`: the session's own, the shaping last sent for it (see [`SessionShaping`]).
    pub shaping: Option<Shaping>,
    /// The caller's uniform draw in [0, 1).
    pub u: f64,
    /// How many most likely tokens to list, raw and shaped.
    pub top_n: usize,
    /// Return the raw row, and in which precision.
    pub full_row: Option<RowPrecision>,
}

/// The precision a full logit row travels in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowPrecision {
    F32,
    F16,
}

/// A picked token, with the raw row when the caller asked for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Picked {
    pub pick: Pick,
    pub full_row: Option<(Vec<f32>, RowPrecision)>,
}

/// The shaping a session keeps, so that a caller sends it once (when the session is created, or
/// its first step after a fork) rather than with every step: a completion's shaping, with up to
/// 300 biased tokens, does not change while it runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionShaping(Option<Shaping>);

impl SessionShaping {
    /// Settles a step's sampling against the session: a shaping sent is kept for the steps
    /// after; none sent means the one kept (the default when there is none).
    pub fn settle(&mut self, sampling: &mut Sampling) {
        match &sampling.shaping {
            Some(given) => self.0 = Some(given.clone()),
            None => sampling.shaping = self.0.clone(),
        }
    }
}

impl Sampling {
    /// Picks from `row` as asked, keeping the row when it is to be returned. `seen` is what the
    /// penalties count: the session's tokens so far.
    pub fn pick(&self, row: Vec<f32>, seen: &Seen) -> Picked {
        let pick = self.with_shaping(|shaping| pick(&row, shaping, seen, self.u, self.top_n));
        Picked {
            pick,
            full_row: self.full_row.map(|precision| (row, precision)),
        }
    }

    /// Whether this pick may come from a row's candidates (reduced on a GPU) instead of the
    /// whole row of `vocab`: no row to return, and a shaping they can tell
    /// ([`Candidates::may_tell`]).
    pub fn may_pick_among(&self, seen: &Seen, vocab: usize) -> bool {
        self.full_row.is_none()
            && self.with_shaping(|shaping| Candidates::may_tell(shaping, seen, vocab))
    }

    /// The temperature this pick shapes the row with (0 = greedy).
    pub fn temperature(&self) -> f32 {
        self.with_shaping(|shaping| shaping.temperature)
    }

    /// [`Sampling::pick`] from a row's candidates: the same pick, or `None` when they cannot
    /// tell it exactly and the whole row is needed.
    pub fn pick_among(&self, candidates: &Candidates, seen: &Seen) -> Option<Picked> {
        let pick =
            self.with_shaping(|shaping| candidates.pick(shaping, seen, self.u, self.top_n))?;
        Some(Picked {
            pick,
            full_row: None,
        })
    }

    /// `f` of the shaping, the default one when none is set.
    fn with_shaping<R>(&self, f: impl FnOnce(&Shaping) -> R) -> R {
        match &self.shaping {
            Some(shaping) => f(shaping),
            None => f(&Shaping::default()),
        }
    }

    /// What `row` gives the given `token` under this shaping (teacher forcing), with the
    /// `top_n` most likely alternatives.
    pub fn judge(&self, row: &[f32], seen: &Seen, token: u32) -> Pick {
        let default = Shaping::default();
        let shaping = self.shaping.as_ref().unwrap_or(&default);
        judge(row, shaping, seen, token, self.top_n)
    }
}

/// A top-N list as a struct of arrays.
pub fn top_tokens(list: &[(u32, f32)]) -> pb::TopTokens {
    pb::TopTokens {
        ids: list.iter().map(|t| t.0).collect(),
        logprobs: list.iter().map(|t| t.1).collect(),
    }
}

impl From<Picked> for pb::Pick {
    fn from(picked: Picked) -> Self {
        let full_row = picked.full_row.map(|(row, precision)| -> common::Tensor {
            let shape = [row.len() as u32];
            match precision {
                RowPrecision::F16 => f16_to_wire(&row, &shape),
                RowPrecision::F32 => f32_to_wire(&row, &shape),
            }
        });
        let p = picked.pick;
        pb::Pick {
            token_id: p.token,
            logprob: p.logprob,
            rank: p.rank,
            shaped_logprob: p.shaped_logprob,
            raw_top: Some(top_tokens(&p.raw_top)),
            shaped_top: Some(top_tokens(&p.shaped_top)),
            full_row,
            entropy: p.entropy,
            shaped_entropy: p.shaped_entropy,
        }
    }
}
