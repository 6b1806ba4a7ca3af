//! Dot products of packed codes with `f32` vectors: the public entry points, the row kernel,
//! and the GEMV's plan that permutes `x` once for every row.

use super::{aligned_head, check_codes, Table, CHUNK};
use crate::error::Result;
use crate::isa::{portable, Isa, Path};
#[cfg(all(target_arch = "x86_64", feature = "alloc"))]
use crate::isa::{x86_avx2, x86_avx512};
use crate::pack;

/// `Σ levels[code_j] · x[j]` over the `x.len()` codes in `packed`, with the checks of
/// [`decode`](super::decode). The sum order depends on the path (see the module docs).
///
/// ```
/// let levels = [-1.0f32, 0.0, 1.0];
/// let y = expquant::kernels::dot(2, &[0b10_01_00_01], &levels, &[1.0, 2.0, 3.0, 4.0])?;
/// assert_eq!(y, -2.0 + 4.0);
/// # Ok::<(), expquant::Error>(())
/// ```
pub fn dot(bits: u8, packed: &[u8], levels: &[f32], x: &[f32]) -> Result<f32> {
    dot_with(Isa::detect(), bits, packed, levels, x)
}

/// [`dot`] on a chosen path, so that tests and benchmarks can compare paths.
pub fn dot_with(isa: Isa, bits: u8, packed: &[u8], levels: &[f32], x: &[f32]) -> Result<f32> {
    check_codes(bits, packed, x.len(), levels)?;
    let table = Table::from_levels(levels);
    // With an allocator this is the GEMV's own row kernel (lane-permuted `x` where it pays).
    #[cfg(feature = "alloc")]
    return Ok(DotPlan::new(isa, bits, x, x.len()).dot(packed, 0, x.len(), &table));
    #[cfg(not(feature = "alloc"))]
    Ok(dot_span(isa, bits, packed, 0, &table, x))
}

/// `Σ table[code start + j] · x[j]` over one packed row. The caller guarantees the codes exist
/// and index `table`.
pub(crate) fn dot_span(
    isa: Isa,
    bits: u8,
    row: &[u8],
    start: usize,
    table: &Table,
    x: &[f32],
) -> f32 {
    let path = isa.path();
    if path == Path::Scalar {
        return portable::dot_span(bits, row, start, &table.v, x);
    }
    // Callers pass the empty rest of a span their block kernel covered whole (a group per
    // block at 1 and 2 bits): skip the chunk buffer's set-up, ~100 instructions a call.
    if x.is_empty() {
        return 0.0;
    }
    let head = aligned_head(bits, start, x.len());
    let (first, rest) = x.split_at(head);
    let mut acc = portable::dot_span(bits, row, start, &table.v, first);
    let mut byte = (start + head) * usize::from(bits) / 8;
    #[cfg(any(
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_feature = "neon")
    ))]
    let (bytes, v) = (&row[byte..], &table.v);
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Avx512(t) if bits == 4 && table.len <= 16 => return acc + t.dot4(bytes, v, rest),
        #[cfg(target_arch = "x86_64")]
        Path::Avx2(t) if bits == 4 && table.len <= 16 => return acc + t.dot4(bytes, v, rest),
        #[cfg(target_arch = "x86_64")]
        Path::Avx2(t) if bits == 3 && table.len <= 8 => return acc + t.dot3(bytes, v, rest),
        #[cfg(target_arch = "x86_64")]
        Path::Avx512(t) if bits == 3 && table.len <= 8 => {
            return acc + t.avx2().dot3(bytes, v, rest)
        }
        #[cfg(target_arch = "x86_64")]
        Path::Avx512(t) if bits == 8 => {
            if let Some(vbmi) = t.vbmi() {
                return acc + vbmi.dot8(bytes, v, rest);
            }
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Path::Neon(t) if matches!(bits, 1 | 2 | 4) => {
            return acc
                + match bits {
                    4 => t.dot_packed::<4>(bytes, v, rest),
                    2 => t.dot_packed::<2>(bytes, v, rest),
                    _ => t.dot_packed::<1>(bytes, v, rest),
                };
        }
        _ => {}
    }
    let mut codes = [0u8; CHUNK];
    for chunk in rest.chunks(CHUNK) {
        let nb = pack::packed_len(chunk.len(), bits).unwrap_or(0);
        let codes = &mut codes[..chunk.len()];
        pack::unpack_fast(isa, &row[byte..byte + nb], bits, codes);
        acc += lut_dot(path, codes, table, chunk);
        byte += nb;
    }
    acc
}

/// `Σ table[codes[i]] · x[i]` on `path`.
fn lut_dot(path: Path, codes: &[u8], table: &Table, x: &[f32]) -> f32 {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Avx512(t) => t.lut_dot(codes, &table.v, table.len, x),
        #[cfg(target_arch = "x86_64")]
        Path::Avx2(t) => t.lut_dot(codes, &table.v, table.len, x),
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Path::Neon(t) if table.len <= 64 => t.lut_dot(codes, &table.v, table.len, x),
        _ => portable::lut_dot(codes, &table.v, x),
    }
}

