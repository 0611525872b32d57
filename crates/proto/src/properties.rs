//! The properties of [`crate::checks`] on random cases (`PROPTEST_CASES` raises their number).

use proptest::prelude::*;

use crate::checks;
use crate::common::v1 as common;

/// Protobuf fields with small numbers and every wire type, so that most inputs are well-formed
/// messages of the request types (random bytes alone rarely are).
fn field() -> impl Strategy<Value = Vec<u8>> {
    let varint = |mut v: u64| {
        let mut out = Vec::new();
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        out
    };
    (
        1u64..16,
        0u64..6,
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..12),
    )
        .prop_map(move |(number, wire, value, bytes)| {
            let mut out = varint(number << 3 | wire);
            match wire {
                0 => out.extend(varint(value)),
                1 => out.extend(value.to_le_bytes()),
                2 => {
                    out.extend(varint(bytes.len() as u64));
                    out.extend(bytes);
                }
                5 => out.extend((value as u32).to_le_bytes()),
                // Groups (3, 4): a start or end tag alone.
                _ => {}
            }
            out
        })
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(field(), 0..8).prop_map(|fields| fields.concat()),
    ]
}

fn tensor() -> impl Strategy<Value = common::Tensor> {
    (
        prop::collection::vec(any::<u8>(), 0..40),
        prop::collection::vec(prop_oneof![0u32..5, any::<u32>()], 0..5),
        -1i32..5,
    )
        .prop_map(|(data, shape, dtype)| common::Tensor { data, shape, dtype })
}

proptest! {
    #[test]
    fn any_tensor_reads_or_is_refused_for_its_reason(t in tensor()) {
        checks::tensor_reads(&t);
    }

    #[test]
    fn a_tensor_whose_bytes_fit_its_shape_reads(
        values in prop::collection::vec(any::<f32>(), 0..24),
        rows in 0usize..6,
        dtype in 1i32..4,
    ) {
        let data: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        let (size, elements) = if dtype == 1 { (4, values.len()) } else { (2, values.len() * 2) };
        let rows = rows.clamp(1, elements.max(1));
        let shape = if elements.is_multiple_of(rows) {
            vec![rows as u32, (elements / rows) as u32]
        } else {
            vec![elements as u32]
        };
        prop_assert_eq!(elements * size, data.len());
        let t = common::Tensor { data, shape, dtype };
        prop_assert!(crate::tensor::wire_to_f32(&t).is_ok());
        checks::tensor_reads(&t);
    }

    #[test]
    fn f32_and_f16_tensors_round_trip(
        values in prop::collection::vec(any::<f32>(), 0..32),
        rows in 0usize..8,
    ) {
        checks::tensor_round_trips(&values, rows);
    }

    #[test]
    fn any_bytes_decode_into_every_request_type_without_panic(bytes in message()) {
        for kind in 0..checks::REQUEST_TYPES {
            checks::request_decodes(kind, &bytes);
        }
    }
}
