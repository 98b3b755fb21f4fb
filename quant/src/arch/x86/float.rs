//! f32 matrix product `c = a · b` (row-major) for AVX2+FMA and AVX-512: the float
//! work of attention (query × keysᵀ, probabilities × values).
//!
//! Register tile: `R` rows of `c` × two vectors of columns, the accumulators held in
//! registers while `p` runs over all of `k`: per step, two loads of `b`'s row `p`, `R`
//! broadcasts of `a[i][p]` and `2R` FMAs. AVX-512: up to 8 rows × 32 columns (16 of
//! the 32 zmm registers); AVX2: up to 6 rows × 16 columns (12 of the 16 ymm). The last
//! columns of a row use masked loads and stores, so any `n` works without a scalar
//! tail. Each output is summed over `p` in order like the reference, but with FMA (one
//! rounding per step instead of two), so results agree to a float tolerance.
//!
//! `b` may hold f16 instead of f32 ([`BValue`]): its values are widened (exactly) as
//! they are loaded, so the products and sums are those of the f32 product on the
//! widened values, bit for bit. Attention reads its keys and values that way, straight
//! from the f16 cache.
use crate::dispatch::BLayout;
use core::arch::x86_64::*;
use half::f16;

/// What `b` holds: f32, or f16 widened exactly to f32 as it is loaded.
pub(super) trait BValue: Copy {
    /// 16 values from `p`.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL and F16C are present; `p..p + 16` is readable.
    unsafe fn load16(p: *const Self) -> __m512;
    /// The lanes of `m` from `p`, the others 0 (and not read).
    ///
    /// # Safety
    /// As [`BValue::load16`], for the lanes of `m` only.
    unsafe fn load16_masked(m: __mmask16, p: *const Self) -> __m512;
    /// 8 values from `p`.
    ///
    /// # Safety
    /// AVX2 and F16C are present; `p..p + 8` is readable.
    unsafe fn load8(p: *const Self) -> __m256;
    /// Lanes `0..w` from `p` (`w ≤ 8`, `m` its `maskload` mask), the others 0 (and not
    /// read).
    ///
    /// # Safety
    /// As [`BValue::load8`], for lanes `0..w` only.
    unsafe fn load8_masked(m: __m256i, w: usize, p: *const Self) -> __m256;
}

// The loads are `inline(always)` so that they are inlined into the kernels, whose
// target features then cover the intrinsics.
impl BValue for f32 {
    #[inline(always)]
    unsafe fn load16(p: *const f32) -> __m512 {
        // SAFETY: forwarded to the caller.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load16_masked(m: __mmask16, p: *const f32) -> __m512 {
        // SAFETY: forwarded to the caller (masked-off lanes do not fault).
        unsafe { _mm512_maskz_loadu_ps(m, p) }
    }
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> __m256 {
        // SAFETY: forwarded to the caller.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load8_masked(m: __m256i, _w: usize, p: *const f32) -> __m256 {
        // SAFETY: forwarded to the caller (`vmaskmovps` does not fault on masked-off
        // lanes).
        unsafe { _mm256_maskload_ps(p, m) }
    }
}

impl BValue for f16 {
    #[inline(always)]
    unsafe fn load16(p: *const f16) -> __m512 {
        // SAFETY: forwarded to the caller (16 f16 are the 32 bytes loaded).
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }
    #[inline(always)]
    unsafe fn load16_masked(m: __mmask16, p: *const f16) -> __m512 {
        // SAFETY: forwarded to the caller (masked-off 16-bit lanes do not fault).
        unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p.cast())) }
    }
    #[inline(always)]
    unsafe fn load8(p: *const f16) -> __m256 {
        // SAFETY: forwarded to the caller (8 f16 are the 16 bytes loaded).
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
    #[inline(always)]
    unsafe fn load8_masked(_m: __m256i, w: usize, p: *const f16) -> __m256 {
        // AVX2 has no 16-bit masked load: the `w` values go through a zeroed buffer.
        let mut buf = [f16::ZERO; 8];
        for (i, v) in buf.iter_mut().enumerate().take(w) {
            // SAFETY: lanes `0..w` are readable (caller).
            *v = unsafe { p.add(i).read_unaligned() };
        }
        // SAFETY: `buf` is 16 readable bytes; F16C is present (caller).
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(buf.as_ptr().cast())) }
    }
}

