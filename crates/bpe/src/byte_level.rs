//! GPT-2's reversible map between bytes and printable characters (`bytes_to_unicode` in OpenAI's
//! `encoder.py`): vocabulary entries are spelled in these characters, so a token's exact bytes are
//! its spelling mapped back through this table.

/// Whether GPT-2 spells byte `b` as the character with the same code point.
fn is_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The 68 bytes GPT-2 spells as U+0100, U+0101, … in this order.
fn shifted_bytes() -> impl Iterator<Item = u8> {
    (0..=255u8).filter(|b| !is_printable(*b))
}

/// Maps a vocabulary spelling back to bytes; `None` if it has a character outside the alphabet.
pub struct ByteDecoder {
    shifted: Vec<u8>,
}

impl ByteDecoder {
    pub fn new() -> Self {
        ByteDecoder {
            shifted: shifted_bytes().collect(),
        }
    }

    /// The bytes a vocabulary entry stands for.
    pub fn decode(&self, spelling: &str) -> Option<Vec<u8>> {
        spelling.chars().map(|c| self.byte(c)).collect()
    }

    fn byte(&self, c: char) -> Option<u8> {
        let code = c as u32;
        match u8::try_from(code) {
            Ok(b) => is_printable(b).then_some(b),
            Err(_) => code
                .checked_sub(256)
                .and_then(|n| self.shifted.get(n as usize).copied()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The character GPT-2 spells byte `b` as.
    fn byte_to_char(b: u8) -> char {
        if is_printable(b) {
            return char::from(b);
        }
        let n = shifted_bytes()
            .position(|s| s == b)
            .expect("every byte is printable or shifted, this is a bug");
        char::from_u32(256 + n as u32).expect("U+0100..U+0143 are characters, this is a bug")
    }

    #[test]
    fn every_byte_round_trips_and_nothing_else_decodes() {
        let decoder = ByteDecoder::new();
        let spelling: String = (0..=255u8).map(byte_to_char).collect();
        assert_eq!(spelling.chars().count(), 256);
        let bytes: Vec<u8> = (0..=255u8).collect();
        assert_eq!(decoder.decode(&spelling), Some(bytes));
        // The space is spelled Ġ (U+0120) and the newline Ċ (U+010A), as in GPT-2's vocabulary.
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(decoder.decode(" "), None);
        assert_eq!(decoder.decode("\u{144}"), None);
        assert_eq!(decoder.decode("🦀"), None);
    }
}
