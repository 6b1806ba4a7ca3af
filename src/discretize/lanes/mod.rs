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
//!
//! Here: the search and the one dispatch per scoring kernel. `plan`: the coarse grid and the
//! brackets the rounds narrow. `tables`: the candidates' level tables. The scoring kernels
//! themselves (portable reference, AVX2, AVX-512) live in the crate's ISA layer, one file per
//! instruction set.

use alloc::vec::Vec;

mod plan;
mod tables;

use self::plan::{coarse_minima, sort_brackets, with_grid, Grid, MAX_COARSE, PLAN};
use self::tables::{cut_count, fixed_pairs, Batch, FixedBatch};
use super::Family;
use crate::float::Real;
use crate::isa::portable::{self, LANES};
use crate::isa::Isa;
#[cfg(target_arch = "x86_64")]
use crate::isa::Path;

/// Groups up to this many weights take this path; larger ones are summarized by a histogram
/// in `search`, which does not grow with the group.
pub(crate) const MAX_WEIGHTS: usize = 1024;
/// Groups up to this many weights (the common per-group sizes) keep their buffers on the stack.
const STACK_WEIGHTS: usize = 64;
/// Families with up to this many magnitudes take this path (bits ≤ 6): the compares grow
/// with the level count (bits ≤ 5 here); beyond it the sorted-atom scorer's `O(K log n)` wins.
pub(crate) const MAX_MAGNITUDES: usize = 16;
/// Decision thresholds of the largest family here (`K − 1` between magnitudes, one to zero).
pub(super) const MAX_CUTS: usize = MAX_MAGNITUDES;
const _: () = assert!(
    MAX_CUTS == 16,
    "score_with dispatches cut counts 1, 3, 7 and 15"
);

/// Scores a batch on the path `isa` names; every path returns the same bits.
#[inline]
fn score_with(isa: Isa, batch: &Batch, cuts: usize, x: &[f32], w: Option<&[f32]>) -> [f32; LANES] {
    let t = batch.lanes(cuts);
    match (isa.path(), cuts) {
        #[cfg(target_arch = "x86_64")]
        (Path::Avx512(p), 1) => p.score::<1>(t, x, w),
        #[cfg(target_arch = "x86_64")]
        (Path::Avx512(p), 3) => p.score::<3>(t, x, w),
        #[cfg(target_arch = "x86_64")]
        (Path::Avx512(p), 7) => p.score::<7>(t, x, w),
        #[cfg(target_arch = "x86_64")]
        (Path::Avx512(p), 15) => p.score::<15>(t, x, w),
        #[cfg(target_arch = "x86_64")]
        (Path::Avx2(p), _) => p.score(t, x, w),
        _ => portable::score(t, x, w),
    }
}

/// Scores a fixed-point batch on the path `isa` names; every path returns the same bits.
#[inline]
fn score_fixed_with(isa: Isa, batch: &FixedBatch, cuts: usize, pairs: &[u32]) -> [f32; LANES] {
    let t = batch.lanes(cuts);
    match (isa.path(), cuts) {
        #[cfg(target_arch = "x86_64")]
        (Path::Avx512(p), 1) => p.score_fixed::<1>(t, pairs),
        #[cfg(target_arch = "x86_64")]
        (Path::Avx512(p), 3) => p.score_fixed::<3>(t, pairs),
        #[cfg(target_arch = "x86_64")]
        (Path::Avx512(p), 7) => p.score_fixed::<7>(t, pairs),
        #[cfg(target_arch = "x86_64")]
        (Path::Avx512(p), 15) => p.score_fixed::<15>(t, pairs),
        #[cfg(target_arch = "x86_64")]
        (Path::Avx2(p), _) => p.score_fixed(t, pairs),
        _ => portable::score_fixed(t, pairs),
    }
}

/// Level rows in fixed point ([`portable::fixed_row`] each), with AVX-512 where available:
/// refinement converts a batch per round, and the scalar float-to-integer conversions would
/// cost more than scoring it. The same bits on every path.
#[inline]
fn fixed_rows(isa: Isa, src: &[[f32; LANES]], dst: &mut [[u32; LANES]]) {
    match isa.path() {
        #[cfg(target_arch = "x86_64")]
        Path::Avx512(p) => p.fixed_rows(src, dst),
        _ => portable::fixed_rows(src, dst),
    }
}

