//! The C ABI (feature `ffi`): the functions and types that `include/expquant.h` declares.
//!
//! This module is a thin skin over the Rust API and nothing else. Each exported function has
//! the same shape: a panic boundary (`boundary`), one NULL-check line per pointer argument
//! (`try_ref!`, `try_slice!`, `try_slice_mut!`, `try_out!`), then a short body that calls the
//! Rust API. The library itself is linked by the `expquant-capi` crate in `capi/`, which
//! produces `libexpquant.so` and `libexpquant.a`.
//!
//! # API conventions (the contract a C user reads)
//! - Every function that can fail returns an [`expq_status`]; `EXPQ_STATUS_OK` is 0 and the
//!   numbers are permanent (a retired value stays reserved).
//! - Outputs go through out-parameters and are written only on success. On failure every
//!   out-parameter and output buffer is left untouched.
//! - Every pointer argument is checked: NULL is `EXPQ_STATUS_NULL_POINTER`, also when the
//!   matching length is 0. A length that the call needs exactly (`out_len`, `x_len`, `y_len`,
//!   `packed_len`) gives `EXPQ_STATUS_BUFFER_TOO_SMALL` when smaller and
//!   `EXPQ_STATUS_INVALID_ARGUMENT` when larger. Input and output buffers must not overlap
//!   (overlap is detected and is `EXPQ_STATUS_INVALID_ARGUMENT`).
//! - An enum field or argument holding a value outside its enum is
//!   `EXPQ_STATUS_INVALID_ARGUMENT`: the Rust side reads every C enum as an integer.
//! - Every failure stores a sentence saying what was wrong in a thread-local buffer, read by
//!   [`expq_last_error_message`]. A successful call does not clear it.
//! - A panic never crosses the boundary: it becomes `EXPQ_STATUS_PANIC` (or a zero value from
//!   the accessors) with the panic message as the last error.
//! - Without `std` (feature `ffi-core` alone; C defines `EXPQ_NO_STD`) only the
//!   allocation-free functions exist — statuses, `expq_view_*` (f32 GEMV), `expq_decode`,
//!   `expq_container_view_*`, `expq_version`, `expq_last_error_message` — and two rules
//!   change. There are no threads to keep a message per thread, and nothing to format one
//!   with: the last error is the fixed sentence of the status of the most recent failing
//!   call anywhere in the program (such as `EXPQ_STATUS_NULL_POINTER: a required pointer
//!   argument was NULL`), without the function's name or details. And there is no unwinding
//!   to catch: a panic (a bug in the library) aborts through the program's panic handler
//!   (`capi-nostd` builds with `panic = "abort"` and halts), so `EXPQ_STATUS_PANIC` is never
//!   returned.
//! - An `expq_tensor` is created by [`expq_quantize`], [`expq_quantize_calibrated`] or
//!   [`expq_tensor_deserialize`] and owned by the caller until [`expq_tensor_free`]. It is immutable: any number of threads may call the `const
//!   expq_tensor *` functions on one tensor at the same time; freeing must not race with them.
//! - An [`expq_view`] is a caller-owned struct that borrows a validated byte buffer; it
//!   owns nothing and is never freed.
//! - Sizes and lengths are `size_t` and count elements, not bytes. A parameter `p_len` is
//!   the number of elements of `p`'s pointed-to type at `p` (an input length, or for an
//!   out-parameter `*p_len` the length of what `*p` points to); `written` receives how many
//!   elements a call wrote into the caller's buffer.
//! - Every name in the header starts with `expq_` or `EXPQ_`.
//!
//! The doc comments of exported items are copied into the header, so they are plain prose
//! with backticked names and no rustdoc links (a test in `tests/c_abi.rs` checks the header).

#![allow(non_camel_case_types)]

#[cfg(not(expq_no_std))]
extern crate std;

use core::fmt;
use core::mem::{align_of, size_of};
#[cfg(expq_no_std)]
use core::sync::atomic::{AtomicU8, Ordering};
#[cfg(not(expq_no_std))]
use std::cell::RefCell;
#[cfg(not(expq_no_std))]
use std::panic::{self, AssertUnwindSafe};
#[cfg(not(expq_no_std))]
use std::string::{String, ToString};

