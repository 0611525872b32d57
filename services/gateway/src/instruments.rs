//! The essay's instruments: the gateway tokenizes and embeds the text, then asks the decoder for
//! what one pass over it shows (scores, attention, hidden states, the logit lens) or for the
//! weights, and puts the tokens' text beside the numbers.

use oneword_proto::decoder::v1 as dec;
use oneword_proto::gateway::v1 as pb;
use oneword_runtime::deadline::Deadline;
use tonic::Status;

use crate::client_sessions::{continued, Kept};
use crate::convert::{InspectParams, NextTokensParams, Prompt, ScoreParams};
use crate::downstream::{Backend, Inputs, Model, Sessions, DECODER};
use crate::service::GatewayService;
use crate::Error;

/// A list of tokens with their log-probabilities as a table with each token's bytes and text.
pub fn token_table(model: &Model, top: dec::TopTokens) -> pb::TokenTable {
    let pieces: Vec<Vec<u8>> = top
        .ids
        .iter()
        .map(|&id| model.pieces.get(id as usize).cloned().unwrap_or_default())
        .collect();
    pb::TokenTable {
        probabilities: top.logprobs.iter().map(|lp| lp.exp()).collect(),
        texts: pieces
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
        ids: top.ids,
        logprobs: top.logprobs,
        pieces,
    }
}

fn pieces(model: &Model, ids: &[u32]) -> Vec<Vec<u8>> {
    ids.iter()
        .map(|&id| model.pieces.get(id as usize).cloned().unwrap_or_default())
        .collect()
}

impl GatewayService {
    /// The next-token table: one decoder step on a session dropped right after it (a fork of
    /// the client session it continues, if any).
    pub async fn next_token_table(
        &self,
        params: NextTokensParams,
        deadline: Deadline,
    ) -> Result<pb::NextTokensResponse, Status> {
        let down = &self.downstream;
        let model = down.model(&deadline).await?;
        let base = self.base_of(&params.session_id)?;
        let vocab_size = model.pieces.len();
        let (ids, from_session) =
            continued(base.as_deref(), &params.prompt, down, vocab_size, &deadline).await?;
        self.within_context(params.prompt.field, ids.len(), &model)?;
        let prompt_tokens = ids.len() as u32;
        let backend = match &base {
            Some(base) => base.backend.clone(),
            None => down.backend(&params.model, &model, &deadline).await?,
        };
        let session_id = format!("next-{}", uuid::Uuid::new_v4().simple());
        let forked = match &base {
            Some(base) => {
                let (targets, kept) = (vec![session_id.clone()], &ids[..from_session]);
                base.fork_into(down, targets, kept, &deadline).await?
            }
            None => None,
        };
        // What the fork holds already is not fed again.
        let held = forked.as_ref().map_or(0, |f| f.held);
        let positions = (held as u32..prompt_tokens).collect();
        let inputs = Inputs::of(down, &backend, ids[held..].to_vec(), positions, &deadline).await?;
        let shaped = params.shaping.is_some();
        let shaping = params.shaping.unwrap_or(dec::Shaping {
            temperature: Some(0.0),
            ..Default::default()
        });
        let full_row = if params.full_row {
            dec::FullRow::F32
        } else {
            dec::FullRow::None
        };
        let step = dec::SessionStep {
            history: None,
            session_id: session_id.clone(),
            create: held == 0,
            start_position: held as u32,
            input: inputs.rows(0, prompt_tokens as usize - held),
            sampling: Some(dec::Sampling {
                shaping: Some(shaping),
                u: 0.5,
                report: Some(dec::Report {
                    top_n: params.top_n as u32,
                    full_row: full_row as i32,
                }),
            }),
            release_after: true,
            model: if held == 0 {
                backend.model_field()
            } else {
                String::new()
            },
            judge_ids: Vec::new(),
        };
        let mut answer = match forked {
            Some(mut forked) => {
                let answer = forked.decoder.step(vec![step], &deadline).await?;
                // Released by the step itself; by the guard if the step never completed.
                forked.sessions.keep(&[session_id]);
                answer
            }
            None => {
                let service = backend.service();
                down.one_shot(service, &deadline, |mut d| {
                    let request = deadline.request(dec::StepRequest {
                        steps: vec![step.clone()],
                    });
                    async move { d.step(request).await }
                })
                .await?
            }
        };
        let result = answer.results.pop();
        let pick = result.and_then(|r| r.pick).ok_or_else(|| {
            Status::from(Error::Internal(
                "the decoder returned no distribution".into(),
            ))
        })?;
        let table = |top: Option<dec::TopTokens>| token_table(&model, top.unwrap_or_default());
        Ok(pb::NextTokensResponse {
            raw: Some(table(pick.raw_top)),
            shaped: shaped.then(|| table(pick.shaped_top)),
            entropy: pick.entropy,
            shaped_entropy: shaped.then_some(pick.shaped_entropy),
            prompt_tokens,
            full_row: pick.full_row,
        })
    }

