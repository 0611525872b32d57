//! The essay's §2 on the bundled corpus: letter frequencies, what follows "q", random words from
//! letter models of order 1–6 and sentences from word models, with how long each model took to
//! train. `cargo run -p oneword-ngram --example essay [seed]`

use std::time::Instant;

use oneword_ngram::{
    letter_frequencies, letter_pair_matrix, seeded_uniforms, Corpus, LetterModel, WordModel,
    MAX_ORDER,
};

fn main() -> Result<(), oneword_ngram::Error> {
    let seed = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let corpus = Corpus::bundled();
    let text = corpus.text();

    let frequencies = letter_frequencies(text)?;
    let top: Vec<String> = {
        let mut sorted = frequencies.clone();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
        sorted
            .iter()
            .take(6)
            .map(|(c, p)| format!("{c} {p:.3}"))
            .collect()
    };
    println!("commonest letters: {}", top.join(", "));
    let pairs = letter_pair_matrix(text)?;
    println!("P(u | q) = {:.3}", pairs.get('q', 'u').unwrap_or(0.0));

    for n in 1..=MAX_ORDER {
        let started = Instant::now();
        let model = LetterModel::train(text, n)?;
        let took = started.elapsed();
        let words = model.random_words(8, seeded_uniforms(seed))?;
        println!("letters n={n} ({took:.0?}): {}", words.join(" "));
    }
    for n in 1..=MAX_ORDER {
        let started = Instant::now();
        let model = WordModel::train(text, n)?;
        let took = started.elapsed();
        let sentence = model.sentence("god", 12, seeded_uniforms(seed))?;
        println!("words n={n} ({took:.0?}): {}", sentence.join(" "));
    }
    Ok(())
}
