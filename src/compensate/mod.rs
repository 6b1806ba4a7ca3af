//! Error-compensating quantization (Optimal Brain Quantization in GPTQ's blocked form) from
//! a layer's input covariance.
//!
//! Nearest-level rounding minimizes each weight's own error; what a layer's output feels is
//! `E‖(W − Q)x‖² = Σ_r (w_r − q_r)ᵀ H (w_r − q_r)` with `H = E[x xᵀ]`, which correlated
//! inputs make very different. [`quantize_compensated`] quantizes one column at a time and
//! moves each column's rounding error onto the columns not yet quantized, weighted by the
//! inverse of `H` (Frantar et al., "GPTQ", 2022, after Frantar and Alistarh's OBQ): every
//! later column absorbs what the inputs' correlation lets it absorb. It needs only a nearest
//! level, so every [`Scheme`](crate::Scheme), [`Granularity`] and [`ScaleRule`] works.
//!
//! Codebooks are fitted on the original weights before any compensation, with the same fit
//! [`quantize`](crate::quantize) uses (for [`ScaleRule::OutputMse`], weighted by the
//! covariance's diagonal `E[x_j²]`). Per group, [`CompensateOptions::refit_groups`] (off by
//! default) fits a group's codebook again on its compensated weights when its first column
//! is reached.
//!
//! The linear algebra is `faer`'s: a Cholesky factorization of the dampened `H` (columns in
//! processing order), the upper triangular factor `U` of its inverse (`H⁻¹ = UᵀU`), and for
//! every block of columns one matrix product that carries the block's errors to the columns
//! after it; inside a block the updates run row by row.
//!
//! ```
//! use expquant::calibrate::Covariance;
//! use expquant::compensate::{quantize_compensated, CompensateOptions};
//! use expquant::Config;
//!
//! // A 2 × 3 layer whose first two inputs move together.
//! let weights = [0.31f32, -0.52, 0.9, 0.12, 0.77, -0.4];
//! let mut cov = Covariance::new(1, 3)?;
//! cov.add_rows(&[1.0, 0.9, 0.1, -0.5, -0.6, 0.3, 0.2, 0.25, -0.8])?;
//! let mean = cov.mean().unwrap();
//! let out = quantize_compensated(
//!     &weights, 2, 3, &Config::exponential(3), &cov, &CompensateOptions::default(), Some(&mean),
//! )?;
//! assert_eq!(out.tensor.rows(), 2);
//! assert_eq!(out.bias_correction.map(|b| b.len()), Some(2));
//! # Ok::<(), expquant::Error>(())
//! ```

use crate::covariance::Covariance;

use alloc::vec;
use alloc::vec::Vec;

use faer::linalg::matmul::matmul;
use faer::linalg::triangular_inverse::invert_lower_triangular;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};

use crate::calibrate::bias_correction;
use crate::config::Config;
use crate::discretize::Family;
use crate::error::{Error, Result};
use crate::layout::Granularity;
use crate::scheme::{Params, ScaleRule};
use crate::tensor::{check_shape, quantize_weighted, QuantizedTensor};

/// The order in which columns are quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ColumnOrder {
    /// Column 0 first.
    Natural,
    /// The inputs with the largest `E[x_j²]` first (ties: lower index first), so that the
    /// columns that matter most are rounded while the most columns remain to absorb their
    /// error. The default: it did better on a real CNN.
    #[default]
    DecreasingDiagonal,
}

/// Options of [`quantize_compensated`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompensateOptions {
    /// Added to `H`'s diagonal as a fraction of its mean diagonal before factorizing, finite
    /// and `>= 0`; 0.01 by default. It keeps a singular `H` (fewer calibration inputs than
    /// columns, dead inputs) factorizable and limits how far an error is pushed.
    pub dampening: f64,
    /// Column order; [`ColumnOrder::DecreasingDiagonal`] by default.
    pub order: ColumnOrder,
    /// Columns per block (at least 1; 128 by default). Only speed depends on it, up to
    /// float rounding.
    pub block_size: usize,
    /// Per group only: when the first column of a group is reached, fit its codebook again
    /// on the group's weights as compensation has left them (the other granularities reach
    /// their groups' first columns before any compensation, so for them it changes nothing).
    /// Off by default: on random correlated layers (groups of 16, 2 to 8 bits) it changed the
    /// mean output error by less than one percent either way.
    pub refit_groups: bool,
}

