//! [`QuantizedView`]: a quantized tensor borrowed from bytes, validated once, then decoded or
//! multiplied with no copy and no allocation.

use core::ops::Range;

use crate::codebook::Codebook;
use crate::discretize::Family;
use crate::error::{Error, Result};
use crate::format;
use crate::isa::portable::{Gen16, Gen8, GenNarrow};
use crate::kernels;
use crate::layout::Granularity;
use crate::parts::Parts;
use crate::scheme::{Params, ScaleRule, Scheme};

/// A quantized `rows × cols` matrix borrowed from its stored bytes (see [`format`] for the
/// layout) or from an owned `QuantizedTensor` (its `view()`).
///
/// [`from_bytes`](Self::from_bytes) checks everything — magic, version, every length and
/// the arithmetic on it, bits, layout, checksum, finite parameters with valid levels, codes
/// that index a level, zero padding — and then never fails on the data again. Nothing is
/// copied and nothing is allocated, here or in [`dequantize_into`](Self::dequantize_into),
/// [`gemv`](Self::gemv), [`gemv_rows`](Self::gemv_rows), [`gemm`](Self::gemm) and
/// [`gemm_rows`](Self::gemm_rows): firmware can run it from flash. (With the `parallel`
/// feature, `gemv` and `gemm` on a large matrix spawn threads, which the OS and `std`
/// allocate for; the work on each thread still allocates nothing.)
///
/// ```
/// # #[cfg(feature = "alloc")] {
/// use expquant::{quantize, Config, QuantizedView};
/// let weights: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 32.0).collect();
/// let tensor = quantize(&weights, 4, 16, &Config::exponential(4))?;
/// let bytes = tensor.to_bytes();
/// let view = QuantizedView::from_bytes(&bytes)?;
/// let mut out = [0.0f32; 64];
/// view.dequantize_into(&mut out)?;
/// assert_eq!(out.to_vec(), tensor.dequantize());
/// # }
/// # Ok::<(), expquant::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct QuantizedView<'a> {
    parts: Parts<&'a [u8]>,
}

