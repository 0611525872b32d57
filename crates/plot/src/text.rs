//! Text from a font compiled into the crate.
//!
//! The font is DejaVu Sans 2.37 from the `dejavu` crate: Bitstream Vera
//! licence (free to use, embed and redistribute) with the DejaVu changes in
//! the public domain. Embedding it means no fontconfig, no freetype and no
//! font files on the machine, which the distroless containers do not have.
//! `ab_glyph` (pure Rust) rasterises its outlines with anti-aliasing.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};

use crate::canvas::{Canvas, Rgb};

/// Where the anchor point lies along the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    Start,
    Middle,
    End,
}

/// Where the anchor point lies across the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VAlign {
    Top,
    Middle,
    Bottom,
}

/// How a piece of text is set.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Style {
    /// Font height in pixels.
    pub px: f32,
    pub colour: Rgb,
    pub align: Align,
    pub valign: VAlign,
    /// Turned 90° counter-clockwise, reading upwards (a y-axis label).
    pub upright: bool,
}

impl Style {
    pub fn new(px: f32, colour: Rgb) -> Self {
        Self {
            px,
            colour,
            align: Align::Start,
            valign: VAlign::Top,
            upright: false,
        }
    }

    pub fn align(self, align: Align, valign: VAlign) -> Self {
        Self {
            align,
            valign,
            ..self
        }
    }

    pub fn upright(self) -> Self {
        Self {
            upright: true,
            ..self
        }
    }
}

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    // The bytes are compiled in and the `font_parses` test checks them, so
    // this cannot fail at run time whatever the caller passes.
    FONT.get_or_init(|| {
        FontRef::try_from_slice(dejavu::sans::regular()).expect("embedded DejaVu Sans parses")
    })
}

/// Control characters (a GPT-2 token may be a newline) drawn as visible marks
/// instead of the font's empty box.
fn visible(c: char) -> char {
    match c {
        '\n' => '↵',
        '\t' => '→',
        c if c.is_control() => '·',
        c => c,
    }
}

/// The advance width of `text` in pixels.
pub(crate) fn width(text: &str, px: f32) -> f32 {
    advances(text, px).last().map_or(0.0, |&(_, w)| w)
}

/// For each character of `text`, its byte offset and the advance width of
/// the text up to and including it.
fn advances(text: &str, px: f32) -> Vec<(usize, f32)> {
    let f = font().as_scaled(PxScale::from(px));
    let mut w = 0.0;
    let mut prev = None;
    text.char_indices()
        .map(|(i, c)| {
            let id = f.glyph_id(visible(c));
            if let Some(p) = prev {
                w += f.kern(p, id);
            }
            w += f.h_advance(id);
            prev = Some(id);
            (i, w)
        })
        .collect()
}

/// The height of a line of text (ascent plus descent) in pixels.
pub(crate) fn height(px: f32) -> f32 {
    let f = font().as_scaled(PxScale::from(px));
    f.ascent() - f.descent()
}

/// `text`, cut short with an ellipsis if it is wider than `max` pixels: the
/// longest start that fits with the ellipsis, found in one pass.
pub(crate) fn fit(text: &str, px: f32, max: f32) -> String {
    let widths = advances(text, px);
    if widths.last().is_none_or(|&(_, w)| w <= max) {
        return text.to_string();
    }
    let room = max - width("…", px);
    let keep = widths.iter().take_while(|&&(_, w)| w <= room).count();
    match widths.get(keep) {
        // The character that no longer fits starts where the kept text ends.
        Some(&(end, _)) if room > 0.0 => format!("{}…", &text[..end]),
        _ => String::new(),
    }
}

/// Draws `text` anchored at (`x`, `y`).
pub(crate) fn draw(canvas: &mut Canvas, text: &str, x: f32, y: f32, s: Style) {
    let f = font().as_scaled(PxScale::from(s.px));
    let (w, ascent, descent) = (width(text, s.px), f.ascent(), f.descent());
    // The anchor in text coordinates: u along the line from the start of the
    // text, v downwards from the baseline.
    let u = match s.align {
        Align::Start => 0.0,
        Align::Middle => w / 2.0,
        Align::End => w,
    };
    let v = match s.valign {
        VAlign::Top => -ascent,
        VAlign::Middle => -(ascent + descent) / 2.0,
        VAlign::Bottom => -descent,
    };
    // Whole-pixel origin for upright text so that the 90° turn maps pixels
    // onto pixels; flat text keeps its sub-pixel position.
    let (ox, oy) = if s.upright {
        ((x - v).round(), (y + u).round())
    } else {
        (x - u, y - v)
    };
    let mut caret = 0.0;
    let mut prev = None;
    for c in text.chars().map(visible) {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            caret += f.kern(p, id);
        }
        prev = Some(id);
        let at = if s.upright {
            point(caret, 0.0)
        } else {
            point(ox + caret, oy)
        };
        caret += f.h_advance(id);
        let Some(outline) = f.outline_glyph(id.with_scale_and_position(s.px, at)) else {
            continue; // a space
        };
        let b = outline.px_bounds();
        outline.draw(|gx, gy, cover| {
            let (lx, ly) = (b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32);
            if s.upright {
                // Local pixel (lx, ly) turned counter-clockwise about the origin.
                canvas.blend(ox as i32 + ly, oy as i32 - lx - 1, s.colour, cover);
            } else {
                canvas.blend(lx, ly, s.colour, cover);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn font_parses_and_measures() {
        assert!(width("hello", 12.0) > 20.0);
        assert!(width("WWW", 12.0) > width("iii", 12.0));
        assert_eq!(width("", 12.0), 0.0);
        // ab_glyph scales a font so that ascent plus descent is the pixel size.
        assert!((height(20.0) - 20.0).abs() < 0.01);
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(fit("short", 12.0, 500.0), "short");
        let cut = fit("a rather long title for a chart", 12.0, 60.0);
        assert!(cut.ends_with('…') && cut.len() < 31, "{cut}");
        assert!(width(&cut, 12.0) <= 60.0);
        assert_eq!(fit("anything", 12.0, 1.0), "");
        // Multi-byte characters are cut on their boundaries.
        assert!(fit("ĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠ", 12.0, 40.0).ends_with('…'));
    }
}
