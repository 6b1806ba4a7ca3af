#![doc = include_str!("../FORMAT.md")]

use crate::discretize::{Family, ScaleRule, Scheme};
use crate::error::{Error, Result};
use crate::layout::Granularity;

/// Magic bytes of a stored tensor.
pub const TENSOR_MAGIC: [u8; 4] = *b"EXQT";
/// Magic bytes of a container of named tensors.
pub const CONTAINER_MAGIC: [u8; 4] = *b"EXQC";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before a tensor's payload.
pub const HEADER_LEN: usize = 64;
/// Tensors inside a container start at multiples of this.
pub const CONTAINER_ALIGN: usize = 64;
/// The longest tensor name a container accepts.
pub const MAX_NAME_LEN: usize = 1024;

const CRC_OFFSET: usize = 56;

pub(crate) fn corrupt<T>(reason: &'static str) -> Result<T> {
    Err(Error::Corrupt(reason))
}

/// CRC-32 (IEEE 802.3 polynomial, reflected, as zlib's `crc32`).
pub(crate) struct Crc32(u32);

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

impl Crc32 {
    pub fn new() -> Self {
        Crc32(0xFFFF_FFFF)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        let mut c = self.0;
        for &b in bytes {
            c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    pub fn finish(&self) -> u32 {
        !self.0
    }
}

/// CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(bytes);
    crc.finish()
}

pub(crate) fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

pub(crate) fn read_f32(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The on-disk code of a scale rule.
pub(crate) fn rule_code(rule: ScaleRule) -> u8 {
    match rule {
        ScaleRule::MaxAbs => 0,
        ScaleRule::Mse => 1,
        ScaleRule::Correlation => 2,
        ScaleRule::OutputMse => 3,
        ScaleRule::Fixed { .. } => 4,
    }
}

fn to_usize(v: u64, reason: &'static str) -> Result<usize> {
    usize::try_from(v).or_else(|_| corrupt(reason))
}

/// Everything a tensor header says, checked for consistency with itself and with the
/// buffer's length, and the checksum verified.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub family: Family,
    pub layout: Granularity,
    pub rule: u8,
    pub rows: usize,
    pub cols: usize,
    pub groups: usize,
    pub row_bytes: usize,
    pub codes_len: usize,
    pub params_per_group: usize,
    pub total_len: usize,
}

impl Header {
    /// Parses the header at the start of `buf`, which may hold more bytes after the tensor.
    pub fn parse(buf: &[u8]) -> Result<Header> {
        if buf.len() < HEADER_LEN {
            return corrupt("truncated: shorter than the 64-byte tensor header");
        }
        if buf[0..4] != TENSOR_MAGIC {
            return corrupt("bad magic: not an expquant tensor (expected \"EXQT\")");
        }
        let version = read_u16(buf, 4);
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let scheme = match buf[6] {
            0 => Scheme::Linear,
            1 => Scheme::Exponential,
            _ => return corrupt("unknown scheme"),
        };
        let bits = buf[7];
        if !(1..=8).contains(&bits) {
            return corrupt("bits outside 1..=8");
        }
        let flags = buf[8];
        if flags & !1 != 0 {
            return corrupt("unknown flag bits set");
        }
        let family = Family {
            scheme,
            bits,
            zero_level: flags & 1 == 1,
        };
        let rule = buf[10];
        if rule > 4 {
            return corrupt("unknown scale rule");
        }
        if read_u32(buf, 12) != 0 || read_u32(buf, 60) != 0 {
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
        let layout = match (buf[9], group_size) {
            (0, 0) => Granularity::PerTensor,
            (1, 0) => Granularity::PerRow,
            (2, g) if g > 0 => Granularity::PerGroup(g),
            (0 | 1, _) => return corrupt("group size set for a per-tensor or per-row layout"),
            (2, _) => return corrupt("group size 0 for a per-group layout"),
            _ => return corrupt("unknown granularity"),
        };
        let groups = layout
            .group_count(rows, cols)
            .ok_or(Error::Corrupt("group count overflows"))?;
        if read_u64(buf, 40) != groups as u64 {
            return corrupt("group count does not match the shape and layout");
        }
        let params_per_group = 1 + usize::from(family.uses_q());
        if usize::from(buf[11]) != params_per_group {
            return corrupt("parameters per group do not match the scheme and bits");
        }
        let row_bytes =
            crate::pack::packed_len(cols, bits).ok_or(Error::Corrupt("row length overflows"))?;
        let codes_len = rows
            .checked_mul(row_bytes)
            .ok_or(Error::Corrupt("code length overflows"))?;
        if read_u64(buf, 48) != codes_len as u64 {
            return corrupt("code length does not match the shape and bits");
        }
        let total_len = groups
            .checked_mul(4 * params_per_group)
            .and_then(|p| p.checked_add(codes_len))
            .and_then(|n| n.checked_add(HEADER_LEN))
            .ok_or(Error::Corrupt("tensor length overflows"))?;
        if buf.len() < total_len {
            return corrupt("truncated: the buffer is shorter than the header says");
        }
        let mut crc = Crc32::new();
        crc.update(&buf[..CRC_OFFSET]);
        crc.update(&buf[HEADER_LEN..total_len]);
        if crc.finish() != read_u32(buf, CRC_OFFSET) {
            return corrupt("checksum mismatch");
        }
        Ok(Header {
            family,
            layout,
            rule,
            rows,
            cols,
            groups,
            row_bytes,
            codes_len,
            params_per_group,
            total_len,
        })
    }

    /// Writes this header (with the CRC of `payload`) into `out[..64]`.
    pub fn write(&self, payload: &[u8], out: &mut [u8]) {
        out[..HEADER_LEN].fill(0);
        out[0..4].copy_from_slice(&TENSOR_MAGIC);
        out[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[6] = self.family.scheme as u8;
        out[7] = self.family.bits;
        out[8] = u8::from(self.family.zero_level);
        let (granularity, group_size) = match self.layout {
            Granularity::PerTensor => (0u8, 0usize),
            Granularity::PerRow => (1, 0),
            Granularity::PerGroup(g) => (2, g),
        };
        out[9] = granularity;
        out[10] = self.rule;
        out[11] = self.params_per_group as u8;
        out[16..24].copy_from_slice(&(self.rows as u64).to_le_bytes());
        out[24..32].copy_from_slice(&(self.cols as u64).to_le_bytes());
        out[32..40].copy_from_slice(&(group_size as u64).to_le_bytes());
        out[40..48].copy_from_slice(&(self.groups as u64).to_le_bytes());
        out[48..56].copy_from_slice(&(self.codes_len as u64).to_le_bytes());
        let mut crc = Crc32::new();
        crc.update(&out[..CRC_OFFSET]);
        crc.update(payload);
        out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.finish().to_le_bytes());
    }
}

/// Entry `index` of a container's table: `(name, offset, length)`, and where the next entry
/// starts. The table has been bounds-checked by [`ContainerView::from_bytes`] only as far as
/// `index`; this checks the rest.
fn container_entry(buf: &[u8], at: usize) -> Result<(&str, usize, usize, usize)> {
    let name_len = buf
        .get(at..at + 4)
        .map(|_| read_u32(buf, at) as usize)
        .ok_or(Error::Corrupt("truncated container entry table"))?;
    if name_len == 0 || name_len > MAX_NAME_LEN {
        return corrupt("container entry name length outside 1..=1024");
    }
    let name_end = at + 4 + name_len;
    let name = buf
        .get(at + 4..name_end)
        .ok_or(Error::Corrupt("truncated container entry name"))?;
    let name = core::str::from_utf8(name).or_else(|_| corrupt("entry name is not UTF-8"))?;
    if buf.len() < name_end + 16 {
        return corrupt("truncated container entry table");
    }
    let offset = to_usize(read_u64(buf, name_end), "entry offset too large")?;
    let len = to_usize(read_u64(buf, name_end + 8), "entry length too large")?;
    Ok((name, offset, len, name_end + 16))
}

/// A validated container of named tensors, borrowed from its bytes.
#[derive(Debug, Clone, Copy)]
pub struct ContainerView<'a> {
    buf: &'a [u8],
    count: usize,
}

impl<'a> ContainerView<'a> {
    /// Validates a container: header, table checksum, names (UTF-8, strictly ascending), and
    /// that each tensor lies inside the buffer, 64-byte aligned, after the table, in order,
    /// without overlap.
    /// Each tensor's own contents are validated when it is opened with [`get`](Self::get)
    /// or [`iter`](Self::iter).
    pub fn from_bytes(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < 16 {
            return corrupt("truncated: shorter than the 16-byte container header");
        }
        if buf[0..4] != CONTAINER_MAGIC {
            return corrupt("bad magic: not an expquant container (expected \"EXQC\")");
        }
        let version = read_u16(buf, 4);
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if read_u16(buf, 6) != 0 {
            return corrupt("reserved container bytes are not zero");
        }
        let count = read_u32(buf, 8) as usize;
        // Walk the table once to find its end, then check the checksum before trusting it.
        let mut at = 16;
        for _ in 0..count {
            at = container_entry(buf, at)?.3;
        }
        if crc32(&buf[16..at]) != read_u32(buf, 12) {
            return corrupt("container checksum mismatch");
        }
        let table_end = at;
        let mut at = 16;
        // Entries are sorted by offset, so overlap is a neighbour check: no allocation.
        let mut previous_end = table_end;
        let mut previous_name: Option<&str> = None;
        for _ in 0..count {
            let (name, offset, len, next) = container_entry(buf, at)?;
            if offset % CONTAINER_ALIGN != 0 {
                return corrupt("tensor offset is not a multiple of 64");
            }
            if offset < previous_end {
                return corrupt(
                    "tensors overlap the table or each other, or are not in offset order",
                );
            }
            let end = offset
                .checked_add(len)
                .ok_or(Error::Corrupt("tensor end overflows"))?;
            if end > buf.len() {
                return corrupt("a tensor reaches past the end of the container");
            }
            // Names are strictly ascending, so uniqueness is a neighbour check too.
            if previous_name.is_some_and(|previous| previous >= name) {
                return corrupt("entry names are not unique and in ascending order");
            }
            previous_name = Some(name);
            previous_end = end;
            at = next;
        }
        Ok(ContainerView { buf, count })
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the container holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The tensor named `name`, validated, or `Ok(None)` when there is none.
    pub fn get(&self, name: &str) -> Result<Option<crate::QuantizedView<'a>>> {
        for entry in self.entries() {
            let (entry_name, bytes) = entry?;
            if entry_name == name {
                return crate::QuantizedView::from_bytes(bytes).map(Some);
            }
        }
        Ok(None)
    }

