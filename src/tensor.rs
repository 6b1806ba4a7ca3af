//! [`quantize`] and the owned [`QuantizedTensor`].

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use crate::codebook::Codebook;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::format;
use crate::kernels;
use crate::layout::Granularity;
use crate::pack;
use crate::parts::{ParamEncoding, Parts, Shape};
use crate::scheme::{Params, ScaleRule, Scheme};
use crate::view::QuantizedView;

/// Checks a `rows × cols` shape against `len` weights.
pub(crate) fn check_shape(rows: usize, cols: usize, len: usize) -> Result<usize> {
    let n = element_count(rows, cols)?;
    if n == 0 {
        return Err(Error::EmptyTensor { rows, cols });
    }
    if n != len {
        return Err(Error::ShapeMismatch { rows, cols, len });
    }
    Ok(n)
}

/// `rows × cols`, or [`Error::ShapeOverflow`]: the first check on any shape, so that an
/// impossible shape is reported as such and not as a buffer that does not match it.
pub(crate) fn element_count(rows: usize, cols: usize) -> Result<usize> {
    rows.checked_mul(cols)
        .ok_or(Error::ShapeOverflow { rows, cols })
}

/// Quantizes a `rows × cols` row-major weight matrix.
///
/// # Error bound
/// Each weight `w` decodes to its group's level nearest to it, `ŵ`, which is finite, never of
/// the opposite sign to `w` (`ŵ` is `0` or has `w`'s sign; a zero weight decodes to zero
/// when the family has a zero level), and at most the group's scale `a` (its top level,
/// [`params`](QuantizedTensor::params)`(g).a`) in magnitude. So
/// `|w − ŵ| ≤ max(a, |w| − a)`: at most `a` inside `[−a, a]`, and the clipped excess
/// outside it. The scale is:
/// - [`ScaleRule::MaxAbs`]: the group's `max|w|`;
/// - the other fitted rules: the best scale their search finds, searched from `0.01` to
///   `1.5` times `max|w|`, and no larger than `f32::MAX` (weights near the top of `f32`
///   get that rather than an overflow);
/// - [`ScaleRule::Fixed`]: the given `a`.
///
/// A group whose every `|w|` is below `f32::MIN_POSITIVE` (≈ 1.2e-38: zeros and subnormals)
/// has too few representable values to fit levels to and is not fitted: with a zero level
/// it gets `a = 1`, and each weight decodes to zero or, above half the smallest level, to that
/// level, within `|w|` of itself either way; without one it gets `a = f32::MIN_POSITIVE`.
///
/// # Errors
/// A shape whose `rows × cols` overflows ([`Error::ShapeOverflow`]), is empty or does not
/// match `weights`, a NaN or infinite weight ([`Error::NonFiniteWeight`]), bits outside
/// `1..=8`, a group size of 0, invalid [`ScaleRule::Fixed`] parameters, and a group for which
/// no codebook exists ([`Error::UnfittableGroup`]; the tiny-group rule above leaves no such
/// group in `f32`).
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

