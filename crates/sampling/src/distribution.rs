//! Turning one row of logits into the next token: the raw distribution (softmax), the shaped one
//! (temperature, top-k, top-p), and the pick by inverse CDF at the caller's uniform draw `u`.
//!
//! Everything here depends only on the row, the shaping and `u`, never on other sequences, so a
//! seeded request gives the same tokens whatever it was batched with. Sums run in f64 over the
//! whole vocabulary: the pick is exact, not from a truncated candidate list.

use std::cmp::Ordering;

use crate::penalties::{penalize, Seen};

/// How to shape the distribution before picking.
#[derive(Clone, Debug, PartialEq)]
pub struct Shaping {
    /// 0 = greedy; otherwise divides the logits. Finite and >= 0.
    pub temperature: f32,
    /// Keep only the k most likely tokens (k >= 1).
    pub top_k: Option<usize>,
    /// Keep the smallest most-likely set whose probability reaches p, in (0, 1].
    pub top_p: Option<f32>,
    /// Keep the tokens at least this share of the most likely one's probability, in [0, 1].
    pub min_p: Option<f32>,
    /// Keep the locally typical set of this mass, in (0, 1].
    pub typical_p: Option<f32>,
    /// Added to the logits of these ids first (ids below the vocabulary size).
    pub logit_bias: Vec<(u32, f32)>,
    /// Never picked: their logits become -inf first.
    pub banned: Vec<u32>,
    /// transformers' repetition penalty over every token seen, > 0; 1 = off (see [`Seen`]).
    pub repetition_penalty: f32,
    /// OpenAI's, per time a token was generated, in [-2, 2]; 0 = off.
    pub frequency_penalty: f32,
    /// OpenAI's, once for every token generated at all, in [-2, 2]; 0 = off.
    pub presence_penalty: f32,
}

impl Default for Shaping {
    fn default() -> Self {
        Shaping {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            min_p: None,
            typical_p: None,
            logit_bias: Vec::new(),
            banned: Vec::new(),
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
        }
    }
}

/// The picked token and what was asked about the distributions.
#[derive(Clone, Debug, PartialEq)]
pub struct Pick {
    pub token: u32,
    /// Log-probability in the raw distribution.
    pub logprob: f32,
    /// Rank in the raw distribution, 1 = most likely (ties: lower id first).
    pub rank: u32,
    /// Log-probability in the shaped distribution it was drawn from.
    pub shaped_logprob: f32,
    /// The `top_n` most likely tokens of the raw distribution with their log-probabilities.
    pub raw_top: Vec<(u32, f32)>,
    /// The same for the shaped distribution (fewer when shaping kept fewer tokens).
    pub shaped_top: Vec<(u32, f32)>,
    /// Entropy of the raw distribution in nats.
    pub entropy: f32,
    /// Entropy of the shaped distribution in nats (0 when greedy).
    pub shaped_entropy: f32,
}

/// Orders token ids by logit, highest first, ties by lower id, so every order here is total and
/// reproducible.
fn by_logit_desc(logits: &[f32]) -> impl Fn(&u32, &u32) -> Ordering + '_ {
    move |&a, &b| {
        logits[b as usize]
            .partial_cmp(&logits[a as usize])
            .unwrap_or(Ordering::Equal)
            .then(a.cmp(&b))
    }
}

/// Up to this many, [`top_ids`] keeps the best in one pass over the row.
const FEW: usize = 64;

/// The `n` highest-logit ids, sorted, in O(V + n log n).
fn top_ids(logits: &[f32], n: usize) -> Vec<u32> {
    top_positions(logits.len(), n, by_logit_desc(logits))
}

/// The first `n` of `len` positions in `order`, sorted, in O(len + n log n).
fn top_positions(len: usize, n: usize, order: impl Fn(&u32, &u32) -> Ordering) -> Vec<u32> {
    let n = n.min(len);
    if n <= FEW {
        return top_few(len, n, order);
    }
    let mut ids: Vec<u32> = (0..len as u32).collect();
    if n < ids.len() {
        ids.select_nth_unstable_by(n - 1, &order);
        ids.truncate(n);
    }
    ids.sort_unstable_by(&order);
    ids
}

