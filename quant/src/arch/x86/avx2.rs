//! AVX2 + FMA + F16C kernels.
//!
//! Integer dot products use `vpmaddubsw` (u8 × i8 → pairs summed to i16, saturating)
//! then `vpmaddwd` with ones (i16 pairs → i32). Saturation cannot happen:
//! - Q8 × Q8 uses the sign trick, `maddubs(|x|, sign(w, x))`: `|x| ≤ 128` (`-128`
//!   reads as the unsigned 128) and `|w| ≤ 127`, so a pair is at most
//!   `2 · 128 · 127 = 32512 < 32767`. This is why Q8 weights must not be `-128`
//!   (`sign` cannot negate it); the quantizers clamp to ±127.
//! - Q4 × Q8 multiplies the unsigned nibble (0..=15) with `x` directly: a pair is at
//!   most `2 · 15 · 128 = 3840`, the low and high halves together 7680, and the
//!   `-8 · Σx` correction (at most 4096 per i16 lane) keeps it below 11776.
use super::{
    load128, load256, load_ps, prefetch, qs_bytes, reduce_pairs, scales4, set_token, store256,
    tile_len, Prep, TileOut,
};
use crate::block::{BlockQ8, QK};
use crate::packed::{BlockQ4Ax4, BlockQ4x4, BlockQ8x4, ROWS};
use core::arch::x86_64::*;
use half::f16;

// ---------------------------------------------------------------- activation quantizer

