//! The one-shot instruments (the essay's look inside the model): score a given text by teacher
//! forcing, keep the hidden states and attention weights of one pass, read the logit lens and
//! the weights. They need no session: each is one uncached pass over a whole input (or none), on
//! the immutable model shared with the model thread.

use std::time::{Duration, Instant};

use candle_core::{DType, Tensor};
use oneword_model::{Transformer, BLOCK_MATRICES};

use crate::Error;
use oneword_sampling::{self as distribution, Pick, Seen, Shaping};

/// Rows of the LM head computed at once while scoring: a 1,024-token text would otherwise hold
/// 1,024 × 50,257 f32 logits (200 MB) at the same time.
const SCORE_CHUNK_ROWS: usize = 64;

/// A text to score, validated.
pub struct ScoreInput {
    /// `[n, n_embd]` input embeddings from position 0.
    pub embeddings: Tensor,
    /// `n` ids: `targets[i]` follows input `i`.
    pub targets: Vec<u32>,
    pub shaping: Shaping,
    pub top_n: usize,
}

/// What to keep from one pass, validated.
pub struct InspectInput {
    /// `[n, n_embd]` input embeddings from position 0.
    pub embeddings: Tensor,
    pub attention_layers: Vec<usize>,
    pub hidden_states: bool,
    pub lens_top_n: usize,
}

/// What one pass kept.
pub struct InspectOutput {
    /// `(layer, [n_head, n, n])` in the order asked.
    pub attentions: Vec<(usize, Tensor)>,
    /// `[n_layer + 1, n, n_embd]`, when asked for.
    pub hidden_states: Option<Tensor>,
    /// Per hidden state: the most likely next tokens at the last position.
    pub lens: Vec<Vec<(u32, f32)>>,
    pub forward: Duration,
}

/// Sequences to pool into GPT-2 text embeddings, validated.
pub struct PoolInput {
    /// `[n, n_embd]` input embeddings from position 0, one per sequence.
    pub sequences: Vec<Tensor>,
    pub pooling: oneword_model::Pooling,
    /// Which hidden state, 0..=n_layer.
    pub layer: usize,
    pub normalize: bool,
}

/// The pooled vectors, `[sequences, n_embd]` row-major.
pub struct PoolOutput {
    pub vectors: Vec<f32>,
    pub width: usize,
    pub forward: Duration,
}

/// Which weights to read, validated.
pub struct WeightsInput {
    pub matrix: Option<(usize, String)>,
    pub histogram_bins: usize,
}

/// A histogram of one block's weight values.
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

/// The weights read.
pub struct WeightsOutput {
    /// `[in, out]` f32.
    pub matrix: Option<Tensor>,
    pub histograms: Vec<Histogram>,
}

/// The picks the model would have reported for each target, from one pass over the inputs.
pub fn score(model: &Transformer, input: &ScoreInput) -> Result<(Vec<Pick>, Duration), Error> {
    let started = Instant::now();
    let last = model.last_hidden_state(&input.embeddings)?;
    let mut picks = Vec::with_capacity(input.targets.len());
    for (chunk, targets) in input.targets.chunks(SCORE_CHUNK_ROWS).enumerate() {
        let rows = last.narrow(0, chunk * SCORE_CHUNK_ROWS, targets.len())?;
        let logits = model.lm_head(&rows.to_dtype(model.dtype())?)?;
        for (row, &target) in logits.to_vec2::<f32>()?.iter().zip(targets) {
            picks.push(distribution::judge(
                row,
                &input.shaping,
                &Seen::default(),
                target,
                input.top_n,
            ));
        }
    }
    Ok((picks, started.elapsed()))
}