impl Default for CompensateOptions {
    fn default() -> Self {
        CompensateOptions {
            dampening: 0.01,
            order: ColumnOrder::DecreasingDiagonal,
            block_size: 128,
            refit_groups: false,
        }
    }
}

impl CompensateOptions {
    /// Checks the dampening and block size.
    pub fn validate(&self) -> Result<()> {
        if !self.dampening.is_finite() || self.dampening < 0.0 {
            return Err(Error::InvalidCompensateOption(
                "dampening must be finite and >= 0",
            ));
        }
        if self.block_size == 0 {
            return Err(Error::InvalidCompensateOption(
                "block size must be at least 1",
            ));
        }
        Ok(())
    }
}

/// A tensor quantized with error compensation, and the bias correction of its weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Compensated {
    /// The quantized weights.
    pub tensor: QuantizedTensor,
    /// With input means: per output row, `−Σ_j (Q[r,j] − W[r,j])·E[x_j]` of the compensated
    /// `Q` against the original `W`, to add to the layer's bias.
    pub bias_correction: Option<Vec<f32>>,
}

/// Quantizes a `rows × cols` row-major layer so that its output error `E‖(W − Q)x‖²` under
/// the inputs' second moment `covariance` is small, rather than each weight's own error.
///
/// `covariance` has `dim = cols`; with `groups > 1` (grouped and depthwise convolutions)
/// rows split into `groups` equal runs, run `k` seeing group `k`'s inputs. `mean` (optional,
/// e.g. [`Covariance::mean`]) holds `E[x_j]` as `cols`, `groups × cols` or `rows × cols`
/// values and adds the bias correction of the compensated weights.
///
/// A dead input (`E[x_j²] = 0`) is rounded to its nearest level and neither gives nor takes
/// error. With a diagonal `H` nothing moves and the result is [`quantize`](crate::quantize)'s.
///
/// Errors: everything [`quantize`](crate::quantize) reports; a covariance whose shape does
/// not fit ([`Error::CovarianceShape`]) or that holds no rows ([`Error::InvalidCovariance`]);
/// NaN or infinite covariance entries or means ([`Error::NonFiniteStatistic`]); means of the
/// wrong length ([`Error::InputStatsLength`]); bad options
/// ([`Error::InvalidCompensateOption`]); a group whose dampened `H` is still not positive
/// definite ([`Error::NotPositiveDefinite`]).
pub fn quantize_compensated(
    weights: &[f32],
    rows: usize,
    cols: usize,
    config: &Config,
    covariance: &Covariance,
    options: &CompensateOptions,
    mean: Option<&[f32]>,
) -> Result<Compensated> {
    config.validate()?;
    options.validate()?;
    check_shape(rows, cols, weights.len())?;
    let groups = covariance.groups();
    if covariance.dim() != cols || !rows.is_multiple_of(groups) {
        return Err(Error::CovarianceShape {
            groups,
            dim: covariance.dim(),
            rows,
            cols,
        });
    }
    let rows_per_group = rows / groups;
    let mut diagonals = Vec::with_capacity(groups);
    for k in 0..groups {
        let h = covariance.raw(k).ok_or(Error::InvalidCovariance(
            "no input rows were added to the covariance",
        ))?;
        if let Some(index) = h.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteStatistic {
                what: "covariance",
                index: k * cols * cols + index,
                value: h[index],
            });
        }
        // Present: `raw` was.
        diagonals.push(covariance.diagonal(k).unwrap_or_default());
    }
    let mean = mean
        .map(|m| expand_mean(m, groups, rows, cols))
        .transpose()?;

    // E[x_j²] per weight: what the OutputMse rule weights each weight's error by.
    let importance: Option<Vec<f32>> = (config.scale_rule() == ScaleRule::OutputMse).then(|| {
        (0..rows * cols)
            .map(|i| diagonals[i / cols / rows_per_group][i % cols] as f32)
            .collect()
    });
    let plain = quantize_weighted(weights, rows, cols, config, importance.as_deref())?;
    let family = config.family()?;
    let mut state = State {
        family,
        rule: config.scale_rule(),
        layout: config.granularity(),
        cols,
        stride: family.level_count(),
        params: (0..plain.group_count())
            .filter_map(|g| plain.params(g))
            .collect(),
        levels: Vec::new(),
        importance: importance.as_deref(),
    };
    state.levels = vec![0.0; state.params.len() * state.stride];
    for g in 0..state.params.len() {
        state.set_levels(g);
    }
    let mut codes = vec![0u8; rows * cols];
    for (k, diagonal) in diagonals.iter().enumerate() {
        let first_row = k * rows_per_group;
        let h = covariance.raw_mat(k).ok_or(Error::InvalidCovariance(
            "no input rows were added to the covariance",
        ))?;
        let order = column_order(diagonal, options.order);
        let u = inverse_factor(h, &order, options.dampening).ok_or(Error::NotPositiveDefinite {
            group: k,
            dampening: options.dampening,
        })?;
        let block = first_row * cols..(first_row + rows_per_group) * cols;
        compensate_rows(
            &mut state,
            &weights[block.clone()],
            first_row,
            &order,
            &u,
            options,
            &mut codes[block],
        )?;
    }
    let tensor = QuantizedTensor::from_codes(rows, cols, *config, state.params, &codes)?;
    let bias_correction = match mean {
        Some(m) => Some(bias_correction(weights, &tensor, &m)?),
        None => None,
    };
    Ok(Compensated {
        tensor,
        bias_correction,
    })
}

