//! Opening stored tensors at memory speed: open + first GEMV of a 16384 × 8192 4-bit tensor
//! in each verification mode against a plain copy of its bytes, and a 1 GiB container opened
//! in each mode. A plain timer harness (best of a few runs, one thread): criterion's sampling
//! would hold several GiB for minutes. `cargo bench --bench open`; the figures are in
//! BENCHMARKS.md.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use expquant::{quantize, write_container, Config, ContainerView, QuantizedView, Verification};

const ROWS: usize = 16384;
const COLS: usize = 8192;
/// Copies of the tensor in the large container: 16 × 64 MiB of codes (plus parameters).
const COPIES: usize = 16;
const RUNS: usize = 5;

/// The fastest of `RUNS` runs of `f`.
fn best(mut f: impl FnMut()) -> Duration {
    (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap()
}

fn row(what: &str, bytes: usize, time: Duration) {
    // Opens that read only the table take microseconds: a rate says nothing there.
    if time < Duration::from_micros(100) {
        println!("| {what} | {:.4} | — |", time.as_secs_f64() * 1e3);
        return;
    }
    let gbps = bytes as f64 / time.as_secs_f64() / 1e9;
    println!("| {what} | {:.1} | {:.2} |", time.as_secs_f64() * 1e3, gbps);
}

fn mode_name(mode: Verification) -> &'static str {
    match mode {
        Verification::Full => "validated",
        Verification::Lazy => "lazily validated",
        Verification::Trusted => "trusted",
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants a
    // quick pass, which a 64 MiB quantization is not.
    if !std::env::args().any(|a| a == "--bench") {
        println!("open: run with `cargo bench --bench open`");
        return;
    }
    let modes = [
        Verification::Full,
        Verification::Lazy,
        Verification::Trusted,
    ];
    let weights = common::weights(7, ROWS * COLS, 0.05);
    let tensor = quantize(&weights, ROWS, COLS, &Config::exponential(4)).unwrap();
    drop(weights);
    let stored = tensor.to_bytes();
    let container = write_container(&[("w", &tensor)]).unwrap();
    let x: Vec<f32> = (0..COLS).map(|i| (i % 7) as f32 * 0.25 - 0.75).collect();
    let mut y = vec![0.0f32; ROWS];
    let mut copy = vec![0u8; stored.len()];

    println!(
        "{ROWS} x {COLS} exponential 4-bit per row: {} bytes stored",
        stored.len()
    );
    println!("| step | ms | GB/s of the stored bytes |");
    println!("|---|---:|---:|");
    row(
        "memcpy of the stored bytes",
        stored.len(),
        best(|| copy.copy_from_slice(black_box(&stored))),
    );
    row(
        "CRC-32 of the stored bytes",
        stored.len(),
        best(|| {
            black_box(expquant::format::crc32(black_box(&stored)));
        }),
    );
    row(
        "QuantizedView::from_bytes (checksum, parameters, codes)",
        stored.len(),
        best(|| {
            black_box(QuantizedView::from_bytes(black_box(&stored)).unwrap());
        }),
    );
    let view = QuantizedView::from_bytes(&stored).unwrap();
    row(
        "GEMV alone (view already open)",
        stored.len(),
        best(|| view.gemv(black_box(&x), &mut y).unwrap()),
    );
    for mode in modes {
        row(
            &format!("container open ({}) + get + first GEMV", mode_name(mode)),
            stored.len(),
            best(|| {
                let c = ContainerView::with_verification(black_box(&container), mode).unwrap();
                c.get("w").unwrap().unwrap().gemv(&x, &mut y).unwrap();
            }),
        );
    }
    drop(container);
    drop(copy);

    let names: Vec<String> = (0..COPIES).map(|i| format!("layer{i:02}.weight")).collect();
    let entries: Vec<(&str, &expquant::QuantizedTensor)> =
        names.iter().map(|n| (n.as_str(), &tensor)).collect();
    let big = write_container(&entries).unwrap();
    let mut big_copy = vec![0u8; big.len()];
    println!();
    println!("container of {COPIES} such tensors: {} bytes", big.len());
    println!("| step | ms | GB/s |");
    println!("|---|---:|---:|");
    row(
        "memcpy of the container",
        big.len(),
        best(|| big_copy.copy_from_slice(black_box(&big))),
    );
    drop(big_copy);
    for mode in modes {
        row(
            &format!("open ({})", mode_name(mode)),
            big.len(),
            best(|| {
                black_box(ContainerView::with_verification(black_box(&big), mode).unwrap());
            }),
        );
    }
    row(
        "open (lazily validated) + get every tensor",
        big.len(),
        best(|| {
            let c = ContainerView::with_verification(black_box(&big), Verification::Lazy).unwrap();
            for entry in c.iter() {
                black_box(entry.unwrap());
            }
        }),
    );
}
