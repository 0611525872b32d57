//! `config.json` of a GPT-2-architecture checkpoint, as `transformers` writes it
//! (`GPT2Config`). Unknown keys are ignored and missing ones take GPT-2's defaults, so the configs
//! of gpt2, distilgpt2, gpt2-medium/large/xl and their fine-tunes all load.

use std::path::Path;

use serde::Deserialize;

use crate::CheckpointError;

/// The hyper-parameters of a GPT-2 model.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct Gpt2Config {
    /// Architecture name; "gpt2" for every model this crate loads.
    pub model_type: String,
    pub vocab_size: usize,
    /// Context window (learned position embeddings).
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// Width of the MLP; `None` means 4 * n_embd.
    pub n_inner: Option<usize>,
    pub activation_function: String,
    pub layer_norm_epsilon: f64,
    pub eos_token_id: u32,
    /// Divide attention scores by sqrt(head_dim) (always true for released GPT-2 models).
    pub scale_attn_weights: bool,
    /// Also divide attention scores by the layer index + 1 (a fine-tuning option).
    pub scale_attn_by_inverse_layer_idx: bool,
}

impl Default for Gpt2Config {
    /// GPT-2 small (124M), the defaults of `transformers.GPT2Config`.
    fn default() -> Self {
        Gpt2Config {
            model_type: "gpt2".into(),
            vocab_size: 50257,
            n_positions: 1024,
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            n_inner: None,
            activation_function: "gelu_new".into(),
            layer_norm_epsilon: 1e-5,
            eos_token_id: 50256,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
        }
    }
}

