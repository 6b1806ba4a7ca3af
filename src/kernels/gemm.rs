//! GEMM on packed weights: `Y = W·X` for a batch of `n` columns, W read from its packed
//! codes once per call.
//!
//! # Layout
//! `X` is `cols × n` and `Y` is `rows × n`, both row-major: `X[j·n + c]` is input `j` of
//! column `c` and `Y[r·n + c]` output `r` of column `c`. That is the layout an im2col
//! convolution produces and consumes (one column per output position, `Y` already in
//! channel-major order), and column `c` alone is exactly a GEMV's `x` and `y`.
//!
//! # Blocking
//! Rows of W go `GEMM_MR` at a time, the shared dimension `GEMM_KC` at a time: each such tile
//! of W is decoded once (through the decode row kernel, group by group) into a panel on the
//! stack that stays in L1, and a register-blocked micro-kernel multiplies it with every
//! `GEMM_NR`-column tile of the matching rows of X, adding into Y. The panel, the micro-tile
//! and one codebook table per panel row live on the stack, so nothing is allocated.
//!
//! A batch of at most `GEMM_NARROW` columns is too narrow to amortize a decoded panel (each
//! decoded weight meets only `n` columns), so 4-bit codes whose group tables follow from
//! their parameters (`GemmSource::gen`) skip it on x86-64: each `GEMM_NARROW_KC` block of X is
//! transposed onto the stack once (in the order the kernel meets the codes), and then row by
//! row 64 codes at a time are decoded in registers, through a table derived in registers per
//! group and looked up one byte plane at a time, and multiplied into accumulators per column,
//! as a GEMV would for each column at once.
//!
//! # Numbers
//! Each `Y[r·n + c]` is a sum over `j` in order within a panel and panel by panel; the SIMD
//! micro-kernels fuse each multiply-add, the reference does not, so paths differ by ordinary
//! `f32` rounding: `|fast − reference| <= 1e-5 · Σ_j |W[r,j]·X[j,c]|` for the shapes the
//! tests cover. The narrow path sums each block of a row in 8 lanes (which codes of a run of
//! 64 meet in a lane follows `gemm_xt_pos`), over one to eight accumulators a column, and then
//! across them and the lanes, and a GEMV in yet another order, within the same bound.
//! Either way each row's result depends on that row alone, so row ranges and threads give
//! the same bits.

use core::ops::Range;

use super::{decode_span, Table};
use crate::isa::portable::{
    self, gemm_xt_pos, GemmPanel, GemmSeg, GemmTile, GemmXt, Gen16, GEMM_KC, GEMM_MR, GEMM_NARROW,
    GEMM_NARROW_KC, GEMM_NR, GEMM_SEGS,
};
use crate::isa::Isa;
#[cfg(target_arch = "x86_64")]
use crate::isa::Path;

/// Rows of W per decoded panel: threads split rows on multiples of it.
#[cfg(feature = "parallel")]
pub(crate) const ROWS_PER_PANEL: usize = GEMM_MR;

/// One micro-tile on `isa`: `out[r][c] = Σ_{k < kc} w[r][k] · x[k·n + c]` for `c < width`.
pub(crate) fn gemm_tile(
    isa: Isa,
    w: &GemmPanel,
    kc: usize,
    x: &[f32],
    n: usize,
    width: usize,
) -> GemmTile {
    #[cfg(target_arch = "x86_64")]
    match isa.path() {
        Path::Avx512(t) => return t.gemm_tile(w, kc, x, n, width),
        Path::Avx2(t) => return t.gemm_tile(w, kc, x, n, width),
        _ => {}
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    portable::gemm_tile(w, kc, x, n, width)
}

/// Whether `isa` has a narrow kernel (x86-64 only; elsewhere the panel path runs).
fn has_narrow(isa: Isa) -> bool {
    #[cfg(target_arch = "x86_64")]
    return isa.avx2().is_some();
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        false
    }
}

/// One row's block times `nc` transposed columns on `isa` (see `portable::gemm4_narrow`,
/// which runs where `isa` has no kernel of its own).
pub(crate) fn gemm4_narrow(
    isa: Isa,
    bytes: &[u8],
    segs: &[GemmSeg],
    gen: &Gen16,
    xt: &GemmXt,
    kc: usize,
    nc: usize,
) -> [f32; GEMM_NARROW] {
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = isa.avx2() {
        return t.gemm4_narrow(bytes, segs, gen, xt, kc, nc);
    }
    let _ = isa;
    portable::gemm4_narrow(bytes, segs, gen, xt, kc, nc)
}