/// [`quantize_weighted`] on exactly `threads` threads (1: the serial path; without the
/// `parallel` feature always serial), whatever the tensor's size. A test hook for the
/// benchmarks and tests that compare the two paths in one build; not part of the stable API.
#[cfg(feature = "test-hooks")]
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
    config.granularity().validate()?;
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
    let layout = config.granularity();
    let row_bytes =
        pack::packed_len(cols, family.bits).ok_or(Error::ShapeOverflow { rows, cols })?;
    let g = layout.group_len(cols);
    let per_row = layout.groups_per_row(cols);
    let fit = |range: Range<usize>| -> Result<Params<f32>> {
        let group_importance = importance.map(|imp| &imp[range.clone()]);
        let group = range.start / cols * per_row + range.start % cols / g;
        family
            .fit_group(config.scale_rule(), &weights[range], group_importance)
            .map_err(|e| match e {
                Error::UnfittableGroup { max_abs, .. } => Error::UnfittableGroup { group, max_abs },
                other => other,
            })
    };
    // Fits first, every group in order, then codebooks and codes: a failing fit is reported
    // before any codebook error, however the rows are split.
    let params = if config.compact_params() {
        fit_compact(
            &family,
            config.scale_rule(),
            weights,
            importance,
            rows,
            cols,
            layout,
            threads,
        )?
    } else if layout == Granularity::PerTensor {
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
    let shape = Shape {
        rows,
        cols,
        family,
        granularity: layout,
        rule: config.scale_rule(),
        encoding: if config.compact_params() {
            ParamEncoding::compact_for(family, layout, cols)
        } else {
            ParamEncoding::f32_for(family)
        },
    };
    let mut param_bytes = vec![0u8; shape.lengths()?.params];
    shape.encoding.write(&params, &mut param_bytes);
    Ok(QuantizedTensor {
        config: *config,
        parts: Parts::new(shape, packed, param_bytes)?,
    })
}

/// The compact fit (see `Config::with_compact_params`): per row of groups (the whole tensor
/// for a per-tensor layout) one shared `q`, each group's `a` an `f16` value; returned as one
/// `Params` per group, in group order.
#[allow(clippy::too_many_arguments)]
fn fit_compact(
    family: &crate::discretize::Family,
    rule: ScaleRule,
    weights: &[f32],
    importance: Option<&[f32]>,
    rows: usize,
    cols: usize,
    layout: Granularity,
    threads: usize,
) -> Result<Vec<Params<f32>>> {
    use crate::discretize::shared::{f16_value, fit_row};
    // A per-tensor layout is one run of one group over every weight.
    let (runs, span, g) = match layout {
        Granularity::PerTensor => (1, weights.len(), weights.len()),
        _ => (rows, cols, layout.group_len(cols)),
    };
    let per_run = span.div_ceil(g);
    let mut params = vec![Params { a: 0.0, q: 0.0 }; runs * per_run];
    for_row_chunks(&mut params, runs, per_run, 1, threads, |chunk, out| {
        let mut scales = vec![0u16; per_run];
        for (run, slots) in chunk.zip(out.chunks_exact_mut(per_run)) {
            let range = run * span..(run + 1) * span;
            let imp = importance.map(|imp| &imp[range.clone()]);
            let q = fit_row(
                family,
                rule,
                &weights[range],
                imp,
                g,
                &mut scales,
                run * per_run,
            )?;
            for (slot, &h) in slots.iter_mut().zip(&scales) {
                *slot = Params { a: f16_value(h), q };
            }
        }
        Ok(())
    })?;
    Ok(params)
}

/// A quantized `rows × cols` matrix: one parametric codebook per group and the packed codes.
///
/// Codes are packed row by row (see [`pack`] for the bit order); each row starts on
/// a byte boundary and takes [`row_bytes`](Self::row_bytes) bytes. Codebook `i` belongs to
/// group `i` in row-major order (per row: row `i`; per group: row `i / groups_per_row`).
/// The read accessors are those of [`QuantizedView`], which [`view`](Self::view) borrows.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedTensor {
    config: Config,
    parts: Parts<Vec<u8>>,
}

