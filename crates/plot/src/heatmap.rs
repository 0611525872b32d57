//! Matrices as colour: the letter 2-gram matrix, attention weights, the
//! embedding module, a weight matrix; and small multiples of them.

use crate::axes::{self, Fonts, Room, Tick, Titles};
use crate::canvas::{Canvas, Rect, INK, WHITE};
use crate::raster::{self, ColourBar, Matrix};
use crate::text::{self, Align, Style, VAlign};
use crate::{ticks, PlotError, Scale, Size};

/// One matrix drawn as coloured cells, row 0 at the top, with a colour bar.
#[derive(Clone, Copy, Debug, Default)]
pub struct Heatmap<'a> {
    /// Above the chart; empty for none.
    pub title: &'a str,
    /// Below the column labels; empty for none.
    pub x_label: &'a str,
    /// Beside the row labels; empty for none.
    pub y_label: &'a str,
    /// Matrix height in cells (drawn top to bottom).
    pub rows: usize,
    /// Matrix width in cells (drawn left to right).
    pub cols: usize,
    /// `rows`×`cols` values, row-major. Non-finite cells show grey.
    pub values: &'a [f32],
    /// One label per row (tokens, letters); without them rows are numbered
    /// from 0. Only every k-th is written when they would overlap.
    pub row_labels: Option<&'a [String]>,
    /// One label per column; without them columns are numbered from 0.
    pub col_labels: Option<&'a [String]>,
    /// How values map to colours.
    pub scale: Scale,
    /// The values at the two ends of the colour map; `None` to take them from
    /// the data (see [`heatmap`]).
    pub range: Option<(f32, f32)>,
}

/// One matrix of a [`Grid`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Panel<'a> {
    /// Above the panel (e.g. "head 3"); empty for none.
    pub title: &'a str,
    /// Matrix height in cells.
    pub rows: usize,
    /// Matrix width in cells.
    pub cols: usize,
    /// `rows`×`cols` values, row-major. Non-finite cells show grey.
    pub values: &'a [f32],
}

/// Small multiples: several matrices (the 12 attention heads of a block)
/// side by side in `columns` columns, sharing one colour range and bar.
#[derive(Clone, Copy, Debug, Default)]
pub struct Grid<'a> {
    /// Above the grid; empty for none.
    pub title: &'a str,
    /// The matrices, in reading order; they may differ in shape.
    pub panels: &'a [Panel<'a>],
    /// Panels per row of the grid, at least 1 (more than there are panels is
    /// taken as all in one row).
    pub columns: usize,
    /// How values map to colours.
    pub scale: Scale,
    /// As [`Heatmap::range`], shared by all panels.
    pub range: Option<(f32, f32)>,
}

