//! AArch64 NEON (Advanced SIMD) kernels: decode, dot product, int8 dot product and encode.
//!
//! NEON is a baseline feature of every AArch64 target that enables `neon` (Linux, Android,
//! macOS, Windows), and this module is compiled only there, so the [`Neon`] proof stands for
//! the target rather than a run-time check. The kernels are still `unsafe` and
//! `#[target_feature(enable = "neon")]` because that is how `core::arch` exposes the
//! intrinsics; they are private, and the way in is a method on the proof. Their one
//! obligation is that the CPU runs NEON: slice lengths are clamped inside, and every raw load
//! or store sits under the loop condition that keeps it in bounds.
//!
//! The entry points are `#[inline(never)]`, so that each gets its own register allocation
//! and keeps its table planes in registers rather than sharing the dispatching `match`'s.
//!
//! Table lookups go through byte planes. `vld4q_u8` over 16 table entries splits their 64
//! bytes into four registers, byte `k` of entry `i` in lane `i` of register `k`, so one `tbl`
//! per plane fetches byte `k` of 16 looked-up floats at once, and `vst4q_u8` (or two rounds
//! of zips) puts the bytes of each float back together. Moving bytes changes no bits, so
//! decoding is exact; only the `f32` dot products sum in a different order than the
//! reference.
//!
//! The int8 dot products total each block of 32 products exactly in `i32` and add the
//! scaled totals in the reference's order, so they give its bits. Their one optional
//! extension is the dot product one (`sdot`), which detection reports on the proof; without
//! it, widening multiplies and pairwise adds give the same totals.

use core::arch::aarch64::*;

use super::Neon;

impl Neon {
    /// Decodes `BITS`-bit codes (1, 2 or 4) straight from packed bytes (see
    /// [`decode_packed`]).
    #[inline]
    pub(crate) fn decode_packed<const BITS: u32>(
        self,
        bytes: &[u8],
        table: &[f32; 256],
        out: &mut [f32],
    ) {
        // SAFETY: a `Neon` proof exists only on targets that enable NEON.
        unsafe { decode_packed::<BITS>(bytes, table, out) }
    }

    /// `Σ table[code i] · x[i]` over `BITS`-bit codes (1, 2 or 4) straight from packed bytes.
    #[inline]
    pub(crate) fn dot_packed<const BITS: u32>(
        self,
        bytes: &[u8],
        table: &[f32; 256],
        x: &[f32],
    ) -> f32 {
        // SAFETY: a `Neon` proof exists only on targets that enable NEON.
        unsafe { dot_packed::<BITS>(bytes, table, x) }
    }

    /// `out[i] = table[codes[i]]` for codes below `levels` (at most 64).
    #[inline]
    pub(crate) fn lut(self, codes: &[u8], table: &[f32; 256], levels: usize, out: &mut [f32]) {
        // SAFETY: a `Neon` proof exists only on targets that enable NEON.
        unsafe { lut(codes, table, levels, out) }
    }

    /// `Σ table[codes[i]] · x[i]` for codes below `levels` (at most 64).
    #[inline]
    pub(crate) fn lut_dot(self, codes: &[u8], table: &[f32; 256], levels: usize, x: &[f32]) -> f32 {
        // SAFETY: a `Neon` proof exists only on targets that enable NEON.
        unsafe { lut_dot(codes, table, levels, x) }
    }

    /// Codes as counts of strict thresholds: `out[i] = #{t : x[i] > cuts[t]}`.
    #[inline]
    pub(crate) fn encode_count(self, cuts: &[f32], x: &[f32], out: &mut [u8]) {
        // SAFETY: a `Neon` proof exists only on targets that enable NEON.
        unsafe { encode_count(cuts, x, out) }
    }

    /// Int8 dot product of whole blocks (see [`portable::dot_i8`](super::portable::dot_i8)),
    /// with the same bits: `sdot` where the CPU has the dot product extension.
    #[inline]
    pub(crate) fn dot_i8(self, w: &[i8], xq: &[i8], scales: &[f32]) -> f32 {
        if self.has_dotprod() {
            // SAFETY: the flag is set only where detection found the dot product extension,
            // and a `Neon` proof exists only on targets that enable NEON.
            unsafe { dot_i8_sdot(w, xq, scales) }
        } else {
            // SAFETY: a `Neon` proof exists only on targets that enable NEON.
            unsafe { dot_i8_mull(w, xq, scales) }
        }
    }