/// Quantize a row of floats to Q8 blocks, byte-identical to
/// [`crate::quantize::quantize_row_q8`] (same `amax / 127`, same `x * (1/d)`, same
/// round-half-even, same saturation of out-of-range and NaN products).
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C, and `x.len() == 32 * y.len()` (asserted).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_row_q8(x: &[f32], y: &mut [BlockQ8]) {
    assert_eq!(x.len(), y.len() * QK, "quantize_row_q8: length mismatch");
    for (b, chunk) in y.iter_mut().zip(x.chunks_exact(QK)) {
        quantize_block(
            bytemuck::cast_ref(<&[f32; QK]>::try_from(chunk).expect("chunk of QK")),
            b,
        );
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_block(x: &[[f32; 8]; 4], out: &mut BlockQ8) {
    let v = [
        load_ps(&x[0]),
        load_ps(&x[1]),
        load_ps(&x[2]),
        load_ps(&x[3]),
    ];
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
    // max(a, m) returns `m` when `a` is NaN, so NaNs are skipped exactly like the
    // reference's `if |v| > m` fold (and `m` itself is never NaN).
    let mut m = _mm256_setzero_ps();
    for &vk in &v {
        m = _mm256_max_ps(_mm256_and_ps(vk, abs_mask), m);
    }
    let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
    let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    let m1 = _mm_max_ss(m2, _mm_movehdup_ps(m2));
    let amax = _mm_cvtss_f32(m1);
    // Scalar, exactly as the reference: a division, then the reciprocal.
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let idv = _mm256_set1_ps(id);
    let lo = _mm256_set1_ps(-128.0);
    let hi = _mm256_set1_ps(127.0);
    let mut q = [_mm256_setzero_si256(); 4];
    for (qk, &vk) in q.iter_mut().zip(&v) {
        let r = _mm256_mul_ps(vk, idv);
        // NaN → 0 (Rust's `as i8`), then clamp: `cvtps` would turn out-of-range values
        // into i32::MIN, while `as i8` saturates. Clamping before rounding is the same
        // as saturating after it, since the bounds are integers.
        let r = _mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(r, r));
        let r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
        // Round to nearest, ties to even (the default MXCSR mode Rust relies on).
        *qk = _mm256_cvtps_epi32(r);
    }
    // i32 → i8; the packs interleave 128-bit lanes, the permute restores the order.
    let p01 = _mm256_packs_epi32(q[0], q[1]);
    let p23 = _mm256_packs_epi32(q[2], q[3]);
    let p = _mm256_packs_epi16(p01, p23);
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    store256(bytemuck::cast_mut(&mut out.qs), p);
    out.d = f16::from_f32(d);
}

// ---------------------------------------------------------------- Q8 × Q8

/// A tile's results from accumulators in the layout `[r0, r1, r2, r3 | r0, r1, r2, r3]`.
#[target_feature(enable = "avx2")]
#[inline]
fn finish_halves<const G: usize, const T: usize>(acc: &[[__m256; T]; G]) -> TileOut<G, T> {
    let mut out = [[[0.0f32; T]; ROWS]; G];
    for (g, a) in acc.iter().enumerate() {
        for (t, a) in a.iter().enumerate() {
            let s = _mm_add_ps(_mm256_castps256_ps128(*a), _mm256_extractf128_ps::<1>(*a));
            let mut v = [0.0f32; ROWS];
            // SAFETY: `v` is 4 writable floats; `storeu` has no alignment requirement.
            unsafe { _mm_storeu_ps(v.as_mut_ptr(), s) };
            set_token(&mut out, g, t, v);
        }
    }
    out
}

/// A tile's results from accumulators in the layout `[r0, r0, r2, r2 | r1, r1, r3, r3]`.
#[target_feature(enable = "avx2")]
#[inline]
fn finish_pairs<const G: usize, const T: usize>(acc: &[[__m256; T]; G]) -> TileOut<G, T> {
    let mut out = [[[0.0f32; T]; ROWS]; G];
    for (g, a) in acc.iter().enumerate() {
        for (t, a) in a.iter().enumerate() {
            set_token(&mut out, g, t, reduce_pairs(*a));
        }
    }
    out
}

/// `G` row groups × `T` tokens of Q8 weights.
///
/// Per token and block, the four rows' `i32` products (8 lanes each) are folded by
/// three `hadd`s into `[r0, r1, r2, r3 | r0, r1, r2, r3]` (two halves per row), scaled
/// by `[d_w · d_x]` in the same layout and accumulated.
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q8<const G: usize, const T: usize>(
    wg: &[&[BlockQ8x4]; G],
    xs: &[&[BlockQ8]; T],
    ps: &[&[Prep]; T],
) -> TileOut<G, T> {
    let nb = tile_len(wg, xs, ps);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_ps(); T]; G];
    for kb in 0..nb {
        let w: [([__m256i; ROWS], __m256); G] = core::array::from_fn(|g| {
            prefetch(wg[g], kb, T == 1);
            let p = &wg[g][kb];
            let rows: &[[u8; QK]; ROWS] = bytemuck::cast_ref(&p.qs);
            let d = scales4(&p.d);
            (
                core::array::from_fn(|r| load256(&rows[r])),
                _mm256_set_m128(d, d),
            )
        });
        for t in 0..T {
            let xv = load256(qs_bytes(&xs[t][kb]));
            let ax = _mm256_sign_epi8(xv, xv);
            let dx = _mm256_set1_ps(ps[t][kb].dx);
            let dot = |wr: __m256i| {
                _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(wr, xv)), ones)
            };
            for (a, (w, d)) in acc.iter_mut().zip(&w) {
                let h01 = _mm256_hadd_epi32(dot(w[0]), dot(w[1]));
                let h23 = _mm256_hadd_epi32(dot(w[2]), dot(w[3]));
                let h = _mm256_hadd_epi32(h01, h23);
                a[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(*d, dx), a[t]);
            }
        }
    }
    finish_halves(&acc)
}

// ---------------------------------------------------------------- Q4 / Q4A × Q8

/// A Q4 row group's nibbles, decoded: for the row pairs (0, 1) and (2, 3), the low
/// nibbles (values 0..16 of each row, one row per 128-bit lane) and the high ones
/// (values 16..32), with the row scales (and Q4A minimums) in the pair layout.
#[derive(Clone, Copy)]
struct Nibbles {
    lo01: __m256i,
    hi01: __m256i,
    lo23: __m256i,
    hi23: __m256i,
    d: __m256,
    m: __m256,
}

