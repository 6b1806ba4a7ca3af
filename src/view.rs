//! [`QuantizedView`]: a quantized tensor borrowed from bytes, validated once, then decoded or
//! multiplied with no copy and no allocation.

use core::ops::Range;

use crate::codebook::Codebook;
use crate::discretize::{Family, Params, Scheme};
use crate::error::{Error, Result};
use crate::format::{self, corrupt, Header, HEADER_LEN};
use crate::kernels;
use crate::layout::Granularity;
use crate::pack::code_at;

/// Where a view's per-group parameters live.
#[derive(Debug, Clone, Copy)]
enum ParamStore<'a> {
    /// Little-endian `f32`s straight from stored bytes (which need not be aligned).
    Stored { bytes: &'a [u8], per_group: usize },
    /// An owned tensor's parsed parameters.
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    Parsed(&'a [Params<f32>]),
}

/// A quantized `rows × cols` matrix borrowed from its stored bytes (see [`format`] for the
/// layout) or from a [`QuantizedTensor`](crate::QuantizedTensor).
///
/// [`from_bytes`](Self::from_bytes) checks everything — magic, version, every length and
/// the arithmetic on it, bits, layout, checksum, finite parameters with valid levels, codes
/// that index a level, zero padding — and then never fails on the data again. Nothing is
/// copied and nothing is allocated, here or in [`dequantize_into`](Self::dequantize_into),
/// [`gemv`](Self::gemv) and [`gemv_rows`](Self::gemv_rows): firmware can run it from flash.
/// (With the `parallel` feature, `gemv` on a large matrix spawns threads, which the OS and
/// `std` allocate for; the work on each thread still allocates nothing.)
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
    rows: usize,
    cols: usize,
    family: Family,
    layout: Granularity,
    rule: u8,
    row_bytes: usize,
    codes: &'a [u8],
    params: ParamStore<'a>,
}

