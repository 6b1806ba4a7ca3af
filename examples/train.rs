//! Trains the digits CNN from a fixed seed and writes `data/digits_cnn.bin`.
//!
//! ```text
//! cargo run --release --example train [-- --out PATH]
//! ```
//!
//! Single-threaded, hand-written backprop, Adam, own PRNG: with the same compiler and target
//! two runs write byte-identical files (no float operation depends on timing or threads).

#[path = "cnn/mod.rs"]
mod cnn;

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use cnn::model::Layer;
use cnn::model::{C1, C2, C3, CLASSES, FLAT, HIDDEN, PIXELS, POOLED, SIDE};
use cnn::{ops, Dataset, Model, Trace};

const SEED: u64 = 0x5EED_D161_7500_0001;
const EPOCHS: usize = 60;
const BATCH: usize = 32;
const PEAK_LR: f32 = 2e-3;
const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPS: f32 = 1e-8;

/// splitmix64: tiny, fast, and good enough for initialisation, shuffling and augmentation.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 24 bits, exactly representable in f32.
    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in 0..n. The modulo bias is irrelevant for n this small.
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// He-uniform for the ReLU layers keeps activations from shrinking or blowing up with depth.
fn init(rng: &mut Rng) -> Model {
    let mut m = Model::zeros();
    for layer in m.layers_mut() {
        let bound = (6.0 / layer.weight.cols as f32).sqrt();
        for w in &mut layer.weight.data {
            *w = (2.0 * rng.next_f32() - 1.0) * bound;
        }
    }
    m
}

/// Random translation by up to one pixel in each direction (zero fill): the digits are
/// roughly centred but not exactly, and this is the cheapest regulariser that helps.
fn shifted(img: &[f32; PIXELS], rng: &mut Rng) -> [f32; PIXELS] {
    let dy = rng.below(3) as isize - 1;
    let dx = rng.below(3) as isize - 1;
    let mut out = [0.0f32; PIXELS];
    let side = SIDE as isize;
    for y in 0..side {
        for x in 0..side {
            let (sy, sx) = (y - dy, x - dx);
            if (0..side).contains(&sy) && (0..side).contains(&sx) {
                out[(y * side + x) as usize] = img[(sy * side + sx) as usize];
            }
        }
    }
    out
}

/// Scratch space for one backward pass.
struct Grads {
    dlogits: Vec<f32>,
    dh: Vec<f32>,
    da3: Vec<f32>,
    dcols3: Vec<f32>,
    dpooled: Vec<f32>,
    da2: Vec<f32>,
    dcols2: Vec<f32>,
    da1: Vec<f32>,
}

impl Grads {
    fn new() -> Self {
        let small = POOLED * POOLED;
        Grads {
            dlogits: vec![0.0; CLASSES],
            dh: vec![0.0; HIDDEN],
            da3: vec![0.0; FLAT],
            dcols3: vec![0.0; C2 * 9 * small],
            dpooled: vec![0.0; C2 * small],
            da2: vec![0.0; C2 * PIXELS],
            dcols2: vec![0.0; C1 * 9 * PIXELS],
            da1: vec![0.0; C1 * PIXELS],
        }
    }
}

/// Zeroes the gradient where the ReLU was inactive (`act` is the post-ReLU output).
fn relu_backward(grad: &mut [f32], act: &[f32]) {
    for (g, &a) in grad.iter_mut().zip(act) {
        if a <= 0.0 {
            *g = 0.0;
        }
    }
}

/// Accumulates the weight and bias gradients of a convolution or dense layer whose forward was
/// `out = W · cols + b` with `cols` of shape `k × n`, and, if asked, writes `dcols = Wᵀ · dout`.
fn linear_backward(
    layer: &Layer,
    grad: &mut Layer,
    cols: &[f32],
    dout: &[f32],
    n: usize,
    dcols: Option<&mut [f32]>,
) {
    let k = layer.weight.cols;
    for (o, dout_row) in dout.chunks_exact(n).enumerate() {
        grad.bias[o] += dout_row.iter().sum::<f32>();
        let gw = &mut grad.weight.data[o * k..(o + 1) * k];
        if n == 1 {
            // Dense layer: the outer product row is an axpy.
            ops::axpy(gw, dout_row[0], cols);
        } else {
            for (j, g) in gw.iter_mut().enumerate() {
                *g += ops::dot(dout_row, &cols[j * n..(j + 1) * n]);
            }
        }
    }
    if let Some(dcols) = dcols {
        dcols.fill(0.0);
        for (o, dout_row) in dout.chunks_exact(n).enumerate() {
            let w_row = &layer.weight.data[o * k..(o + 1) * k];
            if n == 1 {
                ops::axpy(dcols, dout_row[0], w_row);
            } else {
                for (j, &w) in w_row.iter().enumerate() {
                    ops::axpy(&mut dcols[j * n..(j + 1) * n], w, dout_row);
                }
            }
        }
    }
}

