//! GPT-2: "Language Models are Unsupervised Multitask Learners" (Radford et al., 2019).
//! Reference implementation: `transformers/models/gpt2/modeling_gpt2.py` (`GPT2LMHeadModel`).
//!
//! Pre-norm transformer blocks (ln_1 → causal self-attention → residual, ln_2 → MLP → residual),
//! learned position embeddings, a final layer norm, and an LM head tied to the token embeddings.
//! Linear layers are stored as `Conv1D` with weights `[in, out]`, so they multiply from the right
//! as they are, without a transpose. The model is immutable and shared; each sequence's keys and
//! values live in a [`KvCache`] that the caller owns, because the decoder holds many sessions.
//!
//! [`Transformer::forward_batch`] runs many sequences of different lengths and positions in one
//! pass: their rows are stacked for every linear layer (one read of the weights for all of them)
//! and split again for attention, which each sequence does against its own cache, so a
//! sequence's result is the same alone or in any batch.

use candle_core::{DType, Device, Module, Storage, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use rayon::prelude::*;

use crate::kernels;
use crate::kv_cache::{HostLayer, LayerCache};
use crate::{Checkpoint, Gpt2Config, KvCache, ModelError};

type Result<T> = std::result::Result<T, ModelError>;

/// Up to this many rows, CPU linear layers use the weight-streaming kernels of [`kernels`];
/// beyond it, candle's matrix product (which reuses each weight for many rows) is faster.
const KERNEL_MAX_ROWS: usize = 4;

/// Runs `f` on the contiguous f32 data of a CPU tensor; `None` on any other device or dtype.
fn with_host_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout.contiguous_offsets()?;
    match &*storage {
        Storage::Cpu(cpu) => cpu.as_slice::<f32>().ok().map(|data| f(&data[start..end])),
        _ => None,
    }
}

/// Rows of a 2-D f32 CPU tensor as one vector.
fn host_rows(x: &Tensor) -> Result<Vec<f32>> {
    Ok(x.flatten_all()?.to_vec1::<f32>()?)
}

/// A GPT-2 `Conv1D`, `y = x · W + b`. The checkpoint stores `W` as `[in, out]`; it is kept
/// transposed, `[out, in]` as `nn.Linear` does, because every product then reads contiguous
/// weight rows: the CPU kernels directly, and gemm as a transposed operand (which it handles
/// as fast as or faster than the original layout).
struct Conv1D {
    weight: Tensor,
    bias: Tensor,
}

impl Conv1D {
    fn load(vb: VarBuilder, d_in: usize, d_out: usize) -> Result<Self> {
        Ok(Conv1D {
            weight: vb.get((d_in, d_out), "weight")?.t()?.contiguous()?,
            bias: vb.get(d_out, "bias")?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        linear(x, &self.weight, Some(&self.bias))
    }
}

/// `x · wᵀ (+ bias)` for `w` `[out, in]`: the weight-streaming kernel for a few rows on the
/// CPU, candle's matrix product otherwise.
fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (rows, k) = x.dims2()?;
    if rows <= KERNEL_MAX_ROWS && x.device().is_cpu() && x.dtype() == DType::F32 {
        let m = w.dim(0)?;
        let xs = host_rows(x)?;
        let out = with_host_f32(w, |w| match bias {
            Some(bias) => with_host_f32(bias, |b| kernels::linear(&xs, rows, w, k, m, Some(b))),
            None => Some(kernels::linear(&xs, rows, w, k, m, None)),
        });
        if let Some(Some(out)) = out {
            return Ok(Tensor::from_vec(out, (rows, m), x.device())?);
        }
    }
    let y = if x.device().is_cpu() {
        split_matmul(x, w)?
    } else {
        x.matmul(&w.t()?)?
    };
    Ok(match bias {
        Some(bias) => y.broadcast_add(bias)?,
        None => y,
    })
}

/// `x · wᵀ` on the CPU with the output columns split into one band per thread: gemm runs a
/// product with few rows (a decode batch) on one thread, leaving the other cores idle.
fn split_matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let m = w.dim(0)?;
    let parts = rayon::current_num_threads().clamp(1, m);
    if parts == 1 {
        return Ok(x.matmul(&w.t()?)?);
    }
    let band = m.div_ceil(parts);
    let bands = (0..parts)
        .into_par_iter()
        .map(|p| {
            let start = p * band;
            x.matmul(&w.narrow(0, start, band.min(m - start))?.t()?)
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Tensor::cat(&bands, 1)?)
}

fn layer_norm(vb: VarBuilder, size: usize, eps: f64) -> Result<LayerNorm> {
    Ok(LayerNorm::new(
        vb.get(size, "weight")?,
        vb.get(size, "bias")?,
        eps,
    ))
}

struct Attention {
    c_attn: Conv1D,
    c_proj: Conv1D,
    n_head: usize,
    head_dim: usize,
    scale: f64,
}

impl Attention {
    fn load(vb: VarBuilder, c: &Gpt2Config, layer: usize) -> Result<Self> {
        let mut scale = if c.scale_attn_weights {
            1.0 / (c.head_dim() as f64).sqrt()
        } else {
            1.0
        };
        if c.scale_attn_by_inverse_layer_idx {
            scale /= (layer + 1) as f64;
        }
        Ok(Attention {
            c_attn: Conv1D::load(vb.pp("c_attn"), c.n_embd, 3 * c.n_embd)?,
            c_proj: Conv1D::load(vb.pp("c_proj"), c.n_embd, c.n_embd)?,
            n_head: c.n_head,
            head_dim: c.head_dim(),
            scale,
        })
    }

