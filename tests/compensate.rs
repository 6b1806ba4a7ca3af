//! Error-compensating quantization: exactness with a diagonal covariance, lower output error
//! than nearest-level rounding on correlated inputs, the blocked algorithm against an
//! unblocked reference, and every way the inputs can be wrong.
#![cfg(feature = "compensate")]
// The references index matrices as the formulas do.
#![allow(clippy::needless_range_loop)]
mod common;

use common::{weights, Rng};
use expquant::calibrate::bias_correction;
use expquant::calibrate::Covariance;
use expquant::compensate::{quantize_compensated, ColumnOrder, CompensateOptions};
use expquant::{quantize, quantize_weighted, Config, Error, Granularity, ScaleRule, Scheme};
use proptest::prelude::*;

/// `Σ_r δ_rᵀ H δ_r` with `δ = dequantized − original`: the layer's output error under `H`.
fn output_error(w: &[f32], q: &[f32], h: &[f64], cols: usize) -> f64 {
    w.chunks_exact(cols)
        .zip(q.chunks_exact(cols))
        .map(|(w, q)| {
            let d: Vec<f64> = w.iter().zip(q).map(|(a, b)| f64::from(b - a)).collect();
            (0..cols)
                .map(|i| d[i] * (0..cols).map(|j| h[i * cols + j] * d[j]).sum::<f64>())
                .sum::<f64>()
        })
        .sum()
}

/// `H = E[x xᵀ]` of `x = L z`: `sqrt(1 − ρ)·diag(a)` on own noise plus `sqrt(ρ)·B` on four
/// shared factors, so `H = (1 − ρ)·diag(a²) + ρ·B Bᵀ` and `ρ` sets how correlated inputs are.
fn correlated_h(rng: &mut Rng, cols: usize, rho: f64) -> Vec<f64> {
    let a: Vec<f64> = (0..cols).map(|_| 0.5 + 1.5 * rng.uniform()).collect();
    let factors = 4;
    let b: Vec<f64> = (0..cols * factors).map(|_| rng.normal()).collect();
    let mut h = vec![0.0; cols * cols];
    for i in 0..cols {
        for j in 0..cols {
            let shared: f64 = (0..factors)
                .map(|k| b[i * factors + k] * b[j * factors + k])
                .sum();
            h[i * cols + j] = rho * shared
                + if i == j {
                    (1.0 - rho) * a[i] * a[i]
                } else {
                    0.0
                };
        }
    }
    h
}

fn schemes() -> [Scheme; 2] {
    [Scheme::Linear, Scheme::Exponential]
}

fn granularities() -> [Granularity; 3] {
    [
        Granularity::PerTensor,
        Granularity::PerRow,
        Granularity::PerGroup(16),
    ]
}

/// Mean over `layers` random layers of (compensated error) / (nearest-level error).
fn mean_ratio(config: &Config, rho: f64, options: &CompensateOptions, layers: u64) -> f64 {
    let (rows, cols) = (16, 64);
    let mut total = 0.0;
    for layer in 0..layers {
        let mut rng = Rng::new(1000 * layer + (rho * 100.0) as u64);
        let h = correlated_h(&mut rng, cols, rho);
        let w = weights(layer + 7, rows * cols, 0.1);
        let cov = Covariance::from_matrix(1, cols, &h).unwrap();
        let plain = quantize(&w, rows, cols, config).unwrap().dequantize();
        let comp = quantize_compensated(&w, rows, cols, config, &cov, options, None)
            .unwrap()
            .tensor
            .dequantize();
        total += output_error(&w, &comp, &h, cols) / output_error(&w, &plain, &h, cols);
    }
    total / layers as f64
}

