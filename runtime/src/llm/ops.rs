//! The small float operations of the forward pass, each on one token's vector.
//!
//! Written as plain loops over slices so the compiler vectorizes them; the few
//! places where precision matters for matching llama.cpp say so.

/// RMSNorm: `out[i] = x[i] / sqrt(mean(x²) + eps) * w[i]`.
///
/// The sum of squares is accumulated in f64, as ggml does, so long rows lose no
/// precision.
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    debug_assert!(out.len() == x.len() && x.len() == w.len());
    let scale = rms_scale(x, eps);
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}

/// `1 / √(mean(x²) + eps)`, the factor of [`rmsnorm`] (which then writes
/// `x[i] · scale · w[i]`; a caller may apply it piecewise with the same bits).
pub fn rms_scale(x: &[f32], eps: f32) -> f32 {
    // Four partial sums (independent add chains; f64 keeps the order immaterial).
    let mut ss4 = [0.0f64; 4];
    let chunks = x.chunks_exact(4);
    let mut ss: f64 = chunks
        .remainder()
        .iter()
        .map(|&v| (v as f64) * (v as f64))
        .sum();
    for c in chunks {
        for i in 0..4 {
            ss4[i] += (c[i] as f64) * (c[i] as f64);
        }
    }
    ss += (ss4[0] + ss4[1]) + (ss4[2] + ss4[3]);
    let mean = (ss / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// In-place softmax over `x` (max-subtracted for stability).
pub fn softmax(x: &mut [f32]) {
    softmax_scaled(x, 1.0);
}

/// Define `pub fn $name` as the body `$imp` compiled twice: for the baseline target
/// and, on x86-64, for AVX2, picked at run time. The AVX2 copy runs the same IEEE
/// operations in the same order (Rust never fuses `a·b + c` into an FMA nor reorders
/// float sums), so both give the same bits; only the vector width differs (the
/// baseline x86-64 target has 4-wide SSE2).
macro_rules! avx2_clone {
    ($(#[$m:meta])* pub fn $name:ident($($a:ident: $t:ty),*) => $imp:ident) => {
        $(#[$m])*
        pub fn $name($($a: $t),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn wide($($a: $t),*) {
                    $imp($($a),*)
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { wide($($a),*) };
                }
            }
            $imp($($a),*)
        }
    };
}

avx2_clone! {
    /// In-place `softmax(scale · x)` for `scale > 0`, bit for bit what scaling the row
    /// first and then calling [`softmax`] gives (rounding is monotonic, so the maximum
    /// of the scaled row is the scaled maximum), one pass over the row fewer.
    ///
    /// Each pass is written so it vectorizes (eight partial maxima and sums, a
    /// branch-free [`exp_neg`]): attention runs this over every score row.
    pub fn softmax_scaled(x: &mut [f32], scale: f32) => softmax_scaled_impl
}

#[inline(always)]
fn softmax_scaled_impl(x: &mut [f32], scale: f32) {
    debug_assert!(scale > 0.0);
    let mut m8 = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let mut max = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for i in 0..8 {
            m8[i] = m8[i].max(c[i]);
        }
    }
    max = m8.iter().copied().fold(max, f32::max) * scale;
    for v in x.iter_mut() {
        *v = exp_neg(*v * scale - max);
    }
    let mut s8 = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let mut sum: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..8 {
            s8[i] += c[i];
        }
    }
    sum += s8.iter().sum::<f32>();
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `e^x` for `x ≤ 0` (what softmax needs after subtracting the maximum), within
/// 2 ulp of `f32::exp` above `-87` (the normal range) and 0 below it.
#[inline(always)]
pub fn exp_neg(x: f32) -> f32 {
    let x = x.clamp(-87.0, 0.0);
    let v = exp_poly(x);
    // Below the clamp the true value is under 2⁻¹²⁵: call it 0 (as -inf scores must be).
    if x <= -87.0 {
        0.0
    } else {
        v
    }
}

/// `e^x` for `-87 ≤ x ≤ 88` (the caller clamps), within 2 ulp of `f32::exp`.
///
/// Branch-free so loops over it vectorize: `x = n·ln2 + r` with `n` rounded to nearest
/// (the 1.5·2²³ trick, which also leaves `n` in the low bits of the sum), `e^r` by its
/// degree-7 Taylor polynomial on `|r| ≤ ln2/2` (truncation error < 2⁻²⁷ relative),
/// times `2^n` assembled in the exponent bits (`-126 ≤ n ≤ 127`: a normal float).
#[inline(always)]
fn exp_poly(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5·2²³
                                     // ln 2 = LN2_HI - LN2_LO, LN2_HI with 9 significant bits so n·LN2_HI is exact (Cephes).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let y = x * std::f32::consts::LOG2_E + MAGIC;
    let n = y - MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // bits(y) = bits(MAGIC) + n, so the biased exponent n + 127 is a wrapping add away.
    let e = y.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127) << 23;
    p * f32::from_bits(e)
}

/// SiLU (swish): `x · σ(x)` = `x / (1 + e^-x)`, with the vectorizable exp (libm's
/// `expf` is a call per element: 3% of a prefill). `e^-x` is clamped to `e^88` for
/// `x < -88`, where the result is `x / 1.6e38` (≈ 0, as the true value is: an
/// activation of `-100` gives `-6e-37` instead of `-4e-42`).
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp_poly((-x).clamp(-87.0, 88.0)))
}

