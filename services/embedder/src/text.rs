//! Text embeddings for similarity search: requests are tokenized, checked against the model's
//! token limit and run through the sentence encoder one request at a time on the blocking pool
//! (a pass already uses every core), with a bounded number waiting; more are refused.

use std::sync::Arc;

use oneword_model::SentenceEncoder;
use oneword_runtime::Turns;

use crate::Error;

/// The inputs of one EmbedText request, validated for count and emptiness (the token limit is
/// checked once they are tokenized, off the async workers).
pub struct TextRequest {
    pub inputs: Inputs,
    pub truncate: bool,
    pub normalize: Option<bool>,
}

pub enum Inputs {
    Texts(Vec<String>),
    /// Token ids without special tokens, each below the model's vocabulary size.
    Tokens(Vec<Vec<u32>>),
}

impl Inputs {
    /// The request field the inputs came in, for error messages.
    fn field(&self) -> &'static str {
        match self {
            Inputs::Texts(_) => "texts",
            Inputs::Tokens(_) => "tokens",
        }
    }
}

/// What EmbedText answers.
pub struct TextVectors {
    /// [inputs, dimensions] row-major.
    pub vectors: Vec<f32>,
    pub dimensions: usize,
    pub token_counts: Vec<u32>,
    pub truncated: Vec<bool>,
}

/// The served sentence-embedding model and the turns for running it.
#[derive(Clone)]
pub struct TextModel {
    pub encoder: Arc<SentenceEncoder>,
    /// What the model is called in requests and answers: the id or directory it was loaded from.
    pub name: String,
    pub max_texts: usize,
    turns: Turns,
}

impl TextModel {
    pub fn new(encoder: SentenceEncoder, name: String, max_texts: usize, queue: usize) -> Self {
        TextModel {
            encoder: Arc::new(encoder),
            name,
            max_texts,
            turns: Turns::new(1, queue, "text embedding requests"),
        }
    }

    /// Tokenizes and embeds `request` when its turn comes.
    pub async fn embed(&self, request: TextRequest) -> Result<TextVectors, Error> {
        let encoder = Arc::clone(&self.encoder);
        let span = tracing::Span::current();
        self.turns
            .run(move || span.in_scope(|| embed(&encoder, request)))
            .await?
    }
}

fn embed(encoder: &SentenceEncoder, request: TextRequest) -> Result<TextVectors, Error> {
    let field = request.inputs.field();
    let encoded: Vec<Vec<u32>> = match &request.inputs {
        Inputs::Texts(texts) => texts
            .iter()
            .map(|t| encoder.encode_text(t))
            .collect::<Result<_, _>>()?,
        Inputs::Tokens(lists) => lists
            .iter()
            .map(|ids| encoder.encode_ids(ids))
            .collect::<Result<_, _>>()?,
    };
    let mut inputs = Vec::with_capacity(encoded.len());
    let mut truncated = Vec::with_capacity(encoded.len());
    for (i, mut ids) in encoded.into_iter().enumerate() {
        let over = ids.len() > encoder.max_tokens;
        if over && !request.truncate {
            let field = format!("{field}[{i}]");
            return Err(Error::invalid(
                &field,
                format!(
                    "`{field}` is {} tokens long, over the model's limit of {} (special tokens included); shorten it, or set `truncate` to cut it at the limit",
                    ids.len(),
                    encoder.max_tokens
                ),
            ));
        }
        encoder.truncate(&mut ids);
        truncated.push(over);
        inputs.push(ids);
    }
    let normalize = request.normalize.unwrap_or(encoder.normalizes());
    let vectors = encoder.embed(&inputs, normalize)?;
    Ok(TextVectors {
        vectors,
        dimensions: encoder.dimensions,
        token_counts: inputs.iter().map(|ids| ids.len() as u32).collect(),
        truncated,
    })
}