/// Check the shapes of a call ([`crate::dispatch::GemmF32Fn`]'s contract). The safe
/// API never gets here with bad shapes; a panic beats reading out of bounds.
fn check<B>(m: usize, k: usize, n: usize, a: &[f32], b: &[B], lay: BLayout, c: &[f32]) {
    assert_eq!(Some(a.len()), m.checked_mul(k), "gemm_f32: a");
    assert!(lay.is_valid(), "gemm_f32: layout");
    assert_eq!(Some(b.len()), lay.span(k, n), "gemm_f32: b");
    assert_eq!(Some(c.len()), m.checked_mul(n), "gemm_f32: c");
}

/// AVX-512 `c = a · b`.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL and F16C. Shapes as [`crate::dispatch::GemmF32Fn`]
/// (also asserted).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
pub(super) unsafe fn gemm_avx512<B: BValue>(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[B],
    lay: BLayout,
    c: &mut [f32],
) {
    check(m, k, n, a, b, lay, c);
    let mut i0 = 0;
    while i0 < m {
        let r = (m - i0).min(8);
        let (ai, ci) = (&a[i0 * k..(i0 + r) * k], &mut c[i0 * n..(i0 + r) * n]);
        match r {
            8 => rows512::<B, 8>(k, n, ai, b, lay, ci),
            7 => rows512::<B, 7>(k, n, ai, b, lay, ci),
            6 => rows512::<B, 6>(k, n, ai, b, lay, ci),
            5 => rows512::<B, 5>(k, n, ai, b, lay, ci),
            4 => rows512::<B, 4>(k, n, ai, b, lay, ci),
            3 => rows512::<B, 3>(k, n, ai, b, lay, ci),
            2 => rows512::<B, 2>(k, n, ai, b, lay, ci),
            _ => rows512::<B, 1>(k, n, ai, b, lay, ci),
        }
        i0 += r;
    }
}

/// Lanes `0..w` of a 16-lane mask (`w` may exceed 16).
#[inline]
fn mask16(w: usize) -> __mmask16 {
    if w >= 16 {
        0xFFFF
    } else {
        ((1u32 << w) - 1) as __mmask16
    }
}

/// `R` rows of `c` (`a` holds exactly those `R` rows).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
#[inline]
fn rows512<B: BValue, const R: usize>(
    k: usize,
    n: usize,
    a: &[f32],
    b: &[B],
    lay: BLayout,
    c: &mut [f32],
) {
    assert!(
        a.len() == R * k && c.len() == R * n && Some(b.len()) == lay.span(k, n) && lay.is_valid()
    );
    let mut j0 = 0;
    while j0 < n {
        let w = n - j0;
        let (m0, m1) = (mask16(w), mask16(w.saturating_sub(16)));
        // Full panels with plain loads (the masks would cost registers in the loop).
        let acc = if w >= 32 {
            panel512::<B, R, false>(k, lay, a, b, j0, m0, m1)
        } else {
            panel512::<B, R, true>(k, lay, a, b, j0, m0, m1)
        };
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: lanes `j0..j0 + min(w, 32)` of row `r` are inside `c`
            // (`c.len() == R * n`, `j0 < n`); masked-off lanes are not accessed, and the
            // pointer arithmetic wraps instead of asserting an in-bounds offset.
            unsafe {
                let cp = c.as_mut_ptr().wrapping_add(r * n + j0);
                _mm512_mask_storeu_ps(cp, m0, acc[0]);
                _mm512_mask_storeu_ps(cp.wrapping_add(16), m1, acc[1]);
            }
        }
        j0 += 32;
    }
}

/// Columns `j0..j0 + 32` of `R` rows (lanes past `n` only when `MASKED`, with masks
/// `m0`, `m1`). Caller: `a.len() == R * k`, `b` holds a `k × n` matrix laid out as
/// `lay` says (its span, [`BLayout::span`]), `j0 < n` a multiple of 16 (AVX2) or 32,
/// and `j0 + 32 <= n` unless `MASKED`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
#[inline]
fn panel512<B: BValue, const R: usize, const MASKED: bool>(
    k: usize,
    lay: BLayout,
    a: &[f32],
    b: &[B],
    j0: usize,
    m0: __mmask16,
    m1: __mmask16,
) -> [[__m512; 2]; R] {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for p in 0..k {
        // SAFETY: row `p`'s lanes `j0..j0 + 32` (at `lay.at(p, j0)`, contiguous: `j0` starts
        // a panel's half or whole) are inside `b`'s span when not `MASKED`; otherwise
        // only the unmasked lanes (columns below `n`) are accessed, and the pointer
        // arithmetic wraps. `a[r * k + p]` is in bounds for
        // `r < R`, `p < k`. The features the loads need are this function's.
        unsafe {
            let bp = b.as_ptr().wrapping_add(lay.at(p, j0));
            let (b0, b1) = if MASKED {
                (
                    B::load16_masked(m0, bp),
                    B::load16_masked(m1, bp.wrapping_add(16)),
                )
            } else {
                (B::load16(bp), B::load16(bp.add(16)))
            };
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.get_unchecked(r * k + p));
                acc[0] = _mm512_fmadd_ps(av, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(av, b1, acc[1]);
            }
        }
    }
    acc
}

