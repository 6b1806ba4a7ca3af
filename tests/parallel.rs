//! The `parallel` feature: threaded quantize, GEMV and GEMM give exactly the single-threaded bytes,
//! bits and errors. The hidden `*_with_threads` entry points force a thread count (1 is the
//! serial path) so small, fast shapes still cut rows into several chunks; a few shapes above
//! the size thresholds check the public entry points too.
#![cfg(all(feature = "parallel", feature = "test-hooks"))]

mod common;

use common::weights;
use expquant::test_hooks::quantize_with_threads;
use expquant::{
    quantize, Config, Error, Granularity, QuantizedTensor, QuantizedView, ScaleRule, Scheme,
};
use proptest::prelude::*;

fn config(scheme: Scheme, bits: u8, layout: Granularity, rule: ScaleRule, zero: bool) -> Config {
    Config::new(scheme, bits)
        .with_granularity(layout)
        .with_scale_rule(rule)
        .with_zero_level(zero)
}

/// Same shape, parameters (to the bit), packed codes and stored bytes.
fn assert_identical(a: &QuantizedTensor, b: &QuantizedTensor) {
    assert_eq!(a, b);
    let bits = |t: &QuantizedTensor| -> Vec<(u32, u32)> {
        common::all_params(t)
            .iter()
            .map(|p| (p.a.to_bits(), p.q.to_bits()))
            .collect()
    };
    assert_eq!(bits(a), bits(b));
    assert_eq!(a.packed_codes(), b.packed_codes());
    assert_eq!(a.to_bytes(), b.to_bytes());
}

fn to_bits(y: &[f32]) -> Vec<u32> {
    y.iter().map(|v| v.to_bits()).collect()
}

/// Threaded GEMM of the tensor and of its stored view, bit for bit against the serial path.
fn assert_gemm_identical(q: &QuantizedTensor, x: &[f32], n: usize, threads: usize) {
    let rows = q.rows();
    let mut serial = vec![0.0f32; rows * n];
    q.gemm_rows(x, n, 0..rows, &mut serial).unwrap();
    let mut y = vec![f32::NAN; rows * n];
    q.gemm_with_threads(x, n, &mut y, threads).unwrap();
    assert_eq!(
        to_bits(&y),
        to_bits(&serial),
        "tensor gemm, {threads} threads"
    );

    let bytes = q.to_bytes();
    let view = QuantizedView::from_bytes(&bytes).unwrap();
    let mut view_serial = vec![0.0f32; rows * n];
    view.gemm_rows(x, n, 0..rows, &mut view_serial).unwrap();
    let mut y = vec![f32::NAN; rows * n];
    view.gemm_with_threads(x, n, &mut y, threads).unwrap();
    assert_eq!(
        to_bits(&y),
        to_bits(&view_serial),
        "view gemm, {threads} threads"
    );
}

/// Threaded GEMV of the tensor and of its stored view, bit for bit against the serial path.
fn assert_gemv_identical(q: &QuantizedTensor, x: &[f32], threads: usize) {
    let rows = q.rows();
    let mut serial = vec![0.0f32; rows];
    q.gemv_rows(x, 0..rows, &mut serial).unwrap();
    let mut y = vec![f32::NAN; rows];
    q.gemv_with_threads(x, &mut y, threads).unwrap();
    assert_eq!(to_bits(&y), to_bits(&serial), "tensor, {threads} threads");

    let bytes = q.to_bytes();
    let view = QuantizedView::from_bytes(&bytes).unwrap();
    let mut view_serial = vec![0.0f32; rows];
    view.gemv_rows(x, 0..rows, &mut view_serial).unwrap();
    let mut y = vec![f32::NAN; rows];
    view.gemv_with_threads(x, &mut y, threads).unwrap();
    assert_eq!(
        to_bits(&y),
        to_bits(&view_serial),
        "view, {threads} threads"
    );
}

fn layout_strategy() -> impl Strategy<Value = Granularity> {
    prop_oneof![
        Just(Granularity::PerTensor),
        Just(Granularity::PerRow),
        (4usize..80).prop_map(Granularity::PerGroup),
    ]
}

