use super::{Discretizer, Family, Params, ScaleRule, Scheme};
use crate::codebook::Codebook;
use crate::error::Result;
use crate::float::Real;

/// One sign bit and `n − 1` magnitude bits: magnitudes `{0} ∪ {a·q^k}` (or only `a·q^k`
/// without the zero level), `0 < q < 1`.
///
/// ```
/// use expquant::discretize::{Discretizer, Exponential};
/// use expquant::ScaleRule;
/// let fixed = Exponential::new(3, ScaleRule::Fixed { a: 2.0, q: 0.5 });
/// let cb = Discretizer::<f64>::fit(&fixed, &[0.3, -1.0], None)?;
/// assert_eq!(cb.levels(), &[-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0]);
/// # Ok::<(), expquant::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exponential {
    /// Bits per code, 1..=8 (checked when fitting).
    pub bits: u8,
    /// How `a` and `q` are chosen.
    pub rule: ScaleRule,
    /// Whether zero is a level (default `true`).
    pub zero_level: bool,
}

impl Exponential {
    /// An exponential discretizer with the zero level.
    pub fn new(bits: u8, rule: ScaleRule) -> Self {
        Exponential {
            bits,
            rule,
            zero_level: true,
        }
    }

    fn family(&self) -> Result<Family> {
        Family::new(Scheme::Exponential, self.bits, self.zero_level)
    }
}

impl<T: Real> Discretizer<T> for Exponential {
    fn fit_params(&self, weights: &[T], importance: Option<&[T]>) -> Result<Params<T>> {
        self.family()?.fit(self.rule, weights, importance)
    }

    fn codebook(&self, params: Params<T>) -> Result<Codebook<T>> {
        self.family()?.codebook(params)
    }
}