/// [`top_positions`] for a short list: one pass that keeps the best `n` sorted. Almost every
/// position of a long row loses to the worst kept at once, so a pick (the top few, or just the
/// argmax) costs one comparison per id instead of a selection over all of them.
fn top_few(len: usize, n: usize, order: impl Fn(&u32, &u32) -> Ordering) -> Vec<u32> {
    let mut kept: Vec<u32> = Vec::with_capacity(n + 1);
    if n == 0 {
        return kept;
    }
    for id in 0..len as u32 {
        if kept.len() == n && order(&id, &kept[n - 1]) != Ordering::Less {
            continue;
        }
        let at = kept.partition_point(|k| order(k, &id) == Ordering::Less);
        kept.insert(at, id);
        kept.truncate(n);
    }
    kept
}

/// log Σ exp(x_i) over `values`, in f64.
fn log_sum_exp(values: &[f32], max: f32) -> f64 {
    let sum: f64 = values.iter().map(|&l| ((l - max) as f64).exp()).sum();
    max as f64 + sum.ln()
}

/// `e^x` for a logit minus its row's maximum (x ≤ 0), as Cephes' `expf` (within 2 ulp): x = n
/// ln 2 + r with |r| ≤ ln 2 / 2, a polynomial for e^r, and 2^n written into the exponent bits.
/// Below -87.3 (where f32 underflows) and for NaN it is 0, so a masked or broken logit gets no
/// mass. Plain arithmetic on one lane, so that loops over a row vectorize; `f32::exp` is a
/// library call per element and was most of a pick's time.
#[inline(always)]
fn exp_to_zero(x: f32) -> f32 {
    // Adding 1.5·2^23 rounds to an integer, which then sits in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let inside = x >= -87.3;
    let x = if inside { x.min(0.0) } else { 0.0 };
    let shifted = x * std::f32::consts::LOG2_E + MAGIC;
    let n = shifted - MAGIC;
    // ln 2 in two parts; n times the first (9 significant bits) is exact.
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4;
    for k in [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = p * r + k;
    }
    let p = p * r * r + r + 1.0;
    // The low bits of `shifted` hold n (≤ 0); moving them into the exponent field and adding the
    // bias makes 2^n.
    let two_n = f32::from_bits((shifted.to_bits() << 23).wrapping_add(127 << 23));
    if inside {
        p * two_n
    } else {
        0.0
    }
}

/// `exp(x_i - max)` for a whole row, computed once and reused by every sum over it (the
/// exponentials dominate the cost of a pick), with their total in f64. NaN logits get no mass.
struct Masses {
    max: f32,
    exps: Vec<f32>,
    total: f64,
    /// Σ exp(x_i - max) · x_i, for the entropy, summed in the same pass.
    weighted: f64,
}

impl Masses {
    fn of(row: &[f32]) -> Self {
        // `f32::max` passes over NaN, so a NaN logit never becomes the maximum.
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = row.iter().map(|&l| exp_to_zero(l - max)).collect();
        let (mut total, mut weighted) = (0f64, 0f64);
        // Runs of 256 summed in 8 independent f32 lanes (which the compiler vectorizes), each
        // run's sums then added in f64, so rounding stays that of 256-term sums.
        for (logits, exps) in row.chunks(256).zip(exps.chunks(256)) {
            let (mut t, mut w) = ([0f32; 8], [0f32; 8]);
            for (l, e) in logits.chunks(8).zip(exps.chunks(8)) {
                for j in 0..e.len() {
                    t[j] += e[j];
                    // No mass, no term: a NaN or infinite logit must not poison the sum.
                    w[j] += if e[j] > 0.0 { e[j] * l[j] } else { 0.0 };
                }
            }
            total += t.iter().map(|&v| v as f64).sum::<f64>();
            weighted += w.iter().map(|&v| v as f64).sum::<f64>();
        }
        Masses {
            max,
            exps,
            total,
            weighted,
        }
    }

    /// log Σ exp(x_i).
    fn log_sum_exp(&self) -> f64 {
        self.max as f64 + self.total.ln()
    }

    /// Entropy in nats of the softmax of the row: H = lse - E[x], with E[x] = weighted / total.
    fn entropy(&self) -> f32 {
        (self.log_sum_exp() - self.weighted / self.total).max(0.0) as f32
    }
}

