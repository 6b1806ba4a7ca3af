//! AVX-512 kernels (F, BW, VL, with AVX2 and FMA; VBMI where present): decode, dot product,
//! encode, pack and unpack, and the fit's scoring lanes.
//!
//! The `#[target_feature]` functions are private; the way in is a method on the [`Avx512`]
//! or [`Avx512Vbmi`] proof, which only detection creates. Their one obligation is the CPU
//! feature, except where a method says otherwise and checks it: every kernel clamps its work
//! to the slices it is given, and each raw load or store sits under the loop condition that
//! keeps it in bounds.

use core::arch::x86_64::*;

use super::portable::{CoarseRows, LaneTables, FIX, LANES, PAIRS_PER_SUM};
use super::{Avx512, Avx512Vbmi};

impl Avx512 {
    /// `out[i] = table[codes[i]]` for codes below `levels`, over the shorter slice.
    #[inline]
    pub(crate) fn lut(self, codes: &[u8], table: &[f32; 256], levels: usize, out: &mut [f32]) {
        // SAFETY: an `Avx512` proof exists only when detection found AVX-512 F/BW/VL, AVX2, FMA.
        unsafe { lut(codes, table, levels, out) }
    }

    /// `Σ table[codes[i]] · x[i]` for codes below `levels`, over the shorter slice.
    #[inline]
    pub(crate) fn lut_dot(self, codes: &[u8], table: &[f32; 256], levels: usize, x: &[f32]) -> f32 {
        // SAFETY: an `Avx512` proof exists only when detection found AVX-512 F/BW/VL, AVX2, FMA.
        unsafe { lut_dot(codes, table, levels, x) }
    }

    /// 4-bit decode straight from packed bytes (at most 16 levels).
    #[inline]
    pub(crate) fn decode4(self, bytes: &[u8], table: &[f32; 256], out: &mut [f32]) {
        // SAFETY: an `Avx512` proof exists only when detection found AVX-512 F/BW/VL, AVX2, FMA.
        unsafe { decode4(bytes, table, out) }
    }

    /// 4-bit dot product straight from packed bytes (at most 16 levels).
    #[inline]
    pub(crate) fn dot4(self, bytes: &[u8], table: &[f32; 256], x: &[f32]) -> f32 {
        // SAFETY: an `Avx512` proof exists only when detection found AVX-512 F/BW/VL, AVX2, FMA.
        unsafe { dot4(bytes, table, x) }
    }

    /// Dot product of whole blocks of the lane-permuted layout (see [`dot_perm`]).
    #[inline]
    pub(crate) fn dot_perm<const BITS: u32>(
        self,
        bytes: &[u8],
        t16: &[f32; 16],
        xp: &[f32],
    ) -> f32 {
        // SAFETY: an `Avx512` proof exists only when detection found AVX-512 F/BW/VL, AVX2, FMA.
        unsafe { dot_perm::<BITS>(bytes, t16, xp) }
    }

    /// [`dot_perm`](Self::dot_perm) for `R` rows sharing each load of `xp` (see
    /// [`dot_perm_rows`]).
    #[inline]
    pub(crate) fn dot_perm_rows<const BITS: u32, const R: usize>(
        self,
        rows: &[&[u8]; R],
        tables: &[&[f32; 256]; R],
        xp: &[f32],
    ) -> [f32; R] {
        // SAFETY: an `Avx512` proof exists only when detection found AVX-512 F/BW/VL, AVX2, FMA.
        unsafe { dot_perm_rows::<BITS, R>(rows, tables, xp) }
    }

    /// Codes as counts of strict thresholds: `out[i] = #{t : x[i] > cuts[t]}`.
    #[inline]
    pub(crate) fn encode_count(self, cuts: &[f32], x: &[f32], out: &mut [u8]) {
        // SAFETY: an `Avx512` proof exists only when detection found AVX-512 F/BW/VL, AVX2, FMA.
        unsafe { encode_count(cuts, x, out) }
    }

    /// The fit's `f32` scores of sixteen candidates with `CUTS` thresholds (see
    /// [`portable::score`](super::portable::score)); the tables hold at least `CUTS` rows.
    #[inline]
    pub(crate) fn score<const CUTS: usize>(
        self,
        t: LaneTables<'_, f32>,
        x: &[f32],
        w: Option<&[f32]>,
    ) -> [f32; LANES] {
        // SAFETY: an `Avx512` proof exists only when detection found AVX-512 F/BW/VL, AVX2, FMA.
        unsafe { score::<CUTS>(t, x, w) }
    }

    /// [`portable::fixed_rows`](super::portable::fixed_rows) with AVX-512.
    #[inline]
    pub(crate) fn fixed_rows(self, src: &[[f32; LANES]], dst: &mut [[u32; LANES]]) {
        // SAFETY: an `Avx512` proof exists only when detection found AVX-512 F/BW/VL, AVX2, FMA.
        unsafe { fixed_rows(src, dst) }
    }

    /// The fit's fixed-point scores of sixteen candidates with `CUTS` thresholds (see
    /// [`portable::score_fixed`](super::portable::score_fixed)); the tables hold at least `CUTS` rows.
    #[inline]
    pub(crate) fn score_fixed<const CUTS: usize>(
        self,
        t: LaneTables<'_, u32>,
        pairs: &[u32],
    ) -> [f32; LANES] {
        // SAFETY: an `Avx512` proof exists only when detection found AVX-512 F/BW/VL, AVX2, FMA.
        unsafe { score_fixed::<CUTS>(t, pairs) }
    }

