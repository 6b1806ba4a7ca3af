//! Fitting `(a, q)` without touching every weight for every candidate.
//!
//! The group is reduced once to "atoms" sorted by magnitude — each weight on its own for
//! small groups (a sort), or histogram bins for large ones (one pass) — with prefix sums of
//! `imp`, `imp·|w|`, `imp·w²` and `imp·sign(w)`. A candidate level set is then scored in
//! `O(K log atoms)`: one binary search per decision threshold (one multiplication on a
//! histogram) and a few multiply-adds per level, never a pass over the weights.
//!
//! Under the MSE and correlation rules, each candidate `q` of a log grid is scored by Lloyd
//! walks in `a` (nearest-level assignment, then the closed-form best `a` of that assignment,
//! a few assignments per walk), started at the previous candidate's best `a` and, for sorted
//! atoms, also at `max|w|`. For groups of at most 64 sorted atoms (and families of at most
//! 16 magnitudes) these walks run on `f32` sums computed in vectors by `small`, which only
//! rank the candidates; there each walk is two assignments (the grid moves `q` in small steps,
//! so the first step from the neighbour's optimum is nearly all of the walk), the two walks
//! run in lockstep, and the squared error searches a grid half as dense as the correlation's
//! (whose score, piecewise constant in `a`, the walks only sample); every group of a family
//! scores the same grid, so its `q` and levels are built once (under `std`). The best few local
//! minima of the grid are refined by golden section. Under the correlation the walks there
//! rank candidates by a monotone stand-in for the score without its square root, the walk
//! from `max|w|` is one assignment, and the refinement two golden steps.
//! At the candidate `q`s (for histograms only the best one) an exact breakpoint sweep
//! ([`sweep_a`], whose `K` sorted breakpoint lists are merged, not sorted) picks `a`: over
//! every `a ∈ [0.01, 1.5]·max|w|` (from `0.15·max|w|` under the correlation in groups of at
//! most 64 sorted atoms) for sorted atoms with at most [`SWEEP_LIMIT`] breakpoints
//! (histograms with at most [`HISTOGRAM_SWEEP_LIMIT`]), over a window around the best Lloyd
//! optimum otherwise. The grid is dense for sorted atoms (jagged in `q`) and coarse for
//! histograms (smooth). Under the correlation a sweep takes the score of its hint's piece as
//! a bound from the start and dismisses every piece that scores worse by a division-free
//! test, and a full sweep is not preceded by a Lloyd walk (which could only tie it on its
//! range). (Max-abs fits search
//! `q` alone at `a = max|w|`: a dense grid here, or the sixteen-lane search in `lanes` for
//! small groups.)
//!
//! What that guarantees: the returned `a` is the exact optimum for the returned `q` over
//! the swept range (the window for large groups), and never worse than the Lloyd walk that
//! precedes the sweep, where one does. The choice of `q` is a search, not a proof:
//! `tests/fit.rs` holds the objective within 0.5 % of a dense brute-force scan of `(a, q)`
//! for groups of 24 to 50 000 weights, and for groups of 8–64 weights — whose error curves
//! are the most jagged — within 2 % of the squared error and 5 % of `1 − correlation` per
//! group, 0.1 % on average.

use alloc::vec::Vec;

use super::small::{self, SmallAtoms, SmallLevels};
use super::{Family, ScaleRule};
use crate::error::{Error, Result};
use crate::float::math::{exp, ln, sqrt};
use crate::float::Real;
use crate::isa::Isa;

/// Under the searching rules, groups larger than this are summarized by a histogram instead
/// of sorted: a row of a few thousand weights is then summarized in one pass.
const EXACT_LIMIT: usize = 2048;
/// Histogram bins over `[0, max|w|]` for large groups: about four weights per bin, within
/// these bounds.
const MIN_FIT_BINS: usize = 1024;
const BINS: usize = 4096;
/// Under [`ScaleRule::MaxAbs`] only `q` is searched, at a fixed `a`, and the error curve of a
/// group this large is smooth at the scale of a bin: a histogram (one pass, no sort) scores it
/// as well as the sorted weights do.
const MAX_ABS_EXACT_LIMIT: usize = 1024;
/// Fewest bins of a max-abs histogram; otherwise about eight weights per bin.
const MIN_BINS: usize = 256;
/// The range of `a` an exact sweep covers, as multiples of `max|w|`.
const A_LO: f64 = 0.01;
/// The correlation's sweeps in groups of at most `small::MAX_ATOMS` sorted weights start
/// higher: the correlation weighs each weight by its square, and in so few weights the
/// largest carries a large share of the energy, so a top level this far below it (clipping
/// it and every weight near it) was not found to win in any group measured (BENCHMARKS.md);
/// the pieces below would only be scored.
const A_LO_SMALL_CORRELATION: f64 = 0.15;
/// A top level above `max|w|` can pay off: it moves the lower levels onto clusters.
const A_HI: f64 = 1.5;
/// Max-abs: grid points for `q`, log-spaced in `-ln q`.
const Q_GRID: usize = 64;
/// Max-abs: small groups have the most jagged error curves and the cheapest evaluations, so
/// they get a denser `q` grid.
const Q_GRID_SMALL: usize = 384;
/// `atoms × K` at or below which a group counts as small.
const SMALL_GROUP: usize = 4096;
/// Max-abs: local minima of the `q` grid refined by golden section, and its steps.
const Q_REFINE: usize = 4;
const GOLDEN_STEPS: usize = 24;
/// MSE and correlation: grid points for `q`, local minima refined, golden steps each, for
/// sorted atoms (small groups, whose error curves are jagged in `q`) and for histograms
/// (large groups, smooth in `q`).
const FIT_Q_GRID: usize = 128;
const FIT_Q_REFINE: usize = 3;
const FIT_Q_GRID_LARGE: usize = 24;
const FIT_Q_REFINE_LARGE: usize = 2;
const FIT_GOLDEN_STEPS: usize = 12;
/// Groups that take the `f32` walks of `small`: under the squared error half the grid
/// keeps `tests/fit.rs`'s bounds (the correlation, piecewise constant in `a` and sampled
/// only by the walks, keeps the full grid), and fewer golden steps refine each minimum
/// (the exact sweeps at the candidates settle `a` anyway).
const FIT_Q_GRID_SMALL_MSE: usize = 64;
const FIT_GOLDEN_STEPS_SMALL: usize = 6;
/// The correlation's golden steps on that path: the walks only sample its piecewise
/// constant score, so a longer refinement mostly ranks samples more finely, and the exact
/// sweeps at the candidates settle the rest (two steps keep `tests/fit.rs`'s bounds).
const FIT_GOLDEN_STEPS_SMALL_CORRELATION: usize = 2;
/// Groups of at most this many atoms count them in `split` instead of bisecting.
const COUNT_LIMIT: usize = 64;
/// Points of the coarse `a` grid that seeds the final Lloyd walks.
const A_GRID: usize = 24;
/// Most assignments one Lloyd walk makes.
const LLOYD_STEPS: usize = 12;
/// Keep `q^(K-1) >= MIN_RANGE`: smaller levels would vanish in `f32` long before they could
/// matter to the error.
const MIN_RANGE: f64 = 1e-12;
const Q_MAX: f64 = 0.995;
const Q_MIN: f64 = 0.02;

