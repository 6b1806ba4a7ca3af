//! The int8-activation mode: every path against the scalar reference within `f32` summation
//! error, and the GEMV against the exact `f32` GEMV within the documented rounding bound.
mod common;

use common::Rng;
use expquant::kernels::{self, Isa, IsaKind};
use expquant::pack;
use expquant::{quantize, Config, Error, QuantizedTensor, QuantizedView};
use proptest::prelude::*;

/// The documented bound for one row: `Σ_j (|L_j|·s_b/2 + t·|x_j|/2 + t·s_b/4)`, with `s_b`
/// the scale of `x_j`'s block of 32 and `t` that of its group's levels.
fn row_bound(t: &QuantizedTensor, row: usize, x: &[f32]) -> (f64, f64) {
    let cols = t.cols();
    let w = t.dequantize();
    let g = t.granularity().group_len(cols);
    let first = row * t.granularity().groups_per_row(cols);
    let mut bound = 0.0f64;
    let mut magnitude = 0.0f64;
    for (j, &xj) in x.iter().enumerate() {
        let block = &x[j / 32 * 32..(j / 32 * 32 + 32).min(cols)];
        let s = f64::from(block.iter().fold(0.0f32, |m, v| m.max(v.abs()))) / 127.0;
        let group = if t.group_count() == 1 {
            0
        } else {
            first + j / g
        };
        let levels = t.codebook(group).unwrap();
        let top = levels.levels().iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let tg = f64::from(top) / 127.0;
        let l = f64::from(w[row * cols + j]);
        bound += l.abs() * s / 2.0 + tg * f64::from(xj.abs()) / 2.0 + tg * s / 4.0;
        magnitude += (l * f64::from(xj)).abs();
    }
    (bound, magnitude)
}

fn check_against_f32(t: &QuantizedTensor, x: &[f32]) {
    let mut exact = vec![0.0f32; t.rows()];
    let mut approx = vec![0.0f32; t.rows()];
    t.gemv(x, &mut exact).unwrap();
    t.gemv_int8(x, &mut approx).unwrap();
    for r in 0..t.rows() {
        let (bound, magnitude) = row_bound(t, r, x);
        let err = f64::from(exact[r] - approx[r]).abs();
        // Both results carry f32 summation error on top of the rounding bound.
        let slack = 2e-5 * (magnitude + bound);
        assert!(
            err <= bound + slack,
            "row {r}: |{} - {}| = {err} > bound {bound} + {slack}",
            exact[r],
            approx[r]
        );
    }
}

fn random_x(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            // Occasional outliers and zero blocks exercise the per-block scales.
            if i % 97 == 13 {
                (rng.normal() * 20.0) as f32
            } else if (i / 32) % 7 == 5 {
                0.0
            } else {
                rng.normal() as f32
            }
        })
        .collect()
}

fn configs(bits: u8) -> Vec<Config> {
    vec![
        Config::exponential(bits),
        Config::exponential(bits).per_group(32),
        Config::exponential(bits).per_group(128),
        Config::exponential(bits).per_group(48),
        Config::exponential(bits).per_tensor(),
        Config::linear(bits),
        Config::linear(bits).per_group(32),
        Config::exponential(bits)
            .per_group(32)
            .with_compact_params(true),
        Config::exponential(bits)
            .per_group(64)
            .with_compact_params(true),
    ]
}

#[test]
fn int8_gemv_stays_within_the_documented_bound() {
    let mut rng = Rng::new(7);
    for bits in 1..=8u8 {
        for (rows, cols) in [(5, 256), (3, 300), (4, 37), (2, 1000)] {
            let w = common::weights(u64::from(bits) * 31 + cols as u64, rows * cols, 0.05);
            let x = random_x(&mut rng, cols);
            for config in configs(bits) {
                let t = quantize(&w, rows, cols, &config).unwrap();
                check_against_f32(&t, &x);
            }
        }
    }
}

#[test]
fn int8_gemv_is_close_for_bell_shaped_inputs() {
    // The bound is a worst case. For Gaussian `x` the rounding of `x` (step max|x|/127 in
    // each block) and of the small exponential levels together leave the result about
    // 40 dB above its error; 34 dB is asserted.
    let (rows, cols) = (64, 1024);
    let w = common::weights(3, rows * cols, 0.05);
    let mut rng = Rng::new(11);
    let x: Vec<f32> = (0..cols).map(|_| rng.normal() as f32).collect();
    let t = quantize(&w, rows, cols, &Config::exponential(4).per_group(128)).unwrap();
    let (mut exact, mut approx) = (vec![0.0f32; rows], vec![0.0f32; rows]);
    t.gemv(&x, &mut exact).unwrap();
    t.gemv_int8(&x, &mut approx).unwrap();
    let num: f64 = exact
        .iter()
        .zip(&approx)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum();
    let den: f64 = exact.iter().map(|a| f64::from(*a).powi(2)).sum();
    assert!(num / den < 4e-4, "relative squared error {}", num / den);
}

