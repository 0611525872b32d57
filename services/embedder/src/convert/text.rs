//! EmbedText's request and answer.

use oneword_proto::embedder::v1 as pb;
use oneword_proto::tensor::f32_to_wire;

use crate::text::{Inputs, TextModel, TextRequest, TextVectors};
use crate::Error;

/// Validates an EmbedText request against the served text model: its name, 1 to `max_texts`
/// inputs of one kind, none empty, token ids in the vocabulary.
pub fn text_request(
    request: pb::EmbedTextRequest,
    model: &TextModel,
) -> Result<TextRequest, Error> {
    let pb::EmbedTextRequest {
        texts,
        tokens,
        model: asked,
        truncate,
        normalize,
    } = request;
    if !asked.is_empty() && asked != model.name {
        return Err(Error::invalid(
            "model",
            format!(
                "`model` is {asked:?}, but this embedder serves the text model {:?} (or leave `model` empty)",
                model.name
            ),
        ));
    }
    let inputs = match (texts.is_empty(), tokens.is_empty()) {
        (true, true) => {
            return Err(Error::invalid(
                "texts",
                "`texts` must not be empty (or give `tokens`)",
            ))
        }
        (false, false) => {
            return Err(Error::invalid(
                "tokens",
                "give `texts` or `tokens`, not both",
            ))
        }
        (false, true) => Inputs::Texts(texts),
        (true, false) => Inputs::Tokens(tokens.into_iter().map(|t| t.ids).collect()),
    };
    let (field, count) = match &inputs {
        Inputs::Texts(texts) => ("texts", texts.len()),
        Inputs::Tokens(lists) => ("tokens", lists.len()),
    };
    if count > model.max_texts {
        return Err(Error::invalid(
            field,
            format!(
                "`{field}` holds {count} inputs, more than the {} one request may carry",
                model.max_texts
            ),
        ));
    }
    match &inputs {
        Inputs::Texts(texts) => {
            if let Some(i) = texts.iter().position(String::is_empty) {
                let field = format!("texts[{i}]");
                return Err(Error::invalid(&field, format!("`{field}` is empty")));
            }
        }
        Inputs::Tokens(lists) => {
            let vocab = model.encoder.vocab_size;
            for (i, ids) in lists.iter().enumerate() {
                let field = format!("tokens[{i}].ids");
                if ids.is_empty() {
                    return Err(Error::invalid(&field, format!("`{field}` is empty")));
                }
                if let Some((j, id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab)
                {
                    let field = format!("{field}[{j}]");
                    return Err(Error::invalid(
                        &field,
                        format!("`{field}` is {id}, outside the text model's vocabulary of {vocab} tokens"),
                    ));
                }
            }
        }
    }
    Ok(TextRequest {
        inputs,
        truncate,
        normalize,
    })
}

/// The wire form of the vectors.
pub fn text_response(vectors: TextVectors, model: &TextModel) -> pb::EmbedTextResponse {
    let n = vectors.token_counts.len() as u32;
    pb::EmbedTextResponse {
        embeddings: Some(f32_to_wire(
            &vectors.vectors,
            &[n, vectors.dimensions as u32],
        )),
        total_tokens: vectors.token_counts.iter().map(|&c| u64::from(c)).sum(),
        token_counts: vectors.token_counts,
        truncated: vectors.truncated,
        model: model.name.clone(),
    }
}

/// What Info says about the text model.
pub fn text_model_info(model: &TextModel) -> pb::TextModelInfo {
    let encoder = &model.encoder;
    pb::TextModelInfo {
        name: model.name.clone(),
        model_type: "bert".into(),
        dimensions: encoder.dimensions as u32,
        max_tokens: encoder.max_tokens as u32,
        pooling: encoder.pooling().name().into(),
        normalize: encoder.normalizes(),
        max_texts: model.max_texts as u32,
    }
}
