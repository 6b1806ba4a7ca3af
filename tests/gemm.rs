//! GEMM on packed weights: every column of `Y = W·X` is the GEMV of that column (to within
//! `f32` summation error), for every width, scheme and granularity; the row-range variants
//! are exact slices of the whole product; wrong lengths and ranges are errors.

mod common;

use common::weights;
use expquant::{quantize, Config, Error, Granularity, QuantizedTensor, QuantizedView, Scheme};
use proptest::prelude::*;

/// Column `c` of the row-major `cols × n` matrix `x`.
fn column(x: &[f32], n: usize, c: usize) -> Vec<f32> {
    x.iter().skip(c).step_by(n).copied().collect()
}

/// Every entry of `y = W·x` against `n` GEMV calls, within `1e-5 · Σ_j |W[r,j]·x[j,c]|`
/// (summation order differs; the dequantized `W` gives the magnitude).
fn assert_columns_are_gemvs(q: &QuantizedTensor, x: &[f32], n: usize, y: &[f32], what: &str) {
    let (rows, cols) = (q.rows(), q.cols());
    let w = q.dequantize();
    let view_bytes = q.to_bytes();
    let view = QuantizedView::from_bytes(&view_bytes).unwrap();
    for c in 0..n {
        let xc = column(x, n, c);
        let mut gemv = vec![0.0f32; rows];
        view.gemv(&xc, &mut gemv).unwrap();
        for r in 0..rows {
            let mag: f32 = (0..cols).map(|j| (w[r * cols + j] * xc[j]).abs()).sum();
            let got = y[r * n + c];
            assert!(
                (got - gemv[r]).abs() <= 1e-5 * mag + 1e-30,
                "{what}: row {r} column {c} of {rows}x{cols}, n={n}: {got} vs gemv {}",
                gemv[r]
            );
        }
    }
}

