//! The f32 matrix product (`Kernels::gemm_f32`) of every kernel set this CPU runs
//! against the scalar reference, through the safe API, over random shapes (including
//! empty ones and widths that are not a multiple of any vector) and values.
//!
//! Tolerance (derivation): the reference sums `k` products in order with two roundings
//! per step, a SIMD kernel in the same order with FMA (one rounding per step). By the
//! recursive-summation bound each is within `(k + 1)·u·T` of the exact value, with
//! `u = 2⁻²⁴` and `T = Σ_p |a[i][p]·b[p][j]|`, so we check
//! `|simd - reference| ≤ (2k + 4)·2⁻²⁴·T + f32::MIN_POSITIVE`. Small integers are
//! exact on both sides and must agree bit for bit.
use hearth_quant::{BLayout, KernelSetName, Kernels, QuantError};
use proptest::prelude::*;

fn sets() -> Vec<&'static Kernels> {
    let mut v: Vec<&'static Kernels> = hearth_quant::arch::available().to_vec();
    if let Ok(k) = Kernels::detect() {
        if !v.iter().any(|s| s.name() == k.name()) {
            v.push(k);
        }
    }
    v
}

fn scalar() -> &'static Kernels {
    Kernels::get(KernelSetName::Scalar).expect("scalar is always available")
}

/// Values: ordinary, large, tiny (incl. subnormal), exact zeros.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => -2.0f32..2.0,
        1 => -1e4f32..1e4,
        1 => -1e-36f32..1e-36,
        1 => Just(0.0f32),
    ]
}

fn problem(ints: bool) -> impl Strategy<Value = (usize, usize, usize, Vec<f32>, Vec<f32>)> {
    (0usize..20, 0usize..80, 0usize..80).prop_flat_map(move |(m, k, n)| {
        let v = if ints {
            (-8i32..=8).prop_map(|i| i as f32).boxed()
        } else {
            value().boxed()
        };
        (
            Just(m),
            Just(k),
            Just(n),
            prop::collection::vec(v.clone(), m * k),
            prop::collection::vec(v, k * n),
        )
    })
}

fn product(k: &Kernels, m: usize, kk: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut c = vec![f32::NAN; m * n];
    k.gemm_f32(m, kk, n, a, b, &mut c).unwrap();
    c
}

