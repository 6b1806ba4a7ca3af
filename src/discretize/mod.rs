//! Level families and how their parameters are fitted to a group of weights.
//!
//! A [`Family`] (scheme, bit width, zero-level switch) fits its parameters to one group of
//! weights (and optionally an importance per weight) under a [`ScaleRule`] and turns them
//! into a [`Codebook`]; the [`Discretizer`] trait is that interface, generic over the weight
//! type. Both families are symmetric: the level set is `{±m}` for a set of magnitudes `m`,
//! plus zero unless the zero level is switched off.
//!
//! | scheme | zero level on (2^n − 1 levels) | zero level off (2^n levels) |
//! |---|---|---|
//! | [`Scheme::Linear`] | `k·Δ`, `Δ = a / (2^(n−1) − 1)` | `(k + ½)·Δ`, `Δ = a / (2^(n−1) − ½)` |
//! | [`Scheme::Exponential`] | `0, a·q^k`, `k < 2^(n−1) − 1` | `a·q^k`, `k < 2^(n−1)` |
//!
//! At one bit both are `{−a, +a}` whatever the zero-level switch says.
//!
//! ```
//! use expquant::discretize::{Discretizer, Family};
//! use expquant::{ScaleRule, Scheme};
//! let linear = Family::new(Scheme::Linear, 3, true)?;
//! let cb = linear.fit(ScaleRule::MaxAbs, &[0.5f32, -1.5, 0.2, 0.9], None)?;
//! assert_eq!(cb.levels(), &[-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5]);
//!
//! let exponential = Family::new(Scheme::Exponential, 3, true)?;
//! let fixed = ScaleRule::Fixed { a: 2.0, q: 0.5 };
//! let cb = Discretizer::<f64>::fit(&exponential, fixed, &[0.3, -1.0], None)?;
//! assert_eq!(cb.levels(), &[-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0]);
//! # Ok::<(), expquant::Error>(())
//! ```

#[cfg(feature = "alloc")]
mod lanes;
#[cfg(feature = "alloc")]
pub(crate) mod search;
pub(crate) mod shared;
#[cfg(feature = "alloc")]
mod small;

use crate::codebook::Codebook;
use crate::error::{Error, Result};
use crate::float::Real;
#[cfg(feature = "alloc")]
use crate::scheme::ScaleRule;
use crate::scheme::{Params, Scheme};

const LEVELS_NOT_DISTINCT: &str = "the levels are not distinct and finite in this float type";

mod sealed {
    /// Only this crate's level families implement [`Discretizer`](super::Discretizer).
    pub trait Sealed {}
}

/// Fits a codebook to a group of weights.
///
/// Sealed: [`Family`] is the one implementation. A stored tensor records only its family's
/// code (scheme, bits, zero-level flag) and each group's parameters; the byte format, the
/// views and the C ABI rebuild every codebook from those, so a family defined outside the
/// crate could be fitted but never stored, loaded or used from C.
#[cfg(feature = "alloc")]
pub trait Discretizer<T: Real>: sealed::Sealed {
    /// Fits the family's parameters to `weights` under `rule`, each weight weighted by its
    /// `importance` (all ones when `None`). Errors on an empty group, a non-finite weight, or
    /// an importance slice of the wrong length or with a negative or non-finite value.
    fn fit_params(
        &self,
        rule: ScaleRule,
        weights: &[T],
        importance: Option<&[T]>,
    ) -> Result<Params<T>>;

    /// The codebook that `params` describe.
    fn codebook(&self, params: Params<T>) -> Result<Codebook<T>>;

    /// [`fit_params`](Self::fit_params) followed by [`codebook`](Self::codebook).
    fn fit(&self, rule: ScaleRule, weights: &[T], importance: Option<&[T]>) -> Result<Codebook<T>> {
        let params = self.fit_params(rule, weights, importance)?;
        self.codebook(params)
    }
}

/// A symmetric level family: scheme, bit width and zero-level switch. It knows the shape of
/// its magnitudes (`a·c_k`), so every fit and codebook is built from one description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Family {
    pub(crate) scheme: Scheme,
    pub(crate) bits: u8,
    pub(crate) zero_level: bool,
}

impl sealed::Sealed for Family {}

