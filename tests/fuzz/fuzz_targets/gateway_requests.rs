//! The gateway's validation of every request type it validates itself: the first byte picks the
//! type and the limits (small or default), the next three the model's sizes for Generate's
//! context check, and the rest is the request's protobuf encoding.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use oneword_gateway::fuzzing as checks;
use oneword_gateway::Config;
use oneword_proto::gateway::v1 as pb;
use prost::Message;

fn configs() -> &'static [Config; 2] {
    static CONFIGS: OnceLock<[Config; 2]> = OnceLock::new();
    CONFIGS.get_or_init(|| [checks::config(false), checks::config(true)])
}

fuzz_target!(|data: &[u8]| {
    let [kind, tokens, context, vocab, message @ ..] = data else {
        return;
    };
    let config = &configs()[usize::from(kind & 1)];
    let model = (
        usize::from(*tokens),
        usize::from(*context) * 8,
        [50257, 5][usize::from(*vocab & 1)],
    );
    match kind >> 1 & 7 {
        0 | 5 => {
            if let Ok(r) = pb::GenerateRequest::decode(message) {
                checks::generate(r, config, model)
            }
        }
        1 | 6 => {
            if let Ok(r) = pb::CompareRequest::decode(message) {
                checks::compare(r, config)
            }
        }
        2 => {
            if let Ok(r) = pb::NextTokensRequest::decode(message) {
                checks::next_tokens(r, config)
            }
        }
        3 => {
            if let Ok(r) = pb::ScoreRequest::decode(message) {
                checks::score(r, config)
            }
        }
        _ => {
            if let Ok(r) = pb::InspectRequest::decode(message) {
                checks::inspect(r, config)
            }
        }
    }
});
