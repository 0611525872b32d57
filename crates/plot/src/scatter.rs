//! Labelled scatter maps: word embeddings projected to two dimensions.

use crate::axes::{Fonts, LinearAxes, Titles};
use crate::canvas::{Rect, INK};
use crate::error::check_same_len;
use crate::text::{self, Align, Style, VAlign};
use crate::{colour, ticks, PlotError, Size};

/// Points on linear axes, each optionally named.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scatter<'a> {
    /// Above the chart; empty for none.
    pub title: &'a str,
    /// Below the x axis (e.g. "PC 1"); empty for none.
    pub x_label: &'a str,
    /// Beside the y axis; empty for none.
    pub y_label: &'a str,
    /// (x, y) pairs; a pair with a non-finite coordinate is skipped.
    pub points: &'a [(f64, f64)],
    /// One word per point, or none at all for unnamed points.
    pub labels: &'a [String],
}

/// Draws a scatter map. Each label is set beside its point, on the first
/// side (right, left, above, below) where it overlaps no label already set
/// and stays inside the plot; a label with no such place is left out rather
/// than drawn over another, so a crowded map stays legible.
///
/// Errors: a bad `size`, no finite point, `labels` neither empty nor as many
/// as `points`.
pub fn scatter(chart: &Scatter, size: Size) -> Result<Vec<u8>, PlotError> {
    let size = size.check()?;
    if !chart.labels.is_empty() {
        check_same_len("labels", chart.labels.len(), "points", chart.points.len())?;
    }
    let kept: Vec<(usize, f64, f64)> = chart
        .points
        .iter()
        .enumerate()
        .filter(|(_, (x, y))| x.is_finite() && y.is_finite())
        .map(|(i, &(x, y))| (i, x, y))
        .collect();
    if kept.is_empty() {
        return Err(PlotError::Empty { name: "points" });
    }
    let bounds = |v: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = v.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        // A margin of 6% so that points on the edge are not cut by the frame.
        let pad = if hi > lo {
            (hi - lo) * 0.06
        } else {
            lo.abs().max(1.0) * 0.5
        };
        (lo - pad, hi + pad)
    };
    let (x_lo, x_hi) = bounds(&mut kept.iter().map(|p| p.1));
    let (y_lo, y_hi) = bounds(&mut kept.iter().map(|p| p.2));
    let fonts = Fonts::for_size(size);
    let y_ticks = ticks::linear_ticks(
        y_lo,
        y_hi,
        ticks::y_tick_count(size.height as f32 * 0.7, fonts, 7),
    );

    let titles = Titles {
        title: chart.title,
        x_label: chart.x_label,
        y_label: chart.y_label,
    };
    let mut axes = LinearAxes::new(size, fonts, titles, (x_lo, x_hi), (y_lo, y_hi), y_ticks);
    let plot = axes.plot;

    let r = (fonts.tick * 0.28).max(2.5);
    let dot = colour::distinct(0);
    for &(_, x, y) in &kept {
        let (cx, cy) = (axes.x(x), axes.y(y));
        axes.canvas.disc(cx, cy, r, dot);
    }
    if !chart.labels.is_empty() {
        let px = fonts.tick;
        let line = text::height(px);
        let mut taken: Vec<Rect> = Vec::new();
        for &(i, x, y) in &kept {
            let label = text::fit(&chart.labels[i], px, plot.width() * 0.3);
            let w = text::width(&label, px);
            let (cx, cy) = (axes.x(x), axes.y(y));
            let off = r + 2.0;
            let candidates = [
                Rect::new(cx + off, cy - line / 2.0, cx + off + w, cy + line / 2.0),
                Rect::new(cx - off - w, cy - line / 2.0, cx - off, cy + line / 2.0),
                Rect::new(cx - w / 2.0, cy - off - line, cx + w / 2.0, cy - off),
                Rect::new(cx - w / 2.0, cy + off, cx + w / 2.0, cy + off + line),
            ];
            let free = candidates
                .into_iter()
                .find(|c| plot.contains(c) && !taken.iter().any(|t| t.overlaps(c)));
            if let Some(b) = free {
                let style = Style::new(px, INK).align(Align::Start, VAlign::Top);
                text::draw(&mut axes.canvas, &label, b.x0, b.y0, style);
                taken.push(b);
            }
        }
    }
    axes.finish();
    axes.canvas.into_png()
}
