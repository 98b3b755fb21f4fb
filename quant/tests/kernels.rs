//! Property tests of every kernel set this CPU runs against the scalar reference,
//! through the safe API only. Architecture-independent: the sets come from
//! `arch::available()` and `Kernels::detect()` (so `HEARTH_KERNELS=…` forces one).
//!
//! Tolerance for the matrix kernels (derivation): every kernel computes each block's
//! integer dot product exactly, then does a few f32 roundings per block (the scale
//! product, the scaled term, the accumulation) and sums at most `4·nb` partial terms
//! per output (the SIMD kernels keep 2 or 4 partial sums per row and add them at the
//! end). By the standard recursive-summation bound, each side is within
//! `γ_k · T` of the exact value, with `k ≤ 2·nb + 8`, `γ_k ≈ k·u`, `u = 2⁻²⁴`, and
//! `T = Σ_blocks (|d_w·d_x|·Σ_i |q_w,i·q_x,i| + |m_w·d_x|·Σ_i |q_x,i|)` the sum of the
//! magnitudes of all terms (`q_w` is `q - 8` for Q4, the unsigned nibble for Q4A, and
//! the `m` part is Q4A's only). So we check
//! `|simd - scalar| ≤ (4·nb + 16)·2⁻²⁴·T + f32::MIN_POSITIVE`.
//!
//! The activation quantizer must be byte-identical to the reference.
use half::f16;
use hearth_quant::dispatch::PackedData;
use hearth_quant::packed::{groups, pack_matrix, packed_row_block};
use hearth_quant::quantize::{
    dequantize_block_q4, dequantize_block_q4a, dequantize_row_q8, quantize_block_q4,
    quantize_block_q4a, quantize_row_q8, quantize_row_q8_weights,
};
use hearth_quant::{
    BlockQ4, BlockQ4A, BlockQ4Ax4, BlockQ4x4, BlockQ8, BlockQ8x4, KernelSetName, Kernels,
    PackedMatrix, QuantError, QK,
};
use proptest::prelude::*;

// ---------------------------------------------------------------- kernel sets

/// Every non-scalar set to compare with the reference: the supported ones, plus the
/// one `HEARTH_KERNELS` forces (which `detect` only returns if supported).
fn sets_under_test() -> Vec<&'static Kernels> {
    let mut v: Vec<&'static Kernels> = hearth_quant::arch::available().to_vec();
    if let Ok(k) = Kernels::detect() {
        if !v.iter().any(|s| s.name() == k.name()) {
            v.push(k);
        }
    }
    v.retain(|k| k.name() != KernelSetName::Scalar);
    v
}

fn scalar() -> &'static Kernels {
    Kernels::get(KernelSetName::Scalar).expect("scalar is always available")
}

// ---------------------------------------------------------------- strategies

/// f16 scales: zero, subnormal, tiny, ordinary, large, and any finite bit pattern,
/// with either sign.
fn scale() -> impl Strategy<Value = f16> + Clone {
    let magnitude = prop_oneof![
        1 => Just(0u16),
        2 => 1u16..0x0400,                                  // subnormal
        4 => (0.001f32..2.0).prop_map(|v| f16::from_f32(v).to_bits()),
        2 => (1000.0f32..65504.0).prop_map(|v| f16::from_f32(v).to_bits()),
        3 => 0u16..0x7C00,                                  // any finite
    ];
    (any::<bool>(), magnitude).prop_map(|(neg, m)| f16::from_bits(m | (u16::from(neg) << 15)))
}

/// 32 quants in `lo..=127`: random, all zero, all ±127, or mostly extremes.
fn quants(lo: i8) -> impl Strategy<Value = [i8; QK]> + Clone {
    let ext = move || prop_oneof![Just(lo.max(-127)), Just(127i8)];
    prop_oneof![
        4 => prop::array::uniform32(lo..=127i8),
        1 => Just([0i8; QK]),
        1 => prop::array::uniform32(ext()),
        2 => prop::array::uniform32(prop_oneof![lo..=127i8, ext(), Just(0i8)]),
    ]
}

