//! The two commands: `quantize` (read a model, choose settings, quantize, write the outputs
//! and the report) and `inspect`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use safetensors::tensor::Dtype;

use crate::allocate::{self, Choice};
use crate::engine::{self, Moments, Settings};
use crate::error::{Context, Result};
use crate::npy;
use crate::onnx::{self, Layer, OnnxModel, Sample};
use crate::output::Staged;
use crate::report::{self, KeptRow, Report, TensorRow};
use crate::safetensors_file::{self, SafetensorsFile};
use crate::select::{Decision, Overrides, Selection};
use crate::QuantizeArgs;

/// The model file being quantized.
enum Source {
    Safetensors(SafetensorsFile),
    Npy {
        array: npy::Array,
    },
    Onnx {
        model: Box<OnnxModel>,
        layers: HashMap<String, Layer>,
    },
}

/// One tensor of the model and what happens to it.
struct Item {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    bytes: u64,
    decision: Decision,
    rows: usize,
    cols: usize,
    /// The ONNX layer the tensor is the weight of.
    layer: Option<Layer>,
}

/// `rows × cols` of a tensor viewed as a matrix: the first axis against the rest.
fn matrix_dims(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (1, *n),
        [rows, rest @ ..] => (*rows, rest.iter().product()),
    }
}

impl Source {
    fn open(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        match ext.as_str() {
            "safetensors" => Ok(Source::Safetensors(SafetensorsFile::open(path)?)),
            "npy" => Ok(Source::Npy {
                array: npy::read(path)?,
            }),
            "onnx" => {
                let model = OnnxModel::open(path)?;
                let layers = model.layers()?;
                Ok(Source::Onnx {
                    model: Box::new(model),
                    layers,
                })
            }
            _ => bail!(
                "{}: unsupported model format (expected .safetensors, .onnx or .npy)",
                path.display()
            ),
        }
    }

    fn items(&self, path: &Path, selection: &Selection, base: Settings) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut push = |name: String,
                        shape: Vec<usize>,
                        dtype: String,
                        bytes: u64,
                        eligible: std::result::Result<(), String>,
                        layer: Option<Layer>|
         -> Result<()> {
            let decision = selection.decide(&name, &shape, eligible, base)?;
            let (rows, cols) = match &layer {
                Some(l) => (l.rows, l.cols),
                None => matrix_dims(&shape),
            };
            items.push(Item {
                name,
                shape,
                dtype,
                bytes,
                decision,
                rows,
                cols,
                layer,
            });
            Ok(())
        };
        match self {
            Source::Safetensors(file) => {
                for e in &file.entries {
                    let eligible = if safetensors_file::is_float(e.dtype) {
                        Ok(())
                    } else {
                        Err(format!("dtype {:?} is not a float type", e.dtype))
                    };
                    push(
                        e.name.clone(),
                        e.shape.clone(),
                        format!("{:?}", e.dtype),
                        e.len,
                        eligible,
                        None,
                    )?;
                }
            }
            Source::Npy { array } => {
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "weight".into());
                push(
                    name,
                    array.shape.clone(),
                    "F32".into(),
                    array.data.len() as u64 * 4,
                    Ok(()),
                    None,
                )?;
            }
            Source::Onnx { model, layers } => {
                for (name, dims, data_type) in model.initializers() {
                    let layer = layers.get(&name).cloned();
                    let eligible = if layer.is_some() {
                        Ok(())
                    } else {
                        Err("not a Conv, Gemm or MatMul weight".to_string())
                    };
                    let width = match onnx::dtype_name(data_type).as_str() {
                        "double" | "int64" | "uint64" => 8,
                        "float16" | "bfloat16" | "int16" | "uint16" => 2,
                        "int8" | "uint8" | "bool" => 1,
                        _ => 4,
                    };
                    let bytes = dims.iter().product::<usize>() as u64 * width;
                    push(
                        name,
                        dims,
                        onnx::dtype_name(data_type),
                        bytes,
                        eligible,
                        layer,
                    )?;
                }
            }
        }
        Ok(items)
    }

    /// A quantized item's weights as its `rows × cols` matrix.
    fn load_matrix(&self, item: &Item) -> Result<Vec<f32>> {
        match self {
            Source::Safetensors(file) => {
                let entry = file
                    .entries
                    .iter()
                    .find(|e| e.name == item.name)
                    .expect("items come from the entries");
                file.load_f32(entry)
            }
            Source::Npy { array } => Ok(array.data.clone()),
            Source::Onnx { model, .. } => {
                let values = model.load_f32(&item.name)?;
                let layer = item
                    .layer
                    .as_ref()
                    .expect("ONNX items to quantize are layers");
                Ok(onnx::to_matrix(layer, &values))
            }
        }
    }
}

