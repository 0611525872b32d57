//! The n-gram counter against counting each gram, on arbitrary sequences and orders (including
//! invalid ones), and the essay's letter and word models on arbitrary text.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use oneword_ngram::checks::{counts_match, text_models_work};

#[derive(Arbitrary, Debug)]
enum Input {
    /// Few distinct symbols, so that grams repeat.
    Small {
        n: u8,
        symbols: Vec<u8>,
        u: u16,
    },
    /// Any symbols, so that keys need wide digits.
    Wide {
        n: u8,
        symbols: Vec<u32>,
        u: u16,
    },
    Text {
        n: u8,
        text: String,
        seed: u64,
    },
}

fuzz_target!(|input: Input| match input {
    Input::Small { n, symbols, u } => {
        let symbols: Vec<u8> = symbols.iter().map(|s| s % 4).collect();
        counts_match(&symbols, usize::from(n % 8), f64::from(u) / 65536.0)
    }
    Input::Wide { n, symbols, u } =>
        counts_match(&symbols, usize::from(n % 8), f64::from(u) / 65536.0),
    Input::Text { n, text, seed } => text_models_work(&text, usize::from(n), seed),
});
