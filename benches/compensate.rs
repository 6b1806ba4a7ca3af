//! Error-compensating quantization of a 4096 × 4096 layer (exponential 4-bit per row), single
//! thread, against `faer`'s f32 matrix product in the same run, and the covariance
//! accumulation rate.
//!
//! Throughput is in floating-point operations: the compensation counts `rows·cols²` (every
//! column's rounding difference carried to the columns after it) plus `cols³/3` (the Cholesky
//! factorization); the product counts `2·m·k·n`. Accumulation counts input rows.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use expquant::calibrate::Covariance;
use expquant::compensate::{quantize_compensated, CompensateOptions};
use expquant::Config;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};

mod common;

const N: usize = 4096;

/// `E[x xᵀ]` of inputs driven by 64 shared factors plus their own noise, like a real layer's
/// (strongly correlated, full rank).
fn covariance() -> Covariance {
    let factors = 64;
    let b = common::weights(5, N * factors, 1.0);
    let b = Mat::<f64>::from_fn(N, factors, |i, k| f64::from(b[i * factors + k]));
    let mut h = Mat::<f64>::zeros(N, N);
    matmul(
        h.as_mut(),
        Accum::Replace,
        b.as_ref(),
        b.transpose(),
        1.0 / factors as f64,
        Par::Seq,
    );
    let mut flat = vec![0.0; N * N];
    for i in 0..N {
        for j in 0..N {
            flat[i * N + j] = if i <= j { h[(i, j)] } else { h[(j, i)] };
        }
        flat[i * N + i] += 0.1;
    }
    Covariance::from_matrix(1, N, &flat).unwrap()
}

fn compensate(c: &mut Criterion) {
    let w = common::weights(1, N * N, 0.05);
    let cov = covariance();
    let config = Config::exponential(4);
    let options = CompensateOptions::default();
    let flops = (N * N * N) as u64 + (N * N * N) as u64 / 3;
    let mut g = c.benchmark_group("compensate/4096x4096");
    g.sample_size(10);
    g.throughput(Throughput::Elements(flops));
    g.bench_function("quantize_compensated", |b| {
        b.iter(|| quantize_compensated(black_box(&w), N, N, &config, &cov, &options, None).unwrap())
    });
    g.finish();

    // The shape of one block's update, widened to keep the product busy: 4096 × 512 · 512 × 4096.
    let k = 512;
    let a = Mat::<f32>::from_fn(N, k, |i, j| w[i * N + j]);
    let bm = Mat::<f32>::from_fn(k, N, |i, j| w[(i + k) * N + j]);
    let mut out = Mat::<f32>::zeros(N, N);
    let mut g = c.benchmark_group("gemm_f32/4096x512x4096");
    g.sample_size(10);
    g.throughput(Throughput::Elements(2 * (N * k * N) as u64));
    g.bench_function("faer", |b| {
        b.iter(|| {
            matmul(
                out.as_mut(),
                Accum::Replace,
                a.as_ref(),
                bm.as_ref(),
                1.0,
                Par::Seq,
            );
            black_box(&out);
        })
    });
    g.finish();

    let rows = 1024;
    let x = common::weights(9, rows * N, 1.0);
    let mut g = c.benchmark_group("covariance/add_rows_4096");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows as u64));
    g.bench_function("expquant", |b| {
        b.iter(|| {
            let mut acc = Covariance::new(1, N).unwrap();
            acc.add_rows(black_box(&x)).unwrap();
            acc
        })
    });
    g.finish();

    // A 3×3 convolution over 32 channels: 288 columns, where widening the rows to f64 costs
    // as much as the product.
    let (rows, dim) = (16_384, 288);
    let x = common::weights(10, rows * dim, 1.0);
    let mut g = c.benchmark_group("covariance/add_rows_288");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows as u64));
    g.bench_function("expquant", |b| {
        b.iter(|| {
            let mut acc = Covariance::new(1, dim).unwrap();
            acc.add_rows(black_box(&x)).unwrap();
            acc
        })
    });
    g.finish();
}

criterion_group!(benches, compensate);
criterion_main!(benches);
