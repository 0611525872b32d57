//! Logit rows reduced on their device to what an exact pick needs ([`Candidates`]): every token
//! of the groups of [`GROUP`] tokens with the highest maxima, and the row's softmax sums. A
//! token among the row's `KEPT_GROUPS` most likely lies in a group whose maximum is at least its
//! logit, so it is listed; every unlisted token's logit is at most the last kept group's
//! maximum, the candidates' `bound`. At 256 streams a step then downloads ~4 MB instead of the
//! 51 MB of GPT-2's whole rows, and the host's pick reads a few thousand values per stream.
//!
//! A constant number of operations whatever the number of rows: group maxima, one sort of them
//! per row (a few hundred values: within what candle's GPU sort handles in one block), a gather
//! of the kept groups, the sums, each group's mass at the row's temperature (where a nucleus
//! ends or a draw from the whole row lands), and one download.

use candle_core::{DType, Device, Tensor};
use oneword_sampling::Candidates;

use crate::ModelError;

/// One sequence's logits, as [`crate::Transformer::forward_batch_logits`] returns them.
pub enum Logits {
    /// f32 rows on the host, `[vocab]` for [`crate::LogitsAt::Last`], `[n_new, vocab]` for
    /// [`crate::LogitsAt::All`].
    Rows(Tensor),
    /// For [`crate::LogitsAt::Candidates`]; the whole row stays on the device in case the pick
    /// needs it.
    Candidates(Candidates, DeviceRow),
}

/// One row of logits left on the device.
pub struct DeviceRow {
    pub(crate) rows: Tensor,
    pub(crate) index: usize,
}

impl DeviceRow {
    /// The row, downloaded: gathered first, since a copy to the host takes a view's whole
    /// storage (the pass's every row).
    pub fn download(&self) -> Result<Vec<f32>> {
        let mut rows = Self::download_all(&[self])?;
        Ok(rows.pop().expect("one row asked, one row gathered"))
    }

    /// The rows, downloaded: in one gather and one copy where they are rows of the same pass's
    /// logits (as a pass's are), else one by one.
    pub fn download_all(rows: &[&DeviceRow]) -> Result<Vec<Vec<f32>>> {
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        if rows.iter().any(|row| row.rows.id() != first.rows.id()) {
            return rows.iter().map(|row| row.download()).collect();
        }
        let indices: Vec<u32> = rows.iter().map(|row| row.index as u32).collect();
        let indices = Tensor::from_vec(indices, rows.len(), first.rows.device())?;
        Ok(first
            .rows
            .index_select(&indices, 0)?
            .to_device(&Device::Cpu)?
            .to_vec2()?)
    }
}

type Result<T> = std::result::Result<T, ModelError>;

/// Tokens per group, at least: larger for vocabularies of over 64 · 1024 tokens, so that a row's
/// group maxima stay within what candle's GPU sort takes (1,024 per row).
const GROUP: usize = 64;
/// Groups listed per row: their tokens include the row's 64 most likely.
const KEPT_GROUPS: usize = 64;

/// `rows` `[n, vocab]` f32, on any device, reduced there; one [`Candidates`] per row, with its
/// masses at its `temperatures` (0, greedy, takes them at 1).
pub fn reduce(rows: &Tensor, temperatures: &[f32]) -> Result<Vec<Candidates>> {
    let rows = rows.to_dtype(DType::F32)?;
    let (n, vocab) = rows.dims2()?;
    let device = rows.device();
    let temperatures: Vec<f32> = temperatures
        .iter()
        .map(|&t| if t > 0.0 { t } else { 1.0 })
        .collect();
    let mut group = GROUP;
    while vocab.div_ceil(group) > 1024 {
        group *= 2;
    }
    let groups = vocab.div_ceil(group);
    let kept = KEPT_GROUPS.min(groups);
    let padded = match groups * group - vocab {
        0 => rows.clone(),
        pad => Tensor::cat(
            &[&rows, &Tensor::full(f32::NEG_INFINITY, (n, pad), device)?],
            1,
        )?,
    };
    let grouped = padded.reshape((n * groups, group))?;
    let best = grouped
        .max(1)?
        .reshape((n, groups))?
        .arg_sort_last_dim(false)?
        .narrow(1, 0, kept)?;
    let first_group = Tensor::arange(0u32, n as u32, device)?
        .affine(groups as f64, 0.0)?
        .reshape((n, 1))?;
    let values = grouped
        .index_select(&best.broadcast_add(&first_group)?.flatten_all()?, 0)?
        .reshape((n, kept * group))?;
    // The softmax sums, in the host pick's terms: Σ e^(x - max), and Σ e^(x - max) · (x - max)
    // for the entropy.
    let max = rows.max_keepdim(1)?;
    let shifted = rows.broadcast_sub(&max)?;
    let exps = shifted.exp()?;
    // A -inf logit has no mass and no term (0 · -inf would be NaN).
    let sums = [
        exps.sum_keepdim(1)?,
        (&exps * shifted.maximum(f32::MIN)?)?.sum_keepdim(1)?,
    ];
    let packed = Tensor::cat(
        &[
            &values,
            &best.to_dtype(DType::F32)?,
            &max,
            &sums[0],
            &sums[1],
            &masses_at(&padded, &temperatures, group)?,
        ],
        1,
    )?
    .to_device(&Device::Cpu)?
    .to_vec2::<f32>()?;
    Ok(packed
        .iter()
        .zip(temperatures)
        .map(|(row, temperature)| unpack(row, vocab, group, groups, kept, temperature))
        .collect())
}