/// Picks the next token from `logits` (one row, the whole vocabulary).
///
/// `u` in [0, 1) is the caller's uniform draw. The shaped distribution is walked in a fixed order
/// (by token id when nothing is cut away, else by probability, highest first) and the token whose
/// cumulative mass first exceeds `u` is taken. At temperature 0 the most likely token is taken and
/// `u` is unused. `seen` is what the penalties count (the sequence's tokens so far).
pub fn pick(logits: &[f32], shaping: &Shaping, seen: &Seen, u: f64, top_n: usize) -> Pick {
    describe(logits, shaping, seen, |shaped| shaped.draw(u), top_n)
}

/// What the distribution says about a token that is given rather than drawn (teacher forcing,
/// scoring a text): the same numbers [`pick`] reports, for `token`. Its shaped log-probability
/// is `-inf` when the shaping cut it away.
pub fn judge(logits: &[f32], shaping: &Shaping, seen: &Seen, token: u32, top_n: usize) -> Pick {
    describe(logits, shaping, seen, |_| token, top_n)
}

/// The raw distribution's numbers, the shaped distribution, and the token `choose` takes in it.
fn describe(
    logits: &[f32],
    shaping: &Shaping,
    seen: &Seen,
    choose: impl FnOnce(&Shaped) -> u32,
    top_n: usize,
) -> Pick {
    assert!(!logits.is_empty(), "an empty logit row is a bug");
    // NaN logits (a broken checkpoint) get no mass and must not poison the comparisons below.
    let raw = Masses::of(logits);
    let lse = raw.log_sum_exp();
    let raw_logprob = |i: u32| (logits[i as usize] as f64 - lse) as f32;
    let entropy = raw.entropy();
    let raw_top_ids = top_ids(logits, top_n);
    let raw_top = raw_top_ids.iter().map(|&i| (i, raw_logprob(i))).collect();

    // Bias, penalties and bans are shaping: the raw numbers above describe the model alone.
    // They come in transformers' order: the bias, the repetition penalty, then the bans.
    let penalized = shaping.penalizes() && !seen.is_empty();
    let as_raw = shaping.logit_bias.is_empty() && shaping.banned.is_empty() && !penalized;
    let biased;
    let (shaped_logits, shaped_top_ids) = if as_raw {
        (logits, raw_top_ids.as_slice())
    } else {
        let mut row = logits.to_vec();
        for &(id, bias) in &shaping.logit_bias {
            row[id as usize] += bias;
        }
        if penalized {
            penalize(&mut row, shaping, seen);
        }
        for &id in &shaping.banned {
            row[id as usize] = f32::NEG_INFINITY;
        }
        biased = (top_ids(&row, top_n), row);
        (biased.1.as_slice(), biased.0.as_slice())
    };
    // At temperature 1 with the row as it came the raw masses are the shaped ones.
    let unchanged = shaping.temperature == 1.0 && as_raw;
    let shaped = Shaped::new(shaped_logits, shaping, unchanged.then_some(raw));
    let token = choose(&shaped);
    let t = logits[token as usize];
    let rank = 1 + logits
        .iter()
        .enumerate()
        .filter(|&(j, &l)| l > t || (l == t && (j as u32) < token))
        .count() as u32;
    Pick {
        token,
        logprob: raw_logprob(token),
        rank,
        shaped_logprob: shaped.logprob(token),
        raw_top,
        shaped_top: shaped.top(top_n, shaped_top_ids),
        entropy,
        shaped_entropy: shaped.entropy(),
    }
}

/// The distribution a sampler draws from: temperature, then top-k, then top-p (over the top-k
/// renormalised, as transformers does). At temperature 0 all the mass is on the most likely
/// token.
enum Shaped {
    Greedy(u32),
    /// Nothing cut away: every id, walked in id order (which needs no sort).
    Whole {
        /// The logits divided by the temperature.
        scaled: Vec<f32>,
        /// `exp(scaled - max)` of every id.
        exps: Vec<f32>,
        total: f64,
        lse: f64,
        /// In nats.
        entropy: f32,
    },
    /// The whole row sampled, known from its candidates (a GPU's, see [`Candidates`]): the token
    /// drawn, the listed ids with their scaled logits, and the row's sums at the temperature.
    Listed {
        token: u32,
        ids: Vec<u32>,
        scaled: Vec<f32>,
        lse: f64,
        entropy: f32,
    },
    /// The ids kept, most likely first, with their scaled logits and masses in that order.
    Kept {
        kept: Vec<u32>,
        scaled: Vec<f32>,
        exps: Vec<f32>,
        total: f64,
        lse: f64,
        entropy: f32,
    },
}

