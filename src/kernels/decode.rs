//! Decoding packed codes to floats through a codebook: the public entry points and the row
//! kernel that GEMV, views and tensors share.

use super::{aligned_head, check_codes, Table, CHUNK};
use crate::error::Result;
use crate::isa::{portable, Isa, Path};
use crate::pack;

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
    decode_with(Isa::detect(), bits, packed, levels, out)
}

/// [`decode`] on a chosen path, so that tests and benchmarks can compare paths (every path
/// writes the same floats).
pub fn decode_with(
    isa: Isa,
    bits: u8,
    packed: &[u8],
    levels: &[f32],
    out: &mut [f32],
) -> Result<()> {
    check_codes(bits, packed, out.len(), levels)?;
    let table = Table::from_levels(levels);
    decode_span(isa, bits, packed, 0, &table, out);
    Ok(())
}

/// `out[i] = table[code start + i]` of one packed row. The caller guarantees the codes exist
/// and index `table`.
pub(crate) fn decode_span(
    isa: Isa,
    bits: u8,
    row: &[u8],
    start: usize,
    table: &Table,
    out: &mut [f32],
) {
    let path = isa.path();
    if path == Path::Scalar {
        return portable::decode_span(bits, row, start, &table.v, out);
    }
    let head = aligned_head(bits, start, out.len());
    let (first, rest) = out.split_at_mut(head);
    portable::decode_span(bits, row, start, &table.v, first);
    let mut byte = (start + head) * usize::from(bits) / 8;
    #[cfg(any(
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_feature = "neon")
    ))]
    let (bytes, v) = (&row[byte..], &table.v);
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Avx512(t) if bits == 4 && table.len <= 16 => return t.decode4(bytes, v, rest),
        #[cfg(target_arch = "x86_64")]
        Path::Avx2(t) if bits == 4 && table.len <= 16 => return t.decode4(bytes, v, rest),
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Path::Neon(t) if matches!(bits, 1 | 2 | 4) => {
            return match bits {
                4 => t.decode_packed::<4>(bytes, v, rest),
                2 => t.decode_packed::<2>(bytes, v, rest),
                _ => t.decode_packed::<1>(bytes, v, rest),
            };
        }
        _ => {}
    }
    let mut codes = [0u8; CHUNK];
    for chunk in rest.chunks_mut(CHUNK) {
        let nb = pack::packed_len(chunk.len(), bits).unwrap_or(0);
        let codes = &mut codes[..chunk.len()];
        pack::unpack_fast(isa, &row[byte..byte + nb], bits, codes);
        lut(path, codes, table, chunk);
        byte += nb;
    }
}

/// `out[i] = table[codes[i]]` on `path`.
fn lut(path: Path, codes: &[u8], table: &Table, out: &mut [f32]) {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Avx512(t) => t.lut(codes, &table.v, table.len, out),
        #[cfg(target_arch = "x86_64")]
        Path::Avx2(t) => t.lut(codes, &table.v, table.len, out),
        // Past 64 levels the table does not fit four registers per byte plane.
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Path::Neon(t) if table.len <= 64 => t.lut(codes, &table.v, table.len, out),
        _ => portable::lut(codes, &table.v, out),
    }
}