avx2_clone! {
    /// SwiGLU in place: `gate[i] = silu(gate[i]) * up[i]`.
    pub fn swiglu(gate: &mut [f32], up: &[f32]) => swiglu_impl
}

#[inline(always)]
fn swiglu_impl(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = silu(*g) * u;
    }
}

/// Dot product with eight independent accumulators (vectorizes without `-ffast-math`).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += a · x`.
#[inline]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    debug_assert_eq!(y.len(), x.len());
    for (o, &v) in y.iter_mut().zip(x) {
        *o += a * v;
    }
}

/// Rotary position embedding tables: `cos/sin[pos][i]` for the `head_dim / 2`
/// frequencies `θ_i = pos · theta^(-2i / head_dim)`.
///
/// Precomputed once per session for the whole context (`ctx × hd/2` floats each)
/// so the forward pass does no trigonometry. Angles are computed in f64 and rounded
/// once, which is at least as accurate as ggml's running f32 product.
#[derive(Clone, Debug)]
pub struct RopeTable {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

pub use crate::model::RopeStyle;

impl RopeTable {
    /// Tables for positions `0..ctx`.
    pub fn new(head_dim: usize, theta: f32, ctx: usize) -> Self {
        let half = head_dim / 2;
        let mut cos = vec![0.0f32; ctx * half];
        let mut sin = vec![0.0f32; ctx * half];
        for pos in 0..ctx {
            for i in 0..half {
                let freq = (theta as f64).powf(-2.0 * i as f64 / head_dim as f64);
                let a = pos as f64 * freq;
                cos[pos * half + i] = a.cos() as f32;
                sin[pos * half + i] = a.sin() as f32;
            }
        }
        Self { half, cos, sin }
    }

    /// Positions covered.
    pub fn len(&self) -> usize {
        self.cos.len() / self.half.max(1)
    }

    /// Whether the table covers no position.
    pub fn is_empty(&self) -> bool {
        self.cos.is_empty()
    }

