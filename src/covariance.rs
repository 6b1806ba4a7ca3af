//! [`Covariance`]: the second moment `E[x xᵀ]` of a layer's inputs, accumulated in `f64`.

use alloc::vec;
use alloc::vec::Vec;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

use crate::error::{Error, Result};

/// The second moment `H = E[x xᵀ]` and the mean `E[x]` of a layer's inputs, per group of
/// input channels, accumulated in `f64` from batches of input rows.
///
/// A row holds the `cols` inputs that one output sees, in the weight's column order: for a
/// dense layer the input vector; for a convolution an im2col patch in `(in, kh, kw)` order.
/// A grouped or depthwise convolution with `groups` groups has `dim = cols` inputs per group
/// and rows of `groups × dim` values, group `k`'s patch at `[k·dim, (k+1)·dim)`; each group
/// gets its own `dim × dim` matrix. [`from_matrix`](Self::from_matrix) takes a matrix that
/// the caller computed instead.
///
/// ```
/// use expquant::calibrate::Covariance;
/// let mut cov = Covariance::new(1, 2)?;
/// cov.add_rows(&[1.0, 2.0, 3.0, 4.0])?; // two rows of two inputs
/// assert_eq!(cov.count(), 2);
/// assert_eq!(cov.matrix(0), Some(vec![5.0, 7.0, 7.0, 10.0]));
/// assert_eq!(cov.mean(), Some(vec![2.0f32, 3.0]));
/// # Ok::<(), expquant::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Covariance {
    groups: usize,
    dim: usize,
    /// Rows added; 0 for a caller-given matrix.
    count: u64,
    /// `Σ x` per group, `groups × dim`.
    sum: Vec<f64>,
    /// `Σ x xᵀ` per group (`groups × dim × dim`, row-major), or the caller's `E[x xᵀ]`.
    second: Vec<f64>,
    /// Whether `second` is a caller-given `E[x xᵀ]` (no rows, no means).
    given: bool,
}

/// Rows converted to `f64` per [`Covariance::add_rows`] product: large enough for the
/// matrix product to run at full speed, small enough to stay in cache.
const BATCH_ROWS: usize = 256;

impl Covariance {
    /// An empty accumulator for `groups` groups of `dim` inputs each (`groups = 1` for a
    /// dense layer or an ordinary convolution). Errors when either is 0 or the matrices
    /// would not fit in memory's address space.
    pub fn new(groups: usize, dim: usize) -> Result<Self> {
        let (per_group, _) = Self::sizes(groups, dim)?;
        Ok(Covariance {
            groups,
            dim,
            count: 0,
            sum: vec![0.0; groups * dim],
            second: vec![0.0; per_group * groups],
            given: false,
        })
    }

    /// A caller's precomputed `E[x xᵀ]`: `groups` symmetric `dim × dim` matrices, row-major,
    /// one after the other. Errors on a length other than `groups × dim × dim`, a NaN or
    /// infinite entry, or a matrix that is not symmetric. It has no means
    /// ([`mean`](Self::mean) is `None`) and takes no rows.
    pub fn from_matrix(groups: usize, dim: usize, matrix: &[f64]) -> Result<Self> {
        let (per_group, _) = Self::sizes(groups, dim)?;
        if matrix.len() != per_group * groups {
            return Err(Error::BufferLength {
                what: "covariance matrix",
                expected: per_group * groups,
                actual: matrix.len(),
            });
        }
        check_finite("covariance matrix", matrix)?;
        for h in matrix.chunks_exact(per_group) {
            let symmetric = (0..dim).all(|i| (0..i).all(|j| h[i * dim + j] == h[j * dim + i]));
            if !symmetric {
                return Err(Error::InvalidCovariance(
                    "the covariance matrix is not symmetric",
                ));
            }
        }
        Ok(Covariance {
            groups,
            dim,
            count: 0,
            sum: vec![0.0; groups * dim],
            second: matrix.to_vec(),
            given: true,
        })
    }

    fn sizes(groups: usize, dim: usize) -> Result<(usize, usize)> {
        if groups == 0 || dim == 0 {
            return Err(Error::InvalidCovariance(
                "a covariance needs at least one group of at least one input",
            ));
        }
        let per_group = dim
            .checked_mul(dim)
            .filter(|n| {
                n.checked_mul(groups)
                    .is_some_and(|t| t <= isize::MAX as usize / 8)
            })
            .ok_or(Error::InvalidCovariance(
                "groups x dim x dim does not fit in memory",
            ))?;
        Ok((per_group, groups * dim))
    }

