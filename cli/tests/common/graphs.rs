//! ONNX models and `.npy` files built from code: the repository's digits CNN and a
//! MobileNet-like ImageNet-class graph with random weights. Shared by the tests and the
//! `onnx_models` example, so nothing here runs the `expquant` binary.

#![allow(dead_code)]

use std::path::Path;

use prost::Message;
use tract_onnx::pb;

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

/// Standard normal-like values (a sum of four uniforms, scaled to unit variance).
pub fn normal(n: usize, seed: u64) -> Vec<f32> {
    weights(n, seed).iter().map(|v| v * 12f32.sqrt()).collect()
}

/// The shape of a MobileNetV2-like graph ([`mobilenet_onnx`]).
#[derive(Debug, Clone, Copy)]
pub struct MobileNetSpec {
    /// Input height and width (the input is `[N, 3, size, size]`).
    pub size: usize,
    /// Channel multiplier (1.0: MobileNetV2's channel counts).
    pub width: f32,
    /// Outputs of the final Gemm.
    pub classes: usize,
}

/// Nodes and initializers of a graph being built, with a running seed for its weights.
struct Builder {
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    next: usize,
    seed: u64,
    weights: usize,
}

impl Builder {
    fn name(&mut self, what: &str) -> String {
        self.next += 1;
        format!("{what}{}", self.next)
    }

    fn values(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        self.seed += 1;
        normal(n, self.seed)
            .iter()
            .map(|v| offset + v * scale)
            .collect()
    }

    fn init(&mut self, name: &str, dims: &[i64], values: &[f32]) {
        self.inits.push(initializer(name, dims, values));
    }

    /// `Conv` (He-initialized, no bias unless `bias`), then an unfolded `BatchNormalization`
    /// unless `bias`, then `Clip(0, 6)` when `relu6`.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        x: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        groups: usize,
        pads: [i64; 4],
        bias: bool,
        relu6: bool,
    ) -> String {
        let id = self.name("conv");
        let fan_in = cin / groups * k * k;
        let w = self.values(cout * fan_in, (2.0 / fan_in as f32).sqrt(), 0.0);
        self.weights += w.len();
        let wname = format!("{id}.weight");
        self.init(
            &wname,
            &[cout as i64, (cin / groups) as i64, k as i64, k as i64],
            &w,
        );
        let mut inputs = vec![x.to_string(), wname];
        if bias {
            let b = self.values(cout, 0.05, 0.05);
            self.init(&format!("{id}.bias"), &[cout as i64], &b);
            inputs.push(format!("{id}.bias"));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let mut attrs = vec![
            attr_ints("kernel_shape", &[k as i64, k as i64]),
            attr_ints("strides", &[stride as i64, stride as i64]),
            attr_ints("pads", &pads),
        ];
        if groups > 1 {
            attrs.push(attr_int("group", groups as i64));
        }
        let mut y = format!("{id}.out");
        self.nodes.push(node("Conv", &refs, &y, attrs));
        if !bias {
            let names = ["scale", "shift", "mean", "var"].map(|p| format!("{id}.bn.{p}"));
            let gamma = self.values(cout, 0.1, 1.0);
            let beta = self.values(cout, 0.1, 0.1);
            let mean = self.values(cout, 0.05, 0.0);
            let var: Vec<f32> = self
                .values(cout, 0.2, 0.0)
                .iter()
                .map(|v| 1.0 + v.abs())
                .collect();
            for (n, v) in names.iter().zip([&gamma, &beta, &mean, &var]) {
                self.init(n, &[cout as i64], v);
            }
            let bn = format!("{id}.bn");
            let mut inputs = vec![y.as_str()];
            inputs.extend(names.iter().map(String::as_str));
            self.nodes
                .push(node("BatchNormalization", &inputs, &bn, vec![]));
            y = bn;
        }
        if relu6 {
            let act = format!("{id}.relu6");
            self.nodes
                .push(node("Clip", &[&y, "relu6.lo", "relu6.hi"], &act, vec![]));
            y = act;
        }
        y
    }
}

