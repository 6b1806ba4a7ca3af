//! [`Parts`]: what a quantized tensor is made of — shape, family, granularity, scale rule,
//! packed codes and per-group parameters — with the lengths checked against each other.
//!
//! Owned tensors hold `Parts<Vec<u8>>`, views `Parts<&[u8]>`; the byte format reads and
//! writes the same struct, so no tensor type has a constructor of its own for stored data.

use crate::codebook::Codebook;
use crate::discretize::shared::f16_value;
use crate::discretize::Family;
use crate::error::{Error, Result};
use crate::isa::portable::f16_positive;
use crate::layout::Granularity;
use crate::pack::{self, code_at};
use crate::scheme::{Params, ScaleRule};

/// How the per-group parameters are laid out in their byte buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamEncoding {
    /// Little-endian `f32`s per group: `a`, then `q` when the family uses it (`per_group`
    /// is 1 or 2). Format version 1.
    F32 { per_group: usize },
    /// Compact (format version 2): per run of `groups_per_q` consecutive groups (a row's
    /// groups; the one group of a per-tensor layout), the shared `q` as a little-endian
    /// `f32` when the family uses it (`q`), then each group's `a` as a little-endian
    /// IEEE binary16.
    Compact { q: bool, groups_per_q: usize },
}

impl ParamEncoding {
    /// The encoding format version 1 uses for `family`.
    pub fn f32_for(family: Family) -> Self {
        ParamEncoding::F32 {
            per_group: 1 + usize::from(family.uses_q()),
        }
    }

    /// The compact encoding of `family` on a `granularity` layout of `cols` columns: one
    /// shared `q` per row of groups.
    pub fn compact_for(family: Family, granularity: Granularity, cols: usize) -> Self {
        ParamEncoding::Compact {
            q: family.uses_q(),
            groups_per_q: granularity.groups_per_row(cols).max(1),
        }
    }

    /// The encoding whose [`code`](Self::code) is `code`, for `family` on a `granularity`
    /// layout of `cols` columns, or `None` for a code no encoding has.
    pub fn from_code(
        code: u8,
        family: Family,
        granularity: Granularity,
        cols: usize,
    ) -> Option<Self> {
        match code {
            0 => Some(ParamEncoding::f32_for(family)),
            1 => Some(ParamEncoding::compact_for(family, granularity, cols)),
            _ => None,
        }
    }

    /// The code the version-2 header stores for this encoding.
    pub fn code(self) -> u8 {
        match self {
            ParamEncoding::F32 { .. } => 0,
            ParamEncoding::Compact { .. } => 1,
        }
    }

    /// Stored parameters per codebook (`a`, and `q` when the family uses it), whatever the
    /// encoding: what the header's byte 11 records.
    pub fn params_per_group(self) -> usize {
        match self {
            ParamEncoding::F32 { per_group } => per_group,
            ParamEncoding::Compact { q, .. } => 1 + usize::from(q),
        }
    }

    /// Bytes of one run of groups sharing a `q` (compact only).
    #[inline]
    fn run_len(q: bool, groups_per_q: usize) -> usize {
        4 * usize::from(q) + 2 * groups_per_q
    }

    /// Bytes for `groups` groups, or `None` on overflow.
    pub fn len(self, groups: usize) -> Option<usize> {
        match self {
            ParamEncoding::F32 { per_group } => groups.checked_mul(4 * per_group),
            ParamEncoding::Compact { q, groups_per_q } => {
                let runs = groups / groups_per_q.max(1);
                runs.checked_mul(2 * groups_per_q)?
                    .checked_add(runs.checked_mul(4 * usize::from(q))?)
            }
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
            ParamEncoding::Compact { q, groups_per_q } => {
                let (run, i) = (group / groups_per_q, group % groups_per_q);
                let at = run * Self::run_len(q, groups_per_q);
                let qv = if q { read_f32(bytes, at) } else { 1.0 };
                Params {
                    a: f16_value(read_u16(bytes, at + 4 * usize::from(q) + 2 * i)),
                    q: qv,
                }
            }
        }
    }

