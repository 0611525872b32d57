//! An RGB pixel buffer with the few shapes the charts need, and its PNG encoding.
//!
//! Drawing our own pixels (rather than through a plotting crate) keeps the
//! dependencies to a PNG encoder and a glyph rasteriser, and lets a heatmap
//! write a 768×3072 matrix straight into the buffer.

use crate::{PlotError, Size};

/// An 8-bit sRGB colour.
pub(crate) type Rgb = [u8; 3];

pub(crate) const WHITE: Rgb = [255, 255, 255];
/// Axis lines, ticks and text: near black reads softer than black.
pub(crate) const INK: Rgb = [34, 34, 34];
/// Grid lines behind the data.
pub(crate) const GRID: Rgb = [225, 225, 225];

/// A rectangle in pixel coordinates, `x0 <= x1`, `y0 <= y1`, y growing down.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rect {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl Rect {
    pub fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Self {
            x0,
            y0,
            x1: x1.max(x0),
            y1: y1.max(y0),
        }
    }

    pub fn width(&self) -> f32 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> f32 {
        self.y1 - self.y0
    }

    /// The rectangle grown by `d` on every side.
    pub fn grow(&self, d: f32) -> Self {
        Self::new(self.x0 - d, self.y0 - d, self.x1 + d, self.y1 + d)
    }

    pub fn overlaps(&self, other: &Rect) -> bool {
        self.x0 < other.x1 && other.x0 < self.x1 && self.y0 < other.y1 && other.y0 < self.y1
    }

    pub fn contains(&self, other: &Rect) -> bool {
        self.x0 <= other.x0 && self.y0 <= other.y0 && other.x1 <= self.x1 && other.y1 <= self.y1
    }

    /// Whole pixels covered: `[x0, x1) × [y0, y1)`, rounded to the nearest
    /// pixel edge so that adjacent rectangles neither gap nor overlap.
    fn pixels(&self) -> (i32, i32, i32, i32) {
        (
            self.x0.round() as i32,
            self.y0.round() as i32,
            self.x1.round() as i32,
            self.y1.round() as i32,
        )
    }
}

/// An RGB picture being drawn; everything outside the clip rectangle is left alone.
pub(crate) struct Canvas {
    width: i32,
    height: i32,
    px: Vec<u8>,
    clip: (i32, i32, i32, i32),
}

impl Canvas {
    /// A canvas of `size` (already checked against [`Size::MAX`]) filled with `background`.
    pub fn new(size: Size, background: Rgb) -> Self {
        let (w, h) = (size.width as usize, size.height as usize);
        Self {
            width: size.width as i32,
            height: size.height as i32,
            px: background.repeat(w * h),
            clip: (0, 0, size.width as i32, size.height as i32),
        }
    }

    pub fn width(&self) -> f32 {
        self.width as f32
    }

    pub fn height(&self) -> f32 {
        self.height as f32
    }

    /// Restricts drawing to `r` (and the canvas) until [`Canvas::unclip`].
    pub fn clip(&mut self, r: Rect) {
        let (x0, y0, x1, y1) = r.pixels();
        self.clip = (
            x0.clamp(0, self.width),
            y0.clamp(0, self.height),
            x1.clamp(0, self.width),
            y1.clamp(0, self.height),
        );
    }

    pub fn unclip(&mut self) {
        self.clip = (0, 0, self.width, self.height);
    }

    fn index(&self, x: i32, y: i32) -> Option<usize> {
        let (x0, y0, x1, y1) = self.clip;
        (x >= x0 && x < x1 && y >= y0 && y < y1).then(|| (y * self.width + x) as usize * 3)
    }

