//! [`QuantizedView`]: a quantized tensor borrowed from bytes, validated once, then decoded or
//! multiplied with no copy and no allocation.

use core::ops::Range;

use crate::codebook::Codebook;
use crate::discretize::Family;
use crate::error::{Error, Result};
use crate::format;
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
        parts.validate_contents()?;
        Ok((QuantizedView { parts }, used))
    }

    /// A view of stored bytes whose checksum and codes the caller verified before (a
    /// container opened with [`Verification::Full`](crate::Verification::Full), or
    /// `Trusted`): every length and bound and the parameters are still checked, so wrong bytes
    /// give wrong numbers, never an out-of-bounds read (a code without a level decodes
    /// as `0.0`).
    pub(crate) fn from_bytes_unverified(bytes: &'a [u8]) -> Result<Self> {
        let (parts, used) = format::parse_tensor_with(bytes, false)?;
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

    /// Stored bits per weight: packed codes (with row padding) plus the stored parameters
    /// (32 bits for `a`, and for `q` where the family has two or more magnitudes to space),
    /// over `rows × cols`; the header is excluded.
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
            let packed_row =
                &self.packed_codes()[row * self.row_bytes()..(row + 1) * self.row_bytes()];
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
        let isa = kernels::Isa::detect();
        let bits = self.bits();
        self.gemv_with::<1>(rows, y, |packed, tables, _, start, len| {
            let x = &x[start..start + len];
            [kernels::dot_span(isa, bits, packed[0], start, tables[0], x)]
        });
        Ok(())
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
        for (pass, out) in y.chunks_mut(R).enumerate() {
            let first = rows.start + pass * R;
            let live = out.len();
            let row_of = |k: usize| first + k.min(live - 1);
            let packed: [&[u8]; R] = core::array::from_fn(|k| {
                let row = row_of(k);
                &self.packed_codes()[row * self.row_bytes()..(row + 1) * self.row_bytes()]
            });
            let mut acc = [0.0f32; R];
            let mut start = 0;
            for i in 0..self.cols().div_ceil(g) {
                for (k, (table, loaded)) in tables.iter_mut().zip(&mut loaded).enumerate() {
                    let group = self.group_index(row_of(k), i);
                    if k < live && group != *loaded {
                        table.len = self
                            .family()
                            .levels_into(self.parts.group_params(group), &mut table.v);
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

    #[inline]
    fn group_index(&self, row: usize, group_in_row: usize) -> usize {
        match self.granularity() {
            Granularity::PerTensor => 0,
            layout => layout.first_group_of_row(row, self.cols()) + group_in_row,
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
