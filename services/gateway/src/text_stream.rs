//! Turns one completion's stream of token bytes into text deltas that are safe to show.
//!
//! GPT-2's tokens are byte sequences, and one character may span several tokens, so bytes are held
//! until they form whole characters. Text is also held while its tail could still be the start of
//! a stop sequence, because once emitted it cannot be taken back. Nothing after a stop sequence is
//! ever emitted.
//!
//! The result does not depend on how the bytes were split into tokens: the concatenation of all
//! deltas equals the lossy UTF-8 decoding of all bytes (as `String::from_utf8_lossy` does it), cut
//! before the first stop sequence in it. "First" means the earliest-starting occurrence; of stops
//! starting at the same place, the shortest, since it is the one that completes first.

/// The documented rule as a property, shared by the property tests and the fuzz targets (`make
/// fuzz`); not an API.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod checks;
#[cfg(test)]
mod properties;

/// What one call to [`TextStream::push`] or [`TextStream::finish`] releases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// Text that is now final and may be sent to the client; often empty.
    pub text: String,
    /// The stop sequence that ended the completion, reported once, by the call that found it.
    pub stopped: Option<String>,
}

/// The text state of one completion: held bytes, held text, and what was emitted.
#[derive(Debug, Clone)]
pub struct TextStream {
    /// The stop sequences, without empty ones (an empty stop would match before any text).
    stops: Vec<String>,
    /// Byte length of the longest stop; no held suffix can be longer than this minus one.
    longest_stop: usize,
    /// Bytes of a character whose remaining bytes have not arrived yet (at most three).
    pending: Vec<u8>,
    /// Decoded text not yet emitted because it could still begin a stop sequence.
    held: String,
    /// Everything emitted so far.
    emitted: String,
    /// The stop sequence that ended the completion, once one has.
    stopped: Option<String>,
}

impl TextStream {
    /// Starts a completion that ends at the first occurrence of any of `stop`; empty strings in
    /// `stop` are ignored.
    pub fn new(stop: Vec<String>) -> Self {
        let stops: Vec<String> = stop.into_iter().filter(|s| !s.is_empty()).collect();
        let longest_stop = stops.iter().map(String::len).max().unwrap_or(0);
        Self {
            stops,
            longest_stop,
            pending: Vec::new(),
            held: String::new(),
            emitted: String::new(),
            stopped: None,
        }
    }

    /// Feeds one token's exact bytes and returns the text that is now safe to emit (possibly
    /// empty) and, if this token completed one, the stop sequence. After a stop it returns an
    /// empty delta.
    pub fn push(&mut self, piece: &[u8]) -> Delta {
        if self.stopped.is_some() {
            return Delta::default();
        }
        self.pending.extend_from_slice(piece);
        self.decode_pending();
        self.release(false)
    }

    /// Ends the completion (length limit, end-of-sequence token, cancellation) and returns the
    /// held text: bytes that never formed a character become U+FFFD, a stop prefix that can no
    /// longer complete is released, and a stop sequence that was waiting on an earlier-starting
    /// one is reported. After a stop it returns an empty delta.
    pub fn finish(&mut self) -> Delta {
        if self.stopped.is_some() {
            return Delta::default();
        }
        if !self.pending.is_empty() {
            // Only an incomplete (never an invalid) sequence is left here, so this adds one
            // U+FFFD, as decoding all bytes at once would.
            let bytes = std::mem::take(&mut self.pending);
            self.held.push_str(&String::from_utf8_lossy(&bytes));
        }
        self.release(true)
    }

    /// Everything emitted so far.
    pub fn text(&self) -> &str {
        &self.emitted
    }

