//! The top-level API: [`Config`], [`quantize`] and the owned [`QuantizedTensor`].

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use crate::codebook::Codebook;
use crate::discretize::{Family, Params, ScaleRule, Scheme};
use crate::error::{Error, Result};
use crate::format;
use crate::kernels;
use crate::layout::Granularity;
use crate::pack;
use crate::view::QuantizedView;

/// What to quantize to: level family, bits, granularity, scale rule, zero level.
///
/// Builders never fail; [`quantize`] reports an invalid value (bits 0 or 9, group size 0).
/// The defaults — per row, [`ScaleRule::MaxAbs`], zero level on — follow what kept accuracy
/// on a real pre-trained CNN (EfficientNet-Lite0): exponential 4-bit per row kept 61 % top-1
/// with max-abs scales but 40 % with MSE-fitted ones, and per tensor was far worse than per
/// row.
///
/// ```
/// use expquant::{Config, ScaleRule};
/// let config = Config::exponential(4).per_group(64).scale_rule(ScaleRule::Mse);
/// assert_eq!(config.bits(), 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    scheme: Scheme,
    bits: u8,
    granularity: Granularity,
    rule: ScaleRule,
    zero_level: bool,
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
        }
    }

    /// One codebook for the whole tensor.
    pub fn per_tensor(self) -> Self {
        self.granularity(Granularity::PerTensor)
    }

    /// One codebook per row (output channel).
    pub fn per_row(self) -> Self {
        self.granularity(Granularity::PerRow)
    }

    /// One codebook per `group_size` consecutive weights of a row.
    pub fn per_group(self, group_size: usize) -> Self {
        self.granularity(Granularity::PerGroup(group_size))
    }

    /// Sets the granularity.
    pub fn granularity(mut self, granularity: Granularity) -> Self {
        self.granularity = granularity;
        self
    }

    /// Sets how scales are chosen.
    pub fn scale_rule(mut self, rule: ScaleRule) -> Self {
        self.rule = rule;
        self
    }

    /// Whether zero is a level (on by default). Off gives `2^bits` levels instead of
    /// `2^bits − 1`.
    pub fn zero_level(mut self, zero_level: bool) -> Self {
        self.zero_level = zero_level;
        self
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
    pub fn layout(&self) -> Granularity {
        self.granularity
    }

    /// How scales are chosen.
    pub fn rule(&self) -> ScaleRule {
        self.rule
    }

    /// Whether zero is a level (always false at one bit).
    pub fn has_zero_level(&self) -> bool {
        self.family().is_ok_and(|f| f.has_zero())
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

/// Checks a `rows × cols` shape against `len` weights.
pub(crate) fn check_shape(rows: usize, cols: usize, len: usize) -> Result<usize> {
    let count = rows.checked_mul(cols);
    if count == Some(0) {
        return Err(Error::EmptyTensor { rows, cols });
    }
    match count {
        Some(n) if n == len => Ok(n),
        _ => Err(Error::ShapeMismatch { rows, cols, len }),
    }
}

/// Quantizes a `rows × cols` row-major weight matrix.
///
/// ```
/// let weights: Vec<f32> = (0..64).map(|i| ((i * 37 % 64) as f32 - 32.0) / 32.0).collect();
/// let q = expquant::quantize(&weights, 4, 16, &expquant::Config::exponential(4))?;
/// let approx = q.dequantize();
/// assert_eq!(approx.len(), 64);
/// assert!(expquant::metrics::sqnr_db(&weights, &approx)? > 10.0);
/// # Ok::<(), expquant::Error>(())
/// ```
pub fn quantize(
    weights: &[f32],
    rows: usize,
    cols: usize,
    config: &Config,
) -> Result<QuantizedTensor> {
    quantize_weighted(weights, rows, cols, config, None)
}

/// [`quantize`] with a per-weight importance (same shape as `weights`, finite, `>= 0`) that
/// weights the error the fit minimizes.
///
/// With the `parallel` feature, a tensor of at least 64 K weights is fitted and encoded on
/// `std::thread::available_parallelism()` threads, each taking a contiguous run of rows; the
/// result (and the error, if any) is exactly the single-threaded one.
pub fn quantize_weighted(
    weights: &[f32],
    rows: usize,
    cols: usize,
    config: &Config,
    importance: Option<&[f32]>,
) -> Result<QuantizedTensor> {
    #[cfg(feature = "parallel")]
    let threads =
        crate::parallel::threads_for(weights.len(), crate::parallel::QUANTIZE_MIN_WEIGHTS);
    #[cfg(not(feature = "parallel"))]
    let threads = 1;
    quantize_on(weights, rows, cols, config, importance, threads)
}

/// [`quantize_weighted`] on exactly `threads` threads (1: the serial path), whatever the
/// tensor's size. For the benchmarks and tests that compare the two paths in one build.
#[cfg(feature = "parallel")]
#[doc(hidden)]
pub fn quantize_with_threads(
    weights: &[f32],
    rows: usize,
    cols: usize,
    config: &Config,
    importance: Option<&[f32]>,
    threads: usize,
) -> Result<QuantizedTensor> {
    quantize_on(weights, rows, cols, config, importance, threads)
}

/// Runs `work` over row chunks of `items` (`per_row` items a row, chunks of a multiple of
/// `align` rows), on up to `threads` threads with the `parallel` feature and as one chunk
/// without it, so both builds run the same per-row code.
fn for_row_chunks<T: Send>(
    items: &mut [T],
    rows: usize,
    per_row: usize,
    align: usize,
    threads: usize,
    work: impl Fn(Range<usize>, &mut [T]) -> Result<()> + Sync,
) -> Result<()> {
    #[cfg(feature = "parallel")]
    return crate::parallel::for_each_chunk(items, rows, per_row, align, threads, work);
    #[cfg(not(feature = "parallel"))]
    {
        let _ = (per_row, align, threads);
        work(0..rows, items)
    }
}

fn quantize_on(
    weights: &[f32],
    rows: usize,
    cols: usize,
    config: &Config,
    importance: Option<&[f32]>,
    threads: usize,
) -> Result<QuantizedTensor> {
    let family = config.family()?;
    config.granularity.validate()?;
    let n = check_shape(rows, cols, weights.len())?;
    if let Some(index) = weights.iter().position(|w| !w.is_finite()) {
        return Err(Error::NonFiniteWeight {
            index,
            value: f64::from(weights[index]),
        });
    }
    if let Some(imp) = importance {
        if imp.len() != n {
            return Err(Error::InvalidImportance {
                index: imp.len(),
                value: f64::NAN,
            });
        }
        // Checked here, for the whole tensor, so that the index is the tensor's: each group's
        // fit checks again but would report the position within its group.
        crate::discretize::search::check_importance_values(imp)?;
    }
    let layout = config.granularity;
    let row_bytes =
        pack::packed_len(cols, family.bits).ok_or(Error::ShapeMismatch { rows, cols, len: n })?;
    let fit = |range: Range<usize>| -> Result<Params<f32>> {
        let group_importance = importance.map(|imp| &imp[range.clone()]);
        family.fit(config.rule, &weights[range], group_importance)
    };
    let g = layout.group_len(cols);
    // Fits first, every group in order, then codebooks and codes: a failing fit is reported
    // before any codebook error, however the rows are split.
    let per_row = layout.groups_per_row(cols);
    let params = if layout == Granularity::PerTensor {
        vec![fit(0..n)?]
    } else {
        // Each group's fit reads only its own weights, so rows split freely.
        let mut params = vec![Params { a: 0.0, q: 0.0 }; rows * per_row];
        for_row_chunks(&mut params, rows, per_row, 1, threads, |chunk, out| {
            for (row, slots) in chunk.zip(out.chunks_exact_mut(per_row)) {
                let start = row * cols;
                for (i, slot) in slots.iter_mut().enumerate() {
                    let col = i * g;
                    *slot = fit(start + col..start + (col + g).min(cols))?;
                }
            }
            Ok(())
        })?;
        params
    };
    // The vectorized encoder gives exactly `Codebook::encode`'s codes (see `kernels::Encoder`).
    let isa = kernels::Isa::detect();
    let shared = if layout == Granularity::PerTensor {
        let mut encoder = kernels::Encoder::empty();
        family.encoder_into(params[0], &mut encoder)?;
        Some(encoder)
    } else {
        None
    };
    let mut packed = vec![0u8; rows * row_bytes];
    for_row_chunks(&mut packed, rows, row_bytes, 1, threads, |chunk, out| {
        let mut codes = vec![0u8; cols];
        // One encoder per thread, refilled for each group.
        let mut group_encoder = kernels::Encoder::empty();
        for (row, out) in chunk.zip(out.chunks_exact_mut(row_bytes.max(1))) {
            let row_weights = &weights[row * cols..(row + 1) * cols];
            for (i, (w, c)) in row_weights.chunks(g).zip(codes.chunks_mut(g)).enumerate() {
                match &shared {
                    Some(e) => e.encode_unchecked(isa, w, c),
                    None => {
                        let group = layout.first_group_of_row(row, cols) + i;
                        family.encoder_into(params[group], &mut group_encoder)?;
                        group_encoder.encode_unchecked(isa, w, c);
                    }
                }
            }
            pack::pack_unchecked(&codes, family.bits, out);
        }
        Ok(())
    })?;
    Ok(QuantizedTensor {
        rows,
        cols,
        config: *config,
        family,
        params,
        packed,
        row_bytes,
    })
}

/// A quantized `rows × cols` matrix: one parametric codebook per group and the packed codes.
///
/// Codes are packed row by row (see [`pack`] for the bit order); each row starts on
/// a byte boundary and takes [`row_bytes`](Self::row_bytes) bytes. Codebook `i` belongs to
/// group `i` in row-major order (per row: row `i`; per group: row `i / groups_per_row`).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedTensor {
    rows: usize,
    cols: usize,
    config: Config,
    family: Family,
    params: Vec<Params<f32>>,
    packed: Vec<u8>,
    row_bytes: usize,
}

impl QuantizedTensor {
    /// Rows (output channels).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (inputs per output).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bits per code.
    pub fn bits(&self) -> u8 {
        self.family.bits
    }

    /// The configuration this tensor was quantized with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Each group's fitted parameters, in group order.
    pub fn params(&self) -> &[Params<f32>] {
        &self.params
    }

    /// Each group's codebook, in group order, expanded from its parameters.
    pub fn codebooks(&self) -> impl ExactSizeIterator<Item = Codebook<f32>> + '_ {
        // Every stored parameter set built a valid codebook when the tensor was made.
        self.params.iter().map(move |p| {
            self.family
                .codebook(*p)
                .unwrap_or_else(|_| unreachable!("validated at construction"))
        })
    }

    /// The codebook of group `group`, or `None` past the last group.
    pub fn codebook(&self, group: usize) -> Option<Codebook<f32>> {
        self.view().codebook(group)
    }

    /// The packed codes of all rows, `rows × row_bytes` bytes.
    pub fn packed_codes(&self) -> &[u8] {
        &self.packed
    }

    /// Bytes per packed row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// The codes, unpacked, row-major.
    pub fn codes(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.rows * self.cols];
        for (row, codes) in self.packed_rows().zip(out.chunks_exact_mut(self.cols)) {
            pack::unpack_unchecked(row, self.bits(), codes);
        }
        out
    }

    /// Stored bits per weight: packed codes (with row padding) plus 32 bits per stored
    /// parameter (`a`, and `q` where the family has two or more magnitudes to space), over
    /// `rows × cols`.
    pub fn bits_per_weight(&self) -> f64 {
        self.view().bits_per_weight()
    }

    /// The dequantized matrix, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        // The buffer has exactly the length the view checks for.
        let _ = self.view().dequantize_into(&mut out);
        out
    }

    /// Dequantizes into `out`, which must hold `rows × cols` values.
    pub fn dequantize_into(&self, out: &mut [f32]) -> Result<()> {
        self.view().dequantize_into(out)
    }

    /// `y = W·x`, with `x.len() == cols` and `y.len() == rows`.
    ///
    /// With the `parallel` feature, a matrix of at least 4 M weights is split into runs of
    /// rows over `std::thread::available_parallelism()` threads; every row's result is bit for
    /// bit the single-threaded one. [`gemv_rows`](Self::gemv_rows) never spawns threads.
    pub fn gemv(&self, x: &[f32], y: &mut [f32]) -> Result<()> {
        #[cfg(feature = "parallel")]
        let threads =
            crate::parallel::threads_for(self.rows * self.cols, crate::parallel::GEMV_MIN_WEIGHTS);
        #[cfg(not(feature = "parallel"))]
        let threads = 1;
        self.gemv_on(x, 0..self.rows, y, threads)
    }

    /// [`gemv`](Self::gemv) on exactly `threads` threads (1: the serial path), whatever the
    /// matrix's size. For the benchmarks and tests that compare the two paths in one build.
    #[cfg(feature = "parallel")]
    #[doc(hidden)]
    pub fn gemv_with_threads(&self, x: &[f32], y: &mut [f32], threads: usize) -> Result<()> {
        self.gemv_on(x, 0..self.rows, y, threads)
    }

    /// `y = W[rows]·x` for a range of rows, so a runtime can split rows over its threads;
    /// `y.len()` must equal the range's length. Runs on the calling thread.
    pub fn gemv_rows(&self, x: &[f32], rows: Range<usize>, y: &mut [f32]) -> Result<()> {
        self.gemv_on(x, rows, y, 1)
    }

    fn gemv_on(&self, x: &[f32], rows: Range<usize>, y: &mut [f32], threads: usize) -> Result<()> {
        let view = self.view();
        view.check_gemv(x, &rows, y)?;
        // `x` is prepared once (permuted to the SIMD lane layout where that pays) and shared
        // by every row and thread; W is never materialized.
        let g = self.config.granularity.group_len(self.cols);
        let plan = kernels::DotPlan::new(kernels::Isa::detect(), self.bits(), x, g);
        // Four rows per pass share each load of the permuted `x` (see `DotPlan::dot_rows`).
        // A row's result does not depend on its pass, but chunks of whole passes keep every
        // pass exactly as the serial loop forms it anyway.
        let first = rows.start;
        for_row_chunks(y, rows.len(), 1, 4, threads, |chunk, y| {
            let rows = first + chunk.start..first + chunk.end;
            view.gemv_with::<4>(rows, y, |packed, tables, live, start, len| {
                plan.dot_rows(packed, tables, live, start, len)
            });
            Ok(())
        })
    }

    fn packed_rows(&self) -> impl Iterator<Item = &[u8]> {
        self.packed.chunks_exact(self.row_bytes.max(1))
    }
}

