//! GGUF (llama.cpp) → Hearth.
use super::{check_tokenizer, write_model, ConvertReport, QuantPolicy, RowSource, SourceBlocks};
use crate::gguf::{self, GgmlType, GgufFile, GgufTensorInfo};
use crate::model::{Arch, ModelConfig, RopeStyle, TensorSpec};
use crate::{Error, Result};
use std::path::Path;

fn bad(msg: String) -> Error {
    Error::Invalid(format!("gguf import: {msg}"))
}

/// Optional metadata: absent is `None`, present with the wrong type is an error.
fn opt<'g, T>(
    g: &'g GgufFile,
    key: &str,
    get: impl Fn(&'g GgufFile, &str) -> Result<T>,
) -> Result<Option<T>> {
    match g.get(key) {
        None => Ok(None),
        Some(_) => get(g, key).map(Some),
    }
}

/// Token ids that end a turn, looked up by text.
const STOP_TOKENS: [&str; 4] = [
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
];

/// Read the model config from GGUF metadata (llama and qwen2 architectures).
pub fn config_from_gguf(g: &GgufFile) -> Result<ModelConfig> {
    let arch_name = g.get_str("general.architecture")?;
    let (arch, rope_style) = match arch_name {
        // GGUF's converter permutes llama's q/k rows for adjacent-pair RoPE.
        "llama" => (Arch::Llama, RopeStyle::Norm),
        "qwen2" => (Arch::Qwen2, RopeStyle::Neox),
        other => {
            return Err(bad(format!(
                "architecture `{other}` is not supported (llama, qwen2)"
            )))
        }
    };
    let k = |s: &str| format!("{arch_name}.{s}");
    let hidden_size = g.get_usize(&k("embedding_length"))?;
    let n_heads = g.get_usize(&k("attention.head_count"))?;
    let n_kv_heads = opt(g, &k("attention.head_count_kv"), GgufFile::get_usize)?.unwrap_or(n_heads);
    if n_heads == 0 || hidden_size % n_heads != 0 && g.get(&k("attention.key_length")).is_none() {
        return Err(bad(format!(
            "embedding_length {hidden_size} is not divisible by head_count {n_heads}"
        )));
    }
    let head_dim =
        opt(g, &k("attention.key_length"), GgufFile::get_usize)?.unwrap_or(hidden_size / n_heads);
    let rope_dim = opt(g, &k("rope.dimension_count"), GgufFile::get_usize)?.unwrap_or(head_dim);
    if rope_dim != head_dim {
        return Err(bad(format!(
            "partial rotary embedding (rope.dimension_count {rope_dim} ≠ head size {head_dim}) is not supported"
        )));
    }
    if let Some(t) = opt(g, &k("rope.scaling.type"), GgufFile::get_str)? {
        if t != "none" {
            return Err(bad(format!("RoPE scaling `{t}` is not supported")));
        }
    }
    let tokens = g.get_str_array("tokenizer.ggml.tokens")?;
    let find = |text: &str| tokens.iter().position(|t| *t == text).map(|i| i as u32);
    let bos_id = opt(g, "tokenizer.ggml.bos_token_id", GgufFile::get_u32)?;
    let eos_id = match opt(g, "tokenizer.ggml.eos_token_id", GgufFile::get_u32)? {
        Some(id) => id,
        None => find("<|im_end|>")
            .or_else(|| find("<|endoftext|>"))
            .ok_or_else(|| {
                bad("no tokenizer.ggml.eos_token_id and no <|im_end|>/<|endoftext|> token".into())
            })?,
    };
    let mut stop_ids = vec![eos_id];
    let mut add_stop = |id: Option<u32>| {
        if let Some(id) = id {
            if !stop_ids.contains(&id) {
                stop_ids.push(id);
            }
        }
    };
    add_stop(opt(g, "tokenizer.ggml.eot_token_id", GgufFile::get_u32)?);
    add_stop(opt(g, "tokenizer.ggml.eom_token_id", GgufFile::get_u32)?);
    for t in STOP_TOKENS {
        add_stop(find(t));
    }
    // llama.cpp's default: SentencePiece vocabularies add BOS, BPE ones do not.
    let spm = g.get("tokenizer.ggml.model").and_then(|v| v.as_str()) == Some("llama");
    let add_bos = opt(g, "tokenizer.ggml.add_bos_token", GgufFile::get_bool)?
        .unwrap_or(spm && bos_id.is_some());
    let vocab_size = tokens.len();
    let embd = g.tensor("token_embd.weight")?;
    if embd.rows() != vocab_size {
        return Err(bad(format!(
            "token_embd.weight has {} rows but the tokenizer has {vocab_size} tokens",
            embd.rows()
        )));
    }
    let has = |name: &str| g.tensors().iter().any(|t| t.name == name);
    let config = ModelConfig {
        name: opt(g, "general.name", GgufFile::get_str)?
            .unwrap_or(arch_name)
            .to_owned(),
        arch,
        vocab_size,
        hidden_size,
        n_layers: g.get_usize(&k("block_count"))?,
        n_heads,
        n_kv_heads,
        head_dim,
        ffn_dim: g.get_usize(&k("feed_forward_length"))?,
        rope_theta: opt(g, &k("rope.freq_base"), GgufFile::get_f32)?.unwrap_or(10_000.0),
        rope_style,
        norm_eps: g.get_f32(&k("attention.layer_norm_rms_epsilon"))?,
        context_length: g.get_usize(&k("context_length"))?,
        tied_embeddings: !has("output.weight"),
        qkv_bias: has("blk.0.attn_q.bias"),
        bos_id,
        eos_id,
        stop_ids,
        add_bos,
        chat_template: opt(g, "tokenizer.chat_template", GgufFile::get_str)?.map(str::to_owned),
    };
    config.validate().map_err(|e| bad(e.to_string()))?;
    Ok(config)
}

