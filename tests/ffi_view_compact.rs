//! The C view (`expq_view`) of tensors with compact group parameters describes the same tensor
//! as the Rust view of the same bytes: shape, bits per weight, dequantized values and GEMV,
//! bit for bit. The C view keeps only a few numbers and rebuilds the Rust view from them on
//! every call, so the parameter encoding must be among them.
#![cfg(feature = "ffi")]

use core::mem::MaybeUninit;

use expquant::ffi::*;
use expquant::{quantize, Config, QuantizedView, Scheme};

fn weights(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

#[test]
fn c_view_of_compact_tensors_matches_the_rust_view() {
    let (rows, cols) = (5, 96);
    let w = weights(rows * cols, 7);
    let x = weights(cols, 11);
    for scheme in [Scheme::Exponential, Scheme::Linear] {
        for bits in [2u8, 4] {
            let base = Config::new(scheme, bits).with_compact_params(true);
            for config in [base.per_row(), base.per_group(32), base.per_tensor()] {
                let tensor = quantize(&w, rows, cols, &config).unwrap();
                let bytes = tensor.to_bytes();
                let rust = QuantizedView::from_bytes(&bytes).unwrap();
                assert!(rust.compact_params(), "{config:?}");

                let mut v = MaybeUninit::<expq_view>::uninit();
                // SAFETY: `bytes` is live for its length; `v` is writable storage outside it.
                let status = unsafe { expq_view_init(bytes.as_ptr(), bytes.len(), v.as_mut_ptr()) };
                assert_eq!(status, expq_status::Ok, "{config:?}");
                // SAFETY: `expq_view_init` returned OK, so it filled in `v`.
                let v = unsafe { v.assume_init() };

                // SAFETY: `v` views the live `bytes`; every buffer holds the length passed.
                unsafe {
                    assert_eq!(
                        (expq_view_rows(&v), expq_view_cols(&v)),
                        (rows, cols),
                        "{config:?}"
                    );
                    let mut out = vec![0.0f32; rows * cols];
                    assert_eq!(
                        expq_view_dequantize(&v, out.as_mut_ptr(), out.len()),
                        expq_status::Ok
                    );
                    let expected: Vec<u32> =
                        rust.dequantize().iter().map(|v| v.to_bits()).collect();
                    let got: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(got, expected, "{config:?}");

                    let mut y = vec![0.0f32; rows];
                    assert_eq!(
                        expq_view_gemv(&v, x.as_ptr(), x.len(), y.as_mut_ptr(), y.len()),
                        expq_status::Ok
                    );
                    let mut y_rust = vec![0.0f32; rows];
                    rust.gemv(&x, &mut y_rust).unwrap();
                    let got: Vec<u32> = y.iter().map(|v| v.to_bits()).collect();
                    let expected: Vec<u32> = y_rust.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(got, expected, "{config:?}");
                }
            }
        }
    }
}