#[target_feature(enable = "avx2,f16c")]
#[inline]
fn nibbles(qs: &[u8; 64], d: &[f16; ROWS], m: Option<&[f16; ROWS]>) -> Nibbles {
    let halves: &[[u8; 32]; 2] = bytemuck::cast_ref(qs);
    let (v01, v23) = (load256(&halves[0]), load256(&halves[1]));
    let mask = _mm256_set1_epi8(0x0F);
    Nibbles {
        lo01: _mm256_and_si256(v01, mask),
        hi01: _mm256_and_si256(_mm256_srli_epi16::<4>(v01), mask),
        lo23: _mm256_and_si256(v23, mask),
        hi23: _mm256_and_si256(_mm256_srli_epi16::<4>(v23), mask),
        d: pair_layout(scales4(d)),
        m: m.map_or(_mm256_setzero_ps(), |m| pair_layout(scales4(m))),
    }
}

/// An activation block split for the nibble layout: values 0..16 in both lanes,
/// values 16..32 in both lanes.
#[target_feature(enable = "avx2")]
#[inline]
fn x_halves(xb: &BlockQ8) -> (__m256i, __m256i) {
    let h: &[[u8; 16]; 2] = bytemuck::cast_ref(qs_bytes(xb));
    (
        _mm256_broadcastsi128_si256(load128(&h[0])),
        _mm256_broadcastsi128_si256(load128(&h[1])),
    )
}

/// `Σ q·x` of four rows against one activation block, as i32 in the layout
/// `[r0, r0, r2, r2 | r1, r1, r3, r3]` (two partial sums per row), minus `corr`
/// (an i16 pair-sum vector subtracted before widening; zero for Q4A).
#[target_feature(enable = "avx2")]
#[inline]
fn dot_nibbles(w: &Nibbles, xlo: __m256i, xhi: __m256i, corr: __m256i) -> __m256i {
    let ones = _mm256_set1_epi16(1);
    let p01 = _mm256_add_epi16(
        _mm256_maddubs_epi16(w.lo01, xlo),
        _mm256_maddubs_epi16(w.hi01, xhi),
    );
    let p23 = _mm256_add_epi16(
        _mm256_maddubs_epi16(w.lo23, xlo),
        _mm256_maddubs_epi16(w.hi23, xhi),
    );
    let p01 = _mm256_madd_epi16(_mm256_sub_epi16(p01, corr), ones);
    let p23 = _mm256_madd_epi16(_mm256_sub_epi16(p23, corr), ones);
    _mm256_hadd_epi32(p01, p23)
}

/// `[v0, v1, v2, v3]` → `[v0, v0, v2, v2 | v1, v1, v3, v3]`, the layout of [`dot_nibbles`].
#[target_feature(enable = "avx2")]
#[inline]
fn pair_layout(v: __m128) -> __m256 {
    _mm256_permutevar8x32_ps(
        _mm256_castps128_ps256(v),
        _mm256_setr_epi32(0, 0, 2, 2, 1, 1, 3, 3),
    )
}

/// A prep's 16 bytes repeated in both lanes.
#[target_feature(enable = "avx2")]
#[inline]
fn prep_pairs(pr: &Prep) -> __m256i {
    _mm256_broadcastsi128_si256(load128(&pr.v))
}

/// `G` row groups × `T` tokens of Q4 weights: `Σ (q - 8)·x = Σ q·x - 8·Σx`, the
/// correction prepared per activation block in `maddubs`' i16 pair layout, so it is
/// exact.
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q4<const G: usize, const T: usize>(
    wg: &[&[BlockQ4x4]; G],
    xs: &[&[BlockQ8]; T],
    ps: &[&[Prep]; T],
) -> TileOut<G, T> {
    let nb = tile_len(wg, xs, ps);
    let mut acc = [[_mm256_setzero_ps(); T]; G];
    for kb in 0..nb {
        let w: [Nibbles; G] = core::array::from_fn(|g| {
            prefetch(wg[g], kb, T == 1);
            nibbles(&wg[g][kb].qs, &wg[g][kb].d, None)
        });
        for t in 0..T {
            let (xlo, xhi) = x_halves(&xs[t][kb]);
            let pr = &ps[t][kb];
            let (corr, dx) = (prep_pairs(pr), _mm256_set1_ps(pr.dx));
            for (a, w) in acc.iter_mut().zip(&w) {
                let h = dot_nibbles(w, xlo, xhi, corr);
                a[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(w.d, dx), a[t]);
            }
        }
    }
    finish_pairs(&acc)
}