    /// Rotate every head of `x` (`n_heads × head_dim`, head-major) to position `pos`.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize, style: RopeStyle) {
        let half = self.half;
        debug_assert_eq!(head_dim, 2 * half);
        let cos = &self.cos[pos * half..(pos + 1) * half];
        let sin = &self.sin[pos * half..(pos + 1) * half];
        for head in x.chunks_exact_mut(head_dim) {
            match style {
                RopeStyle::Norm => {
                    for (i, pair) in head.chunks_exact_mut(2).enumerate() {
                        let (a, b) = (pair[0], pair[1]);
                        pair[0] = a * cos[i] - b * sin[i];
                        pair[1] = a * sin[i] + b * cos[i];
                    }
                }
                RopeStyle::Neox => {
                    let (lo, hi) = head.split_at_mut(half);
                    for i in 0..half {
                        let (a, b) = (lo[i], hi[i]);
                        lo[i] = a * cos[i] - b * sin[i];
                        hi[i] = a * sin[i] + b * cos[i];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmsnorm_unit_rms() {
        let x = [3.0f32, -4.0, 0.0, 5.0];
        let w = [1.0f32; 4];
        let mut out = [0.0f32; 4];
        rmsnorm(&mut out, &x, &w, 0.0);
        let rms = (out.iter().map(|v| v * v).sum::<f32>() / 4.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-6, "rms {rms}");
        // The direction is kept.
        assert!((out[1] / out[0] - (-4.0 / 3.0)).abs() < 1e-6);
        // Weights scale per element.
        let w2 = [2.0f32, 1.0, 1.0, 0.5];
        let mut out2 = [0.0f32; 4];
        rmsnorm(&mut out2, &x, &w2, 0.0);
        assert!((out2[0] - 2.0 * out[0]).abs() < 1e-6 && (out2[3] - 0.5 * out[3]).abs() < 1e-6);
    }

    /// The fused scale changes nothing: same bits as scaling first.
    #[test]
    fn softmax_scaled_equals_scaling_first() {
        let row: Vec<f32> = (0..77)
            .map(|i| (i as f32 * 0.731).sin() * 40.0 - 3.0)
            .collect();
        for scale in [0.125f32, 1.0 / 3.0, 0.088_388_35, 2.5] {
            let mut a: Vec<f32> = row.iter().map(|v| v * scale).collect();
            softmax(&mut a);
            let mut b = row.clone();
            softmax_scaled(&mut b, scale);
            assert_eq!(a, b, "scale {scale}");
        }
    }

    #[test]
    fn softmax_sums_to_one_and_is_shift_invariant() {
        let mut a = [1.0f32, 2.0, 3.0, -1.0];
        let mut b = a.map(|v| v + 1000.0);
        softmax(&mut a);
        softmax(&mut b);
        assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6);
        }
        assert!(a[2] > a[1] && a[1] > a[0] && a[0] > a[3]);
    }

    /// The fast exp against std's over the whole range softmax uses.
    #[test]
    fn exp_neg_is_within_2_ulp() {
        let mut worst = 0.0f64;
        let mut x = 0.0f32;
        while x > -86.9 {
            let (got, want) = (exp_neg(x) as f64, (x as f64).exp());
            let ulp = (want as f32).abs() as f64 * f32::EPSILON as f64;
            worst = worst.max((got - want).abs() / ulp);
            x -= 0.000_37;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp_neg(0.0), 1.0);
        assert_eq!(exp_neg(-100.0), 0.0);
        assert_eq!(exp_neg(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn silu_values() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!(silu(-20.0).abs() < 1e-7);
        assert!(silu(-100.0) <= 0.0 && silu(-100.0) > -1e-35);
        assert_eq!(silu(100.0), 100.0);
        // Against the libm formula over the range activations take.
        let mut x = -30.0f32;
        while x < 30.0 {
            let want = x as f64 / (1.0 + (-(x as f64)).exp());
            let ulp = (want as f32).abs().max(f32::MIN_POSITIVE) as f64 * f32::EPSILON as f64;
            assert!(((silu(x) as f64) - want).abs() <= 4.0 * ulp, "silu({x})");
            x += 0.001_3;
        }
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-5);
    }

    /// Both styles rotate the same frequencies, only the pairing differs: a Norm
    /// head equals a Neox head after the GGUF q/k permutation (interleave halves).
    #[test]
    fn rope_styles_agree_up_to_permutation() {
        let hd = 8;
        let t = RopeTable::new(hd, 10000.0, 16);
        let neox: Vec<f32> = (0..hd).map(|i| i as f32 + 1.0).collect();
        // Permute: neox index (i, i+hd/2) → norm index (2i, 2i+1).
        let mut norm = vec![0.0; hd];
        for i in 0..hd / 2 {
            norm[2 * i] = neox[i];
            norm[2 * i + 1] = neox[i + hd / 2];
        }
        let (mut a, mut b) = (neox.clone(), norm.clone());
        t.apply(&mut a, hd, 7, RopeStyle::Neox);
        t.apply(&mut b, hd, 7, RopeStyle::Norm);
        for i in 0..hd / 2 {
            assert!((a[i] - b[2 * i]).abs() < 1e-6);
            assert!((a[i + hd / 2] - b[2 * i + 1]).abs() < 1e-6);
        }
        // Rotation keeps the norm, and position 0 is the identity.
        let n0: f32 = neox.iter().map(|v| v * v).sum();
        let n1: f32 = a.iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-3);
        let mut c = neox.clone();
        t.apply(&mut c, hd, 0, RopeStyle::Neox);
        assert_eq!(c, neox);
    }

    /// The defining property: q·k after rotation depends only on the distance.
    #[test]
    fn rope_is_relative() {
        let hd = 16;
        let t = RopeTable::new(hd, 10000.0, 64);
        let q: Vec<f32> = (0..hd).map(|i| (i as f32 * 0.7).sin()).collect();
        let k: Vec<f32> = (0..hd).map(|i| (i as f32 * 0.3).cos()).collect();
        let score = |pq: usize, pk: usize| {
            let (mut a, mut b) = (q.clone(), k.clone());
            t.apply(&mut a, hd, pq, RopeStyle::Norm);
            t.apply(&mut b, hd, pk, RopeStyle::Norm);
            dot(&a, &b)
        };
        assert!((score(10, 3) - score(40, 33)).abs() < 1e-4);
        assert!((score(10, 3) - score(10, 4)).abs() > 1e-4);
    }
}
