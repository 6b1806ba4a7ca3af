//! AVX2 + FMA kernels: decode, dot product, encode, and the fit's scoring lanes.
//!
//! The `#[target_feature]` functions are private; the way in is a method on the [`Avx2`]
//! proof, which only detection creates. Their one obligation is the CPU feature: every kernel
//! clamps its work to the slices it is given, and each raw load or store sits under the loop
//! condition that keeps it in bounds.

use core::arch::x86_64::*;

use super::portable::{CoarseRows, Gen16, Gen8, GenNarrow, LaneTables, LANES, PAIRS_PER_SUM};
use super::{Avx2, Avx512Vnni, AvxVnni, Isa};

impl Avx2 {
    /// `out[i] = table[codes[i]]` for codes below `levels`, over the shorter slice.
    #[inline]
    pub(crate) fn lut(self, codes: &[u8], table: &[f32; 256], levels: usize, out: &mut [f32]) {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { lut(codes, table, levels, out) }
    }

    /// `Σ table[codes[i]] · x[i]` for codes below `levels`, over the shorter slice.
    #[inline]
    pub(crate) fn lut_dot(self, codes: &[u8], table: &[f32; 256], levels: usize, x: &[f32]) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { lut_dot(codes, table, levels, x) }
    }

    /// 4-bit decode straight from packed bytes (at most 16 levels).
    #[inline]
    pub(crate) fn decode4(self, bytes: &[u8], table: &[f32; 256], out: &mut [f32]) {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { decode4(bytes, table, out) }
    }

    /// 4-bit dot product straight from packed bytes (at most 16 levels).
    #[inline]
    pub(crate) fn dot4(self, bytes: &[u8], table: &[f32; 256], x: &[f32]) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { dot4(bytes, table, x) }
    }

    /// 3-bit dot product straight from packed bytes (at most 8 levels; see [`dot3`]).
    #[inline]
    pub(crate) fn dot3(self, bytes: &[u8], table: &[f32; 256], x: &[f32]) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { dot3(bytes, table, x) }
    }

    /// A 3-bit row in groups of `g` codes (a multiple of 8) that share one 8-entry table up
    /// to an `f16` scale per group (see [`dot3_scaled`]).
    #[inline]
    pub(crate) fn dot3_scaled(
        self,
        bytes: &[u8],
        table: &[f32; 256],
        x: &[f32],
        g: usize,
        scales: &[u8],
    ) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { dot3_scaled(bytes, table, x, g, scales) }
    }

    /// Dot product of whole blocks of the lane-permuted layout (see [`dot_perm`]).
    #[inline]
    pub(crate) fn dot_perm<const BITS: i32>(
        self,
        bytes: &[u8],
        t16: &[f32; 16],
        xp: &[f32],
    ) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { dot_perm::<BITS>(bytes, t16, xp) }
    }

    /// Eight rows' 4-bit tables from their `(a, q)`, each the row's levels in code order as
    /// `Family::levels_into` writes them, to the bit (see [`row_tables16`]).
    #[inline]
    pub(crate) fn row_tables16(self, params: &[[f32; 2]; 8], gen: &Gen16) -> [[f32; 16]; 8] {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { row_tables16(params, gen) }
    }

    /// Dot product of a 4-bit row's whole runs of 64 codes with `x` in run order (see
    /// [`dot_planes4`]).
    #[inline]
    pub(crate) fn dot_planes4(self, bytes: &[u8], t16: &[f32; 16], xr: &[f32]) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { dot_planes4(bytes, t16, xr) }
    }

    /// [`dot_planes4`] for rows whose groups of `g` codes share `t16` up to an `f16` scale
    /// each (see [`dot_planes4_scaled`]).
    #[inline]
    pub(crate) fn dot_planes4_scaled(
        self,
        bytes: &[u8],
        t16: &[f32; 16],
        xr: &[f32],
        g: usize,
        scales: &[u8],
    ) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { dot_planes4_scaled(bytes, t16, xr, g, scales) }
    }

    /// `x` in the order [`dot_planes4`] meets a row's codes (see [`permute_runs64`]); returns
    /// the values written.
    #[inline]
    pub(crate) fn permute_runs64(self, x: &[f32], out: &mut [f32]) -> usize {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { permute_runs64(x, out) }
    }

    /// Int8 dot product of whole blocks (see [`portable::dot_i8`](super::portable::dot_i8)).
    #[inline]
    pub(crate) fn dot_i8(self, w: &[i8], xq: &[i8], scales: &[f32]) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { dot_i8(w, xq, scales) }
    }

    /// Int8 dot product of whole blocks of 4-bit codes straight from packed bytes, through a
    /// 16-entry int8 table (see [`dot4_i8`]).
    #[inline]
    pub(crate) fn dot4_i8(self, bytes: &[u8], t16: &[i8; 16], xq: &[i8], scales: &[f32]) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { dot4_i8(bytes, t16, xq, scales) }
    }

    /// Int8 dot product of whole blocks of 1- or 2-bit codes straight from packed bytes,
    /// through the int8 levels `t16[..2^bits]` (see [`dot_narrow_i8`]); 0 at other widths.
    #[inline]
    pub(crate) fn dot_narrow_i8(
        self,
        bits: u8,
        bytes: &[u8],
        t16: &[i8; 16],
        xq: &[i8],
        scales: &[f32],
    ) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe {
            match bits {
                1 => dot_narrow_i8::<1>(bytes, t16, xq, scales),
                2 => dot_narrow_i8::<2>(bytes, t16, xq, scales),
                _ => 0.0,
            }
        }
    }

    /// Int8 dot product of whole blocks of 2-bit codes, block `b` through the table
    /// `[−127, −lower[b], lower[b], 127]` (see [`dot_narrow_i8_lower`]).
    #[inline]
    pub(crate) fn dot_narrow_i8_lower(
        self,
        bytes: &[u8],
        xq: &[i8],
        scales: &[f32],
        lower: &[i8],
    ) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { dot_narrow_i8_lower(bytes, xq, scales, lower) }
    }

    /// Int8 dot product of whole blocks of 3-bit codes straight from packed bytes, through
    /// the int8 levels `t16[..8]` (see [`dot3_i8`]).
    #[inline]
    pub(crate) fn dot3_i8(self, bytes: &[u8], t16: &[i8; 16], xq: &[i8], scales: &[f32]) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { dot3_i8(bytes, t16, xq, scales) }
    }

    /// Int8 dot product of a 3-bit row in groups of `g` codes (a multiple of 32), each
    /// group's int8 table derived in registers from its `q` (see [`dot3_i8_groups`]).
    #[inline]
    pub(crate) fn dot3_i8_groups(
        self,
        bytes: &[u8],
        xq: &[i8],
        scales: &[f32],
        g: usize,
        params: &[[f32; 2]],
        gen: &Gen8,
    ) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { dot3_i8_groups(bytes, xq, scales, g, params, gen) }
    }

    /// `out[i] = table[codes[i]]` for int8 tables of up to 128 entries (codes below
    /// `levels`), see [`lut_i8`].
    #[inline]
    pub(crate) fn lut_i8(
        self,
        codes: &[u8],
        table: &[i8; 256],
        levels: usize,
        out: &mut [i8],
    ) -> usize {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { lut_i8(codes, table, levels, out) }
    }

    /// A group's int8 table derived in registers (see [`table16_i8`]).
    #[inline]
    pub(crate) fn table16_i8(self, gen: &Gen16, q: f32) -> [i8; 16] {
        let mut out = [0i8; 16];
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA; `out` holds
        // the 16 bytes stored.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), table16_i8(gen, q)) };
        out
    }

    /// A 4-bit row cut into groups of `g` codes (a multiple of 16), each group's table
    /// derived in registers from its `(a, q)` (see [`dot4_groups`]).
    #[inline]
    pub(crate) fn dot4_groups(
        self,
        bytes: &[u8],
        x: &[f32],
        g: usize,
        params: &[[f32; 2]],
        gen: &Gen16,
    ) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { dot4_groups(bytes, x, g, params, gen) }
    }

    /// A 3-bit row cut into groups of `g` codes (a multiple of 8), each group's table
    /// derived in registers from its `(a, q)` (see [`dot3_groups`]).
    #[inline]
    pub(crate) fn dot3_groups(
        self,
        bytes: &[u8],
        x: &[f32],
        g: usize,
        params: &[[f32; 2]],
        gen: &Gen8,
    ) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { dot3_groups(bytes, x, g, params, gen) }
    }

    /// [`dot_perm`] at 4 bits over whole groups of `g` codes (a multiple of 64, so a group
    /// is whole blocks) in the lane-permuted layout, group `i` through the table derived from
    /// `params[i]` in registers (see [`GroupRun`]): the lane-permuted loop of a row with one
    /// table, plus the table once a group. Runs `min(params.len(), bytes.len() / (g / 2),
    /// xp.len() / g)` groups; 0 for another `g`.
    #[inline]
    pub(crate) fn dot_perm_groups(
        self,
        bytes: &[u8],
        xp: &[f32],
        g: usize,
        params: &[[f32; 2]],
        gen: &Gen16,
    ) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { GroupRun::<false>::dot(bytes, xp, g, params, gen) }
    }

    /// [`dot_perm_groups`](Self::dot_perm_groups) for groups of `g` codes that are a multiple
    /// of 32 but not of the lane-permuted block (64): each block of 32 codes (16 bytes, half
    /// a group of 32) widens to eight 32-bit lanes of four codes (`vpmovzxwd`), so every lane
    /// of a step belongs to the same group and one table serves the whole vector; `xq` is `x`
    /// in the matching quad layout (`xq[b·32 + m·8 + l]` = `x[b·32 + 4l + m]`, see
    /// [`permute_blocks`](Self::permute_blocks)). A group costs its table and one widening
    /// per block over the per-row loop's steps, where the plain kernel ([`dot4_groups`])
    /// unpacks every code to a byte first. Runs `min(params.len(), bytes.len() / (g / 2),
    /// xq.len() / g)` groups; 0 for another `g`.
    #[inline]
    pub(crate) fn dot_quad_groups(
        self,
        bytes: &[u8],
        xq: &[f32],
        g: usize,
        params: &[[f32; 2]],
        gen: &Gen16,
    ) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { GroupRun::<true>::dot(bytes, xq, g, params, gen) }
    }

    /// Asks for every 64-byte line of `bytes` to be brought into the cache (a hint: it reads
    /// nothing and never faults).
    #[inline]
    pub(crate) fn prefetch(self, bytes: &[u8]) {
        for line in bytes.chunks(64) {
            // SAFETY: an `Avx2` proof exists only when detection found AVX2 (and so SSE); a
            // prefetch reads no memory.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
        }
    }

    /// `x`'s whole blocks of `8 · per_lane` values in the lane-permuted order of the
    /// 8-lane kernels (`out[b·B + m·8 + l] = x[b·B + l·per_lane + m]`, `B = 8 · per_lane`),
    /// `per_lane` 4 (the quad layout of [`dot_quad_groups`](Self::dot_quad_groups)) or a
    /// multiple of 8, as many
    /// blocks as both slices hold; returns the values written (0 for another `per_lane`).
    /// Transposes in registers.
    #[inline]
    pub(crate) fn permute_blocks(self, x: &[f32], per_lane: usize, out: &mut [f32]) -> usize {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { permute_blocks(x, per_lane, out) }
    }

    /// A 4-bit row in groups of `g` codes (a multiple of 16) that share one 16-entry table up
    /// to an `f16` scale per group (see [`dot4_scaled`]).
    #[inline]
    pub(crate) fn dot4_scaled(
        self,
        bytes: &[u8],
        table: &[f32; 256],
        x: &[f32],
        g: usize,
        scales: &[u8],
    ) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { dot4_scaled(bytes, table, x, g, scales) }
    }

    /// Whole blocks of the lane-permuted layout in groups of `g` codes that share one table
    /// up to an `f16` scale per group (see [`dot_perm_scaled`]).
    #[inline]
    pub(crate) fn dot_perm_scaled<const BITS: i32>(
        self,
        bytes: &[u8],
        t16: &[f32; 16],
        xp: &[f32],
        g: usize,
        scales: &[u8],
    ) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { dot_perm_scaled::<BITS>(bytes, t16, xp, g, scales) }
    }

    /// Whole blocks of 1- or 2-bit groups of `g` codes with their own `(a, q)` in the
    /// lane-permuted layout, levels derived by `gen` (see [`dot_perm_narrow`]).
    #[inline]
    pub(crate) fn dot_perm_narrow<const BITS: i32>(
        self,
        bytes: &[u8],
        xp: &[f32],
        g: usize,
        params: &[[f32; 2]],
        gen: &GenNarrow,
    ) -> f32 {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe {
            if BITS == 2 && gen.two_magnitudes() {
                dot_perm_narrow::<BITS, true>(bytes, xp, g, params, gen)
            } else {
                dot_perm_narrow::<BITS, false>(bytes, xp, g, params, gen)
            }
        }
    }

    /// Codes as counts of strict thresholds: `out[i] = #{t : x[i] > cuts[t]}`.
    #[inline]
    pub(crate) fn encode_count(self, cuts: &[f32], x: &[f32], out: &mut [u8]) {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { encode_count(cuts, x, out) }
    }

    /// The fit's `f32` scores of sixteen candidates (see [`portable::score`](super::portable::score)).
    #[inline]
    pub(crate) fn score(
        self,
        t: LaneTables<'_, f32>,
        x: &[f32],
        w: Option<&[f32]>,
    ) -> [f32; LANES] {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { score(t, x, w) }
    }

    /// The fit's fixed-point scores of sixteen candidates (see [`portable::score_fixed`](super::portable::score_fixed)).
    #[inline]
    pub(crate) fn score_fixed(self, t: LaneTables<'_, u32>, pairs: &[u32]) -> [f32; LANES] {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { score_fixed(t, pairs) }
    }

    /// The fit's whole coarse grid in one pass, from the levels by magnitude (a grid of a
    /// multiple of 32 candidates; `out` holds one score per candidate).
    #[inline]
    pub(crate) fn score_coarse(self, table: CoarseRows<'_>, pairs: &[u32], out: &mut [f32]) {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { score_coarse(table, pairs, out) }
    }
}

/// Looks up 8 codes (one per 32-bit lane, below `levels`) in `table`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn look(idx: __m256i, table: &[f32; 256], t0: __m256, t1: __m256, levels: usize) -> __m256 {
    if levels <= 8 {
        _mm256_permutevar8x32_ps(t0, idx)
    } else if levels <= 16 {
        // Bit 3 of the code picks the upper half: move it to the sign bit for the blend.
        let lo = _mm256_permutevar8x32_ps(t0, idx);
        let hi = _mm256_permutevar8x32_ps(t1, idx);
        _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32::<28>(idx)))
    } else {
        // SAFETY: every lane is a u8 code, below the table's 256 entries.
        unsafe { _mm256_i32gather_ps::<4>(table.as_ptr(), idx) }
    }
}

/// `out[i] = table[codes[i]]` for codes below `levels`.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn lut(codes: &[u8], table: &[f32; 256], levels: usize, out: &mut [f32]) {
    let n = codes.len().min(out.len());
    let mut i = 0;
    // SAFETY: each step reads 8 codes and writes 8 floats at `i + 8 <= n`.
    unsafe {
        let t0 = _mm256_loadu_ps(table.as_ptr());
        let t1 = _mm256_loadu_ps(table.as_ptr().add(8));
        while i + 8 <= n {
            let idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(codes.as_ptr().add(i).cast()));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), look(idx, table, t0, t1, levels));
            i += 8;
        }
    }
    for (slot, &code) in out[i..n].iter_mut().zip(&codes[i..n]) {
        *slot = table[usize::from(code)];
    }
}

/// `Σ table[codes[i]] · x[i]` for codes below `levels`.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn lut_dot(codes: &[u8], table: &[f32; 256], levels: usize, x: &[f32]) -> f32 {
    let n = codes.len().min(x.len());
    let mut i = 0;
    // SAFETY: each step reads 16 codes and 16 floats at `i + 16 <= n` (8 in the second loop).
    let mut acc = unsafe {
        let t0 = _mm256_loadu_ps(table.as_ptr());
        let t1 = _mm256_loadu_ps(table.as_ptr().add(8));
        let (c, xp) = (codes.as_ptr(), x.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        while i + 16 <= n {
            let i0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(c.add(i).cast()));
            let i1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(c.add(i + 8).cast()));
            let w0 = look(i0, table, t0, t1, levels);
            let w1 = look(i1, table, t0, t1, levels);
            acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xp.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xp.add(i + 8)), acc1);
            i += 16;
        }
        while i + 8 <= n {
            let i0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(c.add(i).cast()));
            let w0 = look(i0, table, t0, t1, levels);
            acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xp.add(i)), acc0);
            i += 8;
        }
        hsum(_mm256_add_ps(acc0, acc1))
    };
    for (&code, &xi) in codes[i..n].iter().zip(&x[i..n]) {
        acc += table[usize::from(code)] * xi;
    }
    acc
}

/// The sum of four vectors' lanes, added pairwise first.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum4(v: [__m256; 4]) -> f32 {
    hsum(_mm256_add_ps(
        _mm256_add_ps(v[0], v[1]),
        _mm256_add_ps(v[2], v[3]),
    ))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}

/// Splits 8 packed bytes into their 16 nibbles, in stream order, one per byte.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn nibbles(v: __m128i) -> __m128i {
    let mask = _mm_set1_epi8(0x0f);
    let lo = _mm_and_si128(v, mask);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), mask);
    _mm_unpacklo_epi8(lo, hi)
}

/// 4-bit decode straight from packed bytes.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn decode4(bytes: &[u8], table: &[f32; 256], out: &mut [f32]) {
    let n = out.len().min(bytes.len() * 2);
    let mut i = 0;
    // SAFETY: each step reads bytes `i/2 .. i/2 + 8` and writes floats `i .. i + 16`, inside
    // because `i + 16 <= n`.
    unsafe {
        let t0 = _mm256_loadu_ps(table.as_ptr());
        let t1 = _mm256_loadu_ps(table.as_ptr().add(8));
        let o = out.as_mut_ptr();
        while i + 16 <= n {
            let c = nibbles(_mm_loadl_epi64(bytes.as_ptr().add(i / 2).cast()));
            let i0 = _mm256_cvtepu8_epi32(c);
            let i1 = _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(c));
            _mm256_storeu_ps(o.add(i), look(i0, table, t0, t1, 16));
            _mm256_storeu_ps(o.add(i + 8), look(i1, table, t0, t1, 16));
            i += 16;
        }
    }
    for (k, slot) in out.iter_mut().enumerate().take(n).skip(i) {
        *slot = table[usize::from((bytes[k / 2] >> ((k % 2) * 4)) & 0x0f)];
    }
}

/// 4-bit dot product straight from packed bytes.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4(bytes: &[u8], table: &[f32; 256], x: &[f32]) -> f32 {
    let n = x.len().min(bytes.len() * 2);
    let mut i = 0;
    // SAFETY: each step reads bytes `i/2 .. i/2 + 8` and floats `i .. i + 16`, inside because
    // `i + 16 <= n`.
    let mut acc = unsafe {
        let t0 = _mm256_loadu_ps(table.as_ptr());
        let t1 = _mm256_loadu_ps(table.as_ptr().add(8));
        let xp = x.as_ptr();
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        while i + 16 <= n {
            let c = nibbles(_mm_loadl_epi64(bytes.as_ptr().add(i / 2).cast()));
            let w0 = look(_mm256_cvtepu8_epi32(c), table, t0, t1, 16);
            let w1 = look(
                _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(c)),
                table,
                t0,
                t1,
                16,
            );
            acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xp.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xp.add(i + 8)), acc1);
            i += 16;
        }
        hsum(_mm256_add_ps(acc0, acc1))
    };
    for (k, &xk) in x.iter().enumerate().take(n).skip(i) {
        acc += table[usize::from((bytes[k / 2] >> ((k % 2) * 4)) & 0x0f)] * xk;
    }
    acc
}

/// 3-bit dot product straight from packed bytes, codes in stream order (code `j` at bits
/// `3j ..`): eight codes are three bytes, so a step broadcasts the 32 bits from an 8-code
/// group's first byte to every lane, shifts lane `l` right by `3l` (`vpsrlvd`) and looks
/// the result up in the 8-entry table (`vpermps` reads only its low three bits): no unpack
/// to bytes and no mask.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot3(bytes: &[u8], table: &[f32; 256], x: &[f32]) -> f32 {
    let n = x.len().min(bytes.len() * 8 / 3);
    let vector = n.min(loadable3(bytes));
    let mut sums = [_mm256_setzero_ps(); 4];
    // SAFETY: a step at code `i` reads bytes `3i/8 .. 3i/8 + 4` (inside while `i + 8 <=
    // loadable`) and floats `i .. i + 8` (inside while `i + 8 <= n`).
    let i = unsafe {
        let t = _mm256_loadu_ps(table.as_ptr());
        steps3(t, bytes.as_ptr(), x.as_ptr(), 0, vector / 8, &mut sums)
    };
    let mut acc = hsum4(sums);
    for (k, &xk) in x.iter().enumerate().take(n).skip(i) {
        acc += table[usize::from(super::portable::code_at(bytes, 3, k))] * xk;
    }
    acc
}

/// The codes of the 3-bit steps that may load 4 bytes at each 8-code group of `bytes`
/// (a step's load reaches one byte past its group, so the last group of a slice that ends
/// there is left to the scalar code).
fn loadable3(bytes: &[u8]) -> usize {
    if bytes.len() >= 4 {
        ((bytes.len() - 4) / 3 + 1) * 8
    } else {
        0
    }
}

/// Codes `i .. i + 8` (`i` a multiple of 8) of a 3-bit stream at `b`, one per lane in its
/// low three bits (`shifts` = `3l` in lane `l`; higher bits are the next codes').
///
/// # Safety
/// The CPU supports AVX2; bytes `3i/8 .. 3i/8 + 4` of `b` are readable.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn codes3(b: *const u8, i: usize, shifts: __m256i) -> __m256i {
    // SAFETY: the caller guarantees the four bytes.
    let word = unsafe { b.add(i / 8 * 3).cast::<i32>().read_unaligned() };
    _mm256_srlv_epi32(_mm256_set1_epi32(word), shifts)
}

/// `steps` 8-code steps of the 3-bit stream at `b` from code `i` through the 8-entry table
/// `t`, against `x` at `xp`: four steps at a time into the four `sums` (an index `k % 4`
/// kept them in memory, and fewer sums left the steps waiting on the FMA latency), then the
/// last one to three into the first. Returns the code after the last step. The loop of
/// `dot3`, `dot3_scaled` and `dot3_groups`.
///
/// # Safety
/// The CPU supports AVX2 and FMA; each step's bytes (as [`codes3`]) and 8 floats are
/// readable.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn steps3(
    t: __m256,
    b: *const u8,
    xp: *const f32,
    mut i: usize,
    steps: usize,
    sums: &mut [__m256; 4],
) -> usize {
    let shifts = _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21);
    // SAFETY: the caller guarantees every step's bytes and floats.
    unsafe {
        for _ in 0..steps / 4 {
            for (k, sum) in sums.iter_mut().enumerate() {
                let w = _mm256_permutevar8x32_ps(t, codes3(b, i + 8 * k, shifts));
                *sum = _mm256_fmadd_ps(w, _mm256_loadu_ps(xp.add(i + 8 * k)), *sum);
            }
            i += 32;
        }
        for _ in 0..steps % 4 {
            let w = _mm256_permutevar8x32_ps(t, codes3(b, i, shifts));
            sums[0] = _mm256_fmadd_ps(w, _mm256_loadu_ps(xp.add(i)), sums[0]);
            i += 8;
        }
    }
    i
}

/// [`dot3`] over groups of `g` codes (a multiple of 8) that share `table` up to an `f16`
/// scale per group (`scales`, two little-endian bytes a group, positive and finite): a
/// group's products are summed apart and multiplied once by its scale, as
/// [`dot4_scaled`] does at 4 bits. Groups past the last loadable step (and a short last
/// group) go through the reference.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot3_scaled(bytes: &[u8], table: &[f32; 256], x: &[f32], g: usize, scales: &[u8]) -> f32 {
    let n = x.len().min(bytes.len() * 8 / 3);
    let groups = (scales.len() / 2).min(n.div_ceil(g.max(1)));
    let vector = n.min(loadable3(bytes));
    let steps = if g.is_multiple_of(8) { g / 8 } else { 0 };
    let mut i = 0;
    let mut group = 0;
    // SAFETY: each step at code `i` reads bytes `3i/8 .. 3i/8 + 4` and floats `i .. i + 8`,
    // inside because the group ends at `i + g <= vector`; the table holds 256 floats.
    let mut acc = unsafe {
        let t = _mm256_loadu_ps(table.as_ptr());
        let (b, xp) = (bytes.as_ptr(), x.as_ptr());
        // Four sums a group (two ran groups of 128 at half the per-row speed).
        let mut acc = [_mm256_setzero_ps(); 4];
        while steps > 0 && group < groups && i + g <= vector {
            let mut p = [_mm256_setzero_ps(); 4];
            i = steps3(t, b, xp, i, steps, &mut p);
            let a = _mm256_set1_ps(super::portable::scale_at(scales, group));
            for (acc, p) in acc.iter_mut().zip(p) {
                *acc = _mm256_fmadd_ps(p, a, *acc);
            }
            group += 1;
        }
        hsum4(acc)
    };
    while group < groups && i < n {
        let end = (i + g).min(n);
        let part = super::portable::dot_span(3, bytes, i, table, &x[i..end]);
        acc += super::portable::scale_at(scales, group) * part;
        (i, group) = (end, group + 1);
    }
    acc
}