    /// The stop sequence that ended the completion, if one has.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// Moves the whole characters at the front of `pending` into `held`, replacing bytes that can
    /// never become valid with U+FFFD and keeping an incomplete character at the end.
    fn decode_pending(&mut self) {
        let mut start = 0;
        while start < self.pending.len() {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(text) => {
                    self.held.push_str(text);
                    start = self.pending.len();
                }
                Err(error) => {
                    let valid_end = start + error.valid_up_to();
                    let valid = std::str::from_utf8(&self.pending[start..valid_end])
                        .expect("`valid_up_to` bounds valid UTF-8; this is a bug");
                    self.held.push_str(valid);
                    start = valid_end;
                    match error.error_len() {
                        Some(invalid) => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            start += invalid;
                        }
                        // The end is a prefix of a valid character: wait for its other bytes.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..start);
    }

    /// Emits what can no longer be part of a stop sequence, or stops at a stop sequence that no
    /// earlier-starting one can pre-empt any more. `at_end` says no more text will come.
    fn release(&mut self, at_end: bool) -> Delta {
        let hold_from = if at_end {
            self.held.len()
        } else {
            self.stop_prefix_start()
        };
        if let Some((start, index)) = self.earliest_match() {
            // A stop that could still complete at an earlier position would win, so a match past
            // `hold_from` waits; `finish` settles it.
            if start <= hold_from {
                let text = self.held[..start].to_owned();
                self.emitted.push_str(&text);
                self.held.clear();
                self.pending.clear();
                let stop = self.stops[index].clone();
                self.stopped = Some(stop.clone());
                return Delta {
                    text,
                    stopped: Some(stop),
                };
            }
        }
        let rest = self.held.split_off(hold_from);
        let text = std::mem::replace(&mut self.held, rest);
        self.emitted.push_str(&text);
        Delta {
            text,
            stopped: None,
        }
    }

    /// The earliest-starting complete stop sequence in `held` (the shortest at equal starts), as
    /// its byte offset and its index in `stops`.
    fn earliest_match(&self) -> Option<(usize, usize)> {
        self.stops
            .iter()
            .enumerate()
            .filter_map(|(index, stop)| Some((self.held.find(stop.as_str())?, stop.len(), index)))
            .min()
            .map(|(start, _, index)| (start, index))
    }

    /// Where the longest suffix of `held` that is a proper prefix of some stop begins, or
    /// `held.len()` if there is none; text before it can never begin a stop sequence.
    fn stop_prefix_start(&self) -> usize {
        // Suffixes at least as long as the longest stop cannot be a proper prefix of any, so only
        // the last `longest_stop - 1` bytes are examined, keeping each push independent of how
        // long the completion has grown.
        let first = self
            .held
            .len()
            .saturating_sub(self.longest_stop.saturating_sub(1));
        (first..self.held.len())
            .filter(|&i| self.held.is_char_boundary(i))
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops
                    .iter()
                    .any(|stop| stop.len() > tail.len() && stop.starts_with(tail))
            })
            .unwrap_or(self.held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(stops: &[&str]) -> TextStream {
        TextStream::new(stops.iter().map(|s| s.to_string()).collect())
    }

    fn emitted(text: &str) -> Delta {
        Delta {
            text: text.to_owned(),
            stopped: None,
        }
    }

    fn stopped_at(text: &str, stop: &str) -> Delta {
        Delta {
            text: text.to_owned(),
            stopped: Some(stop.to_owned()),
        }
    }

    #[test]
    fn emoji_split_over_three_tokens_is_never_replaced() {
        assert_eq!("🦀".as_bytes(), [240, 159, 166, 128]);
        let mut s = stream(&[]);
        assert_eq!(s.push(&[240, 159]), emitted(""));
        assert_eq!(s.push(&[166]), emitted(""));
        assert_eq!(s.push(&[128]), emitted("🦀"));
        assert_eq!(s.finish(), emitted(""));
        assert_eq!(s.text(), "🦀");
    }

    #[test]
    fn cjk_split_across_tokens() {
        let bytes = "中文".as_bytes();
        let mut s = stream(&[]);
        assert_eq!(s.push(&bytes[..1]), emitted(""));
        assert_eq!(s.push(&bytes[1..4]), emitted("中"));
        assert_eq!(s.push(&bytes[4..]), emitted("文"));
        assert_eq!(s.text(), "中文");
    }

    #[test]
    fn invalid_byte_becomes_replacement_and_does_not_block_later_text() {
        let mut s = stream(&[]);
        assert_eq!(s.push(&[b'a', 0xFF]), emitted("a\u{FFFD}"));
        assert_eq!(s.push(b"b"), emitted("b"));
        // An incomplete character cut short by a plain byte is replaced once, as a whole.
        assert_eq!(s.push(&[240, 159]), emitted(""));
        assert_eq!(s.push(b"x"), emitted("\u{FFFD}x"));
        let all = [b'a', 0xFF, b'b', 240, 159, b'x'];
        assert_eq!(s.text(), String::from_utf8_lossy(&all));
    }

    #[test]
    fn without_stops_only_incomplete_characters_are_held() {
        let mut s = stream(&[]);
        assert_eq!(s.push(b"wor"), emitted("wor"));
        assert_eq!(s.push(&[b'l', 0xE4]), emitted("l"));
        // Empty stop strings are ignored rather than matching everywhere.
        let mut s = stream(&[""]);
        assert_eq!(s.push(b"wor"), emitted("wor"));
    }

    #[test]
    fn stop_sequence_spanning_two_tokens() {
        let mut s = stream(&["world"]);
        assert_eq!(s.push(b"Hello wor"), emitted("Hello "));
        assert_eq!(s.push(b"ld!"), stopped_at("", "world"));
        assert_eq!(s.text(), "Hello ");
        assert_eq!(s.stopped(), Some("world"));
    }

    #[test]
    fn partial_stop_prefix_that_does_not_match_is_released() {
        let mut s = stream(&["world"]);
        assert_eq!(s.push(b"wo"), emitted(""));
        assert_eq!(s.push(b"ah"), emitted("woah"));
        assert_eq!(s.stopped(), None);
    }

    #[test]
    fn overlapping_prefix_restarts_inside_held_text() {
        let mut s = stream(&["aab"]);
        assert_eq!(s.push(b"aa"), emitted(""));
        // "aaa" is not a prefix of "aab", but its tail "aa" still is.
        assert_eq!(s.push(b"a"), emitted("a"));
        assert_eq!(s.push(b"b"), stopped_at("", "aab"));
        assert_eq!(s.text(), "a");
    }

    #[test]
    fn stop_at_the_very_start() {
        let mut s = stream(&["world"]);
        assert_eq!(s.push(b"world is big"), stopped_at("", "world"));
        assert_eq!(s.text(), "");
    }

    #[test]
    fn earlier_starting_stop_wins() {
        let mut s = stream(&["world", "o w"]);
        assert_eq!(s.push(b"Hello world"), stopped_at("Hell", "o w"));

        // Split so that the later-starting stop completes first: it must not pre-empt one that
        // starts earlier and can still complete.
        let mut s = stream(&["bc", "abcd"]);
        assert_eq!(s.push(b"xabc"), emitted("x"));
        assert_eq!(s.push(b"d"), stopped_at("", "abcd"));

        // ... and it wins once the earlier one fails, or the text ends.
        let mut s = stream(&["bc", "abcd"]);
        assert_eq!(s.push(b"xabc"), emitted("x"));
        assert_eq!(s.push(b"e"), stopped_at("a", "bc"));
        let mut s = stream(&["bc", "abcd"]);
        assert_eq!(s.push(b"xabc"), emitted("x"));
        assert_eq!(s.finish(), stopped_at("a", "bc"));
        assert_eq!(s.text(), "xa");

        // At the same start, the shorter stop completes first, so it wins whatever the split.
        let mut s = stream(&["world", "wor"]);
        assert_eq!(s.push(b"a world"), stopped_at("a ", "wor"));
    }

    #[test]
    fn stop_sequence_with_multibyte_characters() {
        let crab = "🦀".as_bytes();
        let mut s = stream(&["🦀!"]);
        assert_eq!(s.push(b"I like "), emitted("I like "));
        assert_eq!(s.push(&crab[..3]), emitted(""));
        assert_eq!(s.push(&[crab[3], b'!']), stopped_at("", "🦀!"));
        assert_eq!(s.text(), "I like ");

        let mut s = stream(&["中文"]);
        assert_eq!(s.push("说中".as_bytes()), emitted("说"));
        assert_eq!(s.push("国".as_bytes()), emitted("中国"));
    }

    #[test]
    fn nothing_is_emitted_after_a_stop() {
        let mut s = stream(&["\n\n"]);
        assert_eq!(s.push(b"one\n"), emitted("one"));
        assert_eq!(s.push(b"\ntwo"), stopped_at("", "\n\n"));
        assert_eq!(s.push(b"three"), Delta::default());
        assert_eq!(s.push(&[0xFF]), Delta::default());
        assert_eq!(s.finish(), Delta::default());
        assert_eq!(s.text(), "one");
        assert_eq!(s.stopped(), Some("\n\n"));
    }

    #[test]
    fn finish_flushes_a_held_prefix_and_an_incomplete_character() {
        let mut s = stream(&["world"]);
        assert_eq!(s.push(b"say wo"), emitted("say "));
        assert_eq!(s.push(&[240, 159]), emitted(""));
        assert_eq!(s.finish(), emitted("wo\u{FFFD}"));
        assert_eq!(s.text(), "say wo\u{FFFD}");
        assert_eq!(s.stopped(), None);
    }

    #[test]
    fn held_text_stays_shorter_than_the_longest_stop() {
        let mut s = stream(&["the end", "x"]);
        for _ in 0..1000 {
            s.push(b"the en");
            assert!(s.held.len() < "the end".len(), "held {:?}", s.held);
        }
        assert_eq!(s.text().len(), 999 * "the en".len());
    }

    /// A small deterministic generator (xorshift64*), so the split tests need no extra crate.
    struct Splitter(u64);

    impl Splitter {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Cuts `bytes` into pieces of 0 to 5 bytes, ignoring character boundaries on purpose.
        fn split<'a>(&mut self, mut bytes: &'a [u8]) -> Vec<&'a [u8]> {
            let mut pieces = Vec::new();
            while !bytes.is_empty() {
                let len = (self.next() % 6) as usize;
                let (piece, rest) = bytes.split_at(len.min(bytes.len()));
                pieces.push(piece);
                bytes = rest;
            }
            pieces
        }
    }