#[cfg(feature = "alloc")]
impl<T: Real> Discretizer<T> for Family {
    fn fit_params(
        &self,
        rule: ScaleRule,
        weights: &[T],
        importance: Option<&[T]>,
    ) -> Result<Params<T>> {
        self.fit_group(rule, weights, importance)
    }

    fn codebook(&self, params: Params<T>) -> Result<Codebook<T>> {
        Family::codebook(self, params)
    }
}

impl Family {
    /// The family of `scheme` at `bits` bits (1..=8, else [`Error::InvalidBits`]), with zero
    /// as a level when `zero_level` is set (ignored at one bit).
    pub fn new(scheme: Scheme, bits: u8, zero_level: bool) -> Result<Self> {
        crate::pack::check_bits(bits)?;
        Ok(Family {
            scheme,
            bits,
            zero_level,
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Bits per code.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// The zero-level switch as given (see [`has_zero`](Self::has_zero)).
    pub fn zero_level(&self) -> bool {
        self.zero_level
    }

    /// Whether zero is one of the levels (never at one bit).
    pub fn has_zero(&self) -> bool {
        self.zero_level && self.bits > 1
    }

    /// Number of non-zero magnitudes.
    pub(crate) fn magnitude_count(&self) -> usize {
        let half = 1usize << (self.bits - 1);
        if self.has_zero() {
            half - 1
        } else {
            half
        }
    }

    /// Whether `q` changes the levels (exponential with two or more magnitudes).
    pub(crate) fn uses_q(&self) -> bool {
        self.scheme == Scheme::Exponential && self.magnitude_count() > 1
    }

    /// Writes the non-zero magnitudes for `a = 1`, ascending, into `out` and returns how many.
    pub(crate) fn unit_magnitudes(&self, q: f64, out: &mut [f64; 128]) -> usize {
        self.for_each_unit(q, |i, c| out[i] = c);
        self.magnitude_count()
    }

    /// Calls `f(i, c_i)` for the `K` non-zero magnitudes `c_i` for `a = 1` (index `i`
    /// ascending with magnitude). The one place their formulas live, so fitting, encoding
    /// and decoding agree to the bit.
    #[inline]
    fn for_each_unit(&self, q: f64, mut f: impl FnMut(usize, f64)) {
        self.for_each_unit_lanes(&[q], |i, c| f(i, c[0]));
    }

    /// [`for_each_unit`](Self::for_each_unit) for `N` values of `q` at once, in `f64` or
    /// `f32`: `f(i, c)` gets magnitude `i` of every `q` side by side, so fitting can build many
    /// candidates' levels with vector arithmetic. Each lane does the same operations in the
    /// same order as a single `q` would.
    #[inline(always)]
    fn for_each_unit_lanes<F: num_traits::Float, const N: usize>(
        &self,
        q: &[F; N],
        mut f: impl FnMut(usize, &[F; N]),
    ) {
        let k = self.magnitude_count();
        let real = |v: f64| F::from(v).unwrap_or_else(F::nan);
        match self.scheme {
            Scheme::Linear => {
                // Zero on: k·Δ with Δ = 1/K. Off: (k + ½)·Δ with Δ = 1/(K − ½).
                let (offset, denom) = if self.has_zero() {
                    (1.0, k as f64)
                } else {
                    (0.5, k as f64 - 0.5)
                };
                for i in 0..k {
                    f(i, &[real(i as f64 + offset) / real(denom); N]);
                }
            }
            Scheme::Exponential => {
                // From the top down: 1, q, q², … so the top level is exactly `a`.
                let mut m = [F::one(); N];
                for i in (0..k).rev() {
                    f(i, &m);
                    for (m, &q) in m.iter_mut().zip(q) {
                        *m = *m * q;
                    }
                }
            }
        }
    }

    /// Checks that `(a, q)` describe distinct finite levels in `T`.
    pub(crate) fn check_params(&self, a: f64, q: f64) -> Result<()> {
        // A family without a ratio reports none: its `q` is a placeholder.
        let shown_q = if self.uses_q() { q } else { f64::NAN };
        let bad = |reason| {
            Err(Error::InvalidParameters {
                a,
                q: shown_q,
                reason,
            })
        };
        if !(a.is_finite() && a > 0.0) {
            return bad("a must be finite and > 0");
        }
        if self.uses_q() && !(q > 0.0 && q < 1.0) {
            return bad("q must lie strictly between 0 and 1");
        }
        Ok(())
    }

    /// Writes the levels of `(a, q)`, ascending, into `out` and returns how many. Encoding and
    /// every decoding path take their levels from here, so they agree to the bit.
    ///
    /// `out` must hold [`level_count`](Self::level_count) levels (256 always does).
    pub(crate) fn levels_into<T: Real, const N: usize>(
        &self,
        params: Params<T>,
        out: &mut [T; N],
    ) -> usize {
        // Written in place (no scratch array): GEMV rebuilds a table per row, so this is on
        // a hot path.
        let k = self.magnitude_count();
        let zero = usize::from(self.has_zero());
        let positive = k + zero;
        self.for_each_unit(params.q.widen(), |i, c| {
            out[positive + i] = params.a * T::narrow(c);
        });
        if zero == 1 {
            out[k] = T::zero();
        }
        for i in 0..k {
            out[k - 1 - i] = -out[positive + i];
        }
        2 * k + zero
    }

    /// The number of levels.
    pub fn level_count(&self) -> usize {
        2 * self.magnitude_count() + usize::from(self.has_zero())
    }

    /// Whether the levels of `(a, q)` are what [`Codebook::new`] requires: distinct and finite
    /// in `T`. The levels are the magnitudes `a·c_i`, their exact negations and perhaps zero,
    /// so that holds exactly when the magnitudes are finite, strictly ascending and the
    /// smallest is above zero; checking the `K` magnitudes needs no level table.
    fn levels_distinct_and_finite<T: Real>(&self, params: Params<T>) -> bool {
        let mut ok = true;
        let mut previous: Option<(usize, T)> = None;
        // `for_each_unit` visits the magnitudes in index order, up or down: each is compared
        // with its neighbour, which chains to the whole order.
        self.for_each_unit(params.q.widen(), |i, c| {
            let m = params.a * T::narrow(c);
            ok &= m.is_finite();
            if let Some((j, p)) = previous {
                ok &= if i > j { p < m } else { m < p };
            }
            if i == 0 {
                ok &= m > T::zero();
            }
            previous = Some((i, m));
        });
        ok
    }

    /// [`check_params`](Self::check_params), then that the levels are distinct and finite in
    /// `T`: the checks every codebook needs.
    fn check_levels<T: Real>(&self, params: Params<T>) -> Result<()> {
        let (a, q) = (params.a.widen(), params.q.widen());
        self.check_params(a, q)?;
        if self.levels_distinct_and_finite(params) {
            Ok(())
        } else {
            Err(Error::InvalidParameters {
                a,
                q: if self.uses_q() { q } else { f64::NAN },
                reason: LEVELS_NOT_DISTINCT,
            })
        }
    }

    /// Makes `encoder` the encoder of `params`' codebook, with [`codebook`](Self::codebook)'s
    /// checks but without building the codebook.
    pub(crate) fn encoder_into(
        &self,
        params: Params<f32>,
        encoder: &mut crate::kernels::Encoder,
    ) -> Result<()> {
        self.check_levels(params)?;
        // Small families (every per-group width) fill a small table: zeroing 1 KiB per group
        // would cost a tenth of a small group's encoding.
        if self.level_count() <= 32 {
            self.refill_through::<32>(params, encoder);
        } else {
            self.refill_through::<256>(params, encoder);
        }
        Ok(())
    }

    /// Refills `encoder` from the levels of `params`, written to a table of `N` (at least
    /// [`level_count`](Self::level_count)).
    fn refill_through<const N: usize>(
        &self,
        params: Params<f32>,
        encoder: &mut crate::kernels::Encoder,
    ) {
        let mut levels = [0.0f32; N];
        let n = self.levels_into(params, &mut levels);
        encoder.refill(&levels[..n]);
    }

    /// The codebook of parameters `(a, q)` in `T`.
    pub fn codebook<T: Real>(&self, params: Params<T>) -> Result<Codebook<T>> {
        self.check_levels(params)?;
        let mut levels = [T::zero(); 256];
        let n = self.levels_into(params, &mut levels);
        Codebook::new(&levels[..n])
    }

    /// Fits `(a, q)` to a group under `rule`.
    #[cfg(feature = "alloc")]
    pub(crate) fn fit_group<T: Real>(
        &self,
        rule: ScaleRule,
        weights: &[T],
        importance: Option<&[T]>,
    ) -> Result<Params<T>> {
        let one = T::one();
        if let ScaleRule::Fixed { a, q } = rule {
            let q = if self.uses_q() { q } else { 1.0 };
            self.check_params(a, q)?;
            return Ok(Params {
                a: T::narrow(a),
                q: T::narrow(q),
            });
        }
        if rule == ScaleRule::OutputMse && importance.is_none() {
            return Err(Error::MissingSqMean);
        }
        if rule == ScaleRule::MaxAbs
            && self.uses_q()
            && weights.len() <= lanes::MAX_WEIGHTS
            && self.magnitude_count() <= lanes::MAX_MAGNITUDES
        {
            let amax = search::check_group(weights, importance)?;
            if amax < T::min_positive_value().widen() {
                return self.tiny_group_params(amax);
            }
            let q = lanes::fit_max_abs(self, weights, importance, amax);
            return self.fitted_params(amax, q, amax);
        }
        let stats = search::GroupStats::for_rule(rule, weights, importance)?;
        let amax = stats.amax();
        if amax < T::min_positive_value().widen() {
            return self.tiny_group_params(amax);
        }
        let (a, q) = search::fit(self, rule, &stats);
        if rule != ScaleRule::Correlation {
            return self.fitted_params(a, q, amax);
        }
        // Rounding (a, q) to T can push a level across a weight when the optimum sits at
        // the edge of an assignment. The squared error is continuous there, so that costs
        // nothing; the correlation jumps, so for it score the nearest representable
        // neighbours with their real levels and keep the best.
        let a = a.min(T::max_value().widen());
        let nudge = T::epsilon().widen() * 4.0;
        let q_choices: &[f64] = if self.uses_q() {
            &[0.0, -nudge, nudge]
        } else {
            &[0.0]
        };
        let mut best: Option<(search::Quality, Params<T>)> = None;
        // One level table for every neighbour, filled as `codebook` fills its own (a
        // `Codebook` per neighbour would zero and copy kilobytes of tables it does not use).
        let mut levels = [T::zero(); 256];
        for da in [0.0, -nudge, nudge] {
            for &dq in q_choices {
                let candidate = Params {
                    a: T::narrow(a * (1.0 + da)),
                    q: if self.uses_q() {
                        T::narrow(q * (1.0 + dq))
                    } else {
                        one
                    },
                };
                // A neighbour `codebook` would refuse is skipped.
                if self.check_levels(candidate).is_err() {
                    continue;
                }
                let n = self.levels_into(candidate, &mut levels);
                let quality = search::Quality::of(rule, &stats, &levels[..n], candidate.a.widen());
                if best.as_ref().is_none_or(|(b, _)| quality.better_than(b)) {
                    best = Some((quality, candidate));
                }
            }
        }
        match best {
            Some((_, p)) => Ok(p),
            None => self.fitted_params(a, q, amax),
        }
    }

    /// The parameters of a group whose largest `|w|` (`amax`) is below `T`'s smallest
    /// normal value: zeros and subnormals, too few representable values to fit levels to.
    /// With a zero level the group is treated as all zeros (`a = 1`, so each weight
    /// decodes to zero, or to the smallest level when it lies above half of it, both within
    /// `|w|` of the weight); without one `a` is the smallest normal value, so every weight
    /// decodes to a value of its own sign no larger than that.
    #[cfg(feature = "alloc")]
    fn tiny_group_params<T: Real>(&self, amax: f64) -> Result<Params<T>> {
        let a = if self.has_zero() {
            1.0
        } else {
            T::min_positive_value().widen()
        };
        self.fitted_params(a, search::DEFAULT_Q, amax)
    }

    /// [`valid_params`](Self::valid_params) for a fit to weights whose largest magnitude is
    /// `amax`: a fit that finds no valid codebook blames the weights, not parameters the
    /// caller never gave. The group index is filled in by the caller.
    #[cfg(feature = "alloc")]
    fn fitted_params<T: Real>(&self, a: f64, q: f64, amax: f64) -> Result<Params<T>> {
        self.valid_params(a, q).map_err(|_| Error::UnfittableGroup {
            group: 0,
            max_abs: amax,
        })
    }

    /// `(a, q)` in `T`, with `a` clamped to `T`'s largest finite value (a fitted scale may
    /// exceed it when the weights come close to it) and `q` raised toward 1 if its levels are
    /// not distinct and finite in `T`.
    #[cfg(feature = "alloc")]
    fn valid_params<T: Real>(&self, a: f64, q: f64) -> Result<Params<T>> {
        let one = T::one();
        let params = Params {
            a: T::narrow(a.min(T::max_value().widen())),
            q: if self.uses_q() { T::narrow(q) } else { one },
        };
        // The search keeps q inside a range whose levels stay distinct in f64; a narrower
        // type can still flush the smallest ones to zero or merge them, so raise q toward 1
        // (a narrower dynamic range) until the codebook is valid.
        let mut p = params;
        for _ in 0..64 {
            if self.check_levels(p).is_ok() {
                return Ok(p);
            }
            if !self.uses_q() {
                break;
            }
            let qf = p.q.widen();
            p.q = T::narrow(qf + (1.0 - qf) * 0.5);
        }
        self.codebook(p).map(|_| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference for [`Family::levels_distinct_and_finite`]: build every level and
    /// check the whole ascending table.
    fn table_distinct_and_finite<T: Real>(family: &Family, params: Params<T>) -> bool {
        let mut levels = [T::zero(); 256];
        let n = family.levels_into(params, &mut levels);
        levels[..n].iter().all(|l| l.is_finite()) && levels[..n].windows(2).all(|w| w[0] < w[1])
    }

    /// Scales and ratios from ordinary to the edges of `f32` and `f64`: subnormal and huge
    /// scales, ratios so small the levels underflow and so close to 1 that they merge.
    fn edge_or_ordinary(edges: &'static [f64], lo: f64, hi: f64) -> BoxedStrategy<f64> {
        prop_oneof![
            proptest::sample::select(edges),
            lo..hi,
            // Log-uniform, to reach tiny values often.
            (-320.0f64..0.0).prop_map(|e| 10f64.powf(e)),
        ]
        .boxed()
    }

    proptest! {
        /// The GEMV kernels make a group's levels as `a` times the levels of `(1, q)`, made
        /// once per `q`, and rely on getting `levels_into`'s bits.
        #[test]
        fn levels_are_a_times_the_unit_levels_to_the_bit(
            linear in any::<bool>(),
            bits in 1u8..=8,
            zero in any::<bool>(),
            a in 1e-6f32..1e6,
            q in 0.05f32..0.999,
        ) {
            let scheme = if linear { Scheme::Linear } else { Scheme::Exponential };
            let family = Family::new(scheme, bits, zero).unwrap();
            let (mut levels, mut unit) = ([0.0f32; 256], [0.0f32; 256]);
            let n = family.levels_into(Params { a, q }, &mut levels);
            prop_assert_eq!(family.levels_into(Params { a: 1.0, q }, &mut unit), n);
            for k in 0..n {
                prop_assert_eq!((a * unit[k]).to_bits(), levels[k].to_bits(), "level {}", k);
            }
        }

        #[test]
        fn magnitude_check_agrees_with_the_level_table(
            exponential in any::<bool>(),
            bits in 1u8..=8,
            zero_level in any::<bool>(),
            a in edge_or_ordinary(&[1e-45, 1e-40, 1e-38, 1.0, 3e38, 1e300, f64::MAX], 0.0, 10.0),
            q in edge_or_ordinary(&[1e-10, 0.01, 0.5, 0.999_999, 1.0 - 1e-9, 1.0 - 1e-15], 0.0, 1.0),
        ) {
            let scheme = if exponential { Scheme::Exponential } else { Scheme::Linear };
            let family = Family::new(scheme, bits, zero_level).unwrap();
            let p32 = Params { a: a as f32, q: q as f32 };
            prop_assert_eq!(
                family.levels_distinct_and_finite(p32),
                table_distinct_and_finite(&family, p32)
            );
            let p64 = Params { a, q };
            prop_assert_eq!(
                family.levels_distinct_and_finite(p64),
                table_distinct_and_finite(&family, p64)
            );
        }
    }
}
