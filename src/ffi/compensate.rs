//! Error-compensating quantization: the `expq_covariance` accumulator and
//! `expq_quantize_compensated`.

use crate::compensate::{quantize_compensated, ColumnOrder, CompensateOptions};
use crate::covariance::Covariance;
use crate::error::Error;

use super::{
    boundary, check_disjoint, expq_bool_value, expq_config, expq_status, expq_tensor, write_out,
    Failure,
};

/// The order in which `expq_quantize_compensated` quantizes columns.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum expq_column_order {
    /// Column 0 first.
    Natural = 0,
    /// Inputs with the largest `E[x_j²]` first (ties: lower index first); the default.
    DecreasingDiagonal = 1,
}

/// The integer in which Rust receives an `expq_column_order` (see `expq_scheme_value`).
pub type expq_column_order_value = u32;

/// Options of `expq_quantize_compensated`. Start from `expq_compensate_options_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct expq_compensate_options {
    /// Added to the covariance's diagonal, as a fraction of its mean diagonal, before
    /// factorizing; finite and `>= 0` (default 0.01).
    pub dampening: f64,
    /// Column order (default `EXPQ_COLUMN_ORDER_DECREASING_DIAGONAL`).
    pub order: expq_column_order_value,
    /// Columns per block, at least 1 (default 128); only speed depends on it.
    pub block_size: usize,
    /// Per group only: fit a group's codebook again on its compensated weights when its
    /// first column is reached (default false).
    pub refit_groups: expq_bool_value,
}

impl expq_compensate_options {
    fn rust_options(&self) -> Result<CompensateOptions, Failure> {
        let order = match self.order {
            0 => ColumnOrder::Natural,
            1 => ColumnOrder::DecreasingDiagonal,
            value => {
                return Err(Failure::BadEnum {
                    what: "options.order",
                    value,
                    allowed: "an expq_column_order (0 or 1)",
                })
            }
        };
        let refit_groups = match self.refit_groups {
            0 => false,
            1 => true,
            value => {
                return Err(Failure::BadEnum {
                    what: "options.refit_groups",
                    value: u32::from(value),
                    allowed: "a bool (0 or 1)",
                })
            }
        };
        Ok(CompensateOptions {
            dampening: self.dampening,
            order,
            block_size: self.block_size,
            refit_groups,
        })
    }
}

impl super::Fallback for expq_compensate_options {
    fn fallback(_: expq_status) -> Self {
        default_options()
    }
}

fn default_options() -> expq_compensate_options {
    let d = CompensateOptions::default();
    expq_compensate_options {
        dampening: d.dampening,
        order: match d.order {
            ColumnOrder::Natural => expq_column_order::Natural as u32,
            _ => expq_column_order::DecreasingDiagonal as u32,
        },
        block_size: d.block_size,
        refit_groups: u8::from(d.refit_groups),
    }
}

/// The default options: dampening 0.01, columns by decreasing diagonal, blocks of 128,
/// no group refits.
#[no_mangle]
pub extern "C" fn expq_compensate_options_default() -> expq_compensate_options {
    boundary("expq_compensate_options_default", || Ok(default_options()))
}

/// The second moment `E[x xᵀ]` and mean `E[x]` of a layer's inputs, per group of input
/// channels, accumulated in double. Opaque; owned by the caller from `expq_covariance_new` or
/// `expq_covariance_from_matrix` until `expq_covariance_free`. `expq_covariance_add_rows`
/// changes it and must not run at the same time as any other call on it; the `const`
/// functions may run from several threads at once.
pub struct expq_covariance {
    inner: Covariance,
}

fn store(out: *mut *mut expq_covariance, inner: Covariance) {
    let raw = std::boxed::Box::into_raw(std::boxed::Box::new(expq_covariance { inner }));
    // SAFETY: every caller checked `out` with `try_out!` and its caller promises it writable.
    unsafe { write_out(out, raw) };
}

/// Makes an empty accumulator for `groups` groups (1 for a dense layer or an ordinary
/// convolution; the conv's groups for a grouped or depthwise one) of `dim` inputs each
/// (`dim` = the layer's `cols`), stored in `*out` on success.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (`groups` or `dim` 0,
/// or matrices too large for memory).
///
/// # Safety
/// `out` must be writable for one pointer.
#[no_mangle]
pub unsafe extern "C" fn expq_covariance_new(
    groups: usize,
    dim: usize,
    out: *mut *mut expq_covariance,
) -> expq_status {
    boundary("expq_covariance_new", || {
        try_out!(out);
        store(out, Covariance::new(groups, dim)?);
        Ok(expq_status::Ok)
    })
}

