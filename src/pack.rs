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

/// Packs with lengths and code ranges already checked by the caller, on the fast path.
#[inline]
pub(crate) fn pack_unchecked(codes: &[u8], bits: u8, out: &mut [u8]) {
    pack_fast(codes, bits, out);
}

/// Unpacks with lengths already checked by the caller, on the fast path.
#[inline]
pub(crate) fn unpack_unchecked(packed: &[u8], bits: u8, out: &mut [u8]) {
    unpack_fast(packed, bits, out);
}

/// The reference packer: a bit accumulator, one code at a time. The fast paths must produce
/// the same bytes for every width and length; the tests hold them to it.
pub mod scalar {
    use super::{check_pack, check_unpack};
    use crate::error::Result;

    /// [`pack`](super::pack) on the reference path.
    pub fn pack(codes: &[u8], bits: u8, out: &mut [u8]) -> Result<()> {
        check_pack(codes, bits, out)?;
        pack_unchecked(codes, bits, out);
        Ok(())
    }

    /// [`unpack`](super::unpack) on the reference path.
    pub fn unpack(packed: &[u8], bits: u8, out: &mut [u8]) -> Result<()> {
        check_unpack(packed, bits, out.len())?;
        unpack_unchecked(packed, bits, out);
        Ok(())
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
}

/// The portable word-at-a-time path, which [`pack`] and [`unpack`] take where no SIMD kernel
/// runs; public so the tests can hold it to the reference on machines that do have one.
#[doc(hidden)]
pub mod swar {
    use super::{check_pack, check_unpack};
    use crate::error::Result;

    /// [`pack`](super::pack) on the portable path.
    pub fn pack(codes: &[u8], bits: u8, out: &mut [u8]) -> Result<()> {
        check_pack(codes, bits, out)?;
        super::pack_portable(codes, bits, out);
        Ok(())
    }

    /// [`unpack`](super::unpack) on the portable path.
    pub fn unpack(packed: &[u8], bits: u8, out: &mut [u8]) -> Result<()> {
        check_unpack(packed, bits, out.len())?;
        super::unpack_portable(packed, bits, out);
        Ok(())
    }
}

/// Which path [`pack`] and [`unpack`] take on this CPU: `"avx512vbmi"` (AVX-512 VBMI kernels
/// at widths 1..=7 for pack, all but 4 and 8 for unpack) or `"swar"`. For tests and benches.
#[doc(hidden)]
pub fn fast_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::pack_vbmi_available() {
        return "avx512vbmi";
    }
    "swar"
}

/// Packs on the fast path: the AVX-512 VBMI kernel where the CPU has one, else
/// [`pack_portable`].
pub(crate) fn pack_fast(codes: &[u8], bits: u8, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::pack_simd(codes, bits, out) {
        return;
    }
    pack_portable(codes, bits, out);
}

/// Packs eight codes per `u64` (SWAR), so every width, including 3, 5, 6 and 7, moves a
/// word at a time. 8 bits is a copy.
fn pack_portable(codes: &[u8], bits: u8, out: &mut [u8]) {
    match bits {
        1 => pack_words::<1>(codes, out),
        2 => pack_words::<2>(codes, out),
        3 => pack_words::<3>(codes, out),
        // The reference's nibble loop auto-vectorizes and beats the word path.
        4 => scalar::pack_unchecked(codes, 4, out),
        5 => pack_words::<5>(codes, out),
        6 => pack_words::<6>(codes, out),
        7 => pack_words::<7>(codes, out),
        _ => out.copy_from_slice(codes),
    }
}

/// Unpacks on the fast path (see [`pack_fast`]).
pub(crate) fn unpack_fast(packed: &[u8], bits: u8, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::unpack_simd(packed, bits, out) {
        return;
    }
    unpack_portable(packed, bits, out);
}

