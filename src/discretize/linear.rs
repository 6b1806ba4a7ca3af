use super::{Discretizer, Family, Params, ScaleRule, Scheme};
use crate::codebook::Codebook;
use crate::error::Result;
use crate::float::Real;

/// Uniformly spaced levels `k·Δ` (or mid-rise `(k + ½)·Δ` without the zero level), `a` being
/// the largest magnitude.
///
/// ```
/// use expquant::discretize::{Discretizer, Linear};
/// use expquant::ScaleRule;
/// let cb = Linear::new(3, ScaleRule::MaxAbs).fit(&[0.5f32, -1.5, 0.2, 0.9], None)?;
/// assert_eq!(cb.levels(), &[-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5]);
/// # Ok::<(), expquant::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Linear {
    /// Bits per code, 1..=8 (checked when fitting).
    pub bits: u8,
    /// How `a` is chosen.
    pub rule: ScaleRule,
    /// Whether zero is a level (default `true`).
    pub zero_level: bool,
}

impl Linear {
    /// A linear discretizer with the zero level.
    pub fn new(bits: u8, rule: ScaleRule) -> Self {
        Linear {
            bits,
            rule,
            zero_level: true,
        }
    }

    fn family(&self) -> Result<Family> {
        Family::new(Scheme::Linear, self.bits, self.zero_level)
    }
}

impl<T: Real> Discretizer<T> for Linear {
    fn fit_params(&self, weights: &[T], importance: Option<&[T]>) -> Result<Params<T>> {
        self.family()?.fit(self.rule, weights, importance)
    }

    fn codebook(&self, params: Params<T>) -> Result<Codebook<T>> {
        self.family()?.codebook(params)
    }
}
