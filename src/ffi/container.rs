//! Containers from C: `expq_container_builder` (named tensors and `f32` arrays, size query
//! then write) and `expq_container_view`, a caller-owned struct that borrows stored bytes
//! without copying and hands out each tensor as an `expq_view` and each `f32` array in place.

use core::mem::{align_of, offset_of, size_of};
#[cfg(not(expq_no_std))]
use std::string::String;
#[cfg(not(expq_no_std))]
use std::vec::Vec;

use crate::container::EntryView;
#[cfg(not(expq_no_std))]
use crate::container::{Entry, Plan};
use crate::error::Error;
#[cfg(not(expq_no_std))]
use crate::QuantizedTensor;
use crate::{ContainerView, Verification};

#[cfg(not(expq_no_std))]
use super::expq_tensor;
use super::storage::expq_view;
use super::{boundary, check_disjoint, expq_status, write_out, Failure};

/// How much of a container `expq_container_view_init` checks, and when. Every mode checks
/// the header, the table and every bound, so no bytes can make the library crash or read out
/// of bounds; the modes differ in when entries' checksums and codes are verified.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum expq_verification {
    /// Every entry at `expq_container_view_init` (the default; reads every byte once).
    Full = 0,
    /// Each entry each time `expq_container_view_tensor` or `expq_container_view_f32` gets it.
    Lazy = 1,
    /// Entries' checksums and codes never: for bytes verified once before. Altered bytes give
    /// wrong numbers, never undefined behaviour.
    Trusted = 2,
}

/// An [`expq_verification`] as received from C: any `u32`, checked before use.
pub type expq_verification_value = u32;

/// What an entry of a container holds.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum expq_entry_kind {
    /// A quantized tensor (`expq_container_view_tensor`).
    Quantized = 0,
    /// A raw `rows × cols` array of floats (`expq_container_view_f32`).
    F32 = 1,
}

// A C enum has the size of `u32`, except on bare-metal Arm (EABI), where GCC and Rust both
// make it as small as its values (one byte here). An enum argument received as `u32` is
// sound there too: AAPCS widens an argument smaller than a word to a full word.
const _: () = {
    let c_enum = if cfg!(all(target_arch = "arm", target_os = "none")) {
        1
    } else {
        size_of::<u32>()
    };
    assert!(size_of::<expq_verification>() == c_enum);
    assert!(size_of::<expq_entry_kind>() == c_enum);
};

fn verification(value: expq_verification_value) -> Result<Verification, Failure> {
    match value {
        0 => Ok(Verification::Full),
        1 => Ok(Verification::Lazy),
        2 => Ok(Verification::Trusted),
        _ => Err(Failure::BadEnum {
            what: "mode",
            value,
            allowed: "EXPQ_VERIFICATION_FULL, _LAZY or _TRUSTED (0, 1 or 2)",
        }),
    }
}

/// One entry a builder holds: its own copy of the tensor or the floats.
#[cfg(not(expq_no_std))]
enum Owned {
    Quantized(QuantizedTensor),
    F32 {
        rows: usize,
        cols: usize,
        values: Vec<f32>,
    },
}

/// Named tensors and `f32` arrays to write into one container, owned by the caller from
/// `expq_container_builder_new` until `expq_container_builder_free`. Opaque. It copies what
/// is added, so the tensors and arrays may be freed right after they are added. Not
/// thread-safe while entries are added; `expq_container_builder_write` only reads it.
#[cfg(not(expq_no_std))]
pub struct expq_container_builder {
    entries: Vec<(String, Owned)>,
}

