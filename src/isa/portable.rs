//! The portable paths: the scalar references that every faster path must agree with, and the
//! word-at-a-time (SWAR) paths that run on every target.
//!
//! Nothing here uses `unsafe` or allocates. The references are the definitions: plain loops,
//! one code (or one candidate and weight) at a time, summed in index order; the tests hold
//! every other path to them.

// ---- Packed streams ---------------------------------------------------------------------

/// Code `index` of a packed stream, for kernels that walk codes without unpacking a row.
/// The caller guarantees `index` is inside the stream.
#[inline]
pub(crate) fn code_at(packed: &[u8], bits: u8, index: usize) -> u8 {
    let bit = index * usize::from(bits);
    let byte = bit / 8;
    let shift = bit % 8;
    let lo = u16::from(packed[byte]);
    let hi = if shift + usize::from(bits) > 8 {
        u16::from(packed[byte + 1])
    } else {
        0
    };
    (((lo | (hi << 8)) >> shift) & ((1u16 << bits) - 1)) as u8
}

/// The reference packer: a bit accumulator, one code at a time. Lengths and code ranges are
/// checked by the caller.
pub(crate) fn pack_reference(codes: &[u8], bits: u8, out: &mut [u8]) {
    match bits {
        8 => out.copy_from_slice(codes),
        4 => {
            let mut pairs = codes.chunks_exact(2);
            for (byte, pair) in out.iter_mut().zip(&mut pairs) {
                *byte = pair[0] | (pair[1] << 4);
            }
            if let [last] = pairs.remainder() {
                out[codes.len() / 2] = *last;
            }
        }
        _ => {
            let mut acc: u32 = 0;
            let mut filled: u32 = 0;
            let mut pos = 0;
            for &code in codes {
                acc |= u32::from(code) << filled;
                filled += u32::from(bits);
                if filled >= 8 {
                    out[pos] = acc as u8;
                    pos += 1;
                    acc >>= 8;
                    filled -= 8;
                }
            }
            if filled > 0 {
                out[pos] = acc as u8;
            }
        }
    }
}

/// The reference unpacker (see [`pack_reference`]). Lengths are checked by the caller.
pub(crate) fn unpack_reference(packed: &[u8], bits: u8, out: &mut [u8]) {
    match bits {
        8 => out.copy_from_slice(packed),
        4 => {
            let n = out.len();
            let mut pairs = out.chunks_exact_mut(2);
            for (pair, &byte) in (&mut pairs).zip(packed) {
                pair[0] = byte & 0x0f;
                pair[1] = byte >> 4;
            }
            if let [last] = pairs.into_remainder() {
                *last = packed[n / 2] & 0x0f;
            }
        }
        _ => {
            let mask = (1u32 << bits) - 1;
            let mut acc: u32 = 0;
            let mut filled: u32 = 0;
            let mut bytes = packed.iter();
            for code in out.iter_mut() {
                if filled < u32::from(bits) {
                    // The length check guarantees a byte is there whenever bits are missing.
                    acc |= u32::from(*bytes.next().unwrap_or(&0)) << filled;
                    filled += 8;
                }
                *code = (acc & mask) as u8;
                acc >>= bits;
                filled -= u32::from(bits);
            }
        }
    }
}

/// Packs eight codes per `u64` (SWAR), so every width, including 3, 5, 6 and 7, moves a
/// word at a time. 8 bits is a copy.
pub(crate) fn pack_swar(codes: &[u8], bits: u8, out: &mut [u8]) {
    match bits {
        1 => pack_words::<1>(codes, out),
        2 => pack_words::<2>(codes, out),
        3 => pack_words::<3>(codes, out),
        // The reference's nibble loop auto-vectorizes and beats the word path.
        4 => pack_reference(codes, 4, out),
        5 => pack_words::<5>(codes, out),
        6 => pack_words::<6>(codes, out),
        7 => pack_words::<7>(codes, out),
        _ => out.copy_from_slice(codes),
    }
}

/// Unpacks eight codes per `u64` (see [`pack_swar`]).
pub(crate) fn unpack_swar(packed: &[u8], bits: u8, out: &mut [u8]) {
    match bits {
        1 => unpack_words::<1>(packed, out),
        2 => unpack_words::<2>(packed, out),
        3 => unpack_words::<3>(packed, out),
        4 => unpack_reference(packed, 4, out),
        5 => unpack_words::<5>(packed, out),
        6 => unpack_words::<6>(packed, out),
        7 => unpack_words::<7>(packed, out),
        _ => out.copy_from_slice(packed),
    }
}

/// `B`-bit fields repeated every `lane` bits across a `u64`.
const fn lanes(b: u32, lane: u32) -> u64 {
    let field = (1u64 << b) - 1;
    let mut m = 0u64;
    let mut shift = 0;
    while shift < 64 {
        m |= field << shift;
        shift += lane;
    }
    m
}

/// Squeezes eight byte-wide codes of `B` bits (one per byte of `v`) into the low `8·B` bits:
/// pairs into 16-bit lanes, then quads into 32-bit lanes, then the two halves together.
#[inline(always)]
fn squeeze<const B: u32>(v: u64) -> u64 {
    let v = (v & 0x00ff_00ff_00ff_00ff) | ((v & 0xff00_ff00_ff00_ff00) >> (8 - B));
    let v = (v & 0x0000_ffff_0000_ffff) | ((v & 0xffff_0000_ffff_0000) >> (16 - 2 * B));
    (v & 0xffff_ffff) | ((v >> 32) << (4 * B))
}