/// Unpacks eight codes per `u64` (see [`pack_portable`]).
fn unpack_portable(packed: &[u8], bits: u8, out: &mut [u8]) {
    match bits {
        1 => unpack_words::<1>(packed, out),
        2 => unpack_words::<2>(packed, out),
        3 => unpack_words::<3>(packed, out),
        4 => scalar::unpack_unchecked(packed, 4, out),
        5 => unpack_words::<5>(packed, out),
        6 => unpack_words::<6>(packed, out),
        7 => unpack_words::<7>(packed, out),
        _ => out.copy_from_slice(packed),
    }
}

/// `B`-bit fields repeated every `lane` bits across a `u64`.
const fn lanes(b: u32, lane: u32) -> u64 {
    let field = (1u64 << b) - 1;
    let mut m = 0u64;
    let mut shift = 0;
    while shift < 64 {
        m |= field << shift;
        shift += lane;
    }
    m
}

/// Squeezes eight byte-wide codes of `B` bits (one per byte of `v`) into the low `8·B` bits:
/// pairs into 16-bit lanes, then quads into 32-bit lanes, then the two halves together.
#[inline(always)]
fn squeeze<const B: u32>(v: u64) -> u64 {
    let v = (v & 0x00ff_00ff_00ff_00ff) | ((v & 0xff00_ff00_ff00_ff00) >> (8 - B));
    let v = (v & 0x0000_ffff_0000_ffff) | ((v & 0xffff_0000_ffff_0000) >> (16 - 2 * B));
    (v & 0xffff_ffff) | ((v >> 32) << (4 * B))
}

/// The inverse of [`squeeze`]: the low `8·B` bits of `v` spread to one code per byte.
#[inline(always)]
fn spread<const B: u32>(v: u64) -> u64 {
    let v = (v & lanes(4 * B, 64)) | ((v >> (4 * B)) & lanes(4 * B, 64)) << 32;
    let v = (v & lanes(2 * B, 32)) | ((v >> (2 * B)) & lanes(2 * B, 32)) << 16;
    (v & lanes(B, 16)) | ((v >> B) & lanes(B, 16)) << 8
}

fn pack_words<const B: u32>(codes: &[u8], out: &mut [u8]) {
    let b = B as usize;
    let words = codes.len() / 8;
    let out_len = out.len();
    for (i, src) in codes.chunks_exact(8).enumerate() {
        let v = u64::from_le_bytes([
            src[0], src[1], src[2], src[3], src[4], src[5], src[6], src[7],
        ]);
        let bytes = squeeze::<B>(v).to_le_bytes();
        let at = i * b;
        if at + 8 <= out_len {
            // A whole-word store; its zero upper bytes are overwritten by the next word.
            out[at..at + 8].copy_from_slice(&bytes);
        } else {
            out[at..at + b].copy_from_slice(&bytes[..b]);
        }
    }
    scalar::pack_unchecked(&codes[words * 8..], B as u8, &mut out[words * b..]);
}

fn unpack_words<const B: u32>(packed: &[u8], out: &mut [u8]) {
    let b = B as usize;
    let words = out.len() / 8;
    // Whole 8-byte loads while they stay inside `packed`; the last few words copy their `B`
    // bytes first.
    let direct = if packed.len() >= 8 {
        ((packed.len() - 8) / b + 1).min(words)
    } else {
        0
    };
    let (head, tail) = out.split_at_mut(direct * 8);
    for (i, dst) in head.chunks_exact_mut(8).enumerate() {
        let src = &packed[i * b..i * b + 8];
        let v = u64::from_le_bytes([
            src[0], src[1], src[2], src[3], src[4], src[5], src[6], src[7],
        ]);
        dst.copy_from_slice(&spread::<B>(v).to_le_bytes());
    }
    let mut tail_words = tail.chunks_exact_mut(8);
    for (i, dst) in (&mut tail_words).enumerate() {
        let at = (direct + i) * b;
        let mut buf = [0u8; 8];
        buf[..b].copy_from_slice(&packed[at..at + b]);
        dst.copy_from_slice(&spread::<B>(u64::from_le_bytes(buf)).to_le_bytes());
    }
    let rest = tail_words.into_remainder();
    scalar::unpack_unchecked(&packed[words * b..], B as u8, rest);
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
