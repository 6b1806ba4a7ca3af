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
//!
//! # Paths
//! [`pack`] and [`unpack`] take the fastest path this CPU runs (the AVX-512 VBMI kernels
//! where detected, else eight codes per `u64` word); [`pack_with`] and [`unpack_with`] take a
//! chosen [`Isa`], and [`scalar`] is the reference every path must match byte for byte.

use crate::error::{Error, Result};
use crate::isa::{portable, Isa, Path};

pub(crate) use crate::isa::portable::code_at;

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
    check_pack(codes, bits, out)?;
    pack_unchecked(codes, bits, out);
    Ok(())
}

/// The checks both packers make: bits, output length, and every code below `2^bits`.
fn check_pack(codes: &[u8], bits: u8, out: &[u8]) -> Result<()> {
    check_bits(bits)?;
    expect_len("packed output", packed_len(codes.len(), bits), out.len())?;
    let limit = 1usize << bits;
    if bits == 8 {
        return Ok(());
    }
    // An OR over each chunk vectorizes (`position` does not, and cost more than packing);
    // only a chunk with a code out of range is searched for the first one.
    const CHUNK: usize = 256;
    for (c, chunk) in codes.chunks(CHUNK).enumerate() {
        if usize::from(chunk.iter().fold(0u8, |acc, &code| acc | code)) >= limit {
            if let Some(i) = chunk.iter().position(|&code| usize::from(code) >= limit) {
                return Err(Error::CodeOutOfRange {
                    index: c * CHUNK + i,
                    code: chunk[i],
                    limit,
                });
            }
        }
    }
    Ok(())
}

/// The checks both unpackers make: bits and input length.
fn check_unpack(packed: &[u8], bits: u8, n: usize) -> Result<()> {
    check_bits(bits)?;
    expect_len("packed input", packed_len(n, bits), packed.len())
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
    check_unpack(packed, bits, out.len())?;
    unpack_unchecked(packed, bits, out);
    Ok(())
}

/// [`unpack`] into a new vector of `n` codes.
#[cfg(feature = "alloc")]
pub fn unpack_to_vec(packed: &[u8], bits: u8, n: usize) -> Result<alloc::vec::Vec<u8>> {
    check_unpack(packed, bits, n)?;
    let mut out = alloc::vec![0u8; n];
    unpack_unchecked(packed, bits, &mut out);
    Ok(out)
}

/// [`pack`] on a chosen path, so that tests and benchmarks can compare paths (every path
/// writes the same bytes).
pub fn pack_with(isa: Isa, codes: &[u8], bits: u8, out: &mut [u8]) -> Result<()> {
    check_pack(codes, bits, out)?;
    pack_fast(isa, codes, bits, out);
    Ok(())
}

/// [`unpack`] on a chosen path (every path writes the same codes).
pub fn unpack_with(isa: Isa, packed: &[u8], bits: u8, out: &mut [u8]) -> Result<()> {
    check_unpack(packed, bits, out.len())?;
    unpack_fast(isa, packed, bits, out);
    Ok(())
}

/// Packs with lengths and code ranges already checked by the caller, on the fastest path.
#[inline]
pub(crate) fn pack_unchecked(codes: &[u8], bits: u8, out: &mut [u8]) {
    pack_fast(Isa::detect(), codes, bits, out);
}

/// Unpacks with lengths already checked by the caller, on the fastest path.
#[inline]
pub(crate) fn unpack_unchecked(packed: &[u8], bits: u8, out: &mut [u8]) {
    unpack_fast(Isa::detect(), packed, bits, out);
}

/// The reference packer: a bit accumulator, one code at a time. Every other path must
/// produce the same bytes for every width and length; the tests hold them to it.
pub mod scalar {
    use super::{check_pack, check_unpack, portable};
    use crate::error::Result;

    /// [`pack`](super::pack) on the reference path.
    pub fn pack(codes: &[u8], bits: u8, out: &mut [u8]) -> Result<()> {
        check_pack(codes, bits, out)?;
        portable::pack_reference(codes, bits, out);
        Ok(())
    }

    /// [`unpack`](super::unpack) on the reference path.
    pub fn unpack(packed: &[u8], bits: u8, out: &mut [u8]) -> Result<()> {
        check_unpack(packed, bits, out.len())?;
        portable::unpack_reference(packed, bits, out);
        Ok(())
    }
}

/// Packs on `isa`: the reference on the scalar path, the AVX-512 VBMI kernel (widths 1..=7)
/// where the path has VBMI, else eight codes per `u64` word. Lengths and code ranges are
/// checked by the caller.
#[inline]
pub(crate) fn pack_fast(isa: Isa, codes: &[u8], bits: u8, out: &mut [u8]) {
    match isa.path() {
        Path::Scalar => return portable::pack_reference(codes, bits, out),
        #[cfg(target_arch = "x86_64")]
        Path::Avx512(t) => {
            if let Some(vbmi) = t.vbmi() {
                if vbmi.pack(codes, bits, out) {
                    return;
                }
            }
        }
        _ => {}
    }
    portable::pack_swar(codes, bits, out);
}

/// Unpacks on `isa` (see [`pack_fast`]; the VBMI kernel serves every width but 4 and 8,
/// where the word loops are already faster than memory). Lengths are checked by the caller.
#[inline]
pub(crate) fn unpack_fast(isa: Isa, packed: &[u8], bits: u8, out: &mut [u8]) {
    match isa.path() {
        Path::Scalar => return portable::unpack_reference(packed, bits, out),
        #[cfg(target_arch = "x86_64")]
        Path::Avx512(t) => {
            if let Some(vbmi) = t.vbmi() {
                if vbmi.unpack(packed, bits, out) {
                    return;
                }
            }
        }
        _ => {}
    }
    portable::unpack_swar(packed, bits, out);
}
