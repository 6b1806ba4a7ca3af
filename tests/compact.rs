//! Compact group parameters: an `f16` scale per group, one `q` per row, format version 2.
mod common;

use common::{nearest_by_scan, weights};
use expquant::format::{crc32, HEADER_LEN};
use expquant::{quantize, Config, Error, QuantizedTensor, QuantizedView, ScaleRule};

fn fix_checksum(bytes: &mut [u8]) {
    let mut covered = bytes[..56].to_vec();
    covered.extend_from_slice(&bytes[HEADER_LEN..]);
    let crc = crc32(&covered);
    bytes[56..60].copy_from_slice(&crc.to_le_bytes());
}

fn configs() -> Vec<Config> {
    let mut v = Vec::new();
    for bits in [1u8, 2, 3, 4, 5, 8] {
        for base in [Config::linear(bits), Config::exponential(bits)] {
            for rule in [ScaleRule::MaxAbs, ScaleRule::Mse, ScaleRule::Correlation] {
                v.push(base.per_group(32).with_scale_rule(rule));
                v.push(
                    base.per_group(12)
                        .with_scale_rule(rule)
                        .with_zero_level(false),
                );
            }
            v.push(base.per_row());
            v.push(base.per_tensor());
        }
    }
    v
}

#[test]
fn codes_are_nearest_levels_of_the_stored_codebooks_and_q_is_shared_per_row() {
    let (rows, cols) = (5, 100);
    let w = weights(3, rows * cols, 0.2);
    for config in configs() {
        let config = config.with_compact_params(true);
        let t = quantize(&w, rows, cols, &config).unwrap();
        assert!(t.config().compact_params());
        let codes = t.codes();
        let g = config.granularity().group_len(cols);
        let per_row = config.granularity().groups_per_row(cols).max(1);
        for row in 0..rows {
            for col in 0..cols {
                let group = match config.granularity() {
                    expquant::Granularity::PerTensor => 0,
                    _ => row * per_row + col / g,
                };
                let cb = t.codebook(group).unwrap();
                let i = row * cols + col;
                assert_eq!(
                    usize::from(codes[i]),
                    nearest_by_scan(cb.levels(), w[i]),
                    "{config:?} weight {i}"
                );
                let p = t.params(group).unwrap();
                // Each a is an f16 value: 11 significant bits at most.
                assert_eq!(p.a.to_bits() & 0x1fff, 0, "{config:?}: a = {}", p.a);
                let first = t.params(group - group % per_row).unwrap();
                assert_eq!(p.q.to_bits(), first.q.to_bits(), "{config:?}: q per row");
            }
        }
    }
}

#[test]
fn compact_tensors_round_trip_as_version_2_and_f32_ones_stay_version_1() {
    let (rows, cols) = (4, 96);
    let w = weights(5, rows * cols, 0.1);
    for config in configs() {
        let plain = quantize(&w, rows, cols, &config).unwrap();
        assert_eq!(plain.to_bytes()[4], 1, "{config:?}");
        let compact = quantize(&w, rows, cols, &config.with_compact_params(true)).unwrap();
        let bytes = compact.to_bytes();
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 2);
        assert_eq!(bytes[12], 1);
        let view = QuantizedView::from_bytes(&bytes).unwrap();
        assert!(view.compact_params());
        assert_eq!(view.dequantize(), compact.dequantize());
        let back = QuantizedTensor::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back.config(), compact.config());
        assert!(compact.bits_per_weight() < plain.bits_per_weight() || rows * cols < 1000);
    }
}

#[test]
fn version_2_tensors_with_f32_parameters_read_and_write_back_as_version_1() {
    // FORMAT.md: readers accept version 2 with the `f32` encoding; writers use version 1 for
    // it, so such a tensor comes back canonical, not byte for byte.
    let (rows, cols) = (3, 64);
    let w = weights(11, rows * cols, 0.1);
    for config in configs() {
        let plain = quantize(&w, rows, cols, &config).unwrap();
        let v1 = plain.to_bytes();
        let mut v2 = v1.clone();
        v2[4..6].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(v2[12], 0, "{config:?}");
        fix_checksum(&mut v2);
        let read = QuantizedTensor::from_bytes(&v2).unwrap();
        assert_eq!(read.dequantize(), plain.dequantize(), "{config:?}");
        assert_eq!(read.to_bytes(), v1, "{config:?}");
        let view = QuantizedView::from_bytes(&v2).unwrap();
        assert!(!view.compact_params());
        assert_eq!(view.dequantize(), plain.dequantize(), "{config:?}");
    }
}

