//! Splitting independent per-row work over scoped threads (the `parallel` feature).
//!
//! Every caller hands over a slice it would otherwise fill row by row on one thread; the
//! slice is cut into contiguous runs of whole rows, one per thread, and each thread runs the
//! serial code on its own run. Nothing is reordered and no row's result depends on which
//! thread computed it, so the output is the serial output bit for bit.

use core::ops::Range;
use std::panic;
use std::thread;
use std::vec::Vec;

/// Spawning and joining one scoped thread costs 75–90 µs on the 2-core VM the benchmarks run on
/// (a stack mapping, `clone`, a futex wake-up and the join; measured with an empty closure),
/// so work is split only when each thread's share is well above that.
///
/// Quantizing runs at 100–200 M weights/s per core (per row / per tensor, more slowly with
/// small groups), so 64 K weights are 0.3–0.6 ms: below that the spawn eats the gain.
pub(crate) const QUANTIZE_MIN_WEIGHTS: usize = 1 << 16;

/// A 2- or 4-bit GEMV runs at ~20 G weights/s per core, so 4 M weights take ~200 µs and two
/// threads save ~100 µs, just above one spawn: below that, threads cost more than they save
/// (a 1 M-weight GEMV forced onto two threads measured 2× slower). Wider codes are slower per
/// weight and gain more.
pub(crate) const GEMV_MIN_WEIGHTS: usize = 1 << 22;

/// Multiply-adds of a GEMM on packed weights below which it stays on one thread: 8 M of them
/// run about as long as a GEMV over 4 M weights (each decoded weight feeds a whole row of
/// register-blocked products), so the same reasoning as [`GEMV_MIN_WEIGHTS`] applies.
pub(crate) const GEMM_MIN_MACS: usize = 1 << 23;

/// Threads to use for work on `weights` weights: 1 below `min_weights`, else what the OS says
/// this process may run at once.
pub(crate) fn threads_for(weights: usize, min_weights: usize) -> usize {
    if weights < min_weights {
        return 1;
    }
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `work(rows, chunk)` over contiguous chunks of `items`, which holds `per_row` items for
/// each of `rows` rows, on up to `threads` threads (the calling thread takes the first chunk).
/// Chunk boundaries fall on multiples of `align` rows. Returns the error of the earliest
/// chunk that failed, so a `work` that stops at its first error reports what a single pass
/// over all rows would have. A panic in a worker is resumed on the calling thread.
pub(crate) fn for_each_chunk<T, E, F>(
    items: &mut [T],
    rows: usize,
    per_row: usize,
    align: usize,
    threads: usize,
    work: F,
) -> Result<(), E>
where
    T: Send,
    E: Send,
    F: Fn(Range<usize>, &mut [T]) -> Result<(), E> + Sync,
{
    debug_assert_eq!(items.len(), rows * per_row);
    let chunk_rows = rows
        .div_ceil(threads.max(1))
        .next_multiple_of(align.max(1))
        .max(1);
    if chunk_rows >= rows || per_row == 0 {
        return work(0..rows, items);
    }
    let (first, rest) = items.split_at_mut(chunk_rows * per_row);
    thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = rest
            .chunks_mut(chunk_rows * per_row)
            .enumerate()
            .map(|(i, chunk)| {
                let start = (i + 1) * chunk_rows;
                let range = start..start + chunk.len() / per_row;
                scope.spawn(move || work(range, chunk))
            })
            .collect();
        let mut result = work(0..chunk_rows, first);
        for handle in handles {
            let outcome = handle.join().unwrap_or_else(|p| panic::resume_unwind(p));
            // Joined in row order: keep the first failure, but join every thread.
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    })
}
