//! proto ⇄ domain: requests are validated once here, into typed values, and tensors are packed
//! for the wire.

use candle_core::{DType, Tensor};
use oneword_model::wire;
use oneword_proto::common::v1 as common;
use oneword_proto::embedder::v1 as pb;
use oneword_proto::tensor::f32_to_wire;

use crate::nearest::{DEFAULT_TOP, MAX_TOP};
use crate::words::{Groups, WordMap};
use crate::Error;

pub mod text;

/// What validation needs to know about the served model.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub vocab_size: usize,
    pub context_length: usize,
    /// Most ids in one request (in Words, all words' ids together).
    pub max_batch_tokens: usize,
    /// Most ids in one EmbedParts request, whose answer holds two f32 tensors.
    pub max_parts_tokens: usize,
    /// Most words in one Words request.
    pub max_words: usize,
}

impl Limits {
    /// The limits an EmbedParts request is validated with: Embed's, with its own cap on ids.
    pub fn parts(&self) -> Limits {
        Limits {
            max_batch_tokens: self.max_parts_tokens,
            ..*self
        }
    }
}

/// A valid Embed request: one position per id, at most `max_batch_tokens` of them, all in range.
#[derive(Debug)]
pub struct EmbedInput {
    pub ids: Vec<u32>,
    pub positions: Vec<u32>,
}

/// Validates an Embed request.
pub fn embed_input(request: pb::EmbedRequest, limits: &Limits) -> Result<EmbedInput, Error> {
    let pb::EmbedRequest { ids, positions } = request;
    let ids = token_ids(ids, limits)?;
    if positions.len() != ids.len() {
        return Err(Error::invalid(
            "positions",
            format!(
                "`ids` and `positions` must be the same length, but `ids` has length {} and `positions` has length {}",
                ids.len(),
                positions.len()
            ),
        ));
    }
    if let Some((i, p)) = first_at_or_above(&positions, limits.context_length) {
        let field = format!("positions[{i}]");
        return Err(Error::invalid(
            &field,
            format!(
                "`{field}` is {p}, outside the context of {} positions",
                limits.context_length
            ),
        ));
    }
    Ok(EmbedInput { ids, positions })
}

/// Validates the ids of an Embed or TokenVectors request.
pub fn token_ids(ids: Vec<u32>, limits: &Limits) -> Result<Vec<u32>, Error> {
    if ids.is_empty() {
        return Err(Error::invalid("ids", "`ids` must not be empty"));
    }
    if ids.len() > limits.max_batch_tokens {
        return Err(Error::invalid(
            "ids",
            format!(
                "`ids` holds {} tokens, more than the {} one request may carry",
                ids.len(),
                limits.max_batch_tokens
            ),
        ));
    }
    in_vocabulary(&ids, "ids", limits)?;
    Ok(ids)
}

/// A valid Words request.
#[derive(Debug)]
pub struct WordsInput {
    pub groups: Groups,
    pub project: bool,
}

/// Validates a Words request: 1 to `max_words` words, none empty, at most `max_batch_tokens`
/// ids in all, each in the vocabulary.
pub fn words_input(request: pb::WordsRequest, limits: &Limits) -> Result<WordsInput, Error> {
    let pb::WordsRequest { words, project } = request;
    if words.is_empty() {
        return Err(Error::invalid("words", "`words` must not be empty"));
    }
    if words.len() > limits.max_words {
        return Err(Error::invalid(
            "words",
            format!(
                "`words` holds {} words, more than the {} one request may carry",
                words.len(),
                limits.max_words
            ),
        ));
    }
    let total: usize = words.iter().map(|w| w.ids.len()).sum();
    if total > limits.max_batch_tokens {
        return Err(Error::invalid(
            "words",
            format!(
                "`words` hold {total} token ids in all, more than the {} one request may carry",
                limits.max_batch_tokens
            ),
        ));
    }
    let mut groups = Groups {
        ids: Vec::with_capacity(total),
        lengths: Vec::with_capacity(words.len()),
    };
    for (i, word) in words.into_iter().enumerate() {
        token_group(&word.ids, &format!("words[{i}]"), limits)?;
        groups.lengths.push(word.ids.len());
        groups.ids.extend(word.ids);
    }
    Ok(WordsInput { groups, project })
}

