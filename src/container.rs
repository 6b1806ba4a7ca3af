//! [`ContainerView`] and [`write_container`]: named tensors in one buffer (the layout is in
//! `format`'s docs).

use crate::error::Result;
use crate::format::container::Table;
use crate::view::QuantizedView;

/// A validated container of named tensors, borrowed from its bytes.
#[derive(Debug, Clone, Copy)]
pub struct ContainerView<'a> {
    table: Table<'a>,
}

impl<'a> ContainerView<'a> {
    /// Validates a container: header, table checksum, names (UTF-8, strictly ascending), and
    /// that each tensor lies inside the buffer, 64-byte aligned, after the table, in order,
    /// without overlap.
    /// Each tensor's own contents are validated when it is opened with [`get`](Self::get)
    /// or [`iter`](Self::iter).
    pub fn from_bytes(buf: &'a [u8]) -> Result<Self> {
        Ok(ContainerView {
            table: Table::parse(buf)?,
        })
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the container holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// The tensor named `name`, validated, or `Ok(None)` when there is none.
    pub fn get(&self, name: &str) -> Result<Option<QuantizedView<'a>>> {
        for entry in self.table.entries() {
            let (entry_name, bytes) = entry?;
            if entry_name == name {
                return QuantizedView::from_bytes(bytes).map(Some);
            }
        }
        Ok(None)
    }

    /// Each entry's name and validated view, in table order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(&'a str, QuantizedView<'a>)>> + '_ {
        self.table.entries().map(|entry| {
            let (name, bytes) = entry?;
            Ok((name, QuantizedView::from_bytes(bytes)?))
        })
    }
}

/// Serializes named tensors into a container (see `format`'s docs); entries are stored
/// sorted by name.
#[cfg(feature = "alloc")]
pub fn write_container(tensors: &[(&str, &crate::QuantizedTensor)]) -> Result<alloc::vec::Vec<u8>> {
    let mut tensors = tensors.to_vec();
    tensors.sort_by(|l, r| l.0.cmp(r.0));
    let entries: alloc::vec::Vec<(&str, usize)> = tensors
        .iter()
        .map(|(name, tensor)| (*name, tensor.serialized_len()))
        .collect();
    crate::format::container::write(&entries, |i, out| tensors[i].1.write_into(out).map(|_| ()))
}
