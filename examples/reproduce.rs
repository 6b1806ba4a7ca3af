//! The paper's experiment: post-training quantization of every weight tensor of a small CNN
//! to 1..=8 bits with linear or exponential levels, compared against the FP32 model.
//!
//! ```text
//! cargo run --release --example reproduce [-- --out PATH] [--model PATH]
//! ```
//!
//! Prints one row per (bits, scheme, scale rule, granularity) with top-1 test accuracy and the
//! library-reported storage cost, writes an SVG plot of accuracy against bits, and ends with a
//! verdict computed from the table. Model and data: see `data/README.md`.

#[path = "cnn/mod.rs"]
mod cnn;

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cnn::{Dataset, Evaluation, Model};
use expquant::{Config, Granularity, ScaleRule, Scheme};

const BITS: std::ops::RangeInclusive<u8> = 1..=8;
/// "Matches FP32" means at most this many accuracy points below it.
const TOLERANCE_POINTS: f64 = 1.0;

const SCHEMES: [Scheme; 2] = [Scheme::Linear, Scheme::Exponential];
/// Paper I (max-abs: the largest level is the largest magnitude), paper II (the scale that
/// maximises the correlation between original and quantized weights), and the MSE fit.
const RULES: [ScaleRule; 3] = [ScaleRule::MaxAbs, ScaleRule::Correlation, ScaleRule::Mse];
/// One scale per tensor, as in the paper, and one per output channel.
const GRANULARITIES: [Granularity; 2] = [Granularity::PerTensor, Granularity::PerRow];

#[derive(Clone, Copy, Debug, PartialEq)]
struct Setting {
    bits: u8,
    scheme: Scheme,
    rule: ScaleRule,
    granularity: Granularity,
}

impl Setting {
    fn config(&self) -> Config {
        Config::new(self.scheme, self.bits)
            .with_granularity(self.granularity)
            .with_scale_rule(self.rule)
    }
}

/// One table row; `result` holds the library's error message if it rejected the setting.
struct Row {
    setting: Setting,
    result: Result<Evaluation, String>,
}

impl Row {
    fn accuracy(&self) -> Option<f64> {
        self.result.as_ref().ok().map(Evaluation::accuracy_percent)
    }
}

fn all_settings() -> Vec<Setting> {
    let mut v = Vec::new();
    for bits in BITS {
        for scheme in SCHEMES {
            for rule in RULES {
                for granularity in GRANULARITIES {
                    v.push(Setting {
                        bits,
                        scheme,
                        rule,
                        granularity,
                    });
                }
            }
        }
    }
    v
}

/// Evaluates every setting on all available cores. Workers pull the next setting from a shared
/// counter (costs vary by orders of magnitude between settings, so a static split balances
/// badly), and each result lands in its own slot, so the output does not depend on scheduling.
fn run_all(model: &Model, test: &Dataset, settings: &[Setting]) -> Vec<Row> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(settings.len());
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<Row>> = settings.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&setting) = settings.get(i) else {
                            break;
                        };
                        let result = cnn::quantized_accuracy(model, test, &setting.config())
                            .map_err(|e| e.to_string());
                        done.push((i, Row { setting, result }));
                    }
                    done
                })
            })
            .collect();
        for h in handles {
            // A panic in a worker is a bug; re-raise it on the main thread.
            for (i, row) in h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)) {
                slots[i] = Some(row);
            }
        }
    });
    slots
        .into_iter()
        .map(|r| r.expect("the workers drain every index"))
        .collect()
}

fn print_table(rows: &[Row], fp32: &Evaluation) {
    println!(
        "{:>4}  {:<11}  {:<11}  {:<11}  {:>9}  {:>11}",
        "bits", "scheme", "rule", "granularity", "top-1 (%)", "bits/weight"
    );
    println!(
        "{:>4}  {:<11}  {:<11}  {:<11}  {:>9.2}  {:>11.4}",
        "32",
        "fp32",
        "-",
        "-",
        fp32.accuracy_percent(),
        fp32.bits_per_weight
    );
    let mut last_bits = 0;
    for row in rows {
        let s = &row.setting;
        if s.bits != last_bits {
            println!();
            last_bits = s.bits;
        }
        let (acc, bpw) = match &row.result {
            Ok(e) => (
                format!("{:.2}", e.accuracy_percent()),
                format!("{:.4}", e.bits_per_weight),
            ),
            Err(_) => ("error".to_owned(), "-".to_owned()),
        };
        println!(
            "{:>4}  {:<11}  {:<11}  {:<11}  {:>9}  {:>11}",
            s.bits, s.scheme, s.rule, s.granularity, acc, bpw
        );
    }
    let errors: Vec<&Row> = rows.iter().filter(|r| r.result.is_err()).collect();
    if !errors.is_empty() {
        println!("\nsettings the library rejected:");
        for r in errors {
            let s = &r.setting;
            println!(
                "  {} bits {} {} {}: {}",
                s.bits,
                s.scheme,
                s.rule,
                s.granularity,
                r.result.as_ref().err().map_or("", String::as_str)
            );
        }
    }
}

