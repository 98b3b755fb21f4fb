//! AVX-512 VNNI kernels (`vpdpbusd`: u8 × i8, four products summed into each i32 lane,
//! no saturation).
//!
//! The matvec (and a matmul's last row groups): one 512-bit vector holds half of a
//! packed row group's values, one row per 128-bit lane (values 0..16 in one vector,
//! 16..32 in another), so two `vpdpbusd` give the products in the *quad layout*
//! `[r0 ×4, r1 ×4, r2 ×4, r3 ×4]` (four partial sums per row), reduced per row at
//! the end (see [`accumulate`]).
//! The Q4 and Q8 matmul: 4 row groups are transposed per block so each i32 lane holds
//! one row's whole dot product (see [`tile_rows16`]): a third fewer instructions per
//! product than the quad layout, whose partial sums cost a transpose-and-add per
//! group, 4 tokens and block.
//! Signedness (the unsigned operand is always the weights; each product's offset is
//! an activation-only sum, prepared once per call as the accumulator's initial value):
//! - Q4: the nibbles are unsigned 0..=15, so `dpbusd(nibbles, x)` works directly; the
//!   `-8` offset is `-8·Σx`.
//! - Q8: `dpbusd(w + 128, x) = Σ w·x + 128·Σx`, with `w + 128` = `w ^ 0x80` read as u8;
//!   the accumulator starts at `-128·Σx`. Exact for every `i8`.
use super::{
    load128, prefetch, qs_bytes, reduce_pairs, scales4, set_token, tile_len, Prep, TileOut,
};
use crate::block::{BlockQ8, QK};
use crate::packed::{BlockQ4Ax4, BlockQ4x4, BlockQ8x4, ROWS};
use core::arch::x86_64::*;
use half::f16;

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

/// A tile's results from the quad-layout accumulators.
#[target_feature(enable = "avx512f,avx2")]
#[inline]
fn finish<const G: usize, const T: usize>(acc: &[[__m512; T]; G]) -> TileOut<G, T> {
    let mut out = [[[0.0f32; T]; ROWS]; G];
    for (g, a) in acc.iter().enumerate() {
        for (t, a) in a.iter().enumerate() {
            set_token(&mut out, g, t, reduce_quads(*a));
        }
    }
    out
}

/// A prep's 16 bytes repeated in all four lanes.
#[target_feature(enable = "avx512f,avx2")]
#[inline]
fn prep_quads(pr: &Prep) -> __m512i {
    _mm512_broadcast_i32x4(load128(&pr.v))
}

/// Sum each row's four partial sums of four tokens' products (`i[j]` in the quad
/// layout) into one vector with lane `4r + j` = (row `r`, token `j`): a 4×4
/// transpose-and-add inside each 128-bit lane, exact in i32.
#[target_feature(enable = "avx512f")]
#[inline]
fn reduce4(i: [__m512i; 4]) -> __m512i {
    let ab = _mm512_add_epi32(
        _mm512_unpacklo_epi32(i[0], i[1]),
        _mm512_unpackhi_epi32(i[0], i[1]),
    );
    let cd = _mm512_add_epi32(
        _mm512_unpacklo_epi32(i[2], i[3]),
        _mm512_unpackhi_epi32(i[2], i[3]),
    );
    _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd))
}

/// Accumulate block `kb` of `T` tokens into `acc` for `G` decoded row groups
/// `(lo, hi, d)`: `dpbusd(prep, lo, x[0..16])`, `dpbusd(·, hi, x[16..32])`, scaled by
/// `d · d_x`.
///
/// When `T` is a multiple of 4, four tokens' integer sums are first reduced into one
/// (row, token) vector ([`reduce4`]), so the float work (convert, scale, FMA) is done
/// once per 4 tokens instead of once per token (on Zen 4 `vpdpbusd`, `vmulps` and
/// `vfmadd` compete for the same two pipes; measured +20–30% matmul throughput).
/// `acc[g][q]` then holds tokens `4q..4q+4`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn accumulate<const G: usize, const T: usize>(
    w: &[(__m512i, __m512i, __m512); G],
    xs: &[&[BlockQ8]; T],
    ps: &[&[Prep]; T],
    kb: usize,
    acc: &mut [[__m512; T]; G],
) {
    if T.is_multiple_of(4) {
        for q in 0..T / 4 {
            let x: [(__m512i, __m512i, __m512i); 4] = core::array::from_fn(|j| {
                let (xlo, xhi) = x_quarters(&xs[4 * q + j][kb]);
                (xlo, xhi, prep_quads(&ps[4 * q + j][kb]))
            });
            let dx = |j: usize| ps[4 * q + j][kb].dx;
            let dx4 = _mm512_broadcast_f32x4(_mm_setr_ps(dx(0), dx(1), dx(2), dx(3)));
            for (a, (lo, hi, d)) in acc.iter_mut().zip(w) {
                let i = x.map(|(xlo, xhi, init)| {
                    _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(init, *lo, xlo), *hi, xhi)
                });
                let v = _mm512_cvtepi32_ps(reduce4(i));
                a[q] = _mm512_fmadd_ps(v, _mm512_mul_ps(*d, dx4), a[q]);
            }
        }
    } else {
        for t in 0..T {
            let (xlo, xhi) = x_quarters(&xs[t][kb]);
            let pr = &ps[t][kb];
            let (init, dx) = (prep_quads(pr), _mm512_set1_ps(pr.dx));
            for (a, (lo, hi, d)) in acc.iter_mut().zip(w) {
                let i = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(init, *lo, xlo), *hi, xhi);
                a[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(*d, dx), a[t]);
            }
        }
    }
}

