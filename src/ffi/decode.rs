//! `expq_decode`: the allocation-free firmware decode path.

use crate::kernels;

use super::{boundary, check_disjoint, expq_status};

/// Decodes `out_len` codes of `bits` bits from `packed` through one codebook: `out[i] =
/// levels[code_i]`. Allocates nothing.
///
/// Codes are packed least-significant-bit first into a little-endian byte stream: code `i`
/// occupies bits `i*bits .. (i+1)*bits`, bit `k` of the stream being bit `k % 8` of byte
/// `k / 8` (at 4 bits, element `2i` is the low nibble of byte `i`). `packed` holds
/// `packed_len` bytes, exactly `ceil(out_len * bits / 8)`; `levels` holds `levels_len` (1 to
/// 256) floats; `out` gets `out_len` floats.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (bits outside 1..=8,
/// `levels_len` 0 or above 256, `packed_len` too long, overlapping buffers),
/// `EXPQ_STATUS_BUFFER_TOO_SMALL` (`packed_len` too short), `EXPQ_STATUS_CORRUPT_DATA` (a
/// code `>= levels_len`). `out` is written only on success.
///
/// # Safety
/// `packed` must point to `packed_len` bytes, `levels` to `levels_len` floats, and `out` be
/// writable for `out_len` floats.
#[no_mangle]
pub unsafe extern "C" fn expq_decode(
    bits: u8,
    packed: *const u8,
    packed_len: usize,
    levels: *const f32,
    levels_len: usize,
    out: *mut f32,
    out_len: usize,
) -> expq_status {
    boundary("expq_decode", || {
        let packed = try_slice!(packed, packed_len);
        let levels = try_slice!(levels, levels_len);
        check_disjoint(packed, out, out_len, ("packed", "out"))?;
        check_disjoint(levels, out, out_len, ("levels", "out"))?;
        let out = try_slice_mut!(out, out_len);
        kernels::decode(bits, packed, levels, out)?;
        Ok(expq_status::Ok)
    })
}