/// A group reduced to sorted atoms with prefix sums.
pub(crate) struct GroupStats {
    /// Representative magnitude of each atom, ascending.
    x: Vec<f64>,
    /// Prefix sums, one longer than `x`: Σimp, Σimp·x, Σimp·x², Σimp·sign.
    p0: Vec<f64>,
    p1: Vec<f64>,
    p2: Vec<f64>,
    ps: Vec<f64>,
    /// Σimp·w (signed), for the correlation's mean.
    sum_w: f64,
    amax: f64,
    /// Bins per unit magnitude when the atoms are histogram bins (all kept, empty or not).
    bin_scale: Option<f64>,
}

impl GroupStats {
    /// The statistics `rule` needs: max-abs fits (which only search `q` at `a = max|w|`)
    /// use a histogram from `MAX_ABS_EXACT_LIMIT` weights on, other rules from `EXACT_LIMIT`.
    pub fn for_rule<T: Real>(
        rule: ScaleRule,
        weights: &[T],
        importance: Option<&[T]>,
    ) -> Result<Self> {
        match rule {
            ScaleRule::MaxAbs | ScaleRule::Fixed { .. } => {
                let bins = (weights.len() / 8).clamp(MIN_BINS, BINS);
                Self::build(weights, importance, MAX_ABS_EXACT_LIMIT, bins)
            }
            _ => {
                let bins = (weights.len() / 4).clamp(MIN_FIT_BINS, BINS);
                Self::build(weights, importance, EXACT_LIMIT, bins)
            }
        }
    }

    fn build<T: Real>(
        weights: &[T],
        importance: Option<&[T]>,
        exact_limit: usize,
        bins_wanted: usize,
    ) -> Result<Self> {
        let amax = check_group(weights, importance)?;
        // An all-zero importance says nothing about which weights matter; treat it as uniform.
        let importance = importance.filter(|imp| imp.iter().any(|v| *v > T::zero()));
        // Dividing by the largest importance makes a constant importance exactly 1, so it
        // fits exactly as the unweighted rule does (and keeps sums well scaled).
        let imp_max =
            importance.map_or(1.0, |imp| imp.iter().fold(0.0f64, |m, v| m.max(v.widen())));
        let imp_at = |i: usize| importance.map_or(1.0, |imp| imp[i].widen() / imp_max);
        let sum_w = match importance {
            None => sum_unweighted(weights),
            Some(_) => weights
                .iter()
                .enumerate()
                .map(|(i, w)| imp_at(i) * w.widen())
                .sum(),
        };

        // Atoms: (magnitude, Σimp, Σimp·x, Σimp·x², Σimp·sign).
        let mut atoms: Vec<[f64; 5]>;
        let mut bin_scale = None;
        if weights.len() <= exact_limit || amax == 0.0 {
            atoms = weights
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let (w, imp) = (w.widen(), imp_at(i));
                    let x = w.abs();
                    [x, imp, imp * x, imp * x * x, imp * sign(w)]
                })
                .collect();
            atoms.sort_unstable_by(|l, r| l[0].total_cmp(&r[0]));
        } else {
            let nb = bins_wanted;
            let mut bins = alloc::vec![[0.0f64; 4]; nb];
            let scale = nb as f64 / amax;
            if importance.is_none() {
                histogram_unweighted(weights, scale, &mut bins);
            } else {
                for (i, w) in weights.iter().enumerate() {
                    let (w, imp) = (w.widen(), imp_at(i));
                    let x = w.abs();
                    let bin = ((x * scale) as usize).min(nb - 1);
                    let b = &mut bins[bin];
                    b[0] += imp;
                    b[1] += imp * x;
                    b[2] += imp * x * x;
                    b[3] += imp * sign(w);
                }
            }
            // Empty bins stay (at their centre, with no weight) so that an atom's index is its
            // bin's: `split` is then one multiplication instead of a binary search.
            atoms = bins
                .iter()
                .enumerate()
                .map(|(j, b)| {
                    let lo = j as f64 / scale;
                    let hi = (j + 1) as f64 / scale;
                    let x = if b[0] > 0.0 {
                        (b[1] / b[0]).clamp(lo, hi)
                    } else {
                        0.5 * (lo + hi)
                    };
                    [x, b[0], b[1], b[2], b[3]]
                })
                .collect();
            bin_scale = Some(scale);
        }
        let n = atoms.len();
        let mut stats = GroupStats {
            x: Vec::with_capacity(n),
            p0: Vec::with_capacity(n + 1),
            p1: Vec::with_capacity(n + 1),
            p2: Vec::with_capacity(n + 1),
            ps: Vec::with_capacity(n + 1),
            sum_w,
            amax,
            bin_scale,
        };
        let mut acc = [0.0f64; 4];
        stats.p0.push(0.0);
        stats.p1.push(0.0);
        stats.p2.push(0.0);
        stats.ps.push(0.0);
        for atom in &atoms {
            stats.x.push(atom[0]);
            for (a, v) in acc.iter_mut().zip(&atom[1..]) {
                *a += v;
            }
            stats.p0.push(acc[0]);
            stats.p1.push(acc[1]);
            stats.p2.push(acc[2]);
            stats.ps.push(acc[3]);
        }
        Ok(stats)
    }

    /// Number of atoms with magnitude at most `t` (a tie goes to the smaller magnitude).
    #[inline]
    fn split(&self, t: f64) -> usize {
        match self.bin_scale {
            Some(scale) if t >= 0.0 => {
                let j = ((t * scale) as usize).min(self.x.len() - 1);
                // Every earlier bin lies wholly below `t`; only bin `j` needs a comparison.
                j + usize::from(self.x[j] <= t)
            }
            // A few dozen atoms: counting them all is branch-free and vectorizes, where a
            // binary search mispredicts about every other step.
            _ if self.x.len() <= COUNT_LIMIT => self.x.iter().map(|&v| usize::from(v <= t)).sum(),
            _ => self.x.partition_point(|&v| v <= t),
        }
    }

    /// The group's largest magnitude.
    pub fn amax(&self) -> f64 {
        self.amax
    }

    /// Number of atoms.
    pub(super) fn atom_count(&self) -> usize {
        self.x.len()
    }

    /// Whether the atoms are histogram bins (a large group) rather than single weights.
    pub(super) fn is_histogram(&self) -> bool {
        self.bin_scale.is_some()
    }

    /// Atom `i`: magnitude, Σimp, Σimp·x and Σimp·sign.
    pub(super) fn atom(&self, i: usize) -> [f64; 4] {
        let d = |p: &[f64]| p[i + 1] - p[i];
        [self.x[i], d(&self.p0), d(&self.p1), d(&self.ps)]
    }

    /// Σimp over the group.
    #[cfg(test)]
    pub(super) fn total_importance(&self) -> f64 {
        self.total(&self.p0)
    }

    fn total(&self, p: &[f64]) -> f64 {
        p[p.len() - 1]
    }
}

