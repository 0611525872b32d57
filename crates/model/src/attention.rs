//! GPT-2's causal self-attention over a batch of sequences, each against its own cache: on the
//! CPU straight on the host caches' memory, elsewhere with candle tensors.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use crate::gpt2::Conv1D;
use crate::kv_cache::{HostLayer, LayerCache};
use crate::{Gpt2Config, ModelError, WeightFormat};

type Result<T> = std::result::Result<T, ModelError>;

pub(crate) struct Attention {
    pub(crate) c_attn: Conv1D,
    pub(crate) c_proj: Conv1D,
    n_head: usize,
    head_dim: usize,
    scale: f64,
}

impl Attention {
    pub(crate) fn load(
        vb: VarBuilder,
        c: &Gpt2Config,
        layer: usize,
        weights: WeightFormat,
    ) -> Result<Self> {
        let mut scale = if c.scale_attn_weights {
            1.0 / (c.head_dim() as f64).sqrt()
        } else {
            1.0
        };
        if c.scale_attn_by_inverse_layer_idx {
            scale /= (layer + 1) as f64;
        }
        Ok(Attention {
            c_attn: Conv1D::load(vb.pp("c_attn"), c.n_embd, 3 * c.n_embd, weights)?,
            c_proj: Conv1D::load(vb.pp("c_proj"), c.n_embd, c.n_embd, weights)?,
            n_head: c.n_head,
            head_dim: c.head_dim(),
            scale,
        })
    }

    /// `x` is the batch's rows `[Σ rows, n_embd]`, sequence after sequence; `rows[i]` new rows
    /// belong to sequence `i`, whose tensor cache `layers[i]` holds its past and is extended.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        rows: &[usize],
        layers: &mut [&mut LayerCache],
    ) -> Result<Tensor> {
        let qkv = self.c_attn.forward(x)?;
        let mut outs = Vec::with_capacity(rows.len());
        let mut start = 0;
        for (&n, layer) in rows.iter().zip(layers.iter_mut()) {
            outs.push(self.attend_device(&qkv.narrow(0, start, n)?, layer)?);
            start += n;
        }
        self.c_proj.forward(&Tensor::cat(&outs, 0)?)
    }

    /// The same on CPU rows with host caches: attention straight on the caches' memory, one
    /// task per (sequence, head).
    pub(crate) fn forward_host(
        &self,
        x: &[f32],
        rows: &[usize],
        layers: &mut [&mut LayerCache],
    ) -> Result<Vec<f32>> {
        let total: usize = rows.iter().sum();
        let qkv = self.c_attn.forward_host(x, total)?;
        let width = self.n_head * self.head_dim;
        let mut spans = Vec::with_capacity(rows.len());
        let mut start = 0;
        for (&n, layer) in rows.iter().zip(layers.iter_mut()) {
            let span = &qkv[start * 3 * width..(start + n) * 3 * width];
            host_layer(layer)?.append(span);
            spans.push((start, span));
            start += n;
        }
        let tasks: Vec<(usize, usize)> = (0..rows.len())
            .flat_map(|i| (0..self.n_head).map(move |h| (i, h)))
            .collect();
        let scale = self.scale as f32;
        let layers: Vec<&HostLayer> = layers
            .iter()
            .map(|l| match &**l {
                LayerCache::Host(host) => host,
                LayerCache::Device(_) => {
                    unreachable!("checked by `host_layer` above, this is a bug")
                }
            })
            .collect();
        let attend = |&(i, h): &(usize, usize)| layers[i].attend(spans[i].1, h, scale);
        let work: usize = rows.iter().zip(&layers).map(|(n, l)| n * l.len()).sum();
        let heads: Vec<Vec<f32>> = if work * width < 1 << 16 {
            tasks.iter().map(attend).collect()
        } else {
            tasks.par_iter().map(attend).collect()
        };
        let mut out = vec![0f32; total * width];
        for (&(i, h), head) in tasks.iter().zip(&heads) {
            let first_row = spans[i].0;
            for (t, values) in head.chunks_exact(self.head_dim).enumerate() {
                let at = (first_row + t) * width + h * self.head_dim;
                out[at..at + self.head_dim].copy_from_slice(values);
            }
        }
        self.c_proj.forward_host(&out, total)
    }

    /// Attention with candle tensors for one sequence's `qkv` rows `[n, 3 · n_embd]`.
    fn attend_device(&self, qkv: &Tensor, layer: &mut LayerCache) -> Result<Tensor> {
        let LayerCache::Device(cache) = layer else {
            return Err(ModelError::Input(
                "a CPU cache was given to a model on another device".into(),
            ));
        };
        Ok(self.attend(qkv, cache)?.0)
    }

    /// One whole sequence `[seq, n_embd]` with nothing cached, keeping what serving throws
    /// away: returns the output and the attention weights `[n_head, seq, seq]` (f32).
    pub(crate) fn forward_probed(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (out, probs) = self.attend(&self.c_attn.forward(x)?, &mut None)?;
        Ok((self.c_proj.forward(&out)?, probs))
    }

    /// Softmax attention of `qkv`'s queries over the cached and new keys, extending `cache`.
    /// Returns the heads' outputs `[n, n_embd]` and the weights `[n_head, n, total]` in f32.
    fn attend(
        &self,
        qkv: &Tensor,
        cache: &mut Option<(Tensor, Tensor)>,
    ) -> Result<(Tensor, Tensor)> {
        let seq = qkv.dim(0)?;
        let n_embd = qkv.dim(1)? / 3;
        let heads = |i: usize| -> Result<Tensor> {
            Ok(qkv
                .narrow(1, i * n_embd, n_embd)?
                .reshape((seq, self.n_head, self.head_dim))?
                .transpose(0, 1)?
                .contiguous()?)
        };
        let (q, k, v) = (heads(0)?, heads(1)?, heads(2)?);
        let (k, v) = match cache.take() {
            Some((past_k, past_v)) => (
                Tensor::cat(&[&past_k, &k], 1)?,
                Tensor::cat(&[&past_v, &v], 1)?,
            ),
            None => (k, v),
        };
        let total = k.dim(1)?;
        *cache = Some((k.clone(), v.clone()));

        // Scores and softmax in f32 whatever the weights' dtype, as transformers does.
        let dtype = q.dtype();
        let q = q.to_dtype(DType::F32)?;
        let k = k.to_dtype(DType::F32)?;
        let mut scores = (q.matmul(&k.t()?)? * self.scale)?;
        if seq > 1 {
            scores = scores.broadcast_add(&causal_mask(seq, total, qkv.device())?)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs
            .to_dtype(dtype)?
            .matmul(&v)?
            .transpose(0, 1)?
            .reshape((seq, n_embd))?;
        Ok((out, probs))
    }
}

fn host_layer(layer: &mut LayerCache) -> Result<&mut HostLayer> {
    match layer {
        LayerCache::Host(host) => Ok(host),
        LayerCache::Device(_) => Err(ModelError::Input(
            "a tensor cache was given to the CPU path; caches of one batch must be of one kind"
                .into(),
        )),
    }
}

/// `[seq, total]` additive mask: query `i` (at position `total - seq + i`) sees keys up to itself.
fn causal_mask(seq: usize, total: usize, device: &Device) -> Result<Tensor> {
    let past = total - seq;
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(mask, (seq, total), device)?)
}
