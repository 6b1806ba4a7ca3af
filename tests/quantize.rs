//! The top-level API: quantize, dequantize, GEMV, bits per weight, errors.
mod common;

use common::{discretizer, weights, Rng};
use expquant::{metrics, quantize, Config, Error, Granularity, ScaleRule, Scheme};
use proptest::prelude::*;

fn configs(bits: u8) -> Vec<Config> {
    common::config_grid(
        bits,
        &[ScaleRule::MaxAbs, ScaleRule::Mse, ScaleRule::Correlation],
        &[
            Granularity::PerTensor,
            Granularity::PerRow,
            Granularity::PerGroup(7),
        ],
    )
}

fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let ma = a.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let mb = b.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let (mut c, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (f64::from(x) - ma, f64::from(y) - mb);
        c += dx * dy;
        va += dx * dx;
        vb += dy * dy;
    }
    if va == 0.0 || vb == 0.0 {
        return 0.0;
    }
    c / (va * vb).sqrt()
}

/// The weight ranges of each group, in group order.
fn group_ranges(config: &Config, rows: usize, cols: usize) -> Vec<std::ops::Range<usize>> {
    match config.granularity() {
        Granularity::PerTensor => std::iter::once(0..rows * cols).collect(),
        Granularity::PerRow => (0..rows).map(|r| r * cols..(r + 1) * cols).collect(),
        Granularity::PerGroup(g) => (0..rows)
            .flat_map(|r| {
                (0..cols)
                    .step_by(g)
                    .map(move |c| r * cols + c..r * cols + (c + g).min(cols))
            })
            .collect(),
        other => unreachable!("a granularity this test does not know: {other}"),
    }
}