/// Checks a group for fitting and returns `max|w|`: errors on an empty group, an importance
/// slice of the wrong length or with a negative or non-finite value, or a non-finite weight
/// (in that order).
pub(crate) fn check_group<T: Real>(weights: &[T], importance: Option<&[T]>) -> Result<f64> {
    if weights.is_empty() {
        return Err(Error::EmptyTensor { rows: 0, cols: 0 });
    }
    if let Some(imp) = importance {
        if imp.len() != weights.len() {
            return Err(Error::InvalidImportance {
                index: imp.len(),
                value: f64::NAN,
            });
        }
        check_importance_values(imp)?;
    }
    max_abs_finite(weights)
}

/// That every importance is finite and `>= 0`, or the first that is not as an error (its
/// index in `importance`).
pub(crate) fn check_importance_values<T: Real>(importance: &[T]) -> Result<()> {
    match importance
        .iter()
        .position(|v| !(v.is_finite() && *v >= T::zero()))
    {
        Some(index) => Err(Error::InvalidImportance {
            index,
            value: importance[index].widen(),
        }),
        None => Ok(()),
    }
}

/// `max|w|`, or the first non-finite weight as an error. Eight independent lanes and a
/// deferred finiteness check let the compiler vectorize the pass.
fn max_abs_finite<T: Real>(weights: &[T]) -> Result<f64> {
    let mut lanes = [T::zero(); 8];
    let mut finite = true;
    let mut chunks = weights.chunks_exact(8);
    for c in &mut chunks {
        for (m, &w) in lanes.iter_mut().zip(c) {
            finite &= w.is_finite();
            *m = m.max(w.abs());
        }
    }
    for &w in chunks.remainder() {
        finite &= w.is_finite();
        lanes[0] = lanes[0].max(w.abs());
    }
    if !finite {
        let index = weights.iter().position(|w| !w.is_finite()).unwrap_or(0);
        return Err(Error::NonFiniteWeight {
            index,
            value: weights[index].widen(),
        });
    }
    Ok(lanes.iter().fold(0.0f64, |m, l| m.max(l.widen())))
}