/// Smallest bit width whose accuracy is within the tolerance of FP32, among the rows `keep`
/// accepts; returns that row (the most accurate one at that width).
fn first_within(rows: &[Row], fp32_acc: f64, keep: impl Fn(&Setting) -> bool) -> Option<&Row> {
    for bits in BITS {
        let best = rows
            .iter()
            .filter(|r| r.setting.bits == bits && keep(&r.setting))
            .filter(|r| {
                r.accuracy()
                    .is_some_and(|a| a >= fp32_acc - TOLERANCE_POINTS)
            })
            .max_by(|a, b| {
                a.accuracy()
                    .partial_cmp(&b.accuracy())
                    .expect("accuracies are finite")
            });
        if best.is_some() {
            return best;
        }
    }
    None
}

fn describe(row: Option<&Row>) -> String {
    match row {
        Some(r) => format!(
            "{} bits ({:.2}%, {:.3} bits/weight)",
            r.setting.bits,
            r.accuracy().unwrap_or(f64::NAN),
            r.result.as_ref().map_or(f64::NAN, |e| e.bits_per_weight)
        ),
        None => format!("more than {} bits", BITS.end()),
    }
}

fn describe_setting(row: Option<&Row>) -> String {
    row.map_or(String::new(), |r| {
        format!(" with {} per {}", r.setting.rule, r.setting.granularity)
    })
}

fn plural_bits(n: i32) -> String {
    if n == 1 {
        "1 bit".to_owned()
    } else {
        format!("{n} bits")
    }
}

/// "linear needs N more bits than exponential", or why no number can be given.
fn difference(lin: Option<&Row>, exp: Option<&Row>) -> String {
    match (lin, exp) {
        (Some(l), Some(e)) => {
            let d = i32::from(l.setting.bits) - i32::from(e.setting.bits);
            match d {
                0 => "no difference in bits".to_owned(),
                d if d > 0 => format!("exponential saves {} per weight", plural_bits(d)),
                d => format!("linear saves {} per weight", plural_bits(-d)),
            }
        }
        (None, None) => format!("neither reaches it within {} bits", BITS.end()),
        (None, Some(_)) => format!(
            "exponential saves at least one bit (linear never gets there within {} bits)",
            BITS.end()
        ),
        (Some(_), None) => format!(
            "linear saves at least one bit (exponential never gets there within {} bits)",
            BITS.end()
        ),
    }
}

fn verdict(rows: &[Row], fp32: &Evaluation) -> String {
    let acc = fp32.accuracy_percent();
    let paper = |scheme: Scheme| {
        move |s: &Setting| {
            s.scheme == scheme
                && s.rule == ScaleRule::MaxAbs
                && s.granularity == Granularity::PerTensor
        }
    };
    let any = |scheme: Scheme| move |s: &Setting| s.scheme == scheme;
    let lin_paper = first_within(rows, acc, paper(Scheme::Linear));
    let exp_paper = first_within(rows, acc, paper(Scheme::Exponential));
    let lin_best = first_within(rows, acc, any(Scheme::Linear));
    let exp_best = first_within(rows, acc, any(Scheme::Exponential));
    format!(
        "Verdict: the FP32 model scores {acc:.2}% ({}/{}); \"within {TOLERANCE_POINTS} point\" means \
         at least {:.2}%. With the paper's setting (one max-abs scale per layer), exponential \
         levels first get there at {} and linear levels at {}: {}. Taking, at each bit width, the \
         best scale rule and granularity of each scheme, exponential first gets there at {}{} \
         and linear at {}{}: {}. Bit counts are the code width; the bits/weight column adds \
         the scale and codebook overhead reported by the library.",
        fp32.correct,
        fp32.total,
        acc - TOLERANCE_POINTS,
        describe(exp_paper),
        describe(lin_paper),
        difference(lin_paper, exp_paper),
        describe(exp_best),
        describe_setting(exp_best),
        describe(lin_best),
        describe_setting(lin_best),
        difference(lin_best, exp_best),
    )
}

