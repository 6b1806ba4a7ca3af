//! SQNR and bits per weight of linear vs exponential levels at 1–8 bits, on a deterministic
//! bell-shaped weight matrix (a quick look at the trade-off without a model).
//!
//! `cargo run --release --example sqnr`

use expquant::{metrics, quantize, Config, ScaleRule};

fn main() -> Result<(), expquant::Error> {
    let (rows, cols) = (256, 1024);
    let weights = bell_shaped(rows * cols);
    println!("{rows} x {cols} weights (normal/Laplace mix), per row");
    println!("bits | rule    | linear SQNR dB | exp SQNR dB | linear bpw | exp bpw");
    for bits in 1..=8u8 {
        for (name, rule) in [("max-abs", ScaleRule::MaxAbs), ("mse", ScaleRule::Mse)] {
            let lin = quantize(
                &weights,
                rows,
                cols,
                &Config::linear(bits).with_scale_rule(rule),
            )?;
            let exp = quantize(
                &weights,
                rows,
                cols,
                &Config::exponential(bits).with_scale_rule(rule),
            )?;
            println!(
                "{bits:>4} | {name:<7} | {:>14.2} | {:>11.2} | {:>10.3} | {:>7.3}",
                metrics::sqnr_db(&weights, &lin.dequantize())?,
                metrics::sqnr_db(&weights, &exp.dequantize())?,
                lin.bits_per_weight(),
                exp.bits_per_weight(),
            );
        }
    }
    Ok(())
}

/// Deterministic weights with heavier-than-normal tails, like a trained layer's.
fn bell_shaped(n: usize) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (uniform(), uniform());
            let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            // Scale by a second draw to fatten the tails (a Gaussian scale mixture).
            (normal * 0.02 * (0.5 + uniform())) as f32
        })
        .collect()
}
