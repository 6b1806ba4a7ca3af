//! `expquant`: quantize the weights of a whole model file (safetensors, ONNX, npy) to 1–8
//! bits with the expquant library, optionally calibrated and under a size budget, with a
//! report.

#[macro_use]
mod error;
mod allocate;
mod engine;
mod npy;
mod onnx;
mod output;
mod report;
mod run;
mod safetensors_file;
mod select;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Quantize neural-network weights to 1–8 bits with exponential or linear codebooks.
#[derive(Debug, Parser)]
#[command(name = "expquant", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Quantize every weight matrix of a model file into an expquant container.
    #[command(after_long_help = QUANTIZE_EXAMPLES, after_help = QUANTIZE_EXAMPLES)]
    Quantize(Box<QuantizeArgs>),
    /// List a container's entries: kind, shape, bits, bits per weight, granularity, scheme
    /// and checksum state.
    #[command(after_long_help = INSPECT_NOTES, after_help = INSPECT_NOTES)]
    Inspect {
        /// The container (`.expq`) to read.
        file: PathBuf,
        /// Check every entry's checksum and contents (without it, only the header and the
        /// entry table are checked and entries show as not checked).
        #[arg(long)]
        verify: bool,
    },
}

const QUANTIZE_EXAMPLES: &str = "\
Examples:
  expquant quantize model.safetensors -o model.expq --bits 4
  expquant quantize model.safetensors -o model.expq --target-bpw 3.5 --report report.json
  expquant quantize model.onnx -o q.expq --bits 4 --calibration calib/ --emit-onnx q.onnx
  expquant quantize model.onnx -o q.expq --bits 3 --calibration batch.npy --sequential
  expquant quantize weights.npy -o w.expq --scheme linear --granularity group:64
  expquant quantize model.safetensors -o model.expq --overrides overrides.toml

An overrides.toml (the same fields as a JSON array of objects):
  [[override]]
  match = \"*.attn.*\"   # bits, scheme, granularity, scale_rule, quantize
  bits = 6

Which tensors: 2-D and convolution weights (ONNX: Conv, Gemm and MatMul weight initializers);
1-D tensors, biases, norms and embeddings stay as they are. --include / --exclude patterns
(`*` matches any run of characters) and the overrides file change that.

Calibration (ONNX): the model runs in tract on each input and every quantized layer gets its
inputs' statistics. The calibrated default is the library's most accurate pipeline:
  1. error compensation (GPTQ/OBQ-style): each layer's input covariance E[x x^T] (im2col
     patches for 1-D/2-D convolutions with their pads, strides, dilations and groups, one
     matrix per group for grouped and depthwise convolutions) drives a column-by-column
     quantization that pushes each column's rounding error onto the columns not yet
     quantized. Turn off with --no-compensation. Memory: cols^2 doubles per layer (per
     group), every layer's held at once while the model runs (a 4096-column layer:
     128 MiB); a layer whose covariance would pass 1 GiB (over 11585 columns), 3-D
     convolutions and weights read by several nodes get bias correction only.
  2. bias correction: each layer's bias absorbs the mean output shift of its quantized
     weights (a layer without a bias gets one). Turn off with --no-bias-correction.
The per-channel mean squares also weigh --scale-rule output-mse; with a covariance the error
under --target-bpw and in the report is the output error sum_r dw_r^T H dw_r.
--sequential measures layer k with layers 1..k-1 already quantized (also compensated).
Without --calibration (data-free): a Conv/Gemm fed by BatchNormalization -> Relu or
Clip(0, c) gets its input means from the BatchNorm's scale and bias (normalized values taken
as normal) and its bias corrected; --no-bias-correction turns this off too.