    /// Int8 dot product of whole blocks of 4-bit codes straight from packed bytes, through a
    /// 16-entry int8 table (see [`dot4_i8_blocks`]), with the bits of
    /// [`portable::dot_i8_span`](super::portable::dot_i8_span) over those blocks.
    #[inline]
    pub(crate) fn dot4_i8(self, bytes: &[u8], t16: &[i8; 16], xq: &[i8], scales: &[f32]) -> f32 {
        if self.has_dotprod() {
            // SAFETY: as in `dot_i8`.
            unsafe { dot4_i8_sdot(bytes, t16, xq, scales) }
        } else {
            // SAFETY: a `Neon` proof exists only on targets that enable NEON.
            unsafe { dot4_i8_mull(bytes, t16, xq, scales) }
        }
    }
}

/// Byte planes of the first `16·R` entries of a table (`R` = 1, 2 or 4): lane `i` of `p[k][r]`
/// is byte `k` (little-endian) of entry `16·r + i`. Plain registers, not `uint8x16x4_t`
/// tuples: LLVM kept those in memory and reloaded all four to use one.
type Planes<const R: usize> = [[uint8x16_t; R]; 4];

#[inline]
#[target_feature(enable = "neon")]
fn planes<const R: usize>(table: &[f32; 256]) -> Planes<R> {
    let mut p = [[vdupq_n_u8(0); R]; 4];
    for (r, entries) in table.chunks_exact(16).take(R).enumerate() {
        // SAFETY: `entries` holds 16 floats, the 64 bytes the load reads.
        let v = unsafe { vld4q_u8(entries.as_ptr().cast()) };
        (p[0][r], p[1][r], p[2][r], p[3][r]) = (v.0, v.1, v.2, v.3);
    }
    p
}

/// Byte plane `k` of `table[idx_i]` in lane `i`. An index past `16·R` gives 0, never a read
/// outside the planes.
#[inline]
#[target_feature(enable = "neon")]
fn lookup_plane<const R: usize>(p: &Planes<R>, k: usize, idx: uint8x16_t) -> uint8x16_t {
    let q = &p[k];
    match R {
        1 => vqtbl1q_u8(q[0], idx),
        2 => vqtbl2q_u8(uint8x16x2_t(q[0], q[1]), idx),
        _ => vqtbl4q_u8(uint8x16x4_t(q[0], q[1], q[2], q[3]), idx),
    }
}

/// The four byte planes of `table[idx_i]`, `i` = 0..16.
#[inline]
#[target_feature(enable = "neon")]
fn lookup<const R: usize>(p: &Planes<R>, idx: uint8x16_t) -> uint8x16x4_t {
    uint8x16x4_t(
        lookup_plane(p, 0, idx),
        lookup_plane(p, 1, idx),
        lookup_plane(p, 2, idx),
        lookup_plane(p, 3, idx),
    )
}

/// The 16 floats whose byte planes are `b`, four per register in lane order: the register
/// form of what `vst4q_u8` does on the way to memory.
#[inline]
#[target_feature(enable = "neon")]
fn join(b: uint8x16x4_t) -> [float32x4_t; 4] {
    let lo01 = vreinterpretq_u16_u8(vzip1q_u8(b.0, b.1));
    let hi01 = vreinterpretq_u16_u8(vzip2q_u8(b.0, b.1));
    let lo23 = vreinterpretq_u16_u8(vzip1q_u8(b.2, b.3));
    let hi23 = vreinterpretq_u16_u8(vzip2q_u8(b.2, b.3));
    [
        vreinterpretq_f32_u16(vzip1q_u16(lo01, lo23)),
        vreinterpretq_f32_u16(vzip2q_u16(lo01, lo23)),
        vreinterpretq_f32_u16(vzip1q_u16(hi01, hi23)),
        vreinterpretq_f32_u16(vzip2q_u16(hi01, hi23)),
    ]
}

