//! Scalar reference kernels (`_generic`): the ground truth for every SIMD kernel,
//! and the kernels that run where no SIMD set applies (Cortex-M, armv7, old x86).
//!
//! Float contract shared by all kernels: per 32-value block the integer dot product
//! is exact (`i32`); it is scaled by `d_w * d_x` (f16 → f32) and summed in f32. SIMD
//! kernels may sum blocks in another order, so they agree with these to a float
//! tolerance, not bit for bit (the x86 sets); the ARM sets keep this order and these
//! roundings and are bit-exact. Kernels for `Q4A` add `m_w * d_x * Σq_x` per block.
//!
//! Preconditions (checked by [`crate::Kernels`], asserted here by slice indexing):
//! `x.len() == nb` (gemv) or `n * nb` (gemm, token-major), `w.len() == groups * nb`,
//! `y.len() == groups * 4` (gemv) or `groups * 4 * n` (gemm, **row-major by weight
//! row**: `y[row * n + t]`).
// The row index `r` addresses scales, quants and accumulators at once: index loops read best.
#![allow(clippy::needless_range_loop)]

use crate::block::{BlockQ4, BlockQ4A, BlockQ8, QK};
use crate::packed::{BlockQ4Ax4, BlockQ4x4, BlockQ8x4, ROWS};

#[inline]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// Σ (q-8)·x over one row of a Q4 packed block (`qs` = that row's 16 bytes).
#[inline]
fn dot_q4_row(qs: &[u8], x: &[i8; QK]) -> i32 {
    let mut s = 0i32;
    for j in 0..QK / 2 {
        s += ((qs[j] & 0x0F) as i32 - 8) * x[j] as i32;
        s += ((qs[j] >> 4) as i32 - 8) * x[j + QK / 2] as i32;
    }
    s
}

/// Σ q·x (unsigned nibbles) over one row of a Q4A packed block.
#[inline]
fn dot_q4a_row(qs: &[u8], x: &[i8; QK]) -> i32 {
    let mut s = 0i32;
    for j in 0..QK / 2 {
        s += (qs[j] & 0x0F) as i32 * x[j] as i32;
        s += (qs[j] >> 4) as i32 * x[j + QK / 2] as i32;
    }
    s
}

#[inline]
fn sum_i8(x: &[i8]) -> i32 {
    x.iter().map(|&v| v as i32).sum()
}

/// Dot product of two Q8 rows.
pub fn vec_dot_q8_q8(w: &[BlockQ8], x: &[BlockQ8]) -> f32 {
    assert_eq!(w.len(), x.len());
    w.iter()
        .zip(x)
        .map(|(a, b)| a.d.to_f32() * b.d.to_f32() * dot_i8(&a.qs, &b.qs) as f32)
        .sum()
}

/// Dot product of a Q4 row with a Q8 row.
pub fn vec_dot_q4_q8(w: &[BlockQ4], x: &[BlockQ8]) -> f32 {
    assert_eq!(w.len(), x.len());
    w.iter()
        .zip(x)
        .map(|(a, b)| a.d.to_f32() * b.d.to_f32() * dot_q4_row(&a.qs, &b.qs) as f32)
        .sum()
}

/// Dot product of a Q4A row with a Q8 row.
pub fn vec_dot_q4a_q8(w: &[BlockQ4A], x: &[BlockQ8]) -> f32 {
    assert_eq!(w.len(), x.len());
    w.iter()
        .zip(x)
        .map(|(a, b)| {
            let dx = b.d.to_f32();
            a.d.to_f32() * dx * dot_q4a_row(&a.qs, &b.qs) as f32
                + a.m.to_f32() * dx * sum_i8(&b.qs) as f32
        })
        .sum()
}

/// Matrix (Q8, packed) × vector (Q8 activations).
pub fn gemv_q8_generic(w: &[BlockQ8x4], nb: usize, x: &[BlockQ8], y: &mut [f32]) {
    for (g, out) in y.chunks_exact_mut(ROWS).enumerate() {
        let mut acc = [0.0f32; ROWS];
        for kb in 0..nb {
            let p = &w[g * nb + kb];
            let xb = &x[kb];
            let dx = xb.d.to_f32();
            for r in 0..ROWS {
                let s = dot_i8(&p.qs[r * QK..(r + 1) * QK], &xb.qs);
                acc[r] += p.d[r].to_f32() * dx * s as f32;
            }
        }
        out.copy_from_slice(&acc);
    }
}