/// A GEMV's view of `x`, prepared once per call and shared by every row.
///
/// At 1, 2 and 4 bits on AVX2 or AVX-512 it holds `x` permuted to the lane layout of the
/// `dot_perm` kernels, so a row's packed bytes feed the permute-and-FMA loop with no unpacking
/// at all; spans that do not start on a block boundary (small groups) take the ordinary path.
#[cfg(feature = "alloc")]
pub(crate) struct DotPlan<'x> {
    isa: Isa,
    bits: u8,
    /// Codes per block of the permuted layout; 0 when it is not used.
    block: usize,
    /// Whether `xperm` is in the run order of the AVX2 byte-plane kernel (`dot_planes4`,
    /// 4-bit rows through [`dot`](Self::dot)) rather than the lane-permuted layout.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    runs: bool,
    x: &'x [f32],
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    xperm: alloc::vec::Vec<f32>,
    /// `x` in the quad layout of the AVX2 `dot_quad_groups` (4-bit groups of an odd multiple
    /// of 32 codes, from [`for_groups`](Self::for_groups)); empty otherwise. Only
    /// [`dot4_groups`](Self::dot4_groups) reads it.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    xquads: alloc::vec::Vec<f32>,
}

/// Writes `x`'s whole blocks of `block` values into `out` in the lane-permuted order of a
/// `lanes`-lane kernel (`out[b·block + m·lanes + l]` = `x[b·block + l·(block / lanes) + m]`),
/// as many whole blocks as both hold; returns the values written.
pub(crate) fn permute_blocks(x: &[f32], block: usize, lanes: usize, out: &mut [f32]) -> usize {
    if block == 0 || lanes == 0 {
        return 0;
    }
    let per_lane = block / lanes;
    let full = x.len().min(out.len()) / block * block;
    for (blk, dst) in x[..full]
        .chunks_exact(block)
        .zip(out[..full].chunks_exact_mut(block))
    {
        for m in 0..per_lane {
            for l in 0..lanes {
                dst[m * lanes + l] = blk[l * per_lane + m];
            }
        }
    }
    full
}

/// Whole blocks of an AVX2 lane-permuted `x` (`xp`, from [`permute_blocks`] with 8 lanes) dotted
/// with the codes of one row from its byte `bytes[0]` on, through the 16-entry table `t16`
/// (`Table::repeated16`), at 1, 2 or 4 bits; 0 at other widths.
#[cfg(target_arch = "x86_64")]
pub(crate) fn dot_permuted_avx2(
    t: crate::isa::Avx2,
    bits: u8,
    bytes: &[u8],
    t16: &[f32; 16],
    xp: &[f32],
) -> f32 {
    match bits {
        4 => t.dot_perm::<4>(bytes, t16, xp),
        2 => t.dot_perm::<2>(bytes, t16, xp),
        1 => t.dot_perm::<1>(bytes, t16, xp),
        _ => 0.0,
    }
}

/// [`dot_permuted_avx2`] for rows whose groups of `g` codes share the table up to an `f16`
/// scale each (`scales`, from the first group of `bytes` on), as
/// [`Avx2::dot_perm_scaled`](crate::isa::Avx2) takes them; 0 at other widths.
#[cfg(target_arch = "x86_64")]
pub(crate) fn dot_permuted_scaled_avx2(
    t: crate::isa::Avx2,
    bits: u8,
    bytes: &[u8],
    t16: &[f32; 16],
    xp: &[f32],
    g: usize,
    scales: &[u8],
) -> f32 {
    match bits {
        4 => t.dot_perm_scaled::<4>(bytes, t16, xp, g, scales),
        2 => t.dot_perm_scaled::<2>(bytes, t16, xp, g, scales),
        1 => t.dot_perm_scaled::<1>(bytes, t16, xp, g, scales),
        _ => 0.0,
    }
}

#[cfg(feature = "alloc")]
impl<'x> DotPlan<'x> {
    /// Prepares `x` for rows of `bits`-bit codes whose spans (groups) are `group_len` long.
    /// On AVX2 4-bit rows take the byte-plane kernel, which reads `x` in its own run order.
    pub fn new(isa: Isa, bits: u8, x: &'x [f32], group_len: usize) -> Self {
        Self::with_layout(isa, bits, x, group_len, true)
    }