/// A valid Nearest request.
#[derive(Debug)]
pub struct NearestInput {
    pub ids: Vec<u32>,
    pub top: usize,
    pub include_query: bool,
}

/// Validates a Nearest request: a query of 1 to `max_batch_tokens` ids in the vocabulary, and
/// `top` in 1..=MAX_TOP (absent means DEFAULT_TOP).
pub fn nearest_input(request: pb::NearestRequest, limits: &Limits) -> Result<NearestInput, Error> {
    let pb::NearestRequest {
        query,
        top,
        include_query,
    } = request;
    let ids = query.map(|q| q.ids).unwrap_or_default();
    if ids.len() > limits.max_batch_tokens {
        return Err(Error::invalid(
            "query.ids",
            format!(
                "`query.ids` holds {} tokens, more than the {} one request may carry",
                ids.len(),
                limits.max_batch_tokens
            ),
        ));
    }
    token_group(&ids, "query", limits)?;
    let top = match top.map(|t| t as usize) {
        None => DEFAULT_TOP,
        Some(t) if (1..=MAX_TOP).contains(&t) => t,
        Some(t) => {
            return Err(Error::invalid(
                "top",
                format!("`top` must be in 1..={MAX_TOP}, got {t}"),
            ))
        }
    };
    Ok(NearestInput {
        ids,
        top,
        include_query,
    })
}

/// A word's ids (`{field}.ids`): at least one, each in the vocabulary.
fn token_group(ids: &[u32], field: &str, limits: &Limits) -> Result<(), Error> {
    if ids.is_empty() {
        return Err(Error::invalid(field, format!("`{field}` has no token ids")));
    }
    in_vocabulary(ids, &format!("{field}.ids"), limits)
}

/// Names the first id of `field` outside the vocabulary, as `{field}[i]`.
fn in_vocabulary(ids: &[u32], field: &str, limits: &Limits) -> Result<(), Error> {
    if let Some((i, id)) = first_at_or_above(ids, limits.vocab_size) {
        let field = format!("{field}[{i}]");
        return Err(Error::invalid(
            &field,
            format!(
                "`{field}` is {id}, outside the vocabulary of {} tokens",
                limits.vocab_size
            ),
        ));
    }
    Ok(())
}

fn first_at_or_above(values: &[u32], limit: usize) -> Option<(usize, u32)> {
    values
        .iter()
        .copied()
        .enumerate()
        .find(|&(_, v)| v as usize >= limit)
}

/// The wire form of a lookup's result, in the tensor's own dtype.
pub fn pack(tensor: &Tensor) -> Result<common::Tensor, Error> {
    Ok(wire::to_wire(tensor)?)
}

/// The wire form of a lookup's result widened to f32, whatever the model's dtype.
pub fn pack_f32(tensor: &Tensor) -> Result<common::Tensor, Error> {
    let widened = tensor
        .to_dtype(DType::F32)
        .map_err(wire::TensorWireError::from)?;
    pack(&widened)
}

/// The wire form of EmbedParts' two parts, both widened to f32.
pub fn embed_parts_response(
    token: &Tensor,
    position: &Tensor,
) -> Result<pb::EmbedPartsResponse, Error> {
    Ok(pb::EmbedPartsResponse {
        token: Some(pack_f32(token)?),
        position: Some(pack_f32(position)?),
    })
}

/// The wire form of a word map; the projection's f64 narrows to f32 here and only here.
pub fn words_response(map: WordMap) -> pb::WordsResponse {
    let n = map.vectors.len() / map.width;
    let (projection, explained_variance) = match map.projection {
        Some(p) => (
            p.coordinates.iter().flatten().map(|&x| x as f32).collect(),
            p.explained.iter().map(|&x| x as f32).collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    pb::WordsResponse {
        vectors: Some(f32_to_wire(&map.vectors, &[n as u32, map.width as u32])),
        cosine: map.cosine,
        euclidean: map.euclidean,
        projection,
        explained_variance,
    }
}

/// The wire form of Nearest's ranked `(id, similarity)` pairs.
pub fn nearest_response(hits: Vec<(u32, f32)>) -> pb::NearestResponse {
    let (ids, similarities) = hits.into_iter().unzip();
    pb::NearestResponse { ids, similarities }
}

#[cfg(test)]
mod tests;