impl Gpt2Config {
    /// Reads and checks `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, CheckpointError> {
        let path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| CheckpointError::Io(path.clone(), e))?;
        Self::from_json(&text).map_err(|e| match e {
            CheckpointError::Config(msg) => {
                CheckpointError::Config(format!("{}: {msg}", path.display()))
            }
            other => other,
        })
    }

    /// Parses and checks a `config.json` text.
    pub fn from_json(text: &str) -> Result<Self, CheckpointError> {
        let config: Gpt2Config =
            serde_json::from_str(text).map_err(|e| CheckpointError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), CheckpointError> {
        if self.model_type != "gpt2" {
            return Err(CheckpointError::Config(format!(
                "`model_type` is {:?}; only \"gpt2\" models are supported",
                self.model_type
            )));
        }
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            return Err(CheckpointError::Config(format!(
                "`n_embd` ({}) must be a multiple of `n_head` ({})",
                self.n_embd, self.n_head
            )));
        }
        if self.vocab_size == 0 || self.n_positions == 0 || self.n_layer == 0 {
            return Err(CheckpointError::Config(
                "`vocab_size`, `n_positions` and `n_layer` must be positive".into(),
            ));
        }
        if !matches!(
            self.activation_function.as_str(),
            "gelu_new" | "gelu" | "gelu_pytorch_tanh" | "relu"
        ) {
            return Err(CheckpointError::Config(format!(
                "`activation_function` {:?} is not supported (gelu_new, gelu, gelu_pytorch_tanh, relu)",
                self.activation_function
            )));
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Width of the MLP's hidden layer.
    pub fn inner_dim(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The published config.json files of the hub's GPT-2 family (verbatim key sets).
    const GPT2: &str = r#"{"activation_function":"gelu_new","architectures":["GPT2LMHeadModel"],"attn_pdrop":0.1,"bos_token_id":50256,"embd_pdrop":0.1,"eos_token_id":50256,"initializer_range":0.02,"layer_norm_epsilon":1e-05,"model_type":"gpt2","n_ctx":1024,"n_embd":768,"n_head":12,"n_layer":12,"n_positions":1024,"resid_pdrop":0.1,"summary_activation":null,"summary_first_dropout":0.1,"summary_proj_to_labels":true,"summary_type":"cls_index","summary_use_proj":true,"task_specific_params":{"text-generation":{"do_sample":true,"max_length":50}},"vocab_size":50257}"#;
    const DISTILGPT2: &str = r#"{"_num_labels":1,"activation_function":"gelu_new","architectures":["GPT2LMHeadModel"],"attn_pdrop":0.1,"bos_token_id":50256,"embd_pdrop":0.1,"eos_token_id":50256,"id2label":{"0":"LABEL_0"},"initializer_range":0.02,"label2id":{"LABEL_0":0},"layer_norm_epsilon":1e-05,"model_type":"gpt2","n_ctx":1024,"n_embd":768,"n_head":12,"n_layer":6,"n_positions":1024,"resid_pdrop":0.1,"summary_activation":null,"summary_first_dropout":0.1,"summary_proj_to_labels":true,"summary_type":"cls_index","summary_use_proj":true,"task_specific_params":{"text-generation":{"do_sample":true,"max_length":50}},"vocab_size":50257}"#;
    const GPT2_MEDIUM: &str = r#"{"activation_function":"gelu_new","architectures":["GPT2LMHeadModel"],"attn_pdrop":0.1,"bos_token_id":50256,"embd_pdrop":0.1,"eos_token_id":50256,"initializer_range":0.02,"layer_norm_epsilon":1e-05,"model_type":"gpt2","n_ctx":1024,"n_embd":1024,"n_head":16,"n_layer":24,"n_positions":1024,"n_special":0,"predict_special_tokens":true,"resid_pdrop":0.1,"summary_activation":null,"summary_first_dropout":0.1,"summary_proj_to_labels":true,"summary_type":"cls_index","summary_use_proj":true,"task_specific_params":{"text-generation":{"do_sample":true,"max_length":50}},"vocab_size":50257}"#;
    const GPT2_LARGE: &str = r#"{"activation_function":"gelu_new","architectures":["GPT2LMHeadModel"],"attn_pdrop":0.1,"bos_token_id":50256,"embd_pdrop":0.1,"eos_token_id":50256,"initializer_range":0.02,"layer_norm_epsilon":1e-05,"model_type":"gpt2","n_ctx":1024,"n_embd":1280,"n_head":20,"n_layer":36,"n_positions":1024,"resid_pdrop":0.1,"summary_activation":null,"summary_first_dropout":0.1,"summary_proj_to_labels":true,"summary_type":"cls_index","summary_use_proj":true,"task_specific_params":{"text-generation":{"do_sample":true,"max_length":50}},"vocab_size":50257}"#;
    const GPT2_XL: &str = r#"{"activation_function":"gelu_new","architectures":["GPT2LMHeadModel"],"attn_pdrop":0.1,"bos_token_id":50256,"embd_pdrop":0.1,"eos_token_id":50256,"initializer_range":0.02,"layer_norm_epsilon":1e-05,"model_type":"gpt2","n_ctx":1024,"n_embd":1600,"n_head":25,"n_layer":48,"n_positions":1024,"output_past":true,"resid_pdrop":0.1,"summary_activation":null,"summary_first_dropout":0.1,"summary_proj_to_labels":true,"summary_type":"cls_index","summary_use_proj":true,"task_specific_params":{"text-generation":{"do_sample":true,"max_length":50}},"vocab_size":50257}"#;

    #[test]
    fn loads_the_whole_gpt2_family() {
        let shapes = [
            (GPT2, 768, 12, 12),
            (DISTILGPT2, 768, 6, 12),
            (GPT2_MEDIUM, 1024, 24, 16),
            (GPT2_LARGE, 1280, 36, 20),
            (GPT2_XL, 1600, 48, 25),
        ];
        for (json, n_embd, n_layer, n_head) in shapes {
            let c = Gpt2Config::from_json(json).unwrap();
            assert_eq!((c.n_embd, c.n_layer, c.n_head), (n_embd, n_layer, n_head));
            assert_eq!(
                (c.vocab_size, c.n_positions, c.eos_token_id),
                (50257, 1024, 50256)
            );
            assert_eq!(c.inner_dim(), 4 * n_embd);
            assert_eq!(c.head_dim(), 64);
        }
        assert_eq!(Gpt2Config::from_json(GPT2).unwrap(), Gpt2Config::default());
    }

    #[test]
    fn rejects_other_architectures_and_bad_shapes() {
        let llama = r#"{"model_type":"llama"}"#;
        assert!(Gpt2Config::from_json(llama)
            .unwrap_err()
            .to_string()
            .contains("llama"));
        let bad = r#"{"n_embd":100,"n_head":12}"#;
        assert!(Gpt2Config::from_json(bad)
            .unwrap_err()
            .to_string()
            .contains("multiple"));
    }
}
