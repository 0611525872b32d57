//! The properties of [`crate::checks`] on random cases (`PROPTEST_CASES` raises their number).

use proptest::prelude::*;

use crate::checks::{counts_match, text_models_work};

proptest! {
    #[test]
    fn counts_equal_counting_each_gram(
        // Few symbols, so that grams repeat; or many, so that keys need wide digits.
        sequence in prop_oneof![
            prop::collection::vec(0u32..3, 0..60),
            prop::collection::vec(any::<u32>(), 0..40),
            prop::collection::vec(0u32..300, 200..400),
        ],
        n in 0usize..8,
        u in 0.0f64..1.0,
    ) {
        counts_match(&sequence, n, u);
    }

    #[test]
    fn letter_and_word_models_train_on_any_text(
        text in prop_oneof!["[a-c' .,\n-]{0,40}", any::<String>(), "[A-Za-z0-9é]{0,20}"],
        n: usize,
        seed: u64,
    ) {
        text_models_work(&text, n, seed);
    }
}
