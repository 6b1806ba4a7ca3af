//! The stored format: exact round trips, and untrusted bytes that never panic.
mod common;

use common::weights;
use expquant::format::{crc32, HEADER_LEN};
use expquant::{
    quantize, write_container, Config, ContainerView, Error, QuantizedTensor, QuantizedView,
    ScaleRule,
};
use proptest::prelude::*;

fn sample_configs() -> Vec<Config> {
    let mut v = Vec::new();
    for bits in 1..=8u8 {
        for base in [Config::linear(bits), Config::exponential(bits)] {
            v.push(base);
            v.push(base.per_tensor().with_zero_level(false));
            v.push(base.per_group(5).with_scale_rule(ScaleRule::Mse));
            v.push(base.per_group(8).with_compact_params(true));
            v.push(base.per_tensor().with_compact_params(true));
        }
    }
    v.push(Config::exponential(3).with_scale_rule(ScaleRule::Fixed { a: 0.5, q: 0.25 }));
    v
}

/// Recomputes a tensor's checksum after the bytes were altered, so that mutations reach the
/// checks behind it.
fn fix_checksum(bytes: &mut [u8]) {
    if bytes.len() < HEADER_LEN {
        return;
    }
    let mut covered = bytes[..56].to_vec();
    covered.extend_from_slice(&bytes[HEADER_LEN..]);
    let crc = crc32(&covered);
    bytes[56..60].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn serialization_round_trips_exactly() {
    let (rows, cols) = (7, 23);
    let w = weights(1, rows * cols, 0.1);
    for config in sample_configs() {
        let t = quantize(&w, rows, cols, &config).unwrap();
        let bytes = t.to_bytes();
        assert_eq!(bytes.len(), t.serialized_len());
        // Bits per weight is the stored size without the header.
        let stored_bits = (bytes.len() - HEADER_LEN) as f64 * 8.0 / (rows * cols) as f64;
        assert!(
            (t.bits_per_weight() - stored_bits).abs() < 1e-12,
            "{config:?}"
        );
        let view = QuantizedView::from_bytes(&bytes).unwrap();
        assert_eq!(view.bits_per_weight(), t.bits_per_weight());
        let mut out = vec![0.0; rows * cols];
        view.dequantize_into(&mut out).unwrap();
        assert_eq!(out, t.dequantize(), "{config:?}");
        let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.37).sin()).collect();
        let (mut y_view, mut y_tensor) = (vec![0.0; rows], vec![0.0; rows]);
        view.gemv(&x, &mut y_view).unwrap();
        t.gemv(&x, &mut y_tensor).unwrap();
        // Same codes and levels; the owned tensor may sum in another order (SIMD).
        for (v, t) in y_view.iter().zip(&y_tensor) {
            assert!(
                (v - t).abs() <= 1e-5 * (1.0 + t.abs()),
                "{config:?}: {v} vs {t}"
            );
        }
        let mut part = vec![0.0; 3];
        view.gemv_rows(&x, 2..5, &mut part).unwrap();
        assert_eq!(part, y_view[2..5]);
        let back = QuantizedTensor::from_bytes(&bytes).unwrap();
        assert_eq!(back.packed_codes(), t.packed_codes());
        assert_eq!(common::all_params(&back), common::all_params(&t));
        assert_eq!(back.dequantize(), t.dequantize());
        assert_eq!(back.to_bytes(), bytes, "re-serialization is byte-identical");
        if !matches!(config.scale_rule(), ScaleRule::Fixed { .. }) {
            assert_eq!(back, t);
        }
    }
}

