//! Packing, dequantization and GEMV on packed codes, each beside its baseline in the same run:
//! the `bitpacking` crate, the scalar reference kernels, a hand-vectorized f32 GEMV, and a
//! plain read of a buffer larger than the last-level cache (the machine's read bandwidth).
//! With `--features parallel` the GEMV cases measure the threaded default path (`parallel`)
//! beside the single-threaded one (`serial`).
use std::hint::black_box;

use bitpacking::{BitPacker, BitPacker8x};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use expquant::kernels::{self, Isa};
use expquant::{pack, quantize, Config, QuantizedTensor, QuantizedView, ScaleRule};

mod common;

/// Sum of a large buffer, eight vector accumulators: the read-bandwidth yardstick.
fn read_sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 64];
    let mut chunks = v.chunks_exact(64);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// [`read_sum`] over four quarters of `v` at once: four sequential streams, as a GEMV that
/// runs four rows per pass reads them. A single stream can stop short of what the memory
/// system delivers to one core (its prefetchers track a few streams at a time), so this is
/// the other half of the read ceiling.
fn read_sum_4streams(v: &[f32]) -> f32 {
    let q = v.len() / 4 / 16 * 16;
    let mut acc = [[0.0f32; 16]; 4];
    for i in (0..q).step_by(16) {
        for (s, a) in acc.iter_mut().enumerate() {
            for (a, x) in a.iter_mut().zip(&v[s * q + i..s * q + i + 16]) {
                *a += x;
            }
        }
    }
    acc.iter().flatten().sum::<f32>() + v[4 * q..].iter().sum::<f32>()
}

fn read_bandwidth(c: &mut Criterion) {
    let buf = common::weights(9, 64 << 20, 1.0); // 256 MiB
    let mut g = c.benchmark_group("read_bandwidth");
    g.throughput(Throughput::Bytes((buf.len() * 4) as u64));
    g.bench_function("sum_256MiB", |b| b.iter(|| read_sum(black_box(&buf))));
    g.bench_function("sum_256MiB_4streams", |b| {
        b.iter(|| read_sum_4streams(black_box(&buf)))
    });
    g.finish();
}

fn pack_unpack(c: &mut Criterion) {
    // 1 M codes: in cache for both libraries (bitpacking writes 4 MiB of u32).
    let n = 1 << 20;
    let packer = BitPacker8x::new();
    for bits in 1..=8u8 {
        let codes: Vec<u8> = common::weights(bits as u64, n, 1.0)
            .iter()
            .map(|x| ((x.abs() * 997.0) as u32 % (1 << bits)) as u8)
            .collect();
        let ints: Vec<u32> = codes.iter().map(|&c| u32::from(c)).collect();
        let packed = pack::pack_to_vec(&codes, bits).unwrap();
        let mut bp_packed = vec![0u8; n * bits as usize / 8];
        let step = BitPacker8x::BLOCK_LEN * bits as usize / 8;
        for (i, block) in ints.chunks_exact(BitPacker8x::BLOCK_LEN).enumerate() {
            packer.compress(block, &mut bp_packed[i * step..(i + 1) * step], bits);
        }

        let mut g = c.benchmark_group(format!("unpack/{bits}bit"));
        g.throughput(Throughput::Elements(n as u64));
        let mut out = vec![0u8; n];
        g.bench_function("expquant", |b| {
            b.iter(|| pack::unpack(black_box(&packed), bits, &mut out).unwrap())
        });
        g.bench_function("expquant_scalar_reference", |b| {
            b.iter(|| pack::scalar::unpack(black_box(&packed), bits, &mut out).unwrap())
        });
        let mut out32 = vec![0u32; n];
        g.bench_function("bitpacking_8x", |b| {
            b.iter(|| {
                for (i, block) in out32.chunks_exact_mut(BitPacker8x::BLOCK_LEN).enumerate() {
                    packer.decompress(&bp_packed[i * step..(i + 1) * step], block, bits);
                }
            })
        });
        g.finish();

        let mut g = c.benchmark_group(format!("pack/{bits}bit"));
        g.throughput(Throughput::Elements(n as u64));
        let mut out = vec![0u8; packed.len()];
        g.bench_function("expquant", |b| {
            b.iter(|| pack::pack(black_box(&codes), bits, &mut out).unwrap())
        });
        g.bench_function("expquant_scalar_reference", |b| {
            b.iter(|| pack::scalar::pack(black_box(&codes), bits, &mut out).unwrap())
        });
        let mut out = vec![0u8; bp_packed.len()];
        g.bench_function("bitpacking_8x", |b| {
            b.iter(|| {
                for (i, block) in ints.chunks_exact(BitPacker8x::BLOCK_LEN).enumerate() {
                    packer.compress(block, &mut out[i * step..(i + 1) * step], bits);
                }
            })
        });
        g.finish();
    }
}

