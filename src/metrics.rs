//! How far a quantized tensor is from the original.
//!
//! Each function compares an `original` slice with its `approx`imation of the same length and
//! accumulates in `f64`. Values are not checked for finiteness: a NaN or infinity in either
//! slice makes the result NaN or infinite, as the arithmetic gives it (the tensors this crate
//! produces are always finite). Bits per weight lives on
//! [`QuantizedTensor::bits_per_weight`](crate::QuantizedTensor::bits_per_weight).

use crate::error::{Error, Result};
use crate::float::math::{log10, sqrt};
use crate::float::Real;

fn pairs<'a, T: Real>(
    original: &'a [T],
    approx: &'a [T],
) -> Result<impl Iterator<Item = (f64, f64)> + 'a> {
    if original.is_empty() {
        return Err(Error::EmptyTensor { rows: 0, cols: 0 });
    }
    if original.len() != approx.len() {
        return Err(Error::BufferLength {
            what: "approximation",
            expected: original.len(),
            actual: approx.len(),
        });
    }
    Ok(original
        .iter()
        .zip(approx)
        .map(|(o, a)| (o.widen(), a.widen())))
}

/// Mean squared error.
pub fn mse<T: Real>(original: &[T], approx: &[T]) -> Result<f64> {
    let n = original.len() as f64;
    Ok(pairs(original, approx)?
        .map(|(o, a)| (o - a) * (o - a))
        .sum::<f64>()
        / n)
}

/// Signal-to-quantization-noise ratio in dB: `10·log10(Σo² / Σ(o − a)²)`. `+∞` when the
/// approximation is exact (all zeros included: no noise at all), `−∞` when the original is
/// all zeros and the approximation is not.
pub fn sqnr_db<T: Real>(original: &[T], approx: &[T]) -> Result<f64> {
    let (mut signal, mut noise) = (0.0, 0.0);
    for (o, a) in pairs(original, approx)? {
        signal += o * o;
        noise += (o - a) * (o - a);
    }
    if noise == 0.0 {
        return Ok(f64::INFINITY);
    }
    Ok(10.0 * log10(signal / noise))
}

/// Cosine similarity `Σo·a / (‖o‖·‖a‖)`; 0 when either vector is all zeros.
pub fn cosine<T: Real>(original: &[T], approx: &[T]) -> Result<f64> {
    let (mut dot, mut oo, mut aa) = (0.0, 0.0, 0.0);
    for (o, a) in pairs(original, approx)? {
        dot += o * a;
        oo += o * o;
        aa += a * a;
    }
    if oo == 0.0 || aa == 0.0 {
        return Ok(0.0);
    }
    Ok(dot / (sqrt(oo) * sqrt(aa)))
}

/// Largest absolute difference.
pub fn max_abs_error<T: Real>(original: &[T], approx: &[T]) -> Result<f64> {
    Ok(pairs(original, approx)?
        .map(|(o, a)| (o - a).abs())
        .fold(0.0, f64::max))
}