/// On correlated inputs the compensated output error is below nearest-level rounding's on
/// average, for every scheme, granularity and bit width, and the gain grows with the
/// correlation. The method is greedy, so the average over many layers is what is tested.
#[test]
fn compensation_lowers_the_output_error_on_correlated_inputs() {
    let options = CompensateOptions::default();
    let rhos = [0.3, 0.6, 0.9];
    println!("mean output error, compensated / nearest level (16 x 64 layers, 16 per cell)");
    println!("scheme       granularity bits  rho=0.3  rho=0.6  rho=0.9");
    for scheme in schemes() {
        for granularity in granularities() {
            for bits in [2u8, 3, 4, 8] {
                let config = Config::new(scheme, bits).with_granularity(granularity);
                let ratios: Vec<f64> = rhos
                    .iter()
                    .map(|&rho| mean_ratio(&config, rho, &options, 16))
                    .collect();
                println!(
                    "{:<12} {:<11} {bits:>4}  {:>7.3}  {:>7.3}  {:>7.3}",
                    format!("{scheme:?}"),
                    format!("{granularity:?}"),
                    ratios[0],
                    ratios[1],
                    ratios[2]
                );
                for (&rho, &r) in rhos.iter().zip(&ratios) {
                    assert!(r < 1.0, "{config:?} rho {rho}: ratio {r}");
                }
                assert!(
                    ratios[2] < ratios[0],
                    "{config:?}: the gain does not grow with correlation: {ratios:?}"
                );
            }
        }
    }
}

/// Refitting each group's codebook on its compensated weights when its first column is
/// reached changes the mean output error little (it is off by default for that reason) and
/// never makes it clearly worse.
#[test]
fn refitting_groups_changes_the_output_error_little() {
    println!("per group of 16, rho 0.6: mean error ratio without / with refit");
    for scheme in schemes() {
        for bits in [2u8, 3, 4, 8] {
            let config = Config::new(scheme, bits).per_group(16);
            let without = CompensateOptions::default();
            let with = CompensateOptions {
                refit_groups: true,
                ..without
            };
            let a = mean_ratio(&config, 0.6, &without, 12);
            let b = mean_ratio(&config, 0.6, &with, 12);
            println!("{scheme:?} {bits}: {a:.3} / {b:.3}");
            assert!(b < a * 1.02, "{config:?}: refit {b} vs {a}");
        }
    }
}

/// A straightforward OBQ: `H_p⁻¹` by Cholesky and solves in `f64`, its upper Cholesky
/// factor, then one column at a time, each error spread over every later column at once.
fn reference(
    w: &[f32],
    rows: usize,
    cols: usize,
    config: &Config,
    h: &[f64],
    options: &CompensateOptions,
) -> Vec<u8> {
    let n = cols;
    let mut order: Vec<usize> = (0..n).collect();
    if options.order == ColumnOrder::DecreasingDiagonal {
        order.sort_by(|&a, &b| h[b * n + b].total_cmp(&h[a * n + a]));
    }
    let mean_diag = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
    let mut hp = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            hp[i * n + j] = h[order[i] * n + order[j]];
        }
        hp[i * n + i] += options.dampening * mean_diag;
    }
    let cholesky = |a: &[f64]| {
        let mut l = vec![0.0; n * n];
        for j in 0..n {
            let s: f64 = (0..j).map(|k| l[j * n + k] * l[j * n + k]).sum();
            l[j * n + j] = (a[j * n + j] - s).sqrt();
            for i in j + 1..n {
                let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
                l[i * n + j] = (a[i * n + j] - s) / l[j * n + j];
            }
        }
        l
    };
    // H_p⁻¹ column by column: L y = e_c, Lᵀ x = y.
    let l = cholesky(&hp);
    let mut inv = vec![0.0; n * n];
    for c in 0..n {
        let mut y = vec![0.0; n];
        for i in 0..n {
            let s: f64 = (0..i).map(|k| l[i * n + k] * y[k]).sum();
            y[i] = (if i == c { 1.0 } else { 0.0 } - s) / l[i * n + i];
        }
        for i in (0..n).rev() {
            let s: f64 = (i + 1..n).map(|k| l[k * n + i] * inv[k * n + c]).sum();
            inv[i * n + c] = (y[i] - s) / l[i * n + i];
        }
    }
    // Upper factor U of H_p⁻¹ = Uᵀ U is the transpose of its lower Cholesky factor.
    let lower = cholesky(&inv);
    let u = |i: usize, j: usize| lower[j * n + i];
    let plain = quantize(w, rows, cols, config).unwrap();
    let g = config.granularity().group_len(cols);
    let mut codes = vec![0u8; rows * cols];
    for r in 0..rows {
        let mut row: Vec<f64> = order.iter().map(|&c| f64::from(w[r * cols + c])).collect();
        for i in 0..n {
            let c = order[i];
            let group = match config.granularity() {
                Granularity::PerTensor => 0,
                Granularity::PerRow => r,
                _ => r * cols.div_ceil(g) + c / g,
            };
            let codebook = plain.codebook(group).unwrap();
            let code = codebook.encode(row[i] as f32);
            codes[r * cols + c] = code;
            let e = (row[i] - f64::from(codebook.decode(code).unwrap())) / u(i, i);
            for j in i + 1..n {
                row[j] -= e * u(i, j);
            }
        }
    }
    codes
}

