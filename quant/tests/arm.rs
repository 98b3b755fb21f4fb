//! ARM kernel sets against the scalar reference, through the safe API, plus runtime
//! detection. Runs under qemu-user (`scripts/test-cross`): on aarch64,
//! `QEMU_CPU=cortex-a72` exercises NEON only and `QEMU_CPU=max` adds dotprod; on armv7
//! no SIMD set exists, and the same properties check the scalar kernels against an
//! exact f64 reference on a 32-bit target.
//!
//! Exactness: the NEON and dotprod sets are bit-exact with the scalar reference (each
//! row's blocks summed in order, the same float operations, no FMA; see
//! `arch/arm/common.rs`), so their outputs are compared bit for bit. A one-ulp drift
//! there once changed SmolLM2's greedy output on aarch64. The scalar reference itself
//! is checked against an exact f64 sum with a tolerance: per block its integer dot
//! product is exact, and each f32 scaling or summing step errs by at most 2⁻²⁴ of the
//! magnitude it carries, so `|scalar - exact| <= 1e-5 · Σ|block terms|`.
#![cfg(any(target_arch = "aarch64", target_arch = "arm"))]

use bytemuck::Zeroable;
use half::f16;
use hearth_quant::dispatch::PackedData;
use hearth_quant::packed::{groups, pack_matrix};
use hearth_quant::{
    BlockQ4, BlockQ4A, BlockQ4Ax4, BlockQ4x4, BlockQ8, BlockQ8x4, KernelSetName, Kernels,
    PackedBlock, PackedMatrix, QuantError, QK,
};
use proptest::prelude::*;

const REL_TOL: f64 = 1e-5;

fn scalar() -> &'static Kernels {
    Kernels::get(KernelSetName::Scalar).expect("scalar is always available")
}

/// The ARM SIMD sets this CPU runs (never empty on aarch64: NEON is mandatory; always
/// empty on armv7).
fn arm_sets() -> &'static [&'static Kernels] {
    hearth_quant::arch::available()
}

// ---------------------------------------------------------------- detection

/// `available()` agrees with the CPU's HWCAP as std sees it, best set first.
#[cfg(target_arch = "aarch64")]
#[test]
fn available_matches_cpu_features() {
    let dot = std::arch::is_aarch64_feature_detected!("dotprod");
    let names: Vec<KernelSetName> = arm_sets().iter().map(|k| k.name()).collect();
    eprintln!("dotprod detected: {dot}; available: {names:?}");
    let expected = if dot {
        vec![KernelSetName::Dotprod, KernelSetName::Neon]
    } else {
        vec![KernelSetName::Neon]
    };
    assert_eq!(names, expected);
    assert_eq!(Kernels::best().name(), expected[0]);
    assert_eq!(
        Kernels::get(KernelSetName::Neon).map(|k| k.name()),
        Ok(KernelSetName::Neon)
    );
    let got = Kernels::get(KernelSetName::Dotprod).map(|k| k.name());
    if dot {
        assert_eq!(got, Ok(KernelSetName::Dotprod));
    } else {
        assert_eq!(
            got,
            Err(QuantError::Unsupported {
                requested: "dotprod"
            })
        );
    }
    for x86 in [KernelSetName::Avx2, KernelSetName::Avx512Vnni] {
        assert_eq!(
            Kernels::get(x86).map(|k| k.name()),
            Err(QuantError::Unsupported {
                requested: x86.as_str()
            })
        );
    }
}

/// `scripts/test-cross` says which CPU it asked qemu for (`HEARTH_TEST_EXPECT_DOTPROD`
/// = 0 or 1), so a qemu that ignored `QEMU_CPU` would fail here.
#[cfg(target_arch = "aarch64")]
#[test]
fn qemu_cpu_is_honoured() {
    let Ok(want) = std::env::var("HEARTH_TEST_EXPECT_DOTPROD") else {
        eprintln!("HEARTH_TEST_EXPECT_DOTPROD unset: nothing to check");
        return;
    };
    let want = match want.trim() {
        "1" => true,
        "0" => false,
        other => panic!("HEARTH_TEST_EXPECT_DOTPROD must be 0 or 1, got {other:?}"),
    };
    assert_eq!(std::arch::is_aarch64_feature_detected!("dotprod"), want);
    assert_eq!(
        arm_sets()
            .iter()
            .any(|k| k.name() == KernelSetName::Dotprod),
        want
    );
}

