//! The stream holdback against its documented rule, on arbitrary token bytes and stop sequences,
//! some of them cut from the text itself so that they match.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use oneword_gateway::text_stream::checks::deltas_match_the_rule;

#[derive(Arbitrary, Debug)]
enum Stop {
    Given(String),
    /// Characters `start..start + len` of the decoded text.
    Within(u8, u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    pieces: Vec<Vec<u8>>,
    stops: Vec<Stop>,
}

fuzz_target!(|input: Input| {
    let text: Vec<char> = String::from_utf8_lossy(&input.pieces.concat())
        .chars()
        .collect();
    let stops: Vec<String> = input
        .stops
        .into_iter()
        .take(4)
        .map(|stop| match stop {
            Stop::Given(s) => s,
            Stop::Within(start, len) => {
                let start = usize::from(start) % (text.len() + 1);
                let end = (start + usize::from(len % 6)).min(text.len());
                text[start..end].iter().collect()
            }
        })
        .collect();
    deltas_match_the_rule(&stops, &input.pieces);
});
