//! Numbers prepared for pictures: the essay's moving average of a weight
//! matrix, and histograms of weight values.

use crate::error::check_not_empty;
use crate::PlotError;

/// The `window`×`window` moving average of a `rows`×`cols` row-major matrix,
/// as the essay smooths a weight matrix ("a 64×64 moving average").
///
/// Stride 1, only where the window fits (Mathematica's `MovingAverage` on a
/// matrix): output cell (i, j) is the mean of the block of rows i..i+window
/// and columns j..j+window, so the result is (rows − window + 1) ×
/// (cols − window + 1) and shows the same matrix, smoothed, at nearly the same
/// size. Non-finite cells are left out of the means; a block with no finite
/// cell is NaN. Sums run in f64 over a summed-area table, so the cost does
/// not grow with the window.
///
/// Returns `(out_rows, out_cols, values)`.
///
/// Errors: `values` not `rows`×`cols` long, an empty matrix, a `window` of 0
/// or larger than `rows` or `cols`.
pub fn moving_average(
    rows: usize,
    cols: usize,
    values: &[f32],
    window: usize,
) -> Result<(usize, usize, Vec<f32>), PlotError> {
    check_not_empty("values", values.len())?;
    if rows.checked_mul(cols) != Some(values.len()) {
        return Err(PlotError::Shape {
            name: "values",
            len: values.len(),
            rows,
            cols,
        });
    }
    if window == 0 || window > rows || window > cols {
        return Err(PlotError::Invalid {
            name: "window",
            reason: format!("is {window} but must be from 1 to {}", rows.min(cols)),
        });
    }
    // Summed-area tables with a zero first row and column: sum[(i, j)] is the
    // total of the cells above and left of (i, j).
    let w = cols + 1;
    let mut sum = vec![0f64; (rows + 1) * w];
    let mut count = vec![0u32; (rows + 1) * w];
    for i in 0..rows {
        let (mut row_sum, mut row_count) = (0f64, 0u32);
        for j in 0..cols {
            let v = values[i * cols + j];
            if v.is_finite() {
                row_sum += v as f64;
                row_count += 1;
            }
            sum[(i + 1) * w + j + 1] = sum[i * w + j + 1] + row_sum;
            count[(i + 1) * w + j + 1] = count[i * w + j + 1] + row_count;
        }
    }
    let (out_rows, out_cols) = (rows - window + 1, cols - window + 1);
    let mut out = Vec::with_capacity(out_rows * out_cols);
    for i in 0..out_rows {
        for j in 0..out_cols {
            let (a, b, c, d) = (
                i * w + j,
                i * w + j + window,
                (i + window) * w + j,
                (i + window) * w + j + window,
            );
            let n = count[d] + count[a] - count[b] - count[c];
            let s = sum[d] + sum[a] - sum[b] - sum[c];
            out.push(if n == 0 {
                f32::NAN
            } else {
                (s / n as f64) as f32
            });
        }
    }
    Ok((out_rows, out_cols, out))
}

/// A histogram of the finite `values` in `bins` equal bins from their
/// minimum to their maximum. Returns `(edges, counts)` with
/// `edges.len() == bins + 1`; each bin holds `edges[k] <= v < edges[k + 1]`,
/// the last one also its right edge (the maximum). When all values are equal
/// the bins span the value ± 0.5.
///
/// Errors: `bins` of 0, no finite value in `values`.
pub fn histogram(values: &[f32], bins: usize) -> Result<(Vec<f64>, Vec<u64>), PlotError> {
    if bins == 0 {
        return Err(PlotError::Invalid {
            name: "bins",
            reason: "is 0 but must be at least 1".to_string(),
        });
    }
    let finite = || values.iter().filter(|v| v.is_finite()).map(|&v| v as f64);
    let lo = finite().fold(f64::INFINITY, f64::min);
    let hi = finite().fold(f64::NEG_INFINITY, f64::max);
    if lo > hi {
        // No finite value: both folds kept their starting infinities.
        return Err(PlotError::Empty { name: "values" });
    }
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    };
    let width = (hi - lo) / bins as f64;
    let edges: Vec<f64> = (0..=bins)
        .map(|k| if k == bins { hi } else { lo + k as f64 * width })
        .collect();
    let mut counts = vec![0u64; bins];
    for v in finite() {
        let k = (((v - lo) / width) as usize).min(bins - 1);
        counts[k] += 1;
    }
    Ok((edges, counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_of_a_small_matrix() {
        // 3×4:
        //  1  2  3  4
        //  5  6  7  8
        //  9 10 11 12
        let m: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        let (r, c, out) = moving_average(3, 4, &m, 2).unwrap();
        assert_eq!((r, c), (2, 3));
        assert_eq!(out, [3.5, 4.5, 5.5, 7.5, 8.5, 9.5]);
        let (r, c, out) = moving_average(3, 4, &m, 3).unwrap();
        assert_eq!((r, c, out), (1, 2, vec![6.0, 7.0]));
        let (r, c, out) = moving_average(3, 4, &m, 1).unwrap();
        assert_eq!((r, c, out), (3, 4, m.clone()));
    }

    #[test]
    fn moving_average_skips_non_finite_cells() {
        let m = [1.0, f32::NAN, 3.0, f32::INFINITY];
        let (_, _, out) = moving_average(2, 2, &m, 2).unwrap();
        assert_eq!(out, [2.0]);
        let (_, _, out) = moving_average(1, 2, &[f32::NAN, 4.0], 1).unwrap();
        assert!(out[0].is_nan());
        assert_eq!(out[1], 4.0);
    }

    #[test]
    fn moving_average_rejects_bad_arguments() {
        let m = [0.0f32; 6];
        assert!(matches!(
            moving_average(2, 2, &m, 1),
            Err(PlotError::Shape { len: 6, .. })
        ));
        assert!(matches!(
            moving_average(2, 3, &m, 0),
            Err(PlotError::Invalid { name: "window", .. })
        ));
        assert!(matches!(
            moving_average(2, 3, &m, 3),
            Err(PlotError::Invalid { name: "window", .. })
        ));
        assert!(matches!(
            moving_average(0, 0, &[], 1),
            Err(PlotError::Empty { name: "values" })
        ));
        assert!(matches!(
            moving_average(usize::MAX, 2, &m, 1),
            Err(PlotError::Shape { .. })
        ));
    }

    #[test]
    fn histogram_counts_into_equal_bins() {
        let (edges, counts) = histogram(&[0.0, 1.0, 1.5, 2.0, 3.0, 4.0], 4).unwrap();
        assert_eq!(edges, [0.0, 1.0, 2.0, 3.0, 4.0]);
        // 4.0 is the maximum and lands in the last bin.
        assert_eq!(counts, [1, 2, 1, 2]);
    }

    #[test]
    fn histogram_of_equal_or_odd_values() {
        let (edges, counts) = histogram(&[2.0, 2.0, f32::NAN], 2).unwrap();
        assert_eq!(edges, [1.5, 2.0, 2.5]);
        assert_eq!(counts, [0, 2]);
        assert!(matches!(
            histogram(&[1.0], 0),
            Err(PlotError::Invalid { name: "bins", .. })
        ));
        assert!(matches!(
            histogram(&[f32::NAN], 3),
            Err(PlotError::Empty { name: "values" })
        ));
        assert!(matches!(
            histogram(&[], 3),
            Err(PlotError::Empty { name: "values" })
        ));
    }
}