/// armv7 (32-bit Raspberry Pi OS): scalar kernels only.
#[cfg(target_arch = "arm")]
#[test]
fn armv7_runs_scalar_only() {
    assert!(arm_sets().is_empty());
    assert_eq!(Kernels::best().name(), KernelSetName::Scalar);
    for simd in [
        KernelSetName::Neon,
        KernelSetName::Dotprod,
        KernelSetName::Avx2,
    ] {
        assert_eq!(
            Kernels::get(simd).map(|k| k.name()),
            Err(QuantError::Unsupported {
                requested: simd.as_str()
            })
        );
    }
}

/// `Kernels::detect` honours `HEARTH_KERNELS` as this process sees it: the named set if
/// the CPU has it, else `Unsupported` (e.g. `dotprod` on a Cortex-A72).
#[test]
fn detect_honours_hearth_kernels() {
    let got = Kernels::detect().map(|k| k.name());
    match std::env::var("HEARTH_KERNELS")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        None => assert_eq!(got, Ok(Kernels::best().name())),
        Some(v) => {
            let name = KernelSetName::parse(&v).expect("test run with a valid HEARTH_KERNELS");
            let supported =
                name == KernelSetName::Scalar || arm_sets().iter().any(|k| k.name() == name);
            eprintln!("HEARTH_KERNELS={v}: {got:?}");
            if supported {
                assert_eq!(got, Ok(name));
            } else {
                assert_eq!(
                    got,
                    Err(QuantError::Unsupported {
                        requested: name.as_str()
                    })
                );
            }
        }
    }
}

// ---------------------------------------------------------------- strategies

/// f16 scales: zero, subnormal, ordinary, large (finite only).
fn scale() -> impl Strategy<Value = f16> {
    prop_oneof![
        1 => Just(f16::ZERO),
        2 => (1u16..0x0400).prop_map(f16::from_bits),          // subnormal
        6 => (-12.0f32..4.0).prop_map(|e| f16::from_f32(2f32.powf(e))),
        1 => (0x7000u16..=0x7BFF).prop_map(f16::from_bits),    // 8192 ..= 65504
    ]
    .prop_flat_map(|d| prop_oneof![Just(d), Just(-d)])
}

/// i8 quants: extremes and zeros often, anything else too.
fn quant() -> impl Strategy<Value = i8> {
    prop_oneof![2 => Just(0i8), 2 => Just(127i8), 2 => Just(-127i8), 1 => Just(-128i8), 6 => any::<i8>()]
}

fn q8_block() -> BoxedStrategy<BlockQ8> {
    (scale(), prop::array::uniform32(quant()))
        .prop_map(|(d, qs)| BlockQ8 { d, qs })
        .boxed()
}

fn nibbles() -> impl Strategy<Value = [u8; QK / 2]> {
    prop::array::uniform16(
        prop_oneof![1 => Just(0x00u8), 1 => Just(0xFFu8), 1 => Just(0x88u8), 5 => any::<u8>()],
    )
}

fn q4_block() -> BoxedStrategy<BlockQ4> {
    (scale(), nibbles())
        .prop_map(|(d, qs)| BlockQ4 { d, qs })
        .boxed()
}

fn q4a_block() -> BoxedStrategy<BlockQ4A> {
    (scale(), scale(), nibbles())
        .prop_map(|(d, m, qs)| BlockQ4A { d, m, qs })
        .boxed()
}

