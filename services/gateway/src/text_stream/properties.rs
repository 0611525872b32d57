//! The stream's rule ([`super::checks`]) on random texts, stops and splits (`PROPTEST_CASES`
//! raises their number).

use proptest::prelude::*;

use super::checks::deltas_match_the_rule;

/// Bytes that are mostly text from a small alphabet (so stops recur), with characters of 2 to 4
/// bytes and bytes that are not UTF-8 (lone lead and continuation bytes).
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    let part = prop_oneof![
        prop::sample::select(vec!["a", "b", "ab", " ", "\n", "é", "中", "🦀", "\u{fffd}"])
            .prop_map(|s| s.as_bytes().to_vec()),
        prop::sample::select(vec![0xFFu8, 0xF0, 0x9F, 0x80, 0xC3, 0xE4]).prop_map(|b| vec![b]),
    ];
    prop::collection::vec(part, 0..24).prop_map(|parts| parts.concat())
}

/// Stops: pieces of the text itself (so that they match), or short strings of its alphabet.
fn stops(text: Vec<u8>) -> impl Strategy<Value = (Vec<u8>, Vec<String>)> {
    let decoded: Vec<char> = String::from_utf8_lossy(&text).chars().collect();
    let len = decoded.len();
    let within = (0..=len, 0..4usize).prop_map(move |(start, n)| {
        decoded[start..(start + n).min(len)]
            .iter()
            .collect::<String>()
    });
    let other = prop::sample::select(vec!["", "a", "ab", "ba", "\n\n", "é", "🦀a", "\u{fffd}"])
        .prop_map(String::from);
    let stop = prop_oneof![within, other];
    (Just(text), prop::collection::vec(stop, 0..4))
}

/// Cuts `bytes` at the given fractions, ignoring character boundaries on purpose.
fn split(bytes: &[u8], cuts: &[f64]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| (c * bytes.len() as f64) as usize)
        .collect();
    at.push(bytes.len());
    at.sort_unstable();
    let mut start = 0;
    at.into_iter()
        .map(|end| {
            let piece = bytes[start..end].to_vec();
            start = end;
            piece
        })
        .collect()
}

proptest! {
    #[test]
    fn any_split_gives_the_lossy_text_cut_at_the_first_stop(
        (text, stops) in bytes().prop_flat_map(stops),
        cuts in prop::collection::vec(0.0f64..1.0, 0..12),
    ) {
        deltas_match_the_rule(&stops, &split(&text, &cuts));
    }
}
