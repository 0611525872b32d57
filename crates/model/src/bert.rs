//! BERT's encoder (Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for
//! Language Understanding", NAACL 2019; reference: Hugging Face transformers' `modeling_bert.py`)
//! on the CPU in f32, on plain slices. It computes what candle-transformers' `BertModel` computes
//! (the sentence encoder still runs that one on other devices and dtypes), two to three times
//! faster on small CPUs, because:
//! - sequences are packed end to end, not padded: the linear layers see only real tokens, and each
//!   sequence attends over its own tokens, which is all the padding mask does;
//! - query, key and value are one matrix product, and each product adds its bias (and residual)
//!   by accumulating onto an output that already holds them;
//! - the caller chooses gemm's threading per call: two threads on two halves of a batch beat two
//!   threads meeting at a barrier inside every product;
//! - attention and GELU are SIMD loops (pulp picks AVX-512 or AVX2 at run time), not dozens of
//!   small candle ops per layer.

use candle_core::DType;
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct};
use gemm::Parallelism;
use pulp::{Simd, WithSimd};

use crate::host::{self, Activation};

type Result<T> = candle_core::Result<T>;

/// BERT's weights, laid out for the CPU.
pub struct HostBert {
    word: Vec<f32>,
    position: Vec<f32>,
    /// Row 0 of the token-type table: every input is a single segment.
    segment: Vec<f32>,
    norm: Norm,
    layers: Vec<Layer>,
    width: usize,
    heads: usize,
    activation: Activation,
}

struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

/// A dense layer, its weight transposed to `[in, out]` once at load, so that gemm reads it
/// row by row.
struct Linear {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
}

struct Layer {
    /// Query, key and value side by side: `[in, 3 · width]`.
    qkv: Linear,
    attention_out: Linear,
    attention_norm: Norm,
    intermediate: Linear,
    output: Linear,
    output_norm: Norm,
}

fn vector(vb: &VarBuilder, len: usize, name: &str) -> Result<Vec<f32>> {
    vb.get(len, name)?.to_dtype(DType::F32)?.to_vec1()
}

