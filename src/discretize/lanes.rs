//! Max-abs fits of small groups: sixteen candidate `q` scored per pass over the weights.
//!
//! Under [`ScaleRule::MaxAbs`](super::ScaleRule::MaxAbs) only `q` is fitted, at `a = max|w|`.
//! For a group of a few dozen weights the sorted-atom scorer in `search` spends nearly all its
//! time on per-candidate overhead (a binary search per threshold, branches, reductions), and
//! its jagged error curve needs hundreds of candidates. Here one pass over the group's
//! magnitudes scores sixteen candidates at once, one per lane: the level of a weight is found
//! by branch-free threshold compares, which the compiler turns into SIMD selects.
//!
//! The search is a fixed coarse grid over `ln(−ln q)` (its level tables built once per family),
//! then rounds that place new candidates evenly inside the brackets of the best local minima,
//! narrowing them each round. Every sum is a plain `f32` add in weight order within its lane,
//! so each instruction set computes the same bits and picks the same `q`.
//!
//! Because the grid is fixed, its fixed-point levels are also tabulated by magnitude once per
//! family (under `std`, 50–250 KiB): with AVX-512 or AVX2 the coarse pass then reads one table
//! row per weight instead of comparing it with every candidate's thresholds, a quarter of the
//! vector work for the same sums.

use alloc::vec::Vec;

use super::search::u_range;
use super::Family;
use crate::float::math::exp;
use crate::float::Real;

/// Candidates scored per pass.
pub(crate) const LANES: usize = 16;
/// Groups up to this many weights take this path; larger ones are summarized by a histogram
/// in `search`, which does not grow with the group.
pub(crate) const MAX_WEIGHTS: usize = 1024;
/// Groups up to this many weights (the common per-group sizes) keep their buffers on the stack.
const STACK_WEIGHTS: usize = 64;
/// Families with up to this many magnitudes take this path (bits ≤ 6): the compares grow
/// with the level count (bits ≤ 5 here); beyond it the sorted-atom scorer's `O(K log n)` wins.
pub(crate) const MAX_MAGNITUDES: usize = 16;
/// Decision thresholds of the largest family here (`K − 1` between magnitudes, one to zero).
const MAX_CUTS: usize = MAX_MAGNITUDES;
const _: () = assert!(
    MAX_CUTS == 16,
    "score_with dispatches cut counts 4, 8 and 16"
);
/// How the search spends its candidates.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Coarse grid points, a multiple of [`LANES`].
    coarse: usize,
    /// The grid is uniform in `ln(u + shift)`, `u = −ln q`: nearly logarithmic in `u` where
    /// levels crowd near `q = 1`, nearly uniform in `u` (which moves every level by the same
    /// relative amount) elsewhere.
    shift: f64,
    /// Refinement rounds: how many of the best brackets each round splits its sixteen lanes
    /// between. Early rounds keep several valleys alive (small groups have many shallow
    /// ones); later ones spend every lane on the best.
    rounds: &'static [usize],
}

/// Tuned with `search_against_dense_scan` (below): 900 groups of 8–128 weights, 3–5 bits,
/// three shapes; 2 of them end more than 0.5 % above a 10 000-point scan (worst 1.5 %).
/// Most coarse grid points and most brackets any plan uses (stack buffers; the grid's local
/// minima are a bit mask).
const MAX_COARSE: usize = 128;
const MAX_KEEP: usize = 8;

const PLAN: Plan = Plan {
    coarse: 96,
    shift: 0.1,
    rounds: &[4, 2, 1],
};

/// Sixteen candidates' level sets, lane-major so each compare covers all of them: `f32`
/// values in a [`Batch`], 16-bit fixed point in a [`FixedBatch`].
#[derive(Clone)]
struct Tables<T> {
    /// The level below the first threshold (zero, or the smallest magnitude).
    base: [T; LANES],
    /// `cut[j]`: the threshold between level `j` and `j + 1`, ascending in `j`. Rows past the
    /// family's `cut_count` are never read.
    cut: [[T; LANES]; MAX_CUTS],
    /// `above[j]`: level `j + 1`, taken by a magnitude above `cut[j]`.
    above: [[T; LANES]; MAX_CUTS],
}

impl<T: Copy + Default> Tables<T> {
    /// Tables whose candidates are yet to be set.
    fn empty() -> Self {
        Tables {
            base: [T::default(); LANES],
            cut: [[T::default(); LANES]; MAX_CUTS],
            above: [[T::default(); LANES]; MAX_CUTS],
        }
    }
}

type Batch = Tables<f32>;

impl Batch {
    /// Fills the level tables of the candidates `q` (unit scale: the top level is 1).
    #[inline]
    fn set(&mut self, family: &Family, q: [f64; LANES]) {
        // Scores only rank candidates, so the levels are built in `f32` (sixteen lanes, one
        // vector): the few ulps they differ from the `f64` codebook's do not matter.
        let q32 = q.map(|v| v as f32);
        let offset = usize::from(family.has_zero());
        let count = offset + family.magnitude_count();
        // Level 0 (zero, or the smallest magnitude) is `base`; level `j + 1` is `above[j]`.
        self.base = [0.0; LANES];
        family.for_each_unit_lanes(&q32, |i, m| match offset + i {
            0 => self.base = *m,
            level => self.above[level - 1] = *m,
        });
        for j in 0..count - 1 {
            let lower = if j == 0 {
                &self.base
            } else {
                &self.above[j - 1]
            };
            let cut: [f32; LANES] = core::array::from_fn(|l| (lower[l] + self.above[j][l]) * 0.5);
            self.cut[j] = cut;
        }
    }
}

/// Number of thresholds of a family: one between each pair of neighbouring levels, which is
/// `2^(bits−1) − 1` (1, 3, 7 or 15 here) with or without the zero level. The SIMD kernels
/// unroll over these constant counts.
fn cut_count(family: &Family) -> usize {
    family.magnitude_count() - 1 + usize::from(family.has_zero())
}

/// `Σ w_i (x_i − level(x_i))²` for each lane's candidate, where `level` is the level nearest
/// to `x_i` (a magnitude exactly on a threshold may take either neighbour; both are equally
/// far). With `WEIGHTED == false` every `w_i` is 1 and `w` is not read.
#[inline(always)]
fn score_lanes<const WEIGHTED: bool>(
    batch: &Batch,
    cuts: usize,
    x: &[f32],
    w: &[f32],
) -> [f32; LANES] {
    let mut acc = [0.0f32; LANES];
    let cut = &batch.cut[..cuts];
    let above = &batch.above[..cuts];
    for (i, &xi) in x.iter().enumerate() {
        let mut level = batch.base;
        for (c, a) in cut.iter().zip(above) {
            for lane in 0..LANES {
                level[lane] = if xi > c[lane] { a[lane] } else { level[lane] };
            }
        }
        for lane in 0..LANES {
            let d = xi - level[lane];
            // No `mul_add`: fused and unfused rounding differ, and every path must agree.
            acc[lane] += if WEIGHTED { (d * d) * w[i] } else { d * d };
        }
    }
    acc
}

