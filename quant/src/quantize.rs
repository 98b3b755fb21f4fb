//! Scalar reference quantizers and dequantizers.
//!
//! These are the ground truth: SIMD activation quantizers must produce the same
//! bytes. Rounding is round-half-to-even (what `cvtps2dq` and `fcvtns` do), written
//! without `libm` so it works in `no_std`.
use crate::block::{BlockQ4, BlockQ4A, BlockQ8, QK};
use half::f16;

/// Round to nearest, ties to even, for `|x| < 2^22` (all our quantized ranges).
#[inline]
pub fn round_ne(x: f32) -> f32 {
    // Adding 1.5·2^23 pushes the fraction bits out of the mantissa; the FPU rounds
    // to nearest-even while doing so. Rust never reassociates float adds.
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

#[inline]
fn abs(x: f32) -> f32 {
    f32::from_bits(x.to_bits() & 0x7FFF_FFFF)
}

/// Quantize one block of 32 floats to [`BlockQ8`] (the activation quantizer).
///
/// `d = max|x| / 127`, `q = round_ne(x / d)` computed as `x * (1/d)` in f32, with
/// `d` stored as f16 (the quantized values use the unrounded `1/d`, as llama.cpp's
/// `Q8_0` does, so activations match it closely).
pub fn quantize_block_q8(x: &[f32; QK]) -> BlockQ8 {
    let amax = x
        .iter()
        .fold(0.0f32, |m, &v| if abs(v) > m { abs(v) } else { m });
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0i8; QK];
    for (q, &v) in qs.iter_mut().zip(x.iter()) {
        *q = round_ne(v * id) as i8;
    }
    BlockQ8 {
        d: f16::from_f32(d),
        qs,
    }
}

/// Quantize a row of floats (`x.len() == 32 * y.len()`) to [`BlockQ8`] blocks.
///
/// # Panics
/// If the lengths do not agree; the checked entry point is [`crate::Kernels::quantize_row_q8`].
pub fn quantize_row_q8(x: &[f32], y: &mut [BlockQ8]) {
    assert_eq!(x.len(), y.len() * QK, "quantize_row_q8: length mismatch");
    for (b, chunk) in y.iter_mut().zip(x.chunks_exact(QK)) {
        *b = quantize_block_q8(chunk.try_into().expect("chunk of QK"));
    }
}

/// Dequantize [`BlockQ8`] blocks into `y` (`y.len() == 32 * x.len()`).
pub fn dequantize_row_q8(x: &[BlockQ8], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK, "dequantize_row_q8: length mismatch");
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (o, &q) in out.iter_mut().zip(b.qs.iter()) {
            *o = d * q as f32;
        }
    }
}

/// Quantize one block to [`BlockQ4`] (symmetric 4-bit) minimising squared error.
///
/// Starts from the classic choice (the value of largest magnitude maps to -8), tries
/// a few nearby scales, and refits the scale by least squares for the chosen codes;
/// the scale is rounded to f16 before the codes are chosen, so the stored block is
/// exactly what was optimised.
pub fn quantize_block_q4(x: &[f32; QK]) -> BlockQ4 {
    let mut max = 0.0f32;
    for &v in x {
        if abs(v) > abs(max) {
            max = v;
        }
    }
    if max == 0.0 {
        return BlockQ4 {
            d: f16::ZERO,
            qs: [0x88; QK / 2],
        };
    }
    let codes_for = |d: f32, q: &mut [u8; QK]| {
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (c, &v) in q.iter_mut().zip(x.iter()) {
            let r = round_ne(v * id) + 8.0;
            *c = r.clamp(0.0, 15.0) as u8;
        }
    };
    let err_for = |d: f32, q: &[u8; QK]| -> f32 {
        x.iter()
            .zip(q.iter())
            .map(|(&v, &c)| {
                let e = v - d * (c as f32 - 8.0);
                e * e
            })
            .sum()
    };
    let mut best_q = [0u8; QK];
    let mut best_d = 0.0f32;
    let mut best_err = f32::INFINITY;
    let mut q = [0u8; QK];
    // Candidate divisors around the classic -8.
    for step in 0..9 {
        let div = -8.0 + 0.25 * step as f32;
        let d0 = f16::from_f32(max / div).to_f32();
        codes_for(d0, &mut q);
        // Least-squares scale for these codes.
        let (mut num, mut den) = (0.0f32, 0.0f32);
        for (&v, &c) in x.iter().zip(q.iter()) {
            let w = c as f32 - 8.0;
            num += v * w;
            den += w * w;
        }
        for d in [
            d0,
            if den > 0.0 {
                f16::from_f32(num / den).to_f32()
            } else {
                d0
            },
        ] {
            codes_for(d, &mut q);
            let e = err_for(d, &q);
            if e < best_err {
                best_err = e;
                best_d = d;
                best_q = q;
            }
        }
    }
    let mut qs = [0u8; QK / 2];
    for j in 0..QK / 2 {
        qs[j] = best_q[j] | (best_q[j + QK / 2] << 4);
    }
    BlockQ4 {
        d: f16::from_f32(best_d),
        qs,
    }
}