/// Codes per 32-byte block of the lane-permuted layout at `BITS` bits.
pub(crate) const fn perm_block(bits: u32) -> usize {
    256 / bits as usize
}

/// The AVX2 twin of the AVX-512 `dot_perm`: 8 lanes of 32 bits per 32-byte block, `xp[b·8·C +
/// m·8 + l]` the `x` of code `l·C + m`. At 4 bits a 16-entry table takes two `vpermps` and a
/// blend on bit 3; at 1 and 2 bits the low 3 index bits address `t16[..8]`, which must repeat
/// the table (`t16[i] = table[i mod 2^BITS]`).
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_perm<const BITS: i32>(bytes: &[u8], t16: &[f32; 16], xp: &[f32]) -> f32 {
    let per_lane = (32 / BITS) as usize;
    let blocks = (bytes.len() / 32).min(xp.len() / perm_block(BITS as u32));
    // SAFETY: block `b` reads bytes `32b .. 32b + 32` and floats `b·8·C .. (b+1)·8·C`.
    unsafe {
        let t0 = _mm256_loadu_ps(t16.as_ptr());
        let t1 = _mm256_loadu_ps(t16.as_ptr().add(8));
        let mut acc = [_mm256_setzero_ps(); 4];
        for b in 0..blocks {
            let mut v = _mm256_loadu_si256(bytes.as_ptr().add(32 * b).cast());
            let xb = xp.as_ptr().add(b * 8 * per_lane);
            // Four steps at a time, each into its own accumulator: with the 32 steps of 1-bit
            // codes LLVM kept a loop over `m` whose `acc[m % 4]` lived in memory (3× the
            // instructions of 2 bits per code).
            for m0 in (0..per_lane).step_by(4) {
                for (j, acc) in acc.iter_mut().enumerate() {
                    let w = if BITS == 4 {
                        let lo = _mm256_permutevar8x32_ps(t0, v);
                        let hi = _mm256_permutevar8x32_ps(t1, v);
                        _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32::<28>(v)))
                    } else {
                        _mm256_permutevar8x32_ps(t0, v)
                    };
                    *acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(xb.add(8 * (m0 + j))), *acc);
                    v = _mm256_srli_epi32::<BITS>(v);
                }
            }
        }
        hsum4(acc)
    }
}

/// See [`Avx2::permute_blocks`]; 0 written unless `per_lane` is 4 or a positive multiple of 8.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn permute_blocks(x: &[f32], per_lane: usize, out: &mut [f32]) -> usize {
    if per_lane == 4 {
        return permute_quads(x, out);
    }
    if per_lane == 0 || !per_lane.is_multiple_of(8) {
        return 0;
    }
    let block = 8 * per_lane;
    let full = x.len().min(out.len()) / block * block;
    for b in (0..full).step_by(block) {
        for m0 in (0..per_lane).step_by(8) {
            // SAFETY: rows `b + l·per_lane + m0 .. + 8` (l < 8, m0 + 8 <= per_lane) and the
            // outputs `b + (m0 + j)·8 .. + 8` (j < 8) lie inside the block, below `full`.
            unsafe {
                let mut v = [_mm256_setzero_ps(); 8];
                for (l, v) in v.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(x.as_ptr().add(b + l * per_lane + m0));
                }
                for (j, t) in transpose8(v).into_iter().enumerate() {
                    _mm256_storeu_ps(out.as_mut_ptr().add(b + (m0 + j) * 8), t);
                }
            }
        }
    }
    full
}

/// [`permute_blocks`] with four values a lane (blocks of 32): each 128-bit half of the
/// block's four vectors is one lane's four values, so pairing halves `l` and `l + 4` and a
/// 4×4 transpose in each 128-bit half give step `m`'s eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn permute_quads(x: &[f32], out: &mut [f32]) -> usize {
    let full = x.len().min(out.len()) / QUAD_BLOCK * QUAD_BLOCK;
    for b in (0..full).step_by(QUAD_BLOCK) {
        // SAFETY: values `b .. b + 32` of both slices lie below `full`.
        unsafe {
            let v = [0, 8, 16, 24].map(|o| _mm256_loadu_ps(x.as_ptr().add(b + o)));
            // Lanes (l, l + 4) of the layout: halves `l` of `v[l / 2]` and of `v[2 + l / 2]`.
            let r0 = _mm256_permute2f128_ps::<0x20>(v[0], v[2]);
            let r1 = _mm256_permute2f128_ps::<0x31>(v[0], v[2]);
            let r2 = _mm256_permute2f128_ps::<0x20>(v[1], v[3]);
            let r3 = _mm256_permute2f128_ps::<0x31>(v[1], v[3]);
            let t0 = _mm256_unpacklo_ps(r0, r1);
            let t1 = _mm256_unpackhi_ps(r0, r1);
            let t2 = _mm256_unpacklo_ps(r2, r3);
            let t3 = _mm256_unpackhi_ps(r2, r3);
            let steps = [
                _mm256_castpd_ps(_mm256_unpacklo_pd(
                    _mm256_castps_pd(t0),
                    _mm256_castps_pd(t2),
                )),
                _mm256_castpd_ps(_mm256_unpackhi_pd(
                    _mm256_castps_pd(t0),
                    _mm256_castps_pd(t2),
                )),
                _mm256_castpd_ps(_mm256_unpacklo_pd(
                    _mm256_castps_pd(t1),
                    _mm256_castps_pd(t3),
                )),
                _mm256_castpd_ps(_mm256_unpackhi_pd(
                    _mm256_castps_pd(t1),
                    _mm256_castps_pd(t3),
                )),
            ];
            for (m, step) in steps.into_iter().enumerate() {
                _mm256_storeu_ps(out.as_mut_ptr().add(b + 8 * m), step);
            }
        }
    }
    full
}

/// The 8×8 transpose of eight rows of eight floats: lane `l` of output `j` is lane `j` of
/// input `l`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn transpose8(v: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(v[0], v[1]);
    let t1 = _mm256_unpackhi_ps(v[0], v[1]);
    let t2 = _mm256_unpacklo_ps(v[2], v[3]);
    let t3 = _mm256_unpackhi_ps(v[2], v[3]);
    let t4 = _mm256_unpacklo_ps(v[4], v[5]);
    let t5 = _mm256_unpackhi_ps(v[4], v[5]);
    let t6 = _mm256_unpacklo_ps(v[6], v[7]);
    let t7 = _mm256_unpackhi_ps(v[6], v[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// Codes in a block of the quad layout: 32 4-bit codes, 16 bytes, which widen to eight 32-bit
/// lanes of four codes each.
pub(crate) const QUAD_BLOCK: usize = 32;

/// Whether 4-bit groups of `g` codes run in the quad layout ([`Avx2::dot_quad_groups`]):
/// an odd multiple of 32 codes, so not whole blocks of the lane-permuted layout, which
/// [`Avx2::dot_perm_groups`] takes.
pub(crate) const fn quad_groups(g: usize) -> bool {
    g.is_multiple_of(QUAD_BLOCK) && !g.is_multiple_of(perm_block(4))
}

/// The walk of [`Avx2::dot_perm_groups`] (`QUAD` false: blocks of 64 codes, 32 bytes read as
/// eight lanes of eight codes) and [`Avx2::dot_quad_groups`] (`QUAD`: blocks of 32 codes, 16 bytes
/// widened to eight lanes of four) through a row of 4-bit groups: its accumulators and
/// where the next group's codes and `x` start. Exponential groups make their tables eight
/// at a time ([`magnitudes8`], [`spread16`]: the eight groups' powers of `q` share their
/// products), linear ones one by one ([`tables16`]).
struct GroupRun<const QUAD: bool> {
    acc: [__m256; 4],
    codes: *const u8,
    x: *const f32,
    /// Blocks a group.
    blocks: usize,
}

impl<const QUAD: bool> GroupRun<QUAD> {
    /// Codes a block.
    const BLOCK: usize = if QUAD { QUAD_BLOCK } else { perm_block(4) };

    /// The sum over the whole groups of `g` codes that `params`, `bytes` and `x` hold; 0
    /// unless `g` is a positive multiple of the block.
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot(bytes: &[u8], x: &[f32], g: usize, params: &[[f32; 2]], gen: &Gen16) -> f32 {
        if g == 0 || !g.is_multiple_of(Self::BLOCK) {
            return 0.0;
        }
        let groups = params.len().min(bytes.len() / (g / 2)).min(x.len() / g);
        let mut run = Self {
            acc: [_mm256_setzero_ps(); 4],
            codes: bytes.as_ptr(),
            x: x.as_ptr(),
            blocks: g / Self::BLOCK,
        };
        let params = &params[..groups];
        let one = g == Self::BLOCK;
        // SAFETY: `groups` whole groups lie inside `bytes` and `x`.
        unsafe {
            match gen {
                // Groups of one block (the common case) without the block loop.
                Gen16::Exp { zero: false } if one => run.exp_groups::<false, true>(params),
                Gen16::Exp { zero: true } if one => run.exp_groups::<true, true>(params),
                Gen16::Exp { zero: false } => run.exp_groups::<false, false>(params),
                Gen16::Exp { zero: true } => run.exp_groups::<true, false>(params),
                Gen16::Scaled(_) => {
                    for &[a, q] in params {
                        run.group::<false>(tables16(gen, a, q));
                    }
                }
            }
        }
        hsum4(run.acc)
    }

    /// The next group's blocks with its table `(t0, t1)`; `ONE`: the group is one block.
    ///
    /// # Safety
    /// The group's `BLOCK / 2 · blocks` bytes and `BLOCK · blocks` floats lie inside the
    /// row's slices.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn group<const ONE: bool>(&mut self, (t0, t1): (__m256, __m256)) {
        for _ in 0..if ONE { 1 } else { self.blocks } {
            // SAFETY: the caller guarantees the block's bytes and floats.
            unsafe {
                let mut v = if QUAD {
                    _mm256_cvtepu16_epi32(_mm_loadu_si128(self.codes.cast()))
                } else {
                    _mm256_loadu_si256(self.codes.cast())
                };
                for m in 0..Self::BLOCK / 8 {
                    let xv = _mm256_loadu_ps(self.x.add(8 * m));
                    self.acc[m % 4] = _mm256_fmadd_ps(pick16(t0, t1, v), xv, self.acc[m % 4]);
                    v = _mm256_srli_epi32::<4>(v);
                }
                self.codes = self.codes.add(Self::BLOCK / 2);
                self.x = self.x.add(Self::BLOCK);
            }
        }
    }

    /// The next `params.len()` exponential groups, their tables made eight at a time. `ONE`
    /// as for [`group`](Self::group).
    ///
    /// # Safety
    /// As for [`group`](Self::group), for every group of `params`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp_groups<const ZERO: bool, const ONE: bool>(&mut self, params: &[[f32; 2]]) {
        let mut eights = params.chunks_exact(8);
        for eight in &mut eights {
            // SAFETY: `eight` holds 16 floats.
            let (a, q) = unsafe { split_pairs8(eight.as_ptr().cast()) };
            for m in magnitudes8::<ZERO>(a, q) {
                // SAFETY: the caller guarantees every group of `params`.
                unsafe { self.group::<ONE>(spread16::<ZERO>(m)) };
            }
        }
        let rest = eights.remainder();
        if !rest.is_empty() {
            let mut p = [[0.0f32; 2]; 8];
            p[..rest.len()].copy_from_slice(rest);
            // SAFETY: `p` holds 16 floats.
            let (a, q) = unsafe { split_pairs8(p.as_ptr().cast()) };
            for m in magnitudes8::<ZERO>(a, q).into_iter().take(rest.len()) {
                // SAFETY: as above.
                unsafe { self.group::<ONE>(spread16::<ZERO>(m)) };
            }
        }
    }
}

/// The powers `q^0 .. q^7` of eight groups' `q` (lane = group), one vector a power, with
/// the bits of [`powers8`](super::portable::powers8): `q^k` is the product of `q`, `q²`, `q⁴`
/// over the set bits of `k`, in its order.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn powers8x8(q: __m256) -> [__m256; 8] {
    let q2 = _mm256_mul_ps(q, q);
    let q4 = _mm256_mul_ps(q2, q2);
    let q3 = _mm256_mul_ps(q, q2);
    [
        _mm256_set1_ps(1.0),
        q,
        q2,
        q3,
        q4,
        _mm256_mul_ps(q, q4),
        _mm256_mul_ps(q2, q4),
        _mm256_mul_ps(q3, q4),
    ]
}

/// Eight exponential groups' magnitudes `a·q^k` (`k` = 0..7) from their `a` and `q` (lane =
/// group): one vector a group, lane `k` holding `a·q^k` (lane 7 holding 0 with `ZERO`, the
/// zero level's place), with the bits of
/// [`portable::table16`](super::portable::table16)'s `p[k]·a` (the powers taken as
/// [`powers8`](super::portable::powers8) takes them, for all eight groups at once, then
/// transposed).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn magnitudes8<const ZERO: bool>(a: __m256, q: __m256) -> [__m256; 8] {
    let p = powers8x8(q);
    let mut m = [_mm256_setzero_ps(); 8];
    // With a zero level, lane 7 (the eighth magnitude) is the zero level's 0.
    for (m, p) in m.iter_mut().zip(p).take(if ZERO { 7 } else { 8 }) {
        *m = _mm256_mul_ps(p, a);
    }
    transpose8(m)
}

/// Eight rows' 16-entry tables from their `(a, q)` (`params[r]`), each bit for bit the
/// levels `Family::levels_into` writes for the family `gen` describes (ascending, entry 15
/// 0 where 15 levels have a zero): the per-row GEMV's tables, made eight at a time where
/// `levels_into` cost a 1024-code row a seventh of its time. The exponential magnitudes
/// repeat `levels_into`'s operations lane by lane: the unit magnitudes from the top down
/// in `f64` (`1, q, q², …`, each the last times `q`), each narrowed to `f32` and times `a`
/// (where the group kernels' [`magnitudes8`] take `f32` powers, within an ulp or two of
/// these). A linear family's table is `a` times its fixed unit levels, as `levels_into`'s.
#[target_feature(enable = "avx2,fma")]
fn row_tables16(params: &[[f32; 2]; 8], gen: &Gen16) -> [[f32; 16]; 8] {
    let mut out = [[0.0f32; 16]; 8];
    match gen {
        Gen16::Exp { zero } => {
            // SAFETY: `params` is 16 floats.
            let (a, q) = unsafe { split_pairs8(params.as_ptr().cast()) };
            let q_lo = _mm256_cvtps_pd(_mm256_castps256_ps128(q));
            let q_hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(q));
            let (mut unit_lo, mut unit_hi) = (_mm256_set1_pd(1.0), _mm256_set1_pd(1.0));
            // Power `k` of every row (lane = row); with a zero level the eighth stays 0,
            // the zero level's place in `magnitudes8`'s layout.
            let mut powers = [_mm256_setzero_ps(); 8];
            for p in powers.iter_mut().take(if *zero { 7 } else { 8 }) {
                let unit = _mm256_set_m128(_mm256_cvtpd_ps(unit_hi), _mm256_cvtpd_ps(unit_lo));
                *p = _mm256_mul_ps(a, unit);
                unit_lo = _mm256_mul_pd(unit_lo, q_lo);
                unit_hi = _mm256_mul_pd(unit_hi, q_hi);
            }
            for (m, t) in transpose8(powers).into_iter().zip(out.iter_mut()) {
                let (low, high) = if *zero {
                    spread16::<true>(m)
                } else {
                    spread16::<false>(m)
                };
                // SAFETY: `t` is 16 floats.
                unsafe {
                    _mm256_storeu_ps(t.as_mut_ptr(), low);
                    _mm256_storeu_ps(t.as_mut_ptr().add(8), high);
                }
            }
        }
        Gen16::Scaled(unit) => {
            for (t, &[a, _]) in out.iter_mut().zip(params) {
                for (level, &u) in t.iter_mut().zip(unit) {
                    *level = a * u;
                }
            }
        }
    }
    out
}

/// A group's 16-entry table from its magnitudes `m` (from [`magnitudes8`] with the same
/// `ZERO`), with the entries of [`tables16`]: `−a·q^k` ascending in the lower half, `a·q^k`
/// descending in the upper (the zero level, `m`'s lane 7, at entries 7 and 15 with `ZERO`).
/// `−(p·a)` and `p·(−a)` round alike, so flipping the sign gives the same bits; the zero
/// level keeps its `+0`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn spread16<const ZERO: bool>(m: __m256) -> (__m256, __m256) {
    let top = if ZERO { 0.0 } else { -0.0 };
    let sign = _mm256_setr_ps(-0.0, -0.0, -0.0, -0.0, -0.0, -0.0, -0.0, top);
    let order = if ZERO {
        _mm256_setr_epi32(6, 5, 4, 3, 2, 1, 0, 7)
    } else {
        _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0)
    };
    (_mm256_xor_ps(m, sign), _mm256_permutevar8x32_ps(m, order))
}

/// One block's 32 int8 products summed in `i32` lanes: `vpmaddubsw` takes an unsigned and a
/// signed operand, so `x`'s sign moves onto the weight (`|x|·(w·sign x)`). With both in
/// `[−127, 127]` a pair sums to at most `2·127² < 2^15`: the 16-bit step cannot saturate.
/// `|x|` depends on `x` alone, so where several rows meet the same `x` it is computed once
/// for all of them and each row pays a single sign operation per block.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn block_i8(w: __m256i, x: __m256i) -> __m256i {
    // SAFETY: `Maddubs` needs AVX2 and FMA, this function's features.
    unsafe { block_add::<Maddubs>(_mm256_setzero_si256(), w, x) }
}

/// How a batched int8 kernel sums byte products: `acc` plus, in each `i32` lane, the four
/// products of that lane's bytes of `u` (unsigned) and `s` (signed). The kernels pass
/// `u = |x|` and `s = w · sign x`, both at most 127 in magnitude, where every implementation
/// sums exactly: the kernels give the same bits whichever one they are built with.
///
/// The kernels generic over it carry the AVX2 and FMA features only, so an implementation
/// that needs more instructions states them in inline assembly rather than in a
/// `target_feature` (which would keep it from inlining into them).
trait ByteDot {
    /// `acc` plus the lanes' byte products of `u` and `s`.
    ///
    /// # Safety
    /// The CPU supports the implementation's instructions.
    unsafe fn dot_add(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;
}

/// AVX2: `vpmaddubsw` sums neighbouring products into `i16`, `vpmaddwd` by one sums those
/// pairs into `i32`. Exact for the kernels' operands: a pair is at most `2·127² < 2^15`.
struct Maddubs;

impl ByteDot for Maddubs {
    #[inline(always)]
    unsafe fn dot_add(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: the caller guarantees AVX2 and FMA.
        unsafe { maddubs_add(acc, u, s) }
    }
}

/// [`Maddubs`]'s sum.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn maddubs_add(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    let pairs = _mm256_maddubs_epi16(u, s);
    _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// `vpdpbusd` on 256-bit vectors: one instruction sums a lane's four products into `i32`
/// with no narrower step, so it is exact for any bytes. `EVEX`: the AVX-512 VNNI form (with
/// VL), which the Intel and AMD CPUs with AVX-512 VNNI run; else the VEX form of AVX-VNNI,
/// a different extension, for CPUs that have it without AVX-512.
struct Vpdpbusd<const EVEX: bool>;

/// [`Vpdpbusd`] in its AVX-512 VNNI form.
type VpdpbusdEvex = Vpdpbusd<true>;
/// [`Vpdpbusd`] in its AVX-VNNI form.
type VpdpbusdVex = Vpdpbusd<false>;

impl<const EVEX: bool> ByteDot for Vpdpbusd<EVEX> {
    #[inline(always)]
    unsafe fn dot_add(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: the caller guarantees AVX2 and the form's extension.
        unsafe { vpdpbusd_add::<EVEX>(acc, u, s) }
    }
}

/// [`Vpdpbusd`]'s sum. The `{evex}` or `{vex}` prefix fixes the encoding the assembler would
/// otherwise choose. Operands as `_mm256_dpbusd_epi32(acc, u, s)`: the second register holds
/// the unsigned bytes, the third the signed ones.
///
/// # Safety
/// The CPU supports AVX-512 VNNI and VL (`EVEX`) or AVX-VNNI.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn vpdpbusd_add<const EVEX: bool>(mut acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    macro_rules! vpdpbusd {
        ($prefix:literal) => {
            core::arch::asm!(
                concat!($prefix, " vpdpbusd {acc}, {u}, {s}"),
                acc = inout(ymm_reg) acc,
                u = in(ymm_reg) u,
                s = in(ymm_reg) s,
                options(pure, nomem, nostack, preserves_flags),
            )
        };
    }
    // SAFETY: the caller guarantees the instruction; it reads and writes registers only.
    unsafe {
        if EVEX {
            vpdpbusd!("{{evex}}");
        } else {
            vpdpbusd!("{{vex}}");
        }
    }
    acc
}

/// `acc` plus one block's 32 int8 products in `i32` lanes, as [`block_i8`] sums them, by `D`.
///
/// # Safety
/// The CPU supports AVX2, FMA and `D`'s instructions.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_add<D: ByteDot>(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
    // SAFETY: the caller guarantees `D`'s instructions.
    unsafe { D::dot_add(acc, _mm256_abs_epi8(x), _mm256_sign_epi8(w, x)) }
}

/// Int8 dot product of whole blocks: each block's exact `i32` sum (per lane) is scaled by its
/// `x` scale and accumulated in `f32` lanes, two blocks per step in separate accumulators.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_i8(w: &[i8], xq: &[i8], scales: &[f32]) -> f32 {
    let blocks = (w.len() / 32).min(xq.len() / 32).min(scales.len());
    // SAFETY: block `b < blocks` reads bytes `32b .. 32b + 32` of `w` and `xq`.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 2];
        for b in 0..blocks {
            let wv = _mm256_loadu_si256(w.as_ptr().add(32 * b).cast());
            let xv = _mm256_loadu_si256(xq.as_ptr().add(32 * b).cast());
            let s = _mm256_set1_ps(scales[b]);
            acc[b % 2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_i8(wv, xv)), s, acc[b % 2]);
        }
        hsum(_mm256_add_ps(acc[0], acc[1]))
    }
}

/// Int8 dot product of whole blocks of 4-bit codes: 16 packed bytes per block split into
/// their nibbles in stream order, looked up in the 16-entry table with one `vpshufb` (the
/// table repeated in both 128-bit lanes), then as [`dot_i8`].
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_i8(bytes: &[u8], t16: &[i8; 16], xq: &[i8], scales: &[f32]) -> f32 {
    let blocks = (bytes.len() / 16).min(xq.len() / 32).min(scales.len());
    // SAFETY: `blocks` is clamped to the whole blocks `bytes` and `xq` hold.
    unsafe { dot4_i8_blocks(bytes, t16, xq, blocks, |b| scales[b]) }
}

/// The block loop of [`dot4_i8`] (`x` in natural order), each block scaled by `scale(b)`.
///
/// # Safety
/// The CPU supports AVX2 and FMA; `bytes` holds at least `16 * blocks` bytes and `xq` at
/// least `32 * blocks` values.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_i8_blocks(
    bytes: &[u8],
    t16: &[i8; 16],
    xq: &[i8],
    blocks: usize,
    scale: impl Fn(usize) -> f32,
) -> f32 {
    // SAFETY: block `b < blocks` reads bytes `16b .. 16b + 16` of `bytes` (a pair of blocks
    // `b + 1 < blocks` reads `16b .. 16b + 32`), `32b .. 32b + 32` of `xq`, and the table's
    // 16 bytes.
    unsafe {
        let table = both_lanes(t16);
        let mask = _mm_set1_epi8(0x0f);
        let mask2 = _mm256_set1_epi8(0x0f);
        let mut acc = [_mm256_setzero_ps(); 2];
        // Two blocks per step from one 32-byte load: the byte unpacks work per 128-bit lane,
        // so lane 0 holds the first block's nibble pairs and lane 1 the second's.
        let mut b = 0;
        while b + 2 <= blocks {
            let v = _mm256_loadu_si256(bytes.as_ptr().add(16 * b).cast());
            let lo = _mm256_and_si256(v, mask2);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask2);
            let ul = _mm256_unpacklo_epi8(lo, hi);
            let uh = _mm256_unpackhi_epi8(lo, hi);
            for (k, codes) in [
                _mm256_permute2x128_si256::<0x20>(ul, uh),
                _mm256_permute2x128_si256::<0x31>(ul, uh),
            ]
            .into_iter()
            .enumerate()
            {
                let wv = _mm256_shuffle_epi8(table, codes);
                let xv = _mm256_loadu_si256(xq.as_ptr().add(32 * (b + k)).cast());
                let s = _mm256_set1_ps(scale(b + k));
                acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_i8(wv, xv)), s, acc[k]);
            }
            b += 2;
        }
        for b in b..blocks {
            let v = _mm_loadu_si128(bytes.as_ptr().add(16 * b).cast());
            let lo = _mm_and_si128(v, mask);
            let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), mask);
            let codes = _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
            let wv = _mm256_shuffle_epi8(table, codes);
            let xv = _mm256_loadu_si256(xq.as_ptr().add(32 * b).cast());
            let s = _mm256_set1_ps(scale(b));
            acc[b % 2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_i8(wv, xv)), s, acc[b % 2]);
        }
        hsum(_mm256_add_ps(acc[0], acc[1]))
    }
}

