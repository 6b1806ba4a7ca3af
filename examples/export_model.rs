//! Writes the stored model and runs it from its container.
//!
//! ```text
//! cargo run --release --example export_model -- write [DIR]     # writes the two files
//! cargo run --release --example export_model -- predict [DIR] [N]
//! ```
//!
//! `write` quantizes `data/digits_cnn.bin` (exponential 4-bit, one scale per output channel,
//! biases corrected from 64 training images) into `DIR/digits_cnn_exp4.exq` (an expquant
//! container of the quantized weights and the `f32` biases) and `DIR/digits_test.bin` (the
//! 360 test images); `DIR` defaults to `data/`, where the committed copies live (`tests/stored_model.rs`
//! holds them to what `write` produces, byte for byte). `predict` runs the first `N` (default
//! all) test images through the network straight from the container — every weight stays
//! packed and is multiplied through `QuantizedView::gemv` — and prints top-1 and the
//! prediction of every image, the line the C++ and firmware runs are compared against.

#[path = "cnn/mod.rs"]
mod cnn;

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;

use cnn::export::{self, CONTAINER_FILE, TEST_FILE};
use cnn::quantized::{self, QuantizedModel, Scratch};

fn main() -> ExitCode {
    cnn::exit_code(run())
}

fn run() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args.get(1).map_or_else(export::data_dir, PathBuf::from);
    match args.first().map(String::as_str) {
        Some("write") => {
            let model = cnn::load(&cnn::default_model_path())?;
            let (train, _) = cnn::digits()?;
            let container = export::export(&model, &train)?;
            std::fs::create_dir_all(&dir)?;
            for (name, bytes) in [
                (CONTAINER_FILE, &container[..]),
                (TEST_FILE, export::test_records()),
            ] {
                let path = dir.join(name);
                std::fs::write(&path, bytes)?;
                println!("{}: {} bytes", path.display(), bytes.len());
            }
            Ok(())
        }
        Some("predict") => {
            let count = match args.get(2) {
                Some(n) => Some(n.parse::<usize>().map_err(|e| format!("N: {e}"))?),
                None => None,
            };
            predict(&dir, count)
        }
        _ => Err("usage: export_model write [DIR] | predict [DIR] [N]".into()),
    }
}

fn predict(dir: &std::path::Path, count: Option<usize>) -> Result<(), Box<dyn Error>> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    // The container's tensors must be 64-byte aligned in memory; a `Vec<u8>` only promises
    // byte alignment, so the bytes are copied into 64-byte blocks.
    let bytes = read(CONTAINER_FILE)?;
    let mut blocks = vec![[0u8; 64]; bytes.len().div_ceil(64)];
    let flat = blocks.as_flattened_mut();
    flat[..bytes.len()].copy_from_slice(&bytes);
    let container = &flat[..bytes.len()];
    let images = read(TEST_FILE)?;

    let model = QuantizedModel::new(container).map_err(|e| e.to_string())?;
    let total = images.len() / quantized::RECORD;
    let count = count.unwrap_or(total).min(total);
    let mut scratch = Box::new(Scratch::new());
    let mut predictions = Vec::with_capacity(count);
    let mut correct = 0;
    for i in 0..count {
        let (image, label) =
            quantized::record(&images, i).ok_or_else(|| format!("test record {i} is malformed"))?;
        let p = model
            .predict(&image, &mut scratch)
            .map_err(|e| e.to_string())?;
        correct += usize::from(p == usize::from(label));
        predictions.push(p.to_string());
    }
    println!("top-1: {correct}/{count}");
    println!("predictions: {}", predictions.join(" "));
    Ok(())
}