impl QuantizedTensor {
    /// A borrowed [`QuantizedView`] of this tensor: the decode and GEMV paths that stored
    /// bytes use, over this tensor's own buffers.
    pub fn view(&self) -> QuantizedView<'_> {
        QuantizedView::from_valid_parts(self.parts.borrowed())
    }

    /// Rows (output channels).
    pub fn rows(&self) -> usize {
        self.parts.shape().rows
    }

    /// Columns (inputs per output).
    pub fn cols(&self) -> usize {
        self.parts.shape().cols
    }

    /// Bits per code.
    pub fn bits(&self) -> u8 {
        self.config.bits()
    }

    /// The level family.
    pub fn scheme(&self) -> Scheme {
        self.config.scheme()
    }

    /// Which weights share a codebook.
    pub fn granularity(&self) -> Granularity {
        self.config.granularity()
    }

    /// The scale rule the tensor was fitted with.
    pub fn scale_rule(&self) -> ScaleRule {
        self.config.scale_rule()
    }

    /// The zero-level switch the tensor was quantized with (at one bit the levels are
    /// `{−a, +a}` either way).
    pub fn zero_level(&self) -> bool {
        self.config.zero_level()
    }

    /// The configuration this tensor was quantized with.
    pub fn config(&self) -> Config {
        self.config
    }

    /// Number of groups (codebooks).
    pub fn group_count(&self) -> usize {
        self.parts.lengths().groups
    }

    /// Group `group`'s fitted parameters, or `None` past the last group.
    pub fn params(&self, group: usize) -> Option<Params<f32>> {
        self.parts.params(group)
    }

    /// Group `group`'s codebook, or `None` past the last group.
    pub fn codebook(&self, group: usize) -> Option<Codebook<f32>> {
        self.parts.codebook(group)
    }

    /// Each group's codebook, in group order, expanded from its parameters.
    pub fn codebooks(&self) -> impl ExactSizeIterator<Item = Codebook<f32>> + '_ {
        self.view().codebooks()
    }

    /// The packed codes of all rows, `rows × row_bytes` bytes.
    pub fn packed_codes(&self) -> &[u8] {
        self.parts.codes()
    }

    /// Bytes per packed row.
    pub fn row_bytes(&self) -> usize {
        self.parts.lengths().row_bytes
    }

    /// The codes, unpacked, row-major.
    pub fn codes(&self) -> Vec<u8> {
        let cols = self.cols();
        let mut out = vec![0u8; self.rows() * cols];
        let rows = self.packed_codes().chunks_exact(self.row_bytes().max(1));
        for (row, codes) in rows.zip(out.chunks_exact_mut(cols)) {
            pack::unpack_unchecked(row, self.bits(), codes);
        }
        out
    }

    /// Stored bits per weight: packed codes (with row padding) plus 32 bits per stored
    /// parameter (`a`, and `q` where the family has two or more magnitudes to space; with
    /// compact parameters 16 bits per `a` and 32 per row's `q`), over `rows × cols`.
    pub fn bits_per_weight(&self) -> f64 {
        self.parts.bits_per_weight()
    }

    /// The dequantized matrix, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        self.view().dequantize()
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
        let threads = crate::parallel::threads_for(
            self.rows() * self.cols(),
            crate::parallel::GEMV_MIN_WEIGHTS,
        );
        #[cfg(not(feature = "parallel"))]
        let threads = 1;
        self.gemv_on(x, 0..self.rows(), y, threads)
    }

    /// [`gemv`](Self::gemv) on exactly `threads` threads (1: the serial path; without the
    /// `parallel` feature always serial), whatever the matrix's size. A test hook for the
    /// benchmarks and tests that compare the two paths in one build; not part of the stable
    /// API.
    #[cfg(feature = "test-hooks")]
    pub fn gemv_with_threads(&self, x: &[f32], y: &mut [f32], threads: usize) -> Result<()> {
        self.gemv_on(x, 0..self.rows(), y, threads)
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
        let g = self.granularity().group_len(self.cols());
        let isa = kernels::Isa::detect();
        let compact = view.compact_params();
        // 1-, 2- and 4-bit groups with their own parameters run the lane-permuted kernels of
        // groups (`gemv_derived`, `gemv_narrow_groups`), which take the AVX2 layout as the
        // compact one does, or for 4-bit groups of an odd multiple of 32 codes the quad
        // layout (`DotPlan::for_groups`). (Groups as long as a row are rows: they keep the
        // plan of the per-row kernels.)
        let derived = match self.granularity() {
            Granularity::PerGroup(g) if g < self.cols() => match self.bits() {
                4 => true,
                bits @ (1 | 2) => crate::isa::portable::narrow_groups_fit(u32::from(bits), g),
                _ => false,
            },
            _ => false,
        };
        let plan = if compact {
            kernels::DotPlan::for_compact(isa, self.bits(), x, g)
        } else if derived {
            kernels::DotPlan::for_groups(isa, self.bits(), x, g)
        } else {
            kernels::DotPlan::new(isa, self.bits(), x, g)
        };
        // Four rows per pass share each load of the permuted `x` (see `DotPlan::dot_rows`).
        // A row's result does not depend on its pass, but chunks of whole passes keep every
        // pass exactly as the serial loop forms it anyway.
        let first = rows.start;
        for_row_chunks(y, rows.len(), 1, 4, threads, |chunk, y| {
            let rows = first + chunk.start..first + chunk.end;
            if compact && view.gemv_compact(isa, x, rows.clone(), y, Some(&plan)) {
                return Ok(());
            }
            if view.gemv_derived(isa, x, rows.clone(), y, Some(&plan))
                || view.gemv_narrow_groups(rows.clone(), y, &plan)
                || view.gemv_row_planes(rows.clone(), y, &plan)
            {
                return Ok(());
            }
            view.gemv_with::<4>(rows, y, |packed, tables, live, start, len| {
                plan.dot_rows(packed, tables, live, start, len)
            });
            Ok(())
        })
    }
}

