//! The C library of expquant: `libexpquant.so` (cdylib) and `libexpquant.a` (staticlib),
//! declared by `include/expquant.h`.
//!
//! Every exported function is written once, in the core crate's `ffi` module (feature
//! `ffi`), as a `#[no_mangle] pub unsafe extern "C" fn`. rustc exports `#[no_mangle]`
//! functions of every linked crate from a cdylib and puts them in a staticlib, and the
//! `pub use` below makes sure the core crate is linked; the test `tests/c_abi.rs` at the
//! repository root checks with `nm` that each function the header declares is exported.

#![deny(missing_docs)]

pub use expquant_core::ffi::*;