/// Activation floats: zeros, ordinary, tiny/subnormal, large.
fn act_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        2 => Just(0.0f32),
        6 => -100.0f32..100.0,
        1 => (1u32..0x0080_0000).prop_map(f32::from_bits),             // positive subnormal
        1 => (1u32..0x0080_0000).prop_map(|b| -f32::from_bits(b)),
        1 => -1e30f32..1e30,
        1 => -1e-36f32..1e-36,
    ]
}

/// A shape: rows 1..=13, blocks per row 1..=12.
fn shape() -> impl Strategy<Value = (usize, usize)> {
    (1usize..=13, 1usize..=12)
}

// ---------------------------------------------------------------- reference

/// A weight row block that knows its exact block terms against an activation block.
trait RowBlock: Copy + std::fmt::Debug {
    type Packed: PackedBlock<Row = Self> + std::fmt::Debug;
    /// The f64 value of this block's contribution and its magnitude for the tolerance.
    fn terms(&self, x: &BlockQ8) -> (f64, f64);
    fn wrap(p: &[Self::Packed]) -> PackedData<'_>;
}

impl RowBlock for BlockQ8 {
    type Packed = BlockQ8x4;
    fn terms(&self, x: &BlockQ8) -> (f64, f64) {
        let s: i64 = self
            .qs
            .iter()
            .zip(&x.qs)
            .map(|(&a, &b)| a as i64 * b as i64)
            .sum();
        let t = self.d.to_f64() * x.d.to_f64() * s as f64;
        (t, t.abs())
    }
    fn wrap(p: &[BlockQ8x4]) -> PackedData<'_> {
        PackedData::Q8(p)
    }
}

impl RowBlock for BlockQ4 {
    type Packed = BlockQ4x4;
    fn terms(&self, x: &BlockQ8) -> (f64, f64) {
        let s: i64 = (0..QK)
            .map(|i| (self.nibble(i) as i64 - 8) * x.qs[i] as i64)
            .sum();
        let t = self.d.to_f64() * x.d.to_f64() * s as f64;
        (t, t.abs())
    }
    fn wrap(p: &[BlockQ4x4]) -> PackedData<'_> {
        PackedData::Q4(p)
    }
}

impl RowBlock for BlockQ4A {
    type Packed = BlockQ4Ax4;
    fn terms(&self, x: &BlockQ8) -> (f64, f64) {
        let s: i64 = (0..QK)
            .map(|i| self.nibble(i) as i64 * x.qs[i] as i64)
            .sum();
        let sx: i64 = x.qs.iter().map(|&v| v as i64).sum();
        let a = self.d.to_f64() * x.d.to_f64() * s as f64;
        let b = self.m.to_f64() * x.d.to_f64() * sx as f64;
        (a + b, a.abs() + b.abs())
    }
    fn wrap(p: &[BlockQ4Ax4]) -> PackedData<'_> {
        PackedData::Q4A(p)
    }
}

/// Σ|terms| of row `r` against token `t` (`x` token-major with `nb` blocks per token).
fn magnitude<B: RowBlock>(w: &[B], nb: usize, x: &[BlockQ8], r: usize, t: usize) -> f64 {
    (0..nb)
        .map(|kb| w[r * nb + kb].terms(&x[t * nb + kb]).1)
        .sum()
}

/// A SIMD output equals the scalar one bit for bit.
fn check_exact(set: KernelSetName, what: &str, got: f32, want: f32) -> Result<(), TestCaseError> {
    prop_assert!(
        got.to_bits() == want.to_bits(),
        "{set:?} {what}: got {got:e} ({:#010x}), scalar {want:e} ({:#010x})",
        got.to_bits(),
        want.to_bits()
    );
    Ok(())
}

fn check_close(
    set: KernelSetName,
    what: &str,
    got: f32,
    want: f32,
    mag: f64,
) -> Result<(), TestCaseError> {
    let err = (got as f64 - want as f64).abs();
    prop_assert!(
        err <= REL_TOL * mag,
        "{set:?} {what}: got {got:e}, scalar {want:e}, |diff| {err:e} > {REL_TOL:e} × Σ|terms| {mag:e}"
    );
    Ok(())
}

