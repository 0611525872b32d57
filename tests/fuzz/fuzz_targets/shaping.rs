//! The shaping and sampling rules every service applies (`oneword_sampling`): the first byte
//! picks a Shaping or a step's Sampling and the vocabulary and top-N limits; the rest is the
//! message's protobuf encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oneword_proto::decoder::v1 as pb;
use oneword_sampling::checks::{sampling_checked, shaping_checked};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, message)) = data.split_first() else {
        return;
    };
    let vocab_size = usize::from(kind >> 2);
    if kind & 1 == 0 {
        if let Ok(s) = pb::Shaping::decode(message) {
            let vocab = (kind & 2 == 0).then_some(vocab_size);
            shaping_checked("steps[1].sampling.shaping.", &s, vocab);
        }
    } else if let Ok(s) = pb::Sampling::decode(message) {
        sampling_checked("steps[0].sampling", &s, vocab_size, usize::from(kind >> 5));
    }
});
