//! Matrices as pixels: resampling to the plot's pixel grid, the colour range,
//! and the colour bar that explains it.

use crate::axes::{self, Fonts};
use crate::canvas::{Canvas, Rect, INK};
use crate::colour::{self, MISSING};
use crate::text::{self, Align, Style, VAlign};
use crate::{ticks, PlotError, Scale};

/// A row-major matrix whose length has been checked against its shape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Matrix<'a> {
    pub rows: usize,
    pub cols: usize,
    pub values: &'a [f32],
}

impl<'a> Matrix<'a> {
    /// The matrix, if `values` is non-empty and exactly `rows`×`cols` long.
    pub fn new(rows: usize, cols: usize, values: &'a [f32]) -> Result<Self, PlotError> {
        if values.is_empty() {
            return Err(PlotError::Empty { name: "values" });
        }
        if rows.checked_mul(cols) != Some(values.len()) {
            return Err(PlotError::Shape {
                name: "values",
                len: values.len(),
                rows,
                cols,
            });
        }
        Ok(Self { rows, cols, values })
    }
}

/// The source cells `[start, end)` that pixel `p` of `pixels` covers out of
/// `cells`: several when shrinking, one (repeated over pixels) when growing.
fn span(p: usize, pixels: usize, cells: usize) -> (usize, usize) {
    let start = p * cells / pixels;
    let end = ((p + 1) * cells / pixels).max(start + 1).min(cells);
    (start, end)
}

/// The matrix on a `width`×`height` pixel grid, row-major: each pixel is the
/// mean of the finite cells it covers (NaN if none). Averaging rather than
/// picking one cell keeps a 1024×1024 attention map or a 768×3072 weight
/// matrix honest when it has more cells than the plot has pixels. Each pixel
/// row sums its matrix rows into one row of accumulators, so the work is one
/// pass over the cells (more only when rows are repeated to grow the matrix)
/// and the extra memory one pixel row, however tall the matrix.
pub(crate) fn resample(m: Matrix, width: usize, height: usize) -> Vec<f32> {
    let (width, height) = (width.max(1), height.max(1));
    let col_spans: Vec<(usize, usize)> = (0..width).map(|x| span(x, width, m.cols)).collect();
    let mut out = vec![f32::NAN; width * height];
    let mut sums = vec![0f32; width];
    let mut counts = vec![0u32; width];
    for (y, out_row) in out.chunks_exact_mut(width).enumerate() {
        let (r0, r1) = span(y, height, m.rows);
        sums.fill(0.0);
        counts.fill(0);
        for r in r0..r1 {
            let row = &m.values[r * m.cols..(r + 1) * m.cols];
            for (x, &(c0, c1)) in col_spans.iter().enumerate() {
                for &v in &row[c0..c1] {
                    if v.is_finite() {
                        sums[x] += v;
                        counts[x] += 1;
                    }
                }
            }
        }
        for ((o, s), n) in out_row.iter_mut().zip(&sums).zip(&counts) {
            if *n > 0 {
                *o = s / *n as f32;
            }
        }
    }
    out
}

/// The value range that the colours span: `given` if the caller chose one,
/// else from the finite shown `pixels`: their minimum to maximum for a
/// sequential scale; for a diverging one ± the 99.5th percentile of their
/// magnitude, so that a few outlying weights (GPT-2 has some) saturate
/// instead of washing every other weight out to white.
pub(crate) fn colour_range(
    scale: Scale,
    given: Option<(f32, f32)>,
    pixels: &[f32],
) -> Result<(f32, f32), PlotError> {
    if let Some((lo, hi)) = given {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(PlotError::Invalid {
                name: "range",
                reason: format!("is ({lo}, {hi}) but must be two finite numbers, low < high"),
            });
        }
        return Ok((lo, hi));
    }
    let finite = || pixels.iter().copied().filter(|v| v.is_finite());
    let lo = finite().fold(f32::INFINITY, f32::min);
    let hi = finite().fold(f32::NEG_INFINITY, f32::max);
    if lo > hi {
        return Err(PlotError::Invalid {
            name: "values",
            reason: "has no finite entry".to_string(),
        });
    }
    match scale {
        Scale::Sequential => Ok(colour::range(scale, lo, hi)),
        Scale::Diverging => {
            let mut magnitudes: Vec<f32> = finite().map(f32::abs).collect();
            let k = ((magnitudes.len() - 1) as f64 * 0.995).round() as usize;
            let (_, m, _) = magnitudes.select_nth_unstable_by(k, f32::total_cmp);
            Ok(colour::range(scale, -*m, *m))
        }
    }
}

