//! proto ⇄ domain for the one-shot instruments.

use std::time::Duration;

use candle_core::Tensor;
use oneword_model::BLOCK_MATRICES;
use oneword_proto::common::v1 as common;
use oneword_proto::decoder::v1 as pb;
use oneword_sampling::{top_tokens as top, Pick};

use super::{embeddings, shaping, top_n, whole_sequence, Limits};
use crate::probe::{
    InspectInput, InspectOutput, PoolInput, PoolOutput, ScoreInput, WeightsInput, WeightsOutput,
};
use crate::Error;

/// Most sequences one Pool call may carry (each is a forward pass).
const MAX_POOL_SEQUENCES: usize = 64;

/// Most histogram bins one Weights call may ask for.
const MAX_HISTOGRAM_BINS: u32 = 1000;

/// Validates a text to score.
pub fn score_input(request: pb::ScoreRequest, limits: &Limits) -> Result<ScoreInput, Error> {
    let embeddings = whole_sequence(request.embeddings, limits)?;
    let n = embeddings.dims()[0];
    if request.targets.len() != n {
        return Err(Error::invalid(
            "targets",
            format!(
                "`targets` must have one id per input position ({n}), got {}",
                request.targets.len()
            ),
        ));
    }
    if let Some((i, id)) = request
        .targets
        .iter()
        .enumerate()
        .find(|(_, &id)| id as usize >= limits.vocab_size)
    {
        return Err(Error::invalid(
            "targets",
            format!(
                "`targets[{i}]` is {id}, outside the vocabulary of {} tokens",
                limits.vocab_size
            ),
        ));
    }
    top_n("top_n", request.top_n, limits)?;
    Ok(ScoreInput {
        embeddings,
        targets: request.targets,
        shaping: shaping("shaping", &request.shaping.unwrap_or_default(), limits)?,
        top_n: request.top_n as usize,
    })
}

/// Validates what to keep from a pass, and that it fits the cap on what one answer may carry.
pub fn inspect_input(request: pb::InspectRequest, limits: &Limits) -> Result<InspectInput, Error> {
    let embeddings = whole_sequence(request.embeddings, limits)?;
    let mut layers = Vec::with_capacity(request.attention_layers.len());
    for (i, &layer) in request.attention_layers.iter().enumerate() {
        let f = format!("attention_layers[{i}]");
        if layer as usize >= limits.layers {
            return Err(Error::invalid(
                &f,
                format!(
                    "`{f}` is {layer}, but the model's layers are 0..={}",
                    limits.layers - 1
                ),
            ));
        }
        if layers.contains(&(layer as usize)) {
            return Err(Error::invalid(
                &f,
                format!("`{f}`: layer {layer} is listed twice"),
            ));
        }
        layers.push(layer as usize);
    }
    top_n("lens_top_n", request.lens_top_n, limits)?;
    Ok(InspectInput {
        embeddings,
        attention_layers: layers,
        hidden_states: request.hidden_states,
        lens_top_n: request.lens_top_n as usize,
    })
}

/// Validates sequences to pool: 1 to MAX_POOL_SEQUENCES whole sequences, a layer in range.
pub fn pool_input(request: pb::PoolRequest, limits: &Limits) -> Result<PoolInput, Error> {
    let count = request.sequences.len();
    if count == 0 || count > MAX_POOL_SEQUENCES {
        return Err(Error::invalid(
            "sequences",
            format!("`sequences` must hold 1 to {MAX_POOL_SEQUENCES} sequences, got {count}"),
        ));
    }
    let mut sequences = Vec::with_capacity(count);
    for (i, wire) in request.sequences.into_iter().enumerate() {
        let f = format!("sequences[{i}]");
        let sequence = embeddings(&f, Some(wire), limits.device, limits)?;
        let n = sequence.dims()[0];
        if n == 0 || n > limits.context {
            return Err(Error::invalid(
                &f,
                format!(
                    "`{f}` has {n} positions; it must have 1 to the context's {}",
                    limits.context
                ),
            ));
        }
        sequences.push(sequence);
    }
    let layer = request.layer.map_or(limits.layers, |l| l as usize);
    if layer > limits.layers {
        return Err(Error::invalid(
            "layer",
            format!(
                "`layer` is {layer}, but the hidden states are 0..={} (0 = the input embeddings)",
                limits.layers
            ),
        ));
    }
    let pooling = match pb::Pooling::try_from(request.pooling) {
        Ok(pb::Pooling::Unspecified | pb::Pooling::Mean) => oneword_model::Pooling::Mean,
        Ok(pb::Pooling::Last) => oneword_model::Pooling::LastToken,
        Ok(pb::Pooling::WeightedMean) => oneword_model::Pooling::WeightedMean,
        Err(_) => {
            return Err(Error::invalid(
                "pooling",
                format!("`pooling` {} is not a known pooling", request.pooling),
            ))
        }
    };
    Ok(PoolInput {
        sequences,
        pooling,
        layer,
        normalize: request.normalize,
    })
}