/// A tile's results from [`accumulate`]'s accumulators (either layout).
#[target_feature(enable = "avx512f,avx2")]
#[inline]
fn finish_acc<const G: usize, const T: usize>(acc: &[[__m512; T]; G]) -> TileOut<G, T> {
    if !T.is_multiple_of(4) {
        return finish(acc);
    }
    let mut out = [[[0.0f32; T]; ROWS]; G];
    for (o, a) in out.iter_mut().zip(acc) {
        for q in 0..T / 4 {
            let mut v = [0.0f32; 16];
            // SAFETY: `v` is 16 writable floats; `storeu` has no alignment requirement.
            unsafe { _mm512_storeu_ps(v.as_mut_ptr(), a[q]) };
            for (r, o) in o.iter_mut().enumerate() {
                o[4 * q..4 * q + 4].copy_from_slice(&v[4 * r..4 * r + 4]);
            }
        }
    }
    out
}

/// `G` row groups × `T` tokens of Q8 weights. The *weights* take the bias:
/// `dpbusd(w ^ 0x80, x) = Σ w·x + 128·Σx`, and the accumulator starts from the
/// prepared `-128·Σx`. Exact for every `i8`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile_q8<const G: usize, const T: usize>(
    wg: &[&[BlockQ8x4]; G],
    xs: &[&[BlockQ8]; T],
    ps: &[&[Prep]; T],
) -> TileOut<G, T> {
    let nb = tile_len(wg, xs, ps);
    let bias = _mm512_set1_epi8(i8::MIN);
    let mut acc = [[_mm512_setzero_ps(); T]; G];
    for kb in 0..nb {
        let w: [(__m512i, __m512i, __m512); G] = core::array::from_fn(|g| {
            prefetch(wg[g], kb, T == 1);
            let p = &wg[g][kb];
            let (lo, hi) = q8_quarters(bytemuck::cast_ref(&p.qs));
            let (lo, hi) = (_mm512_xor_si512(lo, bias), _mm512_xor_si512(hi, bias));
            (lo, hi, quad_layout(scales4(&p.d)))
        });
        accumulate(&w, xs, ps, kb, &mut acc);
    }
    finish_acc(&acc)
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

/// `G` row groups × `T` tokens of Q4 weights: `Σ q·x - 8·Σx`, the accumulator
/// starting from the prepared `-8·Σx`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile_q4<const G: usize, const T: usize>(
    wg: &[&[BlockQ4x4]; G],
    xs: &[&[BlockQ8]; T],
    ps: &[&[Prep]; T],
) -> TileOut<G, T> {
    let nb = tile_len(wg, xs, ps);
    let mut acc = [[_mm512_setzero_ps(); T]; G];
    for kb in 0..nb {
        let w: [(__m512i, __m512i, __m512); G] = core::array::from_fn(|g| {
            prefetch(wg[g], kb, T == 1);
            let p = &wg[g][kb];
            let (lo, hi) = nibbles(&p.qs);
            (lo, hi, quad_layout(scales4(&p.d)))
        });
        accumulate(&w, xs, ps, kb, &mut acc);
    }
    finish_acc(&acc)
}

