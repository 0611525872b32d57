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
//! and attention takes each sequence against its own cache, so a sequence's result is the same
//! alone or in any batch.

use std::sync::Arc;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use crate::attention::Attention;
use crate::candidates::{DeviceRow, Logits};
use crate::host;
use crate::host::Activation;
use crate::kv_cache::{HostLayer, KvFormat, Store};
use crate::narrow::{Bf16, PackedNarrow, F16, Q8_0};
use crate::packed::{HostMatrix, Layout, Matrix, Packed};
use crate::paged::{PagedCache, PassIndex, PassSequence, Pool};
use crate::{Checkpoint, Gpt2Config, KvCache, ModelError, WeightFormat};

type Result<T> = std::result::Result<T, ModelError>;

/// Rows `indices` of `x`: gathered in one operation whatever their number, or `x` itself when
/// they are all of its rows in order (a pass of decode steps).
fn select(x: &Tensor, indices: Vec<u32>) -> Result<Tensor> {
    let n = indices.len();
    if n == x.dim(0)? && indices.iter().enumerate().all(|(i, &r)| r as usize == i) {
        return Ok(x.clone());
    }
    Ok(x.index_select(&Tensor::from_vec(indices, n, x.device())?, 0)?)
}

/// Rows of a 2-D f32 CPU tensor as one vector.
fn host_rows(x: &Tensor) -> Result<Vec<f32>> {
    Ok(x.flatten_all()?.to_vec1::<f32>()?)
}

/// A linear layer's weights, kept as the products on their device read them.
pub(crate) enum Weight {
    /// On the CPU: packed once into panels, in f32 ([`Packed`]) or a narrow format
    /// ([`crate::narrow`]), for every row count.
    Host(Box<dyn HostMatrix>),
    /// Elsewhere: `[out, in]`, for candle's matrix product.
    Tensor(Tensor),
}

/// `w` packed in `format` for the fastest kernel this CPU has: q8_0 and bf16 on AVX-512's
/// dot-product instructions where it has them ([`crate::dot`]), else widened to f32 in registers
/// ([`crate::narrow`]).
pub fn host_matrix(format: WeightFormat, w: Matrix) -> Result<Box<dyn HostMatrix>> {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::dot::{DotBf16, DotQ8};
        let dot: Option<Box<dyn HostMatrix>> = match format {
            WeightFormat::Q8_0 => DotQ8::new(w).map(|m| Box::new(m) as _),
            WeightFormat::Bf16 => DotBf16::new(w).map(|m| Box::new(m) as _),
            _ => None,
        };
        if let Some(dot) = dot {
            return Ok(dot);
        }
    }
    Ok(match format {
        WeightFormat::F32 => Box::new(Packed::new(w)),
        WeightFormat::Q8_0 => Box::new(PackedNarrow::<Q8_0>::new(w)?),
        WeightFormat::Bf16 => Box::new(PackedNarrow::<Bf16>::new(w)?),
        WeightFormat::F16 => Box::new(PackedNarrow::<F16>::new(w)?),
    })
}

impl Weight {
    /// From `w` stored in `layout`: packed in `format` when it is CPU f32, else kept `[out, in]`
    /// for candle.
    fn new(w: Tensor, layout: Layout, format: WeightFormat) -> Result<Self> {
        let (k, n) = match (layout, w.dims2()?) {
            (Layout::InOut, (k, n)) | (Layout::OutIn, (n, k)) => (k, n),
        };
        if !(w.device().is_cpu() && w.dtype() == DType::F32) {
            return Ok(Weight::Tensor(match layout {
                Layout::InOut => w.t()?.contiguous()?,
                Layout::OutIn => w,
            }));
        }
        let values = host_rows(&w)?;
        let matrix = Matrix::new(&values, k, n, layout);
        Ok(Weight::Host(host_matrix(format, matrix)?))
    }

    /// Whether the CPU path's products can run on it.
    fn on_host(&self) -> bool {
        matches!(self, Weight::Host(_))
    }

