//! Properties of request validation, shared by the property tests (`cargo test`) and the fuzz
//! targets (`make fuzz`): every public request is accepted exactly when the documented rules
//! hold (restated here), keeps what was asked for, and is otherwise refused with an error that
//! names its field. Each function panics when its property fails.

use std::collections::HashMap;

use oneword_proto::decoder::v1 as dec;
use oneword_proto::gateway::v1 as pb;

use super::{
    CompareParams, GenerateParams, Given, InspectParams, NextTokensParams, Prompt, ScoreParams,
};
use crate::{Config, Error};

// With the bodies' properties, so that the fuzz targets reach all of them through one door.
#[cfg(fuzzing)]
pub use crate::http::checks::{collections_body, completion_body, embeddings_body};

/// The defaults, or limits small enough for random inputs to cross them.
pub fn config(small: bool) -> Config {
    let mut c = Config::for_services(String::new(), String::new(), String::new());
    if small {
        c.max_prompt_bytes = 16;
        c.max_new_tokens = 8;
        c.default_max_new_tokens = 4;
        c.max_n = 4;
        c.max_stop_sequences = 2;
        c.max_stop_sequence_bytes = 4;
        c.max_top_n = 3;
    }
    c
}

/// A refusal names its field: INVALID_ARGUMENT with the field in backticks in the message.
pub fn names_field(e: &Error) {
    match e {
        Error::InvalidArgument(field, message) => assert!(
            !field.is_empty() && message.contains(&format!("`{field}")),
            "{message:?} does not name `{field}`"
        ),
        other => panic!("validation failed with {other:?}, not INVALID_ARGUMENT"),
    }
}

/// A refusal of a request the rules call invalid, naming its field.
fn refused(valid: bool, request: &dyn std::fmt::Debug, e: &Error) {
    assert!(!valid, "{request:?} refused: {e}");
    names_field(e);
}

fn prompt_ok(prompt: &str, c: &Config) -> bool {
    !prompt.is_empty() && prompt.len() <= c.max_prompt_bytes
}

/// Exactly one of a text and token ids, the text within the byte limit and the ids within as
/// many.
fn text_or_ids_ok(text: &str, ids: &[u32], c: &Config) -> bool {
    match (text.is_empty(), ids.is_empty()) {
        (false, true) => prompt_ok(text, c),
        (true, false) => ids.len() <= c.max_prompt_bytes,
        _ => false,
    }
}

/// As [`text_or_ids_ok`], but after a client session both may be empty.
fn continued_ok(session_id: &str, text: &str, ids: &[u32], c: &Config) -> bool {
    text_or_ids_ok(text, ids, c) || (!session_id.is_empty() && text.is_empty() && ids.is_empty())
}

/// The prompt kept is the one given.
fn kept(p: &Prompt, text: &str, ids: &[u32]) {
    match &p.given {
        Given::Text(t) => assert_eq!((t.as_str(), ids), (text, &[][..])),
        Given::Ids(i) => assert_eq!((i.as_slice(), text), (ids, "")),
    }
}

fn shaping_ok(temperature: Option<f32>, top_k: Option<u32>, top_p: Option<f32>) -> bool {
    temperature.is_none_or(|t| t.is_finite() && t >= 0.0)
        && top_k != Some(0)
        && top_p.is_none_or(|p| p > 0.0 && p <= 1.0)
}

fn bias_ok(bias: &HashMap<u32, f32>) -> bool {
    bias.len() <= 300 && bias.values().all(|b| (-100.0..=100.0).contains(b))
}

