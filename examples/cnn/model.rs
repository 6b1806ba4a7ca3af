//! The network: architecture constants, parameters and the f32 forward pass.
//!
//! ```text
//! input 1×8×8 (pixels / 16)
//! conv1 3×3, 1→16, pad 1, ReLU        8×8
//! conv2 3×3, 16→32, pad 1, ReLU       8×8
//! maxpool 2×2                         4×4
//! conv3 3×3, 32→32, pad 1, ReLU       4×4
//! flatten                             512
//! fc1 512→32, ReLU
//! fc2 32→10                           logits
//! ```
//!
//! 30,672 weights (plus 122 biases). Every weight tensor is stored as a row-major
//! `rows × cols` matrix with one row per output channel / unit, which is exactly the layout
//! the quantizer's per-row granularity expects.

use super::ops;

pub const SIDE: usize = 8;
pub const PIXELS: usize = SIDE * SIDE;
pub const CLASSES: usize = 10;

pub const C1: usize = 16;
pub const C2: usize = 32;
pub const C3: usize = 32;
pub const POOLED: usize = SIDE / 2;
pub const FLAT: usize = C3 * POOLED * POOLED;
pub const HIDDEN: usize = 32;

/// A weight tensor viewed as a row-major matrix. For a convolution kernel
/// `[out, in, 3, 3]` this is `out × (in·9)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Matrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }
}

/// One layer's parameters. `dims` is the logical shape written to the weight file
/// (`[out, in, 3, 3]` or `[out, in]`); the forward pass only uses the matrix view.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    pub name: &'static str,
    pub dims: Vec<usize>,
    pub weight: Matrix,
    pub bias: Vec<f32>,
}

impl Layer {
    fn conv(name: &'static str, out: usize, inp: usize) -> Self {
        Layer {
            name,
            dims: vec![out, inp, 3, 3],
            weight: Matrix::zeros(out, inp * 9),
            bias: vec![0.0; out],
        }
    }

    fn dense(name: &'static str, out: usize, inp: usize) -> Self {
        Layer {
            name,
            dims: vec![out, inp],
            weight: Matrix::zeros(out, inp),
            bias: vec![0.0; out],
        }
    }
}

/// Parameters of the whole network, in forward order.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub conv1: Layer,
    pub conv2: Layer,
    pub conv3: Layer,
    pub fc1: Layer,
    pub fc2: Layer,
}

/// Every intermediate value of one forward pass. Inference and training share this so that
/// the accuracy `train` prints and the accuracy the other examples and tests measure come from
/// literally the same arithmetic.
#[derive(Clone, Debug)]
pub struct Trace {
    pub input: Vec<f32>,  // 1 × 64
    pub cols1: Vec<f32>,  // 9 × 64
    pub a1: Vec<f32>,     // 16 × 64, after ReLU
    pub cols2: Vec<f32>,  // 144 × 64
    pub a2: Vec<f32>,     // 32 × 64, after ReLU
    pub pooled: Vec<f32>, // 32 × 16
    pub pool_idx: Vec<u32>,
    pub cols3: Vec<f32>, // 288 × 16
    pub a3: Vec<f32>,    // 32 × 16 = 512, after ReLU
    pub h: Vec<f32>,     // 32, after ReLU
    pub logits: Vec<f32>,
}

impl Default for Trace {
    fn default() -> Self {
        let plane = PIXELS;
        let small = POOLED * POOLED;
        Trace {
            input: vec![0.0; plane],
            cols1: vec![0.0; 9 * plane],
            a1: vec![0.0; C1 * plane],
            cols2: vec![0.0; C1 * 9 * plane],
            a2: vec![0.0; C2 * plane],
            pooled: vec![0.0; C2 * small],
            pool_idx: vec![0; C2 * small],
            cols3: vec![0.0; C2 * 9 * small],
            a3: vec![0.0; FLAT],
            h: vec![0.0; HIDDEN],
            logits: vec![0.0; CLASSES],
        }
    }
}

impl Model {
    /// All-zero parameters with the right shapes.
    pub fn zeros() -> Self {
        Model {
            conv1: Layer::conv("conv1", C1, 1),
            conv2: Layer::conv("conv2", C2, C1),
            conv3: Layer::conv("conv3", C3, C2),
            fc1: Layer::dense("fc1", HIDDEN, FLAT),
            fc2: Layer::dense("fc2", CLASSES, HIDDEN),
        }
    }

    pub fn layers(&self) -> [&Layer; 5] {
        [&self.conv1, &self.conv2, &self.conv3, &self.fc1, &self.fc2]
    }

    pub fn layers_mut(&mut self) -> [&mut Layer; 5] {
        [
            &mut self.conv1,
            &mut self.conv2,
            &mut self.conv3,
            &mut self.fc1,
            &mut self.fc2,
        ]
    }

    /// Number of weights (biases excluded), the denominator for model-level bits per weight.
    pub fn weight_count(&self) -> usize {
        self.layers().iter().map(|l| l.weight.data.len()).sum()
    }

    /// Runs one 8×8 image (already scaled to 0..=1) through the network, leaving every
    /// intermediate in `t`; the logits are `t.logits`.
    pub fn forward(&self, image: &[f32], t: &mut Trace) {
        let small = POOLED * POOLED;
        t.input.copy_from_slice(image);

        ops::im2col3x3(&t.input, 1, SIDE, &mut t.cols1);
        let l = &self.conv1;
        ops::matmul_bias(&l.weight.data, &l.bias, &t.cols1, 9, PIXELS, &mut t.a1);
        ops::relu(&mut t.a1);

        ops::im2col3x3(&t.a1, C1, SIDE, &mut t.cols2);
        let l = &self.conv2;
        ops::matmul_bias(&l.weight.data, &l.bias, &t.cols2, C1 * 9, PIXELS, &mut t.a2);
        ops::relu(&mut t.a2);

        ops::maxpool2(&t.a2, C2, SIDE, &mut t.pooled, &mut t.pool_idx);

        ops::im2col3x3(&t.pooled, C2, POOLED, &mut t.cols3);
        let l = &self.conv3;
        ops::matmul_bias(&l.weight.data, &l.bias, &t.cols3, C2 * 9, small, &mut t.a3);
        ops::relu(&mut t.a3);

        ops::dense(&self.fc1.weight.data, &self.fc1.bias, &t.a3, &mut t.h);
        ops::relu(&mut t.h);
        ops::dense(&self.fc2.weight.data, &self.fc2.bias, &t.h, &mut t.logits);
    }

    /// Predicted class of one image.
    pub fn predict(&self, image: &[f32], t: &mut Trace) -> usize {
        self.forward(image, t);
        ops::argmax(&t.logits)
    }
}