/// The `128 / BITS` codes of 16 packed bytes at `BITS` = 1, 2 or 4, one per byte in stream
/// order, 16 to a register: the first `8 / BITS` registers are filled.
#[inline]
#[target_feature(enable = "neon")]
fn expand<const BITS: u32>(v: uint8x16_t) -> [uint8x16_t; 8] {
    let mut out = [vdupq_n_u8(0); 8];
    match BITS {
        4 => {
            // Element 2i is the low nibble of byte i, element 2i + 1 the high one.
            let lo = vandq_u8(v, vdupq_n_u8(0x0f));
            let hi = vshrq_n_u8::<4>(v);
            out[0] = vzip1q_u8(lo, hi);
            out[1] = vzip2q_u8(lo, hi);
        }
        2 => {
            let m = vdupq_n_u8(0x03);
            let c0 = vandq_u8(v, m);
            let c1 = vandq_u8(vshrq_n_u8::<2>(v), m);
            let c2 = vandq_u8(vshrq_n_u8::<4>(v), m);
            let c3 = vshrq_n_u8::<6>(v);
            // Pairs (c0, c1) and (c2, c3) of each byte, then the pairs of one byte together:
            // byte j's four codes land in lanes 4j .. 4j + 4.
            let a = vreinterpretq_u16_u8(vzip1q_u8(c0, c1));
            let b = vreinterpretq_u16_u8(vzip2q_u8(c0, c1));
            let c = vreinterpretq_u16_u8(vzip1q_u8(c2, c3));
            let d = vreinterpretq_u16_u8(vzip2q_u8(c2, c3));
            out[0] = vreinterpretq_u8_u16(vzip1q_u16(a, c));
            out[1] = vreinterpretq_u8_u16(vzip2q_u16(a, c));
            out[2] = vreinterpretq_u8_u16(vzip1q_u16(b, d));
            out[3] = vreinterpretq_u8_u16(vzip2q_u16(b, d));
        }
        _ => {
            // Register r covers bytes 2r and 2r + 1: each byte spread over 8 lanes, and lane
            // b keeps its bit b (codes go LSB-first).
            const SPREAD: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
            const BIT: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
            // SAFETY: each load reads one 16-byte constant.
            let (spread, bit) = unsafe { (vld1q_u8(SPREAD.as_ptr()), vld1q_u8(BIT.as_ptr())) };
            let one = vdupq_n_u8(1);
            for (r, slot) in out.iter_mut().enumerate() {
                let idx = vaddq_u8(spread, vdupq_n_u8(2 * r as u8));
                *slot = vandq_u8(vtstq_u8(vqtbl1q_u8(v, idx), bit), one);
            }
        }
    }
    out
}

/// One step of [`decode_packed`]: the `128 / BITS` codes of `bytes` decoded into `out`.
///
/// # Safety
/// The CPU supports NEON; `bytes` is valid for 16 bytes of reads and `out` for `128 / BITS`
/// floats of writes.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn decode_step<const BITS: u32>(p: &Planes<1>, bytes: *const u8, out: *mut f32) {
    // SAFETY: the caller vouched for 16 bytes.
    let idx = expand::<BITS>(unsafe { vld1q_u8(bytes) });
    for (r, &c) in idx.iter().take(8 / BITS as usize).enumerate() {
        // SAFETY: register r fills floats `16·r .. 16·r + 16` of the `128 / BITS` the caller
        // vouched for.
        unsafe { vst4q_u8(out.add(16 * r).cast(), lookup(p, c)) };
    }
}

/// The packed bytes of codes `i ..` (at most 16 of them), zero-padded to a whole step.
fn tail_bytes<const BITS: u32>(bytes: &[u8], i: usize, n: usize) -> [u8; 16] {
    let from = i * BITS as usize / 8;
    let len = ((n - i) * BITS as usize).div_ceil(8).min(16);
    let mut buf = [0u8; 16];
    buf[..len].copy_from_slice(&bytes[from..from + len]);
    buf
}

