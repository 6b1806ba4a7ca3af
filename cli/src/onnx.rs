//! ONNX models: which initializers are layer weights, reading them (inline or external
//! data), writing dequantized weights and corrected biases back, and running the model in
//! tract to measure each layer's input statistics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prost::Message;
use tract_onnx::pb::{self, tensor_proto::DataType, TensorProto};
use tract_onnx::prelude::*;

use crate::engine::Moments;
use crate::error::{Context, Error, Result};

/// The operator a weight feeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// `Conv`: kernel `[out, in/groups, k...]`, viewed as `out × (in/groups · k...)`.
    Conv {
        /// The `group` attribute.
        groups: usize,
    },
    /// `Gemm` input B.
    Gemm {
        /// The `transA` attribute.
        trans_a: bool,
        /// The `beta` attribute (scales the bias C).
        beta: f32,
    },
    /// `MatMul` input 1, `[in, out]`.
    MatMul,
}

/// One quantizable layer.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The weight initializer's name.
    pub weight: String,
    /// Index of the node in the graph.
    pub node: usize,
    /// The operator.
    pub op: Op,
    /// The activation input's name.
    pub input: String,
    /// The bias initializer's name, if the node has one.
    pub bias: Option<String>,
    /// Output channels (matrix rows).
    pub rows: usize,
    /// Matrix columns.
    pub cols: usize,
    /// Whether the stored layout is `[in, out]` and must be transposed to `rows × cols`.
    pub transposed: bool,
    /// How many nodes read the weight (statistics are only used when one does).
    pub consumers: usize,
}

/// An ONNX model held as its protobuf.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    /// The parsed model.
    pub proto: pb::ModelProto,
    dir: PathBuf,
    index: HashMap<String, usize>,
}

fn attr<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// Element count of `dims`, or `None` for negative or overflowing dimensions.
fn count(dims: &[i64]) -> Option<usize> {
    dims.iter().try_fold(1usize, |n, &d| {
        usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
    })
}

/// The name of an ONNX data type, for messages.
pub fn dtype_name(data_type: i32) -> String {
    DataType::try_from(data_type)
        .map(|d| format!("{d:?}").to_lowercase())
        .unwrap_or_else(|_| format!("type {data_type}"))
}

fn is_float(data_type: i32) -> bool {
    data_type == DataType::Float as i32
        || data_type == DataType::Float16 as i32
        || data_type == DataType::Bfloat16 as i32
        || data_type == DataType::Double as i32
}