fn dequantize(c: &mut Criterion) {
    // 4 M weights: 2 MiB of codes in, 16 MiB of f32 out.
    let (rows, cols) = (1024, 4096);
    let w = common::weights(3, rows * cols, 0.05);
    let q = quantize(&w, rows, cols, &Config::exponential(4)).unwrap();
    let mut out = vec![0.0f32; rows * cols];
    let mut g = c.benchmark_group("dequantize/4bit_per_row_4M");
    g.throughput(Throughput::Elements((rows * cols) as u64));
    g.bench_function("expquant", |b| {
        b.iter(|| q.dequantize_into(&mut out).unwrap())
    });
    let levels: Vec<Vec<f32>> = q.codebooks().map(|cb| cb.levels().to_vec()).collect();
    let rb = q.row_bytes();
    for isa in Isa::available() {
        g.bench_function(format!("kernels_decode_{:?}", isa.kind()), |b| {
            b.iter(|| {
                for (r, o) in out.chunks_exact_mut(cols).enumerate() {
                    let p = &q.packed_codes()[r * rb..(r + 1) * rb];
                    kernels::decode_with(isa, 4, p, &levels[r], o).unwrap();
                }
            })
        });
    }
    g.bench_function("baseline_memcpy_f32", |b| {
        b.iter(|| out.copy_from_slice(black_box(&w)))
    });
    g.finish();
}