impl QuantizedTensor {
    /// A tensor from fitted parameters (one per group, in group order) and unpacked codes
    /// (one per weight, row-major), for quantizers that choose codes other than by nearest
    /// level of the original weights.
    #[cfg(feature = "compensate")]
    pub(crate) fn from_codes(
        rows: usize,
        cols: usize,
        config: Config,
        params: Vec<Params<f32>>,
        codes: &[u8],
    ) -> Result<Self> {
        let family = config.family()?;
        let n = check_shape(rows, cols, codes.len())?;
        let groups = config.granularity.group_count(rows, cols);
        if groups != Some(params.len()) {
            return Err(Error::BufferLength {
                what: "group parameters",
                expected: groups.unwrap_or(usize::MAX),
                actual: params.len(),
            });
        }
        for p in &params {
            family.codebook(*p)?;
        }
        let limit = family.level_count();
        if let Some(index) = codes.iter().position(|&c| usize::from(c) >= limit) {
            return Err(Error::CodeOutOfRange {
                index,
                code: codes[index],
                limit,
            });
        }
        let row_bytes = pack::packed_len(cols, family.bits).ok_or(Error::ShapeMismatch {
            rows,
            cols,
            len: n,
        })?;
        let mut packed = vec![0u8; rows * row_bytes];
        for (row, out) in codes
            .chunks_exact(cols)
            .zip(packed.chunks_exact_mut(row_bytes.max(1)))
        {
            pack::pack_unchecked(row, family.bits, out);
        }
        Ok(QuantizedTensor {
            rows,
            cols,
            config,
            family,
            params,
            packed,
            row_bytes,
        })
    }

