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