/// Paints resampled `pixels` (`width` wide) into `at`'s top-left corner.
pub(crate) fn paint(
    canvas: &mut Canvas,
    at: Rect,
    pixels: &[f32],
    width: usize,
    scale: Scale,
    range: (f32, f32),
) {
    let (x0, y0) = (at.x0.round() as i32, at.y0.round() as i32);
    let (lo, hi) = range;
    for (i, &v) in pixels.iter().enumerate() {
        let c = if v.is_finite() {
            colour::map(scale, (v - lo) / (hi - lo))
        } else {
            MISSING
        };
        canvas.put(x0 + (i % width) as i32, y0 + (i / width) as i32, c);
    }
}

/// Width in whole pixels of a rectangle's pixel grid, and its height.
pub(crate) fn pixel_size(r: Rect) -> (usize, usize) {
    let w = (r.x1.round() - r.x0.round()).max(1.0) as usize;
    let h = (r.y1.round() - r.y0.round()).max(1.0) as usize;
    (w, h)
}

/// A vertical colour bar explaining `scale` over `range`, with tick labels.
pub(crate) struct ColourBar {
    fonts: Fonts,
    scale: Scale,
    range: (f32, f32),
    strip: f32,
    ticks: Vec<(f64, String)>,
    labels: f32,
}

impl ColourBar {
    /// A bar about `length` pixels tall (which decides how many ticks it gets).
    pub fn new(fonts: Fonts, scale: Scale, range: (f32, f32), length: f32) -> Self {
        let count = ticks::y_tick_count(length, fonts, 6);
        let ticks = ticks::linear_ticks(range.0 as f64, range.1 as f64, count);
        let labels = axes::widest(ticks.iter().map(|t| &t.1), fonts.tick);
        Self {
            fonts,
            scale,
            range,
            strip: (fonts.label * 1.1).round(),
            ticks,
            labels,
        }
    }

    /// Room it needs right of the plot.
    pub fn room(&self) -> f32 {
        self.strip + self.fonts.tick_len() + self.fonts.gap() * 0.5 + self.labels
    }

    /// Draws the bar with its left edge at `x`, from `y0` down to `y1`.
    pub fn draw(&self, canvas: &mut Canvas, x: f32, y0: f32, y1: f32) {
        let (fonts, scale, range) = (self.fonts, self.scale, self.range);
        let bar = Rect::new(x.round(), y0.round(), (x + self.strip).round(), y1.round());
        let (lo, hi) = (range.0 as f64, range.1 as f64);
        let h = bar.height().max(1.0);
        for y in bar.y0 as i32..bar.y1 as i32 {
            let t = 1.0 - (y as f32 - bar.y0 + 0.5) / h;
            canvas.fill_rect(
                Rect::new(bar.x0, y as f32, bar.x1, y as f32 + 1.0),
                colour::map(scale, t),
            );
        }
        canvas.stroke_rect(bar.grow(1.0), INK);
        let len = fonts.tick_len();
        for (v, label) in &self.ticks {
            let y = (bar.y1 - ((v - lo) / (hi - lo)) as f32 * h).round();
            canvas.fill_rect(Rect::new(bar.x1 + 1.0, y, bar.x1 + 1.0 + len, y + 1.0), INK);
            let style = Style::new(fonts.tick, INK).align(Align::Start, VAlign::Middle);
            text::draw(
                canvas,
                label,
                bar.x1 + 1.0 + len + fonts.gap() * 0.5,
                y + 0.5,
                style,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_every_cell_once_when_shrinking() {
        let spans: Vec<_> = (0..3).map(|p| span(p, 3, 7)).collect();
        assert_eq!(spans, [(0, 2), (2, 4), (4, 7)]);
        let spans: Vec<_> = (0..4).map(|p| span(p, 4, 2)).collect();
        assert_eq!(spans, [(0, 1), (0, 1), (1, 2), (1, 2)]);
    }

    #[test]
    fn resampling_averages_blocks_and_repeats_cells() {
        let m = Matrix::new(2, 4, &[1.0, 3.0, 5.0, 7.0, 2.0, 4.0, f32::NAN, 8.0]).unwrap();
        assert_eq!(resample(m, 2, 1), [2.5, 20.0 / 3.0]);
        let m = Matrix::new(1, 2, &[1.0, 2.0]).unwrap();
        assert_eq!(resample(m, 4, 2), [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
        let m = Matrix::new(1, 1, &[f32::NAN]).unwrap();
        assert!(resample(m, 1, 1)[0].is_nan());
    }

    #[test]
    fn diverging_range_is_symmetric_and_robust() {
        let mut v: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 500.0).collect();
        v.push(1000.0);
        let (lo, hi) = colour_range(Scale::Diverging, None, &v).unwrap();
        assert_eq!(lo, -hi);
        assert!(hi > 0.9 && hi < 1.5, "{hi}");
        assert_eq!(
            colour_range(Scale::Sequential, None, &[0.5, f32::NAN, 2.0]),
            Ok((0.5, 2.0))
        );
        assert!(colour_range(Scale::Sequential, None, &[f32::NAN]).is_err());
        assert!(colour_range(Scale::Sequential, Some((1.0, 1.0)), &[1.0]).is_err());
    }
}