    /// A borrowed [`QuantizedView`] of this tensor: the decode and GEMV paths that stored
    /// bytes use, over this tensor's own buffers.
    pub fn view(&self) -> QuantizedView<'_> {
        QuantizedView::from_parts(
            self.rows,
            self.cols,
            self.family,
            self.config.granularity,
            format::rule_code(self.config.rule),
            &self.packed,
            &self.params,
        )
    }

    fn header(&self) -> format::Header {
        let params_per_group = 1 + usize::from(self.family.uses_q());
        format::Header {
            family: self.family,
            layout: self.config.granularity,
            rule: format::rule_code(self.config.rule),
            rows: self.rows,
            cols: self.cols,
            groups: self.params.len(),
            row_bytes: self.row_bytes,
            codes_len: self.packed.len(),
            params_per_group,
            total_len: format::HEADER_LEN
                + self.packed.len()
                + self.params.len() * params_per_group * 4,
        }
    }

    /// Bytes [`write_into`](Self::write_into) and [`to_bytes`](Self::to_bytes) produce.
    pub fn serialized_len(&self) -> usize {
        self.header().total_len
    }

    /// Serializes into `out` (see [`format`] for the layout), which must hold
    /// at least [`serialized_len`](Self::serialized_len) bytes; returns the bytes written.
    pub fn write_into(&self, out: &mut [u8]) -> Result<usize> {
        let header = self.header();
        if out.len() < header.total_len {
            return Err(Error::BufferLength {
                what: "serialization buffer",
                expected: header.total_len,
                actual: out.len(),
            });
        }
        let (head, payload) = out[..header.total_len].split_at_mut(format::HEADER_LEN);
        let (codes, params) = payload.split_at_mut(self.packed.len());
        codes.copy_from_slice(&self.packed);
        let per_group = header.params_per_group;
        for (chunk, p) in params.chunks_exact_mut(4 * per_group).zip(&self.params) {
            chunk[..4].copy_from_slice(&p.a.to_le_bytes());
            if per_group == 2 {
                chunk[4..8].copy_from_slice(&p.q.to_le_bytes());
            }
        }
        header.write(payload, head);
        Ok(header.total_len)
    }

    /// The stored form of this tensor (see [`format`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.serialized_len()];
        // The buffer has exactly the length write_into asks for.
        let _ = self.write_into(&mut out);
        out
    }

    /// Validates stored bytes and copies them into an owned tensor.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(Self::from_view(&QuantizedView::from_bytes(bytes)?))
    }

    /// An owned copy of a view.
    pub fn from_view(view: &QuantizedView<'_>) -> Self {
        let family = view.family();
        let params: Vec<Params<f32>> = (0..view.group_count())
            .filter_map(|g| view.params(g))
            .collect();
        let rule = match view.rule_code() {
            1 => ScaleRule::Mse,
            2 => ScaleRule::Correlation,
            3 => ScaleRule::OutputMse,
            4 => params
                .first()
                .map_or(ScaleRule::MaxAbs, |p| ScaleRule::Fixed {
                    a: f64::from(p.a),
                    q: f64::from(p.q),
                }),
            _ => ScaleRule::MaxAbs,
        };
        let config = Config::new(family.scheme, family.bits)
            .granularity(view.layout())
            .scale_rule(rule)
            .zero_level(family.zero_level);
        QuantizedTensor {
            rows: view.rows(),
            cols: view.cols(),
            config,
            family,
            params,
            packed: view.packed_codes().to_vec(),
            row_bytes: view.row_bytes(),
        }
    }
}
