//! The container of named entries: its header and entry table, read and written over the
//! stored bytes of each entry (a stored tensor, or a raw little-endian `f32` array).

use super::checksum::{crc32, Crc32};
use super::{
    corrupt, read_u16, read_u32, read_u64, to_usize, CONTAINER_ALIGN, CONTAINER_MAGIC,
    CONTAINER_VERSION, MAX_NAME_LEN,
};
use crate::error::{Error, Result};

const CONTAINER_HEADER_LEN: usize = 16;
/// Kind byte of a stored quantized tensor (version 2 tables).
const KIND_QUANTIZED: u8 = 0;
/// Kind byte of a raw little-endian `f32` array (version 2 tables).
const KIND_F32: u8 = 1;

/// What an entry's bytes hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A stored tensor, which carries its own shape and checksum.
    Quantized,
    /// `rows × cols` little-endian `f32` values, row-major, under the table's `crc`.
    F32 { rows: usize, cols: usize, crc: u32 },
}

/// One entry of a table, as stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawEntry<'a> {
    pub name: &'a str,
    pub kind: Kind,
    pub offset: usize,
    pub len: usize,
}

/// Reads the entry at `at` of a table of `version`: the entry and where the next one starts.
/// Every read is bounds-checked; nothing about the entry's bytes is checked here.
fn entry(buf: &[u8], version: u16, at: usize) -> Result<(RawEntry<'_>, usize)> {
    let truncated = Error::Corrupt("truncated container entry table");
    let name_len = buf
        .get(at..at.saturating_add(4))
        .map(|_| read_u32(buf, at) as usize)
        .ok_or(truncated.clone())?;
    if name_len == 0 || name_len > MAX_NAME_LEN {
        return corrupt("container entry name length outside 1..=1024");
    }
    let name_end = at + 4 + name_len;
    let name = buf
        .get(at + 4..name_end)
        .ok_or(Error::Corrupt("truncated container entry name"))?;
    let name = core::str::from_utf8(name).or_else(|_| corrupt("entry name is not UTF-8"))?;
    let fixed = if version == 1 { 16 } else { 40 };
    if buf.len() < name_end + fixed {
        return Err(truncated);
    }
    let mut p = name_end;
    let kind = if version == 1 {
        Kind::Quantized
    } else {
        let kind = buf[p];
        if buf[p + 1..p + 4] != [0, 0, 0] {
            return corrupt("reserved container entry bytes are not zero");
        }
        let crc = read_u32(buf, p + 4);
        let rows = to_usize(read_u64(buf, p + 8), "f32 entry row count too large")?;
        let cols = to_usize(read_u64(buf, p + 16), "f32 entry column count too large")?;
        p += 24;
        match kind {
            KIND_QUANTIZED if rows == 0 && cols == 0 && crc == 0 => Kind::Quantized,
            KIND_QUANTIZED => return corrupt("a quantized entry has a shape or checksum set"),
            KIND_F32 => Kind::F32 { rows, cols, crc },
            _ => return corrupt("unknown container entry kind"),
        }
    };
    let offset = to_usize(read_u64(buf, p), "entry offset too large")?;
    let len = to_usize(read_u64(buf, p + 8), "entry length too large")?;
    Ok((
        RawEntry {
            name,
            kind,
            offset,
            len,
        },
        p + 16,
    ))
}

/// A container whose header and table have been validated: each entry's bytes lie inside
/// the buffer, aligned, in order, without overlap, and each `f32` entry's length matches its
/// shape. The entries' bytes themselves are not checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Table<'a> {
    buf: &'a [u8],
    version: u16,
    count: usize,
}