/// Draws a heatmap. A matrix with more cells than the plot has pixels (an
/// attention map over 1024 tokens, a 768×3072 weight matrix) is shrunk by
/// averaging the cells under each pixel; a small one (27×27 letter pairs) is
/// drawn as blocks. Unless `range` is given, the colours span the shown
/// values: minimum to maximum for [`Scale::Sequential`], symmetric around
/// zero for [`Scale::Diverging`] (± the 99.5th percentile of the magnitudes,
/// so that rare outliers saturate rather than wash out the rest).
///
/// Errors: a bad `size`, empty `values` or not `rows`×`cols` of them, labels
/// of the wrong length, no finite value, a `range` that is not low < high.
pub fn heatmap(chart: &Heatmap, size: Size) -> Result<Vec<u8>, PlotError> {
    let size = size.check()?;
    let m = Matrix::new(chart.rows, chart.cols, chart.values)?;
    if let Some(labels) = chart.row_labels {
        crate::error::check_same_len("row_labels", labels.len(), "rows", m.rows)?;
    }
    if let Some(labels) = chart.col_labels {
        crate::error::check_same_len("col_labels", labels.len(), "cols", m.cols)?;
    }
    let fonts = Fonts::for_size(size);
    let titles = Titles {
        title: chart.title,
        x_label: chart.x_label,
        y_label: chart.y_label,
    };
    let max_label = size.width.min(size.height) as f32 * 0.25;

    // Row labels fitted to their longest allowed length decide the left
    // margin; the plot width then decides how column labels are set, and
    // that decides the bottom margin and so the row slots.
    let y_room = match chart.row_labels {
        Some(labels) => axes::widest(
            labels.iter().map(|s| text::fit(s, fonts.tick, max_label)),
            fonts.tick,
        ),
        None => axes::widest(index_ticks(m.rows, 6).iter().map(|t| &t.1), fonts.tick),
    };
    let room = |x_ticks, right| Room {
        y_ticks: y_room,
        x_ticks,
        right,
    };
    let flat = text::height(fonts.tick);
    // The colour bar's labels depend on the range, which comes from the
    // resampled pixels, which need the plot size, which needs the bar's room:
    // a draft with room for typical labels fixes the range, and the final
    // layout (barely different) is coloured over that same range.
    let draft = axes::layout(size, fonts, titles, room(flat, bar_room(fonts, None)));
    let (pw, ph) = raster::pixel_size(draft);
    let range = raster::colour_range(chart.scale, chart.range, &raster::resample(m, pw, ph))?;
    let bar = ColourBar::new(fonts, chart.scale, range, draft.height());
    let right = bar_room(fonts, Some(&bar));
    let draft = axes::layout(size, fonts, titles, room(flat, right));
    let (x_ticks, upright, x_extent) = match chart.col_labels {
        Some(labels) => {
            let cats = ticks::x_categories(labels, draft.width() / m.cols as f32, fonts, max_label);
            (cats.shown, cats.upright, cats.extent)
        }
        None => {
            let ticks = ticks::x_linear_ticks(
                0.0,
                m.cols.saturating_sub(1) as f64,
                draft.width(),
                fonts,
                6,
            );
            (whole(ticks), false, flat)
        }
    };
    let mut canvas = Canvas::new(size, WHITE);
    let plot = axes::frame(&mut canvas, fonts, titles, room(x_extent, right));
    let (pw, ph) = raster::pixel_size(plot);
    let pixels = raster::resample(m, pw, ph);
    raster::paint(&mut canvas, plot, &pixels, pw, chart.scale, range);
    axes::outline(&mut canvas, plot);

    let (cell_w, cell_h) = (plot.width() / m.cols as f32, plot.height() / m.rows as f32);
    let y_ticks: Vec<(usize, String)> = match chart.row_labels {
        Some(labels) => ticks::y_categories(labels, cell_h, fonts, max_label),
        None => index_ticks(m.rows, ticks::y_tick_count(plot.height(), fonts, 6)),
    };
    let place = |ticks: Vec<(usize, String)>, start: f32, cell: f32| -> Vec<Tick> {
        ticks
            .into_iter()
            .map(|(i, s)| (start + (i as f32 + 0.5) * cell, s))
            .collect()
    };
    axes::y_ticks(&mut canvas, plot, fonts, &place(y_ticks, plot.y0, cell_h));
    axes::x_ticks(
        &mut canvas,
        plot,
        fonts,
        &place(x_ticks, plot.x0, cell_w),
        upright,
    );

    let bar_x = plot.x1 + fonts.tick * 1.5;
    bar.draw(&mut canvas, bar_x, plot.y0, plot.y1);
    canvas.into_png()
}

/// Room for a colour bar right of a plot: its own, or a guess from typical
/// tick labels ("-0.0025") before its range is known.
fn bar_room(fonts: Fonts, bar: Option<&ColourBar>) -> f32 {
    match bar {
        Some(bar) => bar.room() + fonts.gap(),
        None => {
            let labels = text::width("-0.0025", fonts.tick);
            (fonts.label * 1.1).round() + fonts.tick_len() + fonts.gap() * 1.5 + labels
        }
    }
}

/// Numbered ticks 0, 100, 200, … (about `count`) for a matrix axis of `n`
/// cells without labels.
fn index_ticks(n: usize, count: usize) -> Vec<(usize, String)> {
    whole(ticks::linear_ticks(0.0, n.saturating_sub(1) as f64, count))
}

/// The ticks that fall on a cell index.
fn whole(ticks: Vec<(f64, String)>) -> Vec<(usize, String)> {
    ticks
        .into_iter()
        .filter(|(v, _)| *v >= 0.0 && v.fract() == 0.0)
        .map(|(v, s)| (v as usize, s))
        .collect()
}

