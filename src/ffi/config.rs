//! `expq_config` and its enums: what to quantize to.
//!
//! The C enums are declared here as `#[repr(C)]` Rust enums so that cbindgen writes them
//! into the header, but the Rust side never receives a value of those types from C: a C
//! enum can hold any `int`, and an out-of-range value in a Rust enum is undefined
//! behaviour. Every field and argument that C declares as an enum is received as a `u32`
//! (the `*_value` aliases below, which cbindgen prints under the enum's name) and converted
//! with a range check. The compile-time assertions pin what makes that sound: each C enum
//! has the size and alignment of `u32`, as on every ABI Rust targets without
//! `-fshort-enums`, and `bool` is one byte.

use crate::{Config, Error, Granularity, ScaleRule, Scheme};

use super::{boundary, Failure};

/// The level family.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum expq_scheme {
    /// Uniformly spaced levels `k·Δ`, `Δ = a / (2^(bits−1) − 1)`.
    Linear = 0,
    /// Geometrically spaced magnitudes `±a·q^k`, `0 < q < 1`, plus zero.
    Exponential = 1,
}

/// How the scale `a` (and the ratio `q` of the exponential family) of each group is chosen.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum expq_scale_rule {
    /// `a = max|w|` of the group (for the exponential family `q` then minimizes the squared
    /// error). The default.
    MaxAbs = 0,
    /// `a` (and `q`) minimize the squared error.
    Mse = 1,
    /// `a` (and `q`) maximize the correlation between the weights and their quantized values.
    Correlation = 2,
    /// `a` (and `q`) minimize the output error that remains after bias correction,
    /// `Σ_j E[x_j²]·(w_j − Q(w_j))²`. Needs the inputs' mean squares, so only
    /// `expq_quantize_calibrated` with `input_sq_mean` accepts it; `expq_quantize` (and
    /// `expq_quantize_calibrated` without `input_sq_mean`) return
    /// `EXPQ_STATUS_INVALID_ARGUMENT`.
    OutputMse = 3,
    /// The caller's `fixed_a` and `fixed_q` for every group (`fixed_q` is ignored by the
    /// linear family).
    Fixed = 4,
}

/// Which weights share a codebook.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum expq_granularity {
    /// One codebook for the whole tensor.
    PerTensor = 0,
    /// One codebook per row (output channel). The default.
    PerRow = 1,
    /// One codebook per `group_size` consecutive weights of a row (the last group of a row is
    /// shorter when `cols` is not a multiple of `group_size`).
    PerGroup = 2,
}

/// An [`expq_scheme`] as received from C: any `u32`, checked before use.
pub type expq_scheme_value = u32;
/// An [`expq_scale_rule`] as received from C: any `u32`, checked before use.
pub type expq_scale_rule_value = u32;
/// An [`expq_granularity`] as received from C: any `u32`, checked before use.
pub type expq_granularity_value = u32;
/// A C `bool` as received from C: any byte, non-zero meaning true.
pub type expq_bool_value = u8;

const _: () = {
    assert!(core::mem::size_of::<expq_scheme>() == core::mem::size_of::<u32>());
    assert!(core::mem::align_of::<expq_scheme>() == core::mem::align_of::<u32>());
    assert!(core::mem::size_of::<expq_scale_rule>() == core::mem::size_of::<u32>());
    assert!(core::mem::size_of::<expq_granularity>() == core::mem::size_of::<u32>());
    assert!(core::mem::size_of::<bool>() == core::mem::size_of::<u8>());
};

/// What to quantize to. Start from `expq_config_default` and change fields.
///
/// Fields read as enums are checked: a value outside the enum (say `scheme = 7`) makes
/// `expq_quantize` fail with `EXPQ_STATUS_INVALID_ARGUMENT`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct expq_config {
    /// The level family.
    pub scheme: expq_scheme_value,
    /// Bits per code, 1 to 8.
    pub bits: u8,
    /// How each group's scale is chosen.
    pub scale_rule: expq_scale_rule_value,
    /// Which weights share a codebook.
    pub granularity: expq_granularity_value,
    /// Weights per group for `EXPQ_GRANULARITY_PER_GROUP` (at least 1); ignored otherwise.
    pub group_size: usize,
    /// Whether zero is a level (`2^bits − 1` levels; `2^bits` without). Ignored at 1 bit,
    /// where the levels are always `{−a, +a}`.
    pub zero_level: expq_bool_value,
    /// The scale `a > 0` for `EXPQ_SCALE_RULE_FIXED`; ignored otherwise.
    pub fixed_a: f64,
    /// The ratio `0 < q < 1` for `EXPQ_SCALE_RULE_FIXED` with the exponential family;
    /// ignored otherwise.
    pub fixed_q: f64,
    /// Whether group parameters are stored compactly: each group's scale `a` as a 16-bit
    /// float and, for the exponential family, one ratio `q` per row shared by the row's
    /// groups (groups of 32 at 4 bits cost 4.5 bits per weight plus `32 / cols`, instead of
    /// 6). Off in `expq_config_default`. Such a tensor serializes as format version 2; a scale
    /// above 65504 makes `expq_quantize` fail. See the Rust `Config::with_compact_params`.
    pub compact_params: expq_bool_value,
}

