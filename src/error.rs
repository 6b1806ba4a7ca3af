//! Every way user input can be wrong, as one error type.

/// The crate's result type.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// What went wrong. Each kind of bad input has its own variant, and each message names the
/// offending value so that a user can find it without a debugger.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A weight was NaN or infinite.
    #[error("weight at index {index} is not finite ({})", Short(*.value))]
    NonFiniteWeight {
        /// Position of the weight in the input slice.
        index: usize,
        /// The offending value, widened to `f64`.
        value: f64,
    },
    /// An input vector value was NaN or infinite where the operation needs finite values
    /// (int8 activations scale each block by its largest magnitude).
    #[error("input value at index {index} is not finite ({value})")]
    NonFiniteInput {
        /// Position of the value in the input vector.
        index: usize,
        /// The offending value, widened to `f64`.
        value: f64,
    },
    /// The tensor has no weights (zero rows or zero columns).
    #[error("the tensor is empty: {rows} rows x {cols} columns")]
    EmptyTensor {
        /// Rows asked for.
        rows: usize,
        /// Columns asked for.
        cols: usize,
    },
    /// `bits` was outside `1..=8`.
    #[error("bits must be in 1..=8, got {0}")]
    InvalidBits(u8),
    /// `rows * cols` does not equal the number of weights given.
    #[error("shape {rows} x {cols} does not match the {len} weights given")]
    ShapeMismatch {
        /// Rows asked for.
        rows: usize,
        /// Columns asked for.
        cols: usize,
        /// Length of the weight slice.
        len: usize,
    },
    /// `rows * cols` does not fit in `usize`, so no buffer can hold the matrix.
    #[error("shape {rows} x {cols} overflows: rows x cols does not fit in a usize")]
    ShapeOverflow {
        /// Rows asked for.
        rows: usize,
        /// Columns asked for.
        cols: usize,
    },
    /// A per-group granularity with group size 0.
    #[error("group size must be at least 1, got 0")]
    ZeroGroupSize,
    /// Levels handed to `Codebook::new` are not a valid codebook.
    #[error("invalid codebook levels: {0}")]
    InvalidCodebook(&'static str),
    /// Caller-given scale parameters that do not describe a valid level set.
    #[error("invalid scale parameters {}: {reason}", ScaleText(*.a, *.q))]
    InvalidParameters {
        /// The top magnitude.
        a: f64,
        /// The ratio between successive exponential magnitudes; NaN for a family that has no
        /// such ratio (linear, or a single magnitude), and the message then leaves it out.
        q: f64,
        /// Which requirement was broken.
        reason: &'static str,
    },
    /// An importance (weighting) value was negative, NaN or infinite, or the importance slice
    /// has the wrong length.
    #[error("importance at index {index} is invalid ({}); importances must be finite and >= 0, one per weight", Short(*.value))]
    InvalidImportance {
        /// Position of the bad value (or the slice length on a length mismatch).
        index: usize,
        /// The offending value (NaN on a length mismatch).
        value: f64,
    },
    /// A caller-provided buffer has the wrong length.
    #[error("{what} holds {actual} elements but {expected} are needed")]
    BufferLength {
        /// Which buffer.
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// A row range that is reversed or reaches past the last row.
    #[error("row range {start}..{end} does not lie within the {rows} rows")]
    RowRange {
        /// First row asked for.
        start: usize,
        /// One past the last row asked for.
        end: usize,
        /// Rows the tensor has.
        rows: usize,
    },
    /// A code does not fit in the bit width, or does not index a level of its codebook.
    #[error("code {code} at index {index} is out of range for {limit} levels")]
    CodeOutOfRange {
        /// Position of the code.
        index: usize,
        /// The code.
        code: u8,
        /// How many codes are valid.
        limit: usize,
    },
    /// Input statistics whose length is neither `cols` nor `rows × cols`.
    #[error("{what} holds {actual} values; it needs {cols} (shared by all rows) or rows x cols = {rows} x {cols}")]
    InputStatsLength {
        /// Which statistic.
        what: &'static str,
        /// Its length.
        actual: usize,
        /// Columns of the layer.
        cols: usize,
        /// Rows of the layer.
        rows: usize,
    },
    /// An input statistic that is NaN or infinite (or a negative mean square).
    #[error("{what} at index {index} is invalid ({})", Short(*.value))]
    NonFiniteStatistic {
        /// Which statistic.
        what: &'static str,
        /// Position of the value.
        index: usize,
        /// The value.
        value: f64,
    },
    /// The `OutputMse` scale rule without the inputs' mean squares.
    #[error("the OutputMse scale rule needs the inputs' mean squares E[x^2]; none were given")]
    MissingSqMean,
    /// Arguments of `calibrate::relu_moments` that describe no distribution.
    #[error("relu_moments needs finite beta and gamma and clip > 0; got beta = {}, gamma = {}, clip = {}", Short(*.beta), Short(*.gamma), Short(*.clip))]
    InvalidMomentArguments {
        /// Mean of the pre-activation.
        beta: f64,
        /// Standard deviation of the pre-activation.
        gamma: f64,
        /// Upper clip of the activation.
        clip: f64,
    },
    /// An input covariance that cannot be used: no rows accumulated, rows of the wrong
    /// length, zero groups or inputs, or a given matrix that is not symmetric.
    #[error("invalid input covariance: {0}")]
    InvalidCovariance(&'static str),
    /// An input covariance whose shape does not fit the layer: its `dim` must equal `cols`
    /// and `rows` must be a multiple of its groups.
    #[error("a covariance of {groups} groups of {dim} inputs does not fit a {rows} x {cols} layer (dim must equal cols, rows be a multiple of groups)")]
    CovarianceShape {
        /// Groups of the covariance.
        groups: usize,
        /// Inputs per group.
        dim: usize,
        /// Rows of the layer.
        rows: usize,
        /// Columns of the layer.
        cols: usize,
    },
    /// The dampened input covariance of a group still has no Cholesky factorization.
    #[error("the input covariance of group {group} is not positive definite even with dampening {dampening} x its mean diagonal; raise the dampening or gather more calibration inputs")]
    NotPositiveDefinite {
        /// The covariance group.
        group: usize,
        /// The dampening that was used.
        dampening: f64,
    },
    /// An option of the error-compensating quantizer out of range.
    #[error("invalid compensation option: {0}")]
    InvalidCompensateOption(&'static str),
    /// A group of weights for which no codebook of distinct finite `f32` levels exists under
    /// a fitted scale rule (its weights span too few representable values).
    #[error("no codebook of distinct finite levels fits the weights of group {group} (largest |weight| {})", Short(*.max_abs))]
    UnfittableGroup {
        /// The group, in row-major group order.
        group: usize,
        /// The largest magnitude among its weights.
        max_abs: f64,
    },
    /// A bias correction that overflows `f32` although every weight and input mean is finite.
    #[error("bias correction of row {row} overflows f32 ({}): the weights' quantization errors times the input means add up past the largest finite f32", Short(*.value))]
    BiasOverflow {
        /// The row.
        row: usize,
        /// The correction, computed in `f64`.
        value: f64,
    },
    /// ReLU moments that overflow their float type although every argument is finite.
    #[error("relu_moments overflows {ty}: E[y^2] for beta = {}, gamma = {}, clip = {} is not finite; |beta| or |gamma| is too large", Short(*.beta), Short(*.gamma), Short(*.clip))]
    MomentsOverflow {
        /// Mean of the pre-activation.
        beta: f64,
        /// Standard deviation of the pre-activation.
        gamma: f64,
        /// Upper clip of the activation.
        clip: f64,
        /// The float type the moments were asked for (`f32` or `f64`).
        ty: &'static str,
    },
    /// Stored bytes that are not a valid tensor or container: truncated, altered, or lying
    /// about their own lengths. The message says which check failed.
    #[error("corrupt data: {0}")]
    Corrupt(&'static str),
    /// Stored bytes of a format version this build does not read.
    #[error("unsupported format version {found} (this build reads versions 1 to {supported})")]
    UnsupportedVersion {
        /// The version in the data.
        found: u16,
        /// The newest version this build reads.
        supported: u16,
    },
    /// A number that is not the code of any variant of an enum (a scheme, scale rule or
    /// granularity as the byte format and the C ABI store them).
    #[error("{code} is not the code of a {what}")]
    UnknownCode {
        /// Which enum.
        what: &'static str,
        /// The number given.
        code: u8,
    },
    /// A string that is not the name of any variant of an enum.
    #[error("unrecognized {what}; expected {expected}")]
    UnknownName {
        /// Which enum.
        what: &'static str,
        /// The accepted names.
        expected: &'static str,
    },
    /// A tensor name that a container cannot store.
    #[error("invalid tensor name: {0}")]
    InvalidName(&'static str),
}

/// A float as a message shows it: the shortest decimal that reads back as the same value —
/// as an `f32` when the value is one (every weight and statistic is), so `1e-44` and not the
/// 17 digits of its `f64` widening — in exponent form when it is below `1e-4` or from
/// `1e16` on in magnitude, where positional form would run to dozens of digits.
pub(crate) struct Short(pub f64);

impl core::fmt::Display for Short {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let v = self.0;
        let narrow = v as f32;
        let is_f32 = f64::from(narrow) == v;
        let magnitude = v.abs();
        let exponent_form = v.is_finite() && v != 0.0 && !(1e-4..1e16).contains(&magnitude);
        match (is_f32, exponent_form) {
            (true, true) => write!(f, "{narrow:e}"),
            (true, false) => write!(f, "{narrow}"),
            (false, true) => write!(f, "{v:e}"),
            (false, false) => write!(f, "{v}"),
        }
    }
}

/// `a = …, q = …` for [`Error::InvalidParameters`], without `q` when it is NaN (a family
/// with no ratio).
struct ScaleText(f64, f64);

impl core::fmt::Display for ScaleText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "a = {}", Short(self.0))?;
        if !self.1.is_nan() {
            write!(f, ", q = {}", Short(self.1))?;
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn floats_in_messages_are_short() {
        let cases: [(f64, &str); 9] = [
            (f64::from(1e-44f32), "1e-44"),
            (f64::from(3e38f32), "3e38"),
            (0.1, "0.1"),
            (f64::from(0.1f32), "0.1"),
            (1.5, "1.5"),
            (1e-300, "1e-300"),
            (0.0, "0"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (v, text) in cases {
            assert_eq!(Short(v).to_string(), text, "{v:?}");
        }
        let e = Error::InvalidParameters {
            a: f64::from(1e-44f32),
            q: f64::NAN,
            reason: "a must be finite and > 0",
        };
        assert_eq!(
            e.to_string(),
            "invalid scale parameters a = 1e-44: a must be finite and > 0"
        );
    }
}
