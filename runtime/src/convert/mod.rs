//! Importers: GGUF and Hugging Face safetensors folders → Hearth model files.
//!
//! Both importers build a [`ModelConfig`], then stream the tensors the config implies,
//! in file order, through [`ModelWriter`], a chunk of rows at a time, so a tensor is
//! never held in memory as f32 whole. All layout decisions are made here; the engine
//! only reads.
mod gguf;
mod policy;
mod safetensors;

pub use self::gguf::{config_from_gguf, convert_gguf};
pub use self::safetensors::{config_from_hf, convert_safetensors};
pub use policy::{QuantPolicy, SourceBlocks};

use crate::model::pack::{pack_blocks, quantize_matrix};
use crate::model::{ModelConfig, ModelWriter, TensorFormat, TensorSpec};
use crate::{Error, Result};
use bytemuck::Zeroable;
use hearth_quant::packed::PackedBlock;
use hearth_quant::{BlockQ4Ax4, BlockQ4x4, BlockQ8, BlockQ8x4, QK};
use std::path::{Path, PathBuf};

/// Rows converted per step: a multiple of the packed group height (4), so chunks
/// pack exactly like the whole matrix, and small enough to bound memory.
const CHUNK_ROWS: usize = 1024;

/// What a conversion did.
#[derive(Clone, Debug)]
pub struct ConvertReport {
    /// The file written.
    pub output: PathBuf,
    /// The model's config.
    pub config: ModelConfig,
    /// Tensors written.
    pub tensors: usize,
    /// Tensors whose quantized blocks were copied bit for bit.
    pub carried: usize,
    /// Tensors (re)quantized from f32.
    pub requantized: usize,
    /// Size of the output file.
    pub bytes: u64,
}

/// Convert `input` — a GGUF file or a Hugging Face folder with `config.json`,
/// `tokenizer.json` and `*.safetensors` — to a Hearth model at `output`.
/// `progress(done, total)` counts weights.
pub fn convert(
    input: &Path,
    output: &Path,
    policy: QuantPolicy,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ConvertReport> {
    if input.is_dir() {
        convert_safetensors(input, output, policy, progress)
    } else {
        convert_gguf(input, output, policy, progress)
    }
}

/// Default output path: the input with its extension replaced by `.hearth` (a folder
/// gets `<folder>.hearth` beside it).
pub fn default_output(input: &Path) -> PathBuf {
    let trimmed: PathBuf = input.components().collect(); // drops a trailing `/`
    trimmed.with_extension("hearth")
}

/// Source of one tensor's rows, implemented by each importer.
trait RowSource {
    /// The block type, for bit-exact carrying.
    fn blocks(&self) -> SourceBlocks;
    /// Raw bytes of rows `r0..r1` in the source block format (only called when
    /// `blocks()` is a carryable type).
    fn raw_rows(&self, r0: usize, r1: usize) -> Result<&[u8]>;
    /// Rows `r0..r1` as f32 into `out` (`(r1 - r0) * cols` values).
    fn f32_rows(&self, r0: usize, r1: usize, out: &mut [f32]) -> Result<()>;
}

/// Which conversion a tensor went through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Carried,
    Requantized,
}

/// Check that a matrix can be stored in a packed format (clear error naming it).
fn check_matrix(spec: &TensorSpec) -> Result<()> {
    if !spec.is_vector() && !spec.cols.is_multiple_of(QK) {
        return Err(Error::Invalid(format!(
            "tensor `{}` has {} columns, not a multiple of {QK}: hearth's block formats cannot store it",
            spec.name, spec.cols
        )));
    }
    Ok(())
}

/// Stream one tensor into the writer in `format`, chunk by chunk.
fn write_tensor(
    w: &mut ModelWriter,
    spec: &TensorSpec,
    format: TensorFormat,
    src: &dyn RowSource,
    progress: &mut dyn FnMut(usize),
) -> Result<Route> {
    let (rows, cols) = (spec.rows, spec.cols);
    let carry = src.blocks().carry_format() == Some(format);
    w.begin_tensor(&spec.name, format, rows, cols)?;
    let mut buf = Vec::new();
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + CHUNK_ROWS).min(rows);
        let n = r1 - r0;
        if carry {
            let raw = src.raw_rows(r0, r1)?;
            match format {
                TensorFormat::Q8x4 => carry_chunk::<BlockQ8x4>(w, raw, n, spec, clamp_q8)?,
                TensorFormat::Q4x4 => carry_chunk::<BlockQ4x4>(w, raw, n, spec, |_| 0)?,
                TensorFormat::Q4Ax4 => carry_chunk::<BlockQ4Ax4>(w, raw, n, spec, |_| 0)?,
                _ => unreachable!("only block formats are carried"),
            }
        } else {
            buf.resize(n * cols, 0.0);
            src.f32_rows(r0, r1, &mut buf)?;
            let t = quantize_matrix(format, n, cols, &buf, &spec.name)?;
            w.write_tensor_data(t.as_bytes())?;
        }
        progress(n * cols);
        r0 = r1;
    }
    w.end_tensor()?;
    Ok(if carry {
        Route::Carried
    } else {
        Route::Requantized
    })
}