/// `Σw` in `f64` over eight independent partial sums.
fn sum_unweighted<T: Real>(weights: &[T]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut chunks = weights.chunks_exact(8);
    for c in &mut chunks {
        for (s, &w) in lanes.iter_mut().zip(c) {
            *s += w.widen();
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|w| w.widen()).sum();
    lanes.iter().sum::<f64>() + tail
}

/// The histogram of an unweighted group: two interleaved copies, so that runs of weights in
/// the same bin do not serialize on one memory location, and a branch-free sign.
fn histogram_unweighted<T: Real>(weights: &[T], scale: f64, bins: &mut [[f64; 4]]) {
    let nb = bins.len();
    if weights.len() < 16 * nb {
        // Few weights per bin: collisions are rare and a second copy costs more than it saves.
        for &w in weights {
            add_to_bins(bins, w, scale);
        }
        return;
    }
    let mut second = alloc::vec![[0.0f64; 4]; nb];
    let mut pairs = weights.chunks_exact(2);
    for p in &mut pairs {
        add_to_bins(bins, p[0], scale);
        add_to_bins(&mut second, p[1], scale);
    }
    for &w in pairs.remainder() {
        add_to_bins(bins, w, scale);
    }
    for (b, s) in bins.iter_mut().zip(&second) {
        for k in 0..4 {
            b[k] += s[k];
        }
    }
}

#[inline(always)]
fn add_to_bins<T: Real>(bins: &mut [[f64; 4]], w: T, scale: f64) {
    let w = w.widen();
    let x = w.abs();
    let b = &mut bins[((x * scale) as usize).min(bins.len() - 1)];
    b[0] += 1.0;
    b[1] += x;
    b[2] += x * x;
    b[3] += f64::from(i8::from(w > 0.0) - i8::from(w < 0.0));
}

fn sign(w: f64) -> f64 {
    if w > 0.0 {
        1.0
    } else if w < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Sums over an assignment of atoms to levels `a·c_j`, enough to score any objective.
#[derive(Clone, Copy)]
pub(super) struct Assignment {
    /// Σ c·imp·x
    pub cx: f64,
    /// Σ c²·imp
    pub cc: f64,
    /// Σ c·imp·sign
    pub cs: f64,
}

/// A level family's unit magnitudes for one `q`.
pub(super) struct Shape {
    unit: [f64; 128],
    k: usize,
    zero: bool,
}

impl Shape {
    #[inline]
    pub(super) fn new(family: &Family, q: f64) -> Self {
        // Built in place: a 1 KiB array returned through a local costs a copy per `q`.
        let mut shape = Shape {
            unit: [0.0; 128],
            k: 0,
            zero: family.has_zero(),
        };
        shape.k = family.unit_magnitudes(q, &mut shape.unit);
        shape
    }

    /// Assigns atoms to the nearest of the magnitudes `a·unit` (and zero).
    pub(super) fn assign(&self, stats: &GroupStats, a: f64) -> Assignment {
        let mut out = Assignment {
            cx: 0.0,
            cc: 0.0,
            cs: 0.0,
        };
        let unit = &self.unit[..self.k];
        // Atoms below the first threshold go to zero (contributing nothing) or to unit[0].
        let mut lo = if self.zero {
            stats.split(a * unit[0] * 0.5)
        } else {
            0
        };
        for (j, &c) in unit.iter().enumerate() {
            let hi = match unit.get(j + 1) {
                Some(&next) => stats.split(a * (c + next) * 0.5).max(lo),
                None => stats.x.len(),
            };
            let s0 = stats.p0[hi] - stats.p0[lo];
            let s1 = stats.p1[hi] - stats.p1[lo];
            let ss = stats.ps[hi] - stats.ps[lo];
            out.cx += c * s1;
            out.cc += c * c * s0;
            out.cs += c * ss;
            lo = hi;
        }
        out
    }
}

/// How good a concrete codebook is for a group under a rule: the rule's score, and the MSE
/// that breaks ties between equal correlations.
pub(crate) struct Quality {
    score: f64,
    mse: f64,
}

impl Quality {
    /// Scores `levels` (a symmetric codebook, ascending, in any float type) whose top
    /// magnitude is `a`.
    pub fn of<T: Real>(rule: ScaleRule, stats: &GroupStats, levels: &[T], a: f64) -> Self {
        let mut unit = [0.0; 128];
        let positive = levels.iter().map(|l| l.widen()).filter(|&l| l > 0.0);
        let mut k = 0;
        for (u, m) in unit.iter_mut().zip(positive) {
            *u = m / a;
            k += 1;
        }
        let shape = Shape {
            unit,
            k,
            zero: levels.len() % 2 == 1,
        };
        let sums = shape.assign(stats, a);
        Quality {
            score: score(rule, stats, a, &sums),
            mse: score(ScaleRule::Mse, stats, a, &sums),
        }
    }

    pub fn better_than(&self, other: &Quality) -> bool {
        let tie = (self.score - other.score).abs() <= 1e-12 * other.score.abs();
        if tie {
            self.mse < other.mse
        } else {
            self.score < other.score
        }
    }
}

/// The quantity a rule minimizes, for scale `a` and an assignment.
fn score(rule: ScaleRule, stats: &GroupStats, a: f64, s: &Assignment) -> f64 {
    Scorer::new(rule, stats).score(a, s)
}

/// [`score`] with the group's own terms computed once: the walks and sweeps score hundreds
/// of assignments of one group.
#[derive(Clone, Copy)]
struct Scorer {
    correlation: bool,
    /// Σimp·x².
    s2: f64,
    /// Σimp, the weighted mean of `w` and its variance (for the correlation).
    w: f64,
    mean_w: f64,
    var_w: f64,
}

impl Scorer {
    fn new(rule: ScaleRule, stats: &GroupStats) -> Self {
        let s2 = stats.total(&stats.p2);
        let w = stats.total(&stats.p0);
        let mean_w = stats.sum_w / w;
        Scorer {
            correlation: rule == ScaleRule::Correlation,
            s2,
            w,
            mean_w,
            var_w: s2 / w - mean_w * mean_w,
        }
    }

    #[inline(always)]
    fn score(&self, a: f64, s: &Assignment) -> f64 {
        if self.correlation {
            let w = self.w;
            let mean_c = s.cs / w;
            let var_c = s.cc / w - mean_c * mean_c;
            if self.var_w <= 0.0 || var_c <= 0.0 {
                return 0.0;
            }
            // `a` cancels: correlation depends on the assignment only.
            -(s.cx / w - self.mean_w * mean_c) / sqrt(self.var_w * var_c)
        } else {
            self.s2 - 2.0 * a * s.cx + a * a * s.cc
        }
    }

    /// A quantity that orders assignments as [`score`](Self::score) does, for ranking
    /// alone. The squared error is its own; for the correlation `ρ` it is `−ρ·|ρ|·var_w`
    /// (`var_w > 0` a constant of the group), which rises with `−ρ` and needs one division
    /// instead of three and a square root: with `N = Σc·x − mean_w·Σc·sign` and
    /// `V = Σc²·Σimp − (Σc·sign)²`, `ρ = N / √(var_w·V)`.
    #[inline(always)]
    fn rank(&self, a: f64, s: &Assignment) -> f64 {
        if self.correlation {
            let n = s.cx - self.mean_w * s.cs;
            let v = s.cc * self.w - s.cs * s.cs;
            if self.var_w <= 0.0 || v <= 0.0 {
                return 0.0;
            }
            -(n * n.abs()) / v
        } else {
            self.score(a, s)
        }
    }

    /// Whether the correlation of `s` certainly ranks below `bound` (a finite negative
    /// score) by more than rounding, tested without a division or a square root: then a
    /// sweep piece with that assignment can neither win nor tie. `false` whenever in doubt.
    #[inline(always)]
    fn correlation_below(&self, s: &Assignment, bound: f64) -> bool {
        if !(self.correlation && self.var_w > 0.0 && bound < 0.0 && bound.is_finite()) {
            return false;
        }
        // Score `−N/√(var_w·V)` (see `rank`) is at most `bound = −m` iff `N ≥ m·√(var_w·V)`.
        // `N` rounded up and `V` down by far more than their rounding errors, and the bound
        // relaxed by a relative 1e-9 (more than the tie tolerance and the score's own
        // rounding), keep every piece that could reach it.
        let n = s.cx - self.mean_w * s.cs;
        let n_hi = n + 1e-12 * (s.cx.abs() + (self.mean_w * s.cs).abs());
        let v_lo = s.cc * self.w - s.cs * s.cs - 1e-12 * (s.cc * self.w);
        let m = -bound;
        n_hi <= 0.0 || n_hi * n_hi < m * m * (1.0 - 1e-9) * self.var_w * v_lo
    }
}

/// Lloyd iterations for one shape from `a0`: assign every atom to its nearest level at the
/// current `a`, then move `a` to the MSE-optimal scale of that assignment (`Σc·x / Σc²`),
/// until the assignment stops changing. Returns the best `(score, a)` visited under `rule`
/// (each visited `a` is scored with its own nearest-level assignment). The squared error
/// never rises along the way; for the correlation, which depends on the assignment alone,
/// the walk supplies good assignments to score.
fn lloyd(rule: ScaleRule, stats: &GroupStats, shape: &Shape, a0: f64) -> (f64, f64) {
    lloyd_with(rule, stats, a0, |a| shape.assign(stats, a))
}

/// [`lloyd`] with the assignment at `a` given by `assign`.
#[inline]
fn lloyd_with(
    rule: ScaleRule,
    stats: &GroupStats,
    a0: f64,
    assign: impl Fn(f64) -> Assignment,
) -> (f64, f64) {
    let scorer = Scorer::new(rule, stats);
    let mut a = a0;
    let mut best = (f64::INFINITY, a0);
    let mut previous: Option<Assignment> = None;
    for _ in 0..LLOYD_STEPS {
        let s = assign(a);
        let v = scorer.score(a, &s);
        if v < best.0 {
            best = (v, a);
        }
        if s.cc <= 0.0 || previous.is_some_and(|p| p.cx == s.cx && p.cc == s.cc) {
            // No level used, or a fixed point: `a` is already the scale of this assignment.
            break;
        }
        previous = Some(s);
        let next = s.cx / s.cc;
        if !(next.is_finite() && next > 0.0) {
            break;
        }
        a = next;
    }
    best
}

/// The better of Lloyd walks from `start` and from `other` (when given).
#[inline]
fn best_walk(
    rule: ScaleRule,
    stats: &GroupStats,
    start: f64,
    other: Option<f64>,
    assign: impl Fn(f64) -> Assignment,
) -> (f64, f64) {
    let mut best = lloyd_with(rule, stats, start, &assign);
    if let Some(other) = other {
        let walked = lloyd_with(rule, stats, other, &assign);
        if walked.0 < best.0 {
            best = walked;
        }
    }
    best
}

/// [`best_walk`] of two assignments per walk, for small groups: both walks' steps are
/// independent of each other, so they run in lockstep and their latencies overlap. Under
/// the correlation the walk from `other` (`max|w|`) is one assignment: its score depends on
/// the assignment alone, and the walk from the neighbour's optimum already supplies the
/// nearby assignments, so a second step from `max|w|` rarely finds a better one. Returns the
/// best `(rank, a)` visited ([`Scorer::rank`]: the candidates are only compared).
#[inline]
fn small_walks(
    scorer: &Scorer,
    start: f64,
    other: Option<f64>,
    assign: impl Fn(f64) -> Assignment,
) -> (f64, f64) {
    // The first step of a walk: its score at `a`, and the scale of its assignment (the
    // next point) when that is a usable scale.
    let first = |a: f64, s: &Assignment| {
        let v = scorer.rank(a, s);
        let best = if v < f64::INFINITY {
            (v, a)
        } else {
            (f64::INFINITY, a)
        };
        let next = s.cx / s.cc;
        (
            best,
            (s.cc > 0.0 && next.is_finite() && next > 0.0).then_some(next),
        )
    };
    let last = |best: (f64, f64), next: Option<(f64, Assignment)>| match next {
        Some((a, s)) => {
            let v = scorer.rank(a, &s);
            if v < best.0 {
                (v, a)
            } else {
                best
            }
        }
        None => best,
    };
    let s = assign(start);
    match other {
        None => {
            let (best, next) = first(start, &s);
            last(best, next.map(|a| (a, assign(a))))
        }
        Some(o) => {
            let t = assign(o);
            let ((best_s, next_s), (best_o, next_o)) = (first(start, &s), first(o, &t));
            let (ns, no) = (
                next_s.map(|a| (a, assign(a))),
                next_o
                    .filter(|_| !scorer.correlation)
                    .map(|a| (a, assign(a))),
            );
            let (from_start, from_other) = (last(best_s, ns), last(best_o, no));
            if from_other.0 < from_start.0 {
                from_other
            } else {
                from_start
            }
        }
    }
}

/// One breakpoint of [`sweep_a`]: at scale `a`, atom `atom` drops from level `level + 1` to
/// level `level`.
#[derive(Clone, Copy)]
struct Event {
    a: f64,
    atom: u32,
    level: u32,
}

/// Buffers of [`sweep_a`], kept across the sweeps of one fit so that each sweep allocates
/// nothing.
#[derive(Default)]
pub(crate) struct SweepScratch {
    events: Vec<Event>,
    spare: Vec<Event>,
    ends: Vec<usize>,
    next_ends: Vec<usize>,
}

impl SweepScratch {
    /// Buffers sized for the sweeps of a group of `atoms` atoms and `k` magnitudes (up to a
    /// small group's worth of events), so that they are allocated once, not grown.
    fn for_group(atoms: usize, k: usize) -> Self {
        let events = (atoms * k).min(RESERVED_EVENTS);
        SweepScratch {
            events: Vec::with_capacity(events),
            spare: Vec::with_capacity(events),
            ends: Vec::with_capacity(k + 1),
            next_ends: Vec::with_capacity(k + 1),
        }
    }
}

/// Most events [`SweepScratch::for_group`] reserves room for.
const RESERVED_EVENTS: usize = 1024;

/// Merges the runs of `scratch.events` (each sorted by `a`, given by their end offsets in
/// `scratch.ends`) into one sorted list in place, pairwise: `O(events · log runs)`, and no
/// comparison sort.
fn merge_runs(scratch: &mut SweepScratch) {
    let SweepScratch {
        events,
        spare,
        ends,
        next_ends,
    } = scratch;
    // Every pass writes each position of `spare` (the merges of its pairs of runs cover them
    // all), so only its length matters.
    let blank = Event {
        a: 0.0,
        atom: 0,
        level: 0,
    };
    spare.resize(events.len(), blank);
    while ends.len() > 1 {
        next_ends.clear();
        let mut start = 0;
        for pair in ends.chunks(2) {
            let mid = pair[0];
            let end = *pair.last().unwrap_or(&mid);
            merge_pair(&events[start..end], mid - start, &mut spare[start..end]);
            next_ends.push(end);
            start = end;
        }
        core::mem::swap(events, spare);
        core::mem::swap(ends, next_ends);
    }
}

/// The stable merge of the two sorted runs `both[..nl]` and `both[nl..]` into `out` (ties
/// take the first run first). Which run the next event comes from is a coin flip for the
/// branch predictor, so each choice is index arithmetic rather than a branch, and the merge
/// runs from both ends at once: two independent chains of loads and compares instead of
/// one. Under the order (`a`, run, position) every event has one place, which both ends
/// agree on.
fn merge_pair(both: &[Event], nl: usize, out: &mut [Event]) {
    let total = both.len();
    let nr = total - nl;
    if nl == 0 || nr == 0 {
        out.copy_from_slice(both);
        return;
    }
    // Front: the next smallest; back: the next largest (`i2`, `j2` count what is left).
    let (mut i, mut j) = (0usize, 0usize);
    let (mut i2, mut j2) = (nl, nr);
    for _ in 0..total / 2 {
        let (li, rj) = (i.min(nl - 1), nl + j.min(nr - 1));
        let right = (i == nl) | ((j < nr) & (both[rj].a < both[li].a));
        let t = usize::from(right);
        out[i + j] = both[li + t * (rj - li)];
        j += t;
        i += 1 - t;

        let (li, rj) = (i2.max(1) - 1, nl + j2.max(1) - 1);
        let left = (j2 == 0) | ((i2 > 0) & (both[rj].a < both[li].a));
        let t = usize::from(left);
        out[i2 + j2 - 1] = both[rj - t * (rj - li)];
        i2 -= t;
        j2 -= 1 - t;
    }
    if total % 2 == 1 {
        // The one event left is where the two ends meet.
        let (li, rj) = (i.min(nl - 1), nl + j.min(nr - 1));
        let right = (i == nl) | ((j < nr) & (both[rj].a < both[li].a));
        out[i + j] = both[if right { rj } else { li }];
    }
}

/// The exact best `(a, score)` over `a` in `[lo, hi]` for one level shape.
///
/// As `a` grows, an atom drops from level `l + 1` to level `l` exactly when `a` passes
/// `x / μ_l` (`μ_l` the unit midpoint between the two levels). Between such breakpoints the
/// assignment is fixed, so the MSE is a quadratic in `a` (minimized in closed form) and the
/// correlation a constant. The breakpoints of one `μ_l` are already in order (the atoms are
/// sorted), so merging the `K` lists orders all of them and one sweep visits every piece:
/// `O(atoms·K·log K)`, no grid. `bound` (a score some piece reaches, or infinity) lets the
/// correlation dismiss pieces that score worse without scoring them.
fn sweep_a(
    rule: ScaleRule,
    stats: &GroupStats,
    shape: &Shape,
    (lo, hi): (f64, f64),
    bound: f64,
    scratch: &mut SweepScratch,
) -> (f64, f64) {
    let unit = &shape.unit[..shape.k];
    // Levels as unit magnitudes, ascending, zero included when the family has it.
    // On the stack: a sweep runs per candidate `q`, and an allocation is a measurable share
    // of a small group's sweep.
    let mut table = [0.0f64; 129];
    let zero = usize::from(shape.zero);
    table[zero..zero + unit.len()].copy_from_slice(unit);
    let levels = &table[..zero + unit.len()];
    let n = stats.x.len();
    scratch.events.clear();
    scratch.ends.clear();
    let (events, ends) = (&mut scratch.events, &mut scratch.ends);
    for (l, pair) in levels.windows(2).enumerate() {
        let mu = (pair[0] + pair[1]) * 0.5;
        // The atoms whose breakpoint lies in (lo, hi], found by bisection and then checked
        // one by one with the very division the sweep orders by (one atom of slack each side
        // absorbs the rounding of `lo·μ` and `hi·μ`).
        let first = stats.split(lo * mu).saturating_sub(1);
        let last = (stats.split(hi * mu) + 1).min(n);
        for i in first..last {
            let a = stats.x[i] / mu;
            // Empty histogram bins move no weight: their events change nothing.
            if a > lo && a <= hi && stats.p0[i + 1] != stats.p0[i] {
                events.push(Event {
                    a,
                    atom: i as u32,
                    level: l as u32,
                });
            }
        }
        if ends.last() != Some(&events.len()) {
            ends.push(events.len());
        }
    }
    merge_runs(scratch);
    let events = &scratch.events;
    let (scorer, mse_scorer) = (Scorer::new(rule, stats), Scorer::new(ScaleRule::Mse, stats));
    let run = |bound: f64| {
        let mut sums = shape.assign(stats, lo);
        let mut piece_lo = lo;
        // (score, mse, a): equal correlations are common in small groups (the correlation is
        // flat across many pieces), so ties go to the lower MSE, which also keeps the choice
        // independent of the weights' overall scale.
        let mut best = (f64::INFINITY, f64::INFINITY, lo);
        let visit = PieceVisit {
            rule,
            scorer: &scorer,
            mse_scorer: &mse_scorer,
            bound,
        };
        let mut i = 0;
        while i < events.len() {
            let a = events[i].a;
            // The piece before this breakpoint still has the old assignment.
            visit.piece(&sums, piece_lo, a, &mut best);
            // Every event at this same `a` applies together.
            while i < events.len() && events[i].a == a {
                let (j, l) = (events[i].atom as usize, events[i].level as usize);
                let (c_lo, c_hi) = (levels[l], levels[l + 1]);
                let s0 = stats.p0[j + 1] - stats.p0[j];
                let s1 = stats.p1[j + 1] - stats.p1[j];
                let ss = stats.ps[j + 1] - stats.ps[j];
                sums.cx += (c_lo - c_hi) * s1;
                sums.cc += (c_lo * c_lo - c_hi * c_hi) * s0;
                sums.cs += (c_lo - c_hi) * ss;
                i += 1;
            }
            piece_lo = a;
        }
        visit.piece(&sums, piece_lo, hi, &mut best);
        best
    };
    let mut best = run(bound);
    if best.0 == f64::INFINITY && bound.is_finite() {
        // Rounding kept even the piece that reaches `bound` out: sweep without it.
        best = run(f64::INFINITY);
    }
    (best.2, best.0)
}

/// What a sweep needs to score one piece of constant assignment: its rule, scorers and the
/// bound pieces are dismissed against.
struct PieceVisit<'a> {
    rule: ScaleRule,
    scorer: &'a Scorer,
    mse_scorer: &'a Scorer,
    bound: f64,
}

impl PieceVisit<'_> {
    /// Scores the piece `[from, to)` of assignment `sums` into `best` (score, MSE, `a`) when
    /// it wins or ties with a lower MSE. Always inlined: a sweep calls it once per piece, and
    /// a closure in its place was compiled as a call.
    #[inline(always)]
    fn piece(&self, sums: &Assignment, from: f64, to: f64, best: &mut (f64, f64, f64)) {
        if !self.scorer.correlation && sums.cc > 0.0 {
            // No `a` of this piece scores below the parabola's vertex, `s2 − cx²/cc`: when
            // even that clearly exceeds the best so far (by far more than rounding), the
            // piece can neither win nor tie, and its division is skipped.
            let slack = 1e-9 * self.scorer.s2;
            if self.scorer.s2 * sums.cc - sums.cx * sums.cx > (best.0 + slack) * sums.cc {
                return;
            }
        }
        if self.scorer.correlation_below(sums, best.0.min(self.bound)) {
            return;
        }
        let ls = if sums.cc > 0.0 {
            sums.cx / sums.cc
        } else {
            from
        };
        let a = match self.rule {
            // `to` already belongs to the next piece, whose assignment (and correlation)
            // differs; the MSE is continuous there, the correlation is not.
            ScaleRule::Correlation if !(from..to).contains(&ls) => 0.5 * (from + to),
            _ => ls.clamp(from, to),
        };
        let v = self.scorer.score(a, sums);
        let tie = (v - best.0).abs() <= 1e-12 * best.0.abs();
        if !(tie || v < best.0) {
            return;
        }
        // The MSE only matters for the piece that wins or ties.
        let mse = match self.rule {
            ScaleRule::Correlation => self.mse_scorer.score(a, sums),
            _ => v,
        };
        if !tie || mse < best.1 {
            *best = (v, mse, a);
        }
    }
}

