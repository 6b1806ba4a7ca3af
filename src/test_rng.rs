//! The unit tests' pseudo-random numbers: a 32-bit xorshift, so that every test's inputs are
//! fixed by its seed and need no dependency.

/// Xorshift32 from `seed` (not zero): each call gives the next number of the sequence.
pub(crate) fn xorshift32(seed: u32) -> impl FnMut() -> u32 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    }
}

/// An exponential ratio `q` from 0.3 to 0.89 on a grid of 0.01: the group kernels' tests
/// draw each group's or row's `q` this way.
pub(crate) fn ratio(next: &mut impl FnMut() -> u32) -> f32 {
    0.3 + (next() % 60) as f32 * 0.01
}

/// A group's `(a, q)`: `a` from 0.1 to 1.09 on a grid of 0.01, then `q` from [`ratio`].
pub(crate) fn group_params(next: &mut impl FnMut() -> u32) -> [f32; 2] {
    let a = 0.1 + (next() % 100) as f32 * 0.01;
    [a, ratio(next)]
}

/// `groups` positive normal `f16` group scales from `next`, two little-endian bytes each, with
/// exponents from 2^-7 to 2^4: the compact-parameter kernels' tests draw them this way.
#[cfg(feature = "alloc")]
pub(crate) fn f16_scales(next: &mut impl FnMut() -> u32, groups: usize) -> alloc::vec::Vec<u8> {
    (0..groups)
        .flat_map(|_| ((0x2000 + next() % 0x3000) as u16).to_le_bytes())
        .collect()
}

/// Each row's `(a, q)` as the `f32` parameter encoding stores them: little-endian `a` then
/// `q`, group 0 first (the bytes the grouped int8 kernels may load directly).
#[cfg(feature = "alloc")]
pub(crate) fn stored_pairs(
    params: &[alloc::vec::Vec<[f32; 2]>],
) -> alloc::vec::Vec<alloc::vec::Vec<u8>> {
    params
        .iter()
        .map(|row| row.iter().flatten().flat_map(|v| v.to_le_bytes()).collect())
        .collect()
}
