//! [`Config`]: what to quantize to.

use crate::discretize::Family;
use crate::error::Result;
use crate::layout::Granularity;
use crate::scheme::{ScaleRule, Scheme};

/// What to quantize to: level family, bits, granularity, scale rule, zero level.
///
/// Builders never fail; `quantize` reports an invalid value (bits 0 or 9, group size 0).
/// The defaults — per row, [`ScaleRule::MaxAbs`], zero level on — follow what kept accuracy
/// on a real pre-trained CNN (EfficientNet-Lite0): exponential 4-bit per row kept 61 % top-1
/// with max-abs scales but 40 % with MSE-fitted ones, and per tensor was far worse than per
/// row.
///
/// ```
/// use expquant::{Config, ScaleRule};
/// let config = Config::exponential(4).per_group(64).with_scale_rule(ScaleRule::Mse);
/// assert_eq!(config.scale_rule(), ScaleRule::Mse);
/// assert_eq!(Config::default(), Config::exponential(4));
/// assert_eq!(config.bits(), 4);
/// ```
/// `Config::default()` is exponential 4-bit with those defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    scheme: Scheme,
    bits: u8,
    granularity: Granularity,
    rule: ScaleRule,
    zero_level: bool,
    compact_params: bool,
}

impl Config {
    /// Linear (uniform) levels at `bits` bits, with the defaults.
    pub fn linear(bits: u8) -> Self {
        Self::new(Scheme::Linear, bits)
    }

    /// Exponential levels `±a·q^k` at `bits` bits, with the defaults.
    pub fn exponential(bits: u8) -> Self {
        Self::new(Scheme::Exponential, bits)
    }

    /// A scheme at `bits` bits, with the defaults.
    pub fn new(scheme: Scheme, bits: u8) -> Self {
        Config {
            scheme,
            bits,
            granularity: Granularity::PerRow,
            rule: ScaleRule::MaxAbs,
            zero_level: true,
            compact_params: false,
        }
    }

    /// One codebook for the whole tensor.
    pub fn per_tensor(self) -> Self {
        self.with_granularity(Granularity::PerTensor)
    }

    /// One codebook per row (output channel).
    pub fn per_row(self) -> Self {
        self.with_granularity(Granularity::PerRow)
    }

    /// One codebook per `group_size` consecutive weights of a row.
    pub fn per_group(self, group_size: usize) -> Self {
        self.with_granularity(Granularity::PerGroup(group_size))
    }

    /// Sets the granularity.
    pub fn with_granularity(mut self, granularity: Granularity) -> Self {
        self.granularity = granularity;
        self
    }

    /// Sets how scales are chosen.
    pub fn with_scale_rule(mut self, rule: ScaleRule) -> Self {
        self.rule = rule;
        self
    }

    /// Sets whether zero is a level (on by default). Off gives `2^bits` levels instead of
    /// `2^bits − 1`; at one bit the levels are `{−a, +a}` either way.
    pub fn with_zero_level(mut self, zero_level: bool) -> Self {
        self.zero_level = zero_level;
        self
    }

    /// Sets whether group parameters are stored compactly (off by default): each group's
    /// scale `a` as an IEEE binary16 (`f16`) and, for exponential levels, one ratio `q` per
    /// row (an `f32`) shared by the row's groups, instead of an `f32` `a` and `q` per group.
    /// At 4 bits in groups of 32 that is 4.5 bits per weight plus `32 / cols` for `q`
    /// (6 with `f32` parameters). The row's `q` comes from fitting the whole row under the
    /// scale rule; each group's `a` is then the rule's best for that `q`, rounded to `f16`
    /// before the codes are chosen, so that every code is the nearest level of the stored
    /// codebook. A scale above the largest `f16` (65504) makes `quantize` fail with
    /// [`Error::UnfittableGroup`](crate::Error::UnfittableGroup); one below the smallest
    /// positive `f16` (`2^-24`) is raised to it. Stored tensors with compact parameters use
    /// format version 2.
    pub fn with_compact_params(mut self, compact: bool) -> Self {
        self.compact_params = compact;
        self
    }

    /// Whether group parameters are stored compactly (see
    /// [`with_compact_params`](Self::with_compact_params)).
    pub fn compact_params(&self) -> bool {
        self.compact_params
    }

    /// The level family.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Bits per code.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// Which weights share a codebook.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// How scales are chosen.
    pub fn scale_rule(&self) -> ScaleRule {
        self.rule
    }

    /// The zero-level switch (at one bit the levels are `{−a, +a}` either way).
    pub fn zero_level(&self) -> bool {
        self.zero_level
    }

    /// Checks bits and group size.
    pub fn validate(&self) -> Result<()> {
        self.family()?;
        self.granularity.validate()
    }

    pub(crate) fn family(&self) -> Result<Family> {
        Family::new(self.scheme, self.bits, self.zero_level)
    }
}

impl Default for Config {
    /// Exponential levels at 4 bits, per row, [`ScaleRule::MaxAbs`], zero level on.
    fn default() -> Self {
        Config::exponential(4)
    }
}