/// Means as `cols` or `rows × cols` values (what [`bias_correction`] takes), from `cols`,
/// `groups × cols` or `rows × cols`.
fn expand_mean(mean: &[f32], groups: usize, rows: usize, cols: usize) -> Result<Vec<f32>> {
    if let Some(index) = mean.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFiniteStatistic {
            what: "input mean",
            index,
            value: f64::from(mean[index]),
        });
    }
    if mean.len() == cols || Some(mean.len()) == rows.checked_mul(cols) {
        return Ok(mean.to_vec());
    }
    if Some(mean.len()) == groups.checked_mul(cols) {
        let per = rows / groups;
        return Ok((0..rows)
            .flat_map(|r| mean[r / per * cols..(r / per + 1) * cols].iter().copied())
            .collect());
    }
    Err(Error::InputStatsLength {
        what: "input mean (cols, groups x cols or rows x cols values)",
        actual: mean.len(),
        cols,
        rows,
    })
}

/// Processing order of the columns.
pub(crate) fn column_order(diagonal: &[f64], order: ColumnOrder) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..diagonal.len()).collect();
    if order == ColumnOrder::DecreasingDiagonal {
        // Stable: equal diagonals keep their natural order.
        perm.sort_by(|&a, &b| diagonal[b].total_cmp(&diagonal[a]));
    }
    perm
}

