//! x86-64 kernels: AVX2 (+FMA, F16C) and AVX-512 VNNI.
//!
//! Both sets share one shape:
//! - matmul: a *tile* function computes `G` row groups (4 rows each) × `T` tokens,
//!   decoding each weight block once per tile and sharing each activation block's
//!   work between the `G` groups, with the per-(row, token) sums in f32 vector
//!   accumulators. Tiles are 4×8 (AVX-512 Q4, Q8), 2×8 (AVX-512 Q4A, AVX2 Q4), 2×4
//!   (AVX2 Q4A) and 1×4 (AVX2 Q8). K is cut into chunks of 64 blocks with token
//!   tiles outside row groups, so the activation-side work of each block (offset
//!   sums, scale conversion: `Prep`) is done once per call into a stack buffer, not
//!   once per row group, and stays in L1.
//! - matvec: the 1×1 tile over one row group at a time, i.e. one sequential weight
//!   stream, or for long rows the 4×1 tile over four streams, one per quarter of the
//!   row groups (K chunks of 512 blocks).
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
use core::mem::MaybeUninit;
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
    gemm_f32: float::gemm_avx2::<f32>,
    gemm_f16b: float::gemm_avx2::<f16>,
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
    gemm_f32: float::gemm_avx512::<f32>,
    gemm_f16b: float::gemm_avx512::<f16>,
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

/// Blocks of K per matmul chunk (see the gemm driver in `gemm_kernels!`).
const GEMM_KC: usize = 64;
/// Widest matmul token tile (sizes the prepared-activation buffer: 10 KiB).
const GEMM_TMAX: usize = 8;

/// Blocks `k` of the `T` activation rows (of `nb` blocks each) from token `t0`.
#[inline]
fn token_rows<const T: usize>(
    x: &[BlockQ8],
    nb: usize,
    t0: usize,
    k: core::ops::Range<usize>,
) -> [&[BlockQ8]; T] {
    core::array::from_fn(|j| &x[(t0 + j) * nb..(t0 + j + 1) * nb][k.clone()])
}

/// Blocks `k` of the `G` row groups (of `nb` blocks each) from group `g0`.
#[inline]
fn group_rows<P, const G: usize>(
    w: &[P],
    nb: usize,
    g0: usize,
    k: core::ops::Range<usize>,
) -> [&[P]; G] {
    core::array::from_fn(|i| &w[(g0 + i) * nb..(g0 + i + 1) * nb][k.clone()])
}

/// Activation blocks prepared per gemv chunk (10 KiB of stack). Rows longer than
/// this are done in chunks, which makes the weight stream strided; the hardware
/// prefetchers follow that poorly (measured: 64-block chunks halved a cold matvec's
/// speed), so the chunk is as long as typical rows (K ≤ 16384).
const PREP_BLOCKS: usize = 512;

/// What a matvec precomputes once per activation block: its scale as f32 and 16
/// format-specific bytes (offset sums in the layout the kernel's products use).
#[derive(Clone, Copy)]
#[repr(C)]
struct Prep {
    /// Offset sums; their meaning depends on the kernel (see the `prep_*` functions).
    v: [u8; 16],
    /// `d_x` as f32.
    dx: f32,
    /// A second offset sum, for kernels whose matmul tile and matvec tile lay products
    /// out differently (AVX2 Q4: two i16 halves, see [`prep_q4_pairs`]; AVX-512 Q4:
    /// the whole block's `-8·Σx`, see [`prep_q4_quads`]); zero otherwise.
    c: i32,
}

impl Prep {
    /// (With F16C in the caller's features the scale converts in one instruction:
    /// `half`'s `to_f32` checks the CPU at run time on every call, and was 5% of a
    /// prefill's time when every kernel call prepared its activations through it.
    /// The `prep_*` functions stay out of line: inlined into the gemm, they made its
    /// tile loop ~20% slower in `cargo bench -p hearth-quant`.)
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    fn new(v: [u8; 16], xb: &BlockQ8) -> Prep {
        let h = _mm_cvtsi32_si128(i32::from(xb.d.to_bits()));
        Prep {
            v,
            dx: _mm_cvtss_f32(_mm_cvtph_ps(h)),
            c: 0,
        }
    }
}

/// A stack buffer for up to `N` [`Prep`]s of which only the prefix in use is ever
/// written: zeroing all of it (12 KiB) on every call was ~1% of a one-thread decode step,
/// and a matvec cut into tasks pays it once per task.
struct PrepBuf<const N: usize> {
    slots: [MaybeUninit<Prep>; N],
    /// The first `len` slots are initialized.
    len: usize,
}