/// Quantize one block to [`BlockQ4A`] (asymmetric 4-bit): `m = min`, `d = (max-min)/15`,
/// both rounded to f16 before the codes are chosen.
pub fn quantize_block_q4a(x: &[f32; QK]) -> BlockQ4A {
    let (mut lo, mut hi) = (x[0], x[0]);
    for &v in x {
        lo = if v < lo { v } else { lo };
        hi = if v > hi { v } else { hi };
    }
    let m = f16::from_f32(lo);
    let d = f16::from_f32((hi - m.to_f32()) / 15.0);
    let (mf, df) = (m.to_f32(), d.to_f32());
    let id = if df != 0.0 { 1.0 / df } else { 0.0 };
    let mut q = [0u8; QK];
    for (c, &v) in q.iter_mut().zip(x.iter()) {
        *c = round_ne((v - mf) * id).clamp(0.0, 15.0) as u8;
    }
    let mut qs = [0u8; QK / 2];
    for j in 0..QK / 2 {
        qs[j] = q[j] | (q[j + QK / 2] << 4);
    }
    BlockQ4A { d, m, qs }
}

/// Dequantize one [`BlockQ4`] block.
pub fn dequantize_block_q4(b: &BlockQ4, y: &mut [f32; QK]) {
    let d = b.d.to_f32();
    for (i, o) in y.iter_mut().enumerate() {
        *o = d * (b.nibble(i) as f32 - 8.0);
    }
}

/// Dequantize one [`BlockQ4A`] block.
pub fn dequantize_block_q4a(b: &BlockQ4A, y: &mut [f32; QK]) {
    let (d, m) = (b.d.to_f32(), b.m.to_f32());
    for (i, o) in y.iter_mut().enumerate() {
        *o = d * b.nibble(i) as f32 + m;
    }
}

/// Quantize a weight row to [`BlockQ8`] blocks. Unlike the activation quantizer, the
/// codes are chosen with the f16-rounded scale, so dequantization is as exact as it
/// can be.
pub fn quantize_row_q8_weights(x: &[f32], y: &mut [BlockQ8]) {
    assert_eq!(
        x.len(),
        y.len() * QK,
        "quantize_row_q8_weights: length mismatch"
    );
    for (b, chunk) in y.iter_mut().zip(x.chunks_exact(QK)) {
        let amax = chunk
            .iter()
            .fold(0.0f32, |m, &v| if abs(v) > m { abs(v) } else { m });
        let d = f16::from_f32(amax / 127.0);
        let df = d.to_f32();
        let id = if df != 0.0 { 1.0 / df } else { 0.0 };
        b.d = d;
        for (q, &v) in b.qs.iter_mut().zip(chunk.iter()) {
            *q = round_ne(v * id).clamp(-127.0, 127.0) as i8;
        }
    }
}