/// The upper triangular `U` (row-major, `n × n`, in `f32`) with `Uᵀ U = H_p⁻¹`, where `H_p`
/// is `h` with dead inputs given a unit-scale diagonal, dampened, and permuted to `order`;
/// `None` when `H_p` has no Cholesky factorization.
///
/// `U` comes from one Cholesky factorization and one triangular inverse: with `J` the
/// reversal, `J H_p J = L Lᵀ` gives `H_p⁻¹ = (J L⁻¹ J)ᵀ (J L⁻¹ J)`, and `J L⁻¹ J` is upper
/// triangular with a positive diagonal, so it is the factor.
pub(crate) fn inverse_factor(
    h: MatRef<'_, f64>,
    order: &[usize],
    dampening: f64,
) -> Option<Vec<f32>> {
    let n = order.len();
    let raw: Vec<f64> = (0..n).map(|j| h[(j, j)]).collect();
    let live: Vec<f64> = raw.iter().copied().filter(|&d| d > 0.0).collect();
    let live_mean = if live.is_empty() {
        1.0
    } else {
        live.iter().sum::<f64>() / live.len() as f64
    };
    // A dead input's row and column are zero; any positive diagonal decouples it, and the
    // live inputs' mean keeps the scale (and so the dampening) that of the others.
    let diag: Vec<f64> = raw
        .iter()
        .map(|&d| if d == 0.0 { live_mean } else { d })
        .collect();
    let damp = dampening * diag.iter().sum::<f64>() / n as f64;
    let reversed = Mat::<f64>::from_fn(n, n, |i, j| {
        let (a, b) = (order[n - 1 - i], order[n - 1 - j]);
        if a == b {
            diag[a] + damp
        } else {
            h[(a, b)]
        }
    });
    let llt = reversed.llt(Side::Lower).ok()?;
    let mut inverse = Mat::<f64>::zeros(n, n);
    invert_lower_triangular(inverse.as_mut(), llt.L(), Par::Seq);
    let mut u = vec![0.0f32; n * n];
    for i in 0..n {
        for j in i..n {
            let v = inverse[(n - 1 - i, n - 1 - j)];
            if !v.is_finite() || (i == j && v <= 0.0) {
                return None;
            }
            u[i * n + j] = v as f32;
        }
    }
    // A diagonal that rounds to 0 in f32 would divide by zero.
    (0..n).all(|i| u[i * n + i] > 0.0).then_some(u)
}

/// Codebook parameters and their levels, shared by every covariance group.
struct State<'a> {
    family: Family,
    rule: ScaleRule,
    layout: Granularity,
    cols: usize,
    /// Levels per codebook.
    stride: usize,
    params: Vec<Params<f32>>,
    /// Every group's levels, ascending, `stride` apiece.
    levels: Vec<f32>,
    /// `E[x_j²]` per weight, for the OutputMse rule.
    importance: Option<&'a [f32]>,
}

impl State<'_> {
    fn set_levels(&mut self, group: usize) {
        let levels = &mut self.levels[group * self.stride..(group + 1) * self.stride];
        // Every parameter set here was fitted, so it builds a codebook of `stride` levels.
        if let Ok(codebook) = self.family.codebook(self.params[group]) {
            levels.copy_from_slice(&codebook.levels()[..self.stride]);
        }
    }

    /// The codebook index of the weight at (`row`, original column `col`).
    #[inline]
    fn group_of(&self, row: usize, col: usize) -> usize {
        match self.layout {
            Granularity::PerTensor => 0,
            Granularity::PerRow => row,
            Granularity::PerGroup(g) => self.layout.first_group_of_row(row, self.cols) + col / g,
        }
    }
}