/// The inverse of [`squeeze`]: the low `8·B` bits of `v` spread to one code per byte.
#[inline(always)]
fn spread<const B: u32>(v: u64) -> u64 {
    let v = (v & lanes(4 * B, 64)) | ((v >> (4 * B)) & lanes(4 * B, 64)) << 32;
    let v = (v & lanes(2 * B, 32)) | ((v >> (2 * B)) & lanes(2 * B, 32)) << 16;
    (v & lanes(B, 16)) | ((v >> B) & lanes(B, 16)) << 8
}

fn pack_words<const B: u32>(codes: &[u8], out: &mut [u8]) {
    let b = B as usize;
    let words = codes.len() / 8;
    let out_len = out.len();
    for (i, src) in codes.chunks_exact(8).enumerate() {
        let v = u64::from_le_bytes([
            src[0], src[1], src[2], src[3], src[4], src[5], src[6], src[7],
        ]);
        let bytes = squeeze::<B>(v).to_le_bytes();
        let at = i * b;
        if at + 8 <= out_len {
            // A whole-word store; its zero upper bytes are overwritten by the next word.
            out[at..at + 8].copy_from_slice(&bytes);
        } else {
            out[at..at + b].copy_from_slice(&bytes[..b]);
        }
    }
    pack_reference(&codes[words * 8..], B as u8, &mut out[words * b..]);
}

fn unpack_words<const B: u32>(packed: &[u8], out: &mut [u8]) {
    let b = B as usize;
    let words = out.len() / 8;
    // Whole 8-byte loads while they stay inside `packed`; the last few words copy their `B`
    // bytes first.
    let direct = if packed.len() >= 8 {
        ((packed.len() - 8) / b + 1).min(words)
    } else {
        0
    };
    let (head, tail) = out.split_at_mut(direct * 8);
    for (i, dst) in head.chunks_exact_mut(8).enumerate() {
        let src = &packed[i * b..i * b + 8];
        let v = u64::from_le_bytes([
            src[0], src[1], src[2], src[3], src[4], src[5], src[6], src[7],
        ]);
        dst.copy_from_slice(&spread::<B>(v).to_le_bytes());
    }
    let mut tail_words = tail.chunks_exact_mut(8);
    for (i, dst) in (&mut tail_words).enumerate() {
        let at = (direct + i) * b;
        let mut buf = [0u8; 8];
        buf[..b].copy_from_slice(&packed[at..at + b]);
        dst.copy_from_slice(&spread::<B>(u64::from_le_bytes(buf)).to_le_bytes());
    }
    let rest = tail_words.into_remainder();
    unpack_reference(&packed[words * b..], B as u8, rest);
}

// ---- Decode and dot product ------------------------------------------------------------

/// Writes `table[code]` for codes `start .. start + out.len()` of one packed row. The caller
/// guarantees the codes exist and index `table`.
#[inline]
pub(crate) fn decode_span(bits: u8, row: &[u8], start: usize, table: &[f32], out: &mut [f32]) {
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = table[usize::from(code_at(row, bits, start + i))];
    }
}

/// `Σ table[code_j] · x[j]` over codes `start .. start + x.len()` of one packed row, summed in
/// index order. The caller guarantees the codes exist and index `table`.
#[inline]
pub(crate) fn dot_span(bits: u8, row: &[u8], start: usize, table: &[f32], x: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (i, &xi) in x.iter().enumerate() {
        acc += table[usize::from(code_at(row, bits, start + i))] * xi;
    }
    acc
}

/// `out[i] = table[codes[i]]`.
#[inline]
pub(crate) fn lut(codes: &[u8], table: &[f32; 256], out: &mut [f32]) {
    for (slot, &c) in out.iter_mut().zip(codes) {
        *slot = table[usize::from(c)];
    }
}

/// `Σ table[codes[i]] · x[i]` in four partial sums (every fourth code each), which break the
/// add chain; added pairwise, then the tail.
#[inline]
pub(crate) fn lut_dot(codes: &[u8], table: &[f32; 256], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 4];
    let mut cs = codes.chunks_exact(4);
    let mut xs = x.chunks_exact(4);
    for (c, x) in (&mut cs).zip(&mut xs) {
        for k in 0..4 {
            acc[k] += table[usize::from(c[k])] * x[k];
        }
    }
    let mut tail = 0.0;
    for (&c, &x) in cs.remainder().iter().zip(xs.remainder()) {
        tail += table[usize::from(c)] * x;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

// ---- The fit's scoring lanes ------------------------------------------------------------

/// Most decision thresholds [`assign_sums`] reads (a 5-bit family's).
pub(crate) const ASSIGN_CUTS: usize = 16;
/// Atoms per vector of [`assign_sums`]; its slices are whole vectors.
pub(crate) const ASSIGN_LANES: usize = 8;

/// One level set at a fixed scale for [`assign_sums`]: a magnitude above `cut[j]` takes the
/// unit level `above[j]`, one above no threshold takes `base`.
#[derive(Clone, Copy)]
pub(crate) struct AssignLevels<'a> {
    /// The unit level below the first threshold (zero, or the smallest magnitude).
    pub base: f32,
    /// Thresholds, ascending; at most [`ASSIGN_CUTS`] are read.
    pub cut: &'a [f32],
    /// `above[j]`: the unit level of a magnitude above `cut[j]`.
    pub above: &'a [f32],
}

/// A small group's atoms for [`assign_sums`], side by side: magnitude `x`, importance `w0`,
/// `w0·x` and `w0·sign(w)`. Padding atoms carry zero importance, so they add nothing.
#[derive(Clone, Copy)]
pub(crate) struct AssignAtoms<'a> {
    pub x: &'a [f32],
    pub w0: &'a [f32],
    pub wx: &'a [f32],
    pub ws: &'a [f32],
}

