//! What the NEON and dotprod sets share: loading and decoding blocks into registers,
//! and the gemv/gemm drivers. The two sets differ only in how they form the four
//! per-row integer dot products of one packed block ([`IntDot`]).
//!
//! Every driver works on one row group (four rows) at a time: the packed block is
//! decoded once into eight `int8x16_t` registers (two per row), then dotted with one
//! activation block per token. The i32 block sums of the four rows land in one
//! `int32x4_t` (lane `r` = row `r`), so scaling and accumulating is four lanes wide.
//!
//! Bit-exact with [`crate::generic`]: a lane holds one row and adds its blocks in
//! order, and every float step is the reference's own, one rounding each (no FMA):
//! `acc + (d_w·d_x)·Σqx`, and for Q4A `acc + ((d_w·d_x)·Σqx + (m_w·d_x)·Σx)`. A fused
//! multiply-add rounds once where the reference rounds twice; on real models that
//! last-bit difference was enough to flip a greedy token (SmolLM2, token 8 of
//! "What is the capital of France?"). Exactness costs one extra instruction per block.
use core::arch::aarch64::*;
use core::arch::asm;

use crate::block::{BlockQ8, QK};
use crate::packed::{BlockQ4Ax4, BlockQ4x4, BlockQ8x4, ROWS};
use half::f16;

/// Tokens per gemm tile: each decoded weight block is reused for this many tokens.
/// Four keeps decoded weights (8), accumulators (4) and temporaries in registers.
const TILE: usize = 4;

/// One activation block in registers: values `0..16` and `16..32`, and the scale.
#[derive(Clone, Copy)]
pub(super) struct Act {
    pub x0: int8x16_t,
    pub x1: int8x16_t,
    pub d: f32,
}

impl Act {
    #[target_feature(enable = "neon")]
    #[inline]
    fn load(b: &BlockQ8) -> Self {
        let (x0, x1) = load_i8x32(&b.qs);
        Act {
            x0,
            x1,
            d: f16_to_f32(b.d),
        }
    }
}

/// A packed block decoded into registers: `w[2r]`, `w[2r + 1]` are row `r`'s values
/// `0..16` and `16..32` as i8; `d` (and `m` for Q4A) the four rows' scales.
pub(super) struct Decoded {
    w: [int8x16_t; 2 * ROWS],
    d: float32x4_t,
    m: float32x4_t,
}

/// Four rows' integer dot products with one activation block, exact in i32.
///
/// # Safety (for every method)
/// The implementation's CPU features must be present.
pub(super) trait IntDot {
    /// Lane `r` = Σ `w[2r..2r+2]` · `x` for arbitrary i8 weights.
    unsafe fn dot4_i8(w: &[int8x16_t; 2 * ROWS], x: &Act) -> int32x4_t;
    /// As [`IntDot::dot4_i8`], for weights with `|w| <= 15` (decoded nibbles), where
    /// base NEON can sum more products in i16 before widening.
    unsafe fn dot4_nibbles(w: &[int8x16_t; 2 * ROWS], x: &Act) -> int32x4_t;
}

/// A packed weight block the drivers can decode and multiply.
pub(super) trait WeightBlock {
    /// Unpack the four rows into registers.
    ///
    /// # Safety
    /// NEON must be present (always true on aarch64; `unsafe` because trait methods
    /// with `#[target_feature]` must be).
    unsafe fn decode(&self) -> Decoded;
    /// `acc + (this block's four rows) · x`, rounded exactly as `generic` rounds.
    ///
    /// # Safety
    /// `D`'s CPU features (and NEON) must be present.
    unsafe fn accumulate<D: IntDot>(w: &Decoded, x: &Act, acc: float32x4_t) -> float32x4_t;
}

impl WeightBlock for BlockQ8x4 {
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn decode(&self) -> Decoded {
        let mut w = [vdupq_n_s8(0); 2 * ROWS];
        for (r, row) in self.qs.chunks_exact(QK).enumerate() {
            let row: &[i8; QK] = row.try_into().expect("chunk of QK");
            (w[2 * r], w[2 * r + 1]) = load_i8x32(row);
        }
        Decoded {
            w,
            d: f16x4_to_f32x4(&self.d),
            m: vdupq_n_f32(0.0),
        }
    }

    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn accumulate<D: IntDot>(w: &Decoded, x: &Act, acc: float32x4_t) -> float32x4_t {
        // SAFETY: forwarded from the caller.
        let s = unsafe { D::dot4_i8(&w.w, x) };
        vaddq_f32(acc, scaled(w.d, x.d, s))
    }
}

