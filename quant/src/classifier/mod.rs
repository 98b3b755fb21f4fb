//! A small intent classifier that runs the same on a host and on a microcontroller:
//! hashed n-gram features ([`features`]) → Q8 activations → packed weights (`gemv`)
//! → ReLU → Q8 → packed weights → class scores → the best class and its softmax
//! probability. No allocation: every buffer is on the stack, bounded by
//! [`MAX_FEATURES`], [`MAX_HIDDEN`] and [`MAX_CLASSES`]. The weights are read in place
//! from a Hearth model file ([`file`]).
//!
//! With the same kernel set (the scalar one on a Cortex-M, `HEARTH_KERNELS=scalar` on
//! a host) the result is bit-identical everywhere: integer hashing, integer dot
//! products, and the same sequence of IEEE f32 operations.
//!
//! The file holds (see `docs/model-format.md`, "Intent classifier files"):
//! `fc1.weight` (`hidden × buckets`, packed), `fc1.bias` (`1 × hidden`, F32),
//! `fc2.weight` (`classes × hidden`, packed), `fc2.bias` (`1 × classes`, F32), the
//! class names one per line in the tokenizer section, and JSON metadata in the config.
pub mod features;
pub mod file;

use crate::{BlockQ8, Kernels, PackedMatrix, QuantError, QK};
use file::{FileError, ModelView};
use half::f16;

/// Most feature buckets (columns of `fc1.weight`) a classifier may have.
pub const MAX_FEATURES: usize = 2048;
/// Most hidden units.
pub const MAX_HIDDEN: usize = 128;
/// Most classes.
pub const MAX_CLASSES: usize = 64;

/// Tensor names in the model file.
pub const FC1_WEIGHT: &str = "fc1.weight";
/// First layer's bias.
pub const FC1_BIAS: &str = "fc1.bias";
/// Second layer's weights.
pub const FC2_WEIGHT: &str = "fc2.weight";
/// Second layer's bias.
pub const FC2_BIAS: &str = "fc2.bias";

/// A classifier's answer for one input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Index of the best class (its name: [`Classifier::label`]).
    pub class: usize,
    /// Its softmax probability, in `(0, 1]`.
    pub score: f32,
}

/// The network, borrowed from a model file.
#[derive(Debug, Clone, Copy)]
pub struct Classifier<'a> {
    w1: PackedMatrix<'a>,
    b1: &'a [f32],
    w2: PackedMatrix<'a>,
    b2: &'a [f32],
    labels: &'a [u8],
}

const ZERO_BLOCK: BlockQ8 = BlockQ8 {
    d: f16::ZERO,
    qs: [0; QK],
};

impl<'a> Classifier<'a> {
    /// The classifier in `file`, its shapes checked against each other and the limits.
    pub fn from_file(file: &ModelView<'a>) -> Result<Self, FileError> {
        let w1 = file.tensor(FC1_WEIGHT)?.packed()?;
        let b1 = file.tensor(FC1_BIAS)?.f32s()?;
        let w2 = file.tensor(FC2_WEIGHT)?.packed()?;
        let b2 = file.tensor(FC2_BIAS)?.f32s()?;
        let labels = file.tokenizer();
        let (features, hidden, classes) = (w1.cols(), w1.rows(), w2.rows());
        let n_labels = labels
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        let ok = features <= MAX_FEATURES
            && hidden <= MAX_HIDDEN
            && classes <= MAX_CLASSES
            && w2.cols() == hidden
            && b1.len() == hidden
            && b2.len() == classes
            && n_labels == classes;
        if !ok {
            return Err(FileError::WrongTensor);
        }
        Ok(Classifier {
            w1,
            b1,
            w2,
            b2,
            labels,
        })
    }

    /// Feature buckets (the featurizer's output size).
    pub fn features(&self) -> usize {
        self.w1.cols()
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.w2.rows()
    }

    /// The name of class `i` (empty if out of range or not UTF-8).
    pub fn label(&self, i: usize) -> &'a str {
        let line = self
            .labels
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .nth(i)
            .unwrap_or(&[]);
        core::str::from_utf8(line).unwrap_or("")
    }

    /// The class scores (logits) of `text` in `out` (`out.len() == classes()`).
    /// Returns `false`, leaving `out` untouched, when the text has no word: there is
    /// nothing to classify.
    pub fn logits(&self, k: &Kernels, text: &[u8], out: &mut [f32]) -> Result<bool, QuantError> {
        let nf = self.w1.cols();
        let mut x = [0.0f32; MAX_FEATURES];
        if features::featurize(text, &mut x[..nf]) == 0 {
            return Ok(false);
        }
        let mut xq = [ZERO_BLOCK; MAX_FEATURES / QK];
        k.quantize_row_q8(&x[..nf], &mut xq[..nf / QK])?;
        let nh = self.w1.rows();
        let mut h = [0.0f32; MAX_HIDDEN];
        k.gemv(&self.w1, &xq[..nf / QK], &mut h[..nh])?;
        for (v, b) in h[..nh].iter_mut().zip(self.b1) {
            *v = (*v + b).max(0.0);
        }
        let mut hq = [ZERO_BLOCK; MAX_HIDDEN / QK];
        k.quantize_row_q8(&h[..nh], &mut hq[..nh / QK])?;
        k.gemv(&self.w2, &hq[..nh / QK], out)?;
        for (v, b) in out.iter_mut().zip(self.b2) {
            *v += b;
        }
        Ok(true)
    }

    /// The best class for `text` and its probability; `None` when the text has no
    /// word (empty, blank, only punctuation).
    pub fn classify(&self, k: &Kernels, text: &[u8]) -> Result<Option<Prediction>, QuantError> {
        let mut y = [0.0f32; MAX_CLASSES];
        let y = &mut y[..self.classes()];
        if !self.logits(k, text, y)? {
            return Ok(None);
        }
        Ok(Some(best(y)))
    }
}

