//! The instruments' requests validated once into typed values.

use oneword_proto::decoder::v1 as dec;
use oneword_proto::gateway::v1 as pb;

use super::{shaping, GenerateParams, Prompt};
use crate::{Config, Error};

/// Most temperatures one Compare may ask for.
const MAX_TEMPERATURES: usize = 8;

/// A valid temperature comparison: a generation whose completions have their own temperatures.
pub struct CompareParams {
    pub generation: GenerateParams,
    /// The requested temperatures, and how many completions each got (in completion order).
    pub groups: Vec<(f32, usize)>,
}

impl CompareParams {
    pub fn new(r: pb::CompareRequest, config: &Config) -> Result<Self, Error> {
        let temperatures = if r.temperatures.is_empty() {
            vec![0.0, 0.8]
        } else {
            r.temperatures
        };
        if temperatures.len() > MAX_TEMPERATURES {
            return Err(Error::invalid(
                "temperatures",
                format!(
                    "`temperatures` has {} entries, over the limit of {MAX_TEMPERATURES}",
                    temperatures.len()
                ),
            ));
        }
        if let Some((i, t)) = temperatures
            .iter()
            .enumerate()
            .find(|(_, t)| !t.is_finite() || **t < 0.0)
        {
            return Err(Error::invalid(
                "temperatures",
                format!("`temperatures[{i}]` must be a finite number >= 0 (0 = greedy), got {t}"),
            ));
        }
        let samples = r.samples.unwrap_or(5);
        let groups: Vec<(f32, usize)> = temperatures
            .iter()
            .map(|&t| (t, if t == 0.0 { 1 } else { samples as usize }))
            .collect();
        let total: usize = groups.iter().map(|g| g.1).sum();
        if samples == 0 || total > config.max_n as usize {
            return Err(Error::invalid(
                "samples",
                format!(
                    "`samples` must be >= 1 and give at most {} continuations in all, got {samples} ({total} in all)",
                    config.max_n
                ),
            ));
        }
        let mut generation = GenerateParams::new(
            pb::GenerateRequest {
                prompt: r.prompt,
                prompt_token_ids: r.prompt_token_ids,
                max_new_tokens: r.max_new_tokens,
                top_k: r.top_k,
                top_p: r.top_p,
                seed: r.seed,
                n: Some(total as u32),
                model: r.model,
                request_id: r.request_id,
                ..Default::default()
            },
            config,
        )?;
        generation.temperatures = groups
            .iter()
            .flat_map(|&(t, count)| std::iter::repeat_n(t, count))
            .collect();
        Ok(CompareParams { generation, groups })
    }
}

/// A valid scoring request.
pub struct ScoreParams {
    pub text: Prompt,
    pub from_start: bool,
    pub shaping: dec::Shaping,
    pub top_n: usize,
    /// The client session the text continues; empty: none.
    pub session_id: String,
}

impl ScoreParams {
    pub fn new(r: pb::ScoreRequest, config: &Config) -> Result<Self, Error> {
        let text = Prompt::new(r.text, r.token_ids, ["text", "token_ids"], config)?;
        let top_n = r.top_n.unwrap_or(0);
        if top_n > config.max_top_n {
            return Err(Error::invalid(
                "top_n",
                format!("`top_n` must be in 0..={}, got {top_n}", config.max_top_n),
            ));
        }
        if r.from_start && !r.session_id.is_empty() {
            return Err(Error::invalid(
                "from_start",
                "`from_start` does not apply with `session_id`: every token is scored after the session's",
            ));
        }
        Ok(ScoreParams {
            session_id: r.session_id,
            text,
            from_start: r.from_start,
            shaping: shaping(dec::Shaping {
                temperature: r.temperature,
                top_k: r.top_k,
                top_p: r.top_p,
                ..Default::default()
            })?,
            top_n: top_n as usize,
        })
    }
}

/// A valid inspection request.
pub struct InspectParams {
    pub prompt: Prompt,
    pub embedding_parts: bool,
    pub attention_layers: Vec<u32>,
    pub hidden_states: bool,
    pub lens_top_n: u32,
}

impl InspectParams {
    pub fn new(r: pb::InspectRequest, config: &Config) -> Result<Self, Error> {
        if let Some(n) = r.lens_top_n.filter(|&n| n == 0 || n > config.max_top_n) {
            return Err(Error::invalid(
                "lens_top_n",
                format!("`lens_top_n` must be in 1..={}, got {n}", config.max_top_n),
            ));
        }
        Ok(InspectParams {
            prompt: Prompt::text("prompt", r.prompt, config)?,
            embedding_parts: r.embedding_parts,
            attention_layers: r.attention_layers,
            hidden_states: r.hidden_states,
            lens_top_n: r.lens_top_n.unwrap_or(0),
        })
    }
}
