//! Properties of encoding and decoding, shared by the property tests (`cargo test`) and the fuzz
//! targets (`make fuzz`). Each panics when its property fails.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::{BpeTokenizer, Error, END_OF_TEXT};

/// GPT-2's tokenizer from the committed fixture, loaded once.
pub fn gpt2() -> &'static BpeTokenizer {
    static TOKENIZER: OnceLock<BpeTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gpt2-tokenizer");
        BpeTokenizer::load(&dir).expect("the committed fixture loads")
    })
}

/// Any text encodes, and its tokens decode to exactly its bytes. Offsets are character-aligned
/// byte ranges that contain the token's bytes, run forward and cover the text without gaps.
/// Special tokens appear only when allowed, once per spelling.
pub fn encode_round_trips(t: &BpeTokenizer, text: &str, allow_special: bool) {
    let e = t
        .encode(text, allow_special)
        .unwrap_or_else(|e| panic!("{text:?} does not encode: {e}"));
    assert_eq!(e.ids.len(), e.offsets.len());
    let decoded = t.decode(&e.ids, false).expect("encoded ids decode");
    assert_eq!(decoded, text.as_bytes(), "ids {:?}", e.ids);
    let mut covered = 0;
    let mut previous = (0, 0);
    for (&id, &(start, end)) in e.ids.iter().zip(&e.offsets) {
        assert!(
            start < end && end <= text.len(),
            "offsets {start}..{end} of {text:?}"
        );
        assert!(text.is_char_boundary(start) && text.is_char_boundary(end));
        let piece = t.piece(id);
        let span = &text.as_bytes()[start..end];
        assert!(
            span.windows(piece.len()).any(|w| w == piece),
            "token {id} {piece:?} is not inside its offsets {start}..{end} of {text:?}"
        );
        assert!(start >= previous.0 && end >= previous.1 && start <= covered);
        previous = (start, end);
        covered = covered.max(end);
    }
    assert_eq!(
        covered,
        text.len(),
        "offsets leave the end of {text:?} uncovered"
    );
    let specials = e.ids.iter().filter(|&&id| t.is_special(id)).count();
    let spelled = if allow_special {
        text.matches(END_OF_TEXT).count()
    } else {
        0
    };
    assert_eq!(specials, spelled, "special tokens in {:?}", e.ids);
}

/// Decoding any ids never panics: ids in the vocabulary give their pieces, in order and without
/// the special ones when asked; the first id outside is named with its index.
pub fn decode_checks_ids(t: &BpeTokenizer, ids: &[u32], skip_special_tokens: bool) {
    let first_unknown = ids.iter().position(|&id| id as usize >= t.vocab_size());
    match (t.decode(ids, skip_special_tokens), first_unknown) {
        (Ok(bytes), None) => {
            let expected: Vec<u8> = ids
                .iter()
                .filter(|&&id| !(skip_special_tokens && t.is_special(id)))
                .flat_map(|&id| t.piece(id).iter().copied())
                .collect();
            assert_eq!(bytes, expected);
        }
        (Err(Error::UnknownId { index, id, .. }), Some(first)) => {
            assert_eq!((index, id), (first, ids[first]));
        }
        (result, first) => {
            panic!("decoding {ids:?} gave {result:?}; first unknown id at {first:?}")
        }
    }
}
