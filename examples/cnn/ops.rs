//! Dense-array kernels shared by inference and training.
//!
//! Everything is scalar Rust written so that the innermost loop is either an `axpy` over a
//! contiguous row (which LLVM vectorises without reordering any sum) or a dot product with a
//! fixed set of partial sums. Both keep the order of floating-point operations fixed, which is
//! what makes training bit-for-bit reproducible and makes debug and release builds agree.

/// `y += a * x`, element-wise.
#[inline]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    debug_assert_eq!(y.len(), x.len());
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// Dot product with eight interleaved partial sums, combined in a fixed order.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (xa, xb) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += xa[i] * xb[i];
        }
    }
    let mut tail = 0.0f32;
    for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Unfolds a `ch × side × side` image into the `(ch·9) × (side·side)` patch matrix of a 3×3,
/// stride-1, zero-padded convolution, so a convolution becomes one matrix product with the
/// `out × (in·3·3)` kernel matrix.
pub fn im2col3x3(input: &[f32], ch: usize, side: usize, cols: &mut [f32]) {
    let plane = side * side;
    debug_assert_eq!(input.len(), ch * plane);
    debug_assert_eq!(cols.len(), ch * 9 * plane);
    for c in 0..ch {
        let src = &input[c * plane..(c + 1) * plane];
        for ky in 0..3 {
            for kx in 0..3 {
                let row = (c * 9 + ky * 3 + kx) * plane;
                let dst = &mut cols[row..row + plane];
                for y in 0..side {
                    for x in 0..side {
                        // Source pixel (y + ky - 1, x + kx - 1); outside the image reads zero.
                        let sy = y + ky;
                        let sx = x + kx;
                        dst[y * side + x] = if sy >= 1 && sy <= side && sx >= 1 && sx <= side {
                            src[(sy - 1) * side + (sx - 1)]
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }
}

/// Adjoint of [`im2col3x3`]: scatters patch-matrix gradients back onto the image (overwrites
/// `grad_input`).
pub fn col2im3x3(cols: &[f32], ch: usize, side: usize, grad_input: &mut [f32]) {
    let plane = side * side;
    debug_assert_eq!(grad_input.len(), ch * plane);
    debug_assert_eq!(cols.len(), ch * 9 * plane);
    grad_input.fill(0.0);
    for c in 0..ch {
        let dst = &mut grad_input[c * plane..(c + 1) * plane];
        for ky in 0..3 {
            for kx in 0..3 {
                let row = (c * 9 + ky * 3 + kx) * plane;
                let src = &cols[row..row + plane];
                for y in 0..side {
                    for x in 0..side {
                        let sy = y + ky;
                        let sx = x + kx;
                        if sy >= 1 && sy <= side && sx >= 1 && sx <= side {
                            dst[(sy - 1) * side + (sx - 1)] += src[y * side + x];
                        }
                    }
                }
            }
        }
    }
}

/// `out = bias + weight · cols`, where `weight` is `rows × k`, `cols` is `k × n` and `out` is
/// `rows × n` (all row-major). Used for convolutions after [`im2col3x3`].
pub fn matmul_bias(
    weight: &[f32],
    bias: &[f32],
    cols: &[f32],
    k: usize,
    n: usize,
    out: &mut [f32],
) {
    let rows = bias.len();
    debug_assert_eq!(weight.len(), rows * k);
    debug_assert_eq!(cols.len(), k * n);
    debug_assert_eq!(out.len(), rows * n);
    for (o, out_row) in out.chunks_exact_mut(n).enumerate() {
        out_row.fill(bias[o]);
        let w_row = &weight[o * k..(o + 1) * k];
        for (j, &w) in w_row.iter().enumerate() {
            axpy(out_row, w, &cols[j * n..(j + 1) * n]);
        }
    }
}

/// `out = bias + weight · x` for a `rows × x.len()` weight matrix.
pub fn dense(weight: &[f32], bias: &[f32], x: &[f32], out: &mut [f32]) {
    let n = x.len();
    debug_assert_eq!(weight.len(), bias.len() * n);
    for ((o, w_row), &b) in out.iter_mut().zip(weight.chunks_exact(n)).zip(bias) {
        *o = b + dot(w_row, x);
    }
}

pub fn relu(v: &mut [f32]) {
    for x in v {
        *x = x.max(0.0);
    }
}

/// 2×2, stride-2 max pooling of `ch × side × side`. Records, for every output, the flat input
/// index that won so the backward pass can route the gradient without recomputing.
pub fn maxpool2(input: &[f32], ch: usize, side: usize, out: &mut [f32], argmax: &mut [u32]) {
    let half = side / 2;
    for c in 0..ch {
        for y in 0..half {
            for x in 0..half {
                let base = c * side * side + 2 * y * side + 2 * x;
                let mut best = base;
                // Ties keep the first candidate in row-major order.
                for idx in [base + 1, base + side, base + side + 1] {
                    if input[idx] > input[best] {
                        best = idx;
                    }
                }
                let o = c * half * half + y * half + x;
                out[o] = input[best];
                argmax[o] = best as u32;
            }
        }
    }
}

/// Index of the largest logit; ties go to the lowest index.
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