/// The f32 GEMV baseline: four rows at a time share each load of `x`, two 16-wide
/// accumulators per row (AVX-512 FMA; AVX2 FMA with 8-wide ones; plain loop elsewhere).
fn gemv_f32(w: &[f32], rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
    assert_eq!(y.len(), rows);
    #[cfg(target_arch = "x86_64")]
    {
        if Isa::detect().kind() == kernels::IsaKind::Avx512
            && cols.is_multiple_of(32)
            && rows.is_multiple_of(4)
        {
            // SAFETY: AVX-512 F was detected; the shapes are checked above.
            return unsafe { simd::gemv_avx512(w, rows, cols, x, y) };
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        if matches!(Isa::detect().kind(), kernels::IsaKind::Avx2)
            && cols.is_multiple_of(16)
            && rows.is_multiple_of(4)
        {
            // SAFETY: AVX2 and FMA were detected; the shapes are checked above.
            return unsafe { simd::gemv_avx2(w, rows, cols, x, y) };
        }
    }
    for (r, yr) in y.iter_mut().enumerate() {
        *yr = w[r * cols..(r + 1) * cols]
            .iter()
            .zip(x)
            .map(|(a, b)| a * b)
            .sum();
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX2 and FMA; `cols % 16 == 0`, `rows % 4 == 0`, `w.len() == rows·cols`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gemv_avx2(w: &[f32], rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
        assert!(w.len() == rows * cols && x.len() == cols && y.len() == rows);
        for r in (0..rows).step_by(4) {
            // SAFETY: rows r..r+4 and columns j..j+16 are inside `w` and `x` (asserted shapes).
            unsafe {
                let p = w.as_ptr().add(r * cols);
                let mut acc = [_mm256_setzero_ps(); 8];
                for j in (0..cols).step_by(16) {
                    let x0 = _mm256_loadu_ps(x.as_ptr().add(j));
                    let x1 = _mm256_loadu_ps(x.as_ptr().add(j + 8));
                    for k in 0..4 {
                        let row = p.add(k * cols + j);
                        acc[2 * k] = _mm256_fmadd_ps(_mm256_loadu_ps(row), x0, acc[2 * k]);
                        acc[2 * k + 1] =
                            _mm256_fmadd_ps(_mm256_loadu_ps(row.add(8)), x1, acc[2 * k + 1]);
                    }
                }
                for k in 0..4 {
                    let v = _mm256_add_ps(acc[2 * k], acc[2 * k + 1]);
                    let mut lanes = [0.0f32; 8];
                    _mm256_storeu_ps(lanes.as_mut_ptr(), v);
                    y[r + k] = lanes.iter().sum();
                }
            }
        }
    }

    /// # Safety
    /// AVX-512 F and FMA; `cols % 32 == 0`, `rows % 4 == 0`, `w.len() == rows·cols`.
    #[target_feature(enable = "avx512f,fma")]
    pub unsafe fn gemv_avx512(w: &[f32], rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
        assert!(w.len() == rows * cols && x.len() == cols && y.len() == rows);
        for r in (0..rows).step_by(4) {
            // SAFETY: rows r..r+4 and columns j..j+32 are inside `w` and `x` (asserted shapes).
            unsafe {
                let p = w.as_ptr().add(r * cols);
                let mut acc = [_mm512_setzero_ps(); 8];
                for j in (0..cols).step_by(32) {
                    let x0 = _mm512_loadu_ps(x.as_ptr().add(j));
                    let x1 = _mm512_loadu_ps(x.as_ptr().add(j + 16));
                    for k in 0..4 {
                        let row = p.add(k * cols + j);
                        acc[2 * k] = _mm512_fmadd_ps(_mm512_loadu_ps(row), x0, acc[2 * k]);
                        acc[2 * k + 1] =
                            _mm512_fmadd_ps(_mm512_loadu_ps(row.add(16)), x1, acc[2 * k + 1]);
                    }
                }
                for k in 0..4 {
                    y[r + k] = _mm512_reduce_add_ps(_mm512_add_ps(acc[2 * k], acc[2 * k + 1]));
                }
            }
        }
    }
}

fn gemv(c: &mut Criterion) {
    for (rows, cols, widths) in [
        (1024, 1024, &[2u8, 4, 8][..]),
        (16384, 8192, &[2u8, 4, 8][..]),
    ] {
        let mut w = common::weights(5, rows * cols, 0.05);
        let x = common::weights(6, cols, 1.0);
        let qs: Vec<_> = widths
            .iter()
            .map(|&bits| quantize(&w, rows, cols, &Config::exponential(bits)).unwrap())
            .collect();
        // The dense baseline multiplies the 4-bit tensor's dequantized values (its time does
        // not depend on them); the source weights' buffer is reused to hold them.
        qs[1].dequantize_into(&mut w).unwrap();
        let mut y = vec![0.0f32; rows];
        let mut g = c.benchmark_group(format!("gemv/{rows}x{cols}"));
        g.throughput(Throughput::Elements((rows * cols) as u64));
        g.bench_function("baseline_f32_simd", |b| {
            b.iter(|| gemv_f32(black_box(&w), rows, cols, &x, &mut y))
        });
        for (q, bits) in qs.iter().zip(widths) {
            #[cfg(not(feature = "parallel"))]
            g.bench_function(format!("expquant_{bits}bit_per_row"), |b| {
                b.iter(|| q.gemv(black_box(&x), &mut y).unwrap())
            });
            // With `parallel`, `gemv` is the threaded default path (from 4 M weights; smaller
            // matrices stay on the calling thread) and `gemv_rows` the serial one.
            #[cfg(feature = "parallel")]
            {
                g.bench_function(format!("{bits}bit/parallel"), |b| {
                    b.iter(|| q.gemv(black_box(&x), &mut y).unwrap())
                });
                g.bench_function(format!("{bits}bit/serial"), |b| {
                    b.iter(|| q.gemv_rows(black_box(&x), 0..rows, &mut y).unwrap())
                });
            }
        }
        #[cfg(all(feature = "parallel", feature = "test-hooks"))]
        {
            let q = &qs[1];
            if rows * cols < 1 << 22 {
                // What the size threshold avoids: threads forced on a matrix below it.
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                g.bench_function("4bit/forced_threads", |b| {
                    b.iter(|| q.gemv_with_threads(black_box(&x), &mut y, threads).unwrap())
                });
            }
            // The allocation-free view path (one row per pass) splits rows the same way.
            let bytes = q.to_bytes();
            let view = expquant::QuantizedView::from_bytes(&bytes).unwrap();
            g.bench_function("4bit/view_parallel", |b| {
                b.iter(|| view.gemv(black_box(&x), &mut y).unwrap())
            });
            g.bench_function("4bit/view_serial", |b| {
                b.iter(|| view.gemv_rows(black_box(&x), 0..rows, &mut y).unwrap())
            });
        }
        if rows * cols <= 1 << 20 {
            let q = &qs[1];
            let levels: Vec<Vec<f32>> = q.codebooks().map(|cb| cb.levels().to_vec()).collect();
            let rb = q.row_bytes();
            g.bench_function("expquant_4bit_scalar_reference", |b| {
                b.iter(|| {
                    for (r, yr) in y.iter_mut().enumerate() {
                        let p = &q.packed_codes()[r * rb..(r + 1) * rb];
                        *yr = kernels::dot_with(Isa::scalar(), 4, p, &levels[r], &x).unwrap();
                    }
                })
            });
        }
        g.finish();
    }
}

/// GEMV modes side by side at 4 bits, with their baselines in the same group: the read pass
/// over 256 MiB and the dense f32 GEMV. Per row and groups of 32 and 128 (`f32` parameters
/// per group, and compact ones: an `f16` scale per group, one `q` per row), `f32` and int8
/// activations, single-threaded (`gemv_rows`, `gemv_int8_rows`). Throughput is the bytes a
/// call reads (codes and parameters; `x` is in cache), so criterion's GiB/s compare directly
/// with the read pass. Max-abs fits keep the setup short at this size.
fn gemv_modes(c: &mut Criterion) {
    let buf = common::weights(9, 64 << 20, 1.0);
    for (rows, cols) in [(1024, 1024), (16384, 8192)] {
        let mut w = common::weights(5, rows * cols, 0.05);
        let x = common::weights(6, cols, 1.0);
        let base = Config::exponential(4).with_scale_rule(ScaleRule::MaxAbs);
        let layouts = [
            ("per_row", base),
            ("group128", base.per_group(128)),
            (
                "group128_compact",
                base.per_group(128).with_compact_params(true),
            ),
            ("group32", base.per_group(32)),
            (
                "group32_compact",
                base.per_group(32).with_compact_params(true),
            ),
        ];
        let qs: Vec<_> = layouts
            .iter()
            .map(|(_, config)| quantize(&w, rows, cols, config).unwrap())
            .collect();
        qs[0].dequantize_into(&mut w).unwrap();
        let mut y = vec![0.0f32; rows];
        let mut g = c.benchmark_group(format!("gemv_modes/{rows}x{cols}"));
        g.throughput(Throughput::Bytes((buf.len() * 4) as u64));
        g.bench_function("read_256MiB", |b| b.iter(|| read_sum(black_box(&buf))));
        g.bench_function("read_256MiB_4streams", |b| {
            b.iter(|| read_sum_4streams(black_box(&buf)))
        });
        g.throughput(Throughput::Bytes((rows * cols * 4) as u64));
        g.bench_function("dense_f32", |b| {
            b.iter(|| gemv_f32(black_box(&w), rows, cols, &x, &mut y))
        });
        for ((name, _), q) in layouts.iter().zip(&qs) {
            let bytes = q.to_bytes().len() - expquant::format::HEADER_LEN;
            g.throughput(Throughput::Bytes(bytes as u64));
            g.bench_function(format!("{name}/f32"), |b| {
                b.iter(|| q.gemv_rows(black_box(&x), 0..rows, &mut y).unwrap())
            });
            g.bench_function(format!("{name}/int8"), |b| {
                b.iter(|| q.gemv_int8_rows(black_box(&x), 0..rows, &mut y).unwrap())
            });
        }
        g.finish();
    }
}

/// Per-group GEMV with compact parameters (an `f16` scale per group, one `q` per row) beside
/// per-row and per-group `f32` parameters, 4-bit exponential, in one run: the owned tensor's
/// `gemv_rows` (lane-permuted `x`), the view's allocation-free `gemv_rows`, and int8
/// activations, single-threaded. Throughput is the bytes a call reads (codes and
/// parameters), so the rates of per-row and per-group compare per weight up to the
/// parameters' share.
fn gemv_compact(c: &mut Criterion) {
    for (rows, cols) in [(1024, 1024), (4096, 4096)] {
        let w = common::weights(5, rows * cols, 0.05);
        let x = common::weights(6, cols, 1.0);
        let base = Config::exponential(4).with_scale_rule(ScaleRule::MaxAbs);
        let layouts = [
            ("per_row", base),
            ("group128", base.per_group(128)),
            (
                "group128_compact",
                base.per_group(128).with_compact_params(true),
            ),
            ("group32", base.per_group(32)),
            (
                "group32_compact",
                base.per_group(32).with_compact_params(true),
            ),
        ];
        let mut y = vec![0.0f32; rows];
        let mut g = c.benchmark_group(format!("gemv_compact/{rows}x{cols}"));
        for (name, config) in layouts {
            let q = quantize(&w, rows, cols, &config).unwrap();
            tensor_view_int8(&mut g, name, &q, &x, &mut y);
        }
        g.finish();
    }
}

/// `q`'s single-threaded GEMV over all its rows three ways, each its own benchmark
/// (`{name}/tensor`, `{name}/view`, `{name}/int8`): the owned tensor, the view of its stored
/// bytes and int8 activations. Throughput is the bytes a call reads (codes and parameters).
fn tensor_view_int8(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    q: &QuantizedTensor,
    x: &[f32],
    y: &mut [f32],
) {
    let rows = q.rows();
    let bytes = q.to_bytes();
    let view = QuantizedView::from_bytes(&bytes).unwrap();
    g.throughput(Throughput::Bytes(
        (bytes.len() - expquant::format::HEADER_LEN) as u64,
    ));
    g.bench_function(format!("{name}/tensor"), |b| {
        b.iter(|| q.gemv_rows(black_box(x), 0..rows, y).unwrap())
    });
    g.bench_function(format!("{name}/view"), |b| {
        b.iter(|| view.gemv_rows(black_box(x), 0..rows, y).unwrap())
    });
    g.bench_function(format!("{name}/int8"), |b| {
        b.iter(|| q.gemv_int8_rows(black_box(x), 0..rows, y).unwrap())
    });
}

/// The widths other than 4 bits: per row and in compact groups of 32 at 1, 2, 3 and 8 bits,
/// and at 1 to 3 bits in groups of 128 and 32 with `f32` parameters (at 2 bits also without
/// a zero level); `f32` and int8 activations, the owned tensor and the view,
/// single-threaded, one run.
fn gemv_narrow(c: &mut Criterion) {
    let (rows, cols) = (4096, 4096);
    let w = common::weights(5, rows * cols, 0.05);
    let x = common::weights(6, cols, 1.0);
    let mut y = vec![0.0f32; rows];
    let mut g = c.benchmark_group(format!("gemv_narrow/{rows}x{cols}"));
    for bits in [1u8, 2, 3, 8] {
        let base = Config::exponential(bits).with_scale_rule(ScaleRule::MaxAbs);
        let compact32 = base.per_group(32).with_compact_params(true);
        // `f32`-parameter groups at 1 to 3 bits only: at 8 bits each group's 256 levels
        // (and a slow max-abs fit) would dominate the group's run time. Groups of 32 are
        // shorter than the 1- and 2-bit permuted blocks (lanes scaled per group); 2-bit
        // levels without a zero level take a lower magnitude per group (`q`).
        let mut layouts = vec![("per_row", base), ("compact32", compact32)];
        if bits <= 3 {
            layouts.push(("group128", base.per_group(128)));
            layouts.push(("group32", base.per_group(32)));
        }
        if bits == 2 {
            layouts.push(("group32_nozero", base.per_group(32).with_zero_level(false)));
        }
        for (name, config) in layouts {
            let q = quantize(&w, rows, cols, &config).unwrap();
            tensor_view_int8(&mut g, &format!("{bits}bit/{name}"), &q, &x, &mut y);
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = read_bandwidth, pack_unpack, dequantize, gemv, gemv_modes, gemv_compact, gemv_narrow
}
criterion_main!(benches);