use crate::error::Error;
use crate::view::QuantizedView;

/// Turns a pointer argument into a shared reference, or returns `Failure::Null` naming it.
/// The enclosing function's `# Safety` section promises that a non-NULL pointer is valid.
macro_rules! try_ref {
    ($ptr:ident) => {
        // SAFETY: the caller promises (see the function's `# Safety`) that a non-NULL `$ptr`
        // points to a live, aligned value that nothing mutates for the duration of the call.
        match unsafe { $ptr.as_ref() } {
            Some(r) => r,
            None => return Err($crate::ffi::Failure::Null(stringify!($ptr))),
        }
    };
}

/// Turns a pointer and element count into a slice, checking NULL, alignment and size.
macro_rules! try_slice {
    ($ptr:ident, $len:expr) => {
        // SAFETY: the caller promises that a non-NULL `$ptr` points to `$len` initialized
        // elements that nothing mutates for the duration of the call.
        unsafe { $crate::ffi::slice_from($ptr, $len, stringify!($ptr))? }
    };
}

/// Turns a pointer and element count into a mutable slice, checking NULL, alignment and size.
macro_rules! try_slice_mut {
    ($ptr:ident, $len:expr) => {
        // SAFETY: the caller promises that a non-NULL `$ptr` points to `$len` writable
        // elements that nothing else reads or writes for the duration of the call.
        unsafe { $crate::ffi::slice_from_mut($ptr, $len, stringify!($ptr))? }
    };
}

/// Checks that an out-parameter is not NULL; write it with [`write_out`] on success only.
macro_rules! try_out {
    ($ptr:ident) => {
        if $ptr.is_null() {
            return Err($crate::ffi::Failure::Null(stringify!($ptr)));
        }
    };
}

// What needs a heap (owned tensors, builders, fitting) is left out without `std`; cbindgen
// writes `#[cfg(not(expq_no_std))]` as `#if !defined(EXPQ_NO_STD)` (cbindgen.toml).
#[cfg(not(expq_no_std))]
mod config;
mod decode;
#[cfg(not(expq_no_std))]
mod tensor;

// Declared after the modules above (and in a group of their own, which rustfmt keeps in
// order) so that cbindgen lists their functions after the tensor functions in the header.
#[cfg(not(expq_no_std))]
mod calibrate;
#[cfg(not(expq_no_std))]
mod compensate;
mod container;
mod storage;

#[cfg(not(expq_no_std))]
pub use calibrate::*;
#[cfg(not(expq_no_std))]
pub use compensate::*;
#[cfg(not(expq_no_std))]
pub use config::*;
pub use container::*;
pub use decode::*;
pub use storage::*;
#[cfg(not(expq_no_std))]
pub use tensor::*;

/// The most levels a codebook holds (`2^8`): a buffer of this many floats fits the levels of
/// any group (`expq_tensor_group_levels`, `expq_view_group_levels`).
pub const EXPQ_MAX_LEVELS: usize = 256;

/// The newest version of the stored tensor format: `expq_tensor_deserialize` and
/// `expq_view_init` read every version from 1 up to this one, and bytes of another version
/// give `EXPQ_STATUS_UNSUPPORTED_VERSION`. `expq_tensor_serialize` writes version 1 for a
/// tensor with `f32` group parameters (the bytes every earlier build wrote) and version 2
/// only for compact parameters (`expq_config.compact_params`).
pub const EXPQ_FORMAT_VERSION: u16 = 2;

/// The container format version that `expq_container_builder_write` writes; `expq_container_view_init`
/// reads every version from 1 up to this one. Independent of `EXPQ_FORMAT_VERSION`.
pub const EXPQ_CONTAINER_VERSION: u16 = 2;

/// Bytes of the header in front of a stored tensor's packed codes.
pub const EXPQ_HEADER_LEN: usize = 64;

/// Entries inside a container start at byte offsets that are multiples of this.
pub const EXPQ_CONTAINER_ALIGN: usize = 64;

/// The longest tensor name, in bytes, that a container accepts.
pub const EXPQ_MAX_NAME_LEN: usize = 1024;

