//! What every chart shares: font sizes, the layout of title and axis labels
//! around the plot area, tick marks and labels, grid lines, the legend.

use crate::canvas::{Canvas, Rect, Rgb, GRID, INK, WHITE};
use crate::text::{self, Align, Style, VAlign};
use crate::Size;

/// The legend's border: darker than grid lines, lighter than the axes.
const GRID_DARK: Rgb = [170, 170, 170];

/// Font heights in pixels, grown with the picture so that a large picture
/// is as readable as a small one, within bounds that stay legible.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fonts {
    pub title: f32,
    pub label: f32,
    pub tick: f32,
}

impl Fonts {
    pub fn for_size(size: Size) -> Self {
        // The geometric mean of the sides: a wide weight-matrix picture gets
        // the same text as a square one of the same area.
        let area = (size.width as f32 * size.height as f32).sqrt();
        let base = (area / 40.0).clamp(9.0, 26.0);
        Self {
            title: (base * 1.25).round(),
            label: base.round(),
            tick: (base * 0.9).round(),
        }
    }

    /// Length of a tick mark.
    pub fn tick_len(&self) -> f32 {
        (self.tick * 0.35).round().max(3.0)
    }

    /// The space between pieces of text, and between text and the edge.
    pub fn gap(&self) -> f32 {
        (self.label * 0.5).round()
    }
}

/// The words around a plot; an empty string is left out with its space.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Titles<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
}

/// Room the chart needs outside the plot rectangle for its own marks.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Room {
    /// Width of the widest y tick label (0 for none).
    pub y_ticks: f32,
    /// Height of the x tick labels (their length when set upright).
    pub x_ticks: f32,
    /// Width of what stands right of the plot (a colour bar).
    pub right: f32,
}

/// The plot rectangle left once title, axis labels and `room` have their space.
pub(crate) fn layout(size: Size, fonts: Fonts, t: Titles, room: Room) -> Rect {
    let (w, h) = (size.width as f32, size.height as f32);
    let gap = fonts.gap();
    let tick_space = |extent: f32| {
        if extent > 0.0 {
            fonts.tick_len() + gap * 0.5 + extent
        } else {
            fonts.tick_len()
        }
    };
    let title_h = if t.title.is_empty() {
        0.0
    } else {
        text::height(fonts.title) + gap
    };
    let label_h = |s: &str| {
        if s.is_empty() {
            0.0
        } else {
            text::height(fonts.label) + gap * 0.5
        }
    };
    let top = gap + title_h + text::height(fonts.tick) * 0.5;
    let left = gap + label_h(t.y_label) + tick_space(room.y_ticks);
    let bottom = h - gap - label_h(t.x_label) - tick_space(room.x_ticks);
    // Half a tick label of room on the right: the last x tick label is centred
    // on the plot's right edge.
    let right = w - gap - room.right - fonts.tick * 1.5;
    Rect::new(left, top, right.max(left + 1.0), bottom.max(top + 1.0))
}

/// Lays out title and axis labels, draws them, and returns the plot rectangle.
pub(crate) fn frame(canvas: &mut Canvas, fonts: Fonts, t: Titles, room: Room) -> Rect {
    let (w, h) = (canvas.width(), canvas.height());
    let size = Size::new(w as u32, h as u32);
    let gap = fonts.gap();
    let plot = layout(size, fonts, t, room);
    let ink = |px| Style::new(px, INK);
    if !t.title.is_empty() {
        let s = text::fit(t.title, fonts.title, w - 2.0 * gap);
        let style = ink(fonts.title).align(Align::Middle, VAlign::Top);
        text::draw(canvas, &s, w / 2.0, gap, style);
    }
    if !t.x_label.is_empty() {
        let s = text::fit(t.x_label, fonts.label, w - 2.0 * gap);
        let style = ink(fonts.label).align(Align::Middle, VAlign::Bottom);
        text::draw(canvas, &s, (plot.x0 + plot.x1) / 2.0, h - gap, style);
    }
    if !t.y_label.is_empty() {
        let s = text::fit(t.y_label, fonts.label, h - 2.0 * gap);
        let style = ink(fonts.label).align(Align::Middle, VAlign::Top).upright();
        text::draw(canvas, &s, gap, (plot.y0 + plot.y1) / 2.0, style);
    }
    plot
}

/// A tick: its position in pixels along the axis and its label.
pub(crate) type Tick = (f32, String);

/// A chart on linear axes over `x` and `y`: titles and axes laid out, grid drawn. The chart
/// draws its data at [`LinearAxes::x`] / [`LinearAxes::y`], then [`LinearAxes::finish`] draws
/// the outline and tick marks over it.
pub(crate) struct LinearAxes {
    pub canvas: Canvas,
    pub plot: Rect,
    pub fonts: Fonts,
    x: (f64, f64),
    y: (f64, f64),
    x_ticks: Vec<Tick>,
    y_ticks: Vec<Tick>,
}