/// Int8 dot product of whole blocks of `BITS`-bit codes (1 or 2) straight from packed bytes:
/// each block's 32 codes (`4·BITS` bytes) become its 32 int8 levels in natural order in one
/// register, so `x` needs no reordering, then as [`dot_i8`]. At 2 bits each byte is copied to
/// the four positions of its codes (`vpshufb`) and a code at bits `2k` (`k` = 0, 1 in each
/// half-byte) is kept in place, as `c` or `4c`, and looked up in a table holding `L[c]` at
/// both; at 1 bit each byte is copied to the eight positions of its codes and a bit test
/// picks one of the two levels.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_narrow_i8<const BITS: usize>(
    bytes: &[u8],
    t16: &[i8; 16],
    xq: &[i8],
    scales: &[f32],
) -> f32 {
    let block_bytes = 4 * BITS;
    let blocks = (bytes.len() / block_bytes)
        .min(xq.len() / 32)
        .min(scales.len());
    // 1 bit: lane 0 takes the block's first half of bytes, lane 1 the second, a byte per code.
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
    );
    // 2 bits: the layout of `block_codes2`, `L[c]` at `c` and `4c`.
    let [l0, l1, l2, l3] = [t16[0], t16[1], t16[2], t16[3]];
    let table = _mm256_setr_epi8(
        l0, l1, l2, l3, l1, 0, 0, 0, l2, 0, 0, 0, l3, 0, 0, 0, l0, l1, l2, l3, l1, 0, 0, 0, l2, 0,
        0, 0, l3, 0, 0, 0,
    );
    // 1 bit: code `8i + k` is bit `k` of byte `i`.
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let (low, high) = (_mm256_set1_epi8(l0), _mm256_set1_epi8(l1));
    let mut acc = [_mm256_setzero_ps(); 2];
    // SAFETY: block `b < blocks` reads bytes `block_bytes·b ..` (`block_bytes` of them) of
    // `bytes` and values `32b .. 32b + 32` of `xq`.
    unsafe {
        for b in 0..blocks {
            let at = bytes.as_ptr().add(block_bytes * b);
            let w = if BITS == 2 {
                _mm256_shuffle_epi8(table, block_codes2(at))
            } else {
                let v = _mm256_set1_epi32(at.cast::<i32>().read_unaligned());
                let r = _mm256_shuffle_epi8(v, spread);
                let on = _mm256_cmpeq_epi8(_mm256_and_si256(r, bit), bit);
                _mm256_blendv_epi8(low, high, on)
            };
            let xv = _mm256_loadu_si256(xq.as_ptr().add(32 * b).cast());
            let s = _mm256_set1_ps(scales[b]);
            acc[b % 2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_i8(w, xv)), s, acc[b % 2]);
        }
        hsum(_mm256_add_ps(acc[0], acc[1]))
    }
}

/// Int8 dot product of whole blocks of 3-bit codes straight from packed bytes: a block's 32
/// codes are 12 bytes, loaded (16 bytes) into both halves; each 32-bit lane takes the two
/// bytes that hold its four codes (`vpshufb`, then a shift by 4 in odd lanes), and two
/// shifts put codes 0 and 2 at bits 0 and 16 and codes 1 and 3 at bits 8 and 24, so each
/// byte holds its code in natural order for the table lookup (`vpshufb`), then as
/// [`dot_i8`]. Blocks whose 16-byte load would pass the end of `bytes` are left to the
/// caller: runs `min(⌊(bytes.len() − 4) / 12⌋, xq.len() / 32, scales.len())` blocks and
/// returns their sum and count.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot3_i8_blocks(bytes: &[u8], t16: &[i8; 16], xq: &[i8], scales: &[f32]) -> (f32, usize) {
    let blocks = (bytes.len().saturating_sub(4) / 12)
        .min(xq.len() / 32)
        .min(scales.len());
    // Lane `l` holds codes `4l .. 4l + 4`, bits `12l ..`: bytes `⌊3l/2⌋` and the next, from
    // bit 0 (even lanes) or 4 (odd lanes). Both halves see the block's 16 bytes.
    // SAFETY: `t16` holds 16 bytes.
    let t = unsafe { _mm_loadu_si128(t16.as_ptr().cast()) };
    let table = _mm256_set_m128i(t, t);
    let mut acc = [_mm256_setzero_ps(); 2];
    // SAFETY: block `b < blocks` reads bytes `12b .. 12b + 16` (inside: `12b + 16 <=
    // bytes.len()`), values `32b .. 32b + 32` of `xq` and entry `b` of `scales`.
    unsafe {
        for b in 0..blocks {
            let idx = block_codes3(bytes.as_ptr().add(12 * b));
            let wv = _mm256_shuffle_epi8(table, idx);
            let xv = _mm256_loadu_si256(xq.as_ptr().add(32 * b).cast());
            let s = _mm256_set1_ps(scales[b]);
            acc[b % 2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_i8(wv, xv)), s, acc[b % 2]);
        }
        (hsum(_mm256_add_ps(acc[0], acc[1])), blocks)
    }
}

/// The 32 codes of a 3-bit block at `at` (12 bytes, 16 read), one per byte in natural order:
/// each 32-bit lane takes the two bytes that hold its four codes (`vpshufb`, both halves
/// seeing the block, then a shift by 4 in odd lanes), and two shifts put codes 0 and 2 at
/// bits 0 and 16 and codes 1 and 3 at bits 8 and 24.
///
/// # Safety
/// The CPU supports AVX2; 16 bytes from `at` are readable.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_codes3(at: *const u8) -> __m256i {
    // Lane `l` holds codes `4l .. 4l + 4`, bits `12l ..`: bytes `⌊3l/2⌋` and the next, from
    // bit 0 (even lanes) or 4 (odd lanes).
    let windows = _mm256_setr_epi8(
        0, 1, -1, -1, 1, 2, -1, -1, 3, 4, -1, -1, 4, 5, -1, -1, 6, 7, -1, -1, 7, 8, -1, -1, 9, 10,
        -1, -1, 10, 11, -1, -1,
    );
    // SAFETY: the caller guarantees the 16 bytes.
    let v = unsafe { _mm_loadu_si128(at.cast()) };
    let w = _mm256_shuffle_epi8(_mm256_set_m128i(v, v), windows);
    let w = _mm256_srlv_epi32(w, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
    // Codes 0, 1 at bits 0, 3; 2, 3 at bits 6, 9: to bits 0 and 16, then 8 and 24.
    let p = _mm256_or_si256(w, _mm256_slli_epi32::<10>(w));
    let q = _mm256_slli_epi32::<5>(p);
    _mm256_or_si256(
        _mm256_and_si256(p, _mm256_set1_epi32(0x0007_0007)),
        _mm256_and_si256(q, _mm256_set1_epi32(0x0700_0700)),
    )
}

/// A 3-bit group's int8 table in both halves, as
/// [`portable::table8_i8`](super::portable::table8_i8) computes it: `table8(gen, 1, q)`
/// times 127, rounded half away from zero by adding `±0.5` and truncating (the steps of
/// `quantize_block`), packed to bytes `0 .. 8` of each half.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn table8_i8(gen: &Gen8, q: f32) -> __m256i {
    let v = _mm256_mul_ps(table8(gen, 1.0, q), _mm256_set1_ps(127.0));
    let sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0));
    let r = _mm256_cvttps_epi32(_mm256_add_ps(v, _mm256_or_ps(_mm256_set1_ps(0.5), sign)));
    let w = _mm256_packs_epi32(r, r);
    let b = _mm256_packs_epi16(w, w);
    // Per 128-bit lane the low 4 bytes are that lane's four entries.
    let t = _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256::<1>(b));
    _mm256_set_m128i(t, t)
}

/// [`dot3_i8_blocks`] over groups of `g` codes (a multiple of 32), group `i` through the
/// int8 table [`table8_i8`] derives from `params[i]` and each of its blocks' `x` scales times
/// `a_i / 127`. Blocks whose 16-byte load would pass the end of `bytes` go through the
/// reference.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot3_i8_groups(
    bytes: &[u8],
    xq: &[i8],
    scales: &[f32],
    g: usize,
    params: &[[f32; 2]],
    gen: &Gen8,
) -> f32 {
    if g == 0 || !g.is_multiple_of(32) {
        return 0.0;
    }
    let per_group = g / 32;
    // Whole groups of loadable blocks.
    let fast = (bytes.len().saturating_sub(4) / 12)
        .min(xq.len() / 32)
        .min(scales.len())
        / per_group;
    let fast = fast.min(params.len());
    let mut acc = [_mm256_setzero_ps(); 2];
    // SAFETY: block `b` of a group below `fast` reads bytes `12b .. 12b + 16`, values `32b
    // .. 32b + 32` of `xq` and entry `b` of `scales`, all inside (`fast` is clamped to them).
    unsafe {
        for (i, &[a, q]) in params[..fast].iter().enumerate() {
            let table = table8_i8(gen, q);
            let step = a * (1.0 / 127.0);
            for b in i * per_group..(i + 1) * per_group {
                let wv = _mm256_shuffle_epi8(table, block_codes3(bytes.as_ptr().add(12 * b)));
                let xv = _mm256_loadu_si256(xq.as_ptr().add(32 * b).cast());
                let s = _mm256_set1_ps(scales[b] * step);
                acc[b % 2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_i8(wv, xv)), s, acc[b % 2]);
            }
        }
    }
    let head = hsum(_mm256_add_ps(acc[0], acc[1]));
    // The groups left (at most the last few of the row) through the reference.
    let first = fast * per_group;
    let end = xq.len().min(params.len() * g);
    if first * 32 >= end {
        return head;
    }
    head + super::portable::dot3_i8_groups(
        &bytes[first * 12..],
        &xq[first * 32..end],
        &scales[first..],
        g,
        &params[fast..],
        gen,
    )
}

/// [`dot3_i8_blocks`] over every whole block, the last ones (whose 16-byte load would pass
/// the end of `bytes`) from a copy.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot3_i8(bytes: &[u8], t16: &[i8; 16], xq: &[i8], scales: &[f32]) -> f32 {
    // SAFETY: the caller guarantees AVX2 and FMA.
    let (mut acc, done) = unsafe { dot3_i8_blocks(bytes, t16, xq, scales) };
    let whole = (bytes.len() / 12).min(xq.len() / 32).min(scales.len());
    // The last blocks' 12 bytes copied where a 16-byte load may read them: the reference
    // took a scalar lookup per code there, a twentieth of a row's time at 4096 codes.
    for b in done..whole {
        let mut block = [0u8; 16];
        block[..12].copy_from_slice(&bytes[12 * b..12 * b + 12]);
        // SAFETY: as above.
        let (sum, _) =
            unsafe { dot3_i8_blocks(&block, t16, &xq[32 * b..32 * b + 32], &scales[b..b + 1]) };
        acc += sum;
    }
    acc
}

/// `out[i] = table[codes[i]]` for codes below `levels` (at most 128), 32 codes a step: each
/// 16-entry slice of the table is a `vpshufb` (which reads a code's low four bits), and the
/// code's higher bits pick among the slices' results with `vpblendvb` (bit 4, then 5, then 6
/// moved to the byte's top bit). 32, 64 and 128 entries cost 2, 4 and 8 lookups a step, in
/// place of a scalar load per code. Tables of more entries are left to the caller (0 done).
/// Returns the codes done (whole steps); the caller finishes the rest.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn lut_i8(codes: &[u8], table: &[i8; 256], levels: usize, out: &mut [i8]) -> usize {
    let n = codes.len().min(out.len());
    let slices = levels.div_ceil(16).next_power_of_two();
    if slices > 8 {
        return 0;
    }
    let mut t = [_mm256_setzero_si256(); 8];
    for (k, t) in t.iter_mut().enumerate().take(slices) {
        // SAFETY: slice `k < 8` reads entries `16k .. 16k + 16` of the 256.
        let v = unsafe { _mm_loadu_si128(table.as_ptr().add(16 * k).cast()) };
        *t = _mm256_set_m128i(v, v);
    }
    let mut i = 0;
    // SAFETY: each step reads codes `i .. i + 32` and writes `out[i .. i + 32]`, `i + 32 <= n`.
    unsafe {
        while i + 32 <= n {
            let c = _mm256_loadu_si256(codes.as_ptr().add(i).cast());
            // Bit 7 of every code is clear (codes are below 128): no lookup zeroes.
            let mut r = [_mm256_setzero_si256(); 8];
            for k in 0..slices {
                r[k] = _mm256_shuffle_epi8(t[k], c);
            }
            // Bit 4 picks within pairs of slices, bit 5 within pairs of pairs, bit 6 last.
            let mut width = slices;
            let mut shift = 3;
            while width > 1 {
                let m = _mm256_sll_epi16(c, _mm_cvtsi32_si128(shift));
                for k in 0..width / 2 {
                    r[k] = _mm256_blendv_epi8(r[2 * k], r[2 * k + 1], m);
                }
                width /= 2;
                shift -= 1;
            }
            _mm256_storeu_si256(out.as_mut_ptr().add(i).cast(), r[0]);
            i += 32;
        }
    }
    i
}

/// The 32 codes of a 2-bit block at `at` (8 bytes), a byte each for a `vpshufb` lookup:
/// lane 0 takes the first four bytes, lane 1 the next four, each byte copied to its four
/// codes' positions. Code `4i + k` sits at bits `2k` of byte `i`; codes 0 and 1 of a byte
/// are kept in place (as `c` and `4c`), codes 2 and 3 after a shift by four, so a table
/// holds `L[c]` at both `c` and `4c`.
///
/// # Safety
/// The CPU supports AVX2; 8 bytes from `at` are readable.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_codes2(at: *const u8) -> __m256i {
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7,
        7, 7,
    );
    // SAFETY: the caller guarantees the 8 bytes.
    let v = _mm256_set1_epi64x(unsafe { at.cast::<i64>().read_unaligned() });
    let r = _mm256_shuffle_epi8(v, spread);
    let s = _mm256_srli_epi16::<4>(r);
    _mm256_or_si256(
        _mm256_and_si256(r, _mm256_set1_epi32(0x0000_0c03)),
        _mm256_and_si256(s, _mm256_set1_epi32(0x0c03_0000)),
    )
}

/// [`dot_narrow_i8`] at 2 bits where each block has its own table `[−127, −r, r, 127]`
/// (`r = lower[b]`): the table register is made per block from the fixed top levels and
/// `r` given its lower levels' signs (`vpsignb`), so 2-bit groups that each have their own
/// `q` run one pass, with no table made in memory.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_narrow_i8_lower(bytes: &[u8], xq: &[i8], scales: &[f32], lower: &[i8]) -> f32 {
    let blocks = (bytes.len() / 8)
        .min(xq.len() / 32)
        .min(scales.len())
        .min(lower.len());
    // The table layout of `block_codes2` (`L[c]` at `c` and `4c`): the top levels, and the
    // signs of the lower ones.
    let top = _mm256_setr_epi8(
        -127, 0, 0, 127, 0, 0, 0, 0, 0, 0, 0, 0, 127, 0, 0, 0, -127, 0, 0, 127, 0, 0, 0, 0, 0, 0,
        0, 0, 127, 0, 0, 0,
    );
    let signs = _mm256_setr_epi8(
        0, -1, 1, 0, -1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, -1, 1, 0, -1, 0, 0, 0, 1, 0, 0, 0, 0,
        0, 0, 0,
    );
    let mut acc = [_mm256_setzero_ps(); 2];
    // SAFETY: block `b < blocks` reads bytes `8b .. 8b + 8` of `bytes`, values `32b .. 32b +
    // 32` of `xq` and entry `b` of `scales` and `lower`.
    unsafe {
        for b in 0..blocks {
            let table = _mm256_add_epi8(top, _mm256_sign_epi8(_mm256_set1_epi8(lower[b]), signs));
            let w = _mm256_shuffle_epi8(table, block_codes2(bytes.as_ptr().add(8 * b)));
            let xv = _mm256_loadu_si256(xq.as_ptr().add(32 * b).cast());
            let s = _mm256_set1_ps(scales[b]);
            acc[b % 2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_i8(w, xv)), s, acc[b % 2]);
        }
        hsum(_mm256_add_ps(acc[0], acc[1]))
    }
}

/// The `i32` sums of a pair of blocks from one 32-byte load `v` of their packed codes: the
/// low nibbles (even positions) meet `xe` and the high nibbles (odd positions) `xo`, `x` in
/// [`pair_order`](super::portable::pair_order), so lane 0 sums block `b` and lane 1 block
/// `b + 1` with no permute.
///
/// # Safety
/// The CPU supports AVX2, FMA and `D`'s instructions.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn pair_sums<D: ByteDot>(v: __m256i, table: __m256i, xe: __m256i, xo: __m256i) -> __m256i {
    let mask = _mm256_set1_epi8(0x0f);
    let lo = _mm256_and_si256(v, mask);
    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
    // SAFETY: the caller guarantees `D`'s instructions.
    unsafe {
        let even = block_add::<D>(_mm256_setzero_si256(), _mm256_shuffle_epi8(table, lo), xe);
        block_add::<D>(even, _mm256_shuffle_epi8(table, hi), xo)
    }
}

/// The `i32` sum, as `f32`, of a lone last block (the first 16 bytes of `bytes`) with its
/// 32 values `xv` in [`pair_order`](super::portable::pair_order): its low nibbles in lane 0
/// and high nibbles in lane 1 meet its even and odd values, which lie in that order.
///
/// # Safety
/// The CPU supports AVX2, FMA and `D`'s instructions.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn lone_block_sum<D: ByteDot>(bytes: &[u8], table: __m256i, xv: __m256i) -> f32 {
    let bytes = &bytes[..16];
    // SAFETY: `bytes` holds 16 bytes.
    let v = unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) };
    let mask = _mm_set1_epi8(0x0f);
    let codes = _mm256_set_m128i(
        _mm_and_si128(_mm_srli_epi16::<4>(v), mask),
        _mm_and_si128(v, mask),
    );
    let w = _mm256_shuffle_epi8(table, codes);
    // SAFETY: the caller guarantees `D`'s instructions.
    hsum(_mm256_cvtepi32_ps(unsafe {
        block_add::<D>(_mm256_setzero_si256(), w, xv)
    }))
}

/// The batched int8 kernels (per row, compact groups, groups with their own tables), built
/// for the instructions the CPU sums byte products with. Each variant holds the proof of its
/// instructions; the three builds give the same bits.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code, reason = "the variants' proofs are held, never read")]
pub(crate) enum Int8Rows {
    /// AVX2: `vpmaddubsw` + `vpmaddwd` ([`Maddubs`]).
    Avx2(Avx2),
    /// AVX-VNNI: the VEX `vpdpbusd` ([`VpdpbusdVex`]).
    AvxVnni(AvxVnni),
    /// AVX-512 VNNI with VL: the EVEX `vpdpbusd` ([`VpdpbusdEvex`]).
    Avx512Vnni(Avx512Vnni),
}

/// `$call` with `$d` naming the [`ByteDot`] of `$build`'s variant.
macro_rules! with_byte_dot {
    ($build:expr, $d:ident => $call:expr) => {
        match $build {
            Int8Rows::Avx2(_) => {
                type $d = Maddubs;
                $call
            }
            Int8Rows::AvxVnni(_) => {
                type $d = VpdpbusdVex;
                $call
            }
            Int8Rows::Avx512Vnni(_) => {
                type $d = VpdpbusdEvex;
                $call
            }
        }
    };
}

impl Int8Rows {
    /// The build for `isa`: a VNNI one where the path has VNNI, else AVX2's; `None` off x86
    /// SIMD paths.
    #[inline]
    pub(crate) fn of(isa: Isa) -> Option<Int8Rows> {
        if let Some(t) = isa.avx512_vnni() {
            return Some(Int8Rows::Avx512Vnni(t));
        }
        if let Some(t) = isa.avx_vnni() {
            return Some(Int8Rows::AvxVnni(t));
        }
        isa.avx2().map(Int8Rows::Avx2)
    }

    /// Int8 dot products of `R` packed 4-bit rows (whole blocks, each through its own table)
    /// with one `x` in pair order (see [`dot4_i8_rows`]).
    #[inline]
    pub(crate) fn dot4_i8_rows<const R: usize>(
        self,
        rows: [&[u8]; R],
        tables: [&[i8; 16]; R],
        xp: &[i8],
        ps: &[f32],
    ) -> [f32; R] {
        // SAFETY: each variant holds the proof that detection found its instructions, AVX2
        // and FMA.
        with_byte_dot!(self, D => unsafe { dot4_i8_rows::<R, D>(rows, tables, xp, ps) })
    }

    /// Int8 dot products of `R` 4-bit rows in groups of `g` codes (a multiple of 32), each
    /// sharing one int8 table up to an `f16` scale per group, `x` in pair order (see
    /// [`dot4_i8_compact`]).
    #[inline]
    pub(crate) fn dot4_i8_compact<const R: usize>(
        self,
        rows: [&[u8]; R],
        tables: [&[i8; 16]; R],
        xp: &[i8],
        ps: &[f32],
        g: usize,
        scales: [&[u8]; R],
    ) -> [f32; R] {
        // SAFETY: as in `dot4_i8_rows`.
        with_byte_dot!(self, D => unsafe {
            dot4_i8_compact::<R, D>(rows, tables, xp, ps, g, scales)
        })
    }

    /// Int8 dot products of `R` 4-bit rows in groups of `g` codes (a multiple of 32), each
    /// group's int8 table derived in registers from its `(a, q)`, `x` in pair order (see
    /// [`dot4_i8_groups`]).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dot4_i8_groups<const R: usize>(
        self,
        rows: [&[u8]; R],
        xp: &[i8],
        ps: &[f32],
        g: usize,
        groups: usize,
        gen: &Gen16,
        params: impl Fn(usize, usize, &mut [[f32; 2]]),
        pairs: Option<[&[u8]; R]>,
    ) -> [f32; R] {
        // SAFETY: as in `dot4_i8_rows`.
        with_byte_dot!(self, D => unsafe {
            dot4_i8_groups::<R, D>(rows, xp, ps, g, groups, gen, params, pairs)
        })
    }
}

/// 16 bytes (an int8 table, or `vpshufb` indices) in both 128-bit lanes of a register: one
/// broadcast load.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn both_lanes(t: &[i8; 16]) -> __m256i {
    // SAFETY: `t` holds 16 bytes.
    _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(t.as_ptr().cast()) })
}

/// Each row's 16-entry int8 table in both 128-bit lanes of a register. A loop rather than
/// `array::from_fn`, whose closure runs outside the target features and is compiled as a
/// call per row.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn table_registers<const R: usize>(tables: [&[i8; 16]; R]) -> [__m256i; R] {
    let mut out = [_mm256_setzero_si256(); R];
    for (o, t) in out.iter_mut().zip(tables) {
        *o = both_lanes(t);
    }
    out
}

/// Each row's accumulator summed ([`hsum`]), in a loop as [`table_registers`].
#[inline]
#[target_feature(enable = "avx2,fma")]
fn row_sums<const R: usize>(acc: &[__m256; R]) -> [f32; R] {
    let mut out = [0.0f32; R];
    for (o, &a) in out.iter_mut().zip(acc) {
        *o = hsum(a);
    }
    out
}

/// How far ahead in bytes [`dot4_i8_pairs`] prefetches each row's codes: several steps of
/// its loop, so a line is asked for well before it is read and is still in L1 when it is.
const PREFETCH: usize = 1024;

