//! Dequantize, dot product, GEMV and encoding on packed codes, without materializing the
//! weights.
//!
//! # Paths
//! Each kernel has a plain scalar reference ([`Isa::Scalar`]: loops over `code_at`, kept as
//! the definition every faster path is tested against), a portable word-at-a-time path
//! ([`Isa::Swar`]: codes unpacked eight per `u64`, then a table lookup; `no_std` and every
//! target), on x86-64 an AVX2 + FMA and an AVX-512 path, and on AArch64 a NEON path, one file
//! per instruction set. [`Isa::detect`] decides once: with `std`, by runtime detection (cached
//! in an atomic); without it, by the target features the crate was compiled with. NEON is a
//! baseline feature of the AArch64 targets that enable it, so there the target decides.
//!
//! # Numbers
//! Decoding and encoding are exact: every path writes the same floats and the same codes.
//! Dot products sum in a different order on each path (several accumulators, lane-wise), so
//! they agree with the reference to within ordinary `f32` summation error:
//! `|fast − reference| <= 1e-5 · Σ|table[code_j] · x_j|` for the lengths the tests cover.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::codebook::Codebook;
use crate::error::{Error, Result};
use crate::pack::{self, code_at};

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod aarch64_neon;
pub(crate) mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;

/// Decodes `out.len()` codes of `bits` bits from `packed` through `levels`: `out[i] =
/// levels[code_i]`. `packed` must hold exactly [`pack::packed_len`]`(out.len(), bits)` bytes,
/// and every code must index `levels`; otherwise an error is returned and `out` is left
/// untouched. No allocation: this is the firmware decode path.
///
/// ```
/// let levels = [-1.0f32, 0.0, 1.0];
/// let mut out = [0.0f32; 4];
/// expquant::kernels::decode(2, &[0b10_01_00_01], &levels, &mut out)?;
/// assert_eq!(out, [0.0, -1.0, 0.0, 1.0]);
/// # Ok::<(), expquant::Error>(())
/// ```
pub fn decode(bits: u8, packed: &[u8], levels: &[f32], out: &mut [f32]) -> Result<()> {
    decode_with(Isa::detect(), bits, packed, levels, out)
}

/// [`decode`] on a chosen path (one the CPU lacks falls back to [`Isa::Swar`]), so that tests
/// and benchmarks can compare paths.
pub fn decode_with(
    isa: Isa,
    bits: u8,
    packed: &[u8],
    levels: &[f32],
    out: &mut [f32],
) -> Result<()> {
    let isa = isa.or_portable();
    check_codes(bits, packed, out.len(), levels)?;
    let table = Table::from_levels(levels);
    decode_span(isa, bits, packed, 0, &table, out);
    Ok(())
}

/// `Σ levels[code_j] · x[j]` over the `x.len()` codes in `packed`, with the checks of
/// [`decode`]. The sum order depends on the path (see the module docs).
///
/// ```
/// let levels = [-1.0f32, 0.0, 1.0];
/// let y = expquant::kernels::dot(2, &[0b10_01_00_01], &levels, &[1.0, 2.0, 3.0, 4.0])?;
/// assert_eq!(y, -2.0 + 4.0);
/// # Ok::<(), expquant::Error>(())
/// ```
pub fn dot(bits: u8, packed: &[u8], levels: &[f32], x: &[f32]) -> Result<f32> {
    dot_with(Isa::detect(), bits, packed, levels, x)
}

/// [`dot`] on a chosen path (one the CPU lacks falls back to [`Isa::Swar`]).
pub fn dot_with(isa: Isa, bits: u8, packed: &[u8], levels: &[f32], x: &[f32]) -> Result<f32> {
    let isa = isa.or_portable();
    check_codes(bits, packed, x.len(), levels)?;
    let table = Table::from_levels(levels);
    // With an allocator this is the GEMV's own row kernel (lane-permuted `x` where it pays).
    #[cfg(feature = "alloc")]
    return Ok(DotPlan::new(isa, bits, x, x.len()).dot(packed, 0, x.len(), &table));
    #[cfg(not(feature = "alloc"))]
    Ok(dot_span(isa, bits, packed, 0, &table, x))
}