impl QuantizedTensor {
    /// `Y = W·X` for a batch of `n` columns: `x` is `cols × n` and `y` `rows × n`, both
    /// row-major (`x[j·n + c]`, `y[r·n + c]`: the layout of an im2col convolution). See
    /// [`QuantizedView::gemm`] for the method and the numbers; `n == 1` runs this tensor's
    /// [`gemv`](Self::gemv). With the `parallel` feature a large product is split over
    /// threads, each row's result bit for bit the single-threaded one.
    pub fn gemm(&self, x: &[f32], n: usize, y: &mut [f32]) -> Result<()> {
        if n == 1 {
            self.view().check_gemm(x, n, &(0..self.rows()), y)?;
            return self.gemv(x, y);
        }
        self.view().gemm(x, n, y)
    }

    /// [`gemm`](Self::gemm) for a range of rows (as [`gemv_rows`](Self::gemv_rows)): `y`
    /// holds `rows.len() × n` values and equals the matching rows of `gemm`'s output exactly.
    /// Runs on the calling thread.
    pub fn gemm_rows(&self, x: &[f32], n: usize, rows: Range<usize>, y: &mut [f32]) -> Result<()> {
        if n == 1 {
            self.view().check_gemm(x, n, &rows, y)?;
            return self.gemv_rows(x, rows, y);
        }
        self.view().gemm_rows(x, n, rows, y)
    }

    /// [`gemm`](Self::gemm) on exactly `threads` threads (1: the serial path; without the
    /// `parallel` feature always serial). A test hook; not part of the stable API.
    #[cfg(feature = "test-hooks")]
    pub fn gemm_with_threads(
        &self,
        x: &[f32],
        n: usize,
        y: &mut [f32],
        threads: usize,
    ) -> Result<()> {
        if n == 1 {
            self.view().check_gemm(x, n, &(0..self.rows()), y)?;
            return self.gemv_with_threads(x, y, threads);
        }
        self.view().gemm_with_threads(x, n, y, threads)
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
        if config.compact_params() {
            return Err(Error::InvalidCompensateOption(
                "compact group parameters are not supported by error compensation",
            ));
        }
        let n = check_shape(rows, cols, codes.len())?;
        let granularity = config.granularity();
        let groups = granularity.group_count(rows, cols);
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
        let shape = Shape {
            rows,
            cols,
            family,
            granularity,
            rule: config.scale_rule(),
            encoding: ParamEncoding::f32_for(family),
        };
        let mut param_bytes = vec![0u8; shape.lengths()?.params];
        shape.encoding.write(&params, &mut param_bytes);
        Ok(QuantizedTensor {
            config,
            parts: Parts::new(shape, packed, param_bytes)?,
        })
    }

