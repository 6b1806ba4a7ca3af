//! The CLI on safetensors and `.npy` inputs: the container holds exactly what the library
//! produces when called directly and every other tensor as an `f32` entry, the sidecar only
//! what an `f32` entry cannot hold; `inspect` reports each entry's checksum state; overrides
//! in JSON and TOML; errors leave nothing behind.

mod common;

use common::*;
use expquant::{quantize, Config, ContainerView, EntryView, QuantizedTensor};
use safetensors::tensor::{Dtype, TensorView};

/// A small checkpoint: f32, f16 and bf16 weights, a 1-D bias, an embedding and an f16 norm.
/// Name, matrix dims and the f32 values the library sees.
type Seen = Vec<(String, Vec<usize>, Vec<f32>)>;

fn checkpoint(dir: &std::path::Path) -> (std::path::PathBuf, Seen) {
    let w0 = weights(16 * 64, 1);
    let w1 = weights(8 * 32, 2);
    let w2 = weights(4 * 2 * 3 * 3, 3);
    let bias = weights(16, 4);
    let embed = weights(10 * 4, 5);
    let norm: Vec<u8> = weights(32, 6)
        .iter()
        .flat_map(|&v| half::f16::from_f32(1.0 + v).to_le_bytes())
        .collect();
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
        (
            "final_norm.weight",
            TensorView::new(Dtype::F16, vec![32], &norm).unwrap(),
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
        6,
        "3 quantized tensors, bias, embedding and norm as f32 entries"
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
    // Every other tensor is an f32 entry equal to the original converted to f32, shaped as
    // its first axis against the rest; no sidecar is written.
    let original_bytes = std::fs::read(&model).unwrap();
    let original = safetensors::SafeTensors::deserialize(&original_bytes).unwrap();
    for (name, rows, cols) in [
        ("layer0.bias", 1, 16),
        ("embed_tokens.weight", 10, 4),
        ("final_norm.weight", 1, 32),
    ] {
        let array = container.get_f32(name).unwrap().expect("f32 entry present");
        assert_eq!((array.rows(), array.cols()), (rows, cols), "{name}");
        let t = original.tensor(name).unwrap();
        let want: Vec<f32> = match t.dtype() {
            Dtype::F32 => t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::F16 => t
                .data()
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => panic!("{other:?}"),
        };
        let got = array.to_vec();
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{name}"
        );
    }
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["model.safetensors", "q.expq", "r.json"]);
    let report = report(&rep);
    let weights: f64 = seen.iter().map(|t| t.2.len() as f64).sum();
    let bpw = report["bits_per_weight"].as_f64().unwrap();
    assert!((bpw - stored_bits / weights).abs() < 1e-9, "{bpw}");
    assert_eq!(report["tensors"].as_array().unwrap().len(), 3);
    assert_eq!(report["kept"].as_array().unwrap().len(), 3);
    assert_eq!(report["tensors"][0]["bits"], 3);
    assert_eq!(report["f32_entries"], 3);
    assert_eq!(report["sidecar"], serde_json::Value::Null);
    // The reported size is the one file written.
    assert_eq!(
        report["size_after_bytes"].as_u64(),
        Some(bytes.len() as u64)
    );

    // Without --verify only the table is checked; with it, every entry.
    let listing = expquant_ok(&["inspect", p(&out)]);
    let line = |listing: &str, name: &str| -> String {
        listing
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{listing}"))
            .to_string()
    };
    for (name, ..) in &seen {
        let l = line(&listing, name);
        assert!(l.contains("quantized"), "{l}");
        assert!(l.contains("group:16") && l.contains("exponential"), "{l}");
        assert!(l.ends_with("not checked"), "{l}");
    }
    let l = line(&listing, "embed_tokens.weight");
    assert!(
        l.contains("f32") && l.contains("10×4") && l.contains("32.000"),
        "{l}"
    );
    assert_eq!(
        listing
            .lines()
            .filter(|l| l.ends_with("not checked"))
            .count(),
        6,
        "{listing}"
    );
    let verified = expquant_ok(&["inspect", p(&out), "--verify"]);
    for name in ["layer0.weight", "layer0.bias", "final_norm.weight"] {
        assert!(line(&verified, name).ends_with("  ok"), "{verified}");
    }
    assert!(
        verified.contains("checksums: 6 ok, 0 mismatched, 0 not checked"),
        "{verified}"
    );
}

/// Flips one byte inside `name`'s stored data.
fn corrupt_entry(bytes: &mut [u8], name: &str) {
    let at = {
        let c = ContainerView::from_bytes(bytes).unwrap();
        let data = match c.entry(name).unwrap().unwrap() {
            EntryView::Quantized(v) => v.packed_codes(),
            EntryView::F32(a) => a.bytes(),
        };
        data.as_ptr() as usize - bytes.as_ptr() as usize + data.len() / 2
    };
    bytes[at] ^= 0x40;
}