/// A progress bar on stderr, hidden with `--quiet`.
fn bar(len: usize, message: &'static str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

/// `f(0..n)` on up to `threads` threads; the results in index order, or the first error in
/// index order.
fn parallel_map<T: Send>(
    n: usize,
    threads: usize,
    bar: &ProgressBar,
    f: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<T>>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, n.max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = f(i);
                if r.is_err() {
                    // Stop handing out work; the error is reported below.
                    next.store(n, Ordering::Relaxed);
                }
                results
                    .lock()
                    .expect("no worker panics while holding the lock")[i] = Some(r);
                bar.inc(1);
            });
        }
    });
    let results = results.into_inner().expect("workers have finished");
    let mut out = Vec::with_capacity(n);
    for r in results.into_iter().flatten() {
        out.push(r?);
    }
    if out.len() != n {
        bail!("internal error: a work item was skipped");
    }
    Ok(out)
}

/// The error that weighs a layer's width choices and its report: with an input covariance
/// `Σ_r (q_r − w_r)ᵀ H (q_r − w_r)`, the output error compensation minimizes, beside the
/// output energy `Σ_r w_rᵀ H w_r`; otherwise [`weighted_error`].
fn layer_error(
    w: &[f32],
    q: &[f32],
    rows: usize,
    cols: usize,
    stats: Option<&Moments>,
) -> (f64, f64) {
    stats
        .and_then(|m| m.covariance.as_ref())
        .and_then(|cov| engine::output_error(w, q, rows, cols, cov))
        .unwrap_or_else(|| weighted_error(w, q, cols, stats))
}

/// `Σ (Q − W)²` or, with statistics, `Σ (Q − W)²·E[x²]`; and the same sum of `W²`.
fn weighted_error(w: &[f32], q: &[f32], cols: usize, stats: Option<&Moments>) -> (f64, f64) {
    let mut err = 0.0f64;
    let mut energy = 0.0f64;
    for (i, (&a, &b)) in w.iter().zip(q).enumerate() {
        let weight = match stats {
            Some(m) if m.sq_mean.len() == w.len() => m.sq_mean[i] as f64,
            Some(m) => m.sq_mean[i % cols] as f64,
            None => 1.0,
        };
        let d = (b - a) as f64;
        err += d * d * weight;
        energy += (a as f64) * (a as f64) * weight;
    }
    (err, energy)
}

/// The calibration inputs: every `.npy` of a directory (sorted by name), or one `.npy`; an
/// array with the model input's rank is split along its batch axis.
fn load_samples(path: &Path, model: &OnnxModel) -> Result<Vec<Sample>> {
    let inputs = model.inputs();
    let (input_name, dims) = match inputs.as_slice() {
        [one] => one.clone(),
        [] => bail!("the model has no inputs to calibrate with"),
        _ => bail!(
            "calibration supports models with one input; this one has {}",
            inputs.len()
        ),
    };
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .context(format!(
                "cannot read calibration directory {}",
                path.display()
            ))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "npy"))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!(
                "calibration directory {} holds no .npy files",
                path.display()
            );
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    let rank = dims.len();
    let expected = |batch: &str| {
        let d: Vec<String> = dims
            .iter()
            .enumerate()
            .map(|(i, d)| match (i, d) {
                (0, _) => batch.to_string(),
                (_, Some(v)) => v.to_string(),
                (_, None) => "?".into(),
            })
            .collect();
        format!("[{}]", d.join(", "))
    };
    let mut samples = Vec::new();
    for file in files {
        let array = npy::read(&file)?;
        let name = file.display().to_string();
        let item_shape: &[usize] = if array.shape.len() == rank {
            &array.shape[1..]
        } else if array.shape.len() + 1 == rank {
            &array.shape
        } else {
            bail!(
                "calibration tensor {name} has shape {:?}, expected {} (or without the batch axis) for model input '{input_name}'",
                array.shape,
                expected("N")
            );
        };
        let matches = dims
            .iter()
            .skip(1)
            .zip(item_shape)
            .all(|(d, &s)| d.is_none_or(|d| d == s));
        if !matches || rank == 0 {
            bail!(
                "calibration tensor {name} has shape {:?}, expected {} for model input '{input_name}'",
                array.shape,
                expected("N")
            );
        }
        let per: usize = item_shape.iter().product();
        let mut shape = vec![1];
        shape.extend_from_slice(item_shape);
        for (i, chunk) in array.data.chunks_exact(per.max(1)).enumerate() {
            samples.push(Sample {
                name: format!("{name}[{i}]"),
                shape: shape.clone(),
                data: chunk.to_vec(),
            });
        }
    }
    if samples.is_empty() {
        bail!("no calibration samples in {}", path.display());
    }
    Ok(samples)
}

