//! The properties of [`crate::checks`] on random cases (`PROPTEST_CASES` raises their number).

use proptest::prelude::*;

use crate::checks::{decode_checks_ids, encode_round_trips, gpt2};

/// Texts made of what GPT-2's pre-split and byte-level merges treat specially: spaces and
/// newlines, letters, digits, punctuation, characters of 2 to 4 bytes, combining marks, the
/// special token's spelling and pieces of it.
fn text() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        "[a-zA-Z]{1,6}",
        "[0-9]{1,4}",
        "[ \t\n\r]{1,3}",
        "[.,!?'\"<>|-]{1,3}",
        "[éß中文🦀\u{301}\u{200d}\u{fffd}]{1,3}",
        Just("<|endoftext|>".to_owned()),
        Just("<|endof".to_owned()),
        Just("'s".to_owned()),
        any::<char>().prop_map(String::from),
    ];
    prop_oneof![
        prop::collection::vec(part, 0..12).prop_map(|parts| parts.concat()),
        prop::collection::vec(any::<u8>(), 0..48)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
    ]
}

proptest! {
    #[test]
    fn any_text_encodes_and_decodes_to_its_bytes(text in text(), allow_special: bool) {
        encode_round_trips(gpt2(), &text, allow_special);
    }

    #[test]
    fn any_ids_decode_or_name_the_first_unknown_one(
        ids in prop::collection::vec(prop_oneof![0u32..50257, 50250u32..50300, any::<u32>()], 0..24),
        skip_special: bool,
    ) {
        decode_checks_ids(gpt2(), &ids, skip_special);
    }

    #[test]
    fn a_batch_encodes_as_its_texts_one_by_one(
        texts in prop::collection::vec(text(), 0..4),
        allow_special: bool,
    ) {
        let t = gpt2();
        let batch = t.encode_batch(&texts, allow_special).expect("a batch encodes");
        prop_assert_eq!(batch.len(), texts.len());
        for (text, encoded) in texts.iter().zip(batch) {
            prop_assert_eq!(encoded, t.encode(text, allow_special).expect("a text encodes"));
        }
    }
}