/// Creates an empty builder in `*out` (free it with `expq_container_builder_free`).
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`. `*out` is written only on success.
///
/// # Safety
/// `out` must be NULL or writable for one pointer.
#[cfg(not(expq_no_std))]
#[no_mangle]
pub unsafe extern "C" fn expq_container_builder_new(
    out: *mut *mut expq_container_builder,
) -> expq_status {
    boundary("expq_container_builder_new", || {
        try_out!(out);
        let builder = std::boxed::Box::into_raw(std::boxed::Box::new(expq_container_builder {
            entries: Vec::new(),
        }));
        // SAFETY: `out` is non-NULL (checked above) and the caller promises it is writable.
        unsafe { write_out(out, builder) };
        Ok(expq_status::Ok)
    })
}

/// Frees a builder. NULL is ignored.
///
/// # Safety
/// `b` must be NULL or a builder from `expq_container_builder_new` not yet freed.
#[cfg(not(expq_no_std))]
#[no_mangle]
pub unsafe extern "C" fn expq_container_builder_free(b: *mut expq_container_builder) {
    boundary("expq_container_builder_free", || {
        if !b.is_null() {
            // SAFETY: `b` came from `Box::into_raw` in `expq_container_builder_new` and, as
            // the caller promises, has not been freed.
            drop(unsafe { std::boxed::Box::from_raw(b) });
        }
        Ok(())
    })
}

/// The name `name_len` bytes at `name` as UTF-8, checked for length and uniqueness in `b`.
#[cfg(not(expq_no_std))]
fn checked_name(b: &expq_container_builder, name: &[u8]) -> Result<String, Failure> {
    let name = core::str::from_utf8(name)
        .map_err(|_| Error::InvalidName("a tensor name must be UTF-8"))?;
    if name.is_empty() || name.len() > crate::format::MAX_NAME_LEN {
        return Err(Error::InvalidName("a tensor name must hold 1 to 1024 bytes").into());
    }
    if b.entries.iter().any(|(n, _)| n == name) {
        return Err(Error::InvalidName("tensor names must be unique").into());
    }
    Ok(String::from(name))
}

/// Adds a copy of tensor `t` under the `name_len`-byte UTF-8 name at `name` (no NUL needed;
/// 1 to `EXPQ_MAX_NAME_LEN` bytes, unique in the builder). `t` may be freed afterwards.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (a name that is empty,
/// too long, not UTF-8, or already added). Nothing is added on failure.
///
/// # Safety
/// `b` must be NULL or a live builder not used by another thread during the call; `name`
/// must point to `name_len` bytes; `t` must be NULL or a live tensor.
#[cfg(not(expq_no_std))]
#[no_mangle]
pub unsafe extern "C" fn expq_container_builder_add_tensor(
    b: *mut expq_container_builder,
    name: *const u8,
    name_len: usize,
    t: *const expq_tensor,
) -> expq_status {
    boundary("expq_container_builder_add_tensor", || {
        // SAFETY: the caller promises a non-NULL `b` is a live builder that no other thread
        // uses during the call.
        let b = unsafe { b.as_mut() }.ok_or(Failure::Null("b"))?;
        let name = try_slice!(name, name_len);
        let t = try_ref!(t);
        let name = checked_name(b, name)?;
        b.entries.push((name, Owned::Quantized(t.inner.clone())));
        Ok(expq_status::Ok)
    })
}

/// Adds a copy of the `rows × cols` row-major floats at `values` (`values_len == rows *
/// cols`; biases, norms, anything kept in full precision) under the name at `name`, as
/// `expq_container_builder_add_tensor`. The values are stored bit for bit, NaN included.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (a bad name as for
/// `expq_container_builder_add_tensor`, zero rows or columns, `values_len != rows * cols`).
/// Nothing is added on failure.
///
/// # Safety
/// `b` and `name` as for `expq_container_builder_add_tensor`; `values` must point to
/// `values_len` floats.
#[cfg(not(expq_no_std))]
#[no_mangle]
pub unsafe extern "C" fn expq_container_builder_add_f32(
    b: *mut expq_container_builder,
    name: *const u8,
    name_len: usize,
    values: *const f32,
    values_len: usize,
    rows: usize,
    cols: usize,
) -> expq_status {
    boundary("expq_container_builder_add_f32", || {
        // SAFETY: as in `expq_container_builder_add_tensor`.
        let b = unsafe { b.as_mut() }.ok_or(Failure::Null("b"))?;
        let name = try_slice!(name, name_len);
        let values = try_slice!(values, values_len);
        let name = checked_name(b, name)?;
        if rows == 0 || cols == 0 {
            return Err(Error::EmptyTensor { rows, cols }.into());
        }
        if rows.checked_mul(cols) != Some(values.len()) {
            return Err(Error::ShapeMismatch {
                rows,
                cols,
                len: values.len(),
            }
            .into());
        }
        b.entries.push((
            name,
            Owned::F32 {
                rows,
                cols,
                values: values.to_vec(),
            },
        ));
        Ok(expq_status::Ok)
    })
}