    /// Each entry's name and validated view, in table order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(&'a str, crate::QuantizedView<'a>)>> + '_ {
        self.entries().map(|entry| {
            let (name, bytes) = entry?;
            Ok((name, crate::QuantizedView::from_bytes(bytes)?))
        })
    }

    fn entries(&self) -> impl Iterator<Item = Result<(&'a str, &'a [u8])>> + '_ {
        let buf = self.buf;
        let mut at = 16;
        (0..self.count).map(move |_| {
            let (name, offset, len, next) = container_entry(buf, at)?;
            at = next;
            Ok((name, &buf[offset..offset + len]))
        })
    }
}

/// Serializes named tensors into a container (see the module docs); entries are stored
/// sorted by name.
#[cfg(feature = "alloc")]
pub fn write_container(tensors: &[(&str, &crate::QuantizedTensor)]) -> Result<alloc::vec::Vec<u8>> {
    let mut tensors = tensors.to_vec();
    tensors.sort_by(|l, r| l.0.cmp(r.0));
    for (i, (name, _)) in tensors.iter().enumerate() {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(Error::InvalidName(
                "a tensor name must hold 1 to 1024 bytes",
            ));
        }
        if i > 0 && tensors[i - 1].0 == *name {
            return Err(Error::InvalidName("tensor names must be unique"));
        }
    }
    let count = u32::try_from(tensors.len())
        .map_err(|_| Error::InvalidName("more than 2^32 - 1 tensors"))?;
    let table_len: usize = tensors.iter().map(|(name, _)| 4 + name.len() + 16).sum();
    let mut offset = (16 + table_len).next_multiple_of(CONTAINER_ALIGN);
    let mut table = alloc::vec::Vec::with_capacity(table_len);
    let mut placed = alloc::vec::Vec::with_capacity(tensors.len());
    for (name, tensor) in &tensors {
        let len = tensor.serialized_len();
        table.extend_from_slice(&(name.len() as u32).to_le_bytes());
        table.extend_from_slice(name.as_bytes());
        table.extend_from_slice(&(offset as u64).to_le_bytes());
        table.extend_from_slice(&(len as u64).to_le_bytes());
        placed.push(offset);
        offset = (offset + len).next_multiple_of(CONTAINER_ALIGN);
    }
    // No padding after the last tensor: every byte of the container belongs to something.
    let end = placed
        .last()
        .zip(tensors.last())
        .map_or(16 + table_len, |(at, (_, t))| at + t.serialized_len());
    let mut out = alloc::vec![0u8; end];
    out[0..4].copy_from_slice(&CONTAINER_MAGIC);
    out[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[8..12].copy_from_slice(&count.to_le_bytes());
    out[12..16].copy_from_slice(&crc32(&table).to_le_bytes());
    out[16..16 + table_len].copy_from_slice(&table);
    for ((_, tensor), at) in tensors.iter().zip(placed) {
        tensor.write_into(&mut out[at..at + tensor.serialized_len()])?;
    }
    Ok(out)
}