impl Shaped {
    /// `masses` are those of `logits` at this temperature when the caller already has them.
    fn new(logits: &[f32], shaping: &Shaping, masses: Option<Masses>) -> Self {
        if shaping.temperature == 0.0 {
            return Shaped::Greedy(top_ids(logits, 1)[0]);
        }
        let inv_t = 1.0 / shaping.temperature;
        let scaled: Vec<f32> = logits.iter().map(|&l| l * inv_t).collect();
        if !shaping.truncates(scaled.len()) {
            let masses = masses.unwrap_or_else(|| Masses::of(&scaled));
            return Shaped::Whole {
                entropy: masses.entropy(),
                lse: masses.log_sum_exp(),
                total: masses.total,
                exps: masses.exps,
                scaled,
            };
        }
        let max = scaled
            .iter()
            .copied()
            .filter(|l| !l.is_nan())
            .fold(f32::NEG_INFINITY, f32::max);
        let kept = top_ids(&scaled, shaping.top_k.unwrap_or(scaled.len()));
        let kept_scaled = kept.iter().map(|&i| scaled[i as usize]).collect();
        Shaped::kept(kept, kept_scaled, max, shaping)
    }

    /// The ids of a top-k (or of the whole row), most likely first, with their scaled logits,
    /// cut further by top-p, min-p and typical-p, and weighed. `max` is the row's largest scaled
    /// logit.
    fn kept(mut kept: Vec<u32>, mut scaled: Vec<f32>, max: f32, shaping: &Shaping) -> Self {
        fn keep_first(kept: &mut Vec<u32>, scaled: &mut Vec<f32>, n: usize) {
            kept.truncate(n.max(1));
            scaled.truncate(n.max(1));
        }
        if let Some(p) = shaping.top_p.filter(|&p| p < 1.0) {
            let lse = log_sum_exp(&scaled, max);
            let mut cumulative = 0.0f64;
            let n = scaled
                .iter()
                .take_while(|&&s| {
                    let before = cumulative;
                    cumulative += (s as f64 - lse).exp();
                    before < p as f64
                })
                .count();
            keep_first(&mut kept, &mut scaled, n);
        }
        if let Some(min_p) = shaping.min_p.filter(|&p| p > 0.0) {
            // p_i >= min_p · p_max is scaled_i - max >= ln(min_p), whatever the renormalisation.
            let floor = (min_p as f64).ln();
            let n = scaled
                .iter()
                .take_while(|&&s| (s - max) as f64 >= floor)
                .count();
            keep_first(&mut kept, &mut scaled, n);
        }
        if let Some(mass) = shaping.typical_p.filter(|&p| p < 1.0) {
            let typical = typical(&scaled, mass as f64);
            kept = typical.iter().map(|&j| kept[j]).collect();
            scaled = typical.iter().map(|&j| scaled[j]).collect();
        }
        let exps: Vec<f32> = scaled.iter().map(|&s| (s - max).exp()).collect();
        let total: f64 = exps.iter().map(|&e| e as f64).sum();
        let lse = log_sum_exp(&scaled, max);
        let weighted: f64 = exps
            .iter()
            .zip(&scaled)
            .filter(|(&e, _)| e > 0.0)
            .map(|(&e, &s)| e as f64 * s as f64)
            .sum();
        Shaped::Kept {
            entropy: (lse - weighted / total).max(0.0) as f32,
            lse,
            total,
            exps,
            kept,
            scaled,
        }
    }

    /// The token at `u` by inverse CDF.
    fn draw(&self, u: f64) -> u32 {
        match self {
            Shaped::Greedy(best) => *best,
            Shaped::Whole { exps, total, .. } => inverse_cdf(exps, u * total),
            Shaped::Listed { token, .. } => *token,
            Shaped::Kept {
                kept, exps, total, ..
            } => kept[inverse_cdf(exps, u * total) as usize],
        }
    }

