//! Every way caller data can be refused, with the messages callers see.

use std::io::Write;

use oneword_ngram::{
    letter_frequencies, letter_pair_matrix, random_words, word_sentence, Corpus, Error,
    LetterModel, Ngram, WordModel, MAX_LEN,
};

const TEXT: &str = "the cat sat on the mat";

#[test]
fn n_must_be_one_to_six() {
    for n in [0, 7, usize::MAX] {
        let error = Ngram::train(&['a', 'b'], n).unwrap_err();
        assert!(matches!(error, Error::OrderOutOfRange(m) if m == n));
        assert_eq!(error.to_string(), format!("`n` must be in 1..=6, got {n}"));
        assert!(matches!(
            LetterModel::train(TEXT, n),
            Err(Error::OrderOutOfRange(_))
        ));
        assert!(matches!(
            WordModel::train(TEXT, n),
            Err(Error::OrderOutOfRange(_))
        ));
        assert!(matches!(
            random_words(TEXT, n, 1, || 0.0),
            Err(Error::OrderOutOfRange(_))
        ));
    }
    for n in 1..=6 {
        assert_eq!(Ngram::train(&['a', 'b'], n).unwrap().order(), n);
    }
}

#[test]
fn the_corpus_must_not_be_empty() {
    let error = Ngram::<u32>::train(&[], 2).unwrap_err();
    assert!(matches!(error, Error::EmptyCorpus));
    assert_eq!(error.to_string(), "the corpus is empty");
    assert!(matches!(Corpus::from_text(""), Err(Error::EmptyCorpus)));
    for text in ["", " 1, 2, 3! ", "ÆØÅ"] {
        let error = LetterModel::train(text, 2).unwrap_err();
        assert_eq!(error.to_string(), "the corpus contains no letters a-z");
        assert!(matches!(WordModel::train(text, 2), Err(Error::NoLetters)));
        assert!(matches!(letter_frequencies(text), Err(Error::NoLetters)));
        assert!(matches!(letter_pair_matrix(text), Err(Error::NoLetters)));
    }
    assert!(matches!(Corpus::from_text("42"), Err(Error::NoLetters)));
    assert!(Corpus::from_text("a").is_ok());
}

#[test]
fn corpus_files_must_exist_and_have_letters() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.txt");
    let error = Corpus::from_file(&missing).unwrap_err();
    assert!(matches!(error, Error::UnreadableFile { .. }));
    let prefix = format!("corpus file `{}` could not be read: ", missing.display());
    assert!(error.to_string().starts_with(&prefix), "{error}");

    let empty = dir.path().join("empty.txt");
    std::fs::File::create(&empty).unwrap();
    let error = Corpus::from_file(&empty).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("corpus file `{}` is empty", empty.display())
    );

    let digits = dir.path().join("digits.txt");
    std::fs::write(&digits, "1 2 3\n").unwrap();
    let error = Corpus::from_file(&digits).unwrap_err();
    let message = format!("corpus file `{}` contains no letters a-z", digits.display());
    assert_eq!(error.to_string(), message);

    let binary = dir.path().join("binary.bin");
    std::fs::write(&binary, [b'a', 0xff, 0xfe]).unwrap();
    assert!(matches!(
        Corpus::from_file(&binary),
        Err(Error::UnreadableFile { .. })
    ));

    let good = dir.path().join("good.txt");
    let mut file = std::fs::File::create(&good).unwrap();
    writeln!(file, "{TEXT}").unwrap();
    assert_eq!(Corpus::from_file(&good).unwrap().words().len(), 6);
}

#[test]
fn start_words_must_occur_in_the_corpus() {
    let model = WordModel::train(TEXT, 2).unwrap();
    let error = model.sentence("the xyzzy", 3, || 0.0).unwrap_err();
    assert!(matches!(&error, Error::UnknownStartWord(word) if word == "xyzzy"));
    assert_eq!(
        error.to_string(),
        "`start` word \"xyzzy\" does not occur in the corpus"
    );
    let error = word_sentence(TEXT, 2, "Cat Dog", 3, || 0.0).unwrap_err();
    assert_eq!(
        error.to_string(),
        "`start` word \"dog\" does not occur in the corpus"
    );
    // "cat", the essay's start word, is not in the King James books.
    let bible = WordModel::train(Corpus::bundled().text(), 2).unwrap();
    assert!(matches!(
        bible.sentence("cat", 3, || 0.0),
        Err(Error::UnknownStartWord(_))
    ));

    let error = model.sentence(" 42! ", 3, || 0.0).unwrap_err();
    assert_eq!(
        error.to_string(),
        "`start` must contain a word of letters a-z, got \" 42! \""
    );
}

#[test]
fn u_must_be_in_the_unit_interval() {
    let model = Ngram::train(&[1u32, 2, 3], 2).unwrap();
    for u in [1.0, -0.25, 7.5, f64::NAN, f64::INFINITY] {
        let error = model.pick(&[1], u).unwrap_err();
        assert!(matches!(error, Error::UniformOutOfRange(_)));
        assert!(model.distribution(&[1]).pick(u).is_err());
        assert!(model.generate(&[1], 3, || u).is_err());
    }
    let error = model.pick(&[], 1.0).unwrap_err();
    assert_eq!(error.to_string(), "`u` must be in [0, 1), got 1");
    let error = model.pick(&[], f64::NAN).unwrap_err();
    assert_eq!(error.to_string(), "`u` must be in [0, 1), got NaN");
}

#[test]
fn lengths_are_bounded() {
    let model = LetterModel::train(TEXT, 2).unwrap();
    let error = model.generate("t", MAX_LEN + 1, || 0.0).unwrap_err();
    assert_eq!(error.to_string(), "`len` must be in 0..=100000, got 100001");
    let error = model.random_words(usize::MAX, || 0.0).unwrap_err();
    let message = format!("`count` must be in 0..=100000, got {}", usize::MAX);
    assert_eq!(error.to_string(), message);
    assert!(matches!(
        word_sentence(TEXT, 2, "the", MAX_LEN + 1, || 0.0),
        Err(Error::LengthOutOfRange { field: "len", .. })
    ));
    assert_eq!(
        model.generate("t", MAX_LEN, || 0.0).unwrap().len(),
        MAX_LEN + 1
    );
}

#[test]
fn each_order_holds_a_bounded_number_of_symbols() {
    // Order 6 packs six 21-bit digits (an id + 1 each) into a u128 key.
    let distinct: Vec<u32> = (0..1 << 21).collect();
    let error = Ngram::train(&distinct, 6).unwrap_err();
    assert!(matches!(
        error,
        Error::TooManySymbols {
            distinct: 2_097_152,
            n: 6,
            max: 2_097_151
        }
    ));
    let message = "the corpus has 2097152 distinct symbols, but `n` = 6 allows at most 2097151";
    assert_eq!(error.to_string(), message);
    assert_eq!(
        Ngram::train(&distinct[..1000], 6).unwrap().alphabet().len(),
        1000
    );
}
