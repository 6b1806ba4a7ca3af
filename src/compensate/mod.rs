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
//! The linear algebra is `faer`'s, and needs no inverse. GPTQ spreads column `i`'s error
//! `e_i = (w'_i − q_i)/U_ii` over the later columns with the upper factor `U` of `H⁻¹ = UᵀU`;
//! summed up, that says `W − Q = E U`, so with `M = U⁻¹` the weight column `i` holds when it is
//! rounded is `w'_i = w_i + Σ_{k<i} (w_k − q_k)·M_ki / M_ii` — the original weights and the
//! rounding differences only. `M` is upper triangular with `H = M Mᵀ` (columns in processing
//! order): the lower Cholesky factor of `H` taken in reverse order, with its rows and columns
//! reversed back. So the work is one Cholesky factorization (in `f32` when its pivots show it
//! accurate to well within the dampening, else in `f64`) and the gathering of every earlier
//! column's difference into the later columns: by halves, each finished half's differences
//! reaching the whole next half in one long matrix product, down to blocks of columns that
//! use smaller products and rank-1 updates.
//! Refitting a group's codebook needs the weights of columns not yet reached as GPTQ has
//! updated them, which this form never holds; with refits on, the inverse factor `U` is
//! formed and the errors are pushed forward block by block instead.
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

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{
    cholesky_in_place, cholesky_in_place_scratch, LltRegularization,
};
use faer::linalg::matmul::matmul;
use faer::linalg::triangular_inverse::invert_lower_triangular;
use faer::traits::ComplexField;
use faer::{Accum, Mat, MatMut, MatRef, Par};

use crate::calibrate::bias_correction;
use crate::config::Config;
use crate::discretize::Family;
use crate::error::{Error, Result};
use crate::kernels::strict_cut;
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
        cut_stride: family.level_count().next_power_of_two(),
        params: (0..plain.group_count())
            .filter_map(|g| plain.params(g))
            .collect(),
        levels: Vec::new(),
        cuts: Vec::new(),
        importance: importance.as_deref(),
    };
    state.levels = vec![0.0; state.params.len() * state.stride];
    state.cuts = vec![f32::INFINITY; state.params.len() * state.cut_stride];
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
        let dampened = Dampened::new(h, options.dampening);
        let not_pd = Error::NotPositiveDefinite {
            group: k,
            dampening: options.dampening,
        };
        let block = first_row * cols..(first_row + rows_per_group) * cols;
        let refits = options.refit_groups && matches!(state.layout, Granularity::PerGroup(_));
        if refits {
            let u = dampened
                .cholesky::<f64>(h, &order, |v| v)
                .and_then(|l| inverse_factor(l.as_ref()))
                .ok_or(not_pd)?;
            push_forward(
                &mut state,
                &weights[block.clone()],
                first_row,
                &order,
                &u,
                options,
                &mut codes[block],
            )?;
        } else {
            let m = dampened.gather_factor(h, &order).ok_or(not_pd)?;
            gather_back(
                &state,
                &weights[block.clone()],
                first_row,
                &order,
                m.as_ref().reverse_rows_and_cols(),
                options.block_size,
                &mut codes[block],
            );
        }
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

/// `H` made factorizable: dead inputs (zero diagonal) given the live inputs' mean diagonal,
/// then `damp` added to every diagonal entry.
struct Dampened {
    diag: Vec<f64>,
    damp: f64,
}

impl Dampened {
    fn new(h: MatRef<'_, f64>, dampening: f64) -> Self {
        let n = h.nrows();
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
        Dampened { diag, damp }
    }

    /// The lower Cholesky factor `L` of `J H_p J`, where `H_p` is the dampened `h` permuted to
    /// `order` and `J` reverses the order, computed in `T` (`to` converts); `None` when the
    /// factorization breaks down. The strict upper triangle is zero.
    ///
    /// `h` is symmetric, so entry `(a, b)` is read as `(b, a)`: filling a column of the factored
    /// matrix then gathers from one row of `h` rather than striding through all of them.
    fn cholesky<T: ComplexField>(
        &self,
        h: MatRef<'_, f64>,
        order: &[usize],
        to: impl Fn(f64) -> T,
    ) -> Option<Mat<T>> {
        let n = order.len();
        // Only the lower triangle is read and written by the factorization; the upper one
        // stays zero.
        let mut a = Mat::<T>::zeros(n, n);
        for j in 0..n {
            let b = order[n - 1 - j];
            let column = a.col_as_slice_mut(j);
            column[j] = to(self.diag[b] + self.damp);
            // Below the diagonal: `h[(b, other)]` for the columns processed before `b`, in
            // reverse processing order.
            let (below, others) = (&mut column[j + 1..], order[..n - 1 - j].iter().rev());
            match symmetric_line(h, b) {
                Some(line) => fill_from(below, others, |other| to(line[other])),
                None => fill_from(below, others, |other| to(h[(b, other)])),
            }
        }
        let mut scratch = MemBuffer::new(cholesky_in_place_scratch::<T>(
            n,
            Par::Seq,
            Default::default(),
        ));
        cholesky_in_place(
            a.as_mut(),
            LltRegularization::default(),
            Par::Seq,
            MemStack::new(&mut scratch),
            Default::default(),
        )
        .ok()?;
        Some(a)
    }

