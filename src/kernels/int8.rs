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

    /// The first sixteen entries, the register table of the 4-bit x86 kernels.
    #[cfg(target_arch = "x86_64")]
    fn t16(&self) -> [i8; 16] {
        core::array::from_fn(|i| self.v[i])
    }
}

/// Checks that `x` is finite: a NaN or infinity would make its block's scale meaningless.
pub(crate) fn check_finite(x: &[f32]) -> Result<()> {
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

/// `x` quantized once for a whole GEMV.
#[cfg(feature = "alloc")]
pub(crate) struct Int8X {
    pub xq: alloc::vec::Vec<i8>,
    pub scales: alloc::vec::Vec<f32>,
}

#[cfg(feature = "alloc")]
impl Int8X {
    /// Quantizes `x`; an error if it holds a NaN or infinity.
    pub fn new(x: &[f32]) -> Result<Self> {
        check_finite(x)?;
        let mut xq = alloc::vec![0i8; x.len()];
        let mut scales = alloc::vec![0.0f32; x.len().div_ceil(QBLOCK)];
        quantize_x(x, &mut xq, &mut scales);
        Ok(Int8X { xq, scales })
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
        for (w, &c) in w[..n].iter_mut().zip(&codes[..n]) {
            *w = table.v[usize::from(c)];
        }
        let s = &scales[k * (CHUNK / QBLOCK)..];
        acc += match isa.path() {
            #[cfg(target_arch = "x86_64")]
            Path::Avx2(t) => t.dot_i8(&w[..n], x, s),
            #[cfg(target_arch = "x86_64")]
            Path::Avx512(t) => t.avx2().dot_i8(&w[..n], x, s),
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
#[cfg(feature = "alloc")]
pub(crate) fn dot4_i8_groups(
    isa: Isa,
    row: &[u8],
    x: &Int8X,
    g: usize,
    gen: &portable::Gen16,
    params: impl Fn(usize) -> [f32; 2],
) -> Option<f32> {
    if g == 0 || !g.is_multiple_of(QBLOCK) {
        return None;
    }
    const RUN: usize = 64;
    let mut buf = [[0.0f32; 2]; RUN];
    let n = x.xq.len();
    let groups = n.div_ceil(g);
    let mut acc = 0.0f32;
    let mut first = 0;
    while first < groups {
        let k = RUN.min(groups - first);
        for (j, slot) in buf[..k].iter_mut().enumerate() {
            *slot = params(first + j);
        }
        let start = first * g;
        let xs = &x.xq[start..((first + k) * g).min(n)];
        let ss = &x.scales[start / QBLOCK..];
        let bytes = &row[start / 2..];
        acc += match isa.path() {
            Path::Scalar => portable::dot4_i8_groups(bytes, xs, ss, g, &buf[..k], gen),
            #[cfg(target_arch = "x86_64")]
            Path::Avx2(t) => t.dot4_i8_groups(bytes, xs, ss, g, &buf[..k], gen),
            #[cfg(target_arch = "x86_64")]
            Path::Avx512(t) => t.avx2().dot4_i8_groups(bytes, xs, ss, g, &buf[..k], gen),
            _ => return None,
        };
        first += k;
    }
    Some(acc)
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
    let n = x.xq.len();
    let whole = n / QBLOCK * QBLOCK;
    let head = match isa.path() {
        #[cfg(target_arch = "x86_64")]
        Path::Avx2(t) => t.dot4_i8_scaled(row, t16, &x.xq[..whole], &x.scales, g, scales),
        #[cfg(target_arch = "x86_64")]
        Path::Avx512(t) => t
            .avx2()
            .dot4_i8_scaled(row, t16, &x.xq[..whole], &x.scales, g, scales),
        _ => portable::dot4_i8_scaled(row, t16, &x.xq[..whole], &x.scales, g, scales),
    };
    if whole == n {
        return head;
    }
    let mut table = [0i8; 256];
    table[..16].copy_from_slice(t16);
    let part = portable::dot_i8_span(4, row, whole, n - whole, &table, &x.xq, &x.scales);
    head + portable::scale_at(scales, whole / g.max(1)) * portable::INV_127 * part
}
