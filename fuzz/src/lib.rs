//! Shared by the fuzz targets and the seed-corpus generator: the byte layouts the `ffi` and
//! `quantize` targets read, so that the generator writes exactly what the targets parse, and
//! the invariant every quantized tensor obeys.

use expquant::{Config, Granularity, QuantizedTensor, ScaleRule, Scheme};

/// Bytes of the `ffi` target's prefix before `x` and the stored tensor.
pub const FFI_PREFIX: usize = 3;

/// An `ffi` target input: `flags`, then `x` as `u16` count and `f32`s, then a stored tensor.
///
/// `flags` bit 0: rewrite the tensor's checksum before use, so mutations reach the checks
/// behind it; bit 1: hand `x` to GEMV with its own length rather than the tensor's `cols`;
/// bits 2–4: the bit width for `expq_decode` (plus one).
pub fn ffi_input(flags: u8, x: &[f32], tensor: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&(x.len() as u16).to_le_bytes());
    for v in x {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(tensor);
    out
}

/// Splits an `ffi` target input into `(flags, x, tensor bytes)`; `None` when too short.
pub fn parse_ffi_input(data: &[u8]) -> Option<(u8, Vec<f32>, &[u8])> {
    let flags = *data.first()?;
    let count = usize::from(u16::from_le_bytes([*data.get(1)?, *data.get(2)?]));
    let x_bytes = data.get(FFI_PREFIX..FFI_PREFIX + 4 * count)?;
    let x = x_bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some((flags, x, &data[FFI_PREFIX + 4 * count..]))
}

/// Bytes of the `quantize` target's fixed part before the weights.
pub const QUANTIZE_PREFIX: usize = 16;

/// A `quantize` target case: a configuration, a row count and the weights.
#[derive(Debug, Clone)]
pub struct QuantizeCase {
    /// What to quantize to.
    pub config: Config,
    /// Rows; `weights.len()` must be a multiple for a valid shape.
    pub rows: usize,
    /// Row-major weights.
    pub weights: Vec<f32>,
    /// Per-weight importance for `OutputMse` (and for other rules when present).
    pub importance: Option<Vec<f32>>,
}

