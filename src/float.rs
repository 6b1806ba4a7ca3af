//! The float types the crate is generic over.

use core::fmt::{Debug, Display};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A weight type: `f32` or `f64`.
///
/// Fitting runs in `f64` whatever the weight type, so that prefix sums over millions of
/// weights keep their precision; this trait supplies the lossless widening and the
/// (round-to-nearest) narrowing. It is sealed: the kernels rely on the exact IEEE semantics
/// of these two types.
pub trait Real:
    num_traits::Float + Debug + Display + Default + Send + Sync + 'static + sealed::Sealed
{
    /// Widen to `f64` (exact).
    fn widen(self) -> f64;
    /// Narrow from `f64`, rounding to nearest.
    fn narrow(x: f64) -> Self;
}

impl Real for f32 {
    #[inline]
    fn widen(self) -> f64 {
        f64::from(self)
    }
    #[inline]
    fn narrow(x: f64) -> Self {
        x as f32
    }
}

impl Real for f64 {
    #[inline]
    fn widen(self) -> f64 {
        self
    }
    #[inline]
    fn narrow(x: f64) -> Self {
        x
    }
}

/// `f64` functions that `core` lacks, through `num-traits` (which uses `libm` without `std`).
pub(crate) mod math {
    use num_traits::Float;

    #[inline]
    pub fn sqrt(x: f64) -> f64 {
        Float::sqrt(x)
    }
    #[inline]
    pub fn ln(x: f64) -> f64 {
        Float::ln(x)
    }
    #[inline]
    pub fn exp(x: f64) -> f64 {
        Float::exp(x)
    }
    #[inline]
    pub fn log10(x: f64) -> f64 {
        Float::log10(x)
    }
}
