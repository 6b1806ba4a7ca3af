//! `expq_tensor`: quantize, inspect, dequantize and multiply.

use crate::tensor::{quantize, QuantizedTensor};

use super::{
    boundary, check_disjoint, expq_config, expq_status, group_levels, packed_codes, write_out,
    Failure,
};

/// A quantized `rows × cols` matrix, owned by the caller from `expq_quantize`,
/// `expq_quantize_calibrated` or `expq_tensor_deserialize` until `expq_tensor_free`. Opaque:
/// C sees only pointers to it. Immutable, so the `const expq_tensor *` functions may run on
/// one tensor from several threads at once.
pub struct expq_tensor {
    pub(super) inner: QuantizedTensor,
}

impl expq_tensor {
    /// Moves `inner` to the heap and returns the owning pointer that C frees with
    /// `expq_tensor_free`.
    pub(super) fn into_raw(inner: QuantizedTensor) -> *mut expq_tensor {
        std::boxed::Box::into_raw(std::boxed::Box::new(expq_tensor { inner }))
    }
}

/// Quantizes a `rows × cols` row-major matrix of `rows * cols` floats at `weights`, as
/// `config` says, and on success stores a new tensor in `*out` (free it with
/// `expq_tensor_free`).
///
/// Errors: `EXPQ_STATUS_NULL_POINTER` (a NULL argument), `EXPQ_STATUS_INVALID_ARGUMENT`
/// (`rows * cols` overflowing `size_t`, checked first; bits outside 1..=8, a config enum out
/// of range, zero rows or columns, group size 0 per group, invalid fixed parameters),
/// `EXPQ_STATUS_NON_FINITE` (a NaN or infinite weight). `*out` is written only on success.
///
/// # Safety
/// `weights` must point to `rows * cols` floats; `config` to an `expq_config`; `out` to
/// writable storage for one pointer.
#[no_mangle]
pub unsafe extern "C" fn expq_quantize(
    weights: *const f32,
    rows: usize,
    cols: usize,
    config: *const expq_config,
    out: *mut *mut expq_tensor,
) -> expq_status {
    boundary("expq_quantize", || {
        let config = try_ref!(config);
        try_out!(out);
        let n = crate::tensor::element_count(rows, cols)?;
        let weights = try_slice!(weights, n);
        let config = config.rust_config()?;
        let inner = quantize(weights, rows, cols, &config)?;
        let tensor = expq_tensor::into_raw(inner);
        // SAFETY: `out` is non-NULL (checked above) and the caller promises it is writable.
        unsafe { write_out(out, tensor) };
        Ok(expq_status::Ok)
    })
}

/// Frees a tensor made by `expq_quantize`, `expq_quantize_calibrated` or
/// `expq_tensor_deserialize`. NULL is fine (nothing happens). Pointers from
/// `expq_tensor_packed_codes` dangle afterwards.
///
/// # Safety
/// `t` must be NULL or a tensor from one of those functions that has not been freed, and no
/// other thread may be using it.
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_free(t: *mut expq_tensor) {
    boundary("expq_tensor_free", || {
        if !t.is_null() {
            // SAFETY: `t` came from `Box::into_raw` in `expq_tensor::into_raw` and, as the caller
            // promises, has not been freed, so this is the one owner.
            drop(unsafe { std::boxed::Box::from_raw(t) });
        }
        Ok(())
    })
}

/// Rows (output channels) of `t`, or 0 when `t` is NULL.
///
/// # Safety
/// `t` must be NULL or a live tensor (not yet freed).
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_rows(t: *const expq_tensor) -> usize {
    boundary("expq_tensor_rows", || Ok(try_ref!(t).inner.view().rows()))
}

/// Columns (inputs per output) of `t`, or 0 when `t` is NULL.
///
/// # Safety
/// `t` must be NULL or a live tensor (not yet freed).
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_cols(t: *const expq_tensor) -> usize {
    boundary("expq_tensor_cols", || Ok(try_ref!(t).inner.view().cols()))
}

