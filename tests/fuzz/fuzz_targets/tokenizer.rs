//! GPT-2's tokenizer on arbitrary bytes: the first byte picks encode or decode and
//! `allow_special` / `skip_special_tokens`; the rest is the text (decoded lossily) or the ids
//! (16 bits each, past the vocabulary too).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oneword_bpe::checks::{decode_checks_ids, encode_round_trips, gpt2};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let special = flags & 1 == 1;
    if flags & 2 == 0 {
        encode_round_trips(gpt2(), &String::from_utf8_lossy(rest), special);
    } else {
        let ids: Vec<u32> = rest
            .chunks(2)
            .map(|c| u32::from(c[0]) | u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            .collect();
        decode_checks_ids(gpt2(), &ids, special);
    }
});
