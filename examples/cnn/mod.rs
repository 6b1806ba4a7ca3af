//! The digits CNN used by the `train` and `reproduce` examples and by `tests/model.rs`.
//!
//! Each of those includes this directory with `#[path = ".../cnn/mod.rs"] mod cnn;`, so it
//! is compiled separately into every one of them and each uses only part of it.
#![allow(dead_code)] // see above: every includer uses a different subset

pub mod calibration;
pub mod compensation;
pub mod data;
pub mod export;
pub mod format;
pub mod model;
pub mod ops;
pub mod quantized;

use std::fmt;
use std::path::{Path, PathBuf};

pub use data::{digits, Dataset};
pub use model::{Model, Trace};

use expquant::{quantize, Config};

/// Why loading the model or data failed.
#[derive(Debug)]
pub enum ModelError {
    Io(PathBuf, std::io::Error),
    Format(String),
    Dataset(String),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Io(path, e) => write!(f, "{}: {e}", path.display()),
            ModelError::Format(msg) => write!(f, "malformed weight file: {msg}"),
            ModelError::Dataset(msg) => write!(f, "malformed dataset: {msg}"),
        }
    }
}

impl std::error::Error for ModelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ModelError::Io(_, e) => Some(e),
            _ => None,
        }
    }
}

/// An example's exit status, printing an error with `Display` (a bare `main() -> Result`
/// would print its `Debug` form).
pub fn exit_code(result: Result<(), Box<dyn std::error::Error>>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Where `train` writes and everything else reads the committed model. Resolved against the
/// crate root rather than the working directory so `cargo run`/`cargo test` work from anywhere.
pub fn default_model_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join("digits_cnn.bin")
}

pub fn load(path: &Path) -> Result<Model, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::Io(path.to_owned(), e))?;
    format::from_bytes(&bytes)
}

pub fn save(model: &Model, path: &Path) -> Result<(), ModelError> {
    std::fs::write(path, format::to_bytes(model)).map_err(|e| ModelError::Io(path.to_owned(), e))
}

/// Number of correctly classified images.
pub fn correct(model: &Model, set: &Dataset) -> usize {
    let mut t = Trace::default();
    set.images
        .iter()
        .zip(&set.labels)
        .filter(|(img, &label)| model.predict(&img[..], &mut t) == usize::from(label))
        .count()
}

/// Outcome of evaluating one (possibly quantized) model on a dataset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    pub correct: usize,
    pub total: usize,
    /// Storage cost over all weight tensors as reported by the library (codebook and scale
    /// overhead included), weighted by each tensor's weight count. 32 for the f32 model.
    pub bits_per_weight: f64,
}

impl Evaluation {
    pub fn accuracy_percent(&self) -> f64 {
        100.0 * self.correct as f64 / self.total as f64
    }
}

pub fn evaluate_fp32(model: &Model, set: &Dataset) -> Evaluation {
    Evaluation {
        correct: correct(model, set),
        total: set.len(),
        bits_per_weight: 32.0,
    }
}

/// Replaces every conv and dense weight matrix by its quantized-then-dequantized version
/// under `cfg` (biases stay f32). Returns the new model and its model-level bits per weight.
pub fn quantize_model(model: &Model, cfg: &Config) -> Result<(Model, f64), expquant::Error> {
    let mut q = model.clone();
    let mut bits = 0.0f64;
    for layer in q.layers_mut() {
        let w = &mut layer.weight;
        let qt = quantize(&w.data, w.rows, w.cols, cfg)?;
        bits += qt.bits_per_weight() * w.data.len() as f64;
        let deq = qt.dequantize();
        debug_assert_eq!(deq.len(), w.data.len());
        w.data = deq;
    }
    let total = q.weight_count() as f64;
    Ok((q, bits / total))
}

/// Quantizes all weight tensors with `cfg` and input statistics `stats` (bias-corrected) and
/// measures accuracy on `set`.
pub fn calibrated_accuracy(
    model: &Model,
    set: &Dataset,
    cfg: &Config,
    stats: &[calibration::LayerStats; 5],
) -> Result<Evaluation, expquant::Error> {
    let (q, bits_per_weight) = calibration::quantize_model_calibrated(model, cfg, stats)?;
    Ok(Evaluation {
        correct: correct(&q, set),
        total: set.len(),
        bits_per_weight,
    })
}

/// Quantizes all weight tensors with `cfg` and measures accuracy on `set`.
pub fn quantized_accuracy(
    model: &Model,
    set: &Dataset,
    cfg: &Config,
) -> Result<Evaluation, expquant::Error> {
    let (q, bits_per_weight) = quantize_model(model, cfg)?;
    Ok(Evaluation {
        correct: correct(&q, set),
        total: set.len(),
        bits_per_weight,
    })
}