/// Accuracy against bits, one polyline per scheme + rule, with the FP32 reference. Columns are
/// the granularities; the top row shows 0..100 %, the bottom row zooms into the top
/// [`ZOOM_POINTS`] where the schemes actually differ (lower points are clipped). Plain SVG
/// text so the example needs no plotting dependency.
fn svg(rows: &[Row], fp32: &Evaluation) -> String {
    const ZOOM_POINTS: f64 = 10.0;
    const PANEL_W: f64 = 400.0;
    const PANEL_H: f64 = 240.0;
    const LEFT: f64 = 60.0;
    const TOP: f64 = 50.0;
    const HGAP: f64 = 70.0;
    const VGAP: f64 = 70.0;
    let width = LEFT + 2.0 * PANEL_W + HGAP + 30.0;
    let height = TOP + 2.0 * PANEL_H + VGAP + 110.0;
    let fp32_acc = fp32.accuracy_percent();

    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">Digits CNN: top-1 test \
         accuracy vs code bits per weight (weights quantized, biases stay f32)</text>",
        width / 2.0
    );
    for (col, gran) in GRANULARITIES.into_iter().enumerate() {
        let x0 = LEFT + col as f64 * (PANEL_W + HGAP);
        let title = match gran {
            Granularity::PerTensor => "one scale per layer (paper)",
            _ => "one scale per output channel",
        };
        let full = Panel {
            x0,
            y0: TOP,
            lo: 0.0,
            hi: 100.0,
            w: PANEL_W,
            h: PANEL_H,
        };
        full.draw(&mut s, rows, gran, fp32_acc, title);
        let zoom = Panel {
            y0: TOP + PANEL_H + VGAP,
            lo: 100.0 - ZOOM_POINTS,
            ..full
        };
        zoom.draw(
            &mut s,
            rows,
            gran,
            fp32_acc,
            &format!("{title}, top {ZOOM_POINTS} points"),
        );
    }

    // Legend: one entry per line style, plus FP32.
    let ly = TOP + 2.0 * PANEL_H + VGAP + 60.0;
    let mut i = 0;
    for scheme in SCHEMES {
        for rule in RULES {
            let x = LEFT + (i % 3) as f64 * 230.0;
            let y = ly + (i / 3) as f64 * 20.0;
            let _ = writeln!(
                s,
                "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{}\" \
                 stroke-width=\"2\"{}/><text x=\"{}\" y=\"{}\">{} {}</text>",
                x + 30.0,
                colour(scheme, rule),
                dash(rule),
                x + 36.0,
                y + 4.0,
                scheme,
                rule
            );
            i += 1;
        }
    }
    let x = LEFT + 3.0 * 230.0;
    let _ = writeln!(
        s,
        "<line x1=\"{x}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"#000\" \
         stroke-dasharray=\"4 4\"/><text x=\"{}\" y=\"{}\">FP32 ({fp32_acc:.2}%)</text>",
        x + 30.0,
        x + 36.0,
        ly + 4.0,
    );
    s.push_str("</svg>\n");
    s
}

/// Linear schemes in blues, exponential in reds; darker = the paper's max-abs rule.
fn colour(scheme: Scheme, rule: ScaleRule) -> &'static str {
    match (scheme, rule) {
        (Scheme::Linear, ScaleRule::MaxAbs) => "#1f4e9c",
        (Scheme::Linear, ScaleRule::Correlation) => "#3b8bd9",
        (Scheme::Linear, ScaleRule::Mse) => "#7fb8ea",
        (Scheme::Exponential, ScaleRule::MaxAbs) => "#b2182b",
        (Scheme::Exponential, ScaleRule::Correlation) => "#e66101",
        (Scheme::Exponential, ScaleRule::Mse) => "#f4a582",
        _ => "#808080",
    }
}

fn dash(rule: ScaleRule) -> &'static str {
    match rule {
        ScaleRule::MaxAbs => "",
        ScaleRule::Correlation => " stroke-dasharray=\"8 4\"",
        ScaleRule::Mse => " stroke-dasharray=\"2 3\"",
        _ => " stroke-dasharray=\"1 1\"",
    }
}

/// One plot area: pixel box and the accuracy range it shows.
#[derive(Clone, Copy)]
struct Panel {
    x0: f64,
    y0: f64,
    lo: f64,
    hi: f64,
    w: f64,
    h: f64,
}

impl Panel {
    fn x(&self, bits: u8) -> f64 {
        let (bmin, bmax) = (f64::from(*BITS.start()), f64::from(*BITS.end()));
        self.x0 + (f64::from(bits) - bmin) / (bmax - bmin) * self.w
    }

    fn y(&self, acc: f64) -> f64 {
        self.y0 + (self.hi - acc) / (self.hi - self.lo) * self.h
    }

