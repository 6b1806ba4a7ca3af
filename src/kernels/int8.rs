//! Dot products with int8 activations: `x` quantized to int8 in blocks of 32 with an `f32`
//! scale each, the codebook's levels to int8 with one scale per codebook, and the products
//! summed in integers.
//!
//! # Error
//! With `x` in blocks `b` of scale `s_b = max_b|x| / 127` and a group's levels `L` scaled by
//! `t = max|L| / 127`, rounding to nearest moves each `x_j` by at most `s_b/2` and each level
//! by at most `t/2`, so one product `L·x` moves by at most
//! `e_j = |L_j|·s_b/2 + t·|x_j|/2 + t·s_b/4`, and a dot product by at most `Σ_j e_j`. The
//! result is exact integer sums per block, scaled and added in `f32`, so on top of `Σ_j e_j`
//! comes ordinary `f32` summation error (as for the `f32` path, see the module docs).
//! Relative to `Σ|L_j·x_j|` the bound is about `1/127` in the worst case (a lone large
//! value in every block); for bell-shaped `x` and levels typical errors are far below it.

use super::{check_codes, Table, CHUNK};
use crate::error::{Error, Result};
use crate::isa::portable::{self, QBLOCK};
#[cfg(all(target_arch = "x86_64", feature = "alloc"))]
use crate::isa::x86_avx2::Int8Rows;
use crate::isa::{Isa, Path};
use crate::pack;

/// A codebook's levels in int8: `v[k] = round(levels[k] / scale)` with `scale = max|levels|
/// / 127`, so every entry is in `[−127, 127]` (entries past `len` are 0).
#[derive(Clone)]
pub(crate) struct I8Table {
    pub v: [i8; 256],
    pub scale: f32,
    pub len: usize,
}

impl I8Table {
    pub fn new() -> Self {
        I8Table {
            v: [0; 256],
            scale: 0.0,
            len: 1,
        }
    }

    /// Fills this table from the `f32` table's first `len` levels.
    pub fn set(&mut self, table: &Table) {
        let levels = &table.v[..table.len];
        self.scale = portable::quantize_block(levels, &mut self.v[..table.len]);
        self.v[table.len..].iter_mut().for_each(|v| *v = 0);
        self.len = table.len;
    }

    /// The first sixteen entries, the register table of the 4-bit kernels.
    pub fn t16(&self) -> [i8; 16] {
        core::array::from_fn(|i| self.v[i])
    }
}

/// Checks that `x` is finite: a NaN or infinity would make its block's scale meaningless.
pub(crate) fn check_finite(x: &[f32]) -> Result<()> {
    // One pass the compiler vectorizes (a search that stops at the first hit stays scalar);
    // the position only where some value is not finite.
    if x.iter().fold(true, |finite, v| finite & v.is_finite()) {
        return Ok(());
    }
    match x.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(Error::NonFiniteInput {
            index,
            value: f64::from(x[index]),
        }),
    }
}

/// Quantizes `x` (finite, checked by the caller) into `xq` (`x.len()` values) and `scales`
/// (one per block of [`QBLOCK`], the last block possibly short).
pub(crate) fn quantize_x(x: &[f32], xq: &mut [i8], scales: &mut [f32]) {
    for ((x, q), s) in x
        .chunks(QBLOCK)
        .zip(xq.chunks_mut(QBLOCK))
        .zip(scales.iter_mut())
    {
        *s = portable::quantize_block(x, q);
    }
}

/// `x` quantized once for a whole GEMV, in natural order and, for the 4-bit kernels, in
/// [`pair_order`](portable::pair_order).
#[cfg(feature = "alloc")]
pub(crate) struct Int8X {
    /// The int8 values in natural order.
    pub xq: alloc::vec::Vec<i8>,
    /// One scale per block of [`QBLOCK`] (the last block possibly short).
    pub scales: alloc::vec::Vec<f32>,
    /// The whole blocks of `xq` in pair order.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub xp: alloc::vec::Vec<i8>,
    /// Each whole block's scale four times, so a pair of blocks loads its lanes' scales
    /// from one place.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub ps: alloc::vec::Vec<f32>,
}

#[cfg(feature = "alloc")]
impl Int8X {
    /// Quantizes `x`; an error if it holds a NaN or infinity.
    pub fn new(x: &[f32]) -> Result<Self> {
        Self::on(Isa::detect(), x)
    }

    /// [`new`](Self::new) on `isa`: the same values on every path.
    pub fn on(isa: Isa, x: &[f32]) -> Result<Self> {
        check_finite(x)?;
        let whole = x.len() / QBLOCK;
        let mut out = Int8X {
            xq: alloc::vec![0; x.len()],
            scales: alloc::vec![0.0; x.len().div_ceil(QBLOCK)],
            xp: alloc::vec![0; whole * QBLOCK],
            ps: alloc::vec![0.0; 4 * whole],
        };
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = isa.avx2() {
            t.quantize_x(x, &mut out.xq, &mut out.scales, &mut out.xp, &mut out.ps);
            return Ok(out);
        }
        let _ = isa;
        quantize_x(x, &mut out.xq, &mut out.scales);
        portable::pair_order(&out.xq, &mut out.xp);
        for (p, &s) in out.ps.chunks_exact_mut(4).zip(&out.scales) {
            p.fill(s);
        }
        Ok(out)
    }
}

/// Rows per pass of the batched 4-bit int8 kernel.
pub(crate) const ROWS_PER_PASS: usize = 4;