/// The blocked algorithm agrees with the unblocked reference: nearly every code is the same
/// (a weight within float rounding of a threshold may flip, and then its row differs after
/// it), and the output errors agree closely on average.
#[test]
fn blocked_matches_the_unblocked_reference() {
    let (rows, cols) = (12, 48);
    let (mut same, mut total, mut err_gap, mut err_sum) = (0usize, 0usize, 0.0, 0.0);
    for layer in 0..12u64 {
        let mut rng = Rng::new(50 + layer);
        let h = correlated_h(&mut rng, cols, 0.7);
        let w = weights(90 + layer, rows * cols, 0.1);
        let cov = Covariance::from_matrix(1, cols, &h).unwrap();
        let config = [
            Config::exponential(4),
            Config::linear(3).per_group(16),
            Config::exponential(2).per_tensor(),
        ][layer as usize % 3];
        for (block_size, order) in [
            (1, ColumnOrder::Natural),
            (5, ColumnOrder::DecreasingDiagonal),
            (128, ColumnOrder::DecreasingDiagonal),
        ] {
            let options = CompensateOptions {
                block_size,
                order,
                refit_groups: false,
                ..CompensateOptions::default()
            };
            let expected = reference(&w, rows, cols, &config, &h, &options);
            let got = quantize_compensated(&w, rows, cols, &config, &cov, &options, None)
                .unwrap()
                .tensor;
            let codes = got.codes();
            same += codes.iter().zip(&expected).filter(|(a, b)| a == b).count();
            total += codes.len();
            let plain = quantize(&w, rows, cols, &config).unwrap();
            let mut reference_tensor = plain.dequantize();
            for r in 0..rows {
                for c in 0..cols {
                    let group = match config.granularity() {
                        Granularity::PerTensor => 0,
                        Granularity::PerRow => r,
                        _ => r * cols.div_ceil(16) + c / 16,
                    };
                    reference_tensor[r * cols + c] = plain
                        .codebook(group)
                        .unwrap()
                        .decode(expected[r * cols + c])
                        .unwrap();
                }
            }
            let e_ref = output_error(&w, &reference_tensor, &h, cols);
            let e_got = output_error(&w, &got.dequantize(), &h, cols);
            err_gap += (e_got - e_ref).abs();
            err_sum += e_ref;
        }
    }
    let agreement = same as f64 / total as f64;
    assert!(agreement > 0.98, "codes agree on {agreement}");
    assert!(
        err_gap / err_sum < 0.01,
        "output errors differ by {}",
        err_gap / err_sum
    );
}

/// With refits on, the block size changes nothing beyond float rounding either.
#[test]
fn block_size_does_not_change_the_refitted_result() {
    let (rows, cols) = (8, 64);
    let mut rng = Rng::new(3);
    let h = correlated_h(&mut rng, cols, 0.8);
    let w = weights(4, rows * cols, 0.1);
    let cov = Covariance::from_matrix(1, cols, &h).unwrap();
    let config = Config::exponential(3).per_group(16);
    let run = |block_size| {
        let options = CompensateOptions {
            block_size,
            refit_groups: true,
            ..CompensateOptions::default()
        };
        quantize_compensated(&w, rows, cols, &config, &cov, &options, None)
            .unwrap()
            .tensor
    };
    let (one, many) = (run(1), run(40));
    let same = one
        .codes()
        .iter()
        .zip(many.codes())
        .filter(|(a, b)| **a == *b)
        .count();
    assert!(same as f64 > 0.98 * (rows * cols) as f64, "{same}");
    let (e1, e2) = (
        output_error(&w, &one.dequantize(), &h, cols),
        output_error(&w, &many.dequantize(), &h, cols),
    );
    assert!((e1 - e2).abs() < 0.02 * e1, "{e1} vs {e2}");
}

