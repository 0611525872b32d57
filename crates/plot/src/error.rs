//! Why a picture could not be drawn; every message names the argument at fault.

/// A picture could not be drawn. The messages are lowercase and name the
/// argument at fault, so a CLI can print them as they are.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlotError {
    /// The requested size is outside [`crate::Size::MIN`]..=[`crate::Size::MAX`].
    #[error("`size` is {width}×{height} but each side must be from {min} to {max} pixels")]
    Size {
        width: u32,
        height: u32,
        min: u32,
        max: u32,
    },
    /// An argument that needs at least one entry has none (or none left once
    /// non-finite entries are skipped).
    #[error("`{name}` is empty")]
    Empty { name: &'static str },
    /// Two arguments that go together have different lengths.
    #[error("`{name}` has {len} entries but `{other}` has {other_len}")]
    Mismatch {
        name: &'static str,
        len: usize,
        other: &'static str,
        other_len: usize,
    },
    /// A matrix's values do not fill its `rows` × `cols`.
    #[error("`{name}` has {len} entries but `rows` × `cols` is {rows}×{cols}")]
    Shape {
        name: &'static str,
        len: usize,
        rows: usize,
        cols: usize,
    },
    /// A number that the picture cannot do without is NaN or infinite.
    #[error("`{name}` entry {index} is {value}, not a finite number")]
    NotFinite {
        name: &'static str,
        index: usize,
        value: f64,
    },
    /// Any other argument out of its range; `reason` says what was expected.
    #[error("`{name}` {reason}")]
    Invalid { name: &'static str, reason: String },
    /// The PNG encoder failed (it writes to memory, so this should not happen).
    #[error("png encoding failed: {0}")]
    Encode(String),
}

/// The index and value of the first non-finite number, as an error.
pub(crate) fn check_finite(
    name: &'static str,
    values: impl IntoIterator<Item = f64>,
) -> Result<(), PlotError> {
    match values.into_iter().enumerate().find(|(_, v)| !v.is_finite()) {
        Some((index, value)) => Err(PlotError::NotFinite { name, index, value }),
        None => Ok(()),
    }
}

/// An error unless `len` and `other_len` are equal.
pub(crate) fn check_same_len(
    name: &'static str,
    len: usize,
    other: &'static str,
    other_len: usize,
) -> Result<(), PlotError> {
    if len == other_len {
        Ok(())
    } else {
        Err(PlotError::Mismatch {
            name,
            len,
            other,
            other_len,
        })
    }
}

/// An error if `len` is zero.
pub(crate) fn check_not_empty(name: &'static str, len: usize) -> Result<(), PlotError> {
    if len == 0 {
        Err(PlotError::Empty { name })
    } else {
        Ok(())
    }
}