/// Wraps a caller's precomputed `E[x xᵀ]`: `groups` symmetric `dim × dim` row-major matrices
/// of doubles, one after the other (`matrix_len = groups * dim * dim`), copied. It has no
/// means and takes no rows.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (a zero size, a length
/// other than `groups * dim * dim` — `EXPQ_STATUS_BUFFER_TOO_SMALL` when shorter — or a
/// matrix that is not symmetric), `EXPQ_STATUS_NON_FINITE` (a NaN or infinite entry).
///
/// # Safety
/// `matrix` must point to `matrix_len` doubles; `out` be writable for one pointer.
#[no_mangle]
pub unsafe extern "C" fn expq_covariance_from_matrix(
    groups: usize,
    dim: usize,
    matrix: *const f64,
    matrix_len: usize,
    out: *mut *mut expq_covariance,
) -> expq_status {
    boundary("expq_covariance_from_matrix", || {
        let matrix = try_slice!(matrix, matrix_len);
        try_out!(out);
        store(out, Covariance::from_matrix(groups, dim, matrix)?);
        Ok(expq_status::Ok)
    })
}

/// Adds `inputs_len / (groups * dim)` input rows: each row holds the `groups * dim` inputs
/// one output position sees (for a convolution the im2col patch in `(in, kh, kw)` order,
/// group `k`'s part at `[k * dim, (k + 1) * dim)`).
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (`inputs_len` not a
/// multiple of the row length, or a covariance made from a matrix), `EXPQ_STATUS_NON_FINITE`
/// (a NaN or infinite input; nothing is added then).
///
/// # Safety
/// `cov` must be a live covariance that no other thread uses during the call; `inputs` must
/// point to `inputs_len` floats.
#[no_mangle]
pub unsafe extern "C" fn expq_covariance_add_rows(
    cov: *mut expq_covariance,
    inputs: *const f32,
    inputs_len: usize,
) -> expq_status {
    boundary("expq_covariance_add_rows", || {
        // SAFETY: the caller promises a non-NULL `cov` is live and not used elsewhere during
        // the call, so a unique reference is sound.
        let Some(cov) = (unsafe { cov.as_mut() }) else {
            return Err(Failure::Null("cov"));
        };
        let inputs = try_slice!(inputs, inputs_len);
        cov.inner.add_rows(inputs)?;
        Ok(expq_status::Ok)
    })
}

/// Rows added so far (0 for a covariance made from a matrix, or when `cov` is NULL).
///
/// # Safety
/// `cov` must be NULL or a live covariance.
#[no_mangle]
pub unsafe extern "C" fn expq_covariance_count(cov: *const expq_covariance) -> u64 {
    boundary("expq_covariance_count", || Ok(try_ref!(cov).inner.count()))
}

/// Writes the inputs' means `E[x]`, `groups * dim` floats (group `k`'s at
/// `[k * dim, (k + 1) * dim)`), into `mean` for `expq_quantize_compensated`'s bias
/// correction; `mean_len` must be `groups * dim`.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (no rows added, a
/// covariance made from a matrix, `mean_len` too large), `EXPQ_STATUS_BUFFER_TOO_SMALL`.
/// `mean` is written only on success.
///
/// # Safety
/// `cov` must be a live covariance; `mean` writable for `mean_len` floats.
#[no_mangle]
pub unsafe extern "C" fn expq_covariance_mean(
    cov: *const expq_covariance,
    mean: *mut f32,
    mean_len: usize,
) -> expq_status {
    boundary("expq_covariance_mean", || {
        let cov = try_ref!(cov);
        let out = try_slice_mut!(mean, mean_len);
        let values = cov.inner.mean().ok_or(Error::InvalidCovariance(
            "no means: no input rows were added (or it was made from a matrix)",
        ))?;
        if values.len() != out.len() {
            return Err(Error::BufferLength {
                what: "mean",
                expected: values.len(),
                actual: out.len(),
            }
            .into());
        }
        out.copy_from_slice(&values);
        Ok(expq_status::Ok)
    })
}

/// Frees a covariance. NULL is fine (nothing happens).
///
/// # Safety
/// `cov` must be NULL or a covariance from `expq_covariance_new` or
/// `expq_covariance_from_matrix` that has not been freed and that no other thread uses.
#[no_mangle]
pub unsafe extern "C" fn expq_covariance_free(cov: *mut expq_covariance) {
    boundary("expq_covariance_free", || {
        if !cov.is_null() {
            // SAFETY: `cov` came from `Box::into_raw` in `store` and, as the caller promises,
            // has not been freed, so this is its one owner.
            drop(unsafe { std::boxed::Box::from_raw(cov) });
        }
        Ok(())
    })
}

/// Quantizes a `rows × cols` row-major matrix so that its output error under the inputs'
/// covariance `cov` is small (columns one at a time, each one's rounding error moved onto the
/// columns not yet quantized, weighted by the inverse covariance: GPTQ/OBQ), and on success
/// stores a new tensor in `*out` (free it with `expq_tensor_free`). Codebooks are fitted on
/// the original weights as `expq_quantize` fits them (`EXPQ_SCALE_RULE_OUTPUT_MSE` weighted
/// by the covariance's diagonal); see `options.refit_groups`.
///
/// `cov` has `dim = cols`, and `rows` must be a multiple of its groups (row run `k` sees
/// group `k`'s inputs). `options` may be NULL for the defaults. With `input_mean` (NULL for
/// none; then `input_mean_len`, `bias_correction` and `bias_len` are ignored) holding `cols`,
/// `groups * cols` or `rows * cols` means, the per-row bias correction of the compensated
/// weights, `−Σ_j (Q[r,j] − W[r,j])·input_mean[j]`, is written to `bias_correction`
/// (`bias_len` must be `rows`).
///
/// Errors: everything `expq_quantize` reports, and `EXPQ_STATUS_INVALID_ARGUMENT` (a
/// covariance that does not fit the shape or holds no rows, a dampening that is negative or
/// not finite, block size 0, an option out of its enum, means of the wrong length, a
/// covariance still not positive definite after dampening, overlapping buffers),
/// `EXPQ_STATUS_NON_FINITE` (a NaN or infinite mean), `EXPQ_STATUS_BUFFER_TOO_SMALL`
/// (`bias_len < rows`). `bias_correction` and `*out` are written only on success.
///
/// # Safety
/// `weights` must point to `rows * cols` floats; `config` to an `expq_config`; `cov` be a
/// live covariance; `options` NULL or an `expq_compensate_options`; `input_mean` NULL or
/// `input_mean_len` floats; with means, `bias_correction` writable for `bias_len` floats;
/// `out` writable for one pointer.
#[no_mangle]
pub unsafe extern "C" fn expq_quantize_compensated(
    weights: *const f32,
    rows: usize,
    cols: usize,
    config: *const expq_config,
    cov: *const expq_covariance,
    options: *const expq_compensate_options,
    input_mean: *const f32,
    input_mean_len: usize,
    bias_correction: *mut f32,
    bias_len: usize,
    out: *mut *mut expq_tensor,
) -> expq_status {
    boundary("expq_quantize_compensated", || {
        // On overflow hand the core an empty slice: it reports the shape as not matching.
        let weights = try_slice!(weights, rows.checked_mul(cols).unwrap_or(0));
        let config = try_ref!(config);
        let cov = try_ref!(cov);
        // SAFETY: the caller promises a non-NULL `options` points to a live struct.
        let options = match unsafe { options.as_ref() } {
            Some(o) => o.rust_options()?,
            None => CompensateOptions::default(),
        };
        try_out!(out);
        let mean = if input_mean.is_null() {
            None
        } else {
            let mean = try_slice!(input_mean, input_mean_len);
            let names = ("weights", "bias_correction");
            check_disjoint(weights, bias_correction, bias_len, names)?;
            check_disjoint(mean, bias_correction, bias_len, ("input_mean", names.1))?;
            Some(mean)
        };
        let bias = match mean {
            Some(_) => Some(try_slice_mut!(bias_correction, bias_len)),
            None => None,
        };
        let config = config.rust_config()?;
        if bias.is_some() && bias_len != rows {
            return Err(Error::BufferLength {
                what: "bias_correction",
                expected: rows,
                actual: bias_len,
            }
            .into());
        }
        let result =
            quantize_compensated(weights, rows, cols, &config, &cov.inner, &options, mean)?;
        if let (Some(bias), Some(values)) = (bias, result.bias_correction) {
            bias.copy_from_slice(&values);
        }
        let tensor = expq_tensor::into_raw(result.tensor);
        // SAFETY: `out` is non-NULL (checked above) and the caller promises it is writable.
        unsafe { write_out(out, tensor) };
        Ok(expq_status::Ok)
    })
}

impl super::Fallback for u64 {
    fn fallback(_: expq_status) -> Self {
        0
    }
}