fn score_portable(batch: &Batch, cuts: usize, x: &[f32], w: Option<&[f32]>) -> [f32; LANES] {
    match w {
        Some(w) => score_lanes::<true>(batch, cuts, x, w),
        None => score_lanes::<false>(batch, cuts, x, &[]),
    }
}

/// [`score_portable`] with AVX-512: one compare and one masked move per threshold cover all
/// sixteen lanes, with the `CUTS` thresholds and levels held in registers across the whole
/// group. Bit-identical to [`score_portable`]: the same operations in the same order.
///
/// # Safety
/// The CPU must support AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn score_avx512<const CUTS: usize>(
    batch: &Batch,
    x: &[f32],
    w: Option<&[f32]>,
) -> [f32; LANES] {
    use core::arch::x86_64::*;
    // SAFETY (all loads): every row of `batch` holds `LANES` = 16 floats, and `CUTS` is at
    // most `MAX_CUTS` (a const assertion in `score_with`'s callers' match).
    let base = unsafe { _mm512_loadu_ps(batch.base.as_ptr()) };
    let cut: [__m512; CUTS] =
        core::array::from_fn(|j| unsafe { _mm512_loadu_ps(batch.cut[j].as_ptr()) });
    let above: [__m512; CUTS] =
        core::array::from_fn(|j| unsafe { _mm512_loadu_ps(batch.above[j].as_ptr()) });
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

/// [`score_portable`] with AVX2, as two halves of eight lanes. Bit-identical to it.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn score_avx2(batch: &Batch, cuts: usize, x: &[f32], w: Option<&[f32]>) -> [f32; LANES] {
    use core::arch::x86_64::*;
    let mut out = [0.0f32; LANES];
    for half in 0..2 {
        let lane0 = half * 8;
        let mut acc = _mm256_setzero_ps();
        // SAFETY (all loads): every row of `batch` holds 16 floats, so `lane0 + 8` is in
        // bounds, and `cuts` is at most `MAX_CUTS`.
        let base = unsafe { _mm256_loadu_ps(batch.base.as_ptr().add(lane0)) };
        for (i, &xi) in x.iter().enumerate() {
            let xv = _mm256_set1_ps(xi);
            let mut level = base;
            for j in 0..cuts {
                let cut = unsafe { _mm256_loadu_ps(batch.cut[j].as_ptr().add(lane0)) };
                let above = unsafe { _mm256_loadu_ps(batch.above[j].as_ptr().add(lane0)) };
                let mask = _mm256_cmp_ps::<_CMP_GT_OQ>(xv, cut);
                level = _mm256_blendv_ps(level, above, mask);
            }
            let d = _mm256_sub_ps(xv, level);
            let mut e = _mm256_mul_ps(d, d);
            if let Some(w) = w {
                e = _mm256_mul_ps(e, _mm256_set1_ps(w[i]));
            }
            acc = _mm256_add_ps(acc, e);
        }
        // SAFETY: `out` holds 16 floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(lane0), acc) };
    }
    out
}

/// Scores a batch on the path `isa` names; every path returns the same bits.
#[inline]
fn score_with(
    isa: crate::kernels::Isa,
    batch: &Batch,
    cuts: usize,
    x: &[f32],
    w: Option<&[f32]>,
) -> [f32; LANES] {
    #[cfg(target_arch = "x86_64")]
    use crate::kernels::Isa;
    match (isa, cuts) {
        // SAFETY: `Isa::Avx512` is only detected on CPUs with AVX-512 F/BW/VL, AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 1) => unsafe { score_avx512::<1>(batch, x, w) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 3) => unsafe { score_avx512::<3>(batch, x, w) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 7) => unsafe { score_avx512::<7>(batch, x, w) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 15) => unsafe { score_avx512::<15>(batch, x, w) },
        // SAFETY: `Isa::Avx2` is only detected on CPUs with AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, _) => unsafe { score_avx2(batch, cuts, x, w) },
        _ => score_portable(batch, cuts, x, w),
    }
}

/// Fixed-point scale of the integer kernel: magnitudes in `[0, 1]` become `[0, 16383]`. One
/// bit short of `i16`, so that a squared difference is below `2^28` and the 32-bit sum of
/// [`PAIRS_PER_SUM`] pairs (8 weights) cannot overflow: `8 · 16383² < 2^31`.
const FIX: f64 = 16383.0;
/// Pairs whose squared errors are summed in `i32` before one conversion to `f32`.
const PAIRS_PER_SUM: usize = 4;
const _: () = assert!((2 * PAIRS_PER_SUM) as f64 * FIX * FIX < i32::MAX as f64);

/// A [`Batch`] in 16-bit fixed point for the coarse grid, each candidate's entry repeated in
/// two neighbouring lanes so that one step covers two weights: a 512-bit compare then decides
/// 32 (candidate, weight) pairs, twice the `f32` kernel's 16, and `vpmaddwd` adds the two
/// weights' squared errors into the candidate's 32-bit lane. Scores are approximate (levels
/// and thresholds rounded to 1/16383 of `max|w|`), which is all choosing brackets needs;
/// refinement scores in `f32`. Each `u32` holds one candidate's value in both 16-bit halves.
type FixedBatch = Tables<u32>;

impl FixedBatch {
    fn new(batch: &Batch) -> FixedBatch {
        let mut fixed = FixedBatch::empty();
        fixed.set_from(crate::kernels::Isa::detect(), batch, MAX_CUTS);
        fixed
    }

    /// Converts the base and the first `cuts` thresholds and levels of `batch`.
    #[inline]
    fn set_from(&mut self, isa: crate::kernels::Isa, batch: &Batch, cuts: usize) {
        fixed_rows(
            isa,
            core::slice::from_ref(&batch.base),
            core::slice::from_mut(&mut self.base),
        );
        fixed_rows(isa, &batch.cut[..cuts], &mut self.cut[..cuts]);
        fixed_rows(isa, &batch.above[..cuts], &mut self.above[..cuts]);
    }
}

