//! `expq_decode`: the allocation-free firmware decode path.

use crate::kernels;

use super::{boundary, check_disjoint, expq_status};

/// Decodes `n` codes of `bits` bits from `packed` through one codebook: `out[i] =
/// levels[code_i]`. Allocates nothing.
///
/// Codes are packed least-significant-bit first into a little-endian byte stream: code `i`
/// occupies bits `i*bits .. (i+1)*bits`, bit `k` of the stream being bit `k % 8` of byte
/// `k / 8` (at 4 bits, element `2i` is the low nibble of byte `i`). `packed_len` must be
/// exactly `ceil(n * bits / 8)`; `levels` holds `n_levels` (1 to 256) floats.
///
/// Errors: `EXPQ_STATUS_INVALID_ARGUMENT` (bits outside 1..=8, `n_levels` 0 or above 256,
/// `packed_len` too long, overlapping buffers), `EXPQ_STATUS_BUFFER_TOO_SMALL` (`packed_len`
/// too short), `EXPQ_STATUS_CORRUPT_DATA` (a code `>= n_levels`). `out` is written only on
/// success.
///
/// # Safety
/// `packed` must point to `packed_len` bytes, `levels` to `n_levels` floats, and `out` be
/// writable for `n` floats.
#[no_mangle]
pub unsafe extern "C" fn expq_decode(
    bits: u8,
    packed: *const u8,
    packed_len: usize,
    levels: *const f32,
    n_levels: usize,
    out: *mut f32,
    n: usize,
) -> expq_status {
    boundary("expq_decode", || {
        let packed = try_slice!(packed, packed_len);
        let levels = try_slice!(levels, n_levels);
        check_disjoint(packed, out, n, ("packed", "out"))?;
        check_disjoint(levels, out, n, ("levels", "out"))?;
        let out = try_slice_mut!(out, n);
        kernels::decode(bits, packed, levels, out)?;
        Ok(expq_status::Ok)
    })
}