impl<'a> QuantizedView<'a> {
    /// Validates `bytes`, which must hold exactly one stored tensor, and borrows it.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self> {
        let (view, used) = Self::from_prefix(bytes)?;
        if used != bytes.len() {
            return Err(Error::Corrupt("trailing bytes after the tensor"));
        }
        Ok(view)
    }

    /// Validates the tensor at the start of `bytes` and returns it with the number of bytes
    /// it occupies; anything after it is left alone.
    pub fn from_prefix(bytes: &'a [u8]) -> Result<(Self, usize)> {
        let (parts, used) = format::parse_tensor(bytes)?;
        // Checksum and codes in one pass over the bytes, block by block while in cache.
        format::verify_checksum_with(
            bytes,
            parts.borrowed_codes().len(),
            used,
            parts.code_block_len(),
            |block| parts.validate_code_rows(block),
        )?;
        parts.validate_params()?;
        Ok((QuantizedView { parts }, used))
    }

    /// A view of stored bytes whose checksum and codes the caller verified before (a
    /// container opened with full verification, or trusted): every length and bound and the
    /// parameters are still checked, so wrong bytes
    /// give wrong numbers, never an out-of-bounds read (a code without a level decodes
    /// as `0.0`).
    pub(crate) fn from_bytes_unverified(bytes: &'a [u8]) -> Result<Self> {
        let (parts, used) = format::parse_tensor(bytes)?;
        if used != bytes.len() {
            return Err(Error::Corrupt("trailing bytes after the tensor"));
        }
        parts.validate_params()?;
        Ok(QuantizedView { parts })
    }

    /// A view of parts whose contents are valid: an owned tensor's, or stored bytes already
    /// accepted by [`from_bytes`](Self::from_bytes) (the C ABI's `expq_view` keeps the
    /// shape beside the buffer and rebuilds the parts with only the O(1) length checks).
    pub(crate) fn from_valid_parts(parts: Parts<&'a [u8]>) -> Self {
        QuantizedView { parts }
    }

    pub(crate) fn parts(&self) -> &Parts<&'a [u8]> {
        &self.parts
    }

    pub(crate) fn family(&self) -> Family {
        self.parts.shape().family
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
        self.family().bits()
    }

    /// The level family.
    pub fn scheme(&self) -> Scheme {
        self.family().scheme()
    }

    /// Which weights share a codebook.
    pub fn granularity(&self) -> Granularity {
        self.parts.shape().granularity
    }

    /// The scale rule the tensor was fitted with (stored as a code; a fixed rule's
    /// parameters are group 0's).
    pub fn scale_rule(&self) -> ScaleRule {
        self.parts.shape().rule
    }

    /// The zero-level switch the tensor was quantized with (at one bit the levels are
    /// `{−a, +a}` either way).
    pub fn zero_level(&self) -> bool {
        self.family().zero_level()
    }

    /// The configuration that reproduces this tensor's encoding: scheme, bits,
    /// granularity, scale rule, zero level.
    #[cfg(feature = "alloc")]
    pub fn config(&self) -> crate::Config {
        crate::Config::new(self.scheme(), self.bits())
            .with_granularity(self.granularity())
            .with_scale_rule(self.scale_rule())
            .with_zero_level(self.zero_level())
            .with_compact_params(self.compact_params())
    }

    /// Whether the group parameters are stored compactly (an `f16` scale per group and one
    /// shared `q` per row; see [`Config::with_compact_params`](crate::Config::with_compact_params)).
    pub fn compact_params(&self) -> bool {
        matches!(
            self.parts.shape().encoding,
            crate::parts::ParamEncoding::Compact { .. }
        )
    }

    /// The stored parameter encoding's code (format byte 12), which the C view keeps to
    /// rebuild this view from its bytes.
    #[cfg(feature = "ffi-core")]
    pub(crate) fn param_encoding_code(&self) -> u8 {
        self.parts.shape().encoding.code()
    }

    /// Number of groups (codebooks).
    pub fn group_count(&self) -> usize {
        self.parts.lengths().groups
    }

    /// Group `group`'s parameters, or `None` past the last group.
    pub fn params(&self, group: usize) -> Option<Params<f32>> {
        self.parts.params(group)
    }

    /// Group `group`'s codebook, or `None` past the last group.
    pub fn codebook(&self, group: usize) -> Option<Codebook<f32>> {
        self.parts.codebook(group)
    }

    /// Each group's codebook, in group order, expanded from its parameters.
    pub fn codebooks(&self) -> impl ExactSizeIterator<Item = Codebook<f32>> + 'a {
        let parts = self.parts;
        // Every group's parameters were checked to build a valid codebook.
        (0..self.group_count()).map(move |g| {
            parts
                .codebook(g)
                .unwrap_or_else(|| unreachable!("validated at construction"))
        })
    }

    /// The packed codes, `rows × row_bytes` bytes.
    pub fn packed_codes(&self) -> &'a [u8] {
        self.parts.borrowed_codes()
    }

    /// Bytes per packed row.
    pub fn row_bytes(&self) -> usize {
        self.parts.lengths().row_bytes
    }

    /// The packed codes of row `row` (below [`rows`](Self::rows)).
    fn row_codes(&self, row: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.packed_codes()[row * rb..(row + 1) * rb]
    }

    /// Stored bits per weight: packed codes (with row padding) plus the stored parameters
    /// (32 bits for `a`, and for `q` where the family has two or more magnitudes to space; with
    /// compact parameters 16 bits for each `a` and 32 for each row's `q`), over `rows × cols`;
    /// the header is excluded.
    pub fn bits_per_weight(&self) -> f64 {
        self.parts.bits_per_weight()
    }

    /// The dequantized matrix, row-major.
    #[cfg(feature = "alloc")]
    pub fn dequantize(&self) -> alloc::vec::Vec<f32> {
        let mut out = alloc::vec![0.0; self.rows() * self.cols()];
        // The buffer has exactly the length `dequantize_into` checks for.
        let _ = self.dequantize_into(&mut out);
        out
    }

    /// Writes the dequantized matrix, row-major, into `out` (`rows × cols` values).
    pub fn dequantize_into(&self, out: &mut [f32]) -> Result<()> {
        expect_len("dequantize output", self.rows() * self.cols(), out.len())?;
        let isa = kernels::Isa::detect();
        let bits = self.bits();
        let g = self.granularity().group_len(self.cols());
        let mut table = kernels::Table::new();
        let mut loaded = usize::MAX;
        for (row, out_row) in out.chunks_exact_mut(self.cols()).enumerate() {
            let packed_row = self.row_codes(row);
            for (i, chunk) in out_row.chunks_mut(g).enumerate() {
                let group = self.group_index(row, i);
                if group != loaded {
                    table.len = self
                        .family()
                        .levels_into(self.parts.group_params(group), &mut table.v);
                    loaded = group;
                }
                kernels::decode_span(isa, bits, packed_row, i * g, &table, chunk);
            }
        }
        Ok(())
    }

    /// `y = W·x`, with `x.len() == cols` and `y.len() == rows`.
    ///
    /// With the `parallel` feature, a matrix of at least 4 M weights is split into runs of
    /// rows over `std::thread::available_parallelism()` threads, each running
    /// [`gemv_rows`](Self::gemv_rows) on its run; every row's result is bit for bit the
    /// single-threaded one.
    pub fn gemv(&self, x: &[f32], y: &mut [f32]) -> Result<()> {
        #[cfg(feature = "parallel")]
        let threads = crate::parallel::threads_for(
            self.rows() * self.cols(),
            crate::parallel::GEMV_MIN_WEIGHTS,
        );
        #[cfg(not(feature = "parallel"))]
        let threads = 1;
        self.gemv_on(x, y, threads)
    }

    /// [`gemv`](Self::gemv) on exactly `threads` threads (1: the serial path; without the
    /// `parallel` feature always serial), whatever the matrix's size. A test hook for the
    /// benchmarks and tests that compare the two paths in one build; not part of the stable
    /// API.
    #[cfg(feature = "test-hooks")]
    pub fn gemv_with_threads(&self, x: &[f32], y: &mut [f32], threads: usize) -> Result<()> {
        self.gemv_on(x, y, threads)
    }

    fn gemv_on(&self, x: &[f32], y: &mut [f32], threads: usize) -> Result<()> {
        #[cfg(not(feature = "parallel"))]
        let _ = threads;
        #[cfg(feature = "parallel")]
        if threads > 1 {
            return self.gemv_threaded(x, y, threads);
        }
        self.gemv_rows(x, 0..self.rows(), y)
    }

    #[cfg(feature = "parallel")]
    fn gemv_threaded(&self, x: &[f32], y: &mut [f32], threads: usize) -> Result<()> {
        self.check_gemv(x, &(0..self.rows()), y)?;
        // Each thread runs the serial kernel on its rows, on its own stack tables: nothing is
        // shared but the read-only codes, parameters and `x`.
        crate::parallel::for_each_chunk(y, self.rows(), 1, 4, threads, |rows, y| {
            self.gemv_rows(x, rows, y)
        })
    }

    /// `y = W[rows]·x` for a range of rows (so a runtime can split rows over its threads);
    /// `y.len()` must equal the range's length. Runs on the calling thread.
    pub fn gemv_rows(&self, x: &[f32], rows: Range<usize>, y: &mut [f32]) -> Result<()> {
        self.check_gemv(x, &rows, y)?;
        self.gemv_serial(kernels::Isa::detect(), x, rows, y);
        Ok(())
    }

    /// The GEMV of `rows` on the calling thread (also a GEMM's batch of one, so that both
    /// give the same bits); shapes checked by the caller.
    fn gemv_serial(&self, isa: kernels::Isa, x: &[f32], rows: Range<usize>, y: &mut [f32]) {
        if self.gemv_spans(isa, x, rows.clone(), y) {
            return;
        }
        #[cfg(feature = "alloc")]
        let done = self.gemv_compact(isa, x, rows.clone(), y, None)
            || self.gemv_derived(isa, x, rows.clone(), y, None);
        #[cfg(not(feature = "alloc"))]
        let done = self.gemv_compact(isa, x, rows.clone(), y)
            || self.gemv_derived(isa, x, rows.clone(), y);
        if done {
            return;
        }
        let bits = self.bits();
        self.gemv_with::<1>(rows, y, |packed, tables, _, start, len| {
            let x = &x[start..start + len];
            [kernels::dot_span(isa, bits, packed[0], start, tables[0], x)]
        });
    }

    /// The GEMV of a tensor with one codebook per row (per row or per tensor), or with
    /// compact group parameters in groups that divide the span, at 1, 2 or 4 bits, or with
    /// `f32` `(a, q)` in 4-bit groups of a multiple of 32 codes that divide the span, on the
    /// AVX2 path: `x` is permuted to the lane layout of the per-row kernels (`dot_perm`,
    /// `dot_perm_scaled`, `dot_perm_groups`, which read codes in place; the quad layout of
    /// `dot_quad_groups` for groups of an odd multiple of 32) a span at a time into
    /// a stack buffer, and a batch of rows runs span after span, so nothing is allocated.
    /// `false` (nothing written) where the path does not apply. A row's result does not
    /// depend on the rows batched with it. Shapes are checked by the caller.
    pub(crate) fn gemv_spans(
        &self,
        isa: kernels::Isa,
        x: &[f32],
        rows: Range<usize>,
        y: &mut [f32],
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            /// Values of `x` permuted at a time (8 KiB of stack), a multiple of every
            /// width's block (256 codes at 1 bit). Spans of 1024 values were up to 1.6×
            /// slower than whole rows with compact groups of 32 and at 1 and 2 bits; spans of
            /// 4096 no faster than 2048 (BENCHMARKS.md, eleventh pass).
            const SPAN: usize = 2048;
            /// Rows that share each permuted span.
            const BATCH: usize = 32;
            let bits = self.bits();
            // AVX2 CPUs only: on AVX-512 ones the plain kernels have 16 lanes, and this path
            // has not been timed against them there.
            if isa.kind() != kernels::IsaKind::Avx2 {
                return false;
            }
            let Some(t) = isa.avx2() else {
                return false;
            };
            let cols = self.cols();
            let block = crate::isa::x86_avx2::perm_block(u32::from(bits));
            let encoding = self.parts.shape().encoding;
            let param_bytes = self.parts.param_bytes();
            let compact = self.compact_params();
            let g = self.granularity().group_len(cols);
            let per_tensor = self.granularity() == Granularity::PerTensor;
            // 4-bit groups with their own `(a, q)` whose tables `dot_perm_groups` derives in
            // registers: groups of whole blocks, or of whole quad blocks in the quad layout
            // (`dot_quad_groups`).
            let quad_block = crate::isa::x86_avx2::QUAD_BLOCK;
            let derived = match self.granularity() {
                Granularity::PerGroup(_)
                    if !compact && bits == 4 && g.is_multiple_of(quad_block) =>
                {
                    gen16(self.family())
                }
                _ => None,
            };
            let quad = derived.is_some() && crate::isa::x86_avx2::quad_groups(g);
            // 4-bit rows with one table each (per row or per tensor), and compact groups of 32
            // or of whole runs, run the byte-plane kernels (`dot_planes4`,
            // `dot_planes4_scaled`), `x` in their run order; the other layouts the
            // lane-permuted ones.
            let planes =
                bits == 4 && derived.is_none() && (!compact || g == 32 || g.is_multiple_of(block));
            // 1- and 2-bit groups with their own `(a, q)` whose levels `dot_perm_narrow`
            // derives: groups of whole blocks or blocks of whole groups, lanes in one group.
            let narrow = match self.granularity() {
                Granularity::PerGroup(_)
                    if !compact && crate::isa::portable::narrow_groups_fit(u32::from(bits), g) =>
                {
                    narrow_gen(self.family())
                }
                _ => None,
            };
            // A whole number of spans and blocks per group or of groups per span and block.
            let unit = if quad {
                g
            } else if compact || derived.is_some() || narrow.is_some() {
                g.max(block)
            } else {
                block
            };
            let fits = if compact {
                g.is_multiple_of(32 / usize::from(bits).max(1))
                    && SPAN.is_multiple_of(g)
                    && (g.is_multiple_of(block) || block.is_multiple_of(g))
            } else if derived.is_some() || narrow.is_some() {
                SPAN.is_multiple_of(g)
            } else {
                matches!(
                    self.granularity(),
                    Granularity::PerRow | Granularity::PerTensor
                )
            };
            if !matches!(bits, 1 | 2 | 4) || !fits || cols < unit {
                return false;
            }
            let whole = cols / unit * unit;
            let group_bytes = param_bytes.len() / self.group_count().max(1);
            let mut xp = [0.0f32; SPAN];
            let mut table = kernels::Table::new();
            let mut t16 = [[0.0f32; 16]; BATCH];
            let mut scales: [&[u8]; BATCH] = [&[]; BATCH];
            // A span's groups' `(a, q)` (groups of at least one lane, 16 codes at 2 bits).
            let mut params = [[0.0f32; 2]; SPAN / 16];
            // Row `row`'s level table (at `a = 1` with compact parameters) into `table`, and
            // its group scales with compact parameters; nothing with derived tables.
            let load = |row: usize, table: &mut kernels::Table| -> Option<&[u8]> {
                if compact {
                    let run = if per_tensor { 0 } else { row };
                    let (q, sc) = encoding.compact_run(param_bytes, run)?;
                    table.len = self
                        .family()
                        .levels_into(Params { a: 1.0, q }, &mut table.v);
                    Some(sc)
                } else {
                    if derived.is_none() && narrow.is_none() {
                        let params = self.parts.group_params(self.group_index(row, 0));
                        table.len = self.family().levels_into(params, &mut table.v);
                    }
                    Some(&[])
                }
            };
            // The byte-plane layouts (4-bit rows with one table each, compact 4-bit groups):
            // eight rows' tables at a time from their `(a, q)` (compact: their unit tables,
            // `(1, q)`), the bits `load` gives.
            let row_gen = if planes { gen16(self.family()) } else { None };
            for (batch, out) in y.chunks_mut(BATCH).enumerate() {
                let first = rows.start + batch * BATCH;
                if let Some(gen) = &row_gen {
                    let live = out.len();
                    for (i, (tables, scales)) in t16[..live]
                        .chunks_mut(8)
                        .zip(scales[..live].chunks_mut(8))
                        .enumerate()
                    {
                        let params = if compact {
                            // Checked at validation: every compact row has its run.
                            let Some(p) = self.compact_params8(first + 8 * i, scales) else {
                                return false;
                            };
                            p
                        } else {
                            self.row_params8(first + 8 * i, tables.len())
                        };
                        tables.copy_from_slice(&t.row_tables16(&params, gen)[..tables.len()]);
                    }
                } else {
                    for k in 0..out.len() {
                        let Some(sc) = load(first + k, &mut table) else {
                            // Checked at validation: every compact row has its run.
                            return false;
                        };
                        t16[k] = table.repeated16(bits);
                        scales[k] = sc;
                    }
                }
                out.fill(0.0);
                let mut start = 0;
                while start < whole {
                    let len = if planes {
                        t.permute_runs64(&x[start..whole], &mut xp)
                    } else {
                        let per_lane = if quad { quad_block / 8 } else { block / 8 };
                        t.permute_blocks(&x[start..whole], per_lane, &mut xp)
                    };
                    let byte0 = start * usize::from(bits) / 8;
                    let nbytes = len * usize::from(bits) / 8;
                    let live = out.len();
                    for (k, o) in out.iter_mut().enumerate() {
                        // The rows' spans are not one stream as whole rows are: ask for the
                        // next row's span while this one runs, and its groups' `(a, q)`
                        // (256 bytes a span of groups of 64 with `f32` `(a, q)`; prefetching
                        // the compact rows' `f16` scales measured no faster).
                        if k + 1 < live {
                            t.prefetch(&self.row_codes(first + k + 1)[byte0..byte0 + nbytes]);
                            if derived.is_some() || narrow.is_some() {
                                let at = group_bytes * self.group_index(first + k + 1, start / g);
                                let end = (at + group_bytes * (len / g)).min(param_bytes.len());
                                t.prefetch(&param_bytes[at.min(end)..end]);
                            }
                        }
                        let row = &self.row_codes(first + k)[byte0..byte0 + nbytes];
                        let xs = &xp[..len];
                        *o += if let Some(gen) = &derived {
                            let span_params = &mut params[..len / g];
                            let group = self.group_index(first + k, start / g);
                            encoding.read_run(param_bytes, group, span_params);
                            if quad {
                                t.dot_quad_groups(row, xs, g, span_params, gen)
                            } else {
                                t.dot_perm_groups(row, xs, g, span_params, gen)
                            }
                        } else if let Some(gen) = &narrow {
                            let span_params = &mut params[..len / g];
                            let group = self.group_index(first + k, start / g);
                            encoding.read_run(param_bytes, group, span_params);
                            if bits == 1 {
                                t.dot_perm_narrow::<1>(row, xs, g, span_params, gen)
                            } else {
                                t.dot_perm_narrow::<2>(row, xs, g, span_params, gen)
                            }
                        } else if compact && planes {
                            let sc = &scales[k][2 * (start / g)..];
                            t.dot_planes4_scaled(row, &t16[k], xs, g, sc)
                        } else if compact {
                            let sc = &scales[k][2 * (start / g)..];
                            kernels::dot_permuted_scaled_avx2(t, bits, row, &t16[k], xs, g, sc)
                        } else if planes {
                            t.dot_planes4(row, &t16[k], xs)
                        } else {
                            kernels::dot_permuted_avx2(t, bits, row, &t16[k], xs)
                        };
                    }
                    start += len;
                }
                if whole < cols {
                    for (k, o) in out.iter_mut().enumerate() {
                        let _ = load(first + k, &mut table);
                        let row = self.row_codes(first + k);
                        let rest = &x[whole..];
                        *o += if let Some(gen) = &derived {
                            // Less than one group: its `(a, q)` and the plain kernel, which
                            // takes a short last group.
                            let last = &mut params[..1];
                            let group = self.group_index(first + k, whole / g);
                            encoding.read_run(param_bytes, group, last);
                            t.dot4_groups(&row[whole / 2..], rest, g, last, gen)
                        } else if let Some(gen) = &narrow {
                            // Less than a block: group by group through the plain kernel.
                            let mut sum = 0.0f32;
                            for (i, xs) in rest.chunks(g).enumerate() {
                                let mut last = [[0.0f32; 2]; 1];
                                let group = self.group_index(first + k, whole / g + i);
                                encoding.read_run(param_bytes, group, &mut last);
                                let [a, q] = last[0];
                                table.set(&crate::isa::portable::table_narrow(gen, a, q));
                                let at = whole + i * g;
                                sum += kernels::dot_span(isa, bits, row, at, &table, xs);
                            }
                            sum
                        } else if compact {
                            let sc = &scales[k][2 * (whole / g)..];
                            kernels::dot_scaled_from(isa, bits, row, whole, rest, g, &table, sc)
                        } else {
                            kernels::dot_span(isa, bits, row, whole, &table, rest)
                        };
                    }
                }
            }
            true
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (isa, x, rows, y);
            false
        }
    }

    /// `y = W·x` with int8 activations, an explicit precision mode: `x` is quantized once to
    /// int8 in blocks of 32 (an `f32` scale each), each group's levels to int8 (a scale
    /// each), and the products are summed in integers. The error it adds is bounded in the
    /// [`kernels`] docs (*Int8 activations*): at most `Σ_j (|L_j|·s_b/2 + t·|x_j|/2 +
    /// t·s_b/4)` per row, plus `f32` summation error. Shapes as [`gemv`](Self::gemv); a NaN
    /// or infinite `x` is an error. With the `parallel` feature a matrix of at least 4 M
    /// weights is split over threads, each row's result bit for bit the single-threaded one.
    #[cfg(feature = "alloc")]
    pub fn gemv_int8(&self, x: &[f32], y: &mut [f32]) -> Result<()> {
        #[cfg(feature = "parallel")]
        let threads = crate::parallel::threads_for(
            self.rows() * self.cols(),
            crate::parallel::GEMV_MIN_WEIGHTS,
        );
        #[cfg(not(feature = "parallel"))]
        let threads = 1;
        self.gemv_int8_on(x, 0..self.rows(), y, threads)
    }

    /// [`gemv_int8`](Self::gemv_int8) for a range of rows (as [`gemv_rows`](Self::gemv_rows));
    /// the results equal the matching entries of `gemv_int8` exactly. Runs on the calling
    /// thread.
    #[cfg(feature = "alloc")]
    pub fn gemv_int8_rows(&self, x: &[f32], rows: Range<usize>, y: &mut [f32]) -> Result<()> {
        self.gemv_int8_on(x, rows, y, 1)
    }

    #[cfg(feature = "alloc")]
    pub(crate) fn gemv_int8_on(
        &self,
        x: &[f32],
        rows: Range<usize>,
        y: &mut [f32],
        threads: usize,
    ) -> Result<()> {
        self.check_gemv(x, &rows, y)?;
        let xq = kernels::Int8X::new(x)?;
        #[cfg(not(feature = "parallel"))]
        let _ = threads;
        #[cfg(feature = "parallel")]
        if threads > 1 {
            let first = rows.start;
            return crate::parallel::for_each_chunk(y, rows.len(), 1, 1, threads, |r, y| {
                self.gemv_int8_serial(&xq, first + r.start..first + r.end, y);
                Ok(())
            });
        }
        self.gemv_int8_serial(&xq, rows, y);
        Ok(())
    }

    /// The int8 GEMV loop over rows and groups; shapes checked by the caller.
    #[cfg(feature = "alloc")]
    fn gemv_int8_serial(&self, xq: &kernels::Int8X, rows: Range<usize>, y: &mut [f32]) {
        let isa = kernels::Isa::detect();
        let bits = self.bits();
        let cols = self.cols();
        let g = self.granularity().group_len(cols);
        // 4-bit groups of a multiple of 32 codes: each group's int8 table derived in registers.
        if let (Granularity::PerGroup(g), Some(gen)) = (self.granularity(), gen16(self.family())) {
            if g < cols && g.is_multiple_of(32) && isa.kind() != kernels::IsaKind::Scalar {
                if self.compact_params() {
                    self.gemv_int8_compact(isa, xq, g, &gen, rows, y);
                    return;
                }
                if self.gemv_int8_groups(isa, xq, g, &gen, rows.clone(), y) {
                    return;
                }
            }
        }
        // 3-bit groups with their own `(a, q)`: each group's int8 table derived in registers.
        if let (Granularity::PerGroup(g), Some(gen)) = (self.granularity(), gen8(self.family())) {
            if g < cols
                && !self.compact_params()
                && isa.kind() != kernels::IsaKind::Scalar
                && self.gemv_int8_groups3(isa, xq, g, &gen, rows.clone(), y)
            {
                return;
            }
        }
        if bits == 4 && g >= cols && self.gemv_int8_batched(isa, xq, rows.clone(), y) {
            return;
        }
        if g < cols
            && g.is_multiple_of(kernels::QBLOCK)
            && self.gemv_int8_two_magnitudes(isa, xq, g, rows.clone(), y)
        {
            return;
        }
        if g >= cols || g.is_multiple_of(kernels::QBLOCK) {
            self.gemv_int8_runs(isa, xq, g, rows, y);
            return;
        }
        let mut table = kernels::Table::new();
        let mut t8 = kernels::I8Table::new();
        let mut loaded = usize::MAX;
        for (row, out) in rows.zip(y) {
            let packed = self.row_codes(row);
            let mut acc = 0.0f32;
            let mut start = 0;
            for i in 0..cols.div_ceil(g) {
                let group = self.group_index(row, i);
                if group != loaded {
                    table.len = self
                        .family()
                        .levels_into(self.parts.group_params(group), &mut table.v);
                    t8.set(&table);
                    loaded = group;
                }
                let len = g.min(cols - start);
                let part =
                    kernels::dot_int8_span(isa, bits, packed, start, len, &t8, &xq.xq, &xq.scales);
                acc += t8.scale * part;
                start += len;
            }
            *out = acc;
        }
    }

    /// The int8 GEMV of 3-bit groups (a multiple of 32 codes) with their own `f32` `(a, q)`:
    /// a row's parameters read at once and each group's int8 table derived from its `q` in
    /// registers (`kernels::dot3_i8_groups`), where the general loop made the group's levels
    /// in `f64` and quantized them (73 ms against 2.7 per row at 4096×4096 in groups of 32).
    /// `false` (nothing written) where no kernel does this.
    #[cfg(feature = "alloc")]
    fn gemv_int8_groups3(
        &self,
        isa: kernels::Isa,
        xq: &kernels::Int8X,
        g: usize,
        gen: &Gen8,
        rows: Range<usize>,
        y: &mut [f32],
    ) -> bool {
        let mut params = alloc::vec![[0.0f32; 2]; self.cols().div_ceil(g)];
        each_row(rows, y, |row| {
            self.row_params(row)(0, &mut params);
            kernels::dot3_i8_groups(isa, self.row_codes(row), xq, g, &params, gen)
        })
    }

    /// The int8 GEMV of 2-bit groups (a multiple of 32 codes) that each have their own `q`
    /// (exponential, no zero level, `f32` parameters), where the table of `(1, q)` changes
    /// from group to group: that table is `[−127, −r, r, 127]`, `r` the int8 of `q`, so a
    /// kernel that takes `r` per block (`dot_int8_two_magnitudes`) runs a row in one pass
    /// with no table made per group. Where none does, the table is `127·T + r·L` (`T = [−1,
    /// 0, 0, 1]` on the top magnitude's codes, `L = [0, −1, 1, 0]` on the lower one's) and the
    /// row runs twice through the plain kernel with those fixed tables. The same sums as
    /// [`gemv_int8_runs`](Self::gemv_int8_runs) up to `f32` rounding (45 ms there against
    /// 1.8 per row at 4096×4096 in groups of 32). `false` (nothing written) for other
    /// layouts.
    #[cfg(feature = "alloc")]
    fn gemv_int8_two_magnitudes(
        &self,
        isa: kernels::Isa,
        xq: &kernels::Int8X,
        g: usize,
        rows: Range<usize>,
        y: &mut [f32],
    ) -> bool {
        let family = self.family();
        let encoding = self.parts.shape().encoding;
        let param_bytes = self.parts.param_bytes();
        if family.bits != 2
            || !family.uses_q()
            || self.compact_params()
            || !matches!(self.granularity(), Granularity::PerGroup(_))
        {
            return false;
        }
        let cols = self.cols();
        let per_row = cols.div_ceil(g);
        let per_group = g / kernels::QBLOCK;
        // The scale `I8Table::set` gives the table of `(1, q)`, whose largest level is 1.
        let unit_step = 1.0f32 / 127.0;
        let mut params = alloc::vec![[0.0f32; 2]; per_row];
        let mut group_scales = alloc::vec![0.0f32; per_row];
        let mut group_lower = alloc::vec![0i8; per_row];
        let mut scales = alloc::vec![0.0f32; xq.scales.len()];
        let mut lower = alloc::vec![0i8; xq.scales.len()];
        for (row, out) in rows.zip(y) {
            encoding.read_run(param_bytes, self.group_index(row, 0), &mut params);
            // `r` as `I8Table::set` makes it from the levels of `(1, q)` (the step is 1 / 127),
            // in a loop of its own that vectorizes.
            let groups = group_scales.iter_mut().zip(group_lower.iter_mut());
            for ((scale, r), &[a, q]) in groups.zip(&params) {
                (*scale, *r) = (a * unit_step, crate::isa::portable::round_i8(q * 127.0));
            }
            spread_group_scales(&mut scales, &xq.scales, &group_scales, per_group);
            if per_group == 1 {
                // Apart, as in `spread_group_scales`: chunks of one cost 1.4× the kernel.
                for (l, &r) in lower.iter_mut().zip(&group_lower) {
                    *l = r;
                }
            } else {
                for (l, &r) in lower.chunks_mut(per_group).zip(&group_lower) {
                    l.fill(r);
                }
            }
            let packed = self.row_codes(row);
            let (x, n) = (&xq.xq, cols);
            *out = match kernels::dot_int8_two_magnitudes(isa, packed, n, x, &scales, &lower) {
                Some(v) => v,
                None => {
                    let mut top = kernels::I8Table::new();
                    let mut low = kernels::I8Table::new();
                    top.v[..4].copy_from_slice(&[-127, 0, 0, 127]);
                    low.v[..4].copy_from_slice(&[0, -1, 1, 0]);
                    (top.len, low.len) = (4, 4);
                    let head = kernels::dot_int8_span(isa, 2, packed, 0, n, &top, x, &scales);
                    for (s, &r) in scales.iter_mut().zip(&lower) {
                        *s *= f32::from(r);
                    }
                    head + kernels::dot_int8_span(isa, 2, packed, 0, n, &low, x, &scales)
                }
            };
        }
        true
    }

    /// The int8 GEMV of any width where every block of 32 codes lies in one group (one group
    /// a row, or groups of a multiple of 32 codes). Every family's levels are `a` times unit
    /// levels that depend on `q` alone, so a group's int8 table is that of `(1, q)` and its
    /// scale `a · (max|unit| / 127)`: tables are made once per distinct `q` (once per row with
    /// compact parameters), and a row's consecutive groups with equal tables run as one span,
    /// each block's `x` scale multiplied by its group's scale beforehand. Made group by group,
    /// a group of 32 codes cost 256 levels computed and quantized at 8 bits, and a kernel
    /// call's set-up at every width (BENCHMARKS.md, twelfth pass). A row's result does not
    /// depend on the rows computed with it.
    #[cfg(feature = "alloc")]
    fn gemv_int8_runs(
        &self,
        isa: kernels::Isa,
        xq: &kernels::Int8X,
        g: usize,
        rows: Range<usize>,
        y: &mut [f32],
    ) {
        let bits = self.bits();
        let cols = self.cols();
        let mut units = UnitLevels::new();
        let mut t8 = kernels::I8Table::new();
        let mut made = kernels::I8Table::new();
        let mut unit_step = 0.0f32;
        let per_row = cols.div_ceil(g);
        // Blocks of `x` per group (the last group's may be fewer).
        let per_group = g.div_ceil(kernels::QBLOCK);
        let encoding = self.parts.shape().encoding;
        let param_bytes = self.parts.param_bytes();
        // A row's parameters, then each group's scale: read and scaled in tight loops of their
        // own, not group by group beside the table checks (4× the kernel's time for 1-bit
        // groups of 32).
        let mut params = alloc::vec![[0.0f32; 2]; per_row];
        let mut group_scales = alloc::vec![0.0f32; per_row];
        // The `x` scales times their groups' scales, indexed as `xq.scales`.
        let mut scales = alloc::vec![0.0f32; xq.scales.len()];
        // Compact groups: each row's one `q` and its groups' `f16` scales read straight from
        // the bytes (through `read_run` and the `q` comparisons below, the scales took half
        // the kernel's time with 3-bit groups of 32).
        let compact =
            matches!(self.granularity(), Granularity::PerGroup(_)) && self.compact_params();
        for (row, out) in rows.zip(y) {
            let packed = self.row_codes(row);
            let mut acc = 0.0f32;
            let mut run = 0;
            // Sums the groups `run..end` with `t8`.
            let mut flush =
                |run: usize, end: usize, t8: &kernels::I8Table, group_scales: &[f32]| {
                    let blocks = run * per_group..(end * per_group).min(xq.scales.len());
                    let (out, x) = (&mut scales[blocks.clone()], &xq.scales[blocks]);
                    spread_group_scales(out, x, &group_scales[run..end], per_group);
                    let (start, len) = (run * g, (end * g).min(cols) - run * g);
                    kernels::dot_int8_span(isa, bits, packed, start, len, t8, &xq.xq, &scales)
                };
            if let Some((q, halves)) = compact
                .then(|| encoding.compact_run(param_bytes, row))
                .flatten()
            {
                if let (unit, true) = units.of(self.family(), q) {
                    t8.set(unit);
                    unit_step = t8.scale;
                }
                for (scale, h) in group_scales.iter_mut().zip(halves.chunks_exact(2)) {
                    let half = u16::from_le_bytes([h[0], h[1]]);
                    *scale = crate::isa::portable::f16_positive(half) * unit_step;
                }
                *out = flush(0, per_row, &t8, &group_scales);
                continue;
            }
            encoding.read_run(param_bytes, self.group_index(row, 0), &mut params);
            let mut i = 0;
            while i < per_row {
                let q = params[i][1];
                if let (unit, true) = units.of(self.family(), q) {
                    made.set(unit);
                    // `max|unit| / 127`, so a product per group below, not `a · max / 127`:
                    // the division was most of a 1-bit group's time.
                    unit_step = made.scale;
                    if made.len != t8.len || made.v != t8.v {
                        if i > run {
                            acc += flush(run, i, &t8, &group_scales);
                        }
                        run = i;
                        core::mem::swap(&mut t8, &mut made);
                    }
                }
                // The groups from `i` on that share this `q` (all the row's, compact).
                let same = params[i..]
                    .iter()
                    .take_while(|p| p[1].to_bits() == q.to_bits());
                let end = i + same.count();
                for (scale, p) in group_scales[i..end].iter_mut().zip(&params[i..end]) {
                    *scale = p[0] * unit_step;
                }
                i = end;
            }
            *out = acc + flush(run, per_row, &t8, &group_scales);
        }
    }

    /// Compact parameters (one `q` per row, an `f16` scale per group of `g` codes): each row's
    /// int8 table once, each group's sums scaled by its `a / 127`;
    /// [`kernels::ROWS_PER_PASS`] rows per pass over `x` ([`stream_passes`]) where a batched
    /// kernel runs, each row's result the same whatever rows run with it.
    #[cfg(feature = "alloc")]
    fn gemv_int8_compact(
        &self,
        isa: kernels::Isa,
        xq: &kernels::Int8X,
        g: usize,
        gen: &Gen16,
        rows: Range<usize>,
        y: &mut [f32],
    ) {
        const R: usize = kernels::ROWS_PER_PASS;
        let encoding = self.parts.shape().encoding;
        let params = self.parts.param_bytes();
        let mut tables = [[0i8; 16]; R];
        let mut made = [None; R];
        for pass in stream_passes::<R>(y.len()) {
            let mut scales: [&[u8]; R] = [&[]; R];
            for s in 0..pass.width {
                let Some((q, bytes)) = encoding.compact_run(params, rows.start + pass.at(s)) else {
                    return;
                };
                if made[s] != Some(q.to_bits()) {
                    tables[s] = kernels::table16_i8(isa, gen, q);
                    made[s] = Some(q.to_bits());
                }
                scales[s] = bytes;
            }
            let row = |s: usize| self.row_codes(rows.start + pass.at(s));
            let batched = if pass.width == R {
                let t: [&[i8; 16]; R] = core::array::from_fn(|s| &tables[s]);
                let rows = core::array::from_fn(row);
                kernels::dot4_i8_scaled_rows(isa, rows, xq, g, t, scales)
            } else {
                None
            };
            match batched {
                Some(out) => {
                    for (s, v) in out.into_iter().enumerate() {
                        y[pass.at(s)] = v;
                    }
                }
                None => {
                    for s in 0..pass.width {
                        y[pass.at(s)] =
                            kernels::dot4_i8_scaled(isa, row(s), xq, g, &tables[s], scales[s]);
                    }
                }
            }
        }
    }

    /// `f32` parameters per group of `g` codes (a multiple of 32): each group's int8 table
    /// derived in registers from its `q`, its sums scaled by `a / 127`;
    /// [`kernels::ROWS_PER_PASS`] rows per pass over `x` ([`stream_passes`]) where a batched
    /// kernel runs, each row's result the same whatever rows run with it. `false` where no
    /// such kernel runs (then `y` is left to the general loop).
    #[cfg(feature = "alloc")]
    fn gemv_int8_groups(
        &self,
        isa: kernels::Isa,
        xq: &kernels::Int8X,
        g: usize,
        gen: &Gen16,
        rows: Range<usize>,
        y: &mut [f32],
    ) -> bool {
        const R: usize = kernels::ROWS_PER_PASS;
        let per_row = self.granularity().groups_per_row(self.cols());
        let encoding = self.parts.shape().encoding;
        let param_bytes = self.parts.param_bytes();
        for pass in stream_passes::<R>(y.len()) {
            let row = |s: usize| self.row_codes(rows.start + pass.at(s));
            let params = |s: usize, i: usize, out: &mut [[f32; 2]]| {
                encoding.read_run(param_bytes, (rows.start + pass.at(s)) * per_row + i, out);
            };
            // A row's `(a, q)` pairs as stored, for the kernels that load them directly.
            let pairs = |s: usize| {
                encoding.f32_pairs(param_bytes, (rows.start + pass.at(s)) * per_row, per_row)
            };
            if pass.width == R {
                let packed: [&[u8]; R] = core::array::from_fn(row);
                let pairs =
                    pairs(0).map(|_| core::array::from_fn(|s| pairs(s).unwrap_or_default()));
                let Some(out) =
                    kernels::dot4_i8_groups_rows(isa, packed, xq, g, gen, params, pairs)
                else {
                    return false;
                };
                for (s, v) in out.into_iter().enumerate() {
                    y[pass.at(s)] = v;
                }
            } else {
                let pairs = pairs(0).map(|p| [p]);
                let Some([v]) =
                    kernels::dot4_i8_groups_rows(isa, [row(0)], xq, g, gen, params, pairs)
                else {
                    return false;
                };
                y[pass.at(0)] = v;
            }
        }
        true
    }

    /// 4-bit rows of one group each, [`kernels::ROWS_PER_PASS`] rows per pass over `x`;
    /// `false` where no batched kernel runs (then `y` is left to the general loop). Each
    /// row's result is the general loop's up to `f32` summation order, and does not depend
    /// on where `rows` starts or which rows share its pass. The passes are those of
    /// [`stream_passes`].
    #[cfg(feature = "alloc")]
    fn gemv_int8_batched(
        &self,
        isa: kernels::Isa,
        xq: &kernels::Int8X,
        rows: Range<usize>,
        y: &mut [f32],
    ) -> bool {
        const R: usize = kernels::ROWS_PER_PASS;
        let gen = gen16(self.family());
        let mut table = kernels::Table::new();
        let mut t8 = kernels::I8Table::new();
        // Each slot's table, its scale, and the group it was made for: a family whose int8
        // table follows from `q` alone (scale `a / 127`) gets it derived in registers, any
        // other from its levels.
        let mut tables = [[0i8; 16]; R];
        let mut scale = [0.0f32; R];
        let mut made = [None; R];
        for pass in stream_passes::<R>(y.len()) {
            for s in 0..pass.width {
                let group = self.group_index(rows.start + pass.at(s), 0);
                let p = self.parts.group_params(group);
                match &gen {
                    Some(gen) => {
                        if made[s] != Some(p.q.to_bits()) {
                            tables[s] = kernels::table16_i8(isa, gen, p.q);
                            made[s] = Some(p.q.to_bits());
                        }
                        scale[s] = p.a / 127.0;
                    }
                    None => {
                        table.len = self.family().levels_into(p, &mut table.v);
                        t8.set(&table);
                        tables[s] = t8.t16();
                        scale[s] = t8.scale;
                    }
                }
            }
            let row = |s: usize| self.row_codes(rows.start + pass.at(s));
            if pass.width == R {
                let t: [&[i8; 16]; R] = core::array::from_fn(|s| &tables[s]);
                let Some(out) = kernels::dot4_i8_rows(isa, core::array::from_fn(row), t, xq) else {
                    return false;
                };
                for (s, v) in out.into_iter().enumerate() {
                    y[pass.at(s)] = scale[s] * v;
                }
            } else {
                let Some([v]) = kernels::dot4_i8_rows(isa, [row(0)], [&tables[0]], xq) else {
                    return false;
                };
                y[pass.at(0)] = scale[0] * v;
            }
        }
        true
    }

    /// `Y = W·X` for a batch of `n` columns. `x` is the `cols × n` matrix X and `y` the `rows ×
    /// n` matrix Y, both row-major: `x[j·n + c]` is input `j` of column `c`, `y[r·n + c]` output
    /// `r` of column `c`. That is the layout an im2col convolution uses (a column per output
    /// position), and column `c` alone is a [`gemv`](Self::gemv)'s `x` and `y`.
    ///
    /// Each tile of W (a few rows by a block of columns) is decoded once per call into a panel
    /// on the stack and multiplied with every column of X by a register-blocked kernel, so the
    /// packed codes are read once whatever `n` is. Allocates nothing. `n == 1` runs the GEMV;
    /// `n == 0` has nothing to compute. Every entry equals the matching GEMV's to within `f32`
    /// summation error (`1e-5 · Σ_j |W[r,j]·X[j,c]|` for the shapes the tests cover), but
    /// not bit for bit: the sums run in another order. With the `parallel` feature a product
    /// of at least 8 M multiply-adds is split into runs of rows over threads, each row's
    /// result bit for bit the single-threaded one.
    pub fn gemm(&self, x: &[f32], n: usize, y: &mut [f32]) -> Result<()> {
        #[cfg(feature = "parallel")]
        let threads = crate::parallel::threads_for(
            self.rows().saturating_mul(self.cols()).saturating_mul(n),
            crate::parallel::GEMM_MIN_MACS,
        );
        #[cfg(not(feature = "parallel"))]
        let threads = 1;
        self.gemm_on(x, n, 0..self.rows(), y, threads)
    }

    /// [`gemm`](Self::gemm) for a range of rows (as [`gemv_rows`](Self::gemv_rows)): `y`
    /// holds `rows.len() × n` values, row-major, and equals the matching rows of `gemm`'s
    /// output exactly. Runs on the calling thread and allocates nothing.
    pub fn gemm_rows(&self, x: &[f32], n: usize, rows: Range<usize>, y: &mut [f32]) -> Result<()> {
        self.gemm_on(x, n, rows, y, 1)
    }

    /// [`gemm`](Self::gemm) on exactly `threads` threads (1: the serial path; without the
    /// `parallel` feature always serial), whatever the product's size. A test hook; not part
    /// of the stable API.
    #[cfg(feature = "test-hooks")]
    pub fn gemm_with_threads(
        &self,
        x: &[f32],
        n: usize,
        y: &mut [f32],
        threads: usize,
    ) -> Result<()> {
        self.gemm_on(x, n, 0..self.rows(), y, threads)
    }

    pub(crate) fn gemm_on(
        &self,
        x: &[f32],
        n: usize,
        rows: Range<usize>,
        y: &mut [f32],
        threads: usize,
    ) -> Result<()> {
        self.check_gemm(x, n, &rows, y)?;
        #[cfg(not(feature = "parallel"))]
        let _ = threads;
        #[cfg(feature = "parallel")]
        if threads > 1 {
            let first = rows.start;
            let count = rows.len();
            return crate::parallel::for_each_chunk(
                y,
                count,
                n,
                kernels::ROWS_PER_PANEL,
                threads,
                |r, y| {
                    self.gemm_serial(x, n, first + r.start..first + r.end, y);
                    Ok(())
                },
            );
        }
        self.gemm_serial(x, n, rows, y);
        Ok(())
    }

    /// The GEMM on the calling thread; shapes checked by the caller.
    fn gemm_serial(&self, x: &[f32], n: usize, rows: Range<usize>, y: &mut [f32]) {
        if n == 1 {
            // A GEMV's `x` and `y` are X's and Y's one column: the same slices.
            self.gemv_serial(kernels::Isa::detect(), x, rows, y);
            return;
        }
        let src = kernels::GemmSource {
            bits: self.bits(),
            cols: self.cols(),
            group_len: self.granularity().group_len(self.cols()),
            row: |r: usize| self.row_codes(r),
            group: |r: usize, i: usize| self.group_index(r, i),
            load: |group: usize, table: &mut kernels::Table| {
                table.len = self
                    .family()
                    .levels_into(self.parts.group_params(group), &mut table.v);
            },
            gen: gen16(self.family()),
            params: |first: usize, out: &mut [[f32; 2]]| {
                let encoding = self.parts.shape().encoding;
                encoding.read_run(self.parts.param_bytes(), first, out);
            },
        };
        kernels::gemm_rows(kernels::Isa::detect(), &src, x, n, rows, y);
    }

    /// Checks the shapes of a GEMM call.
    pub(crate) fn check_gemm(
        &self,
        x: &[f32],
        n: usize,
        rows: &Range<usize>,
        y: &[f32],
    ) -> Result<()> {
        if rows.start > rows.end || rows.end > self.rows() {
            return Err(Error::RowRange {
                start: rows.start,
                end: rows.end,
                rows: self.rows(),
            });
        }
        let x_len = self.cols().checked_mul(n).ok_or(Error::ShapeOverflow {
            rows: self.cols(),
            cols: n,
        })?;
        let y_len = rows.len().checked_mul(n).ok_or(Error::ShapeOverflow {
            rows: rows.len(),
            cols: n,
        })?;
        expect_len("gemm input x (cols x n)", x_len, x.len())?;
        expect_len("gemm output y (rows x n)", y_len, y.len())
    }

    /// The GEMV of a 3- or 4-bit tensor in groups (a multiple of 8 or 16 codes, shorter
    /// than a row) on a path that derives each group's table in registers from its
    /// parameters, so groups cost no table rebuild; at 4 bits with a `plan` (from
    /// `DotPlan::for_scaled`) through the lane-permuted kernel. `false` (nothing written)
    /// where that path does not apply. Shapes are checked by the caller.
    pub(crate) fn gemv_derived(
        &self,
        isa: kernels::Isa,
        x: &[f32],
        rows: Range<usize>,
        y: &mut [f32],
        #[cfg(feature = "alloc")] plan: Option<&kernels::DotPlan<'_>>,
    ) -> bool {
        let cols = self.cols();
        let Granularity::PerGroup(g) = self.granularity() else {
            return false;
        };
        if g >= cols || isa.kind() == kernels::IsaKind::Scalar {
            return false;
        }
        if let Some(gen) = gen8(self.family()) {
            return each_row(rows, y, |row| {
                kernels::dot3_groups(isa, self.row_codes(row), x, g, &gen, self.row_params(row))
            });
        }
        let Some(gen) = gen16(self.family()) else {
            return false;
        };
        each_row(rows, y, |row| {
            let (packed, read) = (self.row_codes(row), self.row_params(row));
            #[cfg(feature = "alloc")]
            if let Some(plan) = plan {
                return plan.dot4_groups(packed, g, &gen, read);
            }
            kernels::dot4_groups(isa, packed, x, g, &gen, read)
        })
    }

    /// The GEMV of a 1- or 2-bit tensor in groups with their own `f32` parameters through
    /// `plan` (see `DotPlan::dot_narrow_groups`): parameters read a run at a time and each
    /// group's levels derived from them in registers, with none of the per-group set-up of
    /// the general loop ([`gemv_with`](Self::gemv_with)). `false` (nothing written) where it
    /// does not apply.
    #[cfg(feature = "alloc")]
    pub(crate) fn gemv_narrow_groups(
        &self,
        rows: Range<usize>,
        y: &mut [f32],
        plan: &kernels::DotPlan<'_>,
    ) -> bool {
        let cols = self.cols();
        let Granularity::PerGroup(g) = self.granularity() else {
            return false;
        };
        if g >= cols || self.compact_params() {
            return false;
        }
        let Some(gen) = narrow_gen(self.family()) else {
            return false;
        };
        each_row(rows, y, |row| {
            plan.dot_narrow_groups(self.row_codes(row), g, self.row_params(row), &gen)
        })
    }

    /// The GEMV of a tensor with compact parameters: a row's groups share its `q`, so its
    /// level table is built once at `a = 1` and each group's sum is scaled by its own `a`
    /// (see `kernels::dot_scaled`); with a `plan` (from `DotPlan::for_scaled`) through the
    /// lane-permuted kernel. `false` (nothing written) for `f32` parameters. Shapes are
    /// checked by the caller.
    pub(crate) fn gemv_compact(
        &self,
        isa: kernels::Isa,
        x: &[f32],
        rows: Range<usize>,
        y: &mut [f32],
        #[cfg(feature = "alloc")] plan: Option<&kernels::DotPlan<'_>>,
    ) -> bool {
        let encoding = self.parts.shape().encoding;
        if encoding.compact_run(self.parts.param_bytes(), 0).is_none() {
            return false;
        }
        let bits = self.bits();
        let g = self.granularity().group_len(self.cols());
        let per_tensor = self.granularity() == Granularity::PerTensor;
        #[cfg(feature = "alloc")]
        if let Some(plan) = plan {
            if self.gemv_compact_planes(rows.clone(), y, plan) {
                return true;
            }
        }
        let mut units = UnitLevels::new();
        for (row, out) in rows.zip(y.iter_mut()) {
            let run = if per_tensor { 0 } else { row };
            let Some((q, scales)) = encoding.compact_run(self.parts.param_bytes(), run) else {
                return false;
            };
            let (unit, _) = units.of(self.family(), q);
            let packed = self.row_codes(row);
            #[cfg(feature = "alloc")]
            if let Some(plan) = plan {
                *out = plan.dot_scaled(packed, g, unit, scales);
                continue;
            }
            *out = kernels::dot_scaled(isa, bits, packed, x, g, unit, scales);
        }
        true
    }

    /// [`gemv_compact`](Self::gemv_compact) of 4-bit rows on the AVX2 byte-plane kernel
    /// (`plan` from [`DotPlan::for_compact`](kernels::DotPlan)): the unit tables of eight
    /// rows at a time from their `q` in registers (`Avx2::row_tables16` at `a = 1`, the bits
    /// of `Family::levels_into`), where each row's went through `levels_into` and a table
    /// in memory. Same bits as that path. `false` where this does not apply (decided before
    /// anything is written), or at a row without its compact run, which validation rules
    /// out (the caller's fallback then writes every row).
    #[cfg(feature = "alloc")]
    pub(crate) fn gemv_compact_planes(
        &self,
        rows: Range<usize>,
        y: &mut [f32],
        plan: &kernels::DotPlan,
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let (bits, cols) = (self.bits(), self.cols());
            let g = self.granularity().group_len(cols);
            let (Some(gen), Some((t, xr))) = (gen16(self.family()), plan.scaled_runs(g)) else {
                return false;
            };
            if bits != 4 {
                return false;
            }
            let done = xr.len();
            // The plan's: the tails take the path the stored-table loop's plan gives them.
            let isa = plan.isa();
            let levels = self.family().level_count();
            let mut table = kernels::Table::new();
            let mut scales: [&[u8]; 8] = [&[]; 8];
            for (pass, out) in y.chunks_mut(8).enumerate() {
                let first = rows.start + pass * 8;
                // Checked at validation: every compact row has its run. (Earlier passes'
                // rows are the fallback's bits too.)
                let Some(params) = self.compact_params8(first, &mut scales[..out.len()]) else {
                    return false;
                };
                let tables = t.row_tables16(&params, &gen);
                for (k, o) in out.iter_mut().enumerate() {
                    let row = self.row_codes(first + k);
                    let mut sum =
                        t.dot_planes4_scaled(&row[..done / 2], &tables[k], xr, g, scales[k]);
                    if done < cols {
                        table.set(&tables[k][..levels]);
                        let rest = &scales[k][2 * (done / g)..];
                        let x = &plan.x()[done..];
                        sum += kernels::dot_scaled_from(isa, bits, row, done, x, g, &table, rest);
                    }
                    *o = sum;
                }
            }
            true
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (rows, y, plan);
            false
        }
    }

    /// Checks the shapes of a GEMV call.
    pub(crate) fn check_gemv(&self, x: &[f32], rows: &Range<usize>, y: &[f32]) -> Result<()> {
        expect_len("gemv input x", self.cols(), x.len())?;
        if rows.start > rows.end || rows.end > self.rows() {
            return Err(Error::RowRange {
                start: rows.start,
                end: rows.end,
                rows: self.rows(),
            });
        }
        expect_len("gemv output y", rows.len(), y.len())
    }

    /// The GEMV loop over rows and groups, `R` rows per pass, with the per-group dot product
    /// supplied: the view uses the allocation-free kernel one row at a time, an owned tensor
    /// one that prepares `x` once per call and shares its loads over several rows.
    /// `dot(rows, tables, live, start, len)` returns, for each `k < live`, the sum of
    /// `tables[k][code j of rows[k]]·x[j]` for `j` in `start..start + len`; the entries from
    /// `live` on repeat the last live row (so a kernel may compute them, and must not depend
    /// on them). Shapes are checked by [`check_gemv`](Self::check_gemv).
    pub(crate) fn gemv_with<const R: usize>(
        &self,
        rows: Range<usize>,
        y: &mut [f32],
        dot: impl Fn(&[&[u8]; R], &[&kernels::Table; R], usize, usize, usize) -> [f32; R],
    ) {
        let g = self.granularity().group_len(self.cols());
        let mut tables: [kernels::Table; R] = core::array::from_fn(|_| kernels::Table::new());
        let mut loaded = [usize::MAX; R];
        let mut units: [UnitLevels; R] = core::array::from_fn(|_| UnitLevels::new());
        for (pass, out) in y.chunks_mut(R).enumerate() {
            let first = rows.start + pass * R;
            let live = out.len();
            let row_of = |k: usize| first + k.min(live - 1);
            let packed: [&[u8]; R] = core::array::from_fn(|k| {
                let row = row_of(k);
                self.row_codes(row)
            });
            let mut acc = [0.0f32; R];
            let mut start = 0;
            for i in 0..self.cols().div_ceil(g) {
                for (k, (table, loaded)) in tables.iter_mut().zip(&mut loaded).enumerate() {
                    let group = self.group_index(row_of(k), i);
                    if k < live && group != *loaded {
                        let Params { a, q } = self.parts.group_params(group);
                        let (unit, _) = units[k].of(self.family(), q);
                        for (level, &u) in table.v[..unit.len].iter_mut().zip(&unit.v[..unit.len]) {
                            *level = a * u;
                        }
                        table.len = unit.len;
                        *loaded = group;
                    }
                }
                let refs: [&kernels::Table; R] = core::array::from_fn(|k| &tables[k.min(live - 1)]);
                let len = g.min(self.cols() - start);
                let part = dot(&packed, &refs, live, start, len);
                for (a, p) in acc.iter_mut().zip(part) {
                    *a += p;
                }
                start += len;
            }
            out.copy_from_slice(&acc[..live]);
        }
    }

    /// 4-bit rows with one table each (per row or per tensor, `f32` parameters) on the AVX2
    /// byte-plane kernel, `plan` from [`DotPlan::new`](kernels::DotPlan): the tables of
    /// eight rows at a time come from their `(a, q)` in registers (`Avx2::row_tables16`,
    /// the bits of `Family::levels_into`), where [`gemv_with`](Self::gemv_with) built each
    /// row's through `levels_into` and a table in memory, about 45 % of a 1024-code row's
    /// instructions. Same bits as that path. `false` where this does not apply, with
    /// nothing written.
    #[cfg(feature = "alloc")]
    pub(crate) fn gemv_row_planes(
        &self,
        rows: Range<usize>,
        y: &mut [f32],
        plan: &kernels::DotPlan,
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let one_table = matches!(
                self.granularity(),
                Granularity::PerRow | Granularity::PerTensor
            );
            if !one_table || self.compact_params() || self.bits() != 4 {
                return false;
            }
            let (Some(gen), Some((t, xr))) = (gen16(self.family()), plan.row_planes()) else {
                return false;
            };
            let levels = self.family().level_count();
            let (cols, whole) = (self.cols(), xr.len());
            // The codes after the whole runs: a row's table in memory, as `dot` takes it.
            let mut table = kernels::Table::new();
            for (pass, out) in y.chunks_mut(8).enumerate() {
                let first = rows.start + pass * 8;
                let tables = t.row_tables16(&self.row_params8(first, out.len()), &gen);
                for (k, (o, t16)) in out.iter_mut().zip(&tables).enumerate() {
                    let row = self.row_codes(first + k);
                    let mut sum = t.dot_planes4(&row[..whole / 2], t16, xr);
                    if whole < cols {
                        table.set(&t16[..levels]);
                        sum += plan.dot(row, whole, cols - whole, &table);
                    }
                    *o = sum;
                }
            }
            true
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (rows, y, plan);
            false
        }
    }

    /// The `(1, q)` of rows `first .. first + n` (at most 8, `n` the length of `scales`) in
    /// compact groups, for their unit tables, with each row's group scales into `scales`;
    /// lanes past `n` get a harmless `q`. `None` where a row has no compact run (validation
    /// rules that out).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn compact_params8<'s>(
        &'s self,
        first: usize,
        scales: &mut [&'s [u8]],
    ) -> Option<[[f32; 2]; 8]> {
        let (encoding, bytes) = (self.parts.shape().encoding, self.parts.param_bytes());
        let per_tensor = self.granularity() == Granularity::PerTensor;
        let mut params = [[1.0f32, 0.5]; 8];
        for (k, (p, sc)) in params.iter_mut().zip(scales).enumerate() {
            let run = if per_tensor { 0 } else { first + k };
            let (q, row_scales) = encoding.compact_run(bytes, run)?;
            *p = [1.0, q];
            *sc = row_scales;
        }
        Some(params)
    }

    /// The `(a, q)` of rows `first .. first + n` (at most 8) of a tensor with one table a
    /// row (per row, or per tensor: every row's the same), `f32` parameters; lanes past
    /// `n` get harmless ones.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn row_params8(&self, first: usize, n: usize) -> [[f32; 2]; 8] {
        let mut params = [[1.0f32, 0.5]; 8];
        if self.granularity() == Granularity::PerTensor {
            let Params { a, q } = self.parts.group_params(0);
            params = [[a, q]; 8];
        } else {
            let (encoding, bytes) = (self.parts.shape().encoding, self.parts.param_bytes());
            encoding.read_run(bytes, self.group_index(first, 0), &mut params[..n.min(8)]);
        }
        params
    }

    #[inline]
    fn group_index(&self, row: usize, group_in_row: usize) -> usize {
        match self.granularity() {
            Granularity::PerTensor => 0,
            layout => layout.first_group_of_row(row, self.cols()) + group_in_row,
        }
    }

    /// Row `row`'s group parameters a run at a time, as the group kernels read them:
    /// `read(i, out)` writes those of the row's groups `i .. i + out.len()`.
    #[inline]
    fn row_params(&self, row: usize) -> impl Fn(usize, &mut [[f32; 2]]) + '_ {
        let (encoding, bytes) = (self.parts.shape().encoding, self.parts.param_bytes());
        let first = self.group_index(row, 0);
        move |i, out| encoding.read_run(bytes, first + i, out)
    }
}