/// The reference of the fit's small-group assignment: each atom takes the unit level `c` of
/// the last threshold it exceeds, and the result is `[Σc·wx, Σc²·w0, Σc·ws]`. Atom `i` is
/// summed in lane `i mod 8` in `f32` (products rounded before the add, never fused), then the
/// lanes in `f64` by [`assign_lane_sum`], so the vector path computes the same bits. Reads
/// whole vectors of [`ASSIGN_LANES`] atoms of the shortest slice.
pub(crate) fn assign_sums(levels: AssignLevels<'_>, atoms: AssignAtoms<'_>) -> [f64; 3] {
    let cuts = levels.cut.len().min(levels.above.len()).min(ASSIGN_CUTS);
    let (cut, above) = (&levels.cut[..cuts], &levels.above[..cuts]);
    let [mut cx, mut cc, mut cs] = [[0.0f32; ASSIGN_LANES]; 3];
    for i in 0..assign_vectors(atoms) * ASSIGN_LANES {
        let lane = i % ASSIGN_LANES;
        let x = atoms.x[i];
        let mut c = levels.base;
        for (&t, &l) in cut.iter().zip(above) {
            c = if x > t { l } else { c };
        }
        cx[lane] += c * atoms.wx[i];
        cc[lane] += (c * c) * atoms.w0[i];
        cs[lane] += c * atoms.ws[i];
    }
    [cx, cc, cs].map(assign_lane_sum)
}

/// The eight lanes of one of [`assign_sums`]' sums, added in `f64` as the vector paths add
/// them: lane `i` with lane `i + 4`, then those four pairwise.
#[inline(always)]
pub(crate) fn assign_lane_sum(lanes: [f32; ASSIGN_LANES]) -> f64 {
    let s: [f64; 4] = core::array::from_fn(|i| f64::from(lanes[i]) + f64::from(lanes[i + 4]));
    (s[0] + s[2]) + (s[1] + s[3])
}

/// Whole vectors of atoms that every slice of `atoms` holds.
#[inline]
pub(crate) fn assign_vectors(atoms: AssignAtoms<'_>) -> usize {
    let n = atoms
        .x
        .len()
        .min(atoms.w0.len())
        .min(atoms.wx.len())
        .min(atoms.ws.len());
    n / ASSIGN_LANES
}

/// Candidates scored per pass of the fit's lane kernels.
pub(crate) const LANES: usize = 16;
/// Fixed-point scale of the integer kernel: magnitudes in `[0, 1]` become `[0, 16383]`. One
/// bit short of `i16`, so that a squared difference is below `2^28` and the 32-bit sum of
/// [`PAIRS_PER_SUM`] pairs (8 weights) cannot overflow: `8 · 16383² < 2^31`.
pub(crate) const FIX: f64 = 16383.0;
/// Pairs whose squared errors are summed in `i32` before one conversion to `f32`.
pub(crate) const PAIRS_PER_SUM: usize = 4;
const _: () = assert!((2 * PAIRS_PER_SUM) as f64 * FIX * FIX < i32::MAX as f64);

/// Sixteen candidates' level sets, lane-major so that each compare covers all of them: `f32`
/// values for the exact scores, 16-bit fixed point (each value in both halves of a `u32`) for
/// the integer kernel. The kernels read `cut.len()` thresholds.
#[derive(Clone, Copy)]
pub(crate) struct LaneTables<'a, T> {
    /// The level below the first threshold (zero, or the smallest magnitude).
    pub base: &'a [T; LANES],
    /// `cut[j]`: the threshold between level `j` and `j + 1`, ascending in `j`.
    pub cut: &'a [[T; LANES]],
    /// `above[j]`: level `j + 1`, taken by a magnitude above `cut[j]`; as long as `cut`.
    pub above: &'a [[T; LANES]],
}

/// The coarse grid's fixed-point levels by magnitude (built by the fit's plan): row `k` holds
/// every candidate's level in interval `k`, `coarse` entries permuted within each block of 32
/// as the AVX-512 kernel's unpacks pair them.
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct CoarseRows<'a> {
    /// Candidates per row (the grid's size).
    pub coarse: usize,
    /// `interval[x]`: the row of the fixed-point magnitude `x` (at most `FIX`).
    pub interval: &'a [u16],
    /// The rows, `coarse` levels each.
    pub levels: &'a [i16],
}

impl CoarseRows<'_> {
    /// Every candidate's level for the fixed-point magnitude `x` (at most `FIX`).
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub(crate) fn row(&self, x: u32) -> &[i16] {
        let k = usize::from(self.interval[x as usize]);
        &self.levels[k * self.coarse..(k + 1) * self.coarse]
    }
}

/// `Σ w_i (x_i − level(x_i))²` for each lane's candidate, where `level` is the level nearest
/// to `x_i` (a magnitude exactly on a threshold may take either neighbour; both are equally
/// far). With `WEIGHTED == false` every `w_i` is 1 and `w` is not read.
#[inline(always)]
fn score_lanes<const WEIGHTED: bool>(t: LaneTables<'_, f32>, x: &[f32], w: &[f32]) -> [f32; LANES] {
    let mut acc = [0.0f32; LANES];
    for (i, &xi) in x.iter().enumerate() {
        let mut level = *t.base;
        for (c, a) in t.cut.iter().zip(t.above) {
            for lane in 0..LANES {
                level[lane] = if xi > c[lane] { a[lane] } else { level[lane] };
            }
        }
        for lane in 0..LANES {
            let d = xi - level[lane];
            // No `mul_add`: fused and unfused rounding differ, and every path must agree.
            acc[lane] += if WEIGHTED { (d * d) * w[i] } else { d * d };
        }
    }
    acc
}