/// Runs gemv (n == 1) and gemm for every ARM set and compares with the scalar set.
fn check_matmul<B: RowBlock>(
    w: &[B],
    rows: usize,
    nb: usize,
    x: &[BlockQ8],
    n: usize,
) -> Result<(), TestCaseError> {
    let mut packed = vec![B::Packed::zeroed(); groups(rows) * nb];
    pack_matrix(w, rows, nb, &mut packed).expect("pack");
    let m = PackedMatrix::new(rows, nb * QK, B::wrap(&packed)).expect("matrix");

    // The exact values sanity-check the reference itself.
    let mut want = vec![0.0f32; rows * n];
    scalar().gemm(&m, x, n, &mut want).expect("scalar gemm");
    for r in 0..rows {
        for t in 0..n {
            let exact: f64 = (0..nb)
                .map(|kb| w[r * nb + kb].terms(&x[t * nb + kb]).0)
                .sum();
            check_close(
                KernelSetName::Scalar,
                "exact",
                want[r * n + t],
                exact as f32,
                magnitude(w, nb, x, r, t),
            )?;
        }
    }

    for k in arm_sets() {
        let mut got = vec![f32::NAN; rows * n];
        k.gemm(&m, x, n, &mut got).expect("gemm");
        for r in 0..rows {
            for t in 0..n {
                check_exact(
                    k.name(),
                    &format!("gemm row {r} token {t}"),
                    got[r * n + t],
                    want[r * n + t],
                )?;
            }
        }
        // gemv of each token equals the scalar gemv of that token.
        for t in 0..n {
            let xt = &x[t * nb..(t + 1) * nb];
            let (mut g, mut s) = (vec![f32::NAN; rows], vec![f32::NAN; rows]);
            k.gemv(&m, xt, &mut g).expect("gemv");
            scalar().gemv(&m, xt, &mut s).expect("scalar gemv");
            for r in 0..rows {
                check_exact(k.name(), &format!("gemv row {r} token {t}"), g[r], s[r])?;
                // gemm's column `t` is that token's gemv, bit for bit.
                check_exact(
                    k.name(),
                    &format!("gemm = gemv row {r} token {t}"),
                    got[r * n + t],
                    g[r],
                )?;
            }
        }
    }
    Ok(())
}

/// Weights (`rows × nb` blocks), activations (`n × nb` blocks) and `n`.
fn case<B: std::fmt::Debug + Clone + 'static>(
    block: BoxedStrategy<B>,
    max_tokens: usize,
) -> impl Strategy<Value = (usize, usize, Vec<B>, Vec<BlockQ8>, usize)> {
    (shape(), 1..=max_tokens).prop_flat_map(move |((rows, nb), n)| {
        (
            Just(rows),
            Just(nb),
            prop::collection::vec(block.clone(), rows * nb),
            prop::collection::vec(q8_block(), n * nb),
            Just(n),
        )
    })
}

/// Model-shaped Q4A weights (rows 1..=9; 18, 48 or any 1..=48 blocks per row; scales
/// and minimums in the range of SmolLM2's imported Q4_1 blocks) and `n` token rows of
/// floats in 1..=6.
#[allow(clippy::type_complexity)]
fn model_case() -> impl Strategy<Value = (usize, usize, usize, Vec<BlockQ4A>, Vec<f32>)> {
    let nb = prop_oneof![Just(18usize), Just(48usize), 1usize..=48];
    (1usize..=9, nb, 1usize..=6).prop_flat_map(|(rows, nb, n)| {
        let block = (
            1e-4f32..0.05,
            -0.4f32..0.0,
            prop::array::uniform16(any::<u8>()),
        )
            .prop_map(|(d, m, qs)| BlockQ4A {
                d: f16::from_f32(d),
                m: f16::from_f32(m),
                qs,
            });
        (
            Just(rows),
            Just(nb),
            Just(n),
            prop::collection::vec(block, rows * nb),
            prop::collection::vec(-3.0f32..3.0, n * nb * QK),
        )
    })
}