impl OnnxModel {
    /// Reads and decodes a model file.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).context(format!("cannot read {}", path.display()))?;
        let proto = pb::ModelProto::decode(bytes.as_slice())
            .context(format!("{}: not an ONNX model", path.display()))?;
        if proto.graph.is_none() {
            bail!("{}: the ONNX model has no graph", path.display());
        }
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut model = OnnxModel {
            proto,
            dir,
            index: HashMap::new(),
        };
        model.reindex();
        Ok(model)
    }

    fn reindex(&mut self) {
        self.index = self
            .graph()
            .initializer
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
    }

    /// The main graph.
    pub fn graph(&self) -> &pb::GraphProto {
        self.proto.graph.as_ref().expect("checked at open")
    }

    fn graph_mut(&mut self) -> &mut pb::GraphProto {
        self.proto.graph.as_mut().expect("checked at open")
    }

    /// The initializer named `name`.
    pub fn initializer(&self, name: &str) -> Option<&TensorProto> {
        self.index.get(name).map(|&i| &self.graph().initializer[i])
    }

    /// Every initializer's name, dims and data type, in file order.
    pub fn initializers(&self) -> Vec<(String, Vec<usize>, i32)> {
        self.graph()
            .initializer
            .iter()
            .map(|t| {
                let dims = t.dims.iter().map(|&d| d.max(0) as usize).collect();
                (t.name.clone(), dims, t.data_type)
            })
            .collect()
    }

    /// The Conv/Gemm/MatMul weights, keyed by initializer name, and for every other float
    /// initializer with two or more dimensions, why it is not one.
    pub fn layers(&self) -> Result<HashMap<String, Layer>> {
        let mut layers: HashMap<String, Layer> = HashMap::new();
        let mut consumers: HashMap<&str, usize> = HashMap::new();
        for node in &self.graph().node {
            for input in &node.input {
                *consumers.entry(input.as_str()).or_default() += 1;
            }
        }
        for (at, node) in self.graph().node.iter().enumerate() {
            let weight = match node.input.get(1) {
                Some(w) if self.index.contains_key(w) => w,
                _ => continue,
            };
            let init = self.initializer(weight).expect("indexed");
            if !is_float(init.data_type) {
                continue;
            }
            let dims: Vec<usize> = init.dims.iter().map(|&d| d.max(0) as usize).collect();
            let input = node.input[0].clone();
            let bias = node
                .input
                .get(2)
                .filter(|b| !b.is_empty() && self.index.contains_key(*b))
                .cloned();
            let layer = match node.op_type.as_str() {
                "Conv" if dims.len() >= 3 => {
                    let groups = attr(node, "group").map_or(1, |a| a.i).max(1) as usize;
                    Layer {
                        weight: weight.clone(),
                        node: at,
                        op: Op::Conv { groups },
                        input,
                        bias,
                        rows: dims[0],
                        cols: dims[1..].iter().product(),
                        transposed: false,
                        consumers: 0,
                    }
                }
                "Gemm" if dims.len() == 2 => {
                    let trans_b = attr(node, "transB").is_some_and(|a| a.i != 0);
                    let trans_a = attr(node, "transA").is_some_and(|a| a.i != 0);
                    let beta = attr(node, "beta").map_or(1.0, |a| a.f);
                    let (rows, cols) = if trans_b {
                        (dims[0], dims[1])
                    } else {
                        (dims[1], dims[0])
                    };
                    Layer {
                        weight: weight.clone(),
                        node: at,
                        op: Op::Gemm { trans_a, beta },
                        input,
                        bias,
                        rows,
                        cols,
                        transposed: !trans_b,
                        consumers: 0,
                    }
                }
                "MatMul" if dims.len() == 2 => Layer {
                    weight: weight.clone(),
                    node: at,
                    op: Op::MatMul,
                    input,
                    bias: None,
                    rows: dims[1],
                    cols: dims[0],
                    transposed: true,
                    consumers: 0,
                },
                _ => continue,
            };
            layers.entry(weight.clone()).or_insert(layer);
        }
        for layer in layers.values_mut() {
            layer.consumers = consumers.get(layer.weight.as_str()).copied().unwrap_or(0);
        }
        Ok(layers)
    }

    /// An initializer's values as `f32`, from inline or external data.
    pub fn load_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self
            .initializer(name)
            .ok_or_else(|| Error::msg(format!("no initializer '{name}'")))?;
        let n = count(&t.dims)
            .ok_or_else(|| Error::msg(format!("initializer '{name}' has bad dims {:?}", t.dims)))?;
        let raw;
        let bytes: &[u8] =
            if t.data_location == Some(pb::tensor_proto::DataLocation::External as i32) {
                raw = self.external(t)?;
                &raw
            } else {
                &t.raw_data
            };
        let dt = t.data_type;
        let values: Vec<f32> = if !bytes.is_empty() {
            let width = match DataType::try_from(dt) {
                Ok(DataType::Float) => 4,
                Ok(DataType::Float16) | Ok(DataType::Bfloat16) => 2,
                Ok(DataType::Double) => 8,
                _ => bail!(
                    "initializer '{name}' has data type {}, expected a float type",
                    dtype_name(dt)
                ),
            };
            if bytes.len() != n * width {
                bail!(
                    "initializer '{name}' holds {} bytes, its dims {:?} need {}",
                    bytes.len(),
                    t.dims,
                    n * width
                );
            }
            match width {
                4 => bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                8 => bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8")) as f32)
                    .collect(),
                _ if dt == DataType::Float16 as i32 => bytes
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                _ => bytes
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
            }
        } else if dt == DataType::Float as i32 {
            t.float_data.clone()
        } else if dt == DataType::Double as i32 {
            t.double_data.iter().map(|&v| v as f32).collect()
        } else if dt == DataType::Float16 as i32 {
            // Half values are stored in int32_data, one per entry, as their bit patterns.
            t.int32_data
                .iter()
                .map(|&v| half::f16::from_bits(v as u16).to_f32())
                .collect()
        } else if dt == DataType::Bfloat16 as i32 {
            t.int32_data
                .iter()
                .map(|&v| half::bf16::from_bits(v as u16).to_f32())
                .collect()
        } else {
            bail!(
                "initializer '{name}' has data type {}, expected a float type",
                dtype_name(dt)
            )
        };
        if values.len() != n {
            bail!(
                "initializer '{name}' holds {} values, its dims {:?} need {n}",
                values.len(),
                t.dims
            );
        }
        Ok(values)
    }

    fn external(&self, t: &TensorProto) -> Result<Vec<u8>> {
        let get = |key: &str| {
            t.external_data
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.value.as_str())
        };
        let location = get("location").ok_or_else(|| {
            Error::msg(format!(
                "initializer '{}' has external data without a location",
                t.name
            ))
        })?;
        let rel = Path::new(location);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            bail!(
                "initializer '{}': external data location '{location}' must be a relative path inside the model's directory",
                t.name
            );
        }
        let path = self.dir.join(rel);
        let parse = |key: &str| -> Result<Option<u64>> {
            get(key)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| {
                        Error::msg(format!(
                            "initializer '{}': bad external {key} '{v}'",
                            t.name
                        ))
                    })
                })
                .transpose()
        };
        let offset = parse("offset")?.unwrap_or(0);
        let length = parse("length")?;
        let mut file = std::fs::File::open(&path).context(format!(
            "initializer '{}': cannot open external data {}",
            t.name,
            path.display()
        ))?;
        use std::io::{Read, Seek, SeekFrom};
        let file_len = file.metadata()?.len();
        let length = length.unwrap_or(file_len.saturating_sub(offset));
        if offset.checked_add(length).is_none_or(|end| end > file_len) {
            bail!(
                "initializer '{}': external data {}..{} lies past the end of {} ({file_len} bytes)",
                t.name,
                offset,
                offset.saturating_add(length),
                path.display()
            );
        }
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = vec![0u8; length as usize];
        file.read_exact(&mut bytes)?;
        Ok(bytes)
    }

    /// Replaces an initializer's values (same dims), keeping its float data type and storing
    /// the data inline.
    pub fn replace(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let i = *self
            .index
            .get(name)
            .ok_or_else(|| Error::msg(format!("no initializer '{name}'")))?;
        let t = &mut self.graph_mut().initializer[i];
        let dt = t.data_type;
        let raw: Vec<u8> = if dt == DataType::Float16 as i32 {
            values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect()
        } else if dt == DataType::Bfloat16 as i32 {
            values
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect()
        } else if dt == DataType::Double as i32 {
            values
                .iter()
                .flat_map(|&v| (v as f64).to_le_bytes())
                .collect()
        } else {
            t.data_type = DataType::Float as i32;
            values.iter().flat_map(|&v| v.to_le_bytes()).collect()
        };
        t.raw_data = raw;
        t.float_data.clear();
        t.double_data.clear();
        t.int32_data.clear();
        t.external_data.clear();
        t.data_location = None;
        Ok(())
    }

    /// Adds `correction` (scaled by `1/beta` for Gemm) to the layer's bias, creating a bias
    /// when the node has none (for MatMul, an `Add` node after it).
    pub fn correct_bias(&mut self, layer: &Layer, correction: &[f32]) -> Result<()> {
        let scale = match layer.op {
            Op::Gemm { beta, .. } if beta != 0.0 => 1.0 / beta,
            Op::Gemm { .. } => bail!(
                "Gemm '{}' has beta = 0, so its bias cannot carry a correction",
                layer.weight
            ),
            _ => 1.0,
        };
        if let Some(bias) = &layer.bias {
            let mut values = self.load_f32(bias)?;
            if values.len() != correction.len() {
                // A broadcast bias (one value for all outputs) cannot hold a per-row correction.
                bail!(
                    "bias '{bias}' holds {} values, layer '{}' has {} outputs",
                    values.len(),
                    layer.weight,
                    correction.len()
                );
            }
            for (b, c) in values.iter_mut().zip(correction) {
                *b += c * scale;
            }
            return self.replace(bias, &values);
        }
        let at = self
            .graph()
            .node
            .iter()
            .position(|n| n.input.get(1) == Some(&layer.weight))
            .ok_or_else(|| Error::msg(format!("no node reads '{}'", layer.weight)))?;
        if self.graph().node[at]
            .input
            .get(2)
            .is_some_and(|b| !b.is_empty())
        {
            bail!(
                "the bias of the layer reading '{}' is computed, not a constant, so its correction cannot be written",
                layer.weight
            );
        }
        let name = format!("{}.expquant_bias", layer.weight);
        let data_type = self
            .initializer(&layer.weight)
            .map_or(DataType::Float as i32, |t| t.data_type);
        let tensor = TensorProto {
            name: name.clone(),
            dims: vec![correction.len() as i64],
            data_type,
            ..Default::default()
        };
        let graph = self.graph_mut();
        graph.initializer.push(tensor);
        self.reindex();
        let values: Vec<f32> = correction.iter().map(|c| c * scale).collect();
        self.replace(&name, &values)?;
        let graph = self.graph_mut();
        match layer.op {
            Op::Conv { .. } | Op::Gemm { .. } => {
                let node = &mut graph.node[at];
                node.input.truncate(2);
                node.input.push(name);
            }
            Op::MatMul => {
                let node = &mut graph.node[at];
                let out = node.output[0].clone();
                let pre = format!("{out}.expquant_pre_bias");
                node.output[0] = pre.clone();
                let add = pb::NodeProto {
                    input: vec![pre, name],
                    output: vec![out],
                    name: format!("{}.expquant_bias_add", layer.weight),
                    op_type: "Add".into(),
                    ..Default::default()
                };
                graph.node.insert(at + 1, add);
            }
        }
        Ok(())
    }

    /// The model as protobuf bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.proto.encode_to_vec()
    }

    /// The graph's real inputs (not initializers): name and dims (`None` where symbolic).
    pub fn inputs(&self) -> Vec<(String, Vec<Option<usize>>)> {
        use pb::tensor_shape_proto::dimension::Value;
        self.graph()
            .input
            .iter()
            .filter(|i| !self.index.contains_key(&i.name))
            .map(|i| {
                let dims = i
                    .r#type
                    .as_ref()
                    .and_then(|t| t.value.as_ref())
                    .and_then(|v| match v {
                        pb::type_proto::Value::TensorType(t) => t.shape.as_ref(),
                    })
                    .map(|s| {
                        s.dim
                            .iter()
                            .map(|d| match d.value {
                                Some(Value::DimValue(v)) if v > 0 => Some(v as usize),
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (i.name.clone(), dims)
            })
            .collect()
    }

    /// Runs the model on every sample and returns, for each of `layers`, the statistics of
    /// its activation input in the library's column layout.
    pub fn input_moments(&self, samples: &[Sample], layers: &[&Layer]) -> Result<Vec<Moments>> {
        let first = samples
            .first()
            .ok_or_else(|| Error::msg("no calibration samples"))?;
        let mut wanted: Vec<String> = Vec::new();
        for l in layers {
            if !wanted.contains(&l.input) {
                wanted.push(l.input.clone());
            }
        }
        let plan = self
            .plan(&first.shape, &wanted)
            .map_err(|e| Error::msg(format!("tract could not prepare the model: {e:#}")))?;
        let mut acc: Vec<Accumulator> = wanted.iter().map(|_| Accumulator::default()).collect();
        for sample in samples {
            let input =
                tract_ndarray::ArrayD::from_shape_vec(sample.shape.clone(), sample.data.clone())
                    .map_err(|e| {
                        Error::msg(format!("calibration sample '{}': {e}", sample.name))
                    })?;
            let outputs = plan
                .run(tvec!(Tensor::from(input).into()))
                .map_err(|e| Error::msg(format!("tract failed on '{}': {e:#}", sample.name)))?;
            for (i, out) in outputs.iter().enumerate() {
                let view = out
                    .to_plain_array_view::<f32>()
                    .map_err(|e| Error::msg(format!("activation '{}': {e}", wanted[i])))?;
                let layer = layers
                    .iter()
                    .find(|l| l.input == wanted[i])
                    .expect("wanted");
                acc[i].add(
                    layer,
                    view.shape(),
                    view.as_slice().ok_or_else(|| {
                        Error::msg(format!("activation '{}' is not contiguous", wanted[i]))
                    })?,
                )?;
            }
        }
        layers
            .iter()
            .map(|l| {
                let i = wanted.iter().position(|w| *w == l.input).expect("wanted");
                acc[i].moments(l)
            })
            .collect()
    }

    fn plan(
        &self,
        shape: &[usize],
        outputs: &[String],
    ) -> TractResult<std::sync::Arc<TypedRunnableModel>> {
        let dir = self.dir.to_str();
        let mut model = tract_onnx::onnx().parse(&self.proto, dir)?.model;
        model.set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape))?;
        model.select_outputs_by_name(outputs)?;
        model.into_optimized()?.into_runnable()
    }
}

/// One calibration input.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Where it came from, for messages.
    pub name: String,
    /// Its shape (with a batch axis of 1 when the model has one).
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// Per-channel sums of an activation over every position that a layer's weights see.
#[derive(Debug, Default)]
struct Accumulator {
    sum: Vec<f64>,
    sq: Vec<f64>,
    n: u64,
}

impl Accumulator {
    fn add(&mut self, layer: &Layer, shape: &[usize], data: &[f32]) -> Result<()> {
        // Channel axis and how values map to it.
        let (channels, inner, outer) = match layer.op {
            // [N, C, spatial...]: channel-major inside each batch item.
            Op::Conv { .. } => {
                if shape.len() < 3 {
                    bail!("Conv input '{}' has shape {shape:?}", layer.input);
                }
                (shape[1], shape[2..].iter().product::<usize>(), shape[0])
            }
            Op::Gemm { trans_a: true, .. } => {
                if shape.len() != 2 {
                    bail!("Gemm input '{}' has shape {shape:?}", layer.input);
                }
                (shape[0], shape[1], 1)
            }
            Op::Gemm { .. } | Op::MatMul => {
                let k = *shape
                    .last()
                    .ok_or_else(|| Error::msg("scalar activation"))?;
                (k, 1, data.len() / k.max(1))
            }
        };
        if self.sum.is_empty() {
            self.sum = vec![0.0; channels];
            self.sq = vec![0.0; channels];
        }
        if self.sum.len() != channels || channels * inner * outer != data.len() {
            bail!(
                "activation '{}' changed shape between samples ({shape:?})",
                layer.input
            );
        }
        match layer.op {
            Op::Gemm { trans_a: false, .. } | Op::MatMul => {
                for row in data.chunks_exact(channels) {
                    for (c, &v) in row.iter().enumerate() {
                        self.sum[c] += v as f64;
                        self.sq[c] += (v as f64) * (v as f64);
                    }
                }
            }
            _ => {
                for item in data.chunks_exact(channels * inner) {
                    for (c, plane) in item.chunks_exact(inner).enumerate() {
                        let (s, q) = plane.iter().fold((0.0f64, 0.0f64), |(s, q), &v| {
                            (s + v as f64, q + (v as f64) * (v as f64))
                        });
                        self.sum[c] += s;
                        self.sq[c] += q;
                    }
                }
            }
        }
        self.n += (inner * outer) as u64;
        Ok(())
    }

    /// Per-channel means laid out as the layer's columns (`cols`, or `rows × cols` for a
    /// grouped convolution, where each row sees its group's channels).
    fn moments(&self, layer: &Layer) -> Result<Moments> {
        let n = self.n.max(1) as f64;
        let mean: Vec<f32> = self.sum.iter().map(|s| (s / n) as f32).collect();
        let sq: Vec<f32> = self.sq.iter().map(|s| (s / n) as f32).collect();
        let channels = mean.len();
        match layer.op {
            Op::Conv { groups } => {
                let per_group = channels / groups.max(1);
                if per_group == 0
                    || !layer.cols.is_multiple_of(per_group)
                    || per_group * groups != channels
                {
                    bail!(
                        "Conv '{}': input has {channels} channels, weight expects {} groups of {}",
                        layer.weight,
                        groups,
                        layer.cols
                    );
                }
                let taps = layer.cols / per_group;
                let expand = |v: &[f32], group: usize| -> Vec<f32> {
                    v[group * per_group..(group + 1) * per_group]
                        .iter()
                        .flat_map(|&x| std::iter::repeat_n(x, taps))
                        .collect()
                };
                if groups == 1 {
                    Ok(Moments {
                        mean: expand(&mean, 0),
                        sq_mean: expand(&sq, 0),
                    })
                } else {
                    let rows_per_group = layer.rows / groups;
                    let mut m = Vec::with_capacity(layer.rows * layer.cols);
                    let mut s = Vec::with_capacity(layer.rows * layer.cols);
                    for r in 0..layer.rows {
                        let g = (r / rows_per_group.max(1)).min(groups - 1);
                        m.extend(expand(&mean, g));
                        s.extend(expand(&sq, g));
                    }
                    Ok(Moments {
                        mean: m,
                        sq_mean: s,
                    })
                }
            }
            _ => {
                if channels != layer.cols {
                    bail!(
                        "layer '{}' expects {} inputs, its activation '{}' has {channels}",
                        layer.weight,
                        layer.cols,
                        layer.input
                    );
                }
                Ok(Moments { mean, sq_mean: sq })
            }
        }
    }
}

/// `values` (in the initializer's layout) as the layer's `rows × cols` matrix.
pub fn to_matrix(layer: &Layer, values: &[f32]) -> Vec<f32> {
    if !layer.transposed {
        return values.to_vec();
    }
    // Stored `[cols, rows]`.
    let mut out = vec![0.0; values.len()];
    for (j, row) in values.chunks_exact(layer.rows).enumerate() {
        for (r, &v) in row.iter().enumerate() {
            out[r * layer.cols + j] = v;
        }
    }
    out
}

/// The inverse of [`to_matrix`].
pub fn from_matrix(layer: &Layer, matrix: &[f32]) -> Vec<f32> {
    if !layer.transposed {
        return matrix.to_vec();
    }
    let mut out = vec![0.0; matrix.len()];
    for (r, row) in matrix.chunks_exact(layer.cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            out[j * layer.rows + r] = v;
        }
    }
    out
}
