//! x86-64 kernels: AVX2 (+FMA, F16C) and AVX-512 VNNI.
//!
//! Both sets share one shape: a *tile* function computes `T` tokens × the 4 rows of
//! one packed row group, loading and decoding each weight block once per tile and
//! keeping the per-(token, row) sums in f32 vector accumulators. The matvec is the
//! 1-token tile; the matmul walks the tokens in tiles of 4 (AVX2) or 8 (AVX-512) so
//! the weights stream from memory once per row group.
//!
//! Numerics (same contract as [`crate::generic`]): each block's integer dot product is
//! exact in `i32`, then scaled by `d_w · d_x` in f32 and accumulated with FMA. The
//! SIMD kernels split a row's dot product into a few partial sums (2 or 4 lanes per
//! row) and add them at the end, so they agree with the scalar reference to a float
//! tolerance, not bit for bit.
//!
//! Input ranges: activations may use the whole `i8` range. Q8 *weights* must lie in
//! `-127..=127` (what every quantizer here produces) for the AVX2 set: its
//! `maddubs` sign trick cannot negate `-128`. A `-128` weight gives a wrong result there,
//! never undefined behaviour. The AVX-512 VNNI set is exact for every `i8`.
use crate::block::{BlockQ8, QK};
use crate::dispatch::{KernelSetName, Kernels};
use crate::packed::ROWS;
use core::arch::x86_64::*;
use half::f16;

/// AVX2 + FMA + F16C.
static AVX2: Kernels = Kernels {
    name: KernelSetName::Avx2,
    quantize_q8: avx2::quantize_row_q8,
    gemv_q8: avx2::gemv_q8,
    gemv_q4: avx2::gemv_q4,
    gemv_q4a: avx2::gemv_q4a,
    gemm_q8: avx2::gemm_q8,
    gemm_q4: avx2::gemm_q4,
    gemm_q4a: avx2::gemm_q4a,
};

/// AVX-512 F/BW/VL + VNNI (+ AVX2, FMA, F16C for the shared helpers). The activation
/// quantizer is the AVX2 one: it is a small fraction of a matvec's time.
static AVX512_VNNI: Kernels = Kernels {
    name: KernelSetName::Avx512Vnni,
    quantize_q8: avx2::quantize_row_q8,
    gemv_q8: avx512::gemv_q8,
    gemv_q4: avx512::gemv_q4,
    gemv_q4a: avx512::gemv_q4a,
    gemm_q8: avx512::gemm_q8,
    gemm_q4: avx512::gemm_q4,
    gemm_q4a: avx512::gemm_q4a,
};

/// Best first.
static ALL: [&Kernels; 2] = [&AVX512_VNNI, &AVX2];

/// Does this CPU run the AVX2 set?
fn has_avx2() -> bool {
    #[cfg(feature = "std")]
    {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(all(
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c"
        ))
    }
}

/// Does this CPU run the AVX-512 VNNI set? (It also needs everything [`has_avx2`] checks.)
fn has_avx512vnni() -> bool {
    #[cfg(feature = "std")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(all(
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vl",
            target_feature = "avx512vnni"
        ))
    }
}

/// Supported x86 kernel sets, best first.
pub fn available() -> &'static [&'static Kernels] {
    match (has_avx2(), has_avx512vnni()) {
        (true, true) => &ALL,
        (true, false) => &ALL[1..],
        _ => &[],
    }
}

/// Check a gemm call's shapes (the contract of [`crate::dispatch::GemmFn`]) and return
/// the number of row groups. Panics on a violation: the safe API never gets here with
/// bad shapes, and a panic beats reading out of bounds.
fn check_gemm(w_len: usize, nb: usize, x_len: usize, n: usize, y_len: usize) -> usize {
    assert!(n > 0, "gemm: n must be positive");
    assert_eq!(y_len % (ROWS * n), 0, "gemm: output length");
    let groups = y_len / (ROWS * n);
    assert_eq!(Some(w_len), groups.checked_mul(nb), "gemm: weight blocks");
    assert_eq!(Some(x_len), n.checked_mul(nb), "gemm: activation blocks");
    groups
}

/// The `T` activation rows (of `nb` blocks each) starting at token `t0`.
#[inline]
fn token_rows<const T: usize>(x: &[BlockQ8], nb: usize, t0: usize) -> [&[BlockQ8]; T] {
    core::array::from_fn(|j| &x[(t0 + j) * nb..(t0 + j + 1) * nb])
}

/// Scatter a tile's results (`out[j][r]` = token `t0 + j`, row `r` of the group)
/// into a group's output `yg[r * n + t]`.
#[inline]
fn store_tile<const T: usize>(out: &[[f32; ROWS]; T], yg: &mut [f32], n: usize, t0: usize) {
    for (j, rows) in out.iter().enumerate() {
        for (r, &v) in rows.iter().enumerate() {
            yg[r * n + t0 + j] = v;
        }
    }
}

