//! The HTTP API's JSON bodies: the first byte picks `/v1/completions` (with small or default
//! limits), `/v1/embeddings` or one of the collections' bodies; the rest is the body.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use oneword_gateway::fuzzing as checks;
use oneword_gateway::Config;

fn configs() -> &'static [Config; 2] {
    static CONFIGS: OnceLock<[Config; 2]> = OnceLock::new();
    CONFIGS.get_or_init(|| [checks::config(false), checks::config(true)])
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 8 {
        0 | 1 => checks::completion_body(body, &configs()[usize::from(kind & 1)]),
        2 => checks::embeddings_body(body),
        k => checks::collections_body(k - 3, body),
    }
});
