//! The pick from a row's most likely tokens rather than the whole row: what a GPU sends back
//! after reducing its logits on the device (oneword-model's `candidates`), a few thousand
//! values instead of the vocabulary, so that a step of many streams moves kilobytes, not
//! megabytes, and the host's work per stream does not grow with the vocabulary.
//!
//! It is exact or it declines: the token, its rank and the top lists are those [`pick`] finds
//! in the whole row whenever every token they depend on is known to be listed (its logit above
//! `bound`, which no unlisted token exceeds), and `None` otherwise, when the caller picks from
//! the whole row instead. The raw log-probabilities and entropy come from the row's sums as the
//! device made them, in f32 (within ~1e-6 of the host's f64 sums).
//!
//! [`pick`]: super::pick

use std::cmp::Ordering;

use super::{top_positions, Pick, Seen, Shaped, Shaping};

/// A row's most likely tokens and its softmax sums, without the rest of the row.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidates {
    /// Token ids, in no particular order, and their logits.
    pub ids: Vec<u32>,
    pub logits: Vec<f32>,
    /// No token missing from `ids` has a logit above this; −∞ when every token is listed.
    pub bound: f32,
    /// The whole row's length.
    pub vocab: usize,
    /// log Σ exp(logit) over the whole row.
    pub log_sum_exp: f64,
    /// The raw distribution's entropy in nats.
    pub entropy: f32,
}

impl Candidates {
    /// Positions of the `n` best by `key` (highest first, ties by lower id), or `None` when one
    /// of them could be beaten or tied by an unlisted token (`key` of `bound` or more).
    fn top(&self, n: usize, key: &[f32], bound: f32) -> Option<Vec<u32>> {
        let order = |a: &u32, b: &u32| {
            let (a, b) = (*a as usize, *b as usize);
            key[b]
                .partial_cmp(&key[a])
                .unwrap_or(Ordering::Equal)
                .then(self.ids[a].cmp(&self.ids[b]))
        };
        let top = top_positions(key.len(), n, order);
        let listed_all = self.bound == f32::NEG_INFINITY;
        let sure = |&p: &u32| key[p as usize] > bound;
        (listed_all || (top.len() == n && top.iter().all(sure))).then_some(top)
    }

    /// Whether candidates can tell a pick under `shaping` from a row of `vocab` at all: greedy,
    /// or sampling from a top-k, with no logit bias, bans or penalties in effect. Where not, the
    /// pick needs the whole row.
    pub fn may_tell(shaping: &Shaping, seen: &Seen, vocab: usize) -> bool {
        let penalized = shaping.penalizes() && !seen.is_empty();
        let reshaped = !shaping.logit_bias.is_empty() || !shaping.banned.is_empty() || penalized;
        !reshaped && (shaping.temperature == 0.0 || shaping.top_k.is_some_and(|k| k < vocab))
    }