    /// [`new`](Self::new), with `runs` whether AVX2 4-bit rows take the byte-plane kernel
    /// (else `x` stays in the lane-permuted layout, which the scaled and group kernels read).
    fn with_layout(isa: Isa, bits: u8, x: &'x [f32], group_len: usize, runs: bool) -> Self {
        #[cfg(target_arch = "x86_64")]
        let runs = runs && bits == 4 && matches!(isa.path(), Path::Avx2(_));
        #[cfg(not(target_arch = "x86_64"))]
        let runs = {
            let _ = runs;
            false
        };
        let (lanes, block) = match (isa.path(), bits) {
            #[cfg(target_arch = "x86_64")]
            (Path::Avx512(_), 1 | 2 | 4) => (16, x86_avx512::perm_block(u32::from(bits))),
            #[cfg(target_arch = "x86_64")]
            (Path::Avx2(_), 1 | 2 | 4) => (8, x86_avx2::perm_block(u32::from(bits))),
            _ => (0, 0),
        };
        // Worth it only when whole blocks fit in a group and groups start on blocks.
        let usable = block > 0
            && group_len >= block
            && (group_len.is_multiple_of(block) || group_len >= x.len());
        let mut xperm = alloc::vec::Vec::new();
        if usable {
            // `max(1)`: on targets without a permuted kernel `block` is 0 and this is dead code.
            xperm.resize(x.len() / block.max(1) * block, 0.0);
            match isa.path() {
                // A 4-bit block is one run of the byte-plane kernel (64 codes).
                #[cfg(target_arch = "x86_64")]
                Path::Avx2(t) if runs => t.permute_runs64(x, &mut xperm),
                #[cfg(target_arch = "x86_64")]
                Path::Avx2(t) => t.permute_blocks(x, block / lanes, &mut xperm),
                _ => permute_blocks(x, block, lanes, &mut xperm),
            };
        }
        DotPlan {
            isa,
            bits,
            block: if usable { block } else { 0 },
            runs,
            x,
            xperm,
            xquads: alloc::vec::Vec::new(),
        }
    }

    /// The instruction set this plan's kernels run on.
    #[cfg(target_arch = "x86_64")]
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// `x` as the plan was made for it (not rearranged).
    #[cfg(target_arch = "x86_64")]
    pub fn x(&self) -> &[f32] {
        self.x
    }

    /// The AVX2 proof and `x`'s whole runs of 64 values in run order, where this plan feeds
    /// whole 4-bit rows to [`Avx2::dot_planes4`](crate::isa::Avx2) (a plan from
    /// [`new`](Self::new) on an AVX2 CPU, rows of at least one run); `None` otherwise. The
    /// codes after the runs take [`dot`](Self::dot).
    #[cfg(target_arch = "x86_64")]
    pub fn row_planes(&self) -> Option<(crate::isa::Avx2, &[f32])> {
        match self.isa.path() {
            Path::Avx2(t) if self.runs && self.block > 0 && !self.xperm.is_empty() => {
                Some((t, &self.xperm))
            }
            _ => None,
        }
    }

    /// `Σ table[code j] · x[j]` for `j` in `start .. start + len` of one packed row.
    pub fn dot(&self, row: &[u8], start: usize, len: usize, table: &Table) -> f32 {
        let x = &self.x[start..start + len];
        // Blocks are powers of two: shifts and masks, not a division per row (three of them
        // cost a 1024-code row as much as a fifth of its kernel).
        debug_assert!(self.block == 0 || self.block.is_power_of_two());
        if self.block == 0 || start & (self.block - 1) != 0 || table.len > 16 {
            return dot_span(self.isa, self.bits, row, start, table, x);
        }
        #[cfg(target_arch = "x86_64")]
        {
            let shift = self.block.trailing_zeros();
            let blocks = (len >> shift).min(self.xperm.len().saturating_sub(start) >> shift);
            let done = blocks << shift;
            let bytes_per_block = self.block * usize::from(self.bits) / 8;
            let b0 = (start >> shift) * bytes_per_block;
            let bytes = &row[b0..b0 + blocks * bytes_per_block];
            let xp = &self.xperm[start..start + done];
            let t16 = table.repeated16(self.bits);
            let head = match (self.isa.path(), self.bits) {
                (Path::Avx512(t), 4) => t.dot_perm::<4>(bytes, &t16, xp),
                (Path::Avx512(t), 2) => t.dot_perm::<2>(bytes, &t16, xp),
                (Path::Avx512(t), 1) => t.dot_perm::<1>(bytes, &t16, xp),
                (Path::Avx2(t), 4) if self.runs => t.dot_planes4(bytes, &t16, xp),
                (Path::Avx2(t), bits) => dot_permuted_avx2(t, bits, bytes, &t16, xp),
                _ => 0.0,
            };
            head + dot_span(self.isa, self.bits, row, start + done, table, &x[done..])
        }
        #[cfg(not(target_arch = "x86_64"))]
        dot_span(self.isa, self.bits, row, start, table, x)
    }
}