/// Forward and backward for one sample; adds `scale ×` its gradient into `grad` and returns
/// the sample's cross-entropy loss and whether it was classified correctly.
fn backprop(
    model: &Model,
    img: &[f32],
    label: usize,
    scale: f32,
    t: &mut Trace,
    g: &mut Grads,
    grad: &mut Model,
) -> (f32, bool) {
    model.forward(img, t);

    // Softmax cross-entropy, shifted by the max logit for stability.
    let max = t.logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for (d, &z) in g.dlogits.iter_mut().zip(&t.logits) {
        *d = (z - max).exp();
        sum += *d;
    }
    let loss = sum.ln() - (t.logits[label] - max);
    for d in &mut g.dlogits {
        *d = *d / sum * scale;
    }
    g.dlogits[label] -= scale;
    let hit = ops::argmax(&t.logits) == label;

    linear_backward(
        &model.fc2,
        &mut grad.fc2,
        &t.h,
        &g.dlogits,
        1,
        Some(&mut g.dh),
    );
    relu_backward(&mut g.dh, &t.h);
    linear_backward(&model.fc1, &mut grad.fc1, &t.a3, &g.dh, 1, Some(&mut g.da3));
    relu_backward(&mut g.da3, &t.a3);

    let small = POOLED * POOLED;
    linear_backward(
        &model.conv3,
        &mut grad.conv3,
        &t.cols3,
        &g.da3,
        small,
        Some(&mut g.dcols3),
    );
    ops::col2im3x3(&g.dcols3, C2, POOLED, &mut g.dpooled);
    g.da2.fill(0.0);
    for (&idx, &d) in t.pool_idx.iter().zip(&g.dpooled) {
        g.da2[idx as usize] += d;
    }
    relu_backward(&mut g.da2, &t.a2);

    linear_backward(
        &model.conv2,
        &mut grad.conv2,
        &t.cols2,
        &g.da2,
        PIXELS,
        Some(&mut g.dcols2),
    );
    ops::col2im3x3(&g.dcols2, C1, SIDE, &mut g.da1);
    relu_backward(&mut g.da1, &t.a1);
    // The input needs no gradient.
    linear_backward(
        &model.conv1,
        &mut grad.conv1,
        &t.cols1,
        &g.da1,
        PIXELS,
        None,
    );

    debug_assert_eq!(C3 * small, FLAT);
    (loss, hit)
}

/// Flat views over every parameter (weights then bias, layer by layer) so the optimiser does
/// not care about the architecture.
fn params_mut(m: &mut Model) -> Vec<&mut [f32]> {
    m.layers_mut()
        .into_iter()
        .flat_map(|l| [&mut l.weight.data[..], &mut l.bias[..]])
        .collect()
}

struct Adam {
    m: Model,
    v: Model,
    step: i32,
}

impl Adam {
    fn update(&mut self, model: &mut Model, grad: &mut Model, lr: f32) {
        self.step += 1;
        let c1 = 1.0 - BETA1.powi(self.step);
        let c2 = 1.0 - BETA2.powi(self.step);
        let params = params_mut(model);
        let grads = params_mut(grad);
        let ms = params_mut(&mut self.m);
        let vs = params_mut(&mut self.v);
        for (((p, g), m), v) in params.into_iter().zip(grads).zip(ms).zip(vs) {
            for i in 0..p.len() {
                m[i] = BETA1 * m[i] + (1.0 - BETA1) * g[i];
                v[i] = BETA2 * v[i] + (1.0 - BETA2) * g[i] * g[i];
                p[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + EPS);
                g[i] = 0.0;
            }
        }
    }
}

fn parse_args() -> Result<PathBuf, String> {
    let mut out = cnn::default_model_path();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = args.next().ok_or("--out needs a path")?.into(),
            "-h" | "--help" => {
                println!("usage: train [--out PATH]   (default {})", out.display());
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    cnn::exit_code(run())
}

fn run() -> Result<(), Box<dyn Error>> {
    let out = parse_args()?;
    let (train, test): (Dataset, Dataset) = cnn::digits()?;
    println!(
        "digits: {} train / {} test images; {} weights; seed {SEED:#x}",
        train.len(),
        test.len(),
        Model::zeros().weight_count()
    );

    let start = Instant::now();
    let mut rng = Rng(SEED);
    let mut model = init(&mut rng);
    let mut grad = Model::zeros();
    let mut adam = Adam {
        m: Model::zeros(),
        v: Model::zeros(),
        step: 0,
    };
    let mut trace = Trace::default();
    let mut scratch = Grads::new();
    let mut order: Vec<usize> = (0..train.len()).collect();
    let steps_per_epoch = train.len().div_ceil(BATCH);
    let total_steps = (EPOCHS * steps_per_epoch) as f32;
    let mut step = 0usize;

    for epoch in 1..=EPOCHS {
        // Fisher-Yates.
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let (mut loss_sum, mut hits) = (0.0f64, 0usize);
        for batch in order.chunks(BATCH) {
            let scale = 1.0 / batch.len() as f32;
            for &i in batch {
                let img = shifted(&train.images[i], &mut rng);
                let (loss, hit) = backprop(
                    &model,
                    &img,
                    usize::from(train.labels[i]),
                    scale,
                    &mut trace,
                    &mut scratch,
                    &mut grad,
                );
                loss_sum += f64::from(loss);
                hits += usize::from(hit);
            }
            // Cosine decay to zero: the last epochs settle into a minimum instead of bouncing.
            let progress = step as f32 / total_steps;
            let lr = PEAK_LR * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos());
            adam.update(&mut model, &mut grad, lr);
            step += 1;
        }
        println!(
            "epoch {epoch:2}: loss {:.4}  train acc (augmented) {:.2}%  [{:.1}s]",
            loss_sum / train.len() as f64,
            100.0 * hits as f64 / train.len() as f64,
            start.elapsed().as_secs_f64()
        );
    }

    let elapsed = start.elapsed().as_secs_f64();
    let train_eval = cnn::evaluate_fp32(&model, &train);
    let test_eval = cnn::evaluate_fp32(&model, &test);
    cnn::save(&model, &out)?;
    println!("training took {elapsed:.1}s");
    println!(
        "train accuracy: {}/{} = {:.2}%",
        train_eval.correct,
        train_eval.total,
        train_eval.accuracy_percent()
    );
    println!(
        "test accuracy:  {}/{} = {:.2}%",
        test_eval.correct,
        test_eval.total,
        test_eval.accuracy_percent()
    );
    println!("wrote {}", out.display());
    Ok(())
}