pub fn pool_response(out: PoolOutput) -> pb::PoolResponse {
    let rows = (out.vectors.len() / out.width.max(1)) as u32;
    pb::PoolResponse {
        vectors: Some(oneword_proto::tensor::f32_to_wire(
            &out.vectors,
            &[rows, out.width as u32],
        )),
        forward_ns: out.forward.as_nanos() as u64,
    }
}

/// Validates which weights to read.
pub fn weights_input(request: pb::WeightsRequest, limits: &Limits) -> Result<WeightsInput, Error> {
    let matrix = match request.layer {
        None if request.matrix.is_empty() => None,
        None => return Err(Error::invalid("layer", "`layer` is required with `matrix`")),
        Some(layer) if layer as usize >= limits.layers => {
            return Err(Error::invalid(
                "layer",
                format!(
                    "`layer` is {layer}, but the model's layers are 0..={}",
                    limits.layers - 1
                ),
            ))
        }
        Some(layer) => {
            if !BLOCK_MATRICES.contains(&request.matrix.as_str()) {
                return Err(Error::invalid(
                    "matrix",
                    format!(
                        "`matrix` is {:?}; a block's matrices are {}",
                        request.matrix,
                        BLOCK_MATRICES.join(", ")
                    ),
                ));
            }
            Some((layer as usize, request.matrix))
        }
    };
    if request.histogram_bins > MAX_HISTOGRAM_BINS {
        return Err(Error::invalid(
            "histogram_bins",
            format!(
                "`histogram_bins` must be in 0..={MAX_HISTOGRAM_BINS}, got {}",
                request.histogram_bins
            ),
        ));
    }
    Ok(WeightsInput {
        matrix,
        histogram_bins: request.histogram_bins as usize,
    })
}

/// The wire form of a scored text.
pub fn score_response(picks: Vec<Pick>, forward: Duration) -> pb::ScoreResponse {
    pb::ScoreResponse {
        logprobs: picks.iter().map(|p| p.logprob).collect(),
        ranks: picks.iter().map(|p| p.rank).collect(),
        shaped_logprobs: picks.iter().map(|p| p.shaped_logprob).collect(),
        entropies: picks.iter().map(|p| p.entropy).collect(),
        top: picks.iter().map(|p| top(&p.raw_top)).collect(),
        forward_ns: forward.as_nanos() as u64,
    }
}

fn wire(t: &Tensor) -> Result<common::Tensor, Error> {
    oneword_model::wire::to_wire(t)
        .map_err(|e| Error::Model(oneword_model::ModelError::Input(e.to_string())))
}

/// The wire form of what a pass kept.
pub fn inspect_response(out: InspectOutput) -> Result<pb::InspectResponse, Error> {
    Ok(pb::InspectResponse {
        attentions: out
            .attentions
            .iter()
            .map(|(layer, weights)| {
                Ok(pb::LayerAttention {
                    layer: *layer as u32,
                    weights: Some(wire(weights)?),
                })
            })
            .collect::<Result<_, Error>>()?,
        hidden_states: out.hidden_states.as_ref().map(wire).transpose()?,
        lens: out.lens.iter().map(|l| top(l)).collect(),
        forward_ns: out.forward.as_nanos() as u64,
    })
}

/// The wire form of the weights read.
pub fn weights_response(out: WeightsOutput) -> Result<pb::WeightsResponse, Error> {
    Ok(pb::WeightsResponse {
        matrix: out.matrix.as_ref().map(wire).transpose()?,
        histograms: out
            .histograms
            .into_iter()
            .enumerate()
            .map(|(layer, h)| pb::Histogram {
                layer: layer as u32,
                edges: h.edges,
                counts: h.counts,
            })
            .collect(),
    })
}