/// Where a GEMM's weights come from: the packed codes of each row and each group's levels.
pub(crate) struct GemmSource<R, G, L, P> {
    /// Bits per code.
    pub bits: u8,
    /// Columns of W.
    pub cols: usize,
    /// Codes per group along a row (`cols` when a row is one group).
    pub group_len: usize,
    /// `row(r)`: the packed codes of row `r`.
    pub row: R,
    /// `group(r, i)`: the index of group `i` of row `r`; a row's groups have consecutive
    /// indices.
    pub group: G,
    /// `load(group, table)`: fills `table` with the group's levels.
    pub load: L,
    /// How a group's 16-entry table follows from its parameters, where it does (4 bits).
    pub gen: Option<Gen16>,
    /// `params(first, out)`: the `(a, q)` of groups `first..first + out.len()`, for `gen`.
    pub params: P,
}

/// `Y[rows] = W[rows]·X` with the layouts of the module docs: `x` holds `cols × n` values and
/// `y` `rows.len() × n`. The caller has checked the shapes, every row in `rows` exists, and
/// the codes index their groups' tables.
pub(crate) fn gemm_rows<'s, R, G, L, P>(
    isa: Isa,
    src: &GemmSource<R, G, L, P>,
    x: &[f32],
    n: usize,
    rows: Range<usize>,
    y: &mut [f32],
) where
    R: Fn(usize) -> &'s [u8],
    G: Fn(usize, usize) -> usize,
    L: Fn(usize, &mut Table),
    P: Fn(usize, &mut [[f32; 2]]),
{
    let cols = src.cols;
    if n == 0 || cols == 0 {
        y.fill(0.0);
        return;
    }
    if let Some(gen) = narrow_gen(isa, src, n) {
        gemm_rows_narrow(isa, src, gen, x, n, rows, y);
        return;
    }
    let g = src.group_len.max(1);
    let mut panel = GemmPanel::new();
    let mut tables: [Table; GEMM_MR] = core::array::from_fn(|_| Table::new());
    let mut loaded = [usize::MAX; GEMM_MR];
    for (pass, yb) in y.chunks_mut(GEMM_MR * n).enumerate() {
        let first = rows.start + pass * GEMM_MR;
        let live = yb.len() / n;
        let mut k0 = 0;
        while k0 < cols {
            let kc = GEMM_KC.min(cols - k0);
            for r in 0..live {
                let row = first + r;
                let codes = (src.row)(row);
                let mut k = k0;
                while k < k0 + kc {
                    let i = k / g;
                    let end = ((i + 1) * g).min(k0 + kc);
                    let group = (src.group)(row, i);
                    if loaded[r] != group {
                        (src.load)(group, &mut tables[r]);
                        loaded[r] = group;
                    }
                    let out = &mut panel.w[r][k - k0..end - k0];
                    decode_span(isa, src.bits, codes, k, &tables[r], out);
                    k = end;
                }
            }
            let xb = &x[k0 * n..];
            let mut c0 = 0;
            while c0 < n {
                let width = GEMM_NR.min(n - c0);
                let tile = gemm_tile(isa, &panel, kc, &xb[c0..], n, width);
                for (r, t) in tile.iter().enumerate().take(live) {
                    let out = &mut yb[r * n + c0..r * n + c0 + width];
                    if k0 == 0 {
                        out.copy_from_slice(&t[..width]);
                    } else {
                        for (o, v) in out.iter_mut().zip(t) {
                            *o += v;
                        }
                    }
                }
                c0 += width;
            }
            k0 += kc;
        }
    }
}

/// The table generator of the narrow path of the module docs, when that path applies:
/// `n <= GEMM_NARROW`, 4-bit codes with derived tables, every group boundary on a multiple of
/// 64 codes, and a kernel for `isa`.
fn narrow_gen<R, G, L, P>(isa: Isa, src: &GemmSource<R, G, L, P>, n: usize) -> Option<&Gen16> {
    let g = src.group_len.max(1);
    let fits = n <= GEMM_NARROW
        && src.bits == 4
        && (g >= src.cols || g.is_multiple_of(64))
        && has_narrow(isa);
    src.gen.as_ref().filter(|_| fits)
}