/// The reference of the `f32` scoring kernels: [`score_lanes`], weighted or not.
pub(crate) fn score(t: LaneTables<'_, f32>, x: &[f32], w: Option<&[f32]>) -> [f32; LANES] {
    match w {
        Some(w) => score_lanes::<true>(t, x, w),
        None => score_lanes::<false>(t, x, &[]),
    }
}

/// One row of levels in fixed point, each value in both halves of its `u32`. Levels are in
/// [0, 1] (+∞ in unused rows is clamped to `FIX`): adding ½ and truncating rounds.
pub(crate) fn fixed_row(row: &[f32; LANES]) -> [u32; LANES] {
    row.map(|v| {
        let t = (v * FIX as f32 + 0.5).min(FIX as f32) as u32;
        t | (t << 16)
    })
}

/// [`fixed_row`] over rows.
pub(crate) fn fixed_rows(src: &[[f32; LANES]], dst: &mut [[u32; LANES]]) {
    for (s, d) in src.iter().zip(dst) {
        *d = fixed_row(s);
    }
}

/// The integer kernel's reference: per candidate, `Σ d²` over each run of
/// [`PAIRS_PER_SUM`] pairs in `i32` (no overflow, see [`FIX`]), converted to `f32` and added
/// in order.
pub(crate) fn score_fixed(t: LaneTables<'_, u32>, pairs: &[u32]) -> [f32; LANES] {
    let mut acc = [0.0f32; LANES];
    for run in pairs.chunks(PAIRS_PER_SUM) {
        for (lane, acc) in acc.iter_mut().enumerate() {
            let mut sum = 0i32;
            for &pair in run {
                let half = |v: u32| v as u16 as i16;
                for shift in [0, 16] {
                    let x = (pair >> shift) as u16 as i16;
                    let mut level = half(t.base[lane]);
                    for (cut, above) in t.cut.iter().zip(t.above) {
                        if x > half(cut[lane]) {
                            level = half(above[lane]);
                        }
                    }
                    let d = i32::from(x) - i32::from(level);
                    sum += d * d;
                }
            }
            *acc += sum as f32;
        }
    }
    acc
}

// ---- Int8 activations -------------------------------------------------------------------

/// Values of `x` per int8 block: each block of `x` has its own scale.
pub(crate) const QBLOCK: usize = 32;

/// Quantizes one block of `x` (at most [`QBLOCK`] finite values) to int8: `out[i] =
/// round(x[i] / s)` with `s = max|x| / 127`, so `|x[i] − s·out[i]| <= s/2`. Returns `s` (0 for
/// an all-zero block, whose codes are all 0).
pub(crate) fn quantize_block(x: &[f32], out: &mut [i8]) -> f32 {
    let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if max == 0.0 {
        out.iter_mut().for_each(|o| *o = 0);
        return 0.0;
    }
    let inv = 127.0 / max;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = round_i8(v * inv);
    }
    max / 127.0
}

/// `r` rounded half away from zero (`round` without `std`) and clamped to `[−127, 127]`
/// (against a step that rounded up): the int8 of a value already divided by its step.
#[inline]
pub(crate) fn round_i8(r: f32) -> i8 {
    let r = if r >= 0.0 { r + 0.5 } else { r - 0.5 };
    (r as i32).clamp(-127, 127) as i8
}

/// The int8 reference: `Σ_b scales[b] · Σ_{j in block b} table[code j] · xq[j]` over codes
/// `start .. start + len` of one packed row, where block `b` holds indices `32b .. 32b + 32`
/// of `xq` (indices of the whole vector). Each block's sum is exact in `i32`; the blocks are
/// added in index order. The caller guarantees the codes exist and index `table`.
pub(crate) fn dot_i8_span(
    bits: u8,
    row: &[u8],
    start: usize,
    len: usize,
    table: &[i8; 256],
    xq: &[i8],
    scales: &[f32],
) -> f32 {
    let mut acc = 0.0f32;
    let mut j = start;
    let end = start + len;
    while j < end {
        let block = j / QBLOCK;
        let stop = ((block + 1) * QBLOCK).min(end);
        let mut sum = 0i32;
        for k in j..stop {
            let w = table[usize::from(code_at(row, bits, k))];
            sum += i32::from(w) * i32::from(xq[k]);
        }
        acc += scales[block] * sum as f32;
        j = stop;
    }
    acc
}

/// The int8 reference of a 2-bit row whose blocks' tables differ only in their lower
/// magnitude: codes `0 .. len` by blocks of [`QBLOCK`] (the last may be short), block `b`
/// through `[−127, −lower[b], lower[b], 127]` and times `scales[b]`, blocks added in order.
/// The caller guarantees `len` codes and their blocks' entries exist.
pub(crate) fn dot_i8_two_magnitudes(
    row: &[u8],
    len: usize,
    xq: &[i8],
    scales: &[f32],
    lower: &[i8],
) -> f32 {
    let mut acc = 0.0f32;
    for (b, start) in (0..len).step_by(QBLOCK).enumerate() {
        let r = lower[b];
        let table = [-127, -r, r, 127];
        let sum: i32 = (start..(start + QBLOCK).min(len))
            .map(|j| i32::from(table[usize::from(code_at(row, 2, j))]) * i32::from(xq[j]))
            .sum();
        acc += scales[b] * sum as f32;
    }
    acc
}

/// `Σ_b scales[b] · Σ_{i in block b} w[i] · xq[i]` over whole blocks of [`QBLOCK`] (as many as
/// all three slices hold), blocks in order.
pub(crate) fn dot_i8(w: &[i8], xq: &[i8], scales: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for ((w, x), &s) in w
        .chunks_exact(QBLOCK)
        .zip(xq.chunks_exact(QBLOCK))
        .zip(scales)
    {
        let sum: i32 = w
            .iter()
            .zip(x)
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum();
        acc += s * sum as f32;
    }
    acc
}

