//! Untrusted bytes through view construction, dequantize and GEMV: an error is fine, a
//! panic, an out-of-bounds access or a non-finite decoded value is a bug.
#![no_main]

use expquant::QuantizedView;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Half the inputs get a valid checksum, so mutations reach the checks behind it.
    let mut bytes = data.to_vec();
    if bytes.len() >= 64 && bytes[0] & 1 == 1 {
        let mut covered = bytes[..56].to_vec();
        covered.extend_from_slice(&bytes[64..]);
        let crc = expquant::format::crc32(&covered);
        bytes[56..60].copy_from_slice(&crc.to_le_bytes());
    }
    let Ok(view) = QuantizedView::from_bytes(&bytes) else {
        return;
    };
    // Keep each run small: a valid header may describe a large tensor.
    let n = view.rows().saturating_mul(view.cols());
    if n > 1 << 20 {
        return;
    }
    let mut out = vec![0.0f32; n];
    view.dequantize_into(&mut out)
        .expect("a validated view decodes");
    assert!(out.iter().all(|v| v.is_finite()));
    let x = vec![1.0f32; view.cols()];
    let mut y = vec![0.0f32; view.rows()];
    view.gemv(&x, &mut y).expect("a validated view multiplies");
});
