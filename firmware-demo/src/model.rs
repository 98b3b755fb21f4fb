//! The classifier: a packed weight matrix in flash (generated and quantized by
//! `build.rs`), Q8 activations, one `gemv`, and an argmax. Replacing the random
//! matrix with a trained one changes only `build.rs`.
use half::f16;
use hearth_quant::dispatch::PackedData;
use hearth_quant::{BlockQ4x4, BlockQ8, BlockQ8x4, Kernels, PackedMatrix, QuantError, QK};

include!(concat!(env!("OUT_DIR"), "/weights.rs"));

/// Activation blocks per input.
pub const NB: usize = FEATURES / QK;

/// The weight formats the demo runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// 8-bit weights.
    Q8,
    /// 4-bit symmetric weights.
    Q4,
}

impl Format {
    /// Both formats, in output order.
    pub const ALL: [Format; 2] = [Format::Q8, Format::Q4];

    /// Short name for the output.
    pub fn name(self) -> &'static str {
        match self {
            Format::Q8 => "q8",
            Format::Q4 => "q4",
        }
    }

    /// The flash-resident weights in this format.
    pub fn matrix(self) -> Result<PackedMatrix<'static>, QuantError> {
        let data = match self {
            Format::Q8 => PackedData::Q8(&W_Q8),
            Format::Q4 => PackedData::Q4(&W_Q4),
        };
        PackedMatrix::new(CLASSES, FEATURES, data)
    }
}

/// Quantize a feature vector to Q8 activation blocks.
pub fn quantize(k: &Kernels, x: &[f32; FEATURES]) -> Result<[BlockQ8; NB], QuantError> {
    let mut q = [BlockQ8 {
        d: f16::ZERO,
        qs: [0; QK],
    }; NB];
    k.quantize_row_q8(x, &mut q)?;
    Ok(q)
}

/// Class scores `W · x` in `format`.
pub fn scores(
    k: &Kernels,
    format: Format,
    x: &[BlockQ8; NB],
) -> Result<[f32; CLASSES], QuantError> {
    let mut y = [0.0f32; CLASSES];
    k.gemv(&format.matrix()?, x, &mut y)?;
    Ok(y)
}

/// The index of the highest score (the first on ties), or `None` when every score
/// is equal: no evidence for any class (an empty command scores all zeros).
pub fn argmax(y: &[f32]) -> Option<usize> {
    let first = *y.first()?;
    if y.iter().all(|&v| v == first) {
        return None;
    }
    let mut best = 0;
    for (i, &v) in y.iter().enumerate() {
        if v > y[best] {
            best = i;
        }
    }
    Some(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::featurize::Command;
    use hearth_quant::dispatch::SCALAR;

    /// `W · x` in f32 with the unquantized weights, plus `Σ|w||x|` per row.
    fn reference(x: &[f32; FEATURES]) -> ([f32; CLASSES], [f32; CLASSES]) {
        let mut y = [0.0; CLASSES];
        let mut mag = [0.0; CLASSES];
        for r in 0..CLASSES {
            let row = &W_F32[r * FEATURES..(r + 1) * FEATURES];
            y[r] = row.iter().zip(x).map(|(w, x)| w * x).sum();
            mag[r] = row.iter().zip(x).map(|(w, x)| (w * x).abs()).sum();
        }
        (y, mag)
    }

    #[test]
    fn quantized_scores_track_the_float_reference() {
        let wmax = W_F32.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        for raw in [
            &b"turn on the kitchen lights"[..],
            b"what's the weather",
            b"\xff\xfe\x00",
        ] {
            let x = Command::new(raw).features();
            let (want, _) = reference(&x);
            let l1: f32 = x.iter().map(|v| v.abs()).sum();
            let xmax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let wl1_max = (0..CLASSES)
                .map(|r| {
                    W_F32[r * FEATURES..(r + 1) * FEATURES]
                        .iter()
                        .map(|w| w.abs())
                        .sum::<f32>()
                })
                .fold(0.0f32, f32::max);
            let q = quantize(&SCALAR, &x).unwrap();
            // Rounding error bounds: half a step per quantized value, the step being
            // max/127 for Q8 and at most max/8 (clipped at the +7 end) for Q4.
            let act = xmax / 254.0 * wl1_max;
            for (format, wstep) in [(Format::Q8, wmax / 254.0), (Format::Q4, wmax / 8.0)] {
                let got = scores(&SCALAR, format, &q).unwrap();
                let bound = wstep * l1 * 1.05 + act * 1.05 + 1e-5;
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= bound,
                        "{format:?}: {g} vs {w}, bound {bound}"
                    );
                }
            }
        }
    }

    #[test]
    fn packed_matrices_have_the_right_shape() {
        for f in Format::ALL {
            let m = f.matrix().unwrap();
            assert_eq!((m.rows(), m.cols()), (CLASSES, FEATURES));
        }
    }

    #[test]
    fn argmax_picks_the_first_maximum_and_refuses_flat_scores() {
        assert_eq!(argmax(&[0.0, 2.0, -1.0, 2.0]), Some(1));
        assert_eq!(argmax(&[0.0; 4]), None);
        assert_eq!(argmax(&[]), None);
    }
}