/// Q8 weights are kept in -127..=127 (what every quantizer, ours and llama.cpp's, produces):
/// the x86 kernels negate weights in their sign trick, and -128 has no negation in i8. A
/// GGUF `Q8_0` block holding -128 (hand-made or hostile) is clamped; returns how many values.
fn clamp_q8(blocks: &mut [BlockQ8]) -> usize {
    let mut n = 0;
    for q in blocks.iter_mut().flat_map(|b| b.qs.iter_mut()) {
        if *q == i8::MIN {
            *q = -127;
            n += 1;
        }
    }
    n
}

/// Interleave `n` rows of source blocks, unchanged (but for `fix`, which returns how many
/// values it changed), and write them.
fn carry_chunk<P: PackedBlock>(
    w: &mut ModelWriter,
    raw: &[u8],
    n: usize,
    spec: &TensorSpec,
    fix: fn(&mut [P::Row]) -> usize,
) -> Result<()> {
    let block = size_of::<P::Row>();
    let need = n * (spec.cols / QK) * block;
    if raw.len() != need {
        return Err(Error::Format(format!(
            "tensor `{}`: {} source bytes for {n} rows, expected {need}",
            spec.name,
            raw.len()
        )));
    }
    // The source need not be aligned for the block type: copy into typed blocks.
    let mut blocks = vec![P::Row::zeroed(); n * (spec.cols / QK)];
    bytemuck::cast_slice_mut::<P::Row, u8>(&mut blocks).copy_from_slice(raw);
    let changed = fix(&mut blocks);
    if changed > 0 {
        tracing::warn!(
            "tensor `{}`: {changed} Q8 values of -128 clamped to -127",
            spec.name
        );
    }
    let packed: Vec<P> = pack_blocks(&blocks, n, spec.cols, &spec.name)?;
    w.write_tensor_data(bytemuck::cast_slice(&packed))
}

/// Write all tensors of `config` from `source(spec)`, then finish the file.
fn write_model<'s>(
    output: &Path,
    config: &ModelConfig,
    tokenizer_json: &str,
    policy: QuantPolicy,
    progress: &mut dyn FnMut(u64, u64),
    mut source: impl FnMut(&TensorSpec) -> Result<Box<dyn RowSource + 's>>,
) -> Result<ConvertReport> {
    let specs = config.expected_tensors();
    for s in &specs {
        check_matrix(s)?;
    }
    // Open every source first: a missing or mis-shaped tensor fails before any writing.
    let sources = specs.iter().map(&mut source).collect::<Result<Vec<_>>>()?;
    let total: u64 = specs.iter().map(|s| s.rows as u64 * s.cols as u64).sum();
    let mut done = 0u64;
    progress(0, total);
    let mut w = ModelWriter::create(output, config, tokenizer_json)?;
    let (mut carried, mut requantized) = (0, 0);
    for (spec, src) in specs.iter().zip(&sources) {
        let format = policy.format_for(&spec.name, spec.is_vector(), src.blocks());
        let route = write_tensor(&mut w, spec, format, src.as_ref(), &mut |n| {
            done += n as u64;
            progress(done, total);
        })?;
        match route {
            Route::Carried => carried += 1,
            Route::Requantized => requantized += 1,
        }
    }
    let tensors = w.tensor_count();
    let out = w.finish()?;
    let bytes = std::fs::metadata(&out)
        .map_err(|e| Error::io(format!("reading {}", out.display()), e))?
        .len();
    Ok(ConvertReport {
        output: out,
        config: config.clone(),
        tensors,
        carried,
        requantized,
        bytes,
    })
}

/// Validate a tokenizer.json by loading it, so a bad tokenizer fails the conversion
/// instead of the first run.
fn check_tokenizer(json: &str, vocab_size: usize) -> Result<()> {
    let tok: tokenizers::Tokenizer = json
        .parse()
        .map_err(|e| Error::Invalid(format!("the tokenizer does not load: {e}")))?;
    let n = tok.get_vocab_size(true);
    if n > vocab_size {
        return Err(Error::Invalid(format!(
            "the tokenizer has {n} tokens but the model's vocabulary is {vocab_size}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carried_q8_blocks_never_hold_minus_128() {
        let mut blocks = [BlockQ8::zeroed(); 2];
        blocks[0].qs[3] = i8::MIN;
        blocks[1].qs[31] = i8::MIN;
        blocks[1].qs[0] = -127;
        blocks[1].qs[1] = 127;
        assert_eq!(clamp_q8(&mut blocks), 2);
        assert_eq!(blocks[0].qs[3], -127);
        assert_eq!(blocks[1].qs[31], -127);
        assert_eq!((blocks[1].qs[0], blocks[1].qs[1]), (-127, 127));
        assert_eq!(clamp_q8(&mut blocks), 0, "a clean block is left as it is");
    }
}
