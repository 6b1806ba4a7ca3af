//! The 64-byte tensor header: parsed into, and written from, a tensor's [`Parts`].

use super::checksum::Crc32;
use super::{
    check_version, corrupt, read_u16, read_u32, read_u64, to_usize, FORMAT_VERSION, HEADER_LEN,
    TENSOR_MAGIC,
};
use crate::discretize::Family;
use crate::error::{Error, Result};
use crate::layout::Granularity;
use crate::parts::{ParamEncoding, Parts, Shape};
use crate::scheme::{ScaleRule, Scheme};

const CRC_OFFSET: usize = 56;
const ZERO_LEVEL_FLAG: u8 = 1;

/// Parses the tensor at the start of `buf` (which may hold more bytes after it): header
/// fields consistent with each other and with the buffer's length, so that every part lies
/// inside `buf`. Returns its parts and the bytes it occupies; the checksum
/// ([`verify_checksum_with`]) and the contents (parameters, codes) are the caller's to check.
pub(crate) fn parse_tensor(buf: &[u8]) -> Result<(Parts<&[u8]>, usize)> {
    if buf.len() < HEADER_LEN {
        return corrupt("truncated: shorter than the 64-byte tensor header");
    }
    if buf[0..4] != TENSOR_MAGIC {
        return corrupt("bad magic: not an expquant tensor (expected \"EXQT\")");
    }
    let version = check_version(read_u16(buf, 4))?;
    let scheme = Scheme::try_from(buf[6]).or_else(|_| corrupt("unknown scheme"))?;
    let bits = buf[7];
    if !(1..=8).contains(&bits) {
        return corrupt("bits outside 1..=8");
    }
    let flags = buf[8];
    if flags & !ZERO_LEVEL_FLAG != 0 {
        return corrupt("unknown flag bits set");
    }
    let family = Family::new(scheme, bits, flags & ZERO_LEVEL_FLAG != 0)?;
    let rule_code = buf[10];
    // Checked before the parameters are known; the fixed rule takes them from group 0 below.
    if ScaleRule::from_code(rule_code, || (1.0, 1.0)).is_err() {
        return corrupt("unknown scale rule");
    }
    // Version 2 stores the parameter encoding in byte 12; version 1 has none (f32).
    let encoding_code = if version >= 2 { buf[12] } else { 0 };
    let reserved_12 = if version >= 2 {
        &buf[13..16]
    } else {
        &buf[12..16]
    };
    if reserved_12.iter().any(|&b| b != 0) || read_u32(buf, 60) != 0 {
        return corrupt("reserved header bytes are not zero");
    }
    let rows = to_usize(read_u64(buf, 16), "row count too large")?;
    let cols = to_usize(read_u64(buf, 24), "column count too large")?;
    if rows == 0 || cols == 0 {
        return corrupt("zero rows or columns");
    }
    rows.checked_mul(cols)
        .ok_or(Error::Corrupt("rows x columns overflows"))?;
    let group_size = to_usize(read_u64(buf, 32), "group size too large")?;
    let granularity = match Granularity::from_code(buf[9], group_size) {
        Ok(g) if g.group_size() == group_size => g,
        Ok(_) => return corrupt("group size set for a per-tensor or per-row layout"),
        Err(Error::ZeroGroupSize) => return corrupt("group size 0 for a per-group layout"),
        Err(_) => return corrupt("unknown granularity"),
    };
    let Some(encoding) = ParamEncoding::from_code(encoding_code, family, granularity, cols) else {
        return corrupt("unknown parameter encoding");
    };
    let shape = Shape {
        rows,
        cols,
        family,
        granularity,
        rule: ScaleRule::MaxAbs,
        encoding,
    };
    let lengths = shape.lengths()?;
    if read_u64(buf, 40) != lengths.groups as u64 {
        return corrupt("group count does not match the shape and layout");
    }
    if usize::from(buf[11]) != encoding.params_per_group() {
        return corrupt("parameters per group do not match the scheme and bits");
    }
    if read_u64(buf, 48) != lengths.codes as u64 {
        return corrupt("code length does not match the shape and bits");
    }
    let total_len = lengths
        .codes
        .checked_add(lengths.params)
        .and_then(|n| n.checked_add(HEADER_LEN))
        .ok_or(Error::Corrupt("tensor length overflows"))?;
    if buf.len() < total_len {
        return corrupt("truncated: the buffer is shorter than the header says");
    }
    let (codes, params) = buf[HEADER_LEN..total_len].split_at(lengths.codes);
    let parts = Parts::new(shape, codes, params)?.with_stored_rule(rule_code)?;
    Ok((parts, total_len))
}