/// Define a gemm kernel (and its gemv) over a tile function `$tile::<T>` for
/// `T = 1..=$tmax`: loop over row groups, and within a group over token tiles, so a
/// group's weights (`nb` packed blocks, a few KiB) stay in L1/L2 while all tokens
/// pass over them.
macro_rules! gemm_kernels {
    (
        features = $feat:literal,
        block = $P:ty,
        tile = $tile:ident,
        tmax = $tmax:tt,
        gemv = $gemv:ident,
        gemm = $gemm:ident $(,)?
    ) => {
        /// Packed matrix × `n` activation rows, `y[row * n + t]`.
        ///
        /// # Safety
        /// The CPU supports this set's features (see the module's `target_feature`),
        /// and the shapes follow [`crate::dispatch::GemmFn`]: `x.len() == n * nb`,
        /// `w.len() == y.len() / (4 * n) * nb`, `n > 0`. (Shapes are also asserted.)
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $gemm(w: &[$P], nb: usize, x: &[BlockQ8], n: usize, y: &mut [f32]) {
            let groups = super::check_gemm(w.len(), nb, x.len(), n, y.len());
            if nb == 0 {
                y.fill(0.0);
                return;
            }
            for (wg, yg) in w
                .chunks_exact(nb)
                .zip(y.chunks_exact_mut(ROWS * n))
                .take(groups)
            {
                let mut t0 = 0;
                while t0 < n {
                    let c = (n - t0).min($tmax);
                    // One arm per tile width: each is its own monomorphised loop.
                    seq_tiles!($tile, $tmax, c, wg, x, nb, t0, n, yg);
                    t0 += c;
                }
            }
        }

        /// Packed matrix × one activation row: the one-token gemm.
        ///
        /// # Safety
        /// The CPU supports this set's features, and the shapes follow
        /// [`crate::dispatch::GemvFn`]: `x.len() == nb`, `w.len() == y.len() / 4 * nb`,
        /// `y.len() % 4 == 0`.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $gemv(w: &[$P], nb: usize, x: &[BlockQ8], y: &mut [f32]) {
            // SAFETY: same features; a gemv's shapes are a gemm's with n = 1.
            unsafe { $gemm(w, nb, x, 1, y) }
        }
    };
}

/// Dispatch a tile width `c` (`1..=tmax`, tmax ∈ {4, 8}) to `$tile::<c>`.
macro_rules! seq_tiles {
    ($tile:ident, 4, $c:expr, $($a:expr),*) => {
        match $c {
            4 => run_tile!($tile, 4, $($a),*),
            3 => run_tile!($tile, 3, $($a),*),
            2 => run_tile!($tile, 2, $($a),*),
            _ => run_tile!($tile, 1, $($a),*),
        }
    };
    ($tile:ident, 8, $c:expr, $($a:expr),*) => {
        match $c {
            8 => run_tile!($tile, 8, $($a),*),
            7 => run_tile!($tile, 7, $($a),*),
            6 => run_tile!($tile, 6, $($a),*),
            5 => run_tile!($tile, 5, $($a),*),
            4 => run_tile!($tile, 4, $($a),*),
            3 => run_tile!($tile, 3, $($a),*),
            2 => run_tile!($tile, 2, $($a),*),
            _ => run_tile!($tile, 1, $($a),*),
        }
    };
}

macro_rules! run_tile {
    ($tile:ident, $t:literal, $wg:expr, $x:expr, $nb:expr, $t0:expr, $n:expr, $yg:expr) => {{
        let xs = super::token_rows::<$t>($x, $nb, $t0);
        let out = $tile::<$t>($wg, &xs);
        super::store_tile(&out, $yg, $n, $t0);
    }};
}

// Declared after the macros so they are in (textual) scope there.
mod avx2;
mod avx512;

// ---- Small helpers shared by both sets. Each is a safe `#[target_feature]` fn: the
// ---- only unsafe operations are the loads/stores, each on a reference of exactly the
// ---- size read or written.

/// Load 32 bytes.
#[target_feature(enable = "avx2")]
#[inline]
fn load256(b: &[u8; 32]) -> __m256i {
    // SAFETY: `b` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// Load 16 bytes.
#[target_feature(enable = "avx2")]
#[inline]
fn load128(b: &[u8; 16]) -> __m128i {
    // SAFETY: `b` is 16 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

/// Load 8 floats.
#[target_feature(enable = "avx2")]
#[inline]
fn load_ps(v: &[f32; 8]) -> __m256 {
    // SAFETY: `v` is 8 readable floats; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_ps(v.as_ptr()) }
}

/// Store 32 bytes.
#[target_feature(enable = "avx2")]
#[inline]
fn store256(b: &mut [u8; 32], v: __m256i) {
    // SAFETY: `b` is 32 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(b.as_mut_ptr().cast(), v) }
}

/// A block's 32 quantized values as bytes.
#[inline]
fn qs_bytes(b: &BlockQ8) -> &[u8; QK] {
    bytemuck::cast_ref(&b.qs)
}

/// Four f16 scales → `[d0, d1, d2, d3]`.
#[target_feature(enable = "avx2,f16c")]
#[inline]
fn scales4(d: &[f16; ROWS]) -> __m128 {
    let bits: u64 = bytemuck::cast(*d);
    _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64))
}

/// One f16 → f32 through F16C (the `half` crate's software path is slower in `no_std`).
#[target_feature(enable = "avx2,f16c")]
#[inline]
fn f16_to_f32(h: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
}

/// Reduce an accumulator laid out `[r0, r0, r2, r2 | r1, r1, r3, r3]` (two partial
/// sums per row) to `[r0, r1, r2, r3]`.
#[target_feature(enable = "avx2")]
#[inline]
fn reduce_pairs(acc: __m256) -> [f32; ROWS] {
    let lo = _mm256_castps256_ps128(acc);
    let hi = _mm256_extractf128_ps::<1>(acc);
    // [r0, r2, r1, r3] → [r0, r1, r2, r3]
    let s = _mm_hadd_ps(lo, hi);
    let s = _mm_shuffle_ps::<0b11_01_10_00>(s, s);
    let mut out = [0.0f32; ROWS];
    // SAFETY: `out` is 4 writable floats; `storeu` has no alignment requirement.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), s) };
    out
}
