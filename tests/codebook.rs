//! Codebook construction and nearest-level encoding, against a brute-force scan.
mod common;

use common::nearest_by_scan;
use expquant::{Codebook, Error};
use proptest::prelude::*;

/// Strictly ascending, finite, distinct levels: 1 to 256 of them.
fn levels_f32() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::btree_set(-1_000_000i32..1_000_000, 1..=256).prop_map(|set| {
        // Integers scaled by a power of two stay exact and distinct in f32.
        set.into_iter().map(|v| v as f32 / 1024.0).collect()
    })
}

fn levels_f64() -> impl Strategy<Value = Vec<f64>> {
    // Dyadic values with few significant bits keep the reference's f64 distances exact.
    prop::collection::btree_set(-(1i64 << 40)..(1i64 << 40), 1..=256)
        .prop_map(|set| set.into_iter().map(|v| v as f64 / 65536.0).collect())
}

proptest! {
    #[test]
    fn encode_f32_picks_the_nearest_level(levels in levels_f32(), xs in prop::collection::vec(-1200.0f32..1200.0, 1..64)) {
        let cb = Codebook::new(&levels).unwrap();
        for x in xs {
            prop_assert_eq!(usize::from(cb.encode(x)), nearest_by_scan(&levels, x), "x = {}", x);
        }
    }

    #[test]
    fn encode_f64_picks_the_nearest_level(levels in levels_f64(), xs in prop::collection::vec(-(1i64 << 42)..(1i64 << 42), 1..64)) {
        let cb = Codebook::new(&levels).unwrap();
        for x in xs.into_iter().map(|v| v as f64 / 131072.0) {
            prop_assert_eq!(usize::from(cb.encode(x)), nearest_by_scan(&levels, x), "x = {}", x);
        }
    }

    #[test]
    fn exact_midpoints_go_toward_zero(levels in levels_f32()) {
        // Midpoints of dyadic levels are exact in f32, so these are true ties.
        let cb = Codebook::new(&levels).unwrap();
        for pair in levels.windows(2) {
            let mid = (pair[0] + pair[1]) / 2.0;
            let code = usize::from(cb.encode(mid));
            prop_assert_eq!(code, nearest_by_scan(&levels, mid));
            let chosen = levels[code];
            prop_assert!(chosen.abs() <= pair[0].abs().min(pair[1].abs()));
        }
    }

    #[test]
    fn decode_inverts_encode_on_levels(levels in levels_f32()) {
        let cb = Codebook::new(&levels).unwrap();
        for (i, &l) in levels.iter().enumerate() {
            prop_assert_eq!(usize::from(cb.encode(l)), i);
            prop_assert_eq!(cb.decode(i as u8), Some(l));
        }
    }
}

#[test]
fn ties_at_zero_between_symmetric_levels_go_negative() {
    let cb = Codebook::new(&[-1.0f32, 1.0]).unwrap();
    assert_eq!(cb.encode(0.0), 0);
    assert_eq!(cb.encode(f32::MIN_POSITIVE), 1);
}

#[test]
fn invalid_levels_are_rejected_with_a_reason() {
    let cases: [(&[f32], &str); 5] = [
        (&[], "no levels"),
        (&[1.0, 0.0], "ascending"),
        (&[0.0, 0.0], "ascending"),
        (&[0.0, f32::NAN], "NaN"),
        (&[f32::NEG_INFINITY, 0.0], "infinite"),
    ];
    for (levels, needle) in cases {
        match Codebook::new(levels) {
            Err(Error::InvalidCodebook(msg)) => assert!(msg.contains(needle), "{msg}"),
            other => panic!("{levels:?}: expected InvalidCodebook, got {other:?}"),
        }
    }
    let too_many: Vec<f32> = (0..257).map(|i| i as f32).collect();
    assert!(matches!(
        Codebook::new(&too_many),
        Err(Error::InvalidCodebook(_))
    ));
    let full: Vec<f32> = (0..256).map(|i| i as f32).collect();
    let cb = Codebook::new(&full).unwrap();
    assert_eq!(cb.bits(), 8);
    assert_eq!(cb.encode(1e9), 255);
    assert_eq!(cb.decode(255), Some(255.0));
}

#[test]
fn huge_levels_do_not_overflow_thresholds() {
    let cb = Codebook::new(&[-f32::MAX, f32::MAX]).unwrap();
    assert_eq!(cb.thresholds(), &[0.0f64]);
    assert_eq!(cb.encode(1.0), 1);
    assert_eq!(cb.encode(-1.0), 0);
}

#[test]
fn nan_encodes_to_code_zero_and_decode_rejects_missing_codes() {
    let cb = Codebook::new(&[-1.0f32, 0.0, 1.0]).unwrap();
    assert_eq!(cb.encode(f32::NAN), 0);
    assert_eq!(cb.decode(3), None);
}
