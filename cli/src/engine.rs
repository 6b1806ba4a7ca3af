//! Every call into the `expquant` library, and the parsers for its setting names.
//!
//! Keeping the library behind this one module means a change of its public names touches
//! only this file; the rest of the tool speaks in the types defined here.

use expquant::calibrate::{quantize_calibrated, InputStats};
use expquant::compensate::{quantize_compensated, CompensateOptions};
use expquant::{
    Config, ContainerView, Entry, EntryView, Granularity, QuantizedTensor, ScaleRule, Scheme,
    Verification,
};

use crate::error::{Error, Result};

pub use expquant::calibrate::Covariance;
pub use expquant::QuantizedTensor as Tensor;

/// How one tensor is quantized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Level family.
    pub scheme: Scheme,
    /// Bits per code, 1 to 8.
    pub bits: u8,
    /// Which weights share a codebook.
    pub granularity: Granularity,
    /// How each codebook's scale is chosen.
    pub rule: ScaleRule,
}

impl Settings {
    fn config(&self) -> Config {
        Config::new(self.scheme, self.bits)
            .with_granularity(self.granularity)
            .with_scale_rule(self.rule)
    }

    /// Checks the combination once, before any tensor is read.
    pub fn validate(&self) -> Result<()> {
        self.config().validate().map_err(Error::from)
    }
}

/// Parses a scheme name with the library's names: `exponential` or `linear`.
pub fn parse_scheme(name: &str) -> Result<Scheme> {
    name.parse()
        .map_err(|e| Error::msg(format!("scheme '{name}': {e}")))
}

/// Parses a granularity with the library's names: `tensor`, `row` or `group:G`.
pub fn parse_granularity(name: &str) -> Result<Granularity> {
    name.parse()
        .map_err(|e| Error::msg(format!("granularity '{name}': {e}")))
}

/// Parses a scale rule with the library's names: `max-abs`, `mse`, `correlation`,
/// `output-mse` or `fixed:A,Q`.
pub fn parse_scale_rule(name: &str) -> Result<ScaleRule> {
    name.parse()
        .map_err(|e| Error::msg(format!("scale rule '{name}': {e}")))
}

/// The name [`parse_scheme`] reads.
pub fn scheme_name(scheme: Scheme) -> String {
    scheme.to_string()
}

/// The name [`parse_granularity`] reads.
pub fn granularity_name(granularity: Granularity) -> String {
    granularity.to_string()
}

/// The name [`parse_scale_rule`] reads.
pub fn scale_rule_name(rule: ScaleRule) -> String {
    rule.to_string()
}

/// Whether a rule needs calibration statistics.
pub fn needs_statistics(rule: ScaleRule) -> bool {
    rule == ScaleRule::OutputMse
}

/// A layer's input statistics in the library's column layout: `cols` values shared by all
/// rows, or `rows × cols` (grouped convolutions).
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    /// `E[x_j]`.
    pub mean: Vec<f32>,
    /// `E[x_j²]`.
    pub sq_mean: Vec<f32>,
    /// `E[x xᵀ]` over the layer's input rows (im2col patches for a convolution, one
    /// covariance per group), when it was measured: it turns on error compensation.
    pub covariance: Option<Covariance>,
}

/// One quantized layer.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// The stored tensor.
    pub tensor: QuantizedTensor,
    /// Its dequantized values, `rows × cols`.
    pub dequantized: Vec<f32>,
    /// Per row, what to add to the layer's bias (present when statistics were given and bias
    /// correction is on).
    pub bias_correction: Option<Vec<f32>>,
}

