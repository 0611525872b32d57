//! The `ModelInfo` every service reports, built in one place.

use candle_core::{DType, Device, DeviceLocation};
use oneword_model::Gpt2Config;
use oneword_proto::common::v1::ModelInfo;

/// Describes a loaded model: `model_id` as the operator gave it, its shapes, device and dtype.
pub fn model_info(model_id: &str, config: &Gpt2Config, device: &Device, dtype: DType) -> ModelInfo {
    ModelInfo {
        model_id: model_id.to_string(),
        model_type: config.model_type.clone(),
        vocab_size: config.vocab_size as u32,
        context_length: config.n_positions as u32,
        hidden_size: config.n_embd as u32,
        num_layers: config.n_layer as u32,
        num_heads: config.n_head as u32,
        eos_token_id: config.eos_token_id,
        device: match device.location() {
            DeviceLocation::Cpu => "cpu".into(),
            DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        },
        dtype: crate::tensor::wire_dtype(dtype) as i32,
    }
}