/// One row of levels in fixed point, each value in both halves of its `u32`. Levels are in
/// [0, 1] (+∞ in unused rows is clamped to `FIX`): adding ½ and truncating rounds.
fn fixed_row(row: &[f32; LANES]) -> [u32; LANES] {
    row.map(|v| {
        let t = (v * FIX as f32 + 0.5).min(FIX as f32) as u32;
        t | (t << 16)
    })
}

/// [`fixed_row`] over rows, with AVX-512 where available (the same operations: multiply, add,
/// minimum, truncation; so the same bits). Refinement converts a batch per round, and the
/// scalar float-to-integer conversions would cost more than scoring it.
#[inline]
fn fixed_rows(isa: crate::kernels::Isa, src: &[[f32; LANES]], dst: &mut [[u32; LANES]]) {
    #[cfg(target_arch = "x86_64")]
    if isa == crate::kernels::Isa::Avx512 {
        // SAFETY: AVX-512 F was detected.
        unsafe { fixed_rows_avx512(src, dst) };
        return;
    }
    let _ = isa;
    for (s, d) in src.iter().zip(dst) {
        *d = fixed_row(s);
    }
}

/// # Safety
/// The CPU must support AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fixed_rows_avx512(src: &[[f32; LANES]], dst: &mut [[u32; LANES]]) {
    use core::arch::x86_64::*;
    let scale = _mm512_set1_ps(FIX as f32);
    let half = _mm512_set1_ps(0.5);
    for (s, d) in src.iter().zip(dst) {
        // SAFETY: each row is 16 floats / 16 `u32`s, one 512-bit load and store.
        let v = unsafe { _mm512_loadu_ps(s.as_ptr()) };
        let t = _mm512_cvttps_epu32(_mm512_min_ps(
            _mm512_add_ps(_mm512_mul_ps(v, scale), half),
            scale,
        ));
        let pair = _mm512_or_si512(t, _mm512_slli_epi32::<16>(t));
        unsafe { _mm512_storeu_si512(d.as_mut_ptr().cast(), pair) };
    }
}

/// Two magnitudes in fixed point, the first in the low half: one 32-bit broadcast puts them in
/// alternate 16-bit lanes. An odd count is padded with 1.0, which sits on the top level and
/// adds nothing.
#[inline]
fn fixed_pairs(x: &[f32], out: &mut [u32]) {
    // `x` is in [0, 1], so adding ½ and truncating rounds (no libm call).
    let fix = |v: f32| (v * FIX as f32 + 0.5) as u32;
    for (o, p) in out.iter_mut().zip(x.chunks(2)) {
        let hi = p.get(1).map_or(FIX as u32, |&v| fix(v));
        *o = fix(p[0]) | (hi << 16);
    }
}

/// The integer kernel's reference: per candidate, `Σ d²` over each run of
/// [`PAIRS_PER_SUM`] pairs in `i32` (no overflow, see [`FIX`]), converted to `f32` and added
/// in order.
fn score_fixed_portable(batch: &FixedBatch, cuts: usize, pairs: &[u32]) -> [f32; LANES] {
    let mut acc = [0.0f32; LANES];
    for run in pairs.chunks(PAIRS_PER_SUM) {
        for (lane, acc) in acc.iter_mut().enumerate() {
            let mut sum = 0i32;
            for &pair in run {
                let half = |v: u32| v as u16 as i16;
                for shift in [0, 16] {
                    let x = (pair >> shift) as u16 as i16;
                    let mut level = half(batch.base[lane]);
                    for j in 0..cuts {
                        if x > half(batch.cut[j][lane]) {
                            level = half(batch.above[j][lane]);
                        }
                    }
                    let d = i32::from(x) - i32::from(level);
                    sum += d * d;
                }
            }
            *acc += sum as f32;
        }
    }
    acc
}

/// [`score_fixed_portable`] with AVX-512 BW; bit-identical to it.
///
/// # Safety
/// The CPU must support AVX-512 F and BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn score_fixed_avx512<const CUTS: usize>(batch: &FixedBatch, pairs: &[u32]) -> [f32; LANES] {
    use core::arch::x86_64::*;
    // SAFETY (all loads): every row of `batch` holds 16 `u32`, 64 bytes; `CUTS <= MAX_CUTS`.
    let load = |row: &[u32; LANES]| unsafe { _mm512_loadu_si512(row.as_ptr().cast()) };
    let base = load(&batch.base);
    let cut: [__m512i; CUTS] = core::array::from_fn(|j| load(&batch.cut[j]));
    let above: [__m512i; CUTS] = core::array::from_fn(|j| load(&batch.above[j]));
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