/// Activation blocks: the whole i8 range (the quantizer can emit -128 in corner cases).
fn act_block() -> impl Strategy<Value = BlockQ8> + Clone {
    (scale(), quants(i8::MIN)).prop_map(|(d, qs)| BlockQ8 { d, qs })
}

/// Q8 weight blocks: -127..=127, the quantizers' range (see `arch::x86`'s docs).
fn q8_block() -> impl Strategy<Value = BlockQ8> + Clone {
    (scale(), quants(-127)).prop_map(|(d, qs)| BlockQ8 { d, qs })
}

/// 16 nibble bytes: random, all "zero" for Q4 (0x88), all 0, all 15.
fn nibble_bytes() -> impl Strategy<Value = [u8; 16]> + Clone {
    prop_oneof![
        4 => prop::array::uniform16(any::<u8>()),
        1 => Just([0x88u8; 16]),
        1 => Just([0u8; 16]),
        1 => Just([0xFFu8; 16]),
    ]
}

fn q4_block() -> impl Strategy<Value = BlockQ4> + Clone {
    (scale(), nibble_bytes()).prop_map(|(d, qs)| BlockQ4 { d, qs })
}

fn q4a_block() -> impl Strategy<Value = BlockQ4A> + Clone {
    (scale(), scale(), nibble_bytes()).prop_map(|(d, m, qs)| BlockQ4A { d, m, qs })
}

/// Largest row count and K (in blocks) of [`problem`].
const MAX_ROWS: usize = 37;
const MAX_NB: usize = 20;

/// A weight matrix shape (rows 1..=37, so often not a multiple of 4, and up to 10
/// row groups: every kernel's widest row tile, 4 groups, and the groups left after it;
/// K = 32·nb with nb 1..=20), its blocks, and `n` activation rows.
fn problem<B: std::fmt::Debug + Clone>(
    block: impl Strategy<Value = B> + Clone,
    max_tokens: usize,
) -> impl Strategy<Value = (usize, usize, usize, Vec<B>, Vec<BlockQ8>)> {
    (1usize..=MAX_ROWS, 1usize..=MAX_NB, 1usize..=max_tokens).prop_flat_map(move |(rows, nb, n)| {
        (
            Just(rows),
            Just(nb),
            Just(n),
            prop::collection::vec(block.clone(), rows * nb),
            prop::collection::vec(act_block(), n * nb),
        )
    })
}

// ---------------------------------------------------------------- reference magnitudes

/// Per-block, per-format magnitude terms for the tolerance `T` (see the module docs).
trait Magnitude {
    fn magnitude(&self, x: &BlockQ8) -> f64;
}

fn qx(x: &BlockQ8, i: usize) -> f64 {
    f64::from(x.qs[i])
}

impl Magnitude for BlockQ8 {
    fn magnitude(&self, x: &BlockQ8) -> f64 {
        let s: f64 = (0..QK)
            .map(|i| (f64::from(self.qs[i]) * qx(x, i)).abs())
            .sum();
        (f64::from(self.d.to_f32()) * f64::from(x.d.to_f32())).abs() * s
    }
}

impl Magnitude for BlockQ4 {
    fn magnitude(&self, x: &BlockQ8) -> f64 {
        let s: f64 = (0..QK)
            .map(|i| ((f64::from(self.nibble(i)) - 8.0) * qx(x, i)).abs())
            .sum();
        (f64::from(self.d.to_f32()) * f64::from(x.d.to_f32())).abs() * s
    }
}

