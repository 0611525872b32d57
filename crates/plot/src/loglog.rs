//! Log-log plots: the probability of each next token against its rank, with
//! an optional fitted power law (a straight line on these axes).

use crate::axes::{self, Fonts, Room, Tick, Titles};
use crate::canvas::{Canvas, Rect, WHITE};
use crate::error::check_finite;
use crate::{colour, text, ticks, PlotError, Size};

/// A straight line in log-log space: y = 10^`intercept` · x^`slope`
/// (log10 y = intercept + slope · log10 x), drawn across the whole plot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Line {
    /// The power of x (negative for a falling rank curve).
    pub slope: f64,
    /// log10 of y at x = 1.
    pub intercept: f64,
    /// Its entry in the legend (e.g. "fit: p ∝ rank^-1.1").
    pub label: String,
}

/// Points on log10 axes, joined from left to right.
#[derive(Clone, Debug, Default)]
pub struct LogLog<'a> {
    /// Above the chart; empty for none.
    pub title: &'a str,
    /// Below the x axis; empty for none.
    pub x_label: &'a str,
    /// Beside the y axis; empty for none.
    pub y_label: &'a str,
    /// (x, y) pairs, e.g. (rank, probability) for all 50,257 tokens. Points
    /// with a zero, negative or non-finite coordinate have no place on log
    /// axes and are skipped.
    pub points: &'a [(f64, f64)],
    /// A fitted power law to draw over the points, with a legend entry.
    pub fit: Option<Line>,
}

/// Draws a log-log plot. The axes span whole decades around the points and
/// are labelled 10ⁿ (every k-th decade when there are many); the points are
/// joined by a line from left to right (and marked, when there are few enough to see apart).
///
/// Errors: a bad `size`, no point with both coordinates positive and finite,
/// a `fit` with a non-finite slope or intercept.
pub fn loglog(chart: &LogLog, size: Size) -> Result<Vec<u8>, PlotError> {
    let size = size.check()?;
    let mut logs: Vec<(f64, f64)> = chart
        .points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite() && *x > 0.0 && *y > 0.0)
        .map(|(x, y)| (x.log10(), y.log10()))
        .collect();
    if logs.is_empty() {
        return Err(PlotError::Empty { name: "points" });
    }
    // Joined left to right whatever the order given (a rank plot is already).
    logs.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some(fit) = &chart.fit {
        check_finite("fit", [fit.slope, fit.intercept])?;
    }
    let decades = |values: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (lo, hi) = (lo.floor() as i32, hi.ceil() as i32);
        (lo, if hi > lo { hi } else { lo + 1 })
    };
    let (x_lo, x_hi) = decades(&mut logs.iter().map(|p| p.0));
    let (y_lo, y_hi) = decades(&mut logs.iter().map(|p| p.1));

    let fonts = Fonts::for_size(size);
    let titles = Titles {
        title: chart.title,
        x_label: chart.x_label,
        y_label: chart.y_label,
    };
    let y_labels = decade_labels(
        y_lo,
        y_hi,
        ticks::y_tick_count(size.height as f32 * 0.7, fonts, 10),
    );
    let room = Room {
        y_ticks: axes::widest(y_labels.iter().map(|t| &t.1), fonts.tick),
        x_ticks: text::height(fonts.tick),
        right: 0.0,
    };
    let mut canvas = Canvas::new(size, WHITE);
    let plot = axes::frame(&mut canvas, fonts, titles, room);
    let x_of =
        |lx: f64| plot.x0 + ((lx - x_lo as f64) / (x_hi - x_lo) as f64) as f32 * plot.width();
    let y_of =
        |ly: f64| plot.y1 - ((ly - y_lo as f64) / (y_hi - y_lo) as f64) as f32 * plot.height();

    let widest = axes::widest((x_lo..=x_hi).map(ticks::pow10), fonts.tick);
    let x_max = (plot.width() / (widest + 2.0 * fonts.gap())) as usize;
    let x_ticks: Vec<Tick> = decade_labels(x_lo, x_hi, x_max)
        .into_iter()
        .map(|(e, s)| (x_of(e as f64), s))
        .collect();
    let y_ticks: Vec<Tick> = y_labels
        .into_iter()
        .map(|(e, s)| (y_of(e as f64), s))
        .collect();
    let grid_x: Vec<f32> = (x_lo..=x_hi).map(|e| x_of(e as f64)).collect();
    let grid_y: Vec<f32> = (y_lo..=y_hi).map(|e| y_of(e as f64)).collect();
    axes::grid(&mut canvas, plot, &grid_x, &grid_y);

    canvas.clip(plot);
    // Thousands of ranks fall on the same pixel at the tail: keep a point only
    // when it has moved half a pixel, which changes nothing visible.
    let mut line: Vec<(f32, f32)> = Vec::new();
    for &(lx, ly) in &logs {
        let p = (x_of(lx), y_of(ly));
        let moved = line
            .last()
            .is_none_or(|q| (p.0 - q.0).abs() >= 0.5 || (p.1 - q.1).abs() >= 0.5);
        if moved {
            line.push(p);
        }
    }
    let data = colour::distinct(0);
    canvas.polyline(&line, 1.5, data);
    if logs.len() <= 200 {
        for &(x, y) in &line {
            canvas.disc(x, y, 2.5, data);
        }
    }
    if let Some(fit) = &chart.fit {
        let at = |lx: f64| (x_of(lx), y_of(fit.intercept + fit.slope * lx));
        canvas.polyline(
            &[at(x_lo as f64), at(x_hi as f64)],
            2.0,
            colour::distinct(1),
        );
    }
    canvas.unclip();

    minor_ticks(&mut canvas, plot, fonts, (x_lo, x_hi), (y_lo, y_hi));
    axes::outline(&mut canvas, plot);
    axes::x_ticks(&mut canvas, plot, fonts, &x_ticks, false);
    axes::y_ticks(&mut canvas, plot, fonts, &y_ticks);
    if let Some(fit) = &chart.fit {
        axes::legend(
            &mut canvas,
            plot,
            fonts,
            &[(colour::distinct(1), fit.label.clone())],
        );
    }
    canvas.into_png()
}

