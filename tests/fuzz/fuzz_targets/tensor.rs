//! The wire tensor codec: any tensor (data, shape and dtype as given) reads or is refused for
//! its reason, and f32 and f16 values round-trip.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use oneword_proto::checks::{tensor_reads, tensor_round_trips};
use oneword_proto::common::v1::Tensor;

#[derive(Arbitrary, Debug)]
enum Input {
    Tensor {
        shape: Vec<u32>,
        dtype: i32,
        data: Vec<u8>,
    },
    /// A shape of small dimensions, so that it often fits the data.
    Fitted {
        shape: Vec<u8>,
        dtype: u8,
        data: Vec<u8>,
    },
    Values {
        rows: u8,
        values: Vec<f32>,
    },
}

fuzz_target!(|input: Input| match input {
    Input::Tensor { shape, dtype, data } => tensor_reads(&Tensor { data, shape, dtype }),
    Input::Fitted { shape, dtype, data } => tensor_reads(&Tensor {
        data,
        shape: shape.into_iter().map(u32::from).collect(),
        dtype: i32::from(dtype % 5),
    }),
    Input::Values { rows, values } => tensor_round_trips(&values, usize::from(rows)),
});
