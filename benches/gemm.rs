//! GEMM on packed weights, `Y = W·X` with X `cols × n` and Y `rows × n` row-major, single
//! thread, against two baselines in the same run: `faer`'s f32 matrix product of the same
//! shape (the tuned dense product: W as plain f32, eight times the bytes of 4-bit codes) and
//! the packed GEMV called once per column (what a caller without a GEMM would do).
//!
//! Throughput counts multiply-adds (`rows·cols·n`), so the figures of one group compare
//! directly. Shapes: 4096 × 4096 and 1024 × 1024 at n = 1, 2, 3, 4, 6, 8, 64, 256; exponential
//! 4-bit per row and per group of 128. At n = 1 `gemm` is the GEMV call, so `gemv_x_n` there
//! is the GEMV it must not be slower than.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use expquant::{quantize, Config, Granularity};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};

mod common;

fn gemm(c: &mut Criterion) {
    for (rows, cols) in [(1024usize, 1024usize), (4096, 4096)] {
        let w = common::weights(1, rows * cols, 0.05);
        let per_row = Config::exponential(4);
        let per_group = Config::exponential(4).with_granularity(Granularity::PerGroup(128));
        let tensors = [
            ("exp4_per_row", quantize(&w, rows, cols, &per_row).unwrap()),
            (
                "exp4_group128",
                quantize(&w, rows, cols, &per_group).unwrap(),
            ),
        ];
        let wm = Mat::<f32>::from_fn(rows, cols, |i, j| w[i * cols + j]);
        for n in [1usize, 2, 3, 4, 6, 8, 64, 256] {
            let x = common::weights(2, cols * n, 1.0);
            let xm = Mat::<f32>::from_fn(cols, n, |j, c| x[j * n + c]);
            let columns: Vec<Vec<f32>> = (0..n)
                .map(|c| x.iter().skip(c).step_by(n).copied().collect())
                .collect();
            let mut ym = Mat::<f32>::zeros(rows, n);
            let mut y = vec![0.0f32; rows * n];
            let mut yc = vec![0.0f32; rows];

            let mut g = c.benchmark_group(format!("gemm/{rows}x{cols}/n{n}"));
            g.throughput(Throughput::Elements((rows * cols * n) as u64));
            g.bench_function("baseline_faer_f32", |b| {
                b.iter(|| {
                    matmul(
                        ym.as_mut(),
                        Accum::Replace,
                        wm.as_ref(),
                        xm.as_ref(),
                        1.0,
                        Par::Seq,
                    );
                    black_box(&ym);
                })
            });
            for (name, q) in &tensors {
                g.bench_function(format!("{name}/gemm"), |b| {
                    b.iter(|| q.gemm(black_box(&x), n, &mut y).unwrap())
                });
                g.bench_function(format!("{name}/gemv_x_n"), |b| {
                    b.iter(|| {
                        for xc in &columns {
                            q.gemv(black_box(xc), &mut yc).unwrap();
                            black_box(&yc);
                        }
                    })
                });
            }
            g.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = gemm
}
criterion_main!(benches);