/// The pair order of `x` for the 4-bit int8 kernels: per pair of blocks `b`, `b + 1` (64
/// values) the 16 even-position values of block `b`, then those of block `b + 1`, then the
/// odd-position ones of `b` and of `b + 1`; a last block without a partner holds its 16
/// even-position values, then its 16 odd ones. That is where a 32-byte load of packed codes
/// puts the low nibbles (even positions) and the high nibbles (odd positions) of the two
/// blocks' codes, one block per 128-bit lane, so they meet their `x` without a permute.
/// Covers the whole blocks of `xq` (`out` has at least as many values).
pub(crate) fn pair_order(xq: &[i8], out: &mut [i8]) {
    let blocks = xq.len() / QBLOCK;
    let mut b = 0;
    while b < blocks {
        let width = if b + 1 < blocks { 2 } else { 1 };
        let src = &xq[b * QBLOCK..(b + width) * QBLOCK];
        let dst = &mut out[b * QBLOCK..(b + width) * QBLOCK];
        for (k, &v) in src.iter().enumerate() {
            let (block, pos) = (k / QBLOCK, k % QBLOCK);
            dst[(pos % 2) * 16 * width + block * 16 + pos / 2] = v;
        }
        b += width;
    }
}

// ---- Group tables derived from parameters ------------------------------------------------

/// How a 4-bit group's 16-entry table follows from its parameters `(a, q)`, for kernels that
/// derive it in registers instead of loading a stored table per group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Gen16 {
    /// Exponential, 8 magnitudes `a·q^k` and no zero level (16 levels), or 7 and a zero
    /// level (15 levels, the 16th entry 0).
    Exp { zero: bool },
    /// Levels `a·u[k]`, `u` fixed for the tensor (linear families).
    Scaled([f32; 16]),
}

/// `[q^0, …, q^7]` as the kernels compute it: `q^k` is the product of `q`, `q²`, `q⁴` over
/// the set bits of `k`, taken `((b₁·b₂)·b₄)` with 1 for clear bits (exact), so every path
/// gets the same bits.
#[inline]
pub(crate) fn powers8(q: f32) -> [f32; 8] {
    let q2 = q * q;
    let q4 = q2 * q2;
    core::array::from_fn(|k| {
        let b1 = if k & 1 != 0 { q } else { 1.0 };
        let b2 = if k & 2 != 0 { q2 } else { 1.0 };
        let b4 = if k & 4 != 0 { q4 } else { 1.0 };
        (b1 * b2) * b4
    })
}

/// The 16-entry table of a group (the reference of the kernels' in-register derivation):
/// ascending levels, as `Family::levels_into` orders them.
pub(crate) fn table16(gen: &Gen16, a: f32, q: f32) -> [f32; 16] {
    match gen {
        Gen16::Scaled(u) => u.map(|u| a * u),
        Gen16::Exp { zero } => {
            let p = powers8(q);
            let k = if *zero { 7 } else { 8 };
            let mut t = [0.0f32; 16];
            for i in 0..k {
                t[i] = p[i] * -a;
                // Magnitude `a·q^i` sits `i` places below the top level.
                t[15 - i - usize::from(*zero)] = p[i] * a;
            }
            t
        }
    }
}

/// How a 3-bit group's 8-entry table follows from its parameters `(a, q)` (the 3-bit twin
/// of [`Gen16`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Gen8 {
    /// Exponential, 4 magnitudes `a·q^k` and no zero level (8 levels), or 3 and a zero level
    /// (7 levels, the 8th entry 0).
    Exp { zero: bool },
    /// Levels `a·u[k]`, `u` fixed for the tensor (linear families).
    Scaled([f32; 8]),
}

/// The 8-entry table of a 3-bit group (the reference of the kernels' derivation): ascending
/// levels, as `Family::levels_into` orders them, with `q³ = q·q²` taken in `f32` (the
/// codebook takes powers in `f64`: the last bit may differ).
pub(crate) fn table8(gen: &Gen8, a: f32, q: f32) -> [f32; 8] {
    match gen {
        Gen8::Scaled(u) => u.map(|u| a * u),
        Gen8::Exp { zero } => {
            let q2 = q * q;
            let p = [1.0, q, q2, q * q2];
            let k = if *zero { 3 } else { 4 };
            let mut t = [0.0f32; 8];
            for i in 0..k {
                t[i] = p[i] * -a;
                // Magnitude `a·q^i` sits `i` places below the top level.
                t[7 - i - usize::from(*zero)] = p[i] * a;
            }
            t
        }
    }
}

/// A 3-bit group's int8 table: [`quantize_block`] of `table8(gen, 1, q)` (whose largest
/// level is exactly 1, so the step is `1 / 127` and the group's scale `a / 127`), as
/// `I8Table::set` makes it from the group's levels of `(1, q)`.
pub(crate) fn table8_i8(gen: &Gen8, q: f32) -> [i8; 8] {
    let mut t = [0i8; 8];
    let _ = quantize_block(&table8(gen, 1.0, q), &mut t);
    t
}

/// The int8 reference over a 3-bit row in groups of `g` codes (a multiple of [`QBLOCK`]):
/// block `b` of group `i` through [`table8_i8`] of `q_i`, times `scales[b] · (a_i / 127)`,
/// blocks in order (the last may be short).
pub(crate) fn dot3_i8_groups(
    bytes: &[u8],
    xq: &[i8],
    scales: &[f32],
    g: usize,
    params: &[[f32; 2]],
    gen: &Gen8,
) -> f32 {
    let mut acc = 0.0f32;
    for (b, start) in (0..xq.len()).step_by(QBLOCK).enumerate() {
        let [a, q] = params[start / g];
        let t = table8_i8(gen, q);
        let sum: i32 = (start..(start + QBLOCK).min(xq.len()))
            .map(|j| i32::from(t[usize::from(code_at(bytes, 3, j))]) * i32::from(xq[j]))
            .sum();
        acc += scales[b] * (a * (1.0 / 127.0)) * sum as f32;
    }
    acc
}