    /// The fit's whole coarse grid of `32·V` candidates in one pass, from the levels by
    /// magnitude; `out` holds one score per candidate.
    #[inline]
    pub(crate) fn score_coarse<const V: usize>(
        self,
        table: CoarseRows<'_>,
        pairs: &[u32],
        out: &mut [f32],
    ) {
        // SAFETY: an `Avx512` proof exists only when detection found AVX-512 F/BW/VL, AVX2, FMA.
        unsafe { score_coarse::<V>(table, pairs, out) }
    }

    /// Runs `f` compiled with AVX-512 enabled (see [`run`]): `f` should be a closure over
    /// `#[inline(always)]` code, which is then vectorized with 512-bit registers.
    #[inline]
    pub(crate) fn run<R>(self, f: impl FnOnce() -> R) -> R {
        // SAFETY: an `Avx512` proof exists only when detection found AVX-512 F/BW/VL, AVX2, FMA.
        unsafe { run(f) }
    }
}

impl Avx512Vbmi {
    /// 8-bit dot product through byte planes (see [`dot8_vbmi`]), over the shorter slice.
    #[inline]
    pub(crate) fn dot8(self, codes: &[u8], table: &[f32; 256], x: &[f32]) -> f32 {
        // SAFETY: an `Avx512Vbmi` proof exists only when detection found AVX-512 F/BW/VL/VBMI,
        // AVX2 and FMA.
        unsafe { dot8_vbmi(codes, table, x) }
    }

    /// Packs `codes` (each below `2^bits`) at `bits` in 1..=7 into `out`; `false`, with
    /// nothing written, at 8 bits or when `out` is not exactly the packed length.
    #[inline]
    pub(crate) fn pack(self, codes: &[u8], bits: u8, out: &mut [u8]) -> bool {
        if !(1..=7).contains(&bits) || out.len() != (codes.len() * usize::from(bits)).div_ceil(8) {
            return false;
        }
        // SAFETY: an `Avx512Vbmi` proof exists only when detection found AVX-512 F/BW/VBMI;
        // `out.len()` was just checked to be the packed length of `codes`.
        unsafe {
            match bits {
                1 => pack_vbmi::<1>(codes, out),
                2 => pack_vbmi::<2>(codes, out),
                3 => pack_vbmi::<3>(codes, out),
                4 => pack_vbmi::<4>(codes, out),
                5 => pack_vbmi::<5>(codes, out),
                6 => pack_vbmi::<6>(codes, out),
                _ => pack_vbmi::<7>(codes, out),
            }
        }
        true
    }

    /// Unpacks `out.len()` codes at `bits` in 1, 2, 3, 5, 6 or 7 (at 4 and 8 bits the
    /// portable loops are already faster than memory); `false`, with nothing written, at
    /// other widths or when `packed` is not exactly the packed length.
    #[inline]
    pub(crate) fn unpack(self, packed: &[u8], bits: u8, out: &mut [u8]) -> bool {
        if !matches!(bits, 1..=3 | 5..=7)
            || packed.len() != (out.len() * usize::from(bits)).div_ceil(8)
        {
            return false;
        }
        // SAFETY: an `Avx512Vbmi` proof exists only when detection found AVX-512 F/BW/VBMI;
        // `packed.len()` was just checked to be the packed length of `out`.
        unsafe {
            match bits {
                1 => unpack_vbmi::<1>(packed, out),
                2 => unpack_vbmi::<2>(packed, out),
                3 => unpack_vbmi::<3>(packed, out),
                5 => unpack_vbmi::<5>(packed, out),
                6 => unpack_vbmi::<6>(packed, out),
                _ => unpack_vbmi::<7>(packed, out),
            }
        }
        true
    }
}

/// `out[i] = table[codes[i]]` for codes below `levels`.
///
/// # Safety
/// The CPU supports AVX-512 F/BW/VL, AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn lut(codes: &[u8], table: &[f32; 256], levels: usize, out: &mut [f32]) {
    let n = codes.len().min(out.len());
    let mut i = 0;
    // SAFETY: every load reads 16 bytes at `i + 16 <= n`, every store writes 16 floats at
    // `i + 16 <= n`; a gather reads `table` at a u8 index, below its 256 entries.
    unsafe {
        let c = codes.as_ptr();
        let o = out.as_mut_ptr();
        if levels <= 16 {
            let t0 = _mm512_loadu_ps(table.as_ptr());
            while i + 16 <= n {
                let idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(c.add(i).cast()));
                _mm512_storeu_ps(o.add(i), _mm512_permutexvar_ps(idx, t0));
                i += 16;
            }
        } else if levels <= 32 {
            let t0 = _mm512_loadu_ps(table.as_ptr());
            let t1 = _mm512_loadu_ps(table.as_ptr().add(16));
            while i + 16 <= n {
                let idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(c.add(i).cast()));
                _mm512_storeu_ps(o.add(i), _mm512_permutex2var_ps(t0, idx, t1));
                i += 16;
            }
        } else {
            while i + 16 <= n {
                let idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(c.add(i).cast()));
                _mm512_storeu_ps(o.add(i), _mm512_i32gather_ps::<4>(idx, table.as_ptr()));
                i += 16;
            }
        }
    }
    for (slot, &code) in out[i..n].iter_mut().zip(&codes[i..n]) {
        *slot = table[usize::from(code)];
    }
}

