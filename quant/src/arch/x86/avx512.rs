//! AVX-512 VNNI kernels (`vpdpbusd`: u8 × i8, four products summed into each i32 lane,
//! no saturation).
//!
//! One 512-bit vector holds half of a packed row group's values, one row per 128-bit
//! lane (values 0..16 in one vector, 16..32 in another), so two `vpdpbusd` give
//! the products in the *quad layout* `[r0 ×4, r1 ×4, r2 ×4, r3 ×4]` (four partial
//! sums per row) and a block costs one `cvt`, one `mul` and one FMA per token.
//! Signedness:
//! - Q4: the nibbles are unsigned 0..=15, so `dpbusd(nibbles, x)` works directly; the
//!   `-8` offset is `-8·Σx`, computed by `dpbusd(8, x)` in the same layout.
//! - Q8: `dpbusd(x + 128, w) = Σ x·w + 128·Σw`; `x + 128` is `x ^ 0x80` read as u8,
//!   and `128·Σw` = `dpbusd(0x80, w)` depends on the weights only, so it is computed
//!   once per block and shared by all tokens of a tile (as the accumulator's initial
//!   value, negated). Exact for every `i8`.
use super::{f16_to_f32, load128, prefetch, qs_bytes, reduce_pairs, scales4, tile_len, Prep};
use crate::block::{BlockQ8, QK};
use crate::packed::{BlockQ4Ax4, BlockQ4x4, BlockQ8x4, ROWS};
use core::arch::x86_64::*;

/// Load 64 bytes.
#[target_feature(enable = "avx512f")]
#[inline]
fn load512(b: &[u8; 64]) -> __m512i {
    // SAFETY: `b` is 64 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm512_loadu_si512(b.as_ptr().cast()) }
}

/// `[v0, v1, v2, v3]` → `[v0 ×4, v1 ×4, v2 ×4, v3 ×4]`, the quad layout.
#[target_feature(enable = "avx512f")]
#[inline]
fn quad_layout(v: __m128) -> __m512 {
    let idx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v))
}

/// Reduce a quad-layout accumulator to `[r0, r1, r2, r3]`.
#[target_feature(enable = "avx512f,avx2")]
#[inline]
fn reduce_quads(acc: __m512) -> [f32; ROWS] {
    let lo = _mm512_castps512_ps256(acc);
    let hi = _mm256_castsi256_ps(_mm512_extracti64x4_epi64::<1>(_mm512_castps_si512(acc)));
    // [r0 ×4 | r1 ×4] and [r2 ×4 | r3 ×4] → [r0, r0, r2, r2 | r1, r1, r3, r3]
    reduce_pairs(_mm256_hadd_ps(lo, hi))
}

/// An activation block's values 0..16 and 16..32, each repeated in all four lanes.
#[target_feature(enable = "avx512f,avx2")]
#[inline]
fn x_quarters(xb: &BlockQ8) -> (__m512i, __m512i) {
    let h: &[[u8; 16]; 2] = bytemuck::cast_ref(qs_bytes(xb));
    (
        _mm512_broadcast_i32x4(load128(&h[0])),
        _mm512_broadcast_i32x4(load128(&h[1])),
    )
}

/// Rows 0–1 and rows 2–3 of a Q8 group (32 bytes per row) → the values 0..16 of each
/// row, one row per lane, and the values 16..32 likewise: the Q4 nibble layout, so
/// products come out in the quad layout.
#[target_feature(enable = "avx512f")]
#[inline]
fn q8_quarters(qs: &[u8; 4 * QK]) -> (__m512i, __m512i) {
    let rows: &[[u8; 2 * QK]; 2] = bytemuck::cast_ref(qs);
    let (w01, w23) = (load512(&rows[0]), load512(&rows[1]));
    // 128-bit lanes (w01.0, w01.2, w23.0, w23.2) and (w01.1, w01.3, w23.1, w23.3).
    let a = _mm512_shuffle_i32x4::<0b10_00_10_00>(w01, w23);
    let b = _mm512_shuffle_i32x4::<0b11_01_11_01>(w01, w23);
    (a, b)
}

/// The per-block state a tile keeps for each row group.
#[derive(Clone, Copy)]
struct Decoded {
    /// Values 0..16 and 16..32 of each row, one row per lane.
    lo: __m512i,
    hi: __m512i,
    /// Initial i32 accumulator (a weight-side correction, or zero), quad layout.
    init: __m512i,
    /// Row scales (and Q4A minimums), quad layout.
    d: __m512,
    m: __m512,
}

/// `out[g][t]` from the quad-layout accumulators.
#[target_feature(enable = "avx512f,avx2")]
#[inline]
fn finish<const G: usize, const T: usize>(acc: &[[__m512; T]; G]) -> [[[f32; ROWS]; T]; G] {
    let mut out = [[[0.0f32; ROWS]; T]; G];
    for (o, a) in out.iter_mut().zip(acc) {
        for (o, a) in o.iter_mut().zip(a) {
            *o = reduce_quads(*a);
        }
    }
    out
}

