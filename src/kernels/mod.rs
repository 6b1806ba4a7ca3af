//! Dequantize, dot product, GEMV and encoding on packed codes, without materializing the
//! weights.
//!
//! # Paths
//! Each kernel has a plain scalar reference ([`Isa::scalar`]: one code at a time, kept as the
//! definition every faster path is tested against), a portable word-at-a-time path
//! ([`Isa::portable`]: codes unpacked eight per `u64`, then a table lookup; `no_std` and every
//! target), on x86-64 an AVX2 + FMA and an AVX-512 path, and on AArch64 a NEON path. The
//! instruction-set kernels live in the crate's ISA layer, one file per instruction set; the
//! functions here choose among them. [`Isa::detect`] decides once: with `std`, by run-time
//! detection (cached); without it, by the target features the crate was compiled with. NEON is
//! a baseline feature of the AArch64 targets that enable it, so there the target decides.
//!
//! # Files
//! `decode` (decode and its row kernel), `dot` (dot product, its row kernel and the GEMV's
//! plan), `encode` ([`Encoder`]), `gemm` (the GEMM on packed weights: decoded panels and a
//! register-blocked micro-kernel; its module docs give the layouts of `X` and `Y`); this file
//! holds the shared checks and the lookup table.
//!
//! # Numbers
//! Decoding and encoding are exact: every path writes the same floats and the same codes.
//! Dot products sum in a different order on each path (several accumulators, lane-wise), so
//! they agree with the reference to within ordinary `f32` summation error:
//! `|fast − reference| <= 1e-5 · Σ|table[code_j] · x_j|` for the lengths the tests cover.
//!
//! # Int8 activations
//! [`dot_int8`] and the tensors' `gemv_int8` are an explicit precision mode: `x` is quantized
//! once per call to int8 in blocks of 32 values with an `f32` scale each, each codebook's
//! levels to int8 with a scale of their own, and the products are summed exactly in
//! integers (AVX2 `vpmaddubsw`/`vpmaddwd`, or `vpdpbusd` where the CPU has AVX-512 VNNI or
//! AVX-VNNI, which give the same bits; the scalar reference everywhere else). With
//! block scale `s_b = max_b|x| / 127` and level scale `t = max|L| / 127`, the result differs
//! from the exact `Σ L_j·x_j` by at most
//! `Σ_j (|L_j|·s_b/2 + t·|x_j|/2 + t·s_b/4)` plus `f32` summation error: about `1/127` of
//! `Σ|L_j·x_j|` in the worst case. A NaN or infinite `x` is an error in this mode. The 4-bit
//! GEMV of exponential and linear codebooks derives the int8 levels from the unit levels
//! (`round(127·q^k)`, `round(127·u_k)`) with `t = a / 127`, which is `max|L| / 127` since
//! their top level is `a`: each int8 level is within half a step (plus `f32` rounding of the
//! unit level) of `L / t`, as the bound assumes.

mod decode;
mod dot;
mod encode;
mod gemm;
mod int8;

#[cfg(feature = "alloc")]
pub(crate) use crate::isa::portable::QBLOCK;
pub use crate::isa::{Isa, IsaKind};
pub(crate) use decode::decode_span;
pub use decode::{decode, decode_with};
#[cfg(feature = "alloc")]
pub(crate) use dot::DotPlan;
pub use dot::{dot, dot_with};
pub(crate) use dot::{dot3_groups, dot4_groups, dot_scaled, dot_span};
#[cfg(target_arch = "x86_64")]
pub(crate) use dot::{
    dot_permuted_avx2, dot_permuted_scaled_avx2, dot_scaled_groups as dot_scaled_from,
};
#[cfg(feature = "compensate")]
pub(crate) use encode::strict_cut;
pub use encode::Encoder;
#[cfg(feature = "parallel")]
pub(crate) use gemm::ROWS_PER_PANEL;
pub(crate) use gemm::{gemm_rows, GemmSource};
#[cfg(all(test, feature = "alloc"))]
pub(crate) use int8::dot4_i8_groups;
#[cfg(feature = "alloc")]
pub(crate) use int8::{
    dot3_i8_groups, dot4_i8_groups_rows, dot4_i8_rows, dot4_i8_scaled, dot4_i8_scaled_rows,
    dot_int8_span, dot_int8_two_magnitudes, table16_i8, I8Table, Int8X, ROWS_PER_PASS,
};
pub use int8::{dot_int8, dot_int8_with};

use crate::error::{Error, Result};
use crate::isa::portable::code_at;
use crate::pack;

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
        t.set(levels);
        t
    }

    /// Makes `levels` (at most 256) this table's first entries and its length, in place
    /// (the entries past them keep their values).
    pub fn set(&mut self, levels: &[f32]) {
        let n = levels.len().min(256);
        self.v[..n].copy_from_slice(&levels[..n]);
        self.len = n.max(1);
    }

    /// `t16[i] = v[i mod 2^bits]`: what the lane-permuted kernels index with garbage above
    /// the code bits.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn repeated16(&self, bits: u8) -> [f32; 16] {
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