impl<'a> Table<'a> {
    /// Validates a container's header and table (see [`Table`]).
    pub fn parse(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < CONTAINER_HEADER_LEN {
            return corrupt("truncated: shorter than the 16-byte container header");
        }
        if buf[0..4] != CONTAINER_MAGIC {
            return corrupt("bad magic: not an expquant container (expected \"EXQC\")");
        }
        let version = read_u16(buf, 4);
        if !(1..=CONTAINER_VERSION).contains(&version) {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: CONTAINER_VERSION,
            });
        }
        if read_u16(buf, 6) != 0 {
            return corrupt("reserved container bytes are not zero");
        }
        let count = read_u32(buf, 8) as usize;
        // Walk the table once to find its end, then check the checksum before trusting it.
        let mut at = CONTAINER_HEADER_LEN;
        for _ in 0..count {
            at = entry(buf, version, at)?.1;
        }
        let table_end = at;
        let crc = if version == 1 {
            crc32(&buf[CONTAINER_HEADER_LEN..table_end])
        } else {
            // Version 2 covers the count too: a forged count cannot hide entries.
            let mut crc = Crc32::new();
            crc.update(&buf[..12]);
            crc.update(&buf[CONTAINER_HEADER_LEN..table_end]);
            crc.finish()
        };
        if crc != read_u32(buf, 12) {
            return corrupt("container checksum mismatch");
        }
        let mut at = CONTAINER_HEADER_LEN;
        // Entries are sorted by offset, so overlap is a neighbour check: no allocation.
        let mut previous_end = table_end;
        let mut previous_name: Option<&str> = None;
        for _ in 0..count {
            let (e, next) = entry(buf, version, at)?;
            if e.offset % CONTAINER_ALIGN != 0 {
                return corrupt("entry offset is not a multiple of 64");
            }
            if e.offset < previous_end {
                return corrupt(
                    "entries overlap the table or each other, or are not in offset order",
                );
            }
            let end = e
                .offset
                .checked_add(e.len)
                .ok_or(Error::Corrupt("entry end overflows"))?;
            if end > buf.len() {
                return corrupt("an entry reaches past the end of the container");
            }
            if let Kind::F32 { rows, cols, .. } = e.kind {
                let expected = rows.checked_mul(cols).and_then(|n| n.checked_mul(4));
                if rows == 0 || cols == 0 || expected != Some(e.len) {
                    return corrupt("an f32 entry's length is not 4 x rows x cols");
                }
            }
            // Names are strictly ascending, so uniqueness is a neighbour check too.
            if previous_name.is_some_and(|previous| previous >= e.name) {
                return corrupt("entry names are not unique and in ascending order");
            }
            previous_name = Some(e.name);
            previous_end = end;
            at = next;
        }
        Ok(Table {
            buf,
            version,
            count,
        })
    }

    /// The table of a buffer that [`parse`](Self::parse) accepted before, rebuilt in O(1)
    /// (the C ABI keeps `version` and `count` beside the buffer). Should the numbers not be
    /// those `parse` saw, every read stays bounds-checked: entries that cannot be read end
    /// the iteration.
    #[cfg(feature = "ffi-core")]
    pub fn from_parsed(buf: &'a [u8], version: u16, count: usize) -> Self {
        Table {
            buf,
            version,
            count,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// The container's format version.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Each entry and its bytes, in table order.
    pub fn entries(&self) -> impl Iterator<Item = (RawEntry<'a>, &'a [u8])> + '_ {
        let buf = self.buf;
        let version = self.version;
        let mut at = CONTAINER_HEADER_LEN;
        (0..self.count).map_while(move |_| {
            // `parse` read every entry already, so this cannot fail; `map_while` keeps an
            // impossible failure from becoming a panic.
            let (e, next) = entry(buf, version, at).ok()?;
            at = next;
            Some((e, buf.get(e.offset..e.offset.checked_add(e.len)?)?))
        })
    }
}

/// What [`write`] stores for one entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Planned<'n> {
    pub name: &'n str,
    /// `None` for a stored tensor, `Some((rows, cols))` for an `f32` array.
    pub f32_shape: Option<(usize, usize)>,
    pub len: usize,
}

/// Where [`write_into`] puts each entry, and the container's length.
#[cfg(feature = "alloc")]
pub(crate) struct Layout {
    table_len: usize,
    placed: alloc::vec::Vec<usize>,
    /// Bytes of the whole container.
    pub len: usize,
}

