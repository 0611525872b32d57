//! Counts, probabilities, backoff and sampling of `Ngram`, checked by hand on a tiny text.

use oneword_ngram::{letters, seeded_uniforms, words, Ngram, Vocabulary, WordModel};

const TEXT: &str = "the cat sat on the mat";

fn letter_model(n: usize) -> Ngram<char> {
    Ngram::train(&letters(TEXT), n).unwrap()
}

#[test]
fn letter_counts_match_the_text() {
    let model = letter_model(3);
    let count = |s: &str| model.count(&s.chars().collect::<Vec<_>>());
    assert_eq!(model.corpus_len(), 22);
    assert_eq!(count(""), Some(22));
    assert_eq!(count("t"), Some(5));
    assert_eq!(count(" "), Some(5));
    assert_eq!(count("a"), Some(3));
    assert_eq!(count("the"), Some(2));
    assert_eq!(count("at"), Some(3));
    assert_eq!(count("at "), Some(2));
    assert_eq!(count("q"), Some(0));
    assert_eq!(count("zzz"), Some(0));
    // Longer than n: never counted.
    assert_eq!(count("the "), None);
    let alphabet: String = model.alphabet().iter().collect();
    assert_eq!(alphabet, " acehmnost");
}

#[test]
fn letter_probabilities_are_count_ratios() {
    let model = letter_model(2);
    // "t" occurs 5 times but the last one ends the text: followed by "h" twice and " " twice.
    let after_t = model.distribution(&['t']);
    assert_eq!(after_t.order_used(), 2);
    assert_eq!(after_t.entries(), &[(' ', 0.5), ('h', 0.5)]);
    assert_eq!(after_t.probability('h'), 0.5);
    assert_eq!(after_t.probability('x'), 0.0);
    assert_eq!(model.followers(&['t']), Some(vec![(' ', 2), ('h', 2)]));
    assert_eq!(model.distribution(&['c']).entries(), &[('a', 1.0)]);
    // Only the last n − 1 symbols count.
    assert_eq!(model.distribution(&['s', 'a', 't']), after_t);
    // Contexts of n symbols or more were not counted.
    assert_eq!(model.followers(&['t', 'h']), None);
}

#[test]
fn unseen_contexts_back_off_to_the_longest_seen_suffix() {
    let model = letter_model(3);
    // "ht" never occurs, but "t" does.
    let backed_off = model.distribution(&['h', 't']);
    assert_eq!(backed_off.order_used(), 2);
    assert_eq!(backed_off.entries(), &[(' ', 0.5), ('h', 0.5)]);
    // "z" is not even in the alphabet.
    assert_eq!(model.distribution(&['z', 't']).order_used(), 2);
    // Nothing of "q" was seen: the unigram distribution, by probability then symbol.
    let unigram = model.distribution(&['q']);
    assert_eq!(unigram.order_used(), 1);
    let expected: Vec<(char, f64)> = [
        (' ', 5),
        ('t', 5),
        ('a', 3),
        ('e', 2),
        ('h', 2),
        ('c', 1),
        ('m', 1),
        ('n', 1),
        ('o', 1),
        ('s', 1),
    ]
    .into_iter()
    .map(|(c, k)| (c, k as f64 / 22.0))
    .collect();
    assert_eq!(unigram.entries(), &expected[..]);
    // "at" was seen, followed by " " twice; "mat" ends the text.
    let after_at = model.distribution(&['a', 't']);
    assert_eq!(after_at.order_used(), 3);
    assert_eq!(after_at.entries(), &[(' ', 1.0)]);
    // A context that only ends the corpus has no followers: back off.
    assert_eq!(model.followers(&['a', 't']), Some(vec![(' ', 2)]));
    assert_eq!(model.followers(&['q']), Some(vec![]));
}