/// What quantizing one tensor produced.
struct Done {
    row: TensorRow,
    tensor: engine::Tensor,
    bias_correction: Option<Vec<f32>>,
    /// Dequantized matrix, kept only when an ONNX model is written.
    dequantized: Option<Vec<f32>>,
}

fn quantize_item(
    source: &Source,
    item: &Item,
    settings: &Settings,
    stats: Option<&Moments>,
    correct_bias: bool,
    keep_dequantized: bool,
) -> Result<Done> {
    let w = source.load_matrix(item)?;
    let q = engine::quantize_layer(&w, item.rows, item.cols, settings, stats, correct_bias)
        .map_err(|e| e.context(format!("tensor '{}'", item.name)))?;
    let (err, energy) = weighted_error(&w, &q.dequantized, item.cols, None);
    let (weighted, weighted_energy) = layer_error(&w, &q.dequantized, item.rows, item.cols, stats);
    let output_relative_error = stats.map(|_| {
        if weighted_energy > 0.0 {
            (weighted / weighted_energy).sqrt()
        } else {
            0.0
        }
    });
    let row = TensorRow {
        name: item.name.clone(),
        shape: item.shape.clone(),
        rows: item.rows,
        cols: item.cols,
        scheme: engine::scheme_name(settings.scheme),
        bits: settings.bits,
        granularity: engine::granularity_name(settings.granularity),
        scale_rule: engine::scale_rule_name(settings.rule),
        bits_per_weight: q.tensor.bits_per_weight(),
        relative_error: if energy > 0.0 {
            (err / energy).sqrt()
        } else {
            0.0
        },
        sqnr_db: engine::sqnr_db(&w, &q.dequantized).unwrap_or(f64::INFINITY),
        output_relative_error,
        weighted_error: weighted,
        bias_corrected: q.bias_correction.is_some(),
    };
    Ok(Done {
        row,
        tensor: q.tensor,
        bias_correction: q.bias_correction,
        dequantized: keep_dequantized.then_some(q.dequantized),
    })
}

