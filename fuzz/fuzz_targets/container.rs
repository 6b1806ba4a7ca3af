//! Untrusted bytes through container validation and lookup, in every verification mode:
//! whatever opens must be usable without a panic or an out-of-bounds read.
#![no_main]

use expquant::{ContainerView, EntryView, Verification};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The table checksum covers a span the input itself defines; libFuzzer's comparison
    // tracing is left to find matching checksums.
    for mode in [
        Verification::Full,
        Verification::Lazy,
        Verification::Trusted,
    ] {
        let Ok(container) = ContainerView::with_verification(data, mode) else {
            continue;
        };
        for entry in container.entries() {
            match entry {
                Ok((_, EntryView::Quantized(view))) => {
                    let x = vec![1.0f32; view.cols()];
                    let mut y = vec![0.0f32; view.rows()];
                    let _ = view.gemv(&x, &mut y);
                }
                Ok((_, EntryView::F32(array))) => {
                    let _ = array.to_vec();
                    let _ = array.as_slice();
                }
                Err(_) => {}
            }
        }
        let _ = container.get("weight");
        let _ = container.get_f32("bias");
        let _ = container.name(container.len());
    }
});
