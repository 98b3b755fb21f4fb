//! AVX-512 VNNI kernels (`vpdpbusd`: u8 × i8, four products summed into each i32 lane,
//! no saturation).
//!
//! One 512-bit vector holds a whole packed row group, one row per 128-bit lane, so
//! every product vector comes out in the *quad layout* `[r0 ×4, r1 ×4, r2 ×4, r3 ×4]`
//! (four partial sums per row) and a block costs one `cvt` + one FMA per token.
//! Signedness:
//! - Q4: the nibbles are unsigned 0..=15, so `dpbusd(nibbles, x)` works directly; the
//!   `-8` offset is `-8·Σx`, computed by `dpbusd(8, x)` in the same layout.
//! - Q8: `dpbusd(x + 128, w) = Σ x·w + 128·Σw`; `x + 128` is `x ^ 0x80` read as u8,
//!   and `128·Σw` = `dpbusd(0x80, w)` depends on the weights only, so it is computed
//!   once per block and shared by all tokens of a tile. Exact for every `i8`.
use super::{f16_to_f32, load128, load256, qs_bytes, reduce_pairs, scales4};
use crate::block::{BlockQ8, QK};
use crate::packed::{BlockQ4Ax4, BlockQ4x4, BlockQ8x4, ROWS};
use core::arch::x86_64::*;

// Gemm tiles are 8 tokens wide: 8 zmm accumulators of the 32 registers, the rest for
// the decoded weights and activations.

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

/// Two rows' `i32` sums `[ra ×8 | rb ×8]` twice (rows 0, 1 and rows 2, 3) → the quad layout.
#[target_feature(enable = "avx512f")]
#[inline]
fn combine_rows(r01: __m512i, r23: __m512i) -> __m512i {
    // Lanes (r0a, r1a, r2a, r3a) + (r0b, r1b, r2b, r3b).
    let a = _mm512_shuffle_i32x4::<0b10_00_10_00>(r01, r23);
    let b = _mm512_shuffle_i32x4::<0b11_01_11_01>(r01, r23);
    _mm512_add_epi32(a, b)
}

/// `T` tokens × one row group of Q8 weights (bias trick, see the module docs).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile_q8<const T: usize>(wg: &[BlockQ8x4], xs: &[&[BlockQ8]; T]) -> [[f32; ROWS]; T] {
    for x in xs {
        assert_eq!(x.len(), wg.len());
    }
    let bias = _mm512_set1_epi8(i8::MIN);
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); T];
    for (kb, p) in wg.iter().enumerate() {
        let rows: &[[u8; 2 * QK]; 2] = bytemuck::cast_ref(&p.qs);
        let (w01, w23) = (load512(&rows[0]), load512(&rows[1]));
        // 128·Σw per 4-value group, in the quad layout.
        let c = combine_rows(
            _mm512_dpbusd_epi32(zero, bias, w01),
            _mm512_dpbusd_epi32(zero, bias, w23),
        );
        let d = quad_layout(scales4(&p.d));
        for (a, x) in acc.iter_mut().zip(xs) {
            let xb = &x[kb];
            let xv = _mm512_xor_si512(_mm512_broadcast_i64x4(load256(qs_bytes(xb))), bias);
            let i01 = _mm512_dpbusd_epi32(zero, xv, w01);
            let i23 = _mm512_dpbusd_epi32(zero, xv, w23);
            let i = _mm512_sub_epi32(combine_rows(i01, i23), c);
            let s = _mm512_mul_ps(d, _mm512_set1_ps(f16_to_f32(xb.d)));
            *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, *a);
        }
    }
    let mut out = [[0.0f32; ROWS]; T];
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = reduce_quads(*a);
    }
    out
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

/// `T` tokens × one row group of Q4 weights: `Σ q·x - 8·Σx`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile_q4<const T: usize>(wg: &[BlockQ4x4], xs: &[&[BlockQ8]; T]) -> [[f32; ROWS]; T] {
    for x in xs {
        assert_eq!(x.len(), wg.len());
    }
    let eights = _mm512_set1_epi8(8);
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); T];
    for (kb, p) in wg.iter().enumerate() {
        let (lo, hi) = nibbles(&p.qs);
        let d = quad_layout(scales4(&p.d));
        for (a, x) in acc.iter_mut().zip(xs) {
            let xb = &x[kb];
            let (xlo, xhi) = x_quarters(xb);
            let corr = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, eights, xlo), eights, xhi);
            let i = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, lo, xlo), hi, xhi);
            let i = _mm512_sub_epi32(i, corr);
            let s = _mm512_mul_ps(d, _mm512_set1_ps(f16_to_f32(xb.d)));
            *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, *a);
        }
    }
    let mut out = [[0.0f32; ROWS]; T];
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = reduce_quads(*a);
    }
    out
}

/// `T` tokens × one row group of Q4A weights: `d_w·d_x·Σ q·x + m_w·d_x·Σx`, with
/// `Σx` from `dpbusd(1, x)` in the quad layout (each row's four entries add up to Σx).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile_q4a<const T: usize>(wg: &[BlockQ4Ax4], xs: &[&[BlockQ8]; T]) -> [[f32; ROWS]; T] {
    for x in xs {
        assert_eq!(x.len(), wg.len());
    }
    let ones = _mm512_set1_epi8(1);
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); T];
    for (kb, p) in wg.iter().enumerate() {
        let (lo, hi) = nibbles(&p.qs);
        let d = quad_layout(scales4(&p.d));
        let m = quad_layout(scales4(&p.m));
        for (a, x) in acc.iter_mut().zip(xs) {
            let xb = &x[kb];
            let (xlo, xhi) = x_quarters(xb);
            let sx = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, ones, xlo), ones, xhi);
            let i = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, lo, xlo), hi, xhi);
            let dx = _mm512_set1_ps(f16_to_f32(xb.d));
            *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(d, dx), *a);
            *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sx), _mm512_mul_ps(m, dx), *a);
        }
    }
    let mut out = [[0.0f32; ROWS]; T];
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = reduce_quads(*a);
    }
    out
}

gemm_kernels!(
    features = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    block = BlockQ8x4,
    tile = tile_q8,
    tmax = 8,
    gemv = gemv_q8,
    gemm = gemm_q8,
);
gemm_kernels!(
    features = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    block = BlockQ4x4,
    tile = tile_q4,
    tmax = 8,
    gemv = gemv_q4,
    gemm = gemm_q4,
);
gemm_kernels!(
    features = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    block = BlockQ4Ax4,
    tile = tile_q4a,
    tmax = 8,
    gemv = gemv_q4a,
    gemm = gemm_q4a,
);
