//! Shared helpers for the benchmarks: seeded weights and the criterion settings that keep the
//! whole suite to a few minutes on two cores.
#![allow(dead_code)]

use criterion::Criterion;
use std::time::Duration;

/// Bell-shaped pseudo-random weights (a sum of uniforms), deterministic per seed.
pub fn weights(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n)
        .map(|_| (next() + next() + next() + next() - 2.0) * scale)
        .collect()
}

pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}
