//! [`Parts`]: what a quantized tensor is made of — shape, family, granularity, scale rule,
//! packed codes and per-group parameters — with the lengths checked against each other.
//!
//! Owned tensors hold `Parts<Vec<u8>>`, views `Parts<&[u8]>`; the byte format reads and
//! writes the same struct, so no tensor type has a constructor of its own for stored data.

use crate::codebook::Codebook;
use crate::discretize::Family;
use crate::error::{Error, Result};
use crate::layout::Granularity;
use crate::pack::{self, code_at};
use crate::scheme::{Params, ScaleRule};

/// How the per-group parameters are laid out in their byte buffer.
///
/// One variant today; a more compact one (a per-group `a` in `f16` and one shared `q`, with
/// a later format version) is another variant with its own [`len`](Self::len) and
/// [`read`](Self::read), and nothing else in `Parts` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamEncoding {
    /// Little-endian `f32`s per group: `a`, then `q` when the family uses it (`per_group`
    /// is 1 or 2).
    F32 { per_group: usize },
}

impl ParamEncoding {
    /// The encoding format version 1 uses for `family`.
    pub fn f32_for(family: Family) -> Self {
        ParamEncoding::F32 {
            per_group: 1 + usize::from(family.uses_q()),
        }
    }

    /// Bytes for `groups` groups, or `None` on overflow.
    pub fn len(self, groups: usize) -> Option<usize> {
        match self {
            ParamEncoding::F32 { per_group } => groups.checked_mul(4 * per_group),
        }
    }

    /// Group `group`'s parameters; `bytes` holds at least [`len`](Self::len)`(group + 1)`.
    #[inline]
    pub fn read(self, bytes: &[u8], group: usize) -> Params<f32> {
        match self {
            ParamEncoding::F32 { per_group } => {
                let at = group * per_group * 4;
                Params {
                    a: read_f32(bytes, at),
                    q: if per_group == 2 {
                        read_f32(bytes, at + 4)
                    } else {
                        1.0
                    },
                }
            }
        }
    }

    /// Writes `params` for consecutive groups into `out` ([`len`](Self::len) bytes).
    #[cfg(feature = "alloc")]
    pub fn write(self, params: &[Params<f32>], out: &mut [u8]) {
        match self {
            ParamEncoding::F32 { per_group } => {
                for (chunk, p) in out.chunks_exact_mut(4 * per_group).zip(params) {
                    chunk[..4].copy_from_slice(&p.a.to_le_bytes());
                    if per_group == 2 {
                        chunk[4..8].copy_from_slice(&p.q.to_le_bytes());
                    }
                }
            }
        }
    }

    /// Stored bits of parameters per group.
    pub fn bits_per_group(self) -> usize {
        match self {
            ParamEncoding::F32 { per_group } => 32 * per_group,
        }
    }
}

fn read_f32(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The shape and encoding of a tensor, before its buffers: what a header stores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Shape {
    pub rows: usize,
    pub cols: usize,
    pub family: Family,
    pub granularity: Granularity,
    pub rule: ScaleRule,
    pub encoding: ParamEncoding,
}

/// The lengths a [`Shape`] implies, each checked for overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lengths {
    pub groups: usize,
    pub row_bytes: usize,
    pub codes: usize,
    pub params: usize,
}

