//! The model's hyper-parameters ([`ModelConfig`]), their validation, and the list of
//! tensors (names and shapes) a config implies.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Model family. Decides which optional tensors exist (e.g. Qwen2's q/k/v biases).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Llama-style decoder (Llama, SmolLM, TinyLlama, …).
    Llama,
    /// Qwen2-style decoder (Llama plus q/k/v biases).
    Qwen2,
}

/// How rotary position embedding pairs up the dimensions of a head.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RopeStyle {
    /// Rotate adjacent pairs `(2i, 2i+1)`: GGUF llama files, whose q/k rows were permuted
    /// by the GGUF converter.
    Norm,
    /// Rotate halves `(i, i + hd/2)`: Hugging Face weights and qwen2.
    Neox,
}

/// Everything the engine needs to know about a model besides its tensors. Stored as
/// JSON in the model file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Human-readable name (from the source file).
    pub name: String,
    /// Model family.
    pub arch: Arch,
    /// Rows of the embedding table.
    pub vocab_size: usize,
    /// Model width (`dim`).
    pub hidden_size: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Hidden width of the feed-forward block.
    pub ffn_dim: usize,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// RoPE pairing.
    pub rope_style: RopeStyle,
    /// RMSNorm epsilon.
    pub norm_eps: f32,
    /// Trained context length.
    pub context_length: usize,
    /// No `output.weight`: the head is `token_embd.weight`.
    pub tied_embeddings: bool,
    /// `attn_{q,k,v}.bias` exist (qwen2).
    pub qkv_bias: bool,
    /// Beginning-of-sequence token, if the model has one.
    pub bos_id: Option<u32>,
    /// End-of-sequence token.
    pub eos_id: u32,
    /// Tokens that end generation: eos and end-of-turn tokens.
    pub stop_ids: Vec<u32>,
    /// Prepend `bos_id` when encoding a prompt. Encode with `add_special_tokens = false`:
    /// this flag, not the tokenizer.json's post-processor, decides about BOS.
    pub add_bos: bool,
    /// Jinja chat template, if the source had one.
    pub chat_template: Option<String>,
}

/// Upper bounds that no model this runtime targets comes near; they keep every size
/// product far from overflow and reject absurd (hostile) headers early.
pub mod limits {
    /// Largest vocabulary.
    pub const MAX_VOCAB: usize = 1 << 22;
    /// Largest model width, head width product and FFN width.
    pub const MAX_DIM: usize = 1 << 16;
    /// Most layers.
    pub const MAX_LAYERS: usize = 1 << 10;
    /// Most heads.
    pub const MAX_HEADS: usize = 1 << 10;
    /// Longest context.
    pub const MAX_CONTEXT: usize = 1 << 24;
}

/// Shape of one expected tensor: `rows × cols`; 1-D tensors have `rows == 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// GGUF-style name, e.g. `blk.3.attn_q.weight`.
    pub name: String,
    /// Rows (output features).
    pub rows: usize,
    /// Columns (input features).
    pub cols: usize,
}

impl TensorSpec {
    fn new(name: impl Into<String>, rows: usize, cols: usize) -> Self {
        Self {
            name: name.into(),
            rows,
            cols,
        }
    }
    /// A 1-D tensor (norm weight, bias).
    pub fn is_vector(&self) -> bool {
        self.rows == 1
    }
}

fn bad(msg: String) -> Error {
    Error::Format(format!("model config: {msg}"))
}

fn check_range(what: &str, v: usize, max: usize) -> Result<()> {
    if v == 0 || v > max {
        return Err(bad(format!("{what} = {v} is out of range (1..={max})")));
    }
    Ok(())
}