/// The narrow path of the module docs (`narrow_gen` gave `gen`). Shapes as for
/// [`gemm_rows`], `1 <= n <= GEMM_NARROW` and `cols >= 1`. Never inlined: its block of X
/// takes stack only when it runs.
#[inline(never)]
fn gemm_rows_narrow<'s, R, G, L, P>(
    isa: Isa,
    src: &GemmSource<R, G, L, P>,
    gen: &Gen16,
    x: &[f32],
    n: usize,
    rows: Range<usize>,
    y: &mut [f32],
) where
    R: Fn(usize) -> &'s [u8],
    G: Fn(usize, usize) -> usize,
    P: Fn(usize, &mut [[f32; 2]]),
{
    let cols = src.cols;
    let g = src.group_len.max(1);
    let mut xt = GemmXt::new();
    let mut segs = [GemmSeg::default(); GEMM_SEGS];
    let mut k0 = 0;
    while k0 < cols {
        let kc = GEMM_NARROW_KC.min(cols - k0);
        for (k, xr) in x[k0 * n..(k0 + kc) * n].chunks_exact(n).enumerate() {
            let p = gemm_xt_pos(k, kc);
            for (c, &v) in xr.iter().enumerate() {
                xt.x[c][p] = v;
            }
        }
        // The block holds groups `i0..i0 + count` of every row: divisions per block, not per
        // row. Group boundaries on multiples of 64 cut a block into at most `GEMM_SEGS`.
        let i0 = k0 / g;
        let count = (k0 + kc).div_ceil(g).min(i0 + GEMM_SEGS) - i0;
        for (row, yr) in rows.clone().zip(y.chunks_exact_mut(n)) {
            // The block's codes start on a byte: `k0` is a multiple of `GEMM_NARROW_KC`.
            let bytes = &(src.row)(row)[k0 / 2..];
            let first = (src.group)(row, i0);
            let mut params = [[0.0f32; 2]; GEMM_SEGS];
            (src.params)(first, &mut params[..count]);
            let mut k = k0;
            for (j, (seg, &[a, q])) in segs.iter_mut().zip(&params[..count]).enumerate() {
                let end = ((i0 + j + 1) * g).min(k0 + kc);
                *seg = GemmSeg {
                    start: k - k0,
                    end: end - k0,
                    a,
                    q,
                };
                k = end;
            }
            debug_assert_eq!(k, k0 + kc);
            let sums = gemm4_narrow(isa, bytes, &segs[..count], gen, &xt, kc, n);
            if k0 == 0 {
                yr.copy_from_slice(&sums[..n]);
            } else {
                for (o, s) in yr.iter_mut().zip(sums) {
                    *o += s;
                }
            }
        }
        k0 += kc;
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    #[test]
    fn micro_tiles_match_the_reference() {
        let mut seed = 7u64;
        let mut panel = GemmPanel::new();
        for row in panel.w.iter_mut() {
            for v in row.iter_mut() {
                *v = lcg(&mut seed);
            }
        }
        let isas: alloc::vec::Vec<Isa> = Isa::available().collect();
        for n in [1usize, 2, 3, 7, 8, 9, 15, 16, 17, 33] {
            for kc in [0usize, 1, 5, 64, 255, GEMM_KC] {
                let x: alloc::vec::Vec<f32> = (0..kc.max(1) * n).map(|_| lcg(&mut seed)).collect();
                for c0 in [0, n.saturating_sub(GEMM_NR.min(n))] {
                    let width = GEMM_NR.min(n - c0);
                    let reference = portable::gemm_tile(&panel, kc, &x[c0..], n, width);
                    for &isa in &isas {
                        let got = gemm_tile(isa, &panel, kc, &x[c0..], n, width);
                        for r in 0..GEMM_MR {
                            for c in 0..GEMM_NR {
                                let mag: f32 = (0..kc)
                                    .map(|k| {
                                        if c < width {
                                            (panel.w[r][k] * x[c0 + k * n + c]).abs()
                                        } else {
                                            0.0
                                        }
                                    })
                                    .sum();
                                let (a, b) = (got[r][c], reference[r][c]);
                                assert!(
                                    (a - b).abs() <= 1e-5 * mag,
                                    "{isa} n={n} kc={kc} c0={c0} [{r}][{c}]: {a} vs {b}"
                                );
                                if c >= width {
                                    assert_eq!(a, 0.0, "{isa}: column past width");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn narrow_kernels_match_the_reference() {
        let mut seed = 11u64;
        let bytes: alloc::vec::Vec<u8> = (0..GEMM_NARROW_KC / 2)
            .map(|_| (lcg(&mut seed).to_bits() >> 7) as u8)
            .collect();
        let mut xt = GemmXt::new();
        for col in xt.x.iter_mut() {
            for v in col.iter_mut() {
                *v = lcg(&mut seed);
            }
        }
        let mut u = [0.0f32; 16];
        for (i, v) in u.iter_mut().enumerate() {
            *v = i as f32 / 7.5 - 1.0;
        }
        let gens = [
            Gen16::Exp { zero: false },
            Gen16::Exp { zero: true },
            Gen16::Scaled(u),
        ];
        let seg = |start: usize, end: usize, a: f32, q: f32| GemmSeg { start, end, a, q };
        let kcs: [(usize, alloc::vec::Vec<GemmSeg>); 6] = [
            (
                GEMM_NARROW_KC,
                alloc::vec![seg(0, GEMM_NARROW_KC, 0.7, 0.6)],
            ),
            (
                GEMM_NARROW_KC,
                (0..GEMM_NARROW_KC / 64)
                    .map(|i| {
                        seg(
                            64 * i,
                            64 * i + 64,
                            0.1 + i as f32 / 9.0,
                            0.5 + i as f32 / 40.0,
                        )
                    })
                    .collect(),
            ),
            (
                500,
                alloc::vec![
                    seg(0, 128, 1.5, 0.7),
                    seg(128, 384, 0.2, 0.9),
                    seg(384, 500, 3.0, 0.4)
                ],
            ),
            (77, alloc::vec![seg(0, 64, 0.9, 0.8), seg(64, 77, 0.4, 0.3)]),
            (21, alloc::vec![seg(0, 21, 0.9, 0.8)]),
            (0, alloc::vec![]),
        ];
        for &isa in &Isa::available().collect::<alloc::vec::Vec<_>>() {
            for gen in &gens {
                for (kc, segs) in &kcs {
                    for nc in 1..=GEMM_NARROW {
                        let reference = portable::gemm4_narrow(&bytes, segs, gen, &xt, *kc, nc);
                        let got = gemm4_narrow(isa, &bytes, segs, gen, &xt, *kc, nc);
                        for c in 0..GEMM_NARROW {
                            let mut mag = 0.0f32;
                            for s in segs.iter().filter(|_| c < nc) {
                                let t = portable::table16(gen, s.a, s.q);
                                for k in s.start..s.end {
                                    let w = t[usize::from(portable::code_at(&bytes, 4, k))];
                                    mag += (w * xt.x[c][gemm_xt_pos(k, *kc)]).abs();
                                }
                            }
                            let (a, b) = (got[c], reference[c]);
                            assert!(
                                (a - b).abs() <= 1e-5 * mag,
                                "{isa} {gen:?} kc={kc} nc={nc} [{c}]: {a} vs {b}"
                            );
                            if c >= nc {
                                assert_eq!(a, 0.0, "{isa}: column past nc");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn narrow_bounds_are_checked() {
        let seg = |start, end| GemmSeg {
            start,
            end,
            a: 1.0,
            q: 0.5,
        };
        let bytes = [0u8; 40];
        assert!(portable::gemm4_narrow_fits(
            &bytes,
            &[seg(0, 64), seg(64, 80)],
            80,
            8
        ));
        assert!(!portable::gemm4_narrow_fits(&bytes, &[seg(0, 64)], 80, 0));
        assert!(!portable::gemm4_narrow_fits(&bytes, &[seg(0, 64)], 80, 9));
        // A segment ending inside a run of 64 must end the block.
        assert!(!portable::gemm4_narrow_fits(&bytes, &[seg(0, 32)], 80, 1));
        assert!(!portable::gemm4_narrow_fits(&bytes, &[seg(32, 80)], 80, 1));
        assert!(!portable::gemm4_narrow_fits(&bytes, &[seg(64, 0)], 80, 1));
        assert!(!portable::gemm4_narrow_fits(&bytes, &[seg(0, 81)], 81, 1));
        assert!(!portable::gemm4_narrow_fits(
            &[0u8; 1 << 10],
            &[],
            GEMM_NARROW_KC + 1,
            1
        ));
        // Whole runs: odd codes in the second half, byte `b` at `8·(b/4 % 4) + 4·(b/16) + b % 4`;
        // the short last run stays put, and every block is a permutation.
        assert_eq!(gemm_xt_pos(1, 64), 32);
        assert_eq!(gemm_xt_pos(2, 64), 1);
        assert_eq!(gemm_xt_pos(8, 64), 8);
        assert_eq!(gemm_xt_pos(32, 64), 4);
        assert_eq!(gemm_xt_pos(64 + 8 * 3 + 5, 200), 64 + 32 + 8 * 3 + 2);
        assert_eq!(gemm_xt_pos(130, 140), 130);
        for kc in [0usize, 63, 64, 200, GEMM_NARROW_KC] {
            let mut seen = alloc::vec![false; kc];
            for k in 0..kc {
                let p = gemm_xt_pos(k, kc);
                assert!(
                    p < kc && !seen[p],
                    "kc={kc} k={k}: position {p} out of range or taken"
                );
                seen[p] = true;
            }
        }
    }

    #[test]
    fn tile_bounds_are_checked() {
        assert!(!portable::gemm_tile_fits(4, &[0.0; 10], 3, 2));
        assert!(portable::gemm_tile_fits(4, &[0.0; 11], 3, 2));
        assert!(!portable::gemm_tile_fits(GEMM_KC + 1, &[0.0; 4096], 1, 1));
        assert!(!portable::gemm_tile_fits(1, &[0.0; 4], 2, 3));
        assert!(!portable::gemm_tile_fits(1, &[0.0; 4], 4, 0));
        assert!(!portable::gemm_tile_fits(2, &[0.0; 4], usize::MAX, 1));
    }
}
