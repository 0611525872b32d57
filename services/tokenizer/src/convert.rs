//! proto ⇄ domain: requests are validated once here, into typed values, and results are put
//! back into their messages.

use oneword_proto::common::v1 as common;
use oneword_proto::tokenizer::v1 as pb;

use crate::Error;
use oneword_bpe::{BpeTokenizer, Encoded};

/// The request limits from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_batch_texts: usize,
    pub max_text_bytes: usize,
}

/// An Encode request that passed validation.
#[derive(Debug)]
pub struct ValidEncode {
    pub texts: Vec<String>,
    pub allow_special: bool,
}

impl ValidEncode {
    /// Bytes of text in the batch.
    pub fn total_bytes(&self) -> usize {
        self.texts.iter().map(String::len).sum()
    }
}

/// Checks the batch size, each text's size and that each text is UTF-8.
pub fn encode_request(request: pb::EncodeRequest, limits: &Limits) -> Result<ValidEncode, Error> {
    let count = request.texts.len();
    if count == 0 {
        return Err(Error::invalid(
            "texts",
            "`texts` must hold at least one text, got none",
        ));
    }
    if count > limits.max_batch_texts {
        return Err(Error::invalid(
            "texts",
            format!(
                "`texts` holds {count} texts, over the limit of {} per call",
                limits.max_batch_texts
            ),
        ));
    }
    let texts = request
        .texts
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| text(i, bytes, limits.max_text_bytes))
        .collect::<Result<_, _>>()?;
    Ok(ValidEncode {
        texts,
        allow_special: request.allow_special,
    })
}

fn text(i: usize, bytes: Vec<u8>, max_bytes: usize) -> Result<String, Error> {
    let field = format!("texts[{i}]");
    if bytes.len() > max_bytes {
        let message = format!(
            "`{field}` is {} bytes, over the limit of {max_bytes} bytes",
            bytes.len()
        );
        return Err(Error::invalid(field, message));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let byte = e.as_bytes().get(at).copied().unwrap_or_default();
        let message = format!(
            "`{field}` must be UTF-8, but the byte 0x{byte:02x} at offset {at} is not valid UTF-8"
        );
        Error::invalid(field, message)
    })
}

/// One text's tokens as the struct of arrays the proto carries.
pub fn encoding(tokenizer: &BpeTokenizer, encoded: Encoded) -> pb::Encoding {
    let Encoded { ids, offsets } = encoded;
    // Offsets fit: texts are at most `max_text_bytes`, which the configuration keeps below 2^32.
    pb::Encoding {
        tokens: ids
            .iter()
            .map(|&id| tokenizer.text(id).to_owned())
            .collect(),
        pieces: ids.iter().map(|&id| tokenizer.piece(id).to_vec()).collect(),
        starts: offsets.iter().map(|&(start, _)| start as u32).collect(),
        ends: offsets.iter().map(|&(_, end)| end as u32).collect(),
        special: ids.iter().map(|&id| tokenizer.is_special(id)).collect(),
        ids,
    }
}

/// Decoded bytes, exact and as lossy text.
pub fn decoded(raw: Vec<u8>) -> pb::DecodeResponse {
    pb::DecodeResponse {
        text: String::from_utf8_lossy(&raw).into_owned(),
        raw,
    }
}

/// The whole vocabulary as bytes.
pub fn vocabulary(tokenizer: &BpeTokenizer) -> pb::VocabularyResponse {
    pb::VocabularyResponse {
        pieces: tokenizer.pieces().to_vec(),
        special_ids: tokenizer.special_ids().to_vec(),
        vocab_size: tokenizer.vocab_size() as u32,
        eos_token_id: tokenizer.eos_token_id(),
    }
}

/// What Info reports about the model. Without config.json the model's shape is unknown and its
/// fields are 0; the vocabulary size is always the tokenizer's own.
pub fn model_info(model_id: &str, tokenizer: &BpeTokenizer) -> common::ModelInfo {
    let config = tokenizer.config();
    let shape = |f: fn(&oneword_checkpoint::Gpt2Config) -> usize| config.map_or(0, |c| f(c) as u32);
    common::ModelInfo {
        model_id: model_id.to_owned(),
        model_type: config.map_or("gpt2", |c| c.model_type.as_str()).to_owned(),
        vocab_size: tokenizer.vocab_size() as u32,
        context_length: shape(|c| c.n_positions),
        hidden_size: shape(|c| c.n_embd),
        num_layers: shape(|c| c.n_layer),
        num_heads: shape(|c| c.n_head),
        eos_token_id: tokenizer.eos_token_id(),
        device: "cpu".to_owned(),
        dtype: common::Dtype::Unspecified as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_batch_texts: 2,
        max_text_bytes: 8,
    };

    fn request(texts: &[&[u8]]) -> pb::EncodeRequest {
        pb::EncodeRequest {
            texts: texts.iter().map(|t| t.to_vec()).collect(),
            allow_special: false,
        }
    }

    fn message(result: Result<ValidEncode, Error>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn accepts_empty_texts_and_counts_bytes() {
        let valid = encode_request(request(&[b"", "é".as_bytes()]), &LIMITS).unwrap();
        assert_eq!(valid.texts, ["", "é"]);
        assert_eq!(valid.total_bytes(), 2);
    }

    #[test]
    fn names_the_field_the_value_and_the_limit() {
        assert_eq!(
            message(encode_request(request(&[]), &LIMITS)),
            "`texts` must hold at least one text, got none"
        );
        assert_eq!(
            message(encode_request(request(&[b"a", b"b", b"c"]), &LIMITS)),
            "`texts` holds 3 texts, over the limit of 2 per call"
        );
        assert_eq!(
            message(encode_request(request(&[b"a", b"123456789"]), &LIMITS)),
            "`texts[1]` is 9 bytes, over the limit of 8 bytes"
        );
        assert_eq!(
            message(encode_request(request(&[b"ok", b"ab\xe2\x82"]), &LIMITS)),
            "`texts[1]` must be UTF-8, but the byte 0xe2 at offset 2 is not valid UTF-8"
        );
    }
}
