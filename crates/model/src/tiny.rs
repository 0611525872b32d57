//! Writing GPT-2 checkpoints with random weights, in the exact Hugging Face layout of the `gpt2`
//! repository on the hub (no `transformer.` prefix, `h.N.attn.bias` buffers included), for tests
//! (a tiny model with the real vocabulary) and benchmarks (GPT-2-small shapes; speed does not
//! depend on weight values). Weights come from a fixed-seed generator of our own, so the same
//! seed writes the same bytes on every machine and every candle version.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::{Gpt2Config, ModelError};

/// The device the model's tests run the tensor path on: `ONEWORD_TEST_DEVICE` (`cpu`, `cuda`,
/// `cuda:N`; the CPU when unset), so that the same test binaries check a GPU where one is.
pub fn test_device() -> Device {
    let spec = std::env::var("ONEWORD_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    crate::load_device(&spec).unwrap_or_else(|e| panic!("ONEWORD_TEST_DEVICE: {e}"))
}

/// Shape and seed of a checkpoint to write.
#[derive(Clone, Debug)]
pub struct RandomCheckpoint {
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_positions: usize,
    pub vocab_size: usize,
    pub seed: u64,
    /// Standard deviation of the weights. Large enough (0.2) that logits are far from uniform,
    /// so tests comparing them can fail.
    pub std: f32,
}

impl RandomCheckpoint {
    /// The tiny test model: 2 layers, width 64, 4 heads, GPT-2's vocabulary and context.
    pub fn tiny() -> Self {
        RandomCheckpoint {
            n_embd: 64,
            n_layer: 2,
            n_head: 4,
            n_positions: 1024,
            vocab_size: 50257,
            seed: 0,
            std: 0.2,
        }
    }

    /// GPT-2 small's shapes (124M parameters), for benchmarks.
    pub fn gpt2_small() -> Self {
        RandomCheckpoint {
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            std: 0.02,
            ..Self::tiny()
        }
    }

    fn config(&self) -> Gpt2Config {
        Gpt2Config {
            vocab_size: self.vocab_size,
            n_positions: self.n_positions,
            n_embd: self.n_embd,
            n_layer: self.n_layer,
            n_head: self.n_head,
            ..Gpt2Config::default()
        }
    }

    /// Writes `config.json` and `model.safetensors` into `dir` (created if needed), and copies
    /// the tokenizer files found in `tokenizer_dir`, so `dir` is a complete model directory.
    pub fn write(&self, dir: &Path, tokenizer_dir: &Path) -> Result<(), ModelError> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::Io(dir.to_path_buf(), e))?;
        let config = self.config();
        let json = serde_json::json!({
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "activation_function": config.activation_function,
            "vocab_size": config.vocab_size,
            "n_positions": config.n_positions,
            "n_ctx": config.n_positions,
            "n_embd": config.n_embd,
            "n_layer": config.n_layer,
            "n_head": config.n_head,
            "layer_norm_epsilon": config.layer_norm_epsilon,
            "bos_token_id": config.eos_token_id,
            "eos_token_id": config.eos_token_id,
            "initializer_range": self.std,
        });
        let config_path = dir.join("config.json");
        std::fs::write(
            &config_path,
            serde_json::to_string_pretty(&json).expect("json values serialize, this is a bug"),
        )
        .map_err(|e| ModelError::Io(config_path, e))?;
        candle_core::safetensors::save(&self.tensors()?, dir.join("model.safetensors"))?;
        for name in ["tokenizer.json", "vocab.json", "merges.txt"] {
            let source = tokenizer_dir.join(name);
            if source.is_file() {
                std::fs::copy(&source, dir.join(name)).map_err(|e| ModelError::Io(source, e))?;
            }
        }
        Ok(())
    }

    fn tensors(&self) -> Result<HashMap<String, Tensor>, ModelError> {
        let (d, p, v) = (self.n_embd, self.n_positions, self.vocab_size);
        let mut rng = SplitMix64(self.seed);
        let mut out = HashMap::new();
        let mut normal = |name: String,
                          shape: &[usize],
                          mean: f32,
                          rng: &mut SplitMix64|
         -> Result<(), ModelError> {
            let n = shape.iter().product();
            let values: Vec<f32> = (0..n).map(|_| mean + self.std * rng.normal()).collect();
            out.insert(name, Tensor::from_vec(values, shape, &Device::Cpu)?);
            Ok(())
        };
        normal("wte.weight".into(), &[v, d], 0.0, &mut rng)?;
        normal("wpe.weight".into(), &[p, d], 0.0, &mut rng)?;
        for i in 0..self.n_layer {
            let h = |s: &str| format!("h.{i}.{s}");
            for ln in ["ln_1", "ln_2"] {
                normal(h(&format!("{ln}.weight")), &[d], 1.0, &mut rng)?;
                normal(h(&format!("{ln}.bias")), &[d], 0.0, &mut rng)?;
            }
            for (name, d_in, d_out) in [
                ("attn.c_attn", d, 3 * d),
                ("attn.c_proj", d, d),
                ("mlp.c_fc", d, 4 * d),
                ("mlp.c_proj", 4 * d, d),
            ] {
                normal(h(&format!("{name}.weight")), &[d_in, d_out], 0.0, &mut rng)?;
                normal(h(&format!("{name}.bias")), &[d_out], 0.0, &mut rng)?;
            }
        }
        normal("ln_f.weight".into(), &[d], 1.0, &mut rng)?;
        normal("ln_f.bias".into(), &[d], 0.0, &mut rng)?;
        // The causal-mask buffers older transformers versions saved; loaders must ignore them.
        let causal =
            Tensor::tril2(p, candle_core::DType::F32, &Device::Cpu)?.reshape((1, 1, p, p))?;
        for i in 0..self.n_layer {
            out.insert(format!("h.{i}.attn.bias"), causal.clone());
        }
        Ok(out)
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and fixed forever, unlike library RNGs
/// whose streams may change between versions.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal by Box-Muller.
    fn normal(&mut self) -> f32 {
        let (u1, u2) = (self.unit(), self.unit());
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}