// The header's copies of core constants: cbindgen cannot evaluate a path to another constant,
// so the values are written out and pinned here.
const _: () = {
    assert!(EXPQ_MAX_LEVELS == crate::codebook::MAX_LEVELS);
    assert!(EXPQ_FORMAT_VERSION == crate::format::FORMAT_VERSION);
    assert!(EXPQ_CONTAINER_VERSION == crate::format::CONTAINER_VERSION);
    assert!(EXPQ_HEADER_LEN == crate::format::HEADER_LEN);
    assert!(EXPQ_CONTAINER_ALIGN == crate::format::CONTAINER_ALIGN);
    assert!(EXPQ_MAX_NAME_LEN == crate::format::MAX_NAME_LEN);
};

/// The result of every fallible call. `EXPQ_STATUS_OK` is 0; the numbers never change, and a
/// retired value stays reserved.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum expq_status {
    /// Success; out-parameters were written.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullPointer = 1,
    /// An argument was out of range: bits outside 1..=8, an empty or mismatched shape, an
    /// enum value outside its enum, a group size of 0, a buffer longer than required,
    /// overlapping buffers, invalid fixed scale parameters.
    InvalidArgument = 2,
    /// A weight, an input statistic, or an input vector value of an int8 GEMV was NaN or
    /// infinite, or an output computed from finite inputs would not be finite (a bias
    /// correction or ReLU moment beyond the largest float).
    NonFinite = 3,
    /// A caller-provided buffer was shorter than required.
    BufferTooSmall = 4,
    /// Data does not describe a valid tensor: a code that does not index the levels given to
    /// `expq_decode`, or stored bytes (`expq_tensor_deserialize`, `expq_view_init`) that are
    /// truncated, altered (checksum), or inconsistent; the message says which check failed.
    CorruptData = 5,
    /// Stored bytes written in a format version this build does not read.
    UnsupportedVersion = 6,
    /// A panic inside the library was caught at the boundary. Please report it as a bug.
    Panic = 7,
}

/// The status that a core [`Error`] maps to. This is the only place that decides it.
pub(crate) fn status_of(error: &Error) -> expq_status {
    match error {
        Error::NonFiniteWeight { .. }
        | Error::BiasOverflow { .. }
        | Error::MomentsOverflow { .. }
        | Error::NonFiniteInput { .. } => expq_status::NonFinite,
        // The core reports a negative (finite) mean square with the same variant; that is a
        // bad argument, not a non-finite one.
        Error::NonFiniteStatistic { value, .. } if !value.is_finite() => expq_status::NonFinite,
        Error::BufferLength {
            expected, actual, ..
        } if actual < expected => expq_status::BufferTooSmall,
        Error::CodeOutOfRange { .. } | Error::Corrupt(_) => expq_status::CorruptData,
        Error::UnsupportedVersion { .. } => expq_status::UnsupportedVersion,
        // Among them: InputStatsLength, MissingSqMean, InvalidMomentArguments,
        // ShapeOverflow, UnfittableGroup.
        _ => expq_status::InvalidArgument,
    }
}