/// Generate (and GenerateStream); then, on the model's sizes, the context window.
/// Empty (minted), or 1 to 128 ASCII letters, digits and `-_.:`.
fn request_id_ok(id: &str) -> bool {
    id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

pub fn generate(r: pb::GenerateRequest, c: &Config, model: (usize, usize, usize)) {
    let max_new_tokens = r.max_new_tokens.unwrap_or(c.default_max_new_tokens);
    let n = r.n.unwrap_or(1);
    let valid = continued_ok(&r.session_id, &r.prompt, &r.prompt_token_ids, c)
        && (1..=c.max_new_tokens).contains(&max_new_tokens)
        && shaping_ok(r.temperature, r.top_k, r.top_p)
        && (r.session_id.is_empty() || r.model.is_empty())
        && (!r.append_to_session || (!r.session_id.is_empty() && n == 1))
        && r.min_p.is_none_or(|p| (0.0..=1.0).contains(&p))
        && r.typical_p.is_none_or(|p| p > 0.0 && p <= 1.0)
        && r.repetition_penalty.is_none_or(|p| p > 0.0 && p <= 10.0)
        && r.frequency_penalty
            .is_none_or(|p| (-2.0..=2.0).contains(&p))
        && r.presence_penalty.is_none_or(|p| (-2.0..=2.0).contains(&p))
        && bias_ok(&r.logit_bias)
        && (1..=c.max_n).contains(&n)
        && r.stop.len() <= c.max_stop_sequences as usize
        && r.stop
            .iter()
            .all(|s| !s.is_empty() && s.len() <= c.max_stop_sequence_bytes as usize)
        && r.logprobs.is_none_or(|k| k <= c.max_top_n)
        && request_id_ok(&r.request_id)
        && r.stop_token_ids.len() <= 64
        && r.min_new_tokens.unwrap_or(0) <= max_new_tokens;
    let p = match GenerateParams::new(r.clone(), c) {
        Ok(p) => p,
        Err(e) => return refused(valid, &r, &e),
    };
    assert!(valid, "{r:?} accepted");
    kept(&p.prompt, &r.prompt, &r.prompt_token_ids);
    assert_eq!((&p.stop, &p.model), (&r.stop, &r.model));
    assert_eq!(
        (p.max_new_tokens, p.n),
        (max_new_tokens as usize, n as usize)
    );
    assert_eq!(p.logprobs, r.logprobs.map(|k| k as usize));
    assert!(r.seed.is_none_or(|s| s == p.seed) && p.ignore_eos == r.ignore_eos);
    assert_eq!(p.request_id.as_deref().unwrap_or_default(), r.request_id);
    assert_eq!(p.min_new_tokens, r.min_new_tokens.unwrap_or(0) as usize);
    assert_eq!(
        (p.session_id.as_str(), p.append_to_session),
        (r.session_id.as_str(), r.append_to_session)
    );
    assert_eq!(
        (&p.stop_token_ids, p.include_stop_str),
        (&r.stop_token_ids, r.include_stop_str_in_output)
    );
    let asked = dec::Shaping {
        temperature: r.temperature,
        top_k: r.top_k,
        top_p: r.top_p,
        min_p: r.min_p,
        typical_p: r.typical_p,
        logit_bias: r.logit_bias.clone(),
        banned_ids: Vec::new(),
        repetition_penalty: r.repetition_penalty,
        frequency_penalty: r.frequency_penalty,
        presence_penalty: r.presence_penalty,
    };
    assert_eq!(p.shaping, asked);
    assert!(p.temperatures.is_empty() && (0..p.n).all(|i| p.shaping_of(i) == asked));

    let (prompt_tokens, context, vocab_size) = model;
    let fits = r.logit_bias.keys().all(|&id| (id as usize) < vocab_size)
        && r.stop_token_ids
            .iter()
            .all(|&id| (id as usize) < vocab_size)
        && prompt_tokens > 0
        && prompt_tokens + p.max_new_tokens <= context;
    match p.check_against_model(prompt_tokens, context, vocab_size) {
        Ok(()) => assert!(fits, "{r:?} fits {model:?}"),
        Err(Error::ContextLength {
            field,
            prompt_tokens: t,
            max_new_tokens: m,
            context: x,
        }) => {
            assert_eq!(field, p.prompt.field);
            assert_eq!((t, m, x), (prompt_tokens, p.max_new_tokens, context));
            assert!(t + m > x);
        }
        Err(e) => refused(fits, &(r, model), &e),
    }
}

pub fn next_tokens(r: pb::NextTokensRequest, c: &Config) {
    let top_n = r.top_n.unwrap_or(5);
    let valid = continued_ok(&r.session_id, &r.prompt, &r.prompt_token_ids, c)
        && (r.session_id.is_empty() || r.model.is_empty())
        && (1..=c.max_top_n).contains(&top_n)
        && shaping_ok(r.temperature, r.top_k, r.top_p);
    match NextTokensParams::new(r.clone(), c) {
        Ok(p) => {
            assert!(valid, "{r:?} accepted");
            kept(&p.prompt, &r.prompt, &r.prompt_token_ids);
            assert_eq!((p.top_n, p.full_row), (top_n as usize, r.full_row));
            let shaped = r.temperature.is_some() || r.top_k.is_some() || r.top_p.is_some();
            assert_eq!(p.shaping.is_some(), shaped);
        }
        Err(e) => refused(valid, &r, &e),
    }
}

pub fn compare(r: pb::CompareRequest, c: &Config) {
    let temperatures = if r.temperatures.is_empty() {
        vec![0.0, 0.8]
    } else {
        r.temperatures.clone()
    };
    let samples = r.samples.unwrap_or(5);
    let total: u64 = temperatures
        .iter()
        .map(|&t| if t == 0.0 { 1 } else { u64::from(samples) })
        .sum();
    let max_new_tokens = r.max_new_tokens.unwrap_or(c.default_max_new_tokens);
    let valid = temperatures.len() <= 8
        && temperatures.iter().all(|t| t.is_finite() && *t >= 0.0)
        && samples >= 1
        && total <= u64::from(c.max_n)
        && text_or_ids_ok(&r.prompt, &r.prompt_token_ids, c)
        && (1..=c.max_new_tokens).contains(&max_new_tokens)
        && shaping_ok(None, r.top_k, r.top_p);
    match CompareParams::new(r.clone(), c) {
        Ok(p) => {
            assert!(valid, "{r:?} accepted");
            let g = &p.generation;
            assert_eq!((g.n as u64, g.temperatures.len() as u64), (total, total));
            assert_eq!(p.groups.iter().map(|g| g.1 as u64).sum::<u64>(), total);
            let asked: Vec<f32> = p.groups.iter().map(|g| g.0).collect();
            assert_eq!(asked, temperatures);
            assert!((0..g.n).all(|i| g.shaping_of(i).temperature == Some(g.temperatures[i])));
        }
        Err(e) => refused(valid, &r, &e),
    }
}

pub fn score(r: pb::ScoreRequest, c: &Config) {
    let valid = text_or_ids_ok(&r.text, &r.token_ids, c)
        && r.top_n.unwrap_or(0) <= c.max_top_n
        && shaping_ok(r.temperature, r.top_k, r.top_p)
        && (r.session_id.is_empty() || !r.from_start);
    match ScoreParams::new(r.clone(), c) {
        Ok(p) => {
            assert!(valid, "{r:?} accepted");
            assert_eq!(p.top_n, r.top_n.unwrap_or(0) as usize);
            assert_eq!(p.session_id, r.session_id);
            kept(&p.text, &r.text, &r.token_ids);
        }
        Err(e) => refused(valid, &r, &e),
    }
}

pub fn inspect(r: pb::InspectRequest, c: &Config) {
    let valid =
        prompt_ok(&r.prompt, c) && r.lens_top_n.is_none_or(|n| (1..=c.max_top_n).contains(&n));
    match InspectParams::new(r.clone(), c) {
        Ok(p) => {
            assert!(valid, "{r:?} accepted");
            kept(&p.prompt, &r.prompt, &[]);
            assert_eq!(&p.attention_layers, &r.attention_layers);
            assert_eq!(p.lens_top_n, r.lens_top_n.unwrap_or(0));
        }
        Err(e) => refused(valid, &r, &e),
    }
}
