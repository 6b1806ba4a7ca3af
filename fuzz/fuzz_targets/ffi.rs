//! The C entry points on untrusted bytes, through `expquant::ffi` as a C caller reaches
//! them: deserialize and view init, then dequantize and GEMV with an arbitrary `x` (NaN and
//! infinities included), and the raw `expq_decode`. No status may be `EXPQ_STATUS_PANIC`; a
//! tensor and a view of the same bytes agree bit for bit; decoded values are finite.
#![no_main]

use core::mem::MaybeUninit;
use core::ptr;

use expquant::ffi::*;
use expquant_fuzz::parse_ffi_input;
use libfuzzer_sys::fuzz_target;

/// A header's checksum position and what it covers (see FORMAT.md).
const CRC_AT: usize = 56;
const HEADER_LEN: usize = 64;

/// The largest matrix decoded per run, so a valid header cannot stall the fuzzer.
const MAX_WEIGHTS: usize = 1 << 16;

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

/// Writes the checksum that the header's covered bytes (at least `HEADER_LEN` of them) call for.
fn fix_checksum(bytes: &mut [u8]) {
    let mut covered = bytes[..CRC_AT].to_vec();
    covered.extend_from_slice(&bytes[HEADER_LEN..]);
    let crc = expquant::format::crc32(&covered);
    bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
}

fn ok(status: expq_status) -> bool {
    assert_ne!(
        status,
        expq_status::Panic,
        "a panic crossed into the C boundary"
    );
    status == expq_status::Ok
}

fuzz_target!(|data: &[u8]| {
    let Some((flags, x_given, tensor)) = parse_ffi_input(data) else {
        return;
    };
    let mut bytes = tensor.to_vec();
    if flags & 1 == 1 && bytes.len() >= HEADER_LEN {
        fix_checksum(&mut bytes);
    }

    // The raw decode path: the tensor bytes as packed codes, `x` as the levels.
    let bits = (flags >> 2) % 8 + 1;
    let n = (bytes.len() * 8 / usize::from(bits)).min(4096);
    let mut decoded = vec![0.0f32; n];
    // SAFETY: every pointer is a live buffer of the length passed with it.
    let status = unsafe {
        expq_decode(
            bits,
            bytes.as_ptr(),
            bytes.len(),
            x_given.as_ptr(),
            x_given.len(),
            decoded.as_mut_ptr(),
            n,
        )
    };
    ok(status);

    let mut t: *mut expq_tensor = ptr::null_mut();
    // SAFETY: `bytes` is live for its length; `t` is a writable pointer.
    let t_ok = ok(unsafe { expq_tensor_deserialize(bytes.as_ptr(), bytes.len(), &mut t) });
    let mut v = MaybeUninit::<expq_view>::uninit();
    // SAFETY: as above; `v` is writable storage for one view, outside `bytes`.
    let v_ok = ok(unsafe { expq_view_init(bytes.as_ptr(), bytes.len(), v.as_mut_ptr()) });
    assert_eq!(t_ok, v_ok, "deserialize and view init disagree");
    if !t_ok {
        return;
    }
    // SAFETY: `expq_view_init` returned OK, so it filled in `v`.
    let v = unsafe { v.assume_init() };
    // SAFETY: `t` is a live tensor and `v` a view of the live `bytes` from here on.
    let (rows, cols) = unsafe { (expq_tensor_rows(t), expq_tensor_cols(t)) };
    // SAFETY: as above.
    assert_eq!((rows, cols), unsafe {
        (expq_view_rows(&v), expq_view_cols(&v))
    });
    if rows.saturating_mul(cols) <= MAX_WEIGHTS {
        let mut from_t = vec![0.0f32; rows * cols];
        let mut from_v = vec![1.0f32; rows * cols];
        // SAFETY: each output holds the length passed.
        let (a, b) = unsafe {
            (
                expq_tensor_dequantize(t, from_t.as_mut_ptr(), from_t.len()),
                expq_view_dequantize(&v, from_v.as_mut_ptr(), from_v.len()),
            )
        };
        assert!(ok(a) && ok(b), "a validated tensor dequantizes");
        assert!(
            from_t.iter().all(|w| w.is_finite()),
            "non-finite decoded value"
        );
        assert!(
            same_bits(&from_t, &from_v),
            "tensor and view decode differently"
        );

        // GEMV with the given `x`: its own length when flag bit 1 asks, else cycled to `cols`.
        let x: Vec<f32> = if flags & 2 == 2 || x_given.is_empty() {
            x_given.clone()
        } else {
            x_given.iter().copied().cycle().take(cols).collect()
        };
        let mut y_t = vec![0.0f32; rows];
        let mut y_v = vec![2.0f32; rows];
        // SAFETY: `x` and each `y` are live for the lengths passed.
        let (a, b) = unsafe {
            (
                expq_tensor_gemv(t, x.as_ptr(), x.len(), y_t.as_mut_ptr(), y_t.len()),
                expq_view_gemv(&v, x.as_ptr(), x.len(), y_v.as_mut_ptr(), y_v.len()),
            )
        };
        assert_eq!(ok(a), ok(b), "tensor and view GEMV disagree on {x:?}");
        if a == expq_status::Ok {
            assert!(same_bits(&y_t, &y_v), "tensor and view GEMV differ");
        }
        let half = rows / 2;
        let mut y_rows = vec![0.0f32; rows - half];
        // SAFETY: as above.
        let status = unsafe {
            expq_view_gemv_rows(
                &v,
                x.as_ptr(),
                x.len(),
                half,
                rows,
                y_rows.as_mut_ptr(),
                y_rows.len(),
            )
        };
        if ok(status) && a == expq_status::Ok {
            assert!(same_bits(&y_rows, &y_t[half..]), "row-range GEMV differs");
        }
    }
    // Round trip: the tensor serializes back to the bytes it came from, in the canonical
    // form writers use (FORMAT.md): a version-2 tensor with `f32` parameters comes back as
    // version 1, which differs in the version field and so in the checksum.
    let mut expected = bytes.clone();
    if expected[4..6] == 2u16.to_le_bytes() && expected[12] == 0 {
        expected[4..6].copy_from_slice(&1u16.to_le_bytes());
        fix_checksum(&mut expected);
    }
    let mut written = 0usize;
    let mut again = vec![0u8; bytes.len()];
    // SAFETY: `again` holds the length passed; `written` is writable.
    let status = unsafe { expq_tensor_serialize(t, again.as_mut_ptr(), again.len(), &mut written) };
    assert!(
        ok(status) && written == bytes.len() && again == expected,
        "round trip changed the bytes"
    );
    // SAFETY: `t` came from `expq_tensor_deserialize` and is freed once.
    unsafe { expq_tensor_free(t) };
});
