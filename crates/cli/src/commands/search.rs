//! Similarity search: text embeddings and the similarity of texts.

use oneword_proto::gateway::v1 as gw;
use serde_json::json;

use super::instruments::f32s;
use super::{answer, input, Ctx, Output};
use crate::client::{request, Gateway};
use crate::config::{EmbedArgs, PoolingArg, SimilarityArgs};
use crate::error::Error;

/// Values of a vector shown without `--full`.
const SHOWN: usize = 6;

pub async fn embed(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: EmbedArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let texts = args
        .texts
        .into_iter()
        .map(input)
        .collect::<Result<Vec<_>, _>>()?;
    let message = gw::EmbedRequest {
        texts: texts.clone(),
        model: args.model.unwrap_or_default(),
        truncate: args.truncate,
        normalize: args.raw.then_some(false),
        pooling: match args.pooling {
            None => gw::EmbedPooling::Unspecified,
            Some(PoolingArg::Mean) => gw::EmbedPooling::Mean,
            Some(PoolingArg::Last) => gw::EmbedPooling::Last,
            Some(PoolingArg::WeightedMean) => gw::EmbedPooling::WeightedMean,
        } as i32,
        layer: args.layer,
        ..Default::default()
    };
    let resp = gateway
        .embed(request(message, ctx.timeout))
        .await?
        .into_inner();
    let (shape, values) = f32s(resp.embeddings.as_ref(), "embeddings")?;
    let width = shape.get(1).copied().unwrap_or(0).max(1);
    answer(io, ctx, &resp, |resp| {
        let mut out = format!("{} ({width} dimensions)\n", resp.model);
        for (i, vector) in values.chunks(width).enumerate() {
            let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            let shown = if args.full { width } else { SHOWN.min(width) };
            let mut numbers: Vec<String> =
                vector[..shown].iter().map(|x| format!("{x:.4}")).collect();
            if shown < width {
                numbers.push("…".into());
            }
            let cut = if resp.truncated.get(i) == Some(&true) {
                ", truncated"
            } else {
                ""
            };
            out += &format!(
                "[{i}] {:?}: {} tokens{cut}, norm {norm:.3}\n    [{}]\n",
                texts[i],
                resp.token_counts.get(i).copied().unwrap_or_default(),
                numbers.join(", ")
            );
        }
        out
    })
}

pub async fn similarity(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: SimilarityArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let source = input(args.source)?;
    let mut texts = vec![source.clone()];
    texts.extend(args.texts.iter().cloned());
    let message = gw::EmbedRequest {
        texts,
        model: args.model.unwrap_or_default(),
        ..Default::default()
    };
    let resp = gateway
        .embed(request(message, ctx.timeout))
        .await?
        .into_inner();
    let (shape, values) = f32s(resp.embeddings.as_ref(), "embeddings")?;
    let width = shape.get(1).copied().unwrap_or(0).max(1);
    let vectors: Vec<&[f32]> = values.chunks(width).collect();
    let scores: Vec<f32> = vectors[1..].iter().map(|v| cosine(vectors[0], v)).collect();
    if ctx.json {
        let line = json!({"source": source, "texts": args.texts, "scores": scores});
        writeln!(io.out, "{line}")?;
        return Ok(());
    }
    let mut ranked: Vec<usize> = (0..scores.len()).collect();
    ranked.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    writeln!(io.out, "cosine similarity to {source:?} ({})", resp.model)?;
    for i in ranked {
        writeln!(io.out, "{:>7.4}  {:?}", scores[i], args.texts[i])?;
    }
    Ok(())
}

/// Cosine similarity; 0 when either vector is all zeros.
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norms =
        a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norms == 0.0 {
        0.0
    } else {
        dot / norms
    }
}