impl Shape {
    /// The lengths this shape implies; `Error::Corrupt` naming what does not fit.
    pub fn lengths(&self) -> Result<Lengths> {
        if self.rows == 0 || self.cols == 0 {
            return Err(Error::Corrupt("zero rows or columns"));
        }
        pack::check_bits(self.family.bits).map_err(|_| Error::Corrupt("bits outside 1..=8"))?;
        self.granularity
            .validate()
            .map_err(|_| Error::Corrupt("group size 0 for a per-group layout"))?;
        self.rows
            .checked_mul(self.cols)
            .ok_or(Error::Corrupt("rows x columns overflows"))?;
        let groups = self
            .granularity
            .group_count(self.rows, self.cols)
            .ok_or(Error::Corrupt("group count overflows"))?;
        let row_bytes = pack::packed_len(self.cols, self.family.bits)
            .ok_or(Error::Corrupt("row length overflows"))?;
        let codes = self
            .rows
            .checked_mul(row_bytes)
            .ok_or(Error::Corrupt("code length overflows"))?;
        let params = self
            .encoding
            .len(groups)
            .ok_or(Error::Corrupt("parameter length overflows"))?;
        Ok(Lengths {
            groups,
            row_bytes,
            codes,
            params,
        })
    }
}

/// A tensor's shape, encoding and buffers, the lengths consistent (checked by
/// [`new`](Self::new)). The contents are checked by [`validate_contents`](Self::validate_contents)
/// where they come from outside.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Parts<B> {
    shape: Shape,
    lengths: Lengths,
    codes: B,
    params: B,
}

impl<B: AsRef<[u8]>> Parts<B> {
    /// Parts from buffers whose lengths must be exactly those `shape` implies.
    pub fn new(shape: Shape, codes: B, params: B) -> Result<Self> {
        let lengths = shape.lengths()?;
        if codes.as_ref().len() != lengths.codes || params.as_ref().len() != lengths.params {
            return Err(Error::Corrupt(
                "buffer lengths do not match the shape and encoding",
            ));
        }
        Ok(Parts {
            shape,
            lengths,
            codes,
            params,
        })
    }

    /// These parts with the scale rule stored as `code`, the fixed rule taking its parameters
    /// from group 0.
    pub fn with_stored_rule(mut self, code: u8) -> Result<Self> {
        // Every shape has at least one group (`new` rejects zero rows or columns).
        let first = self.group_params(0);
        self.shape.rule = ScaleRule::from_code(code, || (f64::from(first.a), f64::from(first.q)))?;
        Ok(self)
    }