/// Why an exported function failed: a core [`Error`] or a problem only the C side can have.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A required pointer argument was NULL.
    Null(&'static str),
    /// The Rust API rejected the input.
    Core(Error),
    /// A C enum value outside its enum.
    BadEnum {
        /// Which argument or field.
        what: &'static str,
        /// The value given.
        value: u32,
        /// The values allowed, as a sentence fragment.
        allowed: &'static str,
    },
    /// A pointer/length pair that cannot be a slice: misaligned, or longer than memory.
    BadSlice {
        /// Which argument.
        what: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// An input and an output buffer overlap.
    Overlap(&'static str, &'static str),
    /// An `expq_view` that `expq_view_init` did not fill in (its buffer pointer is NULL),
    /// such as a zeroed struct.
    UninitializedView(&'static str),
    /// An index past the end of something.
    Index {
        /// What was indexed.
        what: &'static str,
        /// The index given.
        index: usize,
        /// How many there are.
        count: usize,
    },
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Core(error)
    }
}

impl Failure {
    fn status(&self) -> expq_status {
        match self {
            Failure::Null(_) => expq_status::NullPointer,
            Failure::Core(error) => status_of(error),
            Failure::BadEnum { .. }
            | Failure::BadSlice { .. }
            | Failure::Overlap(..)
            | Failure::UninitializedView(_)
            | Failure::Index { .. } => expq_status::InvalidArgument,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Null(what) => write!(f, "argument `{what}` is NULL"),
            Failure::Core(error) => write!(f, "{error}"),
            Failure::BadEnum {
                what,
                value,
                allowed,
            } => write!(f, "`{what}` is {value}, which is not {allowed}"),
            Failure::BadSlice { what, reason } => write!(f, "argument `{what}` {reason}"),
            Failure::Overlap(a, b) => write!(f, "buffers `{a}` and `{b}` overlap"),
            Failure::UninitializedView(what) => write!(
                f,
                "`{what}` was not initialized by expq_view_init (its buffer pointer is NULL)"
            ),
            Failure::Index { what, index, count } => {
                write!(f, "{what} {index} does not exist; there are {count}")
            }
        }
    }
}

/// What an exported function returns when it fails, given the failure's status.
pub(crate) trait Fallback {
    /// The value returned for a failure with `status`.
    fn fallback(status: expq_status) -> Self;
}

impl Fallback for expq_status {
    fn fallback(status: expq_status) -> Self {
        status
    }
}

impl Fallback for usize {
    fn fallback(_: expq_status) -> Self {
        0
    }
}

impl Fallback for u8 {
    fn fallback(_: expq_status) -> Self {
        0
    }
}

impl Fallback for f64 {
    fn fallback(_: expq_status) -> Self {
        0.0
    }
}

impl Fallback for () {
    fn fallback(_: expq_status) -> Self {}
}

impl expq_status {
    /// The fixed sentence for this status: the last error message without `std`.
    #[cfg_attr(not(expq_no_std), allow(dead_code))]
    fn sentence(self) -> &'static str {
        match self {
            expq_status::Ok => "",
            expq_status::NullPointer => "EXPQ_STATUS_NULL_POINTER: a required pointer argument was NULL",
            expq_status::InvalidArgument => "EXPQ_STATUS_INVALID_ARGUMENT: an argument was out of range",
            expq_status::NonFinite => "EXPQ_STATUS_NON_FINITE: a value was NaN or infinite",
            expq_status::BufferTooSmall => {
                "EXPQ_STATUS_BUFFER_TOO_SMALL: a caller-provided buffer was shorter than required"
            }
            expq_status::CorruptData => "EXPQ_STATUS_CORRUPT_DATA: the data does not describe a valid tensor",
            expq_status::UnsupportedVersion => {
                "EXPQ_STATUS_UNSUPPORTED_VERSION: stored bytes of a format version this build does not read"
            }
            expq_status::Panic => "EXPQ_STATUS_PANIC: a panic inside the library was caught",
        }
    }
}

/// The status of the most recent failing call in the program (`expq_status` as `u8`; 0 while
/// none has failed). Without `std` there is no thread-local storage; this is a plain store,
/// so with several threads the message may be another thread's, but never a torn one.
#[cfg(expq_no_std)]
static LAST_STATUS: AtomicU8 = AtomicU8::new(0);

/// The status stored in [`LAST_STATUS`].
#[cfg(expq_no_std)]
fn last_status() -> expq_status {
    match LAST_STATUS.load(Ordering::Relaxed) {
        1 => expq_status::NullPointer,
        2 => expq_status::InvalidArgument,
        3 => expq_status::NonFinite,
        4 => expq_status::BufferTooSmall,
        5 => expq_status::CorruptData,
        6 => expq_status::UnsupportedVersion,
        7 => expq_status::Panic,
        _ => expq_status::Ok,
    }
}

#[cfg(not(expq_no_std))]
std::thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

#[cfg(not(expq_no_std))]
fn set_last_error(function: &str, message: &str) {
    // `try_with` fails only while the thread is being torn down; the message is lost then.
    let _ = LAST_ERROR.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            last.clear();
            last.push_str(function);
            last.push_str(": ");
            last.push_str(message);
        }
    });
}