/// Writes `dot(row)` for every row of `rows` to `y`. `false` at the first row `dot` does not
/// apply to (`None`): a kernel's path depends on the ISA, the plan and the group size, not on
/// the row, so the first row decides for all and nothing has been written.
fn each_row(rows: Range<usize>, y: &mut [f32], mut dot: impl FnMut(usize) -> Option<f32>) -> bool {
    for (row, out) in rows.zip(y.iter_mut()) {
        match dot(row) {
            Some(v) => *out = v,
            None => return false,
        }
    }
    true
}

fn expect_len(what: &'static str, expected: usize, actual: usize) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::BufferLength {
            what,
            expected,
            actual,
        })
    }
}

/// One pass of a batched int8 GEMV: `width` rows (the kernel's `R`, or one), slot `s` holding
/// row `at(s)` of the range.
#[cfg(feature = "alloc")]
#[derive(Clone, Copy)]
struct StreamPass {
    first: usize,
    stride: usize,
    width: usize,
}

#[cfg(feature = "alloc")]
impl StreamPass {
    fn at(self, s: usize) -> usize {
        self.first + s * self.stride
    }
}

/// The passes of an `R`-row int8 GEMV over `len` rows: pass `k` takes row `k` of each of the
/// `R` stretches of `len / R` rows, the last `len % R` rows go alone. Each of the kernel's `R`
/// streams then runs through consecutive rows, one contiguous stretch of memory, which the
/// hardware prefetchers keep following across rows and pages and into which the kernels'
/// own prefetch reaches past a row's end; `R` neighbouring rows per pass would start `R` new
/// short streams every pass.
#[cfg(feature = "alloc")]
fn stream_passes<const R: usize>(len: usize) -> impl Iterator<Item = StreamPass> {
    let stride = len / R;
    let whole = (0..stride).map(move |first| StreamPass {
        first,
        stride,
        width: R,
    });
    let lone = (R * stride..len).map(|first| StreamPass {
        first,
        stride: 0,
        width: 1,
    });
    whole.chain(lone)
}

