//! What a pass asks the model for on behalf of each sequence, and what the sequence reads from
//! the answer: the pick after its last row, and the judgments of given tokens.

use oneword_model::{Logits, LogitsAt, ModelError, Transformer};
use oneword_runtime::prometheus::IntCounter;
use oneword_sampling::Seen;

use super::{Part, RowsRead};
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

    /// The pick and judgments from the logits of `rows` of this part's rows; a whole row
    /// downloaded for the pick is counted in `downloads`.
    pub(super) fn read(
        &self,
        rows: usize,
        logits: Option<Logits>,
        seen: &Seen,
        downloads: Option<&IntCounter>,
    ) -> Result<RowsRead, Error> {
        let (Some(sampling), Some(logits)) = (&self.input.sampling, logits) else {
            return Ok((None, Vec::new()));
        };
        let matrix = match logits {
            Logits::Candidates(candidates, row) => {
                let picked = match sampling.pick_among(&candidates, seen) {
                    Some(picked) => picked,
                    // Too close to call from the candidates: the whole row decides.
                    None => {
                        if let Some(downloads) = downloads {
                            downloads.inc();
                        }
                        sampling.pick(row.download()?, seen)
                    }
                };
                return Ok((Some(picked), Vec::new()));
            }
            Logits::Rows(matrix) => matrix,
        };
        if self.input.judge_ids.is_empty() {
            let row = matrix.to_vec1::<f32>().map_err(ModelError::from)?;
            return Ok((Some(sampling.pick(row, seen)), Vec::new()));
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
        Ok((picked, judged))
    }
}