/// Decodes `BITS`-bit codes (1, 2 or 4) straight from packed bytes: `out[i] = table[code i]`,
/// for `i` below `min(out.len(), 8·bytes.len() / BITS)`. Only the first 16 table entries are
/// read, which every `BITS <= 4` code indexes.
///
/// # Safety
/// The CPU supports NEON.
#[inline(never)]
#[target_feature(enable = "neon")]
unsafe fn decode_packed<const BITS: u32>(bytes: &[u8], table: &[f32; 256], out: &mut [f32]) {
    let per = 128 / BITS as usize;
    let n = out.len().min(bytes.len() * 8 / BITS as usize);
    let p = planes::<1>(table);
    let mut i = 0;
    while i + per <= n {
        // SAFETY: `i` is a multiple of `per`, so the step reads the 16 whole bytes from
        // `i·BITS/8`, inside because `(i + per)·BITS/8 <= n·BITS/8 <= bytes.len()`; it writes
        // floats `i .. i + per`, inside because `i + per <= n`.
        unsafe {
            let src = bytes.as_ptr().add(i * BITS as usize / 8);
            decode_step::<BITS>(&p, src, out.as_mut_ptr().add(i));
        }
        i += per;
    }
    if i < n {
        let mut tmp = [0.0f32; 128];
        let buf = tail_bytes::<BITS>(bytes, i, n);
        // SAFETY: `buf` holds 16 bytes and `tmp` 128 >= `per` floats.
        unsafe { decode_step::<BITS>(&p, buf.as_ptr(), tmp.as_mut_ptr()) };
        out[i..n].copy_from_slice(&tmp[..n - i]);
    }
}

/// The sum of eight accumulators' lanes, as a balanced tree.
#[inline]
#[target_feature(enable = "neon")]
fn hsum(a: [float32x4_t; 8]) -> f32 {
    let s0 = vaddq_f32(vaddq_f32(a[0], a[1]), vaddq_f32(a[2], a[3]));
    let s1 = vaddq_f32(vaddq_f32(a[4], a[5]), vaddq_f32(a[6], a[7]));
    vaddvq_f32(vaddq_f32(s0, s1))
}

/// `Σ table[code i] · x[i]` over `BITS`-bit codes (1, 2 or 4) straight from packed bytes, for
/// `i` below `min(x.len(), 8·bytes.len() / BITS)`: lookup and FMA fused, eight accumulators.
///
/// # Safety
/// The CPU supports NEON.
#[inline(never)]
#[target_feature(enable = "neon")]
unsafe fn dot_packed<const BITS: u32>(bytes: &[u8], table: &[f32; 256], x: &[f32]) -> f32 {
    let per = 128 / BITS as usize;
    let n = x.len().min(bytes.len() * 8 / BITS as usize);
    let p = planes::<1>(table);
    let mut acc = [vdupq_n_f32(0.0); 8];
    let mut i = 0;
    while i + per <= n {
        // SAFETY: 16 whole bytes from `i·BITS/8`, inside as in `decode_packed`.
        let idx = expand::<BITS>(unsafe { vld1q_u8(bytes.as_ptr().add(i * BITS as usize / 8)) });
        for (r, &c) in idx.iter().take(8 / BITS as usize).enumerate() {
            let w = join(lookup(&p, c));
            for (j, wj) in w.into_iter().enumerate() {
                // SAFETY: reads floats `i + 16·r + 4·j .. + 4`, below `i + per <= n`.
                let xv = unsafe { vld1q_f32(x.as_ptr().add(i + 16 * r + 4 * j)) };
                let a = &mut acc[(r % 2) * 4 + j];
                *a = vfmaq_f32(*a, wj, xv);
            }
        }
        i += per;
    }
    let mut sum = hsum(acc);
    if i < n {
        let mut tmp = [0.0f32; 128];
        let buf = tail_bytes::<BITS>(bytes, i, n);
        // SAFETY: `buf` holds 16 bytes and `tmp` 128 >= `per` floats.
        unsafe { decode_step::<BITS>(&p, buf.as_ptr(), tmp.as_mut_ptr()) };
        for (&w, &xi) in tmp.iter().zip(&x[i..n]) {
            sum += w * xi;
        }
    }
    sum
}

/// `out[i] = table[codes[i]]` for byte codes below `16·R`.
#[inline]
#[target_feature(enable = "neon")]
fn lut_planes<const R: usize>(codes: &[u8], table: &[f32; 256], out: &mut [f32]) {
    let n = codes.len().min(out.len());
    let p = planes::<R>(table);
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: reads codes `i .. i + 16` and writes floats `i .. i + 16`, inside because
        // `i + 16 <= n`.
        unsafe {
            let idx = vld1q_u8(codes.as_ptr().add(i));
            vst4q_u8(out.as_mut_ptr().add(i).cast(), lookup(&p, idx));
        }
        i += 16;
    }
    for (slot, &code) in out[i..n].iter_mut().zip(&codes[i..n]) {
        *slot = table[usize::from(code)];
    }
}

