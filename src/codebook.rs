//! Sorted levels, their decision thresholds, and nearest-level encoding.

use crate::error::{Error, Result};
use crate::float::Real;

/// The most levels a codebook can hold: every code of 8 bits.
pub const MAX_LEVELS: usize = 256;

/// Up to 256 sorted, finite, distinct levels and the thresholds halfway between neighbours.
///
/// A code is the index of its level in ascending order, so code 0 is the most negative level.
/// The codebook lives inline (no heap), so firmware can build one on the stack.
///
/// # Encoding rule
/// [`encode`](Self::encode) returns the level nearest to `x` in exact arithmetic: it compares
/// `x` with the midpoints between neighbouring levels, held in `f64` (exact for `f32` levels;
/// for `f64` levels a midpoint can round by half an ulp). A tie goes to the level of smaller
/// magnitude ("toward zero"); a tie between levels of equal magnitude (`x == 0` between `-c`
/// and `+c`) goes to the negative one. NaN encodes to code 0, the most negative level:
/// `encode` is the unchecked inner step, and every path from user weights to codes (the
/// crate's `quantize`) rejects NaN before it gets here.
///
/// ```
/// use expquant::Codebook;
/// let cb = Codebook::new(&[-1.0f32, 0.0, 0.5, 1.0])?;
/// assert_eq!(cb.encode(0.3), 2);
/// assert_eq!(cb.encode(0.25), 1); // a tie goes toward zero
/// assert_eq!(cb.decode(3), Some(1.0));
/// # Ok::<(), expquant::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct Codebook<T: Real> {
    len: usize,
    levels: [T; MAX_LEVELS],
    thresholds: [f64; MAX_LEVELS - 1],
}

impl<T: Real> core::fmt::Debug for Codebook<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Codebook")
            .field("levels", &self.levels())
            .finish()
    }
}

impl<T: Real> PartialEq for Codebook<T> {
    fn eq(&self, other: &Self) -> bool {
        self.levels() == other.levels()
    }
}

/// The decision threshold between neighbouring levels `lo < hi`, in `f64`: the one formula
/// every encoder derives its cuts from.
#[inline]
pub(crate) fn midpoint<T: Real>(lo: T, hi: T) -> f64 {
    // Halving each side first cannot overflow, unlike (l0 + l1) / 2 near f64::MAX.
    lo.widen() * 0.5 + hi.widen() * 0.5
}

impl<T: Real> Codebook<T> {
    /// Builds a codebook from raw levels, checking that there are 1 to 256 of them and that
    /// they are finite and strictly ascending.
    pub fn new(levels: &[T]) -> Result<Self> {
        if levels.is_empty() {
            return Err(Error::InvalidCodebook("no levels given"));
        }
        if levels.len() > MAX_LEVELS {
            return Err(Error::InvalidCodebook("more than 256 levels"));
        }
        if levels.iter().any(|l| !l.is_finite()) {
            return Err(Error::InvalidCodebook("a level is NaN or infinite"));
        }
        if levels.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::InvalidCodebook(
                "levels are not strictly ascending (sorted and distinct)",
            ));
        }
        let mut cb = Codebook {
            len: levels.len(),
            levels: [T::zero(); MAX_LEVELS],
            thresholds: [0.0; MAX_LEVELS - 1],
        };
        cb.levels[..levels.len()].copy_from_slice(levels);
        for (t, pair) in cb.thresholds.iter_mut().zip(levels.windows(2)) {
            *t = midpoint(pair[0], pair[1]);
        }
        Ok(cb)
    }

    /// The levels, ascending; code `c` decodes to `levels()[c]`.
    #[inline]
    pub fn levels(&self) -> &[T] {
        &self.levels[..self.len]
    }

    /// The `len() - 1` decision thresholds: `thresholds()[i]` lies halfway between level `i`
    /// and level `i + 1`.
    #[inline]
    pub fn thresholds(&self) -> &[f64] {
        &self.thresholds[..self.len - 1]
    }

    /// Number of levels.
    #[inline]
    #[allow(clippy::len_without_is_empty)] // a codebook always has at least one level
    pub fn len(&self) -> usize {
        self.len
    }

    /// The fewest bits whose codes can address every level.
    pub fn bits(&self) -> u8 {
        let mut bits = 1u8;
        while (1usize << bits) < self.len {
            bits += 1;
        }
        bits
    }

    /// The level of `code`, or `None` when the codebook has no such level.
    #[inline]
    pub fn decode(&self, code: u8) -> Option<T> {
        self.levels().get(usize::from(code)).copied()
    }

    /// The code of the level nearest to `x` (see the type's docs for ties and NaN).
    #[inline]
    pub fn encode(&self, x: T) -> u8 {
        let x = x.widen();
        // Crossing a negative threshold on equality moves toward zero; crossing a
        // non-negative one does not. Both predicates fall as t grows, so the count is a
        // partition point.
        self.thresholds()
            .partition_point(|&t| if t < 0.0 { x >= t } else { x > t }) as u8
    }
}
