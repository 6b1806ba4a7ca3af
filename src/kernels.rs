//! Dequantize and GEMV on packed codes, without materializing the weights.
//!
//! These are the scalar reference kernels: plain loops that every faster path must agree
//! with. They allocate nothing and run on `no_std`.

use crate::error::{Error, Result};
use crate::pack::{self, code_at};

/// Decodes `out.len()` codes of `bits` bits from `packed` through `levels`: `out[i] =
/// levels[code_i]`. `packed` must hold exactly [`pack::packed_len`]`(out.len(), bits)` bytes,
/// and every code must index `levels`; otherwise an error is returned and `out` is left
/// untouched. No allocation: this is the firmware decode path.
///
/// ```
/// let levels = [-1.0f32, 0.0, 1.0];
/// let mut out = [0.0f32; 4];
/// expquant::kernels::decode(2, &[0b10_01_00_01], &levels, &mut out)?;
/// assert_eq!(out, [0.0, -1.0, 0.0, 1.0]);
/// # Ok::<(), expquant::Error>(())
/// ```
pub fn decode(bits: u8, packed: &[u8], levels: &[f32], out: &mut [f32]) -> Result<()> {
    pack::check_bits(bits)?;
    let needed = pack::packed_len(out.len(), bits).unwrap_or(usize::MAX);
    if packed.len() != needed {
        return Err(Error::BufferLength {
            what: "packed input",
            expected: needed,
            actual: packed.len(),
        });
    }
    if levels.is_empty() || levels.len() > 256 {
        return Err(Error::InvalidCodebook("a codebook holds 1 to 256 levels"));
    }
    // Check every code before writing anything, unless all `2^bits` codes index a level.
    if levels.len() < 1 << bits {
        let bad = (0..out.len()).find(|&i| usize::from(code_at(packed, bits, i)) >= levels.len());
        if let Some(index) = bad {
            return Err(Error::CodeOutOfRange {
                index,
                code: code_at(packed, bits, index),
                limit: levels.len(),
            });
        }
    }
    for (index, slot) in out.iter_mut().enumerate() {
        *slot = levels[usize::from(code_at(packed, bits, index))];
    }
    Ok(())
}

/// Writes `table[code]` for codes `start .. start + out.len()` of one packed row. The caller
/// guarantees the codes exist and index `table`.
#[inline]
pub(crate) fn decode_span(bits: u8, row: &[u8], start: usize, table: &[f32], out: &mut [f32]) {
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = table[usize::from(code_at(row, bits, start + i))];
    }
}

/// `Σ table[code_j] · x[j]` over codes `start .. start + x.len()` of one packed row. The
/// caller guarantees the codes exist and index `table`.
#[inline]
pub(crate) fn dot_span(bits: u8, row: &[u8], start: usize, table: &[f32], x: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (i, &xi) in x.iter().enumerate() {
        acc += table[usize::from(code_at(row, bits, start + i))] * xi;
    }
    acc
}