/// Checks a packed stream of `n` codes against a codebook of `levels`.
fn check_codes(bits: u8, packed: &[u8], n: usize, levels: &[f32]) -> Result<()> {
    pack::check_bits(bits)?;
    let needed = pack::packed_len(n, bits).unwrap_or(usize::MAX);
    if packed.len() != needed {
        return Err(Error::BufferLength {
            what: "packed input",
            expected: needed,
            actual: packed.len(),
        });
    }
    if levels.is_empty() || levels.len() > 256 {
        return Err(Error::InvalidCodebook("a codebook holds 1 to 256 levels"));
    }
    // Check every code before writing anything, unless all `2^bits` codes index a level.
    if levels.len() < 1 << bits {
        let bad = (0..n).find(|&i| usize::from(code_at(packed, bits, i)) >= levels.len());
        if let Some(index) = bad {
            return Err(Error::CodeOutOfRange {
                index,
                code: code_at(packed, bits, index),
                limit: levels.len(),
            });
        }
    }
    Ok(())
}

/// A code path: the scalar reference, the portable word-at-a-time path, or a SIMD
/// instruction set. Ordered from slowest to fastest within one architecture (`Scalar < Swar <
/// Avx2 < Avx512` on x86-64, `Scalar < Swar < Neon` on AArch64); a path of another
/// architecture is never [available](Isa::is_available), whatever its place in the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// The reference loops, one code at a time.
    Scalar,
    /// Portable: eight codes per `u64` word, then a table lookup per code.
    Swar,
    /// x86-64 AVX2 and FMA.
    Avx2,
    /// x86-64 AVX-512 F, BW and VL (with AVX2 and FMA).
    Avx512,
    /// AArch64 Advanced SIMD (NEON).
    Neon,
}

/// 0 until detection ran, then `1 + Isa as u8`.
static DETECTED: AtomicU8 = AtomicU8::new(0);

impl Isa {
    /// The fastest path this CPU runs, detected on first use and cached.
    pub fn detect() -> Isa {
        match DETECTED.load(Ordering::Relaxed) {
            0 => {
                let isa = probe();
                DETECTED.store(isa as u8 + 1, Ordering::Relaxed);
                isa
            }
            2 => Isa::Swar,
            3 => Isa::Avx2,
            4 => Isa::Avx512,
            5 => Isa::Neon,
            _ => Isa::Scalar,
        }
    }

    /// Whether this CPU runs the path.
    pub fn is_available(self) -> bool {
        // The order only ranks paths of one architecture: Neon sorts above Avx2, yet an
        // AArch64 CPU does not run AVX2.
        let this_arch = match self {
            Isa::Scalar | Isa::Swar => true,
            Isa::Avx2 | Isa::Avx512 => cfg!(target_arch = "x86_64"),
            Isa::Neon => cfg!(all(target_arch = "aarch64", target_feature = "neon")),
        };
        this_arch && self <= Isa::detect()
    }

    /// `self` if the CPU runs it, else the portable path.
    fn or_portable(self) -> Isa {
        if self.is_available() {
            self
        } else {
            Isa::Swar
        }
    }
}

fn probe() -> Isa {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx2 = has!("avx2") && has!("fma");
        if avx2 && has!("avx512f") && has!("avx512bw") && has!("avx512vl") {
            return Isa::Avx512;
        }
        if avx2 {
            return Isa::Avx2;
        }
    }
    #[cfg(all(not(feature = "std"), target_arch = "x86_64"))]
    {
        // Without `std` there is no runtime detection: trust what the build targets.
        if cfg!(all(
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vl"
        )) {
            return Isa::Avx512;
        }
        if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
            return Isa::Avx2;
        }
    }
    // Every AArch64 CPU a `neon` target runs on has it: nothing to detect.
    if cfg!(all(target_arch = "aarch64", target_feature = "neon")) {
        return Isa::Neon;
    }
    Isa::Swar
}

/// Whether the CPU has AVX-512 VBMI (byte permutes), which the 8-bit [`Isa::Avx512`] dot
/// product uses when present. Detected at run time with `std` (cached), from the target
/// features without it.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_vbmi() -> bool {
    #[cfg(feature = "std")]
    {
        static VBMI: AtomicU8 = AtomicU8::new(0);
        match VBMI.load(Ordering::Relaxed) {
            0 => {
                let has = std::arch::is_x86_feature_detected!("avx512vbmi");
                VBMI.store(1 + u8::from(has), Ordering::Relaxed);
                has
            }
            v => v == 2,
        }
    }
    #[cfg(not(feature = "std"))]
    cfg!(target_feature = "avx512vbmi")
}

