//! The CLI on an ONNX model: the repository's digits CNN, exported by the tests themselves.
//! Container against the library, external data, calibration with bias correction, the
//! emitted model in tract, `--target-bpw` against uniform widths, sequential calibration.

mod common;

use common::*;
use expquant::calibrate::{quantize_calibrated, Covariance, InputStats};
use expquant::compensate::{quantize_compensated, CompensateOptions};
use expquant::{quantize, Config, ContainerView, EntryView, QuantizedTensor};

/// Every f32 initializer of an ONNX model with inline data, by name.
fn initializers(path: &std::path::Path) -> std::collections::HashMap<String, Vec<f32>> {
    use prost::Message;
    let model =
        tract_onnx::pb::ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    model
        .graph
        .unwrap()
        .initializer
        .into_iter()
        .filter(|t| t.data_type == 1)
        .map(|t| {
            let values = if t.raw_data.is_empty() {
                t.float_data
            } else {
                t.raw_data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect()
            };
            (t.name, values)
        })
        .collect()
}

/// The model, the calibration batch (64 training images) and the test split.
struct Setup {
    dir: std::path::PathBuf,
    model: std::path::PathBuf,
    calib: std::path::PathBuf,
    test_images: Vec<Vec<f32>>,
    test_labels: Vec<usize>,
}

fn setup(name: &str) -> Setup {
    let dir = tempdir(name);
    let model = dir.join("digits.onnx");
    digits_onnx(&digits_cnn(), &model, &[]);
    let (images, labels) = digits();
    let calib = dir.join("calib.npy");
    let batch: Vec<f32> = images[..64].iter().flatten().copied().collect();
    write_npy(&calib, &[64, 1, 8, 8], &batch);
    Setup {
        dir,
        model,
        calib,
        test_images: images[1437..].to_vec(),
        test_labels: labels[1437..].to_vec(),
    }
}

#[test]
fn fp32_export_reproduces_the_pinned_accuracy() {
    let s = setup("fp32");
    let acc = accuracy(&run_onnx(&s.model, &s.test_images), &s.test_labels);
    // data/README.md: 355/360 on the test split.
    assert_eq!((acc * 360.0).round() as usize, 355);
}

#[test]
fn container_matches_the_library_inline_and_external() {
    let s = setup("onnx-lib");
    let tensors = digits_cnn();
    let external = s.dir.join("external.onnx");
    digits_onnx(&tensors, &external, &["fc1.weight", "conv2.weight"]);
    let config = Config::exponential(4).per_group(32);
    for model in [&s.model, &external] {
        let out = s.dir.join("q.expq");
        expquant_ok(&[
            "quantize",
            p(model),
            "-o",
            p(&out),
            "--granularity",
            "group:32",
            "-q",
        ]);
        let bytes = std::fs::read(&out).unwrap();
        let container = ContainerView::from_bytes(&bytes).unwrap();
        // Five quantized weights and their five biases as f32 entries.
        assert_eq!(container.len(), 10);
        assert_eq!(container.iter().count(), 5);
        for (name, dims, values) in tensors.iter().filter(|t| t.1.len() > 1) {
            let cols = values.len() / dims[0];
            let direct = quantize(values, dims[0], cols, &config).unwrap();
            let view = container.get(name).unwrap().unwrap();
            assert_eq!(
                QuantizedTensor::from_view(&view).to_bytes(),
                direct.to_bytes(),
                "{name}"
            );
        }
    }
}

/// Per-input-channel mean and mean square of `x` over the calibration batch, in the column
/// layout of a 3×3 convolution (each channel repeated over its 9 taps) or a dense layer.
fn moments(channels: &[Vec<f32>], taps: usize) -> (Vec<f32>, Vec<f32>) {
    let mean = |f: &dyn Fn(f32) -> f64| -> Vec<f32> {
        channels
            .iter()
            .flat_map(|c| {
                let m = (c.iter().map(|&v| f(v)).sum::<f64>() / c.len() as f64) as f32;
                std::iter::repeat_n(m, taps)
            })
            .collect()
    };
    (mean(&|v| v as f64), mean(&|v| (v as f64) * (v as f64)))
}

