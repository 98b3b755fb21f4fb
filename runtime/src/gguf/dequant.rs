//! Conversion of ggml tensor data to f32.
//!
//! Written from the block format definitions. All block types are read field by
//! field from byte slices, so the input needs no particular alignment.
use half::f16;
use rayon::prelude::*;

use super::types::GgmlType;
use crate::{Error, Result};

/// Inputs of at least this many values are dequantized in parallel.
const PARALLEL_MIN_VALUES: usize = 1 << 20;

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes `bytes` of type `ty` into `out`, which must hold exactly the number
/// of values the bytes encode.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    if !ty.can_dequantize() {
        return Err(Error::Format(format!(
            "gguf: cannot dequantize type {ty}: hearth reads F32, F16, BF16, Q4_0, Q4_1, \
             Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K"
        )));
    }
    let (block_elems, block_bytes) = ty
        .block_layout()
        .expect("dequantizable types have a layout");
    if !bytes.len().is_multiple_of(block_bytes)
        || !out.len().is_multiple_of(block_elems)
        || bytes.len() / block_bytes != out.len() / block_elems
    {
        return Err(Error::Format(format!(
            "gguf: dequantize {ty}: {} bytes do not encode {} values \
             ({block_bytes} bytes per block of {block_elems})",
            bytes.len(),
            out.len()
        )));
    }
    let block_fn: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::F32 => |b, y| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => |b, y| y[0] = f16_at(b, 0),
        GgmlType::BF16 => {
            |b, y| y[0] = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
        }
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q5_1 => q5_1,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q4_K => q4_k,
        GgmlType::Q5_K => q5_k,
        GgmlType::Q6_K => q6_k,
        _ => unreachable!("checked by can_dequantize"),
    };
    let run = |bytes: &[u8], out: &mut [f32]| {
        for (b, y) in bytes
            .chunks_exact(block_bytes)
            .zip(out.chunks_exact_mut(block_elems))
        {
            block_fn(b, y);
        }
    };
    // Whole tensors (embeddings of 100M+ values) are split across the thread pool;
    // small inputs are not worth the hand-off.
    if out.len() >= PARALLEL_MIN_VALUES {
        let chunk_blocks = PARALLEL_MIN_VALUES / 4 / block_elems;
        bytes
            .par_chunks(chunk_blocks * block_bytes)
            .zip(out.par_chunks_mut(chunk_blocks * block_elems))
            .for_each(|(b, y)| run(b, y));
    } else {
        run(bytes, out);
    }
    Ok(())
}

// The 32-value formats share one nibble order: byte j holds value j in its low
// nibble and value j + 16 in its high nibble.

/// `{ f16 d; u8 qs[16] }`: `x = d * (q - 8)`.
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for (j, &q) in qs.iter().enumerate() {
        y[j] = d * ((q & 0x0F) as i32 - 8) as f32;
        y[j + 16] = d * ((q >> 4) as i32 - 8) as f32;
    }
}

/// `{ f16 d; f16 m; u8 qs[16] }`: `x = d * q + m`.
fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qs = &b[4..20];
    for (j, &q) in qs.iter().enumerate() {
        y[j] = d * (q & 0x0F) as f32 + m;
        y[j + 16] = d * (q >> 4) as f32 + m;
    }
}

/// The 5-bit values of a Q5 block: nibbles from `qs`, fifth bits from the 32-bit
/// little-endian `qh` (bit i belongs to value i).
fn q5_values(qh: &[u8], qs: &[u8]) -> [u8; 32] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut v = [0u8; 32];
    for (j, &q) in qs.iter().enumerate() {
        let hi_lo = ((qh >> j) & 1) as u8;
        let hi_hi = ((qh >> (j + 16)) & 1) as u8;
        v[j] = (q & 0x0F) | (hi_lo << 4);
        v[j + 16] = (q >> 4) | (hi_hi << 4);
    }
    v
}

/// `{ f16 d; u8 qh[4]; u8 qs[16] }`: `x = d * (q - 16)`.
fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (y, q) in y.iter_mut().zip(q5_values(&b[2..6], &b[6..22])) {
        *y = d * (q as i32 - 16) as f32;
    }
}

/// `{ f16 d; f16 m; u8 qh[4]; u8 qs[16] }`: `x = d * q + m`.
fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for (y, q) in y.iter_mut().zip(q5_values(&b[4..8], &b[8..24])) {
        *y = d * q as f32 + m;
    }
}

/// `{ f16 d; i8 qs[32] }`: `x = d * q`.
fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
        *y = d * (q as i8) as f32;
    }
}