/// The one-line result both the firmware and `hearth intent classify` print:
/// `intent=<name> score=<p>`, `intent=none score=0` for a line without words, and
/// ` truncated` when the input was longer than [`features::MAX_INPUT`] bytes (only
/// that much was classified). The score is printed in full (Rust's shortest decimal
/// that reads back as the same f32), so equal lines mean bit-identical scores.
pub fn write_result(
    out: &mut impl core::fmt::Write,
    c: &Classifier<'_>,
    p: Option<Prediction>,
    input_len: usize,
) -> core::fmt::Result {
    match p {
        Some(p) => write!(out, "intent={} score={}", c.label(p.class), p.score)?,
        None => out.write_str("intent=none score=0")?,
    }
    if input_len > features::MAX_INPUT {
        out.write_str(" truncated")?;
    }
    Ok(())
}

/// The first maximum of `y` (non-empty) and its softmax probability.
pub fn best(y: &[f32]) -> Prediction {
    let mut class = 0;
    for (i, &v) in y.iter().enumerate() {
        if v > y[class] {
            class = i;
        }
    }
    let top = y[class];
    // Σ exp(yᵢ − top) ≥ 1 (the top term is exp(0) = 1).
    let sum: f32 = y.iter().map(|&v| exp_nonpositive(v - top)).sum();
    Prediction {
        class,
        score: 1.0 / sum,
    }
}

/// `eˣ` for `x ≤ 0` (`core` has no `exp`): `x = k·ln2 + r` with `r ∈ [0, ln2)`, a
/// degree-6 Taylor polynomial for `eʳ` (relative error < 2e-6), times `2ᵏ` built from
/// the exponent bits. Plain f32 operations in a fixed order: the same bits on every
/// target. NaN and very negative inputs give 0.
pub fn exp_nonpositive(x: f32) -> f32 {
    if x.is_nan() || x < -87.0 {
        return 0.0;
    }
    let x = x.min(0.0);
    let t = x * core::f32::consts::LOG2_E;
    // `as` truncates toward zero; step down to the floor for negative non-integers.
    let mut k = t as i32;
    if (k as f32) > t {
        k -= 1;
    }
    // Cody–Waite: ln 2 in two parts, the first with few enough bits that `k · LN2_HI`
    // is exact for |k| ≤ 126, so `r` keeps its precision for large |x|.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let r = (x - k as f32 * LN2_HI) - k as f32 * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // k ∈ [-126, 0]: a normal power of two.
    p * f32::from_bits(((k + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_closely() {
        for i in 0..=8700 {
            let x = -(i as f32) / 100.0;
            let want = libm_exp(x);
            let got = exp_nonpositive(x);
            assert!(
                (got - want).abs() <= want * 1e-5 + 1e-38,
                "{x}: {got} vs {want}"
            );
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(f32::NAN), 0.0);
        assert_eq!(exp_nonpositive(-1000.0), 0.0);
    }

    /// f64 reference from the Taylor series with enough terms (no std here).
    fn libm_exp(x: f32) -> f32 {
        // e^x = (e^(x/64))^64, the inner series converges fast for |x/64| < 1.4.
        let y = f64::from(x) / 64.0;
        let (mut term, mut sum) = (1.0f64, 1.0f64);
        for n in 1..30 {
            term *= y / n as f64;
            sum += term;
        }
        let mut r = sum;
        for _ in 0..6 {
            r *= r;
        }
        r as f32
    }

    #[test]
    fn best_picks_the_first_maximum_with_its_probability() {
        let p = best(&[0.0, 2.0, -1.0, 2.0]);
        assert_eq!(p.class, 1);
        let e2 = libm_exp(2.0f32 - 2.0);
        let want = e2 / (2.0 * e2 + libm_exp(-2.0) + libm_exp(-3.0));
        assert!((p.score - want).abs() < 1e-5);
        assert_eq!(best(&[5.0]).score, 1.0);
    }
}
