//! Hugging Face folder (`config.json`, `tokenizer.json`, `*.safetensors`) → Hearth.
//!
//! Tensor names are mapped to GGUF's; HF keeps q/k in their original order, so RoPE
//! rotates halves ([`RopeStyle::Neox`]) for both llama and qwen2.
use super::{check_tokenizer, write_model, ConvertReport, QuantPolicy, RowSource, SourceBlocks};
use crate::model::{Arch, ModelConfig, RopeStyle, TensorSpec};
use crate::{Error, Result};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

fn bad(msg: String) -> Error {
    Error::Invalid(format!("safetensors import: {msg}"))
}

/// `eos_token_id` is an int or a list of ints in HF configs.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

/// The fields of HF's `config.json` this importer reads.
#[derive(Deserialize)]
struct HfConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f32,
    rope_theta: Option<f32>,
    max_position_embeddings: usize,
    tie_word_embeddings: Option<bool>,
    rope_scaling: Option<serde_json::Value>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
    #[serde(rename = "_name_or_path")]
    name_or_path: Option<String>,
}

/// The fields of `tokenizer_config.json` this importer reads (the file is optional).
#[derive(Deserialize, Default)]
struct HfTokenizerConfig {
    add_bos_token: Option<bool>,
    chat_template: Option<serde_json::Value>,
}

fn read(dir: &Path, name: &str) -> Result<Option<String>> {
    let p = dir.join(name);
    match std::fs::read_to_string(&p) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", p.display()), e)),
    }
}

fn read_required(dir: &Path, name: &str) -> Result<String> {
    read(dir, name)?.ok_or_else(|| bad(format!("{} has no {name}", dir.display())))
}

const STOP_TOKENS: [&str; 4] = [
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
];

/// Build the config from a HF folder's `config.json`, `tokenizer.json` and (if
/// present) `tokenizer_config.json`. `has_lm_head` says whether the weights include
/// `lm_head.weight`.
pub fn config_from_hf(dir: &Path, has_lm_head: bool) -> Result<ModelConfig> {
    let hf: HfConfig = serde_json::from_str(&read_required(dir, "config.json")?)
        .map_err(|e| bad(format!("config.json: {e}")))?;
    let tok_cfg: HfTokenizerConfig = match read(dir, "tokenizer_config.json")? {
        Some(s) => {
            serde_json::from_str(&s).map_err(|e| bad(format!("tokenizer_config.json: {e}")))?
        }
        None => HfTokenizerConfig::default(),
    };
    let tokenizer: tokenizers::Tokenizer = read_required(dir, "tokenizer.json")?
        .parse()
        .map_err(|e| bad(format!("tokenizer.json does not load: {e}")))?;
    let arch = match hf.model_type.as_str() {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        other => {
            return Err(bad(format!(
                "model_type `{other}` is not supported (llama, qwen2)"
            )))
        }
    };
    if let Some(s) = hf.rope_scaling.as_ref().filter(|v| !v.is_null()) {
        return Err(bad(format!("rope_scaling {s} is not supported")));
    }
    if hf.num_attention_heads == 0 {
        return Err(bad("num_attention_heads is 0".into()));
    }
    let eos_ids = match hf.eos_token_id {
        Some(OneOrMany::One(i)) => vec![i],
        Some(OneOrMany::Many(v)) => v,
        None => vec![],
    };
    let mut stop_ids = Vec::new();
    for id in eos_ids
        .iter()
        .copied()
        .chain(STOP_TOKENS.iter().filter_map(|t| tokenizer.token_to_id(t)))
    {
        if !stop_ids.contains(&id) {
            stop_ids.push(id);
        }
    }
    let eos_id = *stop_ids.first().ok_or_else(|| {
        bad("config.json has no eos_token_id and the tokenizer no <|im_end|>/<|endoftext|>".into())
    })?;
    let chat_template = match tok_cfg.chat_template {
        Some(serde_json::Value::String(s)) => Some(s),
        // A list of named templates: take the default one.
        Some(serde_json::Value::Array(list)) => list.iter().find_map(|t| {
            (t.get("name")?.as_str()? == "default")
                .then(|| t.get("template")?.as_str().map(str::to_owned))?
        }),
        _ => None,
    };
    let tied = hf.tie_word_embeddings.unwrap_or(false) || !has_lm_head;
    let config = ModelConfig {
        name: hf
            .name_or_path
            .filter(|s| !s.is_empty())
            .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into()),
        arch,
        vocab_size: hf.vocab_size,
        hidden_size: hf.hidden_size,
        n_layers: hf.num_hidden_layers,
        n_heads: hf.num_attention_heads,
        n_kv_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
        head_dim: hf
            .head_dim
            .unwrap_or(hf.hidden_size / hf.num_attention_heads),
        ffn_dim: hf.intermediate_size,
        rope_theta: hf.rope_theta.unwrap_or(10_000.0),
        rope_style: RopeStyle::Neox,
        norm_eps: hf.rms_norm_eps,
        context_length: hf.max_position_embeddings,
        tied_embeddings: tied,
        qkv_bias: arch == Arch::Qwen2,
        bos_id: hf.bos_token_id,
        eos_id,
        stop_ids,
        add_bos: tok_cfg.add_bos_token.unwrap_or(arch == Arch::Llama) && hf.bos_token_id.is_some(),
        chat_template,
    };
    config.validate().map_err(|e| bad(e.to_string()))?;
    Ok(config)
}