/// `expquant quantize`.
pub fn quantize(args: &QuantizeArgs) -> Result<()> {
    let base = Settings {
        scheme: engine::parse_scheme(&args.scheme)?,
        bits: args.bits,
        granularity: engine::parse_granularity(&args.granularity)?,
        rule: engine::parse_scale_rule(&args.scale_rule)?,
    };
    base.validate()?;
    if let Some(t) = args.target_bpw {
        if !(t.is_finite() && t > 0.0) {
            bail!("--target-bpw must be a positive number, got {t}");
        }
    }
    if let Some(&b) = args.candidate_bits.iter().find(|&&b| !(1..=8).contains(&b)) {
        bail!("--candidate-bits: {b} is not a width from 1 to 8");
    }
    let selection = Selection {
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        overrides: match &args.overrides {
            Some(p) => Overrides::load(p)?,
            None => Overrides::default(),
        },
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);

    let source = Source::open(&args.model)?;
    let is_onnx = matches!(source, Source::Onnx { .. });
    if !is_onnx && (args.calibration.is_some() || args.emit_onnx.is_some()) {
        bail!("--calibration and --emit-onnx need an .onnx model");
    }
    if args.sequential && args.calibration.is_none() {
        bail!("--sequential needs --calibration");
    }
    let items = source.items(&args.model, &selection, base)?;
    let unstorable = unstorable(&source, &items);
    if !unstorable.is_empty() && args.rest_sidecar.is_none() {
        bail!(
            "{}: the container holds f32 values only, so it cannot hold {}; pass --rest-sidecar FILE.safetensors to keep them there as stored",
            args.model.display(),
            unstorable.join(", ")
        );
    }
    let mut jobs: Vec<(usize, Settings, bool)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| match &item.decision {
            Decision::Quantize {
                settings,
                fixed_bits,
            } => Some((i, *settings, *fixed_bits)),
            Decision::Keep(_) => None,
        })
        .collect();
    if jobs.is_empty() {
        bail!(
            "{}: no tensor to quantize (use --include to name some)",
            args.model.display()
        );
    }
    // ONNX layers in graph order, which is the order sequential calibration needs.
    jobs.sort_by_key(|&(i, _, _)| items[i].layer.as_ref().map_or(i, |l| l.node));

    // Calibration statistics, one-shot (sequential runs measure them again layer by layer).
    let samples = match (&args.calibration, &source) {
        (Some(path), Source::Onnx { model, .. }) => load_samples(path, model)?,
        _ => Vec::new(),
    };
    let calibrated_layer = |i: usize| items[i].layer.as_ref().filter(|l| l.consumers == 1);
    let correct_bias = !args.no_bias_correction;
    let compensate = !args.no_compensation;
    let mut stats: HashMap<usize, Moments> = HashMap::new();
    if let Source::Onnx { model, .. } = &source {
        if samples.is_empty() && correct_bias {
            // Data-free: BatchNorm → ReLU/ReLU6 in front of a layer gives its input moments.
            for &(i, ..) in &jobs {
                if let Some(layer) = calibrated_layer(i) {
                    if let Some(m) = model.data_free_moments(layer)? {
                        stats.insert(i, m);
                    }
                }
            }
        }
        if !samples.is_empty() {
            let progress = bar(1, "calibrating", args.quiet);
            let wanted: Vec<usize> = jobs
                .iter()
                .map(|j| j.0)
                .filter(|&i| calibrated_layer(i).is_some())
                .collect();
            let layers: Vec<&Layer> = wanted
                .iter()
                .map(|&i| calibrated_layer(i).expect("filtered"))
                .collect();
            // Sequential runs measure each layer's covariance again; one-shot statistics then
            // serve only the drift correction, unless --target-bpw weighs errors with them.
            let covariance = compensate && (!args.sequential || args.target_bpw.is_some());
            let moments = model.input_moments(&samples, &layers, covariance, threads)?;
            stats = wanted.into_iter().zip(moments).collect();
            progress.finish_and_clear();
        }
    }

    // Bit widths under a budget.
    let mut allocation_exact = None;
    if let Some(target) = args.target_bpw {
        let progress = bar(jobs.len(), "measuring", args.quiet);
        let options = parallel_map(jobs.len(), threads, &progress, |k| {
            let (i, settings, fixed) = jobs[k];
            let item = &items[i];
            let w = source.load_matrix(item)?;
            let widths: Vec<u8> = if fixed {
                vec![settings.bits]
            } else {
                args.candidate_bits.clone()
            };
            widths
                .into_iter()
                .map(|bits| {
                    let s = Settings { bits, ..settings };
                    let st = stats.get(&i);
                    let q = engine::quantize_layer(&w, item.rows, item.cols, &s, st, false)
                        .map_err(|e| e.context(format!("tensor '{}' at {bits} bits", item.name)))?;
                    Ok(Choice {
                        bits,
                        size: engine::stored_bits(&q.tensor),
                        error: layer_error(&w, &q.dequantized, item.rows, item.cols, st).0,
                    })
                })
                .collect::<Result<Vec<Choice>>>()
        })?;
        progress.finish_and_clear();
        let weights: u64 = jobs
            .iter()
            .map(|&(i, ..)| (items[i].rows * items[i].cols) as u64)
            .sum();
        // A target read back from a report (stored bits / weights) must admit exactly those
        // bits, so a product within rounding of an integer counts as that integer.
        let exact_bits = target * weights as f64;
        let budget = if (exact_bits - exact_bits.round()).abs() < 1e-6 {
            exact_bits.round() as u64
        } else {
            exact_bits.floor() as u64
        };
        let (picks, exact) = allocate::solve(&options, budget).map_err(|e| {
            let least: u64 = options
                .iter()
                .map(|o| o.iter().map(|c| c.size).min().unwrap_or(0))
                .sum();
            e.context(format!(
                "--target-bpw {target}: the smallest widths need {:.4} bits per weight",
                least as f64 / weights as f64
            ))
        })?;
        for (job, (&k, opts)) in jobs.iter_mut().zip(picks.iter().zip(&options)) {
            job.1.bits = opts[k].bits;
        }
        allocation_exact = Some(exact);
    }

    // Quantize.
    let keep_dequantized = args.emit_onnx.is_some() || args.sequential;
    let mut working = match &source {
        Source::Onnx { model, .. } => Some(model.clone()),
        _ => None,
    };
    let progress = bar(jobs.len(), "quantizing", args.quiet);
    let done: Vec<Done> = if args.sequential {
        let model = working.as_mut().expect("sequential needs ONNX");
        let mut done = Vec::with_capacity(jobs.len());
        for &(i, settings, _) in &jobs {
            let layer = calibrated_layer(i);
            let moments = match layer {
                Some(l) => Some(
                    model
                        .input_moments(&samples, &[l], compensate, threads)?
                        .remove(0),
                ),
                None => None,
            };
            let mut d = quantize_item(
                &source,
                &items[i],
                &settings,
                moments.as_ref(),
                correct_bias,
                true,
            )?;
            if let (Some(correction), Some(q), Some(fp)) =
                (d.bias_correction.as_mut(), moments.as_ref(), stats.get(&i))
            {
                let w = source.load_matrix(&items[i])?;
                let drift = drift_correction(&w, items[i].rows, items[i].cols, fp, q);
                for (c, d) in correction.iter_mut().zip(drift) {
                    *c += d;
                }
            }
            apply_to_model(model, &items[i], &d)?;
            done.push(d);
            progress.inc(1);
        }
        done
    } else {
        let done = parallel_map(jobs.len(), threads, &progress, |k| {
            let (i, settings, _) = jobs[k];
            quantize_item(
                &source,
                &items[i],
                &settings,
                stats.get(&i),
                correct_bias,
                keep_dequantized,
            )
        })?;
        if let Some(model) = working.as_mut() {
            if args.emit_onnx.is_some() {
                for (&(i, ..), d) in jobs.iter().zip(&done) {
                    apply_to_model(model, &items[i], d)?;
                }
            }
        }
        done
    };
    progress.finish_and_clear();

    // Outputs, staged then renamed together. The quantized tensors and the f32 entries are
    // in memory together only while the container is written.
    let mut staged = Staged::default();
    let rest = rest_entries(&source, &items, &jobs, &done)?;
    let named: Vec<(&str, &engine::Tensor)> = jobs
        .iter()
        .zip(&done)
        .map(|(&(i, ..), d)| (items[i].name.as_str(), &d.tensor))
        .collect();
    let arrays: Vec<(&str, usize, usize, &[f32])> = rest
        .arrays
        .iter()
        .map(|(name, rows, cols, values)| (name.as_str(), *rows, *cols, values.as_slice()))
        .collect();
    let container = engine::container_bytes(&named, &arrays)
        .map_err(|e| e.context(format!("cannot write {}", args.output.display())))?;
    drop(arrays);
    staged.write(&args.output, &container)?;
    let container_len = container.len() as u64;
    drop(container);
    let f32_entries = rest.arrays.len();
    let sidecar_len = match (&args.rest_sidecar, rest.sidecar.is_empty()) {
        (Some(path), false) => {
            let metadata = match &source {
                Source::Safetensors(file) => file.metadata.clone(),
                _ => None,
            };
            let bytes = safetensors_file::serialize(&rest.sidecar, &metadata)?;
            staged.write(path, &bytes)?;
            bytes.len() as u64
        }
        _ => 0,
    };
    drop(rest);
    if let (Some(path), Some(model)) = (&args.emit_onnx, &working) {
        staged.write(path, &model.to_bytes())?;
    }
    let quantized_weights: u64 = done.iter().map(|d| (d.row.rows * d.row.cols) as u64).sum();
    let stored: u64 = done.iter().map(|d| engine::stored_bits(&d.tensor)).sum();
    let report = Report {
        input: args.model.display().to_string(),
        output: args.output.display().to_string(),
        bits_per_weight: stored as f64 / quantized_weights as f64,
        target_bits_per_weight: args.target_bpw,
        allocation_exact,
        quantized_weights,
        size_before_bytes: items.iter().map(|i| i.bytes).sum(),
        size_after_bytes: container_len + sidecar_len,
        f32_entries,
        sidecar: (sidecar_len > 0)
            .then(|| args.rest_sidecar.as_ref().map(|p| p.display().to_string()))
            .flatten(),
        calibration_samples: samples.len(),
        sequential: args.sequential,
        tensors: done.into_iter().map(|d| d.row).collect(),
        kept: items
            .iter()
            .filter_map(|i| match &i.decision {
                Decision::Keep(reason) => Some(KeptRow {
                    name: i.name.clone(),
                    shape: i.shape.clone(),
                    dtype: i.dtype.clone(),
                    reason: reason.clone(),
                }),
                Decision::Quantize { .. } => None,
            })
            .collect(),
    };
    if let Some(path) = &args.report {
        let json = serde_json::to_vec_pretty(&report).context("cannot encode the report")?;
        staged.write(path, &json)?;
    }
    staged.commit()?;
    if !args.quiet {
        print!("{}", report.table());
    }
    Ok(())
}