/// Whether [`pack`](crate::pack::pack) and [`unpack`](crate::pack::unpack) run their AVX-512
/// VBMI kernels on this CPU (AVX-512 F/BW/VL detected, plus VBMI).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn pack_vbmi_available() -> bool {
    Isa::detect() == Isa::Avx512 && has_vbmi()
}

/// Packs on the AVX-512 VBMI path at widths 1..=7 if this CPU has it; `false` (nothing
/// written) otherwise. Lengths and code ranges are checked by the caller.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn pack_simd(codes: &[u8], bits: u8, out: &mut [u8]) -> bool {
    if !pack_vbmi_available() {
        return false;
    }
    // SAFETY: AVX-512 F/BW and VBMI were detected; the caller checked
    // `out.len() == packed_len(codes.len(), bits)` and every code below `2^bits`.
    unsafe {
        match bits {
            1 => x86_avx512::pack_vbmi::<1>(codes, out),
            2 => x86_avx512::pack_vbmi::<2>(codes, out),
            3 => x86_avx512::pack_vbmi::<3>(codes, out),
            4 => x86_avx512::pack_vbmi::<4>(codes, out),
            5 => x86_avx512::pack_vbmi::<5>(codes, out),
            6 => x86_avx512::pack_vbmi::<6>(codes, out),
            7 => x86_avx512::pack_vbmi::<7>(codes, out),
            _ => return false,
        }
    }
    true
}

/// Unpacks on the AVX-512 VBMI path at widths 1, 2, 3, 5, 6 and 7 if this CPU has it;
/// `false` (nothing written) otherwise. At 4 and 8 bits the vectorized reference loops are
/// already faster than memory. The caller checked the lengths.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn unpack_simd(packed: &[u8], bits: u8, out: &mut [u8]) -> bool {
    if !pack_vbmi_available() {
        return false;
    }
    // SAFETY: AVX-512 F/BW and VBMI were detected; the caller checked
    // `packed.len() == packed_len(out.len(), bits)`.
    unsafe {
        match bits {
            1 => x86_avx512::unpack_vbmi::<1>(packed, out),
            2 => x86_avx512::unpack_vbmi::<2>(packed, out),
            3 => x86_avx512::unpack_vbmi::<3>(packed, out),
            5 => x86_avx512::unpack_vbmi::<5>(packed, out),
            6 => x86_avx512::unpack_vbmi::<6>(packed, out),
            7 => x86_avx512::unpack_vbmi::<7>(packed, out),
            _ => return false,
        }
    }
    true
}

/// A codebook's levels as a 256-entry lookup table (entries past `len` are padding), aligned
/// for vector loads.
#[derive(Clone)]
#[repr(C, align(64))]
pub(crate) struct Table {
    pub v: [f32; 256],
    pub len: usize,
}

impl Table {
    pub fn new() -> Self {
        Table {
            v: [0.0; 256],
            len: 1,
        }
    }

    pub fn from_levels(levels: &[f32]) -> Self {
        let mut t = Table::new();
        let n = levels.len().min(256);
        t.v[..n].copy_from_slice(&levels[..n]);
        t.len = n.max(1);
        t
    }

    /// `t16[i] = v[i mod 2^bits]`: what the lane-permuted kernels index with garbage above
    /// the code bits.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn repeated16(&self, bits: u8) -> [f32; 16] {
        let mask = (1usize << bits.min(4)) - 1;
        core::array::from_fn(|i| self.v[i & mask])
    }
}

/// Codes `start .. start + len` of a row begin on a byte boundary after `head` codes.
fn aligned_head(bits: u8, start: usize, len: usize) -> usize {
    let per_byte_cycle = 8 / gcd(8, usize::from(bits));
    let skip = (per_byte_cycle - start % per_byte_cycle) % per_byte_cycle;
    skip.min(len)
}

const fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// Codes unpacked per step of the chunked paths: 256 codes fill `32·bits` whole bytes.
const CHUNK: usize = 256;

