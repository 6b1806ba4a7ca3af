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

/// `groups` positive normal `f16` group scales from `next`, two little-endian bytes each, with
/// exponents from 2^-7 to 2^4: the compact-parameter kernels' tests draw them this way.
#[cfg(feature = "alloc")]
pub(crate) fn f16_scales(next: &mut impl FnMut() -> u32, groups: usize) -> alloc::vec::Vec<u8> {
    (0..groups)
        .flat_map(|_| ((0x2000 + next() % 0x3000) as u16).to_le_bytes())
        .collect()
}