impl Norm {
    fn load(vb: VarBuilder, width: usize, eps: f64) -> Result<Self> {
        Ok(Norm {
            weight: vector(&vb, width, "weight")?,
            bias: vector(&vb, width, "bias")?,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &[f32]) -> Vec<f32> {
        host::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

impl Linear {
    /// `parts` checkpoint layers of the same input, their outputs concatenated.
    fn load(parts: &[VarBuilder], inputs: usize, outputs: usize) -> Result<Self> {
        let mut weights = Vec::new();
        let mut bias = Vec::new();
        for vb in parts {
            weights.push(vb.get((outputs, inputs), "weight")?.to_dtype(DType::F32)?);
            bias.extend(vector(vb, outputs, "bias")?);
        }
        let weight = candle_core::Tensor::cat(&weights, 0)?
            .t()?
            .contiguous()?
            .flatten_all()?
            .to_vec1()?;
        Ok(Linear {
            weight,
            bias,
            inputs,
        })
    }

    /// `x · W + b (+ residual)` for the `rows` rows of `x`.
    fn forward(&self, x: &[f32], residual: Option<&[f32]>, threads: Parallelism) -> Vec<f32> {
        let (k, n) = (self.inputs, self.bias.len());
        let rows = x.len() / k;
        let mut out: Vec<f32> = match residual {
            Some(r) => r
                .chunks_exact(n)
                .flat_map(|row| row.iter().zip(&self.bias).map(|(a, b)| a + b))
                .collect(),
            None => self.bias.repeat(rows),
        };
        assert_eq!(out.len(), rows * n, "residual rows match the input's");
        // SAFETY: every pointer covers the matrix its strides describe: `x` is `[rows, k]`,
        // `weight` `[k, n]` and `out` `[rows, n]`, all row-major, and `out` aliases neither.
        unsafe {
            gemm::gemm(
                rows,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                true,
                x.as_ptr(),
                1,
                k as isize,
                self.weight.as_ptr(),
                1,
                n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                threads,
            );
        }
        out
    }
}

impl HostBert {
    /// Loads from the checkpoint's tensors, named as candle-transformers names them (with or
    /// without a `bert.` prefix).
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let width = config.hidden_size;
        let inner = config.intermediate_size;
        let eps = config.layer_norm_eps;
        if !width.is_multiple_of(config.num_attention_heads) {
            candle_core::bail!(
                "`hidden_size` {width} is not a multiple of `num_attention_heads` {}",
                config.num_attention_heads
            );
        }
        let e = vb.pp("embeddings");
        let table = |name: &str, rows: usize| -> Result<Vec<f32>> {
            e.pp(name)
                .get((rows, width), "weight")?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1()
        };
        let segment = table("token_type_embeddings", config.type_vocab_size)?[..width].to_vec();
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = vb.pp("encoder.layer").pp(i);
                let a = l.pp("attention");
                let s = a.pp("self");
                Ok(Layer {
                    qkv: Linear::load(&[s.pp("query"), s.pp("key"), s.pp("value")], width, width)?,
                    attention_out: Linear::load(&[a.pp("output.dense")], width, width)?,
                    attention_norm: Norm::load(a.pp("output.LayerNorm"), width, eps)?,
                    intermediate: Linear::load(&[l.pp("intermediate.dense")], width, inner)?,
                    output: Linear::load(&[l.pp("output.dense")], inner, width)?,
                    output_norm: Norm::load(l.pp("output.LayerNorm"), width, eps)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(HostBert {
            word: table("word_embeddings", config.vocab_size)?,
            position: table("position_embeddings", config.max_position_embeddings)?,
            segment,
            norm: Norm::load(e.pp("LayerNorm"), width, eps)?,
            layers,
            width,
            heads: config.num_attention_heads,
            activation: match config.hidden_act {
                HiddenAct::Gelu => Activation::GeluErf,
                HiddenAct::GeluApproximate => Activation::GeluTanh,
                HiddenAct::Relu => Activation::Relu,
            },
        })
    }

    /// The last hidden states of `sequences` (token ids below the vocabulary size, each at most
    /// the position table long), packed: `[Σ lengths, width]`, row-major.
    pub fn forward(&self, sequences: &[&[u32]], threads: Parallelism) -> Vec<f32> {
        let w = self.width;
        let mut x = Vec::with_capacity(sequences.iter().map(|s| s.len()).sum::<usize>() * w);
        for ids in sequences {
            for (t, &id) in ids.iter().enumerate() {
                let word = &self.word[id as usize * w..][..w];
                let position = &self.position[t * w..][..w];
                x.extend(
                    word.iter()
                        .zip(position)
                        .zip(&self.segment)
                        .map(|((a, b), c)| a + b + c),
                );
            }
        }
        let mut x = self.norm.forward(&x);
        let lengths: Vec<usize> = sequences.iter().map(|s| s.len()).collect();
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x, None, threads);
            let context = self.attend(&qkv, &lengths);
            let y = layer.attention_out.forward(&context, Some(&x), threads);
            x = layer.attention_norm.forward(&y);
            let mut h = layer.intermediate.forward(&x, None, threads);
            self.activation.apply(&mut h);
            let y = layer.output.forward(&h, Some(&x), threads);
            x = layer.output_norm.forward(&y);
        }
        x
    }

    /// Self-attention of each sequence over its own tokens: `qkv` is `[tokens, 3 · width]`;
    /// returns the heads' outputs side by side, `[tokens, width]`.
    fn attend(&self, qkv: &[f32], lengths: &[usize]) -> Vec<f32> {
        let w = self.width;
        let mut out = vec![0f32; qkv.len() / 3];
        let mut start = 0;
        let mut rest = &mut out[..];
        for &len in lengths {
            let (mine, tail) = rest.split_at_mut(len * w);
            rest = tail;
            pulp::Arch::new().dispatch(Attend {
                qkv: &qkv[start * 3 * w..(start + len) * 3 * w],
                out: mine,
                width: w,
                heads: self.heads,
            });
            start += len;
        }
        out
    }
}

/// Softmax(q kᵀ / √d) v for every head of one sequence.
struct Attend<'a> {
    qkv: &'a [f32],
    out: &'a mut [f32],
    width: usize,
    heads: usize,
}

impl WithSimd for Attend<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let (w, d) = (self.width, self.width / self.heads);
        let len = self.out.len() / w;
        let lanes = S::F32_LANES;
        // Keys transposed, `[d, padded]`, so that a query's scores are multiply-adds across
        // positions, whole registers at a time, with no horizontal sums; zeros past `len`.
        let padded = len.next_multiple_of(lanes);
        let mut keys = vec![0f32; d * padded];
        let mut scores = vec![0f32; padded];
        let scale = simd.splat_f32s(1.0 / (d as f32).sqrt());
        for head in 0..self.heads {
            for t in 0..len {
                let key = &self.qkv[t * 3 * w + w + head * d..][..d];
                for (c, &v) in key.iter().enumerate() {
                    keys[c * padded + t] = v;
                }
            }
            let keys = S::as_simd_f32s(&keys).0;
            let blocks = padded / lanes;
            for i in 0..len {
                let query = &self.qkv[i * 3 * w + head * d..][..d];
                let s = S::as_mut_simd_f32s(&mut scores).0;
                let mut max = simd.splat_f32s(f32::NEG_INFINITY);
                for (block, s) in s.iter_mut().enumerate() {
                    let mut acc = simd.splat_f32s(0.0);
                    for (c, &q) in query.iter().enumerate() {
                        acc =
                            simd.mul_add_e_f32s(simd.splat_f32s(q), keys[c * blocks + block], acc);
                    }
                    *s = simd.mul_f32s(acc, scale);
                    max = simd.max_f32s(max, *s);
                }
                // The padding's zero scores may exceed every real one; they do not count.
                let max = if padded > len {
                    scores[..len]
                        .iter()
                        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
                } else {
                    simd.reduce_max_f32s(max)
                };
                let max = simd.splat_f32s(max);
                let mut total = simd.splat_f32s(0.0);
                let s = S::as_mut_simd_f32s(&mut scores).0;
                for s in s.iter_mut() {
                    *s = host::exp(simd, simd.sub_f32s(*s, max));
                }
                scores[len..].fill(0.0);
                for &s in S::as_simd_f32s(&scores).0 {
                    total = simd.add_f32s(total, s);
                }
                let inv = 1.0 / simd.reduce_sum_f32s(total);
                let values = (0..len).map(|j| &self.qkv[j * 3 * w + 2 * w + head * d..][..d]);
                let row = &mut self.out[i * w + head * d..][..d];
                // MiniLM's heads are 32 wide: 2 AVX-512 or 4 AVX2 registers.
                match (d % lanes, d / lanes) {
                    (0, 1) => weighted_sum::<S, 1>(simd, &scores, values, row),
                    (0, 2) => weighted_sum::<S, 2>(simd, &scores, values, row),
                    (0, 4) => weighted_sum::<S, 4>(simd, &scores, values, row),
                    (0, 8) => weighted_sum::<S, 8>(simd, &scores, values, row),
                    _ => {
                        row.fill(0.0);
                        for (&p, value) in scores.iter().zip(values) {
                            axpy(simd, p, value, row);
                        }
                    }
                }
                row.iter_mut().for_each(|v| *v *= inv);
            }
        }
    }
}