    /// `y = W·x` with int8 activations (see [`QuantizedView::gemv_int8`]: an explicit
    /// precision mode with a bounded error; a NaN or infinite `x` is an error).
    pub fn gemv_int8(&self, x: &[f32], y: &mut [f32]) -> Result<()> {
        self.view().gemv_int8(x, y)
    }

    /// [`gemv_int8`](Self::gemv_int8) for a range of rows (see
    /// [`QuantizedView::gemv_int8_rows`]). Runs on the calling thread.
    pub fn gemv_int8_rows(&self, x: &[f32], rows: Range<usize>, y: &mut [f32]) -> Result<()> {
        self.view().gemv_int8_rows(x, rows, y)
    }

    /// Bytes [`write_into`](Self::write_into) and [`to_bytes`](Self::to_bytes) produce.
    pub fn serialized_len(&self) -> usize {
        format::tensor_len(&self.parts)
    }

    /// Serializes into `out` (see [`format`] for the layout), which must hold
    /// at least [`serialized_len`](Self::serialized_len) bytes; returns the bytes written.
    pub fn write_into(&self, out: &mut [u8]) -> Result<usize> {
        format::write_tensor(&self.parts, out)
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
        let parts = view.parts();
        QuantizedTensor {
            config: view.config(),
            parts: Parts::new(
                *parts.shape(),
                parts.codes().to_vec(),
                parts.param_bytes().to_vec(),
            )
            .unwrap_or_else(|_| unreachable!("a view's parts are consistent")),
        }
    }
}

#[cfg(all(test, feature = "alloc"))]
// Here rather than beside the view's int8 loop: it quantizes, and `view` must not depend on
// `tensor`.
mod int8_runs_tests {
    use crate::isa::portable;
    use crate::kernels::{I8Table, Int8X, Table, QBLOCK};
    use crate::layout::Granularity;
    use crate::view::QuantizedView;
    use crate::{quantize, Config, Params, ScaleRule};

    /// One row of the int8 GEMV by its definition, in `f64`: each group's int8 table is that
    /// of `(1, q)`, each block's integer sum times its `x` scale times the group's
    /// `a · max|unit| / 127`. Also the sum of the terms' magnitudes.
    fn reference(view: &QuantizedView, row: usize, xq: &Int8X) -> (f64, f64) {
        let (cols, bits) = (view.cols(), view.bits());
        let g = view.granularity().group_len(cols);
        let codes = &view.packed_codes()[row * view.row_bytes()..];
        let (mut sum, mut magnitude) = (0.0f64, 0.0f64);
        for i in 0..cols.div_ceil(g) {
            let group = match view.granularity() {
                Granularity::PerTensor => 0,
                layout => layout.first_group_of_row(row, cols) + i,
            };
            let Params { a, q } = view.parts().group_params(group);
            let mut unit = Table::new();
            unit.len = view.family().levels_into(Params { a: 1.0, q }, &mut unit.v);
            let mut t8 = I8Table::new();
            t8.set(&unit);
            let top = unit.v[..unit.len]
                .iter()
                .fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = f64::from(a) * f64::from(top) / 127.0;
            for block in (i * g..(i * g + g).min(cols)).step_by(QBLOCK) {
                let end = (block + QBLOCK).min(cols);
                let ints: i32 = (block..end)
                    .map(|j| {
                        let code = portable::code_at(codes, bits, j);
                        i32::from(t8.v[usize::from(code)]) * i32::from(xq.xq[j])
                    })
                    .sum();
                let term = scale * f64::from(xq.scales[block / QBLOCK]) * f64::from(ints);
                sum += term;
                magnitude += term.abs();
            }
        }
        (sum, magnitude)
    }