/// Checks `entries` (by strictly ascending name) and places them.
#[cfg(feature = "alloc")]
pub(crate) fn layout(entries: &[Planned<'_>]) -> Result<Layout> {
    for (i, e) in entries.iter().enumerate() {
        if e.name.is_empty() || e.name.len() > MAX_NAME_LEN {
            return Err(Error::InvalidName(
                "a tensor name must hold 1 to 1024 bytes",
            ));
        }
        if i > 0 && entries[i - 1].name >= e.name {
            return Err(Error::InvalidName("tensor names must be unique"));
        }
    }
    u32::try_from(entries.len()).map_err(|_| Error::InvalidName("more than 2^32 - 1 tensors"))?;
    let too_large = Error::InvalidName("the container would not fit in memory");
    let table_len = entries
        .iter()
        .try_fold(0usize, |sum, e| sum.checked_add(4 + e.name.len() + 40))
        .ok_or(too_large.clone())?;
    let mut offset = (CONTAINER_HEADER_LEN + table_len).next_multiple_of(CONTAINER_ALIGN);
    let mut placed = alloc::vec::Vec::with_capacity(entries.len());
    // No padding after the last entry: every byte of the container belongs to something.
    let mut len = CONTAINER_HEADER_LEN + table_len;
    for e in entries {
        placed.push(offset);
        len = offset.checked_add(e.len).ok_or(too_large.clone())?;
        offset = len
            .checked_next_multiple_of(CONTAINER_ALIGN)
            .ok_or(too_large.clone())?;
    }
    Ok(Layout {
        table_len,
        placed,
        len,
    })
}

/// Writes a version-2 container of `entries`, placed by [`layout`], into `out` (exactly
/// `layout.len` bytes, any contents); `write(i, out)` writes entry `i`'s bytes into `out`,
/// exactly its length.
#[cfg(feature = "alloc")]
pub(crate) fn write_into(
    entries: &[Planned<'_>],
    layout: &Layout,
    out: &mut [u8],
    mut write: impl FnMut(usize, &mut [u8]) -> Result<()>,
) -> Result<()> {
    if out.len() != layout.len || layout.placed.len() != entries.len() {
        return Err(Error::BufferLength {
            what: "container output",
            expected: layout.len,
            actual: out.len(),
        });
    }
    let table_len = layout.table_len;
    let mut previous_end = CONTAINER_HEADER_LEN + table_len;
    for (i, (e, &at)) in entries.iter().zip(&layout.placed).enumerate() {
        // The padding between entries is zero whatever the buffer held.
        out[previous_end..at].fill(0);
        write(i, &mut out[at..at + e.len])?;
        previous_end = at + e.len;
    }
    let mut table = alloc::vec::Vec::with_capacity(table_len);
    for (e, &at) in entries.iter().zip(&layout.placed) {
        table.extend_from_slice(&(e.name.len() as u32).to_le_bytes());
        table.extend_from_slice(e.name.as_bytes());
        let (kind, crc, (rows, cols)) = match e.f32_shape {
            None => (KIND_QUANTIZED, 0, (0, 0)),
            Some(shape) => (KIND_F32, crc32(&out[at..at + e.len]), shape),
        };
        table.extend_from_slice(&[kind, 0, 0, 0]);
        table.extend_from_slice(&crc.to_le_bytes());
        table.extend_from_slice(&(rows as u64).to_le_bytes());
        table.extend_from_slice(&(cols as u64).to_le_bytes());
        table.extend_from_slice(&(at as u64).to_le_bytes());
        table.extend_from_slice(&(e.len as u64).to_le_bytes());
    }
    out[0..4].copy_from_slice(&CONTAINER_MAGIC);
    out[4..6].copy_from_slice(&CONTAINER_VERSION.to_le_bytes());
    out[6..8].fill(0);
    out[8..12].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    out[CONTAINER_HEADER_LEN..CONTAINER_HEADER_LEN + table_len].copy_from_slice(&table);
    let mut crc = Crc32::new();
    crc.update(&out[..12]);
    crc.update(&table);
    out[12..16].copy_from_slice(&crc.finish().to_le_bytes());
    Ok(())
}
