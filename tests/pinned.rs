//! Pins the fitted parameters, the packed codes and the bias corrections over a fixed set of
//! inputs to one checksum, so that a refactor which must not change behaviour cannot change
//! it silently. A deliberate change of the fit or the encoder updates `PINNED` and says why in
//! the commit.
mod common;

use common::weights;
use expquant::calibrate::{quantize_calibrated, InputStats};
use expquant::{quantize, quantize_weighted, Config, Granularity, ScaleRule};

/// FNV-1a over 64 bits: order-sensitive, no dependency, stable across platforms.
struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn f32(&mut self, v: f32) {
        self.bytes(&v.to_bits().to_le_bytes());
    }
}

fn configs() -> Vec<Config> {
    let layouts = [
        Granularity::PerTensor,
        Granularity::PerRow,
        Granularity::PerGroup(32),
        Granularity::PerGroup(7),
    ];
    // The MSE and correlation searches are slow at high widths; three widths keep this test
    // to seconds while max-abs covers every width.
    (1..=8u8)
        .flat_map(|bits| {
            let rules: &[ScaleRule] = if matches!(bits, 2 | 3 | 5) {
                &[ScaleRule::MaxAbs, ScaleRule::Mse, ScaleRule::Correlation]
            } else {
                &[ScaleRule::MaxAbs]
            };
            common::config_grid(bits, rules, &layouts)
        })
        .collect()
}

/// Every group's `(a, q)` and the packed codes of `tensor`.
fn hash_tensor(h: &mut Fnv, tensor: &expquant::QuantizedTensor) {
    for group in 0..tensor.group_count() {
        let p = tensor.params(group).expect("group in range");
        h.f32(p.a);
        h.f32(p.q);
    }
    h.bytes(tensor.packed_codes());
}

const PINNED: u64 = 0x080a_60aa_a037_ce6e;

#[test]
fn fitted_parameters_and_codes_are_pinned() {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    // Shapes that exercise the sorted-atom search (short rows), the sixteen-lane search
    // (groups up to 1 024) and the histogram path (a tensor above 1 024 weights).
    let shapes = [(3usize, 45usize), (4, 300)];
    for (seed, &(rows, cols)) in shapes.iter().enumerate() {
        let w = weights(seed as u64 + 11, rows * cols, 0.05);
        let importance: Vec<f32> = (0..rows * cols)
            .map(|i| 0.5 + (i % 5) as f32 * 0.25)
            .collect();
        for config in configs() {
            let t = quantize(&w, rows, cols, &config).expect("valid input");
            hash_tensor(&mut h, &t);
            let t =
                quantize_weighted(&w, rows, cols, &config, Some(&importance)).expect("valid input");
            hash_tensor(&mut h, &t);
        }
        let mean: Vec<f32> = (0..cols).map(|j| 0.1 + (j % 3) as f32 * 0.2).collect();
        let sq: Vec<f32> = mean.iter().map(|m| m * m + 0.05).collect();
        for bits in [2u8, 4, 6] {
            let config = Config::exponential(bits).with_scale_rule(ScaleRule::OutputMse);
            let stats = InputStats::new(&mean).with_sq_mean(&sq);
            let c = quantize_calibrated(&w, rows, cols, &config, &stats).expect("valid input");
            hash_tensor(&mut h, &c.tensor);
            for b in &c.bias_correction {
                h.f32(*b);
            }
        }
    }
    assert_eq!(
        h.0, PINNED,
        "fitted parameters, codes or bias corrections changed: {:#018x}",
        h.0
    );
}