impl<const N: usize> PrepBuf<N> {
    fn new() -> Self {
        Self {
            slots: [const { MaybeUninit::uninit() }; N],
            len: 0,
        }
    }

    /// Prepare `xs` (at most `N` blocks) with `f` into the buffer, replacing what it held.
    #[inline]
    fn fill(&mut self, xs: &[BlockQ8], f: impl Fn(&BlockQ8) -> Prep) {
        for (slot, xb) in self.slots[..xs.len()].iter_mut().zip(xs) {
            slot.write(f(xb));
        }
        self.len = xs.len();
    }

    /// The prepared blocks of the last [`PrepBuf::fill`].
    #[inline]
    fn as_slice(&self) -> &[Prep] {
        // SAFETY: the first `len` slots were written by `fill` (`len ≤ N`: the slice
        // indexing there would have panicked otherwise), and `MaybeUninit<Prep>` has
        // the layout of `Prep`.
        unsafe { core::slice::from_raw_parts(self.slots.as_ptr().cast::<Prep>(), self.len) }
    }
}

/// `Σ (x[k] + x[16 + k])` for `k` in each of `P` equal slices of `0..16` (`P` divides
/// 8): the per-lane partial sums of Σx in the layouts where lane position `j` covers
/// values `16/P·j ..` of both halves. (Vectorized: every matmul task prepares its
/// activations, so this runs once per block, token and task.)
#[target_feature(enable = "avx2,f16c")]
#[inline]
fn half_sums<const P: usize>(xb: &BlockQ8) -> [i32; P] {
    let x = load256(qs_bytes(xb));
    let lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(x));
    let hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(x));
    // i32 lane m = s[2m] + s[2m + 1], with s[k] = x[k] + x[16 + k] (exact in i16).
    let pairs = _mm256_madd_epi16(_mm256_add_epi16(lo, hi), _mm256_set1_epi16(1));
    let mut p = [0i32; 8];
    // SAFETY: `p` is 8 writable i32; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(p.as_mut_ptr().cast(), pairs) };
    let w = 8 / P;
    core::array::from_fn(|j| p[j * w..(j + 1) * w].iter().sum())
}

/// Prep with only the scale.
#[target_feature(enable = "avx2,f16c")]
#[inline(never)]
fn prep_scale(xb: &BlockQ8) -> Prep {
    Prep::new([0; 16], xb)
}

/// `k·Σx` per i32 lane position (4 values of each half), the initial accumulator of
/// `dpbusd` in the quad layout; and the whole block's `k·Σx` (`c`) for the matmul tile,
/// whose lanes hold whole rows.
#[target_feature(enable = "avx2,f16c")]
#[inline]
fn prep_offset_quads(xb: &BlockQ8, k: i32) -> Prep {
    let quads = half_sums::<4>(xb).map(|s| k * s);
    let mut p = Prep::new(bytemuck::cast(quads), xb);
    p.c = quads.iter().sum();
    p
}

/// AVX-512 Q4: the offset `-8·Σx` (at most 8·32·128 in magnitude).
#[target_feature(enable = "avx2,f16c")]
#[inline(never)]
fn prep_q4_quads(xb: &BlockQ8) -> Prep {
    prep_offset_quads(xb, -8)
}

/// AVX-512 Q8 (weights biased by +128): the offset `-128·Σx` (at most 128·32·128 in
/// magnitude).
#[target_feature(enable = "avx2,f16c")]
#[inline(never)]
fn prep_q8_quads(xb: &BlockQ8) -> Prep {
    prep_offset_quads(xb, -128)
}

/// AVX-512 Q4A: Σx per i32 lane position, as f32.
#[target_feature(enable = "avx2,f16c")]
#[inline(never)]
fn prep_q4a_quads(xb: &BlockQ8) -> Prep {
    Prep::new(bytemuck::cast(half_sums::<4>(xb).map(|s| s as f32)), xb)
}