#[test]
fn word_counts_and_probabilities() {
    let model = WordModel::train(TEXT, 3).unwrap();
    let vocabulary = model.vocabulary();
    assert_eq!(vocabulary.words(), ["cat", "mat", "on", "sat", "the"]);
    let ids = |s: &str| vocabulary.encode(&words(s)).unwrap();
    let ngram = model.ngram();
    assert_eq!(ngram.count(&ids("the")), Some(2));
    assert_eq!(ngram.count(&ids("the cat")), Some(1));
    assert_eq!(ngram.count(&ids("on the mat")), Some(1));
    assert_eq!(ngram.count(&ids("cat the")), Some(0));

    let after_the = model.distribution("the");
    assert_eq!(after_the.order_used(), 2);
    assert_eq!(after_the.entries(), &[("cat", 0.5), ("mat", 0.5)]);
    assert_eq!(model.distribution("on the").entries(), &[("mat", 1.0)]);
    assert_eq!(model.distribution("on the").order_used(), 3);
    // "cat the" never occurs: back off to "the".
    assert_eq!(model.distribution("cat the"), after_the);
    // "mat" ends the text and "dog" is not in it: unigrams.
    for context in ["mat", "the dog", ""] {
        let unigram = model.distribution(context);
        assert_eq!(unigram.order_used(), 1, "{context:?}");
        let sixth = 1.0 / 6.0;
        assert_eq!(
            unigram.entries(),
            &[
                ("the", 2.0 / 6.0),
                ("cat", sixth),
                ("mat", sixth),
                ("on", sixth),
                ("sat", sixth)
            ]
        );
    }
}

#[test]
fn pick_walks_the_cumulative_distribution() {
    let model = letter_model(2);
    let pick = |u| model.pick(&['t'], u).unwrap();
    assert_eq!(pick(0.0), ' ');
    assert_eq!(pick(0.499), ' ');
    assert_eq!(pick(0.5), 'h');
    assert_eq!(pick(0.999_999), 'h');
    let distribution = model.distribution(&['q']);
    for i in 0..100 {
        let u = i as f64 / 100.0;
        assert_eq!(
            distribution.pick(u).unwrap(),
            model.pick(&['q'], u).unwrap()
        );
    }
}

#[test]
fn generation_is_reproducible_and_driven_by_u() {
    let model = letter_model(3);
    let start = ['t', 'h'];
    let first = model.generate(&start, 50, seeded_uniforms(1)).unwrap();
    assert_eq!(first.len(), 50);
    assert_eq!(
        first,
        model.generate(&start, 50, seeded_uniforms(1)).unwrap()
    );
    assert_ne!(
        first,
        model.generate(&start, 50, seeded_uniforms(2)).unwrap()
    );
    // Always the likeliest symbol: "th" → "e", "he" → " ", "e " → "c" (a tie with "m": the
    // smaller symbol), " c" → "a", "ca" → "t", "at" → " ", "t " → "o" (a tie with "s"),
    // " o" → "n", "on" → " ".
    let greedy: String = model
        .generate(&start, 9, || 0.0)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(greedy, "e cat on ");
    assert_eq!(model.generate(&start, 0, || 0.5).unwrap(), vec![]);
}

#[test]
fn training_does_not_depend_on_hash_order() {
    // Vocabularies hash with a fresh random seed each, so two trainings iterate differently.
    let text = "b a c a b d e a c b a d";
    let first = WordModel::train(text, 2).unwrap();
    let second = WordModel::train(text, 2).unwrap();
    assert_eq!(first.vocabulary(), second.vocabulary());
    let sentence = |m: &WordModel| m.sentence("a", 30, seeded_uniforms(5)).unwrap().join(" ");
    assert_eq!(sentence(&first), sentence(&second));
    // Symbols given in any order end up sorted, with ties between them broken by symbol.
    let reversed: Vec<u32> = vec![9, 7, 5, 3, 1];
    let model = Ngram::train(&reversed, 1).unwrap();
    assert_eq!(model.alphabet(), &[1, 3, 5, 7, 9]);
    let entries: Vec<u32> = model
        .distribution(&[])
        .entries()
        .iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(entries, [1, 3, 5, 7, 9]);
}

#[test]
fn vocabulary_maps_words_both_ways() {
    let vocabulary = Vocabulary::new(&words("The LORD's word, the lord's 'word'"));
    assert_eq!(vocabulary.words(), ["lord's", "the", "word"]);
    assert_eq!(vocabulary.id("word"), Some(2));
    assert_eq!(vocabulary.word(0), Some("lord's"));
    assert_eq!(vocabulary.word(3), None);
    assert_eq!(vocabulary.encode(&["the", "word"]), Ok(vec![1, 2]));
    assert_eq!(vocabulary.encode(&["the", "cat"]), Err("cat"));
    assert_eq!(vocabulary.len(), 3);
}

#[test]
fn letters_and_words_normalise_like_the_essay() {
    let text: String = letters("  Hello, World -- 42 times!").into_iter().collect();
    assert_eq!(text, " hello world times ");
    assert_eq!(
        words("It's the 'end'--of-it"),
        ["it's", "the", "end", "of", "it"]
    );
    assert!(letters("").is_empty());
    assert!(words("123 !").is_empty());
}