// ---------------------------------------------------------------- properties

proptest! {
    #[test]
    fn quantize_q8_is_byte_identical(
        x in (1usize..=12).prop_flat_map(|nb| prop::collection::vec(act_value(), nb * QK)),
        special in prop::collection::vec((0usize..QK * 12, prop_oneof![
            Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY), Just(-0.0f32),
        ]), 0..3),
    ) {
        let mut x = x;
        // Non-finite inputs are garbage in, but the garbage out must match too.
        for (i, v) in special {
            let len = x.len();
            x[i % len] = v;
        }
        let nb = x.len() / QK;
        let mut want = vec![BlockQ8::zeroed(); nb];
        scalar().quantize_row_q8(&x, &mut want).unwrap();
        for k in arm_sets() {
            let mut got = vec![BlockQ8::zeroed(); nb];
            k.quantize_row_q8(&x, &mut got).unwrap();
            for (b, (g, w)) in got.iter().zip(&want).enumerate() {
                prop_assert_eq!(g.d.to_bits(), w.d.to_bits(), "{:?} block {} scale", k.name(), b);
                prop_assert_eq!(g.qs, w.qs, "{:?} block {} quants", k.name(), b);
            }
        }
    }

    /// Blocks whose `amax` is 127 (so `1/d` is exactly 1) and whose values are
    /// half-integers: every value is a rounding tie, which must go to even.
    #[test]
    fn quantize_q8_ties_round_to_even(
        halves in (1usize..=4).prop_flat_map(|nb| prop::collection::vec(-254i32..=254, nb * QK)),
        sign in any::<bool>(),
    ) {
        let mut x: Vec<f32> = halves.iter().map(|&h| h as f32 * 0.5).collect();
        for b in x.chunks_exact_mut(QK) {
            b[0] = if sign { 127.0 } else { -127.0 };
        }
        let nb = x.len() / QK;
        let mut want = vec![BlockQ8::zeroed(); nb];
        scalar().quantize_row_q8(&x, &mut want).unwrap();
        for (xb, w) in x.chunks_exact(QK).zip(&want) {
            prop_assert_eq!(w.d, f16::ONE);
            for (&v, &q) in xb.iter().zip(&w.qs) {
                prop_assert_eq!(q as f32, v.round_ties_even(), "scalar rounding of {}", v);
            }
        }
        for k in arm_sets() {
            let mut got = vec![BlockQ8::zeroed(); nb];
            k.quantize_row_q8(&x, &mut got).unwrap();
            prop_assert_eq!(&got, &want, "{:?}", k.name());
        }
    }

    #[test]
    fn q8_matches_scalar((rows, nb, w, x, n) in case(q8_block(), 12)) {
        check_matmul(&w, rows, nb, &x, n)?;
    }

    #[test]
    fn q4_matches_scalar((rows, nb, w, x, n) in case(q4_block(), 12)) {
        check_matmul(&w, rows, nb, &x, n)?;
    }

    #[test]
    fn q4a_matches_scalar((rows, nb, w, x, n) in case(q4a_block(), 12)) {
        check_matmul(&w, rows, nb, &x, n)?;
    }

    /// The path the runtime takes: floats quantized by the set under test, then gemv.
    #[test]
    fn quantized_activations_gemv(
        (rows, nb, w, _, _) in case(q4_block(), 1),
        seed in prop::collection::vec(-4.0f32..4.0, QK * 12),
    ) {
        let xf = &seed[..nb * QK];
        let mut packed = vec![BlockQ4x4::zeroed(); groups(rows) * nb];
        pack_matrix(&w, rows, nb, &mut packed).unwrap();
        let m = PackedMatrix::new(rows, nb * QK, PackedData::Q4(&packed)).unwrap();
        for k in arm_sets() {
            let mut xq = vec![BlockQ8::zeroed(); nb];
            k.quantize_row_q8(xf, &mut xq).unwrap();
            let (mut g, mut s) = (vec![0.0f32; rows], vec![0.0f32; rows]);
            k.gemv(&m, &xq, &mut g).unwrap();
            scalar().gemv(&m, &xq, &mut s).unwrap();
            for r in 0..rows {
                check_exact(k.name(), "gemv", g[r], s[r])?;
            }
        }
    }

    /// Model-shaped rows (SmolLM2-135M: 576 and 1536 columns, Q4A weights imported from
    /// Q4_1 with small scales and minimums) and activations quantized from floats by the
    /// set under test, through gemv and a token batch: bit-exact, with long block sums
    /// where summation order and FMA would show.
    #[test]
    fn model_shaped_q4a_is_bit_exact((rows, nb, n, w, xf) in model_case()) {
        let mut packed = vec![BlockQ4Ax4::zeroed(); groups(rows) * nb];
        pack_matrix(&w, rows, nb, &mut packed).unwrap();
        let m = PackedMatrix::new(rows, nb * QK, PackedData::Q4A(&packed)).unwrap();
        for k in arm_sets() {
            let mut xq = vec![BlockQ8::zeroed(); n * nb];
            k.quantize_row_q8(&xf, &mut xq).unwrap();
            let (mut g, mut s) = (vec![0.0f32; rows * n], vec![0.0f32; rows * n]);
            k.gemm(&m, &xq, n, &mut g).unwrap();
            scalar().gemm(&m, &xq, n, &mut s).unwrap();
            for i in 0..rows * n {
                check_exact(k.name(), &format!("gemm output {i}"), g[i], s[i])?;
            }
            let (mut g, mut s) = (vec![0.0f32; rows], vec![0.0f32; rows]);
            k.gemv(&m, &xq[..nb], &mut g).unwrap();
            scalar().gemv(&m, &xq[..nb], &mut s).unwrap();
            for r in 0..rows {
                check_exact(k.name(), &format!("gemv row {r}"), g[r], s[r])?;
            }
        }
    }
}