impl Magnitude for BlockQ4A {
    fn magnitude(&self, x: &BlockQ8) -> f64 {
        let s: f64 = (0..QK)
            .map(|i| (f64::from(self.nibble(i)) * qx(x, i)).abs())
            .sum();
        let sx: f64 = (0..QK).map(|i| qx(x, i).abs()).sum();
        let dx = f64::from(x.d.to_f32());
        (f64::from(self.d.to_f32()) * dx).abs() * s + (f64::from(self.m.to_f32()) * dx).abs() * sx
    }
}

/// A weight matrix (`rows × nb` single-row blocks) and its activation rows.
struct Case<'a, B> {
    w: &'a [B],
    x: &'a [BlockQ8],
    rows: usize,
    nb: usize,
}

impl<B: Magnitude> Case<'_, B> {
    /// Assert `got` matches `want` (both `y[row * n + t]`, for the first `n` tokens)
    /// within the documented bound.
    fn assert_close(
        &self,
        set: KernelSetName,
        what: &str,
        n: usize,
        got: &[f32],
        want: &[f32],
    ) -> Result<(), TestCaseError> {
        let (rows, nb) = (self.rows, self.nb);
        let u = f64::from(f32::EPSILON) / 2.0;
        for r in 0..rows {
            for t in 0..n {
                let mag: f64 = (0..nb)
                    .map(|kb| self.w[r * nb + kb].magnitude(&self.x[t * nb + kb]))
                    .sum();
                let tol = (4 * nb + 16) as f64 * u * mag + f64::from(f32::MIN_POSITIVE);
                let (g, e) = (got[r * n + t], want[r * n + t]);
                prop_assert!(
                    g.is_finite() && (f64::from(g) - f64::from(e)).abs() <= tol,
                    "{set:?} {what}: row {r} token {t}: got {g}, scalar {e}, tol {tol} (rows {rows}, nb {nb}, n {n})"
                );
            }
        }
        Ok(())
    }
}

/// Pack `w` (rows × nb single-row blocks), run gemv on token 0 and gemm on all `n`
/// tokens with every set, and compare with the scalar set.
macro_rules! check_format {
    ($P:ty, $variant:ident, $rows:expr, $nb:expr, $n:expr, $w:expr, $x:expr) => {{
        let (rows, nb, n, w, x): (usize, usize, usize, &[_], &[BlockQ8]) = ($rows, $nb, $n, $w, $x);
        let mut packed = vec![<$P as bytemuck::Zeroable>::zeroed(); groups(rows) * nb];
        pack_matrix::<$P>(w, rows, nb, &mut packed).unwrap();
        let m = PackedMatrix::new(rows, nb * QK, PackedData::$variant(&packed)).unwrap();
        let mut want_v = vec![0.0f32; rows];
        scalar().gemv(&m, &x[..nb], &mut want_v).unwrap();
        let mut want_m = vec![0.0f32; rows * n];
        scalar().gemm(&m, x, n, &mut want_m).unwrap();
        let case = Case { w, x, rows, nb };
        for k in sets_under_test() {
            let mut got = vec![f32::NAN; rows];
            k.gemv(&m, &x[..nb], &mut got).unwrap();
            case.assert_close(k.name(), "gemv", 1, &got, &want_v)?;
            let mut got = vec![f32::NAN; rows * n];
            k.gemm(&m, x, n, &mut got).unwrap();
            case.assert_close(k.name(), "gemm", n, &got, &want_m)?;
        }
    }};
}

