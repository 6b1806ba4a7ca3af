//! [`ContainerView`] and [`write_container`]: named entries — quantized tensors and raw `f32`
//! arrays — in one buffer (the layout is in `format`'s docs).

use crate::error::{Error, Result};
use crate::format::container::{Kind, RawEntry, Table};
use crate::format::crc32;
use crate::view::QuantizedView;

/// How much of a container's contents [`ContainerView::with_verification`] checks, and when.
///
/// Every mode checks the header, the table (under its checksum) and every length and bound,
/// so no bytes can make a reader crash or read out of bounds; the modes differ only in when
/// the entries' checksums and codes are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verification {
    /// Everything at open: each tensor's checksum, parameters and codes, each `f32` array's
    /// checksum. Later lookups redo only the O(1) header reads and the O(groups) parameters.
    #[default]
    Full,
    /// The table at open; each entry's checksum and codes each time it is looked up. Opening
    /// costs nothing per byte; a caller that reads each entry once pays for it once.
    Lazy,
    /// The table at open; entries' checksums and codes never. For bytes the caller verified
    /// before (say, once after download). Altered bytes then give wrong numbers (a code
    /// without a level reads as `0.0`), never undefined behaviour.
    Trusted,
}

/// A raw `rows × cols` array of little-endian `f32` values, row-major, borrowed from a
/// container.
#[derive(Debug, Clone, Copy)]
pub struct F32Array<'a> {
    rows: usize,
    cols: usize,
    bytes: &'a [u8],
}

impl<'a> F32Array<'a> {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of values, `rows × cols`.
    pub fn len(&self) -> usize {
        self.bytes.len() / 4
    }

    /// Whether the array holds no value (never, for an array read from a container).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The stored bytes: `4 × len` bytes, little-endian.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Value `i` (row-major), or `None` past the end.
    pub fn get(&self, i: usize) -> Option<f32> {
        let start = i.checked_mul(4)?;
        let b = self.bytes.get(start..start.checked_add(4)?)?;
        Some(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The values in place, without a copy, when the bytes are 4-byte aligned (they are when
    /// the container's buffer is, since entries start at multiples of 64) and the target is
    /// little-endian; `None` otherwise (use [`copy_to`](Self::copy_to)).
    pub fn as_slice(&self) -> Option<&'a [f32]> {
        if cfg!(target_endian = "big") {
            return None;
        }
        // SAFETY: every bit pattern is a valid `f32`, `u8` has no alignment, and `align_to`
        // puts into the middle part only elements that are aligned and inside the slice.
        let (head, values, tail) = unsafe { self.bytes.align_to::<f32>() };
        (head.is_empty() && tail.is_empty()).then_some(values)
    }

    /// Copies the values into `out`, which must hold exactly `rows × cols` values.
    pub fn copy_to(&self, out: &mut [f32]) -> Result<()> {
        if out.len() != self.len() {
            return Err(Error::BufferLength {
                what: "f32 entry output",
                expected: self.len(),
                actual: out.len(),
            });
        }
        for (o, b) in out.iter_mut().zip(self.bytes.chunks_exact(4)) {
            *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }

    /// The values, copied.
    #[cfg(feature = "alloc")]
    pub fn to_vec(&self) -> alloc::vec::Vec<f32> {
        let mut out = alloc::vec![0.0; self.len()];
        // `out` has exactly the length `copy_to` checks for.
        let _ = self.copy_to(&mut out);
        out
    }
}

/// One entry of a container, as read.
#[derive(Debug, Clone, Copy)]
pub enum EntryView<'a> {
    /// A quantized tensor.
    Quantized(QuantizedView<'a>),
    /// A raw `f32` array.
    F32(F32Array<'a>),
}

/// A container of named entries (quantized tensors and raw `f32` arrays), borrowed from its
/// bytes; nothing is copied or allocated.
#[derive(Debug, Clone, Copy)]
pub struct ContainerView<'a> {
    table: Table<'a>,
    verification: Verification,
}

impl<'a> ContainerView<'a> {
    /// Opens a container with [`Verification::Full`]: header, table checksum (which covers
    /// the entry count), names (UTF-8, strictly ascending), each entry inside the buffer,
    /// 64-byte aligned, after the table, in order, without overlap, and every entry's contents.
    pub fn from_bytes(buf: &'a [u8]) -> Result<Self> {
        Self::with_verification(buf, Verification::Full)
    }

    /// Opens a container, checking its entries' contents as `verification` says.
    pub fn with_verification(buf: &'a [u8], verification: Verification) -> Result<Self> {
        let view = ContainerView {
            table: Table::parse(buf)?,
            verification,
        };
        if verification == Verification::Full {
            for (entry, bytes) in view.table.entries() {
                verify(&entry, bytes)?;
            }
        }
        Ok(view)
    }

    /// A container that [`with_verification`](Self::with_verification) accepted before,
    /// rebuilt in O(1) from its buffer and the numbers it reported (the C ABI's
    /// `expq_container_view`): no check is redone, and none is needed for memory safety.
    #[cfg(feature = "ffi-core")]
    pub(crate) fn from_parsed(
        buf: &'a [u8],
        version: u16,
        count: usize,
        verification: Verification,
    ) -> Self {
        ContainerView {
            table: Table::from_parsed(buf, version, count),
            verification,
        }
    }

    /// The verification mode the container was opened with.
    pub fn verification(&self) -> Verification {
        self.verification
    }

    /// The container's format version (1 or 2).
    pub fn version(&self) -> u16 {
        self.table.version()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the container holds no entry.
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// The name of entry `index` (entries are in ascending name order), or `None` past the
    /// end. Walks the table from the start: O(index).
    pub fn name(&self, index: usize) -> Option<&'a str> {
        self.table.entries().nth(index).map(|(e, _)| e.name)
    }

    /// Entry `index` with its name, or `Ok(None)` past the end. O(index), as [`name`](Self::name).
    pub fn entry_at(&self, index: usize) -> Result<Option<(&'a str, EntryView<'a>)>> {
        match self.table.entries().nth(index) {
            Some((e, bytes)) => Ok(Some((e.name, self.open(&e, bytes)?))),
            None => Ok(None),
        }
    }

    /// The stored bytes of entry `index`, unchecked.
    #[cfg(feature = "ffi-core")]
    pub(crate) fn raw_at(&self, index: usize) -> Option<&'a [u8]> {
        self.table.entries().nth(index).map(|(_, bytes)| bytes)
    }

    /// The index of the entry named `name`, or `None`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.table.entries().position(|(e, _)| e.name == name)
    }

    /// The entry named `name`, or `Ok(None)` when there is none.
    pub fn entry(&self, name: &str) -> Result<Option<EntryView<'a>>> {
        match self.table.entries().find(|(e, _)| e.name == name) {
            Some((e, bytes)) => self.open(&e, bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The quantized tensor named `name`, or `Ok(None)` when there is none; an error when the
    /// entry of that name is an `f32` array.
    pub fn get(&self, name: &str) -> Result<Option<QuantizedView<'a>>> {
        match self.entry(name)? {
            Some(EntryView::Quantized(view)) => Ok(Some(view)),
            Some(EntryView::F32(_)) => Err(Error::InvalidName(
                "the entry holds an f32 array, not a quantized tensor (read it with get_f32)",
            )),
            None => Ok(None),
        }
    }

    /// The `f32` array named `name`, or `Ok(None)` when there is none; an error when the entry
    /// of that name is a quantized tensor.
    pub fn get_f32(&self, name: &str) -> Result<Option<F32Array<'a>>> {
        match self.entry(name)? {
            Some(EntryView::F32(array)) => Ok(Some(array)),
            Some(EntryView::Quantized(_)) => Err(Error::InvalidName(
                "the entry holds a quantized tensor, not an f32 array (read it with get)",
            )),
            None => Ok(None),
        }
    }

    /// Each quantized tensor's name and view, in table order (`f32` arrays are skipped; see
    /// [`entries`](Self::entries)).
    pub fn iter(&self) -> impl Iterator<Item = Result<(&'a str, QuantizedView<'a>)>> + '_ {
        self.entries().filter_map(|entry| match entry {
            Ok((name, EntryView::Quantized(view))) => Some(Ok((name, view))),
            Ok((_, EntryView::F32(_))) => None,
            Err(e) => Some(Err(e)),
        })
    }