    fn draw(&self, s: &mut String, rows: &[Row], gran: Granularity, fp32: f64, title: &str) {
        let Panel { x0, y0, w, h, .. } = *self;
        // Unique per panel so each clips only its own lines.
        let clip = format!("clip{}_{}", x0 as u32, y0 as u32);
        let _ = writeln!(
            s,
            "<clipPath id=\"{clip}\"><rect x=\"{x0}\" y=\"{}\" width=\"{w}\" height=\"{}\"/>\
             </clipPath>",
            y0 - 4.0,
            h + 8.0
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">{title}</text>",
            x0 + w / 2.0,
            y0 - 8.0
        );
        let step = if self.hi - self.lo > 20.0 { 10.0 } else { 1.0 };
        let mut tick = self.lo;
        while tick <= self.hi + 1e-9 {
            let y = self.y(tick);
            let _ = writeln!(
                s,
                "<line x1=\"{x0}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#e5e5e5\"/>\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{tick}</text>",
                x0 + w,
                x0 - 6.0,
                y + 4.0
            );
            tick += step;
        }
        for bits in BITS {
            let x = self.x(bits);
            let _ = writeln!(
                s,
                "<line x1=\"{x}\" y1=\"{y0}\" x2=\"{x}\" y2=\"{}\" stroke=\"#e5e5e5\"/>\
                 <text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{bits}</text>",
                y0 + h,
                y0 + h + 16.0
            );
        }
        let _ = writeln!(
            s,
            "<rect x=\"{x0}\" y=\"{y0}\" width=\"{w}\" height=\"{h}\" fill=\"none\" \
             stroke=\"#444\"/>"
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">bits</text>",
            x0 + w / 2.0,
            y0 + h + 34.0
        );
        let _ = writeln!(
            s,
            "<text transform=\"translate({},{}) rotate(-90)\" text-anchor=\"middle\">top-1 \
             accuracy (%)</text>",
            x0 - 38.0,
            y0 + h / 2.0
        );
        let fy = self.y(fp32);
        let _ = writeln!(
            s,
            "<line x1=\"{x0}\" y1=\"{fy}\" x2=\"{}\" y2=\"{fy}\" stroke=\"#000\" \
             stroke-dasharray=\"4 4\"/>",
            x0 + w
        );
        let _ = writeln!(s, "<g clip-path=\"url(#{clip})\">");
        for scheme in SCHEMES {
            for rule in RULES {
                let pts: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|r| {
                        let st = &r.setting;
                        st.scheme == scheme && st.rule == rule && st.granularity == gran
                    })
                    .filter_map(|r| r.accuracy().map(|a| (self.x(r.setting.bits), self.y(a))))
                    .collect();
                let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                let c = colour(scheme, rule);
                let _ = writeln!(
                    s,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"{}/>",
                    path.join(" "),
                    dash(rule)
                );
                for (x, y) in pts {
                    let _ = writeln!(
                        s,
                        "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"{c}\"/>"
                    );
                }
            }
        }
        s.push_str("</g>\n");
    }
}

