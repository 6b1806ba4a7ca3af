//! The container of named tensors: its header and entry table, read and written over the
//! stored bytes of each tensor.

use super::checksum::crc32;
use super::{
    check_version, corrupt, read_u16, read_u32, read_u64, to_usize, CONTAINER_ALIGN,
    CONTAINER_MAGIC, MAX_NAME_LEN,
};
use crate::error::{Error, Result};

const CONTAINER_HEADER_LEN: usize = 16;

/// Entry `index` of a container's table: `(name, offset, length)`, and where the next entry
/// starts. The table has been bounds-checked by [`Table::parse`] only as far as `index`;
/// this checks the rest.
fn entry(buf: &[u8], at: usize) -> Result<(&str, usize, usize, usize)> {
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

/// A container whose header and table have been validated: each entry's bytes lie inside
/// the buffer, aligned, in order, without overlap. The tensors themselves are not checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Table<'a> {
    buf: &'a [u8],
    count: usize,
}

impl<'a> Table<'a> {
    /// Validates a container: header, table checksum, names (UTF-8, strictly ascending), and
    /// that each tensor lies inside the buffer, 64-byte aligned, after the table, in order,
    /// without overlap.
    pub fn parse(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < CONTAINER_HEADER_LEN {
            return corrupt("truncated: shorter than the 16-byte container header");
        }
        if buf[0..4] != CONTAINER_MAGIC {
            return corrupt("bad magic: not an expquant container (expected \"EXQC\")");
        }
        check_version(read_u16(buf, 4))?;
        if read_u16(buf, 6) != 0 {
            return corrupt("reserved container bytes are not zero");
        }
        let count = read_u32(buf, 8) as usize;
        // Walk the table once to find its end, then check the checksum before trusting it.
        let mut at = CONTAINER_HEADER_LEN;
        for _ in 0..count {
            at = entry(buf, at)?.3;
        }
        if crc32(&buf[CONTAINER_HEADER_LEN..at]) != read_u32(buf, 12) {
            return corrupt("container checksum mismatch");
        }
        let table_end = at;
        let mut at = CONTAINER_HEADER_LEN;
        // Entries are sorted by offset, so overlap is a neighbour check: no allocation.
        let mut previous_end = table_end;
        let mut previous_name: Option<&str> = None;
        for _ in 0..count {
            let (name, offset, len, next) = entry(buf, at)?;
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
        Ok(Table { buf, count })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Each entry's name and stored tensor bytes, in table order.
    pub fn entries(&self) -> impl Iterator<Item = Result<(&'a str, &'a [u8])>> + '_ {
        let buf = self.buf;
        let mut at = CONTAINER_HEADER_LEN;
        (0..self.count).map(move |_| {
            let (name, offset, len, next) = entry(buf, at)?;
            at = next;
            Ok((name, &buf[offset..offset + len]))
        })
    }
}

/// Writes a container of `entries` (name and stored length of each), in the order given,
/// which must be by strictly ascending name; `write(i, out)` writes entry `i`'s stored
/// tensor into `out`, exactly its length.
#[cfg(feature = "alloc")]
pub(crate) fn write(
    entries: &[(&str, usize)],
    mut write: impl FnMut(usize, &mut [u8]) -> Result<()>,
) -> Result<alloc::vec::Vec<u8>> {
    for (i, (name, _)) in entries.iter().enumerate() {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(Error::InvalidName(
                "a tensor name must hold 1 to 1024 bytes",
            ));
        }
        if i > 0 && entries[i - 1].0 >= *name {
            return Err(Error::InvalidName("tensor names must be unique"));
        }
    }
    let count = u32::try_from(entries.len())
        .map_err(|_| Error::InvalidName("more than 2^32 - 1 tensors"))?;
    let table_len: usize = entries.iter().map(|(name, _)| 4 + name.len() + 16).sum();
    let mut offset = (CONTAINER_HEADER_LEN + table_len).next_multiple_of(CONTAINER_ALIGN);
    let mut table = alloc::vec::Vec::with_capacity(table_len);
    let mut placed = alloc::vec::Vec::with_capacity(entries.len());
    for &(name, len) in entries {
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
        .zip(entries.last())
        .map_or(CONTAINER_HEADER_LEN + table_len, |(at, (_, len))| at + len);
    let mut out = alloc::vec![0u8; end];
    out[0..4].copy_from_slice(&CONTAINER_MAGIC);
    out[4..6].copy_from_slice(&super::FORMAT_VERSION.to_le_bytes());
    out[8..12].copy_from_slice(&count.to_le_bytes());
    out[12..16].copy_from_slice(&crc32(&table).to_le_bytes());
    out[CONTAINER_HEADER_LEN..CONTAINER_HEADER_LEN + table_len].copy_from_slice(&table);
    for (i, (&(_, len), at)) in entries.iter().zip(placed).enumerate() {
        write(i, &mut out[at..at + len])?;
    }
    Ok(out)
}