/// `out[i] = table[codes[i]]` for codes below `levels`.
///
/// # Safety
/// The CPU supports NEON. (`levels <= 64` is for correct values only: a code at or past 64
/// would decode to 0.0, which is wrong but reads nothing out of bounds.)
#[inline(never)]
#[target_feature(enable = "neon")]
unsafe fn lut(codes: &[u8], table: &[f32; 256], levels: usize, out: &mut [f32]) {
    match levels {
        0..=16 => lut_planes::<1>(codes, table, out),
        17..=32 => lut_planes::<2>(codes, table, out),
        _ => lut_planes::<4>(codes, table, out),
    }
}

/// `Σ table[codes[i]] · x[i]` for byte codes below `16·R`.
#[inline]
#[target_feature(enable = "neon")]
fn lut_dot_planes<const R: usize>(codes: &[u8], table: &[f32; 256], x: &[f32]) -> f32 {
    let n = codes.len().min(x.len());
    let p = planes::<R>(table);
    let mut acc = [vdupq_n_f32(0.0); 8];
    let mut i = 0;
    while i + 32 <= n {
        for h in 0..2 {
            let at = i + 16 * h;
            // SAFETY: reads codes `at .. at + 16` and floats `at .. at + 16`, inside because
            // `at + 16 <= i + 32 <= n`.
            unsafe {
                let w = join(lookup(&p, vld1q_u8(codes.as_ptr().add(at))));
                for (j, wj) in w.into_iter().enumerate() {
                    // With 64 entries the planes take 16 of the 32 registers: four
                    // accumulators then, or the planes spill.
                    let a = &mut acc[if R == 4 { j } else { 4 * h + j }];
                    *a = vfmaq_f32(*a, wj, vld1q_f32(x.as_ptr().add(at + 4 * j)));
                }
            }
        }
        i += 32;
    }
    if i + 16 <= n {
        // SAFETY: as above, with `i + 16 <= n`.
        unsafe {
            let w = join(lookup(&p, vld1q_u8(codes.as_ptr().add(i))));
            for (j, wj) in w.into_iter().enumerate() {
                acc[j] = vfmaq_f32(acc[j], wj, vld1q_f32(x.as_ptr().add(i + 4 * j)));
            }
        }
        i += 16;
    }
    let mut sum = hsum(acc);
    for (&code, &xi) in codes[i..n].iter().zip(&x[i..n]) {
        sum += table[usize::from(code)] * xi;
    }
    sum
}

/// `Σ table[codes[i]] · x[i]` for codes below `levels`.
///
/// # Safety
/// The CPU supports NEON. (`levels <= 64` is for correct values only: a code at or past 64
/// would count as 0.0, which is wrong but reads nothing out of bounds.)
#[inline(never)]
#[target_feature(enable = "neon")]
unsafe fn lut_dot(codes: &[u8], table: &[f32; 256], levels: usize, x: &[f32]) -> f32 {
    match levels {
        0..=16 => lut_dot_planes::<1>(codes, table, x),
        17..=32 => lut_dot_planes::<2>(codes, table, x),
        _ => lut_dot_planes::<4>(codes, table, x),
    }
}