/// `out[b] = x[b] · groups[b / per_group]`: each block's `x` scale times its group's scale,
/// for the int8 loops that run a row's groups as one kernel call. Groups of one block have a
/// loop of their own, which vectorizes; the chunked one took ~40 instructions a group of 32
/// (callgrind).
#[cfg(feature = "alloc")]
fn spread_group_scales(out: &mut [f32], x: &[f32], groups: &[f32], per_group: usize) {
    if per_group == 1 {
        for ((s, &x), &scale) in out.iter_mut().zip(x).zip(groups) {
            *s = x * scale;
        }
    } else {
        let runs = out
            .chunks_mut(per_group)
            .zip(x.chunks(per_group))
            .zip(groups);
        for ((out, x), &scale) in runs {
            for (s, &x) in out.iter_mut().zip(x) {
                *s = x * scale;
            }
        }
    }
}

/// A family's levels of `(1, q)` for the last `q` asked for. Every family's levels are `a`
/// times these, to the bit (`levels_into` multiplies exact unit magnitudes by `a`; a property
/// test in `discretize` checks it), so a loop over groups makes them once per distinct `q`:
/// once per row with compact parameters, where building them per group cost 256 levels in
/// `f64` at 8 bits.
struct UnitLevels {
    table: kernels::Table,
    q: Option<u32>,
}