/// The panic boundary every exported function runs its body in: catches a panic
/// (`EXPQ_STATUS_PANIC`), turns a [`Failure`] into its status, and records the last error
/// message, prefixed with the name of the `function`.
#[cfg(not(expq_no_std))]
pub(crate) fn boundary<T: Fallback>(
    function: &'static str,
    body: impl FnOnce() -> Result<T, Failure>,
) -> T {
    // AssertUnwindSafe: a panic can leave behind only a partly written caller buffer (which
    // the caller must not read after a non-OK status) and no library state: handles are
    // immutable and the last-error buffer is overwritten below.
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(failure)) => {
            set_last_error(function, &failure.to_string());
            T::fallback(failure.status())
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            let message = std::format!("a panic was caught (this is a bug in expquant): {what}");
            set_last_error(function, &message);
            T::fallback(expq_status::Panic)
        }
    }
}

/// Runs `f` on the bytes of the calling thread's last error message.
#[cfg(not(expq_no_std))]
fn with_last_error<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    LAST_ERROR.with(|last| f(last.borrow().as_bytes()))
}

/// Runs `f` on the bytes of the program's last error message (see [`LAST_STATUS`]).
#[cfg(expq_no_std)]
fn with_last_error<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    f(last_status().sentence().as_bytes())
}

/// The boundary without `std`: turns a [`Failure`] into its status and records that status
/// as the last error. A panic cannot be caught here; the panic handler aborts.
#[cfg(expq_no_std)]
pub(crate) fn boundary<T: Fallback>(
    _function: &'static str,
    body: impl FnOnce() -> Result<T, Failure>,
) -> T {
    match body() {
        Ok(value) => value,
        Err(failure) => {
            let status = failure.status();
            LAST_STATUS.store(status as u8, Ordering::Relaxed);
            T::fallback(status)
        }
    }
}

/// Checks that `len` elements of `T` at `ptr` could be a Rust slice (besides NULL).
fn check_extent<T>(ptr: *const T, len: usize, what: &'static str) -> Result<(), Failure> {
    if ptr.align_offset(align_of::<T>()) != 0 {
        return Err(Failure::BadSlice {
            what,
            reason: "is not aligned for its element type",
        });
    }
    if len > isize::MAX as usize / size_of::<T>().max(1) {
        return Err(Failure::BadSlice {
            what,
            reason: "has a length larger than any object can be",
        });
    }
    Ok(())
}

/// A shared slice from a C pointer and length.
///
/// # Safety
/// If `ptr` is not NULL it must point to `len` initialized values of `T` that are not
/// mutated while the returned slice lives.
pub(crate) unsafe fn slice_from<'a, T>(
    ptr: *const T,
    len: usize,
    what: &'static str,
) -> Result<&'a [T], Failure> {
    if ptr.is_null() {
        return Err(Failure::Null(what));
    }
    check_extent(ptr, len, what)?;
    // SAFETY: `ptr` is non-NULL and aligned, `len * size_of::<T>()` fits in `isize`, and the
    // caller promises `len` initialized, unaliased-for-writing elements.
    Ok(unsafe { core::slice::from_raw_parts(ptr, len) })
}

/// A mutable slice from a C pointer and length.
///
/// # Safety
/// If `ptr` is not NULL it must point to `len` writable values of `T` that nothing else
/// accesses while the returned slice lives. They may be uninitialized: every element type
/// used here (`f32`, `u8`, `c_char`) is valid for any bit pattern, and the library only
/// writes them.
pub(crate) unsafe fn slice_from_mut<'a, T>(
    ptr: *mut T,
    len: usize,
    what: &'static str,
) -> Result<&'a mut [T], Failure> {
    if ptr.is_null() {
        return Err(Failure::Null(what));
    }
    check_extent(ptr.cast_const(), len, what)?;
    // SAFETY: `ptr` is non-NULL and aligned, the size fits in `isize`, and the caller
    // promises `len` writable elements that nothing else accesses during the call.
    Ok(unsafe { core::slice::from_raw_parts_mut(ptr, len) })
}