    /// Every entry's name and contents, in table order.
    pub fn entries(&self) -> impl Iterator<Item = Result<(&'a str, EntryView<'a>)>> + '_ {
        self.table
            .entries()
            .map(|(e, bytes)| Ok((e.name, self.open(&e, bytes)?)))
    }

    fn open(&self, entry: &RawEntry<'a>, bytes: &'a [u8]) -> Result<EntryView<'a>> {
        match (self.verification, entry.kind) {
            (Verification::Lazy, _) => verify(entry, bytes),
            (_, Kind::Quantized) => {
                QuantizedView::from_bytes_unverified(bytes).map(EntryView::Quantized)
            }
            (_, Kind::F32 { rows, cols, .. }) => Ok(EntryView::F32(F32Array { rows, cols, bytes })),
        }
    }
}

/// Checks an entry's contents in full and returns it.
fn verify<'a>(entry: &RawEntry<'a>, bytes: &'a [u8]) -> Result<EntryView<'a>> {
    match entry.kind {
        Kind::Quantized => QuantizedView::from_bytes(bytes).map(EntryView::Quantized),
        Kind::F32 { rows, cols, crc } => {
            if crc32(bytes) != crc {
                return Err(Error::Corrupt("f32 entry checksum mismatch"));
            }
            Ok(EntryView::F32(F32Array { rows, cols, bytes }))
        }
    }
}

/// One entry to write into a container.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, Copy)]
pub enum Entry<'t> {
    /// A quantized tensor, stored in its own format.
    Quantized(&'t crate::QuantizedTensor),
    /// A raw `rows × cols` array of `f32` values, row-major (biases, norms, anything kept in
    /// full precision); `values` must hold exactly `rows × cols` values.
    F32 {
        /// Number of rows (1 for a vector).
        rows: usize,
        /// Number of columns.
        cols: usize,
        /// The values.
        values: &'t [f32],
    },
}