/// `Σ table[codes[i]] · x[i]` for codes below `levels`.
///
/// # Safety
/// The CPU supports AVX-512 F/BW/VL, AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn lut_dot(codes: &[u8], table: &[f32; 256], levels: usize, x: &[f32]) -> f32 {
    let n = codes.len().min(x.len());
    let mut i = 0;
    // SAFETY: loads of 16 codes and 16 floats at `i + 16 <= n`; gathers index `table` by u8.
    let mut acc = unsafe {
        let c = codes.as_ptr();
        let xp = x.as_ptr();
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let t0 = _mm512_loadu_ps(table.as_ptr());
        let t1 = _mm512_loadu_ps(table.as_ptr().add(16));
        let look = |idx: __m512i| -> __m512 {
            if levels <= 16 {
                _mm512_permutexvar_ps(idx, t0)
            } else if levels <= 32 {
                _mm512_permutex2var_ps(t0, idx, t1)
            } else {
                _mm512_i32gather_ps::<4>(idx, table.as_ptr())
            }
        };
        while i + 32 <= n {
            let i0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(c.add(i).cast()));
            let i1 = _mm512_cvtepu8_epi32(_mm_loadu_si128(c.add(i + 16).cast()));
            acc0 = _mm512_fmadd_ps(look(i0), _mm512_loadu_ps(xp.add(i)), acc0);
            acc1 = _mm512_fmadd_ps(look(i1), _mm512_loadu_ps(xp.add(i + 16)), acc1);
            i += 32;
        }
        while i + 16 <= n {
            let i0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(c.add(i).cast()));
            acc0 = _mm512_fmadd_ps(look(i0), _mm512_loadu_ps(xp.add(i)), acc0);
            i += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    };
    for (&code, &xi) in codes[i..n].iter().zip(&x[i..n]) {
        acc += table[usize::from(code)] * xi;
    }
    acc
}

/// Splits 16 packed bytes into their 32 nibbles, in stream order (low nibble first).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
fn nibbles(v: __m128i) -> (__m128i, __m128i) {
    let mask = _mm_set1_epi8(0x0f);
    let lo = _mm_and_si128(v, mask);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), mask);
    (_mm_unpacklo_epi8(lo, hi), _mm_unpackhi_epi8(lo, hi))
}

/// 4-bit decode straight from packed bytes: `out[i] = table[nibble i of bytes]`.
///
/// # Safety
/// The CPU supports AVX-512 F/BW/VL, AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn decode4(bytes: &[u8], table: &[f32; 256], out: &mut [f32]) {
    let n = out.len().min(bytes.len() * 2);
    let mut i = 0;
    // SAFETY: each step reads bytes `i/2 .. i/2 + 16` (inside since `i + 32 <= n <= 2·len`)
    // and writes floats `i .. i + 32` (inside since `i + 32 <= n`).
    unsafe {
        let t = _mm512_loadu_ps(table.as_ptr());
        let b = bytes.as_ptr();
        let o = out.as_mut_ptr();
        while i + 32 <= n {
            let (a, c) = nibbles(_mm_loadu_si128(b.add(i / 2).cast()));
            _mm512_storeu_ps(o.add(i), _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(a), t));
            _mm512_storeu_ps(
                o.add(i + 16),
                _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(c), t),
            );
            i += 32;
        }
    }
    for (k, slot) in out.iter_mut().enumerate().take(n).skip(i) {
        *slot = table[usize::from((bytes[k / 2] >> ((k % 2) * 4)) & 0x0f)];
    }
}

/// 4-bit dot product straight from packed bytes: `Σ table[nibble i] · x[i]`.
///
/// # Safety
/// The CPU supports AVX-512 F/BW/VL, AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn dot4(bytes: &[u8], table: &[f32; 256], x: &[f32]) -> f32 {
    let n = x.len().min(bytes.len() * 2);
    let mut i = 0;
    // SAFETY: each step reads bytes `i/2 .. i/2 + 16` and floats `i .. i + 32`, inside
    // because `i + 32 <= n`.
    let mut acc = unsafe {
        let t = _mm512_loadu_ps(table.as_ptr());
        let b = bytes.as_ptr();
        let xp = x.as_ptr();
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        while i + 32 <= n {
            let (a, c) = nibbles(_mm_loadu_si128(b.add(i / 2).cast()));
            let wa = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(a), t);
            let wc = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(c), t);
            acc0 = _mm512_fmadd_ps(wa, _mm512_loadu_ps(xp.add(i)), acc0);
            acc1 = _mm512_fmadd_ps(wc, _mm512_loadu_ps(xp.add(i + 16)), acc1);
            i += 32;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    };
    for (k, &xk) in x.iter().enumerate().take(n).skip(i) {
        acc += table[usize::from((bytes[k / 2] >> ((k % 2) * 4)) & 0x0f)] * xk;
    }
    acc
}

/// Codes per 64-byte block of the lane-permuted layout at `BITS` bits.
pub(crate) const fn perm_block(bits: u32) -> usize {
    512 / bits as usize
}