/// `out[i] = table[code start + i]` of one packed row. The caller guarantees the codes exist
/// and index `table`.
pub(crate) fn decode_span(
    isa: Isa,
    bits: u8,
    row: &[u8],
    start: usize,
    table: &Table,
    out: &mut [f32],
) {
    if isa == Isa::Scalar {
        return scalar::decode_span(bits, row, start, &table.v, out);
    }
    let head = aligned_head(bits, start, out.len());
    let (first, rest) = out.split_at_mut(head);
    scalar::decode_span(bits, row, start, &table.v, first);
    let mut byte = (start + head) * usize::from(bits) / 8;
    #[cfg(target_arch = "x86_64")]
    if bits == 4 && table.len <= 16 {
        let bytes = &row[byte..];
        match isa {
            // SAFETY: AVX-512 was detected; `row` holds the span's bytes.
            Isa::Avx512 => return unsafe { x86_avx512::decode4(bytes, &table.v, rest) },
            // SAFETY: AVX2 and FMA were detected; `row` holds the span's bytes.
            Isa::Avx2 => return unsafe { x86_avx2::decode4(bytes, &table.v, rest) },
            _ => {}
        }
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    if isa == Isa::Neon {
        let (bytes, v) = (&row[byte..], &table.v);
        // SAFETY (all arms): the target has NEON; `row` holds the span's bytes.
        match bits {
            4 => return unsafe { aarch64_neon::decode_packed::<4>(bytes, v, rest) },
            2 => return unsafe { aarch64_neon::decode_packed::<2>(bytes, v, rest) },
            1 => return unsafe { aarch64_neon::decode_packed::<1>(bytes, v, rest) },
            _ => {}
        }
    }
    let mut codes = [0u8; CHUNK];
    for chunk in rest.chunks_mut(CHUNK) {
        let nb = pack::packed_len(chunk.len(), bits).unwrap_or(0);
        let codes = &mut codes[..chunk.len()];
        pack::unpack_fast(&row[byte..byte + nb], bits, codes);
        lut(isa, codes, table, chunk);
        byte += nb;
    }
}

/// `Σ table[code start + j] · x[j]` over one packed row. The caller guarantees the codes exist
/// and index `table`.
pub(crate) fn dot_span(
    isa: Isa,
    bits: u8,
    row: &[u8],
    start: usize,
    table: &Table,
    x: &[f32],
) -> f32 {
    if isa == Isa::Scalar {
        return scalar::dot_span(bits, row, start, &table.v, x);
    }
    let head = aligned_head(bits, start, x.len());
    let (first, rest) = x.split_at(head);
    let mut acc = scalar::dot_span(bits, row, start, &table.v, first);
    let mut byte = (start + head) * usize::from(bits) / 8;
    #[cfg(target_arch = "x86_64")]
    if bits == 4 && table.len <= 16 {
        let bytes = &row[byte..];
        match isa {
            // SAFETY: AVX-512 was detected; `row` holds the span's bytes.
            Isa::Avx512 => return acc + unsafe { x86_avx512::dot4(bytes, &table.v, rest) },
            // SAFETY: AVX2 and FMA were detected; `row` holds the span's bytes.
            Isa::Avx2 => return acc + unsafe { x86_avx2::dot4(bytes, &table.v, rest) },
            _ => {}
        }
    }
    #[cfg(target_arch = "x86_64")]
    if bits == 8 && isa == Isa::Avx512 && has_vbmi() {
        // SAFETY: AVX-512 and VBMI were detected; `row` holds the span's bytes.
        return acc + unsafe { x86_avx512::dot8_vbmi(&row[byte..], &table.v, rest) };
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    if isa == Isa::Neon {
        let (bytes, v) = (&row[byte..], &table.v);
        // SAFETY (all arms): the target has NEON; `row` holds the span's bytes.
        match bits {
            4 => return acc + unsafe { aarch64_neon::dot_packed::<4>(bytes, v, rest) },
            2 => return acc + unsafe { aarch64_neon::dot_packed::<2>(bytes, v, rest) },
            1 => return acc + unsafe { aarch64_neon::dot_packed::<1>(bytes, v, rest) },
            _ => {}
        }
    }
    let mut codes = [0u8; CHUNK];
    for chunk in rest.chunks(CHUNK) {
        let nb = pack::packed_len(chunk.len(), bits).unwrap_or(0);
        let codes = &mut codes[..chunk.len()];
        pack::unpack_fast(&row[byte..byte + nb], bits, codes);
        acc += lut_dot(isa, codes, table, chunk);
        byte += nb;
    }
    acc
}

fn lut(isa: Isa, codes: &[u8], table: &Table, out: &mut [f32]) {
    match isa {
        // SAFETY: AVX-512 was detected; `codes` and `out` have the same length.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86_avx512::lut(codes, &table.v, table.len, out) },
        // SAFETY: AVX2 and FMA were detected; `codes` and `out` have the same length.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86_avx2::lut(codes, &table.v, table.len, out) },
        // Past 64 levels the table no longer fits four registers per byte plane.
        // SAFETY: the target has NEON; at most 64 levels.
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Isa::Neon if table.len <= 64 => unsafe {
            aarch64_neon::lut(codes, &table.v, table.len, out)
        },
        _ => {
            for (slot, &c) in out.iter_mut().zip(codes) {
                *slot = table.v[usize::from(c)];
            }
        }
    }
}

fn lut_dot(isa: Isa, codes: &[u8], table: &Table, x: &[f32]) -> f32 {
    match isa {
        // SAFETY: AVX-512 was detected; `codes` and `x` have the same length.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86_avx512::lut_dot(codes, &table.v, table.len, x) },
        // SAFETY: AVX2 and FMA were detected; `codes` and `x` have the same length.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86_avx2::lut_dot(codes, &table.v, table.len, x) },
        // SAFETY: the target has NEON; at most 64 levels.
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Isa::Neon if table.len <= 64 => unsafe {
            aarch64_neon::lut_dot(codes, &table.v, table.len, x)
        },
        _ => {
            // Four partial sums break the add chain without changing the code.
            let mut acc = [0.0f32; 4];
            let mut cs = codes.chunks_exact(4);
            let mut xs = x.chunks_exact(4);
            for (c, x) in (&mut cs).zip(&mut xs) {
                for k in 0..4 {
                    acc[k] += table.v[usize::from(c[k])] * x[k];
                }
            }
            let mut tail = 0.0;
            for (&c, &x) in cs.remainder().iter().zip(xs.remainder()) {
                tail += table.v[usize::from(c)] * x;
            }
            (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
        }
    }
}

/// A GEMV's view of `x`, prepared once per call and shared by every row.
///
/// At 1, 2 and 4 bits on AVX2 or AVX-512 it holds `x` permuted to the lane layout of the
/// `dot_perm` kernels, so a row's packed bytes feed the permute-and-FMA loop with no unpacking
/// at all; spans that do not start on a block boundary (small groups) take the ordinary path.
#[cfg(feature = "alloc")]
pub(crate) struct DotPlan<'x> {
    isa: Isa,
    bits: u8,
    /// Codes per block of the permuted layout; 0 when it is not used.
    block: usize,
    x: &'x [f32],
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    xperm: alloc::vec::Vec<f32>,
}

#[cfg(feature = "alloc")]
impl<'x> DotPlan<'x> {
    /// Prepares `x` for rows of `bits`-bit codes whose spans (groups) are `group_len` long.
    pub fn new(isa: Isa, bits: u8, x: &'x [f32], group_len: usize) -> Self {
        let (lanes, block) = match (isa, bits) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 1 | 2 | 4) => (16, x86_avx512::perm_block(u32::from(bits))),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, 1 | 2 | 4) => (8, x86_avx2::perm_block(u32::from(bits))),
            _ => (0, 0),
        };
        // Worth it only when whole blocks fit in a group and groups start on blocks.
        let usable = block > 0
            && group_len >= block
            && (group_len.is_multiple_of(block) || group_len >= x.len());
        let mut xperm = alloc::vec::Vec::new();
        if usable {
            // `max(1)`: on targets without a permuted kernel `block` is 0 and this is dead code.
            let per_lane = block / lanes.max(1);
            let full = x.len() / block.max(1) * block;
            xperm.reserve_exact(full);
            for blk in x[..full].chunks_exact(block) {
                for m in 0..per_lane {
                    for l in 0..lanes {
                        xperm.push(blk[l * per_lane + m]);
                    }
                }
            }
        }
        DotPlan {
            isa,
            bits,
            block: if usable { block } else { 0 },
            x,
            xperm,
        }
    }

    /// `Σ table[code j] · x[j]` for `j` in `start .. start + len` of one packed row.
    pub fn dot(&self, row: &[u8], start: usize, len: usize, table: &Table) -> f32 {
        let x = &self.x[start..start + len];
        if self.block == 0 || !start.is_multiple_of(self.block) || table.len > 16 {
            return dot_span(self.isa, self.bits, row, start, table, x);
        }
        #[cfg(target_arch = "x86_64")]
        {
            let blocks =
                (len / self.block).min(self.xperm.len().saturating_sub(start) / self.block);
            let done = blocks * self.block;
            let bytes_per_block = self.block * usize::from(self.bits) / 8;
            let b0 = start / self.block * bytes_per_block;
            let bytes = &row[b0..b0 + blocks * bytes_per_block];
            let xp = &self.xperm[start..start + done];
            let t16 = table.repeated16(self.bits);
            let head = match (self.isa, self.bits) {
                // SAFETY (all arms): the ISA was detected; `bytes` and `xp` hold `blocks` blocks.
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx512, 4) => unsafe { x86_avx512::dot_perm::<4>(bytes, &t16, xp) },
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx512, 2) => unsafe { x86_avx512::dot_perm::<2>(bytes, &t16, xp) },
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx512, 1) => unsafe { x86_avx512::dot_perm::<1>(bytes, &t16, xp) },
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx2, 4) => unsafe { x86_avx2::dot_perm::<4>(bytes, &t16, xp) },
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx2, 2) => unsafe { x86_avx2::dot_perm::<2>(bytes, &t16, xp) },
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx2, 1) => unsafe { x86_avx2::dot_perm::<1>(bytes, &t16, xp) },
                _ => 0.0,
            };
            head + dot_span(self.isa, self.bits, row, start + done, table, &x[done..])
        }
        #[cfg(not(target_arch = "x86_64"))]
        dot_span(self.isa, self.bits, row, start, table, x)
    }
}

