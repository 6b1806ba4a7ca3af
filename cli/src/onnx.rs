//! ONNX models: which initializers are layer weights, reading them (inline or external
//! data), writing dequantized weights and corrected biases back, and running the model in
//! tract to measure each layer's input statistics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prost::Message;
use tract_onnx::pb::{self, tensor_proto::DataType, TensorProto};
use tract_onnx::prelude::*;

use crate::engine::{Covariance, Moments};
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
    /// For a 1-D or 2-D convolution, how its kernel slides (the im2col patches of the input
    /// covariance need it); `None` for other layers.
    pub geometry: Option<Geometry>,
}

/// How a 2-D convolution's kernel slides over its input (a 1-D convolution is a 2-D one of
/// height 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Vertical and horizontal strides.
    pub strides: [usize; 2],
    /// Vertical and horizontal dilations.
    pub dilations: [usize; 2],
    /// The padding rule.
    pub pads: Pads,
}

/// The `pads` / `auto_pad` attributes of a convolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pads {
    /// Zeros added at the top, left, bottom and right.
    Explicit([usize; 4]),
    /// `SAME_UPPER`: output size `ceil(in / stride)`, an odd pad at the end.
    SameUpper,
    /// `SAME_LOWER`: output size `ceil(in / stride)`, an odd pad at the start.
    SameLower,
}

impl Geometry {
    /// Reads a convolution's attributes; `None` for 3-D and higher convolutions or
    /// attributes that do not describe a 1-D or 2-D kernel.
    fn of(node: &pb::NodeProto, kernel_dims: &[usize]) -> Option<Geometry> {
        let ints = |name: &str| -> Option<Vec<usize>> {
            attr(node, name).map(|a| a.ints.iter().map(|&v| v.max(0) as usize).collect())
        };
        let spatial = kernel_dims.len();
        if !(1..=2).contains(&spatial) {
            return None;
        }
        // A 1-D convolution runs over the last axis, with a height of 1.
        let two = |v: Vec<usize>, fill: usize| -> Option<[usize; 2]> {
            match v.as_slice() {
                [w] if spatial == 1 => Some([fill, *w]),
                [h, w] if spatial == 2 => Some([*h, *w]),
                _ => None,
            }
        };
        let kernel = two(kernel_dims.to_vec(), 1)?;
        let strides = two(ints("strides").unwrap_or(vec![1; spatial]), 1)?;
        let dilations = two(ints("dilations").unwrap_or(vec![1; spatial]), 1)?;
        if strides.contains(&0) || dilations.contains(&0) {
            return None;
        }
        let auto = attr(node, "auto_pad").map(|a| String::from_utf8_lossy(&a.s).into_owned());
        let pads = match auto.as_deref() {
            Some("SAME_UPPER") => Pads::SameUpper,
            Some("SAME_LOWER") => Pads::SameLower,
            Some("VALID") => Pads::Explicit([0; 4]),
            Some("NOTSET") | Some("") | None => {
                let p = ints("pads").unwrap_or(vec![0; 2 * spatial]);
                match p.as_slice() {
                    [l, r] if spatial == 1 => Pads::Explicit([0, *l, 0, *r]),
                    [t, l, b, r] if spatial == 2 => Pads::Explicit([*t, *l, *b, *r]),
                    _ => return None,
                }
            }
            Some(_) => return None,
        };
        Some(Geometry {
            kernel,
            strides,
            dilations,
            pads,
        })
    }