/// Int8 dot products of `R` packed 4-bit rows with one `x` in
/// [`pair_order`](super::portable::pair_order) (`xp`, `blocks` whole blocks), the pair (or
/// lone last block) at block `b` of row `r` looking its codes up in the 16-entry table
/// `table(r, b)` holds in both 128-bit lanes. A pair of blocks scales its `i32` sums by the
/// vector `pair_scale(r, b)` (block `b`'s scale in lanes 0–3, block `b + 1`'s in lanes 4–7);
/// a last lone block by `block_scale(r, b)`. The rows share each load of `x`, and every row runs
/// the same operations in the same order whatever rows it is batched with, so a row's result
/// does not depend on `R`.
///
/// # Safety
/// The CPU supports AVX2 and FMA; every row holds at least `16 * blocks` bytes and `xp` at
/// least `32 * blocks` values.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_i8_pairs<const R: usize, D: ByteDot>(
    rows: [&[u8]; R],
    table: impl Fn(usize, usize) -> __m256i,
    xp: &[i8],
    blocks: usize,
    pair_scale: impl Fn(usize, usize) -> __m256,
    block_scale: impl Fn(usize, usize) -> f32,
) -> [f32; R] {
    // SAFETY: the blocks from `b` on that a step reads (two pairs, a pair, or the lone last
    // one) are below `blocks`: bytes `16b ..` of every row and values `32b ..` of `xp` past
    // them stay inside the lengths the caller guarantees; a prefetch reads nothing.
    unsafe {
        let load = |p: *const i8, k: usize| _mm256_loadu_si256(p.add(k).cast::<__m256i>());
        let x = xp.as_ptr();
        let mut acc = [_mm256_setzero_ps(); R];
        // One pair of blocks: `x`, `|x|`, the tables and the accumulators of four rows fit
        // the sixteen vector registers; each row's chain of one FMA per pair is far shorter
        // than the pair's work for all rows.
        let mut pair = |b: usize| {
            let (xe, xo) = (load(x, 32 * b), load(x, 32 * b + 32));
            for r in 0..R {
                let c = rows[r].as_ptr().cast::<i8>();
                let s = _mm256_cvtepi32_ps(pair_sums::<D>(load(c, 16 * b), table(r, b), xe, xo));
                acc[r] = _mm256_fmadd_ps(s, pair_scale(r, b), acc[r]);
            }
        };
        let mut b = 0;
        // Two pairs per step read a 64-byte line of every row. The out-of-order window holds
        // only a few steps of this much work, too little to cover a miss, so each step asks
        // for its rows' line `PREFETCH` bytes ahead; where the rows run on in memory (the
        // next row of each stream, as the GEMV orders them) that reaches into the next row.
        // A prefetch never faults, so the address may lie past a row's end.
        while b + 4 <= blocks {
            for row in &rows {
                _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().wrapping_add(16 * b + PREFETCH).cast());
            }
            pair(b);
            pair(b + 2);
            b += 4;
        }
        if b + 2 <= blocks {
            pair(b);
            b += 2;
        }
        let mut out = row_sums(&acc);
        if b < blocks {
            let xv = load(x, 32 * b);
            for r in 0..R {
                let sum = lone_block_sum::<D>(&rows[r][16 * b..], table(r, b), xv);
                out[r] += sum * block_scale(r, b);
            }
        }
        out
    }
}

/// [`dot4_i8_pairs`] for rows with one scale per block, `ps` holding each block's scale four
/// times (so the pair `b`, `b + 1` loads its scale vector from `ps[4b ..]`).
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_i8_rows<const R: usize, D: ByteDot>(
    rows: [&[u8]; R],
    tables: [&[i8; 16]; R],
    xp: &[i8],
    ps: &[f32],
) -> [f32; R] {
    let blocks = rows
        .iter()
        .fold(xp.len() / 32, |m, r| m.min(r.len() / 16))
        .min(ps.len() / 4);
    // SAFETY: a pair `b + 1 < blocks` reads `ps[4b .. 4b + 8]`, inside `ps`.
    let pair = |_, b: usize| unsafe { _mm256_loadu_ps(ps.as_ptr().add(4 * b)) };
    let tv = table_registers(tables);
    // SAFETY: `blocks` is clamped to the whole blocks every row and `xp` hold.
    unsafe { dot4_i8_pairs::<R, D>(rows, |r, _| tv[r], xp, blocks, pair, |_, b| ps[4 * b]) }
}

/// How far ahead in bytes the grouped int8 kernels prefetch each row's stored `(a, q)`
/// pairs: 32 groups, at least as far ahead as [`PREFETCH`] reaches in the codes for groups
/// of 64 codes or more.
const PARAM_PREFETCH: usize = 256;

/// Groups of one row that the grouped int8 kernels hold parameters for at a time.
const WINDOW: usize = 16;

/// One row's parameters for groups `base .. base + WINDOW` in [`dot4_i8_pairs_grouped`]:
/// each group's `a / 127` four times (the lanes of one block in a pair's vector) and, for
/// groups with their own `q`, each group's int8 table, each with one group of slack so that
/// a 32-byte load of two neighbours stays inside. Groups past the row's last are 0.
#[derive(Clone, Copy)]
struct GroupWindow {
    scale: [[f32; 4]; WINDOW + 1],
    table: [[i8; 16]; WINDOW + 1],
}

impl GroupWindow {
    const ZERO: GroupWindow = GroupWindow {
        scale: [[0.0; 4]; WINDOW + 1],
        table: [[0; 16]; WINDOW + 1],
    };
}

/// The table register of a pair of blocks whose first block lies in window group `o` and
/// whose second lies `d` (0 or 1) groups later: one group's table in both 128-bit lanes, or
/// two neighbours' tables, one per lane.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn window_table(w: &GroupWindow, o: usize, d: usize) -> __m256i {
    let t = &w.table[o..o + 2];
    if d == 0 {
        both_lanes(&t[0])
    } else {
        // SAFETY: `t` holds two neighbouring 16-byte tables, 32 contiguous bytes.
        unsafe { _mm256_loadu_si256(t.as_ptr().cast()) }
    }
}

/// The group scales of a pair of blocks as [`window_table`] places its tables: window group
/// `o`'s `a / 127` in lanes 0–3 and group `o + d`'s in lanes 4–7.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn window_scales(w: &GroupWindow, o: usize, d: usize) -> __m256 {
    let s = &w.scale[o..o + 2];
    if d == 0 {
        _mm256_set1_ps(s[0][0])
    } else {
        // SAFETY: `s` holds two neighbouring groups' four floats, 8 contiguous floats.
        unsafe { _mm256_loadu_ps(s.as_ptr().cast()) }
    }
}

/// Int8 dot products of `R` packed 4-bit rows in groups of `pg` blocks (`pg · 32` codes) with
/// one `x` in [`pair_order`](super::portable::pair_order) (`xp`, `blocks` whole blocks, `ps`
/// each block's scale four times), each group scaled by its `a / 127`. `fill(r, base, w)`
/// writes row `r`'s parameters of groups `base .. base + WINDOW` into `w`; with `TABLES` each
/// group looks its codes up in its own table from the window, without it in the row's
/// `tables[r]`.
///
/// A step of two pairs whose four blocks lie in one group scales its sums by the `x` scales
/// and then the step's sum by the group's scale, one FMA per step and row where the per-row
/// kernel adds. Any other pair goes alone, its `x` scales multiplied by
/// its groups' scales first (a step of one pair keeps fewer vectors live than two, which
/// pays off where a step would hold two table registers a row). Every row runs the same
/// operations in the same order whatever rows it is batched with (the branches depend on the
/// block index only), so a row's result does not depend on `R`.
///
/// # Safety
/// The CPU supports AVX2 and FMA; every row holds at least `16 * blocks` bytes, `xp` at least
/// `32 * blocks` values and `ps` at least `4 * blocks` floats; `pg >= 2` (groups of one
/// block run [`dot4_i8_pairs_runs`]).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_i8_pairs_grouped<const R: usize, const TABLES: bool, D: ByteDot>(
    rows: [&[u8]; R],
    tables: [&[i8; 16]; R],
    xp: &[i8],
    ps: &[f32],
    blocks: usize,
    pg: usize,
    mut fill: impl FnMut(usize, usize, &mut GroupWindow),
) -> [f32; R] {
    // SAFETY: the blocks from `b` on that a step reads (four, two, or the lone last one) are
    // below `blocks`: bytes `16b ..` of every row, values `32b ..` of `xp` and floats `4b ..`
    // of `ps` past them stay inside the lengths the caller guarantees; the tables hold 16
    // bytes.
    unsafe {
        let load = |p: *const i8, k: usize| _mm256_loadu_si256(p.add(k).cast::<__m256i>());
        let tv = table_registers(tables);
        let table = |w: &GroupWindow, r: usize, o: usize, d: usize| {
            if TABLES {
                window_table(w, o, d)
            } else {
                tv[r]
            }
        };
        let x = xp.as_ptr();
        let mut win = [GroupWindow::ZERO; R];
        let mut base = usize::MAX;
        let mut acc = [_mm256_setzero_ps(); R];
        // The group of block `b` and `b`'s place in it, advanced without a division: a step
        // crosses at most one group boundary (`rem + 3 < 2·pg` for `pg >= 3`, and `rem` is 0
        // for `pg == 2` at an even `b`).
        let (mut gb, mut rem) = (0usize, 0usize);
        let group = |gb: usize, rem: usize, k: usize| gb + usize::from(rem + k >= pg);
        let pairs = blocks & !1;
        let mut b = 0;
        while b < pairs {
            // Two pairs in one group, or else one pair.
            let four = b + 4 <= pairs && group(gb, rem, 3) == gb;
            let step = if four { 4 } else { 2 };
            let last = group(gb, rem, step - 1);
            if gb < base || last - base >= WINDOW {
                base = gb;
                for (r, w) in win.iter_mut().enumerate() {
                    fill(r, base, w);
                }
            }
            let o = gb - base;
            let (xe, xo) = (load(x, 32 * b), load(x, 32 * b + 32));
            if four {
                let (x1e, x1o) = (load(x, 32 * b + 64), load(x, 32 * b + 96));
                for r in 0..R {
                    let c = rows[r].as_ptr().cast::<i8>();
                    let t = table(&win[r], r, o, 0);
                    let s0 = _mm256_cvtepi32_ps(pair_sums::<D>(load(c, 16 * b), t, xe, xo));
                    let s1 = _mm256_cvtepi32_ps(pair_sums::<D>(load(c, 16 * b + 32), t, x1e, x1o));
                    let p = _mm256_mul_ps(s0, _mm256_loadu_ps(ps.as_ptr().add(4 * b)));
                    let p = _mm256_fmadd_ps(s1, _mm256_loadu_ps(ps.as_ptr().add(4 * b + 8)), p);
                    acc[r] = _mm256_fmadd_ps(p, _mm256_set1_ps(win[r].scale[o][0]), acc[r]);
                }
            } else {
                let d = last - gb;
                for r in 0..R {
                    let c = rows[r].as_ptr().cast::<i8>();
                    let w = &win[r];
                    let sc = _mm256_loadu_ps(ps.as_ptr().add(4 * b));
                    let sc = _mm256_mul_ps(sc, window_scales(w, o, d));
                    let s = pair_sums::<D>(load(c, 16 * b), table(w, r, o, d), xe, xo);
                    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), sc, acc[r]);
                }
            }
            b += step;
            rem += step;
            while rem >= pg {
                rem -= pg;
                gb += 1;
            }
        }
        let mut out = row_sums(&acc);
        if b < blocks {
            // A lone block.
            if gb < base || gb - base >= WINDOW {
                base = gb;
                for (r, w) in win.iter_mut().enumerate() {
                    fill(r, base, w);
                }
            }
            let o = gb - base;
            let xv = load(x, 32 * b);
            for r in 0..R {
                let sum = lone_block_sum::<D>(&rows[r][16 * b..], table(&win[r], r, o, 0), xv);
                out[r] += sum * (ps[4 * b] * win[r].scale[o][0]);
            }
        }
        out
    }
}

/// Int8 dot products of `R` packed 4-bit rows in groups of an even number `pg` of blocks,
/// one group at a time: each group's pairs run the per-row loop of [`dot4_i8_pairs`] into
/// fresh accumulators (the `x` scales applied per pair), which then join the row's total
/// scaled by the group's `a / 127`, one FMA per group and row. `group(r, i)` gives row `r`'s
/// table register and scale for group `i`; it is called in order of `i` for every row.
/// A short last group (the blocks past the whole groups) runs the same way, its last block
/// alone if odd. Every row runs the same operations in the same order whatever rows it is
/// batched with, so a row's result does not depend on `R`.
///
/// # Safety
/// The CPU supports AVX2 and FMA; every row holds at least `16 * blocks` bytes, `xp` at least
/// `32 * blocks` values and `ps` at least `4 * blocks` floats; `pg` is even and at least 2.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_i8_pairs_nested<const R: usize, D: ByteDot>(
    rows: [&[u8]; R],
    xp: &[i8],
    ps: &[f32],
    blocks: usize,
    pg: usize,
    mut group: impl FnMut(usize, usize) -> (__m256i, f32),
) -> [f32; R] {
    // SAFETY: every pair `b, b + 1` read lies below the group's end, itself at most `blocks`,
    // and a lone block `b` below `blocks`: bytes `16b ..` of every row, values `32b ..` of
    // `xp` and floats `4b ..` of `ps` past them stay inside the lengths the caller
    // guarantees.
    unsafe {
        let load = |p: *const i8, k: usize| _mm256_loadu_si256(p.add(k).cast::<__m256i>());
        let x = xp.as_ptr();
        let mut total = [_mm256_setzero_ps(); R];
        let mut lone = [0.0f32; R];
        let mut start = 0;
        let mut i = 0;
        while start < blocks {
            let end = (start + pg).min(blocks);
            let mut tv = [_mm256_setzero_si256(); R];
            let mut sc = [0.0f32; R];
            for r in 0..R {
                (tv[r], sc[r]) = group(r, i);
            }
            let mut acc = [_mm256_setzero_ps(); R];
            let mut b = start;
            while b + 2 <= end {
                let (xe, xo) = (load(x, 32 * b), load(x, 32 * b + 32));
                let scale = _mm256_loadu_ps(ps.as_ptr().add(4 * b));
                for r in 0..R {
                    let c = rows[r].as_ptr().cast::<i8>();
                    let s = _mm256_cvtepi32_ps(pair_sums::<D>(load(c, 16 * b), tv[r], xe, xo));
                    acc[r] = _mm256_fmadd_ps(s, scale, acc[r]);
                }
                b += 2;
            }
            for r in 0..R {
                total[r] = _mm256_fmadd_ps(acc[r], _mm256_set1_ps(sc[r]), total[r]);
            }
            if b < end {
                let xv = load(x, 32 * b);
                for r in 0..R {
                    let sum = lone_block_sum::<D>(&rows[r][16 * b..], tv[r], xv);
                    lone[r] = sum * (ps[4 * b] * sc[r]);
                }
            }
            start = end;
            i += 1;
        }
        let mut out = row_sums(&total);
        for (o, lone) in out.iter_mut().zip(lone) {
            *o += lone;
        }
        out
    }
}

/// Row `r`'s parameters of eight groups in [`dot4_i8_pairs_runs`]: each group's `a / 127`
/// and, for groups with their own tables, each group's int8 table (in groups of one block,
/// two neighbours' tables are one pair's table register).
#[derive(Clone, Copy)]
struct EightGroups {
    scale: [f32; 8],
    table: [[i8; 16]; 8],
}

/// Int8 dot products of `R` packed 4-bit rows in groups of `PG` blocks (1, 2, 4 or 8), a run
/// of eight blocks at a time, with the scales (and with `TABLES` the int8 tables) of eight
/// groups that `fill(r, first, whole, out)` writes for row `r`'s groups `first .. first + 8`
/// (`whole`: all eight lie below `blocks.div_ceil(PG)`; otherwise only those below are read).
/// A run adds each row's four pairs' `i32` sums across lanes into one vector of the eight
/// blocks' sums (`vphaddd` thrice) and scales it once by the eight `x` scales times the
/// blocks' group scales, both in [`run_x_scales`]'s lane order (the group scales picked by
/// one permute): one product and one FMA a row and run, where a pair loop needs them a
/// pair. Pairs and a lone block past the last whole run go one at a time. Each pair looks
/// its codes up in its groups' tables from `out` (`TABLES`) or in the row's `tables[r]`.
/// Every row runs the same operations in the same order whatever rows it is batched with, so
/// a row's result does not depend on `R`.
///
/// # Safety
/// The CPU supports AVX2 and FMA; every row holds at least `16 * blocks` bytes, `xp` at least
/// `32 * blocks` values and `ps` at least `4 * blocks` floats; `PG` is 1, 2, 4 or 8.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_i8_pairs_runs<const R: usize, const PG: usize, const TABLES: bool, D: ByteDot>(
    rows: [&[u8]; R],
    tables: [&[i8; 16]; R],
    xp: &[i8],
    ps: &[f32],
    blocks: usize,
    mut fill: impl FnMut(usize, usize, bool, &mut EightGroups),
) -> [f32; R] {
    // The block (of eight) whose sum a run's lane holds.
    const ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];
    // Blocks one `fill` covers.
    let span = 8 * PG;
    let groups = blocks.div_ceil(PG);
    // SAFETY: a run, a pair or the lone last block at `b` reads blocks below `blocks`: bytes
    // `16b ..` of every row, values `32b ..` of `xp` and floats `4b ..` of `ps` inside the
    // lengths the caller guarantees; the tables hold 16 bytes, two neighbouring ones 32 (a
    // pair of groups of one block, whose second group is among the eight), the eight scales
    // and the permute indices 8 lanes each; a prefetch reads nothing.
    unsafe {
        let load = |p: *const i8, k: usize| _mm256_loadu_si256(p.add(k).cast::<__m256i>());
        let tv = table_registers(tables);
        let x = xp.as_ptr();
        // For the `j`-th run of a fill, the lane of the eight groups each block's sum takes:
        // `(8j + ORDER[lane]) / PG`. Opaque to the optimiser, which otherwise splits a
        // constant-index `vpermps` into a shuffle and a lane permute (~4 % more instructions).
        let mut picks = [[0i32; 8]; PG];
        for (j, pick) in picks.iter_mut().enumerate() {
            for (lane, p) in pick.iter_mut().enumerate() {
                *p = ((8 * j + ORDER[lane]) / PG) as i32;
            }
        }
        let picks = core::hint::black_box(picks);
        let mut eight = [EightGroups {
            scale: [0.0; 8],
            table: [[0; 16]; 8],
        }; R];
        let mut acc = [_mm256_setzero_ps(); R];
        // The table register of row `r`'s pair whose first block is block `o` of the fill.
        let pair_table = |eight: &[EightGroups; R], r: usize, o: usize| {
            if !TABLES {
                tv[r]
            } else if PG == 1 {
                _mm256_loadu_si256(eight[r].table[o..].as_ptr().cast())
            } else {
                both_lanes(&eight[r].table[o / PG])
            }
        };
        // Run `j` of the fill at block `start`: rows one after another, two pairs at a time,
        // so that only the first halves of the rows wait for their second.
        // A macro, not a closure: LLVM compiled the closure as a call, not inlined.
        macro_rules! run {
            ($start:expr, $j:expr) => {{
                let (start, j) = ($start, $j);
                let b0 = start + 8 * j;
                for row in &rows {
                    let p = row.as_ptr().wrapping_add(16 * b0 + PREFETCH);
                    _mm_prefetch::<_MM_HINT_T0>(p.cast());
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64).cast());
                }
                let sums = |r: usize, k: usize| {
                    let b = b0 + 2 * k;
                    let t = pair_table(&eight, r, 8 * j + 2 * k);
                    let c = rows[r].as_ptr().cast::<i8>();
                    pair_sums::<D>(load(c, 16 * b), t, load(x, 32 * b), load(x, 32 * b + 32))
                };
                let half = |r: usize, k: usize| _mm256_hadd_epi32(sums(r, k), sums(r, k + 1));
                let mut low = [_mm256_setzero_si256(); R];
                for (r, l) in low.iter_mut().enumerate() {
                    *l = half(r, 0);
                }
                let xs = run_x_scales(ps.as_ptr().add(4 * b0));
                let pick = _mm256_loadu_si256(picks[j].as_ptr().cast());
                for r in 0..R {
                    let blocks8 = _mm256_cvtepi32_ps(_mm256_hadd_epi32(low[r], half(r, 2)));
                    let g =
                        _mm256_permutevar8x32_ps(_mm256_loadu_ps(eight[r].scale.as_ptr()), pick);
                    acc[r] = _mm256_fmadd_ps(blocks8, _mm256_mul_ps(xs, g), acc[r]);
                }
            }};
        }
        let whole = blocks / span * span;
        let mut start = 0;
        while start < whole {
            for (r, e) in eight.iter_mut().enumerate() {
                fill(r, start / PG, true, e);
            }
            for j in 0..PG {
                run!(start, j);
            }
            start += span;
        }
        if start == blocks {
            return row_sums(&acc);
        }
        // The last, partial fill: its whole runs, then pairs, then a lone block.
        for (r, e) in eight.iter_mut().enumerate() {
            fill(r, start / PG, start / PG + 8 <= groups, e);
        }
        let mut b = start;
        while b + 8 <= blocks {
            run!(start, (b - start) / 8);
            b += 8;
        }
        while b + 2 <= blocks {
            let (xe, xo) = (load(x, 32 * b), load(x, 32 * b + 32));
            let scale = _mm256_loadu_ps(ps.as_ptr().add(4 * b));
            let (g0, g1) = ((b - start) / PG, (b + 1 - start) / PG);
            for r in 0..R {
                let c = rows[r].as_ptr().cast::<i8>();
                let t = pair_table(&eight, r, b - start);
                let sc = &eight[r].scale;
                let g = _mm256_set_m128(_mm_set1_ps(sc[g1]), _mm_set1_ps(sc[g0]));
                let s = _mm256_cvtepi32_ps(pair_sums::<D>(load(c, 16 * b), t, xe, xo));
                acc[r] = _mm256_fmadd_ps(s, _mm256_mul_ps(scale, g), acc[r]);
            }
            b += 2;
        }
        let mut out = row_sums(&acc);
        if b < blocks {
            let k = (b - start) / PG;
            let xv = load(x, 32 * b);
            for r in 0..R {
                let t = if TABLES {
                    both_lanes(&eight[r].table[k])
                } else {
                    tv[r]
                };
                let sum = lone_block_sum::<D>(&rows[r][16 * b..], t, xv);
                out[r] += sum * (ps[4 * b] * eight[r].scale[k]);
            }
        }
        out
    }
}

/// The `x` scales of the eight blocks from `ps` on (each block's scale four times, as
/// [`dot4_i8_rows`] takes them) in the lane order [`dot4_i8_pairs_runs`]' runs reduce
/// their sums to: blocks 0, 2, 4, 6, then 1, 3, 5, 7. The four pairs' scale vectors already
/// hold block `2k` in lanes 0–3 and `2k + 1` in lanes 4–7, so lane `k` and `4 + k` come
/// from the `k`-th: three blends.
///
/// # Safety
/// `ps` points to 32 readable floats.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_x_scales(ps: *const f32) -> __m256 {
    // SAFETY: the caller guarantees the 32 floats.
    let [p0, p1, p2, p3] = unsafe { [0, 8, 16, 24].map(|o| _mm256_loadu_ps(ps.add(o))) };
    let v = _mm256_blend_ps::<0b0010_0010>(p0, p1);
    let v = _mm256_blend_ps::<0b0100_0100>(v, p2);
    _mm256_blend_ps::<0b1000_1000>(v, p3)
}

/// How many groups' scales [`dot4_i8_pairs_pow2`] converts before a run of its pair loop
/// (256 bytes of stack for four rows). Measured at 16384×8192 and 1024×1024 with groups of
/// 128 codes: 16 was faster than 8 (the per-run sums and set-up) and than 32 and 64.
const RUN_GROUPS: usize = 16;

/// Int8 dot products of `R` packed 4-bit rows in groups of `pg` blocks, `pg` a power of two
/// of at least 2, each group with its own scale and, with `TABLES`, its own int8 table
/// (without, row `r` looks every group up in `tables[r]`). The rows run through the per-row
/// loop of [`dot4_i8_pairs`] (its two pairs a step and its prefetch) a run of
/// [`RUN_GROUPS`] groups at a time: a pair never straddles two groups, so its scale vector
/// is the `x` scales times its group's scale, one multiply per pair and row, and its table
/// one broadcast load. `fill8(r, i, scales, tables)` writes row `r`'s groups `i .. i + 8`
/// (their `a / 127`, and with `TABLES` their tables) once per run. The runs' sums add up in
/// order. Every row runs the same operations in the same order whatever rows it is batched
/// with, so a row's result does not depend on `R`.
///
/// This beat [`dot4_i8_pairs_nested`], which scales each group's sum once (fewer
/// multiplies, but eight accumulators for four rows, which spill, and a short inner loop
/// per group), on rows that stream from memory, and with `TABLES` [`dot4_i8_pairs_runs`],
/// which reduces eight blocks' sums across lanes before it scales them; see BENCHMARKS.md.
///
/// # Safety
/// The CPU supports AVX2 and FMA; every row holds at least `16 * blocks` bytes, `xp` at least
/// `32 * blocks` values and `ps` at least `4 * blocks` floats; `pg` is a power of two, at
/// least 2.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_i8_pairs_pow2<const R: usize, const TABLES: bool, D: ByteDot>(
    rows: [&[u8]; R],
    tables: [&[i8; 16]; R],
    xp: &[i8],
    ps: &[f32],
    blocks: usize,
    pg: usize,
    mut fill8: impl FnMut(usize, usize, &mut [f32], &mut [[i8; 16]]),
) -> [f32; R] {
    let shift = pg.trailing_zeros();
    let tv = table_registers(tables);
    let mut out = [0.0f32; R];
    let mut run_scales = [[0.0f32; RUN_GROUPS]; R];
    let mut run_tables = [[[0i8; 16]; RUN_GROUPS]; R];
    let mut start = 0;
    let mut first_group = 0;
    while start < blocks {
        let end = (start + RUN_GROUPS * pg).min(blocks);
        let eights = (end - start).div_ceil(pg).div_ceil(8);
        for r in 0..R {
            for k in 0..eights {
                let at = 8 * k..8 * k + 8;
                fill8(
                    r,
                    first_group + 8 * k,
                    &mut run_scales[r][at.clone()],
                    &mut run_tables[r][at],
                );
            }
        }
        let mut run_rows: [&[u8]; R] = [&[]; R];
        for (run, row) in run_rows.iter_mut().zip(rows) {
            *run = &row[16 * start..];
        }
        let ps = &ps[4 * start..];
        // The group of block `b` of the run; `b < RUN_GROUPS · pg`, so the remainder only
        // shows the compiler the index is in bounds.
        let group = |b: usize| (b >> shift) % RUN_GROUPS;
        let table = |r: usize, b: usize| {
            if TABLES {
                both_lanes(&run_tables[r][group(b)])
            } else {
                tv[r]
            }
        };
        // SAFETY: the run's `end - start` blocks lie inside every row, `xp` and `ps` past
        // `start` (the caller's lengths); a pair `b + 1 < end - start` reads `ps[4b .. 4b + 8]`.
        let sums = unsafe {
            dot4_i8_pairs::<R, D>(
                run_rows,
                table,
                &xp[32 * start..],
                end - start,
                |r, b| {
                    _mm256_mul_ps(
                        _mm256_loadu_ps(ps.as_ptr().add(4 * b)),
                        _mm256_set1_ps(run_scales[r][group(b)]),
                    )
                },
                |r, b| ps[4 * b] * run_scales[r][group(b)],
            )
        };
        for (o, sum) in out.iter_mut().zip(sums) {
            *o += sum;
        }
        start = end;
        first_group += RUN_GROUPS;
    }
    out
}