#[cfg(feature = "alloc")]
impl DotPlan<'_> {
    /// [`dot`](Self::dot) for `R` rows over the same span, `rows[k]` with `tables[k]`; only
    /// the first `live` results are needed. On AVX-512 at 1, 2 and 4 bits the whole blocks
    /// of all `R` rows go through one kernel that shares each load of the permuted `x`
    /// (every row is computed then, `live` or not: the caller pads with real rows). A row's
    /// result never depends on its companions, so batching changes no bits.
    pub fn dot_rows<const R: usize>(
        &self,
        rows: &[&[u8]; R],
        tables: &[&Table; R],
        live: usize,
        start: usize,
        len: usize,
    ) -> [f32; R] {
        let mut out = [0.0f32; R];
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512
            && self.block > 0
            && start.is_multiple_of(self.block)
            && tables.iter().all(|t| t.len <= 16)
        {
            let blocks =
                (len / self.block).min(self.xperm.len().saturating_sub(start) / self.block);
            let done = blocks * self.block;
            let bytes_per_block = self.block * usize::from(self.bits) / 8;
            let b0 = start / self.block * bytes_per_block;
            let b1 = b0 + blocks * bytes_per_block;
            let bytes: [&[u8]; R] = core::array::from_fn(|k| &rows[k][b0..b1]);
            let xp = &self.xperm[start..start + done];
            let t: [&[f32; 256]; R] = core::array::from_fn(|k| &tables[k].v);
            // SAFETY (all arms): AVX-512 was detected; every row holds `blocks` blocks of
            // bytes and `xp` holds `blocks` blocks of floats.
            out = match self.bits {
                4 => unsafe { x86_avx512::dot_perm_rows::<4, R>(&bytes, &t, xp) },
                2 => unsafe { x86_avx512::dot_perm_rows::<2, R>(&bytes, &t, xp) },
                _ => unsafe { x86_avx512::dot_perm_rows::<1, R>(&bytes, &t, xp) },
            };
            if done < len {
                let x = &self.x[start + done..start + len];
                for k in 0..live.min(R) {
                    let (row, table) = (rows[k], tables[k]);
                    out[k] += dot_span(self.isa, self.bits, row, start + done, table, x);
                }
            }
            return out;
        }
        for k in 0..live.min(R) {
            out[k] = self.dot(rows[k], start, len, tables[k]);
        }
        out
    }
}