/// `Σ_groups Σ_j table(a_g, q_g)[code j] · x[j]` over one packed `bits`-bit row cut into
/// groups of `g` codes (`params[i]` the `(a, q)` of group `i`; the last group may be short):
/// the definition of the kernels that derive a group's table from its parameters.
fn dot_derived_groups<const N: usize>(
    bits: u8,
    bytes: &[u8],
    x: &[f32],
    g: usize,
    params: &[[f32; 2]],
    table: impl Fn(f32, f32) -> [f32; N],
) -> f32 {
    let mut acc = 0.0f32;
    for (i, xs) in x.chunks(g).enumerate() {
        let t = table(params[i][0], params[i][1]);
        let mut part = 0.0f32;
        for (j, &xj) in xs.iter().enumerate() {
            part += t[usize::from(code_at(bytes, bits, i * g + j))] * xj;
        }
        acc += part;
    }
    acc
}

/// [`dot_derived_groups`] of a 3-bit row with [`table8`] tables.
pub(crate) fn dot3_groups(
    bytes: &[u8],
    x: &[f32],
    g: usize,
    params: &[[f32; 2]],
    gen: &Gen8,
) -> f32 {
    dot_derived_groups(3, bytes, x, g, params, |a, q| table8(gen, a, q))
}

/// [`dot_derived_groups`] of a 4-bit row with [`table16`] tables.
pub(crate) fn dot4_groups(
    bytes: &[u8],
    x: &[f32],
    g: usize,
    params: &[[f32; 2]],
    gen: &Gen16,
) -> f32 {
    dot_derived_groups(4, bytes, x, g, params, |a, q| table16(gen, a, q))
}

/// How a 1- or 2-bit group's levels follow from its `(a, q)`: `a` on the codes of the top
/// magnitude and `a·low` on those of the lower one (four levels only), `low` being `q`
/// (exponential) or a fixed unit level (linear). Every product is by `±1` or `0`, so the
/// levels are the codebook's to the bit, and a kernel may keep the two sign tables fixed and
/// carry `(a, a·low)` per lane: groups shorter than a block then need no table of their own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GenNarrow {
    /// Per code: −1 for the lowest level, +1 for the highest, 0 otherwise.
    pub(crate) top: [f32; 4],
    /// Per code: −1 or +1 for the lower magnitude's two levels, 0 otherwise (all 0 with one
    /// magnitude).
    pub(crate) low: [f32; 4],
    /// The lower magnitude at `a = 1`; `None` where it is `q`.
    pub(crate) low_unit: Option<f32>,
}

impl GenNarrow {
    /// The generator of a family with `levels` levels (2, 3 or 4: one magnitude, one and a
    /// zero level, or two magnitudes) whose lower magnitude at `a = 1` is `low_unit` (`None`:
    /// `q`); `None` for another count.
    pub(crate) fn new(levels: usize, low_unit: Option<f32>) -> Option<Self> {
        let (top, low) = match levels {
            2 => ([-1.0, 1.0, 0.0, 0.0], [0.0; 4]),
            3 => ([-1.0, 0.0, 1.0, 0.0], [0.0; 4]),
            4 => ([-1.0, 0.0, 0.0, 1.0], [0.0, -1.0, 1.0, 0.0]),
            _ => return None,
        };
        Some(GenNarrow { top, low, low_unit })
    }

    /// Whether the levels have a lower magnitude (four levels).
    // The kernels that use these are x86 ones (elsewhere the general loop runs).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline]
    pub(crate) fn two_magnitudes(&self) -> bool {
        self.low[2] != 0.0
    }

    /// A group's two magnitudes `(a, a·low)`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline]
    pub(crate) fn magnitudes(&self, a: f32, q: f32) -> (f32, f32) {
        (a, a * self.low_unit.unwrap_or(q))
    }
}

/// Whether the 8-lane permuted kernels of 1- and 2-bit groups (`dot_perm_narrow`) take
/// groups of `g` codes at `bits` bits: each lane (`32 / bits` codes of a 32-byte block) in one
/// group, and groups of whole blocks or blocks of whole groups.
pub(crate) fn narrow_groups_fit(bits: u32, g: usize) -> bool {
    let per_lane = (32 / bits.max(1)) as usize;
    let block = 8 * per_lane;
    g > 0 && g.is_multiple_of(per_lane) && (g.is_multiple_of(block) || block.is_multiple_of(g))
}

/// A 1- or 2-bit group's levels in code order, 0 past the level count (the reference of
/// the kernels' derivation).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn table_narrow(gen: &GenNarrow, a: f32, q: f32) -> [f32; 4] {
    let (hi, lo) = gen.magnitudes(a, q);
    core::array::from_fn(|c| hi * gen.top[c] + lo * gen.low[c])
}

/// Rounds to nearest, ties to even, for `|v| <= 2^22`: adding and removing `1.5·2^23`
/// leaves no fraction bits (the default `f32` rounding does the rest), as the SIMD
/// conversion does.
#[inline]
pub(crate) fn round_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// A group's int8 table for the derived-table int8 kernels: `round_even(table16(gen, 127,
/// q))`, in `[−127, 127]`; the group's scale is `a / 127`.
pub(crate) fn table16_i8(gen: &Gen16, q: f32) -> [i8; 16] {
    table16(gen, 127.0, q).map(|v| round_even(v) as i8)
}