/// Dot product of whole 64-byte blocks of `BITS`-bit codes (`BITS` in 1, 2, 4) with an `x`
/// already permuted to match: in block `b`, 32-bit lane `l` holds codes `l·C .. l·C + C`
/// (`C = 32 / BITS`), and `xp[b·16·C + m·16 + l]` is the `x` of code `l·C + m`. Shifting the
/// whole block right by `BITS` then brings code `m + 1` of every lane into its low bits, which
/// is all `vpermps` reads, so a block costs one load and one shift, permute and FMA per 16
/// codes. `t16[i]` must be `table[i mod 2^BITS]`.
///
/// # Safety
/// The CPU supports AVX-512 F/BW/VL, AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn dot_perm<const BITS: u32>(bytes: &[u8], t16: &[f32; 16], xp: &[f32]) -> f32 {
    let per_lane = (32 / BITS) as usize;
    let blocks = (bytes.len() / 64).min(xp.len() / perm_block(BITS));
    // SAFETY: block `b` reads bytes `64b .. 64b + 64` and floats `b·16·C .. (b+1)·16·C`,
    // inside both slices for `b < blocks`.
    unsafe {
        let t = _mm512_loadu_ps(t16.as_ptr());
        // Four named accumulators (not an array indexed by `m % 4`, which the compiler may
        // keep in memory) hide the FMA latency.
        let (mut a0, mut a1, mut a2, mut a3) = (
            _mm512_setzero_ps(),
            _mm512_setzero_ps(),
            _mm512_setzero_ps(),
            _mm512_setzero_ps(),
        );
        for b in 0..blocks {
            let mut v = _mm512_loadu_si512(bytes.as_ptr().add(64 * b).cast());
            let mut xb = xp.as_ptr().add(b * 16 * per_lane);
            // `per_lane` (8, 16 or 32) is a multiple of 4.
            for _ in 0..per_lane / 4 {
                a0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(v, t), _mm512_loadu_ps(xb), a0);
                let v1 = _mm512_srli_epi32::<BITS>(v);
                a1 = _mm512_fmadd_ps(
                    _mm512_permutexvar_ps(v1, t),
                    _mm512_loadu_ps(xb.add(16)),
                    a1,
                );
                let v2 = _mm512_srli_epi32::<BITS>(v1);
                a2 = _mm512_fmadd_ps(
                    _mm512_permutexvar_ps(v2, t),
                    _mm512_loadu_ps(xb.add(32)),
                    a2,
                );
                let v3 = _mm512_srli_epi32::<BITS>(v2);
                a3 = _mm512_fmadd_ps(
                    _mm512_permutexvar_ps(v3, t),
                    _mm512_loadu_ps(xb.add(48)),
                    a3,
                );
                v = _mm512_srli_epi32::<BITS>(v3);
                xb = xb.add(64);
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)))
    }
}

/// [`dot_perm`] for `R` rows at once: every load of the permuted `x` feeds the FMAs of all `R`
/// rows, each with its own table register and two accumulators (codes `m` even and odd).
/// A row's result depends only on its own codes, table and `x`, never on the other rows, so a
/// row gives the same bits whichever rows it is batched with.
///
/// `tables[k]` is row `k`'s table (its first `2^BITS` entries are used, repeated to 16 lanes
/// here with one permute).
///
/// # Safety
/// The CPU supports AVX-512 F/BW/VL, AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn dot_perm_rows<const BITS: u32, const R: usize>(
    rows: &[&[u8]; R],
    tables: &[&[f32; 256]; R],
    xp: &[f32],
) -> [f32; R] {
    let per_lane = (32 / BITS) as usize;
    let mut blocks = xp.len() / perm_block(BITS);
    for row in rows {
        blocks = blocks.min(row.len() / 64);
    }
    // SAFETY: block `b` reads bytes `64b .. 64b + 64` of every row and floats
    // `b·16·C .. (b+1)·16·C` of `xp`, inside all slices for `b < blocks`.
    unsafe {
        // Lane `i` reads entry `i mod 2^BITS`: the index bits above the code are garbage.
        let wrap = _mm512_and_si512(
            _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
            _mm512_set1_epi32((1 << BITS) - 1),
        );
        let t: [__m512; R] = core::array::from_fn(|k| {
            _mm512_permutexvar_ps(wrap, _mm512_loadu_ps(tables[k].as_ptr()))
        });
        let mut a0 = [_mm512_setzero_ps(); R];
        let mut a1 = [_mm512_setzero_ps(); R];
        for b in 0..blocks {
            let mut v: [__m512i; R] =
                core::array::from_fn(|k| _mm512_loadu_si512(rows[k].as_ptr().add(64 * b).cast()));
            let mut xb = xp.as_ptr().add(b * 16 * per_lane);
            // `per_lane` (8, 16 or 32) is even.
            for _ in 0..per_lane / 2 {
                let x0 = _mm512_loadu_ps(xb);
                let x1 = _mm512_loadu_ps(xb.add(16));
                for k in 0..R {
                    a0[k] = _mm512_fmadd_ps(_mm512_permutexvar_ps(v[k], t[k]), x0, a0[k]);
                    let v1 = _mm512_srli_epi32::<BITS>(v[k]);
                    a1[k] = _mm512_fmadd_ps(_mm512_permutexvar_ps(v1, t[k]), x1, a1[k]);
                    v[k] = _mm512_srli_epi32::<BITS>(v1);
                }
                xb = xb.add(32);
            }
        }
        core::array::from_fn(|k| _mm512_reduce_add_ps(_mm512_add_ps(a0[k], a1[k])))
    }
}

