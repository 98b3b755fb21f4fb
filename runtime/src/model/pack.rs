//! Turning f32 weights (or carried-over quantized blocks) into the bytes of a tensor
//! in one of the file's formats.
use super::format::TensorFormat;
use crate::{Error, Result};
use bytemuck::Zeroable;
use hearth_quant::packed::{groups, pack_matrix, PackedBlock};
use hearth_quant::quantize::{quantize_block_q4, quantize_block_q4a, quantize_row_q8_weights};
use hearth_quant::{BlockQ4, BlockQ4A, BlockQ4Ax4, BlockQ4x4, BlockQ8, BlockQ8x4, QK};
use rayon::prelude::*;

/// A tensor's data in its file format, owned (typed so it stays aligned).
#[derive(Clone, Debug)]
pub enum TensorBytes {
    /// f32 values.
    F32(Vec<f32>),
    /// f16 values.
    F16(Vec<half::f16>),
    /// Packed 8-bit blocks.
    Q8x4(Vec<BlockQ8x4>),
    /// Packed 4-bit blocks.
    Q4x4(Vec<BlockQ4x4>),
    /// Packed asymmetric 4-bit blocks.
    Q4Ax4(Vec<BlockQ4Ax4>),
}

impl TensorBytes {
    /// The format.
    pub fn format(&self) -> TensorFormat {
        match self {
            TensorBytes::F32(_) => TensorFormat::F32,
            TensorBytes::F16(_) => TensorFormat::F16,
            TensorBytes::Q8x4(_) => TensorFormat::Q8x4,
            TensorBytes::Q4x4(_) => TensorFormat::Q4x4,
            TensorBytes::Q4Ax4(_) => TensorFormat::Q4Ax4,
        }
    }
    /// The bytes as stored in the file.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            TensorBytes::F32(v) => bytemuck::cast_slice(v),
            TensorBytes::F16(v) => bytemuck::cast_slice(v),
            TensorBytes::Q8x4(v) => bytemuck::cast_slice(v),
            TensorBytes::Q4x4(v) => bytemuck::cast_slice(v),
            TensorBytes::Q4Ax4(v) => bytemuck::cast_slice(v),
        }
    }
}

fn check_shape(
    format: TensorFormat,
    rows: usize,
    cols: usize,
    len: usize,
    what: &str,
) -> Result<()> {
    if format.is_packed() && !cols.is_multiple_of(QK) {
        return Err(Error::Invalid(format!(
            "{what}: {cols} columns is not a multiple of {QK}; cannot store it as {format}"
        )));
    }
    if rows.checked_mul(cols) != Some(len) {
        return Err(Error::Invalid(format!(
            "{what}: {len} values for a {rows}×{cols} tensor"
        )));
    }
    Ok(())
}

/// Quantize (or convert) a row-major `rows × cols` f32 matrix to `format`. Packed
/// formats are quantized one four-row group per rayon task.
pub fn quantize_matrix(
    format: TensorFormat,
    rows: usize,
    cols: usize,
    x: &[f32],
    what: &str,
) -> Result<TensorBytes> {
    check_shape(format, rows, cols, x.len(), what)?;
    Ok(match format {
        TensorFormat::F32 => TensorBytes::F32(x.to_vec()),
        TensorFormat::F16 => TensorBytes::F16(x.iter().map(|&v| half::f16::from_f32(v)).collect()),
        TensorFormat::Q8x4 => {
            TensorBytes::Q8x4(quantize_packed::<BlockQ8x4>(rows, cols, x, |row, out| {
                quantize_row_q8_weights(row, out)
            }))
        }
        TensorFormat::Q4x4 => {
            TensorBytes::Q4x4(quantize_packed::<BlockQ4x4>(rows, cols, x, |row, out| {
                for (b, c) in out.iter_mut().zip(row.chunks_exact(QK)) {
                    *b = quantize_block_q4(c.try_into().expect("QK chunk"));
                }
            }))
        }
        TensorFormat::Q4Ax4 => {
            TensorBytes::Q4Ax4(quantize_packed::<BlockQ4Ax4>(rows, cols, x, |row, out| {
                for (b, c) in out.iter_mut().zip(row.chunks_exact(QK)) {
                    *b = quantize_block_q4a(c.try_into().expect("QK chunk"));
                }
            }))
        }
    })
}

fn quantize_packed<P: PackedBlock + Send>(
    rows: usize,
    cols: usize,
    x: &[f32],
    quantize_row: impl Fn(&[f32], &mut [P::Row]) + Sync,
) -> Vec<P> {
    let nb = cols / QK;
    let mut out = vec![P::zeroed(); groups(rows) * nb];
    if nb == 0 {
        return out;
    }
    out.par_chunks_mut(nb).enumerate().for_each(|(g, dst)| {
        let mut row_blocks = vec![P::Row::zeroed(); hearth_quant::ROWS * nb];
        let live = (rows - g * hearth_quant::ROWS).min(hearth_quant::ROWS);
        for r in 0..live {
            let row = g * hearth_quant::ROWS + r;
            quantize_row(
                &x[row * cols..(row + 1) * cols],
                &mut row_blocks[r * nb..(r + 1) * nb],
            );
        }
        // `live` rows with `nb` blocks each; missing rows of a last group stay zero.
        pack_matrix::<P>(&row_blocks[..live * nb], live, nb, dst)
            .expect("lengths agree by construction");
    });
    out
}

