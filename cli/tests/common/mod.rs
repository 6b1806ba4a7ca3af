//! Inputs the CLI tests build for themselves: temporary directories, `.npy` and safetensors
//! files, and the repository's digits CNN as an ONNX model.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::*;

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

/// A version-1 `.npy` file of `f32`.
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// Deterministic bell-shaped values.
pub fn weights(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            let mut sum = 0.0f32;
            for _ in 0..4 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                sum += (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            }
            sum * 0.5
        })
        .collect()
}

/// The repository's trained digits CNN: (name, dims, values) in file order.
pub fn digits_cnn() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/digits_cnn.bin");
    let bytes = std::fs::read(path).unwrap();
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!(&bytes[..4], b"EXQM");
    let count = u32_at(8);
    let mut at = 12;
    let mut out = Vec::new();
    for _ in 0..count {
        let len = u32_at(at);
        let name = String::from_utf8(bytes[at + 4..at + 4 + len].to_vec()).unwrap();
        at += 4 + len;
        let ndim = u32_at(at);
        let dims: Vec<usize> = (0..ndim).map(|i| u32_at(at + 4 + 4 * i)).collect();
        at += 4 + 4 * ndim;
        let n: usize = dims.iter().product();
        let values = bytes[at..at + 4 * n]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        at += 4 * n;
        out.push((name, dims, values));
    }
    out
}

/// The digits images (pixels / 16) and labels.
pub fn digits() -> (Vec<Vec<f32>>, Vec<usize>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/digits.bin");
    let bytes = std::fs::read(path).unwrap();
    bytes
        .chunks_exact(65)
        .map(|r| {
            (
                r[..64].iter().map(|&p| p as f32 / 16.0).collect(),
                r[64] as usize,
            )
        })
        .unzip()
}

pub fn attr_ints(name: &str, ints: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

pub fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

pub fn node(
    op: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: format!("{op}_{output}"),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

pub fn value_info(name: &str, dims: &[Option<i64>]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: 1,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Some(v) => Value::DimValue(*v),
                                None => Value::DimParam("N".into()),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The digits CNN as an ONNX model (Conv → Relu → Conv → Relu → MaxPool → Conv → Relu →
/// Flatten → Gemm → Relu → Gemm), with a symbolic batch axis. `external` names tensors whose
/// data goes to `weights.bin` beside the model.
pub fn digits_onnx(tensors: &[(String, Vec<usize>, Vec<f32>)], path: &Path, external: &[&str]) {
    let mut initializer = Vec::new();
    let mut blob: Vec<u8> = Vec::new();
    for (name, dims, values) in tensors {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut t = pb::TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: 1,
            ..Default::default()
        };
        if external.contains(&name.as_str()) {
            let entry = |k: &str, v: String| pb::StringStringEntryProto {
                key: k.into(),
                value: v,
            };
            t.data_location = Some(1);
            t.external_data = vec![
                entry("location", "weights.bin".into()),
                entry("offset", blob.len().to_string()),
                entry("length", raw.len().to_string()),
            ];
            blob.extend_from_slice(&raw);
        } else {
            t.raw_data = raw;
        }
        initializer.push(t);
    }
    if !blob.is_empty() {
        std::fs::write(path.with_file_name("weights.bin"), blob).unwrap();
    }
    let conv = |x: &str, l: &str, y: &str| {
        node(
            "Conv",
            &[x, &format!("{l}.weight"), &format!("{l}.bias")],
            y,
            vec![
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("pads", &[1, 1, 1, 1]),
            ],
        )
    };
    let nodes = vec![
        conv("input", "conv1", "c1"),
        node("Relu", &["c1"], "a1", vec![]),
        conv("a1", "conv2", "c2"),
        node("Relu", &["c2"], "a2", vec![]),
        node(
            "MaxPool",
            &["a2"],
            "p2",
            vec![
                attr_ints("kernel_shape", &[2, 2]),
                attr_ints("strides", &[2, 2]),
            ],
        ),
        conv("p2", "conv3", "c3"),
        node("Relu", &["c3"], "a3", vec![]),
        node("Flatten", &["a3"], "f3", vec![attr_int("axis", 1)]),
        node(
            "Gemm",
            &["f3", "fc1.weight", "fc1.bias"],
            "h",
            vec![attr_int("transB", 1)],
        ),
        node("Relu", &["h"], "ha", vec![]),
        node(
            "Gemm",
            &["ha", "fc2.weight", "fc2.bias"],
            "logits",
            vec![attr_int("transB", 1)],
        ),
    ];
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "expquant-cli-tests".into(),
        graph: Some(pb::GraphProto {
            name: "digits".into(),
            node: nodes,
            initializer,
            input: vec![value_info("input", &[None, Some(1), Some(8), Some(8)])],
            output: vec![value_info("logits", &[None, Some(10)])],
            ..Default::default()
        }),
        ..Default::default()
    };
    std::fs::write(path, model.encode_to_vec()).unwrap();
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

/// An f32 initializer with inline data.
pub fn initializer(name: &str, dims: &[i64], values: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 1,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A one-graph model of opset 13.
pub fn write_model(path: &Path, graph: pb::GraphProto) {
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(graph),
        ..Default::default()
    };
    std::fs::write(path, model.encode_to_vec()).unwrap();
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