/// The `quantize` target's layout: scheme, bits, rule, granularity, group size, zero level,
/// rows, importance switch (one byte each), fixed `a` and `q` as `f32`, then the weights as
/// `f32`. Importances, when switched on, are the weights' magnitudes scaled into `[0, 1]`.
pub fn quantize_input(case: &QuantizeCase) -> Vec<u8> {
    let c = &case.config;
    let (granularity, group) = match c.granularity() {
        Granularity::PerTensor => (0u8, 0u8),
        Granularity::PerRow => (1, 0),
        Granularity::PerGroup(g) => (2, g.min(255) as u8),
        _ => (0, 0),
    };
    let (fa, fq) = match c.scale_rule() {
        ScaleRule::Fixed { a, q } => (a as f32, q as f32),
        _ => (1.0, 0.5),
    };
    let mut out = vec![
        c.scheme().code(),
        c.bits(),
        c.scale_rule().code(),
        granularity,
        group,
        u8::from(c.zero_level()),
        case.rows.min(255) as u8,
        u8::from(case.importance.is_some()),
    ];
    out.extend_from_slice(&fa.to_le_bytes());
    out.extend_from_slice(&fq.to_le_bytes());
    for w in &case.weights {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

/// Reads a `quantize` target input; bytes out of range are folded into range, so every input
/// is some case (possibly one with a bad shape or bad fixed parameters).
pub fn parse_quantize_input(data: &[u8]) -> Option<QuantizeCase> {
    let head = data.get(..QUANTIZE_PREFIX)?;
    let scheme = if head[0] & 1 == 0 {
        Scheme::Linear
    } else {
        Scheme::Exponential
    };
    let bits = head[1] % 9; // 0 stays possible: it must be an error, not a panic.
    let fa = f32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    let fq = f32::from_le_bytes([head[12], head[13], head[14], head[15]]);
    let rule = match head[2] % 5 {
        0 => ScaleRule::MaxAbs,
        1 => ScaleRule::Mse,
        2 => ScaleRule::Correlation,
        3 => ScaleRule::OutputMse,
        _ => ScaleRule::Fixed {
            a: f64::from(fa),
            q: f64::from(fq),
        },
    };
    let granularity = match head[3] % 3 {
        0 => Granularity::PerTensor,
        1 => Granularity::PerRow,
        _ => Granularity::PerGroup(usize::from(head[4])),
    };
    let weights: Vec<f32> = data[QUANTIZE_PREFIX..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let importance = (head[7] & 1 == 1 || rule == ScaleRule::OutputMse).then(|| {
        let top = weights
            .iter()
            .filter(|w| w.is_finite())
            .fold(0.0f32, |m, w| m.max(w.abs()));
        weights
            .iter()
            .map(|w| {
                if w.is_finite() && top > 0.0 {
                    w.abs() / top
                } else {
                    1.0
                }
            })
            .collect()
    });
    Some(QuantizeCase {
        config: Config::new(scheme, bits)
            .with_scale_rule(rule)
            .with_granularity(granularity)
            .with_zero_level(head[5] & 1 == 1),
        rows: usize::from(head[6]),
        weights,
        importance,
    })
}

/// The group that weight `(row, col)` belongs to.
pub fn group_of(granularity: Granularity, cols: usize, row: usize, col: usize) -> usize {
    match granularity {
        Granularity::PerTensor => 0,
        Granularity::PerGroup(g) if g < cols => row * cols.div_ceil(g) + col / g,
        _ => row,
    }
}

/// Panics unless `tensor`, quantized from `weights`, obeys the error bound that
/// `expquant::quantize` documents: every decoded value finite, at most the group's scale `a`
/// in magnitude, never of the opposite sign, zero for a zero weight when the family has a
/// zero level, and within `max(a, |w| − a)` of its weight; under `MaxAbs` the scale is the
/// group's `max|w|` (or the tiny-group scale when that is below `f32::MIN_POSITIVE`).
pub fn check_invariant(tensor: &QuantizedTensor, weights: &[f32]) {
    let config = tensor.config();
    let cols = tensor.cols();
    let has_zero = config.zero_level() && config.bits() > 1;
    let approx = tensor.dequantize();
    assert_eq!(approx.len(), weights.len());
    let mut amax = vec![0.0f32; tensor.group_count()];
    for (i, w) in weights.iter().enumerate() {
        let g = group_of(config.granularity(), cols, i / cols, i % cols);
        amax[g] = amax[g].max(w.abs());
    }
    let scales: Vec<f32> = (0..tensor.group_count())
        .map(|g| tensor.params(g).expect("group in range").a)
        .collect();
    for (g, (&a, &m)) in scales.iter().zip(&amax).enumerate() {
        assert!(a.is_finite() && a > 0.0, "group {g}: a = {a:e}");
        if config.scale_rule() == ScaleRule::MaxAbs {
            let want = if m >= f32::MIN_POSITIVE {
                m
            } else if has_zero {
                1.0
            } else {
                f32::MIN_POSITIVE
            };
            assert_eq!(a, want, "group {g}: max-abs scale for max|w| = {m:e}");
        }
    }
    for (i, (&w, &q)) in weights.iter().zip(&approx).enumerate() {
        let a = scales[group_of(config.granularity(), cols, i / cols, i % cols)];
        let what = || format!("weight {i} = {w:e} decodes to {q:e} (a = {a:e}, {config:?})");
        assert!(q.is_finite() && q.abs() <= a, "{}", what());
        assert!(!(w > 0.0 && q < 0.0 || w < 0.0 && q > 0.0), "{}", what());
        assert!(!(w == 0.0 && has_zero) || q == 0.0, "{}", what());
        let (wd, qd, ad) = (f64::from(w), f64::from(q), f64::from(a));
        assert!((wd - qd).abs() <= ad.max(wd.abs() - ad), "{}", what());
    }
}