fn any_config() -> impl Strategy<Value = Config> {
    (
        prop_oneof![Just(Scheme::Linear), Just(Scheme::Exponential)],
        1u8..=8,
        prop_oneof![
            Just(Granularity::PerTensor),
            Just(Granularity::PerRow),
            (1usize..20).prop_map(Granularity::PerGroup)
        ],
        prop_oneof![
            Just(ScaleRule::MaxAbs),
            Just(ScaleRule::Mse),
            Just(ScaleRule::Correlation),
            Just(ScaleRule::OutputMse)
        ],
        any::<bool>(),
    )
        .prop_map(|(scheme, bits, granularity, rule, zero)| {
            Config::new(scheme, bits)
                .with_granularity(granularity)
                .with_scale_rule(rule)
                .with_zero_level(zero)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// With a diagonal `H` no error moves, so the result is exactly nearest-level
    /// quantization with the same configuration (OutputMse: weighted by the diagonal), in
    /// either column order, with any block size and with refits.
    #[test]
    fn diagonal_covariance_gives_plain_quantization(
        config in any_config(),
        rows in 1usize..6,
        cols in 1usize..40,
        seed in any::<u64>(),
        natural in any::<bool>(),
        block_size in 1usize..50,
        refit in any::<bool>(),
        dampening in 0.0f64..0.5,
    ) {
        let mut rng = Rng::new(seed);
        let w = weights(seed, rows * cols, 0.2);
        let diag: Vec<f64> = (0..cols).map(|_| 0.1 + 3.0 * rng.uniform()).collect();
        let mut h = vec![0.0; cols * cols];
        for j in 0..cols {
            h[j * cols + j] = diag[j];
        }
        let cov = Covariance::from_matrix(1, cols, &h).unwrap();
        let options = CompensateOptions {
            dampening,
            order: if natural { ColumnOrder::Natural } else { ColumnOrder::DecreasingDiagonal },
            block_size,
            refit_groups: refit,
        };
        let got = quantize_compensated(&w, rows, cols, &config, &cov, &options, None).unwrap();
        let importance: Vec<f32> = (0..rows * cols).map(|i| diag[i % cols] as f32).collect();
        let imp = (config.scale_rule() == ScaleRule::OutputMse).then_some(&importance[..]);
        let plain = quantize_weighted(&w, rows, cols, &config, imp).unwrap();
        prop_assert_eq!(got.tensor, plain);
    }
}

#[test]
fn accumulated_covariance_matches_a_direct_sum() {
    let (groups, dim, n) = (2, 5, 700);
    let mut rng = Rng::new(11);
    let x: Vec<f32> = (0..n * groups * dim)
        .map(|_| rng.normal() as f32 + 0.3)
        .collect();
    let mut cov = Covariance::new(groups, dim).unwrap();
    assert_eq!(cov.mean(), None);
    assert_eq!(cov.matrix(0), None);
    // Uneven batches.
    cov.add_rows(&x[..3 * groups * dim]).unwrap();
    cov.add_rows(&x[3 * groups * dim..]).unwrap();
    assert_eq!(cov.count(), n as u64);
    let mean = cov.mean().unwrap();
    for k in 0..groups {
        let h = cov.matrix(k).unwrap();
        for i in 0..dim {
            let m: f64 = (0..n)
                .map(|r| f64::from(x[r * groups * dim + k * dim + i]))
                .sum::<f64>()
                / n as f64;
            assert!((f64::from(mean[k * dim + i]) - m).abs() < 1e-6);
            for j in 0..dim {
                let e: f64 = (0..n)
                    .map(|r| {
                        let row = &x[r * groups * dim + k * dim..];
                        f64::from(row[i]) * f64::from(row[j])
                    })
                    .sum::<f64>()
                    / n as f64;
                assert!(
                    (h[i * dim + j] - e).abs() < 1e-12 * (1.0 + e.abs()),
                    "{k} {i} {j}"
                );
            }
        }
    }
    assert_eq!(cov.matrix(2), None);
}

/// A grouped covariance compensates each run of rows with its own group's matrix, and the
/// bias correction is the one of the compensated weights against the original.
#[test]
fn grouped_covariance_and_bias_correction() {
    let (groups, per, cols) = (3, 4, 20);
    let rows = groups * per;
    let mut rng = Rng::new(21);
    let x: Vec<f32> = (0..300 * groups * cols)
        .map(|i| (rng.normal() + if i % 2 == 0 { 0.5 } else { 0.0 }) as f32)
        .collect();
    let mut cov = Covariance::new(groups, cols).unwrap();
    cov.add_rows(&x).unwrap();
    let w = weights(22, rows * cols, 0.1);
    let config = Config::exponential(3);
    let options = CompensateOptions::default();
    let mean = cov.mean().unwrap();
    let all = quantize_compensated(&w, rows, cols, &config, &cov, &options, Some(&mean)).unwrap();
    let codes = all.tensor.codes();
    for k in 0..groups {
        let h = cov.matrix(k).unwrap();
        let single = Covariance::from_matrix(1, cols, &h).unwrap();
        let part = &w[k * per * cols..(k + 1) * per * cols];
        let alone = quantize_compensated(part, per, cols, &config, &single, &options, None)
            .unwrap()
            .tensor;
        assert_eq!(
            alone.codes(),
            codes[k * per * cols..(k + 1) * per * cols].to_vec()
        );
    }
    let expanded: Vec<f32> = (0..rows)
        .flat_map(|r| mean[r / per * cols..(r / per + 1) * cols].to_vec())
        .collect();
    let expected = bias_correction(&w, &all.tensor, &expanded).unwrap();
    assert_eq!(all.bias_correction, Some(expected));
}

/// Dead inputs (zero variance) are rounded to their nearest level and take no error; a
/// singular `H` factorizes once dampened and is a clear error without dampening.
#[test]
fn dead_inputs_and_singular_covariance() {
    let (rows, cols) = (6, 24);
    let mut rng = Rng::new(31);
    let mut h = correlated_h(&mut rng, cols, 0.6);
    let dead = [0usize, 7, 23];
    for &d in &dead {
        for j in 0..cols {
            h[d * cols + j] = 0.0;
            h[j * cols + d] = 0.0;
        }
    }
    let w = weights(32, rows * cols, 0.1);
    let config = Config::linear(4);
    let cov = Covariance::from_matrix(1, cols, &h).unwrap();
    let plain = quantize(&w, rows, cols, &config).unwrap().codes();
    for dampening in [0.0, 0.01] {
        let options = CompensateOptions {
            dampening,
            ..CompensateOptions::default()
        };
        let got = quantize_compensated(&w, rows, cols, &config, &cov, &options, None)
            .unwrap()
            .tensor
            .codes();
        for r in 0..rows {
            for &d in &dead {
                assert_eq!(got[r * cols + d], plain[r * cols + d]);
            }
        }
    }
    // Every input dead: plain quantization.
    let zero = Covariance::from_matrix(1, cols, &vec![0.0; cols * cols]).unwrap();
    let got = quantize_compensated(
        &w,
        rows,
        cols,
        &config,
        &zero,
        &CompensateOptions::default(),
        None,
    )
    .unwrap();
    assert_eq!(got.tensor, quantize(&w, rows, cols, &config).unwrap());

    // Rank 4 from four shared factors: singular.
    let singular = correlated_h(&mut Rng::new(33), cols, 1.0);
    let cov = Covariance::from_matrix(1, cols, &singular).unwrap();
    quantize_compensated(
        &w,
        rows,
        cols,
        &config,
        &cov,
        &CompensateOptions::default(),
        None,
    )
    .unwrap();
    let undamped = CompensateOptions {
        dampening: 0.0,
        ..CompensateOptions::default()
    };
    let err = quantize_compensated(&w, rows, cols, &config, &cov, &undamped, None).unwrap_err();
    assert_eq!(
        err,
        Error::NotPositiveDefinite {
            group: 0,
            dampening: 0.0
        }
    );
    // Indefinite: a large negative eigenvalue survives the default dampening.
    let mut indefinite = vec![0.0; cols * cols];
    for j in 0..cols {
        indefinite[j * cols + j] = 1.0;
    }
    indefinite[1] = 5.0;
    indefinite[cols] = 5.0;
    let cov = Covariance::from_matrix(1, cols, &indefinite).unwrap();
    let err = quantize_compensated(
        &w,
        rows,
        cols,
        &config,
        &cov,
        &CompensateOptions::default(),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::NotPositiveDefinite { group: 0, .. }),
        "{err}"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let (rows, cols) = (4, 6);
    let w = weights(41, rows * cols, 0.1);
    let config = Config::exponential(4);
    let options = CompensateOptions::default();
    let mut eye = vec![0.0; cols * cols];
    for j in 0..cols {
        eye[j * cols + j] = 1.0;
    }
    let cov = Covariance::from_matrix(1, cols, &eye).unwrap();

    // Shapes.
    let narrow = Covariance::from_matrix(1, 5, &[0.0; 25]).unwrap();
    assert!(matches!(
        quantize_compensated(&w, rows, cols, &config, &narrow, &options, None),
        Err(Error::CovarianceShape {
            dim: 5,
            cols: 6,
            ..
        })
    ));
    let three = Covariance::new(3, cols).unwrap();
    assert!(matches!(
        quantize_compensated(&w, rows, cols, &config, &three, &options, None),
        Err(Error::CovarianceShape { groups: 3, .. })
    ));
    assert!(matches!(
        quantize_compensated(&w[..20], rows, cols, &config, &cov, &options, None),
        Err(Error::ShapeMismatch { .. })
    ));
    let empty = Covariance::new(1, cols).unwrap();
    assert!(matches!(
        quantize_compensated(&w, rows, cols, &config, &empty, &options, None),
        Err(Error::InvalidCovariance(_))
    ));
    assert!(matches!(
        Covariance::new(0, 3),
        Err(Error::InvalidCovariance(_))
    ));
    assert!(matches!(
        Covariance::new(1, 0),
        Err(Error::InvalidCovariance(_))
    ));
    assert!(matches!(
        Covariance::from_matrix(1, cols, &eye[1..]),
        Err(Error::BufferLength { .. })
    ));

    // Matrices and rows.
    let mut nan = eye.clone();
    nan[7] = f64::NAN;
    assert!(matches!(
        Covariance::from_matrix(1, cols, &nan),
        Err(Error::NonFiniteStatistic { index: 7, .. })
    ));
    let mut asym = eye.clone();
    asym[1] = 0.5;
    assert!(matches!(
        Covariance::from_matrix(1, cols, &asym),
        Err(Error::InvalidCovariance(_))
    ));
    let mut acc = Covariance::new(1, cols).unwrap();
    assert!(matches!(
        acc.add_rows(&[1.0; 7]),
        Err(Error::InvalidCovariance(_))
    ));
    let mut row = [1.0f32; 6];
    row[2] = f32::INFINITY;
    assert!(matches!(
        acc.add_rows(&row),
        Err(Error::NonFiniteStatistic { index: 2, .. })
    ));
    assert_eq!(acc.count(), 0);
    let mut given = cov.clone();
    assert!(matches!(
        given.add_rows(&[1.0; 6]),
        Err(Error::InvalidCovariance(_))
    ));
    assert_eq!(given.mean(), None);

    // Weights, options, means.
    let mut bad = w.clone();
    bad[3] = f32::NAN;
    assert!(matches!(
        quantize_compensated(&bad, rows, cols, &config, &cov, &options, None),
        Err(Error::NonFiniteWeight { index: 3, .. })
    ));
    for bad_options in [
        CompensateOptions {
            dampening: -0.1,
            ..options
        },
        CompensateOptions {
            dampening: f64::NAN,
            ..options
        },
        CompensateOptions {
            block_size: 0,
            ..options
        },
    ] {
        assert!(matches!(
            quantize_compensated(&w, rows, cols, &config, &cov, &bad_options, None),
            Err(Error::InvalidCompensateOption(_))
        ));
    }
    assert!(matches!(
        quantize_compensated(&w, rows, cols, &config, &cov, &options, Some(&[0.0; 5])),
        Err(Error::InputStatsLength { actual: 5, .. })
    ));
    assert!(matches!(
        quantize_compensated(
            &w,
            rows,
            cols,
            &config,
            &cov,
            &options,
            Some(&[f32::NAN; 6])
        ),
        Err(Error::NonFiniteStatistic { .. })
    ));
    assert!(matches!(
        quantize_compensated(&w, rows, cols, &Config::linear(9), &cov, &options, None),
        Err(Error::InvalidBits(9))
    ));
}