    /// The `(a, q)` of groups `first..first + out.len()`, as [`read`](Self::read) gives them
    /// one at a time (for the positive finite scales `validate_params` admits), with the
    /// encoding matched once; `bytes` holds those groups.
    #[inline]
    pub fn read_run(self, bytes: &[u8], first: usize, out: &mut [[f32; 2]]) {
        match self {
            // `(a, q)` pairs, the usual case, with the chunk size known to the compiler: the
            // int8 GEMV of groups of 32 reads a run every eight groups of every row.
            ParamEncoding::F32 { per_group: 2 } => {
                for (slot, b) in out.iter_mut().zip(bytes[first * 8..].chunks_exact(8)) {
                    *slot = [read_f32(b, 0), read_f32(b, 4)];
                }
            }
            ParamEncoding::F32 { per_group } if per_group > 0 => {
                let at = first * per_group * 4;
                for (slot, b) in out.iter_mut().zip(bytes[at..].chunks_exact(per_group * 4)) {
                    let q = if per_group == 2 { read_f32(b, 4) } else { 1.0 };
                    *slot = [read_f32(b, 0), q];
                }
            }
            // A run's `q` once and its `f16` scales in a loop without branches: compact groups
            // of 32 at 1 and 2 bits take fewer instructions in the kernel than a division and
            // a `read` each. The branch-free conversion is exact for the positive finite
            // scales that stored parameters are checked to hold (`validate_params`).
            ParamEncoding::Compact { groups_per_q, .. } if groups_per_q > 0 => {
                let mut group = first;
                let mut rest = out;
                while !rest.is_empty() {
                    let (run, i) = (group / groups_per_q, group % groups_per_q);
                    let Some((q, scales)) = self.compact_run(bytes, run) else {
                        return;
                    };
                    let n = rest.len().min(groups_per_q - i);
                    let (now, later) = rest.split_at_mut(n);
                    for (slot, h) in now.iter_mut().zip(scales[2 * i..].chunks_exact(2)) {
                        *slot = [f16_positive(u16::from_le_bytes([h[0], h[1]])), q];
                    }
                    rest = later;
                    group += n;
                }
            }
            _ => {
                for (group, slot) in (first..).zip(out.iter_mut()) {
                    let p = self.read(bytes, group);
                    *slot = [p.a, p.q];
                }
            }
        }
    }

    /// The shared `q` of run `run` and the `f16` scales of its groups, for a compact
    /// encoding; `None` for the `f32` one. `bytes` holds the run.
    #[inline]
    pub fn compact_run(self, bytes: &[u8], run: usize) -> Option<(f32, &[u8])> {
        match self {
            ParamEncoding::F32 { .. } => None,
            ParamEncoding::Compact { q, groups_per_q } => {
                let at = run * Self::run_len(q, groups_per_q);
                let qv = if q { read_f32(bytes, at) } else { 1.0 };
                let first = at + 4 * usize::from(q);
                Some((qv, &bytes[first..first + 2 * groups_per_q]))
            }
        }
    }

    /// The stored bytes of groups `first .. first + groups` where they are little-endian
    /// `f32` `(a, q)` pairs (8 bytes a group, `a` first), for kernels that load them
    /// directly; `None` for the other encodings or where `bytes` does not hold those groups.
    #[inline]
    pub fn f32_pairs(self, bytes: &[u8], first: usize, groups: usize) -> Option<&[u8]> {
        match self {
            ParamEncoding::F32 { per_group: 2 } => bytes.get(8 * first..8 * (first + groups)),
            _ => None,
        }
    }