proptest! {
    #[test]
    fn q8_matches_scalar((rows, nb, n, w, x) in problem(q8_block(), 20)) {
        check_format!(BlockQ8x4, Q8, rows, nb, n, &w, &x);
    }

    #[test]
    fn q4_matches_scalar((rows, nb, n, w, x) in problem(q4_block(), 20)) {
        check_format!(BlockQ4x4, Q4, rows, nb, n, &w, &x);
    }

    #[test]
    fn q4a_matches_scalar((rows, nb, n, w, x) in problem(q4a_block(), 20)) {
        check_format!(BlockQ4Ax4, Q4A, rows, nb, n, &w, &x);
    }

    /// The activation quantizer is byte-identical to the reference on ordinary values,
    /// exact ties, zeros, subnormals, huge values, infinities and NaN.
    #[test]
    fn quantize_q8_is_byte_identical(x in activation_rows()) {
        let nb = x.len() / QK;
        let mut want = vec![BlockQ8 { d: f16::ZERO, qs: [0; QK] }; nb];
        quantize_row_q8(&x, &mut want);
        for k in std::iter::once(scalar()).chain(sets_under_test()) {
            let mut got = vec![BlockQ8 { d: f16::from_f32(1.0), qs: [1; QK] }; nb];
            k.quantize_row_q8(&x, &mut got).unwrap();
            let (g, e): (&[u8], &[u8]) = (bytemuck::cast_slice(&got), bytemuck::cast_slice(&want));
            prop_assert_eq!(g, e, "{:?}", k.name());
        }
    }

    /// Pack then unpack gives the blocks back; padding rows of the last group are zero.
    #[test]
    fn pack_unpack_round_trip((rows, nb, _n, w, _x) in problem(q4a_block(), 1)) {
        let mut packed = vec![<BlockQ4Ax4 as bytemuck::Zeroable>::zeroed(); groups(rows) * nb];
        pack_matrix::<BlockQ4Ax4>(&w, rows, nb, &mut packed).unwrap();
        for r in 0..groups(rows) * 4 {
            for kb in 0..nb {
                let got = packed_row_block::<BlockQ4Ax4>(&packed, nb, r, kb);
                let want = if r < rows { w[r * nb + kb] } else { bytemuck::Zeroable::zeroed() };
                prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn pack_unpack_round_trip_q8_q4(
        (rows, nb, _n, w8, _x) in problem(q8_block(), 1),
        w4 in prop::collection::vec(q4_block(), MAX_ROWS * MAX_NB),
    ) {
        let mut p8 = vec![<BlockQ8x4 as bytemuck::Zeroable>::zeroed(); groups(rows) * nb];
        pack_matrix::<BlockQ8x4>(&w8, rows, nb, &mut p8).unwrap();
        let w4 = &w4[..rows * nb];
        let mut p4 = vec![<BlockQ4x4 as bytemuck::Zeroable>::zeroed(); groups(rows) * nb];
        pack_matrix::<BlockQ4x4>(w4, rows, nb, &mut p4).unwrap();
        for r in 0..rows {
            for kb in 0..nb {
                prop_assert_eq!(packed_row_block::<BlockQ8x4>(&p8, nb, r, kb), w8[r * nb + kb]);
                prop_assert_eq!(packed_row_block::<BlockQ4x4>(&p4, nb, r, kb), w4[r * nb + kb]);
            }
        }
    }

    /// Wrong lengths are errors, never panics, for every set.
    #[test]
    fn bad_lengths_are_errors(rows in 0usize..10, nb in 0usize..6, n in 1usize..5,
                              dx in 0usize..3, dy in 0usize..3, dcols in 1usize..32) {
        let packed = vec![<BlockQ4x4 as bytemuck::Zeroable>::zeroed(); groups(rows) * nb];
        let bad = PackedMatrix::new(rows, nb * QK + dcols, PackedData::Q4(&packed));
        prop_assert!(matches!(bad, Err(QuantError::NotBlockMultiple { .. })), "{:?}", bad);
        let m = PackedMatrix::new(rows, nb * QK, PackedData::Q4(&packed)).unwrap();
        let x = vec![BlockQ8 { d: f16::ZERO, qs: [0; QK] }; n * nb + dx];
        let mut y = vec![0.0f32; rows * n + dy];
        for k in std::iter::once(scalar()).chain(sets_under_test()) {
            let gemv = k.gemv(&m, &x[..(nb + dx).min(x.len())], &mut y[..rows + dy]);
            prop_assert_eq!(gemv.is_ok(), dx == 0 && dy == 0);
            let gemm = k.gemm(&m, &x, n, &mut y);
            prop_assert_eq!(gemm.is_ok(), dx == 0 && dy == 0);
            if dx + dy > 0 {
                prop_assert!(matches!(gemm, Err(QuantError::LengthMismatch { .. })), "{:?}", gemm);
            }
            let xs = vec![0.0f32; nb * QK + dcols];
            let mut q = vec![BlockQ8 { d: f16::ZERO, qs: [0; QK] }; nb];
            let res = k.quantize_row_q8(&xs, &mut q);
            prop_assert!(matches!(res, Err(QuantError::NotBlockMultiple { .. })), "{:?}", res);
            let xs = vec![0.0f32; (nb + dx) * QK];
            let res = k.quantize_row_q8(&xs, &mut q);
            prop_assert_eq!(res.is_ok(), dx == 0);
        }
    }
}

/// Long rows: the matvec kernels prepare activations in chunks of 256 blocks, so rows
/// of more than 256 blocks (K > 8192) take several chunks.
fn long_problem<B: std::fmt::Debug + Clone>(
    block: impl Strategy<Value = B> + Clone,
) -> impl Strategy<Value = (usize, usize, usize, Vec<B>, Vec<BlockQ8>)> {
    (
        1usize..=6,
        prop_oneof![Just(255usize), Just(256), Just(257), 500usize..=600],
    )
        .prop_flat_map(move |(rows, nb)| {
            (
                Just(rows),
                Just(nb),
                Just(2usize),
                prop::collection::vec(block.clone(), rows * nb),
                prop::collection::vec(act_block(), 2 * nb),
            )
        })
}

proptest! {
    // Few cases: each one is large.
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn long_rows_match_scalar((rows, nb, n, w, x) in long_problem(q4_block())) {
        check_format!(BlockQ4x4, Q4, rows, nb, n, &w, &x);
    }

    #[test]
    fn long_rows_match_scalar_q8((rows, nb, n, w, x) in long_problem(q8_block())) {
        check_format!(BlockQ8x4, Q8, rows, nb, n, &w, &x);
    }

    #[test]
    fn long_rows_match_scalar_q4a((rows, nb, n, w, x) in long_problem(q4a_block())) {
        check_format!(BlockQ4Ax4, Q4A, rows, nb, n, &w, &x);
    }
}

/// Rows of activations of 1..=20 blocks, mixing ordinary values with the corner cases
/// the SIMD quantizer must reproduce exactly.
fn activation_rows() -> impl Strategy<Value = Vec<f32>> {
    let value = prop_oneof![
        8 => -10.0f32..10.0,
        1 => Just(0.0f32),
        1 => Just(-0.0f32),
        1 => (1u32..0x0080_0000).prop_map(f32::from_bits),           // subnormal
        1 => -1e-36f32..1e-36,                                      // d becomes subnormal
        1 => -3e38f32..3e38,
        1 => prop_oneof![Just(f32::INFINITY), Just(f32::NEG_INFINITY), Just(f32::NAN)],
    ];
    // A block whose scale is exactly 1 (max 127), so `k + 0.5` are exact ties.
    let ties = prop::collection::vec(-127i32..127, QK - 1).prop_map(|ks| {
        let mut b = vec![127.0f32];
        b.extend(ks.iter().map(|&k| k as f32 + 0.5));
        b
    });
    let block = prop_oneof![
        4 => prop::collection::vec(value, QK),
        1 => prop::collection::vec(-1.0f32..1.0, QK),
        1 => ties,
        1 => Just(vec![0.0f32; QK]),
    ];
    prop::collection::vec(block, 1..=20).prop_map(|bs| bs.concat())
}

// ---------------------------------------------------------------- deterministic checks

/// A matrix of long rows (K > 4096: the x86 matvec then reads it as several streams,
/// one per part of its row groups) gives the scalar set's results within the bound, and
/// every set gives the same bits as when each row group is done alone (one stream).
macro_rules! check_long_row_gemv {
    ($P:ty, $variant:ident, $w:expr, $x:expr, $rows:expr, $nb:expr) => {{
        let (w, x, rows, nb) = ($w, $x, $rows, $nb);
        let mut packed = vec![<$P as bytemuck::Zeroable>::zeroed(); groups(rows) * nb];
        pack_matrix::<$P>(w, rows, nb, &mut packed).unwrap();
        let m = PackedMatrix::new(rows, nb * QK, PackedData::$variant(&packed)).unwrap();
        let mut want = vec![0.0f32; rows];
        scalar().gemv(&m, &x, &mut want).unwrap();
        let case = Case {
            w: &w,
            x: &x,
            rows,
            nb,
        };
        for k in sets_under_test() {
            let mut whole = vec![f32::NAN; rows];
            k.gemv(&m, x, &mut whole).unwrap();
            case.assert_close(k.name(), "long-row gemv", 1, &whole, &want)
                .unwrap();
            let mut parts = vec![f32::NAN; rows];
            for (g, y) in parts.chunks_mut(4).enumerate() {
                k.gemv(&m.row_groups(g, g + 1), x, y).unwrap();
            }
            let (a, b): (Vec<u32>, Vec<u32>) = (
                whole.iter().map(|v| v.to_bits()).collect(),
                parts.iter().map(|v| v.to_bits()).collect(),
            );
            assert!(a == b, "{:?}: gemv differs from its row groups'", k.name());
        }
    }};
}

/// Deterministic pseudo-random bytes (xorshift).
fn bytes(seed: u64) -> impl FnMut() -> u8 {
    let mut s = seed;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 24) as u8
    }
}

#[test]
fn long_row_gemv_matches_scalar_and_its_row_groups() {
    // 70 rows: 4 streams of 4 groups, a full group and a partial one left; K = 8192.
    let (rows, nb) = (70, 256);
    let mut b = bytes(7);
    let d = |b: &mut dyn FnMut() -> u8| f16::from_f32(f32::from(b()) / 256.0 + 0.01);
    let x: Vec<BlockQ8> = (0..nb)
        .map(|_| BlockQ8 {
            d: d(&mut b),
            qs: std::array::from_fn(|_| b() as i8),
        })
        .collect();
    let w: Vec<BlockQ4> = (0..rows * nb)
        .map(|_| BlockQ4 {
            d: d(&mut b),
            qs: std::array::from_fn(|_| b()),
        })
        .collect();
    check_long_row_gemv!(BlockQ4x4, Q4, &w[..], &x[..], rows, nb);
    let w: Vec<BlockQ8> = (0..rows * nb)
        .map(|_| BlockQ8 {
            d: d(&mut b),
            qs: std::array::from_fn(|_| (b() as i8).max(-127)),
        })
        .collect();
    check_long_row_gemv!(BlockQ8x4, Q8, &w[..], &x[..], rows, nb);
    let w: Vec<BlockQ4A> = (0..rows * nb)
        .map(|_| BlockQ4A {
            d: d(&mut b),
            m: d(&mut b),
            qs: std::array::from_fn(|_| b()),
        })
        .collect();
    check_long_row_gemv!(BlockQ4Ax4, Q4A, &w[..], &x[..], rows, nb);
}

#[test]
fn zero_columns_and_rows() {
    for k in std::iter::once(scalar()).chain(sets_under_test()) {
        // cols = 0: every output is an empty sum.
        let m = PackedMatrix::new(5, 0, PackedData::Q8(&[])).unwrap();
        let mut y = vec![f32::NAN; 5 * 3];
        k.gemm(&m, &[], 3, &mut y).unwrap();
        assert!(y.iter().all(|&v| v == 0.0), "{:?}", k.name());
        let mut y = vec![f32::NAN; 5];
        k.gemv(&m, &[], &mut y).unwrap();
        assert!(y.iter().all(|&v| v == 0.0), "{:?}", k.name());
        // rows = 0: nothing to write.
        let m = PackedMatrix::new(0, 64, PackedData::Q4(&[])).unwrap();
        let x = [BlockQ8 {
            d: f16::ONE,
            qs: [1; QK],
        }; 2];
        k.gemv(&m, &x, &mut []).unwrap();
        k.gemm(&m, &x, 1, &mut []).unwrap();
    }
}

#[test]
fn kernel_set_names_parse() {
    let all = [
        KernelSetName::Scalar,
        KernelSetName::Avx2,
        KernelSetName::Avx512Vnni,
        KernelSetName::Neon,
        KernelSetName::Dotprod,
    ];
    for name in all {
        assert_eq!(KernelSetName::parse(name.as_str()), Ok(name));
        assert_eq!(
            KernelSetName::parse(&format!("  {}\n", name.as_str())),
            Ok(name)
        );
    }
    for bad in ["", "AVX2", "avx", "sse4", "avx512", "neon dotprod"] {
        assert_eq!(
            KernelSetName::parse(bad),
            Err(QuantError::UnknownKernelSet),
            "{bad:?}"
        );
    }
}

#[test]
fn get_supported_and_unsupported() {
    let avail: Vec<KernelSetName> = hearth_quant::arch::available()
        .iter()
        .map(|k| k.name())
        .collect();
    for name in [
        KernelSetName::Scalar,
        KernelSetName::Avx2,
        KernelSetName::Avx512Vnni,
        KernelSetName::Neon,
        KernelSetName::Dotprod,
    ] {
        match Kernels::get(name) {
            Ok(k) => {
                assert_eq!(k.name(), name);
                assert!(name == KernelSetName::Scalar || avail.contains(&name));
            }
            Err(e) => {
                assert!(!avail.contains(&name) && name != KernelSetName::Scalar);
                assert_eq!(
                    e,
                    QuantError::Unsupported {
                        requested: name.as_str()
                    }
                );
            }
        }
    }
    // Sets of the other architecture are never available.
    #[cfg(target_arch = "x86_64")]
    assert!(
        Kernels::get(KernelSetName::Neon).is_err() && Kernels::get(KernelSetName::Dotprod).is_err()
    );
    #[cfg(target_arch = "aarch64")]
    assert!(
        Kernels::get(KernelSetName::Avx2).is_err()
            && Kernels::get(KernelSetName::Avx512Vnni).is_err()
    );
    // `best` is the first available set.
    assert_eq!(
        Kernels::best().name(),
        avail.first().copied().unwrap_or(KernelSetName::Scalar)
    );
}

#[test]
fn detect_honours_hearth_kernels() {
    match std::env::var("HEARTH_KERNELS") {
        Ok(v) if !v.trim().is_empty() => match KernelSetName::parse(&v) {
            Ok(name) => match Kernels::detect() {
                Ok(k) => assert_eq!(k.name(), name),
                Err(e) => assert_eq!(
                    e,
                    QuantError::Unsupported {
                        requested: name.as_str()
                    }
                ),
            },
            Err(_) => assert_eq!(Kernels::detect().unwrap_err(), QuantError::UnknownKernelSet),
        },
        _ => assert_eq!(Kernels::detect().unwrap().name(), Kernels::best().name()),
    }
}

/// On x86-64 machines with AVX2 (every CI runner), the SIMD sets are really tested.
#[cfg(all(target_arch = "x86_64", feature = "std"))]
#[test]
fn x86_sets_follow_cpu_features() {
    let avail: Vec<KernelSetName> = hearth_quant::arch::available()
        .iter()
        .map(|k| k.name())
        .collect();
    let avx2 = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    let vnni = avx2
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni");
    assert_eq!(avail.contains(&KernelSetName::Avx2), avx2);
    assert_eq!(avail.contains(&KernelSetName::Avx512Vnni), vnni);
    if vnni {
        assert_eq!(avail[0], KernelSetName::Avx512Vnni, "best first");
    }
}

// ---------------------------------------------------------------- quantization error

/// Gaussian samples (Box–Muller over a SplitMix64 stream: deterministic per seed).
fn gaussian(seed: u64, n: usize, sigma: f32) -> Vec<f32> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (next().max(f64::MIN_POSITIVE), next());
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32 * sigma
        })
        .collect()
}

