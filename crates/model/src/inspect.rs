//! Looking inside the model (the essay's "Inside the model"): one input through every block with
//! nothing cached, keeping what serving throws away — each layer's hidden states, the attention
//! weights of every head, the "logit lens" (the final layer norm and LM head read off every
//! layer) — and the weights themselves.
//!
//! This runs the same blocks and weights as serving, on candle tensors with eager attention, as
//! transformers does with `output_attentions=True`; its numbers are checked against transformers'
//! (`tests/parity.rs`).

use candle_core::{DType, Tensor};

use crate::{ModelError, Transformer};

type Result<T> = std::result::Result<T, ModelError>;

/// What a pass through the model kept.
pub struct Inspection {
    /// `n_layer + 1` states `[seq, n_embd]` (f32), as transformers' `hidden_states`: the input
    /// embeddings, the output of each block but the last, and the last block's output after the
    /// final layer norm.
    pub hidden_states: Vec<Tensor>,
    /// For each layer asked for, in the order asked: the weights `[n_head, seq, seq]` (f32) with
    /// which each position attends to itself and those before it.
    pub attentions: Vec<Tensor>,
}

/// The weight matrices of a block, by the name they have in the checkpoint (under `h.{i}.`).
pub const BLOCK_MATRICES: [&str; 4] = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"];

impl Transformer {
    /// Runs `inputs` (`[seq, n_embd]` input embeddings of a whole sequence) through every block,
    /// keeping the hidden states and the attention weights of `attention_layers`.
    pub fn inspect(&self, inputs: &Tensor, attention_layers: &[usize]) -> Result<Inspection> {
        self.pass(inputs, attention_layers, true)
    }

    /// The last hidden state `[seq, n_embd]` (f32, after the final layer norm) of the same pass
    /// as [`Transformer::inspect`], keeping nothing else: what scoring a text needs.
    pub fn last_hidden_state(&self, inputs: &Tensor) -> Result<Tensor> {
        let mut seen = self.pass(inputs, &[], false)?;
        Ok(seen
            .hidden_states
            .pop()
            .expect("a pass keeps at least the last hidden state; this is a bug"))
    }

    /// One pass; `every_state` keeps each layer's input, otherwise only the last state is kept.
    fn pass(
        &self,
        inputs: &Tensor,
        attention_layers: &[usize],
        every_state: bool,
    ) -> Result<Inspection> {
        let (seq, width) = inputs.dims2()?;
        let c = self.config();
        if width != c.n_embd || seq == 0 || seq > c.n_positions {
            return Err(ModelError::Input(format!(
                "inputs must be [1..={}, {}], got [{seq}, {width}]",
                c.n_positions, c.n_embd
            )));
        }
        if let Some(&bad) = attention_layers.iter().find(|&&l| l >= c.n_layer) {
            return Err(ModelError::Input(format!(
                "layer {bad} does not exist; the model has layers 0..{}",
                c.n_layer
            )));
        }
        let f32 = |t: &Tensor| t.to_dtype(DType::F32);
        let mut x = inputs.to_dtype(self.dtype())?;
        let mut hidden_states = Vec::with_capacity(c.n_layer + 1);
        let mut kept = vec![None; c.n_layer];
        for (l, block) in self.blocks.iter().enumerate() {
            if every_state {
                hidden_states.push(f32(&x)?);
            }
            let (attn, probs) = block.attn.forward_probed(&block.ln_1.forward(&x)?)?;
            if attention_layers.contains(&l) {
                kept[l] = Some(probs);
            }
            x = (x + attn)?;
            x = (&x + block.mlp.forward(&block.ln_2.forward(&x)?)?)?;
        }
        hidden_states.push(f32(&self.ln_f.forward(&x)?)?);
        let attentions = attention_layers
            .iter()
            .map(|&l| {
                kept[l]
                    .clone()
                    .expect("every listed layer was kept; this is a bug")
            })
            .collect();
        Ok(Inspection {
            hidden_states,
            attentions,
        })
    }

    /// The logit lens: f32 logits `[n_layer + 1, vocab]` read from each hidden state's last
    /// position through the final layer norm and the LM head. The last state is already
    /// normalised, so its row is the model's own next-token logits.
    pub fn logit_lens(&self, hidden_states: &[Tensor]) -> Result<Tensor> {
        let dtype = self.dtype();
        let last = |h: &Tensor| -> Result<Tensor> {
            let seq = h.dim(0)?;
            Ok(h.narrow(0, seq - 1, 1)?.to_dtype(dtype)?)
        };
        let mut rows = Vec::with_capacity(hidden_states.len());
        for (i, h) in hidden_states.iter().enumerate() {
            let row = last(h)?;
            rows.push(if i + 1 == hidden_states.len() {
                row
            } else {
                self.ln_f.forward(&row)?
            });
        }
        self.lm_head(&Tensor::cat(&rows, 0)?)
    }

    /// Block `layer`'s weight matrix `name` (one of [`BLOCK_MATRICES`]) as the checkpoint
    /// stores it, `[in, out]`, in f32.
    pub fn block_matrix(&self, layer: usize, name: &str) -> Result<Tensor> {
        let block = self.blocks.get(layer).ok_or_else(|| {
            ModelError::Input(format!(
                "layer {layer} does not exist; the model has layers 0..{}",
                self.blocks.len()
            ))
        })?;
        let conv = match name {
            "attn.c_attn" => &block.attn.c_attn,
            "attn.c_proj" => &block.attn.c_proj,
            "mlp.c_fc" => &block.mlp.c_fc,
            "mlp.c_proj" => &block.mlp.c_proj,
            _ => {
                return Err(ModelError::Input(format!(
                    "no matrix {name:?}; a block has {}",
                    BLOCK_MATRICES.join(", ")
                )))
            }
        };
        conv.weight.in_out()
    }
}
