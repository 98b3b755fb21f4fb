//! NEON + dotprod kernels (Cortex-A76/A78: Raspberry Pi 5, Jetson Orin).
//!
//! `sdot` multiplies four i8 pairs and adds them into each i32 lane, so one row's 32
//! products take two instructions and never pass through i16. `vdotq_s32` is still
//! unstable, but the `dotprod` target feature is not: the kernels enable it and emit
//! `sdot` with `asm!`. Only [`super::available`] hands these out, after runtime
//! detection; the crate itself is built for baseline aarch64.
use core::arch::aarch64::*;
use core::arch::asm;

use super::common::{self, hsum4, Act, IntDot};
use crate::block::BlockQ8;
use crate::packed::{BlockQ4Ax4, BlockQ4x4, BlockQ8x4, ROWS};

/// `acc[i] += Σ_{j<4} a[4i+j] · b[4i+j]` (signed bytes).
#[target_feature(enable = "dotprod")]
#[inline]
fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: `sdot` exists because this function requires `dotprod`; it reads and
    // writes registers only.
    unsafe {
        asm!("sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b", acc = inout(vreg) acc, a = in(vreg) a, b = in(vreg) b,
             options(pure, nomem, nostack, preserves_flags));
    }
    acc
}

/// Integer dot products with `sdot`.
pub(super) struct Sdot;

impl IntDot for Sdot {
    #[target_feature(enable = "dotprod")]
    #[inline]
    unsafe fn dot4_i8(w: &[int8x16_t; 2 * ROWS], x: &Act) -> int32x4_t {
        let zero = vdupq_n_s32(0);
        let row = |w0, w1| sdot(sdot(zero, w0, x.x0), w1, x.x1);
        hsum4([
            row(w[0], w[1]),
            row(w[2], w[3]),
            row(w[4], w[5]),
            row(w[6], w[7]),
        ])
    }

    #[target_feature(enable = "dotprod")]
    #[inline]
    unsafe fn dot4_nibbles(w: &[int8x16_t; 2 * ROWS], x: &Act) -> int32x4_t {
        // SAFETY: same features; `sdot` takes any i8, nibbles included.
        unsafe { Self::dot4_i8(w, x) }
    }
}

macro_rules! dotprod_kernels {
    ($($gemv:ident, $gemm:ident, $P:ty;)*) => {$(
        /// Packed matrix × vector with `sdot`.
        ///
        /// # Safety
        /// The CPU must have `dotprod` (FEAT_DotProd). Lengths as in
        /// [`crate::dispatch::GemvFn`] (violations panic rather than read out of bounds).
        #[target_feature(enable = "dotprod")]
        pub(super) unsafe fn $gemv(w: &[$P], nb: usize, x: &[BlockQ8], y: &mut [f32]) {
            // SAFETY: `Sdot` needs `dotprod`, which this function requires.
            unsafe { common::gemv::<$P, Sdot>(w, nb, x, y) }
        }

        /// Packed matrix × `n` tokens with `sdot`; output `y[row * n + t]`.
        ///
        /// # Safety
        /// The CPU must have `dotprod` (FEAT_DotProd). Lengths as in
        /// [`crate::dispatch::GemmFn`] (violations panic rather than read out of bounds).
        #[target_feature(enable = "dotprod")]
        pub(super) unsafe fn $gemm(w: &[$P], nb: usize, x: &[BlockQ8], n: usize, y: &mut [f32]) {
            // SAFETY: `Sdot` needs `dotprod`, which this function requires.
            unsafe { common::gemm::<$P, Sdot>(w, nb, x, n, y) }
        }
    )*};
}

dotprod_kernels! {
    gemv_q8, gemm_q8, BlockQ8x4;
    gemv_q4, gemm_q4, BlockQ4x4;
    gemv_q4a, gemm_q4a, BlockQ4Ax4;
}