    /// `L̃`: the factor `L` of [`cholesky`](Self::cholesky) with every column divided by its
    /// diagonal entry, in `f32`. Reversed in rows and columns it is `M̃`, with
    /// `M̃_ki = M_ki / M_ii` for the upper triangular `M = J L J` (`H_p = M Mᵀ`) that
    /// [`gather_back`] works with. `None` when `H_p` has no Cholesky factorization (or an
    /// entry does not fit in `f32`).
    ///
    /// The factorization runs in `f32` (twice the speed) when that is accurate to well within
    /// the dampening, and in `f64` otherwise. Every exact pivot `L_jj²` of `H_p` is at least
    /// the smallest eigenvalue, so at least `damp`; the `f32` factor is kept when every one of
    /// its pivots is at least `damp / 2`, i.e. when rounding has not eaten half of the margin
    /// that the dampening adds. Without dampening it always runs in `f64`.
    fn gather_factor(&self, h: MatRef<'_, f64>, order: &[usize]) -> Option<Mat<f32>> {
        if self.damp > 0.0 {
            if let Some(mut l) = self.cholesky::<f32>(h, order, |v| v as f32) {
                let n = l.nrows();
                let accurate = (0..n).all(|j| {
                    let pivot = f64::from(l[(j, j)]);
                    pivot * pivot >= 0.5 * self.damp
                });
                if accurate && scale_columns(l.as_mut()) {
                    return Some(l);
                }
            }
        }
        let l = self.cholesky::<f64>(h, order, |v| v)?;
        let n = l.nrows();
        let mut l32 = Mat::<f32>::from_fn(n, n, |i, j| if i >= j { l[(i, j)] as f32 } else { 0.0 });
        // Scaled in f32 from the rounded entries: the relative error stays that of f32.
        scale_columns(l32.as_mut()).then_some(l32)
    }
}

/// `out[i] = read(k_i)`, `k_i` the `i`-th index `from` yields: one loop, monomorphized per
/// `read`, for the contiguous and the strided source.
fn fill_from<'o, T>(
    out: &mut [T],
    from: impl Iterator<Item = &'o usize>,
    read: impl Fn(usize) -> T,
) {
    for (v, &other) in out.iter_mut().zip(from) {
        *v = read(other);
    }
}

/// Row `b` of the symmetric `h` as a contiguous slice (row `b` or, the same values, column
/// `b`, whichever is contiguous); `None` when neither is.
fn symmetric_line(h: MatRef<'_, f64>, b: usize) -> Option<&[f64]> {
    if let Some(row) = h.row(b).try_as_row_major() {
        return Some(row.as_slice());
    }
    h.col(b).try_as_col_major().map(|c| c.as_slice())
}

/// Divides every column of a lower triangular matrix by its diagonal entry; false when a
/// result is not finite.
fn scale_columns(mut l: MatMut<'_, f32>) -> bool {
    let n = l.nrows();
    for j in 0..n {
        let pivot = l[(j, j)];
        for i in j..n {
            let v = l[(i, j)] / pivot;
            if !v.is_finite() {
                return false;
            }
            l[(i, j)] = v;
        }
    }
    true
}

/// The upper triangular `U` (row-major, `n × n`, in `f32`) with `Uᵀ U = H_p⁻¹`, from the
/// factor `L` of [`Dampened::cholesky`]; `None` when it does not fit in `f32`.
///
/// `H_p⁻¹ = (J L⁻¹ J)ᵀ (J L⁻¹ J)`, and `J L⁻¹ J` is upper triangular with a positive diagonal,
/// so it is the factor.
fn inverse_factor(l: MatRef<'_, f64>) -> Option<Vec<f32>> {
    let n = l.nrows();
    let mut inverse = Mat::<f64>::zeros(n, n);
    invert_lower_triangular(inverse.as_mut(), l, Par::Seq);
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
    /// Cuts per codebook: the `stride − 1` cuts of a group's levels padded with +∞ to a
    /// power of two, for [`encode`].
    cut_stride: usize,
    /// Every group's cuts, `cut_stride` apiece.
    cuts: Vec<f32>,
    /// `E[x_j²]` per weight, for the OutputMse rule.
    importance: Option<&'a [f32]>,
}