impl expq_config {
    /// The Rust [`Config`] this describes, after checking every enum field.
    pub(crate) fn rust_config(&self) -> Result<Config, Failure> {
        // The core's code tables decide; a value that is no code of the enum (or does not
        // fit its byte) is reported against the C field.
        let code = |value: u32| u8::try_from(value).unwrap_or(u8::MAX);
        let bad_enum = |what, value, allowed, error: Error| match error {
            Error::UnknownCode { .. } => Failure::BadEnum {
                what,
                value,
                allowed,
            },
            error => Failure::Core(error),
        };
        let scheme = Scheme::try_from(code(self.scheme)).map_err(|e| {
            bad_enum(
                "config.scheme",
                self.scheme,
                "an expq_scheme (0 = LINEAR, 1 = EXPONENTIAL)",
                e,
            )
        })?;
        let rule = ScaleRule::from_code(code(self.scale_rule), || (self.fixed_a, self.fixed_q))
            .map_err(|e| {
                bad_enum(
                    "config.scale_rule",
                    self.scale_rule,
                    "an expq_scale_rule (0 = MAX_ABS, 1 = MSE, 2 = CORRELATION, \
                     3 = OUTPUT_MSE, 4 = FIXED)",
                    e,
                )
            })?;
        let granularity =
            Granularity::from_code(code(self.granularity), self.group_size).map_err(|e| {
                bad_enum(
                    "config.granularity",
                    self.granularity,
                    "an expq_granularity (0 = PER_TENSOR, 1 = PER_ROW, 2 = PER_GROUP)",
                    e,
                )
            })?;
        Ok(Config::new(scheme, self.bits)
            .with_granularity(granularity)
            .with_scale_rule(rule)
            .with_zero_level(self.zero_level != 0)
            .with_compact_params(self.compact_params != 0))
    }

    /// The C description of a Rust [`Config`].
    fn from_config(config: &Config) -> Self {
        let (fixed_a, fixed_q) = match config.scale_rule() {
            ScaleRule::Fixed { a, q } => (a, q),
            _ => (0.0, 0.0),
        };
        expq_config {
            scheme: u32::from(config.scheme().code()),
            bits: config.bits(),
            scale_rule: u32::from(config.scale_rule().code()),
            granularity: u32::from(config.granularity().code()),
            group_size: config.granularity().group_size(),
            zero_level: u8::from(config.zero_level()),
            fixed_a,
            fixed_q,
            compact_params: u8::from(config.compact_params()),
        }
    }
}

/// The default configuration for `scheme` at `bits` bits, the same as the Rust
/// `Config::new`: per row, `EXPQ_SCALE_RULE_MAX_ABS`, zero level on.
///
/// Never fails: a `scheme` outside `expq_scheme` or `bits` outside 1..=8 are copied into
/// the result, and `expq_quantize` reports them.
#[no_mangle]
pub extern "C" fn expq_config_default(scheme: expq_scheme_value, bits: u8) -> expq_config {
    boundary("expq_config_default", || {
        let mut config = expq_config::from_config(&Config::new(Scheme::Linear, bits));
        config.scheme = scheme;
        Ok(config)
    })
}

impl super::Fallback for expq_config {
    /// An invalid configuration (bits 0), so that using it fails.
    fn fallback(_: super::expq_status) -> Self {
        let mut config = expq_config::from_config(&Config::new(Scheme::Linear, 0));
        config.bits = 0;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_rust_default() {
        for (raw, scheme) in [(0, Scheme::Linear), (1, Scheme::Exponential)] {
            for bits in 0..=9 {
                let c = expq_config_default(raw, bits);
                assert_eq!(c.rust_config().unwrap(), Config::new(scheme, bits));
            }
        }
    }

    #[test]
    fn out_of_range_enums_are_rejected() {
        let good = expq_config_default(1, 4);
        for (field, config) in [
            ("config.scheme", expq_config { scheme: 7, ..good }),
            (
                "config.scale_rule",
                expq_config {
                    scale_rule: 5,
                    ..good
                },
            ),
            (
                "config.granularity",
                expq_config {
                    granularity: u32::MAX,
                    ..good
                },
            ),
        ] {
            match config.rust_config() {
                Err(Failure::BadEnum { what, .. }) => assert_eq!(what, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn scale_rule_numbers_are_the_abi() {
        // These numbers are part of the C ABI and of stored tensors: they never change.
        let mut config = expq_config_default(1, 4);
        for (raw, rule) in [
            (0, ScaleRule::MaxAbs),
            (1, ScaleRule::Mse),
            (2, ScaleRule::Correlation),
            (3, ScaleRule::OutputMse),
        ] {
            config.scale_rule = raw;
            assert_eq!(config.rust_config().unwrap().scale_rule(), rule);
            assert_eq!(
                expq_config::from_config(&config.rust_config().unwrap()),
                config
            );
        }
        config.scale_rule = expq_scale_rule::Fixed as u32;
        assert_eq!(config.scale_rule, 4);
        assert!(matches!(
            config.rust_config().unwrap().scale_rule(),
            ScaleRule::Fixed { .. }
        ));
    }

    #[test]
    fn round_trip() {
        let config = Config::exponential(3)
            .per_group(16)
            .with_scale_rule(ScaleRule::Fixed { a: 2.0, q: 0.5 })
            .with_zero_level(true)
            .with_compact_params(true);
        assert_eq!(
            expq_config::from_config(&config).rust_config().unwrap(),
            config
        );
    }
}
