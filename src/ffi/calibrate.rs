//! Activation-aware quantization: `expq_quantize_calibrated` (bias correction and the
//! `EXPQ_SCALE_RULE_OUTPUT_MSE` fit) and `expq_relu_moments` (data-free statistics).

use crate::calibrate::{finite_moments, quantize_calibrated, relu_moments, InputStats};
use crate::error::Error;

use super::{boundary, check_disjoint, expq_config, expq_status, expq_tensor, write_out};

/// Quantizes a `rows × cols` row-major matrix of `rows * cols` floats at `weights` as
/// `config` says, using the layer's input statistics, and on success stores a new tensor in
/// `*out` (free it with `expq_tensor_free`) and writes the per-row bias correction
/// `bias_correction[r] = −Σ_j (Q[r,j] − W[r,j])·input_mean[j]` (accumulated in double), which
/// the caller adds to the layer's bias (a layer without a bias gets one).
///
/// Statistics: `input_mean` holds `E[x_j]`, and `input_sq_mean` (optional: NULL, and then
/// `input_sq_mean_len` is ignored) holds `E[x_j²]`. Each holds either `cols` values shared by
/// every row (dense layers, ordinary convolutions) or `rows * cols` values, one row of
/// statistics per output row (grouped and depthwise convolutions).
/// `EXPQ_SCALE_RULE_OUTPUT_MSE` fits each group's scale to `Σ_j E[x_j²]·(W − Q)²` and needs
/// `input_sq_mean`; other rules give the same tensor as `expq_quantize` plus the correction.
/// `bias_correction_len` must be `rows`.
///
/// Errors: everything `expq_quantize` reports (`rows * cols` overflowing first of all), and
/// `EXPQ_STATUS_INVALID_ARGUMENT` (a
/// statistic whose length is neither `cols` nor `rows * cols`, a negative mean square,
/// `EXPQ_SCALE_RULE_OUTPUT_MSE` without `input_sq_mean`, `bias_correction_len > rows`, overlapping
/// buffers), `EXPQ_STATUS_NON_FINITE` (a NaN or infinite statistic, or a bias
/// correction beyond the largest finite float),
/// `EXPQ_STATUS_BUFFER_TOO_SMALL` (`bias_correction_len < rows`). `bias_correction` and `*out` are
/// written only on success.
///
/// # Safety
/// `weights` must point to `rows * cols` floats; `config` to an `expq_config`; `input_mean`
/// to `input_mean_len` floats; `input_sq_mean` be NULL or point to `input_sq_mean_len`
/// floats; `bias_correction` be writable for `bias_correction_len` floats; `out` writable for one
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn expq_quantize_calibrated(
    weights: *const f32,
    rows: usize,
    cols: usize,
    config: *const expq_config,
    input_mean: *const f32,
    input_mean_len: usize,
    input_sq_mean: *const f32,
    input_sq_mean_len: usize,
    bias_correction: *mut f32,
    bias_correction_len: usize,
    out: *mut *mut expq_tensor,
) -> expq_status {
    boundary("expq_quantize_calibrated", || {
        let n = crate::tensor::element_count(rows, cols)?;
        let weights = try_slice!(weights, n);
        let config = try_ref!(config);
        let mean = try_slice!(input_mean, input_mean_len);
        let sq_mean = if input_sq_mean.is_null() {
            None
        } else {
            Some(try_slice!(input_sq_mean, input_sq_mean_len))
        };
        try_out!(out);
        let names = ("weights", "bias_correction");
        check_disjoint(weights, bias_correction, bias_correction_len, names)?;
        check_disjoint(
            mean,
            bias_correction,
            bias_correction_len,
            ("input_mean", names.1),
        )?;
        if let Some(sq_mean) = sq_mean {
            check_disjoint(
                sq_mean,
                bias_correction,
                bias_correction_len,
                ("input_sq_mean", names.1),
            )?;
        }
        let bias = try_slice_mut!(bias_correction, bias_correction_len);
        let config = config.rust_config()?;
        if bias_correction_len != rows {
            return Err(Error::BufferLength {
                what: "bias_correction",
                expected: rows,
                actual: bias_correction_len,
            }
            .into());
        }
        let stats = InputStats { mean, sq_mean };
        let calibrated = quantize_calibrated(weights, rows, cols, &config, &stats)?;
        bias.copy_from_slice(&calibrated.bias_correction);
        let tensor = expq_tensor::into_raw(calibrated.tensor);
        // SAFETY: `out` is non-NULL (checked above) and the caller promises it is writable.
        unsafe { write_out(out, tensor) };
        Ok(expq_status::Ok)
    })
}

/// Data-free input statistics: on success stores in `*mean` and `*sq_mean` the mean `E[y]`
/// and mean square `E[y²]` of `y = min(max(z, 0), clip)` for `z ~ N(beta, gamma²)` — a
/// BatchNorm output (shift `beta`, scale `gamma`) followed by ReLU (`clip = INFINITY`) or
/// ReLU6 (`clip = 6`) — in closed form, computed in double. Feed them per input channel to
/// `expq_quantize_calibrated`. `gamma`'s sign is ignored; `gamma = 0` gives the point mass
/// at `beta` clamped to `[0, clip]`.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (`beta` or `gamma` NaN
/// or infinite, `clip` NaN or `<= 0`), `EXPQ_STATUS_NON_FINITE` (a moment beyond the largest
/// finite float, from `|beta|` or `|gamma|` above about 1.8e19). The outputs are written only
/// on success.
///
/// # Safety
/// `mean` and `sq_mean` must be writable floats.
#[no_mangle]
pub unsafe extern "C" fn expq_relu_moments(
    beta: f32,
    gamma: f32,
    clip: f32,
    mean: *mut f32,
    sq_mean: *mut f32,
) -> expq_status {
    boundary("expq_relu_moments", || {
        try_out!(mean);
        try_out!(sq_mean);
        let (beta, gamma, clip) = (f64::from(beta), f64::from(gamma), f64::from(clip));
        let (m, s) = relu_moments(beta, gamma, clip)?;
        // Finite in double can still overflow float.
        let (m, s) = finite_moments(
            beta,
            gamma,
            clip,
            f64::from(m as f32),
            f64::from(s as f32),
            "float",
        )?;
        // SAFETY: both are non-NULL (checked above) and writable, as the caller promises.
        unsafe {
            write_out(mean, m as f32);
            write_out(sq_mean, s as f32);
        }
        Ok(expq_status::Ok)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu_moments_of_a_standard_normal() {
        let (mut m, mut s) = (0.0f32, 0.0f32);
        // SAFETY: both outputs are writable locals.
        let status = unsafe { expq_relu_moments(0.0, 1.0, f32::INFINITY, &mut m, &mut s) };
        assert_eq!(status, expq_status::Ok);
        assert!((f64::from(m) - 0.398_942_280_4).abs() < 1e-6, "{m}");
        assert!((s - 0.5).abs() < 1e-6, "{s}");
        // SAFETY: as above.
        let status = unsafe { expq_relu_moments(0.0, 1.0, 0.0, &mut m, &mut s) };
        assert_eq!(status, expq_status::InvalidArgument);
    }
}