/// Hand-made case: extreme values in every lane, where an i16 accumulator would wrap.
#[test]
fn extreme_q8_products_do_not_overflow() {
    let w = vec![
        BlockQ8 {
            d: f16::ONE,
            qs: [-128; QK]
        };
        4
    ];
    let x = vec![BlockQ8 {
        d: f16::ONE,
        qs: [-128; QK],
    }];
    let mut packed = vec![BlockQ8x4::zeroed(); 1];
    pack_matrix(&w, 4, 1, &mut packed).unwrap();
    let m = PackedMatrix::new(4, QK, PackedData::Q8(&packed)).unwrap();
    for k in arm_sets().iter().copied().chain([scalar()]) {
        let mut y = [0.0f32; 4];
        k.gemv(&m, &x, &mut y).unwrap();
        assert_eq!(y, [(128 * 128 * QK) as f32; 4], "{:?}", k.name());
    }
}

/// The safe API rejects bad lengths before any ARM kernel runs.
#[test]
fn bad_lengths_are_errors() {
    let packed = vec![BlockQ4x4::zeroed(); 2];
    let m = PackedMatrix::new(5, 2 * QK, PackedData::Q4(&packed)).unwrap_err();
    assert!(matches!(m, QuantError::LengthMismatch { .. }));
    let m = PackedMatrix::new(4, 2 * QK, PackedData::Q4(&packed)).unwrap();
    for k in arm_sets() {
        let x = vec![BlockQ8::zeroed(); 1];
        assert!(k.gemv(&m, &x, &mut [0.0; 4]).is_err());
        assert!(k
            .gemm(&m, &[BlockQ8::zeroed(); 4], 2, &mut [0.0; 7])
            .is_err());
        assert!(k
            .quantize_row_q8(&[0.0; 33], &mut [BlockQ8::zeroed(); 1])
            .is_err());
    }
}