/// [`dot4_i8_rows`] for rows in groups of `g` codes (a multiple of 32), each row sharing its
/// int8 table up to an `f16` scale per group (`scales[r]`, two little-endian bytes a group):
/// groups of a power of two (at least 2) of blocks through [`dot4_i8_pairs_pow2`], whose loop
/// is the per-row one (the group scale joins each pair's `x` scales), other even numbers of
/// blocks through [`dot4_i8_pairs_nested`] (the group scale joins once per group), groups
/// of one block through [`dot4_i8_pairs_runs`], others through [`dot4_i8_pairs_grouped`].
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_i8_compact<const R: usize, D: ByteDot>(
    rows: [&[u8]; R],
    tables: [&[i8; 16]; R],
    xp: &[i8],
    ps: &[f32],
    g: usize,
    scales: [&[u8]; R],
) -> [f32; R] {
    let pg = (g / 32).max(1);
    let blocks = rows
        .iter()
        .zip(&scales)
        .fold((xp.len() / 32).min(ps.len() / 4), |m, (r, s)| {
            m.min(r.len() / 16).min(s.len() / 2 * pg)
        });
    let fill = |r: usize, first: usize, w: &mut GroupWindow| {
        for half in 0..WINDOW / 8 {
            let gs = group_scales8(scales[r], first + 8 * half);
            // SAFETY: `gs` holds 8 floats.
            let v = unsafe { _mm256_loadu_ps(gs.as_ptr()) };
            spread_scales8(v, &mut w.scale[8 * half..8 * half + 8]);
        }
    };
    if pg == 1 {
        // `blocks` is clamped to the groups every row's scales hold: a whole run's eight
        // groups are there, a partial run's below `blocks` too. (Groups of 2 and 4 blocks
        // through these runs measured no faster than `dot4_i8_pairs_pow2`: 4.70–4.81 ms
        // against 4.67–4.74 for groups of 128 at 16384×8192.)
        let eight = |r: usize, first: usize, whole: bool, out: &mut EightGroups| {
            let s = scales[r];
            if whole {
                // SAFETY: groups `first .. first + 8` lie below `blocks`, inside `s`.
                unsafe {
                    _mm256_storeu_ps(out.scale.as_mut_ptr(), halves8(s.as_ptr().add(2 * first)))
                };
            } else {
                out.scale = group_scales8(s, first);
            }
        };
        // SAFETY: `blocks` is clamped to the whole blocks every row, `xp` and `ps` hold.
        return unsafe {
            dot4_i8_pairs_runs::<R, 1, false, D>(rows, tables, xp, ps, blocks, eight)
        };
    }
    if pg >= 2 && pg.is_power_of_two() {
        let eight = |r: usize, first: usize, out: &mut [f32], _: &mut [[i8; 16]]| {
            out.copy_from_slice(&group_scales8(scales[r], first));
        };
        // SAFETY: `blocks` is clamped to the whole blocks every row, `xp` and `ps` hold; `pg`
        // is a power of two, at least 2.
        return unsafe {
            dot4_i8_pairs_pow2::<R, false, D>(rows, tables, xp, ps, blocks, pg, eight)
        };
    }
    if pg.is_multiple_of(2) {
        let tv = table_registers(tables);
        // `blocks` is clamped to the groups every row's scales hold. The nested loop asks for
        // the groups in order, so eight at a time are converted in one vector.
        let mut eight = [[0.0f32; 8]; R];
        let group = |r: usize, i: usize| {
            if i.is_multiple_of(8) {
                eight[r] = group_scales8(scales[r], i);
            }
            (tv[r], eight[r][i % 8])
        };
        // SAFETY: `blocks` is clamped to the whole blocks every row, `xp` and `ps` hold;
        // `pg` is even and at least 2.
        return unsafe { dot4_i8_pairs_nested::<R, D>(rows, xp, ps, blocks, pg, group) };
    }
    // SAFETY: `blocks` is clamped to the whole blocks every row, `xp` and `ps` hold.
    unsafe { dot4_i8_pairs_grouped::<R, false, D>(rows, tables, xp, ps, blocks, pg, fill) }
}

/// [`dot4_i8_rows`] for rows in groups of `g` codes (a multiple of 32), each group with its
/// own `(a, q)` (`params(r, i, out)` writes those of groups `i .. i + out.len()` of row `r`
/// to `out`, all below `groups`, the groups a row): each
/// group's int8 table derived in registers as [`table16_i8`] does, its sums scaled by
/// `a / 127`, eight groups' tables derived at a time: groups of one block through
/// [`dot4_i8_pairs_runs`], of a power of two of blocks through [`dot4_i8_pairs_pow2`] (the
/// per-row loop, each pair loading its group's table), others through
/// [`dot4_i8_pairs_grouped`].
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_i8_groups<const R: usize, D: ByteDot>(
    rows: [&[u8]; R],
    xp: &[i8],
    ps: &[f32],
    g: usize,
    groups: usize,
    gen: &Gen16,
    params: impl Fn(usize, usize, &mut [[f32; 2]]),
    pairs: Option<[&[u8]; R]>,
) -> [f32; R] {
    let pg = (g / 32).max(1);
    let blocks = rows
        .iter()
        .fold((xp.len() / 32).min(ps.len() / 4), |m, r| {
            m.min(r.len() / 16)
        })
        .min(groups * pg);
    // Linear levels share one table whatever `q`; exponential ones derive eight groups'
    // tables at a time.
    let shared = match gen {
        Gen16::Scaled(_) => Some(super::portable::table16_i8(gen, 0.0)),
        Gen16::Exp { .. } => None,
    };
    let zero = matches!(gen, Gen16::Exp { zero: true });
    let order = neighbour_lanes();
    // Eight groups' `(a, q)` from row `r`'s stored pairs where they hold all eight, else
    // through `params` (0 past the row's last group).
    let pairs8 = |r: usize, first: usize| match pairs {
        // SAFETY: bytes `8·first .. 8·first + 64` lie inside the row's pairs; a prefetch
        // reads nothing.
        Some(b) if b[r].len() >= 8 * (first + 8) => unsafe {
            let at = b[r].as_ptr().add(8 * first);
            // The parameters stream beside the codes, one 64-byte line for every eight
            // groups; unasked, each fill waited for its line.
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(PARAM_PREFETCH).cast());
            split_pairs8(at.cast())
        },
        _ => {
            let mut p = [[0.0f32; 2]; 8];
            if first < groups {
                params(r, first, &mut p[..(groups - first).min(8)]);
            }
            // SAFETY: `p` holds 16 floats.
            unsafe { split_pairs8(p.as_ptr().cast()) }
        }
    };
    // Row `r`'s groups `first .. first + 8`: their tables into `tables`, their `a / 127`
    // returned (lane = group).
    let derive8 = |r: usize, first: usize, tables: &mut [[i8; 16]]| {
        let (a, q) = pairs8(r, first);
        match shared {
            Some(t) => tables[..8].iter_mut().for_each(|o| *o = t),
            None if zero => tables8_i8::<true>(q, order, tables),
            None => tables8_i8::<false>(q, order, tables),
        }
        _mm256_div_ps(a, _mm256_set1_ps(127.0))
    };
    let none = [&[0i8; 16]; R];
    if pg == 1 {
        let eight = |r: usize, first: usize, _whole: bool, out: &mut EightGroups| {
            let s = derive8(r, first, &mut out.table);
            // SAFETY: `out.scale` holds 8 floats.
            unsafe { _mm256_storeu_ps(out.scale.as_mut_ptr(), s) };
        };
        // SAFETY: `blocks` is clamped to the whole blocks every row, `xp` and `ps` hold.
        return unsafe { dot4_i8_pairs_runs::<R, 1, true, D>(rows, none, xp, ps, blocks, eight) };
    }
    if pg.is_power_of_two() {
        let eight = |r: usize, first: usize, scales: &mut [f32], tables: &mut [[i8; 16]]| {
            let s = derive8(r, first, tables);
            let scales = &mut scales[..8];
            // SAFETY: `scales` holds 8 floats.
            unsafe { _mm256_storeu_ps(scales.as_mut_ptr(), s) };
        };
        // SAFETY: `blocks` is clamped to the whole blocks every row, `xp` and `ps` hold; `pg`
        // is a power of two, at least 2.
        return unsafe { dot4_i8_pairs_pow2::<R, true, D>(rows, none, xp, ps, blocks, pg, eight) };
    }
    let fill = |r: usize, first: usize, w: &mut GroupWindow| {
        for half in 0..WINDOW / 8 {
            let s = derive8(r, first + 8 * half, &mut w.table[8 * half..8 * half + 8]);
            spread_scales8(s, &mut w.scale[8 * half..8 * half + 8]);
        }
    };
    // SAFETY: `blocks` is clamped to the whole blocks every row, `xp` and `ps` hold.
    unsafe { dot4_i8_pairs_grouped::<R, true, D>(rows, none, xp, ps, blocks, pg, fill) }
}

/// Eight groups' `(a, q)` pairs at `p` (16 `f32`s, any alignment) as two vectors (lane =
/// group): `a`s, then `q`s.
///
/// # Safety
/// `p` points to 64 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn split_pairs8(p: *const f32) -> (__m256, __m256) {
    // SAFETY: the caller guarantees the 16 floats.
    let (v0, v1) = unsafe { (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))) };
    // Per 128-bit lane `[a0 a1 a4 a5 | a2 a3 a6 a7]`; the 64-bit swap orders them.
    let order =
        |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
    (
        order(_mm256_shuffle_ps::<0b10_00_10_00>(v0, v1)),
        order(_mm256_shuffle_ps::<0b11_01_11_01>(v0, v1)),
    )
}

/// Eight groups' scales `v` (lane = group) four times each into `out` (8 groups), so that a
/// pair of blocks in neighbouring groups loads its lanes' scales from one place.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn spread_scales8(v: __m256, out: &mut [[f32; 4]]) {
    let out = &mut out[..8];
    for k in 0..4 {
        let (i, j) = (2 * k as i32, 2 * k as i32 + 1);
        let idx = _mm256_setr_epi32(i, i, i, i, j, j, j, j);
        let at = &mut out[2 * k..2 * k + 2];
        // SAFETY: `at` holds two groups' four floats, 8 contiguous floats.
        unsafe { _mm256_storeu_ps(at.as_mut_ptr().cast(), _mm256_permutevar8x32_ps(v, idx)) };
    }
}

/// The `vpermps` indices that put eight groups' lanes in the order [`tables8_i8`] gathers
/// them: groups 0, 2, 4, 6, then 1, 3, 5, 7. Opaque to the optimiser, which otherwise moves
/// a constant permute past the products that follow it, as two shuffles per power; made
/// once per call of a kernel.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn neighbour_lanes() -> __m256i {
    let order = core::hint::black_box([0i32, 2, 4, 6, 1, 3, 5, 7]);
    // SAFETY: `order` holds 8 `i32`s.
    unsafe { _mm256_loadu_si256(order.as_ptr().cast()) }
}

/// Eight exponential groups' int8 tables from their `q` (lane = group) at once, with the bits
/// [`table16_i8`] gives each: the powers `q^k · 127` of all eight in one vector per `k`
/// (lane = group, the products in [`powers8`](super::portable::powers8)'s order), rounded and
/// packed to bytes, then gathered to each group's 16 entries (negated magnitudes ascending,
/// then the positive ones descending, with the zero level at entries 7 and 15 with `ZERO`)
/// by two `vpshufb` a pair of groups, one into the powers 0–3 and one into 4–7. `order` is
/// [`neighbour_lanes`]; `out` holds at least 8 tables.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn tables8_i8<const ZERO: bool>(q: __m256, order: __m256i, out: &mut [[i8; 16]]) {
    let out = &mut out[..8];
    // Groups 0, 2, 4, 6 in the lower 128-bit lane and 1, 3, 5, 7 in the upper, so that each
    // gathered register holds two neighbouring tables, one 32-byte store.
    let q = _mm256_permutevar8x32_ps(q, order);
    let p = powers8x8(q);
    // `q^0 · 127` is 127 exactly; with `ZERO` the eighth magnitude is the zero level's 0.
    // Loops rather than `array::map` here: its closure runs outside the target features and
    // is compiled as a call per element, in a function every eight groups run.
    let mut m = [_mm256_set1_epi32(127); 8];
    for (m, p) in m.iter_mut().zip(p).skip(1).take(if ZERO { 6 } else { 7 }) {
        *m = _mm256_cvtps_epi32(_mm256_mul_ps(p, _mm256_set1_ps(127.0)));
    }
    if ZERO {
        m[7] = _mm256_setzero_si256();
    }
    // Per 128-bit lane (four groups): byte `4k + g` holds power `k` (`k + 4` in `b1`) of the
    // lane's `g`-th group.
    let b0 = _mm256_packs_epi16(
        _mm256_packs_epi32(m[0], m[1]),
        _mm256_packs_epi32(m[2], m[3]),
    );
    let b1 = _mm256_packs_epi16(
        _mm256_packs_epi32(m[4], m[5]),
        _mm256_packs_epi32(m[6], m[7]),
    );
    // A table's entries by power: negated ascending then positive descending (with `ZERO`,
    // power 7 is the zero level's 0, at entries 7 and 15).
    let entries: [usize; 16] = if ZERO {
        [0, 1, 2, 3, 4, 5, 6, 7, 6, 5, 4, 3, 2, 1, 0, 7]
    } else {
        [0, 1, 2, 3, 4, 5, 6, 7, 7, 6, 5, 4, 3, 2, 1, 0]
    };
    // `vpshufb` writes 0 for an index with its top bit set.
    let gather = |g: usize, high: bool| {
        let mut idx = [-128i8; 16];
        for (idx, k) in idx.iter_mut().zip(entries) {
            if (k >= 4) == high {
                *idx = (4 * (k % 4) + g) as i8;
            }
        }
        both_lanes(&idx)
    };
    let sign = _mm256_setr_epi8(
        -1, -1, -1, -1, -1, -1, -1, -1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1, 1,
        1, 1, 1, 1, 1, 1, 1,
    );
    for (g, pair) in out.chunks_exact_mut(2).enumerate() {
        let t = _mm256_or_si256(
            _mm256_shuffle_epi8(b0, gather(g, false)),
            _mm256_shuffle_epi8(b1, gather(g, true)),
        );
        // SAFETY: `pair` holds two neighbouring 16-byte tables, 32 contiguous bytes.
        unsafe { _mm256_storeu_si256(pair.as_mut_ptr().cast(), _mm256_sign_epi8(t, sign)) };
    }
}

/// The `a / 127` of groups `first .. first + 8` from their `f16` scales (two little-endian
/// bytes a group; 0 past the end of `scales`), with the bits of
/// `scale_at(scales, i) * INV_127`: `h << 13` read as an `f32` is the `f16` value times
/// 2^-112, and one product with `2^112 · INV_127` (a power of two times `INV_127`, exact)
/// rounds the same real number the reference's two products round, for normal and subnormal
/// `f16` alike.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn group_scales8(scales: &[u8], first: usize) -> [f32; 8] {
    use super::portable::{scale_at, INV_127};
    let mut out = [0.0f32; 8];
    if scales.len() >= 2 * (first + 8) {
        // SAFETY: bytes `2·first .. 2·first + 16` lie inside `scales`; `out` holds 8 floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), halves8(scales.as_ptr().add(2 * first))) };
    } else {
        for (i, o) in out.iter_mut().enumerate() {
            if 2 * (first + i) + 2 <= scales.len() {
                *o = scale_at(scales, first + i) * INV_127;
            }
        }
    }
    out
}

/// The eight positive finite `f16` group scales at `halves` (two little-endian bytes each),
/// each times [`INV_127`](super::portable::INV_127), as [`group_scales8`] documents.
///
/// # Safety
/// `halves` points to 16 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn halves8(halves: *const u8) -> __m256 {
    // The scale times `2^112` is exact, so one more product rounds the same real number
    // that a single product with `2^112 · INV_127` rounds.
    // SAFETY: the caller guarantees the 16 bytes.
    let scales = unsafe { f16_scales8(halves) };
    _mm256_mul_ps(scales, _mm256_set1_ps(super::portable::INV_127))
}

/// A group's two 8-entry halves of its 16-entry table, computed as
/// [`portable::table16`](super::portable::table16) does (the same products in the same
/// order, so the same bits).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn tables16(gen: &Gen16, a: f32, q: f32) -> (__m256, __m256) {
    match gen {
        Gen16::Scaled(u) => {
            // SAFETY: `u` holds 16 floats.
            let (u0, u1) = unsafe {
                (
                    _mm256_loadu_ps(u.as_ptr()),
                    _mm256_loadu_ps(u.as_ptr().add(8)),
                )
            };
            let av = _mm256_set1_ps(a);
            (_mm256_mul_ps(av, u0), _mm256_mul_ps(av, u1))
        }
        Gen16::Exp { zero } => {
            let one = _mm256_set1_ps(1.0);
            let q2 = q * q;
            let q4 = q2 * q2;
            let b1 = _mm256_blend_ps::<0b1010_1010>(one, _mm256_set1_ps(q));
            let b2 = _mm256_blend_ps::<0b1100_1100>(one, _mm256_set1_ps(q2));
            let b4 = _mm256_blend_ps::<0b1111_0000>(one, _mm256_set1_ps(q4));
            let p = _mm256_mul_ps(_mm256_mul_ps(b1, b2), b4);
            let lo = _mm256_mul_ps(p, _mm256_set1_ps(-a));
            let hi = _mm256_mul_ps(p, _mm256_set1_ps(a));
            if *zero {
                // Lanes 0..7 hold −a·q^k (lane 7 the zero level); the upper half a·q^(6−j).
                let lo = _mm256_blend_ps::<0b1000_0000>(lo, _mm256_setzero_ps());
                let hi = _mm256_permutevar8x32_ps(hi, _mm256_setr_epi32(6, 5, 4, 3, 2, 1, 0, 7));
                (lo, _mm256_blend_ps::<0b1000_0000>(hi, _mm256_setzero_ps()))
            } else {
                let hi = _mm256_permutevar8x32_ps(hi, _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0));
                (lo, hi)
            }
        }
    }
}

/// 4-bit dot product over a row of groups of `g` codes (a multiple of 16), each group's table
/// derived in registers from its `(a, q)`, so no table is stored or rebuilt in memory.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_groups(bytes: &[u8], x: &[f32], g: usize, params: &[[f32; 2]], gen: &Gen16) -> f32 {
    let n = x.len().min(bytes.len() * 2);
    let steps = g / 16;
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    for &[a, q] in params {
        if steps == 0 || i + g > n {
            break;
        }
        let (t0, t1) = tables16(gen, a, q);
        // SAFETY: each step reads bytes `i/2 .. i/2 + 8` and floats `i .. i + 16`, inside
        // because the group ends at `i + g <= n`.
        unsafe {
            for _ in 0..steps {
                let c = nibbles(_mm_loadl_epi64(bytes.as_ptr().add(i / 2).cast()));
                let i0 = _mm256_cvtepu8_epi32(c);
                let i1 = _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(c));
                let w0 = pick16(t0, t1, i0);
                let w1 = pick16(t0, t1, i1);
                acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x.as_ptr().add(i)), acc0);
                acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x.as_ptr().add(i + 8)), acc1);
                i += 16;
            }
        }
    }
    let mut acc = hsum(_mm256_add_ps(acc0, acc1));
    // A short last group (the row's tail) through the reference table.
    let done = i;
    let mut k = done;
    while k < n {
        let group = k / g.max(1);
        let Some(&[a, q]) = params.get(group) else {
            break;
        };
        let t = super::portable::table16(gen, a, q);
        let stop = ((group + 1) * g).min(n);
        for (j, &xj) in x.iter().enumerate().take(stop).skip(k) {
            acc += t[usize::from((bytes[j / 2] >> ((j % 2) * 4)) & 0x0f)] * xj;
        }
        k = stop;
    }
    acc
}

/// A 3-bit group's table in a register, as [`portable::table8`](super::portable::table8)
/// computes it: lane `i` holds `q^e` with `e` the lane's exponent (`q` and `q²` blended in by
/// its bits, `q³ = q·q²`), times `−a` in the lower half and `a` in the upper.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn table8(gen: &Gen8, a: f32, q: f32) -> __m256 {
    match gen {
        Gen8::Scaled(u) => {
            // SAFETY: `u` holds 8 floats.
            let u = unsafe { _mm256_loadu_ps(u.as_ptr()) };
            _mm256_mul_ps(_mm256_set1_ps(a), u)
        }
        Gen8::Exp { zero } => {
            let one = _mm256_set1_ps(1.0);
            let (vq, vq2) = (_mm256_set1_ps(q), _mm256_set1_ps(q * q));
            let sign = _mm256_blend_ps::<0b1111_0000>(_mm256_set1_ps(-a), _mm256_set1_ps(a));
            if *zero {
                // Exponents [0, 1, 2, –, 2, 1, 0, –]; lanes 3 and 7 hold 0.
                let b1 = _mm256_blend_ps::<0b0010_0010>(one, vq);
                let b2 = _mm256_blend_ps::<0b0001_0100>(one, vq2);
                let t = _mm256_mul_ps(_mm256_mul_ps(b1, b2), sign);
                _mm256_blend_ps::<0b1000_1000>(t, _mm256_setzero_ps())
            } else {
                // Exponents [0, 1, 2, 3, 3, 2, 1, 0].
                let b1 = _mm256_blend_ps::<0b0101_1010>(one, vq);
                let b2 = _mm256_blend_ps::<0b0011_1100>(one, vq2);
                _mm256_mul_ps(_mm256_mul_ps(b1, b2), sign)
            }
        }
    }
}

/// 3-bit dot product over a row of groups of `g` codes (a multiple of 8), each group's table
/// derived in registers from its `(a, q)` ([`table8`]) and its codes read as [`dot3`] does.
/// The groups past the last loadable step (and a short last group) go through the reference
/// table.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot3_groups(bytes: &[u8], x: &[f32], g: usize, params: &[[f32; 2]], gen: &Gen8) -> f32 {
    let n = x.len().min(bytes.len() * 8 / 3);
    let vector = n.min(loadable3(bytes));
    let steps = if g.is_multiple_of(8) { g / 8 } else { 0 };
    let mut i = 0;
    let mut group = 0;
    // SAFETY: each step at code `i` reads bytes `3i/8 .. 3i/8 + 4` and floats `i .. i + 8`,
    // inside because the group ends at `i + g <= vector`.
    let mut acc = unsafe {
        let (b, xp) = (bytes.as_ptr(), x.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        while steps > 0 && group < params.len() && i + g <= vector {
            let [a, q] = params[group];
            i = steps3(table8(gen, a, q), b, xp, i, steps, &mut acc);
            group += 1;
        }
        hsum4(acc)
    };
    while group < params.len() && i < n {
        let end = (i + g).min(n);
        let [a, q] = params[group];
        let t = super::portable::table8(gen, a, q);
        acc += super::portable::dot_span(3, bytes, i, &t, &x[i..end]);
        (i, group) = (end, group + 1);
    }
    acc
}

/// A group's int8 table, as [`portable::table16_i8`](super::portable::table16_i8) computes
/// it: the `f32` halves for `a = 127`, rounded (the default rounding mode, ties to even) and
/// packed to 16 bytes in order.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn table16_i8(gen: &Gen16, q: f32) -> __m128i {
    let (lo, hi) = tables16(gen, 127.0, q);
    let w = _mm256_packs_epi32(_mm256_cvtps_epi32(lo), _mm256_cvtps_epi32(hi));
    let b = _mm256_packs_epi16(w, w);
    // Per 128-bit lane the low 8 bytes are [lo 4, hi 4]; interleaving the lanes' dwords
    // gives [lo 0..8, hi 0..8].
    _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256::<1>(b))
}

/// Looks up 8 codes below 16 in the table halves `t0`, `t1`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn pick16(t0: __m256, t1: __m256, idx: __m256i) -> __m256 {
    let lo = _mm256_permutevar8x32_ps(t0, idx);
    let hi = _mm256_permutevar8x32_ps(t1, idx);
    _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32::<28>(idx)))
}

