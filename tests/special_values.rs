//! The numeric edges: every special weight set under every configuration either quantizes
//! within the error bound `quantize` documents or fails with an error that names the input;
//! outputs that would overflow are errors; impossible shapes say so; low-level helpers have a
//! documented answer for NaN and all-zero input.

use expquant::calibrate::{quantize_calibrated, relu_moments, Calibrated, InputStats};
use expquant::{metrics, quantize, Codebook, Config, Error, Granularity, ScaleRule, Scheme};

const ROWS: usize = 2;
const COLS: usize = 6;

/// A deterministic spread in `[-1, 1)`.
fn normal(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 2.0)
        .collect()
}

/// The weight sets, each `ROWS × COLS`, with a name for failure messages.
fn weight_sets() -> Vec<(&'static str, Vec<f32>)> {
    let n = ROWS * COLS;
    let signs = |i: usize| if i.is_multiple_of(2) { 1.0f32 } else { -1.0 };
    let mut one_zero_row = normal(n);
    one_zero_row[COLS..].fill(0.0);
    vec![
        ("normal", normal(n)),
        (
            "±FLT_MAX",
            (0..n)
                .map(|i| signs(i) * f32::MAX / [1.0, 1.0, 3.0, 1e3][i % 4])
                .collect(),
        ),
        (
            "3e38",
            (0..n)
                .map(|i| [3e38f32, -1e38, 5e37, 0.0, -3e38, 2.9e38][i % 6])
                .collect(),
        ),
        (
            "1e-44",
            (0..n)
                .map(|i| [1e-44f32, -1e-44, 0.0, 1e-45, -7e-45, 3e-44][i % 6])
                .collect(),
        ),
        (
            "mixed 1e-30..1e30",
            (0..n)
                .map(|i| signs(i) * 10f32.powi(-30 + (60 * i / (n - 1)) as i32))
                .collect(),
        ),
        ("all equal", vec![0.7; n]),
        ("all -0.0", vec![-0.0; n]),
        ("one zero row", one_zero_row),
    ]
}

fn rules() -> [ScaleRule; 5] {
    [
        ScaleRule::MaxAbs,
        ScaleRule::Mse,
        ScaleRule::Correlation,
        ScaleRule::OutputMse,
        ScaleRule::Fixed { a: 1.0, q: 0.5 },
    ]
}

fn granularities() -> [Granularity; 3] {
    // Groups of 4 in rows of 6: one full group and one partial group per row.
    [
        Granularity::PerTensor,
        Granularity::PerRow,
        Granularity::PerGroup(4),
    ]
}

fn group_of(granularity: Granularity, row: usize, col: usize) -> usize {
    match granularity {
        Granularity::PerTensor => 0,
        Granularity::PerRow => row,
        Granularity::PerGroup(g) => row * COLS.div_ceil(g) + col / g,
        other => panic!("no group map for {other:?}"),
    }
}

/// Quantizes under `config`; OutputMse through `quantize_calibrated` (unit mean squares, and
/// means small enough that every bias correction of these sets stays finite).
fn run(weights: &[f32], config: &Config) -> Result<Calibrated, Error> {
    let mean = [1e-3f32; COLS];
    let sq_mean = [1.0f32; COLS];
    match config.scale_rule() {
        ScaleRule::OutputMse => {
            let stats = InputStats::new(&mean).with_sq_mean(&sq_mean);
            quantize_calibrated(weights, ROWS, COLS, config, &stats)
        }
        _ => quantize(weights, ROWS, COLS, config).map(|tensor| Calibrated {
            bias_correction: vec![0.0; ROWS],
            tensor,
        }),
    }
}