/// Quantizes one `rows × cols` layer, with its input statistics when there are some.
///
/// With a covariance the library's compensated quantizer runs (columns quantized in turn by
/// decreasing `E[x_j²]`, each column's rounding error pushed onto the columns not yet
/// quantized through the inverse covariance) and the bias correction is that of the
/// compensated weights, from the covariance's own means (im2col means, padding included).
/// With means only, the plain fit plus bias correction; without statistics, the plain fit.
pub fn quantize_layer(
    weights: &[f32],
    rows: usize,
    cols: usize,
    settings: &Settings,
    stats: Option<&Moments>,
    correct_bias: bool,
) -> Result<Quantized> {
    let config = settings.config();
    match stats {
        Some(Moments {
            covariance: Some(cov),
            mean,
            ..
        }) => {
            let cov_mean = cov.mean();
            let mean = correct_bias.then(|| cov_mean.as_deref().unwrap_or(mean));
            let out = quantize_compensated(
                weights,
                rows,
                cols,
                &config,
                cov,
                &CompensateOptions::default(),
                mean,
            )?;
            let dequantized = out.tensor.dequantize();
            Ok(Quantized {
                tensor: out.tensor,
                dequantized,
                bias_correction: out.bias_correction,
            })
        }
        Some(m) => {
            let input = InputStats::new(&m.mean).with_sq_mean(&m.sq_mean);
            let calibrated = quantize_calibrated(weights, rows, cols, &config, &input)?;
            let dequantized = calibrated.tensor.dequantize();
            Ok(Quantized {
                tensor: calibrated.tensor,
                dequantized,
                bias_correction: correct_bias.then_some(calibrated.bias_correction),
            })
        }
        None => {
            if needs_statistics(settings.rule) {
                return Err(Error::msg(
                    "the output-mse scale rule needs calibration statistics (--calibration)",
                ));
            }
            let tensor = expquant::quantize(weights, rows, cols, &config)?;
            let dequantized = tensor.dequantize();
            Ok(Quantized {
                tensor,
                dequantized,
                bias_correction: None,
            })
        }
    }
}

/// `Σ_r (q_r − w_r)ᵀ H (q_r − w_r)` and `Σ_r w_rᵀ H w_r` for a `rows × cols` layer whose
/// inputs have second moment `H` (per group of rows for a grouped convolution): the output
/// error and output energy per input row, the quantity compensation minimizes. `None` when
/// the covariance does not fit the layer.
pub fn output_error(
    w: &[f32],
    q: &[f32],
    rows: usize,
    cols: usize,
    cov: &Covariance,
) -> Option<(f64, f64)> {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, Mat, MatRef, Par};
    let groups = cov.groups();
    if cov.dim() != cols || groups == 0 || !rows.is_multiple_of(groups) || w.len() != rows * cols {
        return None;
    }
    let per_group = rows / groups;
    let (mut err, mut energy) = (0.0f64, 0.0f64);
    // Per group, the error rows then the weight rows, times H in one product.
    let mut x = Mat::<f64>::zeros(2 * per_group, cols);
    let mut y = Mat::<f64>::zeros(2 * per_group, cols);
    for g in 0..groups {
        let h = cov.matrix(g)?;
        let h = MatRef::from_row_major_slice(&h, cols, cols);
        for i in 0..per_group {
            let r = g * per_group + i;
            for j in 0..cols {
                let (a, b) = (w[r * cols + j], q[r * cols + j]);
                x[(i, j)] = f64::from(b - a);
                x[(per_group + i, j)] = f64::from(a);
            }
        }
        matmul(y.as_mut(), Accum::Replace, x.as_ref(), h, 1.0, Par::Seq);
        for j in 0..cols {
            for i in 0..per_group {
                err += x[(i, j)] * y[(i, j)];
                energy += x[(per_group + i, j)] * y[(per_group + i, j)];
            }
        }
    }
    Some((err.max(0.0), energy.max(0.0)))
}

/// `E[y]` and `E[y²]` of `y = min(max(z, 0), clip)` for `z` normal with mean `beta` and
/// spread `|gamma|`: a BatchNorm followed by ReLU (`clip` infinite) or ReLU6.
pub fn relu_moments(beta: f64, gamma: f64, clip: f64) -> Result<(f64, f64)> {
    Ok(expquant::calibrate::relu_moments(beta, gamma, clip)?)
}

/// Stored bits of a tensor, codebooks and row padding included.
pub fn stored_bits(tensor: &QuantizedTensor) -> u64 {
    (tensor.bits_per_weight() * (tensor.rows() * tensor.cols()) as f64).round() as u64
}

/// Signal-to-quantization-noise ratio in dB.
pub fn sqnr_db(original: &[f32], approx: &[f32]) -> Result<f64> {
    Ok(expquant::metrics::sqnr_db(original, approx)?)
}

