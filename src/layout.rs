//! How a `rows × cols` matrix is cut into groups that each get their own codebook.

use core::fmt;
use core::str::FromStr;

use crate::error::{Error, Result};

/// Which weights share a codebook.
///
/// Codes (`code()` / [`from_code`](Self::from_code)), as the byte format and the C ABI store
/// them: 0 per tensor, 1 per row, 2 per group (the group size stored beside it). Names
/// (`Display` / `FromStr`): `tensor`, `row`, `group:G`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Granularity {
    /// One codebook for the whole tensor (the paper's per-layer setting).
    PerTensor,
    /// One codebook per row, i.e. per output channel (the default).
    #[default]
    PerRow,
    /// One codebook per run of `g` consecutive weights within a row; the last group of a row
    /// is shorter when `cols` is not a multiple of `g`. Groups never span rows.
    PerGroup(usize),
}

const PER_TENSOR: u8 = 0;
const PER_ROW: u8 = 1;
const PER_GROUP: u8 = 2;
const GROUP_PREFIX: &str = "group:";

impl Granularity {
    /// The code the byte format and the C ABI store (see the type's docs).
    pub fn code(self) -> u8 {
        match self {
            Granularity::PerTensor => PER_TENSOR,
            Granularity::PerRow => PER_ROW,
            Granularity::PerGroup(_) => PER_GROUP,
        }
    }

    /// Weights per group for [`PerGroup`](Self::PerGroup), else 0 (what the byte format and
    /// the C ABI store beside the code).
    pub fn group_size(self) -> usize {
        match self {
            Granularity::PerGroup(g) => g,
            _ => 0,
        }
    }

    /// The granularity stored as `code`, with `group_size` weights per group for the
    /// per-group code (at least 1: [`Error::ZeroGroupSize`] otherwise). The other codes
    /// ignore `group_size`; the byte format, which requires it to be 0 there, checks
    /// [`group_size`](Self::group_size) afterwards. [`Error::UnknownCode`] for any other code.
    pub fn from_code(code: u8, group_size: usize) -> Result<Self> {
        match code {
            PER_TENSOR => Ok(Granularity::PerTensor),
            PER_ROW => Ok(Granularity::PerRow),
            PER_GROUP if group_size == 0 => Err(Error::ZeroGroupSize),
            PER_GROUP => Ok(Granularity::PerGroup(group_size)),
            code => Err(Error::UnknownCode {
                what: "granularity",
                code,
            }),
        }
    }

    /// Checks the group size.
    pub fn validate(self) -> Result<()> {
        match self {
            Granularity::PerGroup(0) => Err(Error::ZeroGroupSize),
            _ => Ok(()),
        }
    }

    /// Length of the groups within a row (the last may be shorter). Per tensor, a row is cut
    /// nowhere, so this is `cols`.
    pub fn group_len(self, cols: usize) -> usize {
        match self {
            Granularity::PerGroup(g) => g.min(cols).max(1),
            _ => cols.max(1),
        }
    }

    /// Groups (codebooks) in a row; 0 only for per-tensor layouts, where rows share one.
    pub fn groups_per_row(self, cols: usize) -> usize {
        match self {
            Granularity::PerTensor => 0,
            Granularity::PerRow => 1,
            Granularity::PerGroup(g) => cols.div_ceil(g.max(1)),
        }
    }

    /// Total codebooks for a `rows × cols` tensor, or `None` on overflow.
    pub fn group_count(self, rows: usize, cols: usize) -> Option<usize> {
        match self {
            Granularity::PerTensor => Some(1),
            _ => rows.checked_mul(self.groups_per_row(cols)),
        }
    }

    /// The codebook index of the first group of `row`.
    #[inline]
    pub(crate) fn first_group_of_row(self, row: usize, cols: usize) -> usize {
        row * self.groups_per_row(cols)
    }
}

impl fmt::Display for Granularity {
    /// `tensor`, `row` or `group:G`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Granularity::PerTensor => f.pad("tensor"),
            Granularity::PerRow => f.pad("row"),
            Granularity::PerGroup(g) => write!(f, "{GROUP_PREFIX}{g}"),
        }
    }
}

impl FromStr for Granularity {
    type Err = Error;

    /// What [`Display`](fmt::Display) writes; `group:0` is [`Error::ZeroGroupSize`].
    fn from_str(s: &str) -> Result<Self> {
        const BAD: Error = Error::UnknownName {
            what: "granularity",
            expected: "tensor, row or group:G",
        };
        match s {
            "tensor" => Ok(Granularity::PerTensor),
            "row" => Ok(Granularity::PerRow),
            _ => {
                let g = s.strip_prefix(GROUP_PREFIX).ok_or(BAD)?;
                let g = g.parse().map_err(|_| BAD)?;
                Granularity::from_code(PER_GROUP, g)
            }
        }
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn codes_and_names_round_trip() {
        for (layout, code, group, name) in [
            (Granularity::PerTensor, 0, 0, "tensor"),
            (Granularity::PerRow, 1, 0, "row"),
            (Granularity::PerGroup(64), 2, 64, "group:64"),
        ] {
            assert_eq!((layout.code(), layout.group_size()), (code, group));
            assert_eq!(Granularity::from_code(code, group), Ok(layout));
            assert_eq!(layout.to_string(), name);
            assert_eq!(name.parse::<Granularity>(), Ok(layout));
        }
        assert_eq!(Granularity::from_code(2, 0), Err(Error::ZeroGroupSize));
        assert!(Granularity::from_code(3, 0).is_err());
        assert_eq!("group:0".parse::<Granularity>(), Err(Error::ZeroGroupSize));
        assert!("group:x".parse::<Granularity>().is_err());
        assert!("rows".parse::<Granularity>().is_err());
    }
}