/// Codes as counts of strict thresholds: `out[i] = #{t : x[i] > cuts[t]}`.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn encode_count(cuts: &[f32], x: &[f32], out: &mut [u8]) {
    let n = x.len().min(out.len());
    let mut i = 0;
    // SAFETY: each step reads floats `i .. i + 32` and writes bytes `i .. i + 32`, inside
    // because `i + 32 <= n`.
    unsafe {
        let xp = x.as_ptr();
        // vpackssdw/vpackuswb interleave the 128-bit lanes; this puts them back in order.
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        while i + 32 <= n {
            let xs = [
                _mm256_loadu_ps(xp.add(i)),
                _mm256_loadu_ps(xp.add(i + 8)),
                _mm256_loadu_ps(xp.add(i + 16)),
                _mm256_loadu_ps(xp.add(i + 24)),
            ];
            let mut acc = [_mm256_setzero_si256(); 4];
            for &c in cuts {
                let cv = _mm256_set1_ps(c);
                for k in 0..4 {
                    // A true comparison is all ones, i.e. −1: subtracting it counts.
                    let m = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(xs[k], cv));
                    acc[k] = _mm256_sub_epi32(acc[k], m);
                }
            }
            let ab = _mm256_packs_epi32(acc[0], acc[1]);
            let cd = _mm256_packs_epi32(acc[2], acc[3]);
            let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), order);
            _mm256_storeu_si256(out.as_mut_ptr().add(i).cast(), bytes);
            i += 32;
        }
    }
    for (slot, &xi) in out[i..n].iter_mut().zip(&x[i..n]) {
        *slot = cuts.iter().filter(|&&c| xi > c).count() as u8;
    }
}

// ---- The fit's scoring lanes ------------------------------------------------------------
// The small-group assignment's types, imported here so that this section stands alone.
use super::portable::{assign_vectors, AssignAtoms, AssignLevels, ASSIGN_CUTS, ASSIGN_LANES};

impl Avx2 {
    /// The fit's small-group assignment sums (see
    /// [`portable::assign_sums`](super::portable::assign_sums), the reference).
    #[inline]
    pub(crate) fn assign_sums(self, levels: AssignLevels<'_>, atoms: AssignAtoms<'_>) -> [f64; 3] {
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA.
        unsafe { assign_sums(levels, atoms) }
    }
}

/// [`portable::assign_sums`](super::portable::assign_sums) with AVX2, eight atoms per vector;
/// bit-identical to it (the same operations in the same order, no fused multiply-add).
///
/// # Safety
/// The CPU supports AVX2.
#[target_feature(enable = "avx2")]
unsafe fn assign_sums(levels: AssignLevels<'_>, atoms: AssignAtoms<'_>) -> [f64; 3] {
    // SAFETY: the CPU supports AVX2 (this function's contract), and each fixed count is the
    // number of whole vectors `atoms` holds.
    unsafe {
        match assign_vectors(atoms) {
            1 => assign_sums_fixed::<1>(levels, atoms),
            2 => assign_sums_fixed::<2>(levels, atoms),
            3 => assign_sums_fixed::<3>(levels, atoms),
            4 => assign_sums_fixed::<4>(levels, atoms),
            5 => assign_sums_fixed::<5>(levels, atoms),
            6 => assign_sums_fixed::<6>(levels, atoms),
            7 => assign_sums_fixed::<7>(levels, atoms),
            8 => assign_sums_fixed::<8>(levels, atoms),
            _ => assign_sums_any(levels, atoms),
        }
    }
}

/// [`assign_sums`] for exactly `V` vectors of atoms, all held in registers: each threshold
/// and level is broadcast once and compared with every vector.
///
/// # Safety
/// The CPU supports AVX2, and every slice of `atoms` holds at least `8·V` floats.
#[target_feature(enable = "avx2")]
unsafe fn assign_sums_fixed<const V: usize>(
    levels: AssignLevels<'_>,
    atoms: AssignAtoms<'_>,
) -> [f64; 3] {
    let cuts = levels.cut.len().min(levels.above.len()).min(ASSIGN_CUTS);
    let (cut, above) = (&levels.cut[..cuts], &levels.above[..cuts]);
    // SAFETY: the caller guarantees `8·V` floats in each slice, so vector `v < V` is in bounds.
    let load = |s: &[f32], v: usize| unsafe { _mm256_loadu_ps(s.as_ptr().add(v * ASSIGN_LANES)) };
    // A loop rather than `array::from_fn`, as in `assign_lane_sums`.
    let mut x = [_mm256_setzero_ps(); V];
    for (v, x) in x.iter_mut().enumerate() {
        *x = load(atoms.x, v);
    }
    let mut c = [_mm256_set1_ps(levels.base); V];
    for (&t, &l) in cut.iter().zip(above) {
        let (t, l) = (_mm256_set1_ps(t), _mm256_set1_ps(l));
        for (c, &x) in c.iter_mut().zip(&x) {
            *c = _mm256_blendv_ps(*c, l, _mm256_cmp_ps::<_CMP_GT_OQ>(x, t));
        }
    }
    let mut acc = [_mm256_setzero_ps(); 3];
    for (v, &c) in c.iter().enumerate() {
        acc[0] = _mm256_add_ps(acc[0], _mm256_mul_ps(c, load(atoms.wx, v)));
        acc[1] = _mm256_add_ps(
            acc[1],
            _mm256_mul_ps(_mm256_mul_ps(c, c), load(atoms.w0, v)),
        );
        acc[2] = _mm256_add_ps(acc[2], _mm256_mul_ps(c, load(atoms.ws, v)));
    }
    // SAFETY: the CPU supports AVX2 (this function's contract).
    unsafe { assign_lane_sums(acc) }
}

/// [`assign_sums`] for any number of vectors, one vector of atoms at a time.
///
/// # Safety
/// The CPU supports AVX2.
#[target_feature(enable = "avx2")]
unsafe fn assign_sums_any(levels: AssignLevels<'_>, atoms: AssignAtoms<'_>) -> [f64; 3] {
    let cuts = levels.cut.len().min(levels.above.len()).min(ASSIGN_CUTS);
    let (cut, above) = (&levels.cut[..cuts], &levels.above[..cuts]);
    let base = _mm256_set1_ps(levels.base);
    let mut acc = [_mm256_setzero_ps(); 3];
    for v in 0..assign_vectors(atoms) {
        let at = v * ASSIGN_LANES;
        // SAFETY: `assign_vectors` counts whole vectors of the shortest slice, so the eight
        // floats from `at` are in bounds of each.
        let load = |s: &[f32]| unsafe { _mm256_loadu_ps(s.as_ptr().add(at)) };
        let x = load(atoms.x);
        let mut c = base;
        for (&t, &l) in cut.iter().zip(above) {
            let mask = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(t));
            c = _mm256_blendv_ps(c, _mm256_set1_ps(l), mask);
        }
        acc[0] = _mm256_add_ps(acc[0], _mm256_mul_ps(c, load(atoms.wx)));
        acc[1] = _mm256_add_ps(acc[1], _mm256_mul_ps(_mm256_mul_ps(c, c), load(atoms.w0)));
        acc[2] = _mm256_add_ps(acc[2], _mm256_mul_ps(c, load(atoms.ws)));
    }
    // SAFETY: the CPU supports AVX2 (this function's contract).
    unsafe { assign_lane_sums(acc) }
}

/// As `portable::assign_lane_sum` for each sum: lane `i` plus lane `i + 4` in `f64`, then
/// pairwise.
///
/// # Safety
/// The CPU supports AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn assign_lane_sums(acc: [__m256; 3]) -> [f64; 3] {
    // A loop rather than `array::map`, whose closure (called from generic code without the
    // target features) is not inlined: a call per sum in the fit's hottest loop.
    let mut out = [0.0f64; 3];
    for (o, v) in out.iter_mut().zip(acc) {
        let halves = _mm256_add_pd(
            _mm256_cvtps_pd(_mm256_castps256_ps128(v)),
            _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)),
        );
        let pairs = _mm_add_pd(
            _mm256_castpd256_pd128(halves),
            _mm256_extractf128_pd::<1>(halves),
        );
        *o = _mm_cvtsd_f64(_mm_add_sd(pairs, _mm_unpackhi_pd(pairs, pairs)));
    }
    out
}

/// [`portable::score`](super::portable::score) with AVX2, as two halves of eight lanes. Bit-identical to it: the same
/// operations in the same order.
///
/// # Safety
/// The CPU supports AVX2.
#[target_feature(enable = "avx2")]
unsafe fn score(t: LaneTables<'_, f32>, x: &[f32], w: Option<&[f32]>) -> [f32; LANES] {
    let mut out = [0.0f32; LANES];
    let cuts = t.cut.len().min(t.above.len());
    for half in 0..2 {
        let lane0 = half * 8;
        let mut acc = _mm256_setzero_ps();
        // SAFETY: every row holds 16 floats, so the 8 from `lane0 <= 8` are in bounds.
        let load = |row: &[f32; LANES]| unsafe { _mm256_loadu_ps(row.as_ptr().add(lane0)) };
        let base = load(t.base);
        for (i, &xi) in x.iter().enumerate() {
            let xv = _mm256_set1_ps(xi);
            let mut level = base;
            for j in 0..cuts {
                let mask = _mm256_cmp_ps::<_CMP_GT_OQ>(xv, load(&t.cut[j]));
                level = _mm256_blendv_ps(level, load(&t.above[j]), mask);
            }
            let d = _mm256_sub_ps(xv, level);
            let mut e = _mm256_mul_ps(d, d);
            if let Some(w) = w {
                e = _mm256_mul_ps(e, _mm256_set1_ps(w[i]));
            }
            acc = _mm256_add_ps(acc, e);
        }
        // SAFETY: `out` holds 16 floats; this half writes the 8 from `lane0 <= 8`.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(lane0), acc) };
    }
    out
}

/// [`portable::score_fixed`](super::portable::score_fixed) with AVX2, as two halves of eight candidates; bit-identical to
/// it.
///
/// # Safety
/// The CPU supports AVX2.
#[target_feature(enable = "avx2")]
unsafe fn score_fixed(t: LaneTables<'_, u32>, pairs: &[u32]) -> [f32; LANES] {
    let mut out = [0.0f32; LANES];
    let cuts = t.cut.len().min(t.above.len());
    for half in 0..2 {
        // SAFETY: rows hold 16 `u32`; `8 * half + 8 <= 16`.
        let load =
            |row: &[u32; LANES]| unsafe { _mm256_loadu_si256(row.as_ptr().add(8 * half).cast()) };
        let base = load(t.base);
        let mut acc = _mm256_setzero_ps();
        for run in pairs.chunks(PAIRS_PER_SUM) {
            let mut sum = _mm256_setzero_si256();
            for &pair in run {
                let xv = _mm256_set1_epi32(pair as i32);
                let mut level = base;
                for j in 0..cuts {
                    let mask = _mm256_cmpgt_epi16(xv, load(&t.cut[j]));
                    level = _mm256_blendv_epi8(level, load(&t.above[j]), mask);
                }
                let d = _mm256_sub_epi16(xv, level);
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(d, d));
            }
            acc = _mm256_add_ps(acc, _mm256_cvtepi32_ps(sum));
        }
        // SAFETY: `out` holds 16 floats; this half writes 8 of them.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * half), acc) };
    }
    out
}

/// The AVX-512 `score_coarse` with AVX2, block by block: a 256-bit half of a row block holds
/// 16 candidates, and unpacking it yields candidates 0–7 and 16–23 (low half) or 8–15 and
/// 24–31 (high half) of the same row layout. Bit-identical to the per-batch
/// [`portable::score_fixed`](super::portable::score_fixed).
///
/// # Safety
/// The CPU supports AVX2.
#[target_feature(enable = "avx2")]
unsafe fn score_coarse(table: CoarseRows<'_>, pairs: &[u32], out: &mut [f32]) {
    assert!(table.coarse.is_multiple_of(32) && out.len() == table.coarse);
    // One block of 32 candidates at a time keeps its sums in registers (AVX2 has 16).
    for (v, out) in out.chunks_exact_mut(32).enumerate() {
        let mut acc = [_mm256_setzero_ps(); 4];
        for run in pairs.chunks(PAIRS_PER_SUM) {
            let mut sum = [_mm256_setzero_si256(); 4];
            for &pair in run {
                let (low, high) = (table.row(pair & 0xffff), table.row(pair >> 16));
                let xv = _mm256_set1_epi32(pair as i32);
                for half in 0..2 {
                    let at = 32 * v + 16 * half;
                    // SAFETY: rows hold `table.coarse` levels (`row` slices them so), and
                    // `at + 16 <= 32·(v + 1) <= out.len() == table.coarse`.
                    let (a, b) = unsafe {
                        (
                            _mm256_loadu_si256(low.as_ptr().add(at).cast()),
                            _mm256_loadu_si256(high.as_ptr().add(at).cast()),
                        )
                    };
                    let d = _mm256_sub_epi16(xv, _mm256_unpacklo_epi16(a, b));
                    sum[half] = _mm256_add_epi32(sum[half], _mm256_madd_epi16(d, d));
                    let d = _mm256_sub_epi16(xv, _mm256_unpackhi_epi16(a, b));
                    sum[2 + half] = _mm256_add_epi32(sum[2 + half], _mm256_madd_epi16(d, d));
                }
            }
            for (acc, sum) in acc.iter_mut().zip(sum) {
                *acc = _mm256_add_ps(*acc, _mm256_cvtepi32_ps(sum));
            }
        }
        for (scores, acc) in out.chunks_exact_mut(8).zip(acc) {
            // SAFETY: each chunk holds 8 floats.
            unsafe { _mm256_storeu_ps(scores.as_mut_ptr(), acc) };
        }
    }
}

/// 4-bit dot product over a row of groups of `g` codes (a multiple of 16) that share the
/// table `table` (at most 16 levels) up to a scale per group, `scales` holding each group's
/// positive `f16` (two little-endian bytes). A group's products are summed in registers and
/// scaled once at its end, so a group costs one multiply-add more than a run of the same
/// codes under one table.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_scaled(bytes: &[u8], table: &[f32; 256], x: &[f32], g: usize, scales: &[u8]) -> f32 {
    let n = x.len().min(bytes.len() * 2);
    let groups = (scales.len() / 2).min(n.div_ceil(g.max(1)));
    let steps = g / 16;
    let mut i = 0;
    let mut group = 0;
    // SAFETY: each step reads bytes `i/2 .. i/2 + 8` and floats `i .. i + 16`, inside because
    // the group ends at `i + g <= n`; the table holds 256 floats.
    let mut acc = unsafe {
        let t0 = _mm256_loadu_ps(table.as_ptr());
        let t1 = _mm256_loadu_ps(table.as_ptr().add(8));
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        while steps > 0 && group < groups && i + g <= n {
            let mut p0 = _mm256_setzero_ps();
            let mut p1 = _mm256_setzero_ps();
            for _ in 0..steps {
                let c = nibbles(_mm_loadl_epi64(bytes.as_ptr().add(i / 2).cast()));
                let w0 = pick16(t0, t1, _mm256_cvtepu8_epi32(c));
                let w1 = pick16(t0, t1, _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(c)));
                p0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x.as_ptr().add(i)), p0);
                p1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x.as_ptr().add(i + 8)), p1);
                i += 16;
            }
            let a = _mm256_set1_ps(super::portable::scale_at(scales, group));
            acc0 = _mm256_fmadd_ps(p0, a, acc0);
            acc1 = _mm256_fmadd_ps(p1, a, acc1);
            group += 1;
        }
        hsum(_mm256_add_ps(acc0, acc1))
    };
    // A short last group (the row's tail) through the reference.
    if group < groups && i < n {
        let part = super::portable::dot_span(4, bytes, i, table, &x[i..n]);
        acc += super::portable::scale_at(scales, group) * part;
    }
    acc
}

/// [`dot_perm`] over groups of `g` codes that share `t16` up to an `f16` scale per group
/// (`scales`, two little-endian bytes a group, positive and finite). Lane `l` of block `b`
/// holds codes `b·B + l·C ..` (`B` codes a block, `C = 32 / BITS` a lane), so when a group
/// boundary falls on a lane boundary (`g` a multiple of `C`, and `g` a multiple of `B` or `B`
/// of `g`) each lane belongs to one group: a block's products are summed per lane and
/// multiplied once by the vector of its lanes' scales. Returns 0 for any other `g`.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_perm_scaled<const BITS: i32>(
    bytes: &[u8],
    t16: &[f32; 16],
    xp: &[f32],
    g: usize,
    scales: &[u8],
) -> f32 {
    let per_lane = (32 / BITS) as usize;
    let block = perm_block(BITS as u32);
    if g == 0
        || !g.is_multiple_of(per_lane)
        || !(g.is_multiple_of(block) || block.is_multiple_of(g))
    {
        return 0.0;
    }
    let groups = scales.len() / 2;
    let blocks = (bytes.len() / 32)
        .min(xp.len() / block)
        .min(groups * g / block);
    // Lanes per group when groups are shorter than a block: lane `l` takes the scale of the
    // block's group `l / lanes_per_group`.
    let lanes_per_group = (g / per_lane).min(8);
    let per_block = (block / g).max(1);
    let pick = _mm256_setr_epi32(
        0,
        (1 / lanes_per_group) as i32,
        (2 / lanes_per_group) as i32,
        (3 / lanes_per_group) as i32,
        (4 / lanes_per_group) as i32,
        (5 / lanes_per_group) as i32,
        (6 / lanes_per_group) as i32,
        (7 / lanes_per_group) as i32,
    );
    // SAFETY: block `b` reads bytes `32b .. 32b + 32` and floats `b·8·C .. (b+1)·8·C`; its
    // scales are groups below `groups` (`blocks` is clamped to them).
    unsafe {
        let t0 = _mm256_loadu_ps(t16.as_ptr());
        let t1 = _mm256_loadu_ps(t16.as_ptr().add(8));
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut lane_scales = [0.0f32; 8];
        for b in 0..blocks {
            let mut v = _mm256_loadu_si256(bytes.as_ptr().add(32 * b).cast());
            let xb = xp.as_ptr().add(b * 8 * per_lane);
            let mut p = [_mm256_setzero_ps(); 2];
            // Two steps at a time, each into its own sum, as in `dot_perm`.
            for m0 in (0..per_lane).step_by(2) {
                for (j, p) in p.iter_mut().enumerate() {
                    let w = if BITS == 4 {
                        pick16(t0, t1, v)
                    } else {
                        _mm256_permutevar8x32_ps(t0, v)
                    };
                    *p = _mm256_fmadd_ps(w, _mm256_loadu_ps(xb.add(8 * (m0 + j))), *p);
                    v = _mm256_srli_epi32::<BITS>(v);
                }
            }
            let s = if g >= block {
                _mm256_set1_ps(super::portable::scale_at(scales, b * block / g))
            } else {
                let first = b * per_block;
                for (k, slot) in lane_scales.iter_mut().take(per_block).enumerate() {
                    *slot = super::portable::scale_at(scales, first + k);
                }
                _mm256_permutevar8x32_ps(_mm256_loadu_ps(lane_scales.as_ptr()), pick)
            };
            acc[0] = _mm256_fmadd_ps(p[0], s, acc[0]);
            acc[1] = _mm256_fmadd_ps(p[1], s, acc[1]);
        }
        hsum(_mm256_add_ps(acc[0], acc[1]))
    }
}

/// [`dot_perm`] at 1 or 2 bits over groups of `g` codes, group `i` with the levels `gen`
/// derives from `params[i]` ([`table_narrow`](super::portable::table_narrow)). A group of
/// whole blocks builds its table in a register once. Shorter groups (see
/// [`narrow_groups_fit`](super::portable::narrow_groups_fit)) would need a table per lane, so each block is summed per lane
/// against the two fixed sign tables of `gen` (one with a single magnitude: `TWO` false)
/// and those sums multiplied by the vectors of the lanes' magnitudes `(a, a·low)`. Runs the
/// groups of `min(bytes.len() / 32, xp.len() / B)` whole blocks that `params` covers; 0 for
/// a `g` that does not fit.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_perm_narrow<const BITS: i32, const TWO: bool>(
    bytes: &[u8],
    xp: &[f32],
    g: usize,
    params: &[[f32; 2]],
    gen: &GenNarrow,
) -> f32 {
    let per_lane = (32 / BITS) as usize;
    let block = perm_block(BITS as u32);
    if !super::portable::narrow_groups_fit(BITS as u32, g) {
        return 0.0;
    }
    let codes = params.len() * g;
    let blocks = (bytes.len() / 32).min(xp.len() / block).min(codes / block);
    let repeat = |t: &[f32; 4]| -> [f32; 8] { core::array::from_fn(|i| t[i % (1 << BITS)]) };
    let (top8, low8) = (repeat(&gen.top), repeat(&gen.low));
    // SAFETY: block `b` reads bytes `32b .. 32b + 32` and floats `b·8·C .. (b+1)·8·C`, and
    // the parameters of its groups, all below `blocks` whole blocks of `params`.
    unsafe {
        let top = _mm256_loadu_ps(top8.as_ptr());
        let low = _mm256_loadu_ps(low8.as_ptr());
        if g >= block {
            let per_group = g / block;
            let mut acc = [_mm256_setzero_ps(); 4];
            for (i, &[a, q]) in params[..blocks / per_group].iter().enumerate() {
                let (hi, lo) = gen.magnitudes(a, q);
                // One product of each pair is by 0: the sum is the level exactly.
                let t = _mm256_fmadd_ps(
                    _mm256_set1_ps(lo),
                    low,
                    _mm256_mul_ps(_mm256_set1_ps(hi), top),
                );
                for b in i * per_group..(i + 1) * per_group {
                    let mut v = _mm256_loadu_si256(bytes.as_ptr().add(32 * b).cast());
                    let xb = xp.as_ptr().add(b * block);
                    for m0 in (0..per_lane).step_by(4) {
                        for (j, acc) in acc.iter_mut().enumerate() {
                            let w = _mm256_permutevar8x32_ps(t, v);
                            *acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(xb.add(8 * (m0 + j))), *acc);
                            v = _mm256_srli_epi32::<BITS>(v);
                        }
                    }
                }
            }
            return hsum4(acc);
        }
        // Lane `l` of a block belongs to its group `l / lanes_per_group`, whose `(a, q)` are
        // floats `2·(l / lanes_per_group)` and one after of the block's parameters.
        let per_block = block / g;
        let lanes_per_group = 8 / per_block;
        let pick_a = _mm256_setr_epi32(
            0,
            (2 * (1 / lanes_per_group)) as i32,
            (2 * (2 / lanes_per_group)) as i32,
            (2 * (3 / lanes_per_group)) as i32,
            (2 * (4 / lanes_per_group)) as i32,
            (2 * (5 / lanes_per_group)) as i32,
            (2 * (6 / lanes_per_group)) as i32,
            (2 * (7 / lanes_per_group)) as i32,
        );
        let pick_q = _mm256_add_epi32(pick_a, _mm256_set1_epi32(1));
        // Eight groups a block: lanes 0–3 from the first eight floats, 4–7 from the next.
        let pick_a8 = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
        let pick_q8 = _mm256_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7);
        // Fewer than four groups a block: only their floats are read.
        let first_floats = _mm256_cmpgt_epi32(
            _mm256_set1_epi32((2 * per_block).min(8) as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        let low_unit = gen.low_unit.map(|u| _mm256_set1_ps(u));
        let flat = params.as_ptr().cast::<f32>();
        let mut acc_top = _mm256_setzero_ps();
        let mut acc_low = _mm256_setzero_ps();
        for b in 0..blocks {
            let mut v = _mm256_loadu_si256(bytes.as_ptr().add(32 * b).cast());
            let xb = xp.as_ptr().add(b * block);
            let mut p_top = [_mm256_setzero_ps(); 2];
            let mut p_low = [_mm256_setzero_ps(); 2];
            for m0 in (0..per_lane).step_by(2) {
                for j in 0..2 {
                    let xv = _mm256_loadu_ps(xb.add(8 * (m0 + j)));
                    p_top[j] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(top, v), xv, p_top[j]);
                    if TWO {
                        p_low[j] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(low, v), xv, p_low[j]);
                    }
                    v = _mm256_srli_epi32::<BITS>(v);
                }
            }
            let pf = flat.add(2 * per_block * b);
            let (a, q) = if per_block == 8 {
                let (p0, p1) = (_mm256_loadu_ps(pf), _mm256_loadu_ps(pf.add(8)));
                let a = _mm256_blend_ps::<0b1111_0000>(
                    _mm256_permutevar8x32_ps(p0, pick_a8),
                    _mm256_permutevar8x32_ps(p1, pick_a8),
                );
                let q = _mm256_blend_ps::<0b1111_0000>(
                    _mm256_permutevar8x32_ps(p0, pick_q8),
                    _mm256_permutevar8x32_ps(p1, pick_q8),
                );
                (a, q)
            } else {
                let p = _mm256_maskload_ps(pf, first_floats);
                (
                    _mm256_permutevar8x32_ps(p, pick_a),
                    _mm256_permutevar8x32_ps(p, pick_q),
                )
            };
            acc_top = _mm256_fmadd_ps(_mm256_add_ps(p_top[0], p_top[1]), a, acc_top);
            if TWO {
                let lo = _mm256_mul_ps(a, low_unit.unwrap_or(q));
                acc_low = _mm256_fmadd_ps(_mm256_add_ps(p_low[0], p_low[1]), lo, acc_low);
            }
        }
        hsum(_mm256_add_ps(acc_top, acc_low))
    }
}