/// `G` row groups × `T` tokens of Q8 weights (bias trick, see the module docs):
/// `dpbusd(x ^ 0x80, w)` starting from `-128·Σw`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile_q8<const G: usize, const T: usize>(
    wg: &[&[BlockQ8x4]; G],
    xs: &[&[BlockQ8]; T],
) -> [[[f32; ROWS]; T]; G] {
    let nb = tile_len(wg, xs);
    let bias = _mm512_set1_epi8(i8::MIN);
    let zero = _mm512_setzero_si512();
    let zps = _mm512_setzero_ps();
    let mut acc = [[zps; T]; G];
    for kb in 0..nb {
        let w: [Decoded; G] = core::array::from_fn(|g| {
            prefetch(wg[g], kb);
            let p = &wg[g][kb];
            let (lo, hi) = q8_quarters(bytemuck::cast_ref(&p.qs));
            let sw = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, bias, lo), bias, hi);
            let d = quad_layout(scales4(&p.d));
            Decoded {
                lo,
                hi,
                init: _mm512_sub_epi32(zero, sw),
                d,
                m: zps,
            }
        });
        for (t, x) in xs.iter().enumerate() {
            let xb = &x[kb];
            let (xlo, xhi) = x_quarters(xb);
            let (xlo, xhi) = (_mm512_xor_si512(xlo, bias), _mm512_xor_si512(xhi, bias));
            let dx = _mm512_set1_ps(f16_to_f32(xb.d));
            for (a, w) in acc.iter_mut().zip(&w) {
                let i = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(w.init, xlo, w.lo), xhi, w.hi);
                a[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(w.d, dx), a[t]);
            }
        }
    }
    finish(&acc)
}

/// A Q4 row group's nibbles: low (values 0..16) and high (16..32), one row per lane.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn nibbles(qs: &[u8; 64]) -> (__m512i, __m512i) {
    let v = load512(qs);
    let m = _mm512_set1_epi8(0x0F);
    (
        _mm512_and_si512(v, m),
        _mm512_and_si512(_mm512_srli_epi16::<4>(v), m),
    )
}

/// `G` row groups × `T` tokens of Q4 weights: `Σ q·x - 8·Σx`, the accumulator starting
/// from `-8·Σx` (shared by the `G` groups).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile_q4<const G: usize, const T: usize>(
    wg: &[&[BlockQ4x4]; G],
    xs: &[&[BlockQ8]; T],
) -> [[[f32; ROWS]; T]; G] {
    let nb = tile_len(wg, xs);
    let eights = _mm512_set1_epi8(8);
    let zero = _mm512_setzero_si512();
    let zps = _mm512_setzero_ps();
    let mut acc = [[zps; T]; G];
    for kb in 0..nb {
        let w: [Decoded; G] = core::array::from_fn(|g| {
            prefetch(wg[g], kb);
            let p = &wg[g][kb];
            let (lo, hi) = nibbles(&p.qs);
            Decoded {
                lo,
                hi,
                init: zero,
                d: quad_layout(scales4(&p.d)),
                m: zps,
            }
        });
        for (t, x) in xs.iter().enumerate() {
            let xb = &x[kb];
            let (xlo, xhi) = x_quarters(xb);
            let corr = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, eights, xlo), eights, xhi);
            let init = _mm512_sub_epi32(zero, corr);
            let dx = _mm512_set1_ps(f16_to_f32(xb.d));
            for (a, w) in acc.iter_mut().zip(&w) {
                let i = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(init, w.lo, xlo), w.hi, xhi);
                a[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(w.d, dx), a[t]);
            }
        }
    }
    finish(&acc)
}

/// `G` row groups × `T` tokens of Q4A weights: `d_w·d_x·Σ q·x + m_w·d_x·Σx`, with
/// `Σx` from `dpbusd(1, x)` in the quad layout (each row's four entries add up to Σx).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile_q4a<const G: usize, const T: usize>(
    wg: &[&[BlockQ4Ax4]; G],
    xs: &[&[BlockQ8]; T],
) -> [[[f32; ROWS]; T]; G] {
    let nb = tile_len(wg, xs);
    let ones = _mm512_set1_epi8(1);
    let zero = _mm512_setzero_si512();
    let zps = _mm512_setzero_ps();
    let mut acc = [[zps; T]; G];
    for kb in 0..nb {
        let w: [Decoded; G] = core::array::from_fn(|g| {
            prefetch(wg[g], kb);
            let p = &wg[g][kb];
            let (lo, hi) = nibbles(&p.qs);
            let (d, m) = (quad_layout(scales4(&p.d)), quad_layout(scales4(&p.m)));
            Decoded {
                lo,
                hi,
                init: zero,
                d,
                m,
            }
        });
        for (t, x) in xs.iter().enumerate() {
            let xb = &x[kb];
            let (xlo, xhi) = x_quarters(xb);
            let sx = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, ones, xlo), ones, xhi);
            let sx = _mm512_cvtepi32_ps(sx);
            let dx = _mm512_set1_ps(f16_to_f32(xb.d));
            for (a, w) in acc.iter_mut().zip(&w) {
                let i = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, w.lo, xlo), w.hi, xhi);
                let v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(w.d, dx), a[t]);
                a[t] = _mm512_fmadd_ps(sx, _mm512_mul_ps(w.m, dx), v);
            }
        }
    }
    finish(&acc)
}

