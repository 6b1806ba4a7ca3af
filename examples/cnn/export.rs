//! The stored model: the digits CNN's weights quantized and its bias-corrected biases in one
//! expquant container, and the test images, as `export_model` writes them to `data/`
//! (formats in `data/README.md`).

use std::path::{Path, PathBuf};

use expquant::calibrate::{quantize_calibrated, InputStats};
use expquant::{write_container, Config, Entry, QuantizedTensor};

use super::calibration::input_stats;
use super::data::{Dataset, RECORD, TRAIN_SAMPLES};
use super::model::Model;
use super::quantized::{BIAS_NAMES, LAYERS};

/// Calibration images for the bias correction: the first ones of the training split, as in
/// the `reproduce` example's activation-aware table.
pub const CALIBRATION_IMAGES: usize = 64;

/// File names of the stored model and test images inside `data/`.
pub const CONTAINER_FILE: &str = "digits_cnn_exp4.exq";
pub const TEST_FILE: &str = "digits_test.bin";

/// Exponential 4-bit levels, one max-abs scale per output channel: the library's defaults.
pub fn stored_config() -> Config {
    Config::exponential(4).per_row()
}

/// Quantizes every weight tensor with [`stored_config`] and the input statistics of the first
/// [`CALIBRATION_IMAGES`] training images, corrects each bias for the mean output shift, and
/// serializes the result: per layer a quantized `<layer>.weight` and an `f32` `<layer>.bias`.
pub fn export(model: &Model, train: &Dataset) -> Result<Vec<u8>, expquant::Error> {
    let stats = input_stats(model, train, CALIBRATION_IMAGES);
    let cfg = stored_config();
    let mut tensors: Vec<QuantizedTensor> = Vec::new();
    let mut biases: Vec<Vec<f32>> = Vec::new();
    for (layer, s) in model.layers().into_iter().zip(&stats) {
        let w = &layer.weight;
        let input = InputStats::new(&s.mean).with_sq_mean(&s.sq_mean);
        let out = quantize_calibrated(&w.data, w.rows, w.cols, &cfg, &input)?;
        biases.push(
            layer
                .bias
                .iter()
                .zip(&out.bias_correction)
                .map(|(b, c)| b + c)
                .collect(),
        );
        tensors.push(out.tensor);
    }
    let mut entries: Vec<(&str, Entry)> = Vec::new();
    for ((&(weight, _), bias), (tensor, values)) in LAYERS
        .iter()
        .zip(BIAS_NAMES)
        .zip(tensors.iter().zip(&biases))
    {
        entries.push((weight, Entry::Quantized(tensor)));
        entries.push((bias, Entry::vector(values)));
    }
    write_container(&entries)
}

/// The test split's records exactly as in `digits.bin` (64 pixels 0..=16, then the label).
pub fn test_records() -> &'static [u8] {
    &super::data::digits_bin()[TRAIN_SAMPLES * RECORD..]
}

/// `data/` of this repository.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}