    /// Sets one pixel.
    pub fn put(&mut self, x: i32, y: i32, c: Rgb) {
        if let Some(i) = self.index(x, y) {
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Mixes `c` into one pixel with opacity `alpha` in 0..=1 (anti-aliased edges).
    pub fn blend(&mut self, x: i32, y: i32, c: Rgb, alpha: f32) {
        if alpha <= 0.0 {
            return;
        }
        if let Some(i) = self.index(x, y) {
            let a = alpha.min(1.0);
            for (dst, src) in self.px[i..i + 3].iter_mut().zip(c) {
                *dst = (*dst as f32 + (src as f32 - *dst as f32) * a).round() as u8;
            }
        }
    }

    /// Fills the pixels of `r`.
    pub fn fill_rect(&mut self, r: Rect, c: Rgb) {
        let (x0, y0, x1, y1) = r.pixels();
        for y in y0..y1 {
            for x in x0..x1 {
                self.put(x, y, c);
            }
        }
    }

    /// A one-pixel outline just inside `r`.
    pub fn stroke_rect(&mut self, r: Rect, c: Rgb) {
        let (x0, y0, x1, y1) = r.pixels();
        for x in x0..x1 {
            self.put(x, y0, c);
            self.put(x, y1 - 1, c);
        }
        for y in y0..y1 {
            self.put(x0, y, c);
            self.put(x1 - 1, y, c);
        }
    }

    /// An anti-aliased line through `points` of `width` pixels. Coverage is
    /// collected in a mask first (the maximum over segments), so joints where
    /// segments overlap are not drawn twice and do not show as dark beads.
    pub fn polyline(&mut self, points: &[(f32, f32)], width: f32, c: Rgb) {
        let half = width / 2.0;
        let pad = half + 1.0;
        let finite = points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        let (mut bx0, mut by0, mut bx1, mut by1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for &(x, y) in finite {
            (bx0, by0, bx1, by1) = (bx0.min(x), by0.min(y), bx1.max(x), by1.max(y));
        }
        let (cx0, cy0, cx1, cy1) = self.clip;
        let mx0 = ((bx0 - pad).floor() as i32).max(cx0);
        let my0 = ((by0 - pad).floor() as i32).max(cy0);
        let mx1 = ((bx1 + pad).ceil() as i32).min(cx1);
        let my1 = ((by1 + pad).ceil() as i32).min(cy1);
        if mx0 >= mx1 || my0 >= my1 {
            return;
        }
        let mw = (mx1 - mx0) as usize;
        let mut mask = vec![0f32; mw * (my1 - my0) as usize];
        let mut segment = |a: (f32, f32), b: (f32, f32)| {
            let sx0 = ((a.0.min(b.0) - pad).floor() as i32).max(mx0);
            let sy0 = ((a.1.min(b.1) - pad).floor() as i32).max(my0);
            let sx1 = ((a.0.max(b.0) + pad).ceil() as i32).min(mx1);
            let sy1 = ((a.1.max(b.1) + pad).ceil() as i32).min(my1);
            let (dx, dy) = (b.0 - a.0, b.1 - a.1);
            let len2 = dx * dx + dy * dy;
            for y in sy0..sy1 {
                for x in sx0..sx1 {
                    let (px, py) = (x as f32 + 0.5 - a.0, y as f32 + 0.5 - a.1);
                    let t = if len2 > 0.0 {
                        ((px * dx + py * dy) / len2).clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                    let d = ((px - t * dx).powi(2) + (py - t * dy).powi(2)).sqrt();
                    let cover = (half + 0.5 - d).clamp(0.0, 1.0);
                    let m = &mut mask[(y - my0) as usize * mw + (x - mx0) as usize];
                    *m = m.max(cover);
                }
            }
        };
        let mut finite = points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        if let Some(mut last) = finite.next() {
            segment(last, last);
            for p in finite {
                segment(last, p);
                last = p;
            }
        }
        for (i, cover) in mask.iter().enumerate() {
            let (x, y) = (mx0 + (i % mw) as i32, my0 + (i / mw) as i32);
            self.blend(x, y, c, *cover);
        }
    }

    /// A filled anti-aliased disc.
    pub fn disc(&mut self, cx: f32, cy: f32, r: f32, c: Rgb) {
        if !(cx.is_finite() && cy.is_finite()) {
            return;
        }
        let (x0, y0) = ((cx - r - 1.0).floor() as i32, (cy - r - 1.0).floor() as i32);
        let (x1, y1) = ((cx + r + 1.0).ceil() as i32, (cy + r + 1.0).ceil() as i32);
        for y in y0..y1 {
            for x in x0..x1 {
                let d = ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt();
                self.blend(x, y, c, (r + 0.5 - d).clamp(0.0, 1.0));
            }
        }
    }

    /// The picture as PNG bytes. `Fast` compression: charts are mostly flat
    /// colour, which compresses well at any level, and a 2-megapixel noisy
    /// heatmap would otherwise spend most of its time in the encoder.
    pub fn into_png(self) -> Result<Vec<u8>, PlotError> {
        let encode = |e: png::EncodingError| PlotError::Encode(e.to_string());
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header().map_err(encode)?;
        writer.write_image_data(&self.px).map_err(encode)?;
        writer.finish().map_err(encode)?;
        Ok(out)
    }
}
