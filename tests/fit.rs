//! The fit is near-optimal: its objective is within 0.5 % of a dense brute-force search (small
//! groups under `Mse` and `Correlation`: within a documented distribution, see the last test).
mod common;

use common::*;
use expquant::{ScaleRule, Scheme};

const TOLERANCE: f64 = 1.005;

fn cases() -> Vec<(Scheme, u8, bool)> {
    let mut v = Vec::new();
    for scheme in [Scheme::Linear, Scheme::Exponential] {
        for bits in 1..=6u8 {
            v.push((scheme, bits, true));
        }
        v.push((scheme, 3, false));
        v.push((scheme, 4, false));
    }
    v
}

#[test]
fn mse_fit_is_within_half_a_percent_of_brute_force() {
    let mut worst = 0.0f64;
    let mut failures = Vec::new();
    for (case, (scheme, bits, zero)) in cases().into_iter().enumerate() {
        for seed in 0..3u64 {
            let n = [24, 90, 300][seed as usize];
            let w: Vec<f64> = weights(seed * 100 + case as u64, n, 0.05)
                .iter()
                .map(|&x| x as f64)
                .collect();
            let imp = vec![1.0; n];
            let fitted = discretizer(scheme, bits, ScaleRule::Mse, zero)
                .fit(&w, None)
                .unwrap();
            let fit_err = weighted_sse(&fitted, &w, &imp);
            let (brute, ba, bq) =
                brute_force_argmin(scheme, bits, zero, &w, None, 300, 120, |cb| {
                    weighted_sse(cb, &w, &imp)
                });
            let p = discretizer(scheme, bits, ScaleRule::Mse, zero)
                .fit_params(&w, None)
                .unwrap();
            let amax = w.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let ratio = fit_err / brute;
            worst = worst.max(ratio);
            if fit_err > brute * TOLERANCE + 1e-15 {
                failures.push(format!(
                    "{scheme:?} {bits} bits zero={zero} n={n}: fit {fit_err:e} vs brute force {brute:e} (ratio {ratio}) brute a/amax={} q={bq}, fit a/amax={} q={}", ba / amax, p.a / amax, p.q
                ));
            }
        }
    }
    println!("mse: worst ratio {worst}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn correlation_fit_is_within_half_a_percent_of_brute_force() {
    let mut worst = 0.0f64;
    let mut failures = Vec::new();
    for (case, (scheme, bits, zero)) in cases().into_iter().enumerate() {
        for seed in 0..2u64 {
            let n = [40, 200][seed as usize];
            let w: Vec<f64> = weights(seed * 7 + case as u64 + 1000, n, 0.1)
                .iter()
                .map(|&x| x as f64)
                .collect();
            let imp = vec![1.0; n];
            let fitted = discretizer(scheme, bits, ScaleRule::Correlation, zero)
                .fit(&w, None)
                .unwrap();
            let fit_corr = correlation(&fitted, &w, &imp);
            // Brute force minimizes 1 − corr, the quantity whose 0.5 % we bound.
            let brute = brute_force(scheme, bits, zero, &w, None, 300, 120, |cb| {
                1.0 - correlation(cb, &w, &imp)
            });
            worst = worst.max((1.0 - fit_corr + 1e-12) / (brute + 1e-12));
            if 1.0 - fit_corr > brute * TOLERANCE + 1e-12 {
                failures.push(format!(
                    "{scheme:?} {bits} bits zero={zero} n={n}: 1-corr {} vs brute force {brute}",
                    1.0 - fit_corr
                ));
            }
        }
    }
    println!("correlation: worst ratio {worst}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The max-abs fit's squared error and the best of a 4 000-point scan of `q` at the same
/// `a = max|w|` (checking that the fit keeps that `a`).
fn max_abs_fit_and_scan(bits: u8, zero: bool, w: &[f64]) -> (f64, f64) {
    let imp = vec![1.0; w.len()];
    let d = discretizer(Scheme::Exponential, bits, ScaleRule::MaxAbs, zero);
    let p = d.fit_params(w, None).unwrap();
    let amax = w.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert_eq!(p.a, amax, "max-abs keeps a = max|w|");
    let fit_err = weighted_sse(&d.codebook(p).unwrap(), w, &imp);
    let scan = brute_force(
        Scheme::Exponential,
        bits,
        zero,
        w,
        Some(amax),
        1,
        4000,
        |cb| weighted_sse(cb, w, &imp),
    );
    (fit_err, scan)
}

#[test]
fn max_abs_q_is_within_half_a_percent_of_brute_force_at_that_a() {
    let mut failures = Vec::new();
    for bits in 3..=6u8 {
        for zero in [true, false] {
            for seed in 0..3u64 {
                let n = [30, 150, 600][seed as usize];
                let w: Vec<f64> = weights(seed + 31 * bits as u64, n, 1.0)
                    .iter()
                    .map(|&x| x as f64)
                    .collect();
                let (fit_err, brute) = max_abs_fit_and_scan(bits, zero, &w);
                if fit_err > brute * TOLERANCE + 1e-15 {
                    failures.push(format!(
                        "{bits} bits zero={zero} n={n}: {fit_err} vs {brute}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn weighted_mse_fit_beats_max_abs_and_is_near_brute_force() {
    for (case, (scheme, bits, zero)) in cases().into_iter().enumerate() {
        let n = 120;
        let w: Vec<f64> = weights(case as u64 + 77, n, 0.3)
            .iter()
            .map(|&x| x as f64)
            .collect();
        let mut rng = Rng::new(case as u64);
        let imp: Vec<f64> = (0..n).map(|_| rng.uniform() * 3.0).collect();
        let mse = discretizer(scheme, bits, ScaleRule::Mse, zero)
            .fit(&w, Some(&imp))
            .unwrap();
        let max_abs = discretizer(scheme, bits, ScaleRule::MaxAbs, zero)
            .fit(&w, Some(&imp))
            .unwrap();
        let (e_mse, e_max) = (
            weighted_sse(&mse, &w, &imp),
            weighted_sse(&max_abs, &w, &imp),
        );
        assert!(
            e_mse <= e_max * (1.0 + 1e-12),
            "{scheme:?} {bits}: mse fit {e_mse} > max-abs {e_max}"
        );
        let brute = brute_force(scheme, bits, zero, &w, None, 300, 120, |cb| {
            weighted_sse(cb, &w, &imp)
        });
        assert!(
            e_mse <= brute * TOLERANCE + 1e-15,
            "{scheme:?} {bits}: {e_mse} vs brute {brute}"
        );
    }
}

#[test]
fn large_groups_take_the_histogram_path_and_stay_near_optimal() {
    // 50 000 weights exceed the exact-sort limit; the fitted error must still be within
    // 0.5 % of a brute-force search (coarser here: the group is large).
    let w: Vec<f64> = weights(5, 50_000, 0.02).iter().map(|&x| x as f64).collect();
    let imp = vec![1.0; w.len()];
    for (scheme, bits) in [
        (Scheme::Linear, 4u8),
        (Scheme::Exponential, 4),
        (Scheme::Exponential, 3),
    ] {
        let fitted = discretizer(scheme, bits, ScaleRule::Mse, true)
            .fit(&w, None)
            .unwrap();
        let e = weighted_sse(&fitted, &w, &imp);
        let brute = brute_force(scheme, bits, true, &w, None, 150, 60, |cb| {
            weighted_sse(cb, &w, &imp)
        });
        assert!(
            e <= brute * TOLERANCE,
            "{scheme:?} {bits}: {e} vs brute {brute}"
        );
    }
}

/// The small-group tests' verdict: no group past its bound (`failures`), and the fit's error
/// ratio to the reference scan at most 1.001 on average over all groups.
fn assert_group_ratios(label: &str, ratios: &[f64], failures: &[String]) {
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    println!(
        "{label}: worst {:.5}, mean {mean:.6} over {} groups",
        ratios.iter().fold(0.0f64, |m, r| m.max(*r)),
        ratios.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(mean <= 1.001, "{label}: mean ratio {mean}");
}

#[test]
fn small_max_abs_groups_are_near_a_dense_scan() {
    // Groups of up to 1 024 weights at 2–5 bits take the sixteen-lane search; the tiniest
    // groups have the most jagged error curves, so the bound here is per group 2 % and on
    // average 0.1 % (the 0.5 % test above covers the sizes of its own cases).
    let mut ratios = Vec::new();
    let mut failures = Vec::new();
    for bits in 2..=5u8 {
        for zero in [true, false] {
            for seed in 0..12u64 {
                let n = [8, 16, 32, 64, 128, 1024][seed as usize % 6];
                let scale = [0.05, 1.0, 300.0][seed as usize % 3];
                let w: Vec<f64> = weights(seed * 13 + u64::from(bits), n, scale)
                    .iter()
                    .map(|&x| x as f64)
                    .collect();
                let (fit_err, brute) = max_abs_fit_and_scan(bits, zero, &w);
                let ratio = (fit_err + 1e-300) / (brute + 1e-300);
                ratios.push(ratio);
                if ratio > 1.02 {
                    failures.push(format!("{bits} bits zero={zero} n={n}: ratio {ratio}"));
                }
            }
        }
    }
    assert_group_ratios("max-abs", &ratios, &failures);
}

/// The fitted objective over a dense brute-force scan's (300 `a` × 120 `q`) for an
/// exponential group under `Mse` (squared error) or `Correlation` (1 − correlation), with a
/// floor (relative to the group's energy for the squared error): a fit with almost no error
/// cannot be a large fraction worse than another.
fn fit_to_brute_ratio(rule: ScaleRule, bits: u8, zero: bool, w: &[f64]) -> f64 {
    let imp = vec![1.0; w.len()];
    let objective = |cb: &expquant::Codebook<f64>| match rule {
        ScaleRule::Mse => weighted_sse(cb, w, &imp),
        _ => 1.0 - correlation(cb, w, &imp),
    };
    let d = discretizer(Scheme::Exponential, bits, rule, zero);
    let fitted = objective(&d.fit(w, None).unwrap());
    let brute = brute_force(
        Scheme::Exponential,
        bits,
        zero,
        w,
        None,
        300,
        120,
        objective,
    );
    let floor = match rule {
        ScaleRule::Mse => 1e-12 * w.iter().map(|x| x * x).sum::<f64>(),
        _ => 1e-12,
    };
    (fitted + floor) / (brute + floor)
}

/// Small groups at 2–5 bits, with and without the zero level, `seeds` of each: `(bits, zero,
/// weights)`, the weights `[8, 16, 24, 32, 48, 64][seed % 6]` of them at one of three scales,
/// drawn from `seed_of(seed, bits)`.
fn small_groups(seeds: u64, seed_of: impl Fn(u64, u8) -> u64) -> Vec<(u8, bool, Vec<f64>)> {
    let mut groups = Vec::new();
    for bits in 2..=5u8 {
        for zero in [true, false] {
            for seed in 0..seeds {
                let n = [8, 16, 24, 32, 48, 64][seed as usize % 6];
                let scale = [0.05, 1.0, 300.0][seed as usize % 3];
                let w = weights(seed_of(seed, bits), n, scale);
                groups.push((bits, zero, w.iter().map(|&x| x as f64).collect()));
            }
        }
    }
    groups
}

#[test]
fn small_mse_and_correlation_groups_are_near_brute_force() {
    // Groups of 8–64 weights (per-group layouts) have the most jagged error curves in `q`,
    // and the search scores each `q` by Lloyd walks rather than an exact scan of `a`: the
    // bound here is per group 2 % of the squared error and 5 % of 1 − correlation (a
    // piecewise-constant objective the walks only sample), and on average 0.1 % of a dense
    // scan for both. These 96 groups hold it; over more groups a few do not (the test
    // below states that distribution).
    for (rule, per_group) in [(ScaleRule::Mse, 1.02), (ScaleRule::Correlation, 1.05)] {
        let mut ratios = Vec::new();
        let mut failures = Vec::new();
        for (bits, zero, w) in small_groups(12, |seed, bits| seed * 17 + u64::from(bits) + 5000) {
            let ratio = fit_to_brute_ratio(rule, bits, zero, &w);
            ratios.push(ratio);
            if ratio > per_group {
                let n = w.len();
                failures.push(format!(
                    "{rule:?} {bits} bits zero={zero} n={n}: ratio {ratio}"
                ));
            }
        }
        assert_group_ratios(&format!("{rule:?}"), &ratios, &failures);
    }
}

/// The ratio below which a share `p` of the sorted `ratios` lie.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

#[test]
fn small_group_fits_over_many_groups_have_the_documented_tail() {
    // 960 further groups per rule (2–5 bits, with and without the zero level, 8–64 weights,
    // three scales). The search ranks each `q` by short Lloyd walks, so in groups this small
    // a few land in another basin of `(a, q)` than a dense scan finds. What the README
    // states, with some margin over what these groups measure (mean 0.992 / 1.0007, 95th
    // percentile 1.008 / 1.044, worst 1.37 / 2.01; from 32 weights on, 95th percentile at
    // most 1.013 / 1.024 and worst 1.19 / 1.15):
    // | rule | mean | 95th percentile | worst | worst from 32 weights |
    let bounds = [
        (ScaleRule::Mse, 1.001, 1.01, 1.5, 1.25),
        (ScaleRule::Correlation, 1.001, 1.05, 2.1, 1.25),
    ];
    for (rule, mean_bound, p95_bound, worst_bound, worst_32_bound) in bounds {
        let mut ratios = Vec::new();
        let mut from_32 = Vec::new();
        for (bits, zero, w) in small_groups(120, |seed, bits| seed * 31 + u64::from(bits) + 90_000)
        {
            let ratio = fit_to_brute_ratio(rule, bits, zero, &w);
            ratios.push(ratio);
            if w.len() >= 32 {
                from_32.push(ratio);
            }
        }
        for r in [&mut ratios, &mut from_32] {
            r.sort_by(f64::total_cmp);
        }
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        let (p95, worst) = (quantile(&ratios, 0.95), ratios[ratios.len() - 1]);
        let worst_32 = from_32[from_32.len() - 1];
        println!(
            "{rule:?}: mean {mean:.5}, 95th percentile {p95:.4}, worst {worst:.4}, \
             from 32 weights: 95th percentile {:.4}, worst {worst_32:.4} ({} groups)",
            quantile(&from_32, 0.95),
            ratios.len()
        );
        assert!(mean <= mean_bound, "{rule:?}: mean {mean}");
        assert!(p95 <= p95_bound, "{rule:?}: 95th percentile {p95}");
        assert!(worst <= worst_bound, "{rule:?}: worst {worst}");
        assert!(
            worst_32 <= worst_32_bound,
            "{rule:?}: worst from 32 weights {worst_32}"
        );
    }
}