/// Σ exp(s − max) per group of `padded` `[n, groups · group]`, with s = x / t and `max` the
/// row's largest s, then Σ exp(s − max) · (s − max) over the row: the row's mass at its
/// temperature in pieces small enough that their f32 rounding is bounded
/// ([`Candidates::group_masses`]), and what its entropy needs. s − max is computed as the host's
/// pick computes it (the same f32 product by 1 / t, the same difference), so that only `exp`
/// and the summation differ.
fn masses_at(padded: &Tensor, temperatures: &[f32], group: usize) -> Result<Tensor> {
    let (n, width) = padded.dims2()?;
    let inverse: Vec<f32> = temperatures.iter().map(|&t| 1.0 / t).collect();
    let inverse = Tensor::from_vec(inverse, (n, 1), padded.device())?;
    let scaled = padded.broadcast_mul(&inverse)?;
    let shifted = scaled.broadcast_sub(&scaled.max_keepdim(1)?)?;
    let exps = shifted.exp()?;
    // Padding is -inf: no mass, and no term.
    let weighted = (&exps * shifted.maximum(f32::MIN)?)?.sum_keepdim(1)?;
    let groups = exps.reshape((n, width / group, group))?.sum(2)?;
    Ok(Tensor::cat(&[&groups, &weighted], 1)?)
}

