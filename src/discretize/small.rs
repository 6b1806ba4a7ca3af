//! Nearest-level assignments of small sorted groups for the `q` search, in `f32` vectors.
//!
//! The search scores each candidate `q` by Lloyd walks in `a`, a dozen or more assignments
//! per `q` and over a thousand per group. For a group of a few dozen atoms, a binary search
//! (or a count) per decision threshold on the `f64` prefix sums costs far more than
//! comparing every atom with every threshold in registers: eight atoms per vector, one
//! compare and one blend per threshold, and the three sums an objective needs accumulated
//! beside them. The sums are `f32` per lane, so they are close to the exact ones, not equal:
//! they only rank candidates. Every fitted `a` is still chosen by the exact `f64` code
//! (`search::final_a`) at the candidates this search returns.

use super::search::{Assignment, GroupStats};
use super::Family;
use crate::isa::portable::{self, AssignAtoms, AssignLevels, ASSIGN_CUTS, ASSIGN_LANES};
use crate::isa::Isa;

/// Groups of at most this many atoms take this path.
pub(crate) const MAX_ATOMS: usize = 64;

/// A small group's sorted atoms in `f32`, padded with weightless atoms to whole vectors.
pub(crate) struct SmallAtoms {
    x: [f32; MAX_ATOMS],
    w0: [f32; MAX_ATOMS],
    wx: [f32; MAX_ATOMS],
    ws: [f32; MAX_ATOMS],
    /// Atoms read, a whole number of vectors.
    len: usize,
    isa: Isa,
}

impl SmallAtoms {
    /// The atoms of `stats`, or `None` when the group is not small sorted atoms or the family
    /// has more thresholds than the kernel reads.
    pub fn new(stats: &GroupStats, magnitudes: usize, isa: Isa) -> Option<Self> {
        let n = stats.atom_count();
        if stats.is_histogram() || n > MAX_ATOMS || magnitudes > ASSIGN_CUTS {
            return None;
        }
        let mut atoms = SmallAtoms {
            x: [0.0; MAX_ATOMS],
            w0: [0.0; MAX_ATOMS],
            wx: [0.0; MAX_ATOMS],
            ws: [0.0; MAX_ATOMS],
            len: n.div_ceil(ASSIGN_LANES) * ASSIGN_LANES,
            isa,
        };
        for i in 0..n {
            let [x, w0, wx, ws] = stats.atom(i);
            atoms.x[i] = x as f32;
            atoms.w0[i] = w0 as f32;
            atoms.wx[i] = wx as f32;
            atoms.ws[i] = ws as f32;
        }
        Some(atoms)
    }

    /// The sums of the nearest-level assignment to the levels of `levels` at scale `a`.
    pub fn assign(&self, levels: &SmallLevels, a: f64) -> Assignment {
        let cuts = levels.cuts;
        let mut cut = [0.0f32; ASSIGN_CUTS];
        for (t, &m) in cut.iter_mut().zip(&levels.mid[..cuts]) {
            *t = (a * m) as f32;
        }
        let levels = AssignLevels {
            base: levels.base,
            cut: &cut[..cuts],
            above: &levels.above[..cuts],
        };
        let n = self.len;
        let atoms = AssignAtoms {
            x: &self.x[..n],
            w0: &self.w0[..n],
            wx: &self.wx[..n],
            ws: &self.ws[..n],
        };
        let [cx, cc, cs] = assign_sums_with(self.isa, levels, atoms);
        Assignment { cx, cc, cs }
    }
}

/// One candidate `q`'s levels at unit scale, for [`SmallAtoms::assign`]: the decision
/// thresholds (midpoints between neighbouring levels, and half the smallest magnitude when
/// zero is a level) and the level above each.
pub(crate) struct SmallLevels {
    mid: [f64; ASSIGN_CUTS],
    above: [f32; ASSIGN_CUTS],
    base: f32,
    cuts: usize,
}

impl SmallLevels {
    /// The levels of `family` at ratio `q` (its first [`ASSIGN_CUTS`] magnitudes; a family
    /// [`SmallAtoms::new`] accepts has no more).
    pub fn new(family: &Family, q: f64) -> Self {
        let mut unit = [0.0f64; ASSIGN_CUTS];
        family.for_each_unit(q, |i, c| {
            if let Some(u) = unit.get_mut(i) {
                *u = c;
            }
        });
        let k = family.magnitude_count().min(ASSIGN_CUTS);
        let mut levels = SmallLevels {
            mid: [0.0; ASSIGN_CUTS],
            above: [0.0; ASSIGN_CUTS],
            base: unit[0] as f32,
            cuts: 0,
        };
        if family.has_zero() {
            levels.mid[0] = unit[0] * 0.5;
            levels.above[0] = unit[0] as f32;
            levels.base = 0.0;
            levels.cuts = 1;
        }
        for j in 1..k {
            if levels.cuts == ASSIGN_CUTS {
                break;
            }
            levels.mid[levels.cuts] = (unit[j - 1] + unit[j]) * 0.5;
            levels.above[levels.cuts] = unit[j] as f32;
            levels.cuts += 1;
        }
        levels
    }
}