#[test]
fn inspect_reports_a_damaged_entry_alone() {
    let dir = tempdir("inspect");
    let (model, _) = checkpoint(&dir);
    let out = dir.join("q.expq");
    expquant_ok(&["quantize", p(&model), "-o", p(&out), "-q"]);
    let clean = std::fs::read(&out).unwrap();
    for victim in ["layer1.weight", "embed_tokens.weight"] {
        let mut bytes = clean.clone();
        corrupt_entry(&mut bytes, victim);
        let damaged = dir.join("damaged.expq");
        std::fs::write(&damaged, &bytes).unwrap();
        // Opening checks the table only, so the listing still succeeds unchecked.
        let listing = expquant_ok(&["inspect", p(&damaged)]);
        assert!(!listing.contains("MISMATCH"), "{listing}");
        let o = expquant(&["inspect", p(&damaged), "--verify"]);
        assert!(!o.status.success());
        let stdout = String::from_utf8_lossy(&o.stdout);
        let bad: Vec<&str> = stdout.lines().filter(|l| l.contains("MISMATCH")).collect();
        assert_eq!(bad.len(), 1, "{stdout}");
        assert!(bad[0].starts_with(&format!("{victim} ")), "{stdout}");
        assert!(bad[0].contains("checksum"), "{stdout}");
        assert!(stdout.contains("checksums: 5 ok, 1 mismatched"), "{stdout}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("1 of 6 entries failed"));
    }
    // A file that is not a container is refused with the reason.
    let o = expquant(&["inspect", p(&model)]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("cannot open as an expquant container") && e.contains("bad magic"),
        "{e}"
    );
}

#[test]
fn integer_tensors_need_the_sidecar() {
    let dir = tempdir("sidecar");
    let w = weights(8 * 16, 12);
    let wb: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    let ids: Vec<u8> = (0i64..8).flat_map(|v| v.to_le_bytes()).collect();
    let views = vec![
        (
            "fc.weight",
            TensorView::new(Dtype::F32, vec![8, 16], &wb).unwrap(),
        ),
        (
            "position_ids",
            TensorView::new(Dtype::I64, vec![1, 8], &ids).unwrap(),
        ),
    ];
    let model = dir.join("m.safetensors");
    std::fs::write(&model, safetensors::serialize(views, &None).unwrap()).unwrap();
    let out = dir.join("q.expq");
    let o = expquant(&["quantize", p(&model), "-o", p(&out), "-q"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("'position_ids' (I64") && e.contains("--rest-sidecar"),
        "{e}"
    );
    assert!(!out.exists());

    let (side, rep) = (dir.join("rest.safetensors"), dir.join("r.json"));
    expquant_ok(&[
        "quantize",
        p(&model),
        "-o",
        p(&out),
        "--rest-sidecar",
        p(&side),
        "--report",
        p(&rep),
        "-q",
    ]);
    let side_bytes = std::fs::read(&side).unwrap();
    let rest = safetensors::SafeTensors::deserialize(&side_bytes).unwrap();
    assert_eq!(rest.names(), ["position_ids"]);
    assert_eq!(rest.tensor("position_ids").unwrap().data(), ids.as_slice());
    let bytes = std::fs::read(&out).unwrap();
    let container = ContainerView::from_bytes(&bytes).unwrap();
    assert_eq!(container.len(), 1);
    let r = report(&rep);
    assert_eq!(
        r["size_after_bytes"].as_u64(),
        Some((bytes.len() + side_bytes.len()) as u64)
    );
    assert_eq!(r["sidecar"], p(&side));
}

/// The settings of each quantized tensor in a report: name, bits, scheme.
fn settings(rep: &std::path::Path) -> Vec<(String, u64, String)> {
    let r = report(rep);
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
    bits
}

#[test]
fn include_exclude_and_overrides() {
    let dir = tempdir("select");
    let (model, _) = checkpoint(&dir);
    let json = dir.join("o.json");
    std::fs::write(
        &json,
        r#"[{"match": "layer*", "bits": 6, "scheme": "linear"}, {"match": "conv.weight", "quantize": false}]"#,
    )
    .unwrap();
    let toml = dir.join("o.toml");
    std::fs::write(
        &toml,
        "# the same overrides as o.json\n\
         [[override]]\nmatch = \"layer*\"\nbits = 6\nscheme = \"linear\"\n\n\
         [[override]]\nmatch = \"conv.weight\"\nquantize = false\n",
    )
    .unwrap();
    let out = dir.join("q.expq");
    let rep = dir.join("r.json");
    let expected = [
        (
            "embed_tokens.weight".to_string(),
            4,
            "exponential".to_string(),
        ),
        ("layer0.weight".to_string(), 6, "linear".to_string()),
    ];
    for overrides in [&json, &toml] {
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
            p(overrides),
            "--report",
            p(&rep),
            "--quiet",
        ]);
        assert_eq!(settings(&rep), expected, "{}", overrides.display());
    }

    let fails = |overrides: &std::path::Path| -> String {
        let o = expquant(&[
            "quantize",
            p(&model),
            "-o",
            p(&out),
            "--overrides",
            p(overrides),
        ]);
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    std::fs::write(&json, r#"[{"match": "*", "bits": 9}]"#).unwrap();
    assert!(fails(&json).contains("override for '*'"));
    std::fs::write(&toml, "[[override]]\nmatch = \"*\"\nbits = 9\n").unwrap();
    assert!(fails(&toml).contains("override for '*'"));
    // A misspelt key is named, in either format, at the entry and at the top level.
    std::fs::write(&json, r#"[{"match": "*", "bitz": 3}]"#).unwrap();
    let e = fails(&json);
    assert!(
        e.contains("unknown field `bitz`") && e.contains("o.json"),
        "{e}"
    );
    std::fs::write(&toml, "[[override]]\nmatch = \"*\"\nbitz = 3\n").unwrap();
    let e = fails(&toml);
    assert!(
        e.contains("unknown field `bitz`") && e.contains("o.toml"),
        "{e}"
    );
    std::fs::write(&toml, "[[overrides]]\nmatch = \"*\"\n").unwrap();
    let e = fails(&toml);
    assert!(e.contains("unknown field `overrides`"), "{e}");
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
    assert!(stderr(&["inspect", p(&missing)]).contains("cannot read"));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["cut.safetensors", "model.safetensors", "model.txt"]);
}