#[test]
fn bits_per_weight_meet_the_targets_on_wide_rows() {
    let (rows, cols) = (2, 8192);
    let w = weights(9, rows * cols, 0.05);
    for (g, target) in [(32, 4.51), (128, 4.13)] {
        let config = Config::exponential(4)
            .per_group(g)
            .with_compact_params(true);
        let t = quantize(&w, rows, cols, &config).unwrap();
        let bpw = t.bits_per_weight();
        assert!(bpw <= target, "groups of {g}: {bpw}");
        // Exactly: codes, an f16 per group, an f32 q per row.
        let expected = 4.0 + 16.0 / g as f64 + 32.0 / cols as f64;
        assert!((bpw - expected).abs() < 1e-12, "{bpw} vs {expected}");
        let linear = quantize(
            &w,
            rows,
            cols,
            &Config::linear(4).per_group(g).with_compact_params(true),
        )
        .unwrap();
        assert_eq!(linear.bits_per_weight(), 4.0 + 16.0 / g as f64);
    }
}

#[test]
fn compact_accuracy_stays_close_to_f32_parameters() {
    let (rows, cols) = (16, 512);
    let w = weights(11, rows * cols, 0.1);
    for config in [
        Config::exponential(4),
        Config::linear(4),
        Config::exponential(3),
    ] {
        for rule in [ScaleRule::MaxAbs, ScaleRule::Mse] {
            let config = config.per_group(32).with_scale_rule(rule);
            let plain = quantize(&w, rows, cols, &config).unwrap();
            let compact = quantize(&w, rows, cols, &config.with_compact_params(true)).unwrap();
            let s_plain = expquant::metrics::sqnr_db(&w, &plain.dequantize()).unwrap();
            let s_compact = expquant::metrics::sqnr_db(&w, &compact.dequantize()).unwrap();
            // A shared q costs little; the f16 rounding of a almost nothing.
            assert!(
                s_compact > s_plain - 1.5,
                "{config:?}: {s_compact} vs {s_plain}"
            );
        }
    }
}

#[test]
fn scales_beyond_f16_are_an_error_and_tiny_groups_still_quantize() {
    let mut w = vec![0.5f32; 64];
    w[40] = 1.0e6;
    let config = Config::exponential(4)
        .per_group(32)
        .with_compact_params(true);
    let err = quantize(&w, 1, 64, &config).unwrap_err();
    assert!(
        matches!(err, Error::UnfittableGroup { group: 1, .. }),
        "{err}"
    );
    let mut tiny = vec![1e-30f32; 64];
    tiny[..32].fill(0.0);
    tiny[63] = 0.25;
    let t = quantize(&tiny, 1, 64, &config).unwrap();
    let d = t.dequantize();
    for (x, y) in tiny.iter().zip(&d) {
        assert!(
            (x - y).abs() <= x.abs().max(1e-7) + 0.25 * 0.2,
            "{x} -> {y}"
        );
    }
}