impl State<'_> {
    fn set_levels(&mut self, group: usize) {
        let levels = &mut self.levels[group * self.stride..(group + 1) * self.stride];
        // Every parameter set here was fitted, so it builds a codebook of `stride` levels.
        if let Ok(codebook) = self.family.codebook(self.params[group]) {
            levels.copy_from_slice(&codebook.levels()[..self.stride]);
            fill_cuts(
                codebook.thresholds(),
                &mut self.cuts[group * self.cut_stride..(group + 1) * self.cut_stride],
            );
        }
    }

    /// The cuts and levels of codebook `group`.
    #[inline]
    fn codebook(&self, group: usize) -> (&[f32], &[f32]) {
        (
            &self.cuts[group * self.cut_stride..(group + 1) * self.cut_stride],
            &self.levels[group * self.stride..(group + 1) * self.stride],
        )
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

/// Writes the cuts of `thresholds` to `cuts`, the rest +∞.
fn fill_cuts(thresholds: &[f64], cuts: &mut [f32]) {
    cuts.fill(f32::INFINITY);
    for (c, &t) in cuts.iter_mut().zip(thresholds) {
        *c = strict_cut(t);
    }
}

/// The code of the level nearest `x`, with [`Codebook::encode`]'s thresholds and tie rule
/// (toward zero), from a codebook's cuts (see [`Encoder`]) padded with +∞ to a power of two:
/// the number of cuts below `x`, counted by compares over all of them for up to 32 cuts and
/// by a branch-free binary search over more.
///
/// [`Codebook::encode`]: crate::Codebook::encode
/// [`Encoder`]: crate::kernels::Encoder
#[inline]
fn encode(cuts: &[f32], x: f32) -> usize {
    match cuts.len() {
        2 => count_below::<2>(cuts, x),
        4 => count_below::<4>(cuts, x),
        8 => count_below::<8>(cuts, x),
        16 => count_below::<16>(cuts, x),
        32 => count_below::<32>(cuts, x),
        len => {
            // Over the first `2^k − 1` cuts, the last being +∞ anyway.
            let mut step = len / 2;
            let mut pos = 0usize;
            while step > 0 {
                pos += usize::from(x > cuts[pos + step - 1]) * step;
                step /= 2;
            }
            pos
        }
    }
}

/// The number of the first `N` cuts below `x` (a fixed count, so the compares vectorize).
#[inline]
fn count_below<const N: usize>(cuts: &[f32], x: f32) -> usize {
    let mut count = 0u32;
    for &c in &cuts[..N] {
        count += u32::from(x > c);
    }
    count as usize
}

/// Rows handled together when permuting between row-major weights or codes and the
/// column-major working copies, so that the rows being gathered stay in cache.
const TILE_ROWS: usize = 16;

/// Columns per inner block of [`gather_back`]'s leaves: the span handled by rank-1 updates,
/// between products.
const INNER: usize = 16;

/// Quantizes the rows of one covariance group (`weights`, `rows × cols` from global row
/// `first_row`) in column order `order` with the gathering factor `m` (`M̃`, see
/// [`Dampened::gather_factor`]), writing unpacked codes.
///
/// Column `i` is rounded at `w_i + g_i` with `g_i = Σ_{k<i} d_k M̃_ki`, the gathered sum of the
/// earlier rounding differences `d_k = w_k − q_k`. The working copy `w` (column-major, in
/// processing order) holds a column's original weights until it is rounded and `d_i` after;
/// the sums `g` are formed recursively: the columns split into halves, the first half is
/// finished, its differences reach the whole second half in one product
/// `G_R += D_L M̃_{L,R}`, then the second half is finished. The products have both dimensions
/// long, the shape a matrix product runs fastest on; halves of at most `block_size` columns
/// are leaves ([`Gather::finish_leaf`]). The first half's sums are dead once it is finished,
/// so the second half's take their place and `g` holds half of the columns.
fn gather_back(
    state: &State<'_>,
    weights: &[f32],
    first_row: usize,
    order: &[usize],
    m: MatRef<'_, f32>,
    block_size: usize,
    codes: &mut [u8],
) {
    let n = order.len();
    let rows = weights.len() / n;
    let mut w = vec![0.0f32; rows * n];
    for r0 in (0..rows).step_by(TILE_ROWS) {
        let r1 = (r0 + TILE_ROWS).min(rows);
        for (column, &c) in w.chunks_exact_mut(rows).zip(order) {
            for (v, r) in column[r0..r1].iter_mut().zip(r0..r1) {
                *v = weights[r * n + c];
            }
        }
    }
    // Codes in processing order, column-major, until they are put back at the end.
    let mut permuted = vec![0u8; rows * n];
    let gather = Gather {
        state,
        first_row,
        order,
        m,
        rows,
        block_size: block_size.clamp(1, n),
    };
    let half = gather.split(n);
    let mut g = vec![0.0f32; rows * half];
    if half == n {
        gather.finish(&mut w, &mut g, &mut permuted, 0);
    } else {
        let (left, right) = w.split_at_mut(rows * half);
        let (left_codes, right_codes) = permuted.split_at_mut(rows * half);
        gather.finish(left, &mut g, left_codes, 0);
        let g = &mut g[..rows * (n - half)];
        gather.carry(left, g, Accum::Replace, 0, half);
        gather.finish(right, g, right_codes, half);
    }
    for r0 in (0..rows).step_by(TILE_ROWS) {
        let r1 = (r0 + TILE_ROWS).min(rows);
        for (column, &c) in permuted.chunks_exact(rows).zip(order) {
            for (&code, r) in column[r0..r1].iter().zip(r0..r1) {
                codes[r * n + c] = code;
            }
        }
    }
}

/// What [`gather_back`]'s recursion shares.
struct Gather<'s, 'a> {
    state: &'s State<'a>,
    first_row: usize,
    order: &'s [usize],
    m: MatRef<'s, f32>,
    rows: usize,
    block_size: usize,
}

impl Gather<'_, '_> {
    /// Where `width` columns split: the first half rounded up to whole blocks (so that leaves
    /// stay `block_size` wide), or `width` for a leaf.
    fn split(&self, width: usize) -> usize {
        if width <= self.block_size {
            width
        } else {
            width.div_ceil(2).div_ceil(self.block_size) * self.block_size
        }
    }

    /// `g += D M̃[first..first + k, first + k..]` (or `=` with [`Accum::Replace`]): the
    /// differences `d` of the `k` columns from `first` gathered into the columns after them.
    fn carry(&self, d: &[f32], g: &mut [f32], accum: Accum, first: usize, k: usize) {
        let rows = self.rows;
        let width = g.len() / rows;
        matmul(
            MatMut::from_column_major_slice_mut(g, rows, width),
            accum,
            MatRef::from_column_major_slice(d, rows, k),
            self.m.submatrix(first, first + k, k, width),
            1.0,
            Par::Seq,
        );
    }

    /// Finishes the columns `first..first + width` in processing order, whose weights and then
    /// differences are `w` (`rows × width`, column-major), sums `g` (the same shape) and codes
    /// `codes`, every earlier column's difference already gathered into `g`.
    fn finish(&self, w: &mut [f32], g: &mut [f32], codes: &mut [u8], first: usize) {
        let rows = self.rows;
        let width = w.len().checked_div(rows).unwrap_or(0);
        let half = self.split(width);
        if half == width {
            self.finish_leaf(w, g, codes, first);
            return;
        }
        let (left, right) = w.split_at_mut(rows * half);
        let (left_g, right_g) = g.split_at_mut(rows * half);
        let (left_codes, right_codes) = codes.split_at_mut(rows * half);
        self.finish(left, left_g, left_codes, first);
        self.carry(left, right_g, Accum::Add, first, half);
        self.finish(right, right_g, right_codes, first + half);
    }

    /// [`finish`](Self::finish) for one leaf: inner blocks of [`INNER`] columns take the
    /// leaf's earlier differences by a product and their own by rank-1 updates over the rows.
    fn finish_leaf(&self, w: &mut [f32], g: &mut [f32], codes: &mut [u8], first: usize) {
        let rows = self.rows;
        let width = w.len().checked_div(rows).unwrap_or(0);
        for s1 in (0..width).step_by(INNER) {
            let s2 = (s1 + INNER).min(width);
            let (done, rest) = w.split_at_mut(rows * s1);
            let sums = &mut g[rows * s1..rows * s2];
            if s1 > 0 {
                self.carry(done, sums, Accum::Add, first, s1);
            }
            for t in 0..s2 - s1 {
                let i = first + s1 + t;
                let c = self.order[i];
                let (current, later) = sums[rows * t..].split_at_mut(rows);
                let difference = &mut rest[rows * t..rows * (t + 1)];
                let column_codes = &mut codes[rows * (s1 + t)..rows * (s1 + t + 1)];
                for (r, ((d, code), &sum)) in difference
                    .iter_mut()
                    .zip(column_codes.iter_mut())
                    .zip(current.iter())
                    .enumerate()
                {
                    let (cuts, levels) = self
                        .state
                        .codebook(self.state.group_of(self.first_row + r, c));
                    let k = encode(cuts, *d + sum);
                    *code = k as u8;
                    *d -= levels[k];
                }
                for (s, column) in (i + 1..).zip(later.chunks_exact_mut(rows)) {
                    let coefficient = self.m[(i, s)];
                    if coefficient != 0.0 {
                        for (v, &d) in column.iter_mut().zip(difference.iter()) {
                            *v += coefficient * d;
                        }
                    }
                }
            }
        }
    }
}

/// Quantizes the rows of one covariance group (`weights`, `rows × cols` from global row
/// `first_row`) in column order `order` with inverse factor `u`, writing unpacked codes,
/// refitting each group's codebook at its first column: GPTQ's own form, each block's errors
/// pushed onto the columns after it, so that those columns hold their updated weights.
fn push_forward(
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
                let (cuts, levels) = state.codebook(state.group_of(global, c));
                let x = block[t];
                let code = encode(cuts, x);
                let q = levels[code];
                codes[r * n + c] = code as u8;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codebook;

    /// A small deterministic generator in `[-1, 1)`.
    fn uniform(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    #[test]
    fn encode_agrees_with_the_codebook() {
        let mut state = 7u64;
        for len in [2usize, 3, 4, 7, 15, 16, 17, 31, 32, 33, 64, 100, 255, 256] {
            let mut levels: Vec<f32> = (0..len).map(|_| uniform(&mut state) as f32).collect();
            levels.sort_by(f32::total_cmp);
            levels.dedup();
            // Fixed outer levels; `x` exactly at every cut below tests the tie rule on both signs.
            if levels.len() >= 4 {
                levels[0] = -1.5;
                let last = levels.len() - 1;
                levels[last] = 1.5;
            }
            let codebook = Codebook::new(&levels).unwrap();
            let mut cuts = vec![0.0; levels.len().next_power_of_two()];
            fill_cuts(codebook.thresholds(), &mut cuts);
            let mut xs: Vec<f32> = (0..2000)
                .map(|_| 1.8 * uniform(&mut state) as f32)
                .collect();
            for &t in codebook.thresholds() {
                let t = t as f32;
                xs.extend([t, t.next_down(), t.next_up(), -t]);
            }
            xs.extend([0.0, -0.0, f32::MAX, -f32::MAX]);
            for x in xs {
                assert_eq!(
                    encode(&cuts, x),
                    usize::from(codebook.encode(x)),
                    "{x} of {len}"
                );
            }
        }
    }

    /// The `f32` factorization and the `f64` one give the same `L̃` to `f32` accuracy, and
    /// without dampening only `f64` runs (the `f32` pivots could not be checked).
    #[test]
    fn f32_and_f64_factors_agree() {
        let n = 96;
        let mut state = 3u64;
        // H = B Bᵀ / k + noise: strongly correlated, full rank.
        let k = 8;
        let b: Vec<f64> = (0..n * k).map(|_| uniform(&mut state)).collect();
        let h = Mat::<f64>::from_fn(n, n, |i, j| {
            let dot: f64 = (0..k).map(|t| b[i * k + t] * b[j * k + t]).sum();
            dot / k as f64 + if i == j { 0.05 } else { 0.0 }
        });
        let order: Vec<usize> = (0..n).rev().collect();
        let dampened = Dampened::new(h.as_ref(), 0.01);
        let fast = dampened.gather_factor(h.as_ref(), &order).unwrap();
        let exact = dampened.cholesky::<f64>(h.as_ref(), &order, |v| v).unwrap();
        let mut worst = 0.0f64;
        for j in 0..n {
            for i in j..n {
                let e = exact[(i, j)] / exact[(j, j)];
                worst = worst.max((f64::from(fast[(i, j)]) - e).abs());
            }
        }
        assert!(worst < 1e-4, "{worst}");
        assert!(worst > 0.0, "the f32 path ran");
        let undamped = Dampened::new(h.as_ref(), 0.0);
        let exact = undamped.cholesky::<f64>(h.as_ref(), &order, |v| v).unwrap();
        let got = undamped.gather_factor(h.as_ref(), &order).unwrap();
        for j in 0..n {
            for i in j..n {
                assert_eq!(got[(i, j)], (exact[(i, j)] as f32) / (exact[(j, j)] as f32));
            }
        }
    }
}
