//! Inputs the CLI tests build for themselves: temporary directories, `.npy` and safetensors
//! files, and the repository's digits CNN as an ONNX model.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use tract_onnx::prelude::*;

pub mod graphs;
pub use graphs::*;

/// A fresh, empty directory for one test.
pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("expquant-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the `expquant` binary.
pub fn expquant(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_expquant"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Runs the binary and fails the test with its stderr when it fails.
pub fn expquant_ok(args: &[&str]) -> String {
    let out = expquant(args);
    assert!(
        out.status.success(),
        "expquant {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Logits of an ONNX model file for a batch of 8×8 images, run in tract.
pub fn run_onnx(path: &Path, images: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let n = images.len();
    let plan = tract_onnx::onnx()
        .model_for_path(path)
        .unwrap()
        .with_input_fact(0, f32::fact([n, 1, 8, 8]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let data: Vec<f32> = images.iter().flatten().copied().collect();
    let input = tract_ndarray::Array4::from_shape_vec((n, 1, 8, 8), data).unwrap();
    let out = plan.run(tvec!(Tensor::from(input).into())).unwrap();
    let logits = out[0].to_plain_array_view::<f32>().unwrap();
    logits
        .as_slice()
        .unwrap()
        .chunks_exact(10)
        .map(|c| c.to_vec())
        .collect()
}

/// Top-1 accuracy of logits against labels.
pub fn accuracy(logits: &[Vec<f32>], labels: &[usize]) -> f64 {
    let hits = logits
        .iter()
        .zip(labels)
        .filter(|(l, &y)| {
            let best = l
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            best == y
        })
        .count();
    hits as f64 / labels.len() as f64
}

/// The report's JSON.
pub fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Σ of the tensors' `weighted_error` in a report.
pub fn summed_error(report: &serde_json::Value) -> f64 {
    report["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["weighted_error"].as_f64().unwrap())
        .sum()
}

/// The first output of an ONNX model on one input, run in tract.
pub fn run_once(path: &Path, shape: &[usize], data: &[f32]) -> Vec<f32> {
    let plan = tract_onnx::onnx()
        .model_for_path(path)
        .unwrap()
        .with_input_fact(0, f32::fact(shape).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = tract_ndarray::ArrayD::from_shape_vec(shape.to_vec(), data.to_vec()).unwrap();
    let out = plan.run(tvec!(Tensor::from(input).into())).unwrap();
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}