    #[test]
    fn int8_runs_match_the_definition_at_every_width() {
        let mut bits32 = crate::test_rng::xorshift32(0x2545_f491);
        let mut next = move || bits32() as f32 / u32::MAX as f32 - 0.5;
        let (rows, cols) = (3, 1000);
        let w: alloc::vec::Vec<f32> = (0..rows * cols).map(|_| next() * 0.1).collect();
        let x: alloc::vec::Vec<f32> = (0..cols).map(|_| next()).collect();
        let xq = Int8X::new(&x).unwrap();
        for bits in [1u8, 2, 3, 5, 8] {
            let base = Config::exponential(bits).with_scale_rule(ScaleRule::MaxAbs);
            for config in [
                base,
                base.per_tensor(),
                base.per_group(32).with_compact_params(true),
                base.per_group(96).with_compact_params(true),
                // `q` fitted per group: the tables change inside a row.
                base.per_group(32),
                base.per_group(64),
                Config::linear(bits).per_group(64),
                // Two magnitudes at 2 bits, each group's lower one its own (`q` fitted).
                base.with_zero_level(false).per_group(32),
                base.with_zero_level(false).per_group(96),
            ] {
                let t = quantize(&w, rows, cols, &config).unwrap();
                let mut y = alloc::vec![0.0f32; rows];
                t.gemv_int8(&x, &mut y).unwrap();
                for (row, &got) in y.iter().enumerate() {
                    let (want, magnitude) = reference(&t.view(), row, &xq);
                    assert!(
                        (f64::from(got) - want).abs() <= 1e-5 * magnitude + 1e-30,
                        "bits {bits}, {config:?}, row {row}: {got} against {want}"
                    );
                }
            }
        }
    }
}

/// The per-row GEMV with the tables of eight rows derived at once (`gemv_row_planes`) gives
/// the bits of the path that builds each row's table through `levels_into` (`gemv_with`),
/// and runs wherever its kernel does.
#[cfg(all(test, feature = "alloc"))]
mod row_planes_tests {
    use crate::kernels::{DotPlan, Isa, IsaKind};
    use crate::{quantize, Config, Scheme};