/// Checks one successful result against the error bound documented on `quantize`.
fn check_bound(name: &str, weights: &[f32], config: &Config, result: &Calibrated) {
    let t = &result.tensor;
    let approx = t.dequantize();
    let has_zero = config.zero_level() && config.bits() > 1;
    let rule = config.scale_rule();
    let fitted = !matches!(rule, ScaleRule::Fixed { .. });
    assert!(
        result.bias_correction.iter().all(|b| b.is_finite()),
        "{name} {config:?}: bias correction {:?}",
        result.bias_correction
    );
    for group in 0..t.group_count() {
        let a = t.params(group).expect("group in range").a;
        assert!(
            a.is_finite() && a > 0.0,
            "{name} {config:?}: group {group} a = {a}"
        );
        let members: Vec<usize> = (0..ROWS * COLS)
            .filter(|&i| group_of(config.granularity(), i / COLS, i % COLS) == group)
            .collect();
        let amax = members.iter().fold(0.0f32, |m, &i| m.max(weights[i].abs()));
        let tiny = amax < f32::MIN_POSITIVE;
        if fitted && tiny {
            let want = if has_zero { 1.0 } else { f32::MIN_POSITIVE };
            assert_eq!(a, want, "{name} {config:?}: tiny group {group}");
        } else if rule == ScaleRule::MaxAbs {
            assert_eq!(a, amax, "{name} {config:?}: group {group}");
        } else if fitted {
            // The small groups here are fitted by exact sweeps over [0.01, 1.5]·max|w|
            // (with a few ulps for the correlation's rounding nudge), clamped to f32::MAX.
            let (amax, a) = (f64::from(amax), f64::from(a));
            let hi = (1.5 * amax).min(f64::from(f32::MAX)) * (1.0 + 1e-6);
            assert!(
                a >= 0.01 * amax * (1.0 - 1e-6) && a <= hi,
                "{name} {config:?}: group {group} a = {a} for max|w| = {amax}"
            );
        }
        for &i in &members {
            let (w, q) = (weights[i], approx[i]);
            let context = || format!("{name} {config:?}: weight {i} = {w:e} decodes to {q:e}");
            assert!(q.is_finite(), "{}", context());
            assert!(q.abs() <= a, "{} above a = {a:e}", context());
            assert!(!(w > 0.0 && q < 0.0 || w < 0.0 && q > 0.0), "{}", context());
            if w == 0.0 && has_zero {
                assert_eq!(q, 0.0, "{}", context());
            }
            let (wd, qd, ad) = (f64::from(w), f64::from(q), f64::from(a));
            let bound = ad.max(wd.abs() - ad);
            assert!((wd - qd).abs() <= bound, "{} beyond {bound:e}", context());
            if fitted && tiny && has_zero {
                assert!((wd - qd).abs() <= wd.abs(), "{}", context());
            }
        }
    }
}

