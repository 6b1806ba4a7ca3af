//! The scalar reference kernels: plain loops that every faster path must agree with.
//!
//! They allocate nothing, use no `unsafe` and run everywhere; the tests compare each SIMD
//! path with these.

use crate::pack::code_at;

/// Writes `table[code]` for codes `start .. start + out.len()` of one packed row. The caller
/// guarantees the codes exist and index `table`.
#[inline]
pub(crate) fn decode_span(bits: u8, row: &[u8], start: usize, table: &[f32], out: &mut [f32]) {
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = table[usize::from(code_at(row, bits, start + i))];
    }
}

/// `Σ table[code_j] · x[j]` over codes `start .. start + x.len()` of one packed row, summed in
/// index order. The caller guarantees the codes exist and index `table`.
#[inline]
pub(crate) fn dot_span(bits: u8, row: &[u8], start: usize, table: &[f32], x: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (i, &xi) in x.iter().enumerate() {
        acc += table[usize::from(code_at(row, bits, start + i))] * xi;
    }
    acc
}