// The Q4 matmul tile: `tile_q4_rows8` for 2 groups, `tile_q4` otherwise.
wide_tile!(
    features = "avx2,fma,f16c",
    name = tile_q4_mm,
    block = BlockQ4x4,
    width = 2,
    wide = tile_q4_rows8,
    narrow = tile_q4,
);

/// 2 Q4 row groups (8 rows) × `T` tokens with one i32 lane per row, so no lane ever
/// needs adding to another (unlike [`tile_q4`], whose lanes hold slices of one row
/// and cost a `hadd` per row group, token and block).
///
/// Per block, the 8 rows' nibble bytes are transposed by dwords (two `unpack` rounds)
/// so that register `s` (`s < 4`) holds bytes `4s..4s + 4` of every row, one row per
/// i32 lane in the order `[r0, r2, r4, r6 | r1, r3, r5, r7]`; their low nibbles are
/// values `4s..4s + 4`, their high nibbles values `16 + 4s..`. Per token, each step's
/// 4 activation bytes are broadcast and `maddubs` gives every row its pair sums; the 8
/// steps add up in i16 (no overflow: see [`super::prep_q4_pairs`], which also
/// supplies the `-8·Σx` start value) and one `madd` widens them: the block's exact
/// `Σ (q - 8)·x` per row, scaled and accumulated in f32 like the reference.
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q4_rows8<const T: usize>(
    wg: &[&[BlockQ4x4]; 2],
    xs: &[&[BlockQ8]; T],
    ps: &[&[Prep]; T],
) -> TileOut<2, T> {
    let nb = tile_len(wg, xs, ps);
    let mask = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); T];
    for kb in 0..nb {
        prefetch(wg[0], kb, T == 1);
        prefetch(wg[1], kb, T == 1);
        let (a, b) = (&wg[0][kb], &wg[1][kb]);
        let qa: &[[u8; 32]; 2] = bytemuck::cast_ref(&a.qs);
        let qb: &[[u8; 32]; 2] = bytemuck::cast_ref(&b.qs);
        // Rows (0, 1), (2, 3) of each group, one row per 128-bit lane.
        let (r01, r23) = (load256(&qa[0]), load256(&qa[1]));
        let (r45, r67) = (load256(&qb[0]), load256(&qb[1]));
        let (lo0, lo1) = (
            _mm256_unpacklo_epi32(r01, r23),
            _mm256_unpacklo_epi32(r45, r67),
        );
        let (hi0, hi1) = (
            _mm256_unpackhi_epi32(r01, r23),
            _mm256_unpackhi_epi32(r45, r67),
        );
        let d = [
            _mm256_unpacklo_epi64(lo0, lo1),
            _mm256_unpackhi_epi64(lo0, lo1),
            _mm256_unpacklo_epi64(hi0, hi1),
            _mm256_unpackhi_epi64(hi0, hi1),
        ];
        let w: [__m256i; 8] = core::array::from_fn(|s| {
            if s < 4 {
                _mm256_and_si256(d[s], mask)
            } else {
                _mm256_and_si256(_mm256_srli_epi16::<4>(d[s - 4]), mask)
            }
        });
        // Row scales in the lanes' order.
        let (sa, sb) = (scales4(&a.d), scales4(&b.d));
        let dw = _mm256_set_m128(
            _mm_shuffle_ps::<0b11_01_11_01>(sa, sb),
            _mm_shuffle_ps::<0b10_00_10_00>(sa, sb),
        );
        for (acc, (x, p)) in acc.iter_mut().zip(xs.iter().zip(ps)) {
            let (xq, pr) = (qs_bytes(&x[kb]), &p[kb]);
            let c: i32 = pr.c;
            let mut s16 = _mm256_set1_epi32(c);
            for (s, w) in w.iter().enumerate() {
                let xd =
                    i32::from_le_bytes([xq[4 * s], xq[4 * s + 1], xq[4 * s + 2], xq[4 * s + 3]]);
                s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(*w, _mm256_set1_epi32(xd)));
            }
            let s32 = _mm256_madd_epi16(s16, ones);
            let scale = _mm256_mul_ps(dw, _mm256_set1_ps(pr.dx));
            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), scale, *acc);
        }
    }
    // Lanes [g0r0, g0r2, g1r0, g1r2 | g0r1, g0r3, g1r1, g1r3] → out[g][r][t].
    let mut out = [[[0.0f32; T]; ROWS]; 2];
    for (t, a) in acc.iter().enumerate() {
        let mut v = [0.0f32; 8];
        // SAFETY: `v` is 8 writable floats; `storeu` has no alignment requirement.
        unsafe { _mm256_storeu_ps(v.as_mut_ptr(), *a) };
        set_token(&mut out, 0, t, [v[0], v[4], v[1], v[5]]);
        set_token(&mut out, 1, t, [v[2], v[6], v[3], v[7]]);
    }
    out
}

