//! GPT-2's causal self-attention over a batch of sequences, each against its own cache: on the
//! CPU straight on the host caches' memory, elsewhere with candle tensors on a paged pool.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use crate::gpt2::Conv1D;
use crate::kv_cache::HostLayer;
use crate::paged::{Group, PassIndex};
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

    /// `x` is the pass's rows `[Σ rows, n_embd]`, sequence after sequence, on the tensor path:
    /// their keys and values are written into this layer's `pool` `(keys, values)` and each
    /// group of `index` attends in one go, so the operations per layer do not depend on the
    /// number of sequences.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        index: &PassIndex,
        (keys, values): (Tensor, Tensor),
    ) -> Result<Tensor> {
        let qkv = self.c_attn.forward(x)?;
        let (rows, heads, head_dim) = (qkv.dim(0)?, self.n_head, self.head_dim);
        // `[rows, 3 · n_embd]` viewed as `[rows, 3, n_head, head_dim]`; part 1 keys, 2 values.
        let part = |qkv: &Tensor, part: usize| -> Result<Tensor> {
            let n = qkv.dim(0)?;
            Ok(qkv
                .reshape((n, 3, heads, head_dim))?
                .narrow(1, part, 1)?
                .squeeze(1)?
                .transpose(0, 1)?)
        };
        keys.scatter_set(&index.write, &part(&qkv, 1)?.contiguous()?, 1)?;
        values.scatter_set(&index.write, &part(&qkv, 2)?.contiguous()?, 1)?;
        let outs = index
            .groups
            .iter()
            .map(|g| {
                let q = part(&qkv.index_select(&g.query_rows, 0)?, 0)?;
                self.attend_group(g, &q, &keys, &values)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut out = Tensor::cat(&outs, 0)?;
        if let Some(order) = &index.order {
            out = out.index_select(order, 0)?;
        }
        debug_assert_eq!(out.dim(0)?, rows);
        self.c_proj.forward(&out)
    }

    /// One group's attention: queries `q` `[n_head, sequences · queries, head_dim]` against the
    /// keys and values in their slots of the pool; returns `[sequences · queries, n_embd]`.
    fn attend_group(
        &self,
        g: &Group,
        q: &Tensor,
        keys: &Tensor,
        values: &Tensor,
    ) -> Result<Tensor> {
        let (heads, head_dim, dtype) = (self.n_head, self.head_dim, q.dtype());
        let (n, queries, positions) = (g.sequences, g.queries, g.keys);
        // Scaled before the product so that f16 scores cannot overflow.
        let q = q
            .affine(self.scale, 0.0)?
            .reshape((heads * n, queries, head_dim))?;
        let gather = |pool: &Tensor| -> Result<Tensor> {
            Ok(pool
                .index_select(&g.key_slots, 1)?
                .reshape((heads * n, positions, head_dim))?)
        };
        let scores = q
            .matmul(&gather(keys)?.t()?)?
            // Softmax in f32 whatever the dtype, as transformers does.
            .to_dtype(DType::F32)?
            .reshape((heads, n, queries, positions))?
            .broadcast_add(&g.mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?
            .to_dtype(dtype)?
            .reshape((heads * n, queries, positions))?;
        Ok(probs
            .matmul(&gather(values)?)?
            .reshape((heads, n * queries, head_dim))?
            .transpose(0, 1)?
            .reshape((n * queries, heads * head_dim))?)
    }

    /// The same on CPU rows with host caches: attention straight on the caches' memory, one
    /// task per (sequence, head).
    pub(crate) fn forward_host(
        &self,
        x: &[f32],
        rows: &[usize],
        layers: &mut [&mut HostLayer],
    ) -> Result<Vec<f32>> {
        let total: usize = rows.iter().sum();
        let qkv = self.c_attn.forward_host(x, total)?;
        let width = self.n_head * self.head_dim;
        let mut spans = Vec::with_capacity(rows.len());
        let mut start = 0;
        for (&n, layer) in rows.iter().zip(layers.iter_mut()) {
            let span = &qkv[start * 3 * width..(start + n) * 3 * width];
            layer.append(span);
            spans.push((start, span));
            start += n;
        }
        let tasks: Vec<(usize, usize)> = (0..rows.len())
            .flat_map(|i| (0..self.n_head).map(move |h| (i, h)))
            .collect();
        let scale = self.scale as f32;
        let layers: Vec<&HostLayer> = layers.iter().map(|l| &**l).collect();
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

    /// One whole sequence `[seq, n_embd]` with nothing cached, keeping what serving throws
    /// away: returns the output and the attention weights `[n_head, seq, seq]` (f32).
    pub(crate) fn forward_probed(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (out, probs) = self.attend(&self.c_attn.forward(x)?)?;
        Ok((self.c_proj.forward(&out)?, probs))
    }

    /// Softmax attention of `qkv`'s queries `[seq, 3 · n_embd]` over its own keys. Returns the
    /// heads' outputs `[seq, n_embd]` and the weights `[n_head, seq, seq]` in f32.
    fn attend(&self, qkv: &Tensor) -> Result<(Tensor, Tensor)> {
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
        // Scores and softmax in f32 whatever the weights' dtype, as transformers does.
        let dtype = q.dtype();
        let q = q.to_dtype(DType::F32)?;
        let k = k.to_dtype(DType::F32)?;
        let mut scores = (q.matmul(&k.t()?)? * self.scale)?;
        if seq > 1 {
            scores = scores.broadcast_add(&causal_mask(seq, qkv.device())?)?;
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

/// `[seq, seq]` additive mask: query `i` sees keys up to itself.
fn causal_mask(seq: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| (0..seq).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(mask, (seq, seq), device)?)
}
