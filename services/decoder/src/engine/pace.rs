//! How many prompt rows a pass may take while streams are decoding: a time budget, with what a
//! row costs measured, rather than a row count. A 256-row prompt chunk takes several times a
//! 32-stream decode step, so with a fixed row budget a burst of new prompts stretched every
//! running stream's next token by that much; with a time budget, prompts add at most about that
//! much to any stream's next token, whatever the model, the machine and the batch.
//!
//! What a row costs is fitted to the passes run: `seconds ≈ decode_rows · a + prompt_rows · b`
//! by least squares over recent passes (older ones count less). While prompts are waiting no
//! pass is decode-only, so the two costs come from passes of different mixes; until the mixes
//! tell them apart, both are taken as the mean cost of a row.

use std::time::Duration;

/// Prompt rows a pass takes at least, so that prefill always moves.
const MIN_PROMPT_ROWS: usize = 16;

/// How much each older pass counts relative to the next one.
const DECAY: f64 = 0.9;

/// Decayed sums of the least-squares fit (d = decode rows, p = prompt rows, t = seconds).
#[derive(Debug, Default)]
pub(crate) struct Pace {
    dd: f64,
    dp: f64,
    pp: f64,
    dt: f64,
    pt: f64,
    /// Seconds prompt rows may add to a pass while streams decode.
    budget: f64,
}

impl Pace {
    pub(crate) fn new(budget: Duration) -> Self {
        Pace {
            budget: budget.as_secs_f64(),
            ..Pace::default()
        }
    }

    /// Prompt rows a pass with `decode_rows` decode rows may take, up to `max_rows`: all of them
    /// when no stream is decoding (nobody waits).
    pub(crate) fn prompt_rows(&self, decode_rows: usize, max_rows: usize) -> usize {
        if decode_rows == 0 {
            return max_rows;
        }
        let allowed = self.budget / self.prompt_cost();
        (allowed as usize).clamp(MIN_PROMPT_ROWS.min(max_rows), max_rows)
    }

    /// Learns from a pass of `decode_rows` and `prompt_rows` rows that took `seconds`.
    pub(crate) fn observe(&mut self, decode_rows: usize, prompt_rows: usize, seconds: f64) {
        let (d, p) = (decode_rows as f64, prompt_rows as f64);
        for (sum, add) in [
            (&mut self.dd, d * d),
            (&mut self.dp, d * p),
            (&mut self.pp, p * p),
            (&mut self.dt, d * seconds),
            (&mut self.pt, p * seconds),
        ] {
            *sum = *sum * DECAY + add;
        }
    }

    /// Seconds per prompt row.
    fn prompt_cost(&self) -> f64 {
        let det = self.dd * self.pp - self.dp * self.dp;
        // Well conditioned only when the passes mixed the two kinds in different proportions.
        if det > 1e-3 * self.dd * self.pp {
            let decode = (self.dt * self.pp - self.pt * self.dp) / det;
            let prompt = (self.pt * self.dd - self.dt * self.dp) / det;
            if decode > 0.0 && prompt > 0.0 {
                return prompt;
            }
        }
        // One cost for every row: the rows' total time over their total count, weighted alike
        // (nothing measured yet: a second, so that only the smallest chunk goes).
        let rows = self.dd + 2.0 * self.dp + self.pp;
        if rows > 0.0 {
            (self.dt + self.pt) / rows
        } else {
            1.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_rows_fill_the_time_budget() {
        let mut pace = Pace::new(Duration::from_millis(40));
        assert_eq!(pace.prompt_rows(0, 256), 256, "no stream waits");
        assert_eq!(
            pace.prompt_rows(8, 256),
            MIN_PROMPT_ROWS,
            "nothing measured yet"
        );
        assert_eq!(pace.prompt_rows(8, 4), 4);
        // Alike passes cannot tell the kinds apart: the mean cost, 1.5 ms, is taken.
        pace.observe(10, 10, 0.030);
        assert_eq!(pace.prompt_rows(8, 256), 26);
        // Decode rows cost 2 ms, prompt rows 1 ms, seen through passes of different mixes.
        for (d, p) in [(0, 256), (1, 16), (8, 16), (32, 16), (32, 64), (16, 100)] {
            pace.observe(d, p, 0.002 * d as f64 + 0.001 * p as f64);
        }
        let rows = pace.prompt_rows(32, 256);
        assert!((39..=40).contains(&rows), "{rows}");
    }
}