impl UnitLevels {
    fn new() -> Self {
        UnitLevels {
            table: kernels::Table::new(),
            q: None,
        }
    }

    /// The levels of `(1, q)`, and whether they were made by this call (`q` differs from the
    /// last one's).
    fn of(&mut self, family: Family, q: f32) -> (&kernels::Table, bool) {
        let fresh = self.q != Some(q.to_bits());
        if fresh {
            self.table.len = family.levels_into(Params { a: 1.0, q }, &mut self.table.v);
            self.q = Some(q.to_bits());
        }
        (&self.table, fresh)
    }
}

/// How a 1- or 2-bit family's levels follow from `(a, q)` (see `GenNarrow`); `None` at
/// other widths.
fn narrow_gen(family: Family) -> Option<GenNarrow> {
    if !matches!(family.bits, 1 | 2) {
        return None;
    }
    let (unit, n) = unit_levels_at_one(family);
    // Four levels `[−1, −low, low, 1]`: `low` is `q` where `q` moves the levels.
    let low_unit = (!family.uses_q()).then_some(unit[n / 2]);
    GenNarrow::new(n, low_unit)
}

/// `family`'s levels of `(1, 1)` and their count: the fixed unit levels of the families
/// whose levels `q` does not move (linear, or one magnitude).
fn unit_levels_at_one(family: Family) -> ([f32; 256], usize) {
    let mut unit = [0.0f32; 256];
    let n = family.levels_into(Params { a: 1.0f32, q: 1.0 }, &mut unit);
    (unit, n)
}