    /// Groups of inputs (conv groups; 1 for a dense layer).
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Inputs per group: the `cols` of the layer's weight matrix.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Rows added so far (0 for a caller-given matrix).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds input rows: `inputs` holds whole rows of `groups × dim` values each. Errors on a
    /// length that is not a multiple of the row length, a NaN or infinite input (nothing is
    /// added then), or a covariance made by [`from_matrix`](Self::from_matrix).
    pub fn add_rows(&mut self, inputs: &[f32]) -> Result<()> {
        if self.given {
            return Err(Error::InvalidCovariance(
                "a covariance built from a given matrix takes no input rows",
            ));
        }
        let row_len = self.groups * self.dim;
        if !inputs.len().is_multiple_of(row_len) {
            return Err(Error::InvalidCovariance(
                "the inputs are not a whole number of rows of groups x dim values",
            ));
        }
        if let Some(index) = inputs.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteStatistic {
                what: "covariance input",
                index,
                value: f64::from(inputs[index]),
            });
        }
        let (d, per_group) = (self.dim, self.dim * self.dim);
        // The batch is row-major so that widening each input row to f64 is one contiguous
        // pass; the product reads it through strides.
        let mut batch = vec![0.0f64; BATCH_ROWS.min(inputs.len() / row_len) * d];
        for rows in inputs.chunks(BATCH_ROWS * row_len) {
            let n = rows.len() / row_len;
            for k in 0..self.groups {
                let sum = &mut self.sum[k * d..(k + 1) * d];
                for (i, wide) in batch.chunks_exact_mut(d).take(n).enumerate() {
                    let x = &rows[i * row_len + k * d..i * row_len + (k + 1) * d];
                    for ((&v, w), s) in x.iter().zip(wide.iter_mut()).zip(sum.iter_mut()) {
                        *w = f64::from(v);
                        *s += *w;
                    }
                }
                let x = MatRef::from_row_major_slice(&batch[..n * d], n, d);
                let h = MatMut::from_row_major_slice_mut(
                    &mut self.second[k * per_group..(k + 1) * per_group],
                    d,
                    d,
                );
                // H += Xᵀ X, the whole square: the factorization reads one triangle, the
                // accessors the other.
                matmul(h, Accum::Add, x.transpose(), x, 1.0, Par::Seq);
            }
            self.count += n as u64;
        }
        Ok(())
    }

    /// `E[x xᵀ]` of group `group`, `dim × dim` row-major, or `None` past the last group or
    /// before any row was added.
    pub fn matrix(&self, group: usize) -> Option<Vec<f64>> {
        let h = self.raw(group)?;
        if self.given {
            return Some(h.to_vec());
        }
        if self.count == 0 {
            return None;
        }
        let n = self.count as f64;
        Some(h.iter().map(|v| v / n).collect())
    }

    /// `E[x]`, `groups × dim` values (group `k`'s at `[k·dim, (k+1)·dim)`), for the bias
    /// correction; `None` before any row was added or for a caller-given matrix.
    pub fn mean(&self) -> Option<Vec<f32>> {
        if self.count == 0 {
            return None;
        }
        let n = self.count as f64;
        Some(self.sum.iter().map(|s| (s / n) as f32).collect())
    }

    /// `E[x_j²]` of group `group` (the diagonal of [`matrix`](Self::matrix)).
    pub(crate) fn diagonal(&self, group: usize) -> Option<Vec<f64>> {
        let h = self.raw(group)?;
        let n = if self.given { 1.0 } else { self.count as f64 };
        Some((0..self.dim).map(|j| h[j * self.dim + j] / n).collect())
    }

    /// Group `group`'s matrix up to a positive factor (sums, or the given moments), which
    /// the compensation does not depend on; `None` when there is nothing to read.
    pub(crate) fn raw(&self, group: usize) -> Option<&[f64]> {
        if group >= self.groups || (!self.given && self.count == 0) {
            return None;
        }
        let per_group = self.dim * self.dim;
        Some(&self.second[group * per_group..(group + 1) * per_group])
    }

    /// A view of [`raw`](Self::raw) as a matrix.
    pub(crate) fn raw_mat(&self, group: usize) -> Option<MatRef<'_, f64>> {
        self.raw(group)
            .map(|h| MatRef::from_row_major_slice(h, self.dim, self.dim))
    }
}

fn check_finite(what: &'static str, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFiniteStatistic {
            what,
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}