/// Fails when the memory of `input` and `output` overlaps (an aliasing `&` and `&mut` would
/// be undefined behaviour, so this is checked on the raw pointers, before `output` exists as
/// a slice). An `output_len` that no object can have is reported as that first: its extent
/// would overlap everything.
pub(crate) fn check_disjoint<A, B>(
    input: &[A],
    output: *const B,
    output_len: usize,
    names: (&'static str, &'static str),
) -> Result<(), Failure> {
    check_extent(output, output_len, names.1)?;
    // Addresses only, never dereferenced.
    let (a0, b0) = (input.as_ptr() as usize, output as usize);
    let a1 = a0.saturating_add(core::mem::size_of_val(input));
    let b1 = b0.saturating_add(output_len.saturating_mul(size_of::<B>()));
    if a0 < b1 && b0 < a1 {
        Err(Failure::Overlap(names.0, names.1))
    } else {
        Ok(())
    }
}

/// Writes an out-parameter that `try_out!` has checked.
///
/// # Safety
/// `ptr` must be non-NULL, aligned and valid for a write of `T`.
pub(crate) unsafe fn write_out<T>(ptr: *mut T, value: T) {
    // SAFETY: guaranteed by the caller; `write` does not read or drop the old contents,
    // which may be uninitialized.
    unsafe { ptr.write(value) }
}

/// The body of `expq_tensor_packed_codes` and `expq_view_packed_codes`.
///
/// # Safety
/// `codes` and `codes_len` must each be NULL or valid for one write.
pub(crate) unsafe fn packed_codes(
    view: &QuantizedView<'_>,
    codes: *mut *const u8,
    codes_len: *mut usize,
) -> Result<expq_status, Failure> {
    try_out!(codes);
    try_out!(codes_len);
    let packed = view.packed_codes();
    // SAFETY: `codes` is non-NULL (checked above) and the caller promises it is writable.
    unsafe { write_out(codes, packed.as_ptr()) };
    // SAFETY: `codes_len` is non-NULL (checked above) and the caller promises it is writable.
    unsafe { write_out(codes_len, packed.len()) };
    Ok(expq_status::Ok)
}

/// The body of `expq_tensor_group_levels` and `expq_view_group_levels`.
///
/// # Safety
/// `levels` must be NULL or valid for writes of `levels_len` floats that nothing else
/// accesses during the call; `written` must be NULL or valid for one write.
pub(crate) unsafe fn group_levels(
    view: &QuantizedView<'_>,
    group: usize,
    levels: *mut f32,
    levels_len: usize,
    written: *mut usize,
) -> Result<expq_status, Failure> {
    try_out!(written);
    let out = try_slice_mut!(levels, levels_len);
    let codebook = view.codebook(group).ok_or(Failure::Index {
        what: "group",
        index: group,
        count: view.group_count(),
    })?;
    let values = codebook.levels();
    let out = out
        .get_mut(..values.len())
        .ok_or(crate::Error::BufferLength {
            what: "levels",
            expected: values.len(),
            actual: levels_len,
        })?;
    out.copy_from_slice(values);
    // SAFETY: `written` is non-NULL (checked above) and the caller promises it is writable.
    unsafe { write_out(written, values.len()) };
    Ok(expq_status::Ok)
}

/// Copies the calling thread's last error message into `buf`, which holds `buf_len` chars,
/// and returns the message's full length in bytes, not counting the terminating NUL.
///
/// At most `buf_len - 1` bytes are copied and a NUL is always written after them, so a
/// message longer than the buffer is truncated; a return value `>= buf_len` means it was.
/// With `buf` NULL or `buf_len` 0 nothing is written and only the length is returned (ask
/// for the length, then allocate `length + 1`). The message is a sentence such as
/// `expq_quantize: bits must be in 1..=8, got 9`; it is set by every failing call on this
/// thread and not cleared by a successful one. Returns 0 (and writes `""`) when no call on
/// this thread has failed.
///
/// Under `EXPQ_NO_STD` (the library built without `std`, for firmware) there is one message
/// for the whole program: the fixed sentence of the status of the most recent failing call
/// on any thread, such as `EXPQ_STATUS_NULL_POINTER: a required pointer argument was NULL`.
///
/// # Safety
/// If `buf` is not NULL it must be valid for writes of `buf_len` chars.
#[no_mangle]
pub unsafe extern "C" fn expq_last_error_message(
    buf: *mut core::ffi::c_char,
    buf_len: usize,
) -> usize {
    boundary("expq_last_error_message", || {
        let copy = |bytes: &[u8]| {
            if !buf.is_null() && buf_len > 0 {
                let n = bytes.len().min(buf_len - 1);
                let out = try_slice_mut!(buf, n + 1);
                for (o, &b) in out.iter_mut().zip(bytes) {
                    *o = b as core::ffi::c_char;
                }
                out[n] = 0;
            }
            Ok(bytes.len())
        };
        with_last_error(copy)
    })
}

