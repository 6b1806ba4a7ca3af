//! With the `ffi` feature, regenerates `include/expquant.h` from `src/ffi` with cbindgen
//! (configured by `cbindgen.toml`). Without it (every `no_std` and plain Rust build) this
//! runs nothing and writes nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "ffi")]
    header::generate();
}

#[cfg(feature = "ffi")]
mod header {
    use std::env;
    use std::path::PathBuf;

    pub fn generate() {
        let root =
            PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
        for input in ["cbindgen.toml", "src/lib.rs", "src/ffi"] {
            println!("cargo:rerun-if-changed={}", root.join(input).display());
        }
        let config = cbindgen::Config::from_file(root.join("cbindgen.toml"))
            .unwrap_or_else(|e| panic!("reading cbindgen.toml: {e}"));
        let bindings = cbindgen::Builder::new()
            .with_crate(&root)
            .with_config(config)
            .generate()
            .unwrap_or_else(|e| panic!("cbindgen could not generate include/expquant.h: {e}"));
        // Writes only when the text changed, so an up-to-date header keeps its timestamp.
        bindings.write_to_file(root.join("include/expquant.h"));
    }
}