/// The decades `lo..=hi` that get a label: all of them, or every k-th
/// (those divisible by k, so 10⁰ stays labelled) when there are more than `max`.
fn decade_labels(lo: i32, hi: i32, max: usize) -> Vec<(i32, String)> {
    let k = ((hi - lo) as usize).div_ceil(max.max(1)).max(1) as i32;
    (lo..=hi)
        .filter(|e| e.rem_euclid(k) == 0)
        .map(|e| (e, ticks::pow10(e)))
        .collect()
}

/// Short unlabelled ticks at 2·10ⁿ … 9·10ⁿ along an axis of few decades,
/// where they help read values between the labels.
fn minor_ticks(canvas: &mut Canvas, plot: Rect, fonts: Fonts, x: (i32, i32), y: (i32, i32)) {
    let len = (fonts.tick_len() * 0.6).max(2.0);
    let minors = |(lo, hi): (i32, i32)| -> Vec<f32> {
        if hi - lo > 6 {
            return Vec::new();
        }
        let span = (hi - lo) as f32;
        (lo..hi)
            .flat_map(|e| {
                (2..10).map(move |m| ((e as f32 + (m as f32).log10()) - lo as f32) / span)
            })
            .collect()
    };
    for t in minors(x) {
        let px = (plot.x0 + t * plot.width()).round();
        canvas.fill_rect(
            Rect::new(px, plot.y1 + 1.0, px + 1.0, plot.y1 + 1.0 + len),
            crate::canvas::INK,
        );
    }
    for t in minors(y) {
        let py = (plot.y1 - t * plot.height()).round();
        canvas.fill_rect(
            Rect::new(plot.x0 - 1.0 - len, py, plot.x0 - 1.0, py + 1.0),
            crate::canvas::INK,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decades_are_thinned_from_zero() {
        let labels: Vec<i32> = decade_labels(-12, 0, 6).into_iter().map(|d| d.0).collect();
        assert_eq!(labels, [-12, -10, -8, -6, -4, -2, 0]);
        let labels: Vec<i32> = decade_labels(0, 5, 8).into_iter().map(|d| d.0).collect();
        assert_eq!(labels, [0, 1, 2, 3, 4, 5]);
    }
}
