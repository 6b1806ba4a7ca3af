//! Storage: `expq_tensor_serialize` / `expq_tensor_deserialize`, and `expq_view`, a
//! validated, zero-copy, allocation-free view of stored bytes in a caller-owned struct.
//!
//! The byte format is the one of [`crate::format`] (`FORMAT.md`): a 64-byte header with
//! magic, version, shape, layout and a CRC-32, then the packed codes, then the per-group
//! parameters.

use core::mem::{align_of, offset_of, size_of};

use crate::discretize::Family;
use crate::error::Error;
use crate::format::HEADER_LEN;
use crate::parts::{ParamEncoding, Parts, Shape};
#[cfg(not(expq_no_std))]
use crate::QuantizedTensor;
use crate::{Granularity, QuantizedView, Scheme};

#[cfg(not(expq_no_std))]
use super::expq_tensor;
use super::{
    boundary, check_disjoint, expq_status, group_levels, packed_codes, slice_from, write_out,
    Failure,
};

/// Writes the stored form of `t` (the documented, versioned byte format: header, packed
/// codes, parameters, CRC-32) into `buf`, which holds `buf_len` bytes, and on success stores
/// the number of bytes written in `*written`. The bytes can be loaded back with
/// `expq_tensor_deserialize` or borrowed in place with `expq_view_init`; they need no
/// alignment.
///
/// Size query: with `buf` NULL, or `buf_len` smaller than needed, nothing is written to
/// `buf`, the needed size is stored in `*written`, and the status is
/// `EXPQ_STATUS_BUFFER_TOO_SMALL`. This is the one documented exception to "out-parameters
/// are written only on success": ask with `buf` NULL and `buf_len` 0, allocate `*written`
/// bytes, then call again.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER` (`t` or `written` NULL),
/// `EXPQ_STATUS_BUFFER_TOO_SMALL` (as above; `*written` is the needed size).
///
/// # Safety
/// `t` must be NULL or a live tensor; `buf` must be NULL or writable for `buf_len` bytes;
/// `written` must be NULL or writable.
#[cfg(not(expq_no_std))]
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_serialize(
    t: *const expq_tensor,
    buf: *mut u8,
    buf_len: usize,
    written: *mut usize,
) -> expq_status {
    boundary("expq_tensor_serialize", || {
        let t = try_ref!(t);
        try_out!(written);
        let needed = t.inner.serialized_len();
        if buf.is_null() || buf_len < needed {
            // SAFETY: `written` is non-NULL (checked above) and the caller promises it is
            // writable. Writing it on this failure is the documented size query.
            unsafe { write_out(written, needed) };
            return Err(Failure::Core(Error::BufferLength {
                what: if buf.is_null() { "buf (NULL)" } else { "buf" },
                expected: needed,
                actual: if buf.is_null() { 0 } else { buf_len },
            }));
        }
        let out = try_slice_mut!(buf, needed);
        let n = t.inner.write_into(out)?;
        // SAFETY: `written` is non-NULL (checked above) and writable, as the caller promises.
        unsafe { write_out(written, n) };
        Ok(expq_status::Ok)
    })
}

/// Validates `buf_len` stored bytes at `buf` (one whole tensor, as `expq_tensor_serialize`
/// writes it) and on success stores a new tensor holding a copy of them in `*out` (free it
/// with `expq_tensor_free`). `buf` may be freed afterwards.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_CORRUPT_DATA` (truncated, trailing
/// bytes, bad magic, checksum mismatch, inconsistent lengths, invalid parameters or codes;
/// the message says which), `EXPQ_STATUS_UNSUPPORTED_VERSION` (another format version).
/// `*out` is written only on success.
///
/// # Safety
/// `buf` must point to `buf_len` readable bytes; `out` must be writable for one pointer.
#[cfg(not(expq_no_std))]
#[no_mangle]
pub unsafe extern "C" fn expq_tensor_deserialize(
    buf: *const u8,
    buf_len: usize,
    out: *mut *mut expq_tensor,
) -> expq_status {
    boundary("expq_tensor_deserialize", || {
        let bytes = try_slice!(buf, buf_len);
        try_out!(out);
        let inner = QuantizedTensor::from_bytes(bytes)?;
        let tensor = expq_tensor::into_raw(inner);
        // SAFETY: `out` is non-NULL (checked above) and the caller promises it is writable.
        unsafe { write_out(out, tensor) };
        Ok(expq_status::Ok)
    })
}