/// Scores the whole coarse grid in fixed point in one pass when the CPU and the grid allow (a
/// kept grid with a by-magnitude table; 64, 96 or 128 points for AVX-512); `false` leaves
/// `scores` to the per-batch kernels, which give the same bits.
#[inline]
fn score_coarse_with(isa: Isa, grid: &Grid, pairs: &[u32], scores: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let Some(table) = &grid.by_magnitude {
        let rows = table.rows();
        match (isa.path(), grid.q.len()) {
            (Path::Avx512(p), 64) => p.score_coarse::<2>(rows, pairs, scores),
            (Path::Avx512(p), 96) => p.score_coarse::<3>(rows, pairs, scores),
            (Path::Avx512(p), 128) => p.score_coarse::<4>(rows, pairs, scores),
            // A grid has a table only when its size is a multiple of 32.
            (Path::Avx2(p), _) => p.score_coarse(rows, pairs, scores),
            _ => return false,
        }
        return true;
    }
    let _ = (isa, grid, pairs, scores);
    false
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
    search_with(Isa::detect(), family, grid, rounds, x, w)
}

/// [`search`] on the path `isa` names. With AVX-512 the whole search, bookkeeping included, is
/// compiled for it: the bookkeeping between kernel calls (level tables, bracket updates) is a
/// third of a small group's fit, and with 512-bit registers the compiler vectorizes it
/// sixteen lanes at a time. Plain IEEE arithmetic, no contraction, so the same bits as the
/// portable build.
fn search_with(
    isa: Isa,
    family: &Family,
    grid: &Grid,
    rounds: &[usize],
    x: &[f32],
    w: Option<&[f32]>,
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if let Path::Avx512(p) = isa.path() {
        return with_scratch(|scratch| {
            p.run(|| search_on(isa, family, grid, rounds, x, w, scratch))
        });
    }
    with_scratch(|scratch| search_on(isa, family, grid, rounds, x, w, scratch))
}

/// The search itself, scoring with `isa`'s kernels. Always inlined, so that the AVX-512
/// build of [`search_with`] also compiles the bookkeeping for AVX-512.
#[inline(always)]
fn search_on(
    isa: Isa,
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

// The tests print and use `std` collections.
#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::discretize::Scheme;
    use crate::isa::IsaKind;
    use alloc::vec;
    use alloc::vec::Vec;
    use plan::Plan;
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
                fixed_rows(Isa::scalar(), &batch.cut, &mut portable);
                assert_eq!(portable, fixed.cut, "fixed-point rows");
                for seed in 0..20 {
                    let x = group(seed, 5 + seed as usize * 13);
                    let w: Vec<f32> = group(seed + 100, x.len());
                    let mut pairs = vec![0u32; x.len().div_ceil(2)];
                    fixed_pairs(&x, &mut pairs);
                    let fixed_reference = score_fixed_with(Isa::scalar(), &fixed, cuts, &pairs);
                    for weights in [None, Some(&w[..])] {
                        let reference = score_with(Isa::scalar(), &batch, cuts, &x, weights);
                        for isa in Isa::available() {
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
                            let reference = fitted_q(Isa::scalar());
                            for isa in Isa::available() {
                                assert_eq!(
                                    fitted_q(isa).to_bits(),
                                    reference.to_bits(),
                                    "{isa:?} bits {bits} zero {zero} seed {seed}"
                                );
                            }
                        });
                    }
                }
            }
        }
    }

    /// The one-pass coarse kernel against the per-batch compare kernels, batch by batch:
    /// every family it serves, the grid sizes it takes, groups from one weight to the largest,
    /// odd and even, and magnitudes at 0 and 1.
    #[test]
    fn coarse_by_magnitude_scores_the_same_bits_as_per_batch() {
        // The table is built, and read, on CPUs with AVX2 or AVX-512.
        let table_readers: Vec<Isa> = Isa::available()
            .filter(|isa| matches!(isa.kind(), IsaKind::Avx2 | IsaKind::Avx512))
            .collect();
        if table_readers.is_empty() {
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
                        for &isa in &table_readers {
                            let mut got = vec![0.0f32; coarse];
                            assert!(score_coarse_with(isa, &grid, &pairs, &mut got));
                            for (b, scores) in got.chunks_exact(LANES).enumerate() {
                                let expected =
                                    score_fixed_with(Isa::scalar(), &grid.fixed[b], cuts, &pairs);
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