/// The best `(a, score)` for one shape, exact where it is affordable. A Lloyd walk from
/// `hint` finds a local optimum; then a breakpoint sweep covers every `a` in
/// `[A_LO, A_HI]·max|w|` (from `A_LO_SMALL_CORRELATION` under the correlation in small
/// groups) when the group is sorted atoms with at most `SWEEP_LIMIT`
/// breakpoints (a histogram with at most `HISTOGRAM_SWEEP_LIMIT`). Otherwise walks from
/// `max|w|` and from the best point of a coarse `a` grid join the first, and the sweep covers
/// the window `[a/A_WINDOW, a·A_WINDOW]` around the best of them (large groups are summarized
/// by histograms, whose error curves are smooth at that scale).
fn final_a(
    rule: ScaleRule,
    stats: &GroupStats,
    shape: &Shape,
    hint: f64,
    scratch: &mut SweepScratch,
) -> (f64, f64) {
    let start = if hint.is_finite() && hint > 0.0 {
        hint
    } else {
        stats.amax
    };
    let breakpoints = stats.x.len() * shape.k;
    let full = match stats.bin_scale {
        None => breakpoints <= SWEEP_LIMIT,
        // Few levels: the whole range is cheap, and the correlation's optimum can lie far
        // from the squared error's, around which the window is centred.
        Some(_) => breakpoints <= HISTOGRAM_SWEEP_LIMIT,
    };
    // The full sweep is exact on its range, where a walk can only tie it (and a walk from
    // inside the range rarely leaves it): under the correlation, whose sweeps are the dearer,
    // it is skipped.
    let mut walked = if full && rule == ScaleRule::Correlation {
        (f64::INFINITY, start)
    } else {
        lloyd(rule, stats, shape, start)
    };
    let (lo, hi) = if full {
        let small = stats.bin_scale.is_none() && stats.x.len() <= small::MAX_ATOMS;
        let a_lo = if rule == ScaleRule::Correlation && small {
            A_LO_SMALL_CORRELATION
        } else {
            A_LO
        };
        (stats.amax * a_lo, stats.amax * A_HI)
    } else {
        // Lloyd converges slowly from far away (a top level at `max|w|` when the optimum
        // clips many outliers), so the best point of a coarse log grid and `max|w|` are
        // starts too.
        let ratio = exp(ln(A_HI / A_LO) / (A_GRID - 1) as f64);
        let mut grid_best = (f64::INFINITY, stats.amax);
        let mut a = stats.amax * A_LO;
        for _ in 0..A_GRID {
            let v = score(rule, stats, a, &shape.assign(stats, a));
            if v < grid_best.0 {
                grid_best = (v, a);
            }
            a *= ratio;
        }
        for other_start in [stats.amax, grid_best.1] {
            // A walk from where the first one started would only repeat it.
            if other_start == start {
                continue;
            }
            let other = lloyd(rule, stats, shape, other_start);
            if other.0 < walked.0 {
                walked = other;
            }
        }
        (walked.1 / A_WINDOW, walked.1 * A_WINDOW)
    };
    // Under the correlation most pieces of a sweep score worse than the piece of `start` (the
    // search's own optimum for this `q`): with that score as a bound from the outset, they
    // are dismissed by a division-free test instead of scored.
    let bound = if rule == ScaleRule::Correlation && (lo..=hi).contains(&start) {
        score(rule, stats, start, &shape.assign(stats, start))
    } else {
        f64::INFINITY
    };
    let swept = sweep_a(rule, stats, shape, (lo, hi), bound, scratch);
    // The sweep is exact on its range; a walk can only end outside it.
    if walked.0 < swept.1 {
        (walked.1, walked.0)
    } else {
        swept
    }
}