// ---- The 16-row matmul tiles: one i32 lane per row, so no lane is ever added to
// ---- another (unlike the quad layout, whose four partial sums per row cost a
// ---- transpose-and-add per row group, 4 tokens and block).
//
// Per block, 4 row groups' values are transposed by dwords within 128-bit lanes so
// that register `s` (`s < 8`) holds the 4 weights of every row that meet activation
// bytes `4s..4s + 4`, lane `4·r + g` = row `r` of group `g`. Per token, each step's 4
// activation bytes are broadcast and `dpbusd` adds every row's 4 products to its lane:
// after 8 steps, started from the prepared offset (`Prep::c`), each lane is the block's
// exact integer dot product, scaled and accumulated in f32 like the reference. Per
// token and block: 8 `dpbusd` and 3 float instructions for 512 products; the
// transpose is shared by the `T` tokens.

/// Swap lane `4a + b` with lane `4b + a`: between the 16-row tiles' lane order
/// (`4r + g`, row `r` of group `g`) and row order (`4g + r`). Its own inverse.
#[target_feature(enable = "avx512f")]
#[inline]
fn swap_4x4(v: __m512) -> __m512 {
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_ps(order, v)
}

/// The 4 groups' row scales in the 16-row tiles' lane order (they arrive in row order).
#[target_feature(enable = "avx512f,avx2,f16c")]
#[inline]
fn scales16(d: [&[f16; ROWS]; 4]) -> __m512 {
    let d = d.map(|d| bytemuck::cast::<_, u64>(*d) as i64);
    swap_4x4(_mm512_cvtph_ps(_mm256_setr_epi64x(d[0], d[1], d[2], d[3])))
}

/// Four registers with one row per 128-bit lane (`[r0 | r1 | r2 | r3]`, 4 dwords each),
/// one per row group → dword `s` of every row in register `s`, lane `4r + g`.
#[target_feature(enable = "avx512f")]
#[inline]
fn transpose16(v: [__m512i; 4]) -> [__m512i; 4] {
    let (a, c) = (
        _mm512_unpacklo_epi32(v[0], v[1]),
        _mm512_unpacklo_epi32(v[2], v[3]),
    );
    let (e, f) = (
        _mm512_unpackhi_epi32(v[0], v[1]),
        _mm512_unpackhi_epi32(v[2], v[3]),
    );
    [
        _mm512_unpacklo_epi64(a, c),
        _mm512_unpackhi_epi64(a, c),
        _mm512_unpacklo_epi64(e, f),
        _mm512_unpackhi_epi64(e, f),
    ]
}

/// 4 row groups (16 rows) × `T` tokens, one row per lane: `decode` gives a block's
/// weights as 8 registers (`w[s]` pairs with activation bytes `4s..4s + 4`, lane
/// `4r + g`) and its rows' scales in the same lanes. (One loop for both formats: a
/// helper holding the token loop was not inlined into it, and the call cost 15%.)
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile_rows16<P, const T: usize>(
    wg: &[&[P]; 4],
    xs: &[&[BlockQ8]; T],
    ps: &[&[Prep]; T],
    decode: impl Fn([&P; 4]) -> ([__m512i; 8], __m512),
) -> TileOut<4, T> {
    let nb = tile_len(wg, xs, ps);
    let mut acc = [_mm512_setzero_ps(); T];
    for kb in 0..nb {
        let (w, dw) = decode(core::array::from_fn(|g| {
            prefetch(wg[g], kb, T == 1);
            &wg[g][kb]
        }));
        // Steps outside, tokens inside: the `T` dependency chains of `dpbusd`
        // interleave (one chain per token would stall on the instruction's latency).
        let mut s32: [__m512i; T] = core::array::from_fn(|t| _mm512_set1_epi32(ps[t][kb].c));
        for (s, w) in w.iter().enumerate() {
            for (s32, x) in s32.iter_mut().zip(xs) {
                let xq = qs_bytes(&x[kb]);
                let xd =
                    i32::from_le_bytes([xq[4 * s], xq[4 * s + 1], xq[4 * s + 2], xq[4 * s + 3]]);
                *s32 = _mm512_dpbusd_epi32(*s32, *w, _mm512_set1_epi32(xd));
            }
        }
        for ((acc, s32), p) in acc.iter_mut().zip(s32).zip(ps) {
            let scale = _mm512_mul_ps(dw, _mm512_set1_ps(p[kb].dx));
            *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s32), scale, *acc);
        }
    }
    finish16(&acc)
}

