//! The n-gram model over any symbol type: counts, maximum-likelihood probabilities with
//! backoff, and inverse-CDF sampling.

use std::fmt;
use std::hash::Hash;

use crate::count::{Counts, Table};
use crate::{Error, Result, MAX_LEN, MAX_ORDER};

/// The probabilities of the next symbol after a context.
#[derive(Clone, Debug, PartialEq)]
pub struct Distribution<S> {
    order_used: usize,
    entries: Vec<(S, f64)>,
}

impl<S: Copy + PartialEq> Distribution<S> {
    /// The order of the counts the probabilities come from: 1 + the length of the context that
    /// was used. It is below n when the corpus never showed the last n − 1 symbols and the model
    /// backed off to a shorter suffix; 1 is the unigram distribution.
    pub fn order_used(&self) -> usize {
        self.order_used
    }

    /// Every symbol seen after the context with its probability (a count ratio), by probability
    /// descending, then symbol ascending. Never empty; the probabilities sum to 1 (up to
    /// rounding).
    pub fn entries(&self) -> &[(S, f64)] {
        &self.entries
    }

    /// The probability of `symbol`; 0 for a symbol never seen after the context.
    pub fn probability(&self, symbol: S) -> f64 {
        self.entries
            .iter()
            .find(|(s, _)| *s == symbol)
            .map_or(0.0, |&(_, p)| p)
    }

    /// The symbol at `u` on the cumulative distribution of [`entries`](Self::entries) in their
    /// order: the first whose cumulative probability exceeds `u` (the last one if rounding leaves
    /// the total just under `u`). `u` must be in `[0, 1)`. Gives the same symbol as
    /// [`Ngram::pick`] on the same context.
    pub fn pick(&self, u: f64) -> Result<S> {
        check_uniform(u)?;
        inverse_cdf(self.entries.iter().copied(), u).ok_or(Error::EmptyCorpus)
    }

    /// The distribution without `symbol`, renormalised; empty if `symbol` was all there was.
    pub(crate) fn excluding(&self, symbol: S) -> Self {
        let rest: f64 = self
            .entries
            .iter()
            .filter(|(s, _)| *s != symbol)
            .map(|&(_, p)| p)
            .sum();
        let entries = self
            .entries
            .iter()
            .filter(|(s, _)| *s != symbol)
            .map(|&(s, p)| (s, p / rest))
            .collect();
        Distribution {
            order_used: self.order_used,
            entries,
        }
    }

    /// The same distribution over other symbols; `f` must keep their order for the entries to
    /// stay sorted.
    pub(crate) fn map<T>(self, mut f: impl FnMut(S) -> T) -> Distribution<T> {
        Distribution {
            order_used: self.order_used,
            entries: self.entries.into_iter().map(|(s, p)| (f(s), p)).collect(),
        }
    }
}

/// An n-gram model counted from one sequence of symbols (`char`s for letters, `u32` ids for
/// words or tokens).
#[derive(Clone)]
pub struct Ngram<S> {
    n: usize,
    corpus_len: usize,
    /// The distinct symbols, ascending; a symbol's id is its index here, so ids sort like symbols.
    alphabet: Vec<S>,
    /// Bits of one digit of a packed key. A digit is an id + 1; 0 stands for "past the end".
    bits: u32,
    /// `tables[c]`: the contexts of length c (0..n) and what followed them.
    tables: Vec<Table>,
}

impl<S: Copy + Eq + Hash + Ord> Ngram<S> {
    /// Counts every k-gram of `sequence` for k = 1..=`n` (the shorter ones are what backoff
    /// uses). `n` must be in `1..=`[`MAX_ORDER`] and `sequence` non-empty; order `n` supports
    /// 2^(128 / n) − 1 distinct symbols (2,097,151 for n = 6).
    pub fn train(sequence: &[S], n: usize) -> Result<Self> {
        check_order(n)?;
        if sequence.is_empty() {
            return Err(Error::EmptyCorpus);
        }
        let Counts {
            alphabet,
            bits,
            tables,
        } = Counts::of(sequence, n)?;
        Ok(Ngram {
            n,
            corpus_len: sequence.len(),
            alphabet,
            bits,
            tables,
        })
    }

    /// The n the model was trained with: the longest k-gram counted.
    pub fn order(&self) -> usize {
        self.n
    }

    /// The length of the sequence the model was trained on.
    pub fn corpus_len(&self) -> usize {
        self.corpus_len
    }

    /// The distinct symbols of the corpus, ascending.
    pub fn alphabet(&self) -> &[S] {
        &self.alphabet
    }

    /// How often `gram` occurs in the corpus (overlapping occurrences count). The empty gram
    /// occurs [`corpus_len`](Self::corpus_len) times. `None` if `gram` is longer than n, since
    /// such grams were not counted.
    pub fn count(&self, gram: &[S]) -> Option<u64> {
        if gram.len() > self.n {
            return None;
        }
        let Some((last, context)) = gram.split_last() else {
            return Some(self.corpus_len as u64);
        };
        let (Some(id), Some((followers, _))) = (self.id(last), self.followers_of(context)) else {
            return Some(0);
        };
        let count = followers.iter().find(|&&(f, _)| f == id);
        Some(count.map_or(0, |&(_, count)| count))
    }