// ---------------------------------------------------------------- matvec tiles

/// One row group × one token of Q4 weights, with the prepared `-8·Σx`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn gemv_tile_q4(w: &[BlockQ4x4], x: &[BlockQ8], prep: &[Prep]) -> [f32; ROWS] {
    assert!(x.len() == w.len() && prep.len() == w.len());
    let mut acc = _mm512_setzero_ps();
    for (kb, ((p, xb), pr)) in w.iter().zip(x).zip(prep).enumerate() {
        super::prefetch_far(w, kb);
        let (lo, hi) = nibbles(&p.qs);
        let (xlo, xhi) = x_quarters(xb);
        let init = _mm512_broadcast_i32x4(load128(&pr.v));
        let i = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(init, lo, xlo), hi, xhi);
        let s = _mm512_mul_ps(quad_layout(scales4(&p.d)), _mm512_set1_ps(pr.dx));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, acc);
    }
    reduce_quads(acc)
}

/// One row group × one token of Q4A weights, with the prepared Σx.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn gemv_tile_q4a(w: &[BlockQ4Ax4], x: &[BlockQ8], prep: &[Prep]) -> [f32; ROWS] {
    assert!(x.len() == w.len() && prep.len() == w.len());
    let zero = _mm512_setzero_si512();
    let mut acc = _mm512_setzero_ps();
    for (kb, ((p, xb), pr)) in w.iter().zip(x).zip(prep).enumerate() {
        super::prefetch_far(w, kb);
        let (lo, hi) = nibbles(&p.qs);
        let (xlo, xhi) = x_quarters(xb);
        let sx = _mm512_broadcast_f32x4(_mm_castsi128_ps(load128(&pr.v)));
        let i = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, lo, xlo), hi, xhi);
        let dx = _mm512_set1_ps(pr.dx);
        let (d, m) = (quad_layout(scales4(&p.d)), quad_layout(scales4(&p.m)));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(d, dx), acc);
        acc = _mm512_fmadd_ps(sx, _mm512_mul_ps(m, dx), acc);
    }
    reduce_quads(acc)
}

/// One row group × one token of Q8 weights. Here the *weights* take the bias:
/// `dpbusd(w ^ 0x80, x) = Σ w·x + 128·Σx`, so the correction is the prepared
/// `-128·Σx` (activation-only) and nothing is computed per block for it.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn gemv_tile_q8(w: &[BlockQ8x4], x: &[BlockQ8], prep: &[Prep]) -> [f32; ROWS] {
    assert!(x.len() == w.len() && prep.len() == w.len());
    let bias = _mm512_set1_epi8(i8::MIN);
    let mut acc = _mm512_setzero_ps();
    for (kb, ((p, xb), pr)) in w.iter().zip(x).zip(prep).enumerate() {
        super::prefetch_far(w, kb);
        let (lo, hi) = q8_quarters(bytemuck::cast_ref(&p.qs));
        let (lo, hi) = (_mm512_xor_si512(lo, bias), _mm512_xor_si512(hi, bias));
        let (xlo, xhi) = x_quarters(xb);
        let init = _mm512_broadcast_i32x4(load128(&pr.v));
        let i = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(init, lo, xlo), hi, xhi);
        let s = _mm512_mul_ps(quad_layout(scales4(&p.d)), _mm512_set1_ps(pr.dx));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, acc);
    }
    reduce_quads(acc)
}

// Matmul tiles: 2 row groups × up to 8 tokens: 16 zmm accumulators of the 32
// registers, the rest for two groups' decoded blocks and one activation block.
gemm_kernels!(
    features = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    block = BlockQ8x4,
    tile = tile_q8,
    gemv_tile = gemv_tile_q8,
    prep = super::prep_q8_quads,
    gemm_groups = 2,
    gemm_tokens = [1, 2, 3, 4, 5, 6, 7, 8],
    gemv = gemv_q8,
    gemm = gemm_q8,
);
gemm_kernels!(
    features = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    block = BlockQ4x4,
    tile = tile_q4,
    gemv_tile = gemv_tile_q4,
    prep = super::prep_q4_quads,
    gemm_groups = 2,
    gemm_tokens = [1, 2, 3, 4, 5, 6, 7, 8],
    gemv = gemv_q4,
    gemm = gemm_q4,
);
gemm_kernels!(
    features = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    block = BlockQ4Ax4,
    tile = tile_q4a,
    gemv_tile = gemv_tile_q4a,
    prep = super::prep_q4a_quads,
    gemm_groups = 2,
    gemm_tokens = [1, 2, 3, 4, 5, 6, 7, 8],
    gemv = gemv_q4a,
    gemm = gemm_q4a,
);