#[cfg(feature = "alloc")]
impl<'t> From<&'t crate::QuantizedTensor> for Entry<'t> {
    fn from(tensor: &'t crate::QuantizedTensor) -> Self {
        Entry::Quantized(tensor)
    }
}

#[cfg(feature = "alloc")]
impl<'t> Entry<'t> {
    /// A vector of `f32` values, stored as a `1 × len` array.
    pub fn vector(values: &'t [f32]) -> Self {
        Entry::F32 {
            rows: 1,
            cols: values.len(),
            values,
        }
    }

    /// The stored length of the entry, after checking an `f32` entry's shape.
    fn stored_len(&self) -> Result<(Option<(usize, usize)>, usize)> {
        match *self {
            Entry::Quantized(tensor) => Ok((None, tensor.serialized_len())),
            Entry::F32 { rows, cols, values } => {
                if rows == 0 || cols == 0 {
                    return Err(Error::EmptyTensor { rows, cols });
                }
                let n = rows.checked_mul(cols);
                if n != Some(values.len()) {
                    return Err(Error::ShapeMismatch {
                        rows,
                        cols,
                        len: values.len(),
                    });
                }
                // A slice of `f32` never spans more than `isize::MAX` bytes.
                Ok((Some((rows, cols)), values.len() * 4))
            }
        }
    }

    fn write_into(&self, out: &mut [u8]) -> Result<()> {
        match *self {
            Entry::Quantized(tensor) => tensor.write_into(out).map(|_| ()),
            Entry::F32 { values, .. } => {
                for (o, v) in out.chunks_exact_mut(4).zip(values) {
                    o.copy_from_slice(&v.to_le_bytes());
                }
                Ok(())
            }
        }
    }
}

/// Serializes named entries — quantized tensors (`&QuantizedTensor` converts) and raw `f32`
/// arrays ([`Entry::F32`]) — into a container (see `format`'s docs); entries are stored sorted
/// by name.
///
/// ```
/// use expquant::{quantize, write_container, Config, ContainerView, Entry};
/// let w: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 32.0).collect();
/// let weight = quantize(&w, 4, 16, &Config::exponential(4))?;
/// let bias = [0.5f32, -0.25, 0.0, 1.0];
/// let bytes = write_container(&[
///     ("fc.weight", Entry::from(&weight)),
///     ("fc.bias", Entry::vector(&bias)),
/// ])?;
/// let c = ContainerView::from_bytes(&bytes)?;
/// assert_eq!(c.get_f32("fc.bias")?.unwrap().to_vec(), bias);
/// assert_eq!(c.get("fc.weight")?.unwrap().rows(), 4);
/// # Ok::<(), expquant::Error>(())
/// ```
#[cfg(feature = "alloc")]
pub fn write_container<'t, E: Into<Entry<'t>> + Copy>(
    entries: &[(&str, E)],
) -> Result<alloc::vec::Vec<u8>> {
    let entries: alloc::vec::Vec<(&str, Entry<'t>)> =
        entries.iter().map(|&(name, e)| (name, e.into())).collect();
    let plan = Plan::new(&entries)?;
    let mut out = alloc::vec![0u8; plan.len()];
    plan.write_into(&mut out)?;
    Ok(out)
}

/// Named entries sorted, checked and placed: the container's length is known before any
/// byte is written (the C ABI's size query), and [`write_into`](Self::write_into) fills a
/// caller's buffer.
#[cfg(feature = "alloc")]
pub(crate) struct Plan<'e, 't> {
    sorted: alloc::vec::Vec<&'e (&'e str, Entry<'t>)>,
    planned: alloc::vec::Vec<crate::format::container::Planned<'e>>,
    layout: crate::format::container::Layout,
}

#[cfg(feature = "alloc")]
impl<'e, 't> Plan<'e, 't> {
    /// Sorts `entries` by name and checks names and shapes.
    pub fn new(entries: &'e [(&'e str, Entry<'t>)]) -> Result<Self> {
        let mut sorted: alloc::vec::Vec<&(&str, Entry<'t>)> = entries.iter().collect();
        sorted.sort_by(|l, r| l.0.cmp(r.0));
        let planned = sorted
            .iter()
            .map(|(name, e)| {
                let (f32_shape, len) = e.stored_len()?;
                Ok(crate::format::container::Planned {
                    name,
                    f32_shape,
                    len,
                })
            })
            .collect::<Result<alloc::vec::Vec<_>>>()?;
        let layout = crate::format::container::layout(&planned)?;
        Ok(Plan {
            sorted,
            planned,
            layout,
        })
    }

    /// Bytes of the container.
    pub fn len(&self) -> usize {
        self.layout.len
    }

    /// Writes the container into `out`, exactly [`len`](Self::len) bytes.
    pub fn write_into(&self, out: &mut [u8]) -> Result<()> {
        crate::format::container::write_into(&self.planned, &self.layout, out, |i, out| {
            self.sorted[i].1.write_into(out)
        })
    }
}