/// The code of the level nearest `x` and that level, with [`Codebook::encode`]'s thresholds
/// and tie rule (toward zero).
///
/// [`Codebook::encode`]: crate::Codebook::encode
#[inline]
fn nearest(levels: &[f32], x: f32) -> (u8, f32) {
    let x = f64::from(x);
    let (mut lo, mut hi) = (0, levels.len() - 1);
    // Find the number of thresholds t_i = midpoint(l_i, l_{i+1}) that `x` passes; the
    // predicate falls as i grows, as in `Codebook::encode`.
    while lo < hi {
        let mid = (lo + hi) / 2;
        let t = f64::from(levels[mid]) * 0.5 + f64::from(levels[mid + 1]) * 0.5;
        let passes = if t < 0.0 { x >= t } else { x > t };
        if passes {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    (lo as u8, levels[lo])
}

/// Quantizes the rows of one covariance group (`weights`, `rows × cols` from global row
/// `first_row`) in column order `order` with inverse factor `u`, writing unpacked codes.
fn compensate_rows(
    state: &mut State<'_>,
    weights: &[f32],
    first_row: usize,
    order: &[usize],
    u: &[f32],
    options: &CompensateOptions,
    codes: &mut [u8],
) -> Result<()> {
    let n = order.len();
    let rows = weights.len() / n;
    // The working matrix, columns in processing order.
    let mut w = vec![0.0f32; rows * n];
    for (dst, src) in w.chunks_exact_mut(n).zip(weights.chunks_exact(n)) {
        for (d, &c) in dst.iter_mut().zip(order) {
            *d = src[c];
        }
    }
    // Processing positions where a group's codebook is fitted again: its first column.
    let mut refit_at = vec![false; n];
    let mut position = vec![0usize; n];
    for (i, &c) in order.iter().enumerate() {
        position[c] = i;
    }
    let group_len = match state.layout {
        Granularity::PerGroup(g) if options.refit_groups => Some(g),
        _ => None,
    };
    if let Some(g) = group_len {
        for start in (0..n).step_by(g) {
            let first = (start..(start + g).min(n)).map(|c| position[c]).min();
            if let Some(i) = first {
                refit_at[i] = true;
            }
        }
    }
    let u_mat = MatRef::from_row_major_slice(u, n, n);
    let mut errors = vec![0.0f32; rows * options.block_size.min(n)];
    let mut i1 = 0;
    while i1 < n {
        let mut i2 = (i1 + options.block_size).min(n);
        if let Some(g) = group_len {
            if refit_at[i1] {
                refit_group(state, &w, first_row, order[i1] / g, &position)?;
            }
            // A block ends before the next refit, so that the refit sees every update.
            if let Some(next) = (i1 + 1..i2).find(|&i| refit_at[i]) {
                i2 = next;
            }
        }
        let width = i2 - i1;
        let errors = &mut errors[..rows * width];
        for (r, (row, err)) in w
            .chunks_exact_mut(n)
            .zip(errors.chunks_exact_mut(width))
            .enumerate()
        {
            let global = first_row + r;
            let block = &mut row[i1..i2];
            for t in 0..width {
                let i = i1 + t;
                let c = order[i];
                let g = state.group_of(global, c);
                let levels = &state.levels[g * state.stride..(g + 1) * state.stride];
                let x = block[t];
                let (code, q) = nearest(levels, x);
                codes[r * n + c] = code;
                let e = (x - q) / u[i * n + i];
                err[t] = e;
                let u_row = &u[i * n + i + 1..i * n + i2];
                for (wv, &uv) in block[t + 1..].iter_mut().zip(u_row) {
                    *wv -= e * uv;
                }
            }
        }
        if i2 < n {
            // W[:, i2..] -= E · U[i1..i2, i2..]
            let rest = MatMut::from_row_major_slice_mut(&mut w, rows, n).subcols_mut(i2, n - i2);
            let e = MatRef::from_row_major_slice(errors, rows, width);
            let u_block = u_mat.submatrix(i1, i2, width, n - i2);
            matmul(rest, Accum::Add, e, u_block, -1.0, Par::Seq);
        }
        i1 = i2;
    }
    Ok(())
}

/// Fits group `k` of every row again on its current (compensated) weights.
fn refit_group(
    state: &mut State<'_>,
    w: &[f32],
    first_row: usize,
    k: usize,
    position: &[usize],
) -> Result<()> {
    let Granularity::PerGroup(g) = state.layout else {
        return Ok(());
    };
    let n = position.len();
    let cols = k * g..((k + 1) * g).min(n);
    let mut values = vec![0.0f32; cols.len()];
    let mut weights_of_importance = vec![0.0f32; cols.len()];
    for (r, row) in w.chunks_exact(n).enumerate() {
        let global = first_row + r;
        for (v, c) in values.iter_mut().zip(cols.clone()) {
            *v = row[position[c]];
        }
        let importance = state.importance.map(|imp| {
            let base = global * n;
            weights_of_importance.copy_from_slice(&imp[base + cols.start..base + cols.end]);
            &weights_of_importance[..]
        });
        let group = state.group_of(global, cols.start);
        state.params[group] = state.family.fit_group(state.rule, &values, importance)?;
        state.set_levels(group);
    }
    Ok(())
}
