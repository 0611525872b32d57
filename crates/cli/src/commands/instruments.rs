//! The essay's instruments: rank/probability curve, scores, logit lens, attention, the embedding
//! module and weights. Each prints a table (or `--json`) and, with `--png`, draws its picture.

use oneword_proto::common::v1 as common;
use oneword_proto::gateway::v1 as gw;

use super::{answer, input, Ctx, Output};
use crate::analysis::{fit_power_law, ranked_probabilities};
use crate::client::{request, Gateway};
use crate::config::{
    AttentionArgs, CompareArgs, EmbeddingModuleArgs, LensArgs, NearestArgs, PictureArgs, RanksArgs,
    ScoreArgs, WeightsArgs, WordsArgs,
};
use crate::error::Error;
use crate::json::to_line;
use crate::{picture, render};

/// The power law is fitted over ranks up to this one: past it the tail of a 50,257-token
/// vocabulary bends down (the essay's plot shows the same range).
const FIT_MAX_RANK: usize = 10_000;

/// A wire tensor's shape and f32 values.
pub fn f32s(t: Option<&common::Tensor>, what: &str) -> Result<(Vec<usize>, Vec<f32>), Error> {
    let t = t.ok_or_else(|| Error::Response(format!("the answer has no {what}")))?;
    if t.dtype != common::Dtype::F32 as i32 {
        return Err(Error::Response(format!("{what} is not f32")));
    }
    let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
    let values: Vec<f32> = t
        .data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if values.len() != shape.iter().product::<usize>() {
        return Err(Error::Response(format!(
            "{what} has {} values for shape {shape:?}",
            values.len()
        )));
    }
    Ok((shape, values))
}

/// Writes the picture when `--png` was given, and says where on stderr.
pub fn save(
    picture: &PictureArgs,
    io: &mut Output<'_>,
    draw: impl FnOnce((u32, u32)) -> Result<Vec<u8>, Error>,
) -> Result<(), Error> {
    let Some(path) = &picture.png else {
        return Ok(());
    };
    let png = draw(picture.size)?;
    std::fs::write(path, png)
        .map_err(|e| Error::Response(format!("writing {}: {e}", path.display())))?;
    io.note(&format!(
        "wrote {} ({}x{})",
        path.display(),
        picture.size.0,
        picture.size.1
    ))
}

pub async fn compare(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: CompareArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let message = gw::CompareRequest {
        prompt: input(args.prompt)?,
        temperatures: args.continuations.temperatures,
        samples: Some(args.continuations.samples),
        max_new_tokens: args.continuations.max_tokens,
        seed: args.continuations.seed,
        ..Default::default()
    };
    let resp = gateway
        .compare(request(message, ctx.timeout))
        .await?
        .into_inner();
    if ctx.json {
        writeln!(io.out, "{}", to_line(&resp))?;
        return Ok(());
    }
    write!(io.out, "{}", render::compare_text(&resp))?;
    io.note(&format!("seed {}", resp.seed))
}

pub async fn ranks(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: RanksArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let prompt = input(args.prompt)?;
    let message = gw::NextTokensRequest {
        prompt: prompt.clone(),
        top_n: Some(1),
        full_row: true,
        ..Default::default()
    };
    let resp = gateway
        .next_tokens(request(message, ctx.timeout))
        .await?
        .into_inner();
    let (_, logits) = f32s(resp.full_row.as_ref(), "full row")?;
    let p = ranked_probabilities(&logits);
    let fit = fit_power_law(&p, FIT_MAX_RANK);
    if ctx.json {
        let line = serde_json::json!({
            "prompt_tokens": resp.prompt_tokens,
            "entropy": resp.entropy,
            "probabilities": p,
            "power_law": fit.map(|f| serde_json::json!({
                "exponent": f.exponent,
                "intercept": f.intercept,
                "r2": f.r2,
                "max_rank": f.max_rank,
            })),
        });
        writeln!(io.out, "{line}")?;
    } else {
        write!(io.out, "{}", render::ranks_table(&p, fit.as_ref()))?;
    }
    save(&args.picture, io, |size| {
        picture::ranks(&prompt, &p, fit.as_ref(), size)
    })
}

pub async fn score(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: ScoreArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let shaped = args.temperature.is_some() || args.top_k.is_some() || args.top_p.is_some();
    let message = gw::ScoreRequest {
        text: input(args.text)?,
        from_start: args.from_start,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        top_n: args.top,
        session_id: args.session.unwrap_or_default(),
        ..Default::default()
    };
    let resp = gateway
        .score(request(message, ctx.timeout))
        .await?
        .into_inner();
    answer(io, ctx, &resp, |resp| render::score_table(resp, shaped))?;
    Ok(())
}

pub async fn lens(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: LensArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let message = gw::InspectRequest {
        prompt: input(args.prompt)?,
        lens_top_n: Some(args.top),
        ..Default::default()
    };
    let resp = gateway
        .inspect(request(message, ctx.timeout))
        .await?
        .into_inner();
    answer(io, ctx, &resp, render::lens_table)?;
    Ok(())
}