/// Scale and minimum of sub-block `j` (0..8) from the 12 packed bytes of Q4_K/Q5_K.
///
/// Eight 6-bit scales and eight 6-bit minimums: sub-blocks 0..4 keep theirs in the
/// low 6 bits of bytes 0..4 (scales) and 4..8 (mins); sub-blocks 4..8 keep their low
/// 4 bits in the nibbles of bytes 8..12 and their top 2 bits in the spare top bits
/// of bytes 0..8.
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        let sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        let m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        (sc, m)
    }
}

/// `{ f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }`: 8 sub-blocks of 32 values,
/// `x = d * sc * q - dmin * m`. Each 32-byte run of `qs` holds two sub-blocks: the
/// first in the low nibbles, the second in the high nibbles.
fn q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    for (pair, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc0, m0) = scale_min_k4(2 * pair, scales);
        let (sc1, m1) = scale_min_k4(2 * pair + 1, scales);
        let (d0, d1) = (d * sc0 as f32, d * sc1 as f32);
        let (o0, o1) = (dmin * m0 as f32, dmin * m1 as f32);
        for (l, &q) in q.iter().enumerate() {
            y[l] = d0 * (q & 0x0F) as f32 - o0;
            y[l + 32] = d1 * (q >> 4) as f32 - o1;
        }
    }
}

/// `{ f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }`: as Q4_K with a fifth
/// bit per value; for sub-block `s`, the bit of value `l` is bit `s` of `qh[l]`.
fn q5_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (pair, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (s0, s1) = (2 * pair, 2 * pair + 1);
        let (sc0, m0) = scale_min_k4(s0, scales);
        let (sc1, m1) = scale_min_k4(s1, scales);
        let (d0, d1) = (d * sc0 as f32, d * sc1 as f32);
        let (o0, o1) = (dmin * m0 as f32, dmin * m1 as f32);
        for (l, &q) in q.iter().enumerate() {
            let h0 = ((qh[l] >> s0) & 1) << 4;
            let h1 = ((qh[l] >> s1) & 1) << 4;
            y[l] = d0 * ((q & 0x0F) | h0) as f32 - o0;
            y[l + 32] = d1 * ((q >> 4) | h1) as f32 - o1;
        }
    }
}

/// `{ u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }`: 16 sub-blocks of 16 values,
/// `x = d * scale * (q - 32)` with 6-bit `q` (4 low bits in `ql`, 2 high in `qh`).
///
/// Each half of 128 values uses 64 bytes of `ql`, 32 of `qh` and 8 scales. Within a
/// half, value `l + 32 * k` (l < 32, k < 4) takes its low bits from the low (k < 2)
/// or high (k >= 2) nibble of `ql[l + 32 * (k % 2)]`, its high bits from bits
/// `2k..2k+2` of `qh[l]`, and its scale from `scales[l / 16 + 2 * k]`.
fn q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    for half in 0..2 {
        let ql = &b[64 * half..64 * half + 64];
        let qh = &b[128 + 32 * half..128 + 32 * half + 32];
        let sc = &b[192 + 8 * half..192 + 8 * half + 8];
        let y = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            for k in 0..4 {
                let lo = ql[l + 32 * (k % 2)];
                let lo = if k < 2 { lo & 0x0F } else { lo >> 4 };
                let hi = (qh[l] >> (2 * k)) & 3;
                let q = (lo | (hi << 4)) as i32 - 32;
                let scale = sc[l / 16 + 2 * k] as i8;
                y[l + 32 * k] = d * scale as f32 * q as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_length_mismatch_and_unsupported_types() {
        let mut out = [0f32; 32];
        let e = dequantize(GgmlType::Q8_0, &[0u8; 33], &mut out).unwrap_err();
        assert!(
            e.to_string().contains("33 bytes do not encode 32 values"),
            "{e}"
        );
        let e = dequantize(GgmlType::Q2_K, &[0u8; 84], &mut [0f32; 256]).unwrap_err();
        assert!(e.to_string().contains("cannot dequantize type Q2_K"), "{e}");
        let e = dequantize(GgmlType::Unknown(77), &[], &mut []).unwrap_err();
        assert!(e.to_string().contains("unknown ggml type id 77"), "{e}");
    }

    #[test]
    fn q4_k_scale_unpacking_round_trips_6_bit_values() {
        // Pack 8 known scales/mins the way the format describes and unpack them.
        let sc: [u8; 8] = [1, 63, 17, 40, 5, 62, 33, 48];
        let mn: [u8; 8] = [60, 2, 31, 9, 44, 13, 0, 63];
        let mut s = [0u8; 12];
        for j in 0..4 {
            s[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            s[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
            s[j + 8] = (sc[j + 4] & 0x0F) | ((mn[j + 4] & 0x0F) << 4);
        }
        for j in 0..8 {
            assert_eq!(scale_min_k4(j, &s), (sc[j], mn[j]), "sub-block {j}");
        }
    }
}