/// Writes the container of every entry added to `b` (sorted by name; the byte layout of
/// FORMAT.md, container version `EXPQ_CONTAINER_VERSION`) into `buf`, which holds `buf_len`
/// bytes, and stores the number of bytes written in `*written`. The bytes equal those Rust's
/// `write_container` writes for the same entries. They can be opened in place with
/// `expq_container_view_init`.
///
/// Size query, as `expq_tensor_serialize`: with `buf` NULL or `buf_len` too small, nothing is
/// written to `buf`, `*written` gets the needed size and the status is
/// `EXPQ_STATUS_BUFFER_TOO_SMALL`.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER` (`b` or `written` NULL), `EXPQ_STATUS_BUFFER_TOO_SMALL`
/// (as above), `EXPQ_STATUS_INVALID_ARGUMENT` (`buf_len` larger than needed is fine; more
/// than 2^32 − 1 entries is not).
///
/// # Safety
/// `b` must be NULL or a live builder not modified during the call; `buf` must be NULL or
/// writable for `buf_len` bytes; `written` must be NULL or writable.
#[cfg(not(expq_no_std))]
#[no_mangle]
pub unsafe extern "C" fn expq_container_builder_write(
    b: *const expq_container_builder,
    buf: *mut u8,
    buf_len: usize,
    written: *mut usize,
) -> expq_status {
    boundary("expq_container_builder_write", || {
        let b = try_ref!(b);
        try_out!(written);
        let entries: Vec<(&str, Entry<'_>)> = b
            .entries
            .iter()
            .map(|(name, owned)| {
                let entry = match owned {
                    Owned::Quantized(t) => Entry::Quantized(t),
                    Owned::F32 { rows, cols, values } => Entry::F32 {
                        rows: *rows,
                        cols: *cols,
                        values,
                    },
                };
                (name.as_str(), entry)
            })
            .collect();
        let plan = Plan::new(&entries)?;
        let needed = plan.len();
        if buf.is_null() || buf_len < needed {
            // SAFETY: `written` is non-NULL (checked above) and writable, as the caller
            // promises. Writing it on this failure is the documented size query.
            unsafe { write_out(written, needed) };
            return Err(Failure::Core(Error::BufferLength {
                what: if buf.is_null() { "buf (NULL)" } else { "buf" },
                expected: needed,
                actual: if buf.is_null() { 0 } else { buf_len },
            }));
        }
        let out = try_slice_mut!(buf, needed);
        plan.write_into(out)?;
        // SAFETY: `written` is non-NULL (checked above) and writable, as the caller promises.
        unsafe { write_out(written, needed) };
        Ok(expq_status::Ok)
    })
}

/// A container borrowed in place: `expq_container_view_init` checks the bytes (as its `mode`
/// says) and fills this caller-owned struct; the `expq_container_view_*` functions then look
/// entries up without copying or allocating.
///
/// The fields are private to the library: do not read or modify them. The struct owns
/// nothing and is never freed; it may be copied, and it may live on the stack or in static
/// memory. It borrows the buffer given to `expq_container_view_init`, which must stay alive
/// and unchanged while the view, or any `expq_view` or float pointer taken from it, is used.
/// A zeroed struct is "not initialized": the functions reject it with
/// `EXPQ_STATUS_INVALID_ARGUMENT`. Changed fields can give wrong results or errors but every
/// read stays inside the buffer (a changed buffer pointer or length is undefined behaviour).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct expq_container_view {
    /// Private: the first byte of the container.
    data: *const u8,
    /// Private: its length in bytes.
    len: usize,
    /// Private: the number of entries.
    count: usize,
    /// Private: the container version.
    version: u16,
    /// Private: the verification mode.
    mode: u8,
    /// Private: zero.
    _reserved: [u8; 5],
}

// The C declaration cbindgen writes must have this layout on every target: three
// pointer-sized words, then eight bytes.
const _: () = {
    assert!(size_of::<expq_container_view>() == 3 * size_of::<usize>() + 8);
    assert!(align_of::<expq_container_view>() == align_of::<usize>());
    assert!(offset_of!(expq_container_view, version) == 3 * size_of::<usize>());
};

