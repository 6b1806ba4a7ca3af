//! Every way user input can be wrong, as one error type.

/// The crate's result type.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// What went wrong. Each kind of bad input has its own variant, and each message names the
/// offending value so that a user can find it without a debugger.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A weight was NaN or infinite.
    #[error("weight at index {index} is not finite ({value})")]
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
    /// `rows * cols` does not equal the number of weights given (or overflows `usize`).
    #[error("shape {rows} x {cols} does not match the {len} weights given")]
    ShapeMismatch {
        /// Rows asked for.
        rows: usize,
        /// Columns asked for.
        cols: usize,
        /// Length of the weight slice.
        len: usize,
    },
    /// A per-group granularity with group size 0.
    #[error("group size must be at least 1, got 0")]
    ZeroGroupSize,
    /// Levels handed to `Codebook::new` are not a valid codebook.
    #[error("invalid codebook levels: {0}")]
    InvalidCodebook(&'static str),
    /// Caller-given scale parameters that do not describe a valid level set.
    #[error("invalid scale parameters a = {a}, q = {q}: {reason}")]
    InvalidParameters {
        /// The top magnitude.
        a: f64,
        /// The ratio between successive exponential magnitudes.
        q: f64,
        /// Which requirement was broken.
        reason: &'static str,
    },
    /// An importance (weighting) value was negative, NaN or infinite, or the importance slice
    /// has the wrong length.
    #[error("importance at index {index} is invalid ({value}); importances must be finite and >= 0, one per weight")]
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
    #[error("{what} at index {index} is invalid ({value})")]
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
    #[error("relu_moments needs finite beta and gamma and clip > 0; got beta = {beta}, gamma = {gamma}, clip = {clip}")]
    InvalidMomentArguments {
        /// Mean of the pre-activation.
        beta: f64,
        /// Standard deviation of the pre-activation.
        gamma: f64,
        /// Upper clip of the activation.
        clip: f64,
    },
    /// Stored bytes that are not a valid tensor or container: truncated, altered, or lying
    /// about their own lengths. The message says which check failed.
    #[error("corrupt data: {0}")]
    Corrupt(&'static str),
    /// Stored bytes of a format version this build does not read.
    #[error("unsupported format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version in the data.
        found: u16,
        /// The version this build reads.
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