/// AVX2 Q4: `8·Σx` per i16 pair position (2 values of each half), subtracted from
/// `maddubs`' pair sums (at most 8·4·128 = 4096: fits i16) by the matvec tile; and for
/// the matmul tile (one i32 lane per row, activations broadcast 4 values at a time),
/// `-8·Σx` over the values `≡ 0, 1 (mod 4)` and over those `≡ 2, 3`: the two i16
/// halves of each lane (at most 8·16·128 = 16384 in magnitude: fits i16).
#[target_feature(enable = "avx2,f16c")]
#[inline(never)]
fn prep_q4_pairs(xb: &BlockQ8) -> Prep {
    let mut p = Prep::new(
        bytemuck::cast(half_sums::<8>(xb).map(|s| (8 * s) as i16)),
        xb,
    );
    let mut c = [0i32; 2];
    for (i, &v) in xb.qs.iter().enumerate() {
        c[(i / 2) % 2] += i32::from(v);
    }
    p.c = bytemuck::cast(c.map(|s| (-8 * s) as i16));
    p
}

/// AVX2 Q4A: Σx over values 0..8 and 8..16 of both halves, as `[A, B, A, B]` f32 —
/// the positions of each row's two partial sums in `dot_nibbles`' layout.
#[target_feature(enable = "avx2,f16c")]
#[inline(never)]
fn prep_q4a_pairs(xb: &BlockQ8) -> Prep {
    let [a, b] = half_sums::<2>(xb).map(|s| s as f32);
    Prep::new(bytemuck::cast([a, b, a, b]), xb)
}

/// Row groups the matvec reads side by side when rows are long, each from its own part
/// of the matrix. With one stream, each row group reads the whole activation row and its
/// [`Prep`] from L1 (66 bytes per block beside the weights' 72 (Q4)), and at K ≥ 8192
/// (≥ 17 KiB of them) they compete with the streamed weights for L1 and the bandwidth
/// falls (cold Q4 matvecs of 9.4 MB, AVX-512 VNNI, one stream: K = 1024 and 4096
/// 20–23 GB/s, K = 8192 16–19, K = 16384 14–16). A tile of 4 groups from 4 streams
/// reads each activation block once per 4 groups: K = 8192 and 16384 then run at
/// 20–22 GB/s (BENCHMARKS.md, "Four weight streams").
const GEMV_STREAMS: usize = 4;

/// Rows of more than this many blocks (K > 4096) take [`GEMV_STREAMS`] streams. Short
/// rows lose by it (measured: a 576×1536 Q8 matvec fell from ~25 to ~17 GB/s; each
/// call starts four streams instead of continuing one), K = 4096 was even.
const GEMV_STREAMS_ABOVE_BLOCKS: usize = 128;

/// Prefetch distances per weight stream: the matmul tiles (several tokens) reread each
/// block from L1 for every token, so ~1 KiB ahead keeps up; a one-token tile streams
/// at memory speed and prefetches 4 KiB ahead (≈ DRAM latency × bandwidth).
const GEMM_PREFETCH: usize = 1024;
const GEMV_PREFETCH: usize = 4096;

/// Prefetch for one weight stream of a `G × T` tile (`one_token`: `T == 1`): `ahead`
/// bytes past block `kb`.
#[inline]
fn prefetch<P>(blocks: &[P], kb: usize, one_token: bool) {
    let ahead = if one_token {
        GEMV_PREFETCH
    } else {
        GEMM_PREFETCH
    };
    let p = blocks
        .as_ptr()
        .wrapping_add(kb)
        .cast::<i8>()
        .wrapping_add(ahead);
    // SAFETY: a prefetch is only a hint: it never faults or reads into the program,
    // whatever the address (the pointer is never dereferenced).
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p) };
}

/// Check a tile's slices: every group, token row and prep row has the same number of
/// blocks.
#[inline]
fn tile_len<P, const G: usize, const T: usize>(
    wg: &[&[P]; G],
    xs: &[&[BlockQ8]; T],
    ps: &[&[Prep]; T],
) -> usize {
    let nb = wg.first().map_or(0, |w| w.len());
    assert!(wg.iter().all(|w| w.len() == nb));
    assert!(xs.iter().all(|x| x.len() == nb) && ps.iter().all(|p| p.len() == nb));
    nb
}

/// A tile's results: `out[g][r][t]` = row `r` of group `g`, token `t` (each row's `T`
/// tokens side by side, as they go into `y`).
type TileOut<const G: usize, const T: usize> = [[[f32; T]; ROWS]; G];

/// Set token `t` of group `g`'s four rows in a tile's results.
#[inline(always)]
fn set_token<const G: usize, const T: usize>(
    out: &mut TileOut<G, T>,
    g: usize,
    t: usize,
    rows: [f32; ROWS],
) {
    for (o, v) in out[g].iter_mut().zip(rows) {
        o[t] = v;
    }
}