/// A stored tensor borrowed in place: `expq_view_init` validates the bytes once and fills
/// this caller-owned struct; `expq_view_dequantize` and `expq_view_gemv` then decode and
/// multiply straight from the bytes, without copying, allocating or validating again.
///
/// The fields are private to the library: do not read or modify them (use the
/// `expq_view_*` functions). The struct owns nothing and is never freed; it may be copied,
/// and it may live on the stack or in static memory (firmware: bytes in flash, view in RAM).
/// It borrows the buffer given to `expq_view_init`, which must stay alive and unchanged while
/// the view is used. A zeroed struct is "not initialized": the functions reject it with
/// `EXPQ_STATUS_INVALID_ARGUMENT`.
///
/// The functions trust what `expq_view_init` stored; each call redoes only O(1) length
/// arithmetic. Changed fields or a changed buffer break the contract like a freed pointer: a
/// changed buffer pointer or length is undefined behaviour, other changes give wrong results
/// or `EXPQ_STATUS_CORRUPT_DATA`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct expq_view {
    /// Private: the first byte of the validated tensor.
    data: *const u8,
    /// Private: its length in bytes.
    len: usize,
    /// Private: rows.
    rows: usize,
    /// Private: columns.
    cols: usize,
    /// Private: weights per group (per-group layout), else 0.
    group_size: usize,
    /// Private: the scheme.
    scheme: u8,
    /// Private: bits per code.
    bits: u8,
    /// Private: the zero-level flag.
    zero_level: u8,
    /// Private: the granularity.
    granularity: u8,
    /// Private: the stored scale-rule code.
    rule: u8,
    /// Private: the parameter encoding's code (f32 or compact).
    encoding: u8,
    /// Private: zero.
    _reserved: [u8; 2],
}

// The C declaration cbindgen writes must have this layout on every target: five
// pointer-sized words, then eight bytes.
const _: () = {
    assert!(size_of::<*const u8>() == size_of::<usize>());
    assert!(size_of::<expq_view>() == 5 * size_of::<usize>() + 8);
    assert!(align_of::<expq_view>() == align_of::<usize>());
    assert!(offset_of!(expq_view, data) == 0);
    assert!(offset_of!(expq_view, group_size) == 4 * size_of::<usize>());
    assert!(offset_of!(expq_view, scheme) == 5 * size_of::<usize>());
    assert!(offset_of!(expq_view, encoding) == 5 * size_of::<usize>() + 5);
    assert!(offset_of!(expq_view, _reserved) == 5 * size_of::<usize>() + 6);
};

/// The error for view fields that no `expq_view_init` could have written.
const TAMPERED: Error = Error::Corrupt("the expq_view fields were modified");
/// The error for view fields that do not describe the view's buffer.
const MISMATCH: Error = Error::Corrupt("view numbers do not describe the buffer");

impl expq_view {
    /// The struct that describes `view`, validated from exactly `bytes`.
    pub(super) fn new(bytes: &[u8], view: &QuantizedView<'_>) -> Self {
        expq_view {
            data: bytes.as_ptr(),
            len: bytes.len(),
            rows: view.rows(),
            cols: view.cols(),
            group_size: view.granularity().group_size(),
            scheme: view.scheme().code(),
            bits: view.bits(),
            zero_level: u8::from(view.zero_level()),
            granularity: view.granularity().code(),
            rule: view.scale_rule().code(),
            encoding: view.param_encoding_code(),
            _reserved: [0; 2],
        }
    }

