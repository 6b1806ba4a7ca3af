//! Arbitrary floats and shapes through `quantize`: no panic, and every tensor it returns obeys
//! the documented error bound; every error is one the input explains.
#![no_main]

use expquant::{quantize_weighted, Error, ScaleRule};
use expquant_fuzz::{check_invariant, parse_quantize_input};
use libfuzzer_sys::fuzz_target;

/// Large enough for several groups per row, small enough that an 8-bit fit stays fast.
const MAX_WEIGHTS: usize = 128;

fuzz_target!(|data: &[u8]| {
    let Some(case) = parse_quantize_input(data) else {
        return;
    };
    if case.weights.len() > MAX_WEIGHTS {
        return;
    }
    let rows = case.rows;
    // Whole rows of the weights given; the shape check sees any remainder.
    let cols = case.weights.len().checked_div(rows).unwrap_or(0);
    let result = quantize_weighted(
        &case.weights,
        rows,
        cols,
        &case.config,
        case.importance.as_deref(),
    );
    match result {
        Ok(tensor) => check_invariant(&tensor, &case.weights),
        Err(e) => {
            let fixed = matches!(case.config.scale_rule(), ScaleRule::Fixed { .. });
            let explained = match &e {
                Error::NonFiniteWeight { index, .. } => !case.weights[*index].is_finite(),
                Error::InvalidBits(b) => *b == 0,
                Error::EmptyTensor { .. } | Error::ShapeMismatch { .. } => {
                    rows * cols != case.weights.len() || rows * cols == 0
                }
                Error::ZeroGroupSize => true,
                Error::InvalidParameters { .. } => fixed,
                _ => false,
            };
            assert!(explained, "unexplained error for {case:?}: {e}");
        }
    }
});
