//! The CLI on safetensors and `.npy` inputs: the container holds exactly what the library
//! produces when called directly, the sidecar holds the rest, errors leave nothing behind.

mod common;

use common::*;
use expquant::{quantize, Config, ContainerView, QuantizedTensor};
use safetensors::tensor::{Dtype, TensorView};

/// A small checkpoint: f32, f16 and bf16 weights, a 1-D bias and an embedding.
/// Name, matrix dims and the f32 values the library sees.
type Seen = Vec<(String, Vec<usize>, Vec<f32>)>;

fn checkpoint(dir: &std::path::Path) -> (std::path::PathBuf, Seen) {
    let w0 = weights(16 * 64, 1);
    let w1 = weights(8 * 32, 2);
    let w2 = weights(4 * 2 * 3 * 3, 3);
    let bias = weights(16, 4);
    let embed = weights(10 * 4, 5);
    let f16: Vec<u8> = w1
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let bf16: Vec<u8> = w2
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect();
    let f32b = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let (b0, bb, be) = (f32b(&w0), f32b(&bias), f32b(&embed));
    let views = vec![
        (
            "layer0.weight",
            TensorView::new(Dtype::F32, vec![16, 64], &b0).unwrap(),
        ),
        (
            "layer0.bias",
            TensorView::new(Dtype::F32, vec![16], &bb).unwrap(),
        ),
        (
            "layer1.weight",
            TensorView::new(Dtype::F16, vec![8, 32], &f16).unwrap(),
        ),
        (
            "conv.weight",
            TensorView::new(Dtype::BF16, vec![4, 2, 3, 3], &bf16).unwrap(),
        ),
        (
            "embed_tokens.weight",
            TensorView::new(Dtype::F32, vec![10, 4], &be).unwrap(),
        ),
    ];
    let path = dir.join("model.safetensors");
    std::fs::write(&path, safetensors::serialize(views, &None).unwrap()).unwrap();
    // What the library sees: the stored values converted to f32.
    let seen = vec![
        ("layer0.weight".to_string(), vec![16, 64], w0),
        (
            "layer1.weight".to_string(),
            vec![8, 32],
            w1.iter()
                .map(|&v| half::f16::from_f32(v).to_f32())
                .collect(),
        ),
        (
            "conv.weight".to_string(),
            vec![4, 18],
            w2.iter()
                .map(|&v| half::bf16::from_f32(v).to_f32())
                .collect(),
        ),
    ];
    (path, seen)
}

#[test]
fn safetensors_container_matches_the_library() {
    let dir = tempdir("st");
    let (model, seen) = checkpoint(&dir);
    let out = dir.join("q.expq");
    let rep = dir.join("r.json");
    let table = expquant_ok(&[
        "quantize",
        p(&model),
        "-o",
        p(&out),
        "--bits",
        "3",
        "--granularity",
        "group:16",
        "--report",
        p(&rep),
        "--quiet",
    ]);
    assert!(table.is_empty(), "--quiet prints no table");
    let bytes = std::fs::read(&out).unwrap();
    let container = ContainerView::from_bytes(&bytes).unwrap();
    assert_eq!(
        container.len(),
        3,
        "bias and embedding stay out of the container"
    );
    let config = Config::exponential(3).per_group(16);
    let mut stored_bits = 0.0;
    for (name, dims, values) in &seen {
        let view = container
            .get(name)
            .unwrap()
            .expect("quantized tensor present");
        let direct = quantize(values, dims[0], dims[1], &config).unwrap();
        assert_eq!(
            QuantizedTensor::from_view(&view).to_bytes(),
            direct.to_bytes(),
            "{name}"
        );
        stored_bits += direct.bits_per_weight() * values.len() as f64;
    }
    // The sidecar holds the untouched tensors byte for byte.
    let rest_bytes = std::fs::read(dir.join("q.expq.rest.safetensors")).unwrap();
    let rest = safetensors::SafeTensors::deserialize(&rest_bytes).unwrap();
    let original_bytes = std::fs::read(&model).unwrap();
    let original = safetensors::SafeTensors::deserialize(&original_bytes).unwrap();
    let mut names = rest.names();
    names.sort();
    assert_eq!(names, ["embed_tokens.weight", "layer0.bias"]);
    for name in ["embed_tokens.weight", "layer0.bias"] {
        assert_eq!(
            rest.tensor(name).unwrap().data(),
            original.tensor(name).unwrap().data()
        );
    }
    let report = report(&rep);
    let weights: f64 = seen.iter().map(|t| t.2.len() as f64).sum();
    let bpw = report["bits_per_weight"].as_f64().unwrap();
    assert!((bpw - stored_bits / weights).abs() < 1e-9, "{bpw}");
    assert_eq!(report["tensors"].as_array().unwrap().len(), 3);
    assert_eq!(report["kept"].as_array().unwrap().len(), 2);
    assert_eq!(report["tensors"][0]["bits"], 3);

    let listing = expquant_ok(&["inspect", p(&out)]);
    for (name, ..) in &seen {
        assert!(listing.contains(name.as_str()), "{listing}");
    }
    assert_eq!(listing.matches(" ok (group:16)").count(), 3, "{listing}");
}