/// The first `N` of [`unit_levels_at_one`], where the family has at most `N` levels: the
/// `Scaled` tables of the derived-table generators.
fn fixed_unit_table<const N: usize>(family: Family) -> Option<[f32; N]> {
    let (unit, n) = unit_levels_at_one(family);
    (n <= N).then(|| core::array::from_fn(|i| unit[i]))
}

/// How a 3-bit family's 8-entry tables follow from `(a, q)` (see `Gen8`); `None` at other
/// widths.
fn gen8(family: Family) -> Option<Gen8> {
    if family.bits != 3 {
        return None;
    }
    match family.scheme {
        Scheme::Exponential => Some(Gen8::Exp {
            zero: family.has_zero(),
        }),
        Scheme::Linear => fixed_unit_table(family).map(Gen8::Scaled),
    }
}

/// How a group's 4-bit table follows from `(a, q)` for `family`, when it fits 16 entries in
/// the order the derived-table kernels produce.
fn gen16(family: Family) -> Option<Gen16> {
    if family.bits != 4 {
        return None;
    }
    match family.scheme {
        Scheme::Exponential => {
            let zero = family.has_zero();
            let k = family.magnitude_count();
            (k == 8 - usize::from(zero)).then_some(Gen16::Exp { zero })
        }
        Scheme::Linear => fixed_unit_table(family).map(Gen16::Scaled),
    }
}