impl WeightBlock for BlockQ4x4 {
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn decode(&self) -> Decoded {
        let eight = vdupq_n_s8(8);
        let w = decode_nibbles(&self.qs).map(|v| vsubq_s8(v, eight));
        Decoded {
            w,
            d: f16x4_to_f32x4(&self.d),
            m: vdupq_n_f32(0.0),
        }
    }

    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn accumulate<D: IntDot>(w: &Decoded, x: &Act, acc: float32x4_t) -> float32x4_t {
        // SAFETY: forwarded from the caller; decoded values are in -8..=7.
        let s = unsafe { D::dot4_nibbles(&w.w, x) };
        vaddq_f32(acc, scaled(w.d, x.d, s))
    }
}

impl WeightBlock for BlockQ4Ax4 {
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn decode(&self) -> Decoded {
        Decoded {
            w: decode_nibbles(&self.qs),
            d: f16x4_to_f32x4(&self.d),
            m: f16x4_to_f32x4(&self.m),
        }
    }

    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn accumulate<D: IntDot>(w: &Decoded, x: &Act, acc: float32x4_t) -> float32x4_t {
        // SAFETY: forwarded from the caller; decoded values are in 0..=15.
        let s = unsafe { D::dot4_nibbles(&w.w, x) };
        // Σx of 16 i8 fits i16; the two halves are widened before adding.
        let sx = vdupq_n_s32(vaddlvq_s8(x.x0) as i32 + vaddlvq_s8(x.x1) as i32);
        vaddq_f32(acc, vaddq_f32(scaled(w.d, x.d, s), scaled(w.m, x.d, sx)))
    }
}

/// Matrix × vector for `D`'s instruction set.
///
/// Panics (never reads out of bounds) if the lengths break [`crate::dispatch::GemvFn`]'s
/// contract.
///
/// # Safety
/// `D`'s CPU features must be present.
#[inline(always)]
pub(super) unsafe fn gemv<P: WeightBlock, D: IntDot>(
    w: &[P],
    nb: usize,
    x: &[BlockQ8],
    y: &mut [f32],
) {
    assert!(x.len() == nb && y.len().is_multiple_of(ROWS) && w.len() == y.len() / ROWS * nb);
    if nb == 0 {
        y.fill(0.0);
        return;
    }
    for (wg, out) in w.chunks_exact(nb).zip(y.chunks_exact_mut(ROWS)) {
        // SAFETY (NEON helpers and `P::accumulate::<D>`): the caller guarantees `D`'s
        // features; NEON is part of every aarch64 CPU.
        unsafe {
            let mut acc = vdupq_n_f32(0.0);
            for (p, xb) in wg.iter().zip(x) {
                acc = P::accumulate::<D>(&p.decode(), &Act::load(xb), acc);
            }
            store_f32x4(out, acc);
        }
    }
}

/// Matrix × `n` tokens for `D`'s instruction set; output `y[row * n + t]`.
///
/// Panics (never reads out of bounds) if the lengths break [`crate::dispatch::GemmFn`]'s
/// contract.
///
/// # Safety
/// `D`'s CPU features must be present.
#[inline(always)]
pub(super) unsafe fn gemm<P: WeightBlock, D: IntDot>(
    w: &[P],
    nb: usize,
    x: &[BlockQ8],
    n: usize,
    y: &mut [f32],
) {
    assert!(n > 0 && x.len() == n * nb && y.len().is_multiple_of(ROWS * n));
    assert!(w.len() == y.len() / (ROWS * n) * nb);
    if nb == 0 {
        y.fill(0.0);
        return;
    }
    for (wg, out) in w.chunks_exact(nb).zip(y.chunks_exact_mut(ROWS * n)) {
        let mut t0 = 0;
        // SAFETY (all tiles): forwarded from the caller.
        while t0 + TILE <= n {
            unsafe { gemm_tile::<P, D, TILE>(wg, x, n, t0, out) };
            t0 += TILE;
        }
        match n - t0 {
            1 => unsafe { gemm_tile::<P, D, 1>(wg, x, n, t0, out) },
            2 => unsafe { gemm_tile::<P, D, 2>(wg, x, n, t0, out) },
            3 => unsafe { gemm_tile::<P, D, 3>(wg, x, n, t0, out) },
            _ => {}
        }
    }
}