    /// `x · W (+ bias)` on CPU rows `x` `[rows, in]`.
    fn forward_host(&self, x: &[f32], rows: usize, bias: Option<&[f32]>) -> Result<Vec<f32>> {
        match self {
            Weight::Host(w) => Ok(w.product(x, rows, bias)),
            Weight::Tensor(_) => Err(ModelError::Input(
                "the CPU path needs f32 weights on the CPU".into(),
            )),
        }
    }

    /// `x · W (+ bias)` on tensors: by the packed product on CPU f32 rows, else candle's.
    fn forward(&self, x: &Tensor, bias: Option<(&Tensor, &[f32])>) -> Result<Tensor> {
        match self {
            Weight::Host(w) if x.device().is_cpu() && x.dtype() == DType::F32 => {
                let (rows, _) = x.dims2()?;
                let y = w.product(&host_rows(x)?, rows, bias.map(|(_, host)| host));
                Ok(Tensor::from_vec(y, (rows, w.outputs()), x.device())?)
            }
            Weight::Host(_) => Err(ModelError::Input(format!(
                "weights packed on the CPU cannot multiply {:?} rows on {:?}",
                x.dtype(),
                x.device(),
            ))),
            Weight::Tensor(w) => {
                let y = x.matmul(&w.t()?)?;
                Ok(match bias {
                    Some((bias, _)) => y.broadcast_add(bias)?,
                    None => y,
                })
            }
        }
    }

    /// The matrix as a checkpoint stores a `Conv1D`, `[in, out]`, in f32.
    pub(crate) fn in_out(&self) -> Result<Tensor> {
        Ok(match self {
            Weight::Host(w) => {
                Tensor::from_vec(w.to_in_out(), (w.inputs(), w.outputs()), &Device::Cpu)?
            }
            Weight::Tensor(w) => w.t()?.to_dtype(DType::F32)?.contiguous()?,
        })
    }
}

/// A GPT-2 `Conv1D`, `y = x · W + b`, with `W` stored `[in, out]` in the checkpoint.
pub(crate) struct Conv1D {
    pub(crate) weight: Weight,
    bias: Tensor,
    /// The bias as plain floats, for the CPU path.
    bias_host: Vec<f32>,
}

