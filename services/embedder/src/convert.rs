//! proto ⇄ domain: requests are validated once here, into typed values, and tensors are packed
//! for the wire.

use candle_core::{DType, Tensor};
use oneword_proto::common::v1 as common;
use oneword_proto::embedder::v1 as pb;
use oneword_runtime::tensor;

use crate::Error;

/// What validation needs to know about the served model.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub vocab_size: usize,
    pub context_length: usize,
    pub max_batch_tokens: usize,
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
    if let Some((i, id)) = first_at_or_above(&ids, limits.vocab_size) {
        let field = format!("ids[{i}]");
        return Err(Error::invalid(
            &field,
            format!(
                "`{field}` is {id}, outside the vocabulary of {} tokens",
                limits.vocab_size
            ),
        ));
    }
    Ok(ids)
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
    Ok(tensor::to_wire(tensor)?)
}

/// The wire form of a lookup's result widened to f32, whatever the model's dtype.
pub fn pack_f32(tensor: &Tensor) -> Result<common::Tensor, Error> {
    let widened = tensor
        .to_dtype(DType::F32)
        .map_err(tensor::WireError::from)?;
    pack(&widened)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        vocab_size: 10,
        context_length: 4,
        max_batch_tokens: 3,
    };

    fn embed(ids: &[u32], positions: &[u32]) -> Result<EmbedInput, Error> {
        embed_input(
            pb::EmbedRequest {
                ids: ids.to_vec(),
                positions: positions.to_vec(),
            },
            &LIMITS,
        )
    }

    fn field(result: Result<EmbedInput, Error>) -> (String, String) {
        match result {
            Err(Error::InvalidArgument(field, message)) => (field, message),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn accepts_the_edges_of_every_range() {
        let input = embed(&[0, 9, 5], &[3, 0, 1]).unwrap();
        assert_eq!((input.ids, input.positions), (vec![0, 9, 5], vec![3, 0, 1]));
    }

    #[test]
    fn names_the_first_bad_field_with_its_index_value_and_range() {
        assert_eq!(
            field(embed(&[0, 10, 11], &[0, 1, 2])),
            (
                "ids[1]".into(),
                "`ids[1]` is 10, outside the vocabulary of 10 tokens".into()
            )
        );
        assert_eq!(
            field(embed(&[0, 1], &[0, 4])),
            (
                "positions[1]".into(),
                "`positions[1]` is 4, outside the context of 4 positions".into()
            )
        );
        assert_eq!(
            field(embed(&[0, 1], &[0])),
            ("positions".into(), "`ids` and `positions` must be the same length, but `ids` has length 2 and `positions` has length 1".into())
        );
        assert_eq!(
            field(embed(&[], &[])),
            ("ids".into(), "`ids` must not be empty".into())
        );
        assert_eq!(
            field(embed(&[0; 4], &[0; 4])),
            (
                "ids".into(),
                "`ids` holds 4 tokens, more than the 3 one request may carry".into()
            )
        );
    }
}
