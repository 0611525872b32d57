//! The penalties on tokens a sequence has already seen: transformers' repetition penalty (over
//! the prompt and what was generated) and OpenAI's frequency and presence penalties (over what
//! was generated). They need the sequence's history, which a backend keeps per session as
//! [`Seen`] counts.

use std::collections::HashMap;

use crate::Shaping;

/// The token ids of a step's rows: the prompt's, then the generated ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub prompt: Vec<u32>,
    pub generated: Vec<u32>,
}

/// How often each token id occurs in a sequence's prompt and in what it generated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// id → (in the prompt, generated).
    counts: HashMap<u32, (u32, u32)>,
}

impl Seen {
    /// Counts the ids of a step's rows.
    pub fn add(&mut self, history: &History) {
        for &id in &history.prompt {
            self.counts.entry(id).or_default().0 += 1;
        }
        for &id in &history.generated {
            self.counts.entry(id).or_default().1 += 1;
        }
    }

    /// Takes back what [`Seen::add`] counted (a step undone).
    pub fn remove(&mut self, history: &History) {
        let mut take = |id: u32, generated: bool| {
            if let Some(c) = self.counts.get_mut(&id) {
                let n = if generated { &mut c.1 } else { &mut c.0 };
                *n = n.saturating_sub(1);
                if *c == (0, 0) {
                    self.counts.remove(&id);
                }
            }
        };
        for &id in &history.prompt {
            take(id, false);
        }
        for &id in &history.generated {
            take(id, true);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The same tokens, every one counted as a prompt token (what was generated before is the
    /// prompt of what continues it).
    pub fn as_prompt(&self) -> Seen {
        let counts = self
            .counts
            .iter()
            .map(|(&id, &(prompt, generated))| (id, (prompt + generated, 0)))
            .collect();
        Seen { counts }
    }
}

impl Shaping {
    /// Whether any penalty is on.
    pub fn penalizes(&self) -> bool {
        self.repetition_penalty != 1.0
            || self.frequency_penalty != 0.0
            || self.presence_penalty != 0.0
    }
}

/// Applies the penalties to `row` for the tokens in `seen`: first the repetition penalty to every
/// seen token (a positive logit divided by it, a negative one multiplied, as transformers'
/// `RepetitionPenaltyLogitsProcessor`), then, for each generated token, `frequency_penalty` times
/// its count plus `presence_penalty` subtracted (OpenAI's formula; vLLM's order). Ids outside the
/// row are skipped: the backend checked them against the vocabulary when they came.
pub(crate) fn penalize(row: &mut [f32], shaping: &Shaping, seen: &Seen) {
    for (&id, &(_, generated)) in &seen.counts {
        let Some(logit) = row.get_mut(id as usize) else {
            continue;
        };
        if shaping.repetition_penalty != 1.0 {
            *logit = if *logit < 0.0 {
                *logit * shaping.repetition_penalty
            } else {
                *logit / shaping.repetition_penalty
            };
        }
        if generated > 0 {
            *logit -= generated as f32 * shaping.frequency_penalty + shaping.presence_penalty;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(prompt: &[u32], generated: &[u32]) -> History {
        History {
            prompt: prompt.to_vec(),
            generated: generated.to_vec(),
        }
    }

    #[test]
    fn each_penalty_follows_its_formula() {
        let mut seen = Seen::default();
        seen.add(&history(&[0, 1], &[1, 2, 2]));
        let shaping = Shaping {
            repetition_penalty: 2.0,
            frequency_penalty: 0.5,
            presence_penalty: 0.25,
            ..Shaping::default()
        };
        let mut row = vec![4.0, -4.0, 1.0, 3.0];
        penalize(&mut row, &shaping, &seen);
        // 0: prompt only, positive; 1: generated once, negative; 2: generated twice; 3: unseen.
        assert_eq!(row, [2.0, -8.0 - 0.75, 0.5 - 1.25, 3.0]);
    }

    #[test]
    fn as_prompt_keeps_the_counts_and_drops_the_generated_label() {
        let mut seen = Seen::default();
        seen.add(&history(&[1], &[1, 2]));
        let mut expected = Seen::default();
        expected.add(&history(&[1, 1, 2], &[]));
        assert_eq!(seen.as_prompt(), expected);
    }

    #[test]
    fn removing_a_step_restores_the_counts() {
        let mut seen = Seen::default();
        seen.add(&history(&[5, 6], &[]));
        let before = seen.clone();
        seen.add(&history(&[6], &[7, 5]));
        seen.remove(&history(&[6], &[7, 5]));
        assert_eq!(seen, before);
    }
}