pub async fn attention(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: AttentionArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let message = gw::InspectRequest {
        prompt: input(args.prompt)?,
        attention_layers: vec![args.layer],
        ..Default::default()
    };
    let resp = gateway
        .inspect(request(message, ctx.timeout))
        .await?
        .into_inner();
    if ctx.json {
        writeln!(io.out, "{}", to_line(&resp))?;
    }
    let layer = resp.attentions.first();
    let (shape, weights) = f32s(layer.and_then(|l| l.weights.as_ref()), "attention weights")?;
    let [heads, n, _] = shape[..] else {
        return Err(Error::Response(format!(
            "attention weights have shape {shape:?}"
        )));
    };
    let chosen: Vec<u32> = match args.head {
        Some(h) if h as usize >= heads => {
            return Err(Error::Usage(format!(
                "`--head` is {h}, but layer {} has heads 0..={}",
                args.layer,
                heads - 1
            )))
        }
        Some(h) => vec![h],
        None => (0..heads as u32).collect(),
    };
    let per_head: Vec<(u32, Vec<f32>)> = chosen
        .iter()
        .map(|&h| {
            (
                h,
                weights[h as usize * n * n..(h as usize + 1) * n * n].to_vec(),
            )
        })
        .collect();
    if !ctx.json {
        write!(
            io.out,
            "{}",
            render::attention_summary(&resp.pieces, args.layer, &per_head)
        )?;
    }
    save(&args.picture, io, |size| {
        picture::attention(&resp.pieces, args.layer, &per_head, size)
    })
}

pub async fn embedding_module(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: EmbeddingModuleArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let message = gw::InspectRequest {
        prompt: input(args.prompt)?,
        embedding_parts: true,
        ..Default::default()
    };
    let resp = gateway
        .inspect(request(message, ctx.timeout))
        .await?
        .into_inner();
    let parts = resp.embedding_parts.as_ref();
    let (shape, token) = f32s(parts.and_then(|p| p.token.as_ref()), "token part")?;
    let (_, position) = f32s(parts.and_then(|p| p.position.as_ref()), "position part")?;
    let width = shape.get(1).copied().unwrap_or(0);
    answer(io, ctx, &resp, |resp| {
        render::embedding_table(&resp.pieces, &token, &position, width)
    })?;
    save(&args.picture, io, |size| {
        picture::embedding_module(&resp.pieces, &token, &position, width, size)
    })
}

pub async fn weights(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: WeightsArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let message = match args.histogram {
        Some(bins) => gw::WeightsRequest {
            histogram_bins: bins,
            ..Default::default()
        },
        None => gw::WeightsRequest {
            layer: Some(args.layer),
            matrix: args.matrix.clone(),
            histogram_bins: 0,
        },
    };
    let resp = gateway
        .weights(request(message, ctx.timeout))
        .await?
        .into_inner();
    if ctx.json {
        writeln!(io.out, "{}", to_line(&resp))?;
    }
    if args.histogram.is_some() {
        if !ctx.json {
            write!(io.out, "{}", render::histogram_table(&resp.histograms))?;
        }
        return save(&args.picture, io, |size| {
            picture::histograms(&resp.histograms, size)
        });
    }
    let (shape, values) = f32s(resp.matrix.as_ref(), "matrix")?;
    let [rows, cols] = shape[..] else {
        return Err(Error::Response(format!("the matrix has shape {shape:?}")));
    };
    let name = format!("h.{}.{}", args.layer, args.matrix);
    if !ctx.json {
        write!(
            io.out,
            "{}",
            render::matrix_summary(&name, rows, cols, &values)
        )?;
    }
    save(&args.picture, io, |size| {
        picture::matrix(&name, rows, cols, &values, args.smooth, size)
    })
}

pub async fn words(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: WordsArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    if args.picture.png.is_some() && args.words.len() + args.ids.len() < 2 {
        return Err(Error::Usage(
            "a map (--png) needs at least two words".into(),
        ));
    }
    let message = gw::WordsRequest {
        words: args.words.clone(),
        project: args.picture.png.is_some() || ctx.json,
        token_ids: args.ids.clone(),
    };
    let resp = gateway
        .words(request(message, ctx.timeout))
        .await?
        .into_inner();
    // Tokens given by id are labelled with their id and bytes.
    let by_id = resp.tokens.iter().skip(args.words.len()).map(|t| {
        let piece = t.pieces.first().map(Vec::as_slice).unwrap_or_default();
        let id = t.ids.first().copied().unwrap_or_default();
        format!("#{id} {}", render::escape_bytes(piece))
    });
    let labels: Vec<String> = args.words.iter().cloned().chain(by_id).collect();
    if ctx.json {
        writeln!(io.out, "{}", to_line(&resp))?;
    } else {
        let (shape, vectors) = f32s(resp.vectors.as_ref(), "vectors")?;
        let width = shape.get(1).copied().unwrap_or(0);
        write!(io.out, "{}", render::words_table(&labels, &resp))?;
        if args.vectors {
            write!(io.out, "{}", render::vectors_text(&labels, &vectors, width))?;
        }
    }
    save(&args.picture, io, |size| {
        picture::word_map(&labels, &resp, size)
    })
}

pub async fn nearest(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: NearestArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let message = gw::NearestRequest {
        word: args.word.unwrap_or_default(),
        top: Some(args.top),
        include_query: args.include_query,
        token_id: args.id,
    };
    let resp = gateway
        .nearest(request(message, ctx.timeout))
        .await?
        .into_inner();
    answer(io, ctx, &resp, render::nearest_table)?;
    Ok(())
}