    /// Picks as [`super::pick`] does from the whole row, or `None` when these candidates cannot
    /// tell exactly: a shaping they cannot tell ([`Candidates::may_tell`]), a non-finite sum,
    /// or a token needed too close to `bound`.
    pub fn pick(&self, shaping: &Shaping, seen: &Seen, u: f64, top_n: usize) -> Option<Pick> {
        let lse = self.log_sum_exp;
        let finite = lse.is_finite() && self.entropy.is_finite() && !self.ids.is_empty();
        if !finite || !Self::may_tell(shaping, seen, self.vocab) {
            return None;
        }
        let raw_top = self.top(top_n.max(1), &self.logits, self.bound)?;
        let shaped = if shaping.temperature == 0.0 {
            Shaped::Greedy(self.ids[raw_top[0] as usize])
        } else {
            // Sampling over every token needs the whole row; over the top k, only the top k.
            let k = shaping.top_k.filter(|&k| k < self.vocab)?;
            let inv_t = 1.0 / shaping.temperature;
            let scaled: Vec<f32> = self.logits.iter().map(|&l| l * inv_t).collect();
            let kept = self.top(k, &scaled, self.bound * inv_t)?;
            Shaped::kept(
                kept.iter().map(|&p| self.ids[p as usize]).collect(),
                kept.iter().map(|&p| scaled[p as usize]).collect(),
                scaled[kept[0] as usize],
                shaping,
            )
        };
        let token = shaped.draw(u);
        let at = self.ids.iter().position(|&id| id == token)?;
        let t = self.logits[at];
        // Every token as likely or likelier is listed: the token is in the top-k or the top 1.
        let rank = 1 + self
            .ids
            .iter()
            .zip(&self.logits)
            .filter(|&(&id, &l)| l > t || (l == t && id < token))
            .count() as u32;
        let raw_logprob = |p: u32| (self.logits[p as usize] as f64 - lse) as f32;
        let raw_top_ids: Vec<u32> = raw_top
            .iter()
            .take(top_n)
            .map(|&p| self.ids[p as usize])
            .collect();
        Some(Pick {
            token,
            logprob: (t as f64 - lse) as f32,
            rank,
            shaped_logprob: shaped.logprob(token),
            raw_top: raw_top
                .iter()
                .take(top_n)
                .map(|&p| (self.ids[p as usize], raw_logprob(p)))
                .collect(),
            shaped_top: shaped.top(top_n, &raw_top_ids),
            entropy: self.entropy,
            shaped_entropy: shaped.entropy(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{pick, Masses};
    use super::*;

    /// A row as the device reduces it: every token of the `groups` groups of 64 with the highest
    /// maxima, and the sums over the whole row (here the host's own, so that every number of
    /// the two picks must be equal).
    fn reduce(row: &[f32], groups: usize) -> Candidates {
        let maxima: Vec<(f32, usize)> = row
            .chunks(64)
            .enumerate()
            .map(|(g, c)| (c.iter().copied().fold(f32::NEG_INFINITY, f32::max), g))
            .collect();
        let mut order = maxima.clone();
        order.sort_by(|a, b| b.0.total_cmp(&a.0));
        let kept = &order[..groups.min(order.len())];
        let ids: Vec<u32> = kept
            .iter()
            .flat_map(|&(_, g)| (g * 64..((g + 1) * 64).min(row.len())).map(|i| i as u32))
            .collect();
        let masses = Masses::of(row);
        Candidates {
            logits: ids.iter().map(|&i| row[i as usize]).collect(),
            ids,
            bound: if kept.len() == order.len() {
                f32::NEG_INFINITY
            } else {
                kept.last().map_or(f32::NEG_INFINITY, |k| k.0)
            },
            vocab: row.len(),
            log_sum_exp: masses.log_sum_exp(),
            entropy: masses.entropy(),
        }
    }

    /// A deterministic row of `n` logits; `levels` distinct values when given (ties abound).
    fn row(n: usize, seed: u32, levels: Option<u32>) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                let h = (i ^ seed).wrapping_mul(2_654_435_761).rotate_left(13) ^ seed;
                match levels {
                    Some(l) => (h % l) as f32 * 0.5 - 8.0,
                    None => (h % 100_000) as f32 / 5_000.0 - 10.0,
                }
            })
            .collect()
    }

    fn shapings() -> Vec<Shaping> {
        let mut all = vec![Shaping {
            temperature: 0.0,
            ..Shaping::default()
        }];
        for temperature in [0.7, 1.0, 1.3] {
            for top_k in [1, 5, 40, 200] {
                for (top_p, min_p, typical_p) in [
                    (None, None, None),
                    (Some(0.9), None, None),
                    (None, Some(0.05), None),
                    (Some(0.95), None, Some(0.8)),
                ] {
                    all.push(Shaping {
                        temperature,
                        top_k: Some(top_k),
                        top_p,
                        min_p,
                        typical_p,
                        ..Shaping::default()
                    });
                }
            }
        }
        all
    }

    #[test]
    fn a_pick_among_candidates_is_the_whole_row_s_pick_or_declines() {
        let seen = Seen::default();
        let (mut exact, mut declined) = (0, 0);
        for seed in 0..12 {
            let levels = [None, Some(40), Some(7)][seed as usize % 3];
            let row = row(3_000, seed, levels);
            for groups in [4, 16, 47] {
                let candidates = reduce(&row, groups);
                for shaping in shapings() {
                    for (u, top_n) in [(0.0, 0), (0.37, 5), (0.999, 20)] {
                        let got = candidates.pick(&shaping, &seen, u, top_n);
                        let want = pick(&row, &shaping, &seen, u, top_n);
                        match &got {
                            Some(got) => {
                                assert_eq!(got, &want, "{shaping:?}");
                                exact += 1;
                            }
                            None => declined += 1,
                        }
                        // Only the top `groups` tokens are sure to be listed; on a row without
                        // ties a pick that needs no more is always told.
                        let needed = shaping.top_k.unwrap_or(1).max(top_n);
                        if levels.is_none() && needed <= groups {
                            assert!(got.is_some(), "{shaping:?}, top_n {top_n}, {groups} groups");
                        }
                    }
                }
            }
        }
        assert!(
            exact > 1_000 && declined > 0,
            "{exact} exact, {declined} declined"
        );
    }

    #[test]
    fn shaping_over_the_whole_row_declines() {
        let row = row(1_000, 3, None);
        let candidates = reduce(&row, 4);
        let seen = Seen::default();
        let whole = [
            Shaping::default(),
            Shaping {
                top_p: Some(0.9),
                ..Shaping::default()
            },
            Shaping {
                temperature: 0.0,
                banned: vec![1],
                ..Shaping::default()
            },
            Shaping {
                temperature: 0.0,
                logit_bias: vec![(1, 5.0)],
                ..Shaping::default()
            },
        ];
        for shaping in whole {
            assert_eq!(
                candidates.pick(&shaping, &seen, 0.5, 3),
                None,
                "{shaping:?}"
            );
        }
        // Every token listed: even sampling over the whole row is exact.
        let all = reduce(&row, 1_000);
        let shaping = Shaping {
            top_k: Some(999),
            ..Shaping::default()
        };
        assert_eq!(
            all.pick(&shaping, &seen, 0.5, 3),
            Some(pick(&row, &shaping, &seen, 0.5, 3))
        );
    }
}