impl LinearAxes {
    /// `y_ticks` are the chart's own (values and labels), since charts choose their y range
    /// differently; the x ticks are chosen here to fit the plot's width.
    pub fn new(
        size: Size,
        fonts: Fonts,
        titles: Titles,
        x: (f64, f64),
        y: (f64, f64),
        y_ticks: Vec<(f64, String)>,
    ) -> Self {
        let room = Room {
            y_ticks: widest(y_ticks.iter().map(|t| &t.1), fonts.tick),
            x_ticks: text::height(fonts.tick),
            right: 0.0,
        };
        let mut canvas = Canvas::new(size, WHITE);
        let plot = frame(&mut canvas, fonts, titles, room);
        let x_ticks = crate::ticks::x_linear_ticks(x.0, x.1, plot.width(), fonts, 7);
        let mut axes = LinearAxes {
            canvas,
            plot,
            fonts,
            x,
            y,
            x_ticks: Vec::new(),
            y_ticks: Vec::new(),
        };
        axes.x_ticks = x_ticks.into_iter().map(|(v, s)| (axes.x(v), s)).collect();
        axes.y_ticks = y_ticks.into_iter().map(|(v, s)| (axes.y(v), s)).collect();
        let xs: Vec<f32> = axes.x_ticks.iter().map(|t| t.0).collect();
        let ys: Vec<f32> = axes.y_ticks.iter().map(|t| t.0).collect();
        grid(&mut axes.canvas, plot, &xs, &ys);
        axes
    }

    /// The pixel column of the value `v`.
    pub fn x(&self, v: f64) -> f32 {
        let (lo, hi) = self.x;
        self.plot.x0 + ((v - lo) / (hi - lo)) as f32 * self.plot.width()
    }

    /// The pixel row of the value `v`.
    pub fn y(&self, v: f64) -> f32 {
        let (lo, hi) = self.y;
        self.plot.y1 - ((v - lo) / (hi - lo)) as f32 * self.plot.height()
    }

    /// Draws the outline and the tick marks over the data.
    pub fn finish(&mut self) {
        outline(&mut self.canvas, self.plot);
        x_ticks(
            &mut self.canvas,
            self.plot,
            self.fonts,
            &self.x_ticks,
            false,
        );
        y_ticks(&mut self.canvas, self.plot, self.fonts, &self.y_ticks);
    }
}

/// Light grid lines behind the data at the given pixel positions.
pub(crate) fn grid(canvas: &mut Canvas, plot: Rect, xs: &[f32], ys: &[f32]) {
    for &x in xs {
        canvas.fill_rect(
            Rect::new(x.round(), plot.y0, x.round() + 1.0, plot.y1),
            GRID,
        );
    }
    for &y in ys {
        canvas.fill_rect(
            Rect::new(plot.x0, y.round(), plot.x1, y.round() + 1.0),
            GRID,
        );
    }
}

/// The plot's outline, drawn over the data's edges.
pub(crate) fn outline(canvas: &mut Canvas, plot: Rect) {
    canvas.stroke_rect(plot.grow(1.0), INK);
}

/// Tick marks and labels below the plot; `upright` labels read upwards and
/// end at the tick.
pub(crate) fn x_ticks(
    canvas: &mut Canvas,
    plot: Rect,
    fonts: Fonts,
    ticks: &[Tick],
    upright: bool,
) {
    let len = fonts.tick_len();
    let y = plot.y1 + 1.0;
    for (x, label) in ticks {
        let x = x.round();
        canvas.fill_rect(Rect::new(x, y, x + 1.0, y + len), INK);
        let at = y + len + fonts.gap() * 0.5;
        let style = if upright {
            Style::new(fonts.tick, INK)
                .align(Align::End, VAlign::Middle)
                .upright()
        } else {
            Style::new(fonts.tick, INK).align(Align::Middle, VAlign::Top)
        };
        text::draw(canvas, label, x + 0.5, at, style);
    }
}

/// Tick marks and labels left of the plot.
pub(crate) fn y_ticks(canvas: &mut Canvas, plot: Rect, fonts: Fonts, ticks: &[Tick]) {
    let len = fonts.tick_len();
    let x = plot.x0 - 1.0;
    for (y, label) in ticks {
        let y = y.round();
        canvas.fill_rect(Rect::new(x - len, y, x, y + 1.0), INK);
        let style = Style::new(fonts.tick, INK).align(Align::End, VAlign::Middle);
        text::draw(canvas, label, x - len - fonts.gap() * 0.5, y + 0.5, style);
    }
}

/// The widest of some tick labels.
pub(crate) fn widest(labels: impl IntoIterator<Item = impl AsRef<str>>, px: f32) -> f32 {
    labels
        .into_iter()
        .map(|s| text::width(s.as_ref(), px))
        .fold(0.0, f32::max)
}

/// A key in the plot's top-right corner: a short line in each colour and its
/// label, on white so that data behind it does not show through.
pub(crate) fn legend(canvas: &mut Canvas, plot: Rect, fonts: Fonts, entries: &[(Rgb, String)]) {
    if entries.is_empty() {
        return;
    }
    let px = fonts.tick;
    let (pad, line_h, swatch) = (fonts.gap() * 0.6, text::height(px) * 1.15, px * 1.8);
    let labels: Vec<String> = entries
        .iter()
        .map(|(_, s)| text::fit(s, px, plot.width() * 0.45))
        .collect();
    let box_w = pad * 3.0 + swatch + widest(&labels, px);
    let box_h = pad * 2.0 + line_h * entries.len() as f32;
    let x1 = plot.x1 - pad;
    let b = Rect::new(
        (x1 - box_w).max(plot.x0),
        plot.y0 + pad,
        x1,
        plot.y0 + pad + box_h,
    );
    canvas.fill_rect(b, WHITE);
    canvas.stroke_rect(b, GRID_DARK);
    for (k, ((colour, _), label)) in entries.iter().zip(&labels).enumerate() {
        let y = b.y0 + pad + line_h * (k as f32 + 0.5);
        let x = b.x0 + pad;
        canvas.polyline(&[(x, y), (x + swatch, y)], 2.0, *colour);
        let style = Style::new(px, INK).align(Align::Start, VAlign::Middle);
        text::draw(canvas, label, x + swatch + pad, y, style);
    }
}
