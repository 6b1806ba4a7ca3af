//! How a `rows × cols` matrix is cut into groups that each get their own codebook.

use crate::error::{Error, Result};

/// Which weights share a codebook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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

impl Granularity {
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