/// Tokens `t0..t0 + T` against one row group `wg` (`nb` blocks); `out` is the group's
/// `4 × n` outputs.
///
/// # Safety
/// `D`'s CPU features must be present.
#[inline(always)]
unsafe fn gemm_tile<P: WeightBlock, D: IntDot, const T: usize>(
    wg: &[P],
    x: &[BlockQ8],
    n: usize,
    t0: usize,
    out: &mut [f32],
) {
    let nb = wg.len();
    // SAFETY (NEON helpers and `P::accumulate::<D>`): the caller guarantees `D`'s features;
    // NEON is part of every aarch64 CPU.
    unsafe {
        let mut acc = [vdupq_n_f32(0.0); T];
        for (kb, p) in wg.iter().enumerate() {
            let dec = p.decode();
            for (t, a) in acc.iter_mut().enumerate() {
                *a = P::accumulate::<D>(&dec, &Act::load(&x[(t0 + t) * nb + kb]), *a);
            }
        }
        for (t, a) in acc.iter().enumerate() {
            let mut v = [0.0f32; ROWS];
            store_f32x4(&mut v, *a);
            for (r, &val) in v.iter().enumerate() {
                out[r * n + t0 + t] = val;
            }
        }
    }
}

/// `(scale · dx) · s` lane by lane, two roundings as in `generic` (`d * dx * s as f32`).
#[target_feature(enable = "neon")]
#[inline]
fn scaled(scale: float32x4_t, dx: f32, s: int32x4_t) -> float32x4_t {
    vmulq_f32(vmulq_n_f32(scale, dx), vcvtq_f32_s32(s))
}

/// Lane `r` of the result = sum of the four lanes of `a[r]`.
#[target_feature(enable = "neon")]
#[inline]
pub(super) fn hsum4(a: [int32x4_t; ROWS]) -> int32x4_t {
    vpaddq_s32(vpaddq_s32(a[0], a[1]), vpaddq_s32(a[2], a[3]))
}

#[target_feature(enable = "neon")]
#[inline]
fn load_i8x32(a: &[i8; QK]) -> (int8x16_t, int8x16_t) {
    // SAFETY: both loads read 16 bytes inside the 32-byte array.
    unsafe { (vld1q_s8(a.as_ptr()), vld1q_s8(a.as_ptr().add(16))) }
}

/// Four rows of nibbles (16 bytes each, [`crate::BlockQ4`] order) → per row the values
/// `0..16` (low nibbles) and `16..32` (high nibbles), unsigned 0..=15 as i8.
#[target_feature(enable = "neon")]
#[inline]
fn decode_nibbles(qs: &[u8; QK / 2 * ROWS]) -> [int8x16_t; 2 * ROWS] {
    let mask = vdupq_n_u8(0x0F);
    let mut w = [vdupq_n_s8(0); 2 * ROWS];
    for (r, row) in qs.chunks_exact(QK / 2).enumerate() {
        let row: &[u8; QK / 2] = row.try_into().expect("chunk of 16");
        // SAFETY: reads the 16 bytes of `row`.
        let b = unsafe { vld1q_u8(row.as_ptr()) };
        w[2 * r] = vreinterpretq_s8_u8(vandq_u8(b, mask));
        w[2 * r + 1] = vreinterpretq_s8_u8(vshrq_n_u8::<4>(b));
    }
    w
}

/// Four f16 → f32, exactly (subnormals, infinities and NaNs included).
#[target_feature(enable = "neon")]
#[inline]
fn f16x4_to_f32x4(h: &[f16; ROWS]) -> float32x4_t {
    let bits: &[u16; ROWS] = bytemuck::cast_ref(h);
    // SAFETY: reads the four u16 of `bits`.
    let v = unsafe { vld1_u16(bits.as_ptr()) };
    let out: float32x4_t;
    // SAFETY: FCVTL (half → single) is base ARMv8 Advanced SIMD, which every aarch64
    // CPU has; it touches registers only. (`vcvt_f32_f16` itself is still unstable.)
    unsafe {
        asm!("fcvtl {o:v}.4s, {i:v}.4h", o = lateout(vreg) out, i = in(vreg) v,
             options(pure, nomem, nostack, preserves_flags));
    }
    out
}

/// One f16 → f32, exactly. `half` converts in software (≈30 instructions) unless it
/// may use `std` or the `fp16` feature; FCVT is base ARMv8 floating point.
#[target_feature(enable = "neon")]
#[inline]
fn f16_to_f32(h: f16) -> f32 {
    let out: f32;
    // SAFETY: FCVT (half → single) is base ARMv8 floating point; registers only.
    unsafe {
        asm!("fcvt {o:s}, {i:h}", o = lateout(vreg) out, i = in(vreg) h.to_bits(),
             options(pure, nomem, nostack, preserves_flags));
    }
    out
}

#[target_feature(enable = "neon")]
#[inline]
fn store_f32x4(out: &mut [f32], v: float32x4_t) {
    let out: &mut [f32; ROWS] = out.try_into().expect("4 outputs");
    // SAFETY: writes the four f32 of `out`.
    unsafe { vst1q_f32(out.as_mut_ptr(), v) }
}