    /// The symbols that followed exactly `context` in the corpus, with their counts, by count
    /// descending then symbol ascending; empty if `context` never occurred (or only at the very
    /// end). No backoff. `None` if `context` is n symbols or longer, since no longer grams were
    /// counted.
    pub fn followers(&self, context: &[S]) -> Option<Vec<(S, u64)>> {
        if context.len() >= self.n {
            return None;
        }
        let followers = self.followers_of(context).map_or(&[][..], |(f, _)| f);
        Some(
            followers
                .iter()
                .map(|&(id, count)| (self.alphabet[id as usize], count))
                .collect(),
        )
    }

    /// P(next symbol | the last n − 1 symbols of `context`) by maximum likelihood (count ratios).
    /// If the corpus never showed that context followed by anything, the longest suffix of it
    /// that it did show is used instead, down to the empty context (the unigram distribution);
    /// [`Distribution::order_used`] says which.
    pub fn distribution(&self, context: &[S]) -> Distribution<S> {
        let (order_used, followers, total) = self.backoff(context);
        let entries = followers
            .iter()
            .map(|&(id, count)| (self.alphabet[id as usize], count as f64 / total as f64))
            .collect();
        Distribution {
            order_used,
            entries,
        }
    }

    /// The next symbol after `context` at `u` (in `[0, 1)`) on the inverse CDF of
    /// [`distribution`](Self::distribution)`(context)`, without building it.
    pub fn pick(&self, context: &[S], u: f64) -> Result<S> {
        check_uniform(u)?;
        let (_, followers, total) = self.backoff(context);
        let entries = followers
            .iter()
            .map(|&(id, count)| (self.alphabet[id as usize], count as f64 / total as f64));
        inverse_cdf(entries, u).ok_or(Error::EmptyCorpus)
    }

    /// `len` symbols (at most [`MAX_LEN`]) continuing `start`, each [`pick`](Self::pick)ed after
    /// the ones before it at the next number of `u_source`. Returns only the new symbols.
    pub fn generate(
        &self,
        start: &[S],
        len: usize,
        mut u_source: impl FnMut() -> f64,
    ) -> Result<Vec<S>> {
        check_len("len", len)?;
        let keep = self.n - 1;
        let mut context = start[start.len().saturating_sub(keep)..].to_vec();
        let mut generated = Vec::with_capacity(len);
        for _ in 0..len {
            let next = self.pick(&context, u_source())?;
            generated.push(next);
            context.push(next);
            if context.len() > keep {
                context.remove(0);
            }
        }
        Ok(generated)
    }

    fn id(&self, symbol: &S) -> Option<u32> {
        self.alphabet.binary_search(symbol).ok().map(|i| i as u32)
    }

    /// The packed key of `symbols`, or `None` if one of them is not in the alphabet.
    fn key(&self, symbols: &[S]) -> Option<u128> {
        symbols.iter().try_fold(0u128, |key, symbol| {
            Some((key << self.bits) | (u128::from(self.id(symbol)?) + 1))
        })
    }

    /// The followers of exactly `context` (shorter than n) and their total count.
    fn followers_of(&self, context: &[S]) -> Option<(&[(u32, u64)], u64)> {
        let table = self.tables.get(context.len())?;
        let i = table.contexts.binary_search(&self.key(context)?).ok()?;
        Some((
            &table.followers[table.starts[i]..table.starts[i + 1]],
            table.totals[i],
        ))
    }

    /// The followers of the longest suffix of `context` (at most n − 1 symbols) that has any,
    /// their total, and the order that is.
    fn backoff(&self, context: &[S]) -> (usize, &[(u32, u64)], u64) {
        let longest = context.len().min(self.n - 1);
        for c in (1..=longest).rev() {
            if let Some((followers, total)) = self.followers_of(&context[context.len() - c..]) {
                return (c + 1, followers, total);
            }
        }
        // The empty context precedes every symbol, and training refuses an empty corpus.
        let unigrams = &self.tables[0];
        (1, &unigrams.followers, unigrams.totals[0])
    }
}

impl<S> fmt::Debug for Ngram<S> {
    /// A summary: the tables themselves run to hundreds of thousands of entries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let contexts: Vec<usize> = self.tables.iter().map(|t| t.contexts.len()).collect();
        f.debug_struct("Ngram")
            .field("n", &self.n)
            .field("corpus_len", &self.corpus_len)
            .field("alphabet_len", &self.alphabet.len())
            .field("contexts_by_length", &contexts)
            .finish()
    }
}

pub(crate) fn check_order(n: usize) -> Result<()> {
    if (1..=MAX_ORDER).contains(&n) {
        Ok(())
    } else {
        Err(Error::OrderOutOfRange(n))
    }
}

pub(crate) fn check_len(field: &'static str, value: usize) -> Result<()> {
    if value <= MAX_LEN {
        Ok(())
    } else {
        Err(Error::LengthOutOfRange { field, value })
    }
}

fn check_uniform(u: f64) -> Result<()> {
    // `contains` is false for NaN.
    if (0.0..1.0).contains(&u) {
        Ok(())
    } else {
        Err(Error::UniformOutOfRange(u))
    }
}

/// The first symbol whose cumulative probability exceeds `u`, or the last one when rounding
/// leaves the sum at or below `u`; `None` only for no entries.
fn inverse_cdf<S>(entries: impl Iterator<Item = (S, f64)>, u: f64) -> Option<S> {
    let mut cumulative = 0.0;
    let mut last = None;
    for (symbol, p) in entries {
        cumulative += p;
        if u < cumulative {
            return Some(symbol);
        }
        last = Some(symbol);
    }
    last
}
