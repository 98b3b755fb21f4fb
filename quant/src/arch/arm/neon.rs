//! Base ARMv8 NEON kernels (Cortex-A72: Raspberry Pi 4). NEON is part of every
//! aarch64 CPU, so these need no runtime check.
//!
//! Integer dot products widen i8 × i8 → i16 with `smull`/`smull2`, then pairwise-add
//! into i32 (`sadalp`). For Q8 every product is widened on its own: two products
//! `(-128)·(-128)` would overflow i16. Decoded nibbles are at most 15 in magnitude, so
//! four of their products share an i16 lane before widening.
use core::arch::aarch64::*;

use super::common::{self, hsum4, Act, IntDot};
use crate::block::{BlockQ8, QK};
use crate::packed::{BlockQ4Ax4, BlockQ4x4, BlockQ8x4, ROWS};
use half::f16;

/// Base NEON integer dot products.
pub(super) struct Neon;

impl IntDot for Neon {
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn dot4_i8(w: &[int8x16_t; 2 * ROWS], x: &Act) -> int32x4_t {
        let row = |w0: int8x16_t, w1: int8x16_t| {
            let a = vpaddlq_s16(vmull_s8(vget_low_s8(w0), vget_low_s8(x.x0)));
            let a = vpadalq_s16(a, vmull_high_s8(w0, x.x0));
            let a = vpadalq_s16(a, vmull_s8(vget_low_s8(w1), vget_low_s8(x.x1)));
            vpadalq_s16(a, vmull_high_s8(w1, x.x1))
        };
        hsum4([
            row(w[0], w[1]),
            row(w[2], w[3]),
            row(w[4], w[5]),
            row(w[6], w[7]),
        ])
    }

    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn dot4_nibbles(w: &[int8x16_t; 2 * ROWS], x: &Act) -> int32x4_t {
        // |w| <= 15, |x| <= 128: four products per i16 lane stay below 2^13.
        let row = |w0: int8x16_t, w1: int8x16_t| {
            let p = vmull_s8(vget_low_s8(w0), vget_low_s8(x.x0));
            let p = vmlal_high_s8(p, w0, x.x0);
            let p = vmlal_s8(p, vget_low_s8(w1), vget_low_s8(x.x1));
            vpaddlq_s16(vmlal_high_s8(p, w1, x.x1))
        };
        hsum4([
            row(w[0], w[1]),
            row(w[2], w[3]),
            row(w[4], w[5]),
            row(w[6], w[7]),
        ])
    }
}

/// Activation quantizer, byte-identical to [`crate::quantize::quantize_row_q8`].
///
/// Same arithmetic as the scalar code: `amax` by `>` comparisons (so NaNs never win),
/// `d = amax / 127`, `q = x * (1/d)` rounded half-to-even (`fcvtns`), then saturated to
/// i8 like Rust's `as i8` (`sqxtn`; `fcvtns` already saturates ±inf and maps NaN to 0).
///
/// Panics if `x.len() != 32 * y.len()`.
///
/// # Safety
/// None beyond the signature: base NEON is always present on aarch64. (`unsafe` to fit
/// [`crate::dispatch::QuantizeFn`].)
#[target_feature(enable = "neon")]
pub(super) unsafe fn quantize_row_q8(x: &[f32], y: &mut [BlockQ8]) {
    assert_eq!(x.len(), y.len() * QK, "quantize_row_q8: length mismatch");
    for (b, chunk) in y.iter_mut().zip(x.chunks_exact(QK)) {
        let chunk: &[f32; QK] = chunk.try_into().expect("chunk of QK");
        let mut v = [vdupq_n_f32(0.0); QK / 4];
        for (i, vi) in v.iter_mut().enumerate() {
            // SAFETY: reads floats 4i..4i+4 of the 32-float array.
            *vi = unsafe { vld1q_f32(chunk.as_ptr().add(4 * i)) };
        }
        let mut m = vdupq_n_f32(0.0);
        for &vi in &v {
            let a = vabsq_f32(vi);
            m = vbslq_f32(vcgtq_f32(a, m), a, m);
        }
        // `m` holds no NaN, so the order of the lane maximum does not matter.
        let amax = vmaxvq_f32(m);
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = v.map(|vi| vcvtnq_s32_f32(vmulq_n_f32(vi, id)));
        let h = [
            vqmovn_high_s32(vqmovn_s32(q[0]), q[1]),
            vqmovn_high_s32(vqmovn_s32(q[2]), q[3]),
            vqmovn_high_s32(vqmovn_s32(q[4]), q[5]),
            vqmovn_high_s32(vqmovn_s32(q[6]), q[7]),
        ];
        let lo = vqmovn_high_s16(vqmovn_s16(h[0]), h[1]);
        let hi = vqmovn_high_s16(vqmovn_s16(h[2]), h[3]);
        // SAFETY: each store writes 16 bytes inside the 32-byte `qs`.
        unsafe {
            vst1q_s8(b.qs.as_mut_ptr(), lo);
            vst1q_s8(b.qs.as_mut_ptr().add(16), hi);
        }
        b.d = f16::from_f32(d);
    }
}

macro_rules! neon_kernels {
    ($($gemv:ident, $gemm:ident, $P:ty;)*) => {$(
        /// Packed matrix × vector, base NEON.
        ///
        /// # Safety
        /// Lengths as in [`crate::dispatch::GemvFn`] (violations panic rather than read
        /// out of bounds); base NEON is always present on aarch64.
        #[target_feature(enable = "neon")]
        pub(super) unsafe fn $gemv(w: &[$P], nb: usize, x: &[BlockQ8], y: &mut [f32]) {
            // SAFETY: `Neon` needs base NEON only.
            unsafe { common::gemv::<$P, Neon>(w, nb, x, y) }
        }

        /// Packed matrix × `n` tokens, base NEON; output `y[row * n + t]`.
        ///
        /// # Safety
        /// Lengths as in [`crate::dispatch::GemmFn`] (violations panic rather than read
        /// out of bounds); base NEON is always present on aarch64.
        #[target_feature(enable = "neon")]
        pub(super) unsafe fn $gemm(w: &[$P], nb: usize, x: &[BlockQ8], n: usize, y: &mut [f32]) {
            // SAFETY: `Neon` needs base NEON only.
            unsafe { common::gemm::<$P, Neon>(w, nb, x, n, y) }
        }
    )*};
}

neon_kernels! {
    gemv_q8, gemm_q8, BlockQ8x4;
    gemv_q4, gemm_q4, BlockQ4x4;
    gemv_q4a, gemm_q4a, BlockQ4Ax4;
}