/// The tables derived from `(a, q)` at 1, 2 and 3 bits (`GenNarrow`, `Gen8`) and the kernels
/// that use them, against the codebooks' levels and their definition in `f64`.
#[cfg(all(test, feature = "alloc"))]
mod derived_narrow_tests {
    use super::{gen8, narrow_gen};
    use crate::discretize::Family;
    use crate::isa::portable;
    use crate::kernels::{dot3_groups, DotPlan, Isa};
    use crate::{Params, Scheme};
    use alloc::vec::Vec;

    /// Both schemes, zero level on and off, at `bits`.
    fn families(bits: u8) -> Vec<Family> {
        let mut out = Vec::new();
        for scheme in [Scheme::Exponential, Scheme::Linear] {
            for zero in [false, true] {
                out.push(Family::new(scheme, bits, zero).unwrap());
            }
        }
        out
    }

    /// The `(a, q)` the table checks try.
    const PARAMS: [(f32, f32); 4] = [(1.0, 0.5), (0.037, 0.71), (3.5, 0.93), (1e-3, 0.2)];

    /// A random row: `cols` codes below `levels` packed at `bits`, its `x` in `[-0.5, 0.5)`
    /// and an `(a, q)` per group of `g`.
    struct Case {
        codes: Vec<u8>,
        row: Vec<u8>,
        x: Vec<f32>,
        params: Vec<[f32; 2]>,
    }

    impl Case {
        fn random(
            next: &mut impl FnMut() -> u32,
            bits: u8,
            levels: usize,
            g: usize,
            cols: usize,
        ) -> Case {
            let codes: Vec<u8> = (0..cols).map(|_| (next() % levels as u32) as u8).collect();
            let mut row = alloc::vec![0u8; (cols * usize::from(bits)).div_ceil(8)];
            portable::pack_reference(&codes, bits, &mut row);
            let x = (0..cols)
                .map(|_| next() as f32 / u32::MAX as f32 - 0.5)
                .collect();
            let params = (0..cols.div_ceil(g))
                .map(|_| crate::test_rng::group_params(next))
                .collect();
            Case {
                codes,
                row,
                x,
                params,
            }
        }

        /// `Σ table(a, q)[code j] · x[j]` in `f64`, and the sum of the terms' magnitudes.
        fn definition<const N: usize>(
            &self,
            g: usize,
            table: impl Fn(f32, f32) -> [f32; N],
        ) -> (f64, f64) {
            let (mut exact, mut magnitude) = (0.0f64, 0.0f64);
            for (j, (&c, &xj)) in self.codes.iter().zip(&self.x).enumerate() {
                let [a, q] = self.params[j / g];
                let term = f64::from(table(a, q)[usize::from(c)]) * f64::from(xj);
                exact += term;
                magnitude += term.abs();
            }
            (exact, magnitude)
        }

