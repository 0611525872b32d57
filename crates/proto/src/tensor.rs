//! `oneword.common.v1.Tensor` ⇄ plain vectors: little-endian bytes plus shape and dtype, read and
//! written without any tensor library, so that every crate (the gateway, tests, the CLI) can use
//! them. Candle tensors cross with `oneword_model::wire`, on top of [`Layout::of`].

use crate::common::v1 as pb;

/// Why a wire tensor could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("dtype {0} is not supported (expected f32, f16 or bf16)")]
    UnsupportedDType(i32),
    #[error("shape {0:?} has more elements than this machine can address")]
    TooLarge(Vec<u32>),
    #[error("{bytes} bytes do not hold shape {shape:?} of {dtype:?} ({expected} bytes expected)")]
    SizeMismatch {
        bytes: usize,
        shape: Vec<u32>,
        dtype: pb::Dtype,
        expected: usize,
    },
}

/// A wire tensor's dtype and dimensions, checked against its bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub dtype: pb::Dtype,
    pub dims: Vec<usize>,
}

impl Layout {
    /// Reads and checks the layout of `tensor`. The dimensions come from the caller, so their
    /// product is checked for overflow before it is compared with the bytes.
    pub fn of(tensor: &pb::Tensor) -> Result<Self, WireError> {
        let dtype = match pb::Dtype::try_from(tensor.dtype) {
            Ok(d @ (pb::Dtype::F32 | pb::Dtype::F16 | pb::Dtype::Bf16)) => d,
            _ => return Err(WireError::UnsupportedDType(tensor.dtype)),
        };
        let dims: Vec<usize> = tensor.shape.iter().map(|&d| d as usize).collect();
        let expected = dims
            .iter()
            .try_fold(element_bytes(dtype), |n, &d| n.checked_mul(d))
            .ok_or_else(|| WireError::TooLarge(tensor.shape.clone()))?;
        if expected != tensor.data.len() {
            return Err(WireError::SizeMismatch {
                bytes: tensor.data.len(),
                shape: tensor.shape.clone(),
                dtype,
                expected,
            });
        }
        Ok(Layout { dtype, dims })
    }
}

/// Bytes per element of a supported dtype.
pub fn element_bytes(dtype: pb::Dtype) -> usize {
    match dtype {
        pb::Dtype::F16 | pb::Dtype::Bf16 => 2,
        _ => 4,
    }
}

/// The wire form of f32 values with the given shape.
pub fn f32_to_wire(values: &[f32], shape: &[u32]) -> pb::Tensor {
    pb::Tensor {
        data: values.iter().flat_map(|x| x.to_le_bytes()).collect(),
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

/// Reads a wire tensor's elements as f32, whatever its dtype.
pub fn wire_to_f32(tensor: &pb::Tensor) -> Result<Vec<f32>, WireError> {
    let layout = Layout::of(tensor)?;
    let data = &tensor.data;
    Ok(match layout.dtype {
        pb::Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        pb::Dtype::Bf16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_and_f16_round_trip() {
        let values = [1.0f32, -2.5, 0.125, 3.0, 1e-3, -7.0];
        assert_eq!(wire_to_f32(&f32_to_wire(&values, &[2, 3])).unwrap(), values);
        let half = f16_to_wire(&values, &[6]);
        assert_eq!(half.data.len(), 12);
        for (a, b) in wire_to_f32(&half).unwrap().iter().zip(values) {
            assert!((a - b).abs() <= 0.01 * b.abs().max(1e-2), "{a} vs {b}");
        }
    }

    #[test]
    fn rejects_a_shape_the_bytes_do_not_fill() {
        let mut wire = f32_to_wire(&[1.0, 2.0], &[2]);
        wire.shape = vec![3];
        assert!(matches!(
            wire_to_f32(&wire),
            Err(WireError::SizeMismatch { expected: 12, .. })
        ));
    }

    #[test]
    fn rejects_dimensions_whose_product_overflows() {
        let mut wire = f32_to_wire(&[1.0], &[1]);
        wire.shape = vec![u32::MAX; 4];
        assert_eq!(
            wire_to_f32(&wire),
            Err(WireError::TooLarge(vec![u32::MAX; 4]))
        );
    }

    #[test]
    fn rejects_an_unknown_dtype() {
        let mut wire = f32_to_wire(&[1.0], &[1]);
        wire.dtype = 0;
        assert_eq!(wire_to_f32(&wire), Err(WireError::UnsupportedDType(0)));
    }
}