/// `Σ_j W[r,j]·(E[x_j] − E[x̃_j])` per row: the shift of the layer's mean output caused by
/// the quantized layers before it (`x̃`: its input in the partly quantized model, `x`: in the
/// original one). The library's correction `−Σ_j ΔW[r,j]·E[x̃_j]` restores the mean of `W·x̃`;
/// adding this restores the original model's mean of `W·x`, so earlier layers' drift does not
/// accumulate.
fn drift_correction(w: &[f32], rows: usize, cols: usize, fp: &Moments, q: &Moments) -> Vec<f32> {
    let at = |m: &Moments, r: usize, j: usize| {
        if m.mean.len() == rows * cols {
            m.mean[r * cols + j] as f64
        } else {
            m.mean[j] as f64
        }
    };
    (0..rows)
        .map(|r| {
            (0..cols)
                .map(|j| w[r * cols + j] as f64 * (at(fp, r, j) - at(q, r, j)))
                .sum::<f64>() as f32
        })
        .collect()
}

/// Writes a quantized layer's dequantized weights and bias correction into the model.
fn apply_to_model(model: &mut OnnxModel, item: &Item, done: &Done) -> Result<()> {
    let layer = item.layer.as_ref().expect("ONNX items are layers");
    let dequantized = done.dequantized.as_ref().expect("kept for the model");
    model.replace(&item.name, &onnx::from_matrix(layer, dequantized))?;
    if let Some(correction) = &done.bias_correction {
        model.correct_bias(layer, correction)?;
    }
    Ok(())
}