/// Nearest-level encoding of `f32` weights, code for code identical to
/// [`Codebook::encode`], but branch-free and vectorized.
///
/// Each `f64` threshold `t` of the codebook, with its tie rule (`x >= t` below zero, `x > t`
/// at or above), becomes one `f32` cut `c` with `x > c` exactly when the rule holds, for every
/// `f32` `x`. That is possible because no `f32` lies strictly between `t` and its `f32`
/// rounding: if `t` rounds up to `r`, the rule holds iff `x >= r`, i.e. `x > pred(r)`; if it
/// rounds down (or is exact and strict), iff `x > r`. The code is then the number of cuts below
/// `x`, counted with SIMD compares for up to 31 cuts and by a branch-free binary search
/// otherwise. NaN compares false everywhere and gets code 0, as in the reference.
///
/// ```
/// use expquant::{kernels::Encoder, Codebook};
/// let cb = Codebook::new(&[-1.0f32, 0.0, 0.5, 1.0])?;
/// let mut codes = [0u8; 4];
/// Encoder::new(&cb).encode(&[0.3, 0.25, -0.5, 7.0], &mut codes)?;
/// assert_eq!(codes, [2, 1, 1, 3]);
/// # Ok::<(), expquant::Error>(())
/// ```
#[derive(Clone)]
pub struct Encoder {
    len: usize,
    /// Strict cuts, ascending, padded with +∞ to 255 for the binary search.
    cuts: [f32; 255],
}