/// A tile's results from the 16-row accumulators (lane 4r + g of `acc[t]`).
#[target_feature(enable = "avx512f")]
#[inline]
fn finish16<const T: usize>(acc: &[__m512; T]) -> TileOut<4, T> {
    // Lane 4r + g → lane 4g + r, i.e. row order.
    let a = acc.map(|a| swap_4x4(a));
    let mut out = [[[0.0f32; T]; ROWS]; 4];
    // `out` as 16 rows of `T` tokens.
    let rows = out.as_flattened_mut().as_flattened_mut();
    match <&[__m512; 8]>::try_from(&a[..]) {
        Ok(a) => transpose_16x8(a, rows),
        Err(_) => {
            for (t, a) in a.iter().enumerate() {
                let mut v = [0.0f32; 16];
                // SAFETY: `v` is 16 writable floats; `storeu` has no alignment requirement.
                unsafe { _mm512_storeu_ps(v.as_mut_ptr(), *a) };
                for (i, v) in v.iter().enumerate() {
                    rows[i * T + t] = *v;
                }
            }
        }
    }
    out
}

/// 8 tokens' vectors of 16 rows (`a[t]` lane `i` = row `i`) → `out[8i..8i + 8]` = row
/// `i`'s 8 tokens: a 16 × 8 transpose in 32 shuffles.
#[target_feature(enable = "avx512f")]
#[inline]
fn transpose_16x8(a: &[__m512; 8], out: &mut [f32]) {
    assert_eq!(out.len(), 128);
    // Within each 128-bit lane L (rows 4L..4L + 4): u[k] = row 4L + k, tokens 0..4;
    // u[4 + k] = the same row, tokens 4..8.
    let mut u = [_mm512_setzero_ps(); 8];
    for h in 0..2 {
        let a = &a[4 * h..4 * h + 4];
        let (t0, t1) = (
            _mm512_unpacklo_ps(a[0], a[1]),
            _mm512_unpackhi_ps(a[0], a[1]),
        );
        let (t2, t3) = (
            _mm512_unpacklo_ps(a[2], a[3]),
            _mm512_unpackhi_ps(a[2], a[3]),
        );
        u[4 * h] = _mm512_shuffle_ps::<0x44>(t0, t2);
        u[4 * h + 1] = _mm512_shuffle_ps::<0xEE>(t0, t2);
        u[4 * h + 2] = _mm512_shuffle_ps::<0x44>(t1, t3);
        u[4 * h + 3] = _mm512_shuffle_ps::<0xEE>(t1, t3);
    }
    for k in 0..4 {
        // [u_k.L0, u_4+k.L0 | u_k.L1, u_4+k.L1] = rows k and 4 + k; likewise L2, L3 for
        // rows 8 + k and 12 + k.
        let lo = _mm512_shuffle_f32x4::<0b01_00_01_00>(u[k], u[4 + k]);
        let hi = _mm512_shuffle_f32x4::<0b11_10_11_10>(u[k], u[4 + k]);
        let lo = _mm512_shuffle_f32x4::<0b11_01_10_00>(lo, lo);
        let hi = _mm512_shuffle_f32x4::<0b11_01_10_00>(hi, hi);
        for (row, v) in [(k, lo), (8 + k, hi)] {
            let (r0, r1): (&mut [f32; 8], &mut [f32; 8]) = {
                let (x, y) = out.split_at_mut(8 * (row + 4));
                (
                    (&mut x[8 * row..8 * row + 8]).try_into().expect("8 floats"),
                    (&mut y[..8]).try_into().expect("8 floats"),
                )
            };
            // SAFETY: `r0` and `r1` are 8 writable floats each; `storeu` has no
            // alignment requirement.
            unsafe {
                _mm256_storeu_ps(r0.as_mut_ptr(), _mm512_castps512_ps256(v));
                _mm256_storeu_ps(
                    r1.as_mut_ptr(),
                    _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
                );
            }
        }
    }
}

/// 4 Q4 row groups (16 rows) × `T` tokens, one row per lane. A dword of a row's
/// nibbles holds the values `4s..4s + 4` (low nibbles) and `16 + 4s..` (high); the
/// offset is the prepared `-8·Σx` ([`super::prep_q4_quads`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile_q4_rows16<const T: usize>(
    wg: &[&[BlockQ4x4]; 4],
    xs: &[&[BlockQ8]; T],
    ps: &[&[Prep]; T],
) -> TileOut<4, T> {
    let mask = _mm512_set1_epi8(0x0F);
    tile_rows16(wg, xs, ps, |b| {
        let q = transpose16(b.map(|p| load512(&p.qs)));
        let w = core::array::from_fn(|s| {
            if s < 4 {
                _mm512_and_si512(q[s], mask)
            } else {
                _mm512_and_si512(_mm512_srli_epi16::<4>(q[s - 4]), mask)
            }
        });
        (w, scales16(b.map(|p| &p.d)))
    })
}

