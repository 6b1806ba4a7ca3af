//! Writes the test models as ONNX files for runs outside `cargo test` (timing, ONNX
//! Runtime), and runs an ONNX model in tract on an `.npy` batch.
//!
//! ```text
//! onnx_models mobilenet DIR [SIZE [WIDTH [SAMPLES [CLASSES]]]]
//!     DIR/mobilenet.onnx (MobileNetV2-like, random weights), DIR/calib/NNN.npy (SAMPLES
//!     inputs, default 64), DIR/inputs.npy (8 other inputs); defaults 224, 1.25, 64, 1000
//! onnx_models digits DIR
//!     DIR/digits.onnx (the repository's trained digits CNN), DIR/calib.npy (64 training
//!     images), DIR/test.npy and DIR/labels.npy (the 360-image test split)
//! onnx_models run MODEL INPUT.npy OUTPUT.npy
//!     the model's first output on the batch, computed by tract
//! ```

#[path = "../tests/common/graphs.rs"]
mod graphs;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use graphs::*;
use tract_onnx::prelude::*;

/// Reads a little-endian `f32` `.npy` file (version 1 or 2, C order): shape and values.
fn read_npy(path: &Path) -> Result<(Vec<usize>, Vec<f32>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(format!("{}: not an .npy file", path.display()));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(format!("{}: truncated header", path.display())),
    };
    let header = bytes
        .get(start..start + header_len)
        .map(String::from_utf8_lossy)
        .ok_or_else(|| format!("{}: truncated header", path.display()))?;
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        return Err(format!(
            "{}: expected little-endian f32 in C order",
            path.display()
        ));
    }
    let shape_text = header
        .split("'shape':")
        .nth(1)
        .and_then(|r| r.split('(').nth(1))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| format!("{}: no shape in the header", path.display()))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| format!("{}: bad shape", path.display()))
        })
        .collect::<Result<_, _>>()?;
    let data: Vec<f32> = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if data.len() != shape.iter().product::<usize>() {
        return Err(format!("{}: data does not match the shape", path.display()));
    }
    Ok((shape, data))
}

fn run(model: &Path, input: &Path, output: &Path) -> Result<(), String> {
    let (shape, data) = read_npy(input)?;
    let plan = tract_onnx::onnx()
        .model_for_path(model)
        .and_then(|m| m.with_input_fact(0, f32::fact(&shape).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(|e| format!("{}: {e:#}", model.display()))?;
    let x = tract_ndarray::ArrayD::from_shape_vec(shape, data).map_err(|e| e.to_string())?;
    let out = plan
        .run(tvec!(Tensor::from(x).into()))
        .map_err(|e| format!("tract: {e:#}"))?;
    let view = out[0]
        .to_plain_array_view::<f32>()
        .map_err(|e| e.to_string())?;
    let values: Vec<f32> = view.iter().copied().collect();
    write_npy(output, view.shape(), &values);
    Ok(())
}

fn arg<T: std::str::FromStr>(args: &[String], at: usize, default: T) -> Result<T, String> {
    match args.get(at) {
        Some(v) => v.parse().map_err(|_| format!("cannot read argument '{v}'")),
        None => Ok(default),
    }
}

fn main_inner(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("mobilenet") if args.len() >= 2 => {
            let dir = PathBuf::from(&args[1]);
            let spec = MobileNetSpec {
                size: arg(args, 2, 224)?,
                width: arg(args, 3, 1.25)?,
                classes: arg(args, 5, 1000)?,
            };
            let samples: usize = arg(args, 4, 64)?;
            let calib = dir.join("calib");
            std::fs::create_dir_all(&calib).map_err(|e| e.to_string())?;
            let n = mobilenet_onnx(&dir.join("mobilenet.onnx"), &spec, 1);
            let per = 3 * spec.size * spec.size;
            for i in 0..samples {
                let image = normal(per, 1000 + i as u64);
                write_npy(
                    &calib.join(format!("{i:03}.npy")),
                    &[1, 3, spec.size, spec.size],
                    &image,
                );
            }
            write_npy(
                &dir.join("inputs.npy"),
                &[8, 3, spec.size, spec.size],
                &normal(8 * per, 99),
            );
            println!(
                "{}: {n} weights, {samples} calibration inputs of 3×{}×{}",
                dir.join("mobilenet.onnx").display(),
                spec.size,
                spec.size
            );
            Ok(())
        }
        Some("digits") if args.len() == 2 => {
            let dir = PathBuf::from(&args[1]);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            digits_onnx(&digits_cnn(), &dir.join("digits.onnx"), &[]);
            let (images, labels) = digits();
            let flat = |v: &[Vec<f32>]| -> Vec<f32> { v.iter().flatten().copied().collect() };
            write_npy(&dir.join("calib.npy"), &[64, 1, 8, 8], &flat(&images[..64]));
            let test = &images[1437..];
            write_npy(&dir.join("test.npy"), &[test.len(), 1, 8, 8], &flat(test));
            let labels: Vec<f32> = labels[1437..].iter().map(|&l| l as f32).collect();
            write_npy(&dir.join("labels.npy"), &[labels.len()], &labels);
            Ok(())
        }
        Some("run") if args.len() == 4 => run(
            Path::new(&args[1]),
            Path::new(&args[2]),
            Path::new(&args[3]),
        ),
        _ => Err(
            "usage: onnx_models mobilenet DIR [SIZE [WIDTH [SAMPLES [CLASSES]]]] \
                  | digits DIR | run MODEL INPUT.npy OUTPUT.npy"
                .into(),
        ),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match main_inner(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