/// One row of the download: `kept` groups of values, the groups' numbers, then max, Σ e,
/// Σ e · (x - max), and at `temperature` the groups' masses and Σ e · (s - max).
fn unpack(
    row: &[f32],
    vocab: usize,
    group: usize,
    groups: usize,
    kept: usize,
    temperature: f32,
) -> Candidates {
    let (values, rest) = row.split_at(kept * group);
    let (numbers, rest) = rest.split_at(kept);
    let (sums, rest) = rest.split_at(3);
    let (group_masses, weighted_mass) = rest.split_at(groups);
    let (mut ids, mut logits) = (Vec::with_capacity(values.len()), Vec::new());
    for (g, chunk) in numbers.iter().zip(values.chunks(group)) {
        let first = *g as usize * group;
        for (id, &logit) in (first..(first + group).min(vocab)).zip(chunk) {
            ids.push(id as u32);
            logits.push(logit);
        }
    }
    // The kept groups come by maximum, highest first: the last one's is the bound.
    let last = &values[(kept - 1) * group..];
    let bound = if kept == groups {
        f32::NEG_INFINITY
    } else {
        last.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    };
    let (max, total, weighted) = (sums[0] as f64, sums[1] as f64, sums[2] as f64);
    Candidates {
        ids,
        logits,
        bound,
        vocab,
        log_sum_exp: max + total.ln(),
        entropy: (total.ln() - weighted / total).max(0.0) as f32,
        temperature,
        group_masses: group_masses.to_vec(),
        group,
        weighted_mass: weighted_mass[0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oneword_sampling::{pick, Seen, Shaping};

    /// Rows of GPT-2's vocabulary: continuous ones, one of few values (ties at the bound), and
    /// one where a few dozen tokens hold most of the mass, as a language model's rows do.
    fn rows() -> Tensor {
        let vocab = 50_257u32;
        let values: Vec<f32> = (0..5u32)
            .flat_map(|r| {
                (0..vocab).map(move |i| {
                    let h = (i ^ (r * 7919)).wrapping_mul(2_654_435_761).rotate_left(11);
                    let spread = (h % 1_000_000) as f32 / 40_000.0 - 12.0;
                    match r {
                        3 => (h % 9) as f32 - 4.0,
                        4 if i % 1_999 == 0 => spread + 20.0,
                        _ => spread,
                    }
                })
            })
            .collect();
        Tensor::from_vec(values, (5, vocab as usize), &Device::Cpu).unwrap()
    }

    #[test]
    fn rows_downloaded_together_or_alone_are_the_rows() {
        let (pass, other) = (rows(), rows().affine(2.0, 1.0).unwrap());
        let row = |rows: &Tensor, index| DeviceRow {
            rows: rows.clone(),
            index,
        };
        let one_pass = [row(&pass, 4), row(&pass, 0), row(&pass, 2)];
        let mixed = [row(&pass, 1), row(&other, 1), row(&pass, 3)];
        for rows in [&one_pass[..], &mixed[..], &[]] {
            let together = DeviceRow::download_all(&rows.iter().collect::<Vec<_>>()).unwrap();
            let want: Vec<Vec<f32>> = rows
                .iter()
                .map(|r| r.rows.get(r.index).unwrap().to_vec1().unwrap())
                .collect();
            assert_eq!(together, want);
            let alone: Vec<Vec<f32>> = rows.iter().map(|r| r.download().unwrap()).collect();
            assert_eq!(alone, want);
        }
    }

    #[test]
    fn candidates_reduced_with_tensor_ops_give_the_host_pick() {
        let rows = rows();
        let seen = Seen::default();
        let shapings = [
            Shaping {
                temperature: 0.0,
                ..Shaping::default()
            },
            Shaping {
                temperature: 0.8,
                top_k: Some(40),
                top_p: Some(0.95),
                ..Shaping::default()
            },
            Shaping {
                temperature: 1.2,
                top_k: Some(50),
                ..Shaping::default()
            },
            // Nuclei of the whole row, which end where the device's masses say.
            Shaping {
                temperature: 0.005,
                top_p: Some(0.9),
                ..Shaping::default()
            },
            Shaping {
                temperature: 1.0,
                top_p: Some(0.0002),
                ..Shaping::default()
            },
            // The whole row, at the drawn point's group.
            Shaping::default(),
            Shaping {
                temperature: 0.7,
                ..Shaping::default()
            },
        ];
        let (mut exact, mut nuclei, mut whole) = (0, 0, 0);
        for shaping in &shapings {
            let sampled_whole =
                shaping.temperature > 0.0 && shaping.top_p.is_none() && shaping.top_k.is_none();
            let reduced = reduce(&rows, &[shaping.temperature; 5]).unwrap();
            for (r, candidates) in reduced.iter().enumerate() {
                let row = rows.get(r).unwrap().to_vec1::<f32>().unwrap();
                assert_eq!(candidates.ids.len(), KEPT_GROUPS * GROUP);
                for u in [0.01, 0.5, 0.99] {
                    let host = pick(&row, shaping, &seen, u, 5);
                    let Some(got) = candidates.pick(shaping, &seen, u, 5) else {
                        // A token drawn from the whole row may lie among the unlisted.
                        assert!(
                            r == 3 || sampled_whole,
                            "row {r}: only ties at the bound may decline"
                        );
                        continue;
                    };
                    exact += 1;
                    nuclei += usize::from(shaping.top_k.is_none() && shaping.temperature > 0.0);
                    whole += usize::from(sampled_whole);
                    let ids = |t: &[(u32, f32)]| t.iter().map(|p| p.0).collect::<Vec<_>>();
                    assert_eq!(
                        (got.token, got.rank, ids(&got.shaped_top)),
                        (host.token, host.rank, ids(&host.shaped_top)),
                        "row {r}, {shaping:?}, u {u}"
                    );
                    assert_eq!(ids(&got.raw_top), ids(&host.raw_top));
                    // The whole row's shaped numbers come from the device's masses.
                    let shaped = |p: &oneword_sampling::Pick| {
                        let mut all = vec![p.shaped_logprob, p.shaped_entropy];
                        all.extend(p.shaped_top.iter().map(|t| t.1));
                        all
                    };
                    for (a, b) in shaped(&got).into_iter().zip(shaped(&host)) {
                        assert!(
                            (a - b).abs() < 1e-5,
                            "row {r}, {shaping:?}: {got:?} {host:?}"
                        );
                    }
                    // The sums are the device's, in f32.
                    assert!(
                        (got.logprob - host.logprob).abs() < 1e-4,
                        "{got:?} {host:?}"
                    );
                    assert!(
                        (got.entropy - host.entropy).abs() < 1e-4,
                        "{got:?} {host:?}"
                    );
                }
            }
        }
        assert!(
            exact >= 60 && nuclei >= 24 && whole >= 4,
            "{exact} exact, {nuclei} nuclei, {whole} from the whole row"
        );
    }
}
