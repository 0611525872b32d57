//! Word embeddings (the essay's "meaning space"): the gateway reads each word as GPT-2 tokens and
//! asks the embedder for the vectors, their distances, a 2-D map, or the nearest tokens.

use oneword_proto::embedder::v1 as emb;
use oneword_proto::gateway::v1 as pb;
use oneword_runtime::deadline::Deadline;
use tonic::Status;

use crate::downstream::Model;
use crate::service::GatewayService;
use crate::Error;

/// A word as GPT-2 meets it inside a sentence: after a space.
fn as_in_a_sentence(word: &str) -> Vec<u8> {
    if word.starts_with(char::is_whitespace) {
        word.as_bytes().to_vec()
    } else {
        format!(" {word}").into_bytes()
    }
}

/// Tokens by id as words of one token each; `field` names them in errors.
fn tokens_by_id(
    field: &'static str,
    ids: &[u32],
    model: &Model,
) -> Result<Vec<pb::WordTokens>, Status> {
    ids.iter()
        .enumerate()
        .map(|(i, &id)| match model.pieces.get(id as usize) {
            Some(piece) => Ok(pb::WordTokens {
                ids: vec![id],
                pieces: vec![piece.clone()],
            }),
            None => {
                let at = if field == "token_id" {
                    field.to_string()
                } else {
                    format!("{field}[{i}]")
                };
                let message = format!(
                    "`{at}` is {id}, outside the vocabulary of {} tokens",
                    model.pieces.len()
                );
                Err(Error::invalid(field, message).into())
            }
        })
        .collect()
}

impl GatewayService {
    /// Each word's token ids and pieces; `field` names the words in errors.
    async fn word_tokens(
        &self,
        field: &'static str,
        words: &[String],
        deadline: &Deadline,
    ) -> Result<Vec<pb::WordTokens>, Status> {
        let total: usize = words.iter().map(String::len).sum();
        if total > self.config.max_prompt_bytes {
            return Err(Error::invalid(
                field,
                format!(
                    "`{field}` hold {total} bytes, over the limit of {}",
                    self.config.max_prompt_bytes
                ),
            )
            .into());
        }
        if let Some(i) = words.iter().position(|w| w.trim().is_empty()) {
            let at = if words.len() == 1 && field == "word" {
                field.to_string()
            } else {
                format!("{field}[{i}]")
            };
            return Err(Error::invalid(field, format!("`{at}` is empty")).into());
        }
        let texts = words.iter().map(|w| as_in_a_sentence(w)).collect();
        let encodings = self.downstream.encode_many(texts, deadline).await?;
        Ok(encodings
            .into_iter()
            .map(|e| pb::WordTokens {
                ids: e.ids,
                pieces: e.pieces,
            })
            .collect())
    }

    /// Word vectors, distances and map.
    pub async fn words_of(
        &self,
        request: pb::WordsRequest,
        deadline: &Deadline,
    ) -> Result<pb::WordsResponse, Status> {
        if request.words.is_empty() && request.token_ids.is_empty() {
            return Err(Error::invalid("words", "give `words` or `token_ids`").into());
        }
        let model = self.downstream.model(deadline).await?;
        let mut tokens = if request.words.is_empty() {
            Vec::new()
        } else {
            self.word_tokens("words", &request.words, deadline).await?
        };
        tokens.extend(tokens_by_id("token_ids", &request.token_ids, &model)?);
        let groups = tokens
            .iter()
            .map(|t| emb::TokenGroup { ids: t.ids.clone() })
            .collect();
        let seen = self
            .downstream
            .words(
                emb::WordsRequest {
                    words: groups,
                    project: request.project,
                },
                deadline,
            )
            .await?;
        Ok(pb::WordsResponse {
            tokens,
            vectors: seen.vectors,
            cosine: seen.cosine,
            euclidean: seen.euclidean,
            projection: seen.projection,
            explained_variance: seen.explained_variance,
        })
    }

    /// The tokens nearest a word.
    pub async fn nearest_to(
        &self,
        request: pb::NearestRequest,
        deadline: &Deadline,
    ) -> Result<pb::NearestResponse, Status> {
        let model = self.downstream.model(deadline).await?;
        let query = match request.token_id {
            Some(_) if !request.word.is_empty() => {
                return Err(
                    Error::invalid("token_id", "give `word` or `token_id`, not both").into(),
                )
            }
            Some(id) => tokens_by_id("token_id", &[id], &model)?,
            None => {
                self.word_tokens("word", std::slice::from_ref(&request.word), deadline)
                    .await?
            }
        }
        .pop()
        .ok_or_else(|| Error::Internal("the tokenizer returned no encoding".into()))?;
        let found = self
            .downstream
            .nearest(
                emb::NearestRequest {
                    query: Some(emb::TokenGroup {
                        ids: query.ids.clone(),
                    }),
                    top: request.top,
                    include_query: request.include_query,
                },
                deadline,
            )
            .await?;
        let pieces = found
            .ids
            .iter()
            .map(|&id| model.pieces.get(id as usize).cloned().unwrap_or_default())
            .collect();
        Ok(pb::NearestResponse {
            query: Some(query),
            ids: found.ids,
            pieces,
            similarities: found.similarities,
        })
    }
}