/// 8-bit dot product through a 256-entry table split into byte planes (AVX-512 VBMI): plane
/// `p` holds byte `p` of every level (256 bytes, four registers). Per 64 codes, each plane is
/// two `vpermi2b` over 128 entries and a blend on bit 7 of the code; `vpunpck{l,h}{bw,wd}`
/// then interleave the four planes back into 64 floats. The codes are first transposed with
/// one `vpermb` (4×4 blocks of 4 bytes) so that the interleave comes out in stream order.
///
/// # Safety
/// The CPU supports AVX-512 F/BW/VL/VBMI, AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,avx2,fma")]
unsafe fn dot8_vbmi(codes: &[u8], table: &[f32; 256], x: &[f32]) -> f32 {
    let n = x.len().min(codes.len());
    let mut i = 0;
    let mut planes = [0u8; 1024];
    // SAFETY: table reads are floats `16j .. 16j + 16 <= 256`, plane writes bytes
    // `256p + 16j .. + 16 <= 1024`; the main loop reads codes and floats `i .. i + 64 <= n`.
    let mut acc = unsafe {
        for j in 0..16 {
            let v = _mm512_loadu_si512(table.as_ptr().add(16 * j).cast());
            let dst = planes.as_mut_ptr().add(16 * j);
            _mm_storeu_si128(dst.cast(), _mm512_cvtepi32_epi8(v));
            let v8 = _mm512_srli_epi32::<8>(v);
            _mm_storeu_si128(dst.add(256).cast(), _mm512_cvtepi32_epi8(v8));
            let v16 = _mm512_srli_epi32::<16>(v);
            _mm_storeu_si128(dst.add(512).cast(), _mm512_cvtepi32_epi8(v16));
            let v24 = _mm512_srli_epi32::<24>(v);
            _mm_storeu_si128(dst.add(768).cast(), _mm512_cvtepi32_epi8(v24));
        }
        let pl = |k: usize| _mm512_loadu_si512(planes.as_ptr().add(64 * k).cast());
        let t: [__m512i; 16] = core::array::from_fn(pl);
        // Byte `16L + 4k + i` takes code `16k + 4L + i`.
        let transpose: [u8; 64] = core::array::from_fn(|q| {
            let (l, k, i) = (q / 16, q / 4 % 4, q % 4);
            (16 * k + 4 * l + i) as u8
        });
        let transpose = _mm512_loadu_si512(transpose.as_ptr().cast());
        let mut acc = [_mm512_setzero_ps(); 4];
        let (c, xp) = (codes.as_ptr(), x.as_ptr());
        while i + 64 <= n {
            let v = _mm512_permutexvar_epi8(transpose, _mm512_loadu_si512(c.add(i).cast()));
            let high = _mm512_movepi8_mask(v);
            let b: [__m512i; 4] = core::array::from_fn(|p| {
                let lo = _mm512_permutex2var_epi8(t[4 * p], v, t[4 * p + 1]);
                let hi = _mm512_permutex2var_epi8(t[4 * p + 2], v, t[4 * p + 3]);
                _mm512_mask_blend_epi8(high, lo, hi)
            });
            let w01l = _mm512_unpacklo_epi8(b[0], b[1]);
            let w01h = _mm512_unpackhi_epi8(b[0], b[1]);
            let w23l = _mm512_unpacklo_epi8(b[2], b[3]);
            let w23h = _mm512_unpackhi_epi8(b[2], b[3]);
            let f = [
                _mm512_unpacklo_epi16(w01l, w23l),
                _mm512_unpackhi_epi16(w01l, w23l),
                _mm512_unpacklo_epi16(w01h, w23h),
                _mm512_unpackhi_epi16(w01h, w23h),
            ];
            for k in 0..4 {
                let xk = _mm512_loadu_ps(xp.add(i + 16 * k));
                acc[k] = _mm512_fmadd_ps(_mm512_castsi512_ps(f[k]), xk, acc[k]);
            }
            i += 64;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        ))
    };
    for (&code, &xi) in codes[i..n].iter().zip(&x[i..n]) {
        acc += table[usize::from(code)] * xi;
    }
    acc
}

/// Codes as counts of strict thresholds: `out[i] = #{t : x[i] > cuts[t]}` (see
/// the `kernels` `Encoder`).
///
/// # Safety
/// The CPU supports AVX-512 F/BW/VL, AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn encode_count(cuts: &[f32], x: &[f32], out: &mut [u8]) {
    let n = x.len().min(out.len());
    let mut i = 0;
    // SAFETY: each step reads floats `i .. i + 64` and writes bytes `i .. i + 64`, inside
    // because `i + 64 <= n`; the tail loop does the same 16 at a time.
    unsafe {
        let one = _mm512_set1_epi32(1);
        let xp = x.as_ptr();
        let o = out.as_mut_ptr();
        while i + 64 <= n {
            let xs = [
                _mm512_loadu_ps(xp.add(i)),
                _mm512_loadu_ps(xp.add(i + 16)),
                _mm512_loadu_ps(xp.add(i + 32)),
                _mm512_loadu_ps(xp.add(i + 48)),
            ];
            let mut acc = [_mm512_setzero_si512(); 4];
            for &c in cuts {
                let cv = _mm512_set1_ps(c);
                for k in 0..4 {
                    let m = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(xs[k], cv);
                    acc[k] = _mm512_mask_add_epi32(acc[k], m, acc[k], one);
                }
            }
            for (k, a) in acc.iter().enumerate() {
                _mm_storeu_si128(o.add(i + 16 * k).cast(), _mm512_cvtepi32_epi8(*a));
            }
            i += 64;
        }
        while i + 16 <= n {
            let xs = _mm512_loadu_ps(xp.add(i));
            let mut acc = _mm512_setzero_si512();
            for &c in cuts {
                let m = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(xs, _mm512_set1_ps(c));
                acc = _mm512_mask_add_epi32(acc, m, acc, one);
            }
            _mm_storeu_si128(o.add(i).cast(), _mm512_cvtepi32_epi8(acc));
            i += 16;
        }
    }
    for (slot, &xi) in out[i..n].iter_mut().zip(&x[i..n]) {
        *slot = cuts.iter().filter(|&&c| xi > c).count() as u8;
    }
}