/// Serializes an expquant container: named quantized tensors and named `rows × cols` `f32`
/// arrays, all in one buffer.
pub fn container_bytes(
    tensors: &[(&str, &QuantizedTensor)],
    arrays: &[(&str, usize, usize, &[f32])],
) -> Result<Vec<u8>> {
    let entries: Vec<(&str, Entry)> = tensors
        .iter()
        .map(|&(name, t)| (name, Entry::Quantized(t)))
        .chain(
            arrays
                .iter()
                .map(|&(name, rows, cols, values)| (name, Entry::F32 { rows, cols, values })),
        )
        .collect();
    Ok(expquant::write_container(&entries)?)
}

/// What a container entry holds.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryKind {
    /// A quantized tensor.
    Quantized {
        /// Bits per code.
        bits: u8,
        /// Level family name.
        scheme: String,
        /// Granularity name.
        granularity: String,
        /// Codebook count.
        groups: usize,
    },
    /// Raw `f32` values.
    F32,
}

/// The shape and settings of a container entry, read from its header.
#[derive(Debug, Clone)]
pub struct EntryShape {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Quantized or `f32`, with the quantized tensor's settings.
    pub kind: EntryKind,
    /// Stored bits per weight (32 for an `f32` entry).
    pub bits_per_weight: f64,
}

/// Whether an entry's stored bytes were found intact.
#[derive(Debug, Clone, PartialEq)]
pub enum Checksum {
    /// Checksum (and, for a quantized tensor, parameters and codes) verified.
    Ok,
    /// The check failed, for this reason.
    Mismatch(String),
    /// Not checked (only the table was).
    NotChecked,
}

/// One entry of a container, as `inspect` shows it.
#[derive(Debug, Clone)]
pub struct EntryInfo {
    /// Its name.
    pub name: String,
    /// Its shape and settings, or why its header cannot be read.
    pub shape: std::result::Result<EntryShape, String>,
    /// Its checksum state.
    pub checksum: Checksum,
}

/// A container as `inspect` shows it.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    /// Format version.
    pub version: u16,
    /// Entries in table order.
    pub entries: Vec<EntryInfo>,
}

/// Opens a container with [`Verification::Lazy`] (header and table checked under the table's
/// checksum, no entry yet) and describes each entry; with `verify`, each entry is then looked
/// up through that view, which checks it, so a damaged entry is reported on its own line
/// while the others still show as verified.
pub fn inspect_container(bytes: &[u8], verify: bool) -> Result<ContainerInfo> {
    let lazy = ContainerView::with_verification(bytes, Verification::Lazy)?;
    // The same table read without entry checks: headers are bounds-checked, so describing a
    // damaged entry cannot go wrong, and the listing does not depend on `verify`.
    let trusted = ContainerView::with_verification(bytes, Verification::Trusted)?;
    // Both walks go through the table once, in the same order; a name is looked up on its
    // own (O(index)) only for an entry whose header cannot be read.
    let mut checked = lazy.entries();
    let mut entries = Vec::with_capacity(lazy.len());
    for (index, described) in trusted.entries().enumerate() {
        let (name, shape) = match described {
            Ok((name, view)) => (name.to_string(), Ok(describe(&view))),
            Err(e) => (
                lazy.name(index).unwrap_or_default().to_string(),
                Err(e.to_string()),
            ),
        };
        let checksum = match verify.then(|| checked.next()).flatten() {
            Some(Ok(_)) => Checksum::Ok,
            Some(Err(e)) => Checksum::Mismatch(e.to_string()),
            None => Checksum::NotChecked,
        };
        entries.push(EntryInfo {
            name,
            shape,
            checksum,
        });
    }
    Ok(ContainerInfo {
        version: lazy.version(),
        entries,
    })
}

fn describe(view: &EntryView<'_>) -> EntryShape {
    match view {
        EntryView::Quantized(q) => EntryShape {
            rows: q.rows(),
            cols: q.cols(),
            kind: EntryKind::Quantized {
                bits: q.bits(),
                scheme: scheme_name(q.scheme()),
                granularity: granularity_name(q.granularity()),
                groups: q.group_count(),
            },
            bits_per_weight: q.bits_per_weight(),
        },
        EntryView::F32(a) => EntryShape {
            rows: a.rows(),
            cols: a.cols(),
            kind: EntryKind::F32,
            bits_per_weight: 32.0,
        },
    }
}