    fn bits(y: &[f32]) -> alloc::vec::Vec<u32> {
        y.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn derived_row_tables_give_the_stored_table_bits() {
        let mut next = crate::test_rng::xorshift32(0x0017_0001);
        let mut uniform = move || next() as f32 / u32::MAX as f32 - 0.5;
        for scheme in [Scheme::Exponential, Scheme::Linear] {
            for zero in [true, false] {
                for per_tensor in [false, true] {
                    let config = Config::new(scheme, 4).with_zero_level(zero);
                    let config = if per_tensor {
                        config.per_tensor()
                    } else {
                        config.per_row()
                    };
                    for (rows, cols) in [
                        (1, 64),
                        (13, 100),
                        (9, 1000),
                        (16, 1024),
                        (11, 1093),
                        (41, 128),
                    ] {
                        let w: alloc::vec::Vec<f32> =
                            (0..rows * cols).map(|_| uniform() * 0.2).collect();
                        let x: alloc::vec::Vec<f32> = (0..cols).map(|_| uniform()).collect();
                        let tensor = quantize(&w, rows, cols, &config).unwrap();
                        let view = tensor.view();
                        for isa in Isa::available() {
                            let plan = DotPlan::new(isa, 4, &x, cols);
                            for range in [0..rows, rows / 2..rows] {
                                let mut derived = alloc::vec![f32::NAN; range.len()];
                                let mut stored = alloc::vec![f32::NAN; range.len()];
                                let ran = view.gemv_row_planes(range.clone(), &mut derived, &plan);
                                let expected = cfg!(target_arch = "x86_64")
                                    && isa.kind() == IsaKind::Avx2
                                    && cols >= 64;
                                assert_eq!(ran, expected, "{isa} {config:?} {cols}");
                                if !ran {
                                    continue;
                                }
                                view.gemv_with::<4>(range.clone(), &mut stored, |p, t, l, s, n| {
                                    plan.dot_rows(p, t, l, s, n)
                                });
                                assert_eq!(
                                    bits(&derived),
                                    bits(&stored),
                                    "{isa} {config:?} {rows}x{cols} rows {range:?}"
                                );
                                // The view's span path derives its batches' tables the
                                // same way; within one span it sums as the tensor does.
                                let mut spans = alloc::vec![f32::NAN; range.len()];
                                assert!(view.gemv_spans(isa, &x, range.clone(), &mut spans));
                                assert_eq!(
                                    bits(&spans),
                                    bits(&derived),
                                    "spans: {isa} {config:?} {rows}x{cols} rows {range:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Compact 4-bit groups with the unit tables of eight rows derived at once
    /// (`gemv_compact_planes`) give the bits of the loop that builds each row's through
    /// `levels_into` (`DotPlan::dot_scaled`), for groups of 32 and of multiples of 64, rows
    /// with short last groups, and decline other group sizes.
    #[test]
    fn derived_unit_tables_give_the_compact_bits() {
        use crate::discretize::Family;
        use crate::kernels::Table;
        use crate::Params;
        let mut next = crate::test_rng::xorshift32(0x0017_0002);
        let mut uniform = move || next() as f32 / u32::MAX as f32 - 0.5;
        for scheme in [Scheme::Exponential, Scheme::Linear] {
            for zero in [true, false] {
                let family = Family::new(scheme, 4, zero).unwrap();
                for (g, rows, cols) in [
                    (32, 13, 100),
                    (32, 9, 1024),
                    (64, 11, 1000),
                    (128, 17, 1024),
                    (128, 5, 1093),
                    (192, 3, 4224),
                    (64, 41, 640),
                    (48, 3, 96),
                ] {
                    let config = Config::new(scheme, 4)
                        .with_zero_level(zero)
                        .per_group(g)
                        .with_compact_params(true);
                    let w: alloc::vec::Vec<f32> =
                        (0..rows * cols).map(|_| uniform() * 0.2).collect();
                    let x: alloc::vec::Vec<f32> = (0..cols).map(|_| uniform()).collect();
                    let tensor = quantize(&w, rows, cols, &config).unwrap();
                    let view = tensor.view();
                    let (codes, rb) = (tensor.packed_codes(), tensor.row_bytes());
                    let (encoding, bytes) =
                        (view.parts().shape().encoding, view.parts().param_bytes());
                    for isa in Isa::available() {
                        let plan = DotPlan::for_compact(isa, 4, &x, g);
                        for range in [0..rows, rows / 2..rows] {
                            let mut derived = alloc::vec![f32::NAN; range.len()];
                            let ran = view.gemv_compact_planes(range.clone(), &mut derived, &plan);
                            let expected = cfg!(target_arch = "x86_64")
                                && matches!(isa.kind(), IsaKind::Avx2 | IsaKind::Avx512)
                                && (g == 32 || g % 64 == 0);
                            assert_eq!(ran, expected, "{isa} {config:?} {cols}");
                            if !ran {
                                continue;
                            }
                            for (row, &got) in range.clone().zip(&derived) {
                                let (q, scales) = encoding.compact_run(bytes, row).unwrap();
                                let mut unit = Table::new();
                                unit.len = family.levels_into(Params { a: 1.0, q }, &mut unit.v);
                                let want = plan.dot_scaled(
                                    &codes[row * rb..(row + 1) * rb],
                                    g,
                                    &unit,
                                    scales,
                                );
                                assert_eq!(
                                    got.to_bits(),
                                    want.to_bits(),
                                    "{isa} {config:?} {rows}x{cols} row {row}"
                                );
                            }
                            // The view's span path derives its batches' unit tables the same
                            // way; within one span it sums as the tensor does.
                            if isa.kind() == IsaKind::Avx2 && cols <= 2048 {
                                let mut spans = alloc::vec![f32::NAN; range.len()];
                                assert!(view.gemv_spans(isa, &x, range.clone(), &mut spans));
                                assert_eq!(
                                    bits(&spans),
                                    bits(&derived),
                                    "spans: {config:?} {cols}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
