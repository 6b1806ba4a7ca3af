//! Nearest-level encoding of `f32` weights to codes, vectorized and code for code the
//! codebook's own rule.

use crate::codebook::Codebook;
use crate::error::{Error, Result};
use crate::isa::Isa;
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon")
))]
use crate::isa::Path;

/// Nearest-level encoding of `f32` weights, code for code identical to
/// [`Codebook::encode`], but branch-free and vectorized.
///
/// Each `f64` threshold `t` of the codebook, with its tie rule (`x >= t` below zero, `x > t`
/// at or above), becomes one `f32` cut `c` with `x > c` exactly when the rule holds, for every
/// `f32` `x`. That is possible because no `f32` lies strictly between `t` and its `f32`
/// rounding: if `t` rounds up to `r`, the rule holds iff `x >= r`, i.e. `x > pred(r)`; if it
/// rounds down (or is exact and strict), iff `x > r`. The code is then the number of cuts below
/// `x`, counted with SIMD compares for up to 31 cuts and by a branch-free binary search
/// otherwise. NaN compares false everywhere and gets code 0, as in the reference.
///
/// ```
/// use expquant::{kernels::Encoder, Codebook};
/// let cb = Codebook::new(&[-1.0f32, 0.0, 0.5, 1.0])?;
/// let mut codes = [0u8; 4];
/// Encoder::new(&cb).encode(&[0.3, 0.25, -0.5, 7.0], &mut codes)?;
/// assert_eq!(codes, [2, 1, 1, 3]);
/// # Ok::<(), expquant::Error>(())
/// ```
#[derive(Clone)]
pub struct Encoder {
    len: usize,
    /// Strict cuts, ascending, padded with +∞ to 255 for the binary search.
    cuts: [f32; 255],
}

impl core::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Encoder")
            .field("cuts", &&self.cuts[..self.len])
            .finish()
    }
}

/// The `f32` cut `c` with `x > c` exactly when `x` lies on the upper side of threshold `t`
/// under the codebook's tie rule (see [`Encoder`]).
pub(crate) fn strict_cut(t: f64) -> f32 {
    let inclusive = t < 0.0;
    let r = t as f32;
    let rw = f64::from(r);
    if rw > t || (rw == t && inclusive) {
        next_down(r)
    } else {
        r
    }
}

/// The largest `f32` below `x` (`x` finite).
fn next_down(x: f32) -> f32 {
    if x == 0.0 {
        -f32::from_bits(1)
    } else if x > 0.0 {
        f32::from_bits(x.to_bits() - 1)
    } else {
        f32::from_bits(x.to_bits() + 1)
    }
}

impl Encoder {
    /// The encoder of a codebook.
    pub fn new(codebook: &Codebook<f32>) -> Self {
        let mut encoder = Self::empty();
        encoder.set_thresholds(codebook.thresholds().iter().copied());
        encoder
    }

    /// An encoder with no cuts yet (every value gets code 0), to be [`refill`](Self::refill)ed.
    pub(crate) fn empty() -> Self {
        Encoder {
            len: 0,
            cuts: [f32::INFINITY; 255],
        }
    }

    /// The encoder of levels that a [`Codebook`] would accept (1 to 256, finite, strictly
    /// ascending), without building one.
    #[cfg(test)]
    fn from_levels(levels: &[f32]) -> Self {
        let mut encoder = Self::empty();
        encoder.refill(levels);
        encoder
    }

    /// Makes this the encoder of `levels` (as for `from_levels`) in place: quantizing small
    /// groups needs an encoder per group, and filling a codebook (3 KiB) or moving a fresh
    /// encoder (1 KiB) for each would cost more than encoding the group.
    pub(crate) fn refill(&mut self, levels: &[f32]) {
        debug_assert!(Codebook::new(levels).is_ok());
        self.set_thresholds(
            levels
                .windows(2)
                .map(|pair| crate::codebook::midpoint(pair[0], pair[1])),
        );
    }

