//! GPT-2: "Language Models are Unsupervised Multitask Learners" (Radford et al., 2019).
//! Reference implementation: `transformers/models/gpt2/modeling_gpt2.py` (`GPT2LMHeadModel`).
//!
//! Pre-norm transformer blocks (ln_1 → causal self-attention → residual, ln_2 → MLP → residual),
//! learned position embeddings, a final layer norm, and an LM head tied to the token embeddings.
//! Linear layers are stored as `Conv1D` with weights `[in, out]`, so they multiply from the right
//! as they are, without a transpose. The model is immutable and shared; each sequence's keys and
//! values live in a [`KvCache`] that the caller owns, because the decoder holds many sessions.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use crate::{Gpt2Config, ModelError};

type Result<T> = std::result::Result<T, ModelError>;

/// An opened checkpoint: its config and a reader over its tensors, with the `transformer.`
/// prefix (written by `GPT2LMHeadModel.save_pretrained`) already stepped into when present.
pub struct Checkpoint {
    pub config: Gpt2Config,
    /// Where it was found.
    pub dir: std::path::PathBuf,
    pub device: Device,
    pub dtype: DType,
    vb: VarBuilder<'static>,
}

impl Checkpoint {
    /// What the services do at start-up: resolves `model` (a Hugging Face id or a directory, see
    /// [`crate::hub::resolve`]), picks the device named by `device` ([`load_device`]) and the
    /// dtype named by `dtype` (`auto` = f32 on CPU, f16 on CUDA; or f32, f16, bf16), and opens it.
    pub fn load(model: &str, device: &str, dtype: &str) -> Result<Self> {
        let dir = crate::hub::resolve(model)?;
        let device = load_device(device)?;
        let dtype = match (dtype, device.is_cuda()) {
            ("auto", false) | ("f32", _) => DType::F32,
            ("auto", true) | ("f16", _) => DType::F16,
            ("bf16", _) => DType::BF16,
            (other, _) => {
                return Err(ModelError::Input(format!(
                    "`dtype` must be auto, f32, f16 or bf16, got {other:?}"
                )))
            }
        };
        Self::open(&dir, dtype, &device)
    }

    /// Opens `dir/config.json` and memory-maps `dir/model.safetensors`, converting tensors to
    /// `dtype` on `device` as they are read.
    pub fn open(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let config = Gpt2Config::from_dir(dir)?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(ModelError::NotFound(format!(
                "{} has no model.safetensors",
                dir.display()
            )));
        }
        // SAFETY: the file is mapped read-only and the mapping lives as long as the VarBuilder;
        // like every mmap it assumes nobody truncates the checkpoint while the service runs.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], dtype, device)? };
        let vb = if vb.contains_tensor("transformer.wte.weight") {
            vb.pp("transformer")
        } else if vb.contains_tensor("wte.weight") {
            vb
        } else {
            return Err(ModelError::Checkpoint(
                "model.safetensors has neither `wte.weight` nor `transformer.wte.weight`; is it a GPT-2 checkpoint?".into(),
            ));
        };
        Ok(Checkpoint {
            config,
            dir: dir.to_path_buf(),
            device: device.clone(),
            dtype,
            vb,
        })
    }
}

/// The device named by `spec`: `cpu`, `cuda` / `cuda:N`, or `auto` (the first GPU if this build
/// has CUDA and one is present, else the CPU).
pub fn load_device(spec: &str) -> Result<Device> {
    let cuda = |ordinal: usize| {
        Device::new_cuda(ordinal).map_err(|e| {
            ModelError::Input(format!(
                "`device` {spec:?} is not usable ({e}); builds without the `cuda` feature only run on `cpu`"
            ))
        })
    };
    match spec {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(if candle_core::utils::cuda_is_available() {
            cuda(0)?
        } else {
            Device::Cpu
        }),
        "cuda" => cuda(0),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => cuda(n),
            None => Err(ModelError::Input(format!(
                "`device` must be cpu, auto, cuda or cuda:N, got {other:?}"
            ))),
        },
    }
}

/// The embedding module: token embeddings `wte` `[vocab, n_embd]` and learned position
/// embeddings `wpe` `[n_positions, n_embd]`.
pub struct Embeddings {
    wte: Tensor,
    wpe: Tensor,
}

impl Embeddings {
    /// Reads `wte` and `wpe` from a checkpoint.
    pub fn load(checkpoint: &Checkpoint) -> Result<Self> {
        let c = &checkpoint.config;
        Ok(Embeddings {
            wte: checkpoint.vb.get((c.vocab_size, c.n_embd), "wte.weight")?,
            wpe: checkpoint.vb.get((c.n_positions, c.n_embd), "wpe.weight")?,
        })
    }