/// One GGUF tensor as a row source.
struct GgufRows<'a> {
    g: &'a GgufFile,
    info: &'a GgufTensorInfo,
    row_bytes: usize,
    cols: usize,
}

impl RowSource for GgufRows<'_> {
    fn blocks(&self) -> SourceBlocks {
        match self.info.ty {
            GgmlType::Q8_0 => SourceBlocks::Q8_0,
            GgmlType::Q4_0 => SourceBlocks::Q4_0,
            GgmlType::Q4_1 => SourceBlocks::Q4_1,
            _ => SourceBlocks::Other,
        }
    }
    fn raw_rows(&self, r0: usize, r1: usize) -> Result<&[u8]> {
        let all = self.g.tensor_bytes(self.info)?;
        all.get(r0 * self.row_bytes..r1 * self.row_bytes)
            .ok_or_else(|| {
                bad(format!(
                    "tensor `{}` data is shorter than its shape",
                    self.info.name
                ))
            })
    }
    fn f32_rows(&self, r0: usize, r1: usize, out: &mut [f32]) -> Result<()> {
        debug_assert_eq!(out.len(), (r1 - r0) * self.cols);
        gguf::dequantize(self.info.ty, self.raw_rows(r0, r1)?, out)
            .map_err(|e| bad(format!("tensor `{}`: {e}", self.info.name)))
    }
}

fn source<'a>(g: &'a GgufFile, spec: &TensorSpec) -> Result<GgufRows<'a>> {
    let info = g.tensor(&spec.name)?;
    let shape_ok = info.dims.len() <= 2 && (info.rows(), info.cols()) == (spec.rows, spec.cols);
    if !shape_ok {
        return Err(bad(format!(
            "tensor `{}` has dims {:?}, the config needs {}×{} (rows × cols)",
            spec.name, info.dims, spec.rows, spec.cols
        )));
    }
    if !info.ty.can_dequantize() {
        return Err(bad(format!(
            "tensor `{}` has type {}, which hearth cannot read",
            spec.name, info.ty
        )));
    }
    let (elems, bytes) = info
        .ty
        .block_layout()
        .expect("dequantizable types have a layout");
    if !spec.cols.is_multiple_of(elems) {
        return Err(bad(format!(
            "tensor `{}`: row of {} values is not whole {} blocks",
            spec.name, spec.cols, info.ty
        )));
    }
    g.tensor_bytes(info)?; // bounds check up front
    Ok(GgufRows {
        g,
        info,
        row_bytes: spec.cols / elems * bytes,
        cols: spec.cols,
    })
}

/// Convert the GGUF file `input` to a Hearth model at `output`.
pub fn convert_gguf(
    input: &Path,
    output: &Path,
    policy: QuantPolicy,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ConvertReport> {
    let g = GgufFile::open(input)?;
    let config = config_from_gguf(&g)?;
    let tokenizer = gguf::tokenizer_json(&g)?;
    check_tokenizer(&tokenizer, config.vocab_size)?;
    let wanted: std::collections::HashSet<String> = config
        .expected_tensors()
        .into_iter()
        .map(|s| s.name)
        .collect();
    for t in g.tensors().iter().filter(|t| !wanted.contains(&t.name)) {
        tracing::warn!("gguf import: ignoring tensor `{}` ({})", t.name, t.ty);
    }
    write_model(output, &config, &tokenizer, policy, progress, |spec| {
        Ok(Box::new(source(&g, spec)?) as Box<dyn RowSource>)
    })
}
