//! Writes the fuzz targets' seed corpus: valid stored tensors of every bit width, scheme,
//! zero-level setting, granularity and scale rule (with `f32` and compact parameters),
//! containers of them, and `quantize` cases
//! with special weight sets. Seeded, the fuzzer starts past the magic, version, length and
//! checksum checks instead of having to discover them.
//!
//! Run from the repository root: `cargo run --manifest-path fuzz/Cargo.toml --bin make_corpus`
//! (optionally with an output directory; the default is `fuzz/corpus`). The output is the same
//! on every run, so the committed corpus can be checked against it.

use std::fs;
use std::path::{Path, PathBuf};

use expquant::{quantize_weighted, write_container, Config, Granularity, ScaleRule, Scheme};
use expquant_fuzz::{ffi_input, quantize_input, QuantizeCase};

const ROWS: usize = 3;
const COLS: usize = 10;

fn weights(seed: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let t = ((i + 7 * seed) as f32 * 0.618_034).fract() - 0.5;
            t * t * t * 8.0
        })
        .collect()
}

fn rules() -> [ScaleRule; 5] {
    [
        ScaleRule::MaxAbs,
        ScaleRule::Mse,
        ScaleRule::Correlation,
        ScaleRule::OutputMse,
        ScaleRule::Fixed { a: 0.9, q: 0.6 },
    ]
}

fn granularities() -> [Granularity; 3] {
    [
        Granularity::PerTensor,
        Granularity::PerRow,
        Granularity::PerGroup(4),
    ]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("writing {name}: {e}"));
}

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("fuzz/corpus"), PathBuf::from);
    let dirs: Vec<PathBuf> = ["view", "container", "ffi", "quantize"]
        .iter()
        .map(|t| root.join(t))
        .collect();
    for dir in &dirs {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    }
    let (view, container, ffi, quantize) = (&dirs[0], &dirs[1], &dirs[2], &dirs[3]);
    let w = weights(0, ROWS * COLS);
    let importance: Vec<f32> = (0..ROWS * COLS)
        .map(|i| 0.25 + (i % 4) as f32 * 0.25)
        .collect();
    // GEMV inputs: ordinary values, and the specials a C caller may pass.
    let xs: [Vec<f32>; 3] = [
        vec![1.0; COLS],
        (0..COLS).map(|i| i as f32 - 4.5).collect(),
        vec![f32::NAN, f32::INFINITY, -0.0, 1e-45, f32::MAX, -1.0],
    ];
    let mut count = 0usize;
    for scheme in [Scheme::Linear, Scheme::Exponential] {
        for bits in 1..=8u8 {
            let mut members = Vec::new();
            for granularity in granularities() {
                for rule in rules() {
                    for zero_level in [true, false] {
                        let config = Config::new(scheme, bits)
                            .with_granularity(granularity)
                            .with_scale_rule(rule)
                            .with_zero_level(zero_level);
                        let imp = (rule == ScaleRule::OutputMse).then_some(&importance[..]);
                        let t = quantize_weighted(&w, ROWS, COLS, &config, imp)
                            .expect("ordinary weights quantize");
                        let bytes = t.to_bytes();
                        let name = format!(
                            "{scheme}-{bits}-{granularity}-{rule}-{}",
                            if zero_level { "z" } else { "nz" }
                        )
                        .replace([':', ',', '.'], "_");
                        write(view, &format!("{name}.bin"), &bytes);
                        let flags = (count % 4) as u8 | ((bits - 1) << 2);
                        let x = &xs[count % xs.len()];
                        write(ffi, &format!("{name}.bin"), &ffi_input(flags, x, &bytes));
                        count += 1;
                        members.push((name, t));
                    }
                }
            }
            // One container per scheme and width: its tensors under sorted names.
            let named: Vec<(&str, &expquant::QuantizedTensor)> =
                members.iter().map(|(n, t)| (n.as_str(), t)).collect();
            let bytes = write_container(&named).expect("distinct valid names");
            write(container, &format!("{scheme}-{bits}.bin"), &bytes);
            let few = write_container(&named[..2]).expect("distinct valid names");
            write(container, &format!("{scheme}-{bits}-two.bin"), &few);
            // Compact parameters (format version 2): an f16 scale per group, one q per row,
            // with their own counter and container so that the files above stay as they are.
            let mut compact = Vec::new();
            for granularity in granularities() {
                for rule in [ScaleRule::MaxAbs, ScaleRule::Mse] {
                    let config = Config::new(scheme, bits)
                        .with_granularity(granularity)
                        .with_scale_rule(rule)
                        .with_compact_params(true);
                    let t = quantize_weighted(&w, ROWS, COLS, &config, None)
                        .expect("ordinary weights quantize");
                    let bytes = t.to_bytes();
                    let name = format!("{scheme}-{bits}-{granularity}-{rule}-compact")
                        .replace([':', ',', '.'], "_");
                    write(view, &format!("{name}.bin"), &bytes);
                    let k = compact.len();
                    let flags = (k % 4) as u8 | ((bits - 1) << 2);
                    let x = &xs[k % xs.len()];
                    write(ffi, &format!("{name}.bin"), &ffi_input(flags, x, &bytes));
                    compact.push((name, t));
                }
            }
            let named: Vec<(&str, &expquant::QuantizedTensor)> =
                compact.iter().map(|(n, t)| (n.as_str(), t)).collect();
            let bytes = write_container(&named).expect("distinct valid names");
            write(container, &format!("{scheme}-{bits}-compact.bin"), &bytes);
        }
    }

    // `quantize` cases: every rule, width and scheme over ordinary and special weights.
    let special: [(&str, Vec<f32>); 6] = [
        ("normal", weights(1, 24)),
        ("huge", vec![3e38, -1e38, 5e37, 0.0, f32::MAX, -f32::MAX]),
        ("subnormal", vec![1e-44, -1e-44, 0.0, 1e-45, 0.0, -7e-45]),
        (
            "mixed",
            (0..12i32)
                .map(|i| if i & 1 == 0 { 1.0 } else { -1.0 } * 10f32.powi(-30 + 5 * i))
                .collect(),
        ),
        ("equal", vec![0.7; 8]),
        ("nan", vec![0.5, f32::NAN, 1.0, 0.0]),
    ];
    let mut i = 0usize;
    for scheme in [Scheme::Linear, Scheme::Exponential] {
        for bits in 1..=8u8 {
            for rule in rules() {
                let (name, weights) = &special[i % special.len()];
                let granularity = granularities()[i % 3];
                let config = Config::new(scheme, bits)
                    .with_granularity(granularity)
                    .with_scale_rule(rule)
                    .with_zero_level(i.is_multiple_of(2));
                let case = QuantizeCase {
                    config,
                    rows: 2,
                    importance: (rule == ScaleRule::OutputMse).then(|| vec![1.0; weights.len()]),
                    weights: weights.clone(),
                };
                let file = format!("{scheme}-{bits}-{}-{name}.bin", rule.code());
                write(quantize, &file, &quantize_input(&case));
                i += 1;
            }
        }
    }
    println!("wrote the seed corpus under {}", root.display());
}