/// The group (codebook index) of weight `(row, col)`.
fn group_of(config: &Config, cols: usize, row: usize, col: usize) -> usize {
    match config.granularity() {
        Granularity::PerTensor => 0,
        Granularity::PerRow => row,
        Granularity::PerGroup(g) => row * cols.div_ceil(g) + col / g,
        other => unreachable!("a granularity this test does not know: {other}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_weight_decodes_to_its_nearest_level_within_half_the_local_gap(
        seed in 0u64..1000, rows in 1usize..6, cols in 1usize..40, bits in 1u8..=8
    ) {
        let w = weights(seed, rows * cols, 0.1);
        for config in configs(bits) {
            let q = quantize(&w, rows, cols, &config).unwrap();
            let books: Vec<_> = q.codebooks().collect();
            let codes = q.codes();
            let deq = q.dequantize();
            for row in 0..rows {
                for col in 0..cols {
                    let i = row * cols + col;
                    let cb = &books[group_of(&config, cols, row, col)];
                    let levels = cb.levels();
                    let code = usize::from(codes[i]);
                    prop_assert_eq!(deq[i], levels[code]);
                    prop_assert_eq!(code, common::nearest_by_scan(levels, w[i]));
                    // Inside the clip range, the error is at most half the gap around w.
                    let x = w[i];
                    if x >= levels[0] && x <= levels[levels.len() - 1] && levels.len() > 1 {
                        let hi = levels.partition_point(|&l| l < x).min(levels.len() - 1).max(1);
                        let gap = levels[hi] - levels[hi - 1];
                        prop_assert!((x - deq[i]).abs() <= gap / 2.0 * (1.0 + 1e-6),
                            "{config:?}: w={x} deq={} gap={gap}", deq[i]);
                    }
                }
            }
        }
    }

    #[test]
    fn scaling_by_a_power_of_two_scales_the_result_exactly(seed in 0u64..1000, e in -20i32..=20, bits in 1u8..=8) {
        // Every sum and comparison of a fit scales exactly by a power of two, so the fit
        // must land on the same codes with the scale multiplied, in every layout and rule.
        let (rows, cols) = (3, 33);
        let c = 2f32.powi(e);
        let w = weights(seed, rows * cols, 0.2);
        let scaled: Vec<f32> = w.iter().map(|x| x * c).collect();
        for config in configs(bits) {
            let qa = quantize(&w, rows, cols, &config).unwrap();
            let qb = quantize(&scaled, rows, cols, &config).unwrap();
            prop_assert_eq!(qa.codes(), qb.codes(), "{:?}: c=2^{}", config, e);
            let (a, b) = (qa.dequantize(), qb.dequantize());
            for (x, y) in a.iter().zip(&b) {
                prop_assert_eq!((x * c).to_bits(), y.to_bits(), "{:?}: c=2^{}", config, e);
            }
        }
    }

    #[test]
    fn scaling_the_weights_scales_the_result(seed in 0u64..1000, c in 0.01f32..100.0, bits in 1u8..=8) {
        let (rows, cols) = (3, 33);
        let w = weights(seed, rows * cols, 0.2);
        let scaled: Vec<f32> = w.iter().map(|x| x * c).collect();
        for config in configs(bits) {
            let a = quantize(&w, rows, cols, &config).unwrap().dequantize();
            let b = quantize(&scaled, rows, cols, &config).unwrap().dequantize();
            let norm = w.iter().map(|x| x.abs()).fold(0.0f32, f32::max) * c;
            // A fit may land on a different but equally good point after rescaling, so
            // compare the errors, not the values, when the codes differ.
            if config.scale_rule() == ScaleRule::Correlation {
                // The correlation ignores scale, so compare each group's correlation. It is
                // piecewise constant in (a, q), and the best piece can be a sliver narrower
                // than f32 rounding of the parameters: the two fits may round onto
                // neighbouring pieces. Bound the difference by a quarter of what is left,
                // and skip groups of a handful of weights, where slivers are the rule.
                if matches!(config.granularity(), Granularity::PerGroup(_)) {
                    continue;
                }
                for range in group_ranges(&config, rows, cols) {
                    let (ca, cb) = (pearson(&w[range.clone()], &a[range.clone()]), pearson(&scaled[range.clone()], &b[range]));
                    prop_assert!((ca - cb).abs() <= 1e-6 + 0.25 * (1.0 - ca.max(cb)), "{config:?}: c={c} corr {ca} vs {cb}");
                }
                continue;
            }
            let same = a.iter().zip(&b).all(|(x, y)| (x * c - y).abs() <= 1e-4 * norm);
            if same {
                continue;
            }
            // A fit is a search within a stated tolerance of the best point, and at another
            // scale it sees the weights' last bits rounded differently: it may end in another
            // basin. Rows of 33 weights (groups of up to 64) rank each `q` by short walks,
            // with the tail the README states from 32 weights on (worst 1.19x a dense scan;
            // `tests/fit.rs` holds it at 1.25x). Larger groups (the 99-weight tensor) have
            // smooth curves, within 0.1 %, unless they have more levels than weights (7 and
            // 8 bits here), where two searches were measured 1.04 % apart. Each group's two
            // errors are within that of each other. Groups of 7 weights are smaller than any
            // the README states a tail for (a 6000-case run passed at 1.5x, a later one found
            // 1.52x in a group of 5): they are left to the exact power-of-two property above.
            if matches!(config.granularity(), Granularity::PerGroup(_)) {
                continue;
            }
            for range in group_ranges(&config, rows, cols) {
                let tail = match range.len() {
                    n if n <= 64 => 1.25,
                    n if (1usize << bits) > n => 1.02,
                    _ => 1.001,
                };
                let ea = metrics::mse(&w[range.clone()], &a[range.clone()]).unwrap() * f64::from(c * c);
                let eb = metrics::mse(&scaled[range.clone()], &b[range]).unwrap();
                let floor = 1e-12 * f64::from(norm * norm);
                prop_assert!((eb + floor) <= tail * (ea + floor) && (ea + floor) <= tail * (eb + floor),
                    "{config:?}: c={c} group err {ea} vs {eb}");
            }
        }
    }

    #[test]
    fn symmetric_inputs_give_symmetric_codebooks(seed in 0u64..1000, bits in 1u8..=8) {
        let half = weights(seed, 40, 0.3);
        let w: Vec<f32> = half.iter().copied().chain(half.iter().map(|x| -x)).collect();
        for config in configs(bits) {
            let q = quantize(&w, 1, 80, &config.per_row()).unwrap();
            for cb in q.codebooks() {
                let l = cb.levels();
                for (lo, hi) in l.iter().zip(l.iter().rev()) {
                    prop_assert_eq!(*lo, -*hi);
                }
            }
        }
    }
}

#[test]
fn exponential_magnitudes_are_geometric_with_ratio_q() {
    let w: Vec<f64> = weights(3, 500, 1.0).iter().map(|&x| x as f64).collect();
    for bits in 3..=8u8 {
        for zero in [true, false] {
            for rule in [ScaleRule::MaxAbs, ScaleRule::Mse] {
                let d = discretizer(Scheme::Exponential, bits, rule, zero);
                let p = d.fit_params(&w, None).unwrap();
                assert!(p.q > 0.0 && p.q < 1.0);
                let cb = d.fit(&w, None).unwrap();
                let mags: Vec<f64> = cb.levels().iter().copied().filter(|&l| l > 0.0).collect();
                let expected = if zero {
                    (1 << (bits - 1)) - 1
                } else {
                    1 << (bits - 1)
                };
                assert_eq!(mags.len(), expected);
                assert_eq!(cb.len(), expected * 2 + usize::from(zero));
                assert_eq!(*mags.last().unwrap(), p.a);
                for pair in mags.windows(2) {
                    assert!(
                        (pair[0] / pair[1] - p.q).abs() < 1e-12,
                        "{bits} bits: ratio {} vs q {}",
                        pair[0] / pair[1],
                        p.q
                    );
                }
            }
        }
    }
}

#[test]
fn linear_levels_are_evenly_spaced_and_one_bit_is_plus_minus_a() {
    let w: Vec<f64> = weights(4, 300, 1.0).iter().map(|&x| x as f64).collect();
    let amax = w.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    for bits in 2..=8u8 {
        let cb = discretizer(Scheme::Linear, bits, ScaleRule::MaxAbs, true)
            .fit(&w, None)
            .unwrap();
        assert_eq!(cb.len(), (1 << bits) - 1);
        let step = amax / f64::from((1u16 << (bits - 1)) - 1);
        for (k, l) in cb.levels().iter().enumerate() {
            let expected = (k as f64 - f64::from((1u16 << (bits - 1)) - 1)) * step;
            assert!((l - expected).abs() < 1e-12 * amax);
        }
        let mid_rise = discretizer(Scheme::Linear, bits, ScaleRule::MaxAbs, false)
            .fit(&w, None)
            .unwrap();
        assert_eq!(mid_rise.len(), 1 << bits);
        assert!(!mid_rise.levels().contains(&0.0));
        assert_eq!(*mid_rise.levels().last().unwrap(), amax);
    }
    for scheme in [Scheme::Linear, Scheme::Exponential] {
        for zero in [true, false] {
            let cb = discretizer(scheme, 1, ScaleRule::MaxAbs, zero)
                .fit(&w, None)
                .unwrap();
            assert_eq!(cb.levels(), &[-amax, amax]);
        }
    }
}

#[test]
fn f32_and_f64_fits_agree() {
    let w32 = weights(9, 200, 0.05);
    let w64: Vec<f64> = w32.iter().map(|&x| x as f64).collect();
    for scheme in [Scheme::Linear, Scheme::Exponential] {
        for bits in 2..=6u8 {
            let p32 = discretizer(scheme, bits, ScaleRule::Mse, true)
                .fit_params(&w32, None)
                .unwrap();
            let p64 = discretizer(scheme, bits, ScaleRule::Mse, true)
                .fit_params(&w64, None)
                .unwrap();
            assert!(
                (f64::from(p32.a) - p64.a).abs() <= 1e-6 * p64.a,
                "{scheme:?} {bits}"
            );
        }
    }
}

#[test]
fn quantizing_is_deterministic() {
    let w = weights(11, 64 * 100, 0.05);
    for config in configs(4) {
        let a = quantize(&w, 64, 100, &config).unwrap();
        let b = quantize(&w, 64, 100, &config).unwrap();
        assert_eq!(a.packed_codes(), b.packed_codes());
        assert_eq!(common::all_params(&a), common::all_params(&b));
    }
}

#[test]
fn rows_not_a_multiple_of_the_group_size_work() {
    let (rows, cols) = (3, 70);
    let w = weights(12, rows * cols, 1.0);
    let q = quantize(&w, rows, cols, &Config::exponential(4).per_group(32)).unwrap();
    assert_eq!(q.group_count(), rows * 3);
    // The last group of each row (6 weights) has its own max-abs scale.
    for row in 0..rows {
        let tail = &w[row * cols + 64..(row + 1) * cols];
        let amax = tail.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert_eq!(q.params(row * 3 + 2).unwrap().a, amax);
    }
    let deq = q.dequantize();
    assert!(metrics::sqnr_db(&w, &deq).unwrap() > 15.0);
}

#[test]
fn gemv_matches_a_dense_product_of_the_dequantized_matrix() {
    let mut rng = Rng::new(5);
    for config in configs(3).into_iter().chain(configs(8)) {
        let (rows, cols) = (9, 45);
        let w = weights(13, rows * cols, 0.1);
        let x: Vec<f32> = (0..cols).map(|_| rng.normal() as f32).collect();
        let q = quantize(&w, rows, cols, &config).unwrap();
        let deq = q.dequantize();
        let mut y = vec![0.0f32; rows];
        q.gemv(&x, &mut y).unwrap();
        for r in 0..rows {
            let dense: f64 = (0..cols)
                .map(|c| f64::from(deq[r * cols + c]) * f64::from(x[c]))
                .sum();
            let scale: f64 = (0..cols)
                .map(|c| (f64::from(deq[r * cols + c]) * f64::from(x[c])).abs())
                .sum();
            assert!(
                (f64::from(y[r]) - dense).abs() <= 1e-5 * scale.max(1e-30),
                "{config:?} row {r}"
            );
        }
        let mut part = vec![0.0f32; 4];
        q.gemv_rows(&x, 3..7, &mut part).unwrap();
        assert_eq!(part, y[3..7]);
    }
}

#[test]
fn bits_per_weight_counts_parameters_and_stays_cheap_per_row() {
    let w = weights(14, 50 * 1000, 0.05);
    for bits in 1..=8u8 {
        let lin = quantize(&w, 50, 1000, &Config::linear(bits)).unwrap();
        let exp = quantize(&w, 50, 1000, &Config::exponential(bits)).unwrap();
        let codes = (1000 * bits as usize).div_ceil(8) as f64 * 8.0 / 1000.0;
        assert!((lin.bits_per_weight() - (codes + 32.0 / 1000.0)).abs() < 1e-12);
        let params = if bits > 2 { 64.0 } else { 32.0 };
        assert!((exp.bits_per_weight() - (codes + params / 1000.0)).abs() < 1e-12);
        assert!(exp.bits_per_weight() < f64::from(bits) + 0.1);
    }
    // Row padding counts: 3 codes of 3 bits need 2 bytes per row.
    let q = quantize(&[1.0, 2.0, 3.0], 1, 3, &Config::linear(3)).unwrap();
    assert_eq!(q.bits_per_weight(), (16.0 + 32.0) / 3.0);
}

#[test]
fn dequantize_into_checks_the_buffer() {
    let q = quantize(&[1.0, -1.0, 0.5, 0.25], 2, 2, &Config::linear(4)).unwrap();
    let mut out = vec![0.0; 4];
    q.dequantize_into(&mut out).unwrap();
    assert_eq!(out, q.dequantize());
    assert!(matches!(
        q.dequantize_into(&mut [0.0; 3]),
        Err(Error::BufferLength {
            expected: 4,
            actual: 3,
            ..
        })
    ));
    assert!(matches!(
        q.gemv(&[1.0], &mut [0.0; 2]),
        Err(Error::BufferLength {
            expected: 2,
            actual: 1,
            ..
        })
    ));
    assert!(matches!(
        q.gemv(&[1.0, 1.0], &mut [0.0; 3]),
        Err(Error::BufferLength {
            expected: 2,
            actual: 3,
            ..
        })
    ));
    assert!(q.gemv_rows(&[1.0, 1.0], 1..3, &mut [0.0; 2]).is_err());
}

#[test]
fn every_bad_input_has_its_own_error() {
    let w = [0.5f32, -0.25, 1.0, 0.0];
    let ok = Config::exponential(4);
    assert_eq!(
        quantize(&w, 2, 2, &Config::linear(0)).unwrap_err(),
        Error::InvalidBits(0)
    );
    assert_eq!(
        quantize(&w, 2, 2, &Config::exponential(9)).unwrap_err(),
        Error::InvalidBits(9)
    );
    assert_eq!(
        quantize(&w, 2, 2, &ok.per_group(0)).unwrap_err(),
        Error::ZeroGroupSize
    );
    assert_eq!(
        quantize(&w, 3, 2, &ok).unwrap_err(),
        Error::ShapeMismatch {
            rows: 3,
            cols: 2,
            len: 4
        }
    );
    assert_eq!(
        quantize(&w, usize::MAX, 2, &ok).unwrap_err(),
        Error::ShapeOverflow {
            rows: usize::MAX,
            cols: 2,
        }
    );
    assert_eq!(
        quantize(&[], 0, 5, &ok).unwrap_err(),
        Error::EmptyTensor { rows: 0, cols: 5 }
    );
    let nan = [0.5f32, f32::NAN, 1.0, 0.0];
    assert!(matches!(
        quantize(&nan, 2, 2, &ok).unwrap_err(),
        Error::NonFiniteWeight { index: 1, .. }
    ));
    let inf = [0.5f32, 0.0, 1.0, f32::NEG_INFINITY];
    let err = quantize(&inf, 2, 2, &ok).unwrap_err();
    assert!(matches!(err, Error::NonFiniteWeight { index: 3, .. }));
    assert!(err.to_string().contains("index 3"), "{err}");
    let bad_q = ok.with_scale_rule(ScaleRule::Fixed { a: 1.0, q: 1.5 });
    assert!(matches!(
        quantize(&w, 2, 2, &bad_q).unwrap_err(),
        Error::InvalidParameters { .. }
    ));
    let bad_a = ok.with_scale_rule(ScaleRule::Fixed { a: -1.0, q: 0.5 });
    assert!(matches!(
        quantize(&w, 2, 2, &bad_a).unwrap_err(),
        Error::InvalidParameters { .. }
    ));
    let tiny_a = ok.with_scale_rule(ScaleRule::Fixed { a: 1e-60, q: 0.5 });
    assert!(matches!(
        quantize(&w, 2, 2, &tiny_a).unwrap_err(),
        Error::InvalidParameters { .. }
    ));
    assert!(matches!(
        expquant::quantize_weighted(&w, 2, 2, &ok, Some(&[1.0, 1.0])).unwrap_err(),
        Error::InvalidImportance { index: 2, .. }
    ));
    assert!(matches!(
        expquant::quantize_weighted(
            &w,
            2,
            2,
            &ok.with_scale_rule(ScaleRule::Mse),
            Some(&[1.0, -1.0, 1.0, 1.0])
        )
        .unwrap_err(),
        Error::InvalidImportance { index: 1, .. }
    ));
    // A bad importance in a later group is reported at its place in the tensor, not in the
    // group (here the second group of the second row).
    let mut importance = [1.0f32; 8];
    importance[7] = f32::NAN;
    let err = expquant::quantize_weighted(
        &[0.1, -0.2, 0.3, -0.4, 0.5, -0.6, 0.7, -0.8],
        2,
        4,
        &ok.per_group(2),
        Some(&importance),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::InvalidImportance { index: 7, .. }),
        "{err}"
    );
    assert!(matches!(
        expquant::Codebook::<f32>::new(&[]),
        Err(Error::InvalidCodebook(_))
    ));
    assert!(matches!(
        expquant::kernels::decode(2, &[0b11], &[0.0, 1.0, 2.0], &mut [0.0]),
        Err(Error::CodeOutOfRange {
            index: 0,
            code: 3,
            limit: 3
        })
    ));
    for e in [
        Error::InvalidBits(9),
        Error::ZeroGroupSize,
        Error::EmptyTensor { rows: 0, cols: 1 },
    ] {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn fixed_parameters_are_used_as_given() {
    let w = [0.9f32, -0.3, 0.1, 0.0];
    let q = quantize(
        &w,
        1,
        4,
        &Config::exponential(3).with_scale_rule(ScaleRule::Fixed { a: 1.0, q: 0.5 }),
    )
    .unwrap();
    assert_eq!(q.dequantize(), [1.0, -0.25, 0.0, 0.0]);
    let all_zero = quantize(&[0.0f32; 6], 2, 3, &Config::exponential(4)).unwrap();
    assert_eq!(all_zero.dequantize(), [0.0; 6]);
}
