//! The essay's instruments, on a tiny text and on the bundled corpus.

use oneword_ngram::{
    letter_frequencies, letter_pair_matrix, random_words, seeded_uniforms, word_sentence, Corpus,
    LetterModel, WordModel, LETTER_ALPHABET, MAX_WORD_LETTERS,
};

const TEXT: &str = "the cat sat on the mat";

fn assert_close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} != {b}");
}

#[test]
fn bundled_corpus_is_the_four_books() {
    let corpus = Corpus::bundled();
    assert_eq!(corpus.text().len(), 669_897);
    assert!(corpus
        .text()
        .starts_with("In the beginning God created the heaven and the earth.\n"));
    assert!(corpus
        .text()
        .ends_with("let her own works praise her in the gates.\n"));
    assert_eq!(corpus.words().len(), 128_699);
}

#[test]
fn letter_frequencies_count_letters_only() {
    let frequencies = letter_frequencies(TEXT).unwrap();
    let letters: String = frequencies.iter().map(|&(c, _)| c).collect();
    assert_eq!(letters, "abcdefghijklmnopqrstuvwxyz");
    // 17 letters: t ×5, a ×3, h ×2, e ×2, one each of c, s, o, n, m.
    let get = |c: char| frequencies.iter().find(|e| e.0 == c).unwrap().1;
    assert_close(get('t'), 5.0 / 17.0);
    assert_close(get('a'), 3.0 / 17.0);
    assert_eq!(get('z'), 0.0);
    for text in [TEXT, Corpus::bundled().text()] {
        let sum: f64 = letter_frequencies(text).unwrap().iter().map(|e| e.1).sum();
        assert_close(sum, 1.0);
    }
    let bundled = letter_frequencies(Corpus::bundled().text()).unwrap();
    let commonest = bundled.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    assert_eq!(commonest.0, 'e');
}

#[test]
fn letter_pair_rows_sum_to_one_or_zero() {
    let pairs = letter_pair_matrix(TEXT).unwrap();
    assert_eq!(pairs.alphabet(), &LETTER_ALPHABET);
    assert_eq!(pairs.probabilities().len(), 27 * 27);
    assert_eq!(pairs.get('t', 'h'), Some(0.5));
    assert_eq!(pairs.get('t', ' '), Some(0.5));
    assert_eq!(pairs.get('c', 'a'), Some(1.0));
    assert_eq!(pairs.get('q', 'u'), Some(0.0));
    assert_eq!(pairs.get('!', 'u'), None);
    assert_eq!(pairs.row('Q'), None);
    for (first, sum) in [('t', 1.0), (' ', 1.0), ('z', 0.0)] {
        let row: f64 = pairs.row(first).unwrap().iter().sum();
        assert_close(row, sum);
    }
}

#[test]
fn in_english_q_is_followed_by_u() {
    let pairs = letter_pair_matrix(Corpus::bundled().text()).unwrap();
    assert!(pairs.get('q', 'u').unwrap() > 0.9);
    for &first in &LETTER_ALPHABET {
        let sum: f64 = pairs.row(first).unwrap().iter().sum();
        assert!(sum == 0.0 || (sum - 1.0).abs() < 1e-9, "{first:?}: {sum}");
    }
    // The text never has two gaps in a row.
    assert_eq!(pairs.get(' ', ' '), Some(0.0));
}

#[test]
fn random_words_are_reproducible_words() {
    let text = Corpus::bundled();
    let model = LetterModel::train(text.text(), 4).unwrap();
    let words = model.random_words(40, seeded_uniforms(3)).unwrap();
    assert_eq!(words.len(), 40);
    for word in &words {
        assert!(
            !word.is_empty() && word.len() <= MAX_WORD_LETTERS,
            "{word:?}"
        );
        assert!(word.bytes().all(|b| b.is_ascii_lowercase()), "{word:?}");
    }
    assert_eq!(words, model.random_words(40, seeded_uniforms(3)).unwrap());
    assert_ne!(words, model.random_words(40, seeded_uniforms(4)).unwrap());
    // The same through the one-call convenience.
    let again = random_words(TEXT, 2, 5, seeded_uniforms(9)).unwrap();
    assert_eq!(again, random_words(TEXT, 2, 5, seeded_uniforms(9)).unwrap());
}

#[test]
fn random_words_end_even_without_spaces() {
    // Order 1 with u = 0 always picks the likeliest symbol, the space; words still have a letter.
    let unigram = LetterModel::train(TEXT, 1).unwrap();
    assert_eq!(unigram.random_words(3, || 0.0).unwrap(), ["t", "t", "t"]);
    // A text with no spaces never picks one: words stop at the cap.
    let words = random_words("aaaa", 3, 2, || 0.5).unwrap();
    assert_eq!(words, vec!["a".repeat(MAX_WORD_LETTERS); 2]);
}

#[test]
fn letter_text_continues_its_start() {
    let model = LetterModel::train(TEXT, 3).unwrap();
    let text = model.generate("The", 7, || 0.0).unwrap();
    assert_eq!(text, "the cat on");
    assert_eq!(model.distribution("TH").entries(), &[('e', 1.0)]);
}

#[test]
fn word_sentences_start_from_a_word() {
    let model = WordModel::train(Corpus::bundled().text(), 3).unwrap();
    let sentence = model.sentence("God", 20, seeded_uniforms(11)).unwrap();
    assert_eq!(sentence.len(), 21);
    assert_eq!(sentence[0], "god");
    assert_eq!(
        sentence,
        model.sentence("god", 20, seeded_uniforms(11)).unwrap()
    );
    assert_ne!(
        sentence,
        model.sentence("god", 20, seeded_uniforms(12)).unwrap()
    );
    // Several start words are all kept, and each new word follows the last two.
    let sentence = model.sentence("In the", 5, || 0.0).unwrap();
    assert_eq!(&sentence[..2], ["in", "the"]);
    // The one-call convenience, on the tiny text: "the" → "cat" (a tie with "mat") → "sat"...
    let sentence = word_sentence(TEXT, 2, "the", 5, || 0.0).unwrap();
    assert_eq!(sentence, "the cat sat on the cat");
}