impl core::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Encoder")
            .field("cuts", &&self.cuts[..self.len])
            .finish()
    }
}

/// The `f32` cut `c` with `x > c` exactly when `x` lies on the upper side of threshold `t`
/// under the codebook's tie rule (see [`Encoder`]).
fn strict_cut(t: f64) -> f32 {
    let inclusive = t < 0.0;
    let r = t as f32;
    let rw = f64::from(r);
    if rw > t || (rw == t && inclusive) {
        next_down(r)
    } else {
        r
    }
}

/// The largest `f32` below `x` (`x` finite).
fn next_down(x: f32) -> f32 {
    if x == 0.0 {
        -f32::from_bits(1)
    } else if x > 0.0 {
        f32::from_bits(x.to_bits() - 1)
    } else {
        f32::from_bits(x.to_bits() + 1)
    }
}

impl Encoder {
    /// The encoder of a codebook.
    pub fn new(codebook: &Codebook<f32>) -> Self {
        let mut encoder = Self::empty();
        encoder.set_thresholds(codebook.thresholds().iter().copied());
        encoder
    }

    /// An encoder with no cuts yet (every value gets code 0), to be [`refill`](Self::refill)ed.
    pub(crate) fn empty() -> Self {
        Encoder {
            len: 0,
            cuts: [f32::INFINITY; 255],
        }
    }

    /// The encoder of levels that a [`Codebook`] would accept (1 to 256, finite, strictly
    /// ascending), without building one.
    #[cfg(test)]
    fn from_levels(levels: &[f32]) -> Self {
        let mut encoder = Self::empty();
        encoder.refill(levels);
        encoder
    }

    /// Makes this the encoder of `levels` (as for `from_levels`) in place: quantizing small
    /// groups needs an encoder per group, and filling a codebook (3 KiB) or moving a fresh
    /// encoder (1 KiB) for each would cost more than encoding the group.
    pub(crate) fn refill(&mut self, levels: &[f32]) {
        debug_assert!(Codebook::new(levels).is_ok());
        self.set_thresholds(
            levels
                .windows(2)
                .map(|pair| crate::codebook::midpoint(pair[0], pair[1])),
        );
    }