fn rmse(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    (s / a.len() as f64).sqrt()
}

/// Round-trip RMSE on N(0, σ²) weights, relative to σ. Expected (uniform rounding
/// error, step/√12, with a block's max |x| ≈ 2–2.5σ for 32 samples):
/// Q8 step ≈ 2.2σ/127 → ≈ 0.005σ; Q4 step ≈ 2.2σ/8 → ≈ 0.08σ (the least-squares
/// search does a bit better); Q4A step ≈ 4.2σ/15 → ≈ 0.08σ. Bounds: Q8 ≤ 0.008σ,
/// Q4 ≤ 0.10σ, Q4A ≤ 0.10σ; each quantized value is also within half a step (plus the
/// f16 rounding of the scale) of the original.
#[test]
fn quantization_round_trip_error_on_gaussian_weights() {
    for (seed, sigma) in [(1u64, 1.0f32), (2, 0.02), (3, 300.0)] {
        let x = gaussian(seed, 32 * 512, sigma);
        let nb = x.len() / QK;
        let s = f64::from(sigma);

        let mut q8 = vec![
            BlockQ8 {
                d: f16::ZERO,
                qs: [0; QK]
            };
            nb
        ];
        let mut back = vec![0.0f32; x.len()];
        quantize_row_q8(&x, &mut q8);
        dequantize_row_q8(&q8, &mut back);
        let e8 = rmse(&x, &back) / s;
        quantize_row_q8_weights(&x, &mut q8);
        dequantize_row_q8(&q8, &mut back);
        let e8w = rmse(&x, &back) / s;

        let mut b4 = vec![0.0f32; x.len()];
        let mut b4a = vec![0.0f32; x.len()];
        for (kb, c) in x.chunks_exact(QK).enumerate() {
            let c: &[f32; QK] = c.try_into().unwrap();
            let o4: &mut [f32; QK] = (&mut b4[kb * QK..(kb + 1) * QK]).try_into().unwrap();
            let q = quantize_block_q4(c);
            dequantize_block_q4(&q, o4);
            let o4a: &mut [f32; QK] = (&mut b4a[kb * QK..(kb + 1) * QK]).try_into().unwrap();
            let qa = quantize_block_q4a(c);
            dequantize_block_q4a(&qa, o4a);
            // Q4A: within half a step of the original (plus f16 rounding of d, m).
            let (d, m) = (f64::from(qa.d.to_f32()), f64::from(qa.m.to_f32()));
            for i in 0..QK {
                let err = (f64::from(c[i]) - f64::from(o4a[i])).abs();
                assert!(
                    err <= 0.5 * d + 2e-3 * (d * 15.0 + m.abs()) + 1e-30,
                    "Q4A value {i}: err {err}, d {d}"
                );
            }
        }
        let e4 = rmse(&x, &b4) / s;
        let e4a = rmse(&x, &b4a) / s;
        eprintln!("sigma {sigma}: q8 {e8:.5} q8w {e8w:.5} q4 {e4:.4} q4a {e4a:.4}");
        assert!(e8 <= 0.008, "Q8 activations: RMSE {e8}σ");
        assert!(e8w <= 0.008, "Q8 weights: RMSE {e8w}σ");
        assert!(e4 <= 0.10, "Q4: RMSE {e4}σ");
        assert!(e4a <= 0.10, "Q4A: RMSE {e4a}σ");
        // Sanity: the formats are ordered as their bit widths say.
        assert!(e8 < e4 && e8 < e4a);
    }
}