#[test]
fn include_exclude_and_overrides() {
    let dir = tempdir("select");
    let (model, _) = checkpoint(&dir);
    let overrides = dir.join("o.json");
    std::fs::write(
        &overrides,
        r#"[{"match": "layer*", "bits": 6, "scheme": "linear"}, {"match": "conv.weight", "quantize": false}]"#,
    )
    .unwrap();
    let out = dir.join("q.expq");
    let rep = dir.join("r.json");
    expquant_ok(&[
        "quantize",
        p(&model),
        "-o",
        p(&out),
        "--include",
        "embed*",
        "--exclude",
        "layer1.*",
        "--overrides",
        p(&overrides),
        "--report",
        p(&rep),
        "--quiet",
    ]);
    let r = report(&rep);
    let mut bits: Vec<(String, u64, String)> = r["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().into(),
                t["bits"].as_u64().unwrap(),
                t["scheme"].as_str().unwrap().into(),
            )
        })
        .collect();
    bits.sort();
    assert_eq!(
        bits,
        [
            (
                "embed_tokens.weight".to_string(),
                4,
                "exponential".to_string()
            ),
            ("layer0.weight".to_string(), 6, "linear".to_string()),
        ]
    );

    std::fs::write(&overrides, r#"[{"match": "*", "bits": 9}]"#).unwrap();
    let bad = expquant(&[
        "quantize",
        p(&model),
        "-o",
        p(&out),
        "--overrides",
        p(&overrides),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("override for '*'"));
}

#[test]
fn target_bpw_stays_within_budget_and_beats_uniform() {
    let dir = tempdir("bpw");
    // Layers of very different scales and sizes: uniform widths waste bits on small errors.
    let f32b = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let a: Vec<f32> = weights(64 * 64, 7).iter().map(|v| v * 4.0).collect();
    let b: Vec<f32> = weights(32 * 32, 8).iter().map(|v| v * 0.1).collect();
    let c = weights(16 * 128, 9);
    let (ba, bb, bc) = (f32b(&a), f32b(&b), f32b(&c));
    let views = vec![
        ("a", TensorView::new(Dtype::F32, vec![64, 64], &ba).unwrap()),
        ("b", TensorView::new(Dtype::F32, vec![32, 32], &bb).unwrap()),
        (
            "c",
            TensorView::new(Dtype::F32, vec![16, 128], &bc).unwrap(),
        ),
    ];
    let model = dir.join("m.safetensors");
    std::fs::write(&model, safetensors::serialize(views, &None).unwrap()).unwrap();
    let out = dir.join("q.expq");
    let (ru, rt) = (dir.join("u.json"), dir.join("t.json"));
    expquant_ok(&[
        "quantize",
        p(&model),
        "-o",
        p(&out),
        "--bits",
        "3",
        "--report",
        p(&ru),
        "-q",
    ]);
    let uniform = report(&ru);
    let budget = uniform["bits_per_weight"].as_f64().unwrap();
    expquant_ok(&[
        "quantize",
        p(&model),
        "-o",
        p(&out),
        "--target-bpw",
        &budget.to_string(),
        "--report",
        p(&rt),
        "-q",
    ]);
    let target = report(&rt);
    let bpw = target["bits_per_weight"].as_f64().unwrap();
    assert!(bpw <= budget + 1e-12, "{bpw} > {budget}");
    assert!(summed_error(&target) < summed_error(&uniform));
    let widths: Vec<u64> = target["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["bits"].as_u64().unwrap())
        .collect();
    assert!(widths.iter().any(|&b| b != 3), "{widths:?}");

    // A budget below the smallest widths is refused with the bits it would take.
    let low = expquant(&["quantize", p(&model), "-o", p(&out), "--target-bpw", "0.5"]);
    assert!(String::from_utf8_lossy(&low.stderr).contains("the smallest widths need"));
}

#[test]
fn npy_matrix() {
    let dir = tempdir("npy");
    let w = weights(12 * 40, 11);
    let path = dir.join("proj.npy");
    write_npy(&path, &[12, 40], &w);
    let out = dir.join("q.expq");
    expquant_ok(&[
        "quantize",
        p(&path),
        "-o",
        p(&out),
        "--scheme",
        "linear",
        "--bits",
        "5",
        "-q",
    ]);
    let bytes = std::fs::read(&out).unwrap();
    let container = ContainerView::from_bytes(&bytes).unwrap();
    let view = container.get("proj").unwrap().unwrap();
    let direct = quantize(&w, 12, 40, &Config::linear(5)).unwrap();
    assert_eq!(
        QuantizedTensor::from_view(&view).to_bytes(),
        direct.to_bytes()
    );
}

#[test]
fn failures_are_clear_and_leave_no_output() {
    let dir = tempdir("errors");
    let (model, _) = checkpoint(&dir);
    let out = dir.join("q.expq");
    let stderr = |args: &[&str]| {
        let o = expquant(args);
        assert!(!o.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let missing = dir.join("missing.safetensors");
    assert!(stderr(&["quantize", p(&missing), "-o", p(&out)]).contains("cannot open"));
    let text = dir.join("model.txt");
    std::fs::write(&text, "hello").unwrap();
    assert!(stderr(&["quantize", p(&text), "-o", p(&out)]).contains("unsupported model format"));
    assert!(stderr(&["quantize", p(&model), "-o", p(&out), "--bits", "9"]).contains("bits"));
    assert!(stderr(&[
        "quantize",
        p(&model),
        "-o",
        p(&out),
        "--granularity",
        "rows"
    ])
    .contains("expected tensor, row or group:G"));
    // Fails while quantizing, after other tensors succeeded.
    let e = stderr(&[
        "quantize",
        p(&model),
        "-o",
        p(&out),
        "--scale-rule",
        "output-mse",
    ]);
    assert!(e.contains("calibration"), "{e}");
    let mut corrupt = std::fs::read(&model).unwrap();
    corrupt.truncate(corrupt.len() - 10);
    let truncated = dir.join("cut.safetensors");
    std::fs::write(&truncated, corrupt).unwrap();
    assert!(stderr(&["quantize", p(&truncated), "-o", p(&out)]).contains("cut.safetensors"));
    assert!(stderr(&["inspect", p(&model)]).contains("not an expquant container"));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["cut.safetensors", "model.safetensors", "model.txt"]);
}