/// Codes as counts of strict thresholds: `out[i] = #{t : x[i] > cuts[t]}` (at most 255 cuts).
/// `vcgtq_f32` is false for NaN, as `>` is, so NaN counts nothing and gets code 0.
///
/// # Safety
/// The CPU supports NEON.
#[inline(never)]
#[target_feature(enable = "neon")]
unsafe fn encode_count(cuts: &[f32], x: &[f32], out: &mut [u8]) {
    let n = x.len().min(out.len());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: reads floats `i .. i + 16` and writes bytes `i .. i + 16`, inside because
        // `i + 16 <= n`.
        unsafe {
            let xp = x.as_ptr().add(i);
            let xs = [
                vld1q_f32(xp),
                vld1q_f32(xp.add(4)),
                vld1q_f32(xp.add(8)),
                vld1q_f32(xp.add(12)),
            ];
            let mut acc = [vdupq_n_u32(0); 4];
            for &c in cuts {
                let cv = vdupq_n_f32(c);
                for (a, &xk) in acc.iter_mut().zip(&xs) {
                    // A true comparison is all ones, i.e. −1: subtracting it counts.
                    *a = vsubq_u32(*a, vcgtq_f32(xk, cv));
                }
            }
            // Counts fit a byte: narrowing keeps them whole.
            let lo = vcombine_u16(vmovn_u32(acc[0]), vmovn_u32(acc[1]));
            let hi = vcombine_u16(vmovn_u32(acc[2]), vmovn_u32(acc[3]));
            vst1q_u8(
                out.as_mut_ptr().add(i),
                vcombine_u8(vmovn_u16(lo), vmovn_u16(hi)),
            );
        }
        i += 16;
    }
    for (slot, &xi) in out[i..n].iter_mut().zip(&x[i..n]) {
        *slot = cuts.iter().filter(|&&c| xi > c).count() as u8;
    }
}

// ---- Int8 activations -------------------------------------------------------------------

