//! Layer input covariances from a few calibration images, and error-compensating
//! quantization (`expquant::compensate`).

use expquant::calibrate::Covariance;
use expquant::compensate::{quantize_compensated, CompensateOptions};
use expquant::Config;

use super::data::Dataset;
use super::model::{Model, Trace, PIXELS, POOLED};

/// `E[x xᵀ]` and `E[x]` of every layer's inputs, in forward order, from the first `count`
/// images of `set` run through the FP32 model. A conv layer's input rows are its im2col
/// patches, one per output position, zero padding included.
pub fn input_covariances(model: &Model, set: &Dataset, count: usize) -> Vec<Covariance> {
    let mut covs: Vec<Covariance> = model
        .layers()
        .iter()
        .map(|l| Covariance::new(1, l.weight.cols).expect("layers have columns"))
        .collect();
    let mut t = Trace::default();
    let mut rows = Vec::new();
    for image in set.images.iter().take(count.min(set.len()).max(1)) {
        model.forward(&image[..], &mut t);
        // (im2col, column-major over positions, or the input vector; positions).
        let inputs: [(&[f32], usize); 5] = [
            (&t.cols1, PIXELS),
            (&t.cols2, PIXELS),
            (&t.cols3, POOLED * POOLED),
            (&t.a3, 1),
            (&t.h, 1),
        ];
        for ((values, positions), cov) in inputs.iter().zip(covs.iter_mut()) {
            let cols = values.len() / positions;
            rows.clear();
            rows.resize(values.len(), 0.0);
            for (j, column) in values.chunks_exact(*positions).enumerate() {
                for (p, &x) in column.iter().enumerate() {
                    rows[p * cols + j] = x;
                }
            }
            cov.add_rows(&rows).expect("finite activations");
        }
    }
    covs
}

/// Every layer quantized by `quantize_compensated` with its input covariance, its bias
/// corrected (when `bias_correct`) for the mean output shift of the compensated weights.
/// Returns the model and its bits per weight.
pub fn quantize_model_compensated(
    model: &Model,
    cfg: &Config,
    covs: &[Covariance],
    bias_correct: bool,
) -> Result<(Model, f64), expquant::Error> {
    let mut q = model.clone();
    let mut bits = 0.0f64;
    for (layer, cov) in q.layers_mut().into_iter().zip(covs) {
        let w = &mut layer.weight;
        let mean = cov.mean().filter(|_| bias_correct);
        let options = CompensateOptions::default();
        let out =
            quantize_compensated(&w.data, w.rows, w.cols, cfg, cov, &options, mean.as_deref())?;
        bits += out.tensor.bits_per_weight() * w.data.len() as f64;
        w.data = out.tensor.dequantize();
        for (b, c) in layer
            .bias
            .iter_mut()
            .zip(out.bias_correction.iter().flatten())
        {
            *b += c;
        }
    }
    let total = q.weight_count() as f64;
    Ok((q, bits / total))
}