impl expq_container_view {
    /// The container rebuilt in O(1) from the struct.
    ///
    /// # Safety
    /// `self` must have been written by `expq_container_view_init` (or copied from such a
    /// struct) and its buffer must still be alive and unchanged for `'a`.
    unsafe fn container<'a>(&self) -> Result<(&'a [u8], ContainerView<'a>), Failure> {
        if self.data.is_null() {
            return Err(Failure::UninitializedView("c"));
        }
        // SAFETY: `data` and `len` are those of the buffer `expq_container_view_init`
        // checked, which the caller promises is still alive and unchanged.
        let bytes = unsafe { super::slice_from(self.data, self.len, "c")? };
        let mode = verification(u32::from(self.mode))
            .map_err(|_| Error::Corrupt("the expq_container_view fields were modified"))?;
        Ok((
            bytes,
            ContainerView::from_parsed(bytes, self.version, self.count, mode),
        ))
    }
}

/// Opens the `buf_len`-byte container at `buf` without copying it: checks header, version
/// (1 to `EXPQ_CONTAINER_VERSION`), the table under its checksum, every name, offset and
/// length, and — with `EXPQ_VERIFICATION_FULL` — every entry's checksum, parameters and codes;
/// then fills `*out`. Allocates nothing. `buf` needs no alignment (but see
/// `expq_container_view_f32`), and must stay alive and unchanged while `*out` is used.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_CORRUPT_DATA` (truncated, altered,
/// inconsistent; the message says which check failed), `EXPQ_STATUS_UNSUPPORTED_VERSION`,
/// `EXPQ_STATUS_INVALID_ARGUMENT` (`mode` not an `expq_verification`, `out` inside `buf`).
/// `*out` is written only on success.
///
/// # Safety
/// `buf` must point to `buf_len` readable bytes; `out` must be writable for one
/// `expq_container_view`.
#[no_mangle]
pub unsafe extern "C" fn expq_container_view_init(
    buf: *const u8,
    buf_len: usize,
    mode: expq_verification_value,
    out: *mut expq_container_view,
) -> expq_status {
    boundary("expq_container_view_init", || {
        let bytes = try_slice!(buf, buf_len);
        let mode = verification(mode)?;
        try_out!(out);
        check_disjoint(bytes, out, 1, ("buf", "out"))?;
        let c = ContainerView::with_verification(bytes, mode)?;
        let described = expq_container_view {
            data: bytes.as_ptr(),
            len: bytes.len(),
            count: c.len(),
            version: c.version(),
            mode: mode as u8,
            _reserved: [0; 5],
        };
        // SAFETY: `out` is non-NULL (checked above), outside `buf`, and writable as the
        // caller promises.
        unsafe { write_out(out, described) };
        Ok(expq_status::Ok)
    })
}

/// Stores the number of entries in `*count`.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (`c` not initialized).
///
/// # Safety
/// `c` must be NULL or an `expq_container_view` filled in by `expq_container_view_init` (or a
/// copy, or a zeroed struct) whose buffer is alive and unchanged; `count` must be writable.
#[no_mangle]
pub unsafe extern "C" fn expq_container_view_count(
    c: *const expq_container_view,
    count: *mut usize,
) -> expq_status {
    boundary("expq_container_view_count", || {
        let c = *try_ref!(c);
        try_out!(count);
        // SAFETY: as the caller promises (see `# Safety`).
        let (_, view) = unsafe { c.container()? };
        // SAFETY: `count` is non-NULL (checked above) and writable.
        unsafe { write_out(count, view.len()) };
        Ok(expq_status::Ok)
    })
}

/// The raw entry `index` of `c`, or an index error.
fn entry_at<'a>(c: &ContainerView<'a>, index: usize) -> Result<(&'a str, EntryView<'a>), Failure> {
    c.entry_at(index)?.ok_or(Failure::Index {
        what: "entry",
        index,
        count: c.len(),
    })
}

/// Stores the name of entry `index` (entries are sorted by name) as a pointer into the
/// container's buffer in `*name` and its length in bytes in `*name_len`. The name is UTF-8
/// and not NUL-terminated; it lives as long as the buffer. O(index): to visit every entry,
/// loop `index` from 0 to the count.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (`c` not initialized,
/// `index` not below the count).
///
/// # Safety
/// `c` as for `expq_container_view_count`; `name` and `name_len` must be writable.
#[no_mangle]
pub unsafe extern "C" fn expq_container_view_name(
    c: *const expq_container_view,
    index: usize,
    name: *mut *const u8,
    name_len: *mut usize,
) -> expq_status {
    boundary("expq_container_view_name", || {
        let c = *try_ref!(c);
        try_out!(name);
        try_out!(name_len);
        // SAFETY: as the caller promises (see `# Safety`).
        let (_, view) = unsafe { c.container()? };
        let found = view.name(index).ok_or(Failure::Index {
            what: "entry",
            index,
            count: view.len(),
        })?;
        // SAFETY: both are non-NULL (checked above) and writable.
        unsafe {
            write_out(name, found.as_ptr());
            write_out(name_len, found.len());
        }
        Ok(expq_status::Ok)
    })
}