/// `out = Σ p_j · value_j` over `N` registers' width, the sums held in registers.
#[inline(always)]
fn weighted_sum<'v, S: Simd, const N: usize>(
    simd: S,
    p: &[f32],
    values: impl Iterator<Item = &'v [f32]>,
    out: &mut [f32],
) {
    let mut acc = [simd.splat_f32s(0.0); N];
    for (&p, value) in p.iter().zip(values) {
        let p = simd.splat_f32s(p);
        let value = &S::as_simd_f32s(value).0[..N];
        for n in 0..N {
            acc[n] = simd.mul_add_e_f32s(p, value[n], acc[n]);
        }
    }
    S::as_mut_simd_f32s(out).0[..N].copy_from_slice(&acc);
}

/// `acc += a · x`.
#[inline(always)]
fn axpy<S: Simd>(simd: S, a: f32, x: &[f32], acc: &mut [f32]) {
    let a_v = simd.splat_f32s(a);
    let (x_body, x_tail) = S::as_simd_f32s(x);
    let (acc_body, acc_tail) = S::as_mut_simd_f32s(acc);
    for (o, &x) in acc_body.iter_mut().zip(x_body) {
        *o = simd.mul_add_e_f32s(a_v, x, *o);
    }
    for (o, &x) in acc_tail.iter_mut().zip(x_tail) {
        *o += a * x;
    }
}