fn configs(bits: u8, group: usize) -> Vec<Config> {
    let mut out = Vec::new();
    for scheme in [Scheme::Exponential, Scheme::Linear] {
        for layout in [
            Granularity::PerTensor,
            Granularity::PerRow,
            Granularity::PerGroup(group),
        ] {
            out.push(Config::new(scheme, bits).with_granularity(layout));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn gemm_equals_a_gemv_per_column(
        bits in 1u8..=8,
        rows in 1usize..20,
        cols in 1usize..300,
        n in 1usize..=20,
        group in 1usize..80,
        seed in any::<u64>(),
    ) {
        let w = weights(seed, rows * cols, 1.0);
        let x = weights(seed ^ 0x5eed, cols * n, 1.0);
        for config in configs(bits, group) {
            let q = quantize(&w, rows, cols, &config).unwrap();
            let mut y = vec![f32::NAN; rows * n];
            q.gemm(&x, n, &mut y).unwrap();
            assert_columns_are_gemvs(&q, &x, n, &y, "tensor");

            let bytes = q.to_bytes();
            let view = QuantizedView::from_bytes(&bytes).unwrap();
            let mut yv = vec![f32::NAN; rows * n];
            view.gemm(&x, n, &mut yv).unwrap();
            assert_columns_are_gemvs(&q, &x, n, &yv, "view");
            // Tensor and view share the kernel, so they agree exactly past n = 1.
            if n > 1 {
                prop_assert_eq!(bits_of(&y), bits_of(&yv));
            }

            // Row ranges are exact slices of the whole product.
            let (a, b) = (rows / 3, rows - rows / 4);
            let mut part = vec![f32::NAN; (b - a) * n];
            q.gemm_rows(&x, n, a..b, &mut part).unwrap();
            prop_assert_eq!(bits_of(&part), bits_of(&y[a * n..b * n]));
            let mut part = vec![f32::NAN; (b - a) * n];
            view.gemm_rows(&x, n, a..b, &mut part).unwrap();
            prop_assert_eq!(bits_of(&part), bits_of(&yv[a * n..b * n]));
        }
    }
}

fn bits_of(y: &[f32]) -> Vec<u32> {
    y.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn batch_of_one_is_the_gemv_exactly() {
    let (rows, cols) = (37, 530);
    let w = weights(3, rows * cols, 1.0);
    let x = weights(4, cols, 1.0);
    for config in configs(4, 128).into_iter().chain(configs(3, 32)) {
        let q = quantize(&w, rows, cols, &config).unwrap();
        let mut gemv = vec![0.0f32; rows];
        q.gemv(&x, &mut gemv).unwrap();
        let mut gemm = vec![0.0f32; rows];
        q.gemm(&x, 1, &mut gemm).unwrap();
        assert_eq!(bits_of(&gemm), bits_of(&gemv), "tensor {config:?}");

        let bytes = q.to_bytes();
        let view = QuantizedView::from_bytes(&bytes).unwrap();
        view.gemv(&x, &mut gemv).unwrap();
        view.gemm(&x, 1, &mut gemm).unwrap();
        assert_eq!(bits_of(&gemm), bits_of(&gemv), "view {config:?}");
    }
}

/// `y` (`rows × n`) against the plain product of the dequantized `dq` (`rows × cols`) and `x`
/// (`cols × n`) in `f64`, within the module's bound `1e-5 · Σ_j |W[r,j]·X[j,c]|`.
fn assert_plain_product(dq: &[f32], x: &[f32], n: usize, y: &[f32], what: &str) {
    let rows = y.len() / n;
    let cols = x.len() / n;
    for r in 0..rows {
        for c in 0..n {
            let (mut exact, mut mag) = (0.0f64, 0.0f64);
            for j in 0..cols {
                let p = f64::from(dq[r * cols + j]) * f64::from(x[j * n + c]);
                exact += p;
                mag += p.abs();
            }
            let got = f64::from(y[r * n + c]);
            assert!(
                (got - exact).abs() <= 1e-5 * mag,
                "{what} n={n} [{r},{c}]: {got} vs {exact}"
            );
        }
    }
}

/// Shapes past one panel in every direction (several row passes, K blocks and column
/// tiles, with remainders), against a plain loop over the dequantized matrix in `f64`.
#[test]
fn large_shapes_match_a_plain_product() {
    for (rows, cols, n, config) in [
        (13, 700, 37, Config::exponential(4)),
        (
            20,
            1024,
            64,
            Config::exponential(4).with_granularity(Granularity::PerGroup(128)),
        ),
        (
            7,
            513,
            16,
            Config::new(Scheme::Linear, 8).with_granularity(Granularity::PerGroup(100)),
        ),
        (9, 260, 2, Config::new(Scheme::Linear, 2)),
    ] {
        let w = weights(11, rows * cols, 1.0);
        let x = weights(12, cols * n, 1.0);
        let q = quantize(&w, rows, cols, &config).unwrap();
        let dq = q.dequantize();
        let mut y = vec![f32::NAN; rows * n];
        q.gemm(&x, n, &mut y).unwrap();
        assert_plain_product(&dq, &x, n, &y, &format!("{rows}x{cols}"));
    }
}

/// Batches of 2 to 8 columns of 4-bit codes (decoded in registers, group tables derived from
/// their parameters), over several blocks of the shared dimension with a short last one, in
/// every layout whose groups span whole runs of 64 codes, a group that straddles blocks, and
/// groups too small for that path; against a plain product in `f64`.
#[test]
fn narrow_batches_match_a_plain_product() {
    let (rows, cols) = (11, 1100);
    let w = weights(21, rows * cols, 1.0);
    let mut configs = Vec::new();
    for scheme in [Scheme::Exponential, Scheme::Linear] {
        for layout in [
            Granularity::PerTensor,
            Granularity::PerRow,
            Granularity::PerGroup(64),
            Granularity::PerGroup(128),
            Granularity::PerGroup(192),
            Granularity::PerGroup(32),
        ] {
            configs.push(Config::new(scheme, 4).with_granularity(layout));
        }
    }
    configs.push(Config::exponential(4).with_zero_level(true));
    configs.push(
        Config::exponential(4)
            .with_granularity(Granularity::PerGroup(128))
            .with_compact_params(true),
    );
    for config in configs {
        let q = quantize(&w, rows, cols, &config).unwrap();
        let dq = q.dequantize();
        for n in 2..=8 {
            let x = weights(22 + n as u64, cols * n, 1.0);
            let mut y = vec![f32::NAN; rows * n];
            q.gemm(&x, n, &mut y).unwrap();
            assert_plain_product(&dq, &x, n, &y, &format!("{config:?}"));
            // Row ranges are exact slices of the whole product.
            let mut part = vec![f32::NAN; 5 * n];
            q.gemm_rows(&x, n, 3..8, &mut part).unwrap();
            assert_eq!(
                bits_of(&part),
                bits_of(&y[3 * n..8 * n]),
                "{config:?} n={n}"
            );
        }
    }
}

#[test]
fn bad_lengths_and_ranges_are_errors() {
    let (rows, cols) = (5, 12);
    let q = quantize(
        &weights(1, rows * cols, 1.0),
        rows,
        cols,
        &Config::exponential(4),
    )
    .unwrap();
    let bytes = q.to_bytes();
    let view = QuantizedView::from_bytes(&bytes).unwrap();
    let n = 3;
    let x = vec![0.5f32; cols * n];
    let mut y = vec![0.0f32; rows * n];
    let short_x = &x[..cols * n - 1];
    let sentinel = vec![7.0f32; rows * n];

    for (name, result) in [
        ("tensor x", q.gemm(short_x, n, &mut y)),
        ("view x", view.gemm(short_x, n, &mut y)),
        ("tensor y", q.gemm(&x, n, &mut y[..rows * n - 1])),
        ("view y", view.gemm(&x, n, &mut y[1..])),
        ("tensor n", q.gemm(&x, n + 1, &mut y)),
        ("view n=1", view.gemm(&x, 1, &mut y)),
    ] {
        assert!(
            matches!(result, Err(Error::BufferLength { .. })),
            "{name}: {result:?}"
        );
    }
    let mut y = sentinel.clone();
    let mut short = vec![0.0f32; 2 * n];
    assert!(matches!(
        q.gemm_rows(&x, n, 4..6, &mut short),
        Err(Error::RowRange { .. })
    ));
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 3..2;
    assert!(matches!(
        view.gemm_rows(&x, n, reversed, &mut short[..0]),
        Err(Error::RowRange { .. })
    ));
    assert!(matches!(
        view.gemm_rows(&x, n, 1..3, &mut short[..n]),
        Err(Error::BufferLength { .. })
    ));
    assert!(matches!(
        view.gemm(&x, usize::MAX, &mut y),
        Err(Error::ShapeOverflow { .. })
    ));
    // Nothing was written by the failed calls.
    assert_eq!(y, sentinel);
    // An empty batch is a valid product with nothing in it.
    q.gemm(&[], 0, &mut []).unwrap();
    view.gemm_rows(&[], 0, 1..4, &mut []).unwrap();
}
