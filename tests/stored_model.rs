//! Holds the committed stored model (`data/digits_cnn_exp4.exq`, `data/digits_test.bin`) to what
//! `cargo run --release --example export_model -- write` produces, and runs it from its
//! container.

#[path = "../examples/cnn/mod.rs"]
mod cnn;

use cnn::export::{self, CONTAINER_FILE, TEST_FILE};
use cnn::quantized::{self, QuantizedModel, Scratch};

/// Top-1 of the stored model on the 360 test images (FP32: 355).
const STORED_CORRECT: usize = 352;

fn committed(name: &str) -> Vec<u8> {
    let path = export::data_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn committed_files_are_what_the_exporter_writes() {
    let model = cnn::load(&cnn::default_model_path()).expect("committed model loads");
    let (train, _) = cnn::digits().expect("embedded data parses");
    let container = export::export(&model, &train).expect("the model quantizes");
    // Byte equality, not a summary: the firmware and C++ builds embed these files.
    assert!(
        container == committed(CONTAINER_FILE),
        "{CONTAINER_FILE} is stale: rerun export_model write"
    );
    assert!(
        export::test_records() == committed(TEST_FILE),
        "{TEST_FILE} is stale: rerun export_model write"
    );
}

#[test]
fn container_inference_matches_the_dequantized_model() {
    let bytes = committed(CONTAINER_FILE);
    let mut blocks = vec![[0u8; 64]; bytes.len().div_ceil(64)];
    let flat = blocks.as_flattened_mut();
    flat[..bytes.len()].copy_from_slice(&bytes);
    let container = &flat[..bytes.len()];
    let q = QuantizedModel::new(container).expect("stored model opens");

    // The same quantization applied in f32 (dequantized weights, corrected biases).
    let model = cnn::load(&cnn::default_model_path()).expect("committed model loads");
    let (train, test) = cnn::digits().expect("embedded data parses");
    let stats = cnn::calibration::input_stats(&model, &train, export::CALIBRATION_IMAGES);
    let (deq, _) =
        cnn::calibration::quantize_model_calibrated(&model, &export::stored_config(), &stats)
            .expect("the model quantizes");

    let images = committed(TEST_FILE);
    let mut scratch = Box::new(Scratch::new());
    let mut trace = cnn::Trace::default();
    let mut correct = 0;
    for i in 0..test.len() {
        let (image, label) = quantized::record(&images, i).expect("record parses");
        assert_eq!(image, test.images[i]);
        assert_eq!(label, test.labels[i]);
        let p = q.predict(&image, &mut scratch).expect("inference runs");
        deq.forward(&image, &mut trace);
        // Packed GEMV and the dense f32 product sum in different orders: logits agree to
        // rounding, and so does every prediction on this set.
        for (a, b) in scratch.logits.iter().zip(&trace.logits) {
            assert!(
                (a - b).abs() <= 1e-3 * (1.0 + b.abs()),
                "image {i}: {a} vs {b}"
            );
        }
        assert_eq!(p, cnn::ops::argmax(&trace.logits), "image {i}");
        correct += usize::from(p == usize::from(label));
    }
    assert_eq!(correct, STORED_CORRECT);
}

#[test]
fn truncated_or_foreign_containers_are_errors() {
    let bytes = committed(CONTAINER_FILE);
    let mut blocks = vec![[0u8; 64]; bytes.len().div_ceil(64)];
    let flat = blocks.as_flattened_mut();
    flat[..bytes.len()].copy_from_slice(&bytes);
    assert!(QuantizedModel::new(&flat[..bytes.len() - 1]).is_err());
    assert!(QuantizedModel::new(&flat[..100]).is_err());

    // A well-formed container without the biases.
    let w = expquant::quantize(&[0.5f32; 9 * 16], 16, 9, &expquant::Config::exponential(4))
        .expect("quantizes");
    let only = expquant::write_container(&[("conv1.weight", &w)]).expect("writes");
    let mut blocks = vec![[0u8; 64]; only.len().div_ceil(64)];
    let flat = blocks.as_flattened_mut();
    flat[..only.len()].copy_from_slice(&only);
    assert!(matches!(
        QuantizedModel::new(&flat[..only.len()]),
        Err(quantized::QuantizedError::Missing("conv2.weight"))
    ));
}