/// What goes beside the quantized tensors: `f32` container entries and sidecar tensors.
#[derive(Debug, Default)]
struct Rest {
    /// Name, rows, cols and values of each `f32` entry.
    arrays: Vec<(String, usize, usize, Vec<f32>)>,
    /// Tensors the container cannot hold, as stored: name, dtype, shape, bytes.
    sidecar: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
}

/// Whether an ONNX data type (as [`onnx::dtype_name`] spells it) converts to `f32`.
fn onnx_float(dtype: &str) -> bool {
    matches!(dtype, "float" | "float16" | "bfloat16" | "double")
}

/// The kept tensors that cannot be `f32` entries: safetensors tensors of a non-float dtype
/// or without elements (ONNX integer initializers stay in the graph and are not listed).
fn unstorable(source: &Source, items: &[Item]) -> Vec<String> {
    let Source::Safetensors(file) = source else {
        return Vec::new();
    };
    file.entries
        .iter()
        .zip(items)
        .filter(|(e, item)| {
            matches!(item.decision, Decision::Keep(_))
                && (!safetensors_file::is_float(e.dtype) || e.shape.contains(&0))
        })
        .map(|(e, _)| format!("'{}' ({:?}, shape {:?})", e.name, e.dtype, e.shape))
        .collect()
}