#[cfg(feature = "alloc")]
impl DotPlan<'_> {
    /// [`dot`](Self::dot) for `R` rows over the same span, `rows[k]` with `tables[k]`; only
    /// the first `live` results are needed. On AVX-512 at 1, 2 and 4 bits the whole blocks
    /// of all `R` rows go through one kernel that shares each load of the permuted `x`
    /// (every row is computed then, `live` or not: the caller pads with real rows). A row's
    /// result never depends on its companions, so batching changes no bits.
    pub fn dot_rows<const R: usize>(
        &self,
        rows: &[&[u8]; R],
        tables: &[&Table; R],
        live: usize,
        start: usize,
        len: usize,
    ) -> [f32; R] {
        let mut out = [0.0f32; R];
        #[cfg(target_arch = "x86_64")]
        if let Path::Avx512(t) = self.isa.path() {
            if self.block > 0
                && start.is_multiple_of(self.block)
                && tables.iter().all(|table| table.len <= 16)
            {
                let blocks =
                    (len / self.block).min(self.xperm.len().saturating_sub(start) / self.block);
                let done = blocks * self.block;
                let bytes_per_block = self.block * usize::from(self.bits) / 8;
                let b0 = start / self.block * bytes_per_block;
                let b1 = b0 + blocks * bytes_per_block;
                let bytes: [&[u8]; R] = core::array::from_fn(|k| &rows[k][b0..b1]);
                let xp = &self.xperm[start..start + done];
                let v: [&[f32; 256]; R] = core::array::from_fn(|k| &tables[k].v);
                out = match self.bits {
                    4 => t.dot_perm_rows::<4, R>(&bytes, &v, xp),
                    2 => t.dot_perm_rows::<2, R>(&bytes, &v, xp),
                    _ => t.dot_perm_rows::<1, R>(&bytes, &v, xp),
                };
                if done < len {
                    let x = &self.x[start + done..start + len];
                    for k in 0..live.min(R) {
                        let (row, table) = (rows[k], tables[k]);
                        out[k] += dot_span(self.isa, self.bits, row, start + done, table, x);
                    }
                }
                return out;
            }
        }
        for k in 0..live.min(R) {
            out[k] = self.dot(rows[k], start, len, tables[k]);
        }
        out
    }
}

/// A 4-bit row of groups of `g` codes with each group's table derived from its parameters
/// (`read(first, out)` writes the `(a, q)` of groups `first .. first + out.len()`, a run at
/// a time as `ParamEncoding::read_run` does), on `isa`; `None` where no such kernel runs
/// (then the caller takes the stored-table path). The scalar path is
/// [`portable::dot4_groups`], the definition.
pub(crate) fn dot4_groups(
    isa: Isa,
    row: &[u8],
    x: &[f32],
    g: usize,
    gen: &portable::Gen16,
    read: impl Fn(usize, &mut [[f32; 2]]),
) -> Option<f32> {
    if g == 0 || !g.is_multiple_of(16) {
        return None;
    }
    sum_param_runs(x.len().div_ceil(g), read, |first, params| {
        let xs = &x[first * g..((first + params.len()) * g).min(x.len())];
        let bytes = &row[first * g / 2..];
        Some(match isa.path() {
            Path::Scalar => portable::dot4_groups(bytes, xs, g, params, gen),
            #[cfg(target_arch = "x86_64")]
            Path::Avx2(t) => t.dot4_groups(bytes, xs, g, params, gen),
            #[cfg(target_arch = "x86_64")]
            Path::Avx512(t) => t.avx2().dot4_groups(bytes, xs, g, params, gen),
            _ => return None,
        })
    })
}

/// A 3-bit row of groups of `g` codes (a multiple of 8) with each group's table derived from
/// its parameters (`read` as for [`dot4_groups`]), on `isa`; `None` where no such kernel
/// runs (then the caller takes the stored-table path). The scalar path is
/// [`portable::dot3_groups`], the definition.
pub(crate) fn dot3_groups(
    isa: Isa,
    row: &[u8],
    x: &[f32],
    g: usize,
    gen: &portable::Gen8,
    read: impl Fn(usize, &mut [[f32; 2]]),
) -> Option<f32> {
    if g == 0 || !g.is_multiple_of(8) {
        return None;
    }
    sum_param_runs(x.len().div_ceil(g), read, |first, params| {
        let xs = &x[first * g..((first + params.len()) * g).min(x.len())];
        let bytes = &row[first * g * 3 / 8..];
        Some(match isa.path() {
            Path::Scalar => portable::dot3_groups(bytes, xs, g, params, gen),
            #[cfg(target_arch = "x86_64")]
            Path::Avx2(t) => t.dot3_groups(bytes, xs, g, params, gen),
            #[cfg(target_arch = "x86_64")]
            Path::Avx512(t) => t.avx2().dot3_groups(bytes, xs, g, params, gen),
            _ => return None,
        })
    })
}

/// `Σ part(first, params)` over runs of up to 64 of `groups` groups in order, each run's
/// `(a, q)` gathered onto the stack by `read(first, out)`; `None` as soon as a part is.
fn sum_param_runs(
    groups: usize,
    read: impl Fn(usize, &mut [[f32; 2]]),
    mut part: impl FnMut(usize, &[[f32; 2]]) -> Option<f32>,
) -> Option<f32> {
    const RUN: usize = 64;
    let mut buf = [[0.0f32; 2]; RUN];
    let mut acc = 0.0f32;
    let mut first = 0;
    while first < groups {
        let n = RUN.min(groups - first);
        read(first, &mut buf[..n]);
        acc += part(first, &buf[..n])?;
        first += n;
    }
    Some(acc)
}