    /// The borrowed bytes and the view rebuilt from them in O(1) (no checksum, parameter or
    /// code checks: `expq_view_init` did those).
    ///
    /// # Safety
    /// `self` must have been written by `expq_view_init` (or copied from such a struct) and
    /// its buffer must still be alive and unchanged for `'a`.
    unsafe fn parts<'a>(&self) -> Result<(&'a [u8], QuantizedView<'a>), Failure> {
        if self.data.is_null() {
            return Err(Failure::UninitializedView("v"));
        }
        // SAFETY: `data` and `len` are those of the buffer `expq_view_init` validated, which
        // the caller promises is still alive and unchanged.
        let bytes = unsafe { slice_from(self.data, self.len, "v")? };
        let scheme = Scheme::try_from(self.scheme).map_err(|_| TAMPERED)?;
        let granularity =
            Granularity::from_code(self.granularity, self.group_size).map_err(|_| TAMPERED)?;
        let family = Family::new(scheme, self.bits, self.zero_level != 0).map_err(|_| TAMPERED)?;
        // Only the length arithmetic is redone, so numbers that do not fit `bytes` are an
        // error and every later access stays in bounds; the contents are trusted.
        let shape = Shape {
            rows: self.rows,
            cols: self.cols,
            family,
            granularity,
            rule: crate::ScaleRule::MaxAbs,
            encoding: ParamEncoding::from_code(self.encoding, family, granularity, self.cols)
                .ok_or(TAMPERED)?,
        };
        let lengths = shape.lengths().map_err(|_| MISMATCH)?;
        let payload = bytes.get(HEADER_LEN..).ok_or(MISMATCH)?;
        if payload.len() < lengths.codes {
            return Err(MISMATCH.into());
        }
        let (codes, params) = payload.split_at(lengths.codes);
        let parts = Parts::new(shape, codes, params)
            .and_then(|parts| parts.with_stored_rule(self.rule))
            .map_err(|_| MISMATCH)?;
        let view = QuantizedView::from_valid_parts(parts);
        Ok((bytes, view))
    }
}

/// Validates `buf_len` stored bytes at `buf` (one whole tensor, as `expq_tensor_serialize`
/// writes it: magic, version, every length, checksum, parameters, codes) and on success
/// fills `*out` with a view that borrows them. Allocates nothing and copies nothing; `buf`
/// needs no alignment, and must stay alive and unchanged while the view is used.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_CORRUPT_DATA` (truncated, trailing bytes,
/// bad magic, checksum mismatch, inconsistent lengths, invalid parameters or codes; the
/// message says which), `EXPQ_STATUS_UNSUPPORTED_VERSION` (another format version),
/// `EXPQ_STATUS_INVALID_ARGUMENT` (`out` lies inside `buf`). `*out` is written only on
/// success.
///
/// # Safety
/// `buf` must point to `buf_len` readable bytes; `out` must be writable for one `expq_view`.
#[no_mangle]
pub unsafe extern "C" fn expq_view_init(
    buf: *const u8,
    buf_len: usize,
    out: *mut expq_view,
) -> expq_status {
    boundary("expq_view_init", || {
        let bytes = try_slice!(buf, buf_len);
        try_out!(out);
        check_disjoint(bytes, out, 1, ("buf", "out"))?;
        let view = QuantizedView::from_bytes(bytes)?;
        let described = expq_view::new(bytes, &view);
        // SAFETY: `out` is non-NULL (checked above), outside `buf`, and the caller promises
        // it is writable.
        unsafe { write_out(out, described) };
        Ok(expq_status::Ok)
    })
}

/// Writes the dequantized matrix, row-major, into `out`, which must hold exactly `rows *
/// cols` floats (`out_len`). Allocates nothing. The values equal those of the tensor that
/// was serialized, bit for bit.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (`v` not initialized,
/// `out_len` too long, `out` overlapping the view's buffer), `EXPQ_STATUS_BUFFER_TOO_SMALL`.
/// `out` is written only on success.
///
/// # Safety
/// `v` must be NULL or an `expq_view` filled in by `expq_view_init` (or a copy of one, or a
/// zeroed struct) whose buffer is alive and unchanged; `out` must be writable for `out_len`
/// floats.
#[no_mangle]
pub unsafe extern "C" fn expq_view_dequantize(
    v: *const expq_view,
    out: *mut f32,
    out_len: usize,
) -> expq_status {
    boundary("expq_view_dequantize", || {
        let v = *try_ref!(v);
        // SAFETY: the caller promises that `v` came from `expq_view_init` and that its buffer
        // is alive and unchanged for the duration of the call.
        let (bytes, view) = unsafe { v.parts()? };
        check_disjoint(bytes, out, out_len, ("v's buffer", "out"))?;
        let out = try_slice_mut!(out, out_len);
        view.dequantize_into(out)?;
        Ok(expq_status::Ok)
    })
}

