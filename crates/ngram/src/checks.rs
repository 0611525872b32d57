//! Properties of the n-gram counter, shared by the property tests (`cargo test`) and the fuzz
//! targets (`make fuzz`). Each panics when its property fails.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;

use crate::{seeded_uniforms, Error, LetterModel, Ngram, WordModel, MAX_ORDER};

/// Training on any sequence and order either refuses the order or an empty sequence, or gives
/// counts equal to counting every k-gram one by one (k = 1..=n), followers in the documented
/// order whose totals are the context's own count (less one at the very end), distributions
/// that sum to 1, and picks that agree with the distribution.
pub fn counts_match<S: Copy + Eq + Hash + Ord + Debug>(sequence: &[S], n: usize, u: f64) {
    let model = match Ngram::train(sequence, n) {
        Err(Error::OrderOutOfRange(got)) => {
            return assert!(got == n && !(1..=MAX_ORDER).contains(&n))
        }
        Err(Error::EmptyCorpus) => return assert!(sequence.is_empty()),
        Err(e) => panic!("training on {sequence:?} with n = {n} failed: {e}"),
        Ok(model) => model,
    };
    assert!((1..=MAX_ORDER).contains(&n) && !sequence.is_empty());
    assert_eq!((model.order(), model.corpus_len()), (n, sequence.len()));
    let mut alphabet = sequence.to_vec();
    alphabet.sort_unstable();
    alphabet.dedup();
    assert_eq!(model.alphabet(), alphabet);

    let mut counted: HashMap<&[S], u64> = HashMap::new();
    for k in 1..=n {
        for gram in sequence.windows(k) {
            *counted.entry(gram).or_default() += 1;
        }
    }
    assert_eq!(model.count(&[]), Some(sequence.len() as u64));
    for (&gram, &count) in &counted {
        assert_eq!(model.count(gram), Some(count), "count of {gram:?}");
    }
    // Every gram is a context and the symbol that followed it.
    let mut after: HashMap<&[S], Vec<(S, u64)>> = HashMap::new();
    for (&gram, &count) in &counted {
        let (last, context) = gram.split_last().expect("grams are not empty");
        after.entry(context).or_default().push((*last, count));
    }
    let mut contexts: Vec<&[S]> = vec![&[]];
    contexts.extend(counted.keys().filter(|g| g.len() < n));
    for context in contexts {
        let followers = model
            .followers(context)
            .expect("contexts shorter than n are counted");
        let mut expected = after.get(context).cloned().unwrap_or_default();
        expected.sort_by_key(|&(s, c)| (std::cmp::Reverse(c), s));
        assert_eq!(followers, expected, "followers of {context:?}");
        let occurrences = model.count(context).expect("context is counted");
        // The empty context precedes every symbol; any other one is followed by nothing once
        // it ends the sequence.
        let at_end = (!context.is_empty() && sequence.ends_with(context)) as u64;
        let total: u64 = followers.iter().map(|f| f.1).sum();
        assert_eq!(total, occurrences - at_end, "total after {context:?}");

        let distribution = model.distribution(context);
        let sum: f64 = distribution.entries().iter().map(|e| e.1).sum();
        assert!(
            (sum - 1.0).abs() < 1e-9,
            "{context:?}: probabilities sum to {sum}"
        );
        if !followers.is_empty() {
            assert_eq!(distribution.order_used(), context.len() + 1);
        }
        let picked = model.pick(context, u).expect("u is in [0, 1)");
        assert_eq!(distribution.pick(u).expect("u is in [0, 1)"), picked);
        assert!(distribution.probability(picked) > 0.0);
    }
    assert_eq!(model.count(&vec![sequence[0]; n + 1]), None);
    assert!(model.pick(&[], 1.0).is_err() && model.pick(&[], f64::NAN).is_err());
}

/// The essay's letter and word models train on any text that has a letter a–z (and refuse any
/// other with [`Error::NoLetters`]); their random words and sentences never fail.
pub fn text_models_work(text: &str, n: usize, seed: u64) {
    let n = n % MAX_ORDER + 1;
    let has_letter = text.bytes().any(|b| b.is_ascii_alphabetic());
    match LetterModel::train(text, n) {
        Ok(model) => {
            let words = model
                .random_words(3, seeded_uniforms(seed))
                .expect("random words");
            assert_eq!(words.len(), 3);
            assert!(words.iter().all(|w| !w.is_empty() && !w.contains(' ')));
        }
        Err(Error::NoLetters) => assert!(!has_letter, "{text:?} has letters"),
        Err(e) => panic!("letter model of {text:?}: {e}"),
    }
    match WordModel::train(text, n) {
        Ok(model) => {
            let start = crate::words(text).pop().expect("a model has words");
            let sentence = model
                .sentence(&start, 4, seeded_uniforms(seed))
                .expect("a sentence from a word of the corpus");
            assert_eq!(sentence.len(), crate::words(&start).len() + 4);
        }
        Err(Error::NoLetters) => assert!(!has_letter, "{text:?} has letters"),
        Err(e) => panic!("word model of {text:?}: {e}"),
    }
}