/// Looks up the entry named by the `name_len` bytes at `name`: on success `*found` is set,
/// and when it is `true` `*index` holds the entry's index (`*index` is untouched otherwise).
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (`c` not initialized).
/// A missing name is not an error.
///
/// # Safety
/// `c` as for `expq_container_view_count`; `name` must point to `name_len` bytes; `index` and
/// `found` must be writable.
#[no_mangle]
pub unsafe extern "C" fn expq_container_view_find(
    c: *const expq_container_view,
    name: *const u8,
    name_len: usize,
    index: *mut usize,
    found: *mut bool,
) -> expq_status {
    boundary("expq_container_view_find", || {
        let c = *try_ref!(c);
        let name = try_slice!(name, name_len);
        try_out!(index);
        try_out!(found);
        // SAFETY: as the caller promises (see `# Safety`).
        let (_, view) = unsafe { c.container()? };
        // A name that is not UTF-8 names no entry.
        let position = core::str::from_utf8(name)
            .ok()
            .and_then(|name| view.position(name));
        // SAFETY: both are non-NULL (checked above) and writable.
        unsafe {
            if let Some(position) = position {
                write_out(index, position);
            }
            write_out(found, position.is_some());
        }
        Ok(expq_status::Ok)
    })
}

/// Stores what entry `index` holds in `*kind`.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (`c` not initialized,
/// `index` not below the count), and with `EXPQ_VERIFICATION_LAZY` the errors of verifying
/// the entry (`EXPQ_STATUS_CORRUPT_DATA`, `EXPQ_STATUS_UNSUPPORTED_VERSION`).
///
/// # Safety
/// `c` as for `expq_container_view_count`; `kind` must be writable.
#[no_mangle]
pub unsafe extern "C" fn expq_container_view_kind(
    c: *const expq_container_view,
    index: usize,
    kind: *mut expq_entry_kind,
) -> expq_status {
    boundary("expq_container_view_kind", || {
        let c = *try_ref!(c);
        try_out!(kind);
        // SAFETY: as the caller promises (see `# Safety`).
        let (_, view) = unsafe { c.container()? };
        let found = match entry_at(&view, index)?.1 {
            EntryView::Quantized(_) => expq_entry_kind::Quantized,
            EntryView::F32(_) => expq_entry_kind::F32,
        };
        // SAFETY: `kind` is non-NULL (checked above) and writable.
        unsafe { write_out(kind, found) };
        Ok(expq_status::Ok)
    })
}

/// Fills `*out` with a view of the quantized tensor at entry `index`, borrowing the
/// container's buffer (use it with `expq_view_dequantize`, `expq_view_gemv`, ...; it lives as
/// long as the buffer). Allocates nothing; with `EXPQ_VERIFICATION_LAZY` this verifies the
/// tensor's checksum and codes, otherwise it reads only its header and parameters.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (`c` not initialized,
/// `index` not below the count, the entry is an `f32` array, `out` inside the buffer),
/// `EXPQ_STATUS_CORRUPT_DATA` / `EXPQ_STATUS_UNSUPPORTED_VERSION` (the tensor's bytes).
/// `*out` is written only on success.
///
/// # Safety
/// `c` as for `expq_container_view_count`; `out` must be writable for one `expq_view`.
#[no_mangle]
pub unsafe extern "C" fn expq_container_view_tensor(
    c: *const expq_container_view,
    index: usize,
    out: *mut expq_view,
) -> expq_status {
    boundary("expq_container_view_tensor", || {
        let c = *try_ref!(c);
        try_out!(out);
        // SAFETY: as the caller promises (see `# Safety`).
        let (bytes, view) = unsafe { c.container()? };
        check_disjoint(bytes, out, 1, ("c's buffer", "out"))?;
        let tensor = match entry_at(&view, index)?.1 {
            EntryView::Quantized(tensor) => tensor,
            EntryView::F32(_) => {
                return Err(Error::InvalidName(
                    "the entry holds an f32 array, not a quantized tensor (use expq_container_view_f32)",
                )
                .into())
            }
        };
        let stored = view.raw_at(index).ok_or(Failure::Index {
            what: "entry",
            index,
            count: view.len(),
        })?;
        let described = expq_view::new(stored, &tensor);
        // SAFETY: `out` is non-NULL (checked above), outside the buffer, and writable.
        unsafe { write_out(out, described) };
        Ok(expq_status::Ok)
    })
}