/// `y = W·x` straight from the stored codes: `x` holds `x_len == cols` floats and `y` gets
/// `y_len == rows` floats. Allocates nothing. Each `y[r]` is the sum over `j` of `level(r,
/// j) · x[j]` accumulated in `float`; the order of the additions can differ from
/// `expq_tensor_gemv`'s, so the two can differ by float rounding.
///
/// Errors: as `expq_view_dequantize`, for `x` and `y`; `x` and `y` must not overlap each
/// other or the view's buffer.
///
/// # Safety
/// `v` as for `expq_view_dequantize`; `x` must point to `x_len` floats, `y` be writable for
/// `y_len` floats.
#[no_mangle]
pub unsafe extern "C" fn expq_view_gemv(
    v: *const expq_view,
    x: *const f32,
    x_len: usize,
    y: *mut f32,
    y_len: usize,
) -> expq_status {
    boundary("expq_view_gemv", || {
        // SAFETY: the caller promises what `# Safety` says of `v`, `x` and `y`.
        unsafe { multiply(v, x, x_len, y, y_len, |view, x, y| view.gemv(x, y)) }
    })
}

/// `y = W[row_begin..row_end]·x` for a range of rows, so that a runtime can split one GEMV
/// over its own threads (each thread its own range and `y`; the view may be shared): `x`
/// holds `x_len == cols` floats, `y` gets `y_len == row_end − row_begin` floats, and
/// `row_begin <= row_end <= rows`. The results equal the matching entries of
/// `expq_view_gemv` exactly.
///
/// Errors: as `expq_view_gemv`, and `EXPQ_STATUS_INVALID_ARGUMENT` for a reversed range or
/// one past the last row.
///
/// # Safety
/// As `expq_view_gemv`.
#[no_mangle]
pub unsafe extern "C" fn expq_view_gemv_rows(
    v: *const expq_view,
    x: *const f32,
    x_len: usize,
    row_begin: usize,
    row_end: usize,
    y: *mut f32,
    y_len: usize,
) -> expq_status {
    boundary("expq_view_gemv_rows", || {
        // SAFETY: the caller promises what `# Safety` says of `v`, `x` and `y`.
        unsafe {
            multiply(v, x, x_len, y, y_len, |view, x, y| {
                view.gemv_rows(x, row_begin..row_end, y)
            })
        }
    })
}

/// `expq_view_gemv` with int8 activations, an explicit precision mode: `x` is quantized to
/// int8 in blocks of 32 values (a `float` scale each) and each group's levels to int8, and
/// the products are summed in integers. The error it adds per row is at most `Σ_j
/// (|L_j|·s_b/2 + t·|x_j|/2 + t·s_b/4)` plus float rounding, with `s_b = max|x|/127` over
/// `x_j`'s block and `t = max|L|/127` over its group's levels (about 1/127 of `Σ|L_j·x_j|`
/// at worst). Allocates a quantized copy of `x` (one byte per value).
///
/// Errors: as `expq_view_gemv`, and `EXPQ_STATUS_NON_FINITE` for a NaN or infinite `x`.
///
/// # Safety
/// As `expq_view_gemv`.
#[cfg(not(expq_no_std))]
#[no_mangle]
pub unsafe extern "C" fn expq_view_gemv_int8(
    v: *const expq_view,
    x: *const f32,
    x_len: usize,
    y: *mut f32,
    y_len: usize,
) -> expq_status {
    boundary("expq_view_gemv_int8", || {
        // SAFETY: the caller promises what `# Safety` says of `v`, `x` and `y`.
        unsafe { multiply(v, x, x_len, y, y_len, |view, x, y| view.gemv_int8(x, y)) }
    })
}

/// `expq_view_gemv_int8` for a range of rows (arguments as `expq_view_gemv_rows`); the
/// results equal the matching entries of `expq_view_gemv_int8` exactly.
///
/// # Safety
/// As `expq_view_gemv`.
#[cfg(not(expq_no_std))]
#[no_mangle]
pub unsafe extern "C" fn expq_view_gemv_int8_rows(
    v: *const expq_view,
    x: *const f32,
    x_len: usize,
    row_begin: usize,
    row_end: usize,
    y: *mut f32,
    y_len: usize,
) -> expq_status {
    boundary("expq_view_gemv_int8_rows", || {
        // SAFETY: the caller promises what `# Safety` says of `v`, `x` and `y`.
        unsafe {
            multiply(v, x, x_len, y, y_len, |view, x, y| {
                view.gemv_int8_rows(x, row_begin..row_end, y)
            })
        }
    })
}