impl Conv1D {
    pub(crate) fn load(
        vb: VarBuilder,
        d_in: usize,
        d_out: usize,
        weights: WeightFormat,
    ) -> Result<Self> {
        let bias = vb.get(d_out, "bias")?;
        Ok(Conv1D {
            weight: Weight::new(vb.get((d_in, d_out), "weight")?, Layout::InOut, weights)?,
            bias_host: bias.to_dtype(DType::F32)?.to_vec1()?,
            bias,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.weight.forward(x, Some((&self.bias, &self.bias_host)))
    }

    /// The same on CPU rows `[rows, in]`.
    pub(crate) fn forward_host(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        self.weight.forward_host(x, rows, Some(&self.bias_host))
    }
}

/// A layer norm, with its parameters also kept as plain floats for the CPU path.
pub(crate) struct Norm {
    ln: LayerNorm,
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl Norm {
    fn load(vb: VarBuilder, size: usize, eps: f64) -> Result<Self> {
        let (weight, bias) = (vb.get(size, "weight")?, vb.get(size, "bias")?);
        Ok(Norm {
            weight: weight.to_dtype(DType::F32)?.to_vec1()?,
            bias: bias.to_dtype(DType::F32)?.to_vec1()?,
            ln: LayerNorm::new(weight, bias, eps),
            eps: eps as f32,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.ln.forward(x)?)
    }

    fn forward_host(&self, x: &[f32]) -> Vec<f32> {
        host::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

pub(crate) struct Mlp {
    pub(crate) c_fc: Conv1D,
    pub(crate) c_proj: Conv1D,
    activation: Activation,
}

impl Mlp {
    fn load(vb: VarBuilder, c: &Gpt2Config, weights: WeightFormat) -> Result<Self> {
        let activation = match c.activation_function.as_str() {
            "gelu" => Activation::GeluErf,
            "relu" => Activation::Relu,
            // gelu_new and gelu_pytorch_tanh are the same tanh approximation.
            _ => Activation::GeluTanh,
        };
        Ok(Mlp {
            c_fc: Conv1D::load(vb.pp("c_fc"), c.n_embd, c.inner_dim(), weights)?,
            c_proj: Conv1D::load(vb.pp("c_proj"), c.inner_dim(), c.n_embd, weights)?,
            activation,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.c_fc.forward(x)?;
        let h = match self.activation {
            Activation::GeluTanh => h.gelu()?,
            Activation::GeluErf => h.gelu_erf()?,
            Activation::Relu => h.relu()?,
        };
        self.c_proj.forward(&h)
    }

    fn forward_host(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let mut h = self.c_fc.forward_host(x, rows)?;
        self.activation.apply(&mut h);
        self.c_proj.forward_host(&h, rows)
    }
}

pub(crate) struct Block {
    pub(crate) ln_1: Norm,
    pub(crate) attn: Attention,
    pub(crate) ln_2: Norm,
    pub(crate) mlp: Mlp,
}

impl Block {
    fn load(vb: VarBuilder, c: &Gpt2Config, layer: usize, weights: WeightFormat) -> Result<Self> {
        Ok(Block {
            ln_1: Norm::load(vb.pp("ln_1"), c.n_embd, c.layer_norm_epsilon)?,
            attn: Attention::load(vb.pp("attn"), c, layer, weights)?,
            ln_2: Norm::load(vb.pp("ln_2"), c.n_embd, c.layer_norm_epsilon)?,
            mlp: Mlp::load(vb.pp("mlp"), c, weights)?,
        })
    }

    fn forward(&self, x: &Tensor, index: &PassIndex, pool: (Tensor, Tensor)) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.ln_1.forward(x)?, index, pool)?)?;
        let mlp = self.mlp.forward(&self.ln_2.forward(&x)?)?;
        Ok((x + mlp)?)
    }

    /// The same on CPU rows, in place.
    fn forward_host(
        &self,
        x: &mut [f32],
        rows: &[usize],
        layers: &mut [&mut HostLayer],
    ) -> Result<()> {
        let total: usize = rows.iter().sum();
        let attn = self
            .attn
            .forward_host(&self.ln_1.forward_host(x), rows, layers)?;
        host::add_into(x, &attn);
        let mlp = self.mlp.forward_host(&self.ln_2.forward_host(x), total)?;
        host::add_into(x, &mlp);
        Ok(())
    }
}

/// Which positions to compute logits for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LogitsAt {
    /// Only the last new position: all the decoder needs to pick the next token, and it skips
    /// the LM head (the largest matrix) for every other prompt position.
    Last,
    /// Every new position (for tests and prompt log-probabilities).
    All,
    /// None: only extend the cache.
    None,
    /// The last new position's most likely tokens and softmax sums, reduced on the device
    /// ([`crate::candidates`]): what the decoder picks from on a GPU, instead of a whole row.
    /// With the row's masses at the pick's temperature (0 for greedy): where a nucleus ends or a
    /// draw from the whole row lands.
    Candidates { temperature: f32 },
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
    pub(crate) blocks: Vec<Block>,
    pub(crate) ln_f: Norm,
    lm_head: Weight,
    dtype: DType,
    /// What host caches store keys and values in.
    kv_format: KvFormat,
    /// Where tensor caches keep their keys and values.
    pool: Arc<Pool>,
    device: Device,
    /// Whether the decoder is to take the GPU's paths (tensor caches, picks from candidates
    /// reduced with the logits) on the CPU too: see [`Transformer::as_on_a_gpu`].
    gpu_paths: bool,
}

impl Transformer {
    /// Reads the blocks, `ln_f` and `wte` (for the tied LM head) from a checkpoint.
    /// `attn.bias` / `attn.masked_bias` buffers, present in older files, are not needed.
    pub fn load(checkpoint: &Checkpoint) -> Result<Self> {
        let c = &checkpoint.config;
        let vb = &checkpoint.vb;
        let blocks = (0..c.n_layer)
            .map(|i| Block::load(vb.pp("h").pp(i), c, i, checkpoint.weights))
            .collect::<Result<Vec<_>>>()?;
        Ok(Transformer {
            config: c.clone(),
            blocks,
            ln_f: Norm::load(vb.pp("ln_f"), c.n_embd, c.layer_norm_epsilon)?,
            lm_head: Weight::new(
                vb.get((c.vocab_size, c.n_embd), "wte.weight")?,
                Layout::OutIn,
                checkpoint.weights,
            )?,
            dtype: checkpoint.dtype,
            kv_format: checkpoint.kv_cache,
            pool: Arc::new(Pool::new(
                c.n_layer,
                c.n_head,
                c.head_dim(),
                checkpoint.dtype,
                checkpoint.device.clone(),
            )),
            device: checkpoint.device.clone(),
            gpu_paths: false,
        })
    }

    /// This model with the paths a GPU takes (tensor caches from the block pool, picks from
    /// [`LogitsAt::Candidates`]) on whatever device it is: for tests that run the decoder's GPU
    /// code on the CPU, against the CPU path's answers.
    #[doc(hidden)]
    pub fn as_on_a_gpu(mut self) -> Self {
        self.gpu_paths = true;
        self
    }

    /// Whether new caches are host caches (the CPU path).
    fn host_caches(&self) -> bool {
        self.lm_head.on_host() && !self.gpu_paths
    }

    /// The model's configuration.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// Whether the logits are on a GPU, where the decoder picks from [`LogitsAt::Candidates`]
    /// reduced there rather than from whole rows downloaded.
    pub fn logits_on_device(&self) -> bool {
        !self.device.is_cpu() || self.gpu_paths
    }

    /// The dtype the weights are in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// An empty cache for a new sequence, of the kind this model's device uses.
    pub fn new_cache(&self) -> KvCache {
        self.cache_of_kind(self.host_caches())
    }

    /// An empty cache of candle tensors, the kind GPUs use, whatever the device: for tests that
    /// check that path on the CPU.
    #[doc(hidden)]
    pub fn new_tensor_cache(&self) -> KvCache {
        self.cache_of_kind(false)
    }

    fn cache_of_kind(&self, host: bool) -> KvCache {
        let store = if host {
            let layer = HostLayer::new(self.config.n_head, self.config.head_dim(), self.kv_format);
            Store::Host(vec![layer; self.blocks.len()])
        } else {
            Store::Paged(PagedCache::new(Arc::clone(&self.pool)))
        };
        KvCache {
            store,
            len: 0,
            width: self.config.n_embd,
        }
    }

    /// Bytes of keys and values one position takes in a cache (all layers).
    pub fn cache_bytes_per_token(&self) -> usize {
        let element = if self.host_caches() {
            self.kv_format.size()
        } else {
            self.dtype.size_in_bytes()
        };
        2 * self.blocks.len() * self.config.n_embd * element
    }

    /// Sets aside room for `positions` cached positions over at most `sessions` sessions on the
    /// device (each holds at most one partly filled block), so that serving within that budget
    /// never grows the pool (which copies it). Nothing to do on the CPU path, whose caches take
    /// memory as they grow.
    pub fn reserve_cache(&self, positions: usize, sessions: usize) -> Result<()> {
        if self.host_caches() {
            return Ok(());
        }
        self.pool
            .reserve(positions.div_ceil(crate::paged::BLOCK) + sessions)
    }

    /// Blocks of the device pool that caches hold (each counted once, however many forks share
    /// it); for tests of the pool's accounting.
    #[doc(hidden)]
    pub fn cache_blocks_in_use(&self) -> usize {
        self.pool.in_use()
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
    /// [`LogitsAt::Candidates`] is [`Transformer::forward_batch_logits`]'s.
    pub fn forward_batch(&self, batch: &mut [Sequence<'_>]) -> Result<Vec<Option<Tensor>>> {
        let candidates = |s: &Sequence<'_>| matches!(s.logits, LogitsAt::Candidates { .. });
        if let Some(i) = batch.iter().position(candidates) {
            return Err(ModelError::Input(format!(
                "sequence {i}: candidates come from forward_batch_logits"
            )));
        }
        Ok(self
            .forward_batch_logits(batch)?
            .into_iter()
            .map(|logits| match logits {
                Some(Logits::Rows(rows)) => Some(rows),
                _ => None,
            })
            .collect())
    }

    /// [`Transformer::forward_batch`], with [`LogitsAt::Candidates`] too.
    pub fn forward_batch_logits(&self, batch: &mut [Sequence<'_>]) -> Result<Vec<Option<Logits>>> {
        for (i, s) in batch.iter().enumerate() {
            self.check(i, s)?;
        }
        let before: Vec<usize> = batch.iter().map(|s| s.cache.len).collect();
        // The pass runs on one of rayon's threads. Called from another thread, each of its ~80
        // parallel loops would be handed to the pool and that thread put to sleep until the loop
        // ends: a futex wake per product, about a tenth of a one-stream step. From inside the
        // pool the caller takes part in every loop instead, and waits once per pass. On the host
        // the other threads also spin for work between the loops instead of sleeping (`awake`);
        // a device's pass leaves them asleep while it waits for the device.
        let host = self.host_path(batch)?;
        let result = if host {
            crate::awake::with_partners(|| self.run(batch, host))
        } else {
            rayon::scope(|_| self.run(batch, host))
        };
        if result.is_err() {
            for (s, &len) in batch.iter_mut().zip(&before) {
                s.cache.truncate(len);
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
        let ours = match &s.cache.store {
            Store::Host(layers) => layers.len() == self.blocks.len(),
            Store::Paged(paged) => Arc::ptr_eq(&paged.pool, &self.pool),
        };
        if !ours || s.cache.width != c.n_embd {
            return Err(ModelError::Input(format!(
                "sequence {i}: the cache was made for another model"
            )));
        }
        Ok(())
    }

    /// Whether these caches take the CPU path (plain rows, host caches) or the tensor path.
    fn host_path(&self, batch: &[Sequence<'_>]) -> Result<bool> {
        let host = |s: &Sequence<'_>| matches!(s.cache.store, Store::Host(_));
        let all_host = batch.iter().all(host);
        if !all_host && batch.iter().any(host) {
            return Err(ModelError::Input(
                "caches of one batch must be of one kind (host or tensor)".into(),
            ));
        }
        Ok(all_host && self.lm_head.on_host())
    }

    fn run(&self, batch: &mut [Sequence<'_>], host: bool) -> Result<Vec<Option<Logits>>> {
        let rows: Vec<usize> = batch
            .iter()
            .map(|s| s.inputs.dim(0))
            .collect::<candle_core::Result<_>>()?;
        let hidden = if host {
            self.blocks_host(batch, &rows)?
        } else {
            self.blocks_tensor(batch, &rows)?
        };
        for (s, &n) in batch.iter_mut().zip(&rows) {
            s.cache.len += n;
        }
        self.logits(batch, &rows, &hidden)
    }

    /// Every block over the batch's rows with candle tensors; returns the final hidden states.
    /// The rows go to the device in one upload, as do the pass's block tables.
    fn blocks_tensor(&self, batch: &mut [Sequence<'_>], rows: &[usize]) -> Result<Tensor> {
        let inputs: Vec<&Tensor> = batch.iter().map(|s| s.inputs).collect();
        let mut x = crate::wire::concat_rows(&inputs, self.dtype)?
            .to_device(&self.device)?
            .to_dtype(self.dtype)?;
        let mut caches = Vec::with_capacity(batch.len());
        for (s, &n) in batch.iter_mut().zip(rows) {
            let Store::Paged(paged) = &mut s.cache.store else {
                unreachable!("`host_path` checked that the caches are paged, this is a bug")
            };
            paged.prepare(s.cache.len, n)?;
            caches.push(PassSequence {
                cache: paged,
                past: s.cache.len,
                rows: n,
            });
        }
        let index = PassIndex::new(&caches, &self.pool)?;
        for (l, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x, &index, self.pool.layer(l))?;
        }
        Ok(x)
    }

    /// The same on plain CPU rows.
    fn blocks_host(&self, batch: &mut [Sequence<'_>], rows: &[usize]) -> Result<Tensor> {
        let mut x = Vec::with_capacity(rows.iter().sum::<usize>() * self.config.n_embd);
        for s in batch.iter() {
            x.extend(host_rows(&s.inputs.to_dtype(DType::F32)?)?);
        }
        for (l, block) in self.blocks.iter().enumerate() {
            let mut layers: Vec<&mut HostLayer> = batch
                .iter_mut()
                .map(|s| match &mut s.cache.store {
                    Store::Host(layers) => &mut layers[l],
                    Store::Paged(_) => {
                        unreachable!(
                            "`host_path` checked that the caches are host caches, this is a bug"
                        )
                    }
                })
                .collect();
            block.forward_host(&mut x, rows, &mut layers)?;
        }
        let total = x.len() / self.config.n_embd;
        Ok(Tensor::from_vec(
            x,
            (total, self.config.n_embd),
            &Device::Cpu,
        )?)
    }

    /// The LM head, once, on the rows that need logits for the whole batch; one download of the
    /// rows asked for whole, one reduction on the device of those asked for as candidates.
    fn logits(
        &self,
        batch: &[Sequence<'_>],
        rows: &[usize],
        x: &Tensor,
    ) -> Result<Vec<Option<Logits>>> {
        // Hidden rows that need logits, and for each sequence where its rows are among them.
        let (mut wanted, mut spans) = (Vec::new(), Vec::with_capacity(batch.len()));
        let mut start = 0;
        for (s, &n) in batch.iter().zip(rows) {
            let first = match s.logits {
                LogitsAt::Last | LogitsAt::Candidates { .. } => start + n - 1,
                LogitsAt::All => start,
                LogitsAt::None => start + n,
            };
            spans.push(wanted.len()..wanted.len() + start + n - first);
            wanted.extend(first as u32..(start + n) as u32);
            start += n;
        }
        if wanted.is_empty() {
            return Ok((0..batch.len()).map(|_| None).collect());
        }
        let logits = self.lm_head(&self.ln_f.forward(&select(x, wanted)?)?)?;
        let (mut whole, mut reduced, mut temperatures) = (Vec::new(), Vec::new(), Vec::new());
        for (s, span) in batch.iter().zip(&spans) {
            match s.logits {
                LogitsAt::Candidates { temperature } => {
                    reduced.push(span.start as u32);
                    temperatures.push(temperature);
                }
                _ => whole.extend(span.start as u32..span.end as u32),
            }
        }
        let whole_rows = match whole.is_empty() {
            true => None,
            false => Some(select(&logits, whole)?.to_device(&Device::Cpu)?),
        };
        let mut candidates = match reduced.is_empty() {
            true => Vec::new(),
            false => crate::candidates::reduce(&select(&logits, reduced)?, &temperatures)?,
        }
        .into_iter();
        let mut row = 0;
        let mut out = Vec::with_capacity(batch.len());
        for (s, span) in batch.iter().zip(spans) {
            let rows = || whole_rows.as_ref().expect("rows were asked for");
            out.push(match s.logits {
                LogitsAt::None => None,
                LogitsAt::Last => Some(Logits::Rows(rows().get(row)?)),
                LogitsAt::All => Some(Logits::Rows(rows().narrow(0, row, span.len())?)),
                LogitsAt::Candidates { .. } => Some(Logits::Candidates(
                    candidates.next().expect("one per sequence asking"),
                    DeviceRow {
                        rows: logits.clone(),
                        index: span.start,
                    },
                )),
            });
            if !matches!(s.logits, LogitsAt::Candidates { .. }) {
                row += span.len();
            }
        }
        Ok(out)
    }

    /// f32 logits `[rows, vocab]` for final hidden states `[rows, n_embd]` (after `ln_f`).
    pub fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.lm_head.forward(hidden, None)?.to_dtype(DType::F32)?)
    }
}
