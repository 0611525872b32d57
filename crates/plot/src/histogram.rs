//! Overlaid histograms: the distribution of weight values in each block.

use crate::axes::{self, Fonts, LinearAxes, Titles};
use crate::canvas::Rgb;
use crate::{colour, ticks, PlotError, Size};

/// One histogram: `counts[k]` values fell between `edges[k]` and `edges[k + 1]`
/// (as [`crate::histogram`] returns them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Its name in the legend (e.g. "block 7").
    pub label: String,
    /// Finite and increasing, one more than `counts`.
    pub edges: Vec<f64>,
    /// How many values fell in each bin.
    pub counts: Vec<u64>,
}

/// Several histograms over the same values axis.
#[derive(Clone, Copy, Debug, Default)]
pub struct Histograms<'a> {
    /// Above the chart; empty for none.
    pub title: &'a str,
    /// Below the x axis (e.g. "weight value"); empty for none.
    pub x_label: &'a str,
    /// Beside the count axis; empty for none.
    pub y_label: &'a str,
    /// Drawn in order, later ones on top. Up to 10 get distinct colours; more
    /// (one per transformer block, up to 48) follow a colour gradient.
    pub series: &'a [Series],
}

/// Draws each series as the line through its bin centres (a frequency
/// polygon), all on one set of axes: overlaid outlines stay readable where
/// dozens of overlaid bars would not. Up to 10 series have distinct colours
/// and a legend entry each; more follow a gradient from the first to the
/// last, and the legend shows six of them, first and last included, to give
/// the gradient's direction.
///
/// Errors: a bad `size`, no series, a series with no counts, `edges` not one
/// longer than `counts`, or not finite and increasing.
pub fn histograms(chart: &Histograms, size: Size) -> Result<Vec<u8>, PlotError> {
    let size = size.check()?;
    crate::error::check_not_empty("series", chart.series.len())?;
    for (i, s) in chart.series.iter().enumerate() {
        check_series(s).map_err(|reason| PlotError::Invalid {
            name: "series",
            reason: format!("entry {i} ({:?}): {reason}", s.label),
        })?;
    }
    let edges = chart.series.iter().flat_map(|s| s.edges.iter().copied());
    let (x_lo, x_hi) = edges.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let top = chart
        .series
        .iter()
        .flat_map(|s| s.counts.iter().copied())
        .max()
        .unwrap_or(0);
    let fonts = Fonts::for_size(size);
    let count = ticks::y_tick_count(size.height as f32 * 0.7, fonts, 8);
    let (_, y_hi) = ticks::nice_bounds(0.0, (top as f64).max(1.0), count);
    let y_ticks = ticks::linear_ticks(0.0, y_hi, count);

    let titles = Titles {
        title: chart.title,
        x_label: chart.x_label,
        y_label: chart.y_label,
    };
    let mut axes = LinearAxes::new(size, fonts, titles, (x_lo, x_hi), (0.0, y_hi), y_ticks);

    let n = chart.series.len();
    let colour_of = |i: usize| -> Rgb {
        if n <= 10 {
            colour::distinct(i)
        } else {
            colour::ordered(i, n)
        }
    };
    axes.canvas.clip(axes.plot);
    for (i, s) in chart.series.iter().enumerate() {
        let points: Vec<(f32, f32)> = s
            .counts
            .iter()
            .zip(s.edges.windows(2))
            .map(|(c, e)| (axes.x((e[0] + e[1]) / 2.0), axes.y(*c as f64)))
            .collect();
        let width = if n <= 10 { 2.0 } else { 1.2 };
        axes.canvas.polyline(&points, width, colour_of(i));
    }
    axes.canvas.unclip();
    axes.finish();
    let keyed = legend_entries(n, 6);
    let entries: Vec<(Rgb, String)> = keyed
        .into_iter()
        .filter(|&i| !chart.series[i].label.is_empty())
        .map(|i| (colour_of(i), chart.series[i].label.clone()))
        .collect();
    axes::legend(&mut axes.canvas, axes.plot, fonts, &entries);
    axes.canvas.into_png()
}

/// Why a series cannot be drawn, if it cannot.
fn check_series(s: &Series) -> Result<(), String> {
    if s.counts.is_empty() {
        return Err("`counts` is empty".to_string());
    }
    if s.edges.len() != s.counts.len() + 1 {
        return Err(format!(
            "`edges` has {} entries but `counts` has {} (edges must be one more)",
            s.edges.len(),
            s.counts.len()
        ));
    }
    if let Some(k) = s.edges.iter().position(|e| !e.is_finite()) {
        return Err(format!(
            "`edges` entry {k} is {}, not a finite number",
            s.edges[k]
        ));
    }
    if let Some(k) = s.edges.windows(2).position(|e| e[1] <= e[0]) {
        return Err(format!("`edges` entry {} is not above entry {k}", k + 1));
    }
    Ok(())
}

/// Which of `n` series get a legend entry: all if `n <= 10`, else `max`
/// spread evenly from the first to the last.
fn legend_entries(n: usize, max: usize) -> Vec<usize> {
    if n <= 10 || max < 2 {
        return (0..n).collect();
    }
    let mut picked: Vec<usize> = (0..max)
        .map(|k| (k * (n - 1) + (max - 1) / 2) / (max - 1))
        .collect();
    picked.dedup();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legend_samples_first_and_last() {
        assert_eq!(legend_entries(3, 6), [0, 1, 2]);
        assert_eq!(legend_entries(48, 6), [0, 9, 19, 28, 38, 47]);
        assert_eq!(legend_entries(12, 6), [0, 2, 4, 7, 9, 11]);
    }

    #[test]
    fn series_are_checked() {
        let s = |edges: Vec<f64>, counts: Vec<u64>| Series {
            label: String::new(),
            edges,
            counts,
        };
        assert!(check_series(&s(vec![0.0, 1.0], vec![3])).is_ok());
        assert!(check_series(&s(vec![0.0], vec![])).is_err());
        assert!(check_series(&s(vec![0.0, 1.0], vec![1, 2])).is_err());
        assert!(check_series(&s(vec![0.0, f64::NAN], vec![1])).is_err());
        assert!(check_series(&s(vec![1.0, 1.0], vec![1])).is_err());
    }
}