        fn read(&self) -> impl Fn(usize, &mut [[f32; 2]]) + '_ {
            |i, out| out.copy_from_slice(&self.params[i..i + out.len()])
        }
    }

    #[test]
    fn narrow_tables_are_the_codebooks_levels_to_the_bit() {
        for family in families(1).into_iter().chain(families(2)) {
            let gen = narrow_gen(family).expect("every 1- and 2-bit family has a generator");
            for (a, q) in PARAMS {
                let mut levels = [0.0f32; 256];
                let n = family.levels_into(Params { a, q }, &mut levels);
                let t = portable::table_narrow(&gen, a, q);
                for k in 0..4 {
                    let want = if k < n { levels[k] } else { 0.0 };
                    assert_eq!(t[k].to_bits(), want.to_bits(), "{family:?} a={a} q={q} {k}");
                }
            }
        }
    }

    /// `table(a, q)` holds `family`'s levels (0 past them) within `eps · a`, for each of
    /// [`PARAMS`]: the derived tables take powers of `q` in `f32`, the codebook in `f64`.
    pub(super) fn assert_near_levels<const N: usize>(
        family: Family,
        eps: f32,
        table: impl Fn(f32, f32) -> [f32; N],
    ) {
        for (a, q) in PARAMS {
            let mut levels = [0.0f32; 256];
            let n = family.levels_into(Params { a, q }, &mut levels);
            let t = table(a, q);
            for k in 0..N {
                let want = if k < n { levels[k] } else { 0.0 };
                assert!(
                    (t[k] - want).abs() <= eps * a,
                    "{family:?} a={a} q={q} level {k}: {} vs {want}",
                    t[k]
                );
            }
        }
    }

    #[test]
    fn derived_3bit_tables_are_the_codebooks_levels() {
        for family in families(3) {
            let gen = gen8(family).expect("every 3-bit family has a derived table");
            assert_near_levels(family, 2.0 * f32::EPSILON, |a, q| {
                portable::table8(&gen, a, q)
            });
        }
    }

    /// The 1- and 2-bit group kernels (groups of whole blocks, blocks of whole groups, and
    /// the groups after the last whole block) against their definition in `f64`, within
    /// `2e-6 · Σ|terms|`: tight enough that a 0.1 % error in either magnitude of the groups
    /// fails it.
    #[test]
    fn narrow_group_kernels_match_their_definition() {
        let mut next = crate::test_rng::xorshift32(0x5eed_0002);
        let mut ran = 0;
        for family in families(1).into_iter().chain(families(2)) {
            let gen = narrow_gen(family).unwrap();
            let bits = family.bits;
            for (g, cols) in [
                (16usize, 4096usize),
                (32, 4096),
                (32, 1000),
                (64, 2048 + 96),
                (128, 4096 + 7),
                (256, 1024),
                (512, 4096 + 300),
                (48, 960),
            ] {
                let case = Case::random(&mut next, bits, family.level_count(), g, cols);
                let (exact, magnitude) =
                    case.definition(g, |a, q| portable::table_narrow(&gen, a, q));
                for isa in Isa::available() {
                    let plan = DotPlan::for_scaled(isa, bits, &case.x);
                    let Some(got) = plan.dot_narrow_groups(&case.row, g, case.read(), &gen) else {
                        continue;
                    };
                    ran += 1;
                    assert!(
                        (f64::from(got) - exact).abs() <= 2e-6 * magnitude,
                        "{isa} {family:?} g={g} cols={cols}: {got} vs {exact}"
                    );
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        if Isa::detect().avx2().is_some() {
            assert!(ran > 0, "the narrow group kernels did not run");
        }
        let _ = ran;
    }

    /// The SIMD 3-bit group kernels against the scalar definition: groups of 8, 32, 40 and
    /// 128 codes, a short last group, rows whose last group ends at the end of the bytes.
    #[test]
    fn derived_3bit_group_kernels_match_the_reference() {
        let mut next = crate::test_rng::xorshift32(0x3b17_5eed);
        let mut ran = 0;
        for family in families(3) {
            let gen = gen8(family).unwrap();
            for (g, cols) in [
                (8usize, 64usize),
                (32, 4096),
                (32, 1000),
                (40, 1000),
                (128, 4100),
            ] {
                let case = Case::random(&mut next, 3, family.level_count(), g, cols);
                let (exact, magnitude) = case.definition(g, |a, q| portable::table8(&gen, a, q));
                for isa in Isa::available() {
                    let Some(got) = dot3_groups(isa, &case.row, &case.x, g, &gen, case.read())
                    else {
                        continue;
                    };
                    ran += 1;
                    assert!(
                        (f64::from(got) - exact).abs() <= 2e-6 * magnitude,
                        "{isa} {family:?} g={g} cols={cols}: {got} vs {exact}"
                    );
                }
            }
        }
        assert!(ran >= 20, "the scalar path always runs");
    }
}

#[cfg(all(test, feature = "alloc"))]
mod derived_table_tests {
    use super::gen16;
    use crate::discretize::Family;
    use crate::isa::portable;
    use crate::kernels::{dot4_groups, DotPlan, Isa};
    use crate::Scheme;

    fn families() -> [Family; 4] {
        [
            Family::new(Scheme::Exponential, 4, false).unwrap(),
            Family::new(Scheme::Exponential, 4, true).unwrap(),
            Family::new(Scheme::Linear, 4, false).unwrap(),
            Family::new(Scheme::Linear, 4, true).unwrap(),
        ]
    }

    #[test]
    fn derived_tables_are_the_codebooks_levels() {
        for family in families() {
            let gen = gen16(family).expect("every 4-bit family has a derived table");
            super::derived_narrow_tests::assert_near_levels(family, 4.0 * f32::EPSILON, |a, q| {
                portable::table16(&gen, a, q)
            });
        }
    }

    #[test]
    fn derived_table_kernels_match_the_reference() {
        let mut s = 0x1234_5678_u32;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        let fast: alloc::vec::Vec<Isa> = Isa::available()
            .filter(|i| i.kind() != crate::kernels::IsaKind::Scalar)
            .collect();
        for family in families() {
            let gen = gen16(family).unwrap();
            let levels = family.level_count() as u32;
            // Groups of whole permuted blocks (64, 128, 192 codes) and of whole quad blocks
            // (32, 96, 160), with and without a short last group, take the plans' kernels
            // too.
            for (g, cols) in [
                (16usize, 64usize),
                (32, 1000),
                (32, 1024),
                (96, 4000),
                (160, 160),
                (128, 1024),
                (32, 70),
                (48, 4096),
                (64, 4160),
                (128, 1000),
                (192, 4224),
                (64, 64),
            ] {
                let codes: alloc::vec::Vec<u8> =
                    (0..cols).map(|_| (next() % levels) as u8).collect();
                let mut row = alloc::vec![0u8; cols.div_ceil(2)];
                portable::pack_reference(&codes, 4, &mut row);
                let x: alloc::vec::Vec<f32> = (0..cols)
                    .map(|_| next() as f32 / u32::MAX as f32 - 0.5)
                    .collect();
                let params: alloc::vec::Vec<[f32; 2]> = (0..cols.div_ceil(g))
                    .map(|_| crate::test_rng::group_params(&mut next))
                    .collect();
                let read =
                    |i: usize, out: &mut [[f32; 2]]| out.copy_from_slice(&params[i..i + out.len()]);
                let reference = dot4_groups(Isa::scalar(), &row, &x, g, &gen, read).unwrap();
                let magnitude: f32 = x.iter().map(|v| v.abs()).sum::<f32>() * 2.0;
                for &isa in &fast {
                    let Some(got) = dot4_groups(isa, &row, &x, g, &gen, read) else {
                        continue;
                    };
                    assert!(
                        (got - reference).abs() <= 1e-5 * magnitude,
                        "{isa} {family:?} g={g} cols={cols}: {got} vs {reference}"
                    );
                    // Both plans: the lane-permuted `x` and the one the tensor makes for
                    // groups (the quad layout for odd multiples of 32 codes).
                    for (name, plan) in [
                        ("scaled", DotPlan::for_scaled(isa, 4, &x)),
                        ("groups", DotPlan::for_groups(isa, 4, &x, g)),
                    ] {
                        let planned = plan.dot4_groups(&row, g, &gen, read).unwrap();
                        assert!(
                            (planned - reference).abs() <= 1e-5 * magnitude,
                            "{isa} {name} plan {family:?} g={g} cols={cols}: {planned} vs {reference}"
                        );
                    }
                }
                #[cfg(target_arch = "x86_64")]
                if crate::isa::Isa::detect().avx2().is_some() {
                    assert!(fast
                        .iter()
                        .any(|i| dot4_groups(*i, &row, &x, g, &gen, read).is_some()));
                }
            }
        }
    }
}

/// The tables the per-row GEMV makes eight rows at a time (`Avx2::row_tables16`) are the
/// levels `Family::levels_into` writes, to the bit. (The GEMV paths that use them are tested
/// in `tensor`, which makes the tensors.)
#[cfg(all(test, feature = "alloc", target_arch = "x86_64"))]
mod row_tables_tests {
    /// Eight rows' tables derived at once are, bit for bit, the levels `levels_into`
    /// writes for each row (entry 15 the 0 of a table of 15), for both schemes with and
    /// without a zero level, over `a` and `q` from tiny (subnormal levels) to large.
    #[test]
    fn row_tables_are_the_levels_of_each_row() {
        use crate::discretize::Family;
        use crate::isa::Isa;
        use crate::test_rng::xorshift32 as rng;
        use crate::{Params, Scheme};
        use alloc::vec::Vec;
        let Some(t) = Isa::detect().avx2() else {
            return;
        };
        let mut next = rng(0x5eed_0017);
        for scheme in [Scheme::Exponential, Scheme::Linear] {
            for zero in [true, false] {
                let family = Family::new(scheme, 4, zero).unwrap();
                let gen = super::gen16(family).expect("every 4-bit family has a derived table");
                for round in 0..400 {
                    let params: [[f32; 2]; 8] = core::array::from_fn(|_| {
                        // `a` over 2^-40 .. 2^40; `q` over the whole of (0, 1) on a
                        // third of the rounds, else the fitted range.
                        let a = f32::from_bits(0x2b80_0000 + next() % 0x2800_0000);
                        let q = if round % 3 == 0 {
                            (next() % 0x00ff_ffff + 1) as f32 / 16_777_216.0
                        } else {
                            0.3 + (next() % 6000) as f32 * 1e-4
                        };
                        [a, q]
                    });
                    let tables = t.row_tables16(&params, &gen);
                    for (r, (&[a, q], table)) in params.iter().zip(&tables).enumerate() {
                        let mut want = [0.0f32; 256];
                        let n = family.levels_into(Params { a, q }, &mut want);
                        assert_eq!(n, 16 - usize::from(zero));
                        let want_bits: Vec<u32> = want[..16].iter().map(|v| v.to_bits()).collect();
                        let got_bits: Vec<u32> = table.iter().map(|v| v.to_bits()).collect();
                        assert_eq!(
                            got_bits, want_bits,
                            "{scheme:?} zero {zero} row {r} a {a} q {q}"
                        );
                    }
                }
            }
        }
    }
}

#[cfg(all(test, feature = "alloc"))]
mod derived_int8_tests {
    use super::gen16;
    use crate::discretize::Family;
    use crate::isa::portable;
    use crate::kernels::{dot4_i8_groups, Int8X, Isa};
    use crate::Scheme;

    #[test]
    fn derived_int8_group_kernels_match_the_reference() {
        let mut s = 0x9e37_79b9_u32;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        let fast: alloc::vec::Vec<Isa> = Isa::available()
            .filter(|i| i.kind() != crate::kernels::IsaKind::Scalar)
            .collect();
        for (scheme, zero) in [
            (Scheme::Exponential, false),
            (Scheme::Exponential, true),
            (Scheme::Linear, false),
        ] {
            let family = Family::new(scheme, 4, zero).unwrap();
            let gen = gen16(family).unwrap();
            let levels = family.level_count() as u32;
            for (g, cols) in [(32usize, 1024usize), (128, 1024), (32, 1000), (64, 4160)] {
                let codes: alloc::vec::Vec<u8> =
                    (0..cols).map(|_| (next() % levels) as u8).collect();
                let mut row = alloc::vec![0u8; cols.div_ceil(2)];
                portable::pack_reference(&codes, 4, &mut row);
                let x: alloc::vec::Vec<f32> = (0..cols)
                    .map(|_| next() as f32 / u32::MAX as f32 - 0.5)
                    .collect();
                let xq = Int8X::new(&x).unwrap();
                // Half the cases share one `q` across the row's groups (compact parameters),
                // so the kernels' reuse of a row's table is checked too.
                let shared_q = (g / 32 + cols) % 2 == 0;
                let row_q = crate::test_rng::ratio(&mut next);
                let params: alloc::vec::Vec<[f32; 2]> = (0..cols.div_ceil(g))
                    .map(|_| {
                        let [a, q] = crate::test_rng::group_params(&mut next);
                        [a, if shared_q { row_q } else { q }]
                    })
                    .collect();
                let reference =
                    dot4_i8_groups(Isa::scalar(), &row, &xq, g, &gen, |i| params[i]).unwrap();
                let mut ran = false;
                for &isa in &fast {
                    if let Some(got) = dot4_i8_groups(isa, &row, &xq, g, &gen, |i| params[i]) {
                        ran = true;
                        assert!(
                            (got - reference).abs() <= 1e-5 * cols as f32,
                            "{isa} {scheme:?} g={g} cols={cols}: {got} vs {reference}"
                        );
                    }
                }
                #[cfg(target_arch = "x86_64")]
                if crate::isa::Isa::detect().avx2().is_some() {
                    assert!(ran, "no SIMD path ran");
                }
                let _ = ran;
                // The derived table is the codebook's levels to within int8 rounding.
                for &[a, q] in &params[..1] {
                    let mut lv = [0.0f32; 256];
                    let n = family.levels_into(crate::Params { a, q }, &mut lv);
                    let t = portable::table16_i8(&gen, q);
                    for k in 0..n {
                        let back = f32::from(t[k]) * (a / 127.0);
                        assert!((back - lv[k]).abs() <= 0.5 * a / 127.0 * 1.001);
                    }
                }
            }
        }
    }
}