    /// `id`'s log-probability; `-inf` when it was cut away.
    fn logprob(&self, id: u32) -> f32 {
        match self {
            Shaped::Greedy(best) if *best == id => 0.0,
            Shaped::Greedy(_) => f32::NEG_INFINITY,
            Shaped::Whole { scaled, lse, .. } => (scaled[id as usize] as f64 - lse) as f32,
            // Only listed ids are asked about: the token and the raw top, both above the bound.
            Shaped::Listed {
                ids, scaled, lse, ..
            } => match ids.iter().position(|&k| k == id) {
                Some(j) => (scaled[j] as f64 - lse) as f32,
                None => f32::NAN,
            },
            Shaped::Kept {
                kept, scaled, lse, ..
            } => match kept.iter().position(|&k| k == id) {
                Some(j) => (scaled[j] as f64 - lse) as f32,
                None => f32::NEG_INFINITY,
            },
        }
    }

    /// The `n` most likely ids with their log-probabilities. `top_ids_desc` are the most likely
    /// ids before the temperature, which keeps their order.
    fn top(&self, n: usize, top_ids_desc: &[u32]) -> Vec<(u32, f32)> {
        let ids = match self {
            Shaped::Greedy(best) => return (n > 0).then_some((*best, 0.0)).into_iter().collect(),
            Shaped::Kept { kept, .. } => kept.as_slice(),
            Shaped::Whole { .. } | Shaped::Listed { .. } => top_ids_desc,
        };
        ids.iter().take(n).map(|&i| (i, self.logprob(i))).collect()
    }

    /// Entropy in nats.
    fn entropy(&self) -> f32 {
        match self {
            Shaped::Greedy(_) => 0.0,
            Shaped::Whole { entropy, .. }
            | Shaped::Listed { entropy, .. }
            | Shaped::Kept { entropy, .. } => *entropy,
        }
    }
}

impl Shaping {
    /// Whether it cuts tokens away from a row of `vocab` (top-k, top-p, min-p, typical-p).
    fn truncates(&self, vocab: usize) -> bool {
        self.top_k.is_some_and(|k| k < vocab)
            || self.top_p.is_some_and(|p| p < 1.0)
            || self.min_p.is_some_and(|p| p > 0.0)
            || self.typical_p.is_some_and(|p| p < 1.0)
    }
}

/// The locally typical set of the kept ids (most likely first), as transformers'
/// `TypicalLogitsWarper` cuts it: ids sorted by how far their surprise −log p is from the
/// entropy, taken while the mass before them is below `mass`, and every id as close as the last
/// one taken. Takes their scaled logits, returns the positions kept, in order.
fn typical(scaled: &[f32], mass: f64) -> Vec<usize> {
    let lse = log_sum_exp(scaled, scaled[0]);
    let logp: Vec<f64> = scaled.iter().map(|&s| s as f64 - lse).collect();
    let entropy: f64 = -logp.iter().map(|&l| l.exp() * l).sum::<f64>();
    let shifted: Vec<f64> = logp.iter().map(|&l| (-l - entropy).abs()).collect();
    let mut order: Vec<usize> = (0..scaled.len()).collect();
    order.sort_by(|&a, &b| shifted[a].total_cmp(&shifted[b]).then(a.cmp(&b)));
    let mut cumulative = 0.0;
    let below = order
        .iter()
        .take_while(|&&j| {
            cumulative += logp[j].exp();
            cumulative < mass
        })
        .count();
    let threshold = shifted[order[below.min(scaled.len() - 1)]];
    let typical: Vec<usize> = (0..scaled.len())
        .filter(|&j| shifted[j] <= threshold)
        .collect();
    // A row of NaN logits (a broken checkpoint) compares with nothing: keep the most likely id,
    // as transformers keeps `min_tokens_to_keep`, rather than nothing to draw from.
    if typical.is_empty() {
        vec![0]
    } else {
        typical
    }
}

/// The first index whose cumulative mass exceeds `target` (the last one with mass if rounding
/// leaves `target` beyond the total).
fn inverse_cdf(masses: &[f32], target: f64) -> u32 {
    let mut cumulative = 0.0f64;
    let mut last = 0;
    for (i, &mass) in masses.iter().enumerate() {
        if mass > 0.0 {
            last = i as u32;
            cumulative += mass as f64;
            if cumulative > target {
                return i as u32;
            }
        }
    }
    last
}

mod candidates;
#[cfg(test)]
mod tests;

pub use candidates::Candidates;