/// Bits per code of `t` (1 to 8), or 0 when `t` is NULL.
///
/// # Safety
/// `t` must be NULL or a live tensor (not yet freed).
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_bits(t: *const expq_tensor) -> u8 {
    boundary("expq_tensor_bits", || Ok(try_ref!(t).inner.view().bits()))
}

/// Stored bits per weight of `t`: the packed codes (with row padding) plus 32 bits per
/// stored scale parameter (`a`, and `q` where it spaces two or more magnitudes), over
/// `rows × cols`. 0.0 when `t` is NULL.
///
/// # Safety
/// `t` must be NULL or a live tensor (not yet freed).
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_bits_per_weight(t: *const expq_tensor) -> f64 {
    boundary("expq_tensor_bits_per_weight", || {
        Ok(try_ref!(t).inner.view().bits_per_weight())
    })
}

/// Number of groups (codebooks) of `t`: 1 per tensor, `rows` per row, `rows ×
/// ceil(cols / group_size)` per group. 0 when `t` is NULL.
///
/// # Safety
/// `t` must be NULL or a live tensor (not yet freed).
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_group_count(t: *const expq_tensor) -> usize {
    boundary("expq_tensor_group_count", || {
        Ok(try_ref!(t).inner.view().group_count())
    })
}

/// Bytes per packed row of `t` (`ceil(cols * bits / 8)`; every row starts on a byte
/// boundary). 0 when `t` is NULL.
///
/// # Safety
/// `t` must be NULL or a live tensor (not yet freed).
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_row_bytes(t: *const expq_tensor) -> usize {
    boundary("expq_tensor_row_bytes", || {
        Ok(try_ref!(t).inner.view().row_bytes())
    })
}

/// On success stores in `*codes` a pointer to the packed codes of all rows (`rows ×
/// row_bytes` bytes, codes LSB-first, see `expq_decode`) and their number of bytes in
/// `*codes_len`. The pointer is borrowed from `t` and valid until `expq_tensor_free(t)`.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`. The outputs are written only on success.
///
/// # Safety
/// `t` must be NULL or a live tensor; `codes` and `codes_len` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_packed_codes(
    t: *const expq_tensor,
    codes: *mut *const u8,
    codes_len: *mut usize,
) -> expq_status {
    boundary("expq_tensor_packed_codes", || {
        let t = try_ref!(t);
        // SAFETY: the caller promises that `codes` and `codes_len` are NULL or writable.
        unsafe { packed_codes(&t.inner.view(), codes, codes_len) }
    })
}

/// Writes the levels of group `group` of `t`, ascending (code `c` decodes to `levels[c]`),
/// into `levels`, which holds `levels_len` floats, and stores their number in `*written`: at
/// most `EXPQ_MAX_LEVELS` (`2^bits`), `2^bits − 1` with the zero level on. Together with
/// `expq_tensor_packed_codes` this is what `expq_decode` needs.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` when `group >=
/// expq_tensor_group_count(t)`, `EXPQ_STATUS_BUFFER_TOO_SMALL` when `levels_len` is less
/// than the number of levels. `levels` and `*written` are written only on success.
///
/// # Safety
/// `t` must be NULL or a live tensor; `levels` must be writable for `levels_len` floats;
/// `written` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_group_levels(
    t: *const expq_tensor,
    group: usize,
    levels: *mut f32,
    levels_len: usize,
    written: *mut usize,
) -> expq_status {
    boundary("expq_tensor_group_levels", || {
        let t = try_ref!(t);
        // SAFETY: the caller promises that `levels` is NULL or writable for `levels_len`
        // floats and `written` NULL or writable.
        unsafe { group_levels(&t.inner.view(), group, levels, levels_len, written) }
    })
}

