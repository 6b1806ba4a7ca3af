//! Untrusted bytes through container validation and tensor lookup.
#![no_main]

use expquant::ContainerView;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The table checksum covers a span the input itself defines; libFuzzer's comparison
    // tracing is left to find matching checksums.
    let Ok(container) = ContainerView::from_bytes(data) else {
        return;
    };
    for entry in container.iter() {
        let _ = entry;
    }
    let _ = container.get("weight");
});