    /// The decoder's input: `wte[id] + wpe[position]` for each pair, `[n, n_embd]`.
    pub fn embed(&self, ids: &[u32], positions: &[u32]) -> Result<Tensor> {
        if ids.len() != positions.len() {
            return Err(ModelError::Input(format!(
                "{} ids but {} positions",
                ids.len(),
                positions.len()
            )));
        }
        let tokens = self.token_vectors(ids)?;
        let positions = self.select(&self.wpe, positions, "position")?;
        Ok((tokens + positions)?)
    }

    /// Raw token embedding vectors `wte[id]`, `[n, n_embd]`.
    pub fn token_vectors(&self, ids: &[u32]) -> Result<Tensor> {
        self.select(&self.wte, ids, "token id")
    }

    fn select(&self, table: &Tensor, rows: &[u32], what: &str) -> Result<Tensor> {
        let limit = table.dim(0)?;
        if let Some((i, &row)) = rows.iter().enumerate().find(|(_, &r)| r as usize >= limit) {
            // Out-of-range indices must never reach index_select: on CUDA they fault the device.
            return Err(ModelError::Input(format!(
                "{what} {row} at index {i} is out of range (must be below {limit})"
            )));
        }
        let index = Tensor::new(rows, table.device())?;
        Ok(table.index_select(&index, 0)?)
    }
}

/// A GPT-2 `Conv1D`: `y = x · W + b` with `W` stored `[in, out]`.
struct Conv1D {
    weight: Tensor,
    bias: Tensor,
}

impl Conv1D {
    fn load(vb: VarBuilder, d_in: usize, d_out: usize) -> Result<Self> {
        Ok(Conv1D {
            weight: vb.get((d_in, d_out), "weight")?,
            bias: vb.get(d_out, "bias")?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight)?.broadcast_add(&self.bias)?)
    }
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

    /// `x` is `[seq, n_embd]` for positions `past..past + seq`; `cache` holds this layer's
    /// keys and values for positions `0..past` and is extended with the new ones.
    fn forward(&self, x: &Tensor, cache: &mut Option<(Tensor, Tensor)>) -> Result<Tensor> {
        let (seq, n_embd) = x.dims2()?;
        let qkv = self.c_attn.forward(x)?;
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
            scores = scores.broadcast_add(&causal_mask(seq, total, x.device())?)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        let out = probs.matmul(&v)?.transpose(0, 1)?.reshape((seq, n_embd))?;
        self.c_proj.forward(&out)
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

    fn forward(&self, x: &Tensor, cache: &mut Option<(Tensor, Tensor)>) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.ln_1.forward(x)?, cache)?)?;
        let mlp = self.mlp.forward(&self.ln_2.forward(&x)?)?;
        Ok((x + mlp)?)
    }
}

/// One sequence's keys and values for every layer: `[n_head, len, head_dim]` per layer.
/// Cloning is cheap and safe for forking: tensors are shared and never written in place (each
/// step makes new ones), so a fork and its source diverge without copying the past.
#[derive(Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been run through this cache yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the keys and values occupy.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .map(|(k, v)| (k.elem_count() + v.elem_count()) * k.dtype().size_in_bytes())
            .sum()
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

    /// An empty cache for a new sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            layers: vec![None; self.blocks.len()],
            len: 0,
        }
    }

    /// Runs input embeddings `[n_new, n_embd]` (from [`Embeddings::embed`], at positions
    /// `cache.len()..`) through the blocks, appending to `cache`. Returns f32 logits
    /// `[vocab]` for [`LogitsAt::Last`], `[n_new, vocab]` for [`LogitsAt::All`], or `None`.
    pub fn forward(
        &self,
        inputs: &Tensor,
        cache: &mut KvCache,
        at: LogitsAt,
    ) -> Result<Option<Tensor>> {
        let (n_new, width) = inputs.dims2()?;
        if width != self.config.n_embd {
            return Err(ModelError::Input(format!(
                "input embeddings are {width} wide, the model is {} wide",
                self.config.n_embd
            )));
        }
        if n_new == 0 {
            return Err(ModelError::Input("no input embeddings".into()));
        }
        if cache.len + n_new > self.config.n_positions {
            return Err(ModelError::Input(format!(
                "{} cached + {n_new} new positions exceed the context window of {}",
                cache.len, self.config.n_positions
            )));
        }
        let mut x = inputs.to_dtype(self.lm_head.dtype())?;
        let mut scratch = cache.clone();
        for (block, layer) in self.blocks.iter().zip(scratch.layers.iter_mut()) {
            x = block.forward(&x, layer)?;
        }
        // Commit only after every layer succeeded, so an error leaves the cache as it was.
        scratch.len += n_new;
        *cache = scratch;
        let hidden = match at {
            LogitsAt::None => return Ok(None),
            LogitsAt::Last => x.narrow(0, n_new - 1, 1)?,
            LogitsAt::All => x,
        };
        let logits = self
            .ln_f
            .forward(&hidden)?
            .matmul(&self.lm_head.t()?)?
            .to_dtype(DType::F32)?;
        Ok(Some(match at {
            LogitsAt::Last => logits.squeeze(0)?,
            _ => logits,
        }))
    }
}