/// Unpacks `out.len()` codes of `B` bits (1..=7) from the LSB-first stream `packed`, 64 codes
/// per step: one `vpermb` gives every 64-bit lane the `B` bytes holding its eight codes, one
/// `vpmultishiftqb` moves code `k` of the lane to byte `k` (bit offset `k·B`), one AND keeps
/// its `B` bits. The last partial step uses masked loads and stores, so nothing outside the
/// slices is touched and stray bits in the final byte are masked off.
///
/// # Safety
/// The CPU supports AVX-512 F/BW/VBMI; `packed.len() == packed_len(out.len(), B)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn unpack_vbmi<const B: usize>(packed: &[u8], out: &mut [u8]) {
    let n = out.len();
    let step = 8 * B; // packed bytes per 64 codes, at most 56
    let blocks = n / 64;
    debug_assert!(packed.len() >= blocks * step);
    let idx: [u8; 64] = core::array::from_fn(|i| ((i / 8) * B + i % 8) as u8);
    let ctrl: [u8; 64] = core::array::from_fn(|i| ((i % 8) * B) as u8);
    // SAFETY: the arrays are 64 bytes; every full load reads `packed[at..at + 64]` only when
    // `at + 64 <= packed.len()`, otherwise a masked load reads `packed[at..at + step]` or the
    // remaining bytes, all inside `packed` since `packed.len() >= blocks·step + ⌈rest·B/8⌉`.
    // Full stores write `out[64i..64i + 64]` for `i < blocks`; the tail store is masked to the
    // `n − 64·blocks` codes left.
    unsafe {
        let idx = _mm512_loadu_si512(idx.as_ptr().cast());
        let ctrl = _mm512_loadu_si512(ctrl.as_ptr().cast());
        let mask = _mm512_set1_epi8(((1u16 << B) - 1) as i8);
        let p = packed.as_ptr();
        let o = out.as_mut_ptr();
        let len = packed.len();
        let step_mask: u64 = (1u64 << step) - 1;
        let decode = |v: __m512i| {
            _mm512_and_si512(
                _mm512_multishift_epi64_epi8(ctrl, _mm512_permutexvar_epi8(idx, v)),
                mask,
            )
        };
        for i in 0..blocks {
            let at = i * step;
            let v = if at + 64 <= len {
                _mm512_loadu_si512(p.add(at).cast())
            } else {
                _mm512_maskz_loadu_epi8(step_mask, p.add(at).cast())
            };
            _mm512_storeu_si512(o.add(i * 64).cast(), decode(v));
        }
        let rest = n - blocks * 64;
        if rest > 0 {
            let at = blocks * step;
            let bytes = len - at; // ⌈rest·B/8⌉ < 64
            let v = _mm512_maskz_loadu_epi8((1u64 << bytes) - 1, p.add(at).cast());
            _mm512_mask_storeu_epi8(o.add(blocks * 64).cast(), (1u64 << rest) - 1, decode(v));
        }
    }
}

/// Packs `codes` (each below `2^B`, `B` in 1..=7) into the LSB-first stream `out`, 64 codes
/// per step: `vpmaddubsw` joins pairs (`c0 + c1·2^B`), `vpmaddwd` joins those into quads,
/// two shifts and a ternary-logic OR join the quads of each 64-bit lane into its `8·B` low
/// bits, and one `vpermb` packs the eight lanes' `B` bytes together. The last partial step
/// loads with zero masking (zero codes add zero bits, so unused bits stay 0) and stores
/// only the bytes left.
///
/// # Safety
/// The CPU supports AVX-512 F/BW/VBMI; `out.len() == packed_len(codes.len(), B)` and every
/// code is below `2^B`.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn pack_vbmi<const B: usize>(codes: &[u8], out: &mut [u8]) {
    let n = codes.len();
    let step = 8 * B; // packed bytes per 64 codes, at most 56
    let blocks = n / 64;
    debug_assert!(out.len() >= blocks * step);
    // Byte `j·B + k` of the result is byte `k` of lane `j`; the bytes past `8·B` are never
    // stored from a full step except as scratch the next step overwrites.
    let idx: [u8; 64] = core::array::from_fn(|i| {
        if i < step {
            ((i / B) * 8 + i % B) as u8
        } else {
            0
        }
    });
    // SAFETY: `idx` is 64 bytes; loads read `codes[64i..64i + 64]` for `i < blocks` and a
    // masked load the `rest` codes after them. A full 64-byte store at `at` happens only when
    // `at + 64 <= out.len()` (its bytes past `at + step` are overwritten by the next steps or
    // lie in bytes this call writes later), otherwise a masked store writes `step` bytes;
    // the tail store is masked to `⌈rest·B/8⌉ = out.len() − at` bytes.
    unsafe {
        let idx = _mm512_loadu_si512(idx.as_ptr().cast());
        let pair = _mm512_set1_epi16((1u16 | (1u16 << (B + 8))) as i16);
        let quad = _mm512_set1_epi32((1u32 | (1u32 << (2 * B + 16))) as i32);
        let low = _mm512_set1_epi64(0xffff_ffff);
        let shift = _mm_cvtsi64_si128(4 * B as i64);
        let c = codes.as_ptr();
        let o = out.as_mut_ptr();
        let len = out.len();
        let encode = |v: __m512i| {
            // Codes are below 2^7, so they are valid as the signed operand; the multipliers
            // 1 and 2^B ≤ 128 are the unsigned one. Pair sums stay below 2^14.
            let p = _mm512_maddubs_epi16(pair, v);
            // Quads: below 2^28, no overflow in i32.
            let q = _mm512_madd_epi16(p, quad);
            let hi = _mm512_sll_epi64(_mm512_srli_epi64::<32>(q), shift);
            // (q & low) | hi
            let w = _mm512_ternarylogic_epi64::<0xEA>(q, low, hi);
            _mm512_permutexvar_epi8(idx, w)
        };
        let step_mask: u64 = (1u64 << step) - 1;
        for i in 0..blocks {
            let at = i * step;
            let w = encode(_mm512_loadu_si512(c.add(i * 64).cast()));
            if at + 64 <= len {
                _mm512_storeu_si512(o.add(at).cast(), w);
            } else {
                _mm512_mask_storeu_epi8(o.add(at).cast(), step_mask, w);
            }
        }
        let rest = n - blocks * 64;
        if rest > 0 {
            let at = blocks * step;
            let v = _mm512_maskz_loadu_epi8((1u64 << rest) - 1, c.add(blocks * 64).cast());
            _mm512_mask_storeu_epi8(o.add(at).cast(), (1u64 << (len - at)) - 1, encode(v));
        }
    }
}