/// `Y = W·X` for a batch of `n` columns, straight from the stored codes: `x` is the `cols ×
/// n` matrix X (`x_len == cols * n` floats) and `y` gets the `rows × n` matrix Y (`y_len ==
/// rows * n`), both row-major: `x[j*n + c]` is input `j` of column `c` and `y[r*n + c]`
/// output `r` of column `c`, the layout of an im2col convolution. Allocates nothing: each
/// tile of W is decoded once per call into a panel on the stack. `n == 1` is
/// `expq_view_gemv`. Column `c` of `y` equals `expq_view_gemv` of column `c` of `x` to
/// within float rounding (the additions run in another order).
///
/// Errors: as `expq_view_gemv`, and `EXPQ_STATUS_INVALID_ARGUMENT` when `cols * n` or `rows
/// * n` overflows `size_t`. `y` is written only on success.
///
/// # Safety
/// As `expq_view_gemv`.
#[no_mangle]
pub unsafe extern "C" fn expq_view_gemm(
    v: *const expq_view,
    x: *const f32,
    x_len: usize,
    n: usize,
    y: *mut f32,
    y_len: usize,
) -> expq_status {
    boundary("expq_view_gemm", || {
        // SAFETY: the caller promises what `# Safety` says of `v`, `x` and `y`.
        unsafe { multiply(v, x, x_len, y, y_len, |view, x, y| view.gemm(x, n, y)) }
    })
}

/// `expq_view_gemm` for the rows `row_begin..row_end` of W: `y` gets `y_len == (row_end −
/// row_begin) * n` floats (those rows of Y, row-major), so that a runtime can split one GEMM
/// over its own threads (the view may be shared). The results equal the matching rows of
/// `expq_view_gemm` exactly. Allocates nothing.
///
/// Errors: as `expq_view_gemm`, and `EXPQ_STATUS_INVALID_ARGUMENT` for a reversed range or
/// one past the last row.
///
/// # Safety
/// As `expq_view_gemv`.
#[no_mangle]
pub unsafe extern "C" fn expq_view_gemm_rows(
    v: *const expq_view,
    x: *const f32,
    x_len: usize,
    n: usize,
    row_begin: usize,
    row_end: usize,
    y: *mut f32,
    y_len: usize,
) -> expq_status {
    boundary("expq_view_gemm_rows", || {
        // SAFETY: the caller promises what `# Safety` says of `v`, `x` and `y`.
        unsafe {
            multiply(v, x, x_len, y, y_len, |view, x, y| {
                view.gemm_rows(x, n, row_begin..row_end, y)
            })
        }
    })
}