    /// Feeds `pieces` and returns all emitted text and the stop reported, checking on the way
    /// that `text()` tracks the deltas and that a stop is reported once.
    fn run(stops: &[&str], pieces: &[&[u8]]) -> (String, Option<String>) {
        let mut s = stream(stops);
        let mut out = String::new();
        let mut stopped = None;
        for piece in pieces.iter().copied() {
            let delta = s.push(piece);
            out.push_str(&delta.text);
            if let Some(stop) = delta.stopped {
                assert!(stopped.is_none(), "stop reported twice");
                stopped = Some(stop);
            }
        }
        let delta = s.finish();
        out.push_str(&delta.text);
        if let Some(stop) = delta.stopped {
            assert!(stopped.is_none(), "stop reported twice");
            stopped = Some(stop);
        }
        assert_eq!(s.text(), out);
        assert_eq!(s.stopped(), stopped.as_deref());
        (out, stopped)
    }

    /// The text cut before its earliest-starting stop (the shortest at equal starts), computed
    /// directly on the whole text.
    fn cut_at_first_stop(text: &str, stops: &[&str]) -> (String, Option<String>) {
        let first = stops
            .iter()
            .filter(|stop| !stop.is_empty())
            .filter_map(|stop| Some((text.find(stop)?, stop.len(), *stop)))
            .min();
        match first {
            Some((start, _, stop)) => (text[..start].to_owned(), Some(stop.to_owned())),
            None => (text.to_owned(), None),
        }
    }