    fn set_thresholds(&mut self, thresholds: impl Iterator<Item = f64>) {
        let mut len = 0;
        for (c, t) in self.cuts.iter_mut().zip(thresholds) {
            *c = strict_cut(t);
            len += 1;
        }
        // The binary search reads past `len`: cuts left from a longer codebook go back to +∞.
        for c in &mut self.cuts[len..self.len.max(len)] {
            *c = f32::INFINITY;
        }
        self.len = len;
    }

    /// The code of one weight (the same as [`Codebook::encode`]).
    #[inline]
    pub fn encode_one(&self, x: f32) -> u8 {
        // Branch-free binary search over the +∞-padded cuts: `pos` counts cuts below `x`.
        let mut step = (self.len + 1).next_power_of_two() / 2;
        let mut pos = 0usize;
        while step > 0 {
            pos += usize::from(x > self.cuts[pos + step - 1]) * step;
            step /= 2;
        }
        pos as u8
    }

    /// Encodes `x` into `out` (same length) on the detected path.
    pub fn encode(&self, x: &[f32], out: &mut [u8]) -> Result<()> {
        self.encode_with(Isa::detect(), x, out)
    }

    /// [`encode`](Self::encode) on a chosen path (one the CPU lacks falls back to
    /// [`Isa::Swar`]; [`Isa::Scalar`] is [`Codebook::encode`]'s rule via the cuts, one at a
    /// time).
    pub fn encode_with(&self, isa: Isa, x: &[f32], out: &mut [u8]) -> Result<()> {
        if x.len() != out.len() {
            return Err(Error::BufferLength {
                what: "encoded output",
                expected: x.len(),
                actual: out.len(),
            });
        }
        self.encode_unchecked(isa.or_portable(), x, out);
        Ok(())
    }

    pub(crate) fn encode_unchecked(&self, isa: Isa, x: &[f32], out: &mut [u8]) {
        #[cfg(any(
            target_arch = "x86_64",
            all(target_arch = "aarch64", target_feature = "neon")
        ))]
        let cuts = &self.cuts[..self.len];
        match isa {
            // SAFETY: AVX-512 was detected; the lengths match.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if self.len <= 31 => unsafe { x86_avx512::encode_count(cuts, x, out) },
            // SAFETY: AVX2 and FMA were detected; the lengths match.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 if self.len <= 31 => unsafe { x86_avx2::encode_count(cuts, x, out) },
            // SAFETY: the target has NEON.
            #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
            Isa::Neon if self.len <= 31 => unsafe { aarch64_neon::encode_count(cuts, x, out) },
            _ => {
                for (c, &w) in out.iter_mut().zip(x) {
                    *c = self.encode_one(w);
                }
            }
        }
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;

    #[test]
    fn encoder_from_levels_has_the_codebook_encoders_cuts() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 10.0
        };
        for len in [1usize, 2, 3, 7, 15, 16, 31, 32, 100, 255, 256] {
            let mut levels: alloc::vec::Vec<f32> = (0..len).map(|_| next()).collect();
            levels.sort_by(f32::total_cmp);
            levels.dedup();
            // Exact midpoints, ties at zero and huge magnitudes exercise the rounding rule.
            if levels.len() >= 3 {
                levels[0] = -f32::MAX;
                let last = levels.len() - 1;
                levels[last] = f32::MAX;
            }
            let codebook = Codebook::new(&levels).unwrap();
            let from_codebook = Encoder::new(&codebook);
            let from_levels = Encoder::from_levels(&levels);
            assert_eq!(from_levels.len, from_codebook.len);
            assert_eq!(
                from_levels.cuts.map(f32::to_bits),
                from_codebook.cuts.map(f32::to_bits)
            );
        }
        // Refilling a long encoder with a short codebook leaves no stale cuts behind.
        let mut reused = Encoder::from_levels(&[-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]);
        reused.refill(&[-1.0, 1.0]);
        assert_eq!(
            reused.cuts.map(f32::to_bits),
            Encoder::from_levels(&[-1.0, 1.0]).cuts.map(f32::to_bits)
        );
        let symmetric = [-1.0f32, -0.25, 0.0, 0.25, 1.0];
        let from_levels = Encoder::from_levels(&symmetric);
        let from_codebook = Encoder::new(&Codebook::new(&symmetric).unwrap());
        assert_eq!(
            from_levels.cuts.map(f32::to_bits),
            from_codebook.cuts.map(f32::to_bits)
        );
    }
}