/// One pass keeping what was asked for.
pub fn inspect(model: &Transformer, input: &InspectInput) -> Result<InspectOutput, Error> {
    let started = Instant::now();
    let seen = model.inspect(&input.embeddings, &input.attention_layers)?;
    let forward = started.elapsed();
    let lens = if input.lens_top_n > 0 {
        let rows = model.logit_lens(&seen.hidden_states)?.to_vec2::<f32>()?;
        rows.iter()
            .map(|row| {
                distribution::pick(
                    row,
                    &Shaping::default(),
                    &Seen::default(),
                    0.0,
                    input.lens_top_n,
                )
                .raw_top
            })
            .collect()
    } else {
        Vec::new()
    };
    let hidden_states = if input.hidden_states {
        Some(Tensor::stack(&seen.hidden_states, 0)?)
    } else {
        None
    };
    Ok(InspectOutput {
        attentions: input
            .attention_layers
            .iter()
            .copied()
            .zip(seen.attentions)
            .collect(),
        hidden_states,
        lens,
        forward,
    })
}

/// Each sequence through every block, its hidden state at `layer` pooled into one vector.
pub fn pool(model: &Transformer, input: &PoolInput) -> Result<PoolOutput, Error> {
    let started = Instant::now();
    let mut vectors = Vec::new();
    let mut width = 0;
    for sequence in &input.sequences {
        let seen = model.inspect(sequence, &[])?;
        let state = &seen.hidden_states[input.layer];
        let (n, d) = state.dims2()?;
        let values = state
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let mut vector = oneword_model::sentence::pool(&values, &[n], n, d, input.pooling);
        if input.normalize {
            oneword_model::sentence::l2_normalize(&mut vector);
        }
        vectors.extend(vector);
        width = d;
    }
    Ok(PoolOutput {
        vectors,
        width,
        forward: started.elapsed(),
    })
}

/// One block matrix and the histograms of every block's weights.
pub fn weights(model: &Transformer, input: &WeightsInput) -> Result<WeightsOutput, Error> {
    let matrix = input
        .matrix
        .as_ref()
        .map(|(layer, name)| model.block_matrix(*layer, name))
        .transpose()?;
    let histograms = if input.histogram_bins > 0 {
        histograms(model, input.histogram_bins)?
    } else {
        Vec::new()
    };
    Ok(WeightsOutput { matrix, histograms })
}

/// A block's four matrices' values, one matrix at a time (all of GPT-2 XL at once would be 6 GB).
fn for_each_matrix(
    model: &Transformer,
    layer: usize,
    mut f: impl FnMut(&[f32]),
) -> Result<(), Error> {
    for name in BLOCK_MATRICES {
        let values = model
            .block_matrix(layer, name)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        f(&values);
    }
    Ok(())
}

/// One histogram per block over the range of all blocks' values, so blocks can be compared.
fn histograms(model: &Transformer, bins: usize) -> Result<Vec<Histogram>, Error> {
    let layers = model.config().n_layer;
    let (mut low, mut high) = (f32::INFINITY, f32::NEG_INFINITY);
    for layer in 0..layers {
        for_each_matrix(model, layer, |values| {
            for &v in values.iter().filter(|v| v.is_finite()) {
                low = low.min(v);
                high = high.max(v);
            }
        })?;
    }
    if low >= high || !low.is_finite() {
        // No spread (or no finite values): one bin around the single value.
        (low, high) = if low.is_finite() {
            (low - 0.5, low + 0.5)
        } else {
            (-1.0, 1.0)
        };
    }
    let (low, high) = (low as f64, high as f64);
    let width = (high - low) / bins as f64;
    let edges: Vec<f64> = (0..=bins).map(|i| low + width * i as f64).collect();
    (0..layers)
        .map(|layer| {
            let mut counts = vec![0u64; bins];
            for_each_matrix(model, layer, |values| {
                for &v in values.iter().filter(|v| v.is_finite()) {
                    let bin = (((v as f64 - low) / width) as usize).min(bins - 1);
                    counts[bin] += 1;
                }
            })?;
            Ok(Histogram {
                edges: edges.clone(),
                counts,
            })
        })
        .collect()
}