/// The 3×3 patches (padding 1, zeros outside) of one 8×8 image, one row of 9 values per
/// output position, in the kernel's `(ky, kx)` order.
fn patches_3x3(image: &[f32]) -> Vec<f32> {
    let mut rows = Vec::with_capacity(64 * 9);
    for y in 0..8i32 {
        for x in 0..8i32 {
            for dy in -1..=1i32 {
                for dx in -1..=1i32 {
                    let (iy, ix) = (y + dy, x + dx);
                    let inside = (0..8).contains(&iy) && (0..8).contains(&ix);
                    rows.push(if inside {
                        image[(iy * 8 + ix) as usize]
                    } else {
                        0.0
                    });
                }
            }
        }
    }
    rows
}

#[test]
fn calibrated_model_runs_in_tract_like_its_container() {
    let s = setup("onnx-cal");
    let (out, rep, emitted) = (
        s.dir.join("q.expq"),
        s.dir.join("r.json"),
        s.dir.join("q.onnx"),
    );
    expquant_ok(&[
        "quantize",
        p(&s.model),
        "-o",
        p(&out),
        "--bits",
        "4",
        "--calibration",
        p(&s.calib),
        "--emit-onnx",
        p(&emitted),
        "--report",
        p(&rep),
        "-q",
    ]);
    let report = report(&rep);
    assert_eq!(report["calibration_samples"], 64);
    assert!(report["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["bias_corrected"] == true));

    // conv1's inputs are the raw images: its covariance is that of their 3×3 patches (zero
    // outside the image), and the container holds exactly what the library makes of it.
    let (images, _) = digits();
    let mut cov = Covariance::new(1, 9).unwrap();
    for image in &images[..64] {
        cov.add_rows(&patches_3x3(image)).unwrap();
    }
    let tensors = digits_cnn();
    let conv1 = &tensors.iter().find(|t| t.0 == "conv1.weight").unwrap().2;
    let mean = cov.mean().unwrap();
    let compensated = quantize_compensated(
        conv1,
        16,
        9,
        &Config::exponential(4),
        &cov,
        &CompensateOptions::default(),
        Some(&mean),
    )
    .unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let container = ContainerView::from_bytes(&bytes).unwrap();
    let view = container.get("conv1.weight").unwrap().unwrap();
    assert_eq!(
        QuantizedTensor::from_view(&view).to_bytes(),
        compensated.tensor.to_bytes()
    );
    let correction = compensated.bias_correction.unwrap();

    // Without compensation the statistics are the per-channel moments of the raw input.
    let plain_out = s.dir.join("plain.expq");
    expquant_ok(&[
        "quantize",
        p(&s.model),
        "-o",
        p(&plain_out),
        "--bits",
        "4",
        "--calibration",
        p(&s.calib),
        "--no-compensation",
        "-q",
    ]);
    let pixels: Vec<f32> = images[..64].iter().flatten().copied().collect();
    let (pmean, psq) = moments(&[pixels], 9);
    let direct = quantize_calibrated(
        conv1,
        16,
        9,
        &Config::exponential(4),
        &InputStats::new(&pmean).with_sq_mean(&psq),
    )
    .unwrap();
    let plain_bytes = std::fs::read(&plain_out).unwrap();
    let plain = ContainerView::from_bytes(&plain_bytes).unwrap();
    assert_eq!(
        QuantizedTensor::from_view(&plain.get("conv1.weight").unwrap().unwrap()).to_bytes(),
        direct.tensor.to_bytes()
    );
    assert_ne!(direct.tensor.to_bytes(), compensated.tensor.to_bytes());

    // Rebuild the model by hand from the container alone: quantized weights and f32 entries
    // (the corrected biases among them).
    let conv1_bias = container.get_f32("conv1.bias").unwrap().unwrap();
    let corrected = conv1_bias.to_vec();
    let original_bias = &tensors.iter().find(|t| t.0 == "conv1.bias").unwrap().2;
    for ((c, o), d) in corrected.iter().zip(original_bias).zip(&correction) {
        assert!(
            (c - (o + d)).abs() <= 1e-6 * (1.0 + o.abs()),
            "{c} vs {o} + {d}"
        );
    }
    // Every bias in the container is the one the emitted model holds, bit for bit.
    let emitted_values = initializers(&emitted);
    for (name, ..) in tensors.iter().filter(|t| t.1.len() == 1) {
        let stored = container.get_f32(name).unwrap().unwrap().to_vec();
        assert_eq!(
            stored.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            emitted_values[name]
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>(),
            "{name}"
        );
    }
    let rebuilt: Vec<(String, Vec<usize>, Vec<f32>)> = tensors
        .iter()
        .map(|(name, dims, _)| {
            let values = match container.entry(name).unwrap() {
                Some(EntryView::Quantized(v)) => QuantizedTensor::from_view(&v).dequantize(),
                Some(EntryView::F32(a)) => a.to_vec(),
                None => panic!("{name} missing from the container"),
            };
            (name.clone(), dims.clone(), values)
        })
        .collect();
    let reference = s.dir.join("reference.onnx");
    digits_onnx(&rebuilt, &reference, &[]);
    let got = run_onnx(&emitted, &s.test_images);
    let want = run_onnx(&reference, &s.test_images);
    for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
        assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
    }
    let fp32 = accuracy(&run_onnx(&s.model, &s.test_images), &s.test_labels);
    let acc = accuracy(&got, &s.test_labels);
    eprintln!("digits CNN, 4-bit exponential per row, calibrated: {acc:.4} (fp32 {fp32:.4})");
    assert!(acc >= fp32 - 0.03, "{acc} vs {fp32}");
}

#[test]
fn target_bpw_beats_uniform_widths_on_the_digits_cnn() {
    let s = setup("onnx-bpw");
    let out = s.dir.join("q.expq");
    let (ru, rt) = (s.dir.join("u.json"), s.dir.join("t.json"));
    let (qu, qt) = (s.dir.join("u.onnx"), s.dir.join("t.onnx"));
    let common = ["--calibration", p(&s.calib), "-q"];
    let mut args = vec![
        "quantize",
        p(&s.model),
        "-o",
        p(&out),
        "--bits",
        "3",
        "--report",
        p(&ru),
    ];
    args.extend(["--emit-onnx", p(&qu)]);
    args.extend(common);
    expquant_ok(&args);
    let uniform = report(&ru);
    let budget = uniform["bits_per_weight"].as_f64().unwrap().to_string();
    let mut args = vec![
        "quantize",
        p(&s.model),
        "-o",
        p(&out),
        "--target-bpw",
        &budget,
    ];
    args.extend(["--report", p(&rt), "--emit-onnx", p(&qt)]);
    args.extend(common);
    expquant_ok(&args);
    let target = report(&rt);
    let bpw = target["bits_per_weight"].as_f64().unwrap();
    assert!(bpw <= uniform["bits_per_weight"].as_f64().unwrap() + 1e-12);
    assert_eq!(target["allocation_exact"], true);
    let (eu, et) = (summed_error(&uniform), summed_error(&target));
    assert!(et < eu, "allocated error {et} not below uniform {eu}");
    let au = accuracy(&run_onnx(&qu, &s.test_images), &s.test_labels);
    let at = accuracy(&run_onnx(&qt, &s.test_images), &s.test_labels);
    eprintln!("digits CNN at {bpw:.3} bpw: uniform 3-bit {au:.4}, allocated {at:.4}");
}

#[test]
fn sequential_calibration_is_at_least_as_accurate_as_one_shot() {
    let s = setup("onnx-seq");
    let out = s.dir.join("q.expq");
    let (q1, q2) = (s.dir.join("one.onnx"), s.dir.join("seq.onnx"));
    let base = [
        "quantize",
        p(&s.model),
        "-o",
        p(&out),
        "--bits",
        "2",
        "--calibration",
        p(&s.calib),
        "-q",
    ];
    let mut one = base.to_vec();
    one.extend(["--emit-onnx", p(&q1)]);
    expquant_ok(&one);
    let mut seq = base.to_vec();
    seq.extend(["--emit-onnx", p(&q2), "--sequential"]);
    expquant_ok(&seq);
    let a1 = accuracy(&run_onnx(&q1, &s.test_images), &s.test_labels);
    let a2 = accuracy(&run_onnx(&q2, &s.test_images), &s.test_labels);
    eprintln!("digits CNN, 2-bit exponential: one-shot {a1:.4}, sequential {a2:.4}");
    assert!(a2 >= a1, "sequential {a2} < one-shot {a1}");
}

#[test]
fn calibration_shape_errors_name_the_tensor() {
    let s = setup("onnx-badcal");
    let bad = s.dir.join("bad.npy");
    write_npy(&bad, &[4, 1, 7, 7], &vec![0.0; 4 * 49]);
    let out = s.dir.join("q.expq");
    let o = expquant(&[
        "quantize",
        p(&s.model),
        "-o",
        p(&out),
        "--calibration",
        p(&bad),
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("bad.npy") && e.contains("[4, 1, 7, 7]") && e.contains("[N, 1, 8, 8]"),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn depthwise_clip_pool_matmul_graph() {
    use tract_onnx::pb;
    let dir = tempdir("onnx-dw");
    let model = dir.join("dw.onnx");
    let graph = pb::GraphProto {
        name: "dw".into(),
        node: vec![
            node(
                "Conv",
                &["x", "stem.w", "stem.b"],
                "s",
                vec![
                    attr_ints("kernel_shape", &[3, 3]),
                    attr_ints("pads", &[1, 1, 1, 1]),
                ],
            ),
            node("Relu", &["s"], "sr", vec![]),
            node(
                "Conv",
                &["sr", "dw.w"],
                "d",
                vec![
                    attr_ints("kernel_shape", &[3, 3]),
                    attr_ints("pads", &[1, 1, 1, 1]),
                    attr_int("group", 8),
                ],
            ),
            node("Clip", &["d", "lo", "hi"], "dc", vec![]),
            node("GlobalAveragePool", &["dc"], "g", vec![]),
            node("Flatten", &["g"], "f", vec![attr_int("axis", 1)]),
            node("MatMul", &["f", "head.w"], "y", vec![]),
        ],
        initializer: vec![
            initializer("stem.w", &[8, 3, 3, 3], &weights(8 * 27, 21)),
            initializer("stem.b", &[8], &weights(8, 22)),
            initializer("dw.w", &[8, 1, 3, 3], &weights(8 * 9, 23)),
            initializer("lo", &[], &[0.0]),
            initializer("hi", &[], &[6.0]),
            initializer("head.w", &[8, 4], &weights(32, 24)),
        ],
        input: vec![value_info("x", &[None, Some(3), Some(8), Some(8)])],
        output: vec![value_info("y", &[None, Some(4)])],
        ..Default::default()
    };
    write_model(&model, graph);
    let images: Vec<f32> = weights(16 * 3 * 64, 25)
        .iter()
        .map(|v| v.abs() * 2.0)
        .collect();
    let calib = dir.join("calib");
    std::fs::create_dir(&calib).unwrap();
    for (i, image) in images.chunks_exact(3 * 64).enumerate() {
        write_npy(&calib.join(format!("{i:02}.npy")), &[3, 8, 8], image);
    }
    let (out, emitted, rep) = (dir.join("q.expq"), dir.join("q.onnx"), dir.join("r.json"));
    expquant_ok(&[
        "quantize",
        p(&model),
        "-o",
        p(&out),
        "--bits",
        "8",
        "--calibration",
        p(&calib),
        "--emit-onnx",
        p(&emitted),
        "--report",
        p(&rep),
        "-q",
    ]);
    let r = report(&rep);
    assert_eq!(r["calibration_samples"], 16);
    let names: Vec<&str> = r["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["stem.w", "dw.w", "head.w"]);
    // The MatMul weight [in, out] is stored one row per output.
    assert_eq!(
        (
            r["tensors"][2]["rows"].as_u64(),
            r["tensors"][2]["cols"].as_u64()
        ),
        (Some(4), Some(8))
    );
    let bytes = std::fs::read(&out).unwrap();
    let container = ContainerView::from_bytes(&bytes).unwrap();
    let emitted_values = initializers(&emitted);
    for name in [
        "stem.b",
        "dw.w.expquant_bias",
        "head.w.expquant_bias",
        "lo",
        "hi",
    ] {
        let stored = container
            .get_f32(name)
            .unwrap()
            .unwrap_or_else(|| panic!("{name} missing from the container"))
            .to_vec();
        assert_eq!(stored, emitted_values[name], "{name}");
    }
    // At 8 bits with corrected biases the emitted model stays close to the original.
    let x = &images[..3 * 64];
    let want = run_once(&model, &[1, 3, 8, 8], x);
    let got = run_once(&emitted, &[1, 3, 8, 8], x);
    let scale = want.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 0.02 * scale, "{g} vs {w}");
    }
}

/// Test-split accuracy of the digits CNN quantized with `extra` flags.
fn digits_accuracy(s: &Setup, bits: &str, extra: &[&str]) -> f64 {
    let (out, emitted) = (s.dir.join("acc.expq"), s.dir.join("acc.onnx"));
    let mut args = vec![
        "quantize",
        p(&s.model),
        "-o",
        p(&out),
        "--bits",
        bits,
        "--calibration",
        p(&s.calib),
        "--emit-onnx",
        p(&emitted),
        "-q",
    ];
    args.extend_from_slice(extra);
    expquant_ok(&args);
    accuracy(&run_onnx(&emitted, &s.test_images), &s.test_labels)
}

#[test]
fn compensation_keeps_at_least_the_accuracy_of_bias_correction_alone() {
    let s = setup("onnx-comp");
    for bits in ["3", "4"] {
        let corrected = digits_accuracy(&s, bits, &["--no-compensation"]);
        let compensated = digits_accuracy(&s, bits, &[]);
        let alone = digits_accuracy(&s, bits, &["--no-bias-correction"]);
        let sequential = digits_accuracy(&s, bits, &["--sequential"]);
        eprintln!(
            "digits CNN, {bits}-bit exponential per row: bias-corrected {corrected:.4}, \
             compensated {alone:.4}, compensated + corrected {compensated:.4}, \
             sequential compensated + corrected {sequential:.4}"
        );
        assert!(
            compensated >= corrected,
            "{bits} bits: compensated {compensated} < bias-corrected {corrected}"
        );
    }
}

/// `x → BatchNormalization → Relu → Conv 3×3 → BatchNormalization → Clip(0, 6) → Conv 1×1`,
/// every BatchNorm with running mean 0 and variance 1, so on standard normal inputs the
/// normalized values are exactly `N(beta, gamma²)` per channel.
fn bn_relu_graph(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    use tract_onnx::pb;
    let betas = |n: usize, seed: u64| -> Vec<f32> {
        weights(n, seed)
            .iter()
            .map(|v| 0.8 + v.abs() * 2.0)
            .collect()
    };
    let gammas = |n: usize, seed: u64| -> Vec<f32> {
        weights(n, seed).iter().map(|v| 0.5 + v.abs()).collect()
    };
    let params: Vec<(String, Vec<i64>, Vec<f32>)> = vec![
        ("bn1.gamma".into(), vec![4], gammas(4, 31)),
        ("bn1.beta".into(), vec![4], betas(4, 32)),
        ("bn1.mean".into(), vec![4], vec![0.0; 4]),
        ("bn1.var".into(), vec![4], vec![1.0; 4]),
        ("conv1.w".into(), vec![8, 4, 3, 3], weights(8 * 36, 33)),
        ("conv1.b".into(), vec![8], weights(8, 34)),
        ("bn2.gamma".into(), vec![8], gammas(8, 35)),
        ("bn2.beta".into(), vec![8], betas(8, 36)),
        ("bn2.mean".into(), vec![8], vec![0.0; 8]),
        ("bn2.var".into(), vec![8], vec![1.0; 8]),
        ("lo".into(), vec![], vec![0.0]),
        ("hi".into(), vec![], vec![6.0]),
        ("conv2.w".into(), vec![6, 8, 1, 1], weights(48, 37)),
    ];
    let graph = pb::GraphProto {
        name: "bn".into(),
        node: vec![
            node(
                "BatchNormalization",
                &["x", "bn1.gamma", "bn1.beta", "bn1.mean", "bn1.var"],
                "n1",
                vec![],
            ),
            node("Relu", &["n1"], "r1", vec![]),
            node(
                "Conv",
                &["r1", "conv1.w", "conv1.b"],
                "c1",
                vec![
                    attr_ints("kernel_shape", &[3, 3]),
                    attr_ints("pads", &[1, 1, 1, 1]),
                ],
            ),
            node(
                "BatchNormalization",
                &["c1", "bn2.gamma", "bn2.beta", "bn2.mean", "bn2.var"],
                "n2",
                vec![],
            ),
            node("Clip", &["n2", "lo", "hi"], "r2", vec![]),
            node("Conv", &["r2", "conv2.w"], "y", vec![]),
        ],
        initializer: params
            .iter()
            .map(|(n, d, v)| initializer(n, d, v))
            .collect(),
        input: vec![value_info("x", &[None, Some(4), Some(6), Some(6)])],
        output: vec![value_info("y", &[None, Some(6), Some(6), Some(6)])],
        ..Default::default()
    };
    write_model(path, graph);
    params.into_iter().map(|(n, _, v)| (n, v)).collect()
}

/// A named initializer's values from an ONNX file.
fn onnx_values(path: &std::path::Path, name: &str) -> Vec<f32> {
    use prost::Message;
    let model =
        tract_onnx::pb::ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    let t = model
        .graph
        .unwrap()
        .initializer
        .into_iter()
        .find(|t| t.name == name)
        .unwrap();
    t.raw_data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn data_free_bias_correction_from_batchnorm_relu() {
    use expquant::calibrate::relu_moments;
    let dir = tempdir("onnx-datafree");
    let model = dir.join("bn.onnx");
    let params = bn_relu_graph(&model);
    let get = |name: &str| params.iter().find(|p| p.0 == name).unwrap().1.clone();
    let (out, fixed, plain) = (
        dir.join("q.expq"),
        dir.join("fixed.onnx"),
        dir.join("plain.onnx"),
    );
    let base = ["quantize", p(&model), "-o", p(&out), "--bits", "3", "-q"];
    let mut args = base.to_vec();
    args.extend(["--emit-onnx", p(&fixed)]);
    expquant_ok(&args);
    let mut args = base.to_vec();
    args.extend(["--emit-onnx", p(&plain), "--no-bias-correction"]);
    expquant_ok(&args);

    // conv1: the correction is −Σ_j ΔW[r,j]·E[relu(z_j)] with z_j ~ N(beta, gamma²), per row.
    let (gamma, beta) = (get("bn1.gamma"), get("bn1.beta"));
    let channel_mean: Vec<f64> = gamma
        .iter()
        .zip(&beta)
        .map(|(&g, &b)| relu_moments(b as f64, g as f64, f64::INFINITY).unwrap().0)
        .collect();
    let w = get("conv1.w");
    let q = onnx_values(&plain, "conv1.w");
    assert_eq!(q, onnx_values(&fixed, "conv1.w"));
    let (b0, b1) = (get("conv1.b"), onnx_values(&fixed, "conv1.b"));
    assert_eq!(onnx_values(&plain, "conv1.b"), b0);
    for r in 0..8 {
        let expected: f64 = -(0..36)
            .map(|j| (q[r * 36 + j] - w[r * 36 + j]) as f64 * channel_mean[j / 9])
            .sum::<f64>();
        let got = (b1[r] - b0[r]) as f64;
        assert!(expected.abs() > 1e-4, "row {r}: no shift to correct");
        assert_eq!(
            got.signum(),
            expected.signum(),
            "row {r}: {got} vs {expected}"
        );
        assert!(
            (got - expected).abs() <= 1e-5 + 1e-4 * expected.abs(),
            "row {r}"
        );
    }
    // conv2 had no bias: the data-free path (BatchNorm → Clip(0, 6)) gave it one.
    assert_eq!(onnx_values(&fixed, "conv2.w.expquant_bias").len(), 6);

    // On standard normal inputs, the corrected model's outputs are closer to the original's.
    let n = 32;
    let x: Vec<f32> = weights(n * 4 * 36, 38)
        .iter()
        .map(|v| v * 12f32.sqrt())
        .collect();
    let shape = [n, 4, 6, 6];
    let want = run_once(&model, &shape, &x);
    let mse = |path: &std::path::Path| -> f64 {
        let got = run_once(path, &shape, &x);
        got.iter()
            .zip(&want)
            .map(|(g, w)| ((g - w) as f64).powi(2))
            .sum::<f64>()
            / want.len() as f64
    };
    let (e_fixed, e_plain) = (mse(&fixed), mse(&plain));
    eprintln!("data-free bias correction, 3 bits: output MSE {e_plain:.5} → {e_fixed:.5}");
    assert!(e_fixed < e_plain, "{e_fixed} vs {e_plain}");
}
