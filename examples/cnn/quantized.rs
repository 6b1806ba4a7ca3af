//! The digits CNN run straight from a stored container: every weight matrix stays packed and
//! is multiplied through `QuantizedView::gemv`, with caller-owned scratch and no allocation.
//!
//! This file uses only `core` and `expquant` without `alloc`, so the host examples and tests
//! (through `cnn/mod.rs`) and the `no_std` firmware in `examples/firmware/` (through
//! `#[path]`) compile the very same forward pass, next to `ops.rs` for im2col, pooling and
//! argmax.

use expquant::{ContainerView, EntryView, QuantizedView};

use super::ops;

/// Image side, input pixels and classes, as in `model.rs` (repeated here because `model.rs`
/// needs an allocator).
pub const SIDE: usize = 8;
const PIXELS: usize = SIDE * SIDE;
const POOLED: usize = SIDE / 2;
const C1: usize = 16;
const C2: usize = 32;
const C3: usize = 32;
const FLAT: usize = C3 * POOLED * POOLED;
const HIDDEN: usize = 32;
/// Logits per image.
pub const CLASSES: usize = 10;

/// Weight entry names and each layer's output count, in forward order.
pub const LAYERS: [(&str, usize); 5] = [
    ("conv1.weight", C1),
    ("conv2.weight", C2),
    ("conv3.weight", C3),
    ("fc1.weight", HIDDEN),
    ("fc2.weight", CLASSES),
];
/// The `f32` bias entry of each layer, in forward order.
pub const BIAS_NAMES: [&str; 5] = [
    "conv1.bias",
    "conv2.bias",
    "conv3.bias",
    "fc1.bias",
    "fc2.bias",
];
/// Number of biases over all layers.
const BIAS_COUNT: usize = C1 + C2 + C3 + HIDDEN + CLASSES;

/// Longest im2col column (conv3: 32 channels × 9 taps).
const MAX_K: usize = C2 * 9;
/// Largest im2col matrix (conv2: 144 rows × 64 positions).
const MAX_COLS: usize = C1 * 9 * PIXELS;

/// Why a container cannot drive the network.
#[derive(Debug)]
pub enum QuantizedError {
    /// The library rejected the container or a call on it.
    Library(expquant::Error),
    /// An entry is missing.
    Missing(&'static str),
    /// An entry has the wrong shape.
    Shape(&'static str),
    /// An entry is of the other kind (quantized where `f32` is expected or the reverse).
    Kind(&'static str),
}

impl From<expquant::Error> for QuantizedError {
    fn from(e: expquant::Error) -> Self {
        QuantizedError::Library(e)
    }
}

impl core::fmt::Display for QuantizedError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            QuantizedError::Library(e) => write!(f, "{e}"),
            QuantizedError::Missing(name) => write!(f, "container has no tensor {name:?}"),
            QuantizedError::Shape(name) => write!(f, "tensor {name:?} has the wrong shape"),
            QuantizedError::Kind(name) => write!(f, "tensor {name:?} is of the wrong kind"),
        }
    }
}

/// The five packed weight matrices borrowed from a container, and their biases copied out
/// of it.
pub struct QuantizedModel<'a> {
    weights: [QuantizedView<'a>; 5],
    biases: [f32; BIAS_COUNT],
}

/// Every intermediate of one forward pass; large enough to live in a `static` on a
/// microcontroller (about 50 KB).
pub struct Scratch {
    input: [f32; PIXELS],
    cols: [f32; MAX_COLS],
    column: [f32; MAX_K],
    out: [f32; HIDDEN],
    a1: [f32; C1 * PIXELS],
    a2: [f32; C2 * PIXELS],
    pooled: [f32; C2 * POOLED * POOLED],
    pool_idx: [u32; C2 * POOLED * POOLED],
    a3: [f32; FLAT],
    h: [f32; HIDDEN],
    /// The last image's logits.
    pub logits: [f32; CLASSES],
}

impl Scratch {
    /// All-zero scratch, usable as a `static` initializer.
    pub const fn new() -> Self {
        Scratch {
            input: [0.0; PIXELS],
            cols: [0.0; MAX_COLS],
            column: [0.0; MAX_K],
            out: [0.0; HIDDEN],
            a1: [0.0; C1 * PIXELS],
            a2: [0.0; C2 * PIXELS],
            pooled: [0.0; C2 * POOLED * POOLED],
            pool_idx: [0; C2 * POOLED * POOLED],
            a3: [0.0; FLAT],
            h: [0.0; HIDDEN],
            logits: [0.0; CLASSES],
        }
    }
}

