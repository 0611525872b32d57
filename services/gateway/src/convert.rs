//! Requests validated once into typed values, with errors that name the field, the value and
//! what is allowed.

use oneword_proto::decoder::v1 as dec;
use oneword_proto::gateway::v1 as pb;

use crate::{Config, Error};

/// Validation's properties, shared by the property tests and the fuzz targets (`make fuzz`); not
/// an API.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod checks;
mod embeddings;
mod instruments;
#[cfg(test)]
mod properties;
mod public;

pub use embeddings::{embed_request, embed_response, embedding_model};
pub use instruments::{CompareParams, InspectParams, ScoreParams};
pub use public::{corpus_request, corpus_response, encoding, weights_request, weights_response};

/// A prompt as the client gave it: text to tokenize, or token ids (checked against the
/// vocabulary once the model is known), and the request field it came in, for errors.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    pub field: &'static str,
    pub given: Given,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Given {
    Text(String),
    Ids(Vec<u32>),
}

impl Prompt {
    /// Exactly one of `text` and `ids`, named by `fields` (text's, then ids'). A text within
    /// `max_prompt_bytes`; as many ids at most (a token is at least a byte).
    pub fn new(
        text: String,
        ids: Vec<u32>,
        fields: [&'static str; 2],
        config: &Config,
    ) -> Result<Self, Error> {
        let [text_field, ids_field] = fields;
        let limit = config.max_prompt_bytes;
        match (text.is_empty(), ids.is_empty()) {
            (false, true) => Ok(Prompt {
                field: text_field,
                given: Given::Text(prompt_text(text_field, text, config)?),
            }),
            (true, false) if ids.len() > limit => Err(Error::invalid(
                ids_field,
                format!(
                    "`{ids_field}` has {} ids, over the limit of {limit}",
                    ids.len()
                ),
            )),
            (true, false) => Ok(Prompt {
                field: ids_field,
                given: Given::Ids(ids),
            }),
            (true, true) => Err(Error::invalid(
                text_field,
                format!("give `{text_field}` or `{ids_field}`; both are empty"),
            )),
            (false, false) => Err(Error::invalid(
                ids_field,
                format!("give `{text_field}` or `{ids_field}`, not both"),
            )),
        }
    }

    /// As [`Prompt::new`], but with a client session (`session_id` not empty) both may be
    /// empty: the session's tokens are the prompt then.
    pub fn after_session(
        session_id: &str,
        text: String,
        ids: Vec<u32>,
        fields: [&'static str; 2],
        config: &Config,
    ) -> Result<Self, Error> {
        if !session_id.is_empty() && text.is_empty() && ids.is_empty() {
            // The session's tokens are the whole prompt: errors about its length name it.
            return Ok(Prompt {
                field: "session_id",
                given: Given::Ids(Vec::new()),
            });
        }
        Prompt::new(text, ids, fields, config)
    }

    /// A text prompt, for requests that take no ids.
    pub fn text(field: &'static str, text: String, config: &Config) -> Result<Self, Error> {
        Ok(Prompt {
            field,
            given: Given::Text(prompt_text(field, text, config)?),
        })
    }
}

/// A valid generation request.
#[derive(Clone, Debug)]
pub struct GenerateParams {
    pub prompt: Prompt,
    pub max_new_tokens: usize,
    pub shaping: dec::Shaping,
    pub seed: u64,
    pub stop: Vec<String>,
    pub n: usize,
    /// Per-token details with this many alternatives.
    pub logprobs: Option<usize>,
    pub ignore_eos: bool,
    /// Per completion, a temperature that replaces the shaping's (Compare); empty: none.
    pub temperatures: Vec<f32>,
    /// The model asked for: empty for the transformer, else an n-gram model's name.
    pub model: String,
    /// The client's name for the request; `None`: the gateway mints one.
    pub request_id: Option<String>,
    /// Token ids that end a completion.
    pub stop_token_ids: Vec<u32>,
    /// Keep what stopped a completion at the end of its text.
    pub include_stop_str: bool,
    /// Before this many tokens, the end-of-text and stop tokens cannot be picked.
    pub min_new_tokens: usize,
    /// The client session continued (its tokens come before the prompt); empty: none.
    pub session_id: String,
    /// The session takes the prompt and the completion when it ends.
    pub append_to_session: bool,
}

/// A session continues with the model it was created with: `model` must be empty then.
pub fn check_session(session_id: &str, model: &str) -> Result<(), Error> {
    if !session_id.is_empty() && !model.is_empty() {
        return Err(Error::invalid(
            "model",
            format!(
                "`model` is {model:?} with `session_id`; leave it empty: the session runs the model it was created with"
            ),
        ));
    }
    Ok(())
}

/// A non-empty text within `max_prompt_bytes`; `field` names it in errors.
fn prompt_text(field: &'static str, text: String, config: &Config) -> Result<String, Error> {
    if text.is_empty() {
        return Err(Error::invalid(
            field,
            format!("`{field}` must not be empty"),
        ));
    }
    if text.len() > config.max_prompt_bytes {
        return Err(Error::invalid(
            field,
            format!(
                "`{field}` is {} bytes, over the limit of {} bytes",
                text.len(),
                config.max_prompt_bytes
            ),
        ));
    }
    Ok(text)
}

/// Checks a request's shaping fields with the rules the backends apply again
/// (`oneword_sampling`); the ids of `logit_bias` wait for the vocabulary
/// ([`GenerateParams::check_against_model`]).
pub(crate) fn shaping(shaping: dec::Shaping) -> Result<dec::Shaping, Error> {
    oneword_sampling::shaping("", &shaping, None)?;
    Ok(shaping)
}

impl GenerateParams {
    /// Validates everything that does not need the prompt's tokens.
    pub fn new(r: pb::GenerateRequest, config: &Config) -> Result<Self, Error> {
        let prompt = Prompt::after_session(
            &r.session_id,
            r.prompt,
            r.prompt_token_ids,
            PROMPT_FIELDS,
            config,
        )?;
        let request_id = crate::requests::valid_id("request_id", r.request_id)?;
        let max_new_tokens = r.max_new_tokens.unwrap_or(config.default_max_new_tokens);
        if max_new_tokens == 0 || max_new_tokens > config.max_new_tokens {
            return Err(Error::invalid(
                "max_new_tokens",
                format!(
                    "`max_new_tokens` must be in 1..={}, got {max_new_tokens}",
                    config.max_new_tokens
                ),
            ));
        }
        let shaping = shaping(dec::Shaping {
            temperature: r.temperature,
            top_k: r.top_k,
            top_p: r.top_p,
            min_p: r.min_p,
            typical_p: r.typical_p,
            logit_bias: r.logit_bias,
            banned_ids: Vec::new(),
            repetition_penalty: r.repetition_penalty,
            frequency_penalty: r.frequency_penalty,
            presence_penalty: r.presence_penalty,
        })?;
        let min_new_tokens = r.min_new_tokens.unwrap_or(0);
        if min_new_tokens > max_new_tokens {
            return Err(Error::invalid(
                "min_new_tokens",
                format!(
                    "`min_new_tokens` must be at most `max_new_tokens` ({max_new_tokens}), got {min_new_tokens}"
                ),
            ));
        }
        let n = r.n.unwrap_or(1);
        if n == 0 || n > config.max_n {
            return Err(Error::invalid(
                "n",
                format!("`n` must be in 1..={}, got {n}", config.max_n),
            ));
        }
        if r.stop.len() > config.max_stop_sequences as usize {
            return Err(Error::invalid(
                "stop",
                format!(
                    "`stop` has {} sequences, over the limit of {}",
                    r.stop.len(),
                    config.max_stop_sequences
                ),
            ));
        }
        for (i, s) in r.stop.iter().enumerate() {
            if s.is_empty() {
                return Err(Error::invalid(
                    "stop",
                    format!("`stop[{i}]` must not be empty"),
                ));
            }
            if s.len() > config.max_stop_sequence_bytes as usize {
                return Err(Error::invalid(
                    "stop",
                    format!(
                        "`stop[{i}]` is {} bytes, over the limit of {}",
                        s.len(),
                        config.max_stop_sequence_bytes
                    ),
                ));
            }
        }
        if r.stop_token_ids.len() > MAX_STOP_TOKEN_IDS {
            return Err(Error::invalid(
                "stop_token_ids",
                format!(
                    "`stop_token_ids` has {} ids, over the limit of {MAX_STOP_TOKEN_IDS}",
                    r.stop_token_ids.len()
                ),
            ));
        }
        if let Some(k) = r.logprobs.filter(|&k| k > config.max_top_n) {
            return Err(Error::invalid(
                "logprobs",
                format!("`logprobs` must be in 0..={}, got {k}", config.max_top_n),
            ));
        }
        check_session(&r.session_id, &r.model)?;
        if r.append_to_session && (r.session_id.is_empty() || n != 1) {
            return Err(Error::invalid(
                "append_to_session",
                format!(
                    "`append_to_session` needs a `session_id` and `n` = 1 (one completion to append), got n = {n}{}",
                    if r.session_id.is_empty() { " and no session_id" } else { "" }
                ),
            ));
        }
        Ok(GenerateParams {
            prompt,
            max_new_tokens: max_new_tokens as usize,
            shaping,
            seed: r.seed.unwrap_or_else(crate::rng::random_seed),
            stop: r.stop,
            n: n as usize,
            logprobs: r.logprobs.map(|k| k as usize),
            ignore_eos: r.ignore_eos,
            temperatures: Vec::new(),
            model: r.model,
            request_id,
            stop_token_ids: r.stop_token_ids,
            include_stop_str: r.include_stop_str_in_output,
            min_new_tokens: min_new_tokens as usize,
            session_id: r.session_id,
            append_to_session: r.append_to_session,
        })
    }

    /// The tokens that cannot be picked after `generated` tokens: until `min_new_tokens`, the
    /// end-of-text token `eos` (unless EOS is ignored) and the stop tokens.
    pub fn held_back(&self, generated: usize, eos: u32) -> Vec<u32> {
        if generated >= self.min_new_tokens {
            return Vec::new();
        }
        let eos = (!self.ignore_eos).then_some(eos);
        eos.into_iter()
            .chain(self.stop_token_ids.iter().copied())
            .collect()
    }

    /// Whether a penalty is on, so the decoder must be told which tokens each step feeds.
    pub fn penalizes(&self) -> bool {
        let s = &self.shaping;
        s.repetition_penalty.is_some_and(|p| p != 1.0)
            || s.frequency_penalty.is_some_and(|p| p != 0.0)
            || s.presence_penalty.is_some_and(|p| p != 0.0)
    }

    /// The shaping of completion `sample`.
    pub fn shaping_of(&self, sample: usize) -> dec::Shaping {
        let mut shaping = self.shaping.clone();
        if let Some(&t) = self.temperatures.get(sample) {
            shaping.temperature = Some(t);
        }
        shaping
    }

    /// Checks what needs the model: token ids against the vocabulary, and the prompt's token
    /// count against the context window.
    pub fn check_against_model(
        &self,
        prompt_tokens: usize,
        context: usize,
        vocab_size: usize,
    ) -> Result<(), Error> {
        let biased = self.shaping.logit_bias.keys().copied();
        oneword_sampling::check_logit_bias_ids("", biased, vocab_size)?;
        let outside = self.stop_token_ids.iter().enumerate();
        if let Some((i, id)) = outside
            .into_iter()
            .find(|(_, &id)| id as usize >= vocab_size)
        {
            return Err(Error::invalid(
                "stop_token_ids",
                format!(
                    "`stop_token_ids[{i}]` is {id}, outside the vocabulary of {vocab_size} tokens"
                ),
            ));
        }
        if prompt_tokens == 0 {
            let field = self.prompt.field;
            return Err(Error::invalid(
                field,
                format!("`{field}` must contain at least one token"),
            ));
        }
        if prompt_tokens + self.max_new_tokens > context {
            return Err(Error::ContextLength {
                field: self.prompt.field,
                prompt_tokens,
                max_new_tokens: self.max_new_tokens,
                context,
            });
        }
        Ok(())
    }
}

/// Most token ids one request may stop at.
const MAX_STOP_TOKEN_IDS: usize = 64;

/// The prompt's fields in Generate, NextTokens and Compare.
pub const PROMPT_FIELDS: [&str; 2] = ["prompt", "prompt_token_ids"];

/// A valid next-token-table request.
pub struct NextTokensParams {
    pub prompt: Prompt,
    pub top_n: usize,
    /// The shaping to report, when any was given.
    pub shaping: Option<dec::Shaping>,
    pub full_row: bool,
    pub model: String,
    /// The client session whose next tokens are asked (then the prompt's); empty: none.
    pub session_id: String,
}

impl NextTokensParams {
    pub fn new(r: pb::NextTokensRequest, config: &Config) -> Result<Self, Error> {
        let prompt = Prompt::after_session(
            &r.session_id,
            r.prompt,
            r.prompt_token_ids,
            PROMPT_FIELDS,
            config,
        )?;
        check_session(&r.session_id, &r.model)?;
        let top_n = r.top_n.unwrap_or(5);
        if top_n == 0 || top_n > config.max_top_n {
            return Err(Error::invalid(
                "top_n",
                format!("`top_n` must be in 1..={}, got {top_n}", config.max_top_n),
            ));
        }
        let shaped = r.temperature.is_some() || r.top_k.is_some() || r.top_p.is_some();
        let shaping = shaping(dec::Shaping {
            temperature: r.temperature,
            top_k: r.top_k,
            top_p: r.top_p,
            ..Default::default()
        })?;
        Ok(NextTokensParams {
            prompt,
            top_n: top_n as usize,
            shaping: shaped.then_some(shaping),
            full_row: r.full_row,
            model: r.model,
            session_id: r.session_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::for_services(String::new(), String::new(), String::new())
    }

    fn request() -> pb::GenerateRequest {
        pb::GenerateRequest {
            prompt: "Hello".into(),
            ..Default::default()
        }
    }

    fn error(r: pb::GenerateRequest) -> String {
        GenerateParams::new(r, &config()).unwrap_err().to_string()
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let p = GenerateParams::new(request(), &config()).unwrap();
        assert_eq!((p.max_new_tokens, p.n, p.logprobs), (16, 1, None));
        assert_eq!(p.shaping.temperature, None);
    }

    #[test]
    fn each_bad_field_is_named_with_its_value() {
        assert!(error(pb::GenerateRequest {
            prompt: String::new(),
            ..request()
        })
        .contains("`prompt`"));
        assert!(error(pb::GenerateRequest {
            max_new_tokens: Some(0),
            ..request()
        })
        .contains("got 0"));
        assert!(error(pb::GenerateRequest {
            max_new_tokens: Some(u32::MAX),
            ..request()
        })
        .contains("4294967295"));
        assert!(error(pb::GenerateRequest {
            temperature: Some(f32::NAN),
            ..request()
        })
        .contains("NaN"));
        assert!(error(pb::GenerateRequest {
            temperature: Some(-1.0),
            ..request()
        })
        .contains("got -1"));
        assert!(error(pb::GenerateRequest {
            temperature: Some(f32::INFINITY),
            ..request()
        })
        .contains("inf"));
        assert!(error(pb::GenerateRequest {
            top_p: Some(1.5),
            ..request()
        })
        .contains("(0, 1], got 1.5"));
        assert!(error(pb::GenerateRequest {
            top_p: Some(0.0),
            ..request()
        })
        .contains("got 0"));
        assert!(error(pb::GenerateRequest {
            top_k: Some(0),
            ..request()
        })
        .contains("`top_k`"));
        assert!(error(pb::GenerateRequest {
            n: Some(0),
            ..request()
        })
        .contains("`n`"));
        assert!(error(pb::GenerateRequest {
            n: Some(17),
            ..request()
        })
        .contains("1..=16, got 17"));
        assert!(error(pb::GenerateRequest {
            stop: vec![String::new()],
            ..request()
        })
        .contains("`stop[0]`"));
        assert!(error(pb::GenerateRequest {
            stop: vec!["x".into(); 9],
            ..request()
        })
        .contains("9 sequences"));
        assert!(error(pb::GenerateRequest {
            logprobs: Some(101),
            ..request()
        })
        .contains("`logprobs`"));
        let bias = [(5u32, 101.0f32)].into_iter().collect();
        assert!(error(pb::GenerateRequest {
            logit_bias: bias,
            ..request()
        })
        .contains("`logit_bias[5]`"));
    }

    #[test]
    fn the_context_window_bounds_prompt_plus_new_tokens() {
        let p = GenerateParams::new(
            pb::GenerateRequest {
                max_new_tokens: Some(100),
                ..request()
            },
            &config(),
        )
        .unwrap();
        assert!(p.check_against_model(924, 1024, 50257).is_ok());
        let e = p.check_against_model(925, 1024, 50257).unwrap_err();
        assert!(matches!(
            e,
            Error::ContextLength {
                field: "prompt",
                prompt_tokens: 925,
                max_new_tokens: 100,
                context: 1024
            }
        ));
        assert!(p.check_against_model(0, 1024, 50257).is_err());
    }
}
