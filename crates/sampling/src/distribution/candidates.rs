//! The pick from a row's most likely tokens rather than the whole row: what a GPU sends back
//! after reducing its logits on the device (oneword-model's `candidates`), a few thousand
//! values instead of the vocabulary, so that a step of many streams moves kilobytes, not
//! megabytes, and the host's work per stream does not grow with the vocabulary.
//!
//! It is exact or it declines: the token, its rank and the top lists are those [`pick`] finds
//! in the whole row whenever every token they depend on is known to be listed (its logit above
//! `bound`, which no unlisted token exceeds), and `None` otherwise, when the caller picks from
//! the whole row instead. The raw log-probabilities and entropy come from the row's sums as the
//! device made them, in f32 (within ~1e-6 of the host's f64 sums). Where a nucleus ends, and
//! where a draw from the whole row lands (walked in id order, as the host walks it), come from
//! the row's masses at the pick's temperature in groups of ids, also the device's: a cut or a
//! draw within [`near`] a boundary declines rather than guess.
//!
//! [`pick`]: super::pick

use std::borrow::Cow;
use std::cmp::Ordering;

use super::{exp_to_zero, top_positions, Pick, Seen, Shaped, Shaping};

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
    /// The temperature `group_masses` and `weighted_mass` were taken at: the pick's, where it
    /// samples the whole row or cuts a nucleus from it.
    pub temperature: f32,
    /// Σ exp(s − max) over each run of `group` consecutive ids (the last one shorter), with
    /// s = logit / temperature and `max` the row's largest s, summed on the device in f32: their
    /// total in f64 is the row's mass at that temperature to within ~1e-5 of itself
    /// (see [`near`]), and their running total where the host's walk in id order is.
    pub group_masses: Vec<f32>,
    pub group: usize,
    /// Σ exp(s − max) · (s − max) over the row, for the entropy at that temperature.
    pub weighted_mass: f32,
}

