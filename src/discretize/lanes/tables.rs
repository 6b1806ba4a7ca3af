//! The fit's level tables: sixteen candidates' levels lane-major, in `f32` and in fixed
//! point, and the coarse grid's fixed-point levels by magnitude.

use alloc::vec::Vec;

use super::{fixed_rows, MAX_CUTS};
use crate::discretize::Family;
use crate::isa::portable::{CoarseRows, LaneTables, FIX, LANES};
use crate::isa::Isa;

/// Sixteen candidates' level sets, lane-major so each compare covers all of them: `f32`
/// values in a [`Batch`], 16-bit fixed point in a [`FixedBatch`].
#[derive(Clone)]
pub(super) struct Tables<T> {
    /// The level below the first threshold (zero, or the smallest magnitude).
    pub(super) base: [T; LANES],
    /// `cut[j]`: the threshold between level `j` and `j + 1`, ascending in `j`. Rows past the
    /// family's `cut_count` are never read.
    pub(super) cut: [[T; LANES]; MAX_CUTS],
    /// `above[j]`: level `j + 1`, taken by a magnitude above `cut[j]`.
    pub(super) above: [[T; LANES]; MAX_CUTS],
}

impl<'a, T> Tables<T> {
    /// The base and the first `cuts` thresholds and levels, as the kernels take them.
    #[inline]
    pub(super) fn lanes(&'a self, cuts: usize) -> LaneTables<'a, T> {
        LaneTables {
            base: &self.base,
            cut: &self.cut[..cuts],
            above: &self.above[..cuts],
        }
    }
}

impl<T: Copy + Default> Tables<T> {
    /// Tables whose candidates are yet to be set.
    pub(super) fn empty() -> Self {
        Tables {
            base: [T::default(); LANES],
            cut: [[T::default(); LANES]; MAX_CUTS],
            above: [[T::default(); LANES]; MAX_CUTS],
        }
    }
}

pub(super) type Batch = Tables<f32>;

impl Batch {
    /// Fills the level tables of the candidates `q` (unit scale: the top level is 1).
    #[inline]
    pub(super) fn set(&mut self, family: &Family, q: [f64; LANES]) {
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
pub(super) fn cut_count(family: &Family) -> usize {
    family.magnitude_count() - 1 + usize::from(family.has_zero())
}

/// A [`Batch`] in 16-bit fixed point for the coarse grid, each candidate's entry repeated in
/// two neighbouring lanes so that one step covers two weights: a 512-bit compare then decides
/// 32 (candidate, weight) pairs, twice the `f32` kernel's 16, and `vpmaddwd` adds the two
/// weights' squared errors into the candidate's 32-bit lane. Scores are approximate (levels
/// and thresholds rounded to 1/16383 of `max|w|`), which is all choosing brackets needs;
/// refinement scores in `f32`. Each `u32` holds one candidate's value in both 16-bit halves.
pub(super) type FixedBatch = Tables<u32>;

impl FixedBatch {
    pub(super) fn new(batch: &Batch) -> FixedBatch {
        let mut fixed = FixedBatch::empty();
        fixed.set_from(Isa::detect(), batch, MAX_CUTS);
        fixed
    }

    /// Converts the base and the first `cuts` thresholds and levels of `batch`.
    #[inline]
    pub(super) fn set_from(&mut self, isa: Isa, batch: &Batch, cuts: usize) {
        fixed_rows(
            isa,
            core::slice::from_ref(&batch.base),
            core::slice::from_mut(&mut self.base),
        );
        fixed_rows(isa, &batch.cut[..cuts], &mut self.cut[..cuts]);
        fixed_rows(isa, &batch.above[..cuts], &mut self.above[..cuts]);
    }
}

/// Two magnitudes in fixed point, the first in the low half: one 32-bit broadcast puts them in
/// alternate 16-bit lanes. An odd count is padded with 1.0, which sits on the top level and
/// adds nothing.
#[inline]
pub(super) fn fixed_pairs(x: &[f32], out: &mut [u32]) {
    // `x` is in [0, 1], so adding ½ and truncating rounds (no libm call).
    let fix = |v: f32| (v * FIX as f32 + 0.5) as u32;
    for (o, p) in out.iter_mut().zip(x.chunks(2)) {
        let hi = p.get(1).map_or(FIX as u32, |&v| fix(v));
        *o = fix(p[0]) | (hi << 16);
    }
}

/// The coarse grid's fixed-point levels looked up by magnitude instead of found by threshold
/// compares. The grid is fixed, and the fixed-point kernel's magnitudes take only `FIX + 1`
/// values, so every candidate's level is a function of the magnitude known in advance: the
/// thresholds of all candidates together cut `[0, FIX]` into intervals, and inside one
/// interval every candidate keeps its level. Scoring a weight is then a table row per
/// weight and a subtraction per candidate, where the compare kernel spends a compare and a
/// masked move per candidate and threshold: the same levels, so the same bits.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct LevelsByMagnitude {
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
    pub(super) fn new(fixed: &[FixedBatch], cuts: usize) -> LevelsByMagnitude {
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

    /// The table as the coarse kernels read it.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) fn rows(&self) -> CoarseRows<'_> {
        CoarseRows {
            coarse: self.coarse,
            interval: &self.interval,
            levels: &self.levels,
        }
    }
}
