//! The run's report: a table on the terminal and a JSON document.

use serde::Serialize;

use crate::engine::{Checksum, ContainerInfo, EntryKind};

/// One quantized tensor.
#[derive(Debug, Clone, Serialize)]
pub struct TensorRow {
    /// Its name in the model and the container.
    pub name: String,
    /// Its shape in the model.
    pub shape: Vec<usize>,
    /// Matrix rows (output channels).
    pub rows: usize,
    /// Matrix columns.
    pub cols: usize,
    /// Level family.
    pub scheme: String,
    /// Bits per code.
    pub bits: u8,
    /// Granularity.
    pub granularity: String,
    /// Scale rule.
    pub scale_rule: String,
    /// Stored bits per weight, codebooks included.
    pub bits_per_weight: f64,
    /// `‖Q − W‖ / ‖W‖`.
    pub relative_error: f64,
    /// Signal-to-quantization-noise ratio, dB.
    pub sqnr_db: f64,
    /// With calibration: `sqrt(Σ (Q − W)²·E[x²] / Σ W²·E[x²])`, the layer's relative output
    /// error after bias correction, treating its inputs as uncorrelated.
    pub output_relative_error: Option<f64>,
    /// `Σ (Q − W)²`, each term times its input's `E[x²]` when calibrated: the error that
    /// `--target-bpw` minimizes summed over tensors.
    pub weighted_error: f64,
    /// Whether a bias correction was computed for this layer.
    pub bias_corrected: bool,
}

/// One tensor left in floating point.
#[derive(Debug, Clone, Serialize)]
pub struct KeptRow {
    /// Its name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its stored type.
    pub dtype: String,
    /// Why it was not quantized.
    pub reason: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The model file.
    pub input: String,
    /// The container written.
    pub output: String,
    /// Stored bits over quantized weights, codebooks included.
    pub bits_per_weight: f64,
    /// `--target-bpw`, when given.
    pub target_bits_per_weight: Option<f64>,
    /// Whether the width allocation is exactly optimal (false only when the solver had to
    /// round sizes to a grid).
    pub allocation_exact: Option<bool>,
    /// Quantized weights.
    pub quantized_weights: u64,
    /// Bytes of every tensor in the model file.
    pub size_before_bytes: u64,
    /// Bytes of the output: the container (quantized tensors, every other float tensor and
    /// the corrected biases), plus the sidecar when one was written.
    pub size_after_bytes: u64,
    /// `f32` entries in the container: kept float tensors and new biases.
    pub f32_entries: usize,
    /// The sidecar of tensors the container cannot hold, when one was written.
    pub sidecar: Option<String>,
    /// Calibration samples used (0 without calibration).
    pub calibration_samples: usize,
    /// Whether statistics were measured sequentially.
    pub sequential: bool,
    /// Quantized tensors, in model order.
    pub tensors: Vec<TensorRow>,
    /// Tensors kept in floating point.
    pub kept: Vec<KeptRow>,
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.2} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

