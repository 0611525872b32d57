//! Text embeddings: by default from the embedder's sentence model (the one search uses); with
//! `model` naming the served GPT-2, its own hidden states pooled in the decoder — an instrument
//! that shows why a language model's raw states make a poor search space.

use oneword_proto::decoder::v1 as dec;
use oneword_proto::gateway::v1 as pb;
use oneword_runtime::deadline::Deadline;

use crate::convert;
use crate::downstream::{Model, DECODER};
use crate::service::GatewayService;
use crate::Error;

/// Most texts one GPT-2 Embed request may carry: each is a forward pass in the decoder.
const MAX_GPT2_TEXTS: usize = 64;

impl GatewayService {
    /// Embeds the request's inputs with the model it names.
    pub async fn embed_texts(
        &self,
        request: pb::EmbedRequest,
        deadline: &Deadline,
    ) -> Result<pb::EmbedResponse, Error> {
        // Only a name other than the text model's can mean GPT-2. The embedder is asked first,
        // so that a decoder that is down (whose connection would take its timeout to fail)
        // never delays the text model; a failure to learn GPT-2's name falls through to the
        // embedder, which names the model it serves.
        if !request.model.is_empty() && request.model != "default" {
            let text_model = self.downstream.text_model(deadline).await.ok().flatten();
            if text_model.is_none_or(|t| t.name != request.model) {
                if let Ok(model) = self.downstream.model(deadline).await {
                    if request.model == model.info.model_id {
                        return self.gpt2_embed(request, &model, deadline).await;
                    }
                }
            }
        }
        if request.pooling != pb::EmbedPooling::Unspecified as i32 || request.layer.is_some() {
            let field = if request.layer.is_some() {
                "layer"
            } else {
                "pooling"
            };
            return Err(Error::invalid(
                field,
                format!("`{field}` applies to GPT-2's embeddings only (`model` naming the served GPT-2); the text model's pooling is fixed by its files"),
            ));
        }
        let answer = self
            .downstream
            .embed_text(convert::embed_request(request), deadline)
            .await?;
        Ok(convert::embed_response(answer))
    }

    async fn gpt2_embed(
        &self,
        request: pb::EmbedRequest,
        model: &Model,
        deadline: &Deadline,
    ) -> Result<pb::EmbedResponse, Error> {
        if !request.tokens.is_empty() {
            return Err(Error::invalid(
                "tokens",
                "`tokens` are the text model's ids; give GPT-2 `texts`",
            ));
        }
        let count = request.texts.len();
        if count == 0 || count > MAX_GPT2_TEXTS {
            return Err(Error::invalid(
                "texts",
                format!("`texts` must hold 1 to {MAX_GPT2_TEXTS} texts for GPT-2, got {count}"),
            ));
        }
        let texts = request
            .texts
            .iter()
            .map(|t| t.as_bytes().to_vec())
            .collect();
        let encodings = self.downstream.encode_many(texts, deadline).await?;
        let mut sequences = Vec::with_capacity(count);
        let mut truncated = Vec::with_capacity(count);
        for (i, encoding) in encodings.into_iter().enumerate() {
            let field = format!("texts[{i}]");
            let mut ids = encoding.ids;
            if ids.is_empty() {
                return Err(Error::invalid(field.clone(), format!("`{field}` is empty")));
            }
            let over = ids.len() > model.context;
            if over && !request.truncate {
                return Err(Error::invalid(
                    field.clone(),
                    format!(
                        "`{field}` is {} tokens long, over GPT-2's context of {}; shorten it, or set `truncate`",
                        ids.len(),
                        model.context
                    ),
                ));
            }
            ids.truncate(model.context);
            truncated.push(over);
            sequences.push(ids);
        }
        let token_counts: Vec<u32> = sequences.iter().map(|ids| ids.len() as u32).collect();
        let embedded = futures::future::try_join_all(sequences.into_iter().map(|ids| {
            let positions = (0..ids.len() as u32).collect();
            self.downstream.embed(ids, positions, deadline)
        }))
        .await?;
        let pooling = match pb::EmbedPooling::try_from(request.pooling) {
            Ok(pb::EmbedPooling::Last) => dec::Pooling::Last,
            Ok(pb::EmbedPooling::WeightedMean) => dec::Pooling::WeightedMean,
            _ => dec::Pooling::Mean,
        };
        let pool = dec::PoolRequest {
            sequences: embedded,
            pooling: pooling as i32,
            layer: request.layer,
            normalize: request.normalize.unwrap_or(true),
        };
        let pooled = self
            .downstream
            .one_shot(DECODER, deadline, |mut d| {
                let request = deadline.request(pool.clone());
                async move { d.pool(request).await }
            })
            .await?;
        Ok(pb::EmbedResponse {
            embeddings: pooled.vectors,
            total_tokens: token_counts.iter().map(|&c| u64::from(c)).sum(),
            token_counts,
            truncated,
            model: model.info.model_id.clone(),
        })
    }
}
