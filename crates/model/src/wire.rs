//! Candle tensors ⇄ `oneword.common.v1.Tensor`, and the `ModelInfo` a loaded model reports. The
//! byte layout itself is checked once, in [`oneword_proto::tensor`].

use candle_core::{DType, Device, DeviceLocation, Tensor};
use oneword_proto::common::v1 as pb;
use oneword_proto::tensor::{Layout, WireError};

use crate::Gpt2Config;

/// Why a tensor could not cross the wire.
#[derive(Debug, thiserror::Error)]
pub enum TensorWireError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The wire name of a dtype (other dtypes travel as f32).
pub fn wire_dtype(dtype: DType) -> pb::Dtype {
    match dtype {
        DType::F16 => pb::Dtype::F16,
        DType::BF16 => pb::Dtype::Bf16,
        _ => pb::Dtype::F32,
    }
}

/// The wire form of an f32, f16 or bf16 tensor (other dtypes are sent as f32).
pub fn to_wire(tensor: &Tensor) -> Result<pb::Tensor, TensorWireError> {
    let shape = tensor.dims().iter().map(|&d| d as u32).collect();
    let flat = tensor.flatten_all()?;
    let data = match tensor.dtype() {
        DType::F16 => flat
            .to_vec1::<half::f16>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::BF16 => flat
            .to_vec1::<half::bf16>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        _ => flat
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
    };
    Ok(pb::Tensor {
        data,
        shape,
        dtype: wire_dtype(tensor.dtype()) as i32,
    })
}

/// Reads a wire tensor onto `device`, keeping its dtype.
pub fn from_wire(tensor: &pb::Tensor, device: &Device) -> Result<Tensor, TensorWireError> {
    let layout = Layout::of(tensor)?;
    let dtype = match layout.dtype {
        pb::Dtype::F16 => DType::F16,
        pb::Dtype::Bf16 => DType::BF16,
        _ => DType::F32,
    };
    Ok(Tensor::from_raw_buffer(
        &tensor.data,
        dtype,
        &layout.dims,
        device,
    )?)
}

/// Requests' rows, each kept in its wire dtype, as one tensor for a pass: in their common dtype
/// where they share one (a pass makes no per-sequence conversion), else in `dtype`, since `cat`
/// takes one dtype and one pass may hold requests of several.
pub(crate) fn concat_rows(rows: &[&Tensor], dtype: DType) -> candle_core::Result<Tensor> {
    if rows.windows(2).all(|w| w[0].dtype() == w[1].dtype()) {
        return Tensor::cat(rows, 0);
    }
    let alike = rows
        .iter()
        .map(|t| t.to_dtype(dtype))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Tensor::cat(&alike, 0)
}

/// Describes a loaded model: `model_id` as the operator gave it, its shapes, device and dtype.
pub fn model_info(
    model_id: &str,
    config: &Gpt2Config,
    device: &Device,
    dtype: DType,
) -> pb::ModelInfo {
    pb::ModelInfo {
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
        dtype: wire_dtype(dtype) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oneword_proto::tensor::wire_to_f32;

    #[test]
    fn round_trips_every_dtype() {
        let values = [1.0f32, -2.5, 0.125, 3.0, 1e-3, -7.0];
        let t = Tensor::new(&values, &Device::Cpu)
            .unwrap()
            .reshape((2, 3))
            .unwrap();
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let wire = to_wire(&t.to_dtype(dtype).unwrap()).unwrap();
            assert_eq!(wire.shape, vec![2, 3]);
            assert_eq!(wire.data.len(), 6 * dtype.size_in_bytes());
            let back = from_wire(&wire, &Device::Cpu).unwrap();
            assert_eq!((back.dims(), back.dtype()), (&[2usize, 3][..], dtype));
            for (a, b) in wire_to_f32(&wire).unwrap().iter().zip(values) {
                assert!(
                    (a - b).abs() <= 0.01 * b.abs().max(1e-2),
                    "{dtype:?}: {a} vs {b}"
                );
            }
        }
    }
}