/// `R` whole 4-bit rows (`x.xq.len()` codes each) through their 16-entry int8 tables, as
/// [`dot_int8_span`] over the whole row computes each (multiply by the table's scale for the
/// dot product), in one pass over `x` on the paths with a batched kernel; `None` on the
/// others. A row's result does not depend on the rows batched with it.
#[cfg(feature = "alloc")]
pub(crate) fn dot4_i8_rows<const R: usize>(
    isa: Isa,
    rows: [&[u8]; R],
    tables: [&[i8; 16]; R],
    x: &Int8X,
) -> Option<[f32; R]> {
    #[cfg(target_arch = "x86_64")]
    {
        let t = Int8Rows::of(isa)?;
        let mut out = t.dot4_i8_rows(rows, tables, &x.xp, &x.ps);
        if x.xp.len() < x.xq.len() {
            for (o, (row, t16)) in out.iter_mut().zip(rows.iter().zip(tables)) {
                *o += short_tail(row, x, t16);
            }
        }
        Some(out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, rows, tables, x);
        None
    }
}

/// A 4-bit group's int8 table derived from its `q` (see
/// [`portable::table16_i8`]; the group's scale is `a / 127`), in registers where a kernel
/// does it, with the same bits on every path.
pub(crate) fn table16_i8(isa: Isa, gen: &portable::Gen16, q: f32) -> [i8; 16] {
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = isa.avx2() {
        return t.table16_i8(gen, q);
    }
    let _ = isa;
    portable::table16_i8(gen, q)
}