/// [`score_fixed_portable`] with AVX2, as two halves of eight candidates; bit-identical to it.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn score_fixed_avx2(batch: &FixedBatch, cuts: usize, pairs: &[u32]) -> [f32; LANES] {
    use core::arch::x86_64::*;
    let mut out = [0.0f32; LANES];
    for half in 0..2 {
        // SAFETY (all loads): rows hold 16 `u32`; `8 * half + 8 <= 16`.
        let load =
            |row: &[u32; LANES]| unsafe { _mm256_loadu_si256(row.as_ptr().add(8 * half).cast()) };
        let base = load(&batch.base);
        let mut acc = _mm256_setzero_ps();
        for run in pairs.chunks(PAIRS_PER_SUM) {
            let mut sum = _mm256_setzero_si256();
            for &pair in run {
                let xv = _mm256_set1_epi32(pair as i32);
                let mut level = base;
                for j in 0..cuts {
                    let mask = _mm256_cmpgt_epi16(xv, load(&batch.cut[j]));
                    level = _mm256_blendv_epi8(level, load(&batch.above[j]), mask);
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

#[inline]
fn score_fixed_with(
    isa: crate::kernels::Isa,
    batch: &FixedBatch,
    cuts: usize,
    pairs: &[u32],
) -> [f32; LANES] {
    #[cfg(target_arch = "x86_64")]
    use crate::kernels::Isa;
    match (isa, cuts) {
        // SAFETY: `Isa::Avx512` is only detected on CPUs with AVX-512 F/BW/VL.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 1) => unsafe { score_fixed_avx512::<1>(batch, pairs) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 3) => unsafe { score_fixed_avx512::<3>(batch, pairs) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 7) => unsafe { score_fixed_avx512::<7>(batch, pairs) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 15) => unsafe { score_fixed_avx512::<15>(batch, pairs) },
        // SAFETY: `Isa::Avx2` is only detected on CPUs with AVX2.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, _) => unsafe { score_fixed_avx2(batch, cuts, pairs) },
        _ => score_fixed_portable(batch, cuts, pairs),
    }
}

/// Scores every candidate of the coarse grid in one pass over the pairs, from the levels
/// looked up by magnitude: `V` blocks of 32 candidates, `out` holding `32·V` scores in grid
/// order. The same integer sums, converted and added in the same runs, as
/// [`score_fixed_avx512`] over each batch: bit-identical to it (tested).
///
/// # Safety
/// The CPU must support AVX-512 F and BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn score_coarse_avx512<const V: usize>(
    table: &LevelsByMagnitude,
    pairs: &[u32],
    out: &mut [f32],
) {
    use core::arch::x86_64::*;
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
                // `unpackhi` (see `coarse_lane`).
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

/// [`score_coarse_avx512`] with AVX2, block by block: a 256-bit half of a row block holds 16
/// candidates, and unpacking it yields candidates 0–7 and 16–23 (low half) or 8–15 and 24–31
/// (high half) of the same table layout. Bit-identical to it.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn score_coarse_avx2(table: &LevelsByMagnitude, pairs: &[u32], out: &mut [f32]) {
    use core::arch::x86_64::*;
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
                    // SAFETY: each row holds `table.coarse` levels, so the 16 `i16` of block `v`,
                    // half `half`, at `32·v + 16·half` are in bounds.
                    let (a, b) = unsafe {
                        (
                            _mm256_loadu_si256(low.as_ptr().add(32 * v + 16 * half).cast()),
                            _mm256_loadu_si256(high.as_ptr().add(32 * v + 16 * half).cast()),
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

/// Scores the whole coarse grid in fixed point with [`score_coarse_avx512`] or
/// [`score_coarse_avx2`] when the CPU and the grid allow (a kept grid with a by-magnitude
/// table; 64, 96 or 128 points for AVX-512); `false` leaves `scores` to the per-batch kernels,
/// which give the same bits.
#[inline]
fn score_coarse_with(
    isa: crate::kernels::Isa,
    grid: &Grid,
    pairs: &[u32],
    scores: &mut [f32],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let (crate::kernels::Isa::Avx512, Some(table)) = (isa, &grid.by_magnitude) {
        // SAFETY (all arms): `Isa::Avx512` is only detected on CPUs with AVX-512 F and BW.
        match grid.q.len() {
            64 => unsafe { score_coarse_avx512::<2>(table, pairs, scores) },
            96 => unsafe { score_coarse_avx512::<3>(table, pairs, scores) },
            128 => unsafe { score_coarse_avx512::<4>(table, pairs, scores) },
            _ => return false,
        }
        return true;
    }
    #[cfg(target_arch = "x86_64")]
    if let (crate::kernels::Isa::Avx2, Some(table)) = (isa, &grid.by_magnitude) {
        // SAFETY: `Isa::Avx2` is only detected on CPUs with AVX2; a grid has a table only
        // when its size is a multiple of 32.
        unsafe { score_coarse_avx2(table, pairs, scores) };
        return true;
    }
    let _ = (isa, grid, pairs, scores);
    false
}

/// The coarse grid of one family: candidate `q`s and their level tables.
pub(crate) struct Grid {
    q: Vec<f64>,
    batches: Vec<Batch>,
    fixed: Vec<FixedBatch>,
    /// The fixed-point levels of every candidate by magnitude, for the one-pass coarse kernel
    /// (built only for grids that are kept, see [`with_grid`]).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    by_magnitude: Option<LevelsByMagnitude>,
}

/// The coarse grid's fixed-point levels looked up by magnitude instead of found by threshold
/// compares. The grid is fixed, and the fixed-point kernel's magnitudes take only `FIX + 1`
/// values, so every candidate's level is a function of the magnitude known in advance: the
/// thresholds of all candidates together cut `[0, FIX]` into intervals, and inside one
/// interval every candidate keeps its level. Scoring a weight is then a table row per
/// weight and a subtraction per candidate, where the compare kernel spends a compare and a
/// masked move per candidate and threshold: the same levels, so the same bits.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct LevelsByMagnitude {
    /// Candidates per row (the grid's size).
    coarse: usize,
    /// `interval[x]`: how many distinct thresholds of the grid lie below the magnitude `x`.
    interval: Vec<u16>,
    /// Row `k` holds every candidate's level in interval `k` (`coarse` entries, grid order
    /// permuted by [`coarse_lane`] within each block of 32).
    levels: Vec<i16>,
}

/// Where candidate `c` of a block of 32 sits in a row of [`LevelsByMagnitude`]: the AVX-512
/// kernel interleaves two rows with `vpunpck{l,h}wd`, which pair up elements 0–3 and 4–7 of
/// each 128-bit lane, and this order makes the pairs come out as candidates 0–15 and 16–31.
fn coarse_lane(c: usize) -> usize {
    let (half, c) = (c / 16, c % 16);
    8 * (c / 4) + 4 * half + c % 4
}

impl LevelsByMagnitude {
    fn new(fixed: &[FixedBatch], cuts: usize) -> LevelsByMagnitude {
        let low = |v: u32| v as u16 as i16;
        let coarse = fixed.len() * LANES;
        let position = |c: usize| 32 * (c / 32) + coarse_lane(c % 32);
        // Every (threshold, candidate, index) in ascending threshold order: the distinct
        // thresholds bound the intervals, and sweeping them upward changes only the candidates
        // whose threshold is passed.
        let mut passes: Vec<(i16, usize, usize)> = fixed
            .iter()
            .enumerate()
            .flat_map(|(b, batch)| {
                (0..cuts).flat_map(move |j| {
                    (0..LANES).map(move |lane| (low(batch.cut[j][lane]), b * LANES + lane, j))
                })
            })
            .collect();
        passes.sort_unstable();
        let same_threshold = |l: &(i16, usize, usize), r: &(i16, usize, usize)| l.0 == r.0;
        let thresholds: Vec<i16> = passes
            .chunk_by(same_threshold)
            .map(|passed| passed[0].0)
            .collect();
        let fix = FIX as i16;
        let mut interval = Vec::with_capacity(usize::from(fix.unsigned_abs()) + 1);
        let mut below = 0usize;
        for x in 0..=fix {
            while below < thresholds.len() && thresholds[below] < x {
                below += 1;
            }
            interval.push(below as u16);
        }
        // The compare kernel's rule: a candidate's level is `above[j]` for the largest `j`
        // whose threshold lies below the magnitude (`base` if none). Row 0 is below every
        // threshold; row `k` is above the `k` lowest.
        let mut row = alloc::vec![0i16; coarse];
        for (b, batch) in fixed.iter().enumerate() {
            for lane in 0..LANES {
                row[position(b * LANES + lane)] = low(batch.base[lane]);
            }
        }
        let mut levels = Vec::with_capacity((thresholds.len() + 1) * coarse);
        levels.extend_from_slice(&row);
        let mut highest: Vec<Option<usize>> = alloc::vec![None; coarse];
        for passed in passes.chunk_by(same_threshold) {
            for &(_, c, j) in passed {
                if highest[c].is_none_or(|h| j > h) {
                    highest[c] = Some(j);
                    row[position(c)] = low(fixed[c / LANES].above[j][c % LANES]);
                }
            }
            levels.extend_from_slice(&row);
        }
        LevelsByMagnitude {
            coarse,
            interval,
            levels,
        }
    }

    /// Every candidate's level for the fixed-point magnitude `x` (at most `FIX`).
    #[cfg(target_arch = "x86_64")]
    #[inline]
    fn row(&self, x: u32) -> &[i16] {
        let k = usize::from(self.interval[x as usize]);
        &self.levels[k * self.coarse..(k + 1) * self.coarse]
    }
}

impl Grid {
    /// The grid of `plan` for `family`; `by_magnitude` also builds the level table of the
    /// one-pass kernel (50–250 KiB, worth it only for a grid that is kept).
    fn new(family: &Family, plan: &Plan, by_magnitude: bool) -> Grid {
        let (u_lo, u_hi) = u_range(family.magnitude_count());
        let ln = crate::float::math::ln;
        let (l_lo, l_hi) = (ln(u_lo + plan.shift), ln(u_hi + plan.shift));
        let step = (l_hi - l_lo) / (plan.coarse - 1) as f64;
        let q: Vec<f64> = (0..plan.coarse)
            .map(|i| exp(-(exp(l_lo + step * i as f64) - plan.shift)))
            .collect();
        let batches: Vec<Batch> = q
            .chunks_exact(LANES)
            .map(|chunk| {
                let mut batch = Batch::empty();
                batch.set(family, chunk.try_into().expect("chunks of LANES"));
                batch
            })
            .collect();
        let fixed: Vec<FixedBatch> = batches.iter().map(FixedBatch::new).collect();
        // Only the AVX-512 and AVX2 kernels read the table, in row blocks of 32 candidates;
        // other CPUs and grid sizes keep the compare kernels.
        let isa = crate::kernels::Isa::detect();
        let by_magnitude = (by_magnitude
            && matches!(isa, crate::kernels::Isa::Avx512 | crate::kernels::Isa::Avx2)
            && plan.coarse.is_multiple_of(32))
        .then(|| LevelsByMagnitude::new(&fixed, cut_count(family)));
        Grid {
            q,
            batches,
            fixed,
            by_magnitude,
        }
    }
}

/// Runs `f` with the coarse grid of `family`: built once per family and kept for the process
/// under `std` (with its by-magnitude table), built per call without it (without the table,
/// which would cost more to build than the fit it speeds up).
fn with_grid<R>(family: &Family, f: impl FnOnce(&Grid) -> R) -> R {
    #[cfg(feature = "std")]
    {
        use std::sync::OnceLock;
        // One slot per (bits, zero level): the only things a max-abs grid depends on.
        static GRIDS: [OnceLock<Grid>; 16] = [const { OnceLock::new() }; 16];
        let slot = usize::from(family.bits - 1) * 2 + usize::from(family.has_zero());
        f(GRIDS[slot].get_or_init(|| Grid::new(family, &PLAN, true)))
    }
    #[cfg(not(feature = "std"))]
    {
        f(&Grid::new(family, &PLAN, false))
    }
}

/// A bracket around a local minimum: its best point and score, and the interval in `q` still
/// worth searching.
#[derive(Clone, Copy)]
struct Bracket {
    q: f64,
    score: f32,
    lo: f64,
    hi: f64,
}

/// The `q` in `(0, 1)` that minimizes `Σ w_i (x_i − Q(x_i))²` at unit scale, for magnitudes
/// `x` already divided by `max|w|` (so in `[0, 1]`) and optional weights `w` (same length).
///
/// `family` must use `q` and have at most [`MAX_MAGNITUDES`] magnitudes.
pub(crate) fn max_abs_q(family: &Family, x: &[f32], w: Option<&[f32]>) -> f64 {
    debug_assert!(family.uses_q() && family.magnitude_count() <= MAX_MAGNITUDES);
    with_grid(family, |grid| search(family, grid, PLAN.rounds, x, w))
}

/// Runs `f` with the refinement's two batches (4 KiB): kept per thread under `std`, so that a
/// group does not zero them afresh, and made per call without it. Their previous contents do
/// not matter: every round writes all the rows it reads.
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    #[cfg(feature = "std")]
    {
        std::thread_local! {
            static SCRATCH: core::cell::RefCell<Scratch> =
                core::cell::RefCell::new((Batch::empty(), FixedBatch::empty()));
        }
        SCRATCH.with(|scratch| f(&mut scratch.borrow_mut()))
    }
    #[cfg(not(feature = "std"))]
    {
        f(&mut (Batch::empty(), FixedBatch::empty()))
    }
}

/// The refinement's level tables, in `f32` and in fixed point.
type Scratch = (Batch, FixedBatch);

fn search(family: &Family, grid: &Grid, rounds: &[usize], x: &[f32], w: Option<&[f32]>) -> f64 {
    search_with(crate::kernels::Isa::detect(), family, grid, rounds, x, w)
}

/// [`search`] on the path `isa` names, which must be
/// [available](crate::kernels::Isa::is_available).
fn search_with(
    isa: crate::kernels::Isa,
    family: &Family,
    grid: &Grid,
    rounds: &[usize],
    x: &[f32],
    w: Option<&[f32]>,
) -> f64 {
    debug_assert!(isa.is_available());
    #[cfg(target_arch = "x86_64")]
    if isa == crate::kernels::Isa::Avx512 {
        // SAFETY: `Isa::Avx512` is available only on CPUs with AVX-512 F/BW/VL, AVX2 and FMA.
        return with_scratch(|scratch| unsafe {
            search_avx512(family, grid, rounds, x, w, scratch)
        });
    }
    with_scratch(|scratch| search_on(isa, family, grid, rounds, x, w, scratch))
}

/// [`search_on`] compiled for AVX-512: the bookkeeping between kernel calls (level tables,
/// bracket updates) is a third of a small group's fit, and with 512-bit registers the
/// compiler vectorizes it sixteen lanes at a time. Plain IEEE arithmetic, no contraction,
/// so the same bits as the portable build.
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VL, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn search_avx512(
    family: &Family,
    grid: &Grid,
    rounds: &[usize],
    x: &[f32],
    w: Option<&[f32]>,
    scratch: &mut Scratch,
) -> f64 {
    search_on(
        crate::kernels::Isa::Avx512,
        family,
        grid,
        rounds,
        x,
        w,
        scratch,
    )
}

/// The search itself, scoring with `isa`'s kernels. Always inlined, so that each wrapper's
/// `target_feature` (see [`search_avx512`]) also compiles the bookkeeping.
#[inline(always)]
fn search_on(
    isa: crate::kernels::Isa,
    family: &Family,
    grid: &Grid,
    rounds: &[usize],
    x: &[f32],
    w: Option<&[f32]>,
    (batch, fixed): &mut Scratch,
) -> f64 {
    let cuts = cut_count(family);
    // Per-group sizes stay on the stack (zeroing a buffer for the largest group would cost
    // more than scoring a small one).
    let mut pairs_stack = [0u32; STACK_WEIGHTS / 2];
    let mut pairs_heap = Vec::new();
    let n_pairs = x.len().div_ceil(2);
    let pairs = if n_pairs <= pairs_stack.len() {
        &mut pairs_stack[..n_pairs]
    } else {
        pairs_heap.resize(n_pairs, 0);
        &mut pairs_heap[..]
    };
    // Importances do not fit the integer kernel's paired sums: weighted groups score every
    // candidate in `f32`.
    let fixed_point = w.is_none();
    if fixed_point {
        fixed_pairs(x, pairs);
    }
    let pairs = &*pairs;
    let mut scores = [0.0f32; MAX_COARSE];
    let scores = &mut scores[..grid.q.len()];
    if !(fixed_point && score_coarse_with(isa, grid, pairs, scores)) {
        for (i, out) in scores.chunks_exact_mut(LANES).enumerate() {
            out.copy_from_slice(&if fixed_point {
                score_fixed_with(isa, &grid.fixed[i], cuts, pairs)
            } else {
                score_with(isa, &grid.batches[i], cuts, x, w)
            });
        }
    }
    let (mut brackets, mut kept) = coarse_minima(&grid.q, scores, rounds[0]);
    // Every round but the last narrows the brackets in the coarse grid's units; the last
    // scores in `f32`, and when that changes the units it scores each bracket's centre again
    // so that only exact scores are compared.
    let mut exact = !fixed_point;
    for (round, &keep) in rounds.iter().enumerate() {
        let last = round + 1 == rounds.len();
        kept = kept.min(keep);
        let per = LANES / kept;
        let with_centre = usize::from(last && !exact);
        if with_centre == 1 {
            for bracket in &mut brackets[..kept] {
                bracket.score = f32::INFINITY;
            }
        }
        // The points split each bracket's interval evenly; spare lanes (when `kept` does not
        // divide 16) repeat the best point.
        let parts = per + 1 - with_centre;
        let mut q = [brackets[0].q; LANES];
        let inv_parts = 1.0 / parts as f64;
        for (b, bracket) in brackets[..kept].iter().enumerate() {
            let step = (bracket.hi - bracket.lo) * inv_parts;
            for j in 0..per - with_centre {
                q[b * per + with_centre + j] = bracket.lo + step * (j + 1) as f64;
            }
            if with_centre == 1 {
                q[b * per] = bracket.q;
            }
        }
        batch.set(family, q);
        let scores = if last || exact {
            exact = true;
            score_with(isa, batch, cuts, x, w)
        } else {
            fixed.set_from(isa, batch, cuts);
            score_fixed_with(isa, fixed, cuts, pairs)
        };
        for (b, bracket) in brackets[..kept].iter_mut().enumerate() {
            let step = (bracket.hi - bracket.lo) * inv_parts;
            // Selects, not branches: which lane wins is unpredictable.
            let (mut best, mut best_lane) = (bracket.score, usize::MAX);
            for (lane, &s) in scores.iter().enumerate().skip(b * per).take(per) {
                let take = s < best;
                best = if take { s } else { best };
                best_lane = if take { lane } else { best_lane };
            }
            if best_lane != usize::MAX {
                bracket.score = best;
                bracket.q = q[best_lane];
            }
            // The minimum lies within one step of the best point seen.
            bracket.lo = (bracket.q - step).max(bracket.lo);
            bracket.hi = (bracket.q + step).min(bracket.hi);
        }
        sort_brackets(&mut brackets[..kept]);
    }
    brackets[0].q
}

/// [`max_abs_q`] for a group of weights (and importances) with `max|w| = amax > 0`, both
/// already checked (finite weights; finite, non-negative importances of the right length).
pub(crate) fn fit_max_abs<T: Real>(
    family: &Family,
    weights: &[T],
    importance: Option<&[T]>,
    amax: f64,
) -> f64 {
    let n = weights.len();
    let mut x_stack = [0.0f32; STACK_WEIGHTS];
    let mut w_stack = [0.0f32; STACK_WEIGHTS];
    let (mut x_heap, mut w_heap) = (Vec::new(), Vec::new());
    let (x, w): (&mut [f32], &mut [f32]) = if n <= STACK_WEIGHTS {
        (&mut x_stack[..n], &mut w_stack[..n])
    } else {
        x_heap.resize(n, 0.0);
        w_heap.resize(if importance.is_some() { n } else { 0 }, 0.0);
        (&mut x_heap, &mut w_heap)
    };
    let inv = 1.0 / amax;
    for (xi, wi) in x.iter_mut().zip(weights) {
        *xi = (wi.widen().abs() * inv) as f32;
    }
    // As in `search`: an all-zero importance says nothing and counts as uniform; dividing by
    // the largest one keeps a constant importance exactly 1.
    let importance = importance.filter(|imp| imp.iter().any(|v| *v > T::zero()));
    let w = importance.map(|imp| {
        let max = imp.iter().fold(0.0f64, |m, v| m.max(v.widen()));
        let w = &mut w[..n];
        for (wi, v) in w.iter_mut().zip(imp) {
            *wi = (v.widen() / max) as f32;
        }
        &*w
    });
    max_abs_q(family, x, w)
}

/// Whether `l` ranks before `r`: lower score, then (a tie) smaller `q`, so the order is fully
/// determined.
#[inline]
fn precedes(l: &Bracket, r: &Bracket) -> bool {
    l.score
        .total_cmp(&r.score)
        .then(l.q.total_cmp(&r.q))
        .is_lt()
}

/// Best first (see [`precedes`]). An insertion sort: at most [`MAX_KEEP`] brackets, nearly
/// sorted already, where the library sort's call and generic comparisons cost more than the
/// sorting.
#[inline]
fn sort_brackets(brackets: &mut [Bracket]) {
    for i in 1..brackets.len() {
        let mut j = i;
        while j > 0 && precedes(&brackets[j], &brackets[j - 1]) {
            brackets.swap(j, j - 1);
            j -= 1;
        }
    }
}

/// The local minima of the coarse grid as brackets reaching to the neighbouring grid points,
/// best first: the first `min(keep, MAX_KEEP, minima)` entries, and that count.
#[inline]
fn coarse_minima(q: &[f64], scores: &[f32], keep: usize) -> ([Bracket; MAX_KEEP], usize) {
    let n = q.len();
    let mut best = [Bracket {
        q: 0.5,
        score: f32::INFINITY,
        lo: 0.5,
        hi: 0.5,
    }; MAX_KEEP];
    let keep = keep.min(MAX_KEEP);
    let mut kept = 0;
    // The local minima's indices, gathered without branches (which the jagged scores of small
    // groups would mispredict); only these few are then ranked.
    // A byte per point from whole-slice compares (vectorized), then eight bytes to eight bits
    // with one multiply.
    let mut flags = [0u8; MAX_COARSE];
    let interior = scores[1..n - 1]
        .iter()
        .zip(&scores[..n - 2])
        .zip(&scores[2..]);
    for (f, ((c, l), r)) in flags[1..n - 1].iter_mut().zip(interior) {
        *f = u8::from(c <= l) & u8::from(c <= r);
    }
    flags[0] = u8::from(scores[0] <= scores[1]);
    flags[n - 1] = u8::from(scores[n - 1] <= scores[n - 2]);
    let mut words = [0u64; MAX_COARSE / 64];
    for (i, chunk) in flags.chunks_exact(8).enumerate() {
        let bytes = u64::from_le_bytes(chunk.try_into().expect("chunks of 8"));
        // Byte k (0 or 1) lands on bit 56 + k; the shift keeps those eight bits.
        let bits = bytes.wrapping_mul(0x0102_0408_1020_4080) >> 56;
        words[i / 8] |= bits << (8 * (i % 8));
    }
    for (w, mut word) in words.into_iter().enumerate() {
        while word != 0 {
            let i = 64 * w + word.trailing_zeros() as usize;
            word &= word - 1;
            let s = scores[i];
            // `q` falls as the grid index grows.
            let candidate = Bracket {
                q: q[i],
                score: s,
                hi: q[i.saturating_sub(1)],
                lo: q[(i + 1).min(n - 1)],
            };
            // Insertion into the sorted top `keep`.
            let mut pos = kept;
            while pos > 0 && precedes(&candidate, &best[pos - 1]) {
                pos -= 1;
            }
            if pos < keep {
                kept = (kept + 1).min(keep);
                best.copy_within(pos..kept - 1, pos + 1);
                best[pos] = candidate;
            }
        }
    }
    (best, kept)
}

// The tests print and use `std` collections.
#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::discretize::Scheme;
    use crate::kernels::Isa;
    use alloc::vec;
    use alloc::vec::Vec;
    use std::println;

    fn lcg(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Magnitudes normalized by their maximum, from a mix of shapes (Gaussian-like, heavy
    /// tails, clusters).
    fn group(seed: u64, n: usize) -> Vec<f32> {
        let mut r = lcg(seed);
        let kind = seed % 3;
        let raw: Vec<f64> = (0..n)
            .map(|_| match kind {
                0 => (0..4).map(|_| r() - 0.5).sum::<f64>(),
                1 => {
                    let u = r().max(1e-12);
                    -u.ln() * if r() < 0.5 { -1.0 } else { 1.0 }
                }
                _ => (r() * 4.0).floor() * 0.25 + r() * 0.01,
            })
            .collect();
        let m = raw.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        raw.iter().map(|v| (v.abs() / m) as f32).collect()
    }

    /// The exact (f64) squared error of `x` against the family's levels at `q`.
    fn sse(family: &Family, q: f64, x: &[f32]) -> f64 {
        let mut levels = [0.0f64; 129];
        let zero = usize::from(family.has_zero());
        family.for_each_unit(q, |i, c| levels[zero + i] = c);
        let levels = &levels[..zero + family.magnitude_count()];
        x.iter()
            .map(|&v| {
                let v = f64::from(v);
                levels
                    .iter()
                    .map(|l| (v - l) * (v - l))
                    .fold(f64::INFINITY, f64::min)
            })
            .sum()
    }

    /// A batch of sixteen evenly spaced candidates `first, first + step, …`.
    fn spaced_batch(family: &Family, first: f64, step: f64) -> (Batch, [f64; LANES]) {
        let q: [f64; LANES] = core::array::from_fn(|i| first + step * i as f64);
        let mut batch = Batch::empty();
        batch.set(family, q);
        (batch, q)
    }

    #[test]
    fn every_isa_scores_the_same_bits() {
        // 3, 4 and 5 bits (with and without zero) cover the 3-, 7- and 15-threshold kernels.
        for bits in 3..=5u8 {
            for zero in [true, false] {
                let family = Family::new(Scheme::Exponential, bits, zero).unwrap();
                let (batch, _) = spaced_batch(&family, 0.3, 0.04);
                let cuts = cut_count(&family);
                let fixed = FixedBatch::new(&batch);
                let mut portable = [[0u32; LANES]; MAX_CUTS];
                fixed_rows(Isa::Scalar, &batch.cut, &mut portable);
                assert_eq!(portable, fixed.cut, "fixed-point rows");
                for seed in 0..20 {
                    let x = group(seed, 5 + seed as usize * 13);
                    let w: Vec<f32> = group(seed + 100, x.len());
                    let mut pairs = vec![0u32; x.len().div_ceil(2)];
                    fixed_pairs(&x, &mut pairs);
                    let fixed_reference = score_fixed_with(Isa::Scalar, &fixed, cuts, &pairs);
                    for weights in [None, Some(&w[..])] {
                        let reference = score_with(Isa::Scalar, &batch, cuts, &x, weights);
                        for isa in [Isa::Swar, Isa::Avx2, Isa::Avx512] {
                            if isa.is_available() {
                                let got = score_with(isa, &batch, cuts, &x, weights);
                                assert_eq!(
                                    got.map(f32::to_bits),
                                    reference.map(f32::to_bits),
                                    "{isa:?} bits {bits} zero {zero} seed {seed}"
                                );
                                let got = score_fixed_with(isa, &fixed, cuts, &pairs);
                                assert_eq!(
                                    got.map(f32::to_bits),
                                    fixed_reference.map(f32::to_bits),
                                    "fixed point, {isa:?} bits {bits} zero {zero} seed {seed}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// The whole search (grid, rounds, bookkeeping), not only its kernels: the AVX-512 build
    /// compiles the bookkeeping with 512-bit registers too, and must still pick the `q` the
    /// portable code picks.
    #[test]
    fn every_isa_searches_to_the_same_q() {
        for bits in 2..=5u8 {
            for zero in [true, false] {
                let family = Family::new(Scheme::Exponential, bits, zero).unwrap();
                for seed in 0..12 {
                    let x = group(seed, [8, 32, 33, 100][seed as usize % 4]);
                    let w = group(seed + 200, x.len());
                    for weights in [None, Some(&w[..])] {
                        with_grid(&family, |grid| {
                            let fitted_q =
                                |isa| search_with(isa, &family, grid, PLAN.rounds, &x, weights);
                            let reference = fitted_q(Isa::Scalar);
                            for isa in [Isa::Swar, Isa::Avx2, Isa::Avx512] {
                                if isa.is_available() {
                                    assert_eq!(
                                        fitted_q(isa).to_bits(),
                                        reference.to_bits(),
                                        "{isa:?} bits {bits} zero {zero} seed {seed}"
                                    );
                                }
                            }
                        });
                    }
                }
            }
        }
    }

    /// The one-pass coarse kernel against the compare kernels it replaces, batch by batch:
    /// every family it serves, the grid sizes it takes, groups from one weight to the largest,
    /// odd and even, and magnitudes at 0 and 1.
    #[test]
    fn coarse_by_magnitude_scores_the_same_bits_as_per_batch() {
        // The table is built, and read, on CPUs with AVX2 or AVX-512.
        if !Isa::Avx2.is_available() {
            return;
        }
        for bits in 2..=5u8 {
            for zero in [true, false] {
                let family = Family::new(Scheme::Exponential, bits, zero).unwrap();
                if !family.uses_q() {
                    continue;
                }
                let cuts = cut_count(&family);
                for coarse in [64, 96, 128] {
                    let plan = Plan { coarse, ..PLAN };
                    let grid = Grid::new(&family, &plan, true);
                    assert!(grid.by_magnitude.is_some());
                    for (seed, n) in [1usize, 2, 7, 8, 9, 32, 33, 100, 1024]
                        .into_iter()
                        .enumerate()
                    {
                        let mut x = group(seed as u64 + 17 * u64::from(bits), n);
                        x[0] = 0.0;
                        x[n - 1] = 1.0;
                        let mut pairs = vec![0u32; n.div_ceil(2)];
                        fixed_pairs(&x, &mut pairs);
                        for isa in [Isa::Avx2, Isa::Avx512]
                            .into_iter()
                            .filter(|i| i.is_available())
                        {
                            let mut got = vec![0.0f32; coarse];
                            assert!(score_coarse_with(isa, &grid, &pairs, &mut got));
                            for (b, scores) in got.chunks_exact(LANES).enumerate() {
                                let expected =
                                    score_fixed_with(Isa::Scalar, &grid.fixed[b], cuts, &pairs);
                                assert_eq!(
                                    scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>(),
                                    expected.map(f32::to_bits),
                                    "{isa:?} bits {bits} zero {zero} coarse {coarse} n {n} batch {b}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn scores_are_the_squared_error_to_the_nearest_level() {
        for bits in 2..=5u8 {
            for zero in [true, false] {
                let family = Family::new(Scheme::Exponential, bits, zero).unwrap();
                let (batch, q) = spaced_batch(&family, 0.05, 0.06);
                let x = group(u64::from(bits), 200);
                let got = score_with(Isa::detect(), &batch, cut_count(&family), &x, None);
                for lane in 0..LANES {
                    let exact = sse(&family, q[lane], &x);
                    let tolerance = 1e-5 * exact + 1e-9;
                    assert!(
                        (f64::from(got[lane]) - exact).abs() <= tolerance,
                        "bits {bits} zero {zero} q {}: {} vs {exact}",
                        q[lane],
                        got[lane]
                    );
                }
            }
        }
    }

    /// Prints how close the search gets to a dense scan; `cargo test --lib lanes -- --ignored
    /// --nocapture` while tuning the grid and the rounds.
    #[test]
    #[ignore]
    fn search_against_dense_scan() {
        // The shipped plan first, then alternatives: (coarse points, shift, rounds).
        let alternatives: [(usize, f64, &'static [usize]); 4] = [
            (96, 0.1, &[4, 1]),
            (96, 0.1, &[4, 2]),
            (128, 0.1, &[4, 1]),
            (128, 0.15, &[4, 2, 1]),
        ];
        let plans: Vec<Plan> = core::iter::once(PLAN)
            .chain(alternatives.map(|(coarse, shift, rounds)| Plan {
                coarse,
                shift,
                rounds,
            }))
            .collect();
        let cases: Vec<(Family, Vec<f32>, f64)> = [3u8, 4, 5]
            .iter()
            .flat_map(|&bits| [true, false].map(move |zero| (bits, zero)))
            .flat_map(|(bits, zero)| {
                let family = Family::new(Scheme::Exponential, bits, zero).unwrap();
                (0..150u64).map(move |seed| {
                    let n = [8, 16, 32, 64, 128][seed as usize % 5];
                    let x = group(seed + 1000 * u64::from(bits), n);
                    let brute = (1..10000)
                        .map(|i| sse(&family, 0.02 + 0.975 * i as f64 / 10000.0, &x))
                        .fold(f64::INFINITY, f64::min);
                    (family, x, brute)
                })
            })
            .collect();
        for plan in &plans {
            let mut worst = [0.0f64; 3];
            let (mut total, mut over) = (0.0, 0);
            let mut grids = std::collections::HashMap::new();
            for (i, (family, x, brute)) in cases.iter().enumerate() {
                let grid = grids
                    .entry((family.bits, family.zero_level))
                    .or_insert_with(|| Grid::new(family, plan, true));
                let q = search(family, grid, plan.rounds, x, None);
                let ratio = (sse(family, q, x) + 1e-12) / (brute + 1e-12);
                let kind = (i % 150) % 3;
                worst[kind] = worst[kind].max(ratio);
                if ratio > 1.005 {
                    println!(
                        "   bits {} zero {} n {} kind {kind}: {ratio:.4}",
                        family.bits,
                        family.zero_level,
                        x.len()
                    );
                }
                total += ratio;
                over += usize::from(ratio > 1.005);
            }
            let batches = plan.coarse / LANES + plan.rounds.len();
            println!(
                "{plan:?} ({batches} batches): worst by kind {worst:.4?}, mean {:.5}, over 0.5 %: {over}/{}",
                total / cases.len() as f64,
                cases.len()
            );
        }
    }
}