/// Interleave already-quantized single-row blocks (`rows × cols/32`, row-major) into
/// packed blocks, bit for bit.
pub fn pack_blocks<P: PackedBlock>(
    src: &[P::Row],
    rows: usize,
    cols: usize,
    what: &str,
) -> Result<Vec<P>> {
    if !cols.is_multiple_of(QK) {
        return Err(Error::Invalid(format!(
            "{what}: {cols} columns is not a multiple of {QK}"
        )));
    }
    let nb = cols / QK;
    let mut out = vec![P::zeroed(); groups(rows) * nb];
    pack_matrix::<P>(src, rows, nb, &mut out)
        .map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
    Ok(out)
}

/// Row `row`'s blocks of a packed matrix, unpacked (for checks and inspection).
pub fn unpack_row<P: PackedBlock>(packed: &[P], cols: usize, row: usize) -> Vec<P::Row> {
    let nb = cols / QK;
    (0..nb)
        .map(|kb| hearth_quant::packed::packed_row_block(packed, nb, row, kb))
        .collect()
}

/// Dequantize a packed matrix to row-major f32 (tests, error measurements).
pub fn dequantize_packed(m: &hearth_quant::PackedMatrix<'_>) -> Vec<f32> {
    use hearth_quant::dispatch::PackedData;
    use hearth_quant::quantize::{dequantize_block_q4, dequantize_block_q4a, dequantize_row_q8};
    let (rows, cols) = (m.rows(), m.cols());
    let mut out = vec![0.0f32; rows * cols];
    for (r, row_out) in out.chunks_exact_mut(cols.max(1)).enumerate().take(rows) {
        match m.data() {
            PackedData::Q8(p) => {
                let blocks: Vec<BlockQ8> = unpack_row(p, cols, r);
                dequantize_row_q8(&blocks, row_out);
            }
            PackedData::Q4(p) => {
                for (b, o) in unpack_row::<BlockQ4x4>(p, cols, r)
                    .iter()
                    .zip(row_out.chunks_exact_mut(QK))
                {
                    let b: &BlockQ4 = b;
                    dequantize_block_q4(b, o.try_into().expect("QK chunk"));
                }
            }
            PackedData::Q4A(p) => {
                for (b, o) in unpack_row::<BlockQ4Ax4>(p, cols, r)
                    .iter()
                    .zip(row_out.chunks_exact_mut(QK))
                {
                    let b: &BlockQ4A = b;
                    dequantize_block_q4a(b, o.try_into().expect("QK chunk"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_then_dequantize_is_close_and_padded_rows_are_zero() {
        let (rows, cols) = (6, 64);
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        for fmt in [TensorFormat::Q8x4, TensorFormat::Q4x4, TensorFormat::Q4Ax4] {
            let t = quantize_matrix(fmt, rows, cols, &x, "t").unwrap();
            assert_eq!(t.as_bytes().len(), fmt.byte_len(rows, cols).unwrap());
            let data = match &t {
                TensorBytes::Q8x4(v) => hearth_quant::dispatch::PackedData::Q8(v),
                TensorBytes::Q4x4(v) => hearth_quant::dispatch::PackedData::Q4(v),
                TensorBytes::Q4Ax4(v) => hearth_quant::dispatch::PackedData::Q4A(v),
                _ => unreachable!(),
            };
            let m = hearth_quant::PackedMatrix::new(rows, cols, data).unwrap();
            let y = dequantize_packed(&m);
            let tol = if fmt == TensorFormat::Q8x4 {
                1.0 / 127.0
            } else {
                1.0 / 7.0
            };
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() <= tol, "{fmt}: {a} vs {b}");
            }
            // Rows 6 and 7 of the last group are padding: all-zero blocks.
            if let TensorBytes::Q8x4(v) = &t {
                for kb in 0..2 {
                    let b = v[2 + kb].unpack(3);
                    assert!(b.qs.iter().all(|&q| q == 0) && b.d.to_f32() == 0.0);
                }
            }
        }
    }

    #[test]
    fn rejects_bad_cols_and_lengths() {
        let e = quantize_matrix(TensorFormat::Q4x4, 2, 40, &[0.0; 80], "w")
            .unwrap_err()
            .to_string();
        assert!(e.contains("40 columns is not a multiple of 32"), "{e}");
        let e = quantize_matrix(TensorFormat::F32, 2, 40, &[0.0; 81], "w")
            .unwrap_err()
            .to_string();
        assert!(e.contains("81 values"), "{e}");
    }
}