#[test]
fn write_into_reports_the_needed_size() {
    let t = quantize(&weights(2, 40, 0.1), 4, 10, &Config::exponential(4)).unwrap();
    let mut small = vec![0u8; t.serialized_len() - 1];
    assert_eq!(
        t.write_into(&mut small),
        Err(Error::BufferLength {
            what: "serialization buffer",
            expected: t.serialized_len(),
            actual: small.len()
        })
    );
    let mut big = vec![0u8; t.serialized_len() + 10];
    assert_eq!(t.write_into(&mut big).unwrap(), t.serialized_len());
    // from_bytes wants the exact tensor; from_prefix accepts what follows it.
    assert!(matches!(
        QuantizedView::from_bytes(&big),
        Err(Error::Corrupt(_))
    ));
    let (_, used) = QuantizedView::from_prefix(&big).unwrap();
    assert_eq!(used, t.serialized_len());
}

#[test]
fn specific_corruptions_get_specific_errors() {
    let t = quantize(&weights(3, 60, 0.1), 6, 10, &Config::exponential(4)).unwrap();
    let good = t.to_bytes();
    let check = |mutate: &dyn Fn(&mut Vec<u8>), fix: bool, expected: &str| {
        let mut b = good.clone();
        mutate(&mut b);
        if fix {
            fix_checksum(&mut b);
        }
        match QuantizedView::from_bytes(&b) {
            Err(Error::Corrupt(reason)) => {
                assert!(reason.contains(expected), "{reason} (wanted {expected})")
            }
            other => panic!("wanted Corrupt({expected}), got {other:?}"),
        }
    };
    check(&|b| b.truncate(10), false, "64-byte");
    check(&|b| b.truncate(b.len() - 1), false, "shorter");
    check(&|b| b[0] = b'X', false, "magic");
    check(&|b| b[70] ^= 1, false, "checksum");
    check(&|b| b[7] = 9, true, "bits");
    check(&|b| b[6] = 2, true, "scheme");
    check(&|b| b[9] = 2, true, "group size 0");
    check(&|b| b[16] = 7, true, "group count");
    check(&|b| b[48] ^= 1, true, "code length");
    check(&|b| b[11] = 1, true, "parameters per group");
    check(&|b| b[8] = 3, true, "flag");
    check(&|b| b[13] = 1, true, "reserved");
    check(
        &|b| b[16..24].copy_from_slice(&u64::MAX.to_le_bytes()),
        true,
        "",
    );
    // A NaN scale, and a code that indexes no level (0b1111 with 15 levels).
    let params_at = HEADER_LEN + t.packed_codes().len();
    check(
        &|b| b[params_at..params_at + 4].copy_from_slice(&f32::NAN.to_le_bytes()),
        true,
        "scale",
    );
    check(
        &|b| b[params_at + 4..params_at + 8].copy_from_slice(&1.5f32.to_le_bytes()),
        true,
        "ratio",
    );
    check(&|b| b[HEADER_LEN] = 0xFF, true, "index a level");
    let mut future = good.clone();
    future[4] = 3;
    assert_eq!(
        QuantizedView::from_bytes(&future).unwrap_err(),
        Error::UnsupportedVersion {
            found: 3,
            supported: 2
        }
    );
}

#[test]
fn padding_bits_must_be_zero() {
    // 3 columns of 3 bits use 9 of 16 bits per row.
    let t = quantize(&[0.1, -0.2, 0.3, 0.4, 0.5, -0.6], 2, 3, &Config::linear(3)).unwrap();
    let mut b = t.to_bytes();
    b[HEADER_LEN + 1] |= 0x80;
    fix_checksum(&mut b);
    assert!(
        matches!(QuantizedView::from_bytes(&b), Err(Error::Corrupt(r)) if r.contains("padding"))
    );
}

fn valid_file() -> impl Strategy<Value = Vec<u8>> {
    (
        0usize..sample_configs().len(),
        1usize..6,
        1usize..30,
        any::<u64>(),
    )
        .prop_map(|(c, rows, cols, seed)| {
            quantize(
                &weights(seed, rows * cols, 0.1),
                rows,
                cols,
                &sample_configs()[c],
            )
            .unwrap()
            .to_bytes()
        })
}