/// The body of the view's multiplying entry points: checks `v`, `x` (`x_len` floats) and `y`
/// (`y_len` floats, overlapping neither `x` nor the view's buffer), then runs `op` on them.
///
/// # Safety
/// `v` as for `expq_view_dequantize`; `x` must be NULL or point to `x_len` floats that
/// nothing mutates during the call; `y` must be NULL or writable for `y_len` floats that
/// nothing else accesses during the call.
unsafe fn multiply(
    v: *const expq_view,
    x: *const f32,
    x_len: usize,
    y: *mut f32,
    y_len: usize,
    op: impl FnOnce(&QuantizedView<'_>, &[f32], &mut [f32]) -> crate::Result<()>,
) -> Result<expq_status, Failure> {
    let v = *try_ref!(v);
    // SAFETY: the caller promises that `v` came from `expq_view_init` and that its buffer is
    // alive and unchanged for the duration of the call.
    let (bytes, view) = unsafe { v.parts()? };
    let x = try_slice!(x, x_len);
    check_disjoint(x, y, y_len, ("x", "y"))?;
    check_disjoint(bytes, y, y_len, ("v's buffer", "y"))?;
    let y = try_slice_mut!(y, y_len);
    op(&view, x, y)?;
    Ok(expq_status::Ok)
}

/// Rows of the viewed tensor, or 0 when `v` is NULL or not initialized.
///
/// # Safety
/// As `expq_view_dequantize`.
#[no_mangle]
pub unsafe extern "C" fn expq_view_rows(v: *const expq_view) -> usize {
    boundary("expq_view_rows", || {
        let v = *try_ref!(v);
        // SAFETY: as in `expq_view_dequantize`.
        Ok(unsafe { v.parts()? }.1.rows())
    })
}

/// Columns of the viewed tensor, or 0 when `v` is NULL or not initialized.
///
/// # Safety
/// As `expq_view_dequantize`.
#[no_mangle]
pub unsafe extern "C" fn expq_view_cols(v: *const expq_view) -> usize {
    boundary("expq_view_cols", || {
        let v = *try_ref!(v);
        // SAFETY: as in `expq_view_dequantize`.
        Ok(unsafe { v.parts()? }.1.cols())
    })
}

/// Stored bits per weight of the viewed tensor (codes and parameters, header excluded), the
/// same as `expq_tensor_bits_per_weight` of the tensor that was serialized; 0.0 when `v` is
/// NULL or not initialized.
///
/// # Safety
/// As `expq_view_dequantize`.
#[no_mangle]
pub unsafe extern "C" fn expq_view_bits_per_weight(v: *const expq_view) -> f64 {
    boundary("expq_view_bits_per_weight", || {
        let v = *try_ref!(v);
        // SAFETY: as in `expq_view_dequantize`.
        Ok(unsafe { v.parts()? }.1.bits_per_weight())
    })
}

/// Bits per code of the viewed tensor (1 to 8), or 0 when `v` is NULL or not initialized.
///
/// # Safety
/// As `expq_view_dequantize`.
#[no_mangle]
pub unsafe extern "C" fn expq_view_bits(v: *const expq_view) -> u8 {
    boundary("expq_view_bits", || {
        let v = *try_ref!(v);
        // SAFETY: as in `expq_view_dequantize`.
        Ok(unsafe { v.parts()? }.1.bits())
    })
}

/// Number of groups (codebooks) of the viewed tensor, as `expq_tensor_group_count`; 0 when
/// `v` is NULL or not initialized.
///
/// # Safety
/// As `expq_view_dequantize`.
#[no_mangle]
pub unsafe extern "C" fn expq_view_group_count(v: *const expq_view) -> usize {
    boundary("expq_view_group_count", || {
        let v = *try_ref!(v);
        // SAFETY: as in `expq_view_dequantize`.
        Ok(unsafe { v.parts()? }.1.group_count())
    })
}

/// Bytes per packed row of the viewed tensor, as `expq_tensor_row_bytes`; 0 when `v` is
/// NULL or not initialized.
///
/// # Safety
/// As `expq_view_dequantize`.
#[no_mangle]
pub unsafe extern "C" fn expq_view_row_bytes(v: *const expq_view) -> usize {
    boundary("expq_view_row_bytes", || {
        let v = *try_ref!(v);
        // SAFETY: as in `expq_view_dequantize`.
        Ok(unsafe { v.parts()? }.1.row_bytes())
    })
}

/// On success stores in `*codes` a pointer to the packed codes of all rows, as
/// `expq_tensor_packed_codes`, and their number of bytes in `*codes_len`. The pointer points
/// into the buffer given to `expq_view_init` (`EXPQ_HEADER_LEN` bytes after its start) and is
/// valid while that buffer is.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (`v` not initialized).
/// The outputs are written only on success.
///
/// # Safety
/// `v` as for `expq_view_dequantize`; `codes` and `codes_len` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn expq_view_packed_codes(
    v: *const expq_view,
    codes: *mut *const u8,
    codes_len: *mut usize,
) -> expq_status {
    boundary("expq_view_packed_codes", || {
        let v = *try_ref!(v);
        // SAFETY: as in `expq_view_dequantize`.
        let (_, view) = unsafe { v.parts()? };
        // SAFETY: the caller promises that `codes` and `codes_len` are NULL or writable.
        unsafe { packed_codes(&view, codes, codes_len) }
    })
}