/// Every kept float tensor as an `f32` entry (the tensor seen as its first axis against the
/// rest), with the corrected biases (the values `--emit-onnx` writes), plus the new biases
/// of layers that had none; safetensors tensors of other dtypes go to the sidecar.
fn rest_entries(
    source: &Source,
    items: &[Item],
    jobs: &[(usize, Settings, bool)],
    done: &[Done],
) -> Result<Rest> {
    // Bias name → (layer, correction).
    let mut corrections: HashMap<&str, (&Layer, &[f32])> = HashMap::new();
    let mut rest = Rest::default();
    for (&(i, ..), d) in jobs.iter().zip(done) {
        if let (Some(c), Some(layer)) = (&d.bias_correction, &items[i].layer) {
            match &layer.bias {
                Some(b) => {
                    corrections.insert(b.as_str(), (layer, c));
                }
                None => {
                    let scale = bias_scale(layer)?;
                    rest.arrays.push((
                        format!("{}.expquant_bias", layer.weight),
                        1,
                        c.len(),
                        c.iter().map(|c| c * scale).collect(),
                    ));
                }
            }
        }
    }
    let kept = items
        .iter()
        .enumerate()
        .filter(|(_, i)| matches!(i.decision, Decision::Keep(_)));
    for (index, item) in kept {
        let (rows, cols) = matrix_dims(&item.shape);
        match source {
            Source::Safetensors(file) => {
                // Items are built from the entries in order.
                let entry = &file.entries[index];
                if safetensors_file::is_float(entry.dtype) && rows * cols > 0 {
                    rest.arrays
                        .push((item.name.clone(), rows, cols, file.load_f32(entry)?));
                } else {
                    rest.sidecar.push((
                        item.name.clone(),
                        entry.dtype,
                        item.shape.clone(),
                        file.raw(entry)?,
                    ));
                }
            }
            Source::Npy { .. } => {}
            Source::Onnx { model, .. } => {
                if !onnx_float(&item.dtype) || rows * cols == 0 {
                    continue;
                }
                let mut values = model.load_f32(&item.name)?;
                if let Some(&(layer, c)) = corrections.get(item.name.as_str()) {
                    if values.len() != c.len() {
                        bail!(
                            "bias '{}' holds {} values, layer '{}' has {} outputs",
                            item.name,
                            values.len(),
                            layer.weight,
                            c.len()
                        );
                    }
                    let scale = bias_scale(layer)?;
                    for (v, d) in values.iter_mut().zip(c) {
                        *v += d * scale;
                    }
                }
                rest.arrays.push((item.name.clone(), rows, cols, values));
            }
        }
    }
    Ok(rest)
}

/// What a layer's bias correction is multiplied by before it is added to the stored bias:
/// Gemm scales its bias by `beta`.
fn bias_scale(layer: &Layer) -> Result<f32> {
    match layer.op {
        onnx::Op::Gemm { beta, .. } if beta != 0.0 => Ok(1.0 / beta),
        onnx::Op::Gemm { .. } => bail!(
            "Gemm '{}' has beta = 0, so its bias cannot carry a correction",
            layer.weight
        ),
        _ => Ok(1.0),
    }
}

/// `expquant inspect`: the listing on stdout; an error when the file is not a container or
/// a checked entry fails.
pub fn inspect(path: &Path, verify: bool) -> Result<()> {
    let bytes = std::fs::read(path).context(format!("cannot read {}", path.display()))?;
    let info = engine::inspect_container(&bytes, verify).map_err(|e| {
        e.context(format!(
            "{}: cannot open as an expquant container",
            path.display()
        ))
    })?;
    print!(
        "{}",
        report::inspect_table(&path.display().to_string(), bytes.len(), &info)
    );
    let bad = info
        .entries
        .iter()
        .filter(|e| e.shape.is_err() || matches!(e.checksum, engine::Checksum::Mismatch(_)))
        .count();
    if bad > 0 {
        bail!(
            "{}: {bad} of {} entries failed validation",
            path.display(),
            info.entries.len()
        );
    }
    Ok(())
}