/// How a kernel sums byte products into `i32` lanes. Both forms sum exactly for any int8
/// operands, so a block's total is the same integer whichever runs.
trait ByteDot {
    /// `acc` plus the 16 products of `a` and `b`, summed into the four `i32` lanes.
    ///
    /// # Safety
    /// The CPU supports the implementation's instructions.
    unsafe fn dot_add(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
}

/// Baseline NEON: `smull` and `smull2` widen the products to `i16` (exact: at most `128²`
/// in magnitude), `sadalp` adds neighbouring pairs into the `i32` lanes.
struct Mull;

impl ByteDot for Mull {
    #[inline(always)]
    unsafe fn dot_add(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: the caller guarantees NEON.
        unsafe { mull_add(acc, a, b) }
    }
}

/// [`Mull`]'s sum.
#[inline]
#[target_feature(enable = "neon")]
fn mull_add(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let hi = vmull_high_s8(a, b);
    vpadalq_s16(vpadalq_s16(acc, lo), hi)
}

/// The dot product extension: one `sdot` sums each lane's four products into `i32`.
struct Sdot;

impl ByteDot for Sdot {
    #[inline(always)]
    unsafe fn dot_add(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: the caller guarantees the dot product extension.
        unsafe { sdot_add(acc, a, b) }
    }
}

/// [`Sdot`]'s sum, in assembly: the `vdotq_s32` intrinsic is not stable at the crate's
/// minimum Rust version.
///
/// # Safety
/// The CPU supports the dot product extension.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot_add(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: the caller guarantees the instruction; it reads and writes registers only.
    unsafe {
        core::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// `Σ_b scales[b] · total(block(b))` over `blocks` blocks, where `block(b)` gives block `b`'s
/// products summed into `i32` lanes, added in block order from 0 as the reference adds
/// them, so the result has the reference's bits: four blocks' totals are reduced, converted
/// (exactly: a total is at most `32·128²` in magnitude, below `2^24`) and scaled together,
/// then added one at a time. The caller guarantees `blocks <= scales.len()`.
#[inline]
#[target_feature(enable = "neon")]
fn scaled_blocks(blocks: usize, scales: &[f32], mut block: impl FnMut(usize) -> int32x4_t) -> f32 {
    let scales = &scales[..blocks];
    let mut acc = 0.0f32;
    let mut b = 0;
    while b + 4 <= blocks {
        let s = [block(b), block(b + 1), block(b + 2), block(b + 3)];
        let totals = vpaddq_s32(vpaddq_s32(s[0], s[1]), vpaddq_s32(s[2], s[3]));
        let four: &[f32; 4] = scales[b..b + 4].try_into().unwrap_or(&[0.0; 4]);
        // SAFETY: `four` holds the 4 floats the load reads.
        let sv = unsafe { vld1q_f32(four.as_ptr()) };
        let p = vmulq_f32(vcvtq_f32_s32(totals), sv);
        acc += vgetq_lane_f32::<0>(p);
        acc += vgetq_lane_f32::<1>(p);
        acc += vgetq_lane_f32::<2>(p);
        acc += vgetq_lane_f32::<3>(p);
        b += 4;
    }
    for (b, &s) in scales.iter().enumerate().skip(b) {
        acc += s * vaddvq_s32(block(b)) as f32;
    }
    acc
}

/// [`ByteDot`]'s int8 dot product of whole blocks of `w` and `xq` (as many as all three
/// slices hold), each block's total scaled by its `x` scale (see [`scaled_blocks`]).
///
/// # Safety
/// The CPU supports NEON and `D`'s instructions.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn dot_i8_blocks<D: ByteDot>(w: &[i8], xq: &[i8], scales: &[f32]) -> f32 {
    let blocks = (w.len() / 32).min(xq.len() / 32).min(scales.len());
    scaled_blocks(blocks, scales, |b| {
        // SAFETY: block `b < blocks` reads values `32b .. 32b + 32` of `w` and `xq`; the
        // caller guarantees `D`'s instructions.
        unsafe {
            let (wp, xp) = (w.as_ptr().add(32 * b), xq.as_ptr().add(32 * b));
            let acc = D::dot_add(vdupq_n_s32(0), vld1q_s8(wp), vld1q_s8(xp));
            D::dot_add(acc, vld1q_s8(wp.add(16)), vld1q_s8(xp.add(16)))
        }
    })
}

/// [`dot_i8_blocks`] summed by [`Mull`].
///
/// # Safety
/// The CPU supports NEON.
#[inline(never)]
#[target_feature(enable = "neon")]
unsafe fn dot_i8_mull(w: &[i8], xq: &[i8], scales: &[f32]) -> f32 {
    // SAFETY: NEON is all `Mull` needs.
    unsafe { dot_i8_blocks::<Mull>(w, xq, scales) }
}

/// [`dot_i8_blocks`] summed by [`Sdot`].
///
/// # Safety
/// The CPU supports NEON and the dot product extension.
#[inline(never)]
#[target_feature(enable = "neon,dotprod")]
unsafe fn dot_i8_sdot(w: &[i8], xq: &[i8], scales: &[f32]) -> f32 {
    // SAFETY: the caller guarantees the dot product extension.
    unsafe { dot_i8_blocks::<Sdot>(w, xq, scales) }
}

/// Int8 dot product of whole blocks of 4-bit codes (as many as `bytes`, `xq` and `scales`
/// hold): a block's 16 packed bytes hold its codes low nibble first, so the low nibbles
/// are the even positions and the high nibbles the odd ones. Each set is looked up in the
/// 16-entry table with one `tbl` and meets the matching half of the block's `x`, which
/// `ld2` splits into even and odd positions; the block totals are summed as
/// [`scaled_blocks`] sums them.
///
/// # Safety
/// The CPU supports NEON and `D`'s instructions.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn dot4_i8_blocks<D: ByteDot>(
    bytes: &[u8],
    t16: &[i8; 16],
    xq: &[i8],
    scales: &[f32],
) -> f32 {
    let blocks = (bytes.len() / 16).min(xq.len() / 32).min(scales.len());
    // SAFETY: `t16` holds the 16 bytes the load reads.
    let table = unsafe { vld1q_s8(t16.as_ptr()) };
    let mask = vdupq_n_u8(0x0f);
    scaled_blocks(blocks, scales, |b| {
        // SAFETY: block `b < blocks` reads bytes `16b .. 16b + 16` of `bytes` and values
        // `32b .. 32b + 32` of `xq`; the caller guarantees `D`'s instructions.
        unsafe {
            let v = vld1q_u8(bytes.as_ptr().add(16 * b));
            let x = vld2q_s8(xq.as_ptr().add(32 * b));
            let even = vqtbl1q_s8(table, vandq_u8(v, mask));
            let odd = vqtbl1q_s8(table, vshrq_n_u8::<4>(v));
            D::dot_add(D::dot_add(vdupq_n_s32(0), even, x.0), odd, x.1)
        }
    })
}

