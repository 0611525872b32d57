//! Properties of the wire tensor codec and of decoding requests, shared by the property tests
//! (`cargo test`) and the fuzz targets (`make fuzz`). Each panics when its property fails.

use prost::Message;

use crate::common::v1 as common;
use crate::tensor::{f16_to_wire, f32_to_wire, wire_to_f32, WireError};

/// Reading any wire tensor never panics, and succeeds exactly when its dtype is f32, f16 or bf16
/// and its bytes hold the product of its dimensions: then with one value per element, the f32
/// ones bit for bit.
pub fn tensor_reads(t: &common::Tensor) {
    let size = match t.dtype {
        1 => Some(4usize),
        2 | 3 => Some(2),
        _ => None,
    };
    // The product as the caller's dimensions give it, refused once a partial product overflows.
    let bytes = size.map(|s| {
        t.shape
            .iter()
            .try_fold(s, |n, &d| n.checked_mul(d as usize))
    });
    match (wire_to_f32(t), size, bytes) {
        (Ok(values), Some(size), Some(Some(bytes))) => {
            assert_eq!(bytes, t.data.len());
            assert_eq!(values.len() * size, bytes);
            if size == 4 {
                for (v, b) in values.iter().zip(t.data.chunks_exact(4)) {
                    assert_eq!(v.to_le_bytes(), b);
                }
            }
        }
        (Err(WireError::UnsupportedDType(d)), None, _) => assert_eq!(d, t.dtype),
        (Err(WireError::TooLarge(shape)), Some(_), Some(None)) => assert_eq!(shape, t.shape),
        (
            Err(WireError::SizeMismatch {
                bytes, expected, ..
            }),
            Some(_),
            Some(Some(e)),
        ) => {
            assert_eq!((bytes, expected), (t.data.len(), e));
            assert_ne!(bytes, expected);
        }
        (result, size, bytes) => {
            panic!("{t:?} read as {result:?}; element size {size:?}, bytes {bytes:?}")
        }
    }
}

/// f32 values cross the wire bit for bit (NaN payloads included) in any shape that holds them,
/// and f16 values come back as f16 rounds them.
pub fn tensor_round_trips(values: &[f32], rows: usize) {
    let rows = rows.clamp(1, values.len().max(1));
    let shape = if values.len().is_multiple_of(rows) {
        vec![rows as u32, (values.len() / rows) as u32]
    } else {
        vec![values.len() as u32]
    };
    let back = wire_to_f32(&f32_to_wire(values, &shape)).expect("f32 wire reads back");
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&back), bits(values));
    let back = wire_to_f32(&f16_to_wire(values, &shape)).expect("f16 wire reads back");
    for (x, y) in values.iter().zip(&back) {
        let rounded = half::f16::from_f32(*x).to_f32();
        assert!(
            rounded.to_bits() == y.to_bits() || (rounded.is_nan() && y.is_nan()),
            "{x} came back as {y}, not {rounded}"
        );
    }
}

/// Decodes `bytes` as `M`: it never panics, and what decodes re-encodes to as many bytes as
/// `encoded_len` says and decodes again to the same message; for messages without maps (whose
/// order of encoding is the hash map's), to the same bytes.
fn decodes<M: Message + Default>(bytes: &[u8], has_map: bool) {
    let Ok(message) = M::decode(bytes) else {
        return;
    };
    let encoded = message.encode_to_vec();
    assert_eq!(encoded.len(), message.encoded_len());
    let again = M::decode(encoded.as_slice()).expect("an encoded message decodes");
    let reencoded = again.encode_to_vec();
    assert_eq!(reencoded.len(), encoded.len());
    if !has_map {
        assert_eq!(reencoded, encoded);
    }
}

/// Every request type any service accepts, with whether it holds a map.
macro_rules! requests {
    ($($ty:ty => $map:expr,)*) => {
        /// How many request types [`request_decodes`] picks from.
        pub const REQUEST_TYPES: usize = [$($map),*].len();

        /// Decodes `bytes` as request type number `kind` (modulo [`REQUEST_TYPES`]).
        pub fn request_decodes(kind: usize, bytes: &[u8]) {
            let decoders: &[fn(&[u8])] = &[$(|b| decodes::<$ty>(b, $map)),*];
            decoders[kind % decoders.len()](bytes);
        }
    };
}

requests! {
    crate::gateway::v1::GenerateRequest => true,
    crate::gateway::v1::NextTokensRequest => false,
    crate::gateway::v1::TokenizeRequest => false,
    crate::gateway::v1::InfoRequest => false,
    crate::gateway::v1::EmbedRequest => false,
    crate::gateway::v1::CompareRequest => false,
    crate::gateway::v1::ScoreRequest => false,
    crate::gateway::v1::InspectRequest => false,
    crate::gateway::v1::WordsRequest => false,
    crate::gateway::v1::NearestRequest => false,
    crate::gateway::v1::WeightsRequest => false,
    crate::gateway::v1::CorpusRequest => false,
    crate::decoder::v1::StepRequest => true,
    crate::decoder::v1::ForkRequest => false,
    crate::decoder::v1::ReleaseRequest => false,
    crate::decoder::v1::ScoreRequest => true,
    crate::decoder::v1::InspectRequest => false,
    crate::decoder::v1::PoolRequest => false,
    crate::index::v1::CreateRequest => false,
    crate::index::v1::CollectionRef => false,
    crate::index::v1::UpsertRequest => false,
    crate::index::v1::DeleteRequest => false,
    crate::index::v1::SearchRequest => false,
    crate::index::v1::SearchBatchRequest => false,
    crate::index::v1::RetrieveRequest => false,
    crate::tokenizer::v1::EncodeRequest => false,
    crate::tokenizer::v1::DecodeRequest => false,
    crate::embedder::v1::EmbedRequest => false,
    crate::embedder::v1::TokenVectorsRequest => false,
    crate::embedder::v1::WordsRequest => false,
    crate::embedder::v1::NearestRequest => false,
    crate::embedder::v1::EmbedTextRequest => false,
    common::Tensor => false,
}