    /// Writes `params` for consecutive groups into `out` ([`len`](Self::len) bytes). For the
    /// compact encoding every `a` must be an `f16` value and the groups of a run share `q`
    /// (as the compact fit makes them); the first group of each run gives its `q`.
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
            ParamEncoding::Compact { q, groups_per_q } => {
                let run_len = Self::run_len(q, groups_per_q);
                for (chunk, run) in out
                    .chunks_exact_mut(run_len)
                    .zip(params.chunks(groups_per_q.max(1)))
                {
                    let (head, scales) = chunk.split_at_mut(4 * usize::from(q));
                    if q {
                        head.copy_from_slice(&run[0].q.to_le_bytes());
                    }
                    for (slot, p) in scales.chunks_exact_mut(2).zip(run) {
                        slot.copy_from_slice(
                            &crate::discretize::shared::f16_bits(p.a).to_le_bytes(),
                        );
                    }
                }
            }
        }
    }
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
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
/// [`new`](Self::new)). The contents are checked by [`validate_params`](Self::validate_params)
/// and [`validate_code_rows`](Self::validate_code_rows) where they come from outside.
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
        (self.lengths.codes as f64 * 8.0 + self.lengths.params as f64 * 8.0)
            / (self.shape.rows * self.shape.cols) as f64
    }

    /// Checks what stored bytes cannot be trusted to hold: every group's parameters give a
    /// codebook of distinct finite levels. O(groups).
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

    /// Bytes of whole rows of codes that fill about 256 KiB (at least one row): the block in
    /// which a reader checksums and checks codes together while they are in cache.
    pub fn code_block_len(&self) -> usize {
        let row_bytes = self.lengths.row_bytes.max(1);
        ((256 << 10) / row_bytes).max(1) * row_bytes
    }

    /// Checks `rows`, a run of whole rows of this tensor's codes: zero padding after each row
    /// and, where some code has no level, every code in range. O(codes).
    pub fn validate_code_rows(&self, rows: &[u8]) -> Result<()> {
        let family = self.shape.family;
        let bits = family.bits;
        let levels = family.level_count();
        let cols = self.shape.cols;
        let row_bytes = self.lengths.row_bytes;
        let used_bits = cols * usize::from(bits);
        if !used_bits.is_multiple_of(8)
            && rows
                .chunks_exact(row_bytes)
                .any(|row| row[row_bytes - 1] >> (used_bits % 8) != 0)
        {
            return Err(Error::Corrupt(
                "padding bits after a row's last code are not zero",
            ));
        }
        // Only the all-ones code can be out of range (zero-level families); at widths where
        // all 2^bits codes are levels nothing is checked.
        if levels < 1 << bits {
            let hit = if matches!(bits, 2 | 4 | 8) {
                // Fields never straddle bytes at these widths and the padding is zero (checked
                // above), so the whole run of rows is scanned as one.
                has_all_ones_field(rows, bits)
            } else {
                rows.chunks_exact(row_bytes)
                    .any(|row| (0..cols).any(|i| code_at(row, bits, i) == (1u8 << bits) - 1))
            };
            if hit {
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

/// Whether any `bits`-bit field of `bytes` is all ones, for `bits` of 2, 4 or 8 (fields that
/// divide bytes), testing eight bytes at a time with masks.
fn has_all_ones_field(bytes: &[u8], bits: u8) -> bool {
    /// Non-zero where a field of the word is all ones.
    fn all_ones_fields(w: u64, bits: u8) -> u64 {
        const LOW_BITS_2: u64 = 0x5555_5555_5555_5555;
        const LOW_BITS_4: u64 = 0x1111_1111_1111_1111;
        const LOW_BYTES: u64 = 0x0101_0101_0101_0101;
        match bits {
            2 => w & (w >> 1) & LOW_BITS_2,
            4 => {
                let pairs = w & (w >> 1);
                pairs & (pairs >> 2) & LOW_BITS_4
            }
            // A byte of `w` is 0xFF where the byte of `!w` is zero (the exact zero-byte test).
            _ => {
                let v = !w;
                v.wrapping_sub(LOW_BYTES) & !v & (LOW_BYTES << 7)
            }
        }
    }
    let words = bytes.chunks_exact(8);
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    // The zero-filled tail has no all-ones field. Folds without an early exit so that the
    // compiler can vectorize the loop.
    let hits = words.fold(0u64, |acc, w| {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        acc | all_ones_fields(u64::from_le_bytes(b), bits)
    });
    (hits | all_ones_fields(u64::from_le_bytes(tail), bits)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_ones_scan_agrees_with_reading_each_code() {
        let mut outcomes = [0usize; 2];
        for bits in [2u8, 4, 8] {
            for cols in 1..=19usize {
                let row_bytes = (cols * usize::from(bits)).div_ceil(8);
                let used = cols * usize::from(bits);
                for seed in 0..64u32 {
                    let mut buf = [0u8; 19];
                    let row = &mut buf[..row_bytes];
                    for (i, b) in row.iter_mut().enumerate() {
                        *b = ((i as u32 + 1).wrapping_mul(seed.wrapping_mul(2_654_435_761) | 1)
                            >> 7) as u8;
                    }
                    if used % 8 != 0 {
                        // Padding is zero by the time codes are scanned.
                        row[row_bytes - 1] &= (1u8 << (used % 8)) - 1;
                    }
                    let reference =
                        (0..cols).any(|i| u16::from(code_at(row, bits, i)) == (1u16 << bits) - 1);
                    assert_eq!(
                        has_all_ones_field(row, bits),
                        reference,
                        "bits {bits}, cols {cols}, seed {seed}"
                    );
                    outcomes[usize::from(reference)] += 1;
                }
            }
        }
        // Both answers occur, so the comparison tests something.
        assert!(outcomes[0] > 100 && outcomes[1] > 100, "{outcomes:?}");
    }

    #[test]
    #[cfg(feature = "alloc")]
    fn a_run_of_parameters_reads_as_each_group_alone() {
        use alloc::{vec, vec::Vec};
        let encodings = [
            ParamEncoding::F32 { per_group: 1 },
            ParamEncoding::F32 { per_group: 2 },
            ParamEncoding::Compact {
                q: true,
                groups_per_q: 1,
            },
            ParamEncoding::Compact {
                q: true,
                groups_per_q: 5,
            },
            ParamEncoding::Compact {
                q: false,
                groups_per_q: 4,
            },
        ];
        for encoding in encodings {
            let groups = 20;
            // Every `q` in a run of five is its first group's, as the compact fit makes it.
            let params: Vec<Params<f32>> = (0..groups)
                .map(|i| Params {
                    a: 0.5 + i as f32 / 8.0,
                    q: 0.3 + (i / 5) as f32 / 16.0,
                })
                .collect();
            let mut bytes = vec![0u8; encoding.len(groups).unwrap()];
            encoding.write(&params, &mut bytes);
            for first in 0..groups {
                for n in 0..=groups - first {
                    let mut out = vec![[f32::NAN; 2]; n];
                    encoding.read_run(&bytes, first, &mut out);
                    for (i, got) in out.iter().enumerate() {
                        let p = encoding.read(&bytes, first + i);
                        assert_eq!(
                            got.map(f32::to_bits),
                            [p.a.to_bits(), p.q.to_bits()],
                            "{encoding:?}, groups {first}..{}",
                            first + n
                        );
                    }
                }
            }
        }
    }
}
