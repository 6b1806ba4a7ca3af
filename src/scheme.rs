//! What a quantized tensor's levels are: the family ([`Scheme`]), how each group's parameters
//! are chosen ([`ScaleRule`]) and the fitted parameters themselves ([`Params`]).
//!
//! Each enum has one table from variant to the integer the byte format and the C ABI store
//! (`code()` / `TryFrom<u8>`) and one from variant to the name the README, the examples and
//! the command lines use (`Display` / `FromStr`). Nothing else converts them.

use core::fmt;
use core::str::FromStr;

use crate::error::{Error, Result};

/// The two families of the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// Uniformly spaced levels.
    Linear,
    /// Geometrically spaced magnitudes `a·q^k`.
    Exponential,
}

/// One enum's table: each variant with its stored code and its name.
pub(crate) struct CodeTable<T: 'static>(pub(crate) &'static [(T, u8, &'static str)]);

impl<T: Copy + PartialEq> CodeTable<T> {
    /// The code of `value` (`u8::MAX` for a variant the table lacks, which the tables' tests
    /// rule out).
    pub(crate) fn code(&self, value: T) -> u8 {
        self.0
            .iter()
            .find(|e| e.0 == value)
            .map_or(u8::MAX, |e| e.1)
    }

    /// The name of `value` (`?` for a variant the table lacks).
    pub(crate) fn name(&self, value: T) -> &'static str {
        self.0.iter().find(|e| e.0 == value).map_or("?", |e| e.2)
    }

    /// The variant stored as `code`, or [`Error::UnknownCode`] naming `what`.
    pub(crate) fn by_code(&self, code: u8, what: &'static str) -> Result<T> {
        self.0
            .iter()
            .find(|e| e.1 == code)
            .map(|e| e.0)
            .ok_or(Error::UnknownCode { what, code })
    }

    /// The variant named `name`, if any.
    pub(crate) fn by_name(&self, name: &str) -> Option<T> {
        self.0.iter().find(|e| e.2 == name).map(|e| e.0)
    }
}

const SCHEMES: CodeTable<Scheme> = CodeTable(&[
    (Scheme::Linear, 0, "linear"),
    (Scheme::Exponential, 1, "exponential"),
]);

impl Scheme {
    /// The code the byte format and the C ABI store for this scheme: 0 linear, 1 exponential.
    pub fn code(self) -> u8 {
        SCHEMES.code(self)
    }
}

impl TryFrom<u8> for Scheme {
    type Error = Error;

    /// The scheme stored as `code`; [`Error::UnknownCode`] for any other number.
    fn try_from(code: u8) -> Result<Self> {
        SCHEMES.by_code(code, "scheme")
    }
}

impl fmt::Display for Scheme {
    /// `linear` or `exponential`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(SCHEMES.name(*self))
    }
}

impl FromStr for Scheme {
    type Err = Error;

    /// `linear` or `exponential` (what [`Display`](fmt::Display) writes).
    fn from_str(s: &str) -> Result<Self> {
        SCHEMES.by_name(s).ok_or(Error::UnknownName {
            what: "scheme",
            expected: "linear or exponential",
        })
    }
}

/// How the parameters of a level family are chosen for each group.
///
/// Names (`Display` / `FromStr`): `max-abs`, `mse`, `correlation`, `output-mse`, and
/// `fixed:A,Q` with both numbers (`q` is still required for the linear family, which ignores
/// it, so that one string means one rule).
///
/// Codes (`code()` / `TryFrom<u8>`): 0 max-abs, 1 mse, 2 correlation, 3 output-mse, 4 fixed.
/// The fixed rule's code alone does not say its parameters, so `TryFrom<u8>` rejects 4 with
/// [`Error::UnknownCode`]; a stored tensor rebuilds it from its first group's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum ScaleRule {
    /// The paper's first method: `a = max|w|`; for the exponential family, `q` then minimizes
    /// the (importance-weighted) squared error. The default: on a real CNN it kept accuracy
    /// better than the MSE fit, although its weight error is higher.
    #[default]
    MaxAbs,
    /// `a` (and `q`) minimize `Σ importance·(w − Q(w))²`.
    Mse,
    /// The paper's Part II: `a` (and `q`) maximize the importance-weighted Pearson correlation
    /// between `w` and `Q(w)`.
    Correlation,
    /// `a` (and `q`) minimize `Σ_j E[x_j²]·(w − Q(w))²`, the output error left after bias
    /// correction; needs the inputs' mean squares, so only `calibrate::quantize_calibrated`
    /// accepts it. When fitting one group through the `Discretizer` trait it is
    /// [`Mse`](Self::Mse) with the importance the caller passes, which must then be given.
    OutputMse,
    /// Caller-given parameters (`q` is ignored by the linear family).
    Fixed {
        /// The largest magnitude.
        a: f64,
        /// The ratio between successive exponential magnitudes, in `(0, 1)`.
        q: f64,
    },
}