/// `Σ_b scales[b] · Σ_{j in block b} [−127, −lower[b], lower[b], 127][code j] · xq[j]` over
/// codes `0 .. len` of one packed 2-bit row, blocks of [`QBLOCK`]: the int8 sums of 2-bit
/// groups whose tables differ only in their lower magnitude, each block with its own.
/// `None` where no kernel does this in one pass (the caller then sums the two magnitudes
/// apart). The caller guarantees the codes and every block's entries exist.
pub(crate) fn dot_int8_two_magnitudes(
    isa: Isa,
    row: &[u8],
    len: usize,
    xq: &[i8],
    scales: &[f32],
    lower: &[i8],
) -> Option<f32> {
    if isa.path() == Path::Scalar {
        return Some(portable::dot_i8_two_magnitudes(row, len, xq, scales, lower));
    }
    #[cfg(target_arch = "x86_64")]
    {
        let t = match isa.path() {
            Path::Avx2(t) => t,
            Path::Avx512(t) => t.avx2(),
            _ => return None,
        };
        let whole = len / QBLOCK;
        let head = t.dot_narrow_i8_lower(&row[..8 * whole], xq, scales, lower);
        let done = whole * QBLOCK;
        // The short last block through the reference, on its own slices.
        let tail = portable::dot_i8_two_magnitudes(
            &row[done / 4..],
            len - done,
            &xq[done..],
            &scales[whole..],
            &lower[whole..],
        );
        Some(head + tail)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The int8 dot product of a whole 3-bit row in groups of `g` codes (a multiple of
/// [`QBLOCK`]) with their own `(a, q)` (`params`, one per group), each group's int8 table
/// derived from its `q` (`portable::table8_i8`, scale `a / 127`); `None` where no kernel
/// does this (the caller then makes each group's table). The scalar path is the reference.
#[cfg(feature = "alloc")]
pub(crate) fn dot3_i8_groups(
    isa: Isa,
    row: &[u8],
    x: &Int8X,
    g: usize,
    params: &[[f32; 2]],
    gen: &portable::Gen8,
) -> Option<f32> {
    if g == 0 || !g.is_multiple_of(QBLOCK) || params.len() < x.xq.len().div_ceil(g) {
        return None;
    }
    match isa.path() {
        Path::Scalar => Some(portable::dot3_i8_groups(
            row, &x.xq, &x.scales, g, params, gen,
        )),
        #[cfg(target_arch = "x86_64")]
        Path::Avx2(t) => Some(t.dot3_i8_groups(row, &x.xq, &x.scales, g, params, gen)),
        #[cfg(target_arch = "x86_64")]
        Path::Avx512(t) => Some(
            t.avx2()
                .dot3_i8_groups(row, &x.xq, &x.scales, g, params, gen),
        ),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// `Σ_b scales[b] · Σ table.v[code j] · xq[j]` over codes `start .. start + len` of one packed
/// row (`xq`, `scales` indexed over the whole vector; multiply by `table.scale` for the dot
/// product). The caller guarantees the codes exist and index the table.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dot_int8_span(
    isa: Isa,
    bits: u8,
    row: &[u8],
    start: usize,
    len: usize,
    table: &I8Table,
    xq: &[i8],
    scales: &[f32],
) -> f32 {
    let path = isa.path();
    let end = start + len;
    if path == Path::Scalar {
        return portable::dot_i8_span(bits, row, start, len, &table.v, xq, scales);
    }
    // A partial block at each end goes through the reference; the whole blocks between
    // start on a byte boundary (32 codes are `4·bits` bytes).
    let first = start.next_multiple_of(QBLOCK).min(end);
    let last = (end / QBLOCK * QBLOCK).max(first);
    let mut acc = portable::dot_i8_span(bits, row, start, first - start, &table.v, xq, scales);
    if last > first {
        let b0 = first / QBLOCK;
        let nb = (last - first) / QBLOCK;
        let byte0 = first * usize::from(bits) / 8;
        let bytes = &row[byte0..byte0 + nb * 4 * usize::from(bits)];
        let xs = &xq[first..last];
        let ss = &scales[b0..b0 + nb];
        acc += match path {
            #[cfg(target_arch = "x86_64")]
            Path::Avx2(t) if bits == 4 && table.len <= 16 => t.dot4_i8(bytes, &table.t16(), xs, ss),
            #[cfg(target_arch = "x86_64")]
            Path::Avx512(t) if bits == 4 && table.len <= 16 => {
                t.avx2().dot4_i8(bytes, &table.t16(), xs, ss)
            }
            #[cfg(target_arch = "x86_64")]
            Path::Avx2(t) if bits <= 2 => t.dot_narrow_i8(bits, bytes, &table.t16(), xs, ss),
            #[cfg(target_arch = "x86_64")]
            Path::Avx2(t) if bits == 3 => t.dot3_i8(bytes, &table.t16(), xs, ss),
            #[cfg(target_arch = "x86_64")]
            Path::Avx512(t) if bits == 3 => t.avx2().dot3_i8(bytes, &table.t16(), xs, ss),
            #[cfg(target_arch = "x86_64")]
            Path::Avx512(t) if bits <= 2 => {
                t.avx2().dot_narrow_i8(bits, bytes, &table.t16(), xs, ss)
            }
            #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
            Path::Neon(t) if bits == 4 && table.len <= 16 => t.dot4_i8(bytes, &table.t16(), xs, ss),
            _ => whole_blocks(isa, bits, bytes, table, xs, ss),
        };
    }
    acc + portable::dot_i8_span(bits, row, last, end - last, &table.v, xq, scales)
}

/// Whole blocks of any width: unpack a chunk of codes, look them up, then the int8 dot.
fn whole_blocks(
    isa: Isa,
    bits: u8,
    bytes: &[u8],
    table: &I8Table,
    xq: &[i8],
    scales: &[f32],
) -> f32 {
    let mut codes = [0u8; CHUNK];
    let mut w = [0i8; CHUNK];
    let chunk_bytes = CHUNK * usize::from(bits) / 8;
    let mut acc = 0.0f32;
    for (k, (x, b)) in xq.chunks(CHUNK).zip(bytes.chunks(chunk_bytes)).enumerate() {
        let n = x.len();
        pack::unpack_fast(isa, b, bits, &mut codes[..n]);
        let done = match isa.path() {
            #[cfg(target_arch = "x86_64")]
            Path::Avx2(t) => t.lut_i8(&codes[..n], &table.v, table.len, &mut w[..n]),
            #[cfg(target_arch = "x86_64")]
            Path::Avx512(t) => t
                .avx2()
                .lut_i8(&codes[..n], &table.v, table.len, &mut w[..n]),
            _ => 0,
        };
        for (w, &c) in w[done..n].iter_mut().zip(&codes[done..n]) {
            *w = table.v[usize::from(c)];
        }
        let s = &scales[k * (CHUNK / QBLOCK)..];
        acc += match isa.path() {
            #[cfg(target_arch = "x86_64")]
            Path::Avx2(t) => t.dot_i8(&w[..n], x, s),
            #[cfg(target_arch = "x86_64")]
            Path::Avx512(t) => t.avx2().dot_i8(&w[..n], x, s),
            #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
            Path::Neon(t) => t.dot_i8(&w[..n], x, s),
            _ => portable::dot_i8(&w[..n], x, s),
        };
    }
    acc
}

/// [`dot`](super::dot) with int8 activations: `x` quantized to int8 in blocks of 32 (one
/// scale each), the levels to int8 (one scale), the products summed in integers. Same checks
/// as `dot`, and an error for a NaN or infinite `x`. The error it adds is bounded in the
/// module docs of [`kernels`](super) (section *Int8 activations*).
///
/// ```
/// let levels = [-1.0f32, -0.25, 0.25, 1.0];
/// let x = [0.5f32, -1.0, 2.0, 0.125];
/// let exact = expquant::kernels::dot(2, &[0b00_11_01_10], &levels, &x)?;
/// let approx = expquant::kernels::dot_int8(2, &[0b00_11_01_10], &levels, &x)?;
/// assert!((exact - approx).abs() <= 0.03 * exact.abs());
/// # Ok::<(), expquant::Error>(())
/// ```
pub fn dot_int8(bits: u8, packed: &[u8], levels: &[f32], x: &[f32]) -> Result<f32> {
    dot_int8_with(Isa::detect(), bits, packed, levels, x)
}

/// [`dot_int8`] on a chosen path, so that tests and benchmarks can compare paths. The
/// integer sums are exact on every path; only the `f32` additions of the scaled block sums
/// differ in order.
pub fn dot_int8_with(isa: Isa, bits: u8, packed: &[u8], levels: &[f32], x: &[f32]) -> Result<f32> {
    check_codes(bits, packed, x.len(), levels)?;
    check_finite(x)?;
    let mut table = I8Table::new();
    table.set(&Table::from_levels(levels));
    // `x` is quantized a chunk at a time on the stack: no allocation.
    let mut xq = [0i8; CHUNK];
    let mut scales = [0.0f32; CHUNK / QBLOCK];
    let chunk_bytes = CHUNK * usize::from(bits) / 8;
    let mut acc = 0.0f32;
    for (k, x) in x.chunks(CHUNK).enumerate() {
        let n = x.len();
        quantize_x(x, &mut xq[..n], &mut scales);
        let row = &packed[k * chunk_bytes..];
        acc += dot_int8_span(isa, bits, row, 0, n, &table, &xq[..n], &scales);
    }
    Ok(acc * table.scale)
}

/// [`dot_int8_span`] over a whole 4-bit row in groups of `g` codes (a multiple of 32), each
/// group's int8 table derived from its parameters (`params(i)` gives group `i`'s `(a, q)`),
/// scaled by `a/127`: the finished row result. `None` where no such kernel runs.
#[cfg(all(test, feature = "alloc"))]
pub(crate) fn dot4_i8_groups(
    isa: Isa,
    row: &[u8],
    x: &Int8X,
    g: usize,
    gen: &portable::Gen16,
    params: impl Fn(usize) -> [f32; 2],
) -> Option<f32> {
    let run = |_: usize, first: usize, out: &mut [[f32; 2]]| {
        for (i, o) in (first..).zip(out.iter_mut()) {
            *o = params(i);
        }
    };
    dot4_i8_groups_rows(isa, [row], x, g, gen, run, None).map(|[v]| v)
}

/// [`dot4_i8_groups`] for `R` rows (`params(r, i, out)` writes the `(a, q)` of groups
/// `i .. i + out.len()` of row `r`, all inside the row, to `out`), in one pass over `x` on
/// the paths with a batched kernel. Where the parameters are stored as little-endian `f32`
/// `(a, q)` pairs, `pairs` may hold each row's (group 0 first; the values `params` gives),
/// which the x86 kernels load straight into registers for groups of one block. A row's
/// result does not depend on the rows batched with it, nor on `pairs`.
#[cfg(feature = "alloc")]
pub(crate) fn dot4_i8_groups_rows<const R: usize>(
    isa: Isa,
    rows: [&[u8]; R],
    x: &Int8X,
    g: usize,
    gen: &portable::Gen16,
    params: impl Fn(usize, usize, &mut [[f32; 2]]),
    pairs: Option<[&[u8]; R]>,
) -> Option<[f32; R]> {
    if g == 0 || !g.is_multiple_of(QBLOCK) {
        return None;
    }
    let n = x.xq.len();
    let groups = n.div_ceil(g);
    if isa.path() == Path::Scalar {
        return Some(core::array::from_fn(|r| {
            let mut p = alloc::vec![[0.0f32; 2]; groups];
            params(r, 0, &mut p);
            portable::dot4_i8_groups(rows[r], &x.xq, &x.scales, g, &p, gen)
        }));
    }
    #[cfg(target_arch = "x86_64")]
    {
        let t = Int8Rows::of(isa)?;
        let mut out = t.dot4_i8_groups(rows, &x.xp, &x.ps, g, groups, gen, &params, pairs);
        if x.xp.len() < n {
            let group = x.xp.len() / g;
            for (r, o) in out.iter_mut().enumerate() {
                let mut p = [[0.0f32; 2]];
                params(r, group, &mut p);
                let [[a, q]] = p;
                *o += (a / 127.0) * short_tail(rows[r], x, &portable::table16_i8(gen, q));
            }
        }
        Some(out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = pairs;
        None
    }
}

/// A 4-bit row in groups of `g` codes (a multiple of 32) that share the int8 table `t16` (the
/// levels at `a = 127`) up to an `f16` scale per group (`scales`, two little-endian bytes a
/// group, positive and finite): the finished row result. Whole blocks go through the
/// kernel; a short last block (the row's tail) through the reference.
#[cfg(feature = "alloc")]
pub(crate) fn dot4_i8_scaled(
    isa: Isa,
    row: &[u8],
    x: &Int8X,
    g: usize,
    t16: &[i8; 16],
    scales: &[u8],
) -> f32 {
    if let Some([v]) = dot4_i8_scaled_rows(isa, [row], x, g, [t16], [scales]) {
        return v;
    }
    let n = x.xq.len();
    let whole = n / QBLOCK * QBLOCK;
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    if let Path::Neon(t) = isa.path() {
        let head = neon_scaled(t, row, t16, &x.xq[..whole], &x.scales, g, scales);
        return head + scaled_tail(row, x, g, t16, scales);
    }
    let head = portable::dot4_i8_scaled(row, t16, &x.xq[..whole], &x.scales, g, scales);
    head + scaled_tail(row, x, g, t16, scales)
}

/// [`portable::dot4_i8_scaled`] with each group's blocks through the NEON kernel, which
/// sums them in the reference's order: the same bits.
#[cfg(all(feature = "alloc", target_arch = "aarch64", target_feature = "neon"))]
fn neon_scaled(
    t: crate::isa::Neon,
    bytes: &[u8],
    t16: &[i8; 16],
    xq: &[i8],
    xscales: &[f32],
    g: usize,
    scales: &[u8],
) -> f32 {
    let blocks = (xq.len() / QBLOCK).min(xscales.len()).min(bytes.len() / 16);
    portable::scaled_groups(blocks, g, scales, |b, end| {
        t.dot4_i8(
            &bytes[16 * b..16 * end],
            t16,
            &xq[QBLOCK * b..QBLOCK * end],
            &xscales[b..end],
        )
    })
}

/// [`dot4_i8_scaled`] for `R` rows in one pass over `x` on the paths with a batched kernel;
/// `None` on the others. A row's result does not depend on
/// the rows batched with it.
#[cfg(feature = "alloc")]
pub(crate) fn dot4_i8_scaled_rows<const R: usize>(
    isa: Isa,
    rows: [&[u8]; R],
    x: &Int8X,
    g: usize,
    tables: [&[i8; 16]; R],
    scales: [&[u8]; R],
) -> Option<[f32; R]> {
    #[cfg(target_arch = "x86_64")]
    {
        let t = Int8Rows::of(isa)?;
        let mut out = t.dot4_i8_compact(rows, tables, &x.xp, &x.ps, g, scales);
        if x.xp.len() < x.xq.len() {
            for (r, o) in out.iter_mut().enumerate() {
                *o += scaled_tail(rows[r], x, g, tables[r], scales[r]);
            }
        }
        Some(out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, rows, x, g, tables, scales);
        None
    }
}

/// The short last block of a 4-bit row through its 16-entry table, by the reference (0 when
/// the row ends on a whole block): the part the pair-order kernels leave.
#[cfg(feature = "alloc")]
fn short_tail(row: &[u8], x: &Int8X, t16: &[i8; 16]) -> f32 {
    let n = x.xq.len();
    let whole = n / QBLOCK * QBLOCK;
    if whole == n {
        return 0.0;
    }
    let mut table = [0i8; 256];
    table[..16].copy_from_slice(t16);
    portable::dot_i8_span(4, row, whole, n - whole, &table, &x.xq, &x.scales)
}

/// The short last block of a compact row, scaled by its group's `a / 127` (0 when the row
/// ends on a whole block).
#[cfg(feature = "alloc")]
fn scaled_tail(row: &[u8], x: &Int8X, g: usize, t16: &[i8; 16], scales: &[u8]) -> f32 {
    let n = x.xq.len();
    let whole = n / QBLOCK * QBLOCK;
    if whole == n {
        return 0.0;
    }
    portable::scale_at(scales, whole / g.max(1)) * portable::INV_127 * short_tail(row, x, t16)
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    use crate::test_rng::{f16_scales, stored_pairs, xorshift32 as rng};

    /// A random `x` of `cols` values in `[-0.5, 0.5)`, quantized.
    fn random_x(next: &mut impl FnMut() -> u32, cols: usize) -> Int8X {
        let x: Vec<f32> = (0..cols)
            .map(|_| next() as f32 / u32::MAX as f32 - 0.5)
            .collect();
        Int8X::new(&x).unwrap()
    }

    /// Packed random 4-bit codes below `levels` and their int8 table.
    fn row(next: &mut impl FnMut() -> u32, cols: usize, levels: usize) -> (Vec<u8>, I8Table) {
        let codes: Vec<u8> = (0..cols).map(|_| (next() % levels as u32) as u8).collect();
        let mut packed = alloc::vec![0u8; cols.div_ceil(2)];
        portable::pack_reference(&codes, 4, &mut packed);
        let mut table = Table::new();
        for (k, v) in table.v[..levels].iter_mut().enumerate() {
            *v = (k as f32 - 7.5) * (1.0 + (next() % 100) as f32 / 100.0);
        }
        table.len = levels;
        let mut t8 = I8Table::new();
        t8.set(&table);
        (packed, t8)
    }

    #[test]
    fn pair_order_puts_even_and_odd_positions_where_the_nibbles_land() {
        let xq: Vec<i8> = (0..160).map(|i| i as i8).collect();
        let mut xp = alloc::vec![0i8; 160];
        portable::pair_order(&xq, &mut xp);
        // Pairs (0, 1) and (2, 3), then block 4 alone.
        for pair in 0..2 {
            let p = &xp[64 * pair..64 * pair + 64];
            for k in 0..16 {
                let b0 = 64 * pair;
                assert_eq!(p[k], xq[b0 + 2 * k]);
                assert_eq!(p[16 + k], xq[b0 + 32 + 2 * k]);
                assert_eq!(p[32 + k], xq[b0 + 2 * k + 1]);
                assert_eq!(p[48 + k], xq[b0 + 32 + 2 * k + 1]);
            }
        }
        for k in 0..16 {
            assert_eq!(xp[128 + k], xq[128 + 2 * k]);
            assert_eq!(xp[144 + k], xq[128 + 2 * k + 1]);
        }
    }

    /// `x` quantizes to the same int8 values, scales, pair order and scale lanes on every
    /// path as on the scalar one (the reference: `quantize_block` per block, `pair_order`),
    /// bit for bit: lengths around whole blocks and pairs, and blocks of zeros, of values
    /// whose quotient is an exact half, of subnormals (whose `127 / max` overflows) and of
    /// values near `f32::MAX`.
    #[test]
    fn x_quantizes_alike_on_every_path() {
        let mut next = rng(0x1a78_0002);
        let mut uniform = move || next() as f32 / u32::MAX as f32 - 0.5;
        let kinds: [&dyn Fn(usize, f32) -> f32; 7] = [
            &|_, u| u,
            &|_, _| 0.0,
            // A block's max `127/128` makes `127/max` 128 exactly, so `v · 127/max` lands on
            // the halves −15.5 … 15.5: the rounding's ties, away from zero.
            &|i, _| match i % QBLOCK {
                0 => 127.0 / 128.0,
                k => (k as f32 - 15.5) / 128.0,
            },
            &|i, u| f32::from_bits(1 + (i as u32 % 7)) * if u < 0.0 { -1.0 } else { 1.0 },
            &|_, u| u * 1e-38,
            // Small, but `127 / max` still finite.
            &|_, u| u * 1e-36,
            &|_, u| u * f32::MAX,
        ];
        let scalar = Isa::scalar();
        let mut checked = 0;
        for len in [
            0usize, 1, 31, 32, 33, 63, 64, 65, 95, 96, 97, 128, 160, 1000,
        ] {
            for round in 0..12 {
                // Each block from one kind, so whole blocks see each case.
                let x: Vec<f32> = (0..len)
                    .map(|i| kinds[(i / QBLOCK + round) % kinds.len()](i, uniform()))
                    .collect();
                let want = Int8X::on(scalar, &x).unwrap();
                for isa in Isa::available() {
                    let got = Int8X::on(isa, &x).unwrap();
                    let ctx = alloc::format!("{isa:?} len {len} round {round}");
                    assert_eq!(got.xq, want.xq, "{ctx}");
                    assert_eq!(got.xp, want.xp, "{ctx}");
                    let bits = |v: &[f32]| v.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got.scales), bits(&want.scales), "{ctx}");
                    assert_eq!(bits(&got.ps), bits(&want.ps), "{ctx}");
                    checked += 1;
                }
            }
        }
        assert!(checked >= 14 * 12);
    }

    /// A NaN or infinity anywhere in `x` is an error naming the first such value.
    #[test]
    fn non_finite_x_is_an_error_at_its_index() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0usize, 5, 31, 32, 99] {
                let mut x = alloc::vec![0.25f32; 100];
                x[at] = bad;
                x[at + 1..]
                    .iter_mut()
                    .step_by(3)
                    .for_each(|v| *v = f32::NAN);
                match Int8X::new(&x) {
                    Err(Error::NonFiniteInput { index, .. }) => assert_eq!(index, at),
                    other => panic!("{bad} at {at}: {:?}", other.map(|_| ())),
                }
            }
        }
        let finite = [f32::MAX, -f32::MAX, f32::MIN_POSITIVE, -0.0];
        assert!(check_finite(&finite).is_ok());
    }

    /// The 3-bit group kernel (int8 tables derived in registers) agrees with its scalar
    /// reference on every path, for groups of one and of three blocks, a short last group and
    /// rows whose bytes end with the codes (the last blocks go through the reference).
    #[test]
    fn derived_3bit_int8_groups_match_the_reference() {
        let mut next = rng(0x3b18_0001);
        let gens = [
            portable::Gen8::Exp { zero: false },
            portable::Gen8::Exp { zero: true },
            portable::Gen8::Scaled([-1.0, -0.6, -0.3, 0.0, 0.3, 0.6, 1.0, 0.0]),
        ];
        let mut ran = 0;
        for gen in &gens {
            for (g, cols) in [(32usize, 4096usize), (32, 1000), (96, 1000), (64, 64)] {
                let xq = random_x(&mut next, cols);
                let codes: Vec<u8> = (0..cols).map(|_| (next() % 7) as u8).collect();
                let mut packed = alloc::vec![0u8; (cols * 3).div_ceil(8)];
                portable::pack_reference(&codes, 3, &mut packed);
                let params: Vec<[f32; 2]> = (0..cols.div_ceil(g))
                    .map(|_| crate::test_rng::group_params(&mut next))
                    .collect();
                let reference =
                    portable::dot3_i8_groups(&packed, &xq.xq, &xq.scales, g, &params, gen);
                let magnitude: f32 = (0..cols)
                    .map(|j| {
                        let [a, q] = params[j / g];
                        let t = portable::table8_i8(gen, q);
                        let w = f32::from(t[usize::from(codes[j])]);
                        (w * f32::from(xq.xq[j]) * xq.scales[j / QBLOCK] * a / 127.0).abs()
                    })
                    .sum();
                for isa in Isa::available() {
                    let Some(got) = dot3_i8_groups(isa, &packed, &xq, g, &params, gen) else {
                        continue;
                    };
                    ran += 1;
                    assert!(
                        (got - reference).abs() <= 1e-5 * magnitude,
                        "{isa} {gen:?} g={g} cols={cols}: {got} vs {reference}"
                    );
                }
            }
        }
        assert!(ran >= 12, "the scalar path always runs");
    }

    /// The one-pass kernel of 2-bit blocks with their own lower magnitude agrees with its
    /// definition on every path that has it: exact integer sums per block, within `f32`
    /// summation error; an off-by-one in `r` or a table slot fails it.
    #[test]
    fn two_magnitude_blocks_match_their_definition() {
        let mut next = rng(0x51ed_270b);
        let mut ran = 0;
        for cols in [32usize, 64, 100, 1000, 4096, 4096 + 31] {
            let xq = random_x(&mut next, cols);
            let codes: Vec<u8> = (0..cols).map(|_| (next() % 4) as u8).collect();
            let mut packed = alloc::vec![0u8; cols.div_ceil(4)];
            portable::pack_reference(&codes, 2, &mut packed);
            let blocks = cols.div_ceil(QBLOCK);
            let lower: Vec<i8> = (0..blocks).map(|_| (next() % 128) as i8).collect();
            let scales: Vec<f32> = (0..blocks)
                .map(|b| xq.scales[b] * (0.5 + (next() % 100) as f32 / 100.0))
                .collect();
            let (mut exact, mut magnitude) = (0.0f64, 0.0f64);
            for (j, &c) in codes.iter().enumerate() {
                let r = lower[j / QBLOCK];
                let level = [-127, -r, r, 127][usize::from(c)];
                let term = f64::from(scales[j / QBLOCK]) * f64::from(level) * f64::from(xq.xq[j]);
                exact += term;
                magnitude += term.abs();
            }
            for isa in Isa::available() {
                let got = dot_int8_two_magnitudes(isa, &packed, cols, &xq.xq, &scales, &lower);
                let Some(got) = got else { continue };
                ran += 1;
                assert!(
                    (f64::from(got) - exact).abs() <= 1e-6 * magnitude,
                    "{isa} cols {cols}: {got} vs {exact}"
                );
            }
        }
        assert!(ran >= 6, "the scalar path always runs");
    }

    /// The batched rows agree with the scalar reference on every path, and a row's result is
    /// bit for bit the same alone or batched.
    #[test]
    fn batched_int8_rows_match_the_reference_and_each_other() {
        let mut next = rng(0x9e37_79b9);
        for cols in [32usize, 64, 96, 100, 128, 192, 1000, 1024, 4160] {
            let xq = random_x(&mut next, cols);
            let rows: Vec<_> = (0..ROWS_PER_PASS)
                .map(|r| row(&mut next, cols, if r % 2 == 0 { 16 } else { 15 }))
                .collect();
            let packed: [&[u8]; ROWS_PER_PASS] = core::array::from_fn(|r| &rows[r].0[..]);
            let t16: Vec<[i8; 16]> = rows.iter().map(|(_, t)| t.t16()).collect();
            let tables: [&[i8; 16]; ROWS_PER_PASS] = core::array::from_fn(|r| &t16[r]);
            for isa in Isa::available() {
                let Some(batched) = dot4_i8_rows(isa, packed, tables, &xq) else {
                    continue;
                };
                for r in 0..ROWS_PER_PASS {
                    let (p, t) = (&rows[r].0, &rows[r].1);
                    let reference = portable::dot_i8_span(4, p, 0, cols, &t.v, &xq.xq, &xq.scales);
                    let mag: f32 = (0..cols)
                        .map(|j| {
                            let w = t.v[usize::from(portable::code_at(p, 4, j))];
                            (f32::from(w) * f32::from(xq.xq[j])).abs() * xq.scales[j / QBLOCK]
                        })
                        .sum();
                    assert!(
                        (batched[r] - reference).abs() <= 1e-5 * mag,
                        "{isa} cols {cols} row {r}: {} vs {reference}",
                        batched[r]
                    );
                    let [alone] = dot4_i8_rows(isa, [packed[r]], [tables[r]], &xq).unwrap();
                    assert_eq!(alone.to_bits(), batched[r].to_bits(), "{isa} cols {cols}");
                }
            }
        }
    }

    /// The batched group kernels (a table per row with an `f16` scale per group, and a table
    /// and `f32` scale per group) agree with their scalar references on every path for group
    /// sizes whose pairs of blocks straddle groups (odd multiples of 32) and ones whose do
    /// not, and a row's result is bit for bit the same alone or batched.
    #[test]
    fn batched_group_rows_match_the_reference_and_each_other() {
        const R: usize = ROWS_PER_PASS;
        let mut next = rng(0x1b87_3593);
        for (g, cols) in [
            (32usize, 96usize),
            (32, 1000),
            (32, 4160),
            (64, 320),
            (64, 4160),
            (96, 4160),
            (128, 1024),
            (128, 1000),
            (128, 8224),
            (256, 4096),
            (192, 4224),
            (160, 3000),
            (512, 4160),
        ] {
            let xq = random_x(&mut next, cols);
            let groups = cols.div_ceil(g);
            let rows: Vec<(Vec<u8>, I8Table)> = (0..R).map(|_| row(&mut next, cols, 16)).collect();
            let packed: [&[u8]; R] = core::array::from_fn(|r| &rows[r].0[..]);
            let t16: Vec<[i8; 16]> = rows.iter().map(|(_, t)| t.t16()).collect();
            let tables: [&[i8; 16]; R] = core::array::from_fn(|r| &t16[r]);
            let scales: Vec<Vec<u8>> = (0..R).map(|_| f16_scales(&mut next, groups)).collect();
            let sc: [&[u8]; R] = core::array::from_fn(|r| &scales[r][..]);
            // Half the rows share one `q` over their groups, so the table reuse runs too.
            let params: Vec<Vec<[f32; 2]>> = (0..R)
                .map(|r| {
                    let row_q = crate::test_rng::ratio(&mut next);
                    (0..groups)
                        .map(|_| {
                            let [a, q] = crate::test_rng::group_params(&mut next);
                            [a, if r % 2 == 0 { row_q } else { q }]
                        })
                        .collect()
                })
                .collect();
            let stored = stored_pairs(&params);
            let pairs: [&[u8]; R] = core::array::from_fn(|r| &stored[r][..]);
            // Both exponential shapes, whose tables the kernel derives eight at a time, and
            // a linear one, whose table does not depend on `q`.
            let u: [f32; 16] = core::array::from_fn(|k| (k as f32 - 7.5) / 7.5);
            let gens = [
                portable::Gen16::Exp { zero: false },
                portable::Gen16::Exp { zero: true },
                portable::Gen16::Scaled(u),
            ];
            // Each term's magnitude, so the bound scales with the sum's size.
            let mag = |r: usize, t: &dyn Fn(usize) -> [i8; 16], s: &dyn Fn(usize) -> f32| {
                (0..cols)
                    .map(|j| {
                        let w = t(j / g)[usize::from(portable::code_at(packed[r], 4, j))];
                        (f32::from(w) * f32::from(xq.xq[j])).abs()
                            * xq.scales[j / QBLOCK]
                            * s(j / g)
                    })
                    .sum::<f32>()
            };
            for isa in Isa::available() {
                if let Some(batched) = dot4_i8_scaled_rows(isa, packed, &xq, g, tables, sc) {
                    for r in 0..R {
                        let reference =
                            dot4_i8_scaled(Isa::scalar(), packed[r], &xq, g, tables[r], sc[r]);
                        let s = |i: usize| portable::scale_at(sc[r], i) * portable::INV_127;
                        let m = mag(r, &|_| t16[r], &s);
                        assert!(
                            (batched[r] - reference).abs() <= 1e-5 * m,
                            "{isa} compact g {g} cols {cols} row {r}: {} vs {reference}",
                            batched[r]
                        );
                        let [alone] =
                            dot4_i8_scaled_rows(isa, [packed[r]], &xq, g, [tables[r]], [sc[r]])
                                .unwrap();
                        assert_eq!(alone.to_bits(), batched[r].to_bits(), "{isa} g {g}");
                    }
                }
                for gen in gens {
                    let p = |r: usize, i: usize, out: &mut [[f32; 2]]| {
                        out.copy_from_slice(&params[r][i..i + out.len()])
                    };
                    let Some(batched) = dot4_i8_groups_rows(isa, packed, &xq, g, &gen, p, None)
                    else {
                        continue;
                    };
                    // Loaded straight from their stored bytes, the parameters give the same
                    // bits as read one run at a time.
                    let direct = dot4_i8_groups_rows(isa, packed, &xq, g, &gen, p, Some(pairs));
                    assert_eq!(
                        direct.map(|v| v.map(f32::to_bits)),
                        Some(batched.map(f32::to_bits)),
                        "{isa} {gen:?} g {g} cols {cols}: stored pairs"
                    );
                    for r in 0..R {
                        let pr = |i: usize| params[r][i];
                        let reference =
                            dot4_i8_groups(Isa::scalar(), packed[r], &xq, g, &gen, pr).unwrap();
                        let t = |i: usize| portable::table16_i8(&gen, params[r][i][1]);
                        let m = mag(r, &t, &|i| params[r][i][0] / 127.0);
                        assert!(
                            (batched[r] - reference).abs() <= 1e-5 * m,
                            "{isa} {gen:?} g {g} cols {cols} row {r}: {} vs {reference}",
                            batched[r]
                        );
                        let [alone] = dot4_i8_groups_rows(
                            isa,
                            [packed[r]],
                            &xq,
                            g,
                            &gen,
                            |_, i, o: &mut [[f32; 2]]| p(r, i, o),
                            None,
                        )
                        .unwrap();
                        assert_eq!(alone.to_bits(), batched[r].to_bits(), "{isa} g {g}");
                    }
                }
            }
        }
    }

    /// On NEON the compact 4-bit path sums each group's blocks in the reference's order: the
    /// same bits, for group sizes of one and several blocks and rows with a short last block.
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    #[test]
    fn neon_scaled_rows_match_the_reference_bit_for_bit() {
        let mut next = rng(0x6a09_e667);
        for (g, cols) in [
            (32usize, 96usize),
            (64, 320),
            (96, 1000),
            (128, 4160),
            (256, 4096),
        ] {
            let xq = random_x(&mut next, cols);
            let (packed, t8) = row(&mut next, cols, 16);
            let t16 = t8.t16();
            let scales = f16_scales(&mut next, cols.div_ceil(g));
            let reference = dot4_i8_scaled(Isa::scalar(), &packed, &xq, g, &t16, &scales);
            let got = dot4_i8_scaled(Isa::detect(), &packed, &xq, g, &t16, &scales);
            assert_eq!(got.to_bits(), reference.to_bits(), "g {g} cols {cols}");
        }
    }

    /// The compact kernel with subnormal and normal `f16` group scales agrees with the
    /// reference on every path.
    #[test]
    fn scaled_rows_agree_for_subnormal_group_scales() {
        let mut next = rng(0x2545_f491);
        for (g, cols) in [(32usize, 96usize), (64, 320), (128, 1024), (96, 4160)] {
            let xq = random_x(&mut next, cols);
            let (packed, t8) = row(&mut next, cols, 16);
            let t16 = t8.t16();
            let scales: Vec<u8> = (0..cols.div_ceil(g))
                .flat_map(|i| {
                    let h = if i % 2 == 0 {
                        1 + next() % 0x3ff
                    } else {
                        0x0400 + next() % 0x7000
                    };
                    (h as u16).to_le_bytes()
                })
                .collect();
            let reference = dot4_i8_scaled(Isa::scalar(), &packed, &xq, g, &t16, &scales);
            let mag: f32 = (0..cols)
                .map(|j| {
                    let w = t16[usize::from(portable::code_at(&packed, 4, j))];
                    (f32::from(w) * f32::from(xq.xq[j])).abs()
                        * xq.scales[j / QBLOCK]
                        * portable::scale_at(&scales, j / g)
                        * portable::INV_127
                })
                .sum();
            for isa in Isa::available() {
                let got = dot4_i8_scaled(isa, &packed, &xq, g, &t16, &scales);
                assert!(
                    (got - reference).abs() <= 1e-5 * mag,
                    "{isa} g {g} cols {cols}: {got} vs {reference}"
                );
            }
        }
    }
}