/// `G` row groups × `T` tokens of Q4A weights: `d_w·d_x·Σ q·x + m_w·d_x·Σx`, with the
/// prepared Σx halves in the same two-entries-per-row layout as the products.
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q4a<const G: usize, const T: usize>(
    wg: &[&[BlockQ4Ax4]; G],
    xs: &[&[BlockQ8]; T],
    ps: &[&[Prep]; T],
) -> TileOut<G, T> {
    let nb = tile_len(wg, xs, ps);
    let zero = _mm256_setzero_si256();
    let mut acc = [[_mm256_setzero_ps(); T]; G];
    for kb in 0..nb {
        let w: [Nibbles; G] = core::array::from_fn(|g| {
            prefetch(wg[g], kb, T == 1);
            let p = &wg[g][kb];
            nibbles(&p.qs, &p.d, Some(&p.m))
        });
        for t in 0..T {
            let (xlo, xhi) = x_halves(&xs[t][kb]);
            let pr = &ps[t][kb];
            let (sx, dx) = (_mm256_castsi256_ps(prep_pairs(pr)), _mm256_set1_ps(pr.dx));
            for (a, w) in acc.iter_mut().zip(&w) {
                let h = dot_nibbles(w, xlo, xhi, zero);
                let v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(w.d, dx), a[t]);
                a[t] = _mm256_fmadd_ps(sx, _mm256_mul_ps(w.m, dx), v);
            }
        }
    }
    finish_pairs(&acc)
}

// Matmul tiles, up to 4 tokens wide: Q4/Q4A take 2 row groups per tile (the activation
// work shared by 8 rows pays for a few register spills: measured +15–25%); Q8, whose
// decoded block is 4 registers, 1 group (2 groups measured slower).
gemm_kernels!(
    features = "avx2,fma,f16c",
    block = BlockQ8x4,
    tile = tile_q8,
    prep = super::prep_scale,
    gemm_groups = 1,
    gemm_tokens = [1, 2, 3, 4],
    gemv = gemv_q8,
    gemv_tile = tile_q8,
    gemm = gemm_q8,
);
gemm_kernels!(
    features = "avx2,fma,f16c",
    block = BlockQ4x4,
    tile = tile_q4_mm,
    prep = super::prep_q4_pairs,
    gemm_groups = 2,
    gemm_tokens = [1, 2, 3, 4, 5, 6, 7, 8],
    gemv = gemv_q4,
    gemv_tile = tile_q4,
    gemm = gemm_q4,
);
gemm_kernels!(
    features = "avx2,fma,f16c",
    block = BlockQ4Ax4,
    tile = tile_q4a,
    prep = super::prep_q4a_pairs,
    gemm_groups = 2,
    gemm_tokens = [1, 2, 3, 4],
    gemv = gemv_q4a,
    gemv_tile = tile_q4a,
    gemm = gemm_q4a,
);
