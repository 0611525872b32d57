//! Where ticks go and what they say: nice values on linear axes, powers of
//! ten, and which category labels are shown when not all of them fit.

use crate::axes::{widest, Fonts};
use crate::text;

/// "Nice" tick values (1, 2 or 5 times a power of ten apart) inside
/// `lo..=hi`, at most about `max` of them, with their labels.
pub(crate) fn linear_ticks(lo: f64, hi: f64, max: usize) -> Vec<(f64, String)> {
    let step = nice_step(lo, hi, max);
    if step <= 0.0 {
        return vec![(lo, format(lo, 1.0))];
    }
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            (v, format(v, step))
        })
        .collect()
}

/// How many ticks (2 to `max`) a vertical axis `length` pixels long takes
/// with a blank line or more between labels.
pub(crate) fn y_tick_count(length: f32, fonts: Fonts, max: usize) -> usize {
    ((length / (text::height(fonts.tick) * 2.2)) as usize).clamp(2, max.max(2))
}

/// Nice ticks along a horizontal axis `length` pixels long: as many (up to
/// `max`) as leave a gap between neighbouring labels.
pub(crate) fn x_linear_ticks(
    lo: f64,
    hi: f64,
    length: f32,
    fonts: Fonts,
    max: usize,
) -> Vec<(f64, String)> {
    for count in (2..=max.max(2)).rev() {
        let ticks = linear_ticks(lo, hi, count);
        if ticks.len() < 2 {
            return ticks;
        }
        let spacing = length * ((ticks[1].0 - ticks[0].0) / (hi - lo)) as f32;
        if widest(ticks.iter().map(|t| &t.1), fonts.tick) + 2.0 * fonts.gap() <= spacing {
            return ticks;
        }
    }
    linear_ticks(lo, hi, 1)
}

/// `lo..hi` widened outwards to whole nice steps (a bar chart's value axis).
pub(crate) fn nice_bounds(lo: f64, hi: f64, max: usize) -> (f64, f64) {
    let step = nice_step(lo, hi, max);
    if step <= 0.0 {
        return (lo, hi);
    }
    (
        (lo / step + 1e-9).floor() * step,
        (hi / step - 1e-9).ceil() * step,
    )
}

fn nice_step(lo: f64, hi: f64, max: usize) -> f64 {
    let span = hi - lo;
    if !(span > 0.0 && span.is_finite()) {
        return 0.0;
    }
    let raw = span / max.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag)
}

/// A tick value written with as many decimals as its step needs; very large
/// or small values in scientific notation.
pub(crate) fn format(v: f64, step: f64) -> String {
    let v = if v.abs() < step * 1e-6 { 0.0 } else { v };
    let big = v.abs().max(step);
    if v != 0.0 && (big >= 1e6 || step < 1e-4) {
        let digits = (v.abs().log10().floor() - step.log10().floor()).clamp(0.0, 6.0) as usize;
        return format!("{v:.digits$e}");
    }
    let decimals = (-step.log10().floor()).clamp(0.0, 10.0) as usize;
    format!("{v:.decimals$}")
}

/// "10⁻³": a power of ten with a superscript exponent (DejaVu has the glyphs).
pub(crate) fn pow10(exp: i32) -> String {
    const SUP: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let digits = exp.unsigned_abs().to_string();
    let mut s = String::from("10");
    if exp < 0 {
        s.push('⁻');
    }
    s.extend(digits.bytes().map(|d| SUP[(d - b'0') as usize]));
    s
}

/// Which of `n` equally spaced categories `slot` pixels apart get a label of
/// `extent` pixels across the axis, without the labels touching: every k-th,
/// with k a round number (1, 2, 5, 10, 20, 25, 50, …) so that the labelled
/// positions are easy to count along.
pub(crate) fn stride(n: usize, slot: f32, extent: f32) -> usize {
    let n = n.max(1);
    if slot <= 0.0 {
        return n;
    }
    let raw = (extent * 1.2 / slot).ceil().max(1.0) as usize;
    let mut power = 1usize;
    loop {
        for m in [10, 20, 25, 50] {
            let k = m * power / 10;
            if k >= raw && (m * power).is_multiple_of(10) {
                return k.min(n);
            }
        }
        if power > n {
            return n;
        }
        power *= 10;
    }
}