proptest! {
    #[test]
    fn gemm_f32_matches_reference((m, k, n, a, b) in problem(false)) {
        let want = product(scalar(), m, k, n, &a, &b);
        for set in sets() {
            let got = product(set, m, k, n, &a, &b);
            for i in 0..m {
                for j in 0..n {
                    let t: f64 = (0..k).map(|p| (a[i * k + p] as f64 * b[p * n + j] as f64).abs()).sum();
                    let tol = (2 * k + 4) as f64 * 2f64.powi(-24) * t + f32::MIN_POSITIVE as f64;
                    let (g, w) = (got[i * n + j], want[i * n + j]);
                    prop_assert!(((g - w) as f64).abs() <= tol,
                        "{:?} c[{}][{}] = {} vs {} (tol {})", set.name(), i, j, g, w, tol);
                }
            }
        }
    }

    #[test]
    fn gemm_f32_is_exact_on_small_integers((m, k, n, a, b) in problem(true)) {
        let want = product(scalar(), m, k, n, &a, &b);
        for set in sets() {
            prop_assert_eq!(&product(set, m, k, n, &a, &b), &want, "{:?}", set.name());
        }
    }

    /// `b` as the first `n` columns of a wider matrix (rows `ldb` apart, the last one cut
    /// after its `n` values): every set gives exactly what it gives on the same
    /// columns copied out contiguously, and the columns past `n` are never read (they
    /// are NaN here).
    #[test]
    fn gemm_f32_ldb_reads_only_the_first_n_columns(
        (m, k, n, a, b) in problem(false),
        extra in 0usize..40,
    ) {
        let ldb = n + extra;
        let mut wide = vec![f32::NAN; k * ldb];
        for p in 0..k {
            wide[p * ldb..p * ldb + n].copy_from_slice(&b[p * n..(p + 1) * n]);
        }
        let span = if k == 0 { 0 } else { (k - 1) * ldb + n };
        for set in std::iter::once(scalar()).chain(sets()) {
            let mut c = vec![f32::NAN; m * n];
            set.gemm_f32_ldb(m, k, n, &a, &wide[..span], ldb, &mut c).unwrap();
            let want = product(set, m, k, n, &a, &b);
            prop_assert!(c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{:?} {}×{}×{} ldb {}", set.name(), m, k, n, ldb);
        }
    }

    /// `b` in f16 (strided, columns past `n` NaN): every set gives bit for bit its f32
    /// product on the widened values; the f16 tails (masked loads, AVX2's buffered one)
    /// read no value past a row's `n`.
    #[test]
    fn gemm_f16b_equals_the_f32_product_of_the_widened_values(
        (m, k, n, a, b) in problem(false),
        extra in 0usize..40,
    ) {
        use half::f16;
        let ldb = n + extra;
        let mut wide = vec![f16::NAN; k * ldb];
        for p in 0..k {
            for j in 0..n {
                wide[p * ldb + j] = f16::from_f32(b[p * n + j]);
            }
        }
        let widened: Vec<f32> = (0..k * n).map(|i| wide[i / n * ldb + i % n].to_f32()).collect();
        let span = if k == 0 { 0 } else { (k - 1) * ldb + n };
        for set in std::iter::once(scalar()).chain(sets()) {
            let mut c = vec![f32::NAN; m * n];
            set.gemm_f16b(m, k, n, &a, &wide[..span], BLayout::rows(ldb), &mut c).unwrap();
            let want = product(set, m, k, n, &a, &widened);
            prop_assert!(c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{:?} {}×{}×{} ldb {}", set.name(), m, k, n, ldb);
            let long: Vec<f16> = wide[..span].iter().copied().chain([f16::ZERO]).collect();
            let r = set.gemm_f16b(m, k, n, &a, &long, BLayout::rows(ldb), &mut c);
            prop_assert!(matches!(r, Err(QuantError::LengthMismatch { .. })), "{:?}", r);
        }
    }

    /// `b` in f16 in panels of 32 columns (each `k` rows of 32, panels `32k + gap`
    /// apart, everything else NaN): every set gives bit for bit its f32 product of the
    /// widened values in row-major order.
    #[test]
    fn gemm_f16b_reads_panels(
        (m, k, n, a, b) in problem(false),
        gap in 0usize..40,
    ) {
        use half::f16;
        let lay = BLayout { row: 32, panel: 32 * k.max(1) + gap };
        let span = lay.span(k, n).unwrap();
        let mut packed = vec![f16::NAN; span];
        let mut widened = vec![0.0f32; k * n];
        for p in 0..k {
            for j in 0..n {
                let v = f16::from_f32(b[p * n + j]);
                packed[lay.at(p, j)] = v;
                widened[p * n + j] = v.to_f32();
            }
        }
        for set in std::iter::once(scalar()).chain(sets()) {
            let mut c = vec![f32::NAN; m * n];
            set.gemm_f16b(m, k, n, &a, &packed, lay, &mut c).unwrap();
            let want = product(set, m, k, n, &a, &widened);
            prop_assert!(c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{:?} {}×{}×{} {:?}", set.name(), m, k, n, lay);
        }
    }

    /// Wrong lengths are errors, never panics or out-of-bounds accesses.
    #[test]
    fn gemm_f32_bad_lengths(m in 0usize..6, k in 0usize..6, n in 0usize..6,
                            da in 0usize..2, db in 0usize..2, dc in 0usize..2) {
        let (a, b) = (vec![1.0f32; m * k + da], vec![1.0f32; k * n + db]);
        let mut c = vec![0.0f32; m * n + dc];
        for set in std::iter::once(scalar()).chain(sets()) {
            let r = set.gemm_f32(m, k, n, &a, &b, &mut c);
            if da + db + dc == 0 {
                prop_assert!(r.is_ok());
                prop_assert!(c.iter().all(|&v| v == k as f32));
            } else {
                prop_assert!(matches!(r, Err(QuantError::LengthMismatch { .. })), "{:?}", r);
            }
            // A stride below `n`, or `b` one element off its strided span.
            if n > 0 && k > 0 && da + db + dc == 0 {
                let r = set.gemm_f32_ldb(m, k, n, &a, &b, n - 1, &mut c);
                prop_assert!(matches!(r, Err(QuantError::LengthMismatch { .. })), "{:?}", r);
                let wide = vec![1.0f32; (k - 1) * (n + 3) + n + 1];
                let r = set.gemm_f32_ldb(m, k, n, &a, &wide, n + 3, &mut c);
                prop_assert!(matches!(r, Err(QuantError::LengthMismatch { .. })), "{:?}", r);
                let r = set.gemm_f32_ldb(m, k, n, &a, &wide[..wide.len() - 1], n + 3, &mut c);
                prop_assert!(r.is_ok(), "{:?}", r);
            }
        }
    }
}
