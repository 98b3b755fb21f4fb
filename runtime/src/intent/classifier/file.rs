//! Writing a classifier as a Hearth model file (`docs/model-format.md`, "Intent
//! classifier files"): the metadata JSON in the config section, the class names one
//! per line in the tokenizer section, the Q8-packed weights and f32 biases as tensors.
//! The file is small (tens of KB), so it is built in memory.
use bytemuck::Zeroable;
use hearth_quant::classifier::{FC1_BIAS, FC1_WEIGHT, FC2_BIAS, FC2_WEIGHT};
use hearth_quant::packed::{groups, pack_matrix};
use hearth_quant::quantize::quantize_row_q8_weights;
use hearth_quant::{BlockQ8, BlockQ8x4, QK};

use super::train::Net;
use crate::model::format::{
    align_up, Header, Section, TableEntry, TensorFormat, DATA_ALIGN, HEADER_LEN, TENSOR_ALIGN,
    VERSION,
};
use crate::{Error, Result};

/// A row-major `rows × cols` f32 matrix quantized to Q8 and packed (`Q8x4`).
fn q8_packed(w: &[f32], rows: usize, cols: usize) -> Result<Vec<u8>> {
    let nb = cols / QK;
    let mut q = vec![BlockQ8::zeroed(); rows * nb];
    for (row, out) in w.chunks_exact(cols).zip(q.chunks_exact_mut(nb)) {
        quantize_row_q8_weights(row, out);
    }
    let mut packed = vec![BlockQ8x4::zeroed(); groups(rows) * nb];
    pack_matrix(&q, rows, nb, &mut packed)?;
    Ok(bytemuck::cast_slice(&packed).to_vec())
}

/// The model file's bytes for `net`, with `labels` (one per class) and `meta` (the
/// config section's JSON object).
pub fn to_bytes(net: &Net, labels: &[String], meta: &serde_json::Value) -> Result<Vec<u8>> {
    if labels.len() != net.classes || labels.iter().any(|l| l.is_empty() || l.contains('\n')) {
        return Err(Error::Invalid(
            "one non-empty, single-line label per class is needed".into(),
        ));
    }
    if !net.buckets.is_multiple_of(QK) || !net.hidden.is_multiple_of(QK) {
        return Err(Error::Invalid(format!(
            "buckets ({}) and hidden units ({}) must be multiples of {QK}",
            net.buckets, net.hidden
        )));
    }
    let f32_bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let tensors = [
        (
            FC1_WEIGHT,
            TensorFormat::Q8x4,
            net.hidden,
            net.buckets,
            q8_packed(&net.w1_rows(), net.hidden, net.buckets)?,
        ),
        (
            FC1_BIAS,
            TensorFormat::F32,
            1,
            net.hidden,
            f32_bytes(&net.b1),
        ),
        (
            FC2_WEIGHT,
            TensorFormat::Q8x4,
            net.classes,
            net.hidden,
            q8_packed(&net.w2, net.classes, net.hidden)?,
        ),
        (
            FC2_BIAS,
            TensorFormat::F32,
            1,
            net.classes,
            f32_bytes(&net.b2),
        ),
    ];

    let config = serde_json::to_vec_pretty(meta)
        .map_err(|e| Error::Invalid(format!("serializing the classifier metadata: {e}")))?;
    let names: String = labels.iter().map(|l| format!("{l}\n")).collect();
    let mut out = vec![0u8; HEADER_LEN];
    let put = |out: &mut Vec<u8>, b: &[u8]| -> Section {
        let s = Section {
            offset: out.len() as u64,
            len: b.len() as u64,
        };
        out.extend_from_slice(b);
        s
    };
    let mut header = Header {
        version: VERSION,
        ..Header::default()
    };
    header.config = put(&mut out, &config);
    header.tokenizer = put(&mut out, names.as_bytes());
    let pad = |out: &mut Vec<u8>, align: u64| {
        out.resize(
            align_up(out.len() as u64, align).expect("small file") as usize,
            0,
        )
    };
    pad(&mut out, DATA_ALIGN);
    let data_start = out.len() as u64;
    let mut entries = Vec::new();
    for (name, format, rows, cols, bytes) in &tensors {
        pad(&mut out, TENSOR_ALIGN);
        let s = put(&mut out, bytes);
        entries.push(TableEntry {
            name: (*name).to_string(),
            format: *format,
            rows: *rows as u64,
            cols: *cols as u64,
            offset: s.offset,
            len: s.len,
            crc32: crc32fast::hash(bytes),
        });
    }
    header.data = Section {
        offset: data_start,
        len: out.len() as u64 - data_start,
    };
    let mut table = Vec::new();
    for e in &entries {
        e.write_to(&mut table);
    }
    header.table = put(&mut out, &table);
    header.n_tensors = entries.len() as u64;
    let mut crc = crc32fast::Hasher::new();
    for s in header.meta_sections() {
        crc.update(&out[s.offset as usize..(s.offset + s.len) as usize]);
    }
    header.meta_crc32 = crc.finalize();
    out[..HEADER_LEN].copy_from_slice(&header.to_bytes());
    Ok(out)
}