/// Matrix (Q4, packed) × vector (Q8 activations).
pub fn gemv_q4_generic(w: &[BlockQ4x4], nb: usize, x: &[BlockQ8], y: &mut [f32]) {
    for (g, out) in y.chunks_exact_mut(ROWS).enumerate() {
        let mut acc = [0.0f32; ROWS];
        for kb in 0..nb {
            let p = &w[g * nb + kb];
            let xb = &x[kb];
            let dx = xb.d.to_f32();
            for r in 0..ROWS {
                let s = dot_q4_row(&p.qs[r * 16..(r + 1) * 16], &xb.qs);
                acc[r] += p.d[r].to_f32() * dx * s as f32;
            }
        }
        out.copy_from_slice(&acc);
    }
}

/// Matrix (Q4A, packed) × vector (Q8 activations).
pub fn gemv_q4a_generic(w: &[BlockQ4Ax4], nb: usize, x: &[BlockQ8], y: &mut [f32]) {
    for (g, out) in y.chunks_exact_mut(ROWS).enumerate() {
        let mut acc = [0.0f32; ROWS];
        for kb in 0..nb {
            let p = &w[g * nb + kb];
            let xb = &x[kb];
            let dx = xb.d.to_f32();
            let sx = sum_i8(&xb.qs) as f32;
            for r in 0..ROWS {
                let s = dot_q4a_row(&p.qs[r * 16..(r + 1) * 16], &xb.qs);
                acc[r] += p.d[r].to_f32() * dx * s as f32 + p.m[r].to_f32() * dx * sx;
            }
        }
        out.copy_from_slice(&acc);
    }
}

/// Run a gemv per token: the reference gemm is exactly `n` gemvs, transposed into
/// `y[row * n + t]`.
macro_rules! gemm_from_gemv {
    ($name:ident, $gemv:ident, $P:ty) => {
        /// Matrix (packed) × `n` activation rows; `y[row * n + t]`.
        pub fn $name(w: &[$P], nb: usize, x: &[BlockQ8], n: usize, y: &mut [f32]) {
            let rows = y.len() / n.max(1);
            assert_eq!(rows * n, y.len());
            assert_eq!(rows % ROWS, 0);
            let mut tmp = [0.0f32; ROWS];
            for t in 0..n {
                let xt = &x[t * nb..(t + 1) * nb];
                for g in 0..rows / ROWS {
                    $gemv(&w[g * nb..(g + 1) * nb], nb, xt, &mut tmp);
                    for r in 0..ROWS {
                        y[(g * ROWS + r) * n + t] = tmp[r];
                    }
                }
            }
        }
    };
}
gemm_from_gemv!(gemm_q8_generic, gemv_q8_generic, BlockQ8x4);
gemm_from_gemv!(gemm_q4_generic, gemv_q4_generic, BlockQ4x4);
gemm_from_gemv!(gemm_q4a_generic, gemv_q4a_generic, BlockQ4Ax4);

/// Reference activation quantizer (f32 row → Q8 blocks).
pub fn quantize_row_q8_generic(x: &[f32], y: &mut [BlockQ8]) {
    crate::quantize::quantize_row_q8(x, y)
}

/// Reference f32 matrix product `c = a · b` (row-major `a`, `m × k`, and `c`, `m × n`,
/// overwritten; `b`, `k × n`, laid out as `lay` says: [`crate::BLayout`]). Each output is summed
/// over `p = 0..k` in order, one rounding per multiply and per add. Written as row
/// updates (`c[i] += a[i][p] · b[p]`), which the compiler vectorizes where the baseline
/// target has SIMD (NEON on aarch64 uses this kernel as is).
pub fn gemm_f32_generic(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    lay: crate::BLayout,
    c: &mut [f32],
) {
    gemm_generic(m, k, n, a, b, lay, c, |v| v)
}

/// [`gemm_f32_generic`] with `b` in f16, each value widened (exactly) to f32.
pub fn gemm_f16b_generic(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[half::f16],
    lay: crate::BLayout,
    c: &mut [f32],
) {
    gemm_generic(m, k, n, a, b, lay, c, half::f16::to_f32)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gemm_generic<B: Copy>(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[B],
    lay: crate::BLayout,
    c: &mut [f32],
    widen: impl Fn(B) -> f32,
) {
    assert!(
        a.len() == m * k && lay.is_valid() && Some(b.len()) == lay.span(k, n) && c.len() == m * n
    );
    for (ci, ai) in c.chunks_exact_mut(n.max(1)).zip(a.chunks_exact(k.max(1))) {
        ci.fill(0.0);
        for (p, &av) in ai.iter().enumerate() {
            // Panel by panel: each a contiguous run of `b` (and of `c`'s row).
            for (q, cq) in ci.chunks_mut(32).enumerate() {
                let (at, w) = (lay.at(p, 32 * q), cq.len());
                for (o, &bv) in cq.iter_mut().zip(&b[at..at + w]) {
                    *o += av * widen(bv);
                }
            }
        }
    }
    if k == 0 {
        c.fill(0.0);
    }
}