/// A row of groups of `g` codes that share the level table `unit` up to a scale per group:
/// `Σ_i a_i · Σ_{j in group i} unit[code j] · x[j]`, `a_i` the `f16` at bytes `2i .. 2i + 2`
/// of `scales` (positive and finite, as stored parameters are checked to be). Compact
/// parameters make a row's levels one unit table times each group's `a`, so the table is
/// built once per row and a group costs one multiplication. The caller guarantees the codes
/// exist and index `unit`, and that `scales` holds every group of `x`.
pub(crate) fn dot_scaled(
    isa: Isa,
    bits: u8,
    row: &[u8],
    x: &[f32],
    g: usize,
    unit: &Table,
    scales: &[u8],
) -> f32 {
    let g = g.max(1);
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(t) = isa.avx2() {
            if bits == 4 && unit.len <= 16 && g.is_multiple_of(16) {
                return t.dot4_scaled(row, &unit.v, x, g, scales);
            }
            if bits == 3 && unit.len <= 8 && g.is_multiple_of(8) {
                return t.dot3_scaled(row, &unit.v, x, g, scales);
            }
        }
    }
    dot_scaled_groups(isa, bits, row, 0, x, g, unit, scales)
}

/// The definition of [`dot_scaled`] from code `start` of the row on (a group boundary; `x`
/// and `scales` begin there): each group's [`dot_span`] times its scale.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dot_scaled_groups(
    isa: Isa,
    bits: u8,
    row: &[u8],
    start: usize,
    x: &[f32],
    g: usize,
    unit: &Table,
    scales: &[u8],
) -> f32 {
    let mut acc = 0.0f32;
    for (i, xg) in x.chunks(g).enumerate() {
        let part = dot_span(isa, bits, row, start + i * g, unit, xg);
        acc += portable::scale_at(scales, i) * part;
    }
    acc
}

#[cfg(feature = "alloc")]
impl DotPlan<'_> {
    /// A plan for [`dot_scaled`](Self::dot_scaled): `x` in the AVX2 lane layout at 1, 2 and
    /// 4 bits on AVX2 and AVX-512 CPUs (the scaled kernel is the AVX2 one on both).
    pub fn for_scaled(isa: Isa, bits: u8, x: &[f32]) -> DotPlan<'_> {
        DotPlan::with_layout(isa.without_avx512(), bits, x, x.len(), false)
    }

    /// A plan for [`dot_scaled`](Self::dot_scaled) of rows in groups of `g` codes (compact
    /// parameters): [`for_scaled`](Self::for_scaled)'s, except that on AVX2 and AVX-512 CPUs
    /// 4-bit groups of 32 or of a multiple of 64 codes take the byte-plane kernel, `x` in
    /// its run order.
    pub fn for_compact(isa: Isa, bits: u8, x: &[f32], g: usize) -> DotPlan<'_> {
        let runs = bits == 4 && (g == 32 || (g > 0 && g.is_multiple_of(64)));
        DotPlan::with_layout(isa.without_avx512(), bits, x, x.len(), runs)
    }

    /// A plan for rows in groups of `g` codes with their own `(a, q)`
    /// ([`dot4_groups`](Self::dot4_groups), [`dot_narrow_groups`](Self::dot_narrow_groups)):
    /// [`for_scaled`](Self::for_scaled)'s, except for 4-bit groups of an odd multiple of 32
    /// codes (32, 96, …), which are not whole blocks of the lane-permuted layout: for them on
    /// AVX2 and AVX-512 CPUs `x` goes to the quad layout of `dot_quad_groups` instead, and
    /// the plan's other methods take the ordinary path.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    pub fn for_groups(isa: Isa, bits: u8, x: &[f32], g: usize) -> DotPlan<'_> {
        #[cfg(target_arch = "x86_64")]
        if let Path::Avx2(t) = isa.without_avx512().path() {
            let quad = x86_avx2::QUAD_BLOCK;
            if bits == 4 && x86_avx2::quad_groups(g) {
                let mut xquads = alloc::vec![0.0; x.len() / quad * quad];
                t.permute_blocks(x, quad / 8, &mut xquads);
                return DotPlan {
                    isa: isa.without_avx512(),
                    bits,
                    block: 0,
                    runs: false,
                    x,
                    xperm: alloc::vec::Vec::new(),
                    xquads,
                };
            }
        }
        Self::for_scaled(isa, bits, x)
    }

    /// The byte-plane kernel of 4-bit rows in compact groups of `g` codes
    /// (`Avx2::dot_planes4_scaled`) and the part of this plan's run-order `x` it covers:
    /// whole runs of whole groups, which the caller finishes with [`dot_scaled_groups`].
    /// `None` where the plan is not a byte-plane one for `g` (a
    /// [`for_compact`](Self::for_compact) plan for 4-bit groups of 32 or of a multiple of
    /// 64, on AVX2). The same for every row: a loop over rows asks once.
    #[cfg(target_arch = "x86_64")]
    pub fn scaled_runs(&self, g: usize) -> Option<(crate::isa::Avx2, &[f32])> {
        let Path::Avx2(t) = self.isa.path() else {
            return None;
        };
        let block = self.block;
        if !(self.runs && block > 0 && (g == 32 || (g > 0 && g.is_multiple_of(block)))) {
            return None;
        }
        let whole = (g / block).max(1);
        let done = (self.xperm.len() / block) / whole * whole * block;
        Some((t, &self.xperm[..done]))
    }

    /// [`dot_scaled`](fn@dot_scaled) of a whole row with this plan's `x` (a plan from
    /// [`for_scaled`](Self::for_scaled)): whole blocks through the lane-permuted kernel when
    /// group boundaries fall on its lanes, the rest group by group.
    pub fn dot_scaled(&self, row: &[u8], g: usize, unit: &Table, scales: &[u8]) -> f32 {
        let g = g.max(1);
        let x = self.x;
        #[cfg(target_arch = "x86_64")]
        if let Path::Avx2(t) = self.isa.path() {
            let per_lane = 32 / usize::from(self.bits);
            let block = self.block;
            // A `for_compact` plan: `x` in run order, whose blocks (runs of 64 codes) hold two
            // groups of 32 or are whole in a group (the plan was made for this `g`).
            if unit.len <= 16 {
                if let Some((t, xr)) = self.scaled_runs(g) {
                    let done = xr.len();
                    let t16 = unit.repeated16(self.bits);
                    let head = t.dot_planes4_scaled(&row[..done / 2], &t16, xr, g, scales);
                    let rest = &scales[2 * (done / g)..];
                    return head
                        + dot_scaled_groups(
                            self.isa,
                            self.bits,
                            row,
                            done,
                            &x[done..],
                            g,
                            unit,
                            rest,
                        );
                }
            }
            if block > 0
                && !self.runs
                && unit.len <= 16
                && g.is_multiple_of(per_lane)
                && (g.is_multiple_of(block) || block.is_multiple_of(g))
            {
                // Whole blocks that end on a group boundary.
                let blocks = (self.xperm.len() / block) / (g / block).max(1) * (g / block).max(1);
                let done = blocks * block;
                let bytes = &row[..done * usize::from(self.bits) / 8];
                let t16 = unit.repeated16(self.bits);
                let xp = &self.xperm[..done];
                let head = dot_permuted_scaled_avx2(t, self.bits, bytes, &t16, xp, g, scales);
                let rest = &scales[2 * (done / g)..];
                return head
                    + dot_scaled_groups(self.isa, self.bits, row, done, &x[done..], g, unit, rest);
            }
        }
        dot_scaled(self.isa, self.bits, row, x, g, unit, scales)
    }
}