Outputs: the container (-o) alone holds the model's tensors, each under its original name:
every quantized tensor (MatMul and Gemm weights stored [in, out] are held transposed, one row
per output), and every other float tensor and every corrected bias as an f32 entry, the
tensor seen as first axis x the rest (f16, bf16 and f64 values are converted to f32, which is
what the container holds; f16 and bf16 convert exactly, f64 is rounded). A corrected bias for
a layer that had none is named WEIGHT.expquant_bias. Tensors of other dtypes (integers, bool)
cannot be f32 entries: a safetensors model with some needs --rest-sidecar FILE, which keeps
them as stored; ONNX integer initializers belong to the graph and stay in the .onnx file.
All files are written under temporary names and renamed only when everything succeeded.";

const INSPECT_NOTES: &str = "\
Examples:
  expquant inspect model.expq
  expquant inspect model.expq --verify

The header and the entry table are always checked (under the table's checksum); each entry's
checksum (and, for quantized tensors, its parameters and codes) only with --verify. The
checksum column reads ok, MISMATCH (with the reason) or not checked. Exit status 1 when a
checked entry fails.";

/// Options of `expquant quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The model: `.safetensors`, `.onnx` or `.npy` (one matrix).
    pub model: PathBuf,
    /// The container to write.
    #[arg(short, long, value_name = "OUT.expq")]
    pub output: PathBuf,
    /// Bits per code for every quantized tensor (1–8).
    #[arg(long, default_value_t = 4, conflicts_with = "target_bpw")]
    pub bits: u8,
    /// Choose each tensor's width so the model's bits per weight (codebooks included, over the
    /// quantized tensors) is at most X with the least summed error.
    #[arg(long, value_name = "X")]
    pub target_bpw: Option<f64>,
    /// Widths --target-bpw may choose from.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5,6,7,8")]
    pub candidate_bits: Vec<u8>,
    /// Level family: exponential or linear.
    #[arg(long, default_value = "exponential")]
    pub scheme: String,
    /// Which weights share a codebook: tensor, row or group:G.
    #[arg(long, default_value = "row")]
    pub granularity: String,
    /// How each codebook's scale is fitted: max-abs, mse, correlation or output-mse (needs
    /// --calibration).
    #[arg(long, default_value = "max-abs")]
    pub scale_rule: String,
    /// Quantize tensors whose name matches (repeatable; `*` is a wildcard).
    #[arg(long, value_name = "PATTERN")]
    pub include: Vec<String>,
    /// Keep tensors whose name matches in floating point (repeatable; wins over --include).
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Per-tensor settings, `.json` or `.toml`: entries of {"match": PATTERN, "bits",
    /// "scheme", "granularity", "scale_rule", "quantize"}, a JSON array or TOML `[[override]]`
    /// tables; later entries win.
    #[arg(long, value_name = "FILE.json|FILE.toml")]
    pub overrides: Option<PathBuf>,
    /// Calibration inputs for an ONNX model: a directory of `.npy` files or one `.npy` with a
    /// batch axis.
    #[arg(long, value_name = "PATH")]
    pub calibration: Option<PathBuf>,
    /// Leave biases as they are (turns off the calibrated and the data-free bias correction).
    #[arg(long)]
    pub no_bias_correction: bool,
    /// With --calibration: quantize each layer with nearest-level rounding instead of error
    /// compensation (no input covariance is measured).
    #[arg(long)]
    pub no_compensation: bool,
    /// With --calibration: measure each layer's inputs with the layers before it already
    /// quantized (slower: the model runs once per layer).
    #[arg(long)]
    pub sequential: bool,
    /// Also write the ONNX model with dequantized weights and corrected biases.
    #[arg(long, value_name = "Q.onnx")]
    pub emit_onnx: Option<PathBuf>,
    /// A safetensors file for the tensors the container cannot hold (integer and bool dtypes),
    /// kept as stored; needed, and written, only when the model has such tensors.
    #[arg(long, value_name = "FILE.safetensors")]
    pub rest_sidecar: Option<PathBuf>,
    /// Write the report as JSON.
    #[arg(long, value_name = "R.json")]
    pub report: Option<PathBuf>,
    /// Tensors quantized at once (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bars and no table.
    #[arg(short, long)]
    pub quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Quantize(args) => run::quantize(&args),
        Command::Inspect { file, verify } => run::inspect(&file, verify),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
