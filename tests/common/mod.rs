//! Shared helpers for the integration tests: seeded data and brute-force references.
#![allow(dead_code)]

use expquant::discretize::{Discretizer, Family};
use expquant::{Codebook, Config, Granularity, Params, ScaleRule, Scheme};

/// A small deterministic generator (splitmix64), so tests need no `rand`.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    /// Laplace-distributed (heavier tails, like trained weights).
    pub fn laplace(&mut self) -> f64 {
        let u = self.uniform() - 0.5;
        -u.signum() * (1.0 - 2.0 * u.abs()).max(1e-300).ln()
    }
}

/// Bell-shaped weights like a trained layer's: a mix of normal and Laplace, scaled.
pub fn weights(seed: u64, n: usize, scale: f64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let v = if i % 3 == 0 {
                rng.laplace()
            } else {
                rng.normal()
            };
            (v * scale) as f32
        })
        .collect()
}

/// The index of the level nearest to `x`, by a scan over every level, with the crate's tie
/// rule: smaller distance, then smaller magnitude, then the more negative level. Distances
/// are taken in `f64`, which is exact for the `f32` values and the dyadic `f64` values the
/// tests use.
pub fn nearest_by_scan<T: expquant::Real>(levels: &[T], x: T) -> usize {
    let x = x.widen();
    let mut best = 0;
    for (i, &l) in levels.iter().enumerate().skip(1) {
        let (l, lb) = (l.widen(), levels[best].widen());
        let (d, db) = ((x - l).abs(), (x - lb).abs());
        let (m, mb) = (l.abs(), lb.abs());
        if d < db || (d == db && (m < mb || (m == mb && l < lb))) {
            best = i;
        }
    }
    best
}

/// Σ imp·(w − Q(w))² when `w` is encoded by `codebook`.
pub fn weighted_sse(codebook: &Codebook<f64>, w: &[f64], imp: &[f64]) -> f64 {
    w.iter()
        .zip(imp)
        .map(|(&x, &i)| {
            let e = x - codebook.levels()[codebook.encode(x) as usize];
            i * e * e
        })
        .sum()
}

/// Importance-weighted Pearson correlation between `w` and its encoding.
pub fn correlation(codebook: &Codebook<f64>, w: &[f64], imp: &[f64]) -> f64 {
    let total: f64 = imp.iter().sum();
    let q: Vec<f64> = w
        .iter()
        .map(|&x| codebook.levels()[codebook.encode(x) as usize])
        .collect();
    let mean = |v: &[f64]| v.iter().zip(imp).map(|(a, i)| a * i).sum::<f64>() / total;
    let (mw, mq) = (mean(w), mean(&q));
    let mut cov = 0.0;
    let mut vw = 0.0;
    let mut vq = 0.0;
    for ((a, b), i) in w.iter().zip(&q).zip(imp) {
        cov += i * (a - mw) * (b - mq);
        vw += i * (a - mw) * (a - mw);
        vq += i * (b - mq) * (b - mq);
    }
    if vw <= 0.0 || vq <= 0.0 {
        return 0.0;
    }
    cov / (vw * vq).sqrt()
}

/// A family of either scheme with its scale rule, built when fitting (so bad bits are the
/// fit's error).
pub struct Fitter {
    scheme: Scheme,
    bits: u8,
    rule: ScaleRule,
    zero: bool,
}

impl Fitter {
    fn family(&self) -> expquant::Result<Family> {
        Family::new(self.scheme, self.bits, self.zero)
    }

    /// [`Discretizer::fit`] under this rule.
    pub fn fit<T: expquant::Real>(
        &self,
        w: &[T],
        importance: Option<&[T]>,
    ) -> expquant::Result<Codebook<T>> {
        self.family()?.fit(self.rule, w, importance)
    }

    /// [`Discretizer::fit_params`] under this rule.
    pub fn fit_params<T: expquant::Real>(
        &self,
        w: &[T],
        importance: Option<&[T]>,
    ) -> expquant::Result<expquant::Params<T>> {
        self.family()?.fit_params(self.rule, w, importance)
    }

    /// [`Discretizer::codebook`].
    pub fn codebook<T: expquant::Real>(
        &self,
        params: expquant::Params<T>,
    ) -> expquant::Result<Codebook<T>> {
        self.family()?.codebook(params)
    }
}

/// A discretizer of either scheme.
pub fn discretizer(scheme: Scheme, bits: u8, rule: ScaleRule, zero: bool) -> Fitter {
    Fitter {
        scheme,
        bits,
        rule,
        zero,
    }
}

/// Dense brute force over `(a, q)`: the best value of `objective` (lower is better) over an
/// `a_steps × q_steps` grid, `a` in `(0, 1.5·max|w|]` and `q` in `[0.01, 0.999]` (one `q` when
/// the family ignores it). `a_fixed` pins `a`.
#[allow(clippy::too_many_arguments)]
pub fn brute_force(
    scheme: Scheme,
    bits: u8,
    zero: bool,
    w: &[f64],
    a_fixed: Option<f64>,
    a_steps: usize,
    q_steps: usize,
    objective: impl Fn(&Codebook<f64>) -> f64,
) -> f64 {
    brute_force_argmin(scheme, bits, zero, w, a_fixed, a_steps, q_steps, objective).0
}

/// [`brute_force`], also returning the best `(a, q)`.
#[allow(clippy::too_many_arguments)]
pub fn brute_force_argmin(
    scheme: Scheme,
    bits: u8,
    zero: bool,
    w: &[f64],
    a_fixed: Option<f64>,
    a_steps: usize,
    q_steps: usize,
    objective: impl Fn(&Codebook<f64>) -> f64,
) -> (f64, f64, f64) {
    let d = discretizer(scheme, bits, ScaleRule::MaxAbs, zero);
    let amax = w.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let uses_q = scheme == Scheme::Exponential && bits > 2
        || (scheme == Scheme::Exponential && !zero && bits == 2);
    let q_steps = if uses_q { q_steps } else { 1 };
    let a_values: Vec<f64> = match a_fixed {
        Some(a) => vec![a],
        None => (1..=a_steps)
            .map(|i| 1.5 * amax * i as f64 / a_steps as f64)
            .collect(),
    };
    let mut best = (f64::INFINITY, 0.0, 0.0);
    for qi in 0..q_steps {
        let q = if uses_q {
            0.01 + (0.999 - 0.01) * qi as f64 / (q_steps - 1) as f64
        } else {
            0.5
        };
        for &a in &a_values {
            if let Ok(cb) = d.codebook(Params { a, q }) {
                let v = objective(&cb);
                if v < best.0 {
                    best = (v, a, q);
                }
            }
        }
    }
    best
}

/// Every group's parameters of `t`, in group order.
pub fn all_params(t: &expquant::QuantizedTensor) -> Vec<Params<f32>> {
    (0..t.group_count()).filter_map(|g| t.params(g)).collect()
}

/// Every combination of scheme, `rules`, `layouts` and zero level at `bits`.
pub fn config_grid(bits: u8, rules: &[ScaleRule], layouts: &[Granularity]) -> Vec<Config> {
    let mut out = Vec::new();
    for base in [Config::linear(bits), Config::exponential(bits)] {
        for &rule in rules {
            for &layout in layouts {
                for zero in [true, false] {
                    out.push(
                        base.with_scale_rule(rule)
                            .with_granularity(layout)
                            .with_zero_level(zero),
                    );
                }
            }
        }
    }
    out
}