/// Writes the dequantized matrix, row-major, into `out`, which must hold exactly `rows *
/// cols` floats (`out_len`).
///
/// # Safety
/// `t` must be NULL or a live tensor; `out` must be writable for `out_len` floats.
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_dequantize(
    t: *const expq_tensor,
    out: *mut f32,
    out_len: usize,
) -> expq_status {
    boundary("expq_tensor_dequantize", || {
        let t = try_ref!(t);
        let out = try_slice_mut!(out, out_len);
        t.inner.dequantize_into(out)?;
        Ok(expq_status::Ok)
    })
}

/// `y = W·x` straight from the packed codes: `x` holds `x_len == cols` floats and `y` gets
/// `y_len == rows` floats. Each `y[r]` is the sum over `j` of `level(r, j) · x[j]`,
/// accumulated in `float`; the order of the additions depends on the CPU's instruction set
/// (the Rust docs of `expquant::kernels` give it), so results can differ from a plain loop
/// by float rounding. `x` and `y` must not overlap.
///
/// # Safety
/// `t` must be NULL or a live tensor; `x` must point to `x_len` floats, `y` be writable for
/// `y_len` floats.
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_gemv(
    t: *const expq_tensor,
    x: *const f32,
    x_len: usize,
    y: *mut f32,
    y_len: usize,
) -> expq_status {
    boundary("expq_tensor_gemv", || {
        // SAFETY: the caller promises what `# Safety` says of `t`, `x` and `y`.
        unsafe { multiply(t, x, x_len, y, y_len, |t, x, y| t.gemv(x, y)) }
    })
}

/// `y = W[row_begin..row_end]·x` for a range of rows, so that a runtime can split the rows
/// of one GEMV over its own threads (each thread its own range and `y`): `x` holds `x_len ==
/// cols` floats, `y` gets `y_len == row_end − row_begin` floats, and `row_begin <= row_end
/// <= rows`. The results equal the matching entries of `expq_tensor_gemv` exactly.
///
/// # Safety
/// As `expq_tensor_gemv`.
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_gemv_rows(
    t: *const expq_tensor,
    x: *const f32,
    x_len: usize,
    row_begin: usize,
    row_end: usize,
    y: *mut f32,
    y_len: usize,
) -> expq_status {
    boundary("expq_tensor_gemv_rows", || {
        // SAFETY: the caller promises what `# Safety` says of `t`, `x` and `y`.
        unsafe {
            multiply(t, x, x_len, y, y_len, |t, x, y| {
                t.gemv_rows(x, row_begin..row_end, y)
            })
        }
    })
}

/// `expq_tensor_gemv` with int8 activations, an explicit precision mode: `x` is quantized to
/// int8 in blocks of 32 values (a `float` scale each) and each group's levels to int8, and
/// the products are summed in integers. The error it adds per row is at most `Σ_j
/// (|L_j|·s_b/2 + t·|x_j|/2 + t·s_b/4)` plus float rounding, with `s_b = max|x|/127` over
/// `x_j`'s block and `t = max|L|/127` over its group's levels (about 1/127 of `Σ|L_j·x_j|`
/// at worst). Errors: as `expq_tensor_gemv`, and `EXPQ_STATUS_NON_FINITE` for a NaN or
/// infinite `x`.
///
/// # Safety
/// As `expq_tensor_gemv`.
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_gemv_int8(
    t: *const expq_tensor,
    x: *const f32,
    x_len: usize,
    y: *mut f32,
    y_len: usize,
) -> expq_status {
    boundary("expq_tensor_gemv_int8", || {
        // SAFETY: the caller promises what `# Safety` says of `t`, `x` and `y`.
        unsafe { multiply(t, x, x_len, y, y_len, |t, x, y| t.gemv_int8(x, y)) }
    })
}

/// `expq_tensor_gemv_int8` for a range of rows (arguments as `expq_tensor_gemv_rows`); the
/// results equal the matching entries of `expq_tensor_gemv_int8` exactly.
///
/// # Safety
/// As `expq_tensor_gemv`.
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_gemv_int8_rows(
    t: *const expq_tensor,
    x: *const f32,
    x_len: usize,
    row_begin: usize,
    row_end: usize,
    y: *mut f32,
    y_len: usize,
) -> expq_status {
    boundary("expq_tensor_gemv_int8_rows", || {
        // SAFETY: the caller promises what `# Safety` says of `t`, `x` and `y`.
        unsafe {
            multiply(t, x, x_len, y, y_len, |t, x, y| {
                t.gemv_int8_rows(x, row_begin..row_end, y)
            })
        }
    })
}