    /// The same parts, borrowed.
    pub fn borrowed(&self) -> Parts<&[u8]> {
        Parts {
            shape: self.shape,
            lengths: self.lengths,
            codes: self.codes.as_ref(),
            params: self.params.as_ref(),
        }
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    pub fn lengths(&self) -> &Lengths {
        &self.lengths
    }

    pub fn codes(&self) -> &[u8] {
        self.codes.as_ref()
    }

    pub fn param_bytes(&self) -> &[u8] {
        self.params.as_ref()
    }

    /// Group `group`'s parameters; the caller guarantees it exists.
    #[inline]
    pub fn group_params(&self, group: usize) -> Params<f32> {
        self.shape.encoding.read(self.params.as_ref(), group)
    }

    /// Group `group`'s parameters, or `None` past the last group.
    pub fn params(&self, group: usize) -> Option<Params<f32>> {
        (group < self.lengths.groups).then(|| self.group_params(group))
    }

    /// Group `group`'s codebook, or `None` past the last group.
    pub fn codebook(&self, group: usize) -> Option<Codebook<f32>> {
        self.shape.family.codebook(self.params(group)?).ok()
    }

    /// Stored bits per weight: codes and parameters, header excluded.
    pub fn bits_per_weight(&self) -> f64 {
        let params = self.lengths.groups * self.shape.encoding.bits_per_group();
        (self.lengths.codes as f64 * 8.0 + params as f64)
            / (self.shape.rows * self.shape.cols) as f64
    }

    /// Checks what [`new`](Self::new) does not: finite parameters with valid levels, codes
    /// that index a level, zero padding after each row's last code.
    pub fn validate_contents(&self) -> Result<()> {
        self.validate_params()?;
        self.validate_codes()
    }

    /// The parameter half of [`validate_contents`](Self::validate_contents): every group's
    /// parameters give a codebook of distinct finite levels. O(groups).
    pub fn validate_params(&self) -> Result<()> {
        let family = self.shape.family;
        for group in 0..self.lengths.groups {
            let p = self.group_params(group);
            if !(p.a.is_finite() && p.a > 0.0) {
                return Err(Error::Corrupt(
                    "a stored scale a is not finite and positive",
                ));
            }
            if family.uses_q() && !(p.q > 0.0 && p.q < 1.0) {
                return Err(Error::Corrupt("a stored ratio q is outside (0, 1)"));
            }
            // The same construction the encoder used: finite, strictly ascending levels.
            if family.codebook(p).is_err() {
                return Err(Error::Corrupt(
                    "stored parameters give levels that are not distinct and finite",
                ));
            }
        }
        Ok(())
    }

    /// The code half of [`validate_contents`](Self::validate_contents): zero padding after
    /// each row and, where some code has no level, every code in range. O(codes).
    pub fn validate_codes(&self) -> Result<()> {
        let family = self.shape.family;
        let bits = family.bits;
        let levels = family.level_count();
        let cols = self.shape.cols;
        let row_bytes = self.lengths.row_bytes;
        let used_bits = cols * usize::from(bits);
        for row in self.codes.as_ref().chunks_exact(row_bytes) {
            if !used_bits.is_multiple_of(8) && row[row_bytes - 1] >> (used_bits % 8) != 0 {
                return Err(Error::Corrupt(
                    "padding bits after a row's last code are not zero",
                ));
            }
            // Only the all-ones code can be out of range (zero-level families); at widths where
            // all 2^bits codes are levels nothing is checked.
            if levels < 1 << bits && has_all_ones_code(row, bits, cols) {
                return Err(Error::Corrupt("a code does not index a level"));
            }
        }
        Ok(())
    }
}

impl<'a> Parts<&'a [u8]> {
    /// The packed codes, for as long as the borrowed buffer lives.
    pub fn borrowed_codes(&self) -> &'a [u8] {
        self.codes
    }
}

/// Whether any of the first `cols` `bits`-bit codes packed in `row` is all ones. Widths that
/// divide 8 test whole bytes with masks (the padding after the last code is zero, so it never
/// matches); the others read code by code.
fn has_all_ones_code(row: &[u8], bits: u8, cols: usize) -> bool {
    // Folds without an early exit so that the compiler can vectorize the byte loop.
    let any = |f: fn(u8) -> u8| row.iter().fold(0u8, |acc, &b| acc | f(b)) != 0;
    match bits {
        2 => any(|b| b & (b >> 1) & 0x55),
        4 => any(|b| {
            let pairs = b & (b >> 1);
            pairs & (pairs >> 2) & 0x11
        }),
        8 => any(|b| u8::from(b == 0xFF)),
        _ => (0..cols).any(|i| code_at(row, bits, i) == (1u8 << bits) - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_ones_scan_agrees_with_reading_each_code() {
        for bits in 2..=8u8 {
            for cols in 1..=19usize {
                let row_bytes = (cols * usize::from(bits)).div_ceil(8);
                let used = cols * usize::from(bits);
                for seed in 0..64u32 {
                    let mut row: alloc::vec::Vec<u8> = (0..row_bytes)
                        .map(|i| {
                            ((i as u32 + 1).wrapping_mul(seed.wrapping_mul(2_654_435_761) | 1) >> 7)
                                as u8
                        })
                        .collect();
                    if used % 8 != 0 {
                        // Padding is zero by the time codes are scanned.
                        row[row_bytes - 1] &= (1u8 << (used % 8)) - 1;
                    }
                    let reference =
                        (0..cols).any(|i| u16::from(code_at(&row, bits, i)) == (1u16 << bits) - 1);
                    assert_eq!(
                        has_all_ones_code(&row, bits, cols),
                        reference,
                        "bits {bits}, cols {cols}, seed {seed}"
                    );
                }
            }
        }
    }
}
