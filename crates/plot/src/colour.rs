//! Colour maps: values to colours for heatmaps, and colours for series.

use crate::canvas::Rgb;
use crate::Scale;

/// Viridis (matplotlib's default) at nine even steps: perceptually uniform,
/// readable in grey and by the colour-blind, dark for small values.
const VIRIDIS: [Rgb; 9] = [
    [0x44, 0x01, 0x54],
    [0x47, 0x2d, 0x7b],
    [0x3b, 0x52, 0x8b],
    [0x2c, 0x72, 0x8e],
    [0x21, 0x91, 0x8c],
    [0x28, 0xae, 0x80],
    [0x5e, 0xc9, 0x62],
    [0xad, 0xdc, 0x30],
    [0xfd, 0xe7, 0x25],
];

/// ColorBrewer's RdBu turned round (blue for negative) with pure white in the
/// middle, so that a weight of exactly zero shows as no colour at all.
const BLUE_WHITE_RED: [Rgb; 9] = [
    [0x21, 0x66, 0xac],
    [0x43, 0x93, 0xc3],
    [0x92, 0xc5, 0xde],
    [0xd1, 0xe5, 0xf0],
    [0xff, 0xff, 0xff],
    [0xfd, 0xdb, 0xc7],
    [0xf4, 0xa5, 0x82],
    [0xd6, 0x60, 0x4d],
    [0xb2, 0x18, 0x2b],
];

/// Cells with no finite value: a neutral grey that neither map uses.
pub(crate) const MISSING: Rgb = [190, 190, 190];

/// Matplotlib's "tab10": ten colours that are easy to tell apart.
const DISTINCT: [Rgb; 10] = [
    [0x1f, 0x77, 0xb4],
    [0xff, 0x7f, 0x0e],
    [0x2c, 0xa0, 0x2c],
    [0xd6, 0x27, 0x28],
    [0x94, 0x67, 0xbd],
    [0x8c, 0x56, 0x4b],
    [0xe3, 0x77, 0xc2],
    [0x7f, 0x7f, 0x7f],
    [0xbc, 0xbd, 0x22],
    [0x17, 0xbe, 0xcf],
];

fn interpolate(stops: &[Rgb; 9], t: f32) -> Rgb {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (stops.len() - 1) as f32;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let f = x - i as f32;
    let (a, b) = (stops[i], stops[i + 1]);
    std::array::from_fn(|k| (a[k] as f32 + (b[k] as f32 - a[k] as f32) * f).round() as u8)
}

/// The colour for position `t` in 0..=1 along the scale's map.
pub(crate) fn map(scale: Scale, t: f32) -> Rgb {
    match scale {
        Scale::Sequential => interpolate(&VIRIDIS, t),
        Scale::Diverging => interpolate(&BLUE_WHITE_RED, t),
    }
}

/// The `i`-th of a few series that should look different.
pub(crate) fn distinct(i: usize) -> Rgb {
    DISTINCT[i % DISTINCT.len()]
}

/// Series `i` of `n` ordered ones (transformer blocks): a gradient along
/// viridis, stopping short of its pale yellow end, which is hard to see on white.
pub(crate) fn ordered(i: usize, n: usize) -> Rgb {
    let t = if n <= 1 {
        0.0
    } else {
        i as f32 / (n - 1) as f32
    };
    interpolate(&VIRIDIS, t * 0.88)
}

/// The value range that a heatmap's colours span: the data's own range for a
/// sequential scale, a range symmetric around zero for a diverging one (so
/// white is zero). A flat range is widened so that it has a width.
pub(crate) fn range(scale: Scale, lo: f32, hi: f32) -> (f32, f32) {
    let (lo, hi) = match scale {
        Scale::Sequential => (lo, hi),
        Scale::Diverging => {
            let m = lo.abs().max(hi.abs());
            (-m, m)
        }
    };
    if hi > lo {
        (lo, hi)
    } else if lo == 0.0 {
        (-1.0, 1.0)
    } else {
        let d = lo.abs() * 0.5;
        (lo - d, hi + d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_hit_their_ends_and_middle() {
        assert_eq!(map(Scale::Sequential, 0.0), VIRIDIS[0]);
        assert_eq!(map(Scale::Sequential, 1.0), VIRIDIS[8]);
        assert_eq!(map(Scale::Diverging, 0.5), [255, 255, 255]);
        assert_eq!(map(Scale::Diverging, -3.0), BLUE_WHITE_RED[0]);
        assert_eq!(map(Scale::Diverging, f32::NAN), BLUE_WHITE_RED[0]);
    }

    #[test]
    fn ranges_are_symmetric_or_widened() {
        assert_eq!(range(Scale::Diverging, -0.5, 2.0), (-2.0, 2.0));
        assert_eq!(range(Scale::Sequential, 0.2, 0.7), (0.2, 0.7));
        assert_eq!(range(Scale::Sequential, 0.0, 0.0), (-1.0, 1.0));
        assert_eq!(range(Scale::Sequential, 4.0, 4.0), (2.0, 6.0));
    }
}
