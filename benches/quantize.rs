//! Quantize (fit + encode + pack) throughput, exponential 4-bit, against one plain read pass
//! over the same weights and the reference encode + pack, measured in the same run. With
//! `--features parallel` the threaded default path (`parallel`) and the single-threaded one
//! (`serial`) are measured side by side.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
#[cfg(all(feature = "parallel", feature = "test-hooks"))]
use expquant::test_hooks::quantize_with_threads;
use expquant::{pack, quantize, Config, ScaleRule};

#[allow(unused_imports)]
#[path = "../examples/cnn/mod.rs"]
mod cnn;
mod common;

/// One pass over the weights: the floor for anything that reads them.
fn max_abs(w: &[f32]) -> f32 {
    w.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

fn quantize_throughput(c: &mut Criterion) {
    let (rows, cols) = (4096, 4096);
    let w = common::weights(1, rows * cols, 0.05);
    for (name, config, rows) in [
        ("per_tensor_16M", Config::exponential(4).per_tensor(), rows),
        ("per_row_4096_16M", Config::exponential(4).per_row(), rows),
        // 256 K weights: small groups are by far the slowest case (see BENCHMARKS.md).
        (
            "per_group32_256K",
            Config::exponential(4).per_group(32),
            rows / 64,
        ),
    ] {
        let w = &w[..rows * cols];
        let mut g = c.benchmark_group(format!("quantize/{name}"));
        g.throughput(Throughput::Elements(w.len() as u64));
        #[cfg(not(all(feature = "parallel", feature = "test-hooks")))]
        g.bench_function("expquant", |b| {
            b.iter(|| quantize(black_box(w), rows, cols, &config).unwrap())
        });
        // With `parallel` the default path splits rows over threads: measure it beside the
        // serial path in the same run.
        #[cfg(all(feature = "parallel", feature = "test-hooks"))]
        {
            g.bench_function("parallel", |b| {
                b.iter(|| quantize(black_box(w), rows, cols, &config).unwrap())
            });
            g.bench_function("serial", |b| {
                b.iter(|| {
                    quantize_with_threads(black_box(w), rows, cols, &config, None, 1).unwrap()
                })
            });
        }
        g.bench_function("baseline_read_pass", |b| b.iter(|| max_abs(black_box(w))));
        // The reference path for the encode + pack half: `Codebook::encode` per weight and
        // the scalar packer, with the codebooks already fitted.
        let q = quantize(w, rows, cols, &config).unwrap();
        let books: Vec<_> = q.codebooks().collect();
        let gl = config.granularity().group_len(cols);
        g.bench_function("baseline_reference_encode_pack", |b| {
            let mut codes = vec![0u8; cols];
            let mut out = vec![0u8; q.row_bytes()];
            b.iter(|| {
                for r in 0..rows {
                    for (i, (wc, cc)) in w[r * cols..(r + 1) * cols]
                        .chunks(gl)
                        .zip(codes.chunks_mut(gl))
                        .enumerate()
                    {
                        let cb = &books[if books.len() == 1 {
                            0
                        } else {
                            r * cols.div_ceil(gl) + i
                        }];
                        for (c, &x) in cc.iter_mut().zip(wc) {
                            *c = cb.encode(x);
                        }
                    }
                    pack::scalar::pack(&codes, 4, &mut out).unwrap();
                }
                black_box(&out);
            })
        });
        g.finish();
    }
}

/// Fitting with the searching rules (MSE, correlation), exponential 4-bit, single thread: per
/// row of 4096 and per group of 32, against one read pass over the same weights. Small
/// tensors: these rules are far slower than max-abs.
fn fitting_rules(c: &mut Criterion) {
    let cols = 4096;
    let w = common::weights(2, 64 * cols, 0.05);
    for (rule_name, rule) in [
        ("mse", ScaleRule::Mse),
        ("correlation", ScaleRule::Correlation),
    ] {
        for (name, config, rows) in [
            ("per_row_4096_256K", Config::exponential(4).per_row(), 64),
            ("per_group32_32K", Config::exponential(4).per_group(32), 8),
        ] {
            let config = config.with_scale_rule(rule);
            let w = &w[..rows * cols];
            let mut g = c.benchmark_group(format!("fit_{rule_name}/{name}"));
            g.throughput(Throughput::Elements(w.len() as u64));
            #[cfg(not(all(feature = "parallel", feature = "test-hooks")))]
            g.bench_function("expquant", |b| {
                b.iter(|| quantize(black_box(w), rows, cols, &config).unwrap())
            });
            #[cfg(all(feature = "parallel", feature = "test-hooks"))]
            g.bench_function("serial", |b| {
                b.iter(|| {
                    quantize_with_threads(black_box(w), rows, cols, &config, None, 1).unwrap()
                })
            });
            g.bench_function("baseline_read_pass", |b| b.iter(|| max_abs(black_box(w))));
            g.finish();
        }
    }
}

/// Convolution and dense shapes of a ResNet-50-like network (25.5 M weights), each as
/// `out × in·k·k`.
fn synthetic_shapes() -> Vec<(usize, usize)> {
    let mut v = vec![(64, 3 * 49)];
    let mut inp = 64;
    for (mid, out, blocks) in [(64, 256, 3), (128, 512, 4), (256, 1024, 6), (512, 2048, 3)] {
        for b in 0..blocks {
            v.push((mid, inp));
            v.push((mid, mid * 9));
            v.push((out, mid));
            if b == 0 {
                v.push((out, inp));
            }
            inp = out;
        }
    }
    v.push((1000, 2048));
    v
}

/// `(rows, cols, weights)` of one layer.
type Layer = (usize, usize, Vec<f32>);

fn whole_models(c: &mut Criterion) {
    let config = Config::exponential(4);
    let mut models: Vec<(&str, Vec<Layer>)> = Vec::new();
    if let Ok(model) = cnn::load(&cnn::default_model_path()) {
        let layers = model
            .layers()
            .iter()
            .map(|l| (l.weight.rows, l.weight.cols, l.weight.data.clone()))
            .collect();
        models.push(("digits_cnn", layers));
    }
    let synthetic = synthetic_shapes()
        .into_iter()
        .enumerate()
        .map(|(i, (r, k))| (r, k, common::weights(i as u64 + 7, r * k, 0.05)))
        .collect();
    models.push(("synthetic_resnet50_25M", synthetic));
    for (name, layers) in &models {
        let total: usize = layers.iter().map(|l| l.2.len()).sum();
        let mut g = c.benchmark_group(format!("quantize_model/{name}"));
        g.throughput(Throughput::Elements(total as u64));
        // With `parallel`, `parallel` is the default path (layers under 64 K weights stay on
        // one thread) and `serial` the single-threaded one, in the same run.
        let path = if cfg!(feature = "parallel") {
            "parallel"
        } else {
            "expquant"
        };
        g.bench_with_input(BenchmarkId::new(path, total), layers, |b, layers| {
            b.iter(|| {
                for (r, k, w) in layers {
                    black_box(quantize(w, *r, *k, &config).unwrap());
                }
            })
        });
        #[cfg(all(feature = "parallel", feature = "test-hooks"))]
        g.bench_with_input(BenchmarkId::new("serial", total), layers, |b, layers| {
            b.iter(|| {
                for (r, k, w) in layers {
                    black_box(quantize_with_threads(w, *r, *k, &config, None, 1).unwrap());
                }
            })
        });
        g.bench_with_input(
            BenchmarkId::new("baseline_read_pass", total),
            layers,
            |b, layers| b.iter(|| layers.iter().map(|l| max_abs(black_box(&l.2))).sum::<f32>()),
        );
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = quantize_throughput, fitting_rules, whole_models
}
criterion_main!(benches);