/// The library version (the Rust crate's `CARGO_PKG_VERSION`), a static NUL-terminated
/// string such as `"0.1.0"`. Never NULL; do not free it.
#[no_mangle]
pub extern "C" fn expq_version() -> *const core::ffi::c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

/// The SIMD path this CPU runs the kernels on, a static NUL-terminated string such as
/// `"avx2"`, `"avx2+vnni"`, `"avx512+vbmi+vnni"`, `"neon"`, `"neon+dotprod"` or `"swar"` (the
/// portable path), for logs and benchmark reports. `+vnni` means the int8-activation GEMV
/// sums with `vpdpbusd`, `+dotprod` that it sums with `sdot`. Never NULL; do not free it.
#[no_mangle]
pub extern "C" fn expq_simd_path() -> *const core::ffi::c_char {
    crate::kernels::Isa::detect().name_nul().as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn last_error() -> String {
        // SAFETY: NULL with cap 0 asks for the length only.
        let len = unsafe { expq_last_error_message(core::ptr::null_mut(), 0) };
        let mut buf = std::vec![0 as core::ffi::c_char; len + 1];
        // SAFETY: `buf` holds `len + 1` bytes.
        let again = unsafe { expq_last_error_message(buf.as_mut_ptr(), buf.len()) };
        assert_eq!(again, len);
        let bytes: Vec<u8> = buf[..len].iter().map(|&c| c as u8).collect();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_panic_is_caught_and_reported() {
        let status: expq_status = boundary("expq_test", || -> Result<expq_status, Failure> {
            panic!("deliberate test panic")
        });
        assert_eq!(status, expq_status::Panic);
        let message = last_error();
        assert!(
            message.starts_with("expq_test: a panic was caught"),
            "{message}"
        );
        assert!(message.contains("deliberate test panic"), "{message}");
        let rows: usize = boundary("expq_test", || -> Result<usize, Failure> {
            panic!("{}", 42)
        });
        assert_eq!(rows, 0);
        assert!(last_error().contains("42"));
    }

    #[test]
    fn errors_map_to_statuses() {
        let too_small = Error::BufferLength {
            what: "x",
            expected: 4,
            actual: 3,
        };
        let too_large = Error::BufferLength {
            what: "x",
            expected: 4,
            actual: 5,
        };
        assert_eq!(status_of(&too_small), expq_status::BufferTooSmall);
        assert_eq!(status_of(&too_large), expq_status::InvalidArgument);
        assert_eq!(
            status_of(&Error::InvalidBits(9)),
            expq_status::InvalidArgument
        );
        let nan = Error::NonFiniteWeight {
            index: 0,
            value: f64::NAN,
        };
        assert_eq!(status_of(&nan), expq_status::NonFinite);
        let code = Error::CodeOutOfRange {
            index: 0,
            code: 3,
            limit: 3,
        };
        assert_eq!(status_of(&code), expq_status::CorruptData);
        assert_eq!(
            status_of(&Error::Corrupt("checksum mismatch")),
            expq_status::CorruptData
        );
        let version = Error::UnsupportedVersion {
            found: 2,
            supported: 1,
        };
        assert_eq!(status_of(&version), expq_status::UnsupportedVersion);
        let stat = |value| Error::NonFiniteStatistic {
            what: "input mean",
            index: 0,
            value,
        };
        assert_eq!(status_of(&stat(f64::NAN)), expq_status::NonFinite);
        assert_eq!(status_of(&stat(f64::INFINITY)), expq_status::NonFinite);
        assert_eq!(status_of(&stat(-1.0)), expq_status::InvalidArgument);
        let length = Error::InputStatsLength {
            what: "input mean",
            actual: 2,
            cols: 3,
            rows: 2,
        };
        assert_eq!(status_of(&length), expq_status::InvalidArgument);
        assert_eq!(
            status_of(&Error::MissingSqMean),
            expq_status::InvalidArgument
        );
        let moments = Error::InvalidMomentArguments {
            beta: f64::NAN,
            gamma: 1.0,
            clip: 6.0,
        };
        assert_eq!(status_of(&moments), expq_status::InvalidArgument);
    }

    #[test]
    fn last_error_truncates_and_terminates() {
        let _: expq_status = boundary("expq_test", || Err(Failure::Null("weights")));
        let full = last_error();
        assert_eq!(full, "expq_test: argument `weights` is NULL");
        let mut small = [0x55 as core::ffi::c_char; 6];
        // SAFETY: `small` holds 6 bytes.
        let len = unsafe { expq_last_error_message(small.as_mut_ptr(), small.len()) };
        assert_eq!(len, full.len());
        let got: Vec<u8> = small.iter().map(|&c| c as u8).collect();
        assert_eq!(&got[..], b"expq_\0");
    }

    /// The sentences that stand for the last error without `std` name each status as the
    /// header spells it, with its number there.
    #[test]
    fn status_sentences_name_the_header_constants() {
        let header = include_str!("../../include/expquant.h");
        let statuses = [
            expq_status::NullPointer,
            expq_status::InvalidArgument,
            expq_status::NonFinite,
            expq_status::BufferTooSmall,
            expq_status::CorruptData,
            expq_status::UnsupportedVersion,
            expq_status::Panic,
        ];
        assert_eq!(expq_status::Ok.sentence(), "");
        for status in statuses {
            let sentence = status.sentence();
            let (name, reason) = sentence.split_once(": ").unwrap();
            assert!(
                name.starts_with("EXPQ_STATUS_") && !reason.is_empty(),
                "{sentence}"
            );
            let constant = std::format!("{name} = {},", status as u8);
            assert!(header.contains(&constant), "the header has no `{constant}`");
        }
    }

    #[test]
    fn version_is_the_crate_version() {
        // SAFETY: `expq_version` returns a static NUL-terminated string.
        let v = unsafe { core::ffi::CStr::from_ptr(expq_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn simd_path_is_the_detected_paths_name() {
        // SAFETY: `expq_simd_path` returns a static NUL-terminated string.
        let p = unsafe { core::ffi::CStr::from_ptr(expq_simd_path()) };
        let detected = crate::kernels::Isa::detect();
        assert_eq!(p.to_str().unwrap(), detected.name());
        for isa in crate::kernels::Isa::available() {
            let name = isa.name();
            assert!(name.starts_with(isa.kind().name()), "{name}");
            assert_eq!(isa.name_nul(), std::format!("{name}\0"));
            assert_eq!(std::format!("{isa}"), name);
            assert_eq!(name.contains("+vnni"), isa.has_vnni(), "{name}");
            assert_eq!(name.contains("+vbmi"), isa.has_vbmi(), "{name}");
        }
    }

    /// Every exported function runs inside `boundary` (rustls-ffi's "each export is
    /// wrapped" check), except `expq_version` and `expq_simd_path`, which only return a
    /// static pointer (the latter after CPU feature detection, which cannot panic).
    #[test]
    fn every_export_is_behind_the_panic_boundary() {
        let sources = [
            include_str!("mod.rs"),
            include_str!("config.rs"),
            include_str!("tensor.rs"),
            include_str!("decode.rs"),
            include_str!("storage.rs"),
            include_str!("container.rs"),
            include_str!("calibrate.rs"),
        ];
        let mut count = 0;
        for source in sources {
            let lines: Vec<&str> = source.lines().collect();
            for (i, _) in lines
                .iter()
                .enumerate()
                .filter(|(_, l)| **l == "#[no_mangle]")
            {
                let signature = lines[i + 1];
                let name = signature
                    .split("fn ")
                    .nth(1)
                    .and_then(|s| s.split('(').next())
                    .unwrap();
                let body_len = lines[i..].iter().position(|l| *l == "}").unwrap();
                let body = lines[i..i + body_len].join("\n");
                count += 1;
                if name == "expq_version" || name == "expq_simd_path" {
                    continue;
                }
                assert!(
                    body.contains(&std::format!("boundary(\"{name}\"")),
                    "{name} does not run its body in boundary(\"{name}\", ..)"
                );
            }
        }
        assert!(count >= 32, "found only {count} exports");
    }
}
