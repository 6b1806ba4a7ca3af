//! Compact group parameters: one ratio `q` shared by a row's groups, each group's scale `a`
//! stored as an IEEE binary16 (`f16`).
//!
//! A row (the whole tensor for a per-tensor layout) is fitted once under the scale rule, and
//! its `q` is kept. Each group then gets the best `a` *for that `q`* under the same rule, and
//! the `a` is rounded to `f16` before any code is chosen, so that every code is the nearest
//! level of the codebook that is stored. The conversion between `f32` and `f16` is written
//! out here (round to nearest, ties to even) so that the core stays `no_std` and free of
//! dependencies.

#[cfg(feature = "alloc")]
use super::search::{self, GroupStats, Quality};
#[cfg(feature = "alloc")]
use super::Family;
#[cfg(feature = "alloc")]
use crate::error::{Error, Result};
#[cfg(feature = "alloc")]
use crate::scheme::{Params, ScaleRule};

/// The smallest positive `f16` (a subnormal, `2^-24`): the floor of a stored scale.
pub(crate) const F16_MIN_POSITIVE: f32 = 5.960_464_5e-8;

/// `v` rounded to the nearest `f16` (ties to even), as its bits. Values beyond the `f16`
/// range become infinities, NaN stays NaN.
pub(crate) fn f16_bits(v: f32) -> u16 {
    let x = v.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let man = x & 0x007f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x0200 } else { 0 };
    }
    // The exponent re-biased for f16 (bias 15 instead of 127).
    let e = exp - 112;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // A subnormal f16 (or zero): the significand with its implicit bit, shifted so that
        // one unit is 2^-24. Below half the smallest subnormal everything rounds to zero.
        if e < -10 {
            return sign;
        }
        let m = man | 0x0080_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rem = m & ((1u32 << shift) - 1);
        let mut r = m >> shift;
        if rem > half || (rem == half && r & 1 == 1) {
            // A carry out of the subnormal range gives the smallest normal's bits, as it
            // should.
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && r & 1 == 1) {
        // A carry into the exponent is the next binade, up to infinity: still correct.
        r += 1;
    }
    sign | r as u16
}