/// Write a tile's results (group `g0 + g`, token `t0 + t`) into `y[row * n + t]`, or add
/// them there (`accumulate`: a later K chunk): one run of `T` outputs per row.
#[inline]
fn store_tile<const G: usize, const T: usize>(
    out: &TileOut<G, T>,
    y: &mut [f32],
    n: usize,
    g0: usize,
    t0: usize,
    accumulate: bool,
) {
    for (g, rows) in out.iter().enumerate() {
        for (r, v) in rows.iter().enumerate() {
            let o = &mut y[((g0 + g) * ROWS + r) * n + t0..][..T];
            if accumulate {
                for (o, v) in o.iter_mut().zip(v) {
                    *o += v;
                }
            } else {
                o.copy_from_slice(v);
            }
        }
    }
}

/// Define a gemm kernel and its gemv over a tile function `$tile::<G, T>` (`G` row
/// groups × `T` tokens, returning a [`TileOut`]).
///
/// The matvec uses `$vtile`, a tile whose rows do not depend on each other (the narrow
/// one), one group at a time or one group from each of [`GEMV_STREAMS`] streams (see
/// the matvec's doc). The matmul walks row groups `$gm` at a time in the outer loop and
/// tokens `T = 1..=$tm` at a time inside, so a group's weights (`nb` packed blocks, a
/// few KiB) stay in L1/L2 while every token passes over them: weights are read from
/// memory once per call.
macro_rules! gemm_kernels {
    (
        features = $feat:literal,
        block = $P:ty,
        tile = $tile:ident,
        prep = $prep:path,
        gemm_groups = $gm:literal,
        gemm_tokens = [$($t:literal),+],
        gemv = $gemv:ident,
        gemv_tile = $vtile:ident,
        gemm = $gemm:ident $(,)?
    ) => {
        /// Packed matrix × `n` activation rows, `y[row * n + t]`.
        ///
        /// # Safety
        /// The CPU supports this set's features (see the `target_feature` attribute),
        /// and the shapes follow [`crate::dispatch::GemmFn`]: `x.len() == n * nb`,
        /// `w.len() == y.len() / (4 * n) * nb`, `n > 0`. (Shapes are also asserted.)
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $gemm(w: &[$P], nb: usize, x: &[BlockQ8], n: usize, y: &mut [f32]) {
            let groups = super::check_gemm(w.len(), nb, x.len(), n, y.len());
            if nb == 0 {
                y.fill(0.0);
                return;
            }
            let tmax = [$($t),+].into_iter().max().unwrap_or(1);
            assert!(tmax <= super::GEMM_TMAX);
            // K is cut into chunks of GEMM_KC blocks; within a chunk, token tiles are
            // the outer loop: a tile's activations are prepared once ([`super::Prep`])
            // and stay in L1 while every row group passes over them. Chunk results
            // add up in `y`.
            let mut prep: [super::PrepBuf<{ super::GEMM_KC }>; super::GEMM_TMAX] =
                core::array::from_fn(|_| super::PrepBuf::new());
            let mut k0 = 0;
            while k0 < nb {
                let k1 = (k0 + super::GEMM_KC).min(nb);
                let mut t0 = 0;
                while t0 < n {
                    let tc = (n - t0).min(tmax);
                    for (j, pj) in prep.iter_mut().enumerate().take(tc) {
                        pj.fill(&x[(t0 + j) * nb..(t0 + j + 1) * nb][k0..k1], |xb| $prep(xb));
                    }
                    let mut g0 = 0;
                    while g0 < groups {
                        let gc = if groups - g0 >= $gm { $gm } else { 1 };
                        // One arm per tile shape: each is its own monomorphised loop.
                        // (Some arms repeat others when a width is 1.)
                        #[allow(unreachable_patterns)]
                        match (gc, tc) {
                            (1, 1) => run_tile!($tile, 1, 1, w, nb, x, n, y, g0, t0, k0, k1, prep),
                            $(
                                ($gm, $t) => run_tile!($tile, $gm, $t, w, nb, x, n, y, g0, t0, k0, k1, prep),
                                (1, $t) => run_tile!($tile, 1, $t, w, nb, x, n, y, g0, t0, k0, k1, prep),
                            )+
                            _ => unreachable!("tile shape {gc}×{tc}"),
                        }
                        g0 += gc;
                    }
                    t0 += tc;
                }
                k0 = k1;
            }
        }

        /// Packed matrix × one activation row.
        ///
        /// The weights are one sequential stream (group after group), or for long rows
        /// [`super::GEMV_STREAMS`] streams, each over its own part of the row
        /// groups, in tiles of one group from each (`$vtile`, a tile whose rows do not
        /// depend on each other, so the bits are the same either way); the
        /// activation-side work of each block (offset sums,
        /// scale conversion) is done once per call into a stack buffer of
        /// [`super::PREP_BLOCKS`] blocks instead of once per row group. Longer rows are
        /// done in chunks of that many blocks, accumulated into `y`.
        ///
        /// # Safety
        /// The CPU supports this set's features, and the shapes follow
        /// [`crate::dispatch::GemvFn`]: `x.len() == nb`, `w.len() == y.len() / 4 * nb`,
        /// `y.len() % 4 == 0`. (Shapes are also asserted.)
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $gemv(w: &[$P], nb: usize, x: &[BlockQ8], y: &mut [f32]) {
            super::check_gemm(w.len(), nb, x.len(), 1, y.len());
            y.fill(0.0);
            if nb == 0 {
                return;
            }
            let mut prep = super::PrepBuf::<{ super::PREP_BLOCKS }>::new();
            let mut k0 = 0;
            while k0 < nb {
                let k1 = (k0 + super::PREP_BLOCKS).min(nb);
                let xc = &x[k0..k1];
                prep.fill(xc, |xb| $prep(xb));
                let pc = prep.as_slice();
                // Group `g`'s blocks `k0..k1`, and adding its rows' results into `y`.
                let groups = y.len() / ROWS;
                let group = |g: usize| &w[g * nb..(g + 1) * nb][k0..k1];
                let mut add = |g: usize, rows: [[f32; 1]; ROWS]| {
                    for (o, [v]) in y[g * ROWS..(g + 1) * ROWS].iter_mut().zip(rows) {
                        *o += v;
                    }
                };
                // Long rows: stream `s` walks groups `s·q..(s + 1)·q`. The groups left
                // over, or all groups of short rows, are one stream.
                const S: usize = super::GEMV_STREAMS;
                let q = if nb > super::GEMV_STREAMS_ABOVE_BLOCKS {
                    groups / S
                } else {
                    0
                };
                for i in 0..q {
                    let wg: [&[$P]; S] = core::array::from_fn(|s| group(s * q + i));
                    let out = $vtile::<S, 1>(&wg, &[xc], &[&*pc]);
                    for (s, rows) in out.into_iter().enumerate() {
                        add(s * q + i, rows);
                    }
                }
                for g in S * q..groups {
                    let [rows] = $vtile::<1, 1>(&[group(g)], &[xc], &[&*pc]);
                    add(g, rows);
                }
                k0 = k1;
            }
        }
    };
}