/// The int8 reference over a 4-bit row in groups of `g` codes (a multiple of [`QBLOCK`]):
/// `Σ_groups (a_g/127) · dot_i8_span(group)` with [`table16_i8`] tables, groups in order.
pub(crate) fn dot4_i8_groups(
    bytes: &[u8],
    xq: &[i8],
    scales: &[f32],
    g: usize,
    params: &[[f32; 2]],
    gen: &Gen16,
) -> f32 {
    let mut acc = 0.0f32;
    for (i, &[a, q]) in params.iter().enumerate() {
        let start = i * g;
        if start >= xq.len() {
            break;
        }
        let len = g.min(xq.len() - start);
        let mut table = [0i8; 256];
        table[..16].copy_from_slice(&table16_i8(gen, q));
        acc += (a / 127.0) * dot_i8_span(4, bytes, start, len, &table, xq, scales);
    }
    acc
}

/// The value of a positive finite IEEE binary16 with bits `h` (the sign bit is ignored),
/// exactly: the exponent and significand moved into an `f32`'s fields and re-biased by a
/// multiplication with `2^112`, which is exact for normal and subnormal values alike. Group
/// scales are checked to be positive and finite where they are stored.
#[inline]
pub(crate) fn f16_positive(h: u16) -> f32 {
    f32::from_bits(u32::from(h & 0x7fff) << 13) * F16_REBIAS
}

/// `2^112`: the difference of the `f32` and `f16` exponent biases (127 − 15).
pub(crate) const F16_REBIAS: f32 = 5.192_297e33;

/// The `f16` scale of group `i` in `scales` (two little-endian bytes a group).
#[inline]
pub(crate) fn scale_at(scales: &[u8], i: usize) -> f32 {
    f16_positive(u16::from_le_bytes([scales[2 * i], scales[2 * i + 1]]))
}

/// The int8 reference of a 4-bit row in groups of `g` codes (a multiple of [`QBLOCK`]) that
/// share the int8 table `t16` (levels of `a = 127`) up to an `f16` scale per group:
/// `Σ_groups (a_g / 127) · Σ_{b in g} xscales[b] · Σ_{j in block b} t16[code j] · xq[j]`,
/// groups and blocks in order, as [`dot4_i8_groups`] sums. Stops at the last whole block of
/// `xq`.
pub(crate) fn dot4_i8_scaled(
    bytes: &[u8],
    t16: &[i8; 16],
    xq: &[i8],
    xscales: &[f32],
    g: usize,
    scales: &[u8],
) -> f32 {
    let blocks = (xq.len() / QBLOCK).min(xscales.len());
    scaled_groups(blocks, g, scales, |first, end| {
        let mut part = 0.0f32;
        for (b, &xs) in xscales.iter().enumerate().take(end).skip(first) {
            let mut sum = 0i32;
            for k in b * QBLOCK..(b + 1) * QBLOCK {
                sum += i32::from(t16[usize::from(code_at(bytes, 4, k))]) * i32::from(xq[k]);
            }
            part += xs * sum as f32;
        }
        part
    })
}

/// The group loop of [`dot4_i8_scaled`]: `Σ_groups (a_g / 127) · part(first, end)`, groups in
/// order, over the first `blocks` blocks (fewer where `scales` holds fewer groups), where
/// `part(first, end)` is the `x`-scaled sum of the group's blocks `first .. end`. Kernels that
/// sum a group's blocks in the reference's order get its bits through it.
pub(crate) fn scaled_groups(
    blocks: usize,
    g: usize,
    scales: &[u8],
    mut part: impl FnMut(usize, usize) -> f32,
) -> f32 {
    let per_group = (g / QBLOCK).max(1);
    let blocks = blocks.min(scales.len() / 2 * per_group);
    let mut acc = 0.0f32;
    let mut b = 0;
    while b < blocks {
        let group = b / per_group;
        let end = ((group + 1) * per_group).min(blocks);
        acc += (scale_at(scales, group) * INV_127) * part(b, end);
        b = end;
    }
    acc
}

/// `1/127`, the scale of a table of levels at `a = 127`.
pub(crate) const INV_127: f32 = 1.0 / 127.0;

// ---- GEMM micro-kernel --------------------------------------------------------------------

/// Rows of W in one decoded GEMM panel (and in one micro-tile).
pub(crate) const GEMM_MR: usize = 6;
/// Columns of W (the shared dimension) in one decoded GEMM panel.
pub(crate) const GEMM_KC: usize = 256;
/// Columns of X (and Y) in one micro-tile.
pub(crate) const GEMM_NR: usize = 16;

/// A decoded tile of W: `GEMM_MR` rows of `GEMM_KC` weights, row-major, aligned for vector
/// loads. Small enough to stay in L1 while every column tile of X streams past it.
#[derive(Clone)]
#[repr(C, align(64))]
pub(crate) struct GemmPanel {
    pub w: [[f32; GEMM_KC]; GEMM_MR],
}

impl GemmPanel {
    pub(crate) fn new() -> Self {
        GemmPanel {
            w: [[0.0; GEMM_KC]; GEMM_MR],
        }
    }
}

/// One micro-tile of the product: `GEMM_MR` rows by `GEMM_NR` columns.
pub(crate) type GemmTile = [[f32; GEMM_NR]; GEMM_MR];