/// The assignment sums on the path `isa` names; every path returns the same bits.
#[inline]
fn assign_sums_with(isa: Isa, levels: AssignLevels<'_>, atoms: AssignAtoms<'_>) -> [f64; 3] {
    #[cfg(target_arch = "x86_64")]
    if let Some(p) = isa.avx2() {
        return p.assign_sums(levels, atoms);
    }
    let _ = isa;
    portable::assign_sums(levels, atoms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discretize::search::Shape;
    use crate::scheme::{ScaleRule, Scheme};

    fn weights(seed: u32, n: usize) -> alloc::vec::Vec<f32> {
        let mut state = seed.wrapping_mul(0x9e37_79b9) | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                // Heavy-tailed, signed, with exact zeros now and then.
                let u = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                if state.is_multiple_of(11) {
                    0.0
                } else {
                    u * u * u * 8.0
                }
            })
            .collect()
    }

    #[test]
    fn every_path_gives_the_references_bits_and_the_sums_are_near_the_exact_ones() {
        let mut checked = 0;
        for isa in Isa::available() {
            for (scheme, bits, zero) in [
                (Scheme::Exponential, 2u8, true),
                (Scheme::Exponential, 3, false),
                (Scheme::Exponential, 4, true),
                (Scheme::Exponential, 4, false),
                (Scheme::Exponential, 5, true),
                (Scheme::Exponential, 5, false),
                (Scheme::Linear, 4, true),
            ] {
                let family = Family::new(scheme, bits, zero).unwrap();
                // Every vector count from one to eight, full and partly padded.
                for (seed, n) in [
                    (1u32, 1usize),
                    (2, 7),
                    (3, 8),
                    (4, 16),
                    (5, 24),
                    (6, 32),
                    (7, 40),
                    (8, 45),
                    (9, 56),
                    (10, 64),
                ] {
                    let w = weights(seed + u32::from(bits), n);
                    let imp: alloc::vec::Vec<f32> = (0..n).map(|i| 0.25 + (i % 5) as f32).collect();
                    for importance in [None, Some(&imp[..])] {
                        let stats = GroupStats::for_rule(ScaleRule::Mse, &w, importance).unwrap();
                        let small = SmallAtoms::new(&stats, family.magnitude_count(), isa)
                            .expect("a small group");
                        let reference =
                            SmallAtoms::new(&stats, family.magnitude_count(), Isa::scalar())
                                .unwrap();
                        for q in [0.3, 0.61, 0.9] {
                            let shape = Shape::new(&family, q);
                            let levels = SmallLevels::new(&family, q);
                            for a in [0.05, 0.4, 0.77, 1.3].map(|r| r * stats.amax()) {
                                let got = small.assign(&levels, a);
                                let want = reference.assign(&levels, a);
                                assert_eq!(
                                    [got.cx, got.cc, got.cs].map(f64::to_bits),
                                    [want.cx, want.cc, want.cs].map(f64::to_bits),
                                    "{isa}: {scheme:?} {bits} bits n={n} q={q} a={a}"
                                );
                                // Against the exact sums: `f32` rounding only (an atom within
                                // rounding of a threshold is rare in these groups).
                                let exact = shape.assign(&stats, a);
                                let scale = stats.total_importance() * stats.amax() + 1e-30;
                                for (g, e) in [(got.cx, exact.cx), (got.cs, exact.cs)] {
                                    assert!((g - e).abs() <= 1e-5 * scale, "{g} vs {e}");
                                }
                                let scale = stats.total_importance() + 1e-30;
                                assert!((got.cc - exact.cc).abs() <= 1e-5 * scale);
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(checked >= 7 * 6 * 2 * 12, "{checked}");
    }

    #[test]
    fn every_path_gives_the_references_bits_beyond_a_small_group() {
        // More vectors than a small group has: the kernels' general loop.
        let n = 13 * ASSIGN_LANES;
        let x: alloc::vec::Vec<f32> = weights(21, n).iter().map(|w| w.abs()).collect();
        let w0: alloc::vec::Vec<f32> = (0..n).map(|i| 0.5 + (i % 3) as f32).collect();
        let wx: alloc::vec::Vec<f32> = x.iter().zip(&w0).map(|(x, w)| x * w).collect();
        let ws: alloc::vec::Vec<f32> = (0..n).map(|i| [1.0, -1.0, 0.0][i % 3]).collect();
        let atoms = AssignAtoms {
            x: &x,
            w0: &w0,
            wx: &wx,
            ws: &ws,
        };
        let cut = [0.05f32, 0.1, 0.2, 0.4, 0.8];
        let above = [0.1f32, 0.15, 0.3, 0.6, 1.0];
        let levels = AssignLevels {
            base: 0.0,
            cut: &cut,
            above: &above,
        };
        let want = portable::assign_sums(levels, atoms);
        assert!(want.iter().all(|v| *v != 0.0), "{want:?}");
        for isa in Isa::available() {
            assert_eq!(
                assign_sums_with(isa, levels, atoms).map(f64::to_bits),
                want.map(f64::to_bits),
                "{isa}"
            );
        }
    }

    #[test]
    fn large_groups_and_histograms_take_the_exact_path() {
        let family = Family::new(Scheme::Exponential, 4, true).unwrap();
        let k = family.magnitude_count();
        let w = weights(9, MAX_ATOMS + 1);
        let stats = GroupStats::for_rule(ScaleRule::Mse, &w, None).unwrap();
        assert!(SmallAtoms::new(&stats, k, Isa::detect()).is_none());
        let stats = GroupStats::for_rule(ScaleRule::Mse, &w[..MAX_ATOMS], None).unwrap();
        assert!(SmallAtoms::new(&stats, k, Isa::detect()).is_some());
        let wide = Family::new(Scheme::Exponential, 6, true).unwrap();
        assert!(SmallAtoms::new(&stats, wide.magnitude_count(), Isa::detect()).is_none());
    }
}