/// Define a matmul tile `$mm::<G, T>` (same signature as the tiles it picks from) that
/// runs `$wide` when the tile is `$width` row groups and `$narrow` otherwise (a
/// matrix's last groups). The matvec calls the narrow tile itself.
macro_rules! wide_tile {
    (
        features = $feat:literal,
        name = $mm:ident,
        block = $P:ty,
        width = $width:literal,
        wide = $wide:ident,
        narrow = $narrow:ident $(,)?
    ) => {
        #[target_feature(enable = $feat)]
        fn $mm<const G: usize, const T: usize>(
            wg: &[&[$P]; G],
            xs: &[&[crate::block::BlockQ8]; T],
            ps: &[&[super::Prep]; T],
        ) -> super::TileOut<G, T> {
            match <&[&[$P]; $width]>::try_from(wg.as_slice()) {
                // `G == $width`: the same array, retyped.
                Ok(w) => {
                    let out = $wide(w, xs, ps);
                    core::array::from_fn(|g| out[g % $width])
                }
                Err(_) => $narrow(wg, xs, ps),
            }
        }
    };
}

macro_rules! run_tile {
    ($tile:ident, $g:literal, $t:literal, $w:expr, $nb:expr, $x:expr, $n:expr, $y:expr, $g0:expr, $t0:expr, $k0:expr, $k1:expr, $prep:expr) => {{
        let ws = super::group_rows::<_, $g>($w, $nb, $g0, $k0..$k1);
        let xs = super::token_rows::<$t>($x, $nb, $t0, $k0..$k1);
        let ps: [&[super::Prep]; $t] = core::array::from_fn(|j| $prep[j].as_slice());
        let out = $tile::<$g, $t>(&ws, &xs, &ps);
        super::store_tile(&out, $y, $n, $g0, $t0, $k0 > 0);
    }};
}

// Declared after the macros so they are in (textual) scope there.
mod avx2;
mod avx512;
mod float;

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