/// Whether a micro-tile call is in bounds: `kc <= GEMM_KC`, `1 <= width <= min(GEMM_NR, n)`,
/// and `x` holds rows `0..kc` of `width` values at stride `n`. The SIMD kernels take the
/// reference when this fails, so an out-of-bounds call can only panic, never read past `x`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline]
pub(crate) fn gemm_tile_fits(kc: usize, x: &[f32], n: usize, width: usize) -> bool {
    kc <= GEMM_KC
        && (1..=GEMM_NR).contains(&width)
        && width <= n
        && (kc == 0
            || matches!(
                (kc - 1).checked_mul(n).and_then(|v| v.checked_add(width)),
                Some(end) if end <= x.len()
            ))
}

/// The reference micro-tile: `out[r][c] = Σ_{k < kc} w[r][k] · x[k·n + c]` for `c < width`
/// (columns from `width` on are 0), summed in `k` order with a separate multiply and add.
pub(crate) fn gemm_tile(w: &GemmPanel, kc: usize, x: &[f32], n: usize, width: usize) -> GemmTile {
    let mut out = [[0.0f32; GEMM_NR]; GEMM_MR];
    for k in 0..kc {
        let xs = &x[k * n..k * n + width];
        for (acc, wr) in out.iter_mut().zip(&w.w) {
            let wk = wr[k];
            for (a, &xv) in acc.iter_mut().zip(xs) {
                *a += wk * xv;
            }
        }
    }
    out
}

/// Columns of X in one narrow GEMM pass: batches of at most this many columns multiply
/// straight from packed 4-bit codes instead of through a decoded panel.
pub(crate) const GEMM_NARROW: usize = 8;

/// Columns of W (the shared dimension) in one narrow pass: four times `GEMM_KC`, as no panel
/// of W shares L1 with the block of X, and every block costs each row a reduction of its
/// accumulators. The block of X then takes 32 KiB of stack.
pub(crate) const GEMM_NARROW_KC: usize = 1024;

/// Segments of one row in one `GEMM_NARROW_KC` block: groups of at least 64 codes give at
/// most `GEMM_NARROW_KC / 64`, and a block may start inside a group.
pub(crate) const GEMM_SEGS: usize = GEMM_NARROW_KC / 64 + 1;

/// One `GEMM_NARROW_KC` block of X transposed: `x[c][gemm_xt_pos(k, kc)]` is input `k` of the block
/// in column `c`, so a column's inputs are contiguous next to a row's codes. On the stack,
/// in L1.
#[derive(Clone)]
#[repr(C, align(64))]
pub(crate) struct GemmXt {
    pub x: [[f32; GEMM_NARROW_KC]; GEMM_NARROW],
}

impl GemmXt {
    pub(crate) fn new() -> Self {
        GemmXt {
            x: [[0.0; GEMM_NARROW_KC]; GEMM_NARROW],
        }
    }
}

/// Where input `k` of a block of `kc` sits in a [`GemmXt`] column. Each whole run of 64 codes
/// is 32 bytes, byte `b` holding code `2b` (low nibble) and `2b + 1` (high nibble). A kernel
/// that looks up the low nibbles of all 32 bytes and then the high ones, 8 `f32` at a time
/// with lane `l` of vector `m` taking byte `4m + (l & 3) + 16·(l >> 2)` (the order in which
/// byte-wise unpacking within 128-bit halves leaves them), meets code `2b + h` at position
/// `32h + 8m + l` of the run, so that is where its input goes; the last run, shorter than
/// 64, stays in order.
#[inline]
pub(crate) fn gemm_xt_pos(k: usize, kc: usize) -> usize {
    if k < kc / 64 * 64 {
        let b = (k >> 1) & 31;
        (k & !63) | ((k & 1) << 5) | (((b >> 2) & 3) << 3) | ((b >> 4) << 2) | (b & 3)
    } else {
        k
    }
}

/// Codes `start..end` of a row's block, all in one group with parameters `(a, q)`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct GemmSeg {
    pub start: usize,
    pub end: usize,
    pub a: f32,
    pub q: f32,
}

/// Whether a narrow GEMM call on a block of `kc` codes is in bounds: `1 <= nc <=
/// GEMM_NARROW`, `kc <= GEMM_NARROW_KC`, and every segment is ordered, starts on a run of 64 codes,
/// ends on one or at `kc`, and lies inside `bytes`. The SIMD kernels take the reference when
/// this fails.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn gemm4_narrow_fits(bytes: &[u8], segs: &[GemmSeg], kc: usize, nc: usize) -> bool {
    (1..=GEMM_NARROW).contains(&nc)
        && kc <= GEMM_NARROW_KC
        && segs.iter().all(|s| {
            s.start <= s.end
                && s.start.is_multiple_of(64)
                && (s.end.is_multiple_of(64) || s.end == kc)
                && s.end <= kc
                && s.end.div_ceil(2) <= bytes.len()
        })
}

/// The narrow GEMM reference: `out[c] = Σ_s Σ_{k in s} table16(gen, a_s, q_s)[code k] ·
/// xt.x[c][gemm_xt_pos(k, kc)]` for `c < nc` (0 past it), `code k` the 4-bit code `k` of
/// `bytes`; summed in segment and `k` order with a separate multiply and add.
pub(crate) fn gemm4_narrow(
    bytes: &[u8],
    segs: &[GemmSeg],
    gen: &Gen16,
    xt: &GemmXt,
    kc: usize,
    nc: usize,
) -> [f32; GEMM_NARROW] {
    let mut out = [0.0f32; GEMM_NARROW];
    for s in segs {
        let t = table16(gen, s.a, s.q);
        for k in s.start..s.end {
            let w = t[usize::from(code_at(bytes, 4, k))];
            let p = gemm_xt_pos(k, kc);
            for (o, xc) in out.iter_mut().zip(&xt.x).take(nc) {
                *o += w * xc[p];
            }
        }
    }
    out
}
