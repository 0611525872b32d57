//! Arbitrary bytes decoded into every request type of every service (the first byte picks it):
//! never a panic, and what decodes re-encodes consistently.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oneword_proto::checks::request_decodes;

fuzz_target!(|data: &[u8]| {
    if let Some((&kind, bytes)) = data.split_first() {
        request_decodes(usize::from(kind), bytes);
    }
});
