//! Gives the shared library its ABI name: the ELF SONAME `libexpquant.so.<major>` on Linux
//! and the other ELF systems, and the install name `@rpath/libexpquant.<major>.dylib` on
//! Apple platforms. A program linked against it then records that name, not the path of the
//! file it was linked with, so it keeps working after the library is installed elsewhere or
//! the install prefix moves. `<major>` is this crate's major version.
//!
//! Which symbols the library exports needs nothing here: for a cdylib rustc hands the linker
//! a version script that exports exactly the `#[no_mangle]` functions, i.e. the `expq_*`
//! ABI, and the C ABI tests compare that list with the header.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let major = env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets CARGO_PKG_VERSION_MAJOR");
    let os = env::var("CARGO_CFG_TARGET_OS").expect("cargo sets CARGO_CFG_TARGET_OS");
    let family = env::var("CARGO_CFG_TARGET_FAMILY").unwrap_or_default();
    let vendor = env::var("CARGO_CFG_TARGET_VENDOR").unwrap_or_default();
    if vendor == "apple" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-install_name,@rpath/libexpquant.{major}.dylib");
    } else if family == "unix" && os != "emscripten" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libexpquant.so.{major}");
    }
}
