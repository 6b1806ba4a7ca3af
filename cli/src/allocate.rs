//! `--target-bpw`: one bit width per layer so that the model's stored bits stay within the
//! budget and the summed error is least — a multiple-choice knapsack.
//!
//! Solved exactly by dynamic programming over Pareto frontiers: after each layer, the set of
//! (total size, total error) pairs reachable by some choice of widths, with every pair that
//! another pair beats on both counts removed, and every pair that cannot fit the budget even
//! with the smallest choices of the remaining layers removed. The optimum extends some pair of
//! the previous frontier (replacing a dominated prefix by the pair that dominates it never
//! raises size or error), so the best feasible pair of the last frontier is the optimum.

use crate::error::{Error, Result};

/// One candidate for one layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    /// Bit width.
    pub bits: u8,
    /// Stored bits of the layer at this width (codebooks included).
    pub size: u64,
    /// The layer's error at this width (summed over its weights).
    pub error: f64,
}

/// Frontier size beyond which sizes are rounded up to a coarser grid; rounding up keeps every
/// answer within budget and only gives up optimality inside one grid step.
const MAX_FRONTIER: usize = 1 << 20;

/// The chosen index into each layer's `choices`, and whether the answer is exactly optimal.
pub fn solve(layers: &[Vec<Choice>], budget: u64) -> Result<(Vec<usize>, bool)> {
    if layers.iter().any(|c| c.is_empty()) {
        return Err(Error::msg("a layer has no candidate bit width"));
    }
    // Smallest size of layers i.. (suffix sums), to drop pairs that cannot finish within budget.
    let mut min_rest = vec![0u64; layers.len() + 1];
    for i in (0..layers.len()).rev() {
        let smallest = layers[i].iter().map(|c| c.size).min().unwrap_or(0);
        min_rest[i] = min_rest[i + 1].saturating_add(smallest);
    }
    if min_rest[0] > budget {
        return Err(Error::msg(format!(
            "the budget of {budget} bits is too small: the smallest widths need {} bits",
            min_rest[0]
        )));
    }
    let mut exact = true;
    let mut grid = 1u64;
    // Each state: (size, error, choice, parent index in the previous frontier).
    let mut frontiers: Vec<Vec<(u64, f64, usize, usize)>> = Vec::with_capacity(layers.len());
    let mut current: Vec<(u64, f64, usize, usize)> = vec![(0, 0.0, 0, 0)];
    for (i, choices) in layers.iter().enumerate() {
        let mut next = Vec::with_capacity(current.len() * choices.len());
        for (parent, &(size, error, _, _)) in current.iter().enumerate() {
            for (k, c) in choices.iter().enumerate() {
                let s = size + c.size.div_ceil(grid) * grid;
                if s + min_rest[i + 1] <= budget {
                    next.push((s, error + c.error, k, parent));
                }
            }
        }
        next.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut pruned: Vec<(u64, f64, usize, usize)> = Vec::with_capacity(next.len());
        for state in next {
            if pruned.last().is_none_or(|last| state.1 < last.1) {
                pruned.push(state);
            }
        }
        if pruned.len() > MAX_FRONTIER {
            exact = false;
            grid = (budget / MAX_FRONTIER as u64).max(grid * 2);
        }
        frontiers.push(pruned);
        current = frontiers.last().expect("just pushed").clone();
    }
    // The last frontier's errors fall as sizes rise, so its last pair is the best.
    let mut at = current
        .len()
        .checked_sub(1)
        .ok_or_else(|| Error::msg("no assignment of bit widths fits the budget"))?;
    let mut picks = vec![0; layers.len()];
    for i in (0..layers.len()).rev() {
        let (_, _, k, parent) = frontiers[i][at];
        picks[i] = k;
        at = parent;
    }
    Ok((picks, exact))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(layers: &[Vec<Choice>], budget: u64) -> f64 {
        let mut best = f64::INFINITY;
        let mut idx = vec![0usize; layers.len()];
        loop {
            let size: u64 = idx.iter().zip(layers).map(|(&k, l)| l[k].size).sum();
            let error: f64 = idx.iter().zip(layers).map(|(&k, l)| l[k].error).sum();
            if size <= budget && error < best {
                best = error;
            }
            let mut i = 0;
            loop {
                if i == layers.len() {
                    return best;
                }
                idx[i] += 1;
                if idx[i] < layers[i].len() {
                    break;
                }
                idx[i] = 0;
                i += 1;
            }
        }
    }

    #[test]
    fn matches_brute_force() {
        // Deterministic pseudo-random layers: error falls with bits, size rises.
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as f64 / (1u64 << 31) as f64
        };
        for _ in 0..40 {
            let layers: Vec<Vec<Choice>> = (0..5)
                .map(|_| {
                    let n = 50 + (next() * 500.0) as u64;
                    let scale = next() * 10.0;
                    (1..=8u8)
                        .map(|b| Choice {
                            bits: b,
                            size: n * b as u64 + 64,
                            error: scale * 4f64.powi(-(b as i32)) * (0.5 + next()),
                        })
                        .collect()
                })
                .collect();
            let total_min: u64 = layers.iter().map(|l| l[0].size).sum();
            let total_max: u64 = layers.iter().map(|l| l[7].size).sum();
            let budget = total_min + ((total_max - total_min) as f64 * next()) as u64;
            let (picks, exact) = solve(&layers, budget).unwrap();
            assert!(exact);
            let size: u64 = picks.iter().zip(&layers).map(|(&k, l)| l[k].size).sum();
            let error: f64 = picks.iter().zip(&layers).map(|(&k, l)| l[k].error).sum();
            assert!(size <= budget);
            assert_eq!(error, brute(&layers, budget));
        }
    }

    #[test]
    fn too_small_a_budget_is_an_error() {
        let layers = vec![vec![Choice {
            bits: 1,
            size: 100,
            error: 1.0,
        }]];
        assert!(solve(&layers, 99).is_err());
        assert_eq!(solve(&layers, 100).unwrap().0, vec![0]);
    }
}
