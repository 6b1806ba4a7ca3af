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
//! // MSE-fitted scales, one per group of 64 weights: 4 groups in each of the 8 rows.
//! let config = Config::exponential(3).per_group(64).with_scale_rule(ScaleRule::Mse);
//! let fitted = quantize(&weights, 8, 256, &config)?;
//! assert_eq!(fitted.group_count(), 32);
//! assert!(fitted.params(31).is_some_and(|p| p.a > 0.0 && p.q < 1.0));
//!
//! // Stored bytes load back as a view that borrows them, with the same accessors.
//! let bytes = fitted.to_bytes();
//! let view = expquant::QuantizedView::from_bytes(&bytes)?;
//! assert_eq!(view.config(), config);
//! assert_eq!(view.dequantize(), fitted.dequantize());
//! # Ok::<(), expquant::Error>(())
//! ```
//!
//! ## Where things live
//! At the root: [`quantize`], [`quantize_weighted`], [`Config`], [`QuantizedTensor`],
//! [`QuantizedView`], [`ContainerView`] (with [`EntryView`], [`F32Array`], [`Verification`]),
//! [`write_container`] (with [`Entry`]), the enums [`Scheme`],
//! [`ScaleRule`] and [`Granularity`] (each with `code()`/`TryFrom` for the byte format and
//! the C ABI, and `Display`/`FromStr` names), [`Params`], [`Codebook`], [`Real`], [`Error`].
//! Public modules:
//! - [`discretize`]: level families ([`discretize::Family`]) and the fit of one group.
//! - [`calibrate`]: output-bias correction and `E[x²]`-weighted fits from input statistics;
//!   `calibrate::Covariance` (feature `compensate`) accumulates `E[x xᵀ]`.
//! - `compensate` (feature `compensate`): error-compensating (GPTQ/OBQ) quantization.
//! - [`metrics`]: SQNR and error measures.
//! - [`pack`]: dense bit packing of codes.
//! - [`kernels`]: decoding, dot products (f32 and int8 activations) and the GEMM panel
//!   kernels straight from packed codes, and the [`kernels::Isa`] token; every SIMD kernel
//!   lives in the private `isa` layer, one file per instruction set. The tensor and the view
//!   multiply with `gemv`, `gemv_int8` and `gemm` (a batch of columns, the im2col layout),
//!   each with a `_rows` variant for a range of output rows.
//! - [`format`]: the byte layout (`FORMAT.md`), its constants and [`format::crc32`].
//! - `ffi` (features `ffi`, `ffi-core`): the C ABI.
//!
//! Group parameters are stored as `f32` (`a`, and `q` for exponential levels) per group, or
//! compactly with [`Config::with_compact_params`]: an `f16` `a` per group and one `q` per
//! row, 4.5 bits per weight for 4-bit groups of 32 instead of 6 (tensor format version 2).
//!
//! Private, re-exported above: `scheme` (the enums' code and name tables), `layout`
//! (granularity), `config`, `tensor` (quantize), `view`, `parts` (the shape, codes and
//! parameters a tensor and a view share), `container`, `codebook`, `float`, `error`,
//! `covariance`, `isa` (the SIMD kernels), `parallel`.
//!
//! ## Why `Discretizer` is sealed
//! [`discretize::Discretizer`] is implemented by [`discretize::Family`] only. A stored
//! tensor records its family as codes (scheme, bits, zero-level flag) plus each group's
//! parameters, and every reader — views, containers, the C ABI — rebuilds the codebooks
//! from those. A family defined outside the crate could be fitted but never stored, loaded
//! or used from C, so the trait does not invite one.
//!
//! ## Features
//! - `std` (default): `std::error::Error` for [`Error`]; implies `alloc`.
//! - `ffi`: the C ABI (`expquant::ffi`), built into `libexpquant` by the `expquant-capi`
//!   crate; also regenerates `include/expquant.h`. Implies `std` and `ffi-core`.
//! - `ffi-core`: the allocation-free part of the C ABI alone (views, container views,
//!   decode, GEMV, statuses), with neither `std` nor `alloc`: the header's `EXPQ_NO_STD`
//!   subset, linked into firmware by the `capi-nostd/` static library.
//! - `alloc`: fitting, [`quantize`] and owned tensors. Without it the crate still offers
//!   codebooks, packing and the decode kernels, with no allocator at all.
//! - `parallel`: [`quantize`] (from 64 K weights), `gemv` (from 4 M weights) and `gemm`
//!   (from 8 M multiply-adds) split rows
//!   over `std::thread::scope` threads, with results bit for bit the single-threaded ones.
//!   Implies `std`; no extra dependency.
//! - `test-hooks`: entry points that force a thread count, for the tests and benchmarks
//!   that compare paths in one build. Not part of the stable API.
//! - `compensate` (default): error-compensating quantization from the layer's input
//!   covariance ([`compensate`]), with `faer` for the dense linear algebra. Implies `std`.

#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]
// Without `alloc` the view and decode paths that use these helpers are what remains.
#![cfg_attr(not(feature = "alloc"), allow(dead_code))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "alloc")]
pub mod calibrate;
mod codebook;
#[cfg(feature = "compensate")]
pub mod compensate;
#[cfg(feature = "alloc")]
mod config;
mod container;
#[cfg(feature = "compensate")]
mod covariance;
pub mod discretize;
mod error;
#[cfg(feature = "ffi-core")]
pub mod ffi;
mod float;
pub mod format;
mod isa;
pub mod kernels;
mod layout;
pub mod metrics;
pub mod pack;
#[cfg(feature = "parallel")]
mod parallel;
mod parts;
mod scheme;
#[cfg(feature = "alloc")]
mod tensor;
#[cfg(test)]
mod test_rng;
mod view;

pub use codebook::Codebook;
#[cfg(feature = "alloc")]
pub use config::Config;
#[cfg(feature = "alloc")]
pub use container::{write_container, Entry};
pub use container::{ContainerView, EntryView, F32Array, Verification};
pub use error::{Error, Result};
pub use float::Real;
pub use layout::Granularity;
pub use scheme::{Params, ScaleRule, Scheme};
#[cfg(feature = "alloc")]
pub use tensor::{quantize, quantize_weighted, QuantizedTensor};
pub use view::QuantizedView;

/// Entry points for the crate's own tests and benchmarks (feature `test-hooks`). Not part of
/// the stable API: they may change or go away in any release.
#[cfg(feature = "test-hooks")]
pub mod test_hooks {
    #[cfg(feature = "alloc")]
    pub use crate::tensor::quantize_with_threads;
}

/// The README's Rust examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
