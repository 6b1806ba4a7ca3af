//! SQNR and bits per weight of compact group parameters (an `f16` scale per group, one `q`
//! per row) against `f32` parameters per group, for exponential and linear levels at 3 and 4
//! bits in groups of 32 and 128, on Gaussian and on heavy-tailed (Student-t, 3 degrees of
//! freedom) weights. The table in BENCHMARKS.md comes from this program.
//!
//! `cargo run --release --example compact_sqnr`

use expquant::{metrics, quantize, Config, ScaleRule};

fn main() -> Result<(), expquant::Error> {
    let (rows, cols) = (32, 4096);
    println!("{rows} x {cols} weights; SQNR in dB (bits per weight)");
    println!(
        "| weights | levels | bits | group | rule | f32 params | compact | difference |\n\
         |---|---|---:|---:|---|---:|---:|---:|"
    );
    for (dist, weights) in [
        ("gaussian", gaussian(rows * cols, 1)),
        ("student-t3", student_t3(rows * cols, 2)),
    ] {
        for (levels, base) in [
            ("exp", Config::exponential as fn(u8) -> Config),
            ("linear", Config::linear),
        ] {
            for bits in [3u8, 4] {
                for g in [32usize, 128] {
                    for (rule_name, rule) in
                        [("max-abs", ScaleRule::MaxAbs), ("mse", ScaleRule::Mse)]
                    {
                        let config = base(bits).per_group(g).with_scale_rule(rule);
                        let plain = quantize(&weights, rows, cols, &config)?;
                        let compact =
                            quantize(&weights, rows, cols, &config.with_compact_params(true))?;
                        let s_plain = metrics::sqnr_db(&weights, &plain.dequantize())?;
                        let s_compact = metrics::sqnr_db(&weights, &compact.dequantize())?;
                        println!(
                            "| {dist} | {levels} | {bits} | {g} | {rule_name} | {s_plain:.2} ({:.3}) | {s_compact:.2} ({:.3}) | {:+.2} |",
                            plain.bits_per_weight(),
                            compact.bits_per_weight(),
                            s_compact - s_plain,
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// A small deterministic generator (splitmix64), uniform in (0, 1).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 + 1e-300
    }

    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    (0..n).map(|_| (rng.normal() * 0.02) as f32).collect()
}

/// Student-t with 3 degrees of freedom: a normal over the root of a scaled chi-square.
fn student_t3(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let z = rng.normal();
            let chi2: f64 = (0..3).map(|_| rng.normal().powi(2)).sum();
            (z / (chi2 / 3.0).sqrt() * 0.02) as f32
        })
        .collect()
}