    /// `x` is the batch's rows `[Σ rows, n_embd]`, sequence after sequence; `rows[i]` new rows
    /// belong to sequence `i`, whose layer cache `layers[i]` holds its past and is extended.
    fn forward(
        &self,
        x: &Tensor,
        rows: &[usize],
        layers: &mut [&mut LayerCache],
    ) -> Result<Tensor> {
        let qkv = self.c_attn.forward(x)?;
        // The caches' kind decides: host caches on the CPU, tensor caches anywhere (tests run
        // the tensor path on the CPU too).
        let host = layers.iter().all(|l| matches!(**l, LayerCache::Host(_)));
        let out = if host && x.device().is_cpu() {
            self.attend_host(&qkv, rows, layers)?
        } else {
            let mut outs = Vec::with_capacity(rows.len());
            let mut start = 0;
            for (&n, layer) in rows.iter().zip(layers.iter_mut()) {
                outs.push(self.attend_device(&qkv.narrow(0, start, n)?, layer)?);
                start += n;
            }
            Tensor::cat(&outs, 0)?
        };
        self.c_proj.forward(&out)
    }

    /// CPU attention straight on the caches' memory, one task per (sequence, head).
    fn attend_host(
        &self,
        qkv: &Tensor,
        rows: &[usize],
        layers: &mut [&mut LayerCache],
    ) -> Result<Tensor> {
        let (total, three_width) = qkv.dims2()?;
        let width = three_width / 3;
        let dtype = qkv.dtype();
        let qkv_host = host_rows(&qkv.to_dtype(DType::F32)?)?;
        let mut spans = Vec::with_capacity(rows.len());
        let mut start = 0;
        for (&n, layer) in rows.iter().zip(layers.iter_mut()) {
            let span = &qkv_host[start * three_width..(start + n) * three_width];
            match &mut **layer {
                LayerCache::Host(host) => host.append(span),
                LayerCache::Device(_) => {
                    return Err(ModelError::Input(
                        "a cache made for another device was given to the CPU model".into(),
                    ))
                }
            }
            spans.push((start, span));
            start += n;
        }
        let tasks: Vec<(usize, usize)> = (0..rows.len())
            .flat_map(|i| (0..self.n_head).map(move |h| (i, h)))
            .collect();
        let scale = self.scale as f32;
        let attend = |&(i, h): &(usize, usize)| {
            let LayerCache::Host(host) = &*layers[i] else {
                unreachable!("every cache was checked to be a host cache above, this is a bug")
            };
            pulp::Arch::new().dispatch(|| host.attend(spans[i].1, h, scale))
        };
        let work: usize = rows
            .iter()
            .zip(layers.iter())
            .map(|(n, l)| n * host_len(l))
            .sum();
        let heads: Vec<Vec<f32>> = if work * self.n_head * self.head_dim < 1 << 16 {
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
        Ok(Tensor::from_vec(out, (total, width), qkv.device())?.to_dtype(dtype)?)
    }

    /// Attention with candle tensors for one sequence's `qkv` rows `[n, 3 · n_embd]`.
    fn attend_device(&self, qkv: &Tensor, layer: &mut LayerCache) -> Result<Tensor> {
        let LayerCache::Device(cache) = layer else {
            return Err(ModelError::Input(
                "a CPU cache was given to a model on another device".into(),
            ));
        };
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
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        Ok(probs.matmul(&v)?.transpose(0, 1)?.reshape((seq, n_embd))?)
    }
}

/// Positions in a host layer cache (0 for a device one).
fn host_len(layer: &LayerCache) -> usize {
    match layer {
        LayerCache::Host(host) => host.len(),
        LayerCache::Device(_) => 0,
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

struct Mlp {
    c_fc: Conv1D,
    c_proj: Conv1D,
    activation: Activation,
}

#[derive(Clone, Copy)]
enum Activation {
    GeluTanh,
    GeluErf,
    Relu,
}

impl Mlp {
    fn load(vb: VarBuilder, c: &Gpt2Config) -> Result<Self> {
        let activation = match c.activation_function.as_str() {
            "gelu" => Activation::GeluErf,
            "relu" => Activation::Relu,
            // gelu_new and gelu_pytorch_tanh are the same tanh approximation.
            _ => Activation::GeluTanh,
        };
        Ok(Mlp {
            c_fc: Conv1D::load(vb.pp("c_fc"), c.n_embd, c.inner_dim())?,
            c_proj: Conv1D::load(vb.pp("c_proj"), c.inner_dim(), c.n_embd)?,
            activation,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.c_fc.forward(x)?;
        let h = match self.activation {
            Activation::GeluTanh => h.gelu()?,
            Activation::GeluErf => h.gelu_erf()?,
            Activation::Relu => h.relu()?,
        };
        self.c_proj.forward(&h)
    }
}

struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn load(vb: VarBuilder, c: &Gpt2Config, layer: usize) -> Result<Self> {
        Ok(Block {
            ln_1: layer_norm(vb.pp("ln_1"), c.n_embd, c.layer_norm_epsilon)?,
            attn: Attention::load(vb.pp("attn"), c, layer)?,
            ln_2: layer_norm(vb.pp("ln_2"), c.n_embd, c.layer_norm_epsilon)?,
            mlp: Mlp::load(vb.pp("mlp"), c)?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        rows: &[usize],
        layers: &mut [&mut LayerCache],
    ) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.ln_1.forward(x)?, rows, layers)?)?;
        let mlp = self.mlp.forward(&self.ln_2.forward(&x)?)?;
        Ok((x + mlp)?)
    }
}

/// Which positions to compute logits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsAt {
    /// Only the last new position: all the decoder needs to pick the next token, and it skips
    /// the LM head (the largest matrix) for every other prompt position.
    Last,
    /// Every new position (for tests and prompt log-probabilities).
    All,
    /// None: only extend the cache.
    None,
}

/// One sequence's part of a batched forward pass.
pub struct Sequence<'a> {
    /// Input embeddings `[n_new, n_embd]` for positions `cache.len()..`.
    pub inputs: &'a Tensor,
    pub cache: &'a mut KvCache,
    pub logits: LogitsAt,
}

/// The transformer blocks, final layer norm and LM head (tied to `wte`).
pub struct Transformer {
    config: Gpt2Config,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    lm_head: Tensor,
}

impl Transformer {
    /// Reads the blocks, `ln_f` and `wte` (for the tied LM head) from a checkpoint.
    /// `attn.bias` / `attn.masked_bias` buffers, present in older files, are not needed.
    pub fn load(checkpoint: &Checkpoint) -> Result<Self> {
        let c = &checkpoint.config;
        let vb = &checkpoint.vb;
        let blocks = (0..c.n_layer)
            .map(|i| Block::load(vb.pp("h").pp(i), c, i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Transformer {
            config: c.clone(),
            blocks,
            ln_f: layer_norm(vb.pp("ln_f"), c.n_embd, c.layer_norm_epsilon)?,
            lm_head: vb.get((c.vocab_size, c.n_embd), "wte.weight")?,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// An empty cache for a new sequence, of the kind this model's device uses.
    pub fn new_cache(&self) -> KvCache {
        self.cache_of_kind(self.lm_head.device().is_cpu())
    }

    /// An empty cache of candle tensors, the kind GPUs use, whatever the device: for tests that
    /// check that path on the CPU.
    #[doc(hidden)]
    pub fn new_tensor_cache(&self) -> KvCache {
        self.cache_of_kind(false)
    }

    fn cache_of_kind(&self, host: bool) -> KvCache {
        let layer = if host {
            LayerCache::Host(HostLayer::new(self.config.n_head, self.config.head_dim()))
        } else {
            LayerCache::Device(None)
        };
        KvCache {
            layers: vec![layer; self.blocks.len()],
            len: 0,
            width: self.config.n_embd,
        }
    }

    /// Bytes of keys and values one position takes in a cache (all layers).
    pub fn cache_bytes_per_token(&self) -> usize {
        let element = if self.lm_head.device().is_cpu() {
            4
        } else {
            self.lm_head.dtype().size_in_bytes()
        };
        2 * self.blocks.len() * self.config.n_embd * element
    }

    /// One sequence: see [`Transformer::forward_batch`].
    pub fn forward(
        &self,
        inputs: &Tensor,
        cache: &mut KvCache,
        at: LogitsAt,
    ) -> Result<Option<Tensor>> {
        let mut batch = [Sequence {
            inputs,
            cache,
            logits: at,
        }];
        Ok(self.forward_batch(&mut batch)?.pop().flatten())
    }

    /// Runs every sequence's new inputs through the blocks in one pass, appending to each cache.
    /// Returns per sequence f32 logits `[vocab]` for [`LogitsAt::Last`], `[n_new, vocab]` for
    /// [`LogitsAt::All`], or `None`. On error every cache is left as it was.
    pub fn forward_batch(&self, batch: &mut [Sequence<'_>]) -> Result<Vec<Option<Tensor>>> {
        for (i, s) in batch.iter().enumerate() {
            self.check(i, s)?;
        }
        let before: Vec<usize> = batch.iter().map(|s| s.cache.len).collect();
        let result = self.run(batch);
        if result.is_err() {
            for (s, &len) in batch.iter_mut().zip(&before) {
                s.cache.truncate(len)?;
            }
        }
        result
    }

    fn check(&self, i: usize, s: &Sequence<'_>) -> Result<()> {
        let (n_new, width) = s.inputs.dims2()?;
        let c = &self.config;
        if width != c.n_embd {
            return Err(ModelError::Input(format!(
                "sequence {i}: input embeddings are {width} wide, the model is {} wide",
                c.n_embd
            )));
        }
        if n_new == 0 {
            return Err(ModelError::Input(format!(
                "sequence {i}: no input embeddings"
            )));
        }
        if s.cache.len + n_new > c.n_positions {
            return Err(ModelError::Input(format!(
                "sequence {i}: {} cached + {n_new} new positions exceed the context window of {}",
                s.cache.len, c.n_positions
            )));
        }
        if s.cache.layers.len() != self.blocks.len() || s.cache.width != c.n_embd {
            return Err(ModelError::Input(format!(
                "sequence {i}: the cache was made for another model"
            )));
        }
        Ok(())
    }

    fn run(&self, batch: &mut [Sequence<'_>]) -> Result<Vec<Option<Tensor>>> {
        let rows: Vec<usize> = batch
            .iter()
            .map(|s| s.inputs.dim(0))
            .collect::<candle_core::Result<_>>()?;
        let dtype = self.lm_head.dtype();
        let inputs: Vec<Tensor> = batch
            .iter()
            .map(|s| s.inputs.to_dtype(dtype))
            .collect::<candle_core::Result<_>>()?;
        let mut x = Tensor::cat(&inputs, 0)?;
        for (l, block) in self.blocks.iter().enumerate() {
            let mut layers: Vec<&mut LayerCache> =
                batch.iter_mut().map(|s| &mut s.cache.layers[l]).collect();
            x = block.forward(&x, &rows, &mut layers)?;
        }
        for (s, &n) in batch.iter_mut().zip(&rows) {
            s.cache.len += n;
        }

        // The LM head runs once, on the rows that need logits, for the whole batch.
        let mut wanted = Vec::new();
        let mut start = 0;
        for (s, &n) in batch.iter().zip(&rows) {
            match s.logits {
                LogitsAt::Last => wanted.push(x.narrow(0, start + n - 1, 1)?),
                LogitsAt::All => wanted.push(x.narrow(0, start, n)?),
                LogitsAt::None => {}
            }
            start += n;
        }
        if wanted.is_empty() {
            return Ok(vec![None; batch.len()]);
        }
        let logits = self.lm_head(&self.ln_f.forward(&Tensor::cat(&wanted, 0)?)?)?;
        let mut out = Vec::with_capacity(batch.len());
        let mut row = 0;
        for (s, &n) in batch.iter().zip(&rows) {
            out.push(match s.logits {
                LogitsAt::Last => Some(logits.get(row)?),
                LogitsAt::All => Some(logits.narrow(0, row, n)?),
                LogitsAt::None => None,
            });
            row += match s.logits {
                LogitsAt::Last => 1,
                LogitsAt::All => n,
                LogitsAt::None => 0,
            };
        }
        Ok(out)
    }

    /// f32 logits `[rows, vocab]` for final hidden states `[rows, n_embd]`.
    fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(linear(hidden, &self.lm_head, None)?.to_dtype(DType::F32)?)
    }
}