/// Verifies the checksum of the tensor of `total_len` bytes at the start of `buf`, whose
/// first `codes_len` payload bytes are codes, handing the codes to `each_block` in runs of
/// `block_len` bytes (the last may be shorter) as they are checksummed, so that a caller can
/// check them while they are in cache: one pass over memory instead of two. A checksum
/// mismatch is reported before any error of `each_block`.
pub(crate) fn verify_checksum_with(
    buf: &[u8],
    codes_len: usize,
    total_len: usize,
    block_len: usize,
    mut each_block: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let payload = buf.get(HEADER_LEN..total_len).ok_or(Error::Corrupt(
        "truncated: the buffer is shorter than the header says",
    ))?;
    let (codes, params) = payload.split_at(codes_len.min(payload.len()));
    let mut crc = Crc32::new();
    crc.update(&buf[..CRC_OFFSET]);
    // A failed block check is reported only if the checksum holds: for altered bytes the
    // checksum is the truer message.
    let mut blocks = Ok(());
    for block in codes.chunks(block_len.max(1)) {
        crc.update(block);
        if blocks.is_ok() {
            blocks = each_block(block);
        }
    }
    crc.update(params);
    if crc.finish() != read_u32(buf, CRC_OFFSET) {
        return corrupt("checksum mismatch");
    }
    blocks
}

/// Bytes the stored form of `parts` takes.
pub(crate) fn tensor_len<B: AsRef<[u8]>>(parts: &Parts<B>) -> usize {
    HEADER_LEN + parts.lengths().codes + parts.lengths().params
}

/// Writes the stored form of `parts` into `out`, which must hold at least
/// [`tensor_len`] bytes; returns the bytes written.
pub(crate) fn write_tensor<B: AsRef<[u8]>>(parts: &Parts<B>, out: &mut [u8]) -> Result<usize> {
    let total_len = tensor_len(parts);
    if out.len() < total_len {
        return Err(Error::BufferLength {
            what: "serialization buffer",
            expected: total_len,
            actual: out.len(),
        });
    }
    let shape = parts.shape();
    let lengths = parts.lengths();
    let (head, payload) = out[..total_len].split_at_mut(HEADER_LEN);
    let (codes, params) = payload.split_at_mut(lengths.codes);
    codes.copy_from_slice(parts.codes());
    params.copy_from_slice(parts.param_bytes());
    // Version 1 for f32 parameters, so that their bytes are those every earlier build wrote
    // and reads; version 2 only where it is needed.
    let version = match shape.encoding {
        ParamEncoding::F32 { .. } => 1u16,
        ParamEncoding::Compact { .. } => FORMAT_VERSION,
    };
    head.fill(0);
    head[0..4].copy_from_slice(&TENSOR_MAGIC);
    head[4..6].copy_from_slice(&version.to_le_bytes());
    head[6] = shape.family.scheme().code();
    head[7] = shape.family.bits();
    head[8] = if shape.family.zero_level() {
        ZERO_LEVEL_FLAG
    } else {
        0
    };
    head[9] = shape.granularity.code();
    head[10] = shape.rule.code();
    head[11] = shape.encoding.params_per_group() as u8;
    if version >= 2 {
        head[12] = shape.encoding.code();
    }
    head[16..24].copy_from_slice(&(shape.rows as u64).to_le_bytes());
    head[24..32].copy_from_slice(&(shape.cols as u64).to_le_bytes());
    head[32..40].copy_from_slice(&(shape.granularity.group_size() as u64).to_le_bytes());
    head[40..48].copy_from_slice(&(lengths.groups as u64).to_le_bytes());
    head[48..56].copy_from_slice(&(lengths.codes as u64).to_le_bytes());
    let mut crc = Crc32::new();
    crc.update(&head[..CRC_OFFSET]);
    crc.update(payload);
    head[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.finish().to_le_bytes());
    Ok(total_len)
}
