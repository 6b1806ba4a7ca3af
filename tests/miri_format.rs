//! The format and view paths on small inputs, cheap enough for Miri
//! (`cargo +nightly miri test --test miri_format`), which checks the unsafe-free parsing
//! for out-of-bounds reads and undefined behaviour; the proptests in `format.rs` cover the
//! input space at full speed.
use expquant::format::{crc32, HEADER_LEN};
use expquant::{quantize, write_container, Config, ContainerView, QuantizedView, ScaleRule};

fn small_tensors() -> Vec<expquant::QuantizedTensor> {
    let w: Vec<f32> = (0..24).map(|i| (i as f32 - 11.5) / 8.0).collect();
    // Fixed parameters keep Miri away from the (slow, already well-tested) fit.
    let fixed = ScaleRule::Fixed { a: 1.5, q: 0.5 };
    [
        Config::exponential(3).with_scale_rule(fixed),
        Config::linear(4).per_group(5).with_scale_rule(fixed),
        Config::exponential(8)
            .per_tensor()
            .with_zero_level(false)
            .with_scale_rule(fixed),
        Config::linear(1).with_scale_rule(fixed),
    ]
    .iter()
    .map(|c| quantize(&w, 4, 6, c).unwrap())
    .collect()
}

#[test]
fn views_round_trip_and_reject_every_truncation() {
    for t in small_tensors() {
        let bytes = t.to_bytes();
        let view = QuantizedView::from_bytes(&bytes).unwrap();
        let mut out = [0.0f32; 24];
        view.dequantize_into(&mut out).unwrap();
        assert_eq!(out.to_vec(), t.dequantize());
        let mut y = [0.0f32; 4];
        view.gemv(&[1.0; 6], &mut y).unwrap();
        for cut in 0..bytes.len() {
            assert!(QuantizedView::from_bytes(&bytes[..cut]).is_err());
        }
    }
}

#[test]
fn mutated_bytes_behind_a_valid_checksum_are_handled() {
    for t in small_tensors() {
        let bytes = t.to_bytes();
        for at in 0..bytes.len() {
            let mut b = bytes.clone();
            b[at] ^= 0xA5;
            let mut covered = b[..56].to_vec();
            covered.extend_from_slice(&b[HEADER_LEN..]);
            let crc = crc32(&covered);
            b[56..60].copy_from_slice(&crc.to_le_bytes());
            if let Ok(view) = QuantizedView::from_bytes(&b) {
                let mut out = vec![0.0f32; view.rows() * view.cols()];
                view.dequantize_into(&mut out).unwrap();
            }
        }
    }
}

#[test]
fn containers_parse_and_reject_truncation() {
    let tensors = small_tensors();
    let bytes = write_container(&[("a", &tensors[0]), ("b", &tensors[1])]).unwrap();
    let c = ContainerView::from_bytes(&bytes).unwrap();
    assert!(c.get("b").unwrap().is_some());
    for cut in (0..bytes.len()).step_by(7) {
        let r = ContainerView::from_bytes(&bytes[..cut])
            .and_then(|c| c.iter().try_for_each(|e| e.map(|_| ())));
        assert!(r.is_err());
    }
}

/// The zero-copy `f32` accessor (an `align_to` cast) on aligned and misaligned buffers.
#[test]
fn f32_entries_borrow_in_place_or_decline() {
    let values = [1.5f32, -2.0, 0.25, 3.0, -0.5, 8.0];
    let bytes = write_container(&[(
        "norm",
        expquant::Entry::F32 {
            rows: 2,
            cols: 3,
            values: &values,
        },
    )])
    .unwrap();
    // A u64 buffer is 8-byte aligned; its bytes at offset 0 and 1 give both cases.
    let mut words = vec![0u64; bytes.len().div_ceil(8) + 1];
    for shift in [0usize, 1] {
        let buf: &mut [u8] = {
            let ptr = words.as_mut_ptr().cast::<u8>();
            // SAFETY: the u64 buffer holds `8 × words.len()` initialized bytes, any bit
            // pattern is a valid u8, and the slice is the buffer's only live borrow.
            unsafe { std::slice::from_raw_parts_mut(ptr, words.len() * 8) }
        };
        buf[shift..shift + bytes.len()].copy_from_slice(&bytes);
        let c = ContainerView::from_bytes(&buf[shift..shift + bytes.len()]).unwrap();
        let array = c.get_f32("norm").unwrap().unwrap();
        assert_eq!(array.to_vec(), values);
        assert_eq!(array.get(5), Some(8.0));
        assert_eq!(array.get(6), None);
        assert_eq!(array.get(usize::MAX), None);
        match array.as_slice() {
            Some(in_place) => {
                assert_eq!(shift, 0);
                assert_eq!(in_place, &values[..]);
            }
            None => assert_eq!(shift, 1),
        }
    }
}