// ---- GEMM micro-kernel --------------------------------------------------------------------

use super::portable::{gemm_tile_fits, GemmPanel, GemmTile, GEMM_KC, GEMM_MR};

impl Avx2 {
    /// The GEMM micro-tile (see [`portable::gemm_tile`](super::portable::gemm_tile), the
    /// reference): `GEMM_MR` rows of the panel times `width` columns of `x` at stride `n`.
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
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA; the bounds
        // the kernels rely on were checked just above.
        unsafe {
            match (width > 8, width.is_multiple_of(8)) {
                (true, true) => gemm_tile_v::<2, false>(w, kc, x, n, width),
                (true, false) => gemm_tile_v::<2, true>(w, kc, x, n, width),
                (false, true) => gemm_tile_v::<1, false>(w, kc, x, n, width),
                (false, false) => gemm_tile_v::<1, true>(w, kc, x, n, width),
            }
        }
    }
}

/// `NV` vectors of 8 columns per row of the tile; with `MASKED` the last vector loads only
/// the `width − 8·(NV − 1)` columns that exist.
///
/// # Safety
/// AVX2 and FMA; `gemm_tile_fits(kc, x, n, width)` and `8·(NV − 1) < width <= 8·NV`.
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_tile_v<const NV: usize, const MASKED: bool>(
    w: &GemmPanel,
    kc: usize,
    x: &[f32],
    n: usize,
    width: usize,
) -> GemmTile {
    const ONES: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];
    let tail = width - 8 * (NV - 1);
    // SAFETY: `tail` is 1..=8, so the 8 lanes read start inside `ONES`.
    let mask = unsafe { _mm256_loadu_si256(ONES.as_ptr().add(8 - tail).cast()) };
    let mut acc = [[_mm256_setzero_ps(); NV]; GEMM_MR];
    let wp = w.w.as_ptr().cast::<f32>();
    let xp = x.as_ptr();
    for k in 0..kc {
        // Rows of X sit `n` floats apart, a stride that can map them all onto a few L1 sets;
        // fetching a few rows ahead hides the L2 latency that follows. A prefetch never
        // faults, and the address is only formed (wrapping), never dereferenced.
        _mm_prefetch::<_MM_HINT_T0>(xp.wrapping_add((k + 8) * n).cast());
        let mut xv = [_mm256_setzero_ps(); NV];
        for (v, xv) in xv.iter_mut().enumerate() {
            // SAFETY: row `k < kc` of `x` holds `width` values from `k·n` (checked by the
            // caller); vector `v` covers columns `8v..8v + 8`, all below `width` except in
            // the masked last vector, whose lanes past `width` are not read.
            *xv = unsafe {
                let p = xp.add(k * n + 8 * v);
                if MASKED && v == NV - 1 {
                    _mm256_maskload_ps(p, mask)
                } else {
                    _mm256_loadu_ps(p)
                }
            };
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: `r < GEMM_MR` and `k < kc <= GEMM_KC` index the panel's rows.
            let b = _mm256_set1_ps(unsafe { *wp.add(r * GEMM_KC + k) });
            for (a, &xv) in acc.iter_mut().zip(&xv) {
                *a = _mm256_fmadd_ps(b, xv, *a);
            }
        }
    }
    let mut out = [[0.0f32; super::portable::GEMM_NR]; GEMM_MR];
    for (o, acc) in out.iter_mut().zip(&acc) {
        for (v, &a) in acc.iter().enumerate() {
            // SAFETY: `8v + 8 <= 8·NV <= GEMM_NR` floats of the row.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr().add(8 * v), a) };
        }
    }
    // Lanes past `width` were loaded as 0, so their sums are 0 as the reference's are.
    out
}

use super::portable::{gemm4_narrow_fits, GemmSeg, GemmXt, GEMM_NARROW, GEMM_SEGS};

impl Avx2 {
    /// The narrow GEMM step (see [`portable::gemm4_narrow`](super::portable::gemm4_narrow),
    /// the reference): one row's block of `kc` 4-bit codes times `nc` transposed columns of
    /// X, each segment's table derived in registers and every code decoded in registers, so
    /// no decoded weight is stored.
    #[inline]
    pub(crate) fn gemm4_narrow(
        self,
        bytes: &[u8],
        segs: &[GemmSeg],
        gen: &Gen16,
        xt: &GemmXt,
        kc: usize,
        nc: usize,
    ) -> [f32; GEMM_NARROW] {
        if !gemm4_narrow_fits(bytes, segs, kc, nc) {
            return super::portable::gemm4_narrow(bytes, segs, gen, xt, kc, nc);
        }
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA; the bounds
        // the kernel relies on were checked just above. Below 5 columns successive vectors of
        // codes take turns over accumulator sets, so 6 to 8 FMA chains stay in flight.
        unsafe {
            match nc {
                1 => gemm4_narrow_v::<1, 8>(bytes, segs, gen, xt),
                2 => gemm4_narrow_v::<2, 4>(bytes, segs, gen, xt),
                3 => gemm4_narrow_v::<3, 2>(bytes, segs, gen, xt),
                4 => gemm4_narrow_v::<4, 2>(bytes, segs, gen, xt),
                5 => gemm4_narrow_v::<5, 1>(bytes, segs, gen, xt),
                6 => gemm4_narrow_v::<6, 1>(bytes, segs, gen, xt),
                7 => gemm4_narrow_v::<7, 1>(bytes, segs, gen, xt),
                _ => gemm4_narrow_v::<8, 1>(bytes, segs, gen, xt),
            }
        }
    }
}

/// The four byte planes of a 16-entry `f32` table `(t0, t1)`, two to a vector: byte `e` of
/// plane `j` is byte `j` of entry `e`, planes 0 and 2 in the low and high 128-bit lanes of
/// the first vector, planes 1 and 3 in the second. Broadcast to both lanes (a load), a plane
/// is the form `vpshufb` looks up 32 codes at a time in.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn planes16(t0: __m256, t1: __m256) -> [__m256i; 2] {
    // Within each lane, byte `j` of the 4 entries to bytes `4j..4j + 4`.
    let by_byte = _mm256_setr_epi8(
        0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10,
        14, 3, 7, 11, 15,
    );
    // Then the lanes' words of byte `j` next to each other: bytes 0 and 1 of entries 0..8 in
    // the low lane, bytes 2 and 3 in the high one.
    let pair = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let a = _mm256_shuffle_epi8(_mm256_castps_si256(t0), by_byte);
    let b = _mm256_shuffle_epi8(_mm256_castps_si256(t1), by_byte);
    let a = _mm256_permutevar8x32_epi32(a, pair);
    let b = _mm256_permutevar8x32_epi32(b, pair);
    [_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b)]
}

/// [`planes16`] of the exponential table `table16(&Gen16::Exp { zero }, a, q)`, built from
/// its 8 magnitudes `a·q^k` (the products of [`tables16`], so the same bits) in fewer
/// shuffles: the ascending table is the magnitudes negated, then the same magnitudes in
/// reverse order (without `a·q^7` and with zeros at entries 7 and 15 when `zero`), and
/// negation only flips the sign bit, in byte 3 of an entry.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn planes_exp(a: &f32, q: &f32, zero: bool) -> [__m256i; 2] {
    let one = _mm256_set1_ps(1.0);
    // Broadcast from memory: loads, not shuffles.
    let qv = _mm256_broadcast_ss(q);
    let q2 = _mm256_mul_ps(qv, qv);
    let q4 = _mm256_mul_ps(q2, q2);
    let b1 = _mm256_blend_ps::<0b1010_1010>(one, qv);
    let b2 = _mm256_blend_ps::<0b1100_1100>(one, q2);
    let b4 = _mm256_blend_ps::<0b1111_0000>(one, q4);
    let p = _mm256_mul_ps(_mm256_mul_ps(b1, b2), b4);
    let m = _mm256_castps_si256(_mm256_mul_ps(p, _mm256_broadcast_ss(a)));
    let by_byte = _mm256_setr_epi8(
        0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10,
        14, 3, 7, 11, 15,
    );
    // Byte `j` of the 8 magnitudes in bytes `8(j % 2)..` of lane `j / 2`.
    let v = _mm256_permutevar8x32_epi32(
        _mm256_shuffle_epi8(m, by_byte),
        _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7),
    );
    // Each plane: its 8 bytes in order, then reversed; an index with its top bit set reads 0.
    let (even, odd, sign) = if zero {
        (
            _mm256_setr_epi8(
                0, 1, 2, 3, 4, 5, 6, -128, 6, 5, 4, 3, 2, 1, 0, -128, 0, 1, 2, 3, 4, 5, 6, -128, 6,
                5, 4, 3, 2, 1, 0, -128,
            ),
            _mm256_setr_epi8(
                8, 9, 10, 11, 12, 13, 14, -128, 14, 13, 12, 11, 10, 9, 8, -128, 8, 9, 10, 11, 12,
                13, 14, -128, 14, 13, 12, 11, 10, 9, 8, -128,
            ),
            _mm256_setr_epi64x(0, 0, 0x0080_8080_8080_8080, 0),
        )
    } else {
        (
            _mm256_setr_epi8(
                0, 1, 2, 3, 4, 5, 6, 7, 7, 6, 5, 4, 3, 2, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 7, 6, 5, 4,
                3, 2, 1, 0,
            ),
            _mm256_setr_epi8(
                8, 9, 10, 11, 12, 13, 14, 15, 15, 14, 13, 12, 11, 10, 9, 8, 8, 9, 10, 11, 12, 13,
                14, 15, 15, 14, 13, 12, 11, 10, 9, 8,
            ),
            _mm256_setr_epi64x(0, 0, 0x8080_8080_8080_8080_u64 as i64, 0),
        )
    };
    [
        _mm256_shuffle_epi8(v, even),
        // Plane 3 (the high lane) holds the sign bits: entries below 8 (below 7 with a zero
        // level) are negative.
        _mm256_xor_si256(_mm256_shuffle_epi8(v, odd), sign),
    ]
}

/// Table entries of 32 codes (one per byte of `idx`, each below 16) as four vectors of 8
/// `f32`: vector `m` lane `l` is the entry of byte `4m + (l & 3) + 16·(l >> 2)`. Four
/// `vpshufb` look up one byte plane each, and two rounds of unpacking put the bytes of each
/// entry together (the byte order the unpacking leaves is the layout of
/// [`gemm_xt_pos`](super::portable::gemm_xt_pos)).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn look32(planes: &[__m256i; 4], idx: __m256i) -> [__m256; 4] {
    let b0 = _mm256_shuffle_epi8(planes[0], idx);
    let b1 = _mm256_shuffle_epi8(planes[1], idx);
    let b2 = _mm256_shuffle_epi8(planes[2], idx);
    let b3 = _mm256_shuffle_epi8(planes[3], idx);
    let lo01 = _mm256_unpacklo_epi8(b0, b1);
    let hi01 = _mm256_unpackhi_epi8(b0, b1);
    let lo23 = _mm256_unpacklo_epi8(b2, b3);
    let hi23 = _mm256_unpackhi_epi8(b2, b3);
    [
        _mm256_castsi256_ps(_mm256_unpacklo_epi16(lo01, lo23)),
        _mm256_castsi256_ps(_mm256_unpackhi_epi16(lo01, lo23)),
        _mm256_castsi256_ps(_mm256_unpacklo_epi16(hi01, hi23)),
        _mm256_castsi256_ps(_mm256_unpackhi_epi16(hi01, hi23)),
    ]
}

/// Codes in a run of the byte-plane kernels: 32 bytes, the low nibbles (even codes) and the
/// high nibbles (odd codes) each one vector of 32 table indices.
pub(crate) const RUN64: usize = 64;

// The view's spans and `DotPlan` take a 4-bit block of the lane layout for one run.
const _: () = assert!(perm_block(4) == RUN64);

/// The dot product of a 4-bit row's whole runs of [`RUN64`] codes (byte `b` holding code `2b`
/// in its low nibble) with `xr`, which holds `x` run by run in
/// [`gemm_xt_pos`](super::portable::gemm_xt_pos) order (as [`permute_runs64`] writes it),
/// through the 16-entry table `t16`: each run's low and high nibbles look their entries up
/// one byte plane at a time ([`look32`]), 12 byte shuffles per 32 codes where the
/// lane-permuted kernel ([`dot_perm`]) spends two `vpermps`, a blend and two shifts per 8.
/// As many runs as both slices hold. The sum runs in four accumulators (vector `m` of each
/// half run into the `m`-th), added pairwise at the end.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_planes4(bytes: &[u8], t16: &[f32; 16], xr: &[f32]) -> f32 {
    let runs = (bytes.len() / (RUN64 / 2)).min(xr.len() / RUN64);
    let planes = lane_planes(t16);
    let nib = _mm256_set1_epi8(0x0f);
    let mut acc = [_mm256_setzero_ps(); 4];
    for i in 0..runs {
        // SAFETY: run `i < runs` reads bytes `32i .. 32i + 32` and floats `64i .. 64i + 64`,
        // inside both slices.
        unsafe {
            add_run(
                &planes,
                nib,
                bytes.as_ptr().add(RUN64 / 2 * i),
                xr.as_ptr().add(RUN64 * i),
                &mut acc,
            )
        };
    }
    hsum4(acc)
}

/// One run's entries times their `x` added into `acc` (vector `m` of each half run into the
/// `m`-th), FMAs straight into the accumulators: [`dot_planes4`]'s step, and the step of
/// [`dot_planes4_scaled`]'s groups of whole runs. `nib` is `0x0f` in every byte.
///
/// # Safety
/// AVX2 and FMA; `run` points to 32 readable bytes and `xr` to 64 floats.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn add_run(
    planes: &[__m256i; 4],
    nib: __m256i,
    run: *const u8,
    xr: *const f32,
    acc: &mut [__m256; 4],
) {
    // SAFETY: the caller guarantees the 32 bytes and 64 floats.
    unsafe {
        let v = _mm256_loadu_si256(run.cast());
        let halves = [
            _mm256_and_si256(v, nib),
            _mm256_and_si256(_mm256_srli_epi16::<4>(v), nib),
        ];
        for (h, &idx) in halves.iter().enumerate() {
            let w = look32(planes, idx);
            for (m, (a, &w)) in acc.iter_mut().zip(&w).enumerate() {
                *a = _mm256_fmadd_ps(w, _mm256_loadu_ps(xr.add(32 * h + 8 * m)), *a);
            }
        }
    }
}

/// The four byte planes of `t16` (see [`planes16`]), each in both 128-bit lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn lane_planes(t16: &[f32; 16]) -> [__m256i; 4] {
    // SAFETY: `t16` holds 16 floats.
    let [lo, hi] = unsafe {
        planes16(
            _mm256_loadu_ps(t16.as_ptr()),
            _mm256_loadu_ps(t16.as_ptr().add(8)),
        )
    };
    // `planes16` holds planes 0 and 2 in `lo`'s lanes and 1 and 3 in `hi`'s.
    [
        _mm256_permute2x128_si256::<0x00>(lo, lo),
        _mm256_permute2x128_si256::<0x00>(hi, hi),
        _mm256_permute2x128_si256::<0x11>(lo, lo),
        _mm256_permute2x128_si256::<0x11>(hi, hi),
    ]
}

/// The entries of one run's codes times their `x` (`xr` at the run), summed over the two
/// halves: vector `m` lane `l` holds the products of the run's codes `8m + 2l, 8m + 2l + 1`
/// for `l < 4` and `32 + 8m + 2(l − 4), …` for the rest ([`look32`]'s order).
///
/// # Safety
/// AVX2 and FMA; `run` points to 32 readable bytes and `xr` to 64 floats.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_products(planes: &[__m256i; 4], run: *const u8, xr: *const f32) -> [__m256; 4] {
    let nib = _mm256_set1_epi8(0x0f);
    // SAFETY: the caller guarantees the 32 bytes and 64 floats.
    unsafe {
        let v = _mm256_loadu_si256(run.cast());
        let even = look32(planes, _mm256_and_si256(v, nib));
        let odd = look32(planes, _mm256_and_si256(_mm256_srli_epi16::<4>(v), nib));
        let mut p = [_mm256_setzero_ps(); 4];
        for (m, p) in p.iter_mut().enumerate() {
            let low = _mm256_mul_ps(even[m], _mm256_loadu_ps(xr.add(8 * m)));
            *p = _mm256_fmadd_ps(odd[m], _mm256_loadu_ps(xr.add(32 + 8 * m)), low);
        }
        p
    }
}

/// [`dot_planes4`] over groups of `g` codes (32 or a multiple of [`RUN64`]) that share `t16`
/// up to an `f16` scale per group (`scales`, two little-endian bytes a group, positive and
/// finite). Whole runs of whole groups only, as many as the slices hold; 0 for another `g`.
///
/// - Groups of a multiple of 64 codes sum their runs as [`dot_planes4`] does, in four
///   accumulators of their own, which meet the group's scale once (eight groups' scales
///   converted at a time).
/// - Groups of 32 share a run: its low 128-bit lane holds the first group's codes and the
///   high lane the second's. A run's products ([`run_products`]) are added into one vector
///   that meets the vector of its lanes' scales (eight groups' converted at a time).
///
/// Few live vectors either way: the four byte planes stay in registers, where the former
/// form (four accumulators, each product vector times the scales) spilled them and ran at
/// twice [`dot_planes4`]'s instructions per run.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_planes4_scaled(
    bytes: &[u8],
    t16: &[f32; 16],
    xr: &[f32],
    g: usize,
    scales: &[u8],
) -> f32 {
    if g != 32 && (g == 0 || !g.is_multiple_of(RUN64)) {
        return 0.0;
    }
    let groups = scales.len() / 2;
    let runs = (bytes.len() / (RUN64 / 2))
        .min(xr.len() / RUN64)
        .min(groups * g / RUN64);
    let planes = lane_planes(t16);
    macro_rules! products {
        ($r:expr) => {
            // SAFETY: run `r < runs` reads bytes `32r ..` and floats `64r ..`, inside the
            // slices.
            unsafe {
                run_products(
                    &planes,
                    bytes.as_ptr().add(RUN64 / 2 * $r),
                    xr.as_ptr().add(RUN64 * $r),
                )
            }
        };
    }
    if g == 32 {
        let mut acc = [_mm256_setzero_ps(); 2];
        // Run `r` holds groups `2r` (low lane) and `2r + 1` (high lane); eight groups (four
        // runs) a conversion.
        let mut r = 0;
        // Run `r + j` of four, its lanes' scales picked from the eight converted (written
        // out: a loop over `j` was left rolled, its picks built at run time).
        macro_rules! run_of_four {
            ($eight:expr, $j:literal, $acc:expr) => {{
                let (a, b) = (2 * $j, 2 * $j + 1);
                let pick = _mm256_setr_epi32(a, a, a, a, b, b, b, b);
                let p = products!(r + $j);
                let run = _mm256_add_ps(_mm256_add_ps(p[0], p[1]), _mm256_add_ps(p[2], p[3]));
                $acc = _mm256_fmadd_ps(run, _mm256_permutevar8x32_ps($eight, pick), $acc);
            }};
        }
        while r + 4 <= runs {
            // SAFETY: groups `2r .. 2r + 8` lie below `groups` (`2r + 8 <= 2·runs`).
            let eight = unsafe { f16_scales8(scales.as_ptr().add(4 * r)) };
            run_of_four!(eight, 0, acc[0]);
            run_of_four!(eight, 1, acc[1]);
            run_of_four!(eight, 2, acc[0]);
            run_of_four!(eight, 3, acc[1]);
            r += 4;
        }
        for r in r..runs {
            let (a, b) = (
                super::portable::scale_at(scales, 2 * r),
                super::portable::scale_at(scales, 2 * r + 1),
            );
            let p = products!(r);
            let run = _mm256_add_ps(_mm256_add_ps(p[0], p[1]), _mm256_add_ps(p[2], p[3]));
            acc[0] = _mm256_fmadd_ps(run, _mm256_setr_ps(a, a, a, a, b, b, b, b), acc[0]);
        }
        return hsum(_mm256_add_ps(acc[0], acc[1]));
    }
    let per_group = g / RUN64;
    let whole_groups = runs / per_group;
    let nib = _mm256_set1_epi8(0x0f);
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut eight = [0.0f32; 8];
    for i in 0..whole_groups {
        if i % 8 == 0 {
            // Eight groups' scales a conversion, each then broadcast from memory.
            if i + 8 <= whole_groups {
                // SAFETY: groups `i .. i + 8` lie below `whole_groups <= groups`.
                let v = unsafe { f16_scales8(scales.as_ptr().add(2 * i)) };
                // SAFETY: `eight` is 8 floats.
                unsafe { _mm256_storeu_ps(eight.as_mut_ptr(), v) };
            } else {
                for (j, s) in eight.iter_mut().enumerate().take(whole_groups - i) {
                    *s = super::portable::scale_at(scales, i + j);
                }
            }
        }
        let mut sums = [_mm256_setzero_ps(); 4];
        for r in i * per_group..(i + 1) * per_group {
            // SAFETY: run `r < runs` reads bytes `32r ..` and floats `64r ..`, inside the slices.
            unsafe {
                let run = bytes.as_ptr().add(RUN64 / 2 * r);
                add_run(&planes, nib, run, xr.as_ptr().add(RUN64 * r), &mut sums);
            }
        }
        let s = _mm256_broadcast_ss(&eight[i % 8]);
        acc[0] = _mm256_fmadd_ps(_mm256_add_ps(sums[0], sums[1]), s, acc[0]);
        acc[1] = _mm256_fmadd_ps(_mm256_add_ps(sums[2], sums[3]), s, acc[1]);
    }
    hsum(_mm256_add_ps(acc[0], acc[1]))
}

/// Eight positive finite `f16` scales at `halves` (two little-endian bytes each) as `f32`,
/// exactly as [`scale_at`](super::portable::scale_at) converts them.
///
/// # Safety
/// `halves` points to 16 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn f16_scales8(halves: *const u8) -> __m256 {
    // SAFETY: the caller guarantees the 16 bytes.
    let h = _mm256_cvtepu16_epi32(unsafe { _mm_loadu_si128(halves.cast()) });
    let bits = _mm256_and_si256(_mm256_slli_epi32::<13>(h), _mm256_set1_epi32(0x7fff << 13));
    _mm256_mul_ps(
        _mm256_castsi256_ps(bits),
        _mm256_set1_ps(super::portable::F16_REBIAS),
    )
}

/// `out[64r + gemm_xt_pos(k, 64)] = x[64r + k]` for the whole runs of [`RUN64`] values both
/// slices hold: per run, vector `m` of the low (high) half takes the even (odd) values of
/// `x`'s vectors `m` and `m + 4`, the order in which [`look32`] returns the entries of a run's
/// low (high) nibbles. Returns the values written.
///
/// # Safety
/// The CPU supports AVX2 and FMA (lengths are clamped to the slices).
#[target_feature(enable = "avx2,fma")]
unsafe fn permute_runs64(x: &[f32], out: &mut [f32]) -> usize {
    let runs = x.len().min(out.len()) / RUN64;
    // Per 128-bit lane the two inputs' picks are `[a a b b]`; the 64-bit order 0, 2, 1, 3
    // puts `a`'s four before `b`'s.
    let order =
        |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
    for r in 0..runs {
        // SAFETY: run `r < runs` covers floats `64r .. 64r + 64` of both slices.
        unsafe {
            let src = x.as_ptr().add(RUN64 * r);
            let dst = out.as_mut_ptr().add(RUN64 * r);
            for m in 0..4 {
                let a = _mm256_loadu_ps(src.add(8 * m));
                let b = _mm256_loadu_ps(src.add(8 * m + 32));
                _mm256_storeu_ps(dst.add(8 * m), order(_mm256_shuffle_ps::<0x88>(a, b)));
                _mm256_storeu_ps(dst.add(32 + 8 * m), order(_mm256_shuffle_ps::<0xdd>(a, b)));
            }
        }
    }
    runs * RUN64
}