#[test]
fn stored_compact_bytes_are_checked() {
    let w = weights(13, 2 * 64, 0.1);
    let config = Config::exponential(4)
        .per_group(32)
        .with_compact_params(true);
    let good = quantize(&w, 2, 64, &config).unwrap().to_bytes();
    let codes = 2 * 32;
    let params_at = HEADER_LEN + codes;
    let check = |mutate: &dyn Fn(&mut Vec<u8>), what: &str| {
        let mut b = good.clone();
        mutate(&mut b);
        fix_checksum(&mut b);
        let err = QuantizedView::from_bytes(&b).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt(m) if m.contains(what)),
            "{what}: {err}"
        );
    };
    check(&|b| b[12] = 2, "unknown parameter encoding");
    check(&|b| b[13] = 1, "reserved");
    // Row 0: q (f32), then two f16 scales.
    check(
        &|b| b[params_at + 4..params_at + 6].copy_from_slice(&0x7c00u16.to_le_bytes()),
        "scale a",
    );
    check(
        &|b| b[params_at + 6..params_at + 8].copy_from_slice(&0x7e00u16.to_le_bytes()),
        "scale a",
    );
    check(
        &|b| b[params_at + 4..params_at + 6].copy_from_slice(&0x8001u16.to_le_bytes()),
        "scale a",
    );
    check(
        &|b| b[params_at..params_at + 4].copy_from_slice(&1.0f32.to_le_bytes()),
        "ratio q",
    );
    // A version-1 header cannot carry the compact encoding.
    check(&|b| b[4] = 1, "reserved");
    check(&|b| b[11] = 1, "parameters per group");
    for len in [0, HEADER_LEN - 1, HEADER_LEN, params_at, good.len() - 1] {
        let err = QuantizedView::from_bytes(&good[..len]).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt(m) if m.contains("truncated")),
            "{len}: {err}"
        );
    }
    let mut bad = good.clone();
    bad[params_at + 2] ^= 1;
    assert_eq!(
        QuantizedView::from_bytes(&bad).unwrap_err(),
        Error::Corrupt("checksum mismatch")
    );
}

#[test]
fn gemv_of_compact_tensors_matches_the_dequantized_product() {
    for (bits, g, cols) in [
        (4u8, 32, 256),
        (4, 128, 512),
        (4, 16, 200),
        (2, 32, 256),
        (1, 64, 256),
        (3, 32, 160),
        (8, 32, 96),
        (4, 32, 100),
        // Past the view's batch of 32 rows, several spans of 2048 values and a tail, with
        // groups shorter than, as long as and longer than a permuted block.
        (4, 32, 2500),
        (4, 256, 4200),
        (2, 64, 2200),
        (1, 512, 4700),
        // 3-bit groups of 8, 32 and 40 codes, a short last group at the end of the codes.
        (3, 8, 1000),
        (3, 32, 4100),
        (3, 40, 1000),
    ] {
        let rows = if cols > 1000 { 37 } else { 9 };
        let w = weights(17 + u64::from(bits), rows * cols, 0.1);
        let x = weights(19, cols, 1.0);
        for base in [Config::exponential(bits), Config::linear(bits)] {
            let config = base.per_group(g).with_compact_params(true);
            let t = quantize(&w, rows, cols, &config).unwrap();
            let d = t.dequantize();
            let bytes = t.to_bytes();
            let view = QuantizedView::from_bytes(&bytes).unwrap();
            let mut y_t = vec![0.0f32; rows];
            let mut y_v = vec![0.0f32; rows];
            let mut y_8 = vec![0.0f32; rows];
            t.gemv(&x, &mut y_t).unwrap();
            view.gemv(&x, &mut y_v).unwrap();
            t.gemv_int8(&x, &mut y_8).unwrap();
            // A row range gives the full GEMV's values exactly, whatever rows share its batch.
            let mut part = vec![0.0f32; rows - 3];
            view.gemv_rows(&x, 3..rows, &mut part).unwrap();
            assert_eq!(part, y_v[3..], "{config:?} view rows 3..");
            for r in 0..rows {
                let row = &d[r * cols..(r + 1) * cols];
                let exact: f64 = row
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                let mag: f64 = row
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| f64::from((a * b).abs()))
                    .sum();
                for (what, y) in [("tensor", y_t[r]), ("view", y_v[r])] {
                    assert!(
                        (f64::from(y) - exact).abs() <= 1e-5 * mag + 1e-30,
                        "{config:?} {what} row {r}: {y} vs {exact}"
                    );
                }
                assert!(
                    (f64::from(y_8[r]) - exact).abs() <= mag / 60.0 + 1e-30,
                    "{config:?} int8 row {r}: {} vs {exact}",
                    y_8[r]
                );
            }
        }
    }
}