/// Opening untrusted bytes must give a view that works or an error, never a panic; a view
/// that opens must decode and multiply without error.
fn open_and_use(bytes: &[u8]) -> Result<(), Error> {
    let view = QuantizedView::from_bytes(bytes)?;
    let mut out = vec![0.0; view.rows() * view.cols()];
    view.dequantize_into(&mut out).unwrap();
    assert!(out.iter().all(|v| v.is_finite()));
    let x = vec![1.0; view.cols()];
    let mut y = vec![0.0; view.rows()];
    view.gemv(&x, &mut y).unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn truncation_is_always_an_error(bytes in valid_file(), cut in any::<prop::sample::Index>()) {
        let cut = cut.index(bytes.len());
        prop_assert!(matches!(open_and_use(&bytes[..cut]), Err(Error::Corrupt(_))));
    }

    #[test]
    fn bit_flips_are_caught_by_the_checksum(bytes in valid_file(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut b = bytes.clone();
        let at = at.index(b.len());
        b[at] ^= 1 << bit;
        prop_assert!(open_and_use(&b).is_err());
    }

    #[test]
    fn bit_flips_behind_a_fixed_checksum_never_panic(bytes in valid_file(), flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4)) {
        let mut b = bytes.clone();
        for (at, bit) in flips {
            let at = at.index(b.len());
            b[at] ^= 1 << bit;
        }
        fix_checksum(&mut b);
        let _ = open_and_use(&b);
    }

    #[test]
    fn lying_length_fields_are_errors(bytes in valid_file(), field in prop::sample::select(vec![16usize, 24, 32, 40, 48]), value in any::<u64>()) {
        let mut b = bytes.clone();
        let old = u64::from_le_bytes(b[field..field + 8].try_into().unwrap());
        prop_assume!(value != old);
        b[field..field + 8].copy_from_slice(&value.to_le_bytes());
        prop_assert!(open_and_use(&b).is_err());
        // Behind a recomputed checksum a changed length can describe another valid tensor
        // (say group size 5 or 6 over 3 columns); it must still never panic or over-read.
        fix_checksum(&mut b);
        let _ = open_and_use(&b);
    }
}

#[test]
fn containers_round_trip_and_validate() {
    let a = quantize(&weights(4, 50, 0.1), 5, 10, &Config::exponential(4)).unwrap();
    let b = quantize(&weights(5, 36, 0.1), 6, 6, &Config::linear(3).per_tensor()).unwrap();
    let bytes = write_container(&[("layer2.weight", &b), ("layer1.weight", &a)]).unwrap();
    let c = ContainerView::from_bytes(&bytes).unwrap();
    assert_eq!(c.len(), 2);
    let names: Vec<&str> = c.iter().map(|e| e.unwrap().0).collect();
    assert_eq!(names, ["layer1.weight", "layer2.weight"]);
    let view = c.get("layer2.weight").unwrap().unwrap();
    let mut out = vec![0.0; 36];
    view.dequantize_into(&mut out).unwrap();
    assert_eq!(out, b.dequantize());
    assert!(c.get("missing").unwrap().is_none());
    assert!(matches!(
        write_container(&[("x", &a), ("x", &b)]),
        Err(Error::InvalidName(_))
    ));
    assert!(matches!(
        write_container(&[("", &a)]),
        Err(Error::InvalidName(_))
    ));
    for cut in 0..bytes.len() {
        let r = ContainerView::from_bytes(&bytes[..cut])
            .and_then(|c| c.iter().try_for_each(|e| e.map(|_| ())));
        assert!(r.is_err(), "truncated at {cut}");
    }
    for at in 0..bytes.len() {
        let mut m = bytes.clone();
        m[at] ^= 0x10;
        if let Ok(c) = ContainerView::from_bytes(&m) {
            let _ = c.iter().count();
            let _ = c.get("layer1.weight");
        }
    }
    let mut v2 = bytes.clone();
    v2[4] = 9;
    assert!(matches!(
        ContainerView::from_bytes(&v2),
        Err(Error::UnsupportedVersion { found: 9, .. })
    ));
}