/// The `f32` array at entry `index`, or the errors of a wrong kind.
fn f32_entry<'a>(view: &ContainerView<'a>, index: usize) -> Result<crate::F32Array<'a>, Failure> {
    match entry_at(view, index)?.1 {
        EntryView::F32(array) => Ok(array),
        EntryView::Quantized(_) => Err(Error::InvalidName(
            "the entry holds a quantized tensor, not an f32 array (use expq_container_view_tensor)",
        )
        .into()),
    }
}

/// Stores a pointer to the floats of the `f32` array at entry `index` — in place, inside the
/// container's buffer, valid as long as it — in `*values`, and its shape in `*rows` and
/// `*cols` (`rows * cols` floats, row-major). Copies nothing. Needs the buffer's start to be
/// 4-byte aligned (entries start at multiples of 64 from it; `mmap` and `malloc` give that)
/// and a little-endian target; otherwise use `expq_container_view_f32_copy`.
///
/// Errors: `EXPQ_STATUS_NULL_POINTER`, `EXPQ_STATUS_INVALID_ARGUMENT` (`c` not initialized,
/// `index` not below the count, the entry is a quantized tensor, the buffer is misaligned),
/// `EXPQ_STATUS_CORRUPT_DATA` (with `EXPQ_VERIFICATION_LAZY`: checksum mismatch). Out-params
/// are written only on success.
///
/// # Safety
/// `c` as for `expq_container_view_count`; `values`, `rows` and `cols` must be writable.
#[no_mangle]
pub unsafe extern "C" fn expq_container_view_f32(
    c: *const expq_container_view,
    index: usize,
    values: *mut *const f32,
    rows: *mut usize,
    cols: *mut usize,
) -> expq_status {
    boundary("expq_container_view_f32", || {
        let c = *try_ref!(c);
        try_out!(values);
        try_out!(rows);
        try_out!(cols);
        // SAFETY: as the caller promises (see `# Safety`).
        let (_, view) = unsafe { c.container()? };
        let array = f32_entry(&view, index)?;
        let in_place = array.as_slice().ok_or(Failure::BadSlice {
            what: "c's buffer",
            reason: "is not 4-byte aligned (or the target is big-endian): use expq_container_view_f32_copy",
        })?;
        // SAFETY: all three are non-NULL (checked above) and writable.
        unsafe {
            write_out(values, in_place.as_ptr());
            write_out(rows, array.rows());
            write_out(cols, array.cols());
        }
        Ok(expq_status::Ok)
    })
}

/// Copies the `f32` array at entry `index` into `out`, which must hold exactly `rows * cols`
/// floats (`out_len`). Works at any alignment and byte order.
///
/// Errors: as `expq_container_view_f32` (but any alignment is fine), and
/// `EXPQ_STATUS_BUFFER_TOO_SMALL` / `EXPQ_STATUS_INVALID_ARGUMENT` for an `out_len` too short
/// or too long, or `out` overlapping the buffer. `out` is written only on success.
///
/// # Safety
/// `c` as for `expq_container_view_count`; `out` must be writable for `out_len` floats.
#[no_mangle]
pub unsafe extern "C" fn expq_container_view_f32_copy(
    c: *const expq_container_view,
    index: usize,
    out: *mut f32,
    out_len: usize,
) -> expq_status {
    boundary("expq_container_view_f32_copy", || {
        let c = *try_ref!(c);
        // SAFETY: as the caller promises (see `# Safety`).
        let (bytes, view) = unsafe { c.container()? };
        let array = f32_entry(&view, index)?;
        check_disjoint(bytes, out, out_len, ("c's buffer", "out"))?;
        let out = try_slice_mut!(out, out_len);
        array.copy_to(out)?;
        Ok(expq_status::Ok)
    })
}