/// The value of the `f16` with bits `h`, exactly.
#[inline]
pub(crate) fn f16_value(h: u16) -> f32 {
    let sign = (u32::from(h) & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x03ff);
    let bits = match exp {
        0 => {
            // Subnormal: man · 2^-24, exact in f32.
            let v = man as f32 * F16_MIN_POSITIVE;
            return if sign != 0 { -v } else { v };
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

#[cfg(feature = "alloc")]
/// A fitted scale as stored: rounded to the nearest `f16`, raised to the smallest positive
/// one; `None` when it rounds past the largest finite `f16`.
fn stored_scale(a: f64) -> Option<u16> {
    let h = f16_bits(a as f32);
    if f16_value(h).is_finite() {
        Some(h.max(f16_bits(F16_MIN_POSITIVE)))
    } else {
        None
    }
}

#[cfg(feature = "alloc")]
/// Fits one row of groups of `g` weights (the last may be shorter) with one shared `q`:
/// writes each group's stored scale (`f16` bits) into `scales` and returns the `q` (1 for
/// families without one). `first_group` numbers the row's first group for error messages.
///
/// # Errors
/// Those of the row's fit, and [`Error::UnfittableGroup`] for a group whose scale exceeds
/// the largest `f16` (65504) or for which no codebook of distinct finite levels exists.
pub(crate) fn fit_row(
    family: &Family,
    rule: ScaleRule,
    weights: &[f32],
    importance: Option<&[f32]>,
    g: usize,
    scales: &mut [u16],
    first_group: usize,
) -> Result<f32> {
    let g = g.max(1);
    let mut q = shared_q(family, rule, weights, importance, g)?;
    for (i, (w, slot)) in weights.chunks(g).zip(scales.iter_mut()).enumerate() {
        let imp = importance.map(|imp| &imp[i * g..i * g + w.len()]);
        let group = first_group + i;
        let unfittable = |max_abs: f64| Error::UnfittableGroup { group, max_abs };
        let a = group_scale(family, rule, w, imp, f64::from(q))?;
        let amax = search::check_group(w, imp)?;
        *slot = stored_scale(a).ok_or_else(|| unfittable(amax))?;
        if !matches!(rule, ScaleRule::MaxAbs | ScaleRule::Fixed { .. }) {
            *slot = best_neighbour(family, rule, w, imp, *slot, q)?;
        }
    }
    // `q` came from a fit whose levels are distinct and finite at the row's scale; a much
    // smaller group scale can flush the smallest levels, so raise `q` toward 1 (a narrower
    // dynamic range) until every group's codebook is valid.
    for _ in 0..64 {
        let bad = scales
            .iter()
            .position(|&h| family.codebook(Params { a: f16_value(h), q }).is_err());
        let Some(i) = bad else {
            return Ok(q);
        };
        if !family.uses_q() {
            let w = &weights[i * g..((i + 1) * g).min(weights.len())];
            return Err(Error::UnfittableGroup {
                group: first_group + i,
                max_abs: search::check_group(w, None)?,
            });
        }
        q += (1.0 - q) * 0.5;
    }
    Err(Error::UnfittableGroup {
        group: first_group,
        max_abs: search::check_group(weights, None)?,
    })
}

/// The row's shared `q`: the rule's fixed `q`, or the `q` that minimizes the row's squared
/// error when each group takes its max-abs scale (as stored, in `f16`). Dividing each group
/// by its scale and weighting each weight by the scale squared turns that into one max-abs
/// fit at `a = 1`: `Σ a²·(w/a − Q₁(w/a))² = Σ (w − a·Q₁(w/a))²`. The other rules then fit each
/// group's scale for this `q`.
#[cfg(feature = "alloc")]
fn shared_q(
    family: &Family,
    rule: ScaleRule,
    weights: &[f32],
    importance: Option<&[f32]>,
    g: usize,
) -> Result<f32> {
    if !family.uses_q() {
        return Ok(1.0);
    }
    if let ScaleRule::Fixed { .. } = rule {
        return Ok(family.fit_group(rule, weights, importance)?.q);
    }
    let mut scaled = alloc::vec::Vec::with_capacity(weights.len());
    let mut weight = alloc::vec::Vec::with_capacity(weights.len());
    for (i, w) in weights.chunks(g).enumerate() {
        let imp = importance.map(|imp| &imp[i * g..i * g + w.len()]);
        let a = group_scale(family, ScaleRule::MaxAbs, w, imp, 1.0)?;
        // An out-of-range scale is reported with its group by the caller.
        let a = stored_scale(a).map_or(1.0, f16_value);
        for (j, &v) in w.iter().enumerate() {
            scaled.push(v / a);
            weight.push((a * a * imp.map_or(1.0, |imp| imp[j])).min(f32::MAX));
        }
    }
    Ok(family
        .fit_group(ScaleRule::MaxAbs, &scaled, Some(&weight))?
        .q)
}

#[cfg(feature = "alloc")]
/// The best scale of one group for a fixed `q` under `rule`, before rounding.
fn group_scale(
    family: &Family,
    rule: ScaleRule,
    weights: &[f32],
    importance: Option<&[f32]>,
    q: f64,
) -> Result<f64> {
    match rule {
        ScaleRule::Fixed { a, .. } => Ok(a),
        ScaleRule::MaxAbs => {
            let amax = search::check_group(weights, importance)?;
            Ok(if amax < f64::from(f32::MIN_POSITIVE) {
                // As the per-group fit treats a group of zeros and subnormals.
                if family.has_zero() {
                    1.0
                } else {
                    f64::from(f32::MIN_POSITIVE)
                }
            } else {
                amax
            })
        }
        _ => {
            if rule == ScaleRule::OutputMse && importance.is_none() {
                return Err(Error::MissingSqMean);
            }
            let stats = GroupStats::for_rule(rule, weights, importance)?;
            if stats.amax() < f64::from(f32::MIN_POSITIVE) {
                return Ok(if family.has_zero() { 1.0 } else { stats.amax() });
            }
            Ok(search::fit_a(family, rule, &stats, q))
        }
    }
}

#[cfg(feature = "alloc")]
/// Of the stored scale `h` and its two `f16` neighbours, the one whose codebook scores best
/// under `rule`: rounding to the nearest `f16` is not always the best stored scale, and for
/// the correlation (which jumps where a level crosses a weight) it can be far from it.
fn best_neighbour(
    family: &Family,
    rule: ScaleRule,
    weights: &[f32],
    importance: Option<&[f32]>,
    h: u16,
    q: f32,
) -> Result<u16> {
    let stats = GroupStats::for_rule(rule, weights, importance)?;
    let mut best: Option<(Quality, u16)> = None;
    for candidate in [h, h.saturating_sub(1), h.saturating_add(1)] {
        let a = f16_value(candidate);
        if !(a.is_finite() && a >= F16_MIN_POSITIVE) {
            continue;
        }
        let Ok(codebook) = family.codebook(Params { a, q }) else {
            continue;
        };
        let quality = Quality::of(rule, &stats, codebook.levels(), f64::from(a));
        if best.as_ref().is_none_or(|(b, _)| quality.better_than(b)) {
            best = Some((quality, candidate));
        }
    }
    Ok(best.map_or(h, |(_, c)| c))
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::scheme::Scheme;

    /// The largest finite `f16`.
    const F16_MAX: f32 = 65504.0;

    #[test]
    fn every_f16_reads_back_to_its_own_bits() {
        for h in 0..=u16::MAX {
            let v = f16_value(h);
            if v.is_nan() {
                assert!(f16_value(f16_bits(v)).is_nan(), "{h:#06x}");
            } else {
                assert_eq!(f16_bits(v), h, "{h:#06x} -> {v}");
            }
        }
    }

    #[test]
    fn the_kernels_fast_reading_of_positive_scales_is_exact() {
        for h in 1..0x7c00u16 {
            assert_eq!(
                crate::isa::portable::f16_positive(h).to_bits(),
                f16_value(h).to_bits(),
                "{h:#06x}"
            );
        }
    }

    #[test]
    fn f32_rounds_to_the_nearest_f16_ties_to_even() {
        let mut state = 0x9e37_79b9u32;
        let mut ties = 0;
        for i in 0..200_000u32 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            // Magnitudes from far below the subnormals to past the largest f16, and every
            // tenth value exactly halfway between two f16s.
            let exp = 100 + (state >> 8) % 45;
            let mut v = f32::from_bits((exp << 23) | (state & 0x007f_ffff));
            if i % 10 == 0 {
                let h = f16_bits(v);
                let (lo, hi) = (f16_value(h), f16_value(h + 1));
                if lo.is_finite() && hi.is_finite() {
                    v = lo + (hi - lo) / 2.0;
                }
            }
            let h = f16_bits(v);
            let got = f16_value(h);
            if got.is_infinite() {
                assert!(v >= F16_MAX + 16.0, "{v}");
                continue;
            }
            let err = (f64::from(got) - f64::from(v)).abs();
            for n in [h.wrapping_sub(1), h + 1] {
                let other = f16_value(n);
                if other.is_finite() && n & 0x8000 == 0 {
                    let e = (f64::from(other) - f64::from(v)).abs();
                    assert!(err <= e, "{v}: {got} is not nearer than {other}");
                    if err == e {
                        ties += 1;
                        assert_eq!(h & 1, 0, "{v}: tie not to even");
                    }
                }
            }
            assert_eq!(f16_bits(-v), h | 0x8000);
        }
        assert!(ties > 1000, "{ties}");
    }

    #[test]
    fn a_row_shares_q_and_each_scale_is_its_groups_under_max_abs() {
        let family = Family::new(Scheme::Exponential, 4, true).unwrap();
        let w: alloc::vec::Vec<f32> = (0..96)
            .map(|i| ((i * 37 % 96) as f32 - 48.0) / 48.0 * (1.0 + (i / 32) as f32))
            .collect();
        let mut scales = [0u16; 3];
        let q = fit_row(&family, ScaleRule::MaxAbs, &w, None, 32, &mut scales, 0).unwrap();
        assert!(q > 0.0 && q < 1.0);
        for (s, group) in scales.iter().zip(w.chunks(32)) {
            let amax = group.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert_eq!(*s, f16_bits(amax));
        }
    }

    #[test]
    fn scales_past_the_f16_range_are_an_error() {
        let family = Family::new(Scheme::Linear, 4, true).unwrap();
        let w = [1.0e5f32, -3.0, 2.0, 0.5];
        let mut scales = [0u16; 2];
        let err = fit_row(&family, ScaleRule::MaxAbs, &w, None, 2, &mut scales, 7).unwrap_err();
        assert!(
            matches!(err, Error::UnfittableGroup { group: 7, .. }),
            "{err}"
        );
    }
}