/// How the labels of categories along the x axis are set.
pub(crate) struct Categories {
    /// The label of every `stride`-th category (from the first), fitted.
    pub shown: Vec<(usize, String)>,
    pub upright: bool,
    /// Height the labels take below the axis.
    pub extent: f32,
}

/// Sets category labels `slot` pixels apart along x: flat when they fit
/// side by side (or every k-th does and they are short), else upright and
/// cut to `max_len` pixels, every k-th one when there are too many to show all.
pub(crate) fn x_categories(labels: &[String], slot: f32, fonts: Fonts, max_len: f32) -> Categories {
    let px = fonts.tick;
    let line = text::height(px);
    let flat = widest(labels, px);
    let n = labels.len();
    let every = |k: usize| labels.iter().enumerate().step_by(k.max(1));
    if flat <= slot * 0.9 || flat <= 2.5 * line {
        let k = if flat <= slot * 0.9 {
            1
        } else {
            stride(n, slot, flat)
        };
        let shown = every(k).map(|(i, s)| (i, s.clone())).collect();
        return Categories {
            shown,
            upright: false,
            extent: line,
        };
    }
    let shown: Vec<(usize, String)> = every(stride(n, slot, line))
        .map(|(i, s)| (i, text::fit(s, px, max_len)))
        .collect();
    let extent = widest(shown.iter().map(|(_, s)| s), px);
    Categories {
        shown,
        upright: true,
        extent,
    }
}

/// Category labels `slot` pixels apart along y: every k-th, cut to `max_len`.
pub(crate) fn y_categories(
    labels: &[String],
    slot: f32,
    fonts: Fonts,
    max_len: f32,
) -> Vec<(usize, String)> {
    let k = stride(labels.len(), slot, text::height(fonts.tick));
    labels
        .iter()
        .enumerate()
        .step_by(k)
        .map(|(i, s)| (i, text::fit(s, fonts.tick, max_len)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice() {
        let t: Vec<String> = linear_ticks(0.0, 1.0, 5).into_iter().map(|t| t.1).collect();
        assert_eq!(t, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let t: Vec<String> = linear_ticks(-3.2, 7.9, 6)
            .into_iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(t, ["-2", "0", "2", "4", "6"]);
        let t: Vec<String> = linear_ticks(0.0, 3000.0, 4)
            .into_iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(t, ["0", "1000", "2000", "3000"]);
        assert_eq!(linear_ticks(2.0, 2.0, 5).len(), 1);
    }

    #[test]
    fn bounds_widen_to_steps() {
        let (lo, hi) = nice_bounds(0.0, 0.123, 5);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.15).abs() < 1e-12, "{hi}");
        let (lo, hi) = nice_bounds(-0.3, 0.7, 5);
        assert!(
            (lo + 0.4).abs() < 1e-12 && (hi - 0.8).abs() < 1e-12,
            "{lo} {hi}"
        );
    }

    #[test]
    fn numbers_and_powers_format() {
        assert_eq!(format(0.05, 0.05), "0.05");
        assert_eq!(format(2e-5, 1e-5), "2e-5");
        assert_eq!(format(2.5e6, 5e5), "2.5e6");
        assert_eq!(pow10(-12), "10⁻¹²");
        assert_eq!(pow10(0), "10⁰");
    }

    #[test]
    fn strides_keep_labels_apart() {
        assert_eq!(stride(27, 20.0, 10.0), 1);
        assert_eq!(stride(1024, 0.5, 12.0), 50);
        assert_eq!(stride(100, 10.0, 17.0), 5);
        assert_eq!(stride(100, 10.0, 16.0), 2);
        assert_eq!(stride(300, 1.0, 19.0), 25);
        assert_eq!(stride(3, 1.0, 100.0), 3);
    }
}