/// Breakpoint sweeps over the whole `a` range up to this many breakpoints (`atoms × K`).
const SWEEP_LIMIT: usize = 1 << 14;
/// Histograms sweep the whole range up to this many breakpoints (bins × K).
const HISTOGRAM_SWEEP_LIMIT: usize = 4096;
/// Half-width (as a ratio) of the window a sweep covers for larger groups.
const A_WINDOW: f64 = 1.15;

/// Golden-section search for the minimum of `f` on `[lo, hi]`, returning the best
/// `(value, point)` seen (including the ends).
fn golden(mut lo: f64, mut hi: f64, steps: usize, mut f: impl FnMut(f64) -> f64) -> (f64, f64) {
    const INV_PHI: f64 = 0.618_033_988_749_894_8;
    let mut best = (f(lo), lo);
    let fh = f(hi);
    if fh < best.0 {
        best = (fh, hi);
    }
    let mut x1 = hi - INV_PHI * (hi - lo);
    let mut x2 = lo + INV_PHI * (hi - lo);
    let (mut f1, mut f2) = (f(x1), f(x2));
    for _ in 0..steps {
        for (v, x) in [(f1, x1), (f2, x2)] {
            if v < best.0 {
                best = (v, x);
            }
        }
        if f1 <= f2 {
            hi = x2;
            x2 = x1;
            f2 = f1;
            x1 = hi - INV_PHI * (hi - lo);
            f1 = f(x1);
        } else {
            lo = x1;
            x1 = x2;
            f1 = f2;
            x2 = lo + INV_PHI * (hi - lo);
            f2 = f(x2);
        }
    }
    for (v, x) in [(f1, x1), (f2, x2)] {
        if v < best.0 {
            best = (v, x);
        }
    }
    best
}