/// `Y = W·X` for a batch of `n` columns, straight from the packed codes: `x` is the `cols ×
/// n` matrix X (`x_len == cols * n` floats) and `y` gets the `rows × n` matrix Y (`y_len ==
/// rows * n`), both row-major: `x[j*n + c]` is input `j` of column `c` and `y[r*n + c]`
/// output `r` of column `c`, the layout of an im2col convolution. Each tile of W is decoded
/// once per call, whatever `n` is; `n == 1` is `expq_tensor_gemv`. Column `c` of `y` equals
/// `expq_tensor_gemv` of column `c` of `x` to within float rounding (the additions run in
/// another order). `x` and `y` must not overlap.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (`cols * n` or `rows *
/// n` overflowing `size_t`, overlapping buffers, a buffer longer than required),
/// `EXPQ_STATUS_BUFFER_TOO_SMALL` (a buffer shorter than required). `y` is written only on
/// success.
///
/// # Safety
/// `t` must be NULL or a live tensor; `x` must point to `x_len` floats, `y` be writable for
/// `y_len` floats.
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_gemm(
    t: *const expq_tensor,
    x: *const f32,
    x_len: usize,
    n: usize,
    y: *mut f32,
    y_len: usize,
) -> expq_status {
    boundary("expq_tensor_gemm", || {
        // SAFETY: the caller promises what `# Safety` says of `t`, `x` and `y`.
        unsafe { multiply(t, x, x_len, y, y_len, |t, x, y| t.gemm(x, n, y)) }
    })
}

/// `expq_tensor_gemm` for the rows `row_begin..row_end` of W: `y` gets `y_len == (row_end −
/// row_begin) * n` floats (those rows of Y, row-major), so that a runtime can split one GEMM
/// over its own threads. The results equal the matching rows of `expq_tensor_gemm` exactly.
///
/// Errors: as `expq_tensor_gemm`, and `EXPQ_STATUS_INVALID_ARGUMENT` for a reversed range or
/// one past the last row.
///
/// # Safety
/// As `expq_tensor_gemm`.
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_gemm_rows(
    t: *const expq_tensor,
    x: *const f32,
    x_len: usize,
    n: usize,
    row_begin: usize,
    row_end: usize,
    y: *mut f32,
    y_len: usize,
) -> expq_status {
    boundary("expq_tensor_gemm_rows", || {
        // SAFETY: the caller promises what `# Safety` says of `t`, `x` and `y`.
        unsafe {
            multiply(t, x, x_len, y, y_len, |t, x, y| {
                t.gemm_rows(x, n, row_begin..row_end, y)
            })
        }
    })
}

/// The body of the tensor's multiplying entry points: checks `t`, `x` (`x_len` floats) and
/// `y` (`y_len` floats, not overlapping `x`), then runs `op` on them.
///
/// # Safety
/// `t` must be NULL or a live tensor; `x` must be NULL or point to `x_len` floats that
/// nothing mutates during the call; `y` must be NULL or writable for `y_len` floats that
/// nothing else accesses during the call.
unsafe fn multiply(
    t: *const expq_tensor,
    x: *const f32,
    x_len: usize,
    y: *mut f32,
    y_len: usize,
    op: impl FnOnce(&QuantizedTensor, &[f32], &mut [f32]) -> crate::Result<()>,
) -> Result<expq_status, Failure> {
    let t = try_ref!(t);
    let x = try_slice!(x, x_len);
    check_disjoint(x, y, y_len, ("x", "y"))?;
    let y = try_slice_mut!(y, y_len);
    op(&t.inner, x, y)?;
    Ok(expq_status::Ok)
}