impl<'a> QuantizedView<'a> {
    /// Validates `bytes`, which must hold exactly one stored tensor, and borrows it.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self> {
        let (view, used) = Self::from_prefix(bytes)?;
        if used != bytes.len() {
            return corrupt("trailing bytes after the tensor");
        }
        Ok(view)
    }

    /// Validates the tensor at the start of `bytes` and returns it with the number of bytes
    /// it occupies; anything after it is left alone.
    pub fn from_prefix(bytes: &'a [u8]) -> Result<(Self, usize)> {
        let header = Header::parse(bytes)?;
        let codes = &bytes[HEADER_LEN..HEADER_LEN + header.codes_len];
        let params = &bytes[HEADER_LEN + header.codes_len..header.total_len];
        let view = QuantizedView {
            rows: header.rows,
            cols: header.cols,
            family: header.family,
            layout: header.layout,
            rule: header.rule,
            row_bytes: header.row_bytes,
            codes,
            params: ParamStore::Stored {
                bytes: params,
                per_group: header.params_per_group,
            },
        };
        view.check_params(header.groups)?;
        view.check_codes()?;
        Ok((view, header.total_len))
    }

    /// A view of an owned tensor's buffers (no checks: they were made valid).
    #[cfg(feature = "alloc")]
    pub(crate) fn from_parts(
        rows: usize,
        cols: usize,
        family: Family,
        layout: Granularity,
        rule: u8,
        codes: &'a [u8],
        params: &'a [Params<f32>],
    ) -> Self {
        QuantizedView {
            rows,
            cols,
            family,
            layout,
            rule,
            row_bytes: codes.len() / rows.max(1),
            codes,
            params: ParamStore::Parsed(params),
        }
    }

    /// Rebuilds in O(1), without validating again, a view of stored `bytes` (one whole
    /// tensor, header included) that [`from_bytes`](Self::from_bytes) has already accepted,
    /// from the shape and encoding that view reported. For the C ABI, whose caller-owned
    /// `expq_view` keeps these numbers next to the buffer pointer so that each call does not
    /// re-run the checksum, parameter and code checks.
    ///
    /// Only the length arithmetic is redone (so numbers that do not fit `bytes` are
    /// [`Error::Corrupt`] and every later access stays in bounds); the contents are trusted.
    /// Bytes changed since they were validated, or numbers from another view, give wrong
    /// values rather than an error.
    #[cfg(feature = "ffi")]
    pub(crate) fn from_validated_parts(
        bytes: &'a [u8],
        rows: usize,
        cols: usize,
        family: Family,
        layout: Granularity,
        rule: u8,
    ) -> Result<Self> {
        const MISMATCH: Error = Error::Corrupt("view numbers do not describe the buffer");
        if !(1..=8).contains(&family.bits) || rows == 0 || cols == 0 || layout.validate().is_err() {
            return Err(MISMATCH);
        }
        rows.checked_mul(cols).ok_or(MISMATCH)?;
        let groups = layout.group_count(rows, cols).ok_or(MISMATCH)?;
        let per_group = 1 + usize::from(family.uses_q());
        let row_bytes = crate::pack::packed_len(cols, family.bits).ok_or(MISMATCH)?;
        let codes_len = rows.checked_mul(row_bytes).ok_or(MISMATCH)?;
        let params_len = groups.checked_mul(4 * per_group).ok_or(MISMATCH)?;
        let payload = bytes.get(HEADER_LEN..).ok_or(MISMATCH)?;
        if codes_len.checked_add(params_len) != Some(payload.len()) {
            return Err(MISMATCH);
        }
        let (codes, params) = payload.split_at(codes_len);
        Ok(QuantizedView {
            rows,
            cols,
            family,
            layout,
            rule,
            row_bytes,
            codes,
            params: ParamStore::Stored {
                bytes: params,
                per_group,
            },
        })
    }

    fn check_params(&self, groups: usize) -> Result<()> {
        for group in 0..groups {
            let p = self.group_params(group);
            if !(p.a.is_finite() && p.a > 0.0) {
                return corrupt("a stored scale a is not finite and positive");
            }
            if self.family.uses_q() && !(p.q > 0.0 && p.q < 1.0) {
                return corrupt("a stored ratio q is outside (0, 1)");
            }
            // The same construction the encoder used: finite, strictly ascending levels.
            if self.family.codebook(p).is_err() {
                return corrupt("stored parameters give levels that are not distinct and finite");
            }
        }
        Ok(())
    }

    fn check_codes(&self) -> Result<()> {
        let bits = self.family.bits;
        let levels = self.family.level_count();
        let used_bits = self.cols * usize::from(bits);
        for row in self.codes.chunks_exact(self.row_bytes) {
            if !used_bits.is_multiple_of(8) && row[self.row_bytes - 1] >> (used_bits % 8) != 0 {
                return corrupt("padding bits after a row's last code are not zero");
            }
            if levels < 1 << bits {
                // Only the all-ones code can be out of range (zero-level families).
                if (0..self.cols).any(|i| usize::from(code_at(row, bits, i)) >= levels) {
                    return corrupt("a code does not index a level");
                }
            }
        }
        Ok(())
    }

    /// Parameters of group `group`; the caller guarantees it exists.
    #[inline]
    fn group_params(&self, group: usize) -> Params<f32> {
        match self.params {
            ParamStore::Stored { bytes, per_group } => {
                let at = group * per_group * 4;
                Params {
                    a: format::read_f32(bytes, at),
                    q: if per_group == 2 {
                        format::read_f32(bytes, at + 4)
                    } else {
                        1.0
                    },
                }
            }
            ParamStore::Parsed(params) => params[group],
        }
    }

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

    /// The level family.
    pub fn scheme(&self) -> Scheme {
        self.family.scheme
    }

    /// Whether zero is a level.
    pub fn has_zero_level(&self) -> bool {
        self.family.has_zero()
    }

    /// Which weights share a codebook.
    pub fn layout(&self) -> Granularity {
        self.layout
    }

    /// The stored code of the scale rule the tensor was fitted with (see [`format`]).
    pub fn rule_code(&self) -> u8 {
        self.rule
    }

    /// Number of groups (codebooks).
    pub fn group_count(&self) -> usize {
        // Validated (or constructed) so that this does not overflow.
        self.layout.group_count(self.rows, self.cols).unwrap_or(0)
    }

    /// Group `group`'s parameters, or `None` past the last group.
    pub fn params(&self, group: usize) -> Option<Params<f32>> {
        (group < self.group_count()).then(|| self.group_params(group))
    }

    /// Group `group`'s codebook, or `None` past the last group.
    pub fn codebook(&self, group: usize) -> Option<Codebook<f32>> {
        self.family.codebook(self.params(group)?).ok()
    }

    /// The packed codes, `rows × row_bytes` bytes.
    pub fn packed_codes(&self) -> &'a [u8] {
        self.codes
    }

    /// Bytes per packed row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// Stored bits per weight: codes and parameters, header excluded.
    pub fn bits_per_weight(&self) -> f64 {
        let params = self.group_count() * (1 + usize::from(self.family.uses_q())) * 32;
        (self.codes.len() as f64 * 8.0 + params as f64) / (self.rows * self.cols) as f64
    }

    pub(crate) fn family(&self) -> Family {
        self.family
    }

    /// Writes the dequantized matrix, row-major, into `out` (`rows × cols` values).
    pub fn dequantize_into(&self, out: &mut [f32]) -> Result<()> {
        expect_len("dequantize output", self.rows * self.cols, out.len())?;
        let isa = kernels::Isa::detect();
        let bits = self.family.bits;
        let g = self.layout.group_len(self.cols);
        let mut table = kernels::Table::new();
        let mut loaded = usize::MAX;
        for (row, out_row) in out.chunks_exact_mut(self.cols).enumerate() {
            let packed_row = &self.codes[row * self.row_bytes..(row + 1) * self.row_bytes];
            for (i, chunk) in out_row.chunks_mut(g).enumerate() {
                let group = self.group_index(row, i);
                if group != loaded {
                    table.len = self
                        .family
                        .levels_into(self.group_params(group), &mut table.v);
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
        {
            let threads = crate::parallel::threads_for(
                self.rows * self.cols,
                crate::parallel::GEMV_MIN_WEIGHTS,
            );
            if threads > 1 {
                return self.gemv_with_threads(x, y, threads);
            }
        }
        self.gemv_rows(x, 0..self.rows, y)
    }

    /// [`gemv`](Self::gemv) on exactly `threads` threads (1: the serial path), whatever the
    /// matrix's size. For the benchmarks and tests that compare the two paths in one build.
    #[cfg(feature = "parallel")]
    #[doc(hidden)]
    pub fn gemv_with_threads(&self, x: &[f32], y: &mut [f32], threads: usize) -> Result<()> {
        self.check_gemv(x, &(0..self.rows), y)?;
        // Each thread runs the serial kernel on its rows, on its own stack tables: nothing is
        // shared but the read-only codes, parameters and `x`.
        crate::parallel::for_each_chunk(y, self.rows, 1, 4, threads, |rows, y| {
            self.gemv_rows(x, rows, y)
        })
    }

    /// `y = W[rows]·x` for a range of rows (so a runtime can split rows over its threads);
    /// `y.len()` must equal the range's length. Runs on the calling thread.
    pub fn gemv_rows(&self, x: &[f32], rows: Range<usize>, y: &mut [f32]) -> Result<()> {
        self.check_gemv(x, &rows, y)?;
        let isa = kernels::Isa::detect();
        let bits = self.family.bits;
        self.gemv_with::<1>(rows, y, |packed, tables, _, start, len| {
            let x = &x[start..start + len];
            [kernels::dot_span(isa, bits, packed[0], start, tables[0], x)]
        });
        Ok(())
    }

    /// Checks the shapes of a GEMV call.
    pub(crate) fn check_gemv(&self, x: &[f32], rows: &Range<usize>, y: &[f32]) -> Result<()> {
        expect_len("gemv input x", self.cols, x.len())?;
        if rows.start > rows.end || rows.end > self.rows {
            return Err(Error::RowRange {
                start: rows.start,
                end: rows.end,
                rows: self.rows,
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
        let g = self.layout.group_len(self.cols);
        let mut tables: [kernels::Table; R] = core::array::from_fn(|_| kernels::Table::new());
        let mut loaded = [usize::MAX; R];
        for (pass, out) in y.chunks_mut(R).enumerate() {
            let first = rows.start + pass * R;
            let live = out.len();
            let row_of = |k: usize| first + k.min(live - 1);
            let packed: [&[u8]; R] = core::array::from_fn(|k| {
                let row = row_of(k);
                &self.codes[row * self.row_bytes..(row + 1) * self.row_bytes]
            });
            let mut acc = [0.0f32; R];
            let mut start = 0;
            for i in 0..self.cols.div_ceil(g) {
                for (k, (table, loaded)) in tables.iter_mut().zip(&mut loaded).enumerate() {
                    let group = self.group_index(row_of(k), i);
                    if k < live && group != *loaded {
                        table.len = self
                            .family
                            .levels_into(self.group_params(group), &mut table.v);
                        *loaded = group;
                    }
                }
                let refs: [&kernels::Table; R] = core::array::from_fn(|k| &tables[k.min(live - 1)]);
                let len = g.min(self.cols - start);
                let part = dot(&packed, &refs, live, start, len);
                for (a, p) in acc.iter_mut().zip(part) {
                    *a += p;
                }
                start += len;
            }
            out.copy_from_slice(&acc[..live]);
        }
    }

    #[inline]
    fn group_index(&self, row: usize, group_in_row: usize) -> usize {
        match self.layout {
            Granularity::PerTensor => 0,
            layout => layout.first_group_of_row(row, self.cols) + group_in_row,
        }
    }
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
