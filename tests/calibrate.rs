//! Activation-aware quantization: bias correction, OutputMse, data-free ReLU moments.
mod common;

use common::{weights, Rng};
use expquant::calibrate::{bias_correction, quantize_calibrated, relu_moments, InputStats};
use expquant::{quantize, quantize_weighted, Config, Error, ScaleRule};
use proptest::prelude::*;

fn rules() -> [ScaleRule; 3] {
    [ScaleRule::MaxAbs, ScaleRule::Mse, ScaleRule::Correlation]
}

#[test]
fn zero_statistics_give_zero_corrections_and_plain_quantize() {
    let (rows, cols) = (6, 50);
    let w = weights(1, rows * cols, 0.1);
    let zeros = vec![0.0f32; cols];
    for base in [Config::linear(4), Config::exponential(4)] {
        for rule in rules() {
            let config = base.with_scale_rule(rule);
            let c = quantize_calibrated(
                &w,
                rows,
                cols,
                &config,
                &InputStats::new(&zeros).with_sq_mean(&zeros),
            )
            .unwrap();
            assert!(c.bias_correction.iter().all(|&b| b == 0.0));
            assert_eq!(c.tensor, quantize(&w, rows, cols, &config).unwrap());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Mean over inputs of (Q·x + correction) equals the mean of W·x: the correction removes
    /// exactly the mean output shift, whatever the inputs' distribution around their means.
    #[test]
    fn the_correction_makes_the_mean_output_exact(seed in 0u64..10_000, rows in 1usize..8, cols in 1usize..60, bits in 1u8..=6) {
        let mut rng = Rng::new(seed);
        let w = weights(seed, rows * cols, 0.2);
        let mean: Vec<f32> = (0..cols).map(|_| (rng.uniform() * 2.0) as f32).collect();
        // Inputs with those exact column means: mean plus noise centred over the sample.
        let n = 64;
        let mut xs: Vec<Vec<f64>> = (0..n).map(|_| (0..cols).map(|_| rng.normal()).collect()).collect();
        for j in 0..cols {
            let m: f64 = xs.iter().map(|x| x[j]).sum::<f64>() / n as f64;
            for x in &mut xs { x[j] += f64::from(mean[j]) - m; }
        }
        let config = Config::exponential(bits);
        let c = quantize_calibrated(&w, rows, cols, &config, &InputStats::new(&mean)).unwrap();
        let q = c.tensor.dequantize();
        for r in 0..rows {
            let mut quantized = 0.0;
            let mut exact = 0.0;
            let mut scale = 0.0;
            for x in &xs {
                for j in 0..cols {
                    quantized += f64::from(q[r * cols + j]) * x[j];
                    exact += f64::from(w[r * cols + j]) * x[j];
                    scale += (f64::from(w[r * cols + j]) * x[j]).abs();
                }
            }
            let (quantized, exact) = (quantized / n as f64 + f64::from(c.bias_correction[r]), exact / n as f64);
            prop_assert!((quantized - exact).abs() <= 1e-5 * (scale / n as f64).max(1e-6),
                "row {r}: {quantized} vs {exact}");
        }
    }
}

#[test]
fn output_mse_with_equal_mean_squares_matches_mse() {
    let (rows, cols) = (5, 80);
    let w = weights(2, rows * cols, 0.1);
    let mean = vec![0.3f32; cols];
    for value in [1.0f32, 0.37, 12.5] {
        let sq = vec![value; cols];
        for base in [
            Config::linear(3),
            Config::exponential(3),
            Config::exponential(5).per_group(16),
        ] {
            let out = quantize_calibrated(
                &w,
                rows,
                cols,
                &base.with_scale_rule(ScaleRule::OutputMse),
                &InputStats::new(&mean).with_sq_mean(&sq),
            )
            .unwrap();
            let mse = quantize(&w, rows, cols, &base.with_scale_rule(ScaleRule::Mse)).unwrap();
            assert_eq!(
                out.tensor.packed_codes(),
                mse.packed_codes(),
                "E[x²] = {value}"
            );
            assert_eq!(common::all_params(&out.tensor), common::all_params(&mse));
        }
    }
}

#[test]
fn output_mse_has_the_lowest_weighted_error() {
    let mut rng = Rng::new(3);
    let (rows, cols) = (8, 120);
    let w = weights(3, rows * cols, 0.1);
    let mean: Vec<f32> = (0..cols).map(|_| rng.uniform() as f32).collect();
    // Very uneven E[x²]: a few inputs carry most of the energy.
    let sq: Vec<f32> = (0..cols)
        .map(|j| {
            if j % 10 == 0 {
                20.0
            } else {
                (rng.uniform() * 0.5) as f32
            }
        })
        .collect();
    let weighted_error = |q: &[f32]| -> f64 {
        (0..rows * cols)
            .map(|i| f64::from(sq[i % cols]) * f64::from(q[i] - w[i]).powi(2))
            .sum()
    };
    for base in [
        Config::linear(3),
        Config::exponential(3),
        Config::exponential(4),
    ] {
        let out = quantize_calibrated(
            &w,
            rows,
            cols,
            &base.with_scale_rule(ScaleRule::OutputMse),
            &InputStats::new(&mean).with_sq_mean(&sq),
        )
        .unwrap();
        let e_out = weighted_error(&out.tensor.dequantize());
        for rule in [ScaleRule::Mse, ScaleRule::MaxAbs] {
            let other = quantize(&w, rows, cols, &base.with_scale_rule(rule)).unwrap();
            let e = weighted_error(&other.dequantize());
            assert!(
                e_out <= e * (1.0 + 1e-9),
                "{base:?}: OutputMse {e_out} > {rule:?} {e}"
            );
        }
    }
}

#[test]
fn per_row_statistics_equal_row_by_row_calls() {
    let mut rng = Rng::new(4);
    let (rows, cols) = (7, 45);
    let w = weights(4, rows * cols, 0.1);
    let mean: Vec<f32> = (0..rows * cols).map(|_| rng.uniform() as f32).collect();
    let sq: Vec<f32> = mean.iter().map(|m| m * m + rng.uniform() as f32).collect();
    for config in [
        Config::exponential(4).with_scale_rule(ScaleRule::OutputMse),
        Config::linear(3)
            .per_group(10)
            .with_scale_rule(ScaleRule::OutputMse),
        Config::exponential(4),
    ] {
        let whole = quantize_calibrated(
            &w,
            rows,
            cols,
            &config,
            &InputStats::new(&mean).with_sq_mean(&sq),
        )
        .unwrap();
        let deq = whole.tensor.dequantize();
        for r in 0..rows {
            let span = r * cols..(r + 1) * cols;
            let one = quantize_calibrated(
                &w[span.clone()],
                1,
                cols,
                &config,
                &InputStats::new(&mean[span.clone()]).with_sq_mean(&sq[span.clone()]),
            )
            .unwrap();
            assert_eq!(one.tensor.dequantize(), deq[span]);
            assert_eq!(one.bias_correction[0], whole.bias_correction[r]);
        }
    }
}

#[test]
fn bad_statistics_are_errors() {
    let w = weights(5, 12, 0.1);
    let config = Config::exponential(4);
    let cases: Vec<(Vec<f32>, Option<Vec<f32>>, ScaleRule)> = vec![
        (vec![0.0; 5], None, ScaleRule::MaxAbs),
        (vec![0.0; 4], Some(vec![0.0; 7]), ScaleRule::MaxAbs),
        (vec![0.0, f32::NAN, 0.0, 0.0], None, ScaleRule::MaxAbs),
        (
            vec![0.0; 4],
            Some(vec![1.0, f32::INFINITY, 1.0, 1.0]),
            ScaleRule::OutputMse,
        ),
        (
            vec![0.0; 4],
            Some(vec![1.0, -1.0, 1.0, 1.0]),
            ScaleRule::OutputMse,
        ),
        (vec![0.0; 4], None, ScaleRule::OutputMse),
    ];
    let mut seen = Vec::new();
    for (mean, sq, rule) in &cases {
        let mut stats = InputStats::new(mean);
        if let Some(sq) = sq {
            stats = stats.with_sq_mean(sq);
        }
        let err =
            quantize_calibrated(&w, 3, 4, &config.with_scale_rule(*rule), &stats).unwrap_err();
        assert!(!err.to_string().is_empty());
        seen.push(core::mem::discriminant(&err));
        match err {
            Error::InputStatsLength { .. }
            | Error::NonFiniteStatistic { .. }
            | Error::MissingSqMean => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // OutputMse without statistics is refused by the plain API too.
    assert_eq!(
        quantize(&w, 3, 4, &config.with_scale_rule(ScaleRule::OutputMse)).unwrap_err(),
        Error::MissingSqMean
    );
    assert!(quantize_weighted(
        &w,
        3,
        4,
        &config.with_scale_rule(ScaleRule::OutputMse),
        Some(&[1.0; 12])
    )
    .is_ok());
    let q = quantize(&w, 3, 4, &config).unwrap();
    assert!(matches!(
        bias_correction(&w, &q, &[0.0; 3]),
        Err(Error::InputStatsLength { .. })
    ));
    assert!(matches!(
        relu_moments(f64::NAN, 1.0, 6.0),
        Err(Error::InvalidMomentArguments { .. })
    ));
    assert!(matches!(
        relu_moments(0.0, 1.0, 0.0),
        Err(Error::InvalidMomentArguments { .. })
    ));
    seen.dedup();
    assert!(
        seen.len() >= 3,
        "length, non-finite and missing-E[x²] errors are distinct variants"
    );
}

/// E[y], E[y²] of clamp(z, 0, clip), z ~ N(β, γ²), by Simpson's rule over ±12σ.
fn integrate(beta: f64, gamma: f64, clip: f64) -> (f64, f64) {
    let (lo, hi) = (beta - 12.0 * gamma, beta + 12.0 * gamma);
    let n = 200_000;
    let h = (hi - lo) / n as f64;
    let (mut m1, mut m2) = (0.0, 0.0);
    for i in 0..=n {
        let z = lo + h * i as f64;
        let weight = if i == 0 || i == n {
            1.0
        } else if i % 2 == 1 {
            4.0
        } else {
            2.0
        };
        let density = (-0.5 * ((z - beta) / gamma).powi(2)).exp()
            / (gamma * (2.0 * std::f64::consts::PI).sqrt());
        let y = z.clamp(0.0, clip);
        m1 += weight * y * density;
        m2 += weight * y * y * density;
    }
    (m1 * h / 3.0, m2 * h / 3.0)
}

#[test]
fn relu_moments_match_numerical_integration() {
    for &(beta, gamma) in &[
        (0.0, 1.0),
        (1.5, 0.7),
        (-2.0, 1.3),
        (3.0, 2.0),
        (0.2, 0.05),
        (8.0, 1.0),
        (-0.5, -1.2),
    ] {
        for clip in [f64::INFINITY, 6.0, 1.0] {
            let (m, s) = relu_moments(beta, gamma, clip).unwrap();
            let (mi, si) = integrate(beta, f64::abs(gamma), clip);
            assert!(
                (m - mi).abs() <= 1e-6 * mi.abs().max(1e-3),
                "β={beta} γ={gamma} clip={clip}: {m} vs {mi}"
            );
            assert!(
                (s - si).abs() <= 1e-6 * si.abs().max(1e-3),
                "β={beta} γ={gamma} clip={clip}: {s} vs {si}"
            );
        }
    }
    assert_eq!(relu_moments(2.0, 0.0, 6.0).unwrap(), (2.0, 4.0));
    assert_eq!(relu_moments(9.0, 0.0, 6.0).unwrap(), (6.0, 36.0));
    assert_eq!(relu_moments(-1.0, 0.0, 6.0).unwrap(), (0.0, 0.0));
}