/// 4 Q8 row groups (16 rows) × `T` tokens, one row per lane. The weights take the
/// `+128` bias (`w ^ 0x80` as u8), the offset is the prepared `-128·Σx`
/// ([`super::prep_q8_quads`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile_q8_rows16<const T: usize>(
    wg: &[&[BlockQ8x4]; 4],
    xs: &[&[BlockQ8]; T],
    ps: &[&[Prep]; T],
) -> TileOut<4, T> {
    let bias = _mm512_set1_epi8(i8::MIN);
    tile_rows16(wg, xs, ps, |b| {
        // Each group's values 0..16 and 16..32, one row per 128-bit lane.
        let h = b.map(|p| q8_quarters(bytemuck::cast_ref(&p.qs)));
        let lo = transpose16(h.map(|(lo, _)| lo));
        let hi = transpose16(h.map(|(_, hi)| hi));
        let w =
            core::array::from_fn(|s| _mm512_xor_si512(if s < 4 { lo[s] } else { hi[s - 4] }, bias));
        (w, scales16(b.map(|p| &p.d)))
    })
}

/// `G` row groups × `T` tokens of Q4A weights: `d_w·d_x·Σ q·x + m_w·d_x·Σx`, with the
/// prepared Σx partial sums in the quad layout (each row's four entries add up to Σx).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile_q4a<const G: usize, const T: usize>(
    wg: &[&[BlockQ4Ax4]; G],
    xs: &[&[BlockQ8]; T],
    ps: &[&[Prep]; T],
) -> TileOut<G, T> {
    let nb = tile_len(wg, xs, ps);
    let zero = _mm512_setzero_si512();
    let mut acc = [[_mm512_setzero_ps(); T]; G];
    for kb in 0..nb {
        let w: [(__m512i, __m512i, __m512, __m512); G] = core::array::from_fn(|g| {
            prefetch(wg[g], kb, T == 1);
            let p = &wg[g][kb];
            let (lo, hi) = nibbles(&p.qs);
            (
                lo,
                hi,
                quad_layout(scales4(&p.d)),
                quad_layout(scales4(&p.m)),
            )
        });
        for t in 0..T {
            let (xlo, xhi) = x_quarters(&xs[t][kb]);
            let pr = &ps[t][kb];
            let (sx, dx) = (_mm512_castsi512_ps(prep_quads(pr)), _mm512_set1_ps(pr.dx));
            for (a, (lo, hi, d, m)) in acc.iter_mut().zip(&w) {
                let i = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, *lo, xlo), *hi, xhi);
                let v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(*d, dx), a[t]);
                a[t] = _mm512_fmadd_ps(sx, _mm512_mul_ps(*m, dx), v);
            }
        }
    }
    finish(&acc)
}

// The Q4 and Q8 matmul tiles: the 16-row tiles for 4 groups, the quad-layout ones
// otherwise.
wide_tile!(
    features = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    name = tile_q4_mm,
    block = BlockQ4x4,
    width = 4,
    wide = tile_q4_rows16,
    narrow = tile_q4,
);
wide_tile!(
    features = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    name = tile_q8_mm,
    block = BlockQ8x4,
    width = 4,
    wide = tile_q8_rows16,
    narrow = tile_q8,
);

// Matmul tiles: Q8 and Q4 4 row groups (one row per lane, see `tile_rows16`) × up
// to 8 tokens; Q4A 2 row groups × up to 8 tokens: 16 zmm accumulators of the 32
// registers, the rest for two groups' decoded blocks and one activation block.
gemm_kernels!(
    features = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    block = BlockQ8x4,
    tile = tile_q8_mm,
    prep = super::prep_q8_quads,
    gemm_groups = 4,
    gemm_tokens = [1, 2, 3, 4, 5, 6, 7, 8],
    gemv = gemv_q8,
    gemv_tile = tile_q8,
    gemm = gemm_q8,
);
gemm_kernels!(
    features = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    block = BlockQ4x4,
    tile = tile_q4_mm,
    prep = super::prep_q4_quads,
    gemm_groups = 4,
    gemm_tokens = [1, 2, 3, 4, 5, 6, 7, 8],
    gemv = gemv_q4,
    gemv_tile = tile_q4,
    gemm = gemm_q4,
);
gemm_kernels!(
    features = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    block = BlockQ4Ax4,
    tile = tile_q4a,
    prep = super::prep_q4a_quads,
    gemm_groups = 2,
    gemm_tokens = [1, 2, 3, 4, 5, 6, 7, 8],
    gemv = gemv_q4a,
    gemv_tile = tile_q4a,
    gemm = gemm_q4a,
);