/// The range of `u = -ln q` the search explores for `k` magnitudes.
pub(crate) fn u_range(k: usize) -> (f64, f64) {
    let u_lo = -ln(Q_MAX);
    let u_hi = (-ln(MIN_RANGE) / (k.max(2) - 1) as f64).min(-ln(Q_MIN));
    (u_lo, u_hi.max(u_lo * 2.0))
}

/// Candidates for the best `q` of `inner(q)`: a grid of `points` over `ln(-ln q)`, then
/// golden refinement (`steps` rounds) around each of the best `refine` local minima of the
/// grid. Returns `(inner(q), q)` for the best grid point and then each refined minimum; the
/// first strictly smallest value is the search's answer. The error is continuous in `q` but,
/// for small groups, has many shallow valleys; refining several of them keeps the search near
/// the best of a dense brute-force scan.
///
/// `inner` gets the index of a grid point with its `q` (`None` for a refinement's `q`).
fn search_q(
    grid: &QGrid,
    refine: usize,
    steps: usize,
    mut inner: impl FnMut(Option<usize>, f64) -> f64,
) -> Vec<(f64, f64)> {
    let points = grid.q.len();
    let grid: Vec<(f64, f64)> = (0..points)
        .map(|i| (inner(Some(i), grid.q[i]), grid.l[i]))
        .collect();
    let mut minima: Vec<usize> = (0..points)
        .filter(|&i| {
            let v = grid[i].0;
            (i == 0 || v <= grid[i - 1].0) && (i + 1 == points || v <= grid[i + 1].0)
        })
        .collect();
    minima.sort_unstable_by(|&l, &r| grid[l].0.total_cmp(&grid[r].0));
    let mut found = Vec::with_capacity(refine + 1);
    found.push((grid[minima[0]].0, q_of(grid[minima[0]].1)));
    for &i in minima.iter().take(refine) {
        let lo = grid[i.saturating_sub(1)].1;
        let hi = grid[(i + 1).min(points - 1)].1;
        let refined = golden(lo, hi, steps, |l| inner(None, q_of(l)));
        found.push((refined.0, q_of(refined.1)));
    }
    found
}

/// `q` at a point `l = ln(−ln q)` of [`search_q`]'s search.
fn q_of(l: f64) -> f64 {
    exp(-exp(l))
}

/// The grid [`search_q`] scores first: `points` values of `l = ln(−ln q)` evenly spaced over
/// the range [`u_range`] gives for `k` magnitudes (over `ln u`, so the grid is dense where
/// `q` is near 1 and the levels are many), and their `q`.
struct QGrid {
    l: Vec<f64>,
    q: Vec<f64>,
}

impl QGrid {
    fn new(k: usize, points: usize) -> Self {
        let (u_lo, u_hi) = u_range(k);
        let (l_lo, l_hi) = (ln(u_lo), ln(u_hi));
        let step = (l_hi - l_lo) / (points - 1) as f64;
        let l: Vec<f64> = (0..points).map(|i| l_lo + step * i as f64).collect();
        let q = l.iter().map(|&l| q_of(l)).collect();
        QGrid { l, q }
    }
}

/// A [`QGrid`] with the levels of each of its points for [`SmallAtoms::assign`].
struct SmallGrid {
    grid: QGrid,
    levels: Vec<SmallLevels>,
}

impl SmallGrid {
    fn new(family: &Family, points: usize) -> Self {
        let grid = QGrid::new(family.magnitude_count(), points);
        let levels = grid
            .q
            .iter()
            .map(|&q| SmallLevels::new(family, q))
            .collect();
        SmallGrid { grid, levels }
    }
}

/// Runs `f` with the small-group grid of `family` at `points` points. Every small group of a
/// family scores the same grid, whose `q` (two exponentials each) and levels cost about as
/// much to build as one of its assignments: under `std` the grids of [`FIT_Q_GRID`] and
/// [`FIT_Q_GRID_SMALL_MSE`] points are built once per family and kept for the process (at
/// most about 30 KiB each) for the families that search `q` (exponential ones); other grids,
/// and every grid without `std`, per call.
fn with_small_grid<R>(family: &Family, points: usize, f: impl FnOnce(&SmallGrid) -> R) -> R {
    #[cfg(feature = "std")]
    if family.uses_q() && (points == FIT_Q_GRID || points == FIT_Q_GRID_SMALL_MSE) {
        use std::sync::OnceLock;
        // One slot per (bits, zero level, grid): all that a grid and its levels depend on.
        static GRIDS: [OnceLock<SmallGrid>; 32] = [const { OnceLock::new() }; 32];
        let family_slot = usize::from(family.bits - 1) * 2 + usize::from(family.has_zero());
        let slot = family_slot * 2 + usize::from(points == FIT_Q_GRID);
        return f(GRIDS[slot].get_or_init(|| SmallGrid::new(family, points)));
    }
    f(&SmallGrid::new(family, points))
}

/// The first strictly smallest of [`search_q`]'s candidates.
fn best_q(candidates: &[(f64, f64)]) -> f64 {
    let mut best = candidates[0];
    for &c in &candidates[1..] {
        if c.0 < best.0 {
            best = c;
        }
    }
    best.1
}

