//! n-bit codes (1..=8) to and from bytes.
//!
//! # Layout
//! Codes go least-significant-bit first into a little-endian byte stream: code `i` occupies
//! bits `i*bits .. (i+1)*bits` of the stream, where bit `k` of the stream is bit `k % 8` of
//! byte `k / 8`. At 4 bits, element `2i` is the low nibble and `2i+1` the high nibble of byte
//! `i` (the order of ONNX Runtime's MatMulNBits and CMSIS-NN int4). Unused bits of the last
//! byte are zero. A tensor packs each row separately, so each row starts on a byte boundary.
//!
//! ```
//! use expquant::pack;
//! let codes = [1u8, 2, 3, 0, 7];
//! let mut bytes = [0u8; 2];
//! pack::pack(&codes, 3, &mut bytes)?;
//! assert_eq!(bytes, [0b11_010_001, 0b0_111_000_0]);
//! let mut back = [0u8; 5];
//! pack::unpack(&bytes, 3, &mut back)?;
//! assert_eq!(back, codes);
//! # Ok::<(), expquant::Error>(())
//! ```

use crate::error::{Error, Result};

/// Bytes needed for `n` codes of `bits` bits, or `None` if that overflows `usize`.
#[inline]
pub fn packed_len(n: usize, bits: u8) -> Option<usize> {
    let total_bits = n.checked_mul(usize::from(bits))?;
    Some(total_bits / 8 + usize::from(total_bits % 8 != 0))
}

pub(crate) fn check_bits(bits: u8) -> Result<()> {
    if (1..=8).contains(&bits) {
        Ok(())
    } else {
        Err(Error::InvalidBits(bits))
    }
}

fn expect_len(what: &'static str, expected: Option<usize>, actual: usize) -> Result<()> {
    match expected {
        Some(expected) if expected == actual => Ok(()),
        Some(expected) => Err(Error::BufferLength {
            what,
            expected,
            actual,
        }),
        None => Err(Error::BufferLength {
            what,
            expected: usize::MAX,
            actual,
        }),
    }
}

/// Packs `codes` at `bits` bits each into `out`, which must hold exactly
/// [`packed_len`]`(codes.len(), bits)` bytes. Every code must be below `2^bits`.
pub fn pack(codes: &[u8], bits: u8, out: &mut [u8]) -> Result<()> {
    check_bits(bits)?;
    expect_len("packed output", packed_len(codes.len(), bits), out.len())?;
    let limit = 1usize << bits;
    if let Some(index) = codes.iter().position(|&c| usize::from(c) >= limit) {
        return Err(Error::CodeOutOfRange {
            index,
            code: codes[index],
            limit,
        });
    }
    pack_unchecked(codes, bits, out);
    Ok(())
}

/// [`pack`] into a new vector.
#[cfg(feature = "alloc")]
pub fn pack_to_vec(codes: &[u8], bits: u8) -> Result<alloc::vec::Vec<u8>> {
    check_bits(bits)?;
    let len = packed_len(codes.len(), bits).ok_or(Error::BufferLength {
        what: "packed output",
        expected: usize::MAX,
        actual: 0,
    })?;
    let mut out = alloc::vec![0u8; len];
    pack(codes, bits, &mut out)?;
    Ok(out)
}

/// Unpacks `out.len()` codes of `bits` bits from `packed`, which must hold exactly
/// [`packed_len`]`(out.len(), bits)` bytes.
pub fn unpack(packed: &[u8], bits: u8, out: &mut [u8]) -> Result<()> {
    check_bits(bits)?;
    expect_len("packed input", packed_len(out.len(), bits), packed.len())?;
    unpack_unchecked(packed, bits, out);
    Ok(())
}

/// [`unpack`] into a new vector of `n` codes.
#[cfg(feature = "alloc")]
pub fn unpack_to_vec(packed: &[u8], bits: u8, n: usize) -> Result<alloc::vec::Vec<u8>> {
    check_bits(bits)?;
    expect_len("packed input", packed_len(n, bits), packed.len())?;
    let mut out = alloc::vec![0u8; n];
    unpack_unchecked(packed, bits, &mut out);
    Ok(out)
}

/// Packs with lengths and code ranges already checked by the caller.
pub(crate) fn pack_unchecked(codes: &[u8], bits: u8, out: &mut [u8]) {
    match bits {
        8 => out.copy_from_slice(codes),
        4 => {
            let mut pairs = codes.chunks_exact(2);
            for (byte, pair) in out.iter_mut().zip(&mut pairs) {
                *byte = pair[0] | (pair[1] << 4);
            }
            if let [last] = pairs.remainder() {
                out[codes.len() / 2] = *last;
            }
        }
        _ => {
            let mut acc: u32 = 0;
            let mut filled: u32 = 0;
            let mut pos = 0;
            for &code in codes {
                acc |= u32::from(code) << filled;
                filled += u32::from(bits);
                if filled >= 8 {
                    out[pos] = acc as u8;
                    pos += 1;
                    acc >>= 8;
                    filled -= 8;
                }
            }
            if filled > 0 {
                out[pos] = acc as u8;
            }
        }
    }
}

/// Unpacks with lengths already checked by the caller.
pub(crate) fn unpack_unchecked(packed: &[u8], bits: u8, out: &mut [u8]) {
    match bits {
        8 => out.copy_from_slice(packed),
        4 => {
            let n = out.len();
            let mut pairs = out.chunks_exact_mut(2);
            for (pair, &byte) in (&mut pairs).zip(packed) {
                pair[0] = byte & 0x0f;
                pair[1] = byte >> 4;
            }
            if let [last] = pairs.into_remainder() {
                *last = packed[n / 2] & 0x0f;
            }
        }
        _ => {
            let mask = (1u32 << bits) - 1;
            let mut acc: u32 = 0;
            let mut filled: u32 = 0;
            let mut bytes = packed.iter();
            for code in out.iter_mut() {
                if filled < u32::from(bits) {
                    // The length check guarantees a byte is there whenever bits are missing.
                    acc |= u32::from(*bytes.next().unwrap_or(&0)) << filled;
                    filled += 8;
                }
                *code = (acc & mask) as u8;
                acc >>= bits;
                filled -= u32::from(bits);
            }
        }
    }
}

/// Code `index` of a packed stream, for kernels that walk codes without unpacking a row.
/// The caller guarantees `index` is inside the stream.
#[inline]
pub(crate) fn code_at(packed: &[u8], bits: u8, index: usize) -> u8 {
    let bit = index * usize::from(bits);
    let byte = bit / 8;
    let shift = bit % 8;
    let lo = u16::from(packed[byte]);
    let hi = if shift + usize::from(bits) > 8 {
        u16::from(packed[byte + 1])
    } else {
        0
    };
    (((lo | (hi << 8)) >> shift) & ((1u16 << bits) - 1)) as u8
}
