//! The fit's search plan: the coarse grid of candidate `q` (built once per family), and the
//! brackets around its best local minima that the refinement rounds narrow.

use alloc::vec::Vec;

use super::tables::{cut_count, Batch, FixedBatch, LevelsByMagnitude};
use crate::discretize::search::u_range;
use crate::discretize::Family;
use crate::float::math::exp;
use crate::isa::portable::LANES;
use crate::isa::{Isa, IsaKind};

/// How the search spends its candidates.
#[derive(Clone, Copy, Debug)]
pub(super) struct Plan {
    /// Coarse grid points, a multiple of [`LANES`].
    pub(super) coarse: usize,
    /// The grid is uniform in `ln(u + shift)`, `u = −ln q`: nearly logarithmic in `u` where
    /// levels crowd near `q = 1`, nearly uniform in `u` (which moves every level by the same
    /// relative amount) elsewhere.
    pub(super) shift: f64,
    /// Refinement rounds: how many of the best brackets each round splits its sixteen lanes
    /// between. Early rounds keep several valleys alive (small groups have many shallow
    /// ones); later ones spend every lane on the best.
    pub(super) rounds: &'static [usize],
}

/// Tuned with `search_against_dense_scan` (the module's tests): 900 groups of 8–128 weights, 3–5 bits,
/// three shapes; 2 of them end more than 0.5 % above a 10 000-point scan (worst 1.5 %).
/// Most coarse grid points and most brackets any plan uses (stack buffers; the grid's local
/// minima are a bit mask).
pub(super) const MAX_COARSE: usize = 128;
pub(super) const MAX_KEEP: usize = 8;

pub(super) const PLAN: Plan = Plan {
    coarse: 96,
    shift: 0.1,
    rounds: &[4, 2, 1],
};

/// The coarse grid of one family: candidate `q`s and their level tables.
pub(crate) struct Grid {
    pub(super) q: Vec<f64>,
    pub(super) batches: Vec<Batch>,
    pub(super) fixed: Vec<FixedBatch>,
    /// The fixed-point levels of every candidate by magnitude, for the one-pass coarse kernel
    /// (built only for grids that are kept, see [`with_grid`]).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) by_magnitude: Option<LevelsByMagnitude>,
}

impl Grid {
    /// The grid of `plan` for `family`; `by_magnitude` also builds the level table of the
    /// one-pass kernel (50–250 KiB, worth it only for a grid that is kept).
    pub(super) fn new(family: &Family, plan: &Plan, by_magnitude: bool) -> Grid {
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
        let kind = Isa::detect().kind();
        let by_magnitude = (by_magnitude
            && matches!(kind, IsaKind::Avx512 | IsaKind::Avx2)
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
pub(super) fn with_grid<R>(family: &Family, f: impl FnOnce(&Grid) -> R) -> R {
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
pub(super) struct Bracket {
    pub(super) q: f64,
    pub(super) score: f32,
    pub(super) lo: f64,
    pub(super) hi: f64,
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
pub(super) fn sort_brackets(brackets: &mut [Bracket]) {
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
pub(super) fn coarse_minima(
    q: &[f64],
    scores: &[f32],
    keep: usize,
) -> ([Bracket; MAX_KEEP], usize) {
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