// ---- The fit's scoring lanes ------------------------------------------------------------

/// [`portable::score`](super::portable::score) with AVX-512: one compare and one masked move per threshold cover all
/// sixteen lanes, with the `CUTS` thresholds and levels held in registers across the whole
/// group. Bit-identical to the reference: the same operations in the same order.
///
/// # Safety
/// The CPU supports AVX-512 F.
#[target_feature(enable = "avx512f")]
unsafe fn score<const CUTS: usize>(
    t: LaneTables<'_, f32>,
    x: &[f32],
    w: Option<&[f32]>,
) -> [f32; LANES] {
    // SAFETY: every row holds `LANES` = 16 floats, one 512-bit load.
    let load = |row: &[f32; LANES]| unsafe { _mm512_loadu_ps(row.as_ptr()) };
    let base = load(t.base);
    let cut: [__m512; CUTS] = core::array::from_fn(|j| load(&t.cut[j]));
    let above: [__m512; CUTS] = core::array::from_fn(|j| load(&t.above[j]));
    let mut acc = _mm512_setzero_ps();
    for (i, &xi) in x.iter().enumerate() {
        let xv = _mm512_set1_ps(xi);
        let mut level = base;
        for j in 0..CUTS {
            level = _mm512_mask_mov_ps(
                level,
                _mm512_cmp_ps_mask::<_CMP_GT_OQ>(xv, cut[j]),
                above[j],
            );
        }
        let d = _mm512_sub_ps(xv, level);
        let mut e = _mm512_mul_ps(d, d);
        if let Some(w) = w {
            e = _mm512_mul_ps(e, _mm512_set1_ps(w[i]));
        }
        acc = _mm512_add_ps(acc, e);
    }
    let mut out = [0.0f32; LANES];
    // SAFETY: `out` holds 16 floats.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), acc) };
    out
}

/// [`portable::fixed_rows`](super::portable::fixed_rows) with AVX-512 (the same operations: multiply, add, minimum,
/// truncation; so the same bits). Refinement converts a batch per round, and the scalar
/// float-to-integer conversions would cost more than scoring it.
///
/// # Safety
/// The CPU supports AVX-512 F.
#[target_feature(enable = "avx512f")]
unsafe fn fixed_rows(src: &[[f32; LANES]], dst: &mut [[u32; LANES]]) {
    let scale = _mm512_set1_ps(FIX as f32);
    let half = _mm512_set1_ps(0.5);
    for (s, d) in src.iter().zip(dst) {
        // SAFETY: each row is 16 floats, one 512-bit load.
        let v = unsafe { _mm512_loadu_ps(s.as_ptr()) };
        let t = _mm512_cvttps_epu32(_mm512_min_ps(
            _mm512_add_ps(_mm512_mul_ps(v, scale), half),
            scale,
        ));
        let pair = _mm512_or_si512(t, _mm512_slli_epi32::<16>(t));
        // SAFETY: each row is 16 `u32`s, one 512-bit store.
        unsafe { _mm512_storeu_si512(d.as_mut_ptr().cast(), pair) };
    }
}

/// [`portable::score_fixed`](super::portable::score_fixed) with AVX-512 BW; bit-identical to it.
///
/// # Safety
/// The CPU supports AVX-512 F and BW.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn score_fixed<const CUTS: usize>(t: LaneTables<'_, u32>, pairs: &[u32]) -> [f32; LANES] {
    // SAFETY: every row holds 16 `u32`, one 512-bit load.
    let load = |row: &[u32; LANES]| unsafe { _mm512_loadu_si512(row.as_ptr().cast()) };
    let base = load(t.base);
    let cut: [__m512i; CUTS] = core::array::from_fn(|j| load(&t.cut[j]));
    let above: [__m512i; CUTS] = core::array::from_fn(|j| load(&t.above[j]));
    let mut acc = _mm512_setzero_ps();
    for run in pairs.chunks(PAIRS_PER_SUM) {
        let mut sum = _mm512_setzero_si512();
        for &pair in run {
            let xv = _mm512_set1_epi32(pair as i32);
            let mut level = base;
            for j in 0..CUTS {
                level = _mm512_mask_mov_epi16(level, _mm512_cmpgt_epi16_mask(xv, cut[j]), above[j]);
            }
            let d = _mm512_sub_epi16(xv, level);
            sum = _mm512_add_epi32(sum, _mm512_madd_epi16(d, d));
        }
        acc = _mm512_add_ps(acc, _mm512_cvtepi32_ps(sum));
    }
    let mut out = [0.0f32; LANES];
    // SAFETY: `out` holds 16 floats.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), acc) };
    out
}

