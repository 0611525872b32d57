//! How many prompt rows a pass may take while streams are decoding: a time budget, with what a
//! row costs measured, rather than a row count. A 256-row prompt chunk takes several times a
//! 32-stream decode step, so with a fixed row budget a burst of new prompts stretched every
//! running stream's next token by that much; with a time budget, prompts add at most about that
//! much to any stream's next token, whatever the model, the machine and the batch.
//!
//! The budget is the smaller of a fixed one (`--prefill-budget-ms`) and what a decode pass of
//! every running sequence (those being prefilled too: they decode next) would take, times
//! `--prefill-stretch` (0.75 by default). A burst of prompts then makes a running stream wait for
//! its next token at most about 1.75 times what it will wait once the burst decodes too, so the
//! tail of that time stays under twice its median however fast the model runs, with room for
//! the gateway's hops and a noisy machine (a fixed 100 ms beside a 50 ms step had made it three
//! times; a stretch of 1 put the tail right at twice, and the hops over it). Counting the
//! sequences being prefilled rather than only those decoding keeps a burst's first tokens from
//! waiting on the few streams that got theirs first. A larger stretch trades that tail for sooner
//! first tokens.
//!
//! What a pass costs is fitted to the passes run: `seconds ≈ fixed + decode_rows · a +
//! prompt_rows · b` by least squares over recent passes (older ones count less). `fixed` is what
//! a pass costs whatever its rows (on a CPU, reading every weight once: a one-row pass takes most
//! of a 16-row one's time), so a pass of few decode rows still lets about as many prompt rows as
//! fit in that time. While prompts are waiting no pass is decode-only, so the costs come from
//! passes of different mixes; until the mixes tell them apart, a fit without `fixed`, then the
//! mean cost of a row, stand in.

use std::time::Duration;

/// Prompt rows a pass takes at least, so that prefill always moves.
const MIN_PROMPT_ROWS: usize = 16;

/// How much each older pass counts relative to the next one: about the last 30 passes count,
/// enough to keep decode-only and prompt-only passes in view through a burst of mixed ones.
const DECAY: f64 = 0.97;

/// A pass's cost in seconds: `fixed + decode · decode rows + prompt · prompt rows`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Costs {
    fixed: f64,
    decode: f64,
    prompt: f64,
}

/// Decayed sums of the least-squares fit over `x = (1, decode rows, prompt rows)` and the
/// pass's seconds `t`: `Σ x xᵀ` and `Σ x t`.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    xx: [[f64; 3]; 3],
    xt: [f64; 3],
    /// Seconds prompt rows may add to a pass while streams decode, at most.
    budget: f64,
    /// The most prompt rows may add, as a multiple of the decode rows' own pass time.
    stretch: f64,
}

impl Pace {
    pub(crate) fn new(budget: Duration, stretch: f64) -> Self {
        Pace {
            budget: budget.as_secs_f64(),
            stretch,
            ..Pace::default()
        }
    }

    /// Prompt rows a pass with `decode_rows` decode rows may take, up to `max_rows`, when
    /// `sequences` sequences are running (decoding or being prefilled): all of them when no stream
    /// is decoding (nobody waits).
    pub(crate) fn prompt_rows(
        &self,
        decode_rows: usize,
        sequences: usize,
        max_rows: usize,
    ) -> usize {
        if decode_rows == 0 {
            return max_rows;
        }
        let c = self.costs();
        let decode_pass = c.fixed + c.decode * sequences.max(decode_rows) as f64;
        let budget = self.budget.min(self.stretch * decode_pass);
        ((budget / c.prompt) as usize).clamp(MIN_PROMPT_ROWS.min(max_rows), max_rows)
    }

    /// Learns from a pass of `decode_rows` and `prompt_rows` rows that took `seconds`.
    pub(crate) fn observe(&mut self, decode_rows: usize, prompt_rows: usize, seconds: f64) {
        let x = [1.0, decode_rows as f64, prompt_rows as f64];
        for i in 0..3 {
            for j in 0..3 {
                self.xx[i][j] = self.xx[i][j] * DECAY + x[i] * x[j];
            }
            self.xt[i] = self.xt[i] * DECAY + x[i] * seconds;
        }
    }

    fn costs(&self) -> Costs {
        let (m, y) = (self.xx, self.xt);
        if let Some([fixed, decode, prompt]) = solve(m, y) {
            // A fixed cost within a microsecond of zero is zero, not a failed fit.
            if fixed > -1e-6 && decode > 0.0 && prompt > 0.0 {
                return Costs {
                    fixed: fixed.max(0.0),
                    decode,
                    prompt,
                };
            }
        }
        // Without `fixed`, the fit blames passes' fixed cost on whichever kind of row grew with
        // them; a prompt row is then taken to cost at least a decode row, so that an
        // underestimate cannot let prompts stretch passes further and further.
        let rows_only = [[m[1][1], m[1][2]], [m[2][1], m[2][2]]];
        if let Some([decode, prompt]) = solve(rows_only, [y[1], y[2]]) {
            if decode > 0.0 && prompt > 0.0 {
                return Costs {
                    fixed: 0.0,
                    decode,
                    prompt: prompt.max(decode),
                };
            }
        }
        // One cost for every row: the rows' total time over their total count, weighted alike
        // (nothing measured yet: a second, so that only the smallest chunk goes).
        let rows = m[1][1] + 2.0 * m[1][2] + m[2][2];
        let mean = if rows > 0.0 {
            (y[1] + y[2]) / rows
        } else {
            1.0
        };
        Costs {
            fixed: 0.0,
            decode: mean,
            prompt: mean,
        }
    }
}