    #[test]
    fn any_split_gives_the_text_cut_at_the_first_stop() {
        let text = "Hello world! 🦀 says hi to 中文 and the world; aaab xabcx abcd.";
        let stop_sets: &[&[&str]] = &[
            &[],
            &["world"],
            &["🦀 says", "hi"],
            &["文 and", "中"],
            &["nowhere", "🦀🦀"],
            &["aab"],
            &["bc", "abcd", "x"],
            &["abcd", "bc"],
            &["cd.", "abcd"],
            // A later-starting stop inside an earlier-starting one: the earlier must win.
            &["cd", "abcd."],
            &["bc", "xabcx"],
            &["ld", "world", "o w"],
            &[".", "Hello"],
            &["", "d."],
        ];
        let mut splitter = Splitter(0x9E37_79B9_7F4A_7C15);
        for stops in stop_sets {
            let expected = cut_at_first_stop(text, stops);
            for round in 0..300 {
                let pieces = splitter.split(text.as_bytes());
                assert_eq!(
                    run(stops, &pieces),
                    expected,
                    "stops {stops:?}, round {round}, pieces {pieces:?}"
                );
            }
        }
    }

    #[test]
    fn any_split_of_any_bytes_decodes_like_from_utf8_lossy() {
        let mut splitter = Splitter(42);
        for round in 0..500 {
            // Mostly lead and continuation bytes, to hit incomplete and invalid sequences often.
            let bytes: Vec<u8> = (0..splitter.next() % 40)
                .map(|_| match splitter.next() % 4 {
                    0 => b'a',
                    1 => 0x80 | (splitter.next() % 0x40) as u8,
                    _ => 0xC0 | (splitter.next() % 0x40) as u8,
                })
                .collect();
            let pieces = splitter.split(&bytes);
            let (out, stopped) = run(&[], &pieces);
            assert_eq!(
                out,
                String::from_utf8_lossy(&bytes),
                "round {round}: {bytes:?}"
            );
            assert_eq!(stopped, None);
        }
    }
}
