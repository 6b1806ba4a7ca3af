//! Sets the `expq_no_std` cfg for a C ABI built without `std` (feature `ffi-core` without
//! `ffi`). With the `ffi` feature, generates the C header from `src/ffi` with cbindgen
//! (configured by `cbindgen.toml`) and adds the `EXPQ_VERSION_*` macros from the crate
//! version. Without it (every `no_std` and plain Rust build) this generates and writes nothing.
//!
//! The generated text goes to `include/expquant.h` only when the environment variable
//! `EXPQUANT_REGENERATE_HEADER` is set to a value other than empty or `0`. This repository's
//! `.cargo/config.toml` sets it, and cargo reads that file only for commands run inside the
//! repository, so every build here (and CI's header-drift check) regenerates the committed
//! header, while the published crate built as a dependency never writes into its own source
//! directory. Without the variable the header is only compared, and a difference is reported
//! as a build warning.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // `expq_no_std`: the C ABI is built without `std` (`ffi-core` without `ffi`). The ffi code
    // gates what needs std on `not(expq_no_std)`, which cbindgen writes into the header as
    // `#if !defined(EXPQ_NO_STD)` (cbindgen.toml, `[defines]`): one condition for both.
    println!("cargo:rustc-check-cfg=cfg(expq_no_std)");
    if cfg!(feature = "ffi-core") && !cfg!(feature = "ffi") {
        println!("cargo:rustc-cfg=expq_no_std");
    }
    #[cfg(feature = "ffi")]
    header::generate();
}

#[cfg(feature = "ffi")]
mod header {
    use std::env;
    use std::path::PathBuf;

    /// Set (not empty, not `0`) to write the regenerated header into `include/`.
    const REGENERATE: &str = "EXPQUANT_REGENERATE_HEADER";

    pub fn generate() {
        let root =
            PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
        for input in ["cbindgen.toml", "src/lib.rs", "src/ffi"] {
            println!("cargo:rerun-if-changed={}", root.join(input).display());
        }
        println!("cargo:rerun-if-env-changed={REGENERATE}");
        let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml"))
            .unwrap_or_else(|e| panic!("reading cbindgen.toml: {e}"));
        config.after_includes = Some(version_macros());
        let bindings = cbindgen::Builder::new()
            .with_crate(&root)
            .with_config(config)
            .generate()
            .unwrap_or_else(|e| panic!("cbindgen could not generate include/expquant.h: {e}"));
        let mut text = Vec::new();
        bindings.write(&mut text);

        let path = root.join("include/expquant.h");
        // Written only when the text changed, so an up-to-date header keeps its timestamp.
        if std::fs::read(&path).ok().as_deref() == Some(&text[..]) {
            return;
        }
        let regenerate = env::var(REGENERATE).is_ok_and(|v| !v.is_empty() && v != "0");
        if regenerate {
            std::fs::write(&path, &text)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        } else {
            println!(
                "cargo:warning=include/expquant.h differs from what src/ffi generates; \
                 build with {REGENERATE}=1 to rewrite it"
            );
        }
    }

    /// The `EXPQ_VERSION_*` macros: the crate version, for compile-time checks in C.
    fn version_macros() -> String {
        let part = |name: &str| env::var(name).unwrap_or_else(|_| panic!("cargo sets {name}"));
        format!(
            "\n/**\n * The version of expquant this header declares (MAJOR.MINOR.PATCH; \
             expq_version() gives the\n * linked library's at run time).\n */\n\
             #define EXPQ_VERSION_MAJOR {}\n#define EXPQ_VERSION_MINOR {}\n\
             #define EXPQ_VERSION_PATCH {}",
            part("CARGO_PKG_VERSION_MAJOR"),
            part("CARGO_PKG_VERSION_MINOR"),
            part("CARGO_PKG_VERSION_PATCH"),
        )
    }
}