/// Solves `m · x = y` for a sum of outer products `m` that is well conditioned: with its rows
/// and columns scaled to a unit diagonal, its determinant above 1e-3 (the passes varied enough
/// to tell the terms apart).
fn solve<const N: usize>(m: [[f64; N]; N], y: [f64; N]) -> Option<[f64; N]> {
    let scale: [f64; N] = std::array::from_fn(|i| m[i][i].sqrt());
    if scale.iter().any(|&s| s.is_nan() || s <= 0.0) {
        return None;
    }
    let mut a: [[f64; N]; N] =
        std::array::from_fn(|i| std::array::from_fn(|j| m[i][j] / (scale[i] * scale[j])));
    let mut b: [f64; N] = std::array::from_fn(|i| y[i] / scale[i]);
    let mut det = 1.0;
    for col in 0..N {
        let pivot = (col..N).max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))?;
        a.swap(col, pivot);
        b.swap(col, pivot);
        det *= a[col][col];
        if det.abs() <= 1e-3 {
            return None;
        }
        let (above, below) = a.split_at_mut(col + 1);
        let pivot_row = &above[col];
        for (r, row) in below.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (v, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *v -= f * p;
            }
            b[col + 1 + r] -= f * b[col];
        }
    }
    let mut x = [0.0; N];
    for i in (0..N).rev() {
        let rest: f64 = (i + 1..N).map(|j| a[i][j] * x[j]).sum();
        x[i] = (b[i] - rest) / a[i][i];
    }
    Some(std::array::from_fn(|i| x[i] / scale[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_rows_fill_the_time_budget() {
        let mut pace = Pace::new(Duration::from_millis(40), 1.0);
        assert_eq!(pace.prompt_rows(0, 0, 256), 256, "no stream waits");
        assert_eq!(
            pace.prompt_rows(8, 8, 256),
            MIN_PROMPT_ROWS,
            "nothing measured yet"
        );
        assert_eq!(pace.prompt_rows(8, 8, 4), 4);
        // Alike passes cannot tell the kinds apart: the mean cost, 1.5 ms, is taken.
        pace.observe(10, 10, 0.030);
        assert_eq!(pace.prompt_rows(40, 40, 256), 26, "the fixed budget");
        let rows = pace.prompt_rows(20, 20, 256);
        assert!(
            (19..=20).contains(&rows),
            "{rows}: the decode rows' own 30 ms"
        );
        // Decode rows cost 2 ms, prompt rows 1 ms, seen through passes of different mixes.
        for (d, p) in [(0, 256), (1, 16), (8, 16), (32, 16), (32, 64), (16, 100)] {
            pace.observe(d, p, 0.002 * d as f64 + 0.001 * p as f64);
        }
        let rows = pace.prompt_rows(32, 32, 256);
        assert!((39..=40).contains(&rows), "{rows}");
        let rows = pace.prompt_rows(12, 12, 256);
        assert!(
            (23..=24).contains(&rows),
            "{rows}: at most the 24 ms the decode rows take"
        );
        assert_eq!(pace.prompt_rows(2, 2, 256), MIN_PROMPT_ROWS);
        let rows = pace.prompt_rows(2, 12, 256);
        assert!(
            (23..=24).contains(&rows),
            "{rows}: sequences being prefilled decode next"
        );
    }

    /// A pass that costs 8 ms whatever its rows, then 0.5 ms a row (a CPU reading its weights
    /// once per pass): one decoding stream's pass takes 8.5 ms, so prompts may add 17 rows, and
    /// twice that at a stretch of 2; 32 streams' 24 ms, 48 rows, until the fixed budget.
    #[test]
    fn the_fixed_cost_of_a_pass_counts_as_decode_time() {
        let passes = [
            (1, 0),
            (1, 16),
            (8, 0),
            (8, 16),
            (32, 0),
            (32, 48),
            (2, 100),
            (16, 16),
        ];
        for (stretch, one, many) in [(1.0, 17, 48), (2.0, 34, 80)] {
            let mut pace = Pace::new(Duration::from_millis(40), stretch);
            for _ in 0..3 {
                for (d, p) in passes {
                    pace.observe(d, p, 0.008 + 0.0005 * (d + p) as f64);
                }
            }
            let c = pace.costs();
            assert!((c.fixed - 0.008).abs() < 1e-9, "{c:?}");
            for (decode_rows, want) in [(1, one), (32, many)] {
                let rows = pace.prompt_rows(decode_rows, decode_rows, 256);
                assert!(
                    want - 1 <= rows && rows <= want,
                    "{decode_rows}: {rows}, not {want}"
                );
            }
        }
    }

    #[test]
    fn ill_conditioned_sums_are_not_solved() {
        assert_eq!(solve([[1.0, 2.0], [2.0, 4.0]], [1.0, 2.0]), None);
        assert_eq!(solve([[0.0, 0.0], [0.0, 0.0]], [0.0, 0.0]), None);
        let x = solve([[2.0, 1.0], [1.0, 3.0]], [3.0, 5.0]).unwrap();
        assert!(
            (x[0] - 0.8).abs() < 1e-12 && (x[1] - 1.4).abs() < 1e-12,
            "{x:?}"
        );
    }
}
