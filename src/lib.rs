//! # expquant
//!
//! Post-training discretization of neural-network weights to 1–8 bits, with the exponential
//! levels `±a·q^k` of Malsagov et al. (2020, arXiv 2002.00623) beside ordinary linear ones,
//! and a C ABI.
//!
//! ## Guide
//! A layer's weights are a `rows × cols` matrix (a conv kernel `[out, in, kh, kw]` is
//! `out × (in·kh·kw)`). [`quantize`] cuts it into groups ([`Granularity`]: per tensor, per
//! row, or per `g` weights), fits a codebook to each group ([`ScaleRule`]), encodes every
//! weight to its nearest level and packs the codes densely ([`pack`]). The resulting
//! [`QuantizedTensor`] dequantizes, or multiplies a vector without dequantizing.
//!
//! ```
//! use expquant::{metrics, quantize, Config, ScaleRule};
//!
//! // An 8 × 256 layer with a bell-shaped spread of weights.
//! let weights: Vec<f32> = (0..2048)
//!     .map(|i| { let t = (i as f32 * 0.618).fract() - 0.5; t * t * t * 8.0 })
//!     .collect();
//!
//! let exp4 = quantize(&weights, 8, 256, &Config::exponential(4))?;
//! let lin4 = quantize(&weights, 8, 256, &Config::linear(4))?;
//! let e = metrics::sqnr_db(&weights, &exp4.dequantize())?;
//! let l = metrics::sqnr_db(&weights, &lin4.dequantize())?;
//! println!("4-bit SQNR: exponential {e:.1} dB, linear {l:.1} dB");
//! // 4-bit codes plus a 32-bit `a` and `q` per row of 256.
//! assert_eq!(exp4.bits_per_weight(), 4.25);
//!
//! // y = W·x straight from the packed codes.
//! let x = vec![1.0f32; 256];
//! let mut y = vec![0.0f32; 8];
//! exp4.gemv(&x, &mut y)?;
//!
//! // Fitted scales, per group of 16 weights.
//! let fitted = quantize(&weights, 8, 256, &Config::exponential(3).per_group(64).scale_rule(ScaleRule::Mse))?;
//! assert_eq!(fitted.params().len(), 32);
//! # Ok::<(), expquant::Error>(())
//! ```
//!
//! ## Features
//! - `std` (default): `std::error::Error` for [`Error`]; implies `alloc`.
//! - `ffi`: the C ABI (`expquant::ffi`), built into `libexpquant` by the `expquant-capi`
//!   crate; also regenerates `include/expquant.h`. Implies `std`.
//! - `alloc`: fitting, [`quantize`] and owned tensors. Without it the crate still offers
//!   codebooks, packing and the decode kernels, with no allocator at all.
//! - `parallel`: [`quantize`] (from 64 K weights) and `gemv` (from 4 M weights) split rows
//!   over `std::thread::scope` threads, with results bit for bit the single-threaded ones.
//!   Implies `std`; no extra dependency.
//! - `compensate` (default): error-compensating quantization from the layer's input
//!   covariance ([`compensate`]), with `faer` for the dense linear algebra. Implies `std`.

#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]
// Without `alloc` the view and decode paths that use these helpers are what remains.
#![cfg_attr(not(feature = "alloc"), allow(dead_code))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "alloc")]
pub mod calibrate;
pub mod codebook;
#[cfg(feature = "compensate")]
pub mod compensate;
pub mod discretize;
pub mod error;
#[cfg(feature = "ffi")]
pub mod ffi;
pub mod float;
pub mod format;
pub mod kernels;
pub mod layout;
pub mod metrics;
pub mod pack;
#[cfg(feature = "parallel")]
mod parallel;
#[cfg(feature = "alloc")]
pub mod tensor;
pub mod view;

pub use codebook::Codebook;
pub use discretize::{Params, ScaleRule, Scheme};
pub use error::{Error, Result};
pub use float::Real;
#[cfg(feature = "alloc")]
pub use format::write_container;
pub use format::ContainerView;
pub use layout::Granularity;
#[cfg(feature = "alloc")]
pub use tensor::{quantize, quantize_weighted, Config, QuantizedTensor};
pub use view::QuantizedView;

/// The README's Rust examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