    fn set_thresholds(&mut self, thresholds: impl Iterator<Item = f64>) {
        let mut len = 0;
        for (c, t) in self.cuts.iter_mut().zip(thresholds) {
            *c = strict_cut(t);
            len += 1;
        }
        // The binary search reads past `len`: cuts left from a longer codebook go back to +∞.
        for c in &mut self.cuts[len..self.len.max(len)] {
            *c = f32::INFINITY;
        }
        self.len = len;
    }

    /// The code of one weight (the same as [`Codebook::encode`]).
    #[inline]
    pub fn encode_one(&self, x: f32) -> u8 {
        // Branch-free binary search over the +∞-padded cuts: `pos` counts cuts below `x`.
        let mut step = (self.len + 1).next_power_of_two() / 2;
        let mut pos = 0usize;
        while step > 0 {
            pos += usize::from(x > self.cuts[pos + step - 1]) * step;
            step /= 2;
        }
        pos as u8
    }

    /// Encodes `x` into `out` (same length) on the detected path.
    pub fn encode(&self, x: &[f32], out: &mut [u8]) -> Result<()> {
        self.encode_with(Isa::detect(), x, out)
    }

    /// [`encode`](Self::encode) on a chosen path (every path writes the same codes; the scalar
    /// and portable paths apply [`Codebook::encode`]'s rule through the cuts, one at a time).
    pub fn encode_with(&self, isa: Isa, x: &[f32], out: &mut [u8]) -> Result<()> {
        if x.len() != out.len() {
            return Err(Error::BufferLength {
                what: "encoded output",
                expected: x.len(),
                actual: out.len(),
            });
        }
        self.encode_unchecked(isa, x, out);
        Ok(())
    }

    pub(crate) fn encode_unchecked(&self, isa: Isa, x: &[f32], out: &mut [u8]) {
        let cuts = &self.cuts[..self.len];
        match isa.path() {
            #[cfg(target_arch = "x86_64")]
            Path::Avx512(t) if self.len <= 31 => t.encode_count(cuts, x, out),
            #[cfg(target_arch = "x86_64")]
            Path::Avx2(t) if self.len <= 31 => t.encode_count(cuts, x, out),
            #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
            Path::Neon(t) if self.len <= 31 => t.encode_count(cuts, x, out),
            _ => {
                let _ = cuts;
                for (c, &w) in out.iter_mut().zip(x) {
                    *c = self.encode_one(w);
                }
            }
        }
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;

    #[test]
    fn encoder_from_levels_has_the_codebook_encoders_cuts() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 10.0
        };
        for len in [1usize, 2, 3, 7, 15, 16, 31, 32, 100, 255, 256] {
            let mut levels: alloc::vec::Vec<f32> = (0..len).map(|_| next()).collect();
            levels.sort_by(f32::total_cmp);
            levels.dedup();
            // Exact midpoints, ties at zero and huge magnitudes exercise the rounding rule.
            if levels.len() >= 3 {
                levels[0] = -f32::MAX;
                let last = levels.len() - 1;
                levels[last] = f32::MAX;
            }
            let codebook = Codebook::new(&levels).unwrap();
            let from_codebook = Encoder::new(&codebook);
            let from_levels = Encoder::from_levels(&levels);
            assert_eq!(from_levels.len, from_codebook.len);
            assert_eq!(
                from_levels.cuts.map(f32::to_bits),
                from_codebook.cuts.map(f32::to_bits)
            );
        }
        // Refilling a long encoder with a short codebook leaves no stale cuts behind.
        let mut reused = Encoder::from_levels(&[-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]);
        reused.refill(&[-1.0, 1.0]);
        assert_eq!(
            reused.cuts.map(f32::to_bits),
            Encoder::from_levels(&[-1.0, 1.0]).cuts.map(f32::to_bits)
        );
        let symmetric = [-1.0f32, -0.25, 0.0, 0.25, 1.0];
        let from_levels = Encoder::from_levels(&symmetric);
        let from_codebook = Encoder::new(&Codebook::new(&symmetric).unwrap());
        assert_eq!(
            from_levels.cuts.map(f32::to_bits),
            from_codebook.cuts.map(f32::to_bits)
        );
    }
}
