//! Tensors on the wire: `oneword.common.v1.Tensor`, little-endian bytes plus shape and dtype.

use candle_core::{DType, Device, Tensor};
use oneword_proto::common::v1 as pb;

/// Why a wire tensor could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("dtype {0} is not supported (expected f32, f16 or bf16)")]
    UnsupportedDType(i32),
    #[error("{bytes} bytes do not hold shape {shape:?} of {dtype:?} ({expected} bytes expected)")]
    SizeMismatch {
        bytes: usize,
        shape: Vec<u32>,
        dtype: DType,
        expected: usize,
    },
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
pub fn to_wire(tensor: &Tensor) -> Result<pb::Tensor, WireError> {
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
        _ => f32_bytes(&flat.to_dtype(DType::F32)?.to_vec1::<f32>()?),
    };
    Ok(pb::Tensor {
        data,
        shape,
        dtype: wire_dtype(tensor.dtype()) as i32,
    })
}

/// The wire form of f32 values with the given shape.
pub fn f32_to_wire(values: &[f32], shape: &[u32]) -> pb::Tensor {
    pb::Tensor {
        data: f32_bytes(values),
        shape: shape.to_vec(),
        dtype: pb::Dtype::F32 as i32,
    }
}

/// The wire form of f32 values narrowed to f16, half the bytes.
pub fn f16_to_wire(values: &[f32], shape: &[u32]) -> pb::Tensor {
    pb::Tensor {
        data: values
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        shape: shape.to_vec(),
        dtype: pb::Dtype::F16 as i32,
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Reads a wire tensor onto `device`, keeping its dtype.
pub fn from_wire(tensor: &pb::Tensor, device: &Device) -> Result<Tensor, WireError> {
    let dtype = match pb::Dtype::try_from(tensor.dtype) {
        Ok(pb::Dtype::F32) => DType::F32,
        Ok(pb::Dtype::F16) => DType::F16,
        Ok(pb::Dtype::Bf16) => DType::BF16,
        _ => return Err(WireError::UnsupportedDType(tensor.dtype)),
    };
    let shape: Vec<usize> = tensor.shape.iter().map(|&d| d as usize).collect();
    let expected = shape.iter().product::<usize>() * dtype.size_in_bytes();
    if expected != tensor.data.len() {
        return Err(WireError::SizeMismatch {
            bytes: tensor.data.len(),
            shape: tensor.shape.clone(),
            dtype,
            expected,
        });
    }
    Ok(Tensor::from_raw_buffer(
        &tensor.data,
        dtype,
        &shape,
        device,
    )?)
}

/// Reads a wire tensor's elements as f32, whatever its dtype.
pub fn wire_to_f32(tensor: &pb::Tensor) -> Result<Vec<f32>, WireError> {
    Ok(from_wire(tensor, &Device::Cpu)?
        .flatten_all()?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let back = wire_to_f32(&wire).unwrap();
            for (a, b) in back.iter().zip(values) {
                assert!(
                    (a - b).abs() <= 0.01 * b.abs().max(1e-2),
                    "{dtype:?}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn rejects_a_shape_the_bytes_do_not_fill() {
        let mut wire = f32_to_wire(&[1.0, 2.0], &[2]);
        wire.shape = vec![3];
        assert!(matches!(
            wire_to_f32(&wire),
            Err(WireError::SizeMismatch { .. })
        ));
    }
}