struct Args {
    out: PathBuf,
    model: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        out: Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("reproduce")
            .join("accuracy_vs_bits.svg"),
        model: cnn::default_model_path(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => args.out = it.next().ok_or("--out needs a path")?.into(),
            "--model" => args.model = it.next().ok_or("--model needs a path")?.into(),
            "-h" | "--help" => {
                println!(
                    "usage: reproduce [--out SVG_PATH] [--model WEIGHTS]\n  defaults: --out {} \
                     --model {}",
                    args.out.display(),
                    args.model.display()
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

/// Calibration images for the activation-aware rows: the first ones of the training split.
const CALIBRATION_IMAGES: usize = 64;

/// The activation-aware rows: per output channel, each weight tensor quantized with its
/// layer's input statistics (from the first 64 training images through the FP32 model), and
/// each bias corrected for the mean output shift quantization causes. Compares, per scheme
/// and bits: plain max-abs; max-abs + bias correction; MSE + bias correction; and the
/// output-error fit (`E[x²]`-weighted MSE) + bias correction.
fn calibrated_table(
    model: &Model,
    train: &Dataset,
    test: &Dataset,
    fp32: &Evaluation,
) -> Result<(), Box<dyn Error>> {
    let stats = cnn::calibration::input_stats(model, train, CALIBRATION_IMAGES);
    println!(
        "\nactivation-aware quantization (per output channel; statistics E[x], E[x^2] of every \
         layer's inputs from the first {CALIBRATION_IMAGES} training images; +bc = bias corrected \
         by -sum_j (Q - W)[r, j] E[x_j]); FP32 {:.2}%",
        fp32.accuracy_percent()
    );
    println!(
        "{:>4}  {:<12} {:>9} {:>12} {:>12} {:>18}",
        "bits", "scheme", "max-abs", "max-abs +bc", "mse +bc", "output-mse +bc"
    );
    for bits in BITS {
        for (name, base) in [
            ("linear", Config::linear(bits)),
            ("exponential", Config::exponential(bits)),
        ] {
            let base = base.per_row();
            let plain = cnn::quantized_accuracy(model, test, &base)?;
            let mut cells = Vec::new();
            for rule in [ScaleRule::MaxAbs, ScaleRule::Mse, ScaleRule::OutputMse] {
                let e = cnn::calibrated_accuracy(model, test, &base.with_scale_rule(rule), &stats)?;
                cells.push(e.accuracy_percent());
            }
            println!(
                "{bits:>4}  {name:<12} {:>9.2} {:>12.2} {:>12.2} {:>18.2}",
                plain.accuracy_percent(),
                cells[0],
                cells[1],
                cells[2]
            );
        }
    }
    Ok(())
}

/// The error-compensated rows: per output channel, each weight tensor quantized column by
/// column with its rounding errors carried onto later columns through the inverse of its
/// layer's input covariance (from the same calibration images), without and with bias
/// correction; beside them max-abs + bias correction from the table above.
fn compensated_table(
    model: &Model,
    train: &Dataset,
    test: &Dataset,
    fp32: &Evaluation,
) -> Result<(), Box<dyn Error>> {
    let stats = cnn::calibration::input_stats(model, train, CALIBRATION_IMAGES);
    let covs = cnn::compensation::input_covariances(model, train, CALIBRATION_IMAGES);
    println!(
        "\nerror-compensated quantization (per output channel; E[x x^T] of every layer's inputs \
         from the first {CALIBRATION_IMAGES} training images; columns by decreasing E[x_j^2], \
         dampening 0.01); FP32 {:.2}%",
        fp32.accuracy_percent()
    );
    println!(
        "{:>4}  {:<12} {:>12} {:>12} {:>16}",
        "bits", "scheme", "max-abs +bc", "compensated", "compensated +bc"
    );
    for bits in BITS {
        for (name, base) in [
            ("linear", Config::linear(bits)),
            ("exponential", Config::exponential(bits)),
        ] {
            let base = base.per_row();
            let bc = cnn::calibrated_accuracy(model, test, &base, &stats)?;
            let mut cells = Vec::new();
            for bias_correct in [false, true] {
                let (q, _) = cnn::compensation::quantize_model_compensated(
                    model,
                    &base,
                    &covs,
                    bias_correct,
                )?;
                cells.push(100.0 * cnn::correct(&q, test) as f64 / test.len() as f64);
            }
            println!(
                "{bits:>4}  {name:<12} {:>12.2} {:>12.2} {:>16.2}",
                bc.accuracy_percent(),
                cells[0],
                cells[1]
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    cnn::exit_code(run())
}

fn run() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let start = Instant::now();
    let model = cnn::load(&args.model)?;
    let (_, test) = cnn::digits()?;
    let fp32 = cnn::evaluate_fp32(&model, &test);

    println!(
        "model: {} ({} weights in 5 tensors)",
        args.model.display(),
        model.weight_count()
    );
    println!(
        "test split: last {} of the UCI digits (data/README.md)",
        test.len()
    );
    println!(
        "every conv and dense weight tensor is quantized then dequantized; biases stay f32 and \
         activations are f32"
    );
    println!(
        "tensor = one scale per tensor (the paper's per-layer setting); row = one scale per output channel; \
         bits/weight is the model-wide, weight-count-weighted cost reported by the library\n"
    );

    let rows = run_all(&model, &test, &all_settings());
    print_table(&rows, &fp32);

    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, svg(&rows, &fp32))?;
    println!("\nplot: {}", args.out.display());
    println!("\n{}", verdict(&rows, &fp32));
    let (train, _) = cnn::digits()?;
    calibrated_table(&model, &train, &test, &fp32)?;
    compensated_table(&model, &train, &test, &fp32)?;
    println!("\n(finished in {:.2}s)", start.elapsed().as_secs_f64());
    // Every setting is meant to be supported, so a rejection is a failure; it is reported only
    // after the table so the remaining results are not lost.
    let failed = rows.iter().filter(|r| r.result.is_err()).count();
    if failed > 0 {
        return Err(format!("the library rejected {failed} of {} settings", rows.len()).into());
    }
    Ok(())
}