/// Channels rounded to a multiple of 8, as MobileNet's width multiplier does.
fn round8(v: f32) -> usize {
    (((v + 4.0) as usize) / 8 * 8).max(8)
}

/// Writes a MobileNetV2-like model with random weights to `path` and returns how many
/// weights its Conv and Gemm layers hold. The stem convolution has its BatchNorm folded
/// (a bias, then Clip as ReLU6); every other convolution is followed by an unfolded
/// BatchNormalization. Inverted residual blocks: 1×1 expansion, 3×3 depthwise (stride 2 with
/// the asymmetric pads `[0, 0, 1, 1]` that TensorFlow exporters write), 1×1 projection, and
/// an `Add` when shapes allow; then a 1×1 convolution, GlobalAveragePool, Reshape and Gemm.
pub fn mobilenet_onnx(path: &Path, spec: &MobileNetSpec, seed: u64) -> usize {
    let mut b = Builder {
        nodes: Vec::new(),
        inits: Vec::new(),
        next: 0,
        seed: seed.wrapping_mul(1000),
        weights: 0,
    };
    b.init("relu6.lo", &[], &[0.0]);
    b.init("relu6.hi", &[], &[6.0]);
    let stages = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    let mut cin = round8(32.0 * spec.width);
    let mut x = b.conv("input", 3, cin, 3, 2, 1, [1, 1, 1, 1], true, true);
    for (t, c, n, s) in stages {
        let cout = round8(c as f32 * spec.width);
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let hidden = cin * t;
            let mut h = x.clone();
            if t != 1 {
                h = b.conv(&h, cin, hidden, 1, 1, 1, [0; 4], false, true);
            }
            let pads = if stride == 2 { [0, 0, 1, 1] } else { [1; 4] };
            h = b.conv(&h, hidden, hidden, 3, stride, hidden, pads, false, true);
            h = b.conv(&h, hidden, cout, 1, 1, 1, [0; 4], false, false);
            if stride == 1 && cin == cout {
                let sum = b.name("add");
                b.nodes.push(node("Add", &[&x, &h], &sum, vec![]));
                h = sum;
            }
            x = h;
            cin = cout;
        }
    }
    let last = round8(1280.0 * spec.width.max(1.0));
    x = b.conv(&x, cin, last, 1, 1, 1, [0; 4], false, true);
    b.nodes
        .push(node("GlobalAveragePool", &[&x], "pooled", vec![]));
    b.inits.push(pb::TensorProto {
        name: "flat.shape".into(),
        dims: vec![2],
        data_type: pb::tensor_proto::DataType::Int64 as i32,
        raw_data: [0i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    });
    b.nodes
        .push(node("Reshape", &["pooled", "flat.shape"], "flat", vec![]));
    let fc = b.values(spec.classes * last, (1.0 / last as f32).sqrt(), 0.0);
    b.weights += fc.len();
    let fc_bias = b.values(spec.classes, 0.01, 0.0);
    b.init("fc.weight", &[spec.classes as i64, last as i64], &fc);
    b.init("fc.bias", &[spec.classes as i64], &fc_bias);
    b.nodes.push(node(
        "Gemm",
        &["flat", "fc.weight", "fc.bias"],
        "logits",
        vec![attr_int("transB", 1)],
    ));
    let size = spec.size as i64;
    let graph = pb::GraphProto {
        name: "mobilenet_like".into(),
        node: b.nodes,
        initializer: b.inits,
        input: vec![value_info(
            "input",
            &[None, Some(3), Some(size), Some(size)],
        )],
        output: vec![value_info("logits", &[None, Some(spec.classes as i64)])],
        ..Default::default()
    };
    write_model(path, graph);
    b.weights
}