/// Every weight set × scheme × rule × granularity × zero level × bits 1–8: within the
/// documented bound, or an error that names the input. No third outcome.
#[test]
fn special_weight_sets_quantize_within_the_bound_or_name_the_input() {
    let mut outcomes = [0usize; 2];
    for (name, weights) in weight_sets() {
        for scheme in [Scheme::Linear, Scheme::Exponential] {
            for rule in rules() {
                for granularity in granularities() {
                    for zero_level in [true, false] {
                        for bits in 1..=8 {
                            let config = Config::new(scheme, bits)
                                .with_scale_rule(rule)
                                .with_granularity(granularity)
                                .with_zero_level(zero_level);
                            match run(&weights, &config) {
                                Ok(result) => {
                                    check_bound(name, &weights, &config, &result);
                                    outcomes[0] += 1;
                                }
                                Err(e) => {
                                    let message = e.to_string();
                                    assert!(
                                        message.contains("weight") || message.contains("input"),
                                        "{name} {config:?}: {message}"
                                    );
                                    outcomes[1] += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(outcomes[0] + outcomes[1], 8 * 2 * 5 * 3 * 2 * 8);
    // Every one of these sets has a valid tensor in f32; none is refused.
    assert_eq!(outcomes[1], 0, "{outcomes:?}");
}

/// The example of the report: a scale fitted above `f32::MAX` is clamped, not replaced by 1.
#[test]
fn huge_weights_keep_their_scale_under_fitted_rules() {
    let w = [3e38f32, -1e38, 5e37, 0.0];
    for rule in [ScaleRule::Mse, ScaleRule::Correlation] {
        for config in [
            Config::linear(8).with_scale_rule(rule),
            Config::exponential(4).with_scale_rule(rule),
        ] {
            let t = quantize(&w, 1, 4, &config).unwrap();
            let approx = t.dequantize();
            let a = t.params(0).unwrap().a;
            assert!(a >= 3e38 * 0.999, "{config:?}: a = {a:e}");
            assert!(
                approx[0] >= 1e38 && approx[1] < 0.0,
                "{config:?}: {approx:?}"
            );
            assert_eq!(approx[3], 0.0);
        }
    }
    let t = quantize(
        &[f32::MAX, -f32::MAX],
        1,
        2,
        &Config::linear(8).with_scale_rule(ScaleRule::Mse),
    )
    .unwrap();
    assert_eq!(t.dequantize(), [f32::MAX, -f32::MAX]);
}

#[test]
fn subnormal_groups_quantize_like_zero_groups() {
    let w = [1e-44f32, -1e-44, 0.0, 1e-45];
    for config in [
        Config::exponential(4),
        Config::linear(8).per_group(2),
        Config::exponential(8).with_scale_rule(ScaleRule::Mse),
    ] {
        let tiny = quantize(&w, 2, 2, &config).unwrap();
        let zero = quantize(&[0.0; 4], 2, 2, &config).unwrap();
        assert_eq!(tiny.dequantize(), [0.0; 4], "{config:?}");
        assert_eq!(tiny.params(0), zero.params(0), "{config:?}");
    }
    // Without a zero level each weight decodes to its own sign at most 1.2e-38 away.
    let t = quantize(&w, 2, 2, &Config::linear(3).with_zero_level(false)).unwrap();
    for (w, q) in w.iter().zip(t.dequantize()) {
        assert!(q.abs() <= f32::MIN_POSITIVE && q != 0.0, "{w:e} -> {q:e}");
        assert!(*w == 0.0 || (q > 0.0) == (*w > 0.0), "{w:e} -> {q:e}");
    }
}

#[test]
fn outputs_that_overflow_are_errors_naming_the_input() {
    let err = relu_moments(1e200, 1.0, f64::INFINITY).unwrap_err();
    assert!(matches!(err, Error::MomentsOverflow { .. }), "{err}");
    assert!(err.to_string().contains("beta = 1e200"), "{err}");
    let w = [3e38f32, -1e38, 5e37, 0.0];
    let mean = [3e38f32; 4];
    let err =
        quantize_calibrated(&w, 1, 4, &Config::linear(2), &InputStats::new(&mean)).unwrap_err();
    assert!(matches!(err, Error::BiasOverflow { row: 0, .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("weights") && message.contains("input means"),
        "{message}"
    );
}

#[test]
fn impossible_shapes_are_reported_before_buffers() {
    let overflow = Error::ShapeOverflow {
        rows: usize::MAX,
        cols: 2,
    };
    let w = [1.0f32; 4];
    assert_eq!(
        quantize(&w, usize::MAX, 2, &Config::linear(4)).unwrap_err(),
        overflow
    );
    let mean = [0.5f32; 2];
    assert_eq!(
        quantize_calibrated(
            &w,
            usize::MAX,
            2,
            &Config::linear(4),
            &InputStats::new(&mean)
        )
        .unwrap_err(),
        overflow
    );
    assert!(overflow.to_string().contains("overflows"));
}

#[test]
fn floats_in_messages_are_short() {
    let fixed = ScaleRule::Fixed {
        a: f64::from(1e-44f32),
        q: 0.5,
    };
    let err = quantize(
        &[1.0; 4],
        2,
        2,
        &Config::exponential(4).with_scale_rule(fixed),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid scale parameters a = 1e-44, q = 0.5: the levels are not distinct and finite \
         in this float type"
    );
    // A linear family has no ratio, and its message names none.
    let fixed = ScaleRule::Fixed { a: 1e-60, q: 0.5 };
    let err = quantize(&[1.0; 4], 2, 2, &Config::linear(4).with_scale_rule(fixed)).unwrap_err();
    assert!(!err.to_string().contains("q ="), "{err}");
    let err = quantize(&[1.0, f32::NAN], 1, 2, &Config::linear(4)).unwrap_err();
    assert_eq!(err.to_string(), "weight at index 1 is not finite (NaN)");
}

/// `Codebook::encode` does not check its input: NaN is code 0, as documented.
#[test]
fn codebook_encodes_nan_to_code_zero() {
    let cb = Codebook::new(&[-1.0f32, 0.0, 1.0]).unwrap();
    assert_eq!(cb.encode(f32::NAN), 0);
    assert_eq!(cb.encode(-f32::NAN), 0);
    assert_eq!(cb.encode(f32::INFINITY), 2);
}

/// SQNR: an exact approximation is `+∞` dB, all zeros included; a zero original with a
/// non-zero approximation is `−∞`; NaN input is NaN.
#[test]
fn sqnr_of_exact_and_zero_signals() {
    assert_eq!(
        metrics::sqnr_db(&[0.0f32; 3], &[0.0; 3]).unwrap(),
        f64::INFINITY
    );
    assert_eq!(
        metrics::sqnr_db(&[1.0f32, 2.0], &[1.0, 2.0]).unwrap(),
        f64::INFINITY
    );
    assert_eq!(
        metrics::sqnr_db(&[0.0f32; 2], &[0.5, 0.0]).unwrap(),
        f64::NEG_INFINITY
    );
    assert!(metrics::sqnr_db(&[f32::NAN, 1.0], &[0.0, 1.0])
        .unwrap()
        .is_nan());
    let db = metrics::sqnr_db(&[1.0f32, 1.0], &[1.1, 0.9]).unwrap();
    assert!((db - 20.0).abs() < 1e-4, "{db}");
}