/// A scale rule and a width. The fitted rules cost milliseconds per small group at 4 bits
/// and more above, so they run at 1–3 bits: what is under test is the row split, not the fit.
fn rule_and_bits() -> impl Strategy<Value = (ScaleRule, u8)> {
    prop_oneof![
        (Just(ScaleRule::MaxAbs), 1u8..=8),
        (Just(ScaleRule::Mse), 1u8..=3),
        (Just(ScaleRule::Correlation), 1u8..=3),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn threaded_quantize_and_gemv_equal_serial(
        seed in 0u64..10_000,
        rows in 1usize..32,
        cols in 1usize..160,
        exponential in any::<bool>(),
        layout in layout_strategy(),
        (rule, bits) in rule_and_bits(),
        zero in any::<bool>(),
        weighted in any::<bool>(),
        threads in 2usize..7,
    ) {
        let scheme = if exponential { Scheme::Exponential } else { Scheme::Linear };
        let config = config(scheme, bits, layout, rule, zero);
        let w = weights(seed, rows * cols, 0.1);
        let imp: Vec<f32> = weights(seed + 1, rows * cols, 1.0).iter().map(|v| v.abs()).collect();
        let imp = weighted.then_some(&imp[..]);
        let serial = quantize_with_threads(&w, rows, cols, &config, imp, 1).unwrap();
        let threaded = quantize_with_threads(&w, rows, cols, &config, imp, threads).unwrap();
        assert_identical(&threaded, &serial);

        let x = weights(seed + 2, cols, 1.0);
        assert_gemv_identical(&serial, &x, threads);
        let n = 1 + (seed % 9) as usize;
        let xs = weights(seed + 3, cols * n, 1.0);
        assert_gemm_identical(&serial, &xs, n, threads);
    }

    #[test]
    fn threaded_errors_equal_serial(
        seed in 0u64..10_000,
        rows in 2usize..30,
        cols in 1usize..50,
        layout in layout_strategy(),
        threads in 2usize..7,
        bad in proptest::collection::vec((0usize..1500, any::<bool>()), 1..4),
    ) {
        let config = Config::exponential(2).with_granularity(layout).with_scale_rule(ScaleRule::Mse);
        let n = rows * cols;
        let mut w = weights(seed, n, 0.1);
        let mut imp = vec![1.0f32; n];
        // Bad importance values in a few places: each failing group reports its own first
        // bad index, so only keeping the earliest failing chunk's error matches serial.
        for &(at, nan) in &bad {
            imp[at % n] = if nan { f32::NAN } else { -1.0 };
        }
        let serial = quantize_with_threads(&w, rows, cols, &config, Some(&imp), 1).unwrap_err();
        let threaded =
            quantize_with_threads(&w, rows, cols, &config, Some(&imp), threads).unwrap_err();
        prop_assert_eq!(format!("{threaded:?}"), format!("{serial:?}"));

        // A non-finite weight: the same index as serial.
        let at = bad[0].0 % n;
        w[at] = f32::NAN;
        let threaded = quantize_with_threads(&w, rows, cols, &config, None, threads).unwrap_err();
        let reported = matches!(threaded, Error::NonFiniteWeight { index, .. } if index == at);
        prop_assert!(reported, "{:?}", threaded);
        let serial = quantize_with_threads(&w, rows, cols, &config, None, 1).unwrap_err();
        prop_assert_eq!(format!("{threaded:?}"), format!("{serial:?}"));
    }
}

/// Above the 64 K-weight threshold the public `quantize` splits rows on its own (on however
/// many cores the machine has), for every granularity.
#[test]
fn public_quantize_above_the_threshold_equals_serial() {
    let (rows, cols) = (300, 256);
    let w = weights(7, rows * cols, 0.05);
    for config in [
        Config::exponential(4).per_tensor(),
        Config::exponential(4).per_row(),
        Config::linear(3)
            .per_group(64)
            .with_scale_rule(ScaleRule::Mse),
    ] {
        let serial = quantize_with_threads(&w, rows, cols, &config, None, 1).unwrap();
        assert_identical(&quantize(&w, rows, cols, &config).unwrap(), &serial);
        for threads in [2, 3, 8] {
            let threaded = quantize_with_threads(&w, rows, cols, &config, None, threads).unwrap();
            assert_identical(&threaded, &serial);
        }
    }
    // An error far into a large tensor: the same as serial.
    let mut w = w;
    w[rows * cols - 5] = f32::INFINITY;
    let config = Config::exponential(4);
    let err = quantize(&w, rows, cols, &config).unwrap_err();
    assert_eq!(
        format!("{err:?}"),
        format!(
            "{:?}",
            quantize_with_threads(&w, rows, cols, &config, None, 1).unwrap_err()
        )
    );
    assert!(matches!(err, Error::NonFiniteWeight { index, .. } if index == rows * cols - 5));
}

/// Above the 4 M-weight threshold the public `gemv` splits rows on its own; row counts that
/// are not multiples of four leave a short last pass in the last chunk.
#[test]
fn public_gemv_above_the_threshold_equals_serial() {
    let (rows, cols) = (1027, 4096);
    let w = weights(11, rows * cols, 0.05);
    let x = weights(12, cols, 1.0);
    for config in [Config::exponential(4), Config::linear(8).per_group(256)] {
        let q = quantize(&w, rows, cols, &config).unwrap();
        let mut serial = vec![0.0f32; rows];
        q.gemv_rows(&x, 0..rows, &mut serial).unwrap();
        let mut y = vec![f32::NAN; rows];
        q.gemv(&x, &mut y).unwrap();
        assert_eq!(to_bits(&y), to_bits(&serial));

        let bytes = q.to_bytes();
        let view = QuantizedView::from_bytes(&bytes).unwrap();
        let mut view_serial = vec![0.0f32; rows];
        view.gemv_rows(&x, 0..rows, &mut view_serial).unwrap();
        let mut y = vec![f32::NAN; rows];
        view.gemv(&x, &mut y).unwrap();
        assert_eq!(to_bits(&y), to_bits(&view_serial));
        for threads in [2, 3, 5] {
            assert_gemv_identical(&q, &x, threads);
        }
    }
}

/// Shape errors come back from the threaded GEMV as from the serial one, before any thread.
#[test]
fn threaded_gemv_checks_shapes() {
    let w = weights(3, 8 * 16, 0.1);
    let q = quantize(&w, 8, 16, &Config::exponential(4)).unwrap();
    let mut y = vec![0.0f32; 8];
    assert!(matches!(
        q.gemv_with_threads(&[0.0; 15], &mut y, 4),
        Err(Error::BufferLength { .. })
    ));
    assert!(matches!(
        q.gemv_with_threads(&[0.0; 16], &mut y[..7], 4),
        Err(Error::BufferLength { .. })
    ));
    let bytes = q.to_bytes();
    let view = QuantizedView::from_bytes(&bytes).unwrap();
    assert!(matches!(
        view.gemv_with_threads(&[0.0; 15], &mut y, 4),
        Err(Error::BufferLength { .. })
    ));
}