/// [`dot4_i8_blocks`] summed by [`Mull`].
///
/// # Safety
/// The CPU supports NEON.
#[inline(never)]
#[target_feature(enable = "neon")]
unsafe fn dot4_i8_mull(bytes: &[u8], t16: &[i8; 16], xq: &[i8], scales: &[f32]) -> f32 {
    // SAFETY: NEON is all `Mull` needs.
    unsafe { dot4_i8_blocks::<Mull>(bytes, t16, xq, scales) }
}

/// [`dot4_i8_blocks`] summed by [`Sdot`].
///
/// # Safety
/// The CPU supports NEON and the dot product extension.
#[inline(never)]
#[target_feature(enable = "neon,dotprod")]
unsafe fn dot4_i8_sdot(bytes: &[u8], t16: &[i8; 16], xq: &[i8], scales: &[f32]) -> f32 {
    // SAFETY: the caller guarantees the dot product extension.
    unsafe { dot4_i8_blocks::<Sdot>(bytes, t16, xq, scales) }
}

#[cfg(test)]
mod tests {
    use super::super::{portable, Isa, Neon, Path};
    use crate::test_rng::xorshift32 as rng;

    /// The NEON proofs to test: the baseline form always, the dot product form where
    /// detection found it.
    fn forms() -> [Option<Neon>; 2] {
        let Path::Neon(t) = Isa::detect().path() else {
            panic!("a NEON target detects the NEON path");
        };
        [Some(t.without_dotprod()), t.has_dotprod().then_some(t)]
    }

    /// An int8 value, one in eight at ±127.
    fn int8(next: &mut impl FnMut() -> u32) -> i8 {
        match next() % 16 {
            0 => 127,
            1 => -127,
            _ => ((next() % 255) as i32 - 127) as i8,
        }
    }

    /// `x` of `n` values with their block scales and a random 16-entry table, with all
    /// values at ±127 for the first test case so the block totals reach their extremes.
    #[allow(clippy::type_complexity)]
    fn case(
        next: &mut impl FnMut() -> u32,
        n: usize,
        extreme: bool,
    ) -> (alloc::vec::Vec<i8>, alloc::vec::Vec<f32>, [i8; 16]) {
        let xq = (0..n)
            .map(|i| {
                if extreme {
                    [127, -127][i % 2]
                } else {
                    int8(next)
                }
            })
            .collect();
        let scales = (0..n.div_ceil(32))
            .map(|_| (next() % 10_000) as f32 * 1e-4 + 1e-3)
            .collect();
        let t16 = core::array::from_fn(|k| {
            if extreme {
                [127, -127][k % 2]
            } else {
                int8(next)
            }
        });
        (xq, scales, t16)
    }

    #[test]
    fn neon_int8_kernels_match_the_reference_bit_for_bit() {
        let mut next = rng(0x7f4a_7c15);
        let forms = forms();
        assert!(forms[0].is_some());
        for n in [
            0usize, 31, 32, 33, 64, 96, 100, 128, 160, 224, 1000, 4096, 4133,
        ] {
            for extreme in [true, false] {
                let (xq, scales, t16) = case(&mut next, n, extreme);
                let codes: alloc::vec::Vec<u8> = (0..n)
                    .map(|i| {
                        if extreme {
                            (i % 2) as u8
                        } else {
                            (next() % 16) as u8
                        }
                    })
                    .collect();
                let mut bytes = alloc::vec![0u8; n.div_ceil(2)];
                portable::pack_reference(&codes, 4, &mut bytes);
                let mut table = [0i8; 256];
                table[..16].copy_from_slice(&t16);
                let whole = n / 32 * 32;
                let span = portable::dot_i8_span(4, &bytes, 0, whole, &table, &xq, &scales);
                let w: alloc::vec::Vec<i8> = codes.iter().map(|&c| t16[usize::from(c)]).collect();
                let plain = portable::dot_i8(&w, &xq, &scales);
                assert_eq!(span.to_bits(), plain.to_bits(), "n {n}");
                for t in forms.into_iter().flatten() {
                    let got = t.dot4_i8(&bytes, &t16, &xq, &scales);
                    assert_eq!(got.to_bits(), span.to_bits(), "dot4_i8 {t:?} n {n}: {got}");
                    let got = t.dot_i8(&w, &xq, &scales);
                    assert_eq!(got.to_bits(), plain.to_bits(), "dot_i8 {t:?} n {n}: {got}");
                }
            }
        }
    }
}
