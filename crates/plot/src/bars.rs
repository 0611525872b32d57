//! Bar charts: letter frequencies, a next-token probability table.

use crate::axes::{self, Fonts, Room, Titles};
use crate::canvas::{Canvas, Rect, INK, WHITE};
use crate::error::{check_finite, check_not_empty, check_same_len};
use crate::{colour, text, ticks, PlotError, Size};

/// A bar chart: one bar per label, in the given order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bars<'a> {
    /// Above the chart; empty for none.
    pub title: &'a str,
    /// Below the category labels; empty for none.
    pub x_label: &'a str,
    /// Beside the value axis; empty for none.
    pub y_label: &'a str,
    /// One label per bar (a letter, a token). Long ones are cut short, and
    /// only every k-th is written when they would overlap.
    pub labels: &'a [String],
    /// Bar heights, finite; negative ones hang below zero.
    pub values: &'a [f64],
}

/// Draws a bar chart: the value axis always includes zero, bars are centred
/// on their labels.
///
/// Errors: a bad `size`, empty `values`, `labels` of another length, a
/// non-finite value.
pub fn bars(chart: &Bars, size: Size) -> Result<Vec<u8>, PlotError> {
    let size = size.check()?;
    let (labels, values) = (chart.labels, chart.values);
    check_not_empty("values", values.len())?;
    check_same_len("values", values.len(), "labels", labels.len())?;
    check_finite("values", values.iter().copied())?;

    let lo = values.iter().copied().fold(0.0, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    let hi = if hi > lo { hi } else { 1.0 };
    let fonts = Fonts::for_size(size);
    let count = ticks::y_tick_count(size.height as f32 * 0.7, fonts, 8);
    let (lo, hi) = ticks::nice_bounds(lo, hi, count);
    let ticks = ticks::linear_ticks(lo, hi, count);

    let titles = Titles {
        title: chart.title,
        x_label: chart.x_label,
        y_label: chart.y_label,
    };
    let y_room = axes::widest(ticks.iter().map(|t| &t.1), fonts.tick);
    // The category labels' room depends on the slot width, which depends on
    // the plot width; a first layout with flat labels gives the width.
    let draft = axes::layout(
        size,
        fonts,
        titles,
        Room {
            y_ticks: y_room,
            x_ticks: text::height(fonts.tick),
            right: 0.0,
        },
    );
    let n = values.len();
    let cats = ticks::x_categories(
        labels,
        draft.width() / n as f32,
        fonts,
        size.height as f32 * 0.3,
    );

    let mut canvas = Canvas::new(size, WHITE);
    let room = Room {
        y_ticks: y_room,
        x_ticks: cats.extent,
        right: 0.0,
    };
    let plot = axes::frame(&mut canvas, fonts, titles, room);
    let y_of = |v: f64| plot.y1 - ((v - lo) / (hi - lo)) as f32 * plot.height();
    let y_ticks: Vec<axes::Tick> = ticks.iter().map(|(v, s)| (y_of(*v), s.clone())).collect();
    let ys: Vec<f32> = y_ticks.iter().map(|t| t.0).collect();
    axes::grid(&mut canvas, plot, &[], &ys);

    let slot = plot.width() / n as f32;
    // Gaps between bars while they are wide enough to see them.
    let bar = if slot >= 4.0 { slot * 0.8 } else { slot };
    let zero = y_of(0.0);
    for (i, v) in values.iter().enumerate() {
        let x0 = (plot.x0 + i as f32 * slot + (slot - bar) / 2.0).round();
        let x1 = (x0 + bar.round()).max(x0 + 1.0);
        let y = y_of(*v);
        canvas.fill_rect(
            Rect::new(x0, y.min(zero), x1, y.max(zero)),
            colour::distinct(0),
        );
    }
    if lo < 0.0 {
        canvas.fill_rect(
            Rect::new(plot.x0, zero.round(), plot.x1, zero.round() + 1.0),
            INK,
        );
    }
    axes::outline(&mut canvas, plot);
    axes::y_ticks(&mut canvas, plot, fonts, &y_ticks);
    let x_ticks: Vec<axes::Tick> = cats
        .shown
        .into_iter()
        .map(|(i, s)| (plot.x0 + (i as f32 + 0.5) * slot, s))
        .collect();
    axes::x_ticks(&mut canvas, plot, fonts, &x_ticks, cats.upright);
    canvas.into_png()
}