impl Report {
    /// The terminal table.
    pub fn table(&self) -> String {
        let width = self
            .tensors
            .iter()
            .map(|t| t.name.chars().count())
            .max()
            .unwrap_or(6)
            .clamp(6, 48);
        let mut out = format!(
            "{:<width$}  {:>14}  {:>4}  {:>6}  {:>8}  {:>8}  {:>9}\n",
            "tensor", "rows×cols", "bits", "bpw", "rel.err", "SQNR dB", "out.err"
        );
        for t in &self.tensors {
            let chars = t.name.chars().count();
            let name = if chars > width {
                let tail: String = t.name.chars().skip(chars - (width - 1)).collect();
                format!("…{tail}")
            } else {
                t.name.clone()
            };
            out += &format!(
                "{:<width$}  {:>14}  {:>4}  {:>6.3}  {:>8.4}  {:>8.2}  {:>9}\n",
                name,
                format!("{}×{}", t.rows, t.cols),
                t.bits,
                t.bits_per_weight,
                t.relative_error,
                t.sqnr_db,
                t.output_relative_error
                    .map_or("-".to_string(), |e| format!("{e:.4}")),
            );
        }
        out += &format!(
            "{} tensors quantized ({} weights), {} kept; {:.3} bits per weight{}\n",
            self.tensors.len(),
            self.quantized_weights,
            self.kept.len(),
            self.bits_per_weight,
            self.target_bits_per_weight
                .map_or(String::new(), |t| format!(" (target {t})")),
        );
        out += &format!(
            "size: {} -> {} ({:.1}x smaller), {} f32 entries in {}{}\n",
            human(self.size_before_bytes),
            human(self.size_after_bytes),
            self.size_before_bytes as f64 / self.size_after_bytes.max(1) as f64,
            self.f32_entries,
            self.output,
            self.sidecar
                .as_ref()
                .map_or(String::new(), |s| format!(", sidecar {s}")),
        );
        out
    }
}

/// The listing of `expquant inspect`: one line per entry, then totals.
pub fn inspect_table(path: &str, file_len: usize, info: &ContainerInfo) -> String {
    let width = info
        .entries
        .iter()
        .map(|e| e.name.chars().count())
        .max()
        .unwrap_or(6)
        .clamp(6, 48);
    let mut out = format!(
        "{path}: expquant container v{}, {} entries, {}; table checksum ok\n",
        info.version,
        info.entries.len(),
        human(file_len as u64)
    );
    out += &format!(
        "{:<width$}  {:<9}  {:>14}  {:>4}  {:>7}  {:<11}  {:<11}  checksum\n",
        "entry", "kind", "rows×cols", "bits", "bpw", "granularity", "scheme"
    );
    let (mut weights, mut stored, mut values) = (0u64, 0.0f64, 0u64);
    let mut counts = [0usize; 3];
    for e in &info.entries {
        let checksum = match &e.checksum {
            Checksum::Ok => "ok".to_string(),
            Checksum::Mismatch(reason) => format!("MISMATCH: {reason}"),
            Checksum::NotChecked => "not checked".to_string(),
        };
        counts[match e.checksum {
            Checksum::Ok => 0,
            Checksum::Mismatch(_) => 1,
            Checksum::NotChecked => 2,
        }] += 1;
        let line = match &e.shape {
            Ok(s) => {
                let n = (s.rows * s.cols) as u64;
                let (kind, bits, granularity, scheme) = match &s.kind {
                    EntryKind::Quantized {
                        bits,
                        scheme,
                        granularity,
                        ..
                    } => {
                        weights += n;
                        stored += s.bits_per_weight * n as f64;
                        (
                            "quantized",
                            bits.to_string(),
                            granularity.as_str(),
                            scheme.as_str(),
                        )
                    }
                    EntryKind::F32 => {
                        values += n;
                        ("f32", "-".to_string(), "-", "-")
                    }
                };
                format!(
                    "{:<width$}  {:<9}  {:>14}  {:>4}  {:>7.3}  {:<11}  {:<11}  {checksum}",
                    e.name,
                    kind,
                    format!("{}×{}", s.rows, s.cols),
                    bits,
                    s.bits_per_weight,
                    granularity,
                    scheme,
                )
            }
            Err(reason) => format!(
                "{:<width$}  unreadable header: {reason}  {checksum}",
                e.name
            ),
        };
        out += &line;
        out += "\n";
    }
    if weights > 0 {
        out += &format!(
            "quantized: {weights} weights, {:.3} bits per weight; ",
            stored / weights as f64
        );
    }
    out += &format!("f32: {values} values\n");
    out += &if counts[2] == info.entries.len() {
        "entries not checked (--verify checks every entry)\n".to_string()
    } else {
        format!(
            "checksums: {} ok, {} mismatched, {} not checked\n",
            counts[0], counts[1], counts[2]
        )
    };
    out
}