/// The `q` used when it does not matter (linear, or fewer than two magnitudes).
pub(crate) const DEFAULT_Q: f64 = 0.5;

/// Fits `(a, q)` for a family under a (non-fixed) rule.
pub(crate) fn fit(family: &Family, rule: ScaleRule, stats: &GroupStats) -> (f64, f64) {
    let amax = stats.amax;
    if amax == 0.0 {
        // Every weight is zero: any scale reproduces them with a zero level.
        return (1.0, DEFAULT_Q);
    }
    let k = family.magnitude_count();
    match rule {
        ScaleRule::MaxAbs | ScaleRule::Fixed { .. } => {
            if !family.uses_q() {
                return (amax, DEFAULT_Q);
            }
            let mse_at_max = |q: f64| {
                let shape = Shape::new(family, q);
                score(ScaleRule::Mse, stats, amax, &shape.assign(stats, amax))
            };
            let points = if stats.bin_scale.is_none() && stats.x.len() * k <= SMALL_GROUP {
                Q_GRID_SMALL
            } else {
                Q_GRID
            };
            let grid = QGrid::new(k, points);
            let q = best_q(&search_q(&grid, Q_REFINE, GOLDEN_STEPS, |_, q| {
                mse_at_max(q)
            }));
            (amax, q)
        }
        ScaleRule::Mse | ScaleRule::OutputMse | ScaleRule::Correlation => {
            if !family.uses_q() {
                let shape = Shape::new(family, DEFAULT_Q);
                let scratch = &mut SweepScratch::default();
                return (final_a(rule, stats, &shape, amax, scratch).0, DEFAULT_Q);
            }
            // Each `q` is scored by a Lloyd walk from the best `a` of the `q` scored before
            // (the grid and the golden steps move in small steps, so that `a` is usually
            // close to this one's optimum), and for sorted atoms also by one from `max|w|`.
            let mut warm = amax;
            // (score, q, a) of every `q` scored, for the hints below.
            let mut seen: Vec<(f64, f64, f64)> = Vec::new();
            // Small groups walk on `f32` sums in vectors (see `small`): they rank the
            // candidates; the exact sweeps below settle `a`.
            let small = SmallAtoms::new(stats, k, Isa::detect());
            let (points, refine, steps) = if stats.bin_scale.is_some() {
                (FIT_Q_GRID_LARGE, FIT_Q_REFINE_LARGE, FIT_GOLDEN_STEPS)
            } else if small.is_some() {
                if rule == ScaleRule::Correlation {
                    (FIT_Q_GRID, FIT_Q_REFINE, FIT_GOLDEN_STEPS_SMALL_CORRELATION)
                } else {
                    (FIT_Q_GRID_SMALL_MSE, FIT_Q_REFINE, FIT_GOLDEN_STEPS_SMALL)
                }
            } else {
                (FIT_Q_GRID, FIT_Q_REFINE, FIT_GOLDEN_STEPS)
            };
            let scorer = Scorer::new(rule, stats);
            // One `q` scored, with its levels when the small grid holds them.
            let mut score_q = |levels: Option<&SmallLevels>, q: f64| {
                // Histograms are smooth in `a` too: the walk from the neighbour's optimum
                // is enough there.
                let other = (warm != amax && stats.bin_scale.is_none()).then_some(amax);
                let best = match &small {
                    Some(atoms) => {
                        let built;
                        let levels = match levels {
                            Some(levels) => levels,
                            None => {
                                built = SmallLevels::new(family, q);
                                &built
                            }
                        };
                        small_walks(&scorer, warm, other, |a| atoms.assign(levels, a))
                    }
                    None => {
                        let shape = Shape::new(family, q);
                        best_walk(rule, stats, warm, other, |a| shape.assign(stats, a))
                    }
                };
                warm = best.1;
                seen.push((best.0, q, best.1));
                best.0
            };
            let candidates = if small.is_some() {
                with_small_grid(family, points, |small| {
                    search_q(&small.grid, refine, steps, |i, q| {
                        score_q(i.map(|i| &small.levels[i]), q)
                    })
                })
            } else {
                search_q(&QGrid::new(k, points), refine, steps, |_, q| {
                    score_q(None, q)
                })
            };
            // The scores above are Lloyd's local optima; the exact sweep at each candidate
            // settles which is best (histograms are smooth in `q`: the best one suffices).
            let chosen = best_q(&candidates);
            let mut best = (f64::INFINITY, amax, DEFAULT_Q);
            let histogram = stats.bin_scale.is_some();
            let mut scratch = SweepScratch::for_group(stats.x.len(), k);
            for (i, &(_, q)) in candidates.iter().enumerate() {
                if candidates[..i].iter().any(|c| c.1 == q) || (histogram && q != chosen) {
                    continue;
                }
                let hint = seen.iter().find(|s| s.1 == q).map_or(amax, |s| s.2);
                let (a, v) = final_a(rule, stats, &Shape::new(family, q), hint, &mut scratch);
                if v < best.0 {
                    best = (v, a, q);
                }
            }
            (best.1, best.2)
        }
    }
}

/// The best `a` under `rule` with `q` held fixed (compact parameters share one `q` across a
/// row's groups and fit only each group's scale).
pub(crate) fn fit_a(family: &Family, rule: ScaleRule, stats: &GroupStats, q: f64) -> f64 {
    if stats.amax == 0.0 {
        return 1.0;
    }
    let scratch = &mut SweepScratch::default();
    final_a(rule, stats, &Shape::new(family, q), stats.amax, scratch).0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs of breakpoints with many ties (within and across runs) and empty runs: the merge
    /// must equal a stable sort by `a`, so that events at one `a` keep the order in which
    /// the sweep applies them.
    #[test]
    fn merging_runs_is_a_stable_sort() {
        let mut next = crate::test_rng::xorshift32(0x2545_f491);
        let mut checked = 0;
        for runs in 1..=17usize {
            for _ in 0..20 {
                let mut scratch = SweepScratch::default();
                for level in 0..runs {
                    // Lengths 0–9, values from a small set so that ties are common.
                    let len = (next() % 10) as usize;
                    let mut a: Vec<f64> = (0..len).map(|_| f64::from(next() % 7)).collect();
                    a.sort_by(f64::total_cmp);
                    for (atom, a) in a.into_iter().enumerate() {
                        scratch.events.push(Event {
                            a,
                            atom: atom as u32,
                            level: level as u32,
                        });
                    }
                    if scratch.ends.last() != Some(&scratch.events.len()) {
                        scratch.ends.push(scratch.events.len());
                    }
                }
                let mut want = scratch.events.clone();
                want.sort_by(|l, r| l.a.total_cmp(&r.a));
                merge_runs(&mut scratch);
                let key = |e: &Event| (e.a.to_bits(), e.atom, e.level);
                assert_eq!(
                    scratch.events.iter().map(key).collect::<Vec<_>>(),
                    want.iter().map(key).collect::<Vec<_>>(),
                    "{runs} runs"
                );
                checked += want.len();
            }
        }
        assert!(checked > 1000, "{checked}");
    }
}