/// Scores every candidate of the coarse grid in one pass over the pairs, from the levels
/// looked up by magnitude: `V` blocks of 32 candidates, `out` holding `32·V` scores in grid
/// order. The same integer sums, converted and added in the same runs, as [`score_fixed`]
/// over each batch of 16: bit-identical to it (tested).
///
/// # Safety
/// The CPU supports AVX-512 F and BW.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn score_coarse<const V: usize>(table: CoarseRows<'_>, pairs: &[u32], out: &mut [f32]) {
    const MAX_BLOCKS: usize = 4;
    const { assert!(V <= MAX_BLOCKS) };
    assert!(table.coarse == 32 * V && out.len() == table.coarse);
    let mut acc = [_mm512_setzero_ps(); 2 * MAX_BLOCKS];
    for run in pairs.chunks(PAIRS_PER_SUM) {
        let mut sum = [_mm512_setzero_si512(); 2 * MAX_BLOCKS];
        for &pair in run {
            let (low, high) = (table.row(pair & 0xffff), table.row(pair >> 16));
            // Both magnitudes in every 32-bit lane, as in the compare kernel.
            let xv = _mm512_set1_epi32(pair as i32);
            for v in 0..V {
                // SAFETY: each row holds `32·V` levels, so block `v` is 32 `i16` in bounds.
                let (a, b) = unsafe {
                    (
                        _mm512_loadu_si512(low.as_ptr().add(32 * v).cast()),
                        _mm512_loadu_si512(high.as_ptr().add(32 * v).cast()),
                    )
                };
                // Each 32-bit lane: (level of the low magnitude, level of the high one) for
                // one candidate, candidates 0–15 of the block from `unpacklo`, 16–31 from
                // `unpackhi` (the row layout the plan builds).
                for (k, levels) in [_mm512_unpacklo_epi16(a, b), _mm512_unpackhi_epi16(a, b)]
                    .into_iter()
                    .enumerate()
                {
                    let d = _mm512_sub_epi16(xv, levels);
                    sum[2 * v + k] = _mm512_add_epi32(sum[2 * v + k], _mm512_madd_epi16(d, d));
                }
            }
        }
        for (acc, sum) in acc.iter_mut().zip(&sum).take(2 * V) {
            *acc = _mm512_add_ps(*acc, _mm512_cvtepi32_ps(*sum));
        }
    }
    for (scores, acc) in out.chunks_exact_mut(LANES).zip(acc) {
        // SAFETY: each chunk holds 16 floats.
        unsafe { _mm512_storeu_ps(scores.as_mut_ptr(), acc) };
    }
}

/// Calls `f` from a function compiled with every feature of the [`Avx512`] proof, so that
/// code inlined into `f` (the fit's bookkeeping between kernel calls) is vectorized with
/// 512-bit registers too. Plain IEEE arithmetic is not contracted, so the bits do not change.
///
/// # Safety
/// The CPU supports AVX-512 F, BW and VL, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn run<R>(f: impl FnOnce() -> R) -> R {
    f()
}

// ---- GEMM micro-kernel --------------------------------------------------------------------

use super::portable::{gemm_tile_fits, GemmPanel, GemmTile, GEMM_KC, GEMM_MR};

impl Avx512 {
    /// The GEMM micro-tile (see [`portable::gemm_tile`](super::portable::gemm_tile), the
    /// reference): `GEMM_MR` rows of the panel times `width` columns of `x` at stride `n`,
    /// one 16-lane vector per row with the columns past `width` masked off.
    #[inline]
    pub(crate) fn gemm_tile(
        self,
        w: &GemmPanel,
        kc: usize,
        x: &[f32],
        n: usize,
        width: usize,
    ) -> GemmTile {
        if !gemm_tile_fits(kc, x, n, width) {
            return super::portable::gemm_tile(w, kc, x, n, width);
        }
        // SAFETY: an `Avx512` proof exists only when detection found AVX-512 F/BW/VL, AVX2,
        // FMA; the bounds the kernel relies on were checked just above.
        unsafe { gemm_tile16(w, kc, x, n, width) }
    }
}

/// # Safety
/// AVX-512 F; `gemm_tile_fits(kc, x, n, width)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn gemm_tile16(w: &GemmPanel, kc: usize, x: &[f32], n: usize, width: usize) -> GemmTile {
    // `width` is 1..=16, so the mask keeps exactly the columns that exist.
    let mask: __mmask16 = ((1u32 << width) - 1) as __mmask16;
    let mut acc = [_mm512_setzero_ps(); GEMM_MR];
    let wp = w.w.as_ptr().cast::<f32>();
    let xp = x.as_ptr();
    for k in 0..kc {
        // SAFETY: row `k < kc` of `x` holds `width` values from `k·n` (checked by the caller);
        // the masked lanes are not read.
        let xv = unsafe { _mm512_maskz_loadu_ps(mask, xp.add(k * n)) };
        for (r, a) in acc.iter_mut().enumerate() {
            // SAFETY: `r < GEMM_MR` and `k < kc <= GEMM_KC` index the panel's rows.
            let b = _mm512_set1_ps(unsafe { *wp.add(r * GEMM_KC + k) });
            *a = _mm512_fmadd_ps(b, xv, *a);
        }
    }
    let mut out = [[0.0f32; super::portable::GEMM_NR]; GEMM_MR];
    for (o, &a) in out.iter_mut().zip(&acc) {
        // SAFETY: each row of the tile holds `GEMM_NR` = 16 floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
    }
    out
}