/// How close, as a share of the row's mass, a cumulative mass may come to where a nucleus ends or
/// to the sampled point before the candidates decline to tell: three times the worst rounding
/// between the device's sums and the host's, in f32 roundings. Both compute the same f32
/// differences s − max; then the device's `exp` (2 ulp) and its sum over a group (at most one
/// rounding per term) against the host's `exp` (2 ulp) and its f32 runs of 32 terms (a nucleus's
/// sum is f64), for the total and for the prefix a draw is walked from: 2 · (group + 2) + 34.
/// 3.0e-5 for GPT-2's groups of 64; the sums of a GPU's tree reductions are far closer.
fn near(group: usize) -> f64 {
    let roundings = 2 * (group + 2) + 34;
    3.0 * roundings as f64 * f64::from(f32::EPSILON) / 2.0
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
    /// or sampling from the whole row, a top-k, a nucleus (top-p) or a min-p cut, with no logit
    /// bias, bans, penalties or typical set of the whole row in effect. Where not, the
    /// pick needs the whole row.
    pub fn may_tell(shaping: &Shaping, seen: &Seen, vocab: usize) -> bool {
        let penalized = shaping.penalizes() && !seen.is_empty();
        let reshaped = !shaping.logit_bias.is_empty() || !shaping.banned.is_empty() || penalized;
        let cut = shaping.top_k.is_some_and(|k| k < vocab)
            || shaping.top_p.is_some_and(|p| p < 1.0)
            || shaping.min_p.is_some_and(|p| p > 0.0);
        // A typical set of the whole row is ordered by every token's distance from the entropy.
        let typical_of_all = shaping.typical_p.is_some_and(|p| p < 1.0) && !cut;
        !reshaped && (shaping.temperature == 0.0 || !typical_of_all)
    }

    /// The row's mass at `shaping`'s temperature, Σ exp(s − max), from the groups' masses; `None`
    /// where they were taken at another temperature or are not a positive number.
    fn mass_at(&self, shaping: &Shaping) -> Option<f64> {
        if self.temperature != shaping.temperature {
            return None;
        }
        let total: f64 = self.group_masses.iter().map(|&m| m as f64).sum();
        (total > 0.0 && total.is_finite()).then_some(total)
    }

    /// Sampling the whole row: the token the host's walk in id order reaches at `u`, from the
    /// groups' masses up to the drawn group and that group's listed logits; `None` when that group
    /// is not listed or the walk passes within [`near`] the point.
    fn whole(&self, scaled: &[f32], u: f64, shaping: &Shaping) -> Option<Shaped> {
        let total = self.mass_at(shaping)?;
        // The row's largest scaled logit is listed (its group has the largest maximum).
        let max = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (target, near) = (u * total, near(self.group) * total);
        let mut before = 0.0f64;
        let mut drawn = None;
        for (g, &mass) in self.group_masses.iter().enumerate() {
            if before + mass as f64 > target {
                drawn = Some(g);
                break;
            }
            before += mass as f64;
        }
        // The drawn group's ids, listed in a run of their own when it is among the kept.
        let first = drawn? * self.group;
        let start = self.ids.iter().position(|&id| id as usize == first)?;
        let end = start + self.group.min(self.vocab - first);
        let run = self.ids.get(start..end)?;
        if run.last().map(|&id| id as usize) != Some(end - start + first - 1) {
            return None;
        }
        let mut cumulative = before;
        let mut token = None;
        for (&id, &s) in run.iter().zip(&scaled[start..end]) {
            if (cumulative - target).abs() < near {
                return None;
            }
            let e = exp_to_zero(s - max);
            if e > 0.0 {
                cumulative += e as f64;
                if cumulative > target {
                    token = Some(id);
                    break;
                }
            }
        }
        if (cumulative - target).abs() < near {
            return None;
        }
        let lse = max as f64 + total.ln();
        Some(Shaped::Listed {
            token: token?,
            ids: self.ids.clone(),
            scaled: scaled.to_vec(),
            lse,
            entropy: (total.ln() - self.weighted_mass as f64 / total).max(0.0) as f32,
        })
    }

    /// The positions a top-p or min-p cut of the whole row keeps, most likely first, with what
    /// is left of the shaping to apply to them; `None` unless every kept token is listed above
    /// `bound` (the scaled one) and the cut is clear of [`near`].
    fn cut<'s>(
        &self,
        scaled: &[f32],
        bound: f32,
        shaping: &'s Shaping,
    ) -> Option<(Vec<u32>, Cow<'s, Shaping>)> {
        let listed_all = self.bound == f32::NEG_INFINITY;
        let sure = match listed_all {
            true => scaled.len(),
            false => scaled.iter().filter(|&&s| s > bound).count(),
        };
        let order = self.top(sure.max(1), scaled, bound)?;
        let max = scaled[order[0] as usize];
        let Some(p) = shaping.top_p.filter(|&p| p < 1.0) else {
            // A min-p cut alone: clear when a listed token falls below its floor, or when
            // every unlisted one does.
            let floor = (shaping.min_p? as f64).ln();
            let falls = |s: f32| ((s - max) as f64) < floor;
            let ends = order.iter().any(|&i| falls(scaled[i as usize]));
            return (listed_all || ends || falls(bound)).then_some((order, Cow::Borrowed(shaping)));
        };
        // The nucleus, walked as the host walks it over the whole row, with the row's mass at
        // this temperature from the device.
        let lse = max as f64 + self.mass_at(shaping)?.ln();
        let near = near(self.group);
        let mut cumulative = 0.0f64;
        let mut n = None;
        for (j, &i) in order.iter().enumerate() {
            if (cumulative - p as f64).abs() < near {
                return None;
            }
            if cumulative >= p as f64 {
                n = Some(j);
                break;
            }
            cumulative += (scaled[i as usize] as f64 - lse).exp();
        }
        // Past the listed tokens before reaching p: the nucleus goes on among the unlisted.
        let n = match n {
            Some(n) => n,
            None if listed_all => order.len(),
            None => return None,
        };
        let rest = Shaping {
            top_p: None,
            ..shaping.clone()
        };
        Some((order[..n.max(1)].to_vec(), Cow::Owned(rest)))
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
            // The whole row sampled at the drawn point's group; a top-k, a nucleus (top-p) or
            // a min-p cut from the tokens it keeps.
            let inv_t = 1.0 / shaping.temperature;
            let scaled: Vec<f32> = self.logits.iter().map(|&l| l * inv_t).collect();
            let bound = self.bound * inv_t;
            if !shaping.truncates(self.vocab) {
                self.whole(&scaled, u, shaping)?
            } else {
                let (kept, shaping) = match shaping.top_k.filter(|&k| k < self.vocab) {
                    Some(k) => (self.top(k, &scaled, bound)?, Cow::Borrowed(shaping)),
                    None => self.cut(&scaled, bound, shaping)?,
                };
                Shaped::kept(
                    kept.iter().map(|&p| self.ids[p as usize]).collect(),
                    kept.iter().map(|&p| scaled[p as usize]).collect(),
                    scaled[kept[0] as usize],
                    &shaping,
                )
            }
        };
        let token = shaped.draw(u);
        let at = self.ids.iter().position(|&id| id == token)?;
        let t = self.logits[at];
        // Every token likelier is listed when this one is above the bound (kept tokens are; a
        // token drawn from the whole row may not be, and its rank needs the row).
        if t <= self.bound {
            return None;
        }
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
    /// maxima, the sums over the whole row (here the host's own, so that every number of the two
    /// picks must be equal), and the masses at `temperature` in f32 runs of 64.
    fn reduce(row: &[f32], groups: usize, temperature: f32) -> Candidates {
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
        let inv_t = 1.0 / temperature;
        let shifted: Vec<f32> = {
            let scaled: Vec<f32> = row.iter().map(|&l| l * inv_t).collect();
            let max = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            scaled.iter().map(|&s| s - max).collect()
        };
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
            temperature,
            group_masses: shifted
                .chunks(64)
                .map(|c| c.iter().map(|&s| s.exp()).sum())
                .collect(),
            group: 64,
            weighted_mass: shifted.iter().map(|&s| s.exp() * s).sum(),
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
            // The whole row, and cuts of it: the drawn token, the nucleus or the min-p floor
            // must be among the listed.
            for (top_p, min_p, typical_p) in [
                (None, None, None),
                (Some(0.01), None, None),
                (Some(0.3), None, None),
                (Some(0.9), None, None),
                (None, Some(0.5), None),
                (None, Some(0.05), Some(0.9)),
                (Some(0.2), Some(0.1), Some(0.8)),
            ] {
                all.push(Shaping {
                    temperature,
                    top_p,
                    min_p,
                    typical_p,
                    ..Shaping::default()
                });
            }
        }
        all
    }

    /// The same pick. Sampled from the whole row, the shaped distribution's numbers come from
    /// the device's f32 masses, not the host's, and agree to their rounding.
    fn same(got: &Pick, want: &Pick, shaping: &Shaping) {
        if shaping.temperature == 0.0 || shaping.truncates(3_000) {
            return assert_eq!(got, want, "{shaping:?}");
        }
        let ids = |t: &[(u32, f32)]| t.iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(
            (got.token, got.rank, &got.raw_top, got.logprob, got.entropy),
            (
                want.token,
                want.rank,
                &want.raw_top,
                want.logprob,
                want.entropy
            ),
            "{shaping:?}"
        );
        assert_eq!(ids(&got.shaped_top), ids(&want.shaped_top), "{shaping:?}");
        let shaped = |p: &Pick| {
            let mut all = vec![p.shaped_logprob, p.shaped_entropy];
            all.extend(p.shaped_top.iter().map(|t| t.1));
            all
        };
        for (a, b) in shaped(got).iter().zip(shaped(want)) {
            assert!(
                (a - b).abs() < 1e-5,
                "{shaping:?}: {got:?} against {want:?}"
            );
        }
    }

    #[test]
    fn a_pick_among_candidates_is_the_whole_row_s_pick_or_declines() {
        let seen = Seen::default();
        let (mut exact, mut declined, mut whole) = (0, 0, 0);
        for seed in 0..12 {
            let levels = [None, Some(40), Some(7)][seed as usize % 3];
            let row = row(3_000, seed, levels);
            for groups in [4, 16, 47] {
                for shaping in shapings() {
                    let candidates = reduce(&row, groups, shaping.temperature.max(1e-3));
                    for (u, top_n) in [(0.0, 0), (0.37, 5), (0.999, 20)] {
                        let got = candidates.pick(&shaping, &seen, u, top_n);
                        let want = pick(&row, &shaping, &seen, u, top_n);
                        match &got {
                            Some(got) => {
                                same(got, &want, &shaping);
                                exact += 1;
                                whole += usize::from(!shaping.truncates(3_000));
                            }
                            None => declined += 1,
                        }
                        // Only the top `groups` tokens are sure to be listed; on a row without
                        // ties a pick from a top-k that needs no more is always told.
                        let needed = shaping.top_k.unwrap_or(1).max(top_n);
                        let k_or_greedy = shaping.top_k.is_some() || shaping.temperature == 0.0;
                        if levels.is_none() && k_or_greedy && needed <= groups {
                            assert!(got.is_some(), "{shaping:?}, top_n {top_n}, {groups} groups");
                        }
                    }
                }
            }
        }
        assert!(
            exact > 1_000 && declined > 0 && whole > 20,
            "{exact} exact ({whole} sampling the whole row), {declined} declined"
        );
    }

    #[test]
    fn shaping_over_the_whole_row_declines() {
        let row = row(1_000, 3, None);
        let candidates = reduce(&row, 4, 1.0);
        let seen = Seen::default();
        let whole = [
            Shaping {
                top_p: Some(0.9),
                ..Shaping::default()
            },
            Shaping {
                typical_p: Some(0.9),
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
        let all = reduce(&row, 1_000, 1.0);
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