/// Writes the levels of group `group` of the viewed tensor, ascending, into `levels`, which
/// holds `levels_len` floats, and stores their number in `*written`, as
/// `expq_tensor_group_levels`.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (`v` not initialized,
/// `group >= expq_view_group_count(v)`), `EXPQ_STATUS_BUFFER_TOO_SMALL` (`levels_len` less
/// than the number of levels). `levels` and `*written` are written only on success.
///
/// # Safety
/// `v` as for `expq_view_dequantize`; `levels` must be writable for `levels_len` floats;
/// `written` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn expq_view_group_levels(
    v: *const expq_view,
    group: usize,
    levels: *mut f32,
    levels_len: usize,
    written: *mut usize,
) -> expq_status {
    boundary("expq_view_group_levels", || {
        let v = *try_ref!(v);
        // SAFETY: as in `expq_view_dequantize`.
        let (bytes, view) = unsafe { v.parts()? };
        check_disjoint(bytes, levels, levels_len, ("v's buffer", "levels"))?;
        // SAFETY: the caller promises that `levels` is NULL or writable for `levels_len`
        // floats and `written` NULL or writable.
        unsafe { group_levels(&view, group, levels, levels_len, written) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{quantize, Config};
    use std::vec;
    use std::vec::Vec;

    fn stored() -> (QuantizedTensor, Vec<u8>) {
        let weights: Vec<f32> = (0..60)
            .map(|i| ((i * 37 % 60) as f32 - 29.5) / 17.0)
            .collect();
        let tensor = quantize(&weights, 5, 12, &Config::exponential(3).per_group(5)).unwrap();
        let bytes = tensor.to_bytes();
        (tensor, bytes)
    }

    #[test]
    fn view_round_trips_and_rebuilds_without_validation() {
        let (tensor, bytes) = stored();
        let mut v = core::mem::MaybeUninit::<expq_view>::uninit();
        // SAFETY: `bytes` is a live buffer; `v` is writable.
        let status = unsafe { expq_view_init(bytes.as_ptr(), bytes.len(), v.as_mut_ptr()) };
        assert_eq!(status, expq_status::Ok);
        // SAFETY: written on success.
        let v = unsafe { v.assume_init() };
        let mut out = vec![0.0f32; 60];
        // SAFETY: `v` is initialized over `bytes`; `out` holds 60 floats.
        let status = unsafe { expq_view_dequantize(&v, out.as_mut_ptr(), out.len()) };
        assert_eq!(status, expq_status::Ok);
        assert_eq!(out, tensor.dequantize());
        // SAFETY: as above.
        assert_eq!(unsafe { expq_view_rows(&v) }, 5);
        // SAFETY: as above.
        let bpw = unsafe { expq_view_bits_per_weight(&v) };
        assert_eq!(bpw, tensor.bits_per_weight());
    }

    #[test]
    fn a_zeroed_or_tampered_view_is_an_error() {
        let (_, bytes) = stored();
        // SAFETY: all-zero is a valid bit pattern for every field (a NULL pointer).
        let zeroed: expq_view = unsafe { core::mem::zeroed() };
        let mut out = [0.0f32; 60];
        // SAFETY: the data pointer is NULL, which is rejected before any access.
        let status = unsafe { expq_view_dequantize(&zeroed, out.as_mut_ptr(), 60) };
        assert_eq!(status, expq_status::InvalidArgument);
        // SAFETY: NULL-buffer views are rejected; rows 0.
        assert_eq!(unsafe { expq_view_rows(&zeroed) }, 0);

        let mut v = core::mem::MaybeUninit::<expq_view>::uninit();
        // SAFETY: as in the test above.
        let v = unsafe {
            assert_eq!(
                expq_view_init(bytes.as_ptr(), bytes.len(), v.as_mut_ptr()),
                expq_status::Ok
            );
            v.assume_init()
        };
        for tampered in [
            expq_view { rows: 6, ..v },
            expq_view { bits: 4, ..v },
            expq_view { bits: 0, ..v },
            expq_view { group_size: 0, ..v },
            expq_view {
                granularity: 9,
                ..v
            },
            expq_view { scheme: 2, ..v },
        ] {
            // SAFETY: the buffer fields are untouched, so the buffer is live and unchanged.
            let status = unsafe { expq_view_dequantize(&tampered, out.as_mut_ptr(), 60) };
            assert_eq!(status, expq_status::CorruptData, "{tampered:?}");
        }
    }

    #[test]
    fn serialize_reports_the_needed_size() {
        let (tensor, bytes) = stored();
        let t = expq_tensor::into_raw(tensor);
        let mut written = 0usize;
        // SAFETY: `t` is live; NULL buffer is the size query.
        let status = unsafe { expq_tensor_serialize(t, core::ptr::null_mut(), 0, &mut written) };
        assert_eq!(status, expq_status::BufferTooSmall);
        assert_eq!(written, bytes.len());
        let mut buf = vec![0u8; written + 3];
        written = 0;
        // SAFETY: `buf` holds `buf.len()` bytes.
        let status = unsafe { expq_tensor_serialize(t, buf.as_mut_ptr(), buf.len(), &mut written) };
        assert_eq!(status, expq_status::Ok);
        assert_eq!(&buf[..written], &bytes[..]);
        // SAFETY: `t` came from `into_raw` and is freed once.
        unsafe { super::super::expq_tensor_free(t) };
    }
}