/// The parameterless rules with their codes and names; the fixed rule is code 4, `fixed:`.
const RULES: CodeTable<ScaleRule> = CodeTable(&[
    (ScaleRule::MaxAbs, 0, "max-abs"),
    (ScaleRule::Mse, 1, "mse"),
    (ScaleRule::Correlation, 2, "correlation"),
    (ScaleRule::OutputMse, 3, "output-mse"),
]);
const FIXED_CODE: u8 = 4;
const FIXED_PREFIX: &str = "fixed:";

impl ScaleRule {
    /// The code the byte format and the C ABI store for this rule (see the type's docs).
    pub fn code(self) -> u8 {
        match self {
            ScaleRule::Fixed { .. } => FIXED_CODE,
            rule => RULES.code(rule),
        }
    }

    /// The rule stored as `code`, the fixed rule taking its parameters from `fixed` (a stored
    /// tensor's first group, or the C configuration's `fixed_a` and `fixed_q`).
    pub(crate) fn from_code(code: u8, fixed: impl FnOnce() -> (f64, f64)) -> Result<Self> {
        if code == FIXED_CODE {
            let (a, q) = fixed();
            return Ok(ScaleRule::Fixed { a, q });
        }
        ScaleRule::try_from(code)
    }
}

impl TryFrom<u8> for ScaleRule {
    type Error = Error;

    /// The parameterless rule stored as `code`; [`Error::UnknownCode`] for the fixed rule's
    /// code (its parameters are not in it) and for any unknown number.
    fn try_from(code: u8) -> Result<Self> {
        RULES.by_code(code, "parameterless scale rule")
    }
}

impl fmt::Display for ScaleRule {
    /// `max-abs`, `mse`, `correlation`, `output-mse`, or `fixed:A,Q`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ScaleRule::Fixed { a, q } => write!(f, "{FIXED_PREFIX}{a},{q}"),
            rule => f.pad(RULES.name(rule)),
        }
    }
}

impl FromStr for ScaleRule {
    type Err = Error;

    /// What [`Display`](fmt::Display) writes; `fixed:A,Q` needs both numbers.
    fn from_str(s: &str) -> Result<Self> {
        const BAD: Error = Error::UnknownName {
            what: "scale rule",
            expected: "max-abs, mse, correlation, output-mse or fixed:A,Q",
        };
        if let Some(numbers) = s.strip_prefix(FIXED_PREFIX) {
            let (a, q) = numbers.split_once(',').ok_or(BAD)?;
            let a = a.trim().parse().map_err(|_| BAD)?;
            let q = q.trim().parse().map_err(|_| BAD)?;
            return Ok(ScaleRule::Fixed { a, q });
        }
        RULES.by_name(s).ok_or(BAD)
    }
}

/// The fitted parameters of a symmetric level family, in the weight type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params<T> {
    /// The largest magnitude.
    pub a: T,
    /// The ratio between successive exponential magnitudes (`1` for the linear family).
    pub q: T,
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn codes_and_names_round_trip() {
        for &(scheme, code, name) in SCHEMES.0 {
            assert_eq!(scheme.code(), code);
            assert_eq!(Scheme::try_from(code), Ok(scheme));
            assert_eq!(scheme.to_string(), name);
            assert_eq!(name.parse::<Scheme>(), Ok(scheme));
        }
        assert!(Scheme::try_from(2).is_err());
        assert!("Linear".parse::<Scheme>().is_err());
        for &(rule, code, name) in RULES.0 {
            assert_eq!(rule.code(), code);
            assert_eq!(ScaleRule::try_from(code), Ok(rule));
            assert_eq!(rule.to_string(), name);
            assert_eq!(name.parse::<ScaleRule>(), Ok(rule));
        }
        let fixed = ScaleRule::Fixed { a: 0.1, q: 0.75 };
        assert_eq!(fixed.code(), 4);
        assert!(ScaleRule::try_from(4).is_err());
        assert_eq!(ScaleRule::from_code(4, || (0.1, 0.75)), Ok(fixed));
        assert_eq!(fixed.to_string(), "fixed:0.1,0.75");
        assert_eq!(fixed.to_string().parse::<ScaleRule>(), Ok(fixed));
        assert!("fixed:0.1".parse::<ScaleRule>().is_err());
        assert!(ScaleRule::try_from(5).is_err());
    }
}
