//! The stream's documented rule as an oracle, shared by the property tests (`cargo test`) and
//! the fuzz targets (`make fuzz`): it panics when the rule fails.

use super::TextStream;

/// The text cut before its earliest-starting stop (the shortest at equal starts), computed on
/// the whole text at once.
pub fn cut_at_first_stop(text: &str, stops: &[String]) -> (String, Option<String>) {
    let first = stops
        .iter()
        .filter(|stop| !stop.is_empty())
        .filter_map(|stop| Some((text.find(stop.as_str())?, stop.len(), stop)))
        .min();
    match first {
        Some((start, _, stop)) => (text[..start].to_owned(), Some(stop.clone())),
        None => (text.to_owned(), None),
    }
}

/// Feeds `pieces` and then finishes. The deltas together are the lossy decoding of all the bytes
/// cut at the first stop sequence, which is reported once; `text` and `stopped` follow the
/// deltas; and while it runs the stream holds at most an incomplete character's bytes and less
/// text than the longest stop.
pub fn deltas_match_the_rule(stops: &[String], pieces: &[Vec<u8>]) {
    let mut s = TextStream::new(stops.to_vec());
    let longest = stops.iter().map(String::len).max().unwrap_or(0);
    let (mut out, mut stopped) = (String::new(), None);
    let mut deltas = Vec::new();
    for piece in pieces {
        deltas.push(s.push(piece));
        if s.stopped.is_none() {
            assert!(s.pending.len() <= 3, "{:?} pending", s.pending);
            assert!(
                s.held.len() < longest.max(1),
                "{:?} held, stops {stops:?}",
                s.held
            );
        }
    }
    deltas.push(s.finish());
    for delta in deltas {
        out.push_str(&delta.text);
        if let Some(stop) = delta.stopped {
            assert!(stopped.is_none(), "stop reported twice");
            stopped = Some(stop);
        }
    }
    let all = pieces.concat();
    let expected = cut_at_first_stop(&String::from_utf8_lossy(&all), stops);
    assert_eq!(
        (out.as_str(), stopped.as_deref()),
        (expected.0.as_str(), expected.1.as_deref())
    );
    assert_eq!((s.text(), s.stopped()), (out.as_str(), stopped.as_deref()));
}