    /// Pads before and after along one axis of length `len` (`axis`: 0 height, 1 width).
    fn pad(&self, axis: usize, len: usize) -> (usize, usize) {
        let span = (self.kernel[axis] - 1) * self.dilations[axis] + 1;
        let same = || {
            let out = len.div_ceil(self.strides[axis]);
            ((out.max(1) - 1) * self.strides[axis] + span).saturating_sub(len)
        };
        match self.pads {
            Pads::Explicit(p) => (p[axis], p[axis + 2]),
            Pads::SameUpper => {
                let total = same();
                (total / 2, total - total / 2)
            }
            Pads::SameLower => {
                let total = same();
                (total - total / 2, total / 2)
            }
        }
    }
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
                        geometry: Geometry::of(node, &dims[2..]),
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
                        geometry: None,
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
                    geometry: None,
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
    /// its activation input in the library's column layout; with `covariance`, also each
    /// layer's input covariance (im2col patches for 1-D and 2-D convolutions, one matrix per
    /// group; other convolutions get none), accumulated on up to `threads` threads.
    pub fn input_moments(
        &self,
        samples: &[Sample],
        layers: &[&Layer],
        covariance: bool,
        threads: usize,
    ) -> Result<Vec<Moments>> {
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
        let mut covs: Vec<Option<Covariance>> = layers
            .iter()
            .map(|l| covariance.then(|| new_covariance(l)).transpose())
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .map(Option::flatten)
            .collect();
        for sample in samples {
            let input =
                tract_ndarray::ArrayD::from_shape_vec(sample.shape.clone(), sample.data.clone())
                    .map_err(|e| {
                        Error::msg(format!("calibration sample '{}': {e}", sample.name))
                    })?;
            let outputs = plan
                .run(tvec!(Tensor::from(input).into()))
                .map_err(|e| Error::msg(format!("tract failed on '{}': {e:#}", sample.name)))?;
            let mut views: Vec<(Vec<usize>, &[f32])> = Vec::with_capacity(outputs.len());
            for (i, out) in outputs.iter().enumerate() {
                let slice = out
                    .to_plain_array_view::<f32>()
                    .map_err(|e| Error::msg(format!("activation '{}': {e}", wanted[i])))?
                    .to_slice()
                    .ok_or_else(|| {
                        Error::msg(format!("activation '{}' is not contiguous", wanted[i]))
                    })?;
                views.push((out.shape().to_vec(), slice));
            }
            for (i, (shape, data)) in views.iter().enumerate() {
                let layer = layers
                    .iter()
                    .find(|l| l.input == wanted[i])
                    .expect("wanted");
                acc[i].add(layer, shape, data)?;
            }
            // Each layer's covariance is its own; workers take the layers in turn.
            let view_of = |l: &Layer| {
                let i = wanted.iter().position(|w| *w == l.input).expect("wanted");
                (&views[i].0, views[i].1)
            };
            let work: Vec<std::sync::Mutex<(&Layer, &mut Covariance)>> = layers
                .iter()
                .zip(covs.iter_mut())
                .filter_map(|(l, c)| c.as_mut().map(|c| std::sync::Mutex::new((*l, c))))
                .collect();
            let next = std::sync::atomic::AtomicUsize::new(0);
            let failure: std::sync::Mutex<Option<Error>> = std::sync::Mutex::new(None);
            std::thread::scope(|scope| {
                for _ in 0..threads.clamp(1, work.len().max(1)) {
                    scope.spawn(|| loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = work.get(k) else { break };
                        let mut item = item.lock().expect("each item is taken once");
                        let (layer, cov) = &mut *item;
                        let (shape, data) = view_of(layer);
                        if let Err(e) = add_rows(cov, layer, shape, data) {
                            failure
                                .lock()
                                .expect("no worker panics holding it")
                                .get_or_insert(e);
                            next.store(work.len(), std::sync::atomic::Ordering::Relaxed);
                        }
                    });
                }
            });
            if let Some(e) = failure.into_inner().expect("workers have finished") {
                return Err(e);
            }
        }
        layers
            .iter()
            .zip(covs)
            .map(|(l, cov)| {
                let i = wanted.iter().position(|w| *w == l.input).expect("wanted");
                let mut m = acc[i].moments(l)?;
                m.covariance = cov;
                Ok(m)
            })
            .collect()
    }

    /// Data-free statistics of a layer whose input is `BatchNormalization → Relu` or
    /// `BatchNormalization → Clip(0, c)` with constant BatchNorm parameters: taking the
    /// normalized values as normal with mean `beta` and spread `gamma` per channel, the
    /// activation's mean and mean square follow in closed form. `None` when the graph has no
    /// such pattern before the layer.
    pub fn data_free_moments(&self, layer: &Layer) -> Result<Option<Moments>> {
        let graph = self.graph();
        let producer = |name: &str| {
            graph
                .node
                .iter()
                .find(|n| n.output.iter().any(|o| o == name))
        };
        let Some(act) = producer(&layer.input) else {
            return Ok(None);
        };
        let scalar = |name: Option<&String>| -> Result<Option<f32>> {
            match name.filter(|n| !n.is_empty()) {
                None => Ok(None),
                Some(n) if self.index.contains_key(n.as_str()) => {
                    let v = self.load_f32(n)?;
                    Ok((v.len() == 1).then(|| v[0]))
                }
                // A computed bound: not a pattern read here.
                Some(_) => Ok(Some(f32::NAN)),
            }
        };
        let clip = match act.op_type.as_str() {
            "Relu" => f64::INFINITY,
            "Clip" => {
                // Opset 11 on: bounds as inputs; before: as attributes.
                let lo = scalar(act.input.get(1))?.or(attr(act, "min").map(|a| a.f));
                let hi = scalar(act.input.get(2))?.or(attr(act, "max").map(|a| a.f));
                match (lo, hi) {
                    (Some(0.0), hi) => match hi {
                        None => f64::INFINITY,
                        Some(h) if h.is_finite() && h > 0.0 => f64::from(h),
                        Some(h) if h == f32::INFINITY => f64::INFINITY,
                        Some(_) => return Ok(None),
                    },
                    _ => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        let Some(bn) = act
            .input
            .first()
            .and_then(|x| producer(x))
            .filter(|n| n.op_type == "BatchNormalization")
        else {
            return Ok(None);
        };
        let (Some(scale), Some(shift)) = (bn.input.get(1), bn.input.get(2)) else {
            return Ok(None);
        };
        if !self.index.contains_key(scale.as_str()) || !self.index.contains_key(shift.as_str()) {
            return Ok(None);
        }
        let (gamma, beta) = (self.load_f32(scale)?, self.load_f32(shift)?);
        if gamma.len() != beta.len() {
            bail!(
                "BatchNormalization '{}': scale has {} values, bias {}",
                bn.name,
                gamma.len(),
                beta.len()
            );
        }
        let mut mean = Vec::with_capacity(beta.len());
        let mut sq = Vec::with_capacity(beta.len());
        for (&g, &b) in gamma.iter().zip(&beta) {
            let (m, q) = crate::engine::relu_moments(f64::from(b), f64::from(g), clip)
                .map_err(|e| e.context(format!("BatchNormalization '{}'", bn.name)))?;
            mean.push(m as f32);
            sq.push(q as f32);
        }
        layout_moments(layer, mean, sq).map(Some)
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

    /// Per-channel means laid out as the layer's columns.
    fn moments(&self, layer: &Layer) -> Result<Moments> {
        let n = self.n.max(1) as f64;
        let mean: Vec<f32> = self.sum.iter().map(|s| (s / n) as f32).collect();
        let sq: Vec<f32> = self.sq.iter().map(|s| (s / n) as f32).collect();
        layout_moments(layer, mean, sq)
    }
}

/// Per-channel means and mean squares laid out as the layer's columns (`cols`, or
/// `rows × cols` for a grouped convolution, where each row sees its group's channels).
fn layout_moments(layer: &Layer, mean: Vec<f32>, sq: Vec<f32>) -> Result<Moments> {
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
                    covariance: None,
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
                    covariance: None,
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
            Ok(Moments {
                mean,
                sq_mean: sq,
                covariance: None,
            })
        }
    }
}

/// The largest input covariance measured for one layer; a wider layer is quantized with
/// bias correction only, so one huge layer cannot exhaust memory.
pub const MAX_COVARIANCE_BYTES: usize = 1 << 30;

/// An empty covariance for a layer's inputs, or `None` for a convolution whose patches are
/// not read here (3-D and higher) and for a layer whose covariance would exceed
/// [`MAX_COVARIANCE_BYTES`].
fn new_covariance(layer: &Layer) -> Result<Option<Covariance>> {
    let groups = match layer.op {
        Op::Conv { groups } if layer.geometry.is_some() => groups,
        Op::Conv { .. } => return Ok(None),
        Op::Gemm { .. } | Op::MatMul => 1,
    };
    let bytes = layer
        .cols
        .checked_mul(layer.cols)
        .and_then(|n| n.checked_mul(groups))
        .and_then(|n| n.checked_mul(8));
    if bytes.is_none_or(|b| b > MAX_COVARIANCE_BYTES) {
        return Ok(None);
    }
    Covariance::new(groups, layer.cols)
        .map(Some)
        .map_err(|e| Error::from(e).context(format!("covariance of '{}'", layer.weight)))
}

/// Values converted per [`Covariance::add_rows`] call: large enough for its matrix products,
/// small enough to keep the patch buffer in cache.
const PATCH_VALUES: usize = 1 << 18;

/// Rows per [`Covariance::add_rows`] call at least, so that grouped convolutions (long rows
/// of short groups) still hand the library whole row blocks.
const MIN_ROWS: usize = 256;

/// Output positions filled together: their rows stay in cache while every `(in, kh, kw)`
/// column is written, and the reads for one column are neighbours in one input row.
const TILE: usize = 32;

/// Fills `out` (`n` rows of `row_len`, zeroed) with the im2col patches of output positions
/// `first..first + n` of one `[C, H, W]` input; `pads` are the top and left pads. Entries
/// that fall on padding stay zero.
#[allow(clippy::too_many_arguments)]
fn im2col_rows(
    item: &[f32],
    g: &Geometry,
    [h, w]: [usize; 2],
    [pt, pl]: [usize; 2],
    ow: usize,
    first: usize,
    out: &mut [f32],
    row_len: usize,
) {
    let [kh, kw] = g.kernel;
    let [sy, sx] = g.strides;
    let channels = row_len / (kh * kw);
    let plane = h * w;
    let n = out.len() / row_len;
    let mut t = 0;
    while t < n {
        // A run of positions inside one output row.
        let (oy, ox0) = ((first + t) / ow, (first + t) % ow);
        let len = (ow - ox0).min(n - t).min(TILE);
        for ky in 0..kh {
            let Some(y) = (oy * sy + ky * g.dilations[0])
                .checked_sub(pt)
                .filter(|&y| y < h)
            else {
                continue;
            };
            for kx in 0..kw {
                // Input column x = ox·sx + kx·dx − pl must lie in 0..w.
                let shift = kx * g.dilations[1];
                let lo = pl.saturating_sub(shift).div_ceil(sx).max(ox0);
                let hi = match (w + pl).checked_sub(shift + 1) {
                    Some(last) => (last / sx + 1).min(ox0 + len),
                    None => lo,
                };
                if lo >= hi {
                    continue;
                }
                for ch in 0..channels {
                    let col = (ch * kh + ky) * kw + kx;
                    let src = &item[ch * plane + y * w..ch * plane + (y + 1) * w];
                    let rows = out[(t + lo - ox0) * row_len + col..]
                        .iter_mut()
                        .step_by(row_len);
                    for (o, ox) in rows.zip(lo..hi) {
                        *o = src[ox * sx + shift - pl];
                    }
                }
            }
        }
        t += len;
    }
}

/// Adds one activation's input rows to a layer's covariance: im2col patches in the weight's
/// `(in, kh, kw)` column order for a convolution (zeros where the kernel overlaps padding,
/// as the convolution sees them), the activation's rows for Gemm and MatMul.
fn add_rows(cov: &mut Covariance, layer: &Layer, shape: &[usize], data: &[f32]) -> Result<()> {
    let fail =
        |e: expquant::Error| Error::from(e).context(format!("covariance of '{}'", layer.weight));
    match (layer.op, layer.geometry) {
        (Op::Conv { groups }, Some(g)) => {
            let (c, h, w) = match *shape {
                [_, c, h, w] => (c, h, w),
                [_, c, w] if g.kernel[0] == 1 => (c, 1, w),
                _ => bail!("Conv input '{}' has shape {shape:?}", layer.input),
            };
            let [kh, kw] = g.kernel;
            let row_len = c * kh * kw;
            if row_len != groups * layer.cols {
                bail!(
                    "Conv '{}': input has {c} channels, weight expects {groups} groups of {} columns",
                    layer.weight,
                    layer.cols
                );
            }
            let (pt, pb) = g.pad(0, h);
            let (pl, pr) = g.pad(1, w);
            let span = |axis: usize| (g.kernel[axis] - 1) * g.dilations[axis] + 1;
            let out = |len: usize, lo: usize, hi: usize, axis: usize| {
                (len + lo + hi)
                    .checked_sub(span(axis))
                    .map(|v| v / g.strides[axis] + 1)
            };
            let (Some(oh), Some(ow)) = (out(h, pt, pb, 0), out(w, pl, pr, 1)) else {
                bail!(
                    "Conv '{}': kernel {kh}×{kw} does not fit input {h}×{w} with its padding",
                    layer.weight
                );
            };
            // Whole batches of the library's row blocks, however long a row is.
            let chunk_rows = (PATCH_VALUES / row_len).max(MIN_ROWS);
            let positions = oh * ow;
            let plane = h * w;
            let mut buf: Vec<f32> = Vec::with_capacity(chunk_rows.min(positions) * row_len);
            for item in data.chunks_exact(c * plane) {
                let mut first = 0;
                while first < positions {
                    let n = chunk_rows.min(positions - first);
                    buf.clear();
                    buf.resize(n * row_len, 0.0);
                    im2col_rows(item, &g, [h, w], [pt, pl], ow, first, &mut buf, row_len);
                    cov.add_rows(&buf).map_err(fail)?;
                    first += n;
                }
            }
        }
        (Op::Conv { .. }, None) => {}
        (Op::Gemm { trans_a: true, .. }, _) => {
            // [K, M]: column m is input row m.
            let [k, m] = *shape else {
                bail!("Gemm input '{}' has shape {shape:?}", layer.input);
            };
            if k != layer.cols {
                bail!(
                    "layer '{}' expects {} inputs, its activation '{}' has {k}",
                    layer.weight,
                    layer.cols,
                    layer.input
                );
            }
            let rows: Vec<f32> = (0..m)
                .flat_map(|j| (0..k).map(move |i| data[i * m + j]))
                .collect();
            cov.add_rows(&rows).map_err(fail)?;
        }
        (Op::Gemm { .. } | Op::MatMul, _) => {
            if shape.last() != Some(&layer.cols) {
                bail!(
                    "layer '{}' expects {} inputs, its activation '{}' has shape {shape:?}",
                    layer.weight,
                    layer.cols,
                    layer.input
                );
            }
            for chunk in data.chunks((PATCH_VALUES / layer.cols).max(1) * layer.cols) {
                cov.add_rows(chunk).map_err(fail)?;
            }
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Patch `(oy, ox)` of a `[C, H, W]` input, entry by entry from the convolution's
    /// definition.
    fn patch(
        item: &[f32],
        c: usize,
        [h, w]: [usize; 2],
        g: &Geometry,
        oy: usize,
        ox: usize,
    ) -> Vec<f32> {
        let (pt, _) = g.pad(0, h);
        let (pl, _) = g.pad(1, w);
        let mut out = Vec::new();
        for ch in 0..c {
            for ky in 0..g.kernel[0] {
                for kx in 0..g.kernel[1] {
                    let y = (oy * g.strides[0] + ky * g.dilations[0]) as i64 - pt as i64;
                    let x = (ox * g.strides[1] + kx * g.dilations[1]) as i64 - pl as i64;
                    let inside = (0..h as i64).contains(&y) && (0..w as i64).contains(&x);
                    out.push(if inside {
                        item[ch * h * w + y as usize * w + x as usize]
                    } else {
                        0.0
                    });
                }
            }
        }
        out
    }

    #[test]
    fn im2col_rows_match_the_definition() {
        let geometries = [
            ([3, 3], [1, 1], [1, 1], Pads::Explicit([1, 1, 1, 1])),
            ([3, 3], [2, 2], [1, 1], Pads::Explicit([0, 0, 1, 1])),
            ([3, 2], [2, 1], [2, 1], Pads::Explicit([2, 0, 1, 3])),
            ([1, 1], [1, 1], [1, 1], Pads::Explicit([0; 4])),
            ([5, 5], [2, 3], [1, 1], Pads::SameUpper),
            ([4, 4], [3, 3], [1, 2], Pads::SameLower),
        ];
        let (c, h, w) = (3, 11, 9);
        let item: Vec<f32> = (0..c * h * w).map(|i| (i as f32 * 0.37).sin()).collect();
        for (kernel, strides, dilations, pads) in geometries {
            let g = Geometry {
                kernel,
                strides,
                dilations,
                pads,
            };
            let (pt, pb) = g.pad(0, h);
            let (pl, pr) = g.pad(1, w);
            let span = |a: usize| (kernel[a] - 1) * dilations[a] + 1;
            let oh = (h + pt + pb - span(0)) / strides[0] + 1;
            let ow = (w + pl + pr - span(1)) / strides[1] + 1;
            if matches!(pads, Pads::SameUpper | Pads::SameLower) {
                assert_eq!((oh, ow), (h.div_ceil(strides[0]), w.div_ceil(strides[1])));
            }
            let row_len = c * kernel[0] * kernel[1];
            // Positions 5.. in one call, as a later chunk would see them.
            let first = 5;
            let n = oh * ow - first;
            let mut out = vec![0.0; n * row_len];
            im2col_rows(&item, &g, [h, w], [pt, pl], ow, first, &mut out, row_len);
            for t in 0..n {
                let (oy, ox) = ((first + t) / ow, (first + t) % ow);
                assert_eq!(
                    out[t * row_len..(t + 1) * row_len],
                    patch(&item, c, [h, w], &g, oy, ox),
                    "{g:?} at ({oy}, {ox})"
                );
            }
        }
    }
}