/// Draws small multiples: panels in reading order, `columns` to a row, each
/// with its title, all coloured over one range (see [`heatmap`] for how it is
/// chosen) explained by one colour bar.
///
/// Errors: a bad `size`, no panels, `columns` of 0, a panel whose values are
/// empty or not `rows`×`cols`, no finite value, a bad `range`.
pub fn heatmap_grid(chart: &Grid, size: Size) -> Result<Vec<u8>, PlotError> {
    let size = size.check()?;
    crate::error::check_not_empty("panels", chart.panels.len())?;
    if chart.columns == 0 {
        return Err(PlotError::Invalid {
            name: "columns",
            reason: "is 0 but must be at least 1".to_string(),
        });
    }
    let matrices = chart
        .panels
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Matrix::new(p.rows, p.cols, p.values).map_err(|e| PlotError::Invalid {
                name: "panels",
                reason: format!("entry {i}: {e}"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let fonts = Fonts::for_size(size);
    let (w, h) = (size.width as f32, size.height as f32);
    let gap = fonts.gap();
    let columns = chart.columns.min(matrices.len());
    let grid_rows = matrices.len().div_ceil(columns);
    let top = if chart.title.is_empty() {
        gap
    } else {
        gap * 2.0 + text::height(fonts.title)
    };
    let titled = chart.panels.iter().any(|p| !p.title.is_empty());
    let title_h = if titled {
        text::height(fonts.tick) + gap * 0.25
    } else {
        0.0
    };
    // Each panel's cell (with its title) and image rectangle, left of the
    // colour bar's room.
    let layout = |right: f32| {
        let area = Rect::new(gap, top, w - gap - right, h - gap);
        let (cell_w, cell_h) = (
            area.width() / columns as f32,
            area.height() / grid_rows as f32,
        );
        let cells: Vec<(Rect, Rect)> = (0..matrices.len())
            .map(|i| {
                let (gx, gy) = ((i % columns) as f32, (i / columns) as f32);
                let (x0, y0) = (area.x0 + gx * cell_w, area.y0 + gy * cell_h);
                let cell = Rect::new(x0, y0, x0 + cell_w, y0 + cell_h);
                let image = Rect::new(
                    cell.x0 + gap * 0.5,
                    cell.y0 + title_h,
                    cell.x1 - gap * 0.5,
                    cell.y1 - gap * 0.5,
                );
                (cell, image)
            })
            .collect();
        (area, cells)
    };
    let resample_all = |cells: &[(Rect, Rect)]| -> Vec<Vec<f32>> {
        cells
            .iter()
            .zip(&matrices)
            .map(|((_, image), m)| {
                let (pw, ph) = raster::pixel_size(*image);
                raster::resample(*m, pw, ph)
            })
            .collect()
    };
    // As in `heatmap`: a draft layout fixes the shared range, then the bar's
    // real room.
    let (_, cells) = layout(bar_room(fonts, None));
    let all: Vec<f32> = resample_all(&cells).into_iter().flatten().collect();
    let range = raster::colour_range(chart.scale, chart.range, &all)?;
    let bar = ColourBar::new(fonts, chart.scale, range, h * 0.8);
    let (area, cells) = layout(bar_room(fonts, Some(&bar)));
    let shown = resample_all(&cells);

    let mut canvas = Canvas::new(size, WHITE);
    if !chart.title.is_empty() {
        let s = text::fit(chart.title, fonts.title, w - 2.0 * gap);
        let style = Style::new(fonts.title, INK).align(Align::Middle, VAlign::Top);
        text::draw(&mut canvas, &s, w / 2.0, gap, style);
    }
    for (((cell, image), pixels), panel) in cells.iter().zip(&shown).zip(chart.panels) {
        let (pw, _) = raster::pixel_size(*image);
        raster::paint(&mut canvas, *image, pixels, pw, chart.scale, range);
        canvas.stroke_rect(image.grow(1.0), INK);
        if !panel.title.is_empty() {
            let s = text::fit(panel.title, fonts.tick, cell.width());
            let style = Style::new(fonts.tick, INK).align(Align::Middle, VAlign::Bottom);
            text::draw(
                &mut canvas,
                &s,
                (image.x0 + image.x1) / 2.0,
                image.y0 - 2.0,
                style,
            );
        }
    }
    let bar_y0 = area.y0 + title_h;
    bar.draw(&mut canvas, area.x1 + gap, bar_y0, area.y1 - gap * 0.5);
    canvas.into_png()
}
