//! The pictures of Stephen Wolfram's essay "What Is ChatGPT Doing … and Why
//! Does It Work?", drawn from GPT-2's numbers as PNG bytes.
//!
//! Every drawing function takes a description of the chart and a [`Size`] and
//! returns the encoded PNG, exactly `size.width` × `size.height` pixels:
//!
//! - [`bars`]: letter frequencies, a next-token probability table;
//! - [`heatmap`]: the letter 2-gram matrix, attention weights, the embedding
//!   module, a weight matrix (with [`Scale::Diverging`]);
//! - [`heatmap_grid`]: small multiples such as the 12 attention heads of a block;
//! - [`loglog`]: the rank/probability curve of a next-token distribution with
//!   an optional fitted power law;
//! - [`scatter`]: a 2-D map of word embeddings, each point labelled;
//! - [`histograms`]: distributions of weight values, one series per block.
//!
//! [`moving_average`] and [`histogram`] prepare the numbers for the last
//! pictures. Nothing here reads files, fonts or the network: the text is drawn
//! with a font compiled into the crate, so the pictures come out the same on a
//! machine without any fonts installed.
//!
//! Bad input (mismatched lengths, empty data, a zero size) is a [`PlotError`]
//! naming the argument, never a panic. Non-finite numbers are skipped where a
//! picture can do without them (heatmap cells, log-log and scatter points) and
//! are errors where they cannot (bar heights, histogram edges).

#![forbid(unsafe_code)]

mod axes;
mod bars;
mod canvas;
mod colour;
mod error;
mod heatmap;
mod histogram;
mod loglog;
mod raster;
mod scatter;
mod stats;
mod text;
mod ticks;

pub use bars::{bars, Bars};
pub use error::PlotError;
pub use heatmap::{heatmap, heatmap_grid, Grid, Heatmap, Panel};
pub use histogram::{histograms, Histograms, Series};
pub use loglog::{loglog, Line, LogLog};
pub use scatter::{scatter, Scatter};
pub use stats::{histogram, moving_average};

/// The pixel size of a picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Size {
    /// Width in pixels, from [`Size::MIN`] to [`Size::MAX`].
    pub width: u32,
    /// Height in pixels, from [`Size::MIN`] to [`Size::MAX`].
    pub height: u32,
}

impl Size {
    /// The smallest side accepted: below this there is no room for a plot
    /// between the title, the tick labels and the axis labels.
    pub const MIN: u32 = 64;
    /// The largest side accepted, which bounds the memory of one picture
    /// (8192² RGB pixels are 192 MiB).
    pub const MAX: u32 = 8192;

    /// A size of `width` × `height` pixels.
    pub const fn new(width: u32, height: u32) -> Self {
        Self { width, height }
    }

    /// The size if both sides are within [`Size::MIN`]..=[`Size::MAX`].
    pub(crate) fn check(self) -> Result<Self, PlotError> {
        let ok = |side: u32| (Self::MIN..=Self::MAX).contains(&side);
        if ok(self.width) && ok(self.height) {
            Ok(self)
        } else {
            Err(PlotError::Size {
                width: self.width,
                height: self.height,
                min: Self::MIN,
                max: Self::MAX,
            })
        }
    }
}

impl Default for Size {
    /// 800 × 600, a size at which every chart kind is readable.
    fn default() -> Self {
        Self::new(800, 600)
    }
}

/// How the values of a heatmap map to colours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Scale {
    /// Dark to light (viridis) from the smallest to the largest value: for
    /// probabilities, attention weights, magnitudes.
    #[default]
    Sequential,
    /// Blue – white – red, symmetric around zero, white at zero: for weights
    /// and other signed values.
    Diverging,
}