#[test]
fn every_path_matches_the_scalar_int8_reference() {
    let fast: Vec<Isa> = Isa::available()
        .filter(|isa| isa.kind() != IsaKind::Scalar)
        .collect();
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        assert!(fast
            .iter()
            .any(|i| matches!(i.kind(), IsaKind::Avx2 | IsaKind::Avx512)));
    }
    let mut rng = Rng::new(5);
    for bits in 1..=8u8 {
        for n in [1, 31, 32, 33, 64, 255, 256, 257, 600, 1024, 1000] {
            let count = if bits == 8 {
                256
            } else {
                (1usize << bits) - usize::from(bits > 1)
            };
            let mut levels: Vec<f32> = (0..count).map(|_| rng.normal() as f32).collect();
            levels.sort_by(f32::total_cmp);
            let codes: Vec<u8> = (0..n)
                .map(|_| (rng.next_u64() % count as u64) as u8)
                .collect();
            let mut packed = vec![0u8; pack::packed_len(n, bits).unwrap()];
            pack::pack(&codes, bits, &mut packed).unwrap();
            let x = random_x(&mut rng, n);
            let reference =
                kernels::dot_int8_with(Isa::scalar(), bits, &packed, &levels, &x).unwrap();
            let magnitude: f32 = codes
                .iter()
                .zip(&x)
                .map(|(&c, &v)| (levels[usize::from(c)] * v).abs())
                .sum();
            for &isa in &fast {
                let got = kernels::dot_int8_with(isa, bits, &packed, &levels, &x).unwrap();
                assert!(
                    (got - reference).abs() <= 1e-5 * magnitude + 1e-30,
                    "{isa} bits={bits} n={n}: {got} vs {reference}"
                );
            }
        }
    }
}

#[test]
fn non_finite_inputs_are_errors_and_rows_match_the_whole() {
    let w = common::weights(1, 8 * 64, 0.05);
    let t = quantize(&w, 8, 64, &Config::exponential(4).per_group(32)).unwrap();
    let mut x = vec![0.5f32; 64];
    let mut y = vec![0.0f32; 8];
    x[9] = f32::NAN;
    assert!(matches!(
        t.gemv_int8(&x, &mut y),
        Err(Error::NonFiniteInput { index: 9, .. })
    ));
    x[9] = 0.25;
    t.gemv_int8(&x, &mut y).unwrap();
    let mut part = vec![0.0f32; 3];
    t.gemv_int8_rows(&x, 2..5, &mut part).unwrap();
    assert_eq!(part, y[2..5]);
    let bytes = t.to_bytes();
    let view = QuantizedView::from_bytes(&bytes).unwrap();
    let mut from_view = vec![0.0f32; 8];
    view.gemv_int8(&x, &mut from_view).unwrap();
    assert_eq!(from_view, y);
    assert!(t.gemv_int8(&x[..63], &mut y).is_err());
    assert!(t.gemv_int8_rows(&x, 5..9, &mut part).is_err());
}

#[test]
fn a_rows_result_does_not_depend_on_the_rows_run_with_it() {
    // The 4-bit per-row and group kernels run rows in batches, and the other widths carry
    // a table from row to row; every split of the rows must give each row the bits the whole
    // GEMV gives it.
    let (rows, cols) = (11, 1000);
    let w = common::weights(21, rows * cols, 0.05);
    let mut rng = Rng::new(3);
    let x = random_x(&mut rng, cols);
    for config in [
        Config::exponential(4),
        Config::exponential(4).per_tensor(),
        Config::linear(4),
        Config::exponential(4)
            .per_group(32)
            .with_compact_params(true),
        Config::exponential(4)
            .per_group(128)
            .with_compact_params(true),
        Config::exponential(4)
            .per_group(96)
            .with_compact_params(true),
        Config::exponential(4).per_group(32),
        Config::exponential(4).per_group(64),
        Config::exponential(4).per_group(96),
        Config::exponential(4).per_group(128),
        Config::linear(4).per_group(32),
        // Other widths keep a table across rows and groups while it still fits.
        Config::exponential(2).per_group(32),
        Config::exponential(3)
            .per_group(64)
            .with_compact_params(true),
        Config::exponential(8).per_group(32),
        Config::exponential(1).per_tensor(),
    ] {
        let t = quantize(&w, rows, cols, &config).unwrap();
        let mut whole = vec![0.0f32; rows];
        t.gemv_int8(&x, &mut whole).unwrap();
        for start in 0..rows {
            for end in start + 1..=rows {
                let mut part = vec![0.0f32; end - start];
                t.gemv_int8_rows(&x, start..end, &mut part).unwrap();
                assert_eq!(part, whole[start..end], "rows {start}..{end}");
            }
        }
        check_against_f32(&t, &x);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn int8_gemv_bound_holds_for_random_shapes(
        bits in 1u8..=8,
        rows in 1usize..6,
        cols in 1usize..400,
        group in prop_oneof![Just(0usize), Just(32), Just(128), 1usize..200],
        seed in any::<u64>(),
        xscale in prop_oneof![Just(1e-3f32), Just(1.0), Just(1e3)],
    ) {
        let w = common::weights(seed, rows * cols, 0.05);
        let config = if group == 0 {
            Config::exponential(bits)
        } else {
            Config::exponential(bits).per_group(group)
        };
        let t = quantize(&w, rows, cols, &config).unwrap();
        let mut rng = Rng::new(seed ^ 0x5555);
        let x: Vec<f32> = random_x(&mut rng, cols).iter().map(|v| v * xscale).collect();
        check_against_f32(&t, &x);
    }
}