impl ModelConfig {
    /// Checks that the numbers are sane and consistent, so that every size derived
    /// from them fits comfortably in `usize`.
    pub fn validate(&self) -> Result<()> {
        check_range("vocab_size", self.vocab_size, limits::MAX_VOCAB)?;
        check_range("hidden_size", self.hidden_size, limits::MAX_DIM)?;
        check_range("n_layers", self.n_layers, limits::MAX_LAYERS)?;
        check_range("n_heads", self.n_heads, limits::MAX_HEADS)?;
        check_range("n_kv_heads", self.n_kv_heads, limits::MAX_HEADS)?;
        check_range("head_dim", self.head_dim, limits::MAX_DIM)?;
        check_range("ffn_dim", self.ffn_dim, limits::MAX_DIM * 4)?;
        check_range("context_length", self.context_length, limits::MAX_CONTEXT)?;
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(bad(format!(
                "n_heads = {} is not a multiple of n_kv_heads = {}",
                self.n_heads, self.n_kv_heads
            )));
        }
        let q_dim = self.n_heads.saturating_mul(self.head_dim);
        check_range("n_heads × head_dim", q_dim, limits::MAX_DIM)?;
        if !self.head_dim.is_multiple_of(2) {
            return Err(bad(format!(
                "head_dim = {} must be even for RoPE",
                self.head_dim
            )));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(bad(format!(
                "rope_theta = {} must be finite and positive",
                self.rope_theta
            )));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            return Err(bad(format!(
                "norm_eps = {} must be in (0, 1)",
                self.norm_eps
            )));
        }
        let vocab = self.vocab_size;
        let check_id = |what: &str, id: u32| -> Result<()> {
            if id as usize >= vocab {
                return Err(bad(format!(
                    "{what} = {id} is not below vocab_size = {vocab}"
                )));
            }
            Ok(())
        };
        if let Some(b) = self.bos_id {
            check_id("bos_id", b)?;
        }
        check_id("eos_id", self.eos_id)?;
        for &s in &self.stop_ids {
            check_id("stop id", s)?;
        }
        if self.add_bos && self.bos_id.is_none() {
            return Err(bad("add_bos is set but there is no bos_id".into()));
        }
        Ok(())
    }

    /// Width of all query heads together.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Every tensor the engine reads, in file order, with its shape. Call after
    /// [`validate`](Self::validate) (the products are then small).
    pub fn expected_tensors(&self) -> Vec<TensorSpec> {
        let (dim, q, kv, ffn) = (self.hidden_size, self.q_dim(), self.kv_dim(), self.ffn_dim);
        let mut v = vec![TensorSpec::new("token_embd.weight", self.vocab_size, dim)];
        for i in 0..self.n_layers {
            let p = |s: &str| format!("blk.{i}.{s}");
            v.push(TensorSpec::new(p("attn_norm.weight"), 1, dim));
            v.push(TensorSpec::new(p("attn_q.weight"), q, dim));
            v.push(TensorSpec::new(p("attn_k.weight"), kv, dim));
            v.push(TensorSpec::new(p("attn_v.weight"), kv, dim));
            if self.qkv_bias {
                v.push(TensorSpec::new(p("attn_q.bias"), 1, q));
                v.push(TensorSpec::new(p("attn_k.bias"), 1, kv));
                v.push(TensorSpec::new(p("attn_v.bias"), 1, kv));
            }
            v.push(TensorSpec::new(p("attn_output.weight"), dim, q));
            v.push(TensorSpec::new(p("ffn_norm.weight"), 1, dim));
            v.push(TensorSpec::new(p("ffn_gate.weight"), ffn, dim));
            v.push(TensorSpec::new(p("ffn_up.weight"), ffn, dim));
            v.push(TensorSpec::new(p("ffn_down.weight"), dim, ffn));
        }
        v.push(TensorSpec::new("output_norm.weight", 1, dim));
        if !self.tied_embeddings {
            v.push(TensorSpec::new("output.weight", self.vocab_size, dim));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::synth::tiny_config as tiny;

    #[test]
    fn tiny_is_valid_and_lists_tensors() {
        let c = tiny();
        c.validate().unwrap();
        let t = c.expected_tensors();
        assert_eq!(t.len(), 1 + 2 * 9 + 1);
        assert_eq!(t[0], TensorSpec::new("token_embd.weight", 64, 64));
        assert!(t
            .iter()
            .any(|s| s.name == "blk.1.attn_k.weight" && s.rows == 32 && s.cols == 64));
        assert!(t
            .iter()
            .any(|s| s.name == "blk.0.ffn_down.weight" && s.rows == 64 && s.cols == 96));
    }

    #[test]
    fn rejects_inconsistent_heads() {
        let mut c = tiny();
        c.n_kv_heads = 3;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("not a multiple of n_kv_heads"), "{e}");
    }

    #[test]
    fn rejects_huge_dims() {
        let mut c = tiny();
        c.n_heads = usize::MAX;
        assert!(c.validate().unwrap_err().to_string().contains("n_heads"));
        let mut c = tiny();
        c.head_dim = 1 << 15;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("n_heads × head_dim"));
    }

    #[test]
    fn rejects_out_of_vocab_ids_and_bad_floats() {
        let mut c = tiny();
        c.eos_id = 64;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("eos_id = 64"));
        let mut c = tiny();
        c.rope_theta = f32::NAN;
        assert!(c.validate().unwrap_err().to_string().contains("rope_theta"));
    }
}
