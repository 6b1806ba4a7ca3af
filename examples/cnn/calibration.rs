//! Layer input statistics from a few calibration images, and quantization with bias
//! correction (`expquant::calibrate`).

use expquant::calibrate::{quantize_calibrated, InputStats};
use expquant::Config;

use super::data::Dataset;
use super::model::{Model, Trace, PIXELS, POOLED};

/// `E[x_j]` and `E[x_j²]` of one layer's inputs, one value per weight column.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerStats {
    pub mean: Vec<f32>,
    pub sq_mean: Vec<f32>,
}

/// Per-column input statistics of every layer, in forward order, from the first `count`
/// images of `set` run through the FP32 model. A conv layer's column `j` is a (channel,
/// tap) pair of its im2col matrix, so its statistic averages over images and output
/// positions, zero padding included — exactly the inputs that column multiplies.
pub fn input_stats(model: &Model, set: &Dataset, count: usize) -> [LayerStats; 5] {
    let count = count.min(set.len()).max(1);
    let mut sums: Vec<(Vec<f64>, Vec<f64>)> = model
        .layers()
        .iter()
        .map(|l| (vec![0.0; l.weight.cols], vec![0.0; l.weight.cols]))
        .collect();
    let mut t = Trace::default();
    for image in set.images.iter().take(count) {
        model.forward(&image[..], &mut t);
        // (im2col or input vector, positions per column) for each layer.
        let inputs: [(&[f32], usize); 5] = [
            (&t.cols1, PIXELS),
            (&t.cols2, PIXELS),
            (&t.cols3, POOLED * POOLED),
            (&t.a3, 1),
            (&t.h, 1),
        ];
        for ((values, positions), (sum, sum_sq)) in inputs.iter().zip(sums.iter_mut()) {
            for (j, column) in values.chunks_exact(*positions).enumerate() {
                for &x in column {
                    sum[j] += f64::from(x) / *positions as f64;
                    sum_sq[j] += f64::from(x) * f64::from(x) / *positions as f64;
                }
            }
        }
    }
    let finish = |(sum, sum_sq): &(Vec<f64>, Vec<f64>)| LayerStats {
        mean: sum.iter().map(|s| (s / count as f64) as f32).collect(),
        sq_mean: sum_sq.iter().map(|s| (s / count as f64) as f32).collect(),
    };
    [
        finish(&sums[0]),
        finish(&sums[1]),
        finish(&sums[2]),
        finish(&sums[3]),
        finish(&sums[4]),
    ]
}

/// Like `quantize_model`, with each layer quantized by `quantize_calibrated` and its bias
/// corrected for the mean output shift. Returns the model and its bits per weight.
pub fn quantize_model_calibrated(
    model: &Model,
    cfg: &Config,
    stats: &[LayerStats; 5],
) -> Result<(Model, f64), expquant::Error> {
    let mut q = model.clone();
    let mut bits = 0.0f64;
    for (layer, s) in q.layers_mut().into_iter().zip(stats) {
        let w = &mut layer.weight;
        let input = InputStats::new(&s.mean).with_sq_mean(&s.sq_mean);
        let out = quantize_calibrated(&w.data, w.rows, w.cols, cfg, &input)?;
        bits += out.tensor.bits_per_weight() * w.data.len() as f64;
        w.data = out.tensor.dequantize();
        for (b, c) in layer.bias.iter_mut().zip(&out.bias_correction) {
            *b += c;
        }
    }
    let total = q.weight_count() as f64;
    Ok((q, bits / total))
}