#[cfg(feature = "alloc")]
impl DotPlan<'_> {
    /// [`dot4_groups`](fn@dot4_groups) of a whole 4-bit row with this plan's `x` (a plan from
    /// [`for_scaled`](Self::for_scaled) or [`for_groups`](Self::for_groups)): on AVX2 and
    /// AVX-512 CPUs, groups of whole blocks of the lane-permuted layout (a multiple of 64
    /// codes), or of the quad layout (a `for_groups` plan, an odd multiple of 32), through
    /// the kernels that read codes in place where the plain one widens each to a lane first,
    /// and a row's short last group through the plain one. `read(first, out)` writes the
    /// `(a, q)` of groups `first .. first + out.len()` (a run at a time, as
    /// `ParamEncoding::read_run` does). `None` where [`dot4_groups`](fn@dot4_groups) gives
    /// `None`.
    pub fn dot4_groups(
        &self,
        row: &[u8],
        g: usize,
        gen: &portable::Gen16,
        read: impl Fn(usize, &mut [[f32; 2]]),
    ) -> Option<f32> {
        #[cfg(target_arch = "x86_64")]
        if let Path::Avx2(t) = self.isa.path() {
            // Whole groups of a rearranged `x` through `kernel`, the rest through the plain
            // kernel.
            type Kernel =
                fn(crate::isa::Avx2, &[u8], &[f32], usize, &[[f32; 2]], &portable::Gen16) -> f32;
            let whole_groups = |xs: &[f32], kernel: Kernel| {
                let whole = (xs.len() / g).min(row.len() * 2 / g);
                let mut acc = sum_param_runs(whole, &read, |first, params| {
                    let end = first + params.len();
                    let bytes = &row[first * g / 2..end * g / 2];
                    Some(kernel(t, bytes, &xs[first * g..end * g], g, params, gen))
                })?;
                let done = whole * g;
                if done < self.x.len() {
                    let tail = &self.x[done..];
                    let rest = |i: usize, out: &mut [[f32; 2]]| read(whole + i, out);
                    acc += dot4_groups(self.isa, &row[done / 2..], tail, g, gen, rest)?;
                }
                Some(acc)
            };
            let quad = x86_avx2::QUAD_BLOCK;
            if self.bits == 4 && !self.xquads.is_empty() && g > 0 && g.is_multiple_of(quad) {
                return whole_groups(&self.xquads, crate::isa::Avx2::dot_quad_groups);
            }
            if self.bits == 4 && self.block > 0 && g > 0 && g.is_multiple_of(self.block) {
                return whole_groups(&self.xperm, crate::isa::Avx2::dot_perm_groups);
            }
        }
        dot4_groups(self.isa, row, self.x, g, gen, read)
    }

    /// The dot product of a whole 1- or 2-bit row in groups of `g` codes with their own
    /// parameters, on AVX2 (a plan from [`for_scaled`](Self::for_scaled)): `read(first,
    /// out)` writes the `(a, q)` of groups `first .. first + out.len()` (a run at a time),
    /// and `gen` derives a group's levels from them. Groups that fill whole blocks of the
    /// lane-permuted layout, or whole blocks of such groups, run the lane-permuted kernel
    /// (`dot_perm_narrow`) straight on their bytes with no table built in memory; the groups
    /// after the last whole block run [`dot`](Self::dot) one by one. `None` where this does
    /// not apply (other widths and paths, groups off the lanes), with nothing computed.
    pub fn dot_narrow_groups(
        &self,
        row: &[u8],
        g: usize,
        read: impl Fn(usize, &mut [[f32; 2]]),
        gen: &portable::GenNarrow,
    ) -> Option<f32> {
        #[cfg(target_arch = "x86_64")]
        if let Path::Avx2(t) = self.isa.path() {
            let bits = usize::from(self.bits);
            if matches!(self.bits, 1 | 2)
                && self.block > 0
                && portable::narrow_groups_fit(u32::from(self.bits), g)
            {
                // Whole groups in whole blocks: a multiple of both.
                let unit = g.max(self.block);
                let codes = self.xperm.len().min(row.len() * 8 / bits) / unit * unit;
                let whole = codes / g;
                let mut acc = sum_param_runs(whole, &read, |first, params| {
                    let (start, end) = (first * g, (first + params.len()) * g);
                    let bytes = &row[start * bits / 8..end * bits / 8];
                    let xp = &self.xperm[start..end];
                    Some(if self.bits == 1 {
                        t.dot_perm_narrow::<1>(bytes, xp, g, params, gen)
                    } else {
                        t.dot_perm_narrow::<2>(bytes, xp, g, params, gen)
                    })
                })?;
                let mut table = Table::new();
                let mut start = codes;
                for group in whole.. {
                    if start >= self.x.len() {
                        break;
                    }
                    let len = g.min(self.x.len() - start);
                    let mut p = [[0.0f32; 2]; 1];
                    read(group, &mut p);
                    table.set(&portable::table_narrow(gen, p[0][0], p[0][1]));
                    acc += self.dot(row, start, len, &table);
                    start += len;
                }
                return Some(acc);
            }
        }
        let _ = (row, g, read, gen);
        None
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod permute_tests {
    use super::permute_blocks;
    use crate::isa::Isa;

    #[test]
    fn the_avx2_transposes_give_the_reference_permutation() {
        let Some(t) = Isa::detect().avx2() else {
            return;
        };
        let x: [f32; 1000] = core::array::from_fn(|i| i as f32 * 0.5 - 7.0);
        // The quad layout, the 8-lane layouts at 4, 2 and 1 bits, and a slice shorter than
        // its output.
        for per_lane in [4usize, 8, 16, 32] {
            let block = 8 * per_lane;
            for out_len in [1000usize, 3 * block, block - 1] {
                let (mut want, mut got) = ([f32::NAN; 1000], [f32::NAN; 1000]);
                let n = permute_blocks(&x, block, 8, &mut want[..out_len]);
                assert_eq!(t.permute_blocks(&x, per_lane, &mut got[..out_len]), n);
                assert_eq!(n, out_len.min(1000) / block * block);
                assert_eq!(
                    want.map(f32::to_bits),
                    got.map(f32::to_bits),
                    "{per_lane} {out_len}"
                );
                for (m, l) in [(0usize, 1usize), (per_lane - 1, 7)] {
                    if n > 0 {
                        assert_eq!(want[m * 8 + l], x[l * per_lane + m]);
                    }
                }
            }
        }
    }
}

#[cfg(all(test, feature = "alloc"))]
mod scaled_tests {
    use super::*;
    use alloc::vec::Vec;

    /// Every path, with and without the lane-permuted plan, agrees with the scalar
    /// definition (group by group: each group's reference dot product times its scale).
    #[test]
    fn scaled_group_kernels_match_the_reference() {
        let mut next = crate::test_rng::xorshift32(0x2545_f491u32);
        let mut fast_paths = 0;
        for bits in [1u8, 2, 3, 4, 8] {
            let levels = (1usize << bits) - usize::from(bits > 1);
            let unit: Vec<f32> = (0..levels)
                .map(|i| i as f32 / levels as f32 - 0.4)
                .collect();
            let table = Table::from_levels(&unit);
            for (g, cols) in [
                (32, 256),
                (128, 512),
                (16, 200),
                (64, 300),
                (8, 64),
                (32, 100),
                (256, 1024),
                // Eight groups' scales a conversion in the byte-plane kernel, and the
                // groups and runs after the last eight.
                (32, 700),
                (64, 1100),
                (128, 2112),
            ] {
                let row_bytes = pack::packed_len(cols, bits).unwrap();
                let codes: Vec<u8> = (0..cols).map(|_| (next() % levels as u32) as u8).collect();
                let mut row = alloc::vec![0u8; row_bytes];
                pack::pack_unchecked(&codes, bits, &mut row);
                let x: Vec<f32> = (0..cols)
                    .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
                    .collect();
                let scales: Vec<u8> = (0..cols.div_ceil(g))
                    .flat_map(|_| (0x2c00u16 + (next() % 0x1000) as u16).to_le_bytes())
                    .collect();
                let reference =
                    dot_scaled_groups(Isa::scalar(), bits, &row, 0, &x, g, &table, &scales);
                let mag: f32 = codes
                    .iter()
                    .zip(&x)
                    .enumerate()
                    .map(|(j, (&c, &xj))| {
                        (unit[usize::from(c)] * xj * portable::scale_at(&scales, j / g)).abs()
                    })
                    .sum();
                for isa in Isa::available() {
                    let plan = DotPlan::for_scaled(isa, bits, &x);
                    let compact = DotPlan::for_compact(isa, bits, &x, g);
                    for (what, got) in [
                        (
                            "dot_scaled",
                            dot_scaled(isa, bits, &row, &x, g, &table, &scales),
                        ),
                        ("plan", plan.dot_scaled(&row, g, &table, &scales)),
                        ("compact plan", compact.dot_scaled(&row, g, &table, &scales)),
                    ] {
                        assert!(
                            (got - reference).abs() <= 1e-5 * mag,
                            "{isa} {what} bits {bits} g {g} cols {cols}: {got} vs {reference}"
                        );
                    }
                    if plan.block > 0 {
                        fast_paths += 1;
                    }
                }
            }
        }
        // The lane-permuted kernel ran wherever the CPU has it.
        let simd = Isa::available().any(|i| {
            matches!(
                i.kind(),
                crate::kernels::IsaKind::Avx2 | crate::kernels::IsaKind::Avx512
            )
        });
        assert_eq!(fast_paths > 0, simd);
    }
}

#[cfg(all(test, feature = "alloc"))]
mod int8_scaled_tests {
    use crate::isa::portable;
    use crate::kernels::{dot4_i8_scaled, Int8X, Isa};
    use alloc::vec::Vec;

    /// Every path agrees with the scalar reference, and the reference with the definition
    /// written out group by group.
    #[test]
    fn int8_scaled_group_kernels_match_the_reference() {
        let mut next = crate::test_rng::xorshift32(0x1234_5678u32);
        for (g, cols) in [
            (32usize, 1024usize),
            (128, 1024),
            (32, 1000),
            (64, 100),
            (96, 4160),
        ] {
            let codes: Vec<u8> = (0..cols).map(|_| (next() % 15) as u8).collect();
            let mut row = alloc::vec![0u8; cols.div_ceil(2)];
            portable::pack_reference(&codes, 4, &mut row);
            let x: Vec<f32> = (0..cols)
                .map(|_| next() as f32 / u32::MAX as f32 - 0.5)
                .collect();
            let xq = Int8X::new(&x).unwrap();
            let t16: [i8; 16] = core::array::from_fn(|i| (i as i8 - 7) * 15);
            let scales: Vec<u8> = (0..cols.div_ceil(g))
                .flat_map(|_| (0x3000u16 + (next() % 0x0c00) as u16).to_le_bytes())
                .collect();
            let definition: f32 = (0..cols)
                .map(|j| {
                    let b = j / portable::QBLOCK;
                    f32::from(t16[usize::from(codes[j])])
                        * f32::from(xq.xq[j])
                        * xq.scales[b]
                        * portable::scale_at(&scales, j / g)
                        / 127.0
                })
                .sum();
            let reference = dot4_i8_scaled(Isa::scalar(), &row, &xq, g, &t16, &scales);
            let mag: f32 = (0..cols)
                .map(|j| {
                    (f32::from(t16[usize::from(codes[j])]) * f32::from(xq.xq[j])).abs()
                        * xq.scales[j / portable::QBLOCK]
                        * portable::scale_at(&scales, j / g)
                        / 127.0
                })
                .sum();
            assert!(
                (reference - definition).abs() <= 1e-5 * mag,
                "{reference} vs {definition}"
            );
            for isa in Isa::available() {
                let got = dot4_i8_scaled(isa, &row, &xq, g, &t16, &scales);
                assert!(
                    (got - reference).abs() <= 1e-5 * mag,
                    "{isa} g {g} cols {cols}: {got} vs {reference}"
                );
            }
        }
    }
}