impl<'a> QuantizedModel<'a> {
    /// Opens the five weight tensors of `container` and copies out their biases, checking
    /// every shape.
    pub fn new(container: &'a [u8]) -> Result<Self, QuantizedError> {
        let c = ContainerView::from_bytes(container)?;
        let cols = [9, C1 * 9, C2 * 9, FLAT, HIDDEN];
        let open = |i: usize| -> Result<QuantizedView<'a>, QuantizedError> {
            let (name, rows) = LAYERS[i];
            let v = match c.entry(name)? {
                Some(EntryView::Quantized(v)) => v,
                Some(_) => return Err(QuantizedError::Kind(name)),
                None => return Err(QuantizedError::Missing(name)),
            };
            if v.rows() != rows || v.cols() != cols[i] {
                return Err(QuantizedError::Shape(name));
            }
            Ok(v)
        };
        let weights = [open(0)?, open(1)?, open(2)?, open(3)?, open(4)?];
        let mut biases = [0.0f32; BIAS_COUNT];
        let mut start = 0;
        for (name, &(_, rows)) in BIAS_NAMES.into_iter().zip(&LAYERS) {
            let b = match c.entry(name)? {
                Some(EntryView::F32(b)) => b,
                Some(_) => return Err(QuantizedError::Kind(name)),
                None => return Err(QuantizedError::Missing(name)),
            };
            if b.len() != rows {
                return Err(QuantizedError::Shape(name));
            }
            b.copy_to(&mut biases[start..start + rows])?;
            start += rows;
        }
        Ok(QuantizedModel { weights, biases })
    }

    fn bias(&self, layer: usize) -> &[f32] {
        let start: usize = LAYERS[..layer].iter().map(|l| l.1).sum();
        &self.biases[start..start + LAYERS[layer].1]
    }

    /// Predicted class of one image of 64 pixels scaled to 0..=1; the logits are left in
    /// `s.logits`.
    pub fn predict(&self, image: &[f32], s: &mut Scratch) -> Result<usize, QuantizedError> {
        s.input.copy_from_slice(image);
        self.conv(
            0,
            &s.input,
            1,
            SIDE,
            &mut s.cols,
            &mut s.column,
            &mut s.out,
            &mut s.a1,
        )?;
        ops::relu(&mut s.a1);
        self.conv(
            1,
            &s.a1,
            C1,
            SIDE,
            &mut s.cols,
            &mut s.column,
            &mut s.out,
            &mut s.a2,
        )?;
        ops::relu(&mut s.a2);
        ops::maxpool2(&s.a2, C2, SIDE, &mut s.pooled, &mut s.pool_idx);
        self.conv(
            2,
            &s.pooled,
            C2,
            POOLED,
            &mut s.cols,
            &mut s.column,
            &mut s.out,
            &mut s.a3,
        )?;
        ops::relu(&mut s.a3);
        self.dense(3, &s.a3, &mut s.h)?;
        ops::relu(&mut s.h);
        self.dense(4, &s.h, &mut s.logits)?;
        Ok(ops::argmax(&s.logits))
    }

    /// A 3×3 convolution as im2col then one GEMV per output position: the patch of every
    /// position is gathered into `column` and multiplied by the packed `out × (ch·9)` matrix.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &self,
        layer: usize,
        input: &[f32],
        ch: usize,
        side: usize,
        cols: &mut [f32],
        column: &mut [f32],
        y: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), QuantizedError> {
        let n = side * side;
        let k = ch * 9;
        let cols = &mut cols[..k * n];
        ops::im2col3x3(input, ch, side, cols);
        let w = &self.weights[layer];
        let bias = self.bias(layer);
        let (column, y) = (&mut column[..k], &mut y[..bias.len()]);
        for p in 0..n {
            for (j, x) in column.iter_mut().enumerate() {
                *x = cols[j * n + p];
            }
            w.gemv(column, y)?;
            for (o, (&v, &b)) in y.iter().zip(bias).enumerate() {
                out[o * n + p] = v + b;
            }
        }
        Ok(())
    }

    fn dense(&self, layer: usize, x: &[f32], out: &mut [f32]) -> Result<(), QuantizedError> {
        self.weights[layer].gemv(x, out)?;
        for (o, &b) in out.iter_mut().zip(self.bias(layer)) {
            *o += b;
        }
        Ok(())
    }
}

/// Bytes per record of the test-image file (`data/README.md`): 64 pixels then the label.
pub const RECORD: usize = PIXELS + 1;

/// Pixels scaled to 0..=1 and the label of record `i` of a test-image file, or `None` past
/// its end or for an out-of-range value.
pub fn record(bytes: &[u8], i: usize) -> Option<([f32; PIXELS], u8)> {
    let rec = bytes.get(i * RECORD..(i + 1) * RECORD)?;
    let mut img = [0.0f32; PIXELS];
    for (dst, &p) in img.iter_mut().zip(&rec[..PIXELS]) {
        if p > 16 {
            return None;
        }
        *dst = f32::from(p) / 16.0;
    }
    let label = rec[PIXELS];
    (label <= 9).then_some((img, label))
}