    /// A prompt's ids: at least one token, within the context.
    pub(crate) async fn prompt_ids(
        &self,
        prompt: &Prompt,
        model: &Model,
        deadline: &Deadline,
    ) -> Result<Vec<u32>, Error> {
        let vocab_size = model.pieces.len();
        let ids = self
            .downstream
            .prompt_ids(prompt, vocab_size, deadline)
            .await?;
        self.within_context(prompt.field, ids.len(), model)?;
        Ok(ids)
    }

    fn within_context(
        &self,
        field: &'static str,
        tokens: usize,
        model: &Model,
    ) -> Result<(), Error> {
        if tokens > model.context {
            return Err(Error::ContextLength {
                field,
                prompt_tokens: tokens,
                max_new_tokens: 0,
                context: model.context,
            });
        }
        Ok(())
    }

    /// Each token's log-probability given those before it, from one pass.
    pub async fn score_text(
        &self,
        params: ScoreParams,
        deadline: &Deadline,
    ) -> Result<pb::ScoreResponse, Status> {
        let down = &self.downstream;
        let model = down.model(deadline).await?;
        let field = params.text.field;
        let ids = self.prompt_ids(&params.text, &model, deadline).await?;
        if let Some(base) = self.base_of(&params.session_id)? {
            if base.backend != Backend::Transformer {
                let model = base.backend.model_field();
                return Err(Error::invalid(
                    "session_id",
                    format!("`session_id` is a session of the n-gram model {model}; Score runs the transformer"),
                )
                .into());
            }
            return self.score_after(&base, ids, params, &model, deadline).await;
        }
        // Position i's output predicts token i + 1; from the start, <|endoftext|> comes first.
        let (inputs, targets) = if params.from_start {
            let mut inputs = vec![model.eos];
            inputs.extend(&ids[..ids.len() - 1]);
            (inputs, ids.clone())
        } else {
            (ids[..ids.len() - 1].to_vec(), ids[1..].to_vec())
        };
        if targets.is_empty() {
            return Err(Error::invalid(
                field,
                format!(
                    "`{field}` has one token, which has no context to be scored in; give two or \
                     more, or set `from_start` to score it after <|endoftext|>"
                ),
            )
            .into());
        }
        if inputs.len() > model.context {
            return Err(Error::ContextLength {
                field,
                prompt_tokens: inputs.len(),
                max_new_tokens: 0,
                context: model.context,
            }
            .into());
        }
        let positions = (0..inputs.len() as u32).collect();
        let embeddings = down.embed(inputs, positions, deadline).await?;
        let request = dec::ScoreRequest {
            embeddings: Some(embeddings),
            targets,
            shaping: Some(params.shaping),
            top_n: params.top_n as u32,
        };
        let scored = down
            .one_shot(DECODER, deadline, |mut d| {
                let request = deadline.request(request.clone());
                async move { d.score(request).await }
            })
            .await?;
        let total: f64 = scored.logprobs.iter().map(|&l| l as f64).sum();
        let count = scored.logprobs.len().max(1) as f64;
        let top = if params.top_n > 0 {
            scored
                .top
                .into_iter()
                .map(|t| pb::Alternatives {
                    pieces: pieces(&model, &t.ids),
                    ids: t.ids,
                    logprobs: t.logprobs,
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(pb::ScoreResponse {
            pieces: pieces(&model, &ids),
            ids,
            first_scored: if params.from_start { 0 } else { 1 },
            logprobs: scored.logprobs,
            ranks: scored.ranks,
            shaped_logprobs: scored.shaped_logprobs,
            entropies: scored.entropies,
            top,
            total_logprob: total,
            perplexity: (-total / count).exp(),
            forward_ns: scored.forward_ns,
        })
    }

    /// Scores `ids` as they continue client session `base`: a fork of it is fed the session's
    /// last token and the text but its last, and each row judges the token after it.
    async fn score_after(
        &self,
        base: &Kept,
        ids: Vec<u32>,
        params: ScoreParams,
        model: &Model,
        deadline: &Deadline,
    ) -> Result<pb::ScoreResponse, Status> {
        let down = &self.downstream;
        let kept = base.tokens().await;
        let fed = kept.len() + ids.len() - 1;
        self.within_context(params.text.field, fed, model)?;
        let session_id = format!("score-{}", uuid::Uuid::new_v4().simple());
        let forked = base
            .fork_into(down, vec![session_id.clone()], &kept, deadline)
            .await?;
        let (decoder, held, mut guard) = match forked {
            Some(f) => (f.decoder, f.held, f.sessions),
            None => {
                let decoder = down.decoder_excluding(&base.backend, &[]).await?;
                let guard = Sessions::new(&decoder, vec![session_id.clone()]);
                (decoder, 0, guard)
            }
        };
        let whole: Vec<u32> = kept.iter().chain(&ids).copied().collect();
        let rows = whole[held..fed].to_vec();
        let positions = (held as u32..fed as u32).collect();
        let inputs = Inputs::of(down, &base.backend, rows, positions, deadline).await?;
        let step = dec::SessionStep {
            session_id: session_id.clone(),
            create: held == 0,
            start_position: held as u32,
            input: inputs.rows(0, fed - held),
            sampling: Some(dec::Sampling {
                shaping: Some(params.shaping),
                u: 0.5,
                report: Some(dec::Report {
                    top_n: params.top_n as u32,
                    full_row: dec::FullRow::None as i32,
                }),
            }),
            release_after: true,
            model: String::new(),
            history: None,
            judge_ids: whole[held + 1..].to_vec(),
        };
        let answer = decoder.step(vec![step], deadline).await?;
        // Released by the step itself; by the guard if the step never completed.
        guard.keep(&[session_id]);
        let judged = answer
            .results
            .into_iter()
            .next()
            .map(|r| r.judged)
            .unwrap_or_default();
        // The session's own tokens were judged too (when the fork held fewer); not asked for.
        let scored = &judged[judged.len().saturating_sub(ids.len())..];
        let logprobs: Vec<f32> = scored.iter().map(|p| p.logprob).collect();
        let total: f64 = logprobs.iter().map(|&l| l as f64).sum();
        let top = scored
            .iter()
            .filter(|_| params.top_n > 0)
            .map(|p| {
                let t = p.raw_top.clone().unwrap_or_default();
                pb::Alternatives {
                    pieces: pieces(model, &t.ids),
                    ids: t.ids,
                    logprobs: t.logprobs,
                }
            })
            .collect();
        Ok(pb::ScoreResponse {
            pieces: pieces(model, &ids),
            ids,
            first_scored: 0,
            ranks: scored.iter().map(|p| p.rank).collect(),
            shaped_logprobs: scored.iter().map(|p| p.shaped_logprob).collect(),
            entropies: scored.iter().map(|p| p.entropy).collect(),
            top,
            perplexity: (-total / logprobs.len().max(1) as f64).exp(),
            total_logprob: total,
            logprobs,
            forward_ns: answer.forward_ns,
        })
    }

    /// What one pass over a prompt shows.
    pub async fn inspect_prompt(
        &self,
        params: InspectParams,
        deadline: &Deadline,
    ) -> Result<pb::InspectResponse, Status> {
        let down = &self.downstream;
        let model = down.model(deadline).await?;
        let ids = self.prompt_ids(&params.prompt, &model, deadline).await?;
        let positions: Vec<u32> = (0..ids.len() as u32).collect();
        // The parts are asked beside the input embeddings rather than summed here, because the
        // embedder adds them in the model's dtype (the parts come back in f32).
        let (embeddings, embedding_parts) = tokio::try_join!(
            down.embed(ids.clone(), positions.clone(), deadline),
            async {
                if !params.embedding_parts {
                    return Ok::<_, Error>(None);
                }
                let parts = down
                    .embed_parts(ids.clone(), positions.clone(), deadline)
                    .await?;
                Ok(Some(pb::EmbeddingParts {
                    token: parts.token,
                    position: parts.position,
                }))
            },
        )?;
        let request = dec::InspectRequest {
            embeddings: Some(embeddings),
            attention_layers: params.attention_layers,
            hidden_states: params.hidden_states,
            lens_top_n: params.lens_top_n,
        };
        let seen = down
            .one_shot(DECODER, deadline, |mut d| {
                let request = deadline.request(request.clone());
                async move { d.inspect(request).await }
            })
            .await?;
        Ok(pb::InspectResponse {
            pieces: pieces(&model, &ids),
            ids,
            embedding_parts,
            attentions: seen
                .attentions
                .into_iter()
                .map(|a| pb::LayerAttention {
                    layer: a.layer,
                    weights: a.weights,
                })
                .collect(),
            hidden_states: seen.hidden_states,
            lens: seen
                .lens
                .into_iter()
                .map(|top| token_table(&model, top))
                .collect(),
            forward_ns: seen.forward_ns,
        })
    }
}