/// `NC` columns, `S` accumulator sets (1, 2, 4 or 8, taken in turn vector by vector, so that
/// `NC·S` FMA chains stay in flight). A whole run of 64 codes is 32 bytes: their low nibbles
/// (even codes) and high nibbles (odd codes) are two vectors of 32 indices, each looked up
/// by [`look32`]: 12 byte shuffles per 32 codes, where a `vpermps` lookup per table half
/// takes 8 shuffles and 20 shifts and bit operations. The block's last codes, past its last whole run, go 16 at a time in order
/// and the rest through the reference table.
///
/// # Safety
/// AVX2 and FMA; `gemm4_narrow_fits(bytes, segs, kc, NC)` and `S` is 1, 2, 4 or 8.
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm4_narrow_v<const NC: usize, const S: usize>(
    bytes: &[u8],
    segs: &[GemmSeg],
    gen: &Gen16,
    xt: &GemmXt,
) -> [f32; GEMM_NARROW] {
    let mut acc = [[_mm256_setzero_ps(); NC]; S];
    let mut tail = [0.0f32; GEMM_NARROW];
    let nib = _mm256_set1_epi8(0x0f);
    // Every segment's planes first, off the accumulators' dependency chains, stored so that
    // broadcasting a plane is a load rather than a shuffle.
    let mut all = [[_mm256_setzero_si256(); 2]; GEMM_SEGS];
    for (p, s) in all.iter_mut().zip(segs) {
        *p = match gen {
            Gen16::Exp { zero } => planes_exp(&s.a, &s.q, *zero),
            Gen16::Scaled(_) => {
                let (t0, t1) = tables16(gen, s.a, s.q);
                planes16(t0, t1)
            }
        };
    }
    for (s, p) in segs.iter().zip(&all) {
        let base = p.as_ptr().cast::<__m128i>();
        // SAFETY: `p` is 64 aligned bytes, the 16-byte planes 0, 2, 1 and 3 in that order.
        let planes = unsafe {
            [
                _mm256_broadcastsi128_si256(_mm_load_si128(base)),
                _mm256_broadcastsi128_si256(_mm_load_si128(base.add(2))),
                _mm256_broadcastsi128_si256(_mm_load_si128(base.add(1))),
                _mm256_broadcastsi128_si256(_mm_load_si128(base.add(3))),
            ]
        };
        let mut i = s.start;
        while i + 64 <= s.end {
            // SAFETY: `i + 64 <= end`, so bytes `i/2 .. i/2 + 32` lie inside `bytes` (`end <=
            // 2·len`), and floats `i .. i + 64` of each column inside the block.
            unsafe {
                let v = _mm256_loadu_si256(bytes.as_ptr().add(i / 2).cast());
                let halves = [
                    _mm256_and_si256(v, nib),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(v), nib),
                ];
                for (h, &idx) in halves.iter().enumerate() {
                    let w = look32(&planes, idx);
                    for (m, &w) in w.iter().enumerate() {
                        let set = &mut acc[(4 * h + m) % S];
                        for (a, xc) in set.iter_mut().zip(&xt.x) {
                            let xv = _mm256_load_ps(xc.as_ptr().add(i + 32 * h + 8 * m));
                            *a = _mm256_fmadd_ps(w, xv, *a);
                        }
                    }
                }
            }
            i += 64;
        }
        // Only the block's last run is short (`end` is a multiple of 64 or `kc`), and there
        // the layout is in order.
        let (t0, t1) = if i + 16 <= s.end {
            tables16(gen, s.a, s.q)
        } else {
            (_mm256_setzero_ps(), _mm256_setzero_ps())
        };
        while i + 16 <= s.end {
            // SAFETY: `i` is even and `i + 16 <= end`, so bytes `i/2 .. i/2 + 8` lie inside
            // `bytes`, and floats `i .. i + 16` of each column inside the block.
            unsafe {
                let c = nibbles(_mm_loadl_epi64(bytes.as_ptr().add(i / 2).cast()));
                let w0 = pick16(t0, t1, _mm256_cvtepu8_epi32(c));
                let w1 = pick16(t0, t1, _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(c)));
                for (col, xc) in xt.x.iter().enumerate().take(NC) {
                    let xp = xc.as_ptr().add(i);
                    acc[0][col] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xp), acc[0][col]);
                    acc[S - 1][col] =
                        _mm256_fmadd_ps(w1, _mm256_loadu_ps(xp.add(8)), acc[S - 1][col]);
                }
            }
            i += 16;
        }
        if i < s.end {
            let t = super::portable::table16(gen, s.a, s.q);
            for k in i..s.end {
                let w = t[usize::from((bytes[k / 2] >> ((k % 2) * 4)) & 0x0f)];
                for (o, xc) in tail.iter_mut().zip(&xt.x).take(NC) {
                    *o += w * xc[k];
                }
            }
        }
    }
    // The sets pairwise, then the columns.
    let mut width = S;
    while width > 1 {
        width /= 2;
        let (low, high) = acc.split_at_mut(width);
        for (l, h) in low.iter_mut().zip(&*high) {
            for (a, &b) in l.iter_mut().zip(h) {
                *a = _mm256_add_ps(*a, b);
            }
        }
    }
    let v: [__m256; GEMM_NARROW] = core::array::from_fn(|c| {
        if c < NC {
            acc[0][c]
        } else {
            _mm256_setzero_ps()
        }
    });
    // Column sums by a pairwise tree: the last `hadd` holds columns 0–3 and 4–7 as the sums
    // of lanes 0–3 (low halves) and 4–7 (high halves) of each accumulator.
    let h03 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    let h47 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    let sum = _mm256_add_ps(
        _mm256_permute2f128_ps::<0x20>(h03, h47),
        _mm256_permute2f128_ps::<0x31>(h03, h47),
    );
    let mut out = [0.0f32; GEMM_NARROW];
    // SAFETY: `out` holds 8 floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
    for (o, t) in out.iter_mut().zip(tail) {
        *o += t;
    }
    out
}

// ---- Quantizing x to int8 ----------------------------------------------------------------

use super::portable::{quantize_block, QBLOCK};

impl Avx2 {
    /// `x` quantized for the int8 kernels, with the reference's bits: `xq` and `scales` block
    /// by block as [`quantize_block`](super::portable::quantize_block), `xp` as
    /// [`pair_order`](super::portable::pair_order) and `ps` each whole block's scale four
    /// times. `x` is finite; `xq` holds `x.len()` values, `scales` one per block (the last
    /// possibly short), `xp` and `ps` the whole blocks' `32` and `4` each.
    pub(crate) fn quantize_x(
        self,
        x: &[f32],
        xq: &mut [i8],
        scales: &mut [f32],
        xp: &mut [i8],
        ps: &mut [f32],
    ) {
        let whole = x.len() / QBLOCK;
        assert!(
            xq.len() >= x.len()
                && scales.len() >= x.len().div_ceil(QBLOCK)
                && xp.len() >= whole * QBLOCK
                && ps.len() >= 4 * whole
        );
        // SAFETY: an `Avx2` proof exists only when detection found AVX2 and FMA; the lengths
        // were checked just above.
        unsafe { quantize_x(x, xq, scales, xp, ps) }
    }
}

/// [`Avx2::quantize_x`], whose lengths it relies on.
///
/// # Safety
/// AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_x(x: &[f32], xq: &mut [i8], scales: &mut [f32], xp: &mut [i8], ps: &mut [f32]) {
    let whole = x.len() / QBLOCK;
    let mut b = 0;
    while b < whole {
        // The pair order takes two blocks at a time; only the last may stand alone.
        let width = if b + 1 < whole { 2 } else { 1 };
        let mut halves = [_mm256_setzero_si256(); 2];
        for (k, half) in halves.iter_mut().enumerate().take(width) {
            let at = (b + k) * QBLOCK;
            let (scale, codes) = quantize_block32(&x[at..at + QBLOCK], &mut xq[at..at + QBLOCK]);
            scales[b + k] = scale;
            ps[4 * (b + k)..4 * (b + k) + 4].fill(scale);
            *half = codes;
        }
        // SAFETY: the destination holds `32 · width` bytes.
        unsafe { store_pair_order(halves, width, &mut xp[b * QBLOCK..(b + width) * QBLOCK]) };
        b += width;
    }
    if whole * QBLOCK < x.len() {
        let at = whole * QBLOCK;
        scales[whole] = quantize_block(&x[at..], &mut xq[at..x.len()]);
    }
}

/// One whole block of finite `x` quantized as [`quantize_block`] does, bit for bit (the same
/// products and sums in the same order, and truncation as `as i32`), its codes stored in `out`
/// and returned as a vector with each 128-bit lane's 16 codes reordered even positions first
/// (what [`store_pair_order`] takes). Where `127 / max|x|` overflows (`max|x|` below about
/// `2^-120`) the block goes through the reference, whose `NaN` and infinite quotients `as i32`
/// settles differently from `vcvttps2dq`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn quantize_block32(block: &[f32], out: &mut [i8]) -> (f32, __m256i) {
    let (block, out) = (&block[..QBLOCK], &mut out[..QBLOCK]);
    // Loops rather than `array::from_fn`, whose closure runs outside the target features.
    let mut v = [_mm256_setzero_ps(); 4];
    let mut m = _mm256_setzero_ps();
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    for (k, v) in v.iter_mut().enumerate() {
        // SAFETY: `block` holds 32 floats.
        *v = unsafe { _mm256_loadu_ps(block.as_ptr().add(8 * k)) };
        m = _mm256_max_ps(m, _mm256_and_ps(*v, magnitude));
    }
    let m = _mm256_max_ps(m, _mm256_permute2f128_ps::<1>(m, m));
    let m = _mm256_max_ps(m, _mm256_permute_ps::<0b0100_1110>(m));
    let m = _mm256_max_ps(m, _mm256_permute_ps::<0b1011_0001>(m));
    let max = _mm256_cvtss_f32(m);
    let inv = 127.0 / max;
    // `max == 0` is the reference's all-zero block; a non-finite `inv` its fallback.
    if !(max > 0.0 && inv.is_finite()) {
        let scale = quantize_block(block, out);
        // SAFETY: `out` holds 32 bytes.
        let codes = unsafe { _mm256_loadu_si256(out.as_ptr().cast()) };
        return (scale, _mm256_shuffle_epi8(codes, evens_first()));
    }
    let inv = _mm256_set1_ps(inv);
    let sign = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
    let half = _mm256_set1_ps(0.5);
    // `r ± 0.5` by the sign of `r`, then truncation: the reference's rounding half away from
    // zero (for `r = −0` it adds −0.5 where the reference adds 0.5; both truncate to 0).
    let mut t = [_mm256_setzero_si256(); 4];
    for (t, &v) in t.iter_mut().zip(&v) {
        let r = _mm256_mul_ps(v, inv);
        *t = _mm256_cvttps_epi32(_mm256_add_ps(r, _mm256_or_ps(_mm256_and_ps(r, sign), half)));
    }
    // The packs interleave the 128-bit lanes; the permute puts the values back in order.
    let packed = _mm256_packs_epi16(
        _mm256_packs_epi32(t[0], t[1]),
        _mm256_packs_epi32(t[2], t[3]),
    );
    let ordered = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // The reference clamps to [−127, 127]; a finite quotient stays within ±127.5 anyway.
    let codes = _mm256_max_epi8(ordered, _mm256_set1_epi8(-127));
    // SAFETY: `out` holds 32 bytes.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), codes) };
    (max / 127.0, _mm256_shuffle_epi8(codes, evens_first()))
}

/// Per 128-bit lane, the 8 even-position bytes, then the 8 odd-position ones.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn evens_first() -> __m256i {
    both_lanes(&[0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15])
}

/// Stores one pair of blocks (`width` 2) or a lone last block (`width` 1) in
/// [`pair_order`](super::portable::pair_order), each block given as [`quantize_block32`]
/// returns it: within a block the even positions of both lanes, then the odd ones.
///
/// # Safety
/// AVX2; `dst` holds `32 · width` bytes.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store_pair_order(blocks: [__m256i; 2], width: usize, dst: &mut [i8]) {
    // Each block's 64-bit quarters: evens of lane 0, odds of lane 0, evens of lane 1, odds
    // of lane 1; the block's 16 even positions are quarters 0 and 2.
    let split = |v: __m256i| _mm256_permute4x64_epi64::<0b11_01_10_00>(v);
    let first = split(blocks[0]);
    let p = dst.as_mut_ptr().cast::<__m256i>();
    // SAFETY: the caller's `dst` holds `32 · width` bytes.
    unsafe {
        if width == 1 {
            _mm256_storeu_si256(p, first);
        } else {
            let second = split(blocks[1]);
            _mm256_storeu_si256(p, _mm256_permute2x128_si256::<0x20>(first, second));
            _mm256_storeu_si256(p.add(1), _mm256_permute2x128_si256::<0x31>(first, second));
        }
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::isa::Isa;
    use crate::test_rng::{f16_scales, group_params, stored_pairs, xorshift32 as rng};
    use alloc::vec::Vec;

    /// The run order puts `x[64r + k]` at `64r + gemm_xt_pos(k, 64)`, exactly, for whole
    /// runs only.
    #[test]
    fn runs_of_64_are_in_lookup_order() {
        let Some(t) = Isa::detect().avx2() else {
            return;
        };
        let x: Vec<f32> = (0..200).map(|i| i as f32).collect();
        let mut out = alloc::vec![-1.0f32; 200];
        assert_eq!(t.permute_runs64(&x, &mut out), 192);
        for r in 0..3 {
            for k in 0..64 {
                let pos = super::super::portable::gemm_xt_pos(k, 64);
                assert_eq!(out[64 * r + pos], x[64 * r + k], "run {r} code {k}");
            }
        }
        assert!(out[192..].iter().all(|&v| v == -1.0));
        assert_eq!(t.permute_runs64(&x[..100], &mut out), 64);
    }

    /// The byte-plane kernel sums `t16[code]·x` over whole runs of 64 codes within `f32`
    /// rounding of the reference, for random tables, codes and lengths, and stops at the
    /// shorter slice.
    #[test]
    fn byte_plane_dot_matches_the_reference() {
        let Some(t) = Isa::detect().avx2() else {
            return;
        };
        let mut next = rng(0xb97e_0064);
        let mut unit = move || next() as f32 / u32::MAX as f32 - 0.5;
        for runs in [0usize, 1, 2, 5, 32, 33] {
            let t16: [f32; 16] = core::array::from_fn(|_| unit() * 4.0);
            let bytes: Vec<u8> = (0..32 * runs)
                .map(|_| (unit() * 255.0 + 128.0) as u8)
                .collect();
            let x: Vec<f32> = (0..64 * runs).map(|_| unit()).collect();
            let mut xr = alloc::vec![0.0f32; x.len()];
            t.permute_runs64(&x, &mut xr);
            let (mut want, mut magnitude) = (0.0f64, 0.0f64);
            for (k, &v) in x.iter().enumerate() {
                let code = (bytes[k / 2] >> (4 * (k % 2))) & 0x0f;
                let p = f64::from(t16[usize::from(code)]) * f64::from(v);
                want += p;
                magnitude += p.abs();
            }
            let got = f64::from(t.dot_planes4(&bytes, &t16, &xr));
            assert!(
                (got - want).abs() <= 1e-6 * magnitude.max(1.0),
                "{runs}: {got} {want}"
            );
            if runs > 1 {
                // One run fewer in either slice: that run is left out.
                let short = f64::from(t.dot_planes4(&bytes[..32 * (runs - 1)], &t16, &xr));
                let fewer = f64::from(t.dot_planes4(&bytes, &t16, &xr[..64 * (runs - 1) + 63]));
                assert_eq!(short, fewer);
                assert!((got - short).abs() > 0.0 || magnitude == 0.0);
            }
        }
    }

    /// Eight groups' tables made at once ([`magnitudes8`], [`spread16`]) hold the bits of the
    /// reference table of each group, for every `(a, q)` drawn, with and without the zero
    /// level.
    #[test]
    fn batched_group_tables_are_the_reference_tables_to_the_bit() {
        if Isa::detect().avx2().is_none() {
            return;
        }
        let mut next = rng(0x7ab1_e5ed);
        for _ in 0..200 {
            let params: [[f32; 2]; 8] = core::array::from_fn(|_| group_params(&mut next));
            for zero in [false, true] {
                let gen = Gen16::Exp { zero };
                // SAFETY: detection found AVX2 and FMA.
                let got = unsafe { batched_tables(&params, zero) };
                for (p, got) in params.iter().zip(&got) {
                    let want = super::super::portable::table16(&gen, p[0], p[1]);
                    assert_eq!(
                        got.map(f32::to_bits),
                        want.map(f32::to_bits),
                        "{p:?} {zero}"
                    );
                }
            }
        }
    }

    /// Eight groups' int8 tables made at once ([`tables8_i8`]) are each group's reference
    /// int8 table, for every `q` drawn, with and without the zero level.
    #[test]
    fn batched_int8_tables_are_the_reference_tables() {
        if Isa::detect().avx2().is_none() {
            return;
        }
        let mut next = rng(0x7ab1_e5e8);
        for _ in 0..200 {
            let q: [f32; 8] = core::array::from_fn(|_| group_params(&mut next)[1]);
            for zero in [false, true] {
                let mut got = [[0i8; 16]; 8];
                // SAFETY: detection found AVX2 and FMA; `q` holds 8 floats.
                unsafe {
                    let q = _mm256_loadu_ps(q.as_ptr());
                    if zero {
                        tables8_i8::<true>(q, neighbour_lanes(), &mut got);
                    } else {
                        tables8_i8::<false>(q, neighbour_lanes(), &mut got);
                    }
                }
                for (q, got) in q.iter().zip(got) {
                    let want = super::super::portable::table16_i8(&Gen16::Exp { zero }, *q);
                    assert_eq!(got, want, "q {q} zero {zero}");
                }
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn batched_tables(params: &[[f32; 2]; 8], zero: bool) -> Vec<[f32; 16]> {
        // SAFETY: `params` holds 16 floats.
        let (a, q) = unsafe { split_pairs8(params.as_ptr().cast()) };
        let tables: Vec<(__m256, __m256)> = if zero {
            magnitudes8::<true>(a, q)
                .map(|m| spread16::<true>(m))
                .into()
        } else {
            magnitudes8::<false>(a, q)
                .map(|m| spread16::<false>(m))
                .into()
        };
        tables
            .into_iter()
            .map(|(lo, hi)| {
                let mut out = [0.0f32; 16];
                // SAFETY: `out` holds 16 floats.
                unsafe {
                    _mm256_storeu_ps(out.as_mut_ptr(), lo);
                    _mm256_storeu_ps(out.as_mut_ptr().add(8), hi);
                }
                out
            })
            .collect()
    }

    /// [`ByteDot`] by widening to `i16` and `i32` before any sum, exact for any bytes: the
    /// definition `vpdpbusd` implements, in AVX2 instructions, so that the kernels can be run
    /// with it on any AVX2 CPU.
    struct Widened;

    impl ByteDot for Widened {
        #[inline(always)]
        unsafe fn dot_add(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
            // SAFETY: the caller guarantees AVX2 and FMA.
            unsafe { widened_add(acc, u, s) }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn widened_add(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        let zero = _mm256_setzero_si256();
        // `u` zero-extends against zero bytes; `s` sign-extends from the high byte of a copy.
        let lo = _mm256_madd_epi16(
            _mm256_unpacklo_epi8(u, zero),
            _mm256_srai_epi16::<8>(_mm256_unpacklo_epi8(s, s)),
        );
        let hi = _mm256_madd_epi16(
            _mm256_unpackhi_epi8(u, zero),
            _mm256_srai_epi16::<8>(_mm256_unpackhi_epi8(s, s)),
        );
        // Per 128-bit lane `lo` sums bytes (0, 1) … (6, 7) and `hi` (8, 9) … (14, 15).
        _mm256_add_epi32(acc, _mm256_hadd_epi32(lo, hi))
    }

    /// `D`'s sum of random bytes over their whole ranges, as `i32` lanes.
    fn lanes<D: ByteDot>(acc: &[i32; 8], u: &[u8; 32], s: &[i8; 32]) -> [i32; 8] {
        let mut out = [0i32; 8];
        // SAFETY: the callers hold the proof of `D`'s instructions; the arrays hold 32 bytes.
        unsafe {
            let v = D::dot_add(
                _mm256_loadu_si256(acc.as_ptr().cast()),
                _mm256_loadu_si256(u.as_ptr().cast()),
                _mm256_loadu_si256(s.as_ptr().cast()),
            );
            _mm256_storeu_si256(out.as_mut_ptr().cast(), v);
        }
        out
    }

    /// `Widened` (and on a CPU with AVX-512 VNNI, `vpdpbusd`) adds each lane's four products
    /// of unsigned and signed bytes, whatever the bytes; `Maddubs` does for the kernels'
    /// operands (both below 128 in magnitude).
    #[test]
    fn byte_dots_add_the_four_products_of_each_lane() {
        let Some(_avx2) = Isa::detect().avx2() else {
            return;
        };
        let (evex, vex) = (Isa::detect().avx512_vnni(), Isa::detect().avx_vnni());
        let mut next = rng(0x51ed_270b);
        for round in 0..2000 {
            let acc: [i32; 8] = core::array::from_fn(|_| next() as i32 >> 8);
            let mut u: [u8; 32] = core::array::from_fn(|_| next() as u8);
            let mut s: [i8; 32] = core::array::from_fn(|_| next() as i8);
            if round % 4 == 0 {
                // The extremes every lane at once.
                u = [255; 32];
                s = core::array::from_fn(|i| if i % 2 == 0 { -128 } else { 127 });
            }
            let expect: [i32; 8] = core::array::from_fn(|j| {
                acc[j]
                    + (4 * j..4 * j + 4)
                        .map(|i| i32::from(u[i]) * i32::from(s[i]))
                        .sum::<i32>()
            });
            assert_eq!(lanes::<Widened>(&acc, &u, &s), expect, "round {round}");
            if evex.is_some() {
                assert_eq!(
                    lanes::<VpdpbusdEvex>(&acc, &u, &s),
                    expect,
                    "evex round {round}"
                );
            }
            if vex.is_some() {
                assert_eq!(
                    lanes::<VpdpbusdVex>(&acc, &u, &s),
                    expect,
                    "vex round {round}"
                );
            }
            let u7 = u.map(|v| v & 0x7f);
            let s7 = s.map(|v| v.max(-127));
            let expect7: [i32; 8] = core::array::from_fn(|j| {
                acc[j]
                    + (4 * j..4 * j + 4)
                        .map(|i| i32::from(u7[i]) * i32::from(s7[i]))
                        .sum::<i32>()
            });
            assert_eq!(
                lanes::<Maddubs>(&acc, &u7, &s7),
                expect7,
                "maddubs round {round}"
            );
        }
    }

    /// The batched int8 kernels (per row, compact groups of every shape, groups with their
    /// own tables) give the same bits whichever [`ByteDot`] sums their products, `x` and the
    /// tables at the ends of their range included: the `vpdpbusd` build is the AVX2 one.
    #[test]
    fn int8_kernels_give_the_same_bits_with_every_byte_dot() {
        const R: usize = 4;
        let Some(_avx2) = Isa::detect().avx2() else {
            return;
        };
        let evex = Isa::detect().avx512_vnni().is_some();
        let vex = Isa::detect().avx_vnni().is_some();
        let mut next = rng(0x0bad_cafe);
        for (cols, g) in [
            (1024usize, 32usize),
            (992, 64),
            (1056, 128),
            (960, 96),
            (4096, 256),
            (8256, 128),
            (1152, 192),
        ] {
            let blocks = cols / 32;
            let xp: Vec<i8> = (0..cols)
                .map(|i| match i % 97 {
                    0 => 127,
                    1 => -127,
                    _ => ((next() % 255) as i32 - 127) as i8,
                })
                .collect();
            let ps: Vec<f32> = (0..blocks)
                .flat_map(|_| [1e-3 * (1 + next() % 1000) as f32; 4])
                .collect();
            let rows: Vec<Vec<u8>> = (0..R)
                .map(|_| (0..cols / 2).map(|_| next() as u8).collect())
                .collect();
            let tables: Vec<[i8; 16]> = (0..R)
                .map(|r| {
                    core::array::from_fn(|k| match (r, k) {
                        (0, 0) => -127,
                        (0, 15) => 127,
                        _ => ((next() % 255) as i32 - 127) as i8,
                    })
                })
                .collect();
            let groups = cols.div_ceil(g);
            let scales: Vec<Vec<u8>> = (0..R).map(|_| f16_scales(&mut next, groups)).collect();
            let params: Vec<Vec<[f32; 2]>> = (0..R)
                .map(|_| (0..groups).map(|_| group_params(&mut next)).collect())
                .collect();
            let rows_r: [&[u8]; R] = core::array::from_fn(|r| &rows[r][..]);
            let tables_r: [&[i8; 16]; R] = core::array::from_fn(|r| &tables[r]);
            let sc: [&[u8]; R] = core::array::from_fn(|r| &scales[r][..]);
            let p = |r: usize, i: usize, out: &mut [[f32; 2]]| {
                out.copy_from_slice(&params[r][i..i + out.len()])
            };
            let stored = stored_pairs(&params);
            let pairs: [&[u8]; R] = core::array::from_fn(|r| &stored[r][..]);
            let gen = Gen16::Exp { zero: true };
            let bits = |v: [f32; R]| v.map(f32::to_bits);
            // The three kernels built with one `ByteDot`, as bits.
            macro_rules! run {
                ($d:ty) => {
                    // SAFETY: detection found AVX2 and FMA, and the instructions of `$d`
                    // where it is a VNNI build; the kernels clamp their work to the slices.
                    unsafe {
                        [
                            bits(dot4_i8_rows::<R, $d>(rows_r, tables_r, &xp, &ps)),
                            bits(dot4_i8_compact::<R, $d>(rows_r, tables_r, &xp, &ps, g, sc)),
                            bits(dot4_i8_groups::<R, $d>(
                                rows_r,
                                &xp,
                                &ps,
                                g,
                                groups,
                                &gen,
                                p,
                                Some(pairs),
                            )),
                        ]
                    }
                };
            }
            let maddubs = run!(Maddubs);
            assert!(
                maddubs.iter().flatten().any(|&b| b != 0),
                "cols {cols}: all zero"
            );
            assert_eq!(run!(Widened), maddubs, "widened, cols {cols} g {g}");
            if evex {
                assert_eq!(run!(VpdpbusdEvex), maddubs, "evex, cols {cols} g {g}");
            }
            if vex {
                assert_eq!(run!(VpdpbusdVex), maddubs, "vex, cols {cols} g {g}");
            }
        }
    }
}
