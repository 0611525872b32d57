//! What a pass asks the model for on behalf of each sequence, and what the sequence reads from
//! the answer: the pick after its last row, and the judgments of given tokens. On a GPU the
//! picks come from candidates reduced there; the rows they cannot tell come down together.

use oneword_model::{DeviceRow, Logits, LogitsAt, ModelError, Transformer};
use oneword_sampling::{Picked, Seen};
use rayon::prelude::*;

use super::{Part, RowsRead, Worker};
use crate::Error;

impl Part {
    /// What the pass running `rows` of this part's rows needs from `model`: every row's logits
    /// to judge given tokens; the last row's to pick from, as candidates reduced on the device
    /// where the model's logits are on one (a GPU) and they can tell this pick; else nothing.
    pub(super) fn logits_at(&self, rows: usize, seen: &Seen, model: &Transformer) -> LogitsAt {
        let last = self.done + rows == self.rows();
        let vocab = model.config().vocab_size;
        match &self.input.sampling {
            _ if !self.input.judge_ids.is_empty() => LogitsAt::All,
            Some(sampling) if last => {
                if model.logits_on_device() && sampling.may_pick_among(seen, vocab) {
                    LogitsAt::Candidates {
                        temperature: sampling.temperature(),
                    }
                } else {
                    LogitsAt::Last
                }
            }
            _ => LogitsAt::None,
        }
    }

    /// The pick and judgments from the logits of `rows` of this part's rows, or the row whose
    /// candidates could not tell the pick.
    pub(super) fn read(
        &self,
        rows: usize,
        logits: Option<Logits>,
        seen: &Seen,
    ) -> Result<Read, Error> {
        let (Some(sampling), Some(logits)) = (&self.input.sampling, logits) else {
            return Ok(Read::Done((None, Vec::new())));
        };
        let matrix = match logits {
            Logits::Candidates(candidates, row) => {
                return Ok(match sampling.pick_among(&candidates, seen) {
                    Some(picked) => Read::Done((Some(picked), Vec::new())),
                    // Too close to call from the candidates: the whole row decides.
                    None => Read::NeedsRow(row),
                });
            }
            Logits::Rows(matrix) => matrix,
        };
        if self.input.judge_ids.is_empty() {
            let row = matrix.to_vec1::<f32>().map_err(ModelError::from)?;
            return Ok(Read::Done((Some(sampling.pick(row, seen)), Vec::new())));
        }
        // Teacher forcing: every row judges the token given after it.
        let mut matrix = matrix.to_vec2::<f32>().map_err(ModelError::from)?;
        let given = &self.input.judge_ids[self.done..self.done + rows];
        let judged = matrix
            .iter()
            .zip(given)
            .map(|(row, &token)| sampling.judge(row, seen, token))
            .collect();
        let last = self.done + rows == self.rows();
        let picked = last
            .then(|| matrix.pop())
            .flatten()
            .map(|row| sampling.pick(row, seen));
        Ok(Read::Done((picked, judged)))
    }
}

/// What a part read from a pass's logits.
pub(super) enum Read {
    /// The pick, if it was the part's last row, and the judgments.
    Done(RowsRead),
    /// Its candidates could not tell the pick: it needs this whole row.
    NeedsRow(DeviceRow),
}

impl Worker {
    /// The picks and judgments of a pass (in `plan`'s order) from its parts' reads: the rows
    /// whose candidates could not tell come down from the device together, in one copy rather
    /// than one per pick, and each of those parts picks from its own.
    pub(super) fn finish_reads(
        &self,
        plan: &[(usize, usize, usize)],
        logits_at: &[LogitsAt],
        reads: Vec<Result<Read, Error>>,
    ) -> Vec<Result<RowsRead, Error>> {
        let mut needed = Vec::new();
        let mut out: Vec<Result<RowsRead, Error>> = reads
            .into_iter()
            .enumerate()
            .map(|(i, read)| match read? {
                Read::Done(done) => Ok(done),
                Read::NeedsRow(row) => {
                    needed.push((i, row));
                    Ok((None, Vec::new()))
                }
            })
            .collect();
        if let Some(metrics) = &self.metrics {
            // On a GPU a pick from a whole row (a shaping its candidates cannot tell, or one they
            // declined) downloads it.
            let asked_whole = match self.model.logits_on_device() {
                true => logits_at.iter().filter(|&&at| at == LogitsAt::Last).count(),
                false => 0,
            };
            metrics
                .logit_rows_downloaded
                .inc_by((asked_whole + needed.len()) as u64);
        }
        if needed.is_empty() {
            return out;
        }
        let rows: Vec<&DeviceRow> = needed.iter().map(|(_, row)| row).collect();
        let downloaded = match DeviceRow::download_all(&rows) {
            Ok(downloaded) => downloaded,
            Err(e) => {
                for (i, _) in needed {
                    out[i] = Err(Error::Model(ModelError::Input(e.to_string())));
                }
                return out;
            }
        };
        let picked: Vec<(usize, Picked)> = needed
            .par_iter()
            .zip(downloaded)
            .map(|((i, _), row)| {
                let (r, p, _) = plan[*i];
                let part = &self.running[r].parts[p];
                let sampling = part.input.sampling.as_ref();
                let sampling = sampling.expect("only a pick needs a row, this is a bug");
                (
                    *i,
                    sampling.pick(row, &self.sessions[&part.input.session_id].seen),
                )
            })
            .collect();
        for (i, pick) in picked {
            out[i] = Ok((Some(pick), Vec::new()));
        }
        out
    }
}