/// HF name of a GGUF-style tensor name.
fn hf_name(name: &str) -> Option<String> {
    let fixed = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output.weight" => Some("lm_head.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_owned());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let hf_part = match part {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf_part}"))
}

/// One safetensors tensor as a row source.
struct StRows<'a> {
    dtype: Dtype,
    data: &'a [u8],
    cols: usize,
}

impl RowSource for StRows<'_> {
    fn blocks(&self) -> SourceBlocks {
        SourceBlocks::Other
    }
    fn raw_rows(&self, _r0: usize, _r1: usize) -> Result<&[u8]> {
        Err(bad("safetensors tensors are never carried as blocks".into()))
    }
    fn f32_rows(&self, r0: usize, r1: usize, out: &mut [f32]) -> Result<()> {
        let size = self.dtype.bitsize() / 8;
        let bytes = self
            .data
            .get(r0 * self.cols * size..r1 * self.cols * size)
            .ok_or_else(|| bad(format!("tensor data is shorter than rows {r0}..{r1}")))?;
        let words = bytes.chunks_exact(size).zip(out.iter_mut());
        match self.dtype {
            Dtype::F32 => {
                words.for_each(|(b, o)| *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            Dtype::F16 => {
                words.for_each(|(b, o)| *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            }
            Dtype::BF16 => {
                words.for_each(|(b, o)| *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            }
            d => {
                return Err(bad(format!(
                    "dtype {d:?} is not supported (F32, F16, BF16)"
                )))
            }
        }
        Ok(())
    }
}

/// Convert the HF folder `dir` to a Hearth model at `output`.
pub fn convert_safetensors(
    dir: &Path,
    output: &Path,
    policy: QuantPolicy,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ConvertReport> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(bad(format!("{} has no *.safetensors files", dir.display())));
    }
    let maps = files
        .iter()
        .map(|p| {
            let f = std::fs::File::open(p)
                .map_err(|e| Error::io(format!("opening {}", p.display()), e))?;
            // SAFETY: read-only mapping of an input file that is not modified while
            // the conversion runs (the same contract as every mmap-based loader).
            unsafe { Mmap::map(&f) }.map_err(|e| Error::io(format!("mapping {}", p.display()), e))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut views = HashMap::new();
    for (m, p) in maps.iter().zip(&files) {
        let st = SafeTensors::deserialize(m).map_err(|e| bad(format!("{}: {e}", p.display())))?;
        for (name, view) in st.tensors() {
            views.insert(name, view);
        }
    }
    let config = config_from_hf(dir, views.contains_key("lm_head.weight"))?;
    let tokenizer = read_required(dir, "tokenizer.json")?;
    check_tokenizer(&tokenizer, config.vocab_size)?;
    write_model(
        output,
        &config,
        &tokenizer,
        policy,
        progress,
        |spec: &TensorSpec| {
            let name = hf_name(&spec.name)
                .ok_or_else(|| bad(format!("no HF name for `{}`", spec.name)))?;
            let v = views
                .get(&name)
                .ok_or_else(|| bad(format!("tensor `{name}` is missing")))?;
            let shape = v.shape();
            let ok = if spec.is_vector() {
                shape == [spec.cols]
            } else {
                shape == [spec.rows, spec.cols]
            };
            if !ok {
                return Err(bad(format!(
                    "tensor `{name}` has shape {shape:?}, the config needs {}×{}",
                    spec.rows, spec.cols
                )));
            }
            if !matches!(v.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                return Err(bad(format!(
                    "tensor `{name}` has dtype {:?} (F32, F16, BF16 supported)",
                    v.dtype()
                )));
            }
            Ok(Box::new(StRows {
                dtype: v.dtype(),
                data: v.data(),
                cols: spec.cols,
            }) as Box<dyn RowSource>)
        },
    )
}