/// AVX2 `c = a · b`.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C. Shapes as [`crate::dispatch::GemmF32Fn`] (also
/// asserted).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn gemm_avx2<B: BValue>(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[B],
    lay: BLayout,
    c: &mut [f32],
) {
    check(m, k, n, a, b, lay, c);
    let mut i0 = 0;
    while i0 < m {
        let r = (m - i0).min(6);
        let (ai, ci) = (&a[i0 * k..(i0 + r) * k], &mut c[i0 * n..(i0 + r) * n]);
        match r {
            6 => rows256::<B, 6>(k, n, ai, b, lay, ci),
            5 => rows256::<B, 5>(k, n, ai, b, lay, ci),
            4 => rows256::<B, 4>(k, n, ai, b, lay, ci),
            3 => rows256::<B, 3>(k, n, ai, b, lay, ci),
            2 => rows256::<B, 2>(k, n, ai, b, lay, ci),
            _ => rows256::<B, 1>(k, n, ai, b, lay, ci),
        }
        i0 += r;
    }
}

/// Lanes `0..w` of an 8-lane `maskload`/`maskstore` mask (`w` may exceed 8).
#[target_feature(enable = "avx2")]
#[inline]
fn mask8(w: usize) -> __m256i {
    let w = w.min(8) as i32;
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(w),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// `R` rows of `c` (`a` holds exactly those `R` rows).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn rows256<B: BValue, const R: usize>(
    k: usize,
    n: usize,
    a: &[f32],
    b: &[B],
    lay: BLayout,
    c: &mut [f32],
) {
    assert!(
        a.len() == R * k && c.len() == R * n && Some(b.len()) == lay.span(k, n) && lay.is_valid()
    );
    let mut j0 = 0;
    while j0 < n {
        let w = n - j0;
        let (m0, m1) = (mask8(w), mask8(w.saturating_sub(8)));
        // Full panels with plain loads (the masks would not fit in the 16 registers).
        let acc = if w >= 16 {
            panel256::<B, R, false>(k, lay, a, b, j0, (m0, m1), w)
        } else {
            panel256::<B, R, true>(k, lay, a, b, j0, (m0, m1), w)
        };
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: lanes `j0..j0 + min(w, 16)` of row `r` are inside `c`; masked-off
            // lanes are not accessed (`vmaskmovps` does not fault on them), and the
            // pointer arithmetic wraps instead of asserting an in-bounds offset.
            unsafe {
                let cp = c.as_mut_ptr().wrapping_add(r * n + j0);
                _mm256_maskstore_ps(cp, m0, acc[0]);
                _mm256_maskstore_ps(cp.wrapping_add(8), m1, acc[1]);
            }
        }
        j0 += 16;
    }
}

/// Columns `j0..j0 + 16` of `R` rows; contract as [`panel512`], with `w` the columns
/// left from `j0` (the masks' lane counts when `MASKED`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn panel256<B: BValue, const R: usize, const MASKED: bool>(
    k: usize,
    lay: BLayout,
    a: &[f32],
    b: &[B],
    j0: usize,
    (m0, m1): (__m256i, __m256i),
    w: usize,
) -> [[__m256; 2]; R] {
    let (w0, w1) = (w.min(8), w.saturating_sub(8).min(8));
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for p in 0..k {
        // SAFETY: as in [`panel512`].
        unsafe {
            let bp = b.as_ptr().wrapping_add(lay.at(p, j0));
            let (b0, b1) = if MASKED {
                (
                    B::load8_masked(m0, w0, bp),
                    B::load8_masked(m1, w1, bp.wrapping_add(8)),
                )
            } else {
                (B::load8(bp), B::load8(bp.add(8)))
            };
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_ps(*a.get_unchecked(r * k + p));
                acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
                acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
            }
        }
    }
    acc
}
